"""The five stages as the runners see them: order, files read and written, completion rule.

Used by the one-clip demo (``stereo4d.demo``) and the batch runner (``stereo4d.batch``);
the stages themselves never import this module. A stage is complete, like a make target,
when its provenance JSON ``<vid>-<stage>.json`` (written last; removed by the stage just
before it replaces its first output) and its required outputs exist and are at least as new as
its inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from stereo4d.io import ClipPaths
from stereo4d.io.stage_files import STAGE_FILES
from stereo4d.stages.common import outputs_fresh

__all__ = [
    "ALL_STAGE_NAMES",
    "CAMERA_STAGE",
    "STAGE_NAMES",
    "Stage",
    "clip_complete",
    "pipeline_stages",
    "stage_dependencies",
    "stage_fresh",
]

#: Provenance names of the stages, in pipeline order.
STAGE_NAMES = ("rectify", "stereo", "tracking", "filtering", "optimization")

#: Optional stage 0: camera poses and rig rectification estimated from the raw video alone.
CAMERA_STAGE = "cameras"

#: Every stage a runner may be asked for, in pipeline order.
ALL_STAGE_NAMES = (CAMERA_STAGE, *STAGE_NAMES)

#: The synthetic clip's equirect video is 1024 px high: below the VR180 check of rectify.py.
SYNTHETIC_RECTIFY_ARGS = ("--min_equirect_height=0",)


@dataclass(frozen=True)
class Stage:
    """One pipeline step as a runner sees it; its files are ``io.stage_files.STAGE_FILES``.

    Attributes:
      name: provenance name (``<vid>-<name>.json``), label and key of its files.
      script: top-level script in the repository root.
      command: module of its command (``python -m <command>`` runs it, same flags).
      extra_args: flags beyond ``--vid`` (the demo's synthetic-clip settings).
      backend_registry: ``"module:attribute"`` of the stage's backend registry, or None when
        the stage has no choice of backend (used to decide whether it wants a GPU).
      done_when: a further completion rule: the stage need not run when it holds (the camera
        stage: a released npz that the stage did not write is already there).
    """

    name: str
    script: str
    command: str
    extra_args: tuple[str, ...] = ()
    backend_registry: str | None = None
    done_when: Callable[[ClipPaths], bool] | None = None

    def inputs(self, paths: ClipPaths) -> list[Path]:
        """Files the stage reads."""
        return STAGE_FILES[self.name].inputs(paths)

    def outputs(self, paths: ClipPaths) -> list[Path]:
        """Files it always writes (besides its provenance JSON)."""
        return STAGE_FILES[self.name].outputs(paths)

    def previews(self, paths: ClipPaths) -> list[Path]:
        """Other files it may write (preview videos, the other stereo format): not part of
        freshness."""
        outputs = set(self.outputs(paths))
        return [p for p in STAGE_FILES[self.name].written(paths) if p not in outputs]


def _released_npz_present(paths: ClipPaths) -> bool:
    """A clip's npz exists and was not written by the camera stage (no marker: released)."""
    return paths.npz.is_file() and not paths.provenance(CAMERA_STAGE).exists()


def camera_stage() -> Stage:
    """Stage 0: ``estimate_cameras.py`` writes ``npz/<vid>.npz`` from the raw video."""
    return Stage(CAMERA_STAGE, "estimate_cameras.py", "stereo4d.commands.estimate_cameras",
                 done_when=_released_npz_present)


def pipeline_stages(synthetic: bool = False, cameras: bool = False) -> list[Stage]:
    """The five stages in order (six with ``cameras``: stage 0 first).

    ``synthetic``: the clip was rendered by make_synthetic_clip.py (lifts rectify's VR180
    height check, which real clips keep).
    """
    return [*([camera_stage()] if cameras else []),
        Stage("rectify", "rectify.py", "stereo4d.commands.rectify",
              SYNTHETIC_RECTIFY_ARGS if synthetic else ()),
        Stage("stereo", "inference_raft.py", "stereo4d.commands.inference_raft",
              backend_registry="stereo4d.backends.stereo:STEREO_BACKENDS"),
        Stage("tracking", "tracking.py", "stereo4d.commands.tracking",
              backend_registry="stereo4d.backends.tracking:TRACKING_BACKENDS"),
        Stage("filtering", "segmentation.py", "stereo4d.commands.segmentation",
              backend_registry="stereo4d.backends.segmentation:SEGMENTATION_BACKENDS"),
        Stage("optimization", "track_optimization.py", "stereo4d.commands.track_optimization"),
    ]


def stage_dependencies(stages: Sequence[Stage], paths: ClipPaths) -> dict[str, set[str]]:
    """Stage name -> names of the earlier stages in ``stages`` that write one of its inputs."""
    deps: dict[str, set[str]] = {}
    for i, stage in enumerate(stages):
        wanted = set(stage.inputs(paths))
        deps[stage.name] = {s.name for s in stages[:i] if wanted & set(s.outputs(paths))}
    return deps


def stage_fresh(paths: ClipPaths, stage: Stage, *, allow_dropped: bool = False) -> bool:
    """True when ``stage`` need not run: marker and outputs exist, none older than an input.

    ``allow_dropped``: intermediates (``ClipPaths.intermediates``) that are missing count as
    dropped by ``--keep=final`` rather than as missing outputs.
    """
    if stage.done_when is not None and stage.done_when(paths):
        return True
    outputs = [paths.provenance(stage.name), *stage.outputs(paths)]
    if allow_dropped:
        dropped = {p for p in paths.intermediates() if not p.exists()}
        outputs = [p for p in outputs if p not in dropped]
    return outputs_fresh(outputs, stage.inputs(paths))


def clip_complete(paths: ClipPaths, stages: Sequence[Stage] | None = None) -> bool:
    """True when every stage of the pipeline is complete, intermediates possibly dropped.

    A clip whose released npz and videos are fresh stays done after ``--keep=final`` removed
    its flows and track pickles: each stage's marker and remaining outputs must still be at
    least as new as its remaining inputs, and every final output (``ClipPaths.finals``) must
    exist.
    """
    stages = stages if stages is not None else pipeline_stages()
    if not all(p.is_file() for p in paths.finals()):
        return False
    return all(stage_fresh(paths, s, allow_dropped=True) for s in stages)
