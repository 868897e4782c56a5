"""Which files each stage reads and writes: the one list per stage.

The stages use it to remove a killed run's temporaries when they start (``written``); the
runners above them (``stereo4d.pipeline``: demo and batch) use it to order the stages and
to decide whether one must run again (``inputs`` / ``outputs``). Both read the same entry,
so a new output is added in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stereo4d.io.paths import ClipPaths

__all__ = ["OPTIMIZATION_TRACK_VIDEO_KINDS", "OPTIMIZATION_VIDEO_VERSIONS", "STAGE_FILES",
           "StageFiles", "optimization_track_video"]

#: The two versions of the optimisation stage's track videos: lifted and optimised tracks.
OPTIMIZATION_VIDEO_VERSIONS = ("original", "optimized")
#: The kinds of track video the optimisation stage draws for each version.
OPTIMIZATION_TRACK_VIDEO_KINDS = ("dyna_2dtrack", "dyna_3dtrack", "dyna_3dtrack_concated")


def optimization_track_video(paths: ClipPaths, kind: str, version: str) -> Path:
    """``<vid>-<kind>-<version>.mp4``: one of the optimisation stage's track videos."""
    return paths.out(f"{kind}-{version}.mp4")


def _optimization_previews(paths: ClipPaths) -> list[Path]:
    videos = [optimization_track_video(paths, kind, version)
              for version in OPTIMIZATION_VIDEO_VERSIONS
              for kind in OPTIMIZATION_TRACK_VIDEO_KINDS]
    return [paths.raw_depth_video, paths.optimized_depth_video, *videos]


@dataclass(frozen=True)
class StageFiles:
    """The files of one stage, as functions of a clip's ``ClipPaths``.

    Attributes:
      inputs: files the stage reads.
      outputs: files it always writes (with its provenance JSON: its completion rule).
      optional: files it may also write (preview videos a flag can turn off, the stereo
        file of either format); not part of its completion rule.
    """

    inputs: Callable[[ClipPaths], list[Path]]
    outputs: Callable[[ClipPaths], list[Path]]
    optional: Callable[[ClipPaths], list[Path]] = lambda p: []

    def written(self, paths: ClipPaths) -> list[Path]:
        """Every file the stage may write (each once), its provenance JSON excepted."""
        return list(dict.fromkeys([*self.outputs(paths), *self.optional(paths)]))


#: Stage name (its provenance name, ``<vid>-<name>.json``) -> its files, in pipeline order.
STAGE_FILES: dict[str, StageFiles] = {
    "cameras": StageFiles(lambda p: [p.raw_video], lambda p: [p.npz]),
    "rectify": StageFiles(
        lambda p: [p.npz, p.raw_video],
        lambda p: [p.left_video, p.right_video],
        lambda p: [p.raw_equirect_video, p.rectified_equirect_video]),
    # ``--stereo_format`` picks the file: ``ClipPaths.stereo_output`` names the one present.
    # The npz's cameras feed the ``sgbm`` backend's multi-frame fusion.
    "stereo": StageFiles(
        lambda p: [p.left_video, p.right_video, p.npz],
        lambda p: [p.stereo_output],
        lambda p: [p.stereo_compact, p.flows_stereo]),
    "tracking": StageFiles(
        lambda p: [p.left_video],
        lambda p: [p.tracks_2d],
        lambda p: [p.tracks_2d_video]),
    "filtering": StageFiles(
        lambda p: [p.left_video, p.stereo_output, p.tracks_2d, p.npz],
        lambda p: [p.filtered_tracks, p.filtered_tracks_video, p.segmentation]),
    "optimization": StageFiles(
        lambda p: [p.filtered_tracks, p.stereo_output, p.npz, p.left_video],
        lambda p: [p.optimized_tracks, p.export_npz],
        _optimization_previews),
}
