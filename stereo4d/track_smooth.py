"""Lateral smoothing of moving 3D tracks: the 2D tracker's noise, seen across the rays.

``track_fill.smooth_moving_tracks`` smooths a moving track's distance along its rays and keeps
its 2D points, so the 2D tracker's sub-pixel noise stays in the output as scatter across the
rays (0.1 px at 3 m with a 443 px focal length is 0.7 mm, in another direction each frame).
On the scratch long clip x8 (150 frames) that lateral part was nearly all of the moving tracks'
second difference after the along-ray smoothing (2.10 of 2.12 mm per frame triple; along the
rays 0.11 mm, below the truth's 0.50 mm). This step moves each point across its ray only (its
distance along the ray is kept) towards a path with a small 3D second difference, each frame's
lateral offset weighted by the inverse variance of the 2D noise there (``1 / distance^2``).
Static tracks are one point already (``track_fill.snap_static_tracks``) and are left alone.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import solveh_banded

from stereo4d.geometry import PinholeCamera
from stereo4d.track_fill import moving_track_rays

__all__ = ["smooth_moving_lateral"]

MIN_DISTANCE_M = 0.1
"""A point's distance from the camera is taken as at least this (keeps the lateral data weight
``1 / distance^2`` finite for a point at the camera)."""
SECOND_DIFFERENCE_COEFS = (1.0, -2.0, 1.0)
"""``P_{t-1} - 2 P_t + P_{t+1}``: the weights of the three frames of a second difference."""
LATERAL_DIMS = 2
"""Unknowns per frame: the offsets along two unit vectors orthogonal to the frame's ray."""


def _lateral_bases(unit: np.ndarray) -> np.ndarray:
    """Two unit vectors orthogonal to each ray and to each other.

    Args:
      unit: [..., 3] unit rays.
    Returns:
      [..., 2, 3] (rows e1, e2); any such pair will do, the cost does not depend on the choice.
    """
    helper = np.where(np.abs(unit[..., 1:2]) < 0.9, np.array([0.0, 1.0, 0.0]),
                      np.array([1.0, 0.0, 0.0]))  # a vector not parallel to the ray
    first = np.cross(unit, helper)
    first /= np.linalg.norm(first, axis=-1, keepdims=True)
    return np.stack([first, np.cross(unit, first)], axis=-2)


def smooth_moving_lateral(track3d_world: np.ndarray, visible: np.ndarray, static: np.ndarray,
                          cameras: PinholeCamera, smoothness: float) -> np.ndarray:
    """Moving tracks' points moved across their rays to a smoother path, keeping each point's
    distance along its own ray.

    Each moving track's point ``P_t`` (from the along-ray smoothing) becomes
    ``P_t + E_t^T x_t``, with ``E_t`` [2, 3] two unit vectors orthogonal to the frame's ray
    (camera centre to ``P_t``) and ``x_t`` [2] metres, solving

        min_x  sum_t |x_t|^2 / r_t^2  +  smoothness * sum_t |P'_{t+1} - 2 P'_t + P'_{t-1}|^2

    over every three consecutive visible frames (``P'`` the moved points, ``r_t`` the point's
    distance from the camera): the 2D tracker's noise moves a point across its ray by
    ``r_t`` times its angular error, so ``1 / r_t^2`` is that offset's inverse variance up to a
    constant, and ``smoothness`` (1 / m^2) is (angular noise, radians / expected acceleration,
    m per frame^2) squared. A point moving at constant velocity has no second difference and is
    kept exactly. One banded [2T, 2T] system per track (bandwidth 5: the unknowns of frames
    ``t`` and ``t + 2`` interact), solved for all tracks at once.

    Args:
      track3d_world: [N, T, 3] metres (NaN off ``visible``); visible: [N, T] bool.
      static: [N] bool (left unchanged); smoothness: <= 0 turns this off.
      cameras: per-frame world-to-camera [T, 3, 4].
    Returns:
      [N, T, 3] float32, NaN off ``visible``.
    """
    out, todo, triple, ray, _ = moving_track_rays(track3d_world, visible, static, cameras)
    if smoothness <= 0 or todo.size == 0:
        return out.astype(np.float32)
    num_frames = out.shape[1]
    vis = np.asarray(visible, bool)[todo]
    pts = np.where(vis[..., None], out[todo], 0.0)  # [n, T, 3]
    dist = np.linalg.norm(ray, axis=-1)  # [n, T]
    unit = np.where(vis[..., None], ray / np.where(vis & (dist > 0), dist, 1.0)[..., None],
                    np.array([0.0, 0.0, 1.0]))  # off-track frames: any unit vector
    bases = _lateral_bases(unit)  # [n, T, 2, 3]
    ok = triple[todo] * smoothness  # [n, T-2], second difference k spans frames k, k+1, k+2
    residual = pts[:, 2:] - 2.0 * pts[:, 1:-1] + pts[:, :-2]  # [n, T-2, 3]
    num, dims = todo.size, LATERAL_DIMS
    # Normal equations, symmetric banded, in LAPACK's lower form: band[:, k, i] = A[i + k, i],
    # unknown i = dims * frame + component.
    band = np.zeros((num, 2 * dims + 2, dims * num_frames))
    rhs = np.zeros((num, num_frames, dims))
    first = np.arange(num_frames - 2)
    jac = [coef * bases[:, offset:offset + num_frames - 2]
           for offset, coef in enumerate(SECOND_DIFFERENCE_COEFS)]  # each [n, T-2, 2, 3]
    for col_off in range(3):
        rhs[:, col_off:col_off + num_frames - 2] -= ok[..., None] * np.einsum(
            "nkic,nkc->nki", jac[col_off], residual)
        for row_off in range(col_off, 3):
            block = ok[..., None, None] * np.einsum("nkic,nkjc->nkij", jac[row_off],
                                                    jac[col_off])  # rows: frame k + row_off
            for i in range(dims):
                for j in range(dims):
                    lower = dims * (row_off - col_off) + i - j
                    if lower >= 0:  # the upper triangle is the same by symmetry
                        band[:, lower, dims * (first + col_off) + j] += block[:, :, i, j]
    data_weight = np.where(vis, 1.0 / np.maximum(dist, MIN_DISTANCE_M) ** 2, 1.0)
    band[:, 0] += np.repeat(data_weight, dims, axis=1)
    offsets = solveh_banded(band, rhs.reshape(num, dims * num_frames)[..., None],
                            lower=True)[..., 0].reshape(num, num_frames, dims)
    moved = pts + np.einsum("ntic,nti->ntc", bases, offsets)
    out[todo] = np.where(vis[..., None], moved, np.nan)
    return out.astype(np.float32)
