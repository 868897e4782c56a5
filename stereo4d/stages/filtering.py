"""Stage 4: drop sky, boundary and drifting tracks using per-frame semantic labels.

Reads (``ClipPaths``): the left rectified video, ``<vid>-stereo.npz`` (or the pickle
``<vid>-flows_stereo.pkl``; depth),
``<vid>-tapir_2d.pkl`` (2D tracks) and the npz cameras. Writes into ``<output_folder>/<vid>/``:
``<vid>-tapir_remove_drift_tracks.pkl`` (same keys as ``tapir_2d.pkl``, surviving tracks),
``<vid>-tapir_3dtrack_filtered.mp4`` (at most 4096 surviving 3D tracks projected into each
frame with 16-frame trails, camera motion removed) and ``<vid>-filtering.json`` (provenance,
last).

Steps: depth from the stereo flows (``stereo4d.depth``; no floater removal, as the reference),
2D tracks lifted to 3D with the npz cameras (``hfov_deg``, principal point at the centre), the
scene-motion displacement of every point (``stereo4d.motion``), per-frame ADE20K labels from
the segmentation backend, then the filters of ``stereo4d.filtering``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from stereo4d import filtering
from stereo4d.backends.segmentation import SEGMENTATION_BACKENDS
from stereo4d.geometry import PinholeCamera
from stereo4d.io import (
    ClipPaths,
    InputError,
    load_dataset_npz,
    load_stereo_flows,
    save_pickle,
    save_segmentation,
)
from stereo4d.motion import scene_motion_displacement_px
from stereo4d.stages.common import (
    Timer,
    check_frame_counts,
    require_inputs,
    stage_output_paths,
    start_stage,
    write_provenance,
)
from stereo4d.stages.health import filtering_health
from stereo4d.tracks import Tracks2D, lift_tracks_to_3d, sample_tracks_for_display
from stereo4d.videoio import VideoWriter, read_video
from stereo4d.viz.scene3d import render_scene_motion_2d
from stereo4d.viz.trails import rainbow_colors

__all__ = ["STAGE_NAME", "FilteringConfig", "output_paths", "run"]

STAGE_NAME = "filtering"
"""Provenance name: ``<vid>-filtering.json``."""


@dataclass(frozen=True)
class FilteringConfig:
    """Settings of ``segmentation.py``.

    Attributes:
      vid: ``<video_id>_<timestamp_us>``.
      npz_folder, output_folder: as in ``ClipPaths``.
      hfov_deg: horizontal FoV of the rectified views (degrees).
      backend: segmentation backend name or ``auto``.
      path: local DeepLab tarball / frozen graph (``deeplab`` only).
      drift_threshold_px: displacement above which a static-class track is drifting (the
        reference's is ``filtering.DRIFT_THRESHOLD_PX``, 5 px).
      boundary_margin: static fraction margin of the boundary filter (reference: 0).
      trace_frames: frames of history of the displacement and of the video's trails.
      max_display_tracks, display_seed: how many surviving tracks the video shows, which.
      progress: progress bars.
    """

    vid: str
    npz_folder: str = "stereo4d_dataset/npz"
    output_folder: str = "stereo4d_dataset/processed"
    hfov_deg: float = 60.0
    backend: str = "auto"
    path: str | None = None
    drift_threshold_px: float = filtering.STAGE_DRIFT_THRESHOLD_PX
    boundary_margin: float = filtering.STAGE_BOUNDARY_MARGIN
    trace_frames: int = filtering.TRACE_FRAMES
    max_display_tracks: int = filtering.MAX_DISPLAY_TRACKS
    display_seed: int = filtering.DISPLAY_SEED
    progress: bool = True

    @property
    def paths(self) -> ClipPaths:
        return ClipPaths(self.vid, npz_folder=self.npz_folder, output_folder=self.output_folder)

    @property
    def filter_settings(self) -> filtering.FilterSettings:
        return filtering.FilterSettings(self.drift_threshold_px, self.trace_frames,
                                        boundary_margin=self.boundary_margin)


def _check_shapes(paths: ClipPaths, tracks: Tracks2D, video: np.ndarray, flows, extrs) -> None:
    check_frame_counts(paths.vid, {paths.left_video.name: len(video),
                                   paths.stereo_output.name: len(flows),
                                   f"{paths.npz.name} camera2world": len(extrs),
                                   paths.tracks_2d.name: tracks.num_frames})
    flow_hw = np.shape(flows[0]["fwd"])[:2]
    if tuple(flow_hw) != video.shape[1:3]:
        raise InputError(f"{paths.stereo_output}: flow size {tuple(flow_hw)} differs from the "
                         f"video's {video.shape[1:3]}")


def output_paths(paths: ClipPaths) -> list[Path]:
    """Every file this stage may write (its stale temporaries are removed when it starts)."""
    return stage_output_paths(paths, STAGE_NAME)


def run(config: FilteringConfig) -> dict:
    """Runs the stage. Returns a summary (backend, filter shares, timings, output paths)."""
    from stereo4d.depth import depth_maps_from_flows

    paths = config.paths
    start_stage(paths, STAGE_NAME)
    require_inputs([paths.left_video, paths.stereo_output, paths.tracks_2d, paths.npz])
    timer = Timer()
    with timer("load"):
        meta = load_dataset_npz(paths.npz, required=("camera2world",))
        tracks = Tracks2D.load(paths.tracks_2d)
        flows = load_stereo_flows(paths.stereo_output)
        video = read_video(paths.left_video)
    extrs = meta["extrs_rectified"]
    _check_shapes(paths, tracks, video, flows, extrs)
    num_frames, imh, imw = video.shape[:3]
    cameras = PinholeCamera.from_hfov(extrs, config.hfov_deg, aspect_hw=imh / imw)
    entry, segmenter = SEGMENTATION_BACKENDS.build(config.backend, path=config.path,
                                                   progress=config.progress)

    with timer("depth"):
        depth_m = depth_maps_from_flows(flows, config.hfov_deg, remove_floaters=False)
    with timer("lift"):
        track3d, valid = lift_tracks_to_3d(tracks, depth_m, cameras)
    with timer("displacement"):
        displacement = scene_motion_displacement_px(
            track3d, valid, extrs, (cameras.fx, cameras.fy, cameras.cx, cameras.cy), imh, imw,
            config.trace_frames)
    with timer("segmentation"):
        labels = segmenter.segment(video, depth_m=depth_m, cameras=cameras)
    with timer("filter"):
        result = filtering.filter_tracks(filtering.labels_at_tracks(labels, tracks.tracks_xy),
                                         tracks.visibles, valid, displacement,
                                         config.filter_settings)
    print(filtering.format_stats(result.stats))
    health = filtering_health(labels, result.keep, valid)
    health.enforce(f"{paths.tracks_2d.name} and {paths.left_video.name}")

    kept = np.flatnonzero(result.keep)
    shown = kept[sample_tracks_for_display(len(kept), config.max_display_tracks,
                                              config.display_seed)]
    paths.provenance(STAGE_NAME).unlink(missing_ok=True)  # outputs change from here on
    with timer("video"):
        writer = VideoWriter(paths.filtered_tracks_video)
        with writer:
            for frame in render_scene_motion_2d(video, track3d[shown], valid[shown],
                                                rainbow_colors(len(shown)), cameras,
                                                config.trace_frames):
                writer.append(frame)
    with timer("write"):
        save_pickle(tracks.subset(result.keep).to_dict(), paths.filtered_tracks)
        save_segmentation(paths.segmentation, labels, result.keep,
                          removed={"sky": result.sky, "boundary": result.boundary,
                                   "drift": result.drift})
    summary = {
        "backend": entry.name,
        "num_frames": num_frames,
        "num_tracks_in": tracks.num_tracks,
        "num_tracks_kept": result.num_kept,
        "num_tracks_shown": len(shown),
        "filters": result.stats,
        "outputs": {"tracks": str(paths.filtered_tracks), "video": str(paths.filtered_tracks_video),
                    "segmentation": str(paths.segmentation)},
        "timings_s": {**timer.seconds, "total": timer.total_s},
    }
    settings = {k: v for k, v in asdict(config).items() if k != "progress"}
    write_provenance(paths.provenance(STAGE_NAME), stage=STAGE_NAME, backend=entry.name,
                     settings=settings, timings_s=summary["timings_s"], filters=result.stats,
                     num_tracks_in=tracks.num_tracks, num_tracks_kept=result.num_kept,
                     **health.record())
    t = summary["timings_s"]
    print(f"filtering: kept {result.num_kept} of {tracks.num_tracks} tracks "
          f"({entry.name} segmentation {t['segmentation']:.1f} s, total {t['total']:.1f} s) "
          f"-> {paths.clip_dir}")
    return summary
