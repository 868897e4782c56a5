"""Scene-motion displacement (stereo4d.motion): known values on tiny hand-made scenes."""

from __future__ import annotations

import math

import numpy as np

from stereo4d.geometry import project_frames
from stereo4d.motion import scene_motion_displacement_px

IMH = 240
IMW = 320
HFOV_DEG = 60.0
FX = 0.5 / math.tan(math.radians(HFOV_DEG / 2))
INTR = (FX, FX * IMW / IMH, 0.5, 0.5)  # square pixels on a non-square image
NUM_FRAMES = 24


def _yaw(angle_rad: float) -> np.ndarray:
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _moving_camera(num_frames: int) -> np.ndarray:
    """[T, 3, 4] world-to-camera: camera walks forward and sideways while yawing."""
    extr = []
    for t in range(num_frames):
        cam_to_world = _yaw(0.01 * t)
        centre = np.array([0.02 * t, 0.0, 0.05 * t])
        rot = cam_to_world.T
        extr.append(np.concatenate([rot, -(rot @ centre)[:, None]], axis=1))
    return np.stack(extr)


def _static_camera(num_frames: int) -> np.ndarray:
    return np.tile(np.concatenate([np.eye(3), np.zeros((3, 1))], axis=1), (num_frames, 1, 1))


def test_projection_known_pixel():
    """A point on the optical axis lands on the image centre; one 1 m right at 2 m depth lands
    fx_px / 2 to the right."""
    extr = _static_camera(1)
    pts = np.array([[[0.0, 0.0, 2.0]], [[1.0, 0.0, 2.0]], [[0.0, 0.0, -1.0]]])
    xy, in_view, depth = project_frames(pts, extr, INTR, IMH, IMW)
    np.testing.assert_allclose(xy[0, 0], [IMW / 2, IMH / 2], atol=1e-9)
    np.testing.assert_allclose(xy[1, 0], [IMW / 2 + FX * IMW / 2, IMH / 2], atol=1e-9)
    np.testing.assert_array_equal(in_view[:, 0], [True, True, False])  # behind the camera
    np.testing.assert_allclose(depth[:, 0], [2.0, 2.0, -1.0])


def test_static_point_moving_camera_has_no_motion():
    """World-fixed points seen by a moving, rotating camera: camera motion is factored out."""
    extr = _moving_camera(NUM_FRAMES)
    rng = np.random.default_rng(0)
    points = np.stack([rng.uniform(-1, 1, 5), rng.uniform(-0.5, 0.5, 5), rng.uniform(4, 6, 5)], -1)
    track = np.repeat(points[:, None], NUM_FRAMES, axis=1)
    visible = np.ones(track.shape[:2], dtype=bool)
    motion = scene_motion_displacement_px(track, visible, extr, INTR, IMH, IMW)
    assert motion.shape == (5, NUM_FRAMES) and motion.dtype == np.float32
    assert np.abs(motion).max() < 1e-6


def test_moving_point_expected_displacement():
    """A point sliding sideways at v m/frame at depth z, static camera: at frame t the largest
    displacement is to frame max(t - 16, 0), i.e. fx_px * v * min(t, 16) / z pixels."""
    depth_m, speed_m = 4.0, 0.01
    t = np.arange(NUM_FRAMES)
    track = np.stack([speed_m * t - 0.1, np.zeros(NUM_FRAMES), np.full(NUM_FRAMES, depth_m)], -1)[
        None
    ]
    visible = np.ones((1, NUM_FRAMES), dtype=bool)
    motion = scene_motion_displacement_px(
        track, visible, _static_camera(NUM_FRAMES), INTR, IMH, IMW
    )
    expected = FX * IMW * speed_m * np.minimum(t, 16) / depth_m
    np.testing.assert_allclose(motion[0], expected, atol=1e-4)

    # Hiding frames 0..7 removes them as partners: frame 10 can only reach back to frame 8.
    visible[0, :8] = False
    motion = scene_motion_displacement_px(
        track, visible, _static_camera(NUM_FRAMES), INTR, IMH, IMW
    )
    assert np.all(motion[0, :9] == 0.0)
    np.testing.assert_allclose(motion[0, 10], FX * IMW * speed_m * 2 / depth_m, atol=1e-4)
    # Shorter trace: only 3 frames back.
    motion3 = scene_motion_displacement_px(
        track, np.ones_like(visible), _static_camera(NUM_FRAMES), INTR, IMH, IMW, trace_frames=3
    )
    np.testing.assert_allclose(motion3[0, 5:], FX * IMW * speed_m * 3 / depth_m, atol=1e-4)


def test_out_of_view_and_nan_points_do_not_count():
    """A partner frame whose projection leaves the image, or is NaN, contributes nothing."""
    track = np.tile(np.array([0.0, 0.0, 4.0]), (1, 6, 1))
    track[0, 1] = [100.0, 0.0, 4.0]  # far outside the image
    track[0, 2] = np.nan
    visible = np.ones((1, 6), dtype=bool)
    motion = scene_motion_displacement_px(track, visible, _static_camera(6), INTR, IMH, IMW)
    assert np.all(np.isfinite(motion))
    np.testing.assert_array_equal(motion, np.zeros((1, 6), dtype=np.float32))


def test_empty_input():
    motion = scene_motion_displacement_px(
        np.zeros((0, 5, 3)), np.zeros((0, 5), bool), _static_camera(5), INTR, IMH, IMW
    )
    assert motion.shape == (0, 5)
