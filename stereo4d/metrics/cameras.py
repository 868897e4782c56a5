"""Accuracy of estimated cameras against the truth (synthetic clips).

* Trajectory: ATE (RMSE of camera centres after a rigid Umeyama alignment, no scale: the
  estimate is metric) and RPE (rotation angle of the relative motion between consecutive frames,
  compared with the truth's), with ``evo``'s definitions; the Sim(3) scale of the alignment too.
* Rig: ``rectified2rig`` errors per eye after removing the one rotation about the baseline that
  the video cannot observe (both eyes share it; see ``geometry.rectifying_rotations``).
* Vertical disparity: the rows a scene point lands on in the estimated rectified left and right
  views must agree; measured on points of the true geometry at a spread of depths.
"""

from __future__ import annotations

import numpy as np

from stereo4d import geometry

__all__ = [
    "align_to_reference",
    "baseline_gauge_rotation",
    "common_rig_rotation",
    "rig_error_parts_deg",
    "rig_rotation_errors_deg",
    "trajectory_errors",
    "vertical_disparity_px",
]

#: Depths (metres) of the test points of ``vertical_disparity_px``.
TEST_DEPTHS_M = (1.0, 2.0, 5.0, 10.0, 20.0)


def _angle_deg(rot: np.ndarray) -> np.ndarray:
    """Rotation angle (degrees) of rotations [..., 3, 3]."""
    cos = (np.trace(rot, axis1=-2, axis2=-1) - 1.0) / 2.0
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def _to_evo(camera2world: np.ndarray, timestamps_s: np.ndarray):
    from evo.core.trajectory import PoseTrajectory3D

    poses = np.tile(np.eye(4), (len(camera2world), 1, 1))
    poses[:, :3, :4] = camera2world[:, :3, :4]
    return PoseTrajectory3D(poses_se3=list(poses), timestamps=np.asarray(timestamps_s, float))


def trajectory_errors(est_camera2world: np.ndarray, true_camera2world: np.ndarray) -> dict:
    """ATE / RPE of an estimated metric trajectory.

    Args:
      est_camera2world, true_camera2world: [T, 3, 4] camera-to-world (metres).

    Returns: ``ate_m`` (RMSE), ``path_m`` (true path length), ``ate_fraction`` (ate / path),
      ``rpe_rot_deg`` (RMSE per frame), ``rpe_trans_m`` (RMSE per frame), ``scale_error``
      (|estimate's scale / truth's - 1|, from a Sim(3) alignment).
    """
    import copy

    from evo.core import metrics

    times = np.arange(len(est_camera2world), dtype=float)
    ref = _to_evo(true_camera2world, times)
    est = _to_evo(est_camera2world, times)
    est_se3 = copy.deepcopy(est)
    est_se3.align(ref, correct_scale=False)
    ape = metrics.APE(metrics.PoseRelation.translation_part)
    ape.process_data((ref, est_se3))
    rpe_rot = metrics.RPE(metrics.PoseRelation.rotation_angle_deg, delta=1,
                          delta_unit=metrics.Unit.frames)
    rpe_rot.process_data((ref, est))
    rpe_trans = metrics.RPE(metrics.PoseRelation.translation_part, delta=1,
                            delta_unit=metrics.Unit.frames)
    rpe_trans.process_data((ref, est))
    est_sim3 = copy.deepcopy(est)
    _, _, scale = est_sim3.align(ref, correct_scale=True)
    path_m = float(np.linalg.norm(np.diff(true_camera2world[:, :, 3], axis=0), axis=1).sum())
    ate = float(ape.get_statistic(metrics.StatisticsType.rmse))
    return {
        "ate_m": ate,
        "path_m": path_m,
        "ate_fraction": ate / max(path_m, 1e-12),
        "rpe_rot_deg": float(rpe_rot.get_statistic(metrics.StatisticsType.rmse)),
        "rpe_trans_m": float(rpe_trans.get_statistic(metrics.StatisticsType.rmse)),
        "scale_error": abs(1.0 / float(scale) - 1.0),
    }


def common_rig_rotation(est_rectified2rig: np.ndarray, true_rectified2rig: np.ndarray):
    """Rotation Q [3, 3] (any axis) that best maps the estimate onto the truth:
    ``est[e] @ Q ~ true[e]`` for both eyes (chordal mean, closed form). Beyond the rotation about
    the baseline it holds the error of the baseline's direction (``rig_error_parts_deg``)."""
    return _nearest_rotation(np.einsum("eji,ejk->ik", np.asarray(est_rectified2rig, float),
                                       np.asarray(true_rectified2rig, float)))


def _nearest_rotation(m: np.ndarray) -> np.ndarray:
    """The rotation [3, 3] closest to ``m`` [3, 3] in the Frobenius norm (SVD, det +1): with
    ``m`` a sum of ``A_i^T B_i`` products, the chordal-mean solution of ``A_i R ~ B_i``."""
    u, _, vt = np.linalg.svd(m)
    return u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt


def baseline_gauge_rotation(est_rectified2rig: np.ndarray, true_rectified2rig: np.ndarray):
    """Rotation G [3, 3] about the rectified x axis (the baseline) that best maps the estimate
    onto the truth: ``est[e] @ G ~ true[e]`` for both eyes (closed form)."""
    m = np.einsum("eji,ejk->ik", np.asarray(est_rectified2rig, float),
                  np.asarray(true_rectified2rig, float))
    angle = np.arctan2(m[2, 1] - m[1, 2], m[1, 1] + m[2, 2])
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rig_rotation_errors_deg(est_rectified2rig: np.ndarray, true_rectified2rig: np.ndarray):
    """Per-eye angle (degrees) between estimated and true ``rectified2rig`` [2, 3, 3], after the
    common unobservable rotation about the baseline is removed. Returns ([2] errors, gauge_deg)."""
    gauge = baseline_gauge_rotation(est_rectified2rig, true_rectified2rig)
    est = np.asarray(est_rectified2rig, float) @ gauge
    errors = _angle_deg(np.swapaxes(est, -1, -2) @ np.asarray(true_rectified2rig, float))
    return errors, float(_angle_deg(gauge))


def rig_error_parts_deg(est_rectified2rig: np.ndarray, true_rectified2rig: np.ndarray) -> dict:
    """The two physical parts of a ``rectified2rig`` [2, 3, 3] error (degrees).

    ``relative_deg``: error of the eyes' relative rotation (raw right from raw left), the part
    rectification quality depends on (vertical disparity of distant points). ``baseline_deg``:
    error of the baseline's direction in the raw left eye (the rectified x axis); a common
    rotation of both rectified frames by that angle is absorbed by ``camera2world`` for every
    ray and only moves the assumed right-eye centre, by ``baseline * angle`` (0.09 mm at
    0.08 degrees), giving a vertical disparity of ``angle * disparity`` (0.04 px at 30 px)."""
    est = np.asarray(est_rectified2rig, float)
    true = np.asarray(true_rectified2rig, float)
    rel_est, rel_true = est[1] @ est[0].T, true[1] @ true[0].T
    axis_est, axis_true = est[0][:, 0], true[0][:, 0]
    cos = np.clip(axis_est @ axis_true / np.linalg.norm(axis_est) / np.linalg.norm(axis_true),
                  -1.0, 1.0)
    return {"relative_deg": float(_angle_deg(rel_est.T @ rel_true)),
            "baseline_deg": float(np.degrees(np.arccos(cos)))}


def vertical_disparity_px(est_rectified2rig, true_rectified2rig, baseline_m: float,
                          hfov_deg: float = 60.0, size_px: int = 512, grid: int = 16) -> float:
    """Median |row difference| (pixels) of scene points between the estimated rectified left and
    right perspective views (``size_px`` square, ``hfov_deg``), the points placed along the rays
    of a ``grid`` x ``grid`` pixel grid of the left view at ``TEST_DEPTHS_M`` in the true rig."""
    est = np.asarray(est_rectified2rig, float) @ baseline_gauge_rotation(est_rectified2rig,
                                                                         true_rectified2rig)
    true = np.asarray(true_rectified2rig, float)
    f_px = geometry.focal_length_px(hfov_deg, size_px)
    px = (np.arange(grid) + 0.5) * size_px / grid - size_px / 2
    xg, yg = np.meshgrid(px, px)
    rays = np.stack([xg / f_px, yg / f_px, np.ones_like(xg)], -1).reshape(-1, 3)
    rows = []
    for depth in TEST_DEPTHS_M:
        # Estimated rectified left ray -> raw left eye -> true rectified left frame -> point.
        ray_true = rays @ est[0].T @ true[0]
        point = ray_true / ray_true[:, 2:3] * depth
        right_true = point - np.array([baseline_m, 0.0, 0.0])
        ray_right_est = right_true @ true[1].T @ est[1]
        left_row = rays[:, 1] / rays[:, 2] * f_px
        right_row = ray_right_est[:, 1] / ray_right_est[:, 2] * f_px
        rows.append(np.abs(right_row - left_row))
    return float(np.median(np.concatenate(rows)))


def _raw_left_orientations(camera2world: np.ndarray, rectified2rig: np.ndarray) -> np.ndarray:
    """World-from-raw-left-eye rotations [T, 3, 3]: ``R_rect @ rectified2rig[0]^T``."""
    return np.asarray(camera2world, float)[:, :, :3] @ np.asarray(rectified2rig, float)[0].T


def align_to_reference(est_camera2world, est_rectified2rig, true_camera2world, true_rectified2rig):
    """The estimate in the truth's world frame and rectified frames (for scoring downstream
    results against the truth; the stage's own output keeps its first camera as the world).

    World: the rotation A is the chordal mean of ``W_true[t] @ W_est[t]^T`` over the frames, with
    ``W`` the raw left eye's world orientation (``_raw_left_orientations``): the raw eye is what
    the video observes, so the world points (raw rays times depth) land where the truth's do.
    Aligning the camera centres alone (Umeyama, as ATE does) leaves the roll about a
    near-straight path poorly determined: a tenth of a degree there moves every point by a
    quarter of the tightest APD3D threshold (0.45 % of its depth). The translation maps the
    estimate's centroid of centres onto the truth's.

    Rectified frames: both are turned by Q (``common_rig_rotation``), and every camera with them,
    so each raw ray keeps its world direction. The evaluation looks the truth up by rectified
    pixel, so the rectified frames must coincide: Q holds the unobservable rotation about the
    baseline and the error of the baseline's direction, which is small physically (it moves the
    assumed right-eye centre by ``baseline * angle``, 0.3 mm at 0.3 degrees) but would turn every
    rectified pixel's ray by that angle against the truth's view. That error is reported by
    ``rig_error_parts_deg`` and ``rig_rotation_errors_deg``, not by the downstream scores.

    Returns: camera2world [T, 3, 4] (``A @ c2w_est @ Q``, centres ``A c + b``) and rectified2rig
    [2, 3, 3] (``est @ Q``).
    """
    est_c = np.asarray(est_camera2world, float)
    true_c = np.asarray(true_camera2world, float)
    cross = np.einsum("tij,tkj->ik", _raw_left_orientations(true_c, true_rectified2rig),
                      _raw_left_orientations(est_c, est_rectified2rig))
    rot = _nearest_rotation(cross)
    trans = true_c[:, :, 3].mean(axis=0) - rot @ est_c[:, :, 3].mean(axis=0)
    common = common_rig_rotation(est_rectified2rig, true_rectified2rig)
    aligned = np.concatenate([rot @ est_c[:, :, :3] @ common,
                              (est_c[:, :, 3] @ rot.T + trans)[..., None]], axis=-1)
    return aligned, np.asarray(est_rectified2rig, float) @ common
