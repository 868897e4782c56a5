"""Stage 3 (README step 4/6): dense 2D point tracks on the left rectified video.

Reads ``<vid>-left_rectified.mp4``; writes ``<vid>-tapir_2d.pkl``
(``{'tracks': [N, T, 2] float32 (x, y) px, 'visibles': [N, T] bool,
'query_points': [N, 3] int32 (t, y, x)}``), ``<vid>-tapir_2d.mp4`` (random
tracks with fading trails) and ``<vid>-tracking.json`` (backend, settings,
timings, pruning figures).

Steps (as the reference ``tracking.py``): a jittered 4 px query grid on every
10th frame (``stereo4d.queries``), tracking with the chosen backend, pruning of
queries that re-sample an already kept track (within 1 px), visualisation of
4096 random tracks. With ``query_points`` (an ``.npy`` of [N, 3] (t, y, x) px),
exactly those points are tracked instead (no grid, no pruning; the pickle's
``query_points`` are then float32 as given). Outputs are written atomically
(video, then pickle, then provenance): a failed run leaves no pickle.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from stereo4d.backends.tracking import TRACKING_BACKENDS
from stereo4d.io import ClipPaths, InputError, save_pickle
from stereo4d.queries import (
    QueryConfig,
    load_query_points,
    prune_redundant_queries,
    sample_video_queries,
)
from stereo4d.stages.common import Timer, stage_output_paths, start_stage, write_provenance
from stereo4d.stages.health import tracking_health
from stereo4d.tracks import Tracks2D, sample_tracks_for_display
from stereo4d.videoio import VideoWriter, read_video
from stereo4d.viz.trails import TRAIL_FRAMES, render_trails

__all__ = ["VIZ_TRACKS", "TrackingConfig", "output_paths", "run", "track_video"]

#: Tracks drawn in the visualisation video (the reference's 64 * 64).
VIZ_TRACKS = 4096


@dataclass(frozen=True)
class TrackingConfig:
    """Settings of ``tracking.py``.

    Attributes:
      vid: ``<video_id>_<timestamp_us>``.
      output_folder: as in ``ClipPaths`` (input and outputs live in ``<output_folder>/<vid>/``).
      backend: ``auto``, ``bootstapir`` or ``dis-flow`` (see ``stereo4d.backends.tracking``).
      path: BootsTAPIR checkpoint file (``.pt`` or ``.npy``); None = weights cache.
      device: ``auto``, ``cpu`` or ``cuda`` (neural backend only).
      chunk_size: queries per network call (neural backend only; memory, not results).
      queries: query sampling and pruning settings.
      query_points: ``.npy`` of [N, 3] (t, y, x) px to track instead of the grid (no pruning).
      viz_tracks: number of random tracks drawn in the video.
      trail_frames: trail length in frames.
      write_video: write ``<vid>-tapir_2d.mp4``.
      progress: show progress bars.
    """

    vid: str
    output_folder: str = "stereo4d_dataset/processed"
    backend: str = "auto"
    path: str | None = None
    device: str = "auto"
    chunk_size: int | None = None
    queries: QueryConfig = field(default_factory=QueryConfig)
    query_points: str | None = None
    viz_tracks: int = VIZ_TRACKS
    trail_frames: int = TRAIL_FRAMES
    write_video: bool = True
    progress: bool = True

    @property
    def paths(self) -> ClipPaths:
        return ClipPaths(self.vid, output_folder=self.output_folder)


def track_video(frames: np.ndarray, tracker, queries: QueryConfig | None = None,
                timer: Timer | None = None, query_points_tyx: np.ndarray | None = None
                ) -> tuple[Tracks2D, dict]:
    """Samples queries, tracks them and prunes redundant ones.

    Args:
      frames: [T, H, W, 3] uint8 RGB.
      tracker: a tracking backend (``track`` as in ``stereo4d.backends.tracking``).
      queries: sampling and pruning settings.
      query_points_tyx: [N, 3] (t, y, x) given queries: tracked as they are (no grid, no
        pruning).
    Returns:
      (kept tracks, {"num_queries", "num_kept", "pruned_percent"}).
    """
    timer = timer or Timer()
    queries = queries or QueryConfig()
    num_frames, height, width = frames.shape[:3]
    if query_points_tyx is not None:
        with timer("track"):
            tracks_xy, visibles = tracker.track(frames, query_points_tyx)
        print(f"tracking: {len(query_points_tyx)} given query points (no pruning)")
        return (Tracks2D(tracks_xy, visibles, query_points_tyx),
                {"num_queries": len(query_points_tyx), "num_kept": len(query_points_tyx),
                 "pruned_percent": 0.0})
    query_points_tyx = sample_video_queries(num_frames, height, width, queries)
    with timer("track"):
        tracks_xy, visibles = tracker.track(frames, query_points_tyx)
    with timer("prune"):
        keep = prune_redundant_queries(tracks_xy, visibles, query_points_tyx, queries.prune_radius_px)
    pruned_percent = 100.0 * (1.0 - keep.mean()) if len(keep) else 0.0
    print(f"tracking: removed {pruned_percent:.2f}% redundant points "
          f"({len(keep) - int(keep.sum())} of {len(keep)} queries)")
    tracks = Tracks2D(tracks_xy[keep], visibles[keep], query_points_tyx[keep])
    return tracks, {"num_queries": len(keep), "num_kept": int(keep.sum()),
                    "pruned_percent": float(pruned_percent)}


def output_paths(paths: ClipPaths) -> list[Path]:
    """Every file this stage may write (its stale temporaries are removed when it starts)."""
    return stage_output_paths(paths, "tracking")


def run(config: TrackingConfig) -> dict:
    """Runs the stage. Returns a summary dict (counts, timings, output paths)."""
    paths = config.paths
    start_stage(paths, "tracking")
    timer = Timer()
    with timer("decode"):
        frames = read_video(paths.left_video)
    if frames.shape[0] < 1 or min(frames.shape[1:3]) < 1:
        raise InputError(f"{paths.left_video}: no frames to track")
    given = (None if config.query_points is None
             else load_query_points(config.query_points, *frames.shape[:3]))
    options = {"path": config.path, "device": config.device, "chunk_size": config.chunk_size,
               "progress": config.progress}
    with timer("load_backend"):
        entry, tracker = TRACKING_BACKENDS.build(config.backend, **options)
    tracks, counts = track_video(frames, tracker, config.queries, timer, given)
    with timer("health"):
        health = tracking_health(frames, tracks.tracks_xy, tracks.visibles, tracks.query_points_tyx)
    health.enforce(str(paths.left_video))
    paths.provenance("tracking").unlink(missing_ok=True)  # outputs change from here on
    if config.write_video:
        with timer("render"):
            shown = sample_tracks_for_display(tracks.num_tracks, config.viz_tracks, config.queries.seed)
            with VideoWriter(paths.tracks_2d_video) as writer:
                for frame in render_trails(frames, tracks.tracks_xy[shown], tracks.visibles[shown],
                                           trail_frames=config.trail_frames):
                    writer.append(frame)
    with timer("save"):
        save_pickle(tracks.to_dict(), paths.tracks_2d)
    timings = {**timer.seconds, "total": timer.total_s}
    settings = {**asdict(config), "backend_settings": tracker.settings()}
    write_provenance(paths.provenance("tracking"), stage="tracking", backend=entry.name,
                     settings=settings, timings_s=timings, frames=int(frames.shape[0]),
                     frame_hw=list(frames.shape[1:3]), **counts, **health.record())
    print(f"tracking ({entry.name}): {counts['num_kept']} tracks x {frames.shape[0]} frames in "
          f"{timings['total']:.1f} s (track {timings.get('track', 0):.1f} s, "
          f"render {timings.get('render', 0):.1f} s) -> {paths.tracks_2d}")
    return {**counts, "backend": entry.name, "timings_s": timings,
            "outputs": [str(paths.tracks_2d)] + ([str(paths.tracks_2d_video)] if config.write_video else [])}
