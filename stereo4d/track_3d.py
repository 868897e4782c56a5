"""The 3D part of the optimisation stage, without its files: lifted tracks in, final tracks out.

``optimize_and_fill`` runs, in order: the surface cut (``track_cut``), the reference's
optimisation (``track_opt``, Eq. 5), then this version's additions as ``FillSettings`` asks
(``track_fill``: seeding, static snapping, gap filling, the moving tracks' smoothing along
their rays; ``track_smooth``: across them; the static frames off their 2D track dropped).
The stage (``stages.optimization``) and the error budget (``error_budget``) both call it.
"""

from __future__ import annotations

import numpy as np

from stereo4d.geometry import PinholeCamera
from stereo4d.track_cut import cut_surface_changes
from stereo4d.track_fill import (
    FillSettings,
    drop_off_track_static_frames,
    fill_track_gaps,
    seed_from_lifted,
    smooth_moving_tracks,
    snap_static_tracks,
    static_tracks,
)
from stereo4d.track_opt import TrackOptConfig, optimize_tracks
from stereo4d.track_smooth import smooth_moving_lateral
from stereo4d.tracks import Tracks2D

__all__ = ["optimize_and_fill"]


def optimize_and_fill(lifted: np.ndarray, lifted_visible: np.ndarray, tracks: Tracks2D,
                      cameras: PinholeCamera, imh: int, imw: int, track_opt: TrackOptConfig,
                      fill: FillSettings):
    """``optimize_tracks`` on the lifted tracks [N, T, 3] / [N, T] (first cut where they leave
    their query's surface, if ``fill`` asks: ``track_cut``), then what ``fill`` asks
    (``track_fill``): tracks without an optimised frame seeded from their lifted points, the
    static tracks made one point, the gaps filled, and the static tracks' frames whose point
    is off the 2D track dropped; the moving tracks smoothed over their optimised, seeded and
    filled frames together, along their rays and then across them. Returns (TrackOptResult, track3d [N, T, 3], visible [N, T])."""
    intr = (cameras.fx, cameras.fy, cameras.cx, cameras.cy)
    if fill.cuts_surface_changes:
        visibles, lifted_visible = cut_surface_changes(
            tracks.visibles, lifted, lifted_visible, tracks.query_points_tyx[:, 0], cameras,
            fill.surface_cut)
        tracks = Tracks2D(tracks.tracks_xy, visibles, tracks.query_points_tyx)
    result = optimize_tracks(lifted, lifted_visible, np.asarray(cameras.world_to_camera), intr,
                             imh, imw, track_opt)
    if not fill.changes_output:
        return result, result.track3d, result.visible
    track3d, visible = result.track3d, result.visible
    if fill.fill_gaps and fill.min_lifted_frames > 0:
        track3d, visible = seed_from_lifted(track3d, visible, lifted, lifted_visible,
                                            fill.min_lifted_frames)
    static = static_tracks(result.motion_px, visible, track_opt.motion_threshold_px,
                           track_opt.motion_percentile)
    if fill.snap_static:
        track3d = snap_static_tracks(track3d, visible, static)
    measured = visible
    if fill.fill_gaps:
        track3d, visible = fill_track_gaps(track3d, visible, tracks.tracks_xy, tracks.visibles,
                                           cameras, static, imh, imw,
                                           fill.max_extrapolation_frames)
    if fill.smooth_moving > 0:
        track3d = smooth_moving_tracks(track3d, visible, measured, static, cameras,
                                       fill.smooth_moving)
        if fill.smooth_lateral > 0:
            track3d = smooth_moving_lateral(track3d, visible, static, cameras,
                                            fill.smooth_lateral)
    track3d, visible = drop_off_track_static_frames(track3d, visible, tracks.tracks_xy, static,
                                                    cameras, imh, imw,
                                                    fill.max_static_reprojection_px)
    return result, track3d, visible
