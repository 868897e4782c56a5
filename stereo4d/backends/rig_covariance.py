"""How well a stereo video determines its rig: covariance of the bundle adjustment's rig pose.

The bundle adjustment (``colmap_cameras``) estimates the right eye's pose in the left eye,
``right_from_left = [R | b d]`` with the baseline length ``b`` known and its direction ``d`` a
unit vector. Its precision follows from the adjustment's own least-squares problem: with
pixel noise of standard deviation ``sigma_px`` the covariance of all parameters is
``sigma^2 (J^T J)^-1`` at the solution (Gauss-Newton; robust weights ignored). Points are
eliminated by the Schur complement (each point's 3 x 3 block), the gauge is fixed by holding the
first frame's pose (6 DoF) and the baseline's length (the scale), and what remains is inverted.

Parameters and their perturbations (tangent spaces):

* frame ``f`` >= 1: ``rig_from_world`` ``[R_f | t_f]``: ``R_f <- exp([w]) R_f``, ``t_f <- t_f + u``;
* the rig: ``R <- exp([phi]) R`` (3) and ``d <- normalise(d + a e1 + c e2)`` with ``e1, e2``
  orthonormal and perpendicular to ``d`` (2: the baseline's direction, radians);
* points: ``X <- X + dX`` (eliminated).

An observation of point ``X`` by eye ``e`` in frame ``f``: ``y = R_f X + t_f`` (the left eye's
coordinates), ``x = y`` (left) or ``R y + b d`` (right), pixel ``f_px (x/z, y/z) + principal``.

Pure numpy; the arrays come from ``colmap_cameras`` (the only module that touches COLMAP).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["RigObservations", "RigPrecision", "observation_jacobians", "rig_precision"]

#: Rig parameters: 3 of the relative rotation, 2 of the baseline's direction.
RIG_PARAMS = 5
#: Parameters of one frame pose (rotation, translation).
POSE_PARAMS = 6
#: Points per chunk of the Schur complement (bounds the [chunk, params, 3] work array).
SCHUR_CHUNK_POINTS = 2000
#: Fewest observations per point kept (a point seen once constrains nothing).
MIN_POINT_OBSERVATIONS = 2


@dataclass(frozen=True)
class RigObservations:
    """A solved rig bundle adjustment, as arrays (any consistent length unit).

    Attributes:
      rig_from_world: [F, 3, 4] the left eye's (reference sensor's) world-to-camera per frame.
      right_from_left: [3, 4] the right eye's pose in the left eye.
      points_xyz: [P, 3] world points.
      point_index, frame_index, eye: [N] int per observation (eye 0 left, 1 right).
      xy_px: [N, 2] observed keypoints (pixels).
      focal_px: focal length (pixels); principal_xy: [2] principal point (pixels).
    """

    rig_from_world: np.ndarray
    right_from_left: np.ndarray
    points_xyz: np.ndarray
    point_index: np.ndarray
    frame_index: np.ndarray
    eye: np.ndarray
    xy_px: np.ndarray
    focal_px: float
    principal_xy: np.ndarray


@dataclass(frozen=True)
class RigPrecision:
    """Result of ``rig_precision``.

    Attributes:
      sigma_px: pixel noise used (RMS of the reprojection residuals).
      baseline_dir_std_deg: RMS angle (degrees) of the baseline direction's error expected from
        that noise: ``sqrt(trace)`` of its 2 x 2 covariance.
      relative_rot_std_deg: the same for the relative rotation (3 x 3 covariance).
      covariance_rig: [5, 5] covariance of (phi, baseline direction) in radians^2.
      observations, points: counts used.
    """

    sigma_px: float
    baseline_dir_std_deg: float
    relative_rot_std_deg: float
    covariance_rig: np.ndarray
    observations: int
    points: int


def _skew(v: np.ndarray) -> np.ndarray:
    """[..., 3] -> [..., 3, 3] cross-product matrices."""
    z = np.zeros(v.shape[:-1])
    return np.stack([np.stack([z, -v[..., 2], v[..., 1]], -1),
                     np.stack([v[..., 2], z, -v[..., 0]], -1),
                     np.stack([-v[..., 1], v[..., 0], z], -1)], -2)


def _direction_basis(direction: np.ndarray) -> np.ndarray:
    """[3, 2] orthonormal vectors perpendicular to the unit ``direction`` [3]."""
    helper = np.eye(3)[np.argmin(np.abs(direction))]
    e1 = np.cross(direction, helper)
    e1 /= np.linalg.norm(e1)
    return np.stack([e1, np.cross(direction, e1)], axis=1)


def observation_jacobians(obs: RigObservations):
    """Residuals and Jacobians of every observation.

    Returns: residual [N, 2] (projection - observed, pixels), J_pose [N, 2, 6] (frame's w, u),
    J_rig [N, 2, 5] (phi, baseline direction; zero for the left eye), J_point [N, 2, 3].
    """
    rot_f = obs.rig_from_world[obs.frame_index, :, :3]
    rotated = np.einsum("nij,nj->ni", rot_f, obs.points_xyz[obs.point_index])
    y = rotated + obs.rig_from_world[obs.frame_index, :, 3]
    rot, trans = obs.right_from_left[:, :3], obs.right_from_left[:, 3]
    baseline = np.linalg.norm(trans)
    right = obs.eye == 1
    x = np.where(right[:, None], y @ rot.T + trans, y)
    dx_dy = np.where(right[:, None, None], rot, np.eye(3))  # [N, 3, 3]
    z = x[:, 2]
    proj = np.zeros((len(x), 2, 3))
    proj[:, 0, 0] = proj[:, 1, 1] = obs.focal_px / z
    proj[:, :, 2] = -obs.focal_px * x[:, :2] / z[:, None] ** 2
    residual = obs.focal_px * x[:, :2] / z[:, None] + obs.principal_xy - obs.xy_px
    j_y = proj @ dx_dy  # [N, 2, 3]
    j_pose = np.concatenate([j_y @ -_skew(rotated), j_y], axis=2)
    basis = _direction_basis(trans / baseline)
    j_rig = np.concatenate([proj @ -_skew(y @ rot.T), proj @ (baseline * basis)], axis=2)
    j_rig[~right] = 0.0
    j_point = j_y @ rot_f
    return residual, j_pose, j_rig, j_point


def rig_precision(obs: RigObservations, sigma_px: float | None = None) -> RigPrecision:
    """Covariance of the rig's relative rotation and baseline direction (module docstring).

    Args:
      obs: the solved adjustment's arrays.
      sigma_px: pixel noise (default: the RMS of the residuals, per coordinate).
    """
    residual, j_pose, j_rig, j_point = observation_jacobians(obs)
    counts = np.bincount(obs.point_index, minlength=len(obs.points_xyz))
    keep = counts[obs.point_index] >= MIN_POINT_OBSERVATIONS
    residual, j_pose, j_rig, j_point = residual[keep], j_pose[keep], j_rig[keep], j_point[keep]
    frame, point = obs.frame_index[keep], obs.point_index[keep]
    if sigma_px is None:
        sigma_px = float(np.sqrt(np.mean(residual ** 2)))
    num_frames = len(obs.rig_from_world)
    num_params = RIG_PARAMS + POSE_PARAMS * (num_frames - 1)
    # Columns of each observation's 11 local parameters in the reduced vector; frame 0 is the
    # gauge (its columns are dropped by sending them to a scratch column past the end).
    scratch = num_params
    pose_cols = RIG_PARAMS + POSE_PARAMS * (frame[:, None] - 1) + np.arange(POSE_PARAMS)
    pose_cols[frame == 0] = scratch
    cols = np.concatenate([np.broadcast_to(np.arange(RIG_PARAMS), (len(frame), RIG_PARAMS)),
                           pose_cols], axis=1)  # [N, 11]
    j_local = np.concatenate([j_rig, j_pose], axis=2)  # [N, 2, 11]
    # H_aa = sum J_a^T J_a (scattered), H_pp per point, H_ap per point.
    h_aa = np.zeros((num_params + 1, num_params + 1))
    block = np.einsum("nki,nkj->nij", j_local, j_local)
    np.add.at(h_aa, (cols[:, :, None], cols[:, None, :]), block)
    h_pp = np.zeros((len(obs.points_xyz), 3, 3))
    np.add.at(h_pp, point, np.einsum("nki,nkj->nij", j_point, j_point))
    w_local = np.einsum("nki,nkj->nij", j_local, j_point)  # [N, 11, 3]
    used = np.unique(point)
    schur = h_aa[:num_params, :num_params].copy()
    for start in range(0, len(used), SCHUR_CHUNK_POINTS):
        chunk = used[start:start + SCHUR_CHUNK_POINTS]
        slot = np.full(len(obs.points_xyz), -1)
        slot[chunk] = np.arange(len(chunk))
        sel = slot[point] >= 0
        h_ap = np.zeros((len(chunk), num_params + 1, 3))
        np.add.at(h_ap, (slot[point[sel]][:, None], cols[sel]), w_local[sel])
        # S -= sum_p H_ap H_pp^-1 H_pa with H_pp^-1 = L L^T (Cholesky of the inverse).
        chol = np.linalg.cholesky(np.linalg.inv(h_pp[chunk]))
        k = (h_ap[:, :num_params] @ chol).transpose(0, 2, 1).reshape(-1, num_params)
        schur -= k.T @ k
    covariance = np.linalg.inv(schur) * sigma_px ** 2
    cov_rig = covariance[:RIG_PARAMS, :RIG_PARAMS]
    return RigPrecision(
        sigma_px=sigma_px,
        baseline_dir_std_deg=float(np.degrees(np.sqrt(np.trace(cov_rig[3:, 3:])))),
        relative_rot_std_deg=float(np.degrees(np.sqrt(np.trace(cov_rig[:3, :3])))),
        covariance_rig=cov_rig, observations=int(keep.sum()), points=len(used))
