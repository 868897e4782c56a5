"""Round trips of the rig / rectified-camera conventions and the camera metrics (no COLMAP)."""

import numpy as np
import pytest

from stereo4d import geometry
from stereo4d.metrics import cameras as camera_metrics

BASELINE_M = 0.063


def _random_rig(rng):
    return np.stack([geometry.rotation_xyz_deg(*rng.uniform(-8, 8, 3)) for _ in range(2)])


def _random_path(rng, num=10):
    rots = np.stack([geometry.rotation_xyz_deg(*rng.uniform(-20, 20, 3)) for _ in range(num)])
    return np.concatenate([rots, rng.normal(size=(num, 3, 1))], axis=-1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_relative_pose_and_rectification_round_trip(seed):
    rng = np.random.default_rng(seed)
    rig = _random_rig(rng)
    right_from_left = geometry.relative_pose_from_rectified(rig, BASELINE_M)
    rectified, baseline = geometry.rectifying_rotations(right_from_left)
    assert baseline == pytest.approx(BASELINE_M, rel=1e-12)
    assert geometry.is_rotation(rectified)
    # Same relative pose back, exactly.
    np.testing.assert_allclose(geometry.relative_pose_from_rectified(rectified, baseline),
                               right_from_left, atol=1e-12)
    # It differs from the truth only by one rotation about the baseline (x), common to both eyes.
    gauge = rectified[0].T @ rig[0]
    np.testing.assert_allclose(rectified[1].T @ rig[1], gauge, atol=1e-12)
    np.testing.assert_allclose(gauge @ [1.0, 0, 0], [1.0, 0, 0], atol=1e-12)
    errors, _ = camera_metrics.rig_rotation_errors_deg(rectified, rig)
    np.testing.assert_allclose(errors, 0.0, atol=1e-5)


def test_rectified_rays_are_epipolar_rows():
    """A point seen by both raw eyes lands on the same row of both rectified views."""
    rng = np.random.default_rng(3)
    rig = _random_rig(rng)
    rectified, _ = geometry.rectifying_rotations(geometry.relative_pose_from_rectified(rig, 0.1))
    point_left = rng.uniform([-2, -2, 3], [2, 2, 9], (50, 3))  # rectified-left coordinates (truth)
    raw_left = point_left @ rig[0].T
    raw_right = (point_left - [0.1, 0, 0]) @ rig[1].T
    rect_left = raw_left @ rectified[0]  # rectified2rig^T maps raw rays to rectified rays
    rect_right = raw_right @ rectified[1]
    np.testing.assert_allclose(rect_left[:, 1] / rect_left[:, 2],
                               rect_right[:, 1] / rect_right[:, 2], atol=1e-12)


def test_camera2world_rig_round_trip_and_convention():
    rng = np.random.default_rng(4)
    rig = _random_rig(rng)
    camera2world = _random_path(rng)
    cam_from_world = geometry.rig_cam_from_world_from_rectified(camera2world, rig[0])
    np.testing.assert_allclose(
        geometry.rectified_camera2world_from_rig(cam_from_world, rig[0]), camera2world, atol=1e-12)
    # Convention: a world point in raw-left coordinates is R_0 times its rectified coordinates.
    point = rng.normal(size=3)
    rect = geometry.invert_rigid(camera2world[0])
    in_rect = rect[:, :3] @ point + rect[:, 3]
    in_raw = cam_from_world[0, :, :3] @ point + cam_from_world[0, :, 3]
    np.testing.assert_allclose(in_raw, rig[0] @ in_rect, atol=1e-12)


def test_reanchor_keeps_relative_motion():
    camera2world = _random_path(np.random.default_rng(5))
    anchored = geometry.reanchor_camera2world(camera2world)
    np.testing.assert_allclose(anchored[0], np.eye(4)[:3], atol=1e-12)
    steps = np.linalg.norm(np.diff(camera2world[:, :, 3], axis=0), axis=1)
    np.testing.assert_allclose(np.linalg.norm(np.diff(anchored[:, :, 3], axis=0), axis=1), steps)
    rel = geometry.invert_rigid(camera2world[3])[:, :3] @ camera2world[5, :, :3]
    rel_a = geometry.invert_rigid(anchored[3])[:, :3] @ anchored[5, :, :3]
    np.testing.assert_allclose(rel_a, rel, atol=1e-12)


def test_trajectory_metrics_known_values():
    rng = np.random.default_rng(6)
    truth = _random_path(rng, 20)
    moved = truth.copy()
    turn = geometry.rotation_xyz_deg(0, 30, 0)
    moved[:, :, :3] = turn @ truth[:, :, :3]
    moved[:, :, 3] = truth[:, :, 3] @ turn.T + [1.0, 2.0, 3.0]
    same = camera_metrics.trajectory_errors(moved, truth)  # a rigid motion of the world only
    assert same["ate_m"] < 1e-9 and same["rpe_rot_deg"] < 1e-6 and same["scale_error"] < 1e-9
    scaled = truth.copy()
    scaled[:, :, 3] *= 1.1
    assert camera_metrics.trajectory_errors(scaled, truth)["scale_error"] == pytest.approx(0.1)
    aligned, _rig = camera_metrics.align_to_reference(moved, np.stack([np.eye(3)] * 2), truth,
                                                     np.stack([np.eye(3)] * 2))
    np.testing.assert_allclose(aligned, truth, atol=1e-9)


def test_vertical_disparity_of_a_rig_error():
    rig = _random_rig(np.random.default_rng(7))
    assert camera_metrics.vertical_disparity_px(rig, rig, BASELINE_M) < 1e-9
    tilted = rig.copy()
    tilted[1] = tilted[1] @ geometry.rotation_xyz_deg(0.1, 0, 0)  # right eye pitched 0.1 deg
    # 0.1 deg at f = 443 px (512 px, 60 deg) is 0.77 px of vertical disparity at the centre,
    # growing towards the corners (up to 1 / cos^2 of the half diagonal there, ~1.4x).
    disparity = camera_metrics.vertical_disparity_px(tilted, rig, BASELINE_M)
    assert 0.77 <= disparity <= 0.95


def test_alignment_fixes_the_roll_about_a_straight_path():
    """Centres on a line leave the roll about it free (Umeyama picks any); the orientations fix
    it, also when the estimated rectification differs by a rotation about the baseline."""
    rng = np.random.default_rng(8)
    num = 12
    rig = _random_rig(rng)
    rots = np.stack([geometry.rotation_xyz_deg(*rng.uniform(-2, 2, 3)) for _ in range(num)])
    centres = np.stack([np.zeros(num), np.zeros(num), np.linspace(0, 1.5, num)], axis=-1)
    truth = np.concatenate([rots, centres[..., None]], axis=-1)
    roll = geometry.rotation_xyz_deg(0, 0, 1.0)  # the world turned about the path (z)
    # The unobservable rotation about the baseline and an error of the baseline's direction.
    spin = geometry.rotation_xyz_deg(0.7, 0.2, -0.1)
    est_rig = rig @ spin
    est = np.concatenate([roll @ rots @ spin, (centres @ roll.T + 0.3)[..., None]], axis=-1)
    aligned, aligned_rig = camera_metrics.align_to_reference(est, est_rig, truth, rig)
    np.testing.assert_allclose(aligned, truth, atol=1e-9)
    np.testing.assert_allclose(aligned_rig, rig, atol=1e-9)


def test_rig_error_parts():
    rig = _random_rig(np.random.default_rng(9))
    # Both rectified frames turned about their y axis: the baseline direction, nothing relative.
    turned = rig @ geometry.rotation_xyz_deg(0, 0.08, 0)
    parts = camera_metrics.rig_error_parts_deg(turned, rig)
    assert parts["baseline_deg"] == pytest.approx(0.08, abs=1e-6)
    assert parts["relative_deg"] < 1e-5
    # The right eye alone pitched: relative only.
    pitched = rig.copy()
    pitched[1] = pitched[1] @ geometry.rotation_xyz_deg(0.1, 0, 0)
    parts = camera_metrics.rig_error_parts_deg(pitched, rig)
    assert parts["relative_deg"] == pytest.approx(0.1, abs=1e-6)
    assert parts["baseline_deg"] < 1e-5
