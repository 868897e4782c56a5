"""Scene motion of 3D tracks measured in pixels, with the camera's own motion factored out.

For every frame t, each track's recent past positions (frames t-16 .. t-1) are projected with
*frame t's* camera, together with its position at t. A static point then lands on (about) the
same pixel for every past frame however the camera moves, while a moving point leaves a trail;
the longest trail segment, in pixels, is the track's scene motion at t.

Used by the track optimisation (dynamic weight of Eq. 5) and by track filtering.

Computed in float64 numpy: the values are compared with thresholds of tens of pixels, but parity
with the reference (which works in float64) is kept to ~1e-6 px this way, and the work is a few
vectorised passes over [N, T] arrays (no loop over points).

Conventions:
- `world_to_camera` [T, 3, 4]: [R | t] with x_cam = R @ x_world + t (OpenCV camera: x right,
  y down, z forward), metres.
- `intr_normalized` = (fx, fy, cx, cy) as fractions of the image size: pixel focal lengths are
  fx * imw and fy * imh, the principal point is (cx * imw, cy * imh).
- Pixel coordinates (x, y): x to the right in [0, imw), y down in [0, imh); pixel centres sit at
  half-integers, so the first pixel's centre is (0.5, 0.5).
"""

from __future__ import annotations

import numpy as np

from stereo4d.geometry import IntrNormalized, project_frames_xy

TRACE_FRAMES = 16
"""Number of past frames compared with the current one (the reference's `tracks_leave_trace`)."""

CHUNK_TRACKS = 1024
"""Tracks processed together: keeps the per-lag float64 temporaries cache-sized (~40 % less CPU
time than whole-clip arrays at 20,000 x 64)."""


def scene_motion_displacement_px(
    track3d_world: np.ndarray,
    visible: np.ndarray,
    world_to_camera: np.ndarray,
    intr_normalized: IntrNormalized,
    imh: int,
    imw: int,
    trace_frames: int = TRACE_FRAMES,
) -> np.ndarray:
    """Per-frame scene motion of each track in pixels, camera motion removed.

    motion[n, t] = max over s in [t - trace_frames, t - 1] (s >= 0) of
    |proj_t(X[n, s]) - proj_t(X[n, t])|, where proj_t is frame t's camera, over the pairs where
    both projections are in view (see `geometry.project_frames`) and the track is visible at both s
    and t; 0 when there is no such pair (in particular at t = 0).

    Args:
      track3d_world: [N, T, 3] float, world points in metres (NaN allowed: such entries never
        count).
      visible: [N, T] bool, visibility of each track in each frame.
      world_to_camera: [T, 3, 4] float, world-to-camera [R | t] per frame.
      intr_normalized: (fx, fy, cx, cy), normalised intrinsics.
      imh, imw: image height and width in pixels.
      trace_frames: how many past frames to compare with (16 in the reference).

    Returns:
      motion_px: [N, T] float32, maximum 2D displacement in pixels.
    """
    visible = np.asarray(visible, dtype=bool)
    num_tracks, num_frames = visible.shape
    motion_px = np.zeros((num_tracks, num_frames), dtype=np.float32)
    for start in range(0, num_tracks, CHUNK_TRACKS):
        stop = min(start + CHUNK_TRACKS, num_tracks)
        motion_px[start:stop] = _motion_chunk(
            np.asarray(track3d_world[start:stop], dtype=np.float64),
            visible[start:stop],
            world_to_camera,
            intr_normalized,
            imh,
            imw,
            trace_frames,
        )
    return motion_px


def _motion_chunk(
    points: np.ndarray,
    visible: np.ndarray,
    world_to_camera: np.ndarray,
    intr_normalized: IntrNormalized,
    imh: int,
    imw: int,
    trace_frames: int,
) -> np.ndarray:
    """`scene_motion_displacement_px` for one chunk of tracks: [n, T, 3], [n, T] -> [n, T]."""
    num_tracks, num_frames = visible.shape
    motion_px = np.zeros((num_tracks, num_frames), dtype=np.float64)
    if num_frames < 2:
        return motion_px

    # Each point projected with its own frame's camera: [N, T, 2], [N, T].
    x_now, y_now, in_view_now, _ = project_frames_xy(points, world_to_camera, intr_normalized, imh, imw)
    usable_now = in_view_now & visible

    for lag in range(1, min(trace_frames, num_frames - 1) + 1):
        # Points at frames s = t - lag (t = lag .. T-1) seen from frame t's camera.
        x_past, y_past, in_view_past, _ = project_frames_xy(
            points[:, : num_frames - lag], world_to_camera[lag:], intr_normalized, imh, imw
        )
        usable = in_view_past & visible[:, : num_frames - lag] & usable_now[:, lag:]
        with np.errstate(invalid="ignore"):
            dist_px = np.hypot(x_past - x_now[:, lag:], y_past - y_now[:, lag:])
        dist_px = np.where(usable, dist_px, 0.0)
        np.maximum(motion_px[:, lag:], dist_px, out=motion_px[:, lag:])
    return motion_px
