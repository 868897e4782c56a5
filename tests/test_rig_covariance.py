"""Rig precision from the bundle adjustment's covariance (backends/rig_covariance.py)."""

import numpy as np
from scipy.spatial.transform import Rotation

from stereo4d.backends import rig_covariance as rc

FOCAL_PX = 300.0
PRINCIPAL = np.array([320.0, 320.0])
BASELINE = 0.063


def _problem(num_frames=5, num_points=40, depth_m=(1.0, 6.0), seed=0, noise_px=0.0):
    """A rig walking forward past random points; every point seen by both eyes in every frame."""
    rng = np.random.default_rng(seed)
    rot = Rotation.from_rotvec([0.01, -0.02, 0.015]).as_matrix()
    direction = np.array([-1.0, 0.03, 0.02])
    right_from_left = np.concatenate([rot, (BASELINE * direction / np.linalg.norm(direction))
                                      [:, None]], axis=1)
    frames = []
    for f in range(num_frames):
        r = Rotation.from_rotvec([0.0, 0.02 * f, 0.005 * f]).as_matrix()
        centre = np.array([0.02 * f, 0.0, 0.1 * f])
        frames.append(np.concatenate([r, (-r @ centre)[:, None]], axis=1))
    frames = np.stack(frames)
    depth = rng.uniform(*depth_m, num_points)
    points = np.stack([rng.uniform(-0.5, 0.5, num_points) * depth,
                       rng.uniform(-0.5, 0.5, num_points) * depth, depth], axis=1)
    point, frame, eye = (a.ravel() for a in np.meshgrid(np.arange(num_points),
                                                        np.arange(num_frames), [0, 1],
                                                        indexing="ij"))
    obs = rc.RigObservations(frames, right_from_left, points, point, frame, eye,
                             np.zeros((len(point), 2)), FOCAL_PX, PRINCIPAL)
    residual = rc.observation_jacobians(obs)[0]
    xy = residual + rng.normal(0.0, noise_px, residual.shape)  # residual = projection here
    return rc.RigObservations(frames, right_from_left, points, point, frame, eye, xy,
                              FOCAL_PX, PRINCIPAL)


def _perturbed(obs, which, index, step):
    """The problem with one parameter moved by ``step`` along the module's tangent spaces."""
    frames, rig, points = obs.rig_from_world.copy(), obs.right_from_left.copy(), \
        obs.points_xyz.copy()
    kind, sub = which
    if kind == "pose":
        if sub < 3:
            frames[index, :, :3] = Rotation.from_rotvec(step * np.eye(3)[sub]).as_matrix() @ \
                frames[index, :, :3]
        else:
            frames[index, sub - 3, 3] += step
    elif kind == "rig":
        if sub < 3:
            rig[:, :3] = Rotation.from_rotvec(step * np.eye(3)[sub]).as_matrix() @ rig[:, :3]
        else:
            d = rig[:, 3] / BASELINE
            moved = d + step * rc._direction_basis(d)[:, sub - 3]
            rig[:, 3] = BASELINE * moved / np.linalg.norm(moved)
    else:
        points[index, sub] += step
    return rc.RigObservations(frames, rig, points, obs.point_index, obs.frame_index, obs.eye,
                              obs.xy_px, obs.focal_px, obs.principal_xy)


def test_jacobians_match_finite_differences():
    obs = _problem(num_frames=3, num_points=6)
    residual, j_pose, j_rig, j_point = rc.observation_jacobians(obs)
    step = 1e-6
    for kind, count, jac, owner in (("pose", 6, j_pose, obs.frame_index),
                                    ("rig", 5, j_rig, None), ("point", 3, j_point,
                                                              obs.point_index)):
        for sub in range(count):
            index = 1 if kind != "rig" else 0
            moved = rc.observation_jacobians(_perturbed(obs, (kind, sub), index, step))[0]
            numeric = (moved - residual) / step
            rows = np.ones(len(residual), bool) if owner is None else owner == index
            np.testing.assert_allclose(jac[rows, :, sub], numeric[rows], rtol=1e-4, atol=1e-2)
            assert np.all(numeric[~rows] == 0)


def test_schur_path_equals_the_dense_inverse():
    """The rig block from the chunked Schur complement equals sigma^2 (J^T J)^-1 of the full
    Jacobian (points included, frame 0 held for the gauge)."""
    obs = _problem(num_frames=4, num_points=30, noise_px=0.3)
    residual, j_pose, j_rig, j_point = rc.observation_jacobians(obs)
    num_frames, num_points, n = 4, 30, len(residual)
    cols = rc.RIG_PARAMS + rc.POSE_PARAMS * (num_frames - 1)
    dense = np.zeros((n, 2, cols + 3 * num_points))
    dense[:, :, :5] = j_rig
    for i in range(n):
        f, p = obs.frame_index[i], obs.point_index[i]
        if f:
            start = rc.RIG_PARAMS + rc.POSE_PARAMS * (f - 1)
            dense[i, :, start:start + 6] = j_pose[i]
        dense[i, :, cols + 3 * p:cols + 3 * p + 3] = j_point[i]
    jac = dense.reshape(2 * n, -1)
    sigma = 0.3
    expected = np.linalg.inv(jac.T @ jac)[:5, :5] * sigma ** 2
    original_chunk = rc.SCHUR_CHUNK_POINTS
    try:
        rc.SCHUR_CHUNK_POINTS = 7  # several chunks
        result = rc.rig_precision(obs, sigma_px=sigma)
    finally:
        rc.SCHUR_CHUNK_POINTS = original_chunk
    np.testing.assert_allclose(result.covariance_rig, expected, rtol=1e-6, atol=1e-18)
    assert result.observations == n and result.points == num_points
    # The default noise is the residuals' RMS (about the 0.3 px that was added).
    assert 0.2 < rc.rig_precision(obs).sigma_px < 0.4


def test_near_points_determine_the_baseline_direction():
    """Only stereo parallax of near points sees the baseline direction: points 10x further
    away leave it far less certain, while the relative rotation stays known."""
    near = rc.rig_precision(_problem(depth_m=(0.5, 2.0)), sigma_px=0.3)
    far = rc.rig_precision(_problem(depth_m=(5.0, 20.0)), sigma_px=0.3)
    assert far.baseline_dir_std_deg > 5 * near.baseline_dir_std_deg
    assert far.relative_rot_std_deg < 3 * near.relative_rot_std_deg
    assert 0 < near.baseline_dir_std_deg < 1.0
