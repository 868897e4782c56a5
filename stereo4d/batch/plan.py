"""What a batch runs: the clip list, the stages, their flags and resources, as StageTasks."""

from __future__ import annotations

import importlib
import os
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stereo4d.batch.task import StageTask
from stereo4d.io import ClipPaths, InputError, split_vid
from stereo4d.pipeline import ALL_STAGE_NAMES, Stage, pipeline_stages

__all__ = [
    "ENV_PASSTHROUGH_PREFIXES",
    "BatchPlan",
    "discover_vids",
    "parse_key_values",
    "parse_stage_args",
    "read_vid_list",
]

#: Driver environment variables handed to every stage process (Ray workers do not inherit
#: the driver's environment): JAX / XLA settings such as a persistent compilation cache
#: (``JAX_COMPILATION_CACHE_DIR``) and the project's own ``STEREO4D_*`` switches.
ENV_PASSTHROUGH_PREFIXES = ("STEREO4D_", "JAX_", "XLA_")

#: Threads a stage may use per CPU it asks for (OMP_NUM_THREADS, unless set explicitly).
THREADS_PER_CPU = 1


def read_vid_list(path: str | os.PathLike) -> list[str]:
    """Clip ids from a text file: one per line; ``#`` starts a comment; blanks and repeats dropped."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--vids: no such file: {path}")
    vids: list[str] = []
    for line in path.read_text().splitlines():
        vid = line.split("#", 1)[0].strip()
        if vid and vid not in vids:
            vids.append(vid)
    if not vids:
        raise InputError(f"--vids: {path} lists no clip")
    return vids


#: Timestamp given to a raw video that has no npz, when the camera stage is to make one.
NEW_VIDEO_TIMESTAMP_US = 0


def discover_vids(npz_folder: Path, raw_video_folder: Path, *, new_videos: bool = False
                  ) -> tuple[list[str], list[str]]:
    """Every ``<vid>.npz`` in ``npz_folder`` whose raw video exists, sorted.

    ``new_videos`` (the camera stage is selected): also every raw ``<video_id>.mp4`` that no
    npz names, as ``<video_id>_0`` (the clip from the video's start).
    Returns (vids, passed over: npz files without their raw video or with a malformed name).
    """
    if not Path(npz_folder).is_dir():
        raise InputError(f"--npz_folder: no such folder: {npz_folder}")
    vids, passed_over, video_ids = [], [], set()
    for npz in sorted(Path(npz_folder).glob("*.npz")):
        try:
            paths = ClipPaths(npz.stem, npz_folder, raw_video_folder)
        except InputError:
            passed_over.append(npz.stem)
            continue
        video_ids.add(paths.video_id)
        (vids if paths.raw_video.is_file() else passed_over).append(npz.stem)
    if new_videos and Path(raw_video_folder).is_dir():
        for video in sorted(Path(raw_video_folder).glob("*.mp4")):
            if video.stem in video_ids:
                continue
            vid = f"{video.stem}_{NEW_VIDEO_TIMESTAMP_US}"
            try:
                ClipPaths(vid, npz_folder, raw_video_folder)
            except InputError:
                passed_over.append(video.name)
                continue
            vids.append(vid)
    return vids, passed_over


def parse_stage_args(items: Iterable[str]) -> dict[str, list[str]]:
    """``["rectify:--min_equirect_height=0 --output_height=96", ...]`` -> stage -> flags.

    Each item is ``<stage>:<flags>`` with ``<stage>`` one of ALL_STAGE_NAMES; the flags are split
    like a shell would; several items for one stage add up.
    """
    out: dict[str, list[str]] = {name: [] for name in ALL_STAGE_NAMES}
    for item in items:
        stage, sep, flags = item.partition(":")
        if not sep or stage.strip() not in out:
            raise InputError(f"--stage_args {item!r}: expected <stage>:<flags> with <stage> one of "
                             + ", ".join(ALL_STAGE_NAMES))
        out[stage.strip()] += shlex.split(flags)
    return out


def parse_key_values(items: Iterable[str], what: str, keys: Sequence[str] | None = None
                     ) -> dict[str, str]:
    """``["a=1", "b=2,c=3"]`` -> {"a": "1", "b": "2", "c": "3"}; ``keys`` limits the names."""
    out: dict[str, str] = {}
    for item in items:
        for part in filter(None, (p.strip() for p in item.split(","))):
            key, sep, value = part.partition("=")
            if not sep or not key or (keys is not None and key not in keys):
                allowed = f" (names: {', '.join(keys)})" if keys is not None else ""
                raise InputError(f"{what} {part!r}: expected NAME=VALUE{allowed}")
            out[key] = value
    return out


def _flag_value(flags: Sequence[str], name: str) -> str | None:
    """Last value of ``--name=value`` or ``--name value`` in ``flags``."""
    value = None
    for i, flag in enumerate(flags):
        if flag.startswith(f"--{name}="):
            value = flag.split("=", 1)[1]
        elif flag == f"--{name}" and i + 1 < len(flags):
            value = flags[i + 1]
    return value


def wants_gpu(stage: Stage, flags: Sequence[str]) -> bool:
    """True for a stage whose backend may be neural: ``auto`` or a backend that needs weights."""
    if stage.backend_registry is None:
        return False
    module, _, attr = stage.backend_registry.partition(":")
    registry = getattr(importlib.import_module(module), attr)
    backend = _flag_value(flags, "backend") or "auto"
    entry = registry.entries.get(backend)
    return backend == "auto" or (entry is not None and entry.needs_weights)


@dataclass
class BatchPlan:
    """Everything the scheduler needs to build the stage tasks of a batch.

    Attributes:
      vids: clip ids, in order. stages: the pipeline stages to run (pipeline order).
      npz_folder, raw_video_folder, output_folder: absolute folders (shared by all nodes).
      stage_args: stage name -> extra flags. cpus: stage name -> CPUs asked for.
      gpus: stage name -> GPUs asked for (0 for CPU-only runs).
      env: extra environment of every stage process. log_dir: per-stage logs.
      cwd: working directory of the stage processes.
    """

    vids: list[str]
    stages: list[Stage]
    npz_folder: Path
    raw_video_folder: Path
    output_folder: Path
    log_dir: Path
    stage_args: dict[str, list[str]] = field(default_factory=dict)
    cpus: dict[str, float] = field(default_factory=dict)
    gpus: dict[str, float] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None

    @staticmethod
    def select_stages(names: Sequence[str]) -> list[Stage]:
        """The named stages, in pipeline order; InputError for an unknown name."""
        unknown = [n for n in names if n not in ALL_STAGE_NAMES]
        if unknown or not names:
            raise InputError(f"--stages: unknown stage(s) {', '.join(unknown) or '(none)'}; "
                             f"choose from {', '.join(ALL_STAGE_NAMES)}")
        return [s for s in pipeline_stages(cameras=True) if s.name in names]

    def paths(self, vid: str) -> ClipPaths:
        return ClipPaths(vid, self.npz_folder, self.raw_video_folder, self.output_folder)

    def check_vid(self, vid: str) -> str | None:
        """None for a well-formed clip id, else the reason (recorded as the clip's error)."""
        try:
            split_vid(vid)
        except InputError as exc:
            return str(exc)
        return None

    def task(self, vid: str, stage: Stage, attempt: int = 1) -> StageTask:
        """The StageTask running ``stage`` on ``vid`` with the batch's folders and flags."""
        paths = self.paths(vid)
        argv = [f"--vid={vid}", f"--npz_folder={self.npz_folder}",
                f"--output_folder={self.output_folder}"]
        if paths.raw_video in stage.inputs(paths):
            argv.append(f"--raw_video_folder={self.raw_video_folder}")
        argv += self.stage_args.get(stage.name, [])
        cpus = self.cpus.get(stage.name, 1.0)
        env = {"OMP_NUM_THREADS": str(max(1, int(cpus * THREADS_PER_CPU)))}
        env.update({k: v for k, v in os.environ.items() if k.startswith(ENV_PASSTHROUGH_PREFIXES)})
        env.update(self.env)
        return StageTask(
            vid=vid, stage=stage.name, command=stage.command, argv=tuple(argv),
            marker=str(paths.provenance(stage.name)),
            log_path=str(self.log_dir / f"{vid}-{stage.name}.log"),
            cpus=cpus, gpus=self.gpus.get(stage.name, 0.0), env=env, cwd=self.cwd,
            attempt=attempt)
