"""Filling the gaps of optimised 3D tracks where the 2D track is visible but had no 3D point.

The optimisation (``track_opt``) only outputs frames whose stereo depth was valid in a whole
``erosion_window`` around them; stereo holes, floater removal and that erosion leave gaps in
tracks that the 2D tracker still follows. This step fills them from the optimised frames of
the same track (an addition of this implementation, off in ``--fill_gaps=false``):

* a **static** track (its scene motion stays under the optimisation's motion threshold) is one
  world point: gaps take the mean of its optimised points (the static term of the optimisation
  has already pulled them together);
* a **moving** track keeps its 2D position: gaps are unprojected along the 2D point's ray at a
  camera depth interpolated linearly in time between the nearest optimised frames (held
  constant before the first and after the last one).

Tracks with no optimised frame stay empty. Inputs and outputs are world metres.

Tracks with no optimised frame at all (fewer than ``erosion_window`` consecutive frames of
valid stereo depth) can be seeded from their lifted, unoptimised points first
(``seed_from_lifted``, ``--fill_min_lifted_frames``): those with at least that many lifted
frames are then filled as above from the lifted frames instead of staying empty.

A second, separate step (``snap_static_tracks``, off in ``--snap_static=false``) gives a static
track that one mean point in its optimised frames too. The optimisation only slides each
frame's point along that frame's ray, so the 2D tracker's sub-pixel noise stays in the output
as lateral scatter (0.1 px at 20 m is 4.5 mm per frame, in a different direction each frame as
the camera moves); a static surface point does not move, so its best estimate in every frame is
one point. On the suite's tuning clip t2 this divides the jitter of the optimised tracks by 29
at an unchanged APD3D (see README, "What changed").

A last step (``smooth_moving_tracks``, off in ``--smooth_moving=0``) smooths each moving track's
distance along its rays over its optimised, seeded and filled frames together: the optimisation
smooths each run of optimised frames on its own, and gap filling joins the runs with bends.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import solveh_banded

from stereo4d.geometry import PinholeCamera
from stereo4d.track_cut import SurfaceCutSettings
from stereo4d.track_opt import camera_centres, masked_percentile

__all__ = ["FillSettings", "drop_off_track_static_frames", "fill_track_gaps", "moving_track_rays",
           "seed_from_lifted", "smooth_moving_tracks", "snap_static_tracks", "static_reprojection_px",
           "static_tracks", "track_mean_points"]

SMOOTH_FILLED_WEIGHT = 0.05
"""``smooth_moving_tracks``: weight of a gap-filled frame's distance along its ray, relative to a
measured (optimised or lifted) frame at the same distance. Small: a filled point is an
interpolation, not a measurement, but it still anchors extrapolated ends."""
MIN_TYPICAL_DISTANCE_M = 0.1
"""``smooth_moving_tracks``: a track's median distance is taken as at least this (keeps the data
weight 1 / S^4 finite for a point at the camera)."""


@dataclass(frozen=True)
class FillSettings:
    """What happens to the optimised tracks after the optimisation; the defaults change nothing
    (the reference's output). The optimisation stage's defaults are in its config.

    Attributes:
      fill_gaps: fill the 2D-visible frames without an optimised point (``fill_track_gaps``).
      min_lifted_frames: with ``fill_gaps``, tracks with no optimised frame but at least this
        many lifted frames are filled from their lifted points (0: left empty;
        ``seed_from_lifted``).
      max_extrapolation_frames: with ``fill_gaps``, see ``fill_track_gaps`` (None: no limit).
      snap_static: static tracks take their mean point in every frame (``snap_static_tracks``).
      max_static_reprojection_px: with ``fill_gaps`` or ``snap_static``, see
        ``drop_off_track_static_frames`` (0: off).
      smooth_moving: the ``smoothness`` of ``smooth_moving_tracks`` (0: off).
      smooth_lateral: with ``smooth_moving``, the ``smoothness`` of
        ``track_smooth.smooth_moving_lateral``, run after it (0: off).
      surface_cut: with ``fill_gaps`` or ``snap_static``, each track is cut where it leaves
        its query's surface before the optimisation (``stereo4d.track_cut``; None: off).
    """

    fill_gaps: bool = False
    min_lifted_frames: int = 0
    max_extrapolation_frames: int | None = None
    snap_static: bool = False
    max_static_reprojection_px: float = 0.0
    smooth_moving: float = 0.0
    smooth_lateral: float = 0.0
    surface_cut: SurfaceCutSettings | None = None

    @property
    def changes_output(self) -> bool:
        return self.fill_gaps or self.snap_static or self.smooth_moving > 0

    @property
    def cuts_surface_changes(self) -> bool:
        return self.surface_cut is not None and (self.fill_gaps or self.snap_static)


def static_tracks(motion_px: np.ndarray, mask: np.ndarray, threshold_px: float,
                  percentile: float) -> np.ndarray:
    """[N] bool: the track's ``percentile`` scene motion over ``mask`` frames is below
    ``threshold_px`` (the optimisation's rule for a mostly static track: dynamic weight < 0.5)."""
    level = np.nan_to_num(masked_percentile(motion_px, mask, percentile), nan=0.0)
    return level < threshold_px


def track_mean_points(track3d_world: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """[N, 3] mean of each track's points over its ``visible`` [N, T] frames (0 for tracks with
    none); ``track3d_world`` [N, T, 3], any value off ``visible``."""
    visible = np.asarray(visible, bool)
    count = np.maximum(visible.sum(axis=1), 1)[:, None]
    return np.where(visible[..., None], track3d_world, 0.0).sum(axis=1) / count


def snap_static_tracks(track3d_world: np.ndarray, visible: np.ndarray,
                       static: np.ndarray) -> np.ndarray:
    """Every ``visible`` frame of a ``static`` track takes the track's mean point.

    Args:
      track3d_world: [N, T, 3] optimised points (metres; NaN off ``visible``).
      visible: [N, T] bool, the optimised frames; static: [N] bool (``static_tracks``).
    Returns:
      [N, T, 3] float32: moving tracks unchanged, static ones constant over their visible
      frames, NaN off ``visible``.
    """
    track3d_world = np.asarray(track3d_world, np.float64)
    visible = np.asarray(visible, bool)
    mean_point = track_mean_points(track3d_world, visible)
    snapped = np.asarray(static, bool)[:, None, None] & visible[..., None]
    out = np.where(snapped, mean_point[:, None], track3d_world)
    return np.where(visible[..., None], out, np.nan).astype(np.float32)


def seed_from_lifted(track3d_world: np.ndarray, visible: np.ndarray, lifted: np.ndarray,
                     lifted_visible: np.ndarray, min_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Tracks without an optimised frame but with at least ``min_frames`` lifted frames take
    their lifted points (the others are returned unchanged).

    Args:
      track3d_world: [N, T, 3] optimised points; visible: [N, T] bool, optimised frames.
      lifted: [N, T, 3] lifted points; lifted_visible: [N, T] bool, frames with valid depth.
      min_frames: least number of lifted frames a seeded track has (>= 1).
    Returns:
      (track3d [N, T, 3] float32, NaN off the new visibility; visible [N, T] bool).
    """
    visible = np.asarray(visible, bool)
    lifted_visible = np.asarray(lifted_visible, bool)
    seeded = ~visible.any(axis=1) & (lifted_visible.sum(axis=1) >= max(int(min_frames), 1))
    out_visible = np.where(seeded[:, None], lifted_visible, visible)
    out = np.where(seeded[:, None, None], np.asarray(lifted, np.float64),
                   np.asarray(track3d_world, np.float64))
    return np.where(out_visible[..., None], out, np.nan).astype(np.float32), out_visible


def _interpolate_in_time(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """[N, T] values linearly interpolated over time from the ``known`` [N, T] entries
    (held constant beyond the first / last known one; NaN for rows with none)."""
    num, frames = values.shape
    t = np.broadcast_to(np.arange(frames), (num, frames))
    prev_idx = np.maximum.accumulate(np.where(known, t, -1), axis=1)
    next_idx = np.minimum.accumulate(np.where(known, t, frames)[:, ::-1], axis=1)[:, ::-1]
    has_prev, has_next = prev_idx >= 0, next_idx < frames
    rows = np.arange(num)[:, None]
    v_prev = values[rows, np.clip(prev_idx, 0, frames - 1)]
    v_next = values[rows, np.clip(next_idx, 0, frames - 1)]
    span = np.maximum(next_idx - prev_idx, 1)
    w = np.clip((t - prev_idx) / span, 0.0, 1.0)
    out = np.where(has_prev & has_next, v_prev * (1 - w) + v_next * w,
                   np.where(has_prev, v_prev, v_next))
    return np.where(has_prev | has_next, out, np.nan)


def fill_track_gaps(track3d_world: np.ndarray, visible: np.ndarray, tracks_xy: np.ndarray,
                    visibles_2d: np.ndarray, cameras: PinholeCamera, static: np.ndarray,
                    imh: int, imw: int, max_extrapolation_frames: int | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Fills gaps of optimised tracks.

    A moving track's gaps before its first or after its last optimised frame are filled at the
    nearest optimised frame's depth only up to ``max_extrapolation_frames`` frames from it
    (None: all): a 2D track that is still followed long after (or before) the frames it has
    depth for has often moved onto another surface, at another depth.

    Args:
      track3d_world: [N, T, 3] optimised points (NaN off ``visible``); visible: [N, T] bool.
      tracks_xy: [N, T, 2] the 2D tracks (x, y) px; visibles_2d: [N, T] their visibility.
      cameras: per-frame world-to-camera [T, 3, 4] with normalised intrinsics.
      static: [N] bool (``static_tracks``).
      max_extrapolation_frames: see above.
    Returns:
      (track3d [N, T, 3] float32, NaN off the new visibility; visible [N, T] bool): the
      optimised frames unchanged, plus every 2D-visible frame inside the image of a track that
      has at least one optimised frame.
    """
    track3d_world = np.asarray(track3d_world, np.float64)
    visible = np.asarray(visible, bool)
    xy = np.asarray(tracks_xy, np.float64)
    inside = (xy[..., 0] >= 0) & (xy[..., 1] >= 0) & (xy[..., 0] < imw) & (xy[..., 1] < imh)
    gaps = np.asarray(visibles_2d, bool) & inside & ~visible & visible.any(axis=1)[:, None]
    if max_extrapolation_frames is not None:  # moving tracks: no far extrapolation in time
        frames = np.arange(visible.shape[1])
        first = np.argmax(visible, axis=1)[:, None]
        last = visible.shape[1] - 1 - np.argmax(visible[:, ::-1], axis=1)[:, None]
        beyond = np.maximum(first - frames, frames - last)
        gaps &= np.asarray(static, bool)[:, None] | (beyond <= max_extrapolation_frames)
    out = np.where(visible[..., None], track3d_world, np.nan)
    if not gaps.any():
        return out.astype(np.float32), visible
    mean_point = track_mean_points(track3d_world, visible)  # [N, 3]
    w2c = np.asarray(cameras.world_to_camera, np.float64)  # [T, 3, 4]
    cam_z = np.einsum("tj,ntj->nt", w2c[:, 2, :3], np.nan_to_num(track3d_world)) + w2c[:, 2, 3]
    depth = _interpolate_in_time(np.where(visible, cam_z, 0.0), visible)
    per_frame = PinholeCamera(w2c[:, None], cameras.fx, cameras.fy, cameras.cx, cameras.cy)
    along_ray = per_frame.unproject(xy.transpose(1, 0, 2), np.nan_to_num(depth).T, imh, imw)
    along_ray = along_ray.transpose(1, 0, 2)  # [N, T, 3]
    filled = np.where(np.asarray(static, bool)[:, None, None], mean_point[:, None], along_ray)
    out = np.where(gaps[..., None], filled, out)
    return out.astype(np.float32), visible | gaps


def static_reprojection_px(track3d_world: np.ndarray, tracks_xy: np.ndarray,
                           cameras: PinholeCamera, imh: int, imw: int) -> np.ndarray:
    """[N, T] distance (px) between each 3D point projected into its frame and the 2D track
    there; inf where the point is behind the camera, NaN where it is not finite.

    Args:
      track3d_world: [N, T, 3] metres (NaN allowed); tracks_xy: [N, T, 2] (x, y) px.
      cameras: per-frame world-to-camera [T, 3, 4] with normalised intrinsics.
    """
    points = np.asarray(track3d_world, np.float64)
    finite = np.isfinite(points).all(axis=-1)
    xy, depth, _ = cameras.project(np.nan_to_num(points), imh, imw)  # frame t's camera per [:, t]
    ahead = finite & (depth > 0)
    dist = np.linalg.norm(xy - np.asarray(tracks_xy, np.float64), axis=-1)
    return np.where(ahead, dist, np.where(finite, np.inf, np.nan))


def drop_off_track_static_frames(track3d_world: np.ndarray, visible: np.ndarray,
                                 tracks_xy: np.ndarray, static: np.ndarray,
                                 cameras: PinholeCamera, imh: int, imw: int,
                                 max_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Frames of a ``static`` track whose (snapped or filled) point projects more than
    ``max_px`` from the 2D track become empty.

    A static track is one world point, so its point must project onto the 2D track in every
    frame. Where it does not, the 2D track is on another surface than the one that point
    came from (an occlusion the tracker missed, a drift onto a nearer or farther surface),
    and snapping or gap filling would put a point metres away from the truth there.

    Args:
      track3d_world: [N, T, 3] (NaN off ``visible``); visible: [N, T] bool;
      tracks_xy: [N, T, 2] (x, y) px; static: [N] bool; max_px: <= 0 turns the test off.
    Returns:
      (track3d [N, T, 3] float32, NaN off the new visibility; visible [N, T] bool).
    """
    visible = np.asarray(visible, bool)
    out = np.asarray(track3d_world, np.float32)
    if max_px <= 0:
        return out, visible
    # A non-finite point is not "off": it stays visible, for the stage's health check to refuse.
    off = static_reprojection_px(track3d_world, np.asarray(tracks_xy, np.float64), cameras,
                                 imh, imw) > max_px
    keep = visible & ~(np.asarray(static, bool)[:, None] & off)
    return np.where(keep[..., None], out, np.nan).astype(np.float32), keep


def moving_track_rays(track3d_world: np.ndarray, visible: np.ndarray, static: np.ndarray,
                      cameras: PinholeCamera):
    """What the moving tracks' smoothing steps (``smooth_moving_tracks``, ``track_smooth``)
    start from.

    Args:
      track3d_world: [N, T, 3] metres; visible: [N, T] bool; static: [N] bool.
      cameras: per-frame world-to-camera [T, 3, 4].
    Returns:
      out: [N, T, 3] float64, the points, NaN off ``visible``;
      todo: [n] int, the moving tracks with at least three consecutive visible frames;
      triple: [N, T-2] bool, frames t, t+1, t+2 all visible (indexed by t);
      ray: [n, T, 3] metres, camera centre to point for ``todo`` (0 off ``visible``);
      centres: [T, 3] metres, the camera centres.
    """
    points = np.asarray(track3d_world, np.float64)
    visible = np.asarray(visible, bool)
    out = np.where(visible[..., None], points, np.nan)
    triple = visible[:, 2:] & visible[:, 1:-1] & visible[:, :-2]
    todo = np.flatnonzero(~np.asarray(static, bool) & triple.any(axis=1))
    centres = camera_centres(np.asarray(cameras.world_to_camera))  # [T, 3]
    ray = np.where(visible[todo][..., None], points[todo] - centres, 0.0)
    return out, todo, triple, ray, centres


def smooth_moving_tracks(track3d_world: np.ndarray, visible: np.ndarray, measured: np.ndarray,
                         static: np.ndarray, cameras: PinholeCamera,
                         smoothness: float) -> np.ndarray:
    """Moving tracks' points slid along their rays to a path that is smooth along the rays over
    every visible frame, optimised, seeded and filled together.

    The optimisation smooths each run of optimised frames on its own; gap filling joins runs
    (and extends them) by interpolating the camera depth, so the path bends where a filled
    segment meets an optimised one, and a track seeded from its lifted points keeps the raw
    stereo noise. Here each moving track's distance along its ray, ``s_t`` (so the 2D point is
    kept; ``P_t = C_t + s_t u_t``, camera centre and unit ray), solves

        min_s  sum_t w_t (s_t - s0_t)^2 / S^4
               + smoothness * sum_t ((P_{t+1} - 2 P_t + P_{t-1}) . u_t)^2

    over every three consecutive visible frames, with ``w_t`` 1 on ``measured`` frames and
    ``SMOOTH_FILLED_WEIGHT`` on filled ones and ``S`` the track's median distance: a disparity
    error moves a point by ``S^2 / (f B)`` times it, so ``1 / S^4`` is the stereo depth's
    inverse variance up to a constant and a far track, whose depth is noisier, is smoothed
    more; ``smoothness`` (1 / m^2) is then (disparity noise / (f B)) / (expected acceleration
    along the ray, m per frame^2), squared. The second difference is taken along the ray (the
    optimisation's own dynamic term, stride 1): a point moving at constant velocity is kept
    exactly, and there is no pull towards the camera (the whole 3D second difference shrinks
    with the distance wherever the 2D track turns; on the scratch long clip that version moved
    tracks whose 2D track changed surface metres towards the camera). One pentadiagonal
    [T, T] system per track (``_solve_pentadiagonal``).

    Args:
      track3d_world: [N, T, 3] metres (NaN off ``visible``); visible: [N, T] bool.
      measured: [N, T] bool, the frames with an optimised or lifted point (the others filled).
      static: [N] bool (left unchanged); smoothness: <= 0 turns this off.
      cameras: per-frame world-to-camera [T, 3, 4].
    Returns:
      [N, T, 3] float32, NaN off ``visible``.
    """
    out, todo, triple, ray, centres = moving_track_rays(track3d_world, visible, static, cameras)
    if smoothness <= 0 or todo.size == 0:
        return out.astype(np.float32)
    num_frames = out.shape[1]
    vis = np.asarray(visible, bool)[todo]
    dist = np.linalg.norm(ray, axis=-1)  # [n, T] s0
    unit = ray / np.where(vis & (dist > 0), dist, 1.0)[..., None]
    typical = np.nanmedian(np.where(vis, dist, np.nan), axis=1)[:, None]  # [n, 1] metres
    weight = np.where(np.asarray(measured, bool)[todo], 1.0, SMOOTH_FILLED_WEIGHT)
    weight = np.where(vis, weight / np.maximum(typical, MIN_TYPICAL_DISTANCE_M) ** 4, 1.0)
    ok = triple[todo] * smoothness  # [n, T-2] centred at 1..T-2; off-track frames: s = 0
    # The normal equations are symmetric pentadiagonal, kept in LAPACK's lower band form:
    # band[:, k, t] = A[t + k, t].
    band = np.zeros((todo.size, 3, num_frames))
    rhs = np.where(vis, weight * dist, 0.0)
    # Along-ray second difference at k: coef_before s_{k-1} - 2 s_k + coef_after s_{k+1} + base.
    coef_before = np.einsum("nkc,nkc->nk", unit[:, :-2], unit[:, 1:-1])
    coef_after = np.einsum("nkc,nkc->nk", unit[:, 2:], unit[:, 1:-1])
    base = np.einsum("kc,nkc->nk", centres[2:] - 2.0 * centres[1:-1] + centres[:-2],
                     unit[:, 1:-1])
    cb, cc, ca = coef_before, -2.0, coef_after
    band[:, 0] = weight
    band[:, 0, :-2] += ok * cb * cb
    band[:, 0, 1:-1] += ok * cc * cc
    band[:, 0, 2:] += ok * ca * ca
    band[:, 1, :-2] += ok * cc * cb
    band[:, 1, 1:-1] += ok * ca * cc
    band[:, 2, :-2] += ok * ca * cb
    rhs[:, :-2] -= ok * cb * base
    rhs[:, 1:-1] -= ok * cc * base
    rhs[:, 2:] -= ok * ca * base
    dist_new = _solve_pentadiagonal(band, rhs)
    out[todo] = np.where(vis[..., None], centres + dist_new[..., None] * unit, np.nan)
    return out.astype(np.float32)


def _solve_pentadiagonal(band: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solves N symmetric positive-definite pentadiagonal systems at once
    (``scipy.linalg.solveh_banded``, batched over the first axis).

    Args:
      band: [N, 3, T], ``band[:, k, t] = A[t + k, t]`` (k = 0, 1, 2; unused where t + k >= T).
      rhs: [N, T] (N >= 1).
    Returns:
      [N, T] x with A x = rhs.
    """
    return solveh_banded(band, rhs[..., None], lower=True)[..., 0]
