"""Cutting a 2D track where it leaves its surface (a "surface change"), from its stereo depth.

Over a long clip the 2D tracker sometimes slides a track from one surface onto another without
marking an occlusion: a point on a far facade is followed onto a person passing in front of it,
a point on the ground onto a wall behind it. Every frame after the slide then lifts the wrong
surface, and the optimisation, the static snapping and the gap filling carry that error into the
final 3D track. The query frame defines the track's surface, so the rule walks outwards from the
query frame, forwards and backwards in time, and compares each frame's stereo depth with the
depth its last accepted point predicts there:

    r_t = log(z_t / z_pred_t),   z_pred_t = camera depth of the reference point in frame t

The reference point is the lifted point of the last accepted frame, so the camera's own motion
is removed exactly for a static surface, and a moving object only adds its motion over the few
frames since that frame. A frame with ``|r_t| <= max_log_depth_jump`` is accepted and becomes the
reference. A frame beyond it starts a surface change only when at least ``min_persistent`` of
the ``persistence_frames`` valid frames from it onwards lie beyond it on the same side (the new
surface is nearer, or farther); otherwise it is a single stereo outlier, skipped. Every frame
from the last accepted frame onwards (away from the query) is then cut: no longer visible in 2D
and not lifted, so the optimisation and the gap filling ignore it. Frames without valid stereo
depth are neither accepted nor tested. The walk needs an anchor: when the first frame with valid
depth on one side of the query frame lies more than ``max_anchor_frames`` from it, that whole
side is cut (on long clips such tracks were mostly picked up again by the tracker, after an
occlusion, on another surface, and their depth there was all the 3D track had).

The walk is a loop over frames, vectorised over tracks (``T`` steps of ``[N]`` arrays, plus a
``[N, window]`` look-ahead per step).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stereo4d.geometry import PinholeCamera

__all__ = ["SurfaceCutSettings", "cut_surface_changes", "surface_change_keep"]


@dataclass(frozen=True)
class SurfaceCutSettings:
    """Thresholds of ``surface_change_keep``.

    Attributes:
      max_log_depth_jump: |log(depth / predicted depth)| above which a frame is off the track's
        surface (0.3: 35 % nearer or farther).
      persistence_frames: valid frames, from a candidate frame on, that decide whether the jump
        persists.
      min_persistent: how many of them must be off the surface on the same side for a cut.
      lookahead_frames: frames searched for those valid frames (holes in the stereo depth are
        skipped; fewer valid frames than ``min_persistent`` in it: no cut).
      max_anchor_frames: a side of the query (before / after it) whose first frame with valid
        depth is more than this many frames from the query frame is cut whole: nothing ties
        the depth found there to the query's surface (None: no such cut).
    """

    max_log_depth_jump: float = 0.3
    persistence_frames: int = 5
    min_persistent: int = 4
    lookahead_frames: int = 12
    max_anchor_frames: int | None = 20


def _camera_depth(cameras: PinholeCamera, frames: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Camera z of world ``points`` [..., 3] in the frames ``frames`` [...] (int)."""
    return cameras.at(frames).to_camera(points)[..., 2]


def _sweep(points: np.ndarray, valid: np.ndarray, depth_m: np.ndarray, start: np.ndarray,
           step: int, cameras: PinholeCamera, settings: SurfaceCutSettings) -> np.ndarray:
    """One direction of the walk. Returns [N] int: the first frame to cut (in the walk's
    direction, from ``start``), or -1 (forward) / ``T`` (backward) when nothing is cut."""
    num_tracks, num_frames = valid.shape
    rows = np.arange(num_tracks)
    none = num_frames if step < 0 else -1
    cut = np.full(num_tracks, none)
    ref_point = np.zeros((num_tracks, 3))
    ref_frame = np.full(num_tracks, -1)
    done = np.zeros(num_tracks, bool)
    offsets = step * np.arange(settings.lookahead_frames)
    for k in range(num_frames):
        frame = start + step * k
        inside = (frame >= 0) & (frame < num_frames) & ~done
        if not inside.any():
            break
        f = np.clip(frame, 0, num_frames - 1)
        if settings.max_anchor_frames is not None and k > settings.max_anchor_frames:
            unanchored = inside & (ref_frame < 0)
            cut[unanchored], done[unanchored] = start[unanchored] + step, True
            inside &= ~unanchored
        here = inside & valid[rows, f]
        first = here & (ref_frame < 0)
        ref_point[first], ref_frame[first] = points[first, f[first]], f[first]
        test = np.flatnonzero(here & ~first)
        if not len(test):
            continue
        ratio = _log_ratio(depth_m[test, f[test]], cameras, f[test], ref_point[test])
        ok = np.abs(ratio) <= settings.max_log_depth_jump
        accepted = test[ok]
        ref_point[accepted], ref_frame[accepted] = points[accepted, f[accepted]], f[accepted]
        off = test[~ok]
        if not len(off):
            continue
        ahead = f[off, None] + offsets[None]  # [M, L]
        in_clip = (ahead >= 0) & (ahead < num_frames)
        ahead = np.clip(ahead, 0, num_frames - 1)
        ahead_valid = valid[off[:, None], ahead] & in_clip
        ahead_valid &= np.cumsum(ahead_valid, axis=1) <= settings.persistence_frames
        ahead_ratio = _log_ratio(depth_m[off[:, None], ahead], cameras, ahead,
                                 ref_point[off, None])
        side = np.sign(ratio[~ok])[:, None]
        beyond = ahead_valid & (ahead_ratio * side > settings.max_log_depth_jump)
        persists = beyond.sum(axis=1) >= settings.min_persistent
        cutting = off[persists]
        cut[cutting] = ref_frame[cutting] + step  # everything after the last accepted frame
        done[cutting] = True
    return cut


def _log_ratio(depth_m: np.ndarray, cameras: PinholeCamera, frames: np.ndarray,
               ref_point: np.ndarray) -> np.ndarray:
    """log(measured depth / depth of ``ref_point`` in ``frames``); large where the prediction
    is behind the camera (a surface change by any measure)."""
    predicted = _camera_depth(cameras, frames, ref_point)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.log(depth_m / predicted)
    return np.where(np.isfinite(ratio), ratio, np.inf)


def surface_change_keep(lifted_world: np.ndarray, lifted_valid: np.ndarray,
                        query_frames: np.ndarray, cameras: PinholeCamera,
                        settings: SurfaceCutSettings = SurfaceCutSettings()) -> np.ndarray:
    """Frames of each track kept by the surface-change rule (module docstring).

    Args:
      lifted_world: [N, T, 3] tracks lifted with their stereo depth (world metres,
        ``tracks.lift_tracks_to_3d``); lifted_valid: [N, T] bool, frames with valid depth.
      query_frames: [N] int, each track's query frame (where the walk starts).
      cameras: per-frame world-to-camera cameras ([T, 3, 4]).
    Returns:
      [N, T] bool: False on the frames cut (from the last frame on the query's surface outwards),
      True elsewhere.
    """
    lifted_world = np.asarray(lifted_world, np.float64)
    valid = np.asarray(lifted_valid, bool)
    num_frames = valid.shape[1]
    start = np.clip(np.asarray(query_frames).astype(np.int64), 0, num_frames - 1)
    frames = np.broadcast_to(np.arange(num_frames), valid.shape)
    # The sampled stereo depth [N, T]: the per-frame cameras broadcast over the tracks (no
    # [N, T, 3, 4] gather of the cameras).
    depth_m = cameras.to_camera(lifted_world)[..., 2]
    after = _sweep(lifted_world, valid, depth_m, start, 1, cameras, settings)
    before = _sweep(lifted_world, valid, depth_m, start, -1, cameras, settings)
    keep = np.ones(valid.shape, bool)
    keep &= ~((after[:, None] >= 0) & (frames >= after[:, None]))
    keep &= ~(frames <= before[:, None]) | (before[:, None] >= num_frames)
    return keep


def cut_surface_changes(visibles: np.ndarray, lifted_world: np.ndarray, lifted_valid: np.ndarray,
                        query_frames: np.ndarray, cameras: PinholeCamera,
                        settings: SurfaceCutSettings = SurfaceCutSettings()
                        ) -> tuple[np.ndarray, np.ndarray]:
    """The 2D visibility [N, T] and the lifted validity [N, T] with the cut frames removed
    (``surface_change_keep``)."""
    keep = surface_change_keep(lifted_world, lifted_valid, query_frames, cameras, settings)
    return np.asarray(visibles, bool) & keep, np.asarray(lifted_valid, bool) & keep
