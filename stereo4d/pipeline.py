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
    """One pipeline step as a runner sees it.

    Attributes:
      name: provenance name (``<vid>-<name>.json``) and label.
      script: top-level script in the repository root.
      command: module of its command (``python -m <command>`` runs it, same flags).
      inputs, outputs: functions of ``ClipPaths`` giving the files read / always written
        (optional outputs such as preview videos that a flag turns off are not listed).
      extra_args: flags beyond ``--vid`` (the demo's synthetic-clip settings).
      previews: optional outputs (preview videos a flag can turn off); not part of freshness.
      backend_registry: ``"module:attribute"`` of the stage's backend registry, or None when
        the stage has no choice of backend (used to decide whether it wants a GPU).
      done_when: a further completion rule: the stage need not run when it holds (the camera
        stage: a released npz that the stage did not write is already there).
    """

    name: str
    script: str
    command: str
    inputs: Callable[[ClipPaths], list[Path]]
    outputs: Callable[[ClipPaths], list[Path]]
    extra_args: tuple[str, ...] = ()
    backend_registry: str | None = None
    previews: Callable[[ClipPaths], list[Path]] = lambda p: []
    done_when: Callable[[ClipPaths], bool] | None = None


def _released_npz_present(paths: ClipPaths) -> bool:
    """A clip's npz exists and was not written by the camera stage (no marker: released)."""
    return paths.npz.is_file() and not paths.provenance(CAMERA_STAGE).exists()


def camera_stage() -> Stage:
    """Stage 0: ``estimate_cameras.py`` writes ``npz/<vid>.npz`` from the raw video."""
    return Stage(CAMERA_STAGE, "estimate_cameras.py", "stereo4d.commands.estimate_cameras",
                 lambda p: [p.raw_video], lambda p: [p.npz], done_when=_released_npz_present)


def pipeline_stages(synthetic: bool = False, cameras: bool = False) -> list[Stage]:
    """The five stages in order (six with ``cameras``: stage 0 first).

    ``synthetic``: the clip was rendered by make_synthetic_clip.py (lifts rectify's VR180
    height check, which real clips keep).
    """
    return [*([camera_stage()] if cameras else []),
        Stage("rectify", "rectify.py", "stereo4d.commands.rectify",
              lambda p: [p.npz, p.raw_video],
              lambda p: [p.left_video, p.right_video],
              SYNTHETIC_RECTIFY_ARGS if synthetic else (),
              previews=lambda p: [p.raw_equirect_video, p.rectified_equirect_video]),
        Stage("stereo", "inference_raft.py", "stereo4d.commands.inference_raft",
              lambda p: [p.left_video, p.right_video],
              lambda p: [p.stereo_output],
              backend_registry="stereo4d.backends.stereo:STEREO_BACKENDS"),
        Stage("tracking", "tracking.py", "stereo4d.commands.tracking",
              lambda p: [p.left_video],
              lambda p: [p.tracks_2d],
              backend_registry="stereo4d.backends.tracking:TRACKING_BACKENDS",
              previews=lambda p: [p.tracks_2d_video]),
        Stage("filtering", "segmentation.py", "stereo4d.commands.segmentation",
              lambda p: [p.left_video, p.stereo_output, p.tracks_2d, p.npz],
              lambda p: [p.filtered_tracks, p.filtered_tracks_video, p.segmentation],
              backend_registry="stereo4d.backends.segmentation:SEGMENTATION_BACKENDS"),
        Stage("optimization", "track_optimization.py", "stereo4d.commands.track_optimization",
              lambda p: [p.filtered_tracks, p.stereo_output, p.npz, p.left_video],
              lambda p: [p.optimized_tracks, p.export_npz]),
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
