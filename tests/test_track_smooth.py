"""Lateral smoothing of moving tracks: the 2D tracker's noise across the rays is lowered against
the truth, each point keeps its distance along its ray, exact constant-velocity tracks stay."""

import numpy as np

from stereo4d.geometry import PinholeCamera, rotation_xyz_deg
from stereo4d.metrics.tracks3d import jitter_m, mean_error_m
from stereo4d.track_opt import camera_centres
from stereo4d.track_smooth import _lateral_bases, smooth_moving_lateral

FRAMES = 20
NUM = 16
ANGLE_NOISE_RAD = 0.3 / 443.0  # 0.3 px of 2D noise at a 443 px focal length


def _movers_with_lateral_noise(seed=0):
    """A walking, turning camera and movers 2-8 m away at constant velocity; their points moved
    across the rays by ``ANGLE_NOISE_RAD`` times their distance (the 2D tracker's noise), the
    distance along the ray exact. Returns (truth [N, T, 3], noisy [N, T, 3], cameras)."""
    rng = np.random.default_rng(seed)
    w2c = np.zeros((FRAMES, 3, 4))
    for t in range(FRAMES):
        rot = rotation_xyz_deg(0.5 * np.sin(t), 1.0 * t, 0.0)
        w2c[t, :, :3] = rot
        w2c[t, :, 3] = -rot @ np.array([0.03 * t, 0.01 * np.sin(t), 0.05 * t])
    cams = PinholeCamera.from_hfov(w2c, 60.0)
    depth = rng.uniform(2.0, 8.0, NUM)
    start = np.stack([rng.uniform(-0.3, 0.3, NUM) * depth, rng.uniform(-0.2, 0.2, NUM) * depth,
                      depth], -1)
    velocity = rng.uniform(-0.04, 0.04, (NUM, 3))  # metres per frame
    truth = start[:, None] + np.arange(FRAMES)[None, :, None] * velocity[:, None]
    ray = truth - camera_centres(w2c)
    dist = np.linalg.norm(ray, axis=-1, keepdims=True)
    unit = ray / dist
    noise = rng.normal(0.0, 1.0, truth.shape)
    noise -= np.sum(noise * unit, axis=-1, keepdims=True) * unit  # across the ray only
    return truth, truth + ANGLE_NOISE_RAD * dist * noise, cams


def test_lateral_smoothing_lowers_jitter_and_error_against_truth():
    truth, noisy, cams = _movers_with_lateral_noise()
    visible = np.ones((NUM, FRAMES), bool)
    visible[0, 5:8] = False  # a gap: the runs either side are smoothed on their own
    visible[1, :] = False
    visible[1, 3:5] = True  # too short for a second difference: unchanged
    noisy = np.where(visible[..., None], noisy, np.nan)
    moving = np.zeros(NUM, bool)
    out = smooth_moving_lateral(noisy, visible, moving, cams, smoothness=1.0)
    jit_before, jit_after = jitter_m(noisy, visible), jitter_m(out, visible)
    assert jit_before > 2e-3  # 0.3 px at 2-8 m: millimetres per frame
    assert jit_after < 0.3 * jit_before
    assert mean_error_m(out, truth, visible) < 0.8 * mean_error_m(noisy, truth, visible)
    # Each point keeps its distance along its own ray: the move is orthogonal to the ray.
    ray = noisy - camera_centres(np.asarray(cams.world_to_camera))
    unit = ray / np.linalg.norm(ray, axis=-1, keepdims=True)
    along = np.sum((out - noisy) * unit, axis=-1)[visible]
    np.testing.assert_allclose(along, 0.0, atol=1e-5)
    np.testing.assert_array_equal(np.isnan(out[..., 0]), ~visible)
    np.testing.assert_allclose(out[1, 3:5], noisy[1, 3:5], atol=1e-6)
    # Exact tracks at constant velocity, static tracks and smoothness 0: unchanged.
    exact = smooth_moving_lateral(truth, np.ones((NUM, FRAMES), bool), moving, cams, 1.0)
    np.testing.assert_allclose(exact, truth, atol=1e-5)
    kept = smooth_moving_lateral(noisy, visible, np.ones(NUM, bool), cams, 1.0)
    np.testing.assert_array_equal(kept, noisy.astype(np.float32))
    np.testing.assert_array_equal(smooth_moving_lateral(noisy, visible, moving, cams, 0.0),
                                  noisy.astype(np.float32))


def test_lateral_smoothing_is_the_least_squares_solution():
    """The banded normal equations give the dense least-squares optimum of the documented cost."""
    _, noisy, cams = _movers_with_lateral_noise(seed=3)
    smoothness = 2.0
    out = smooth_moving_lateral(noisy[:1], np.ones((1, FRAMES), bool), np.zeros(1, bool), cams,
                                smoothness)
    points = noisy[0]
    ray = points - camera_centres(np.asarray(cams.world_to_camera))
    dist = np.linalg.norm(ray, axis=-1)
    bases = _lateral_bases(ray / dist[:, None])  # [T, 2, 3]
    # Residuals stacked: |x_t| / r_t, then sqrt(smoothness) * (second difference of P + E^T x).
    num_second = FRAMES - 2
    design = np.zeros((2 * FRAMES + 3 * num_second, 2 * FRAMES))
    target = np.zeros(2 * FRAMES + 3 * num_second)
    design[np.arange(2 * FRAMES), np.arange(2 * FRAMES)] = np.repeat(1.0 / dist, 2)
    for k in range(num_second):
        rows = 2 * FRAMES + 3 * k + np.arange(3)
        for offset, coef in enumerate((1.0, -2.0, 1.0)):
            frame = k + offset
            design[rows, 2 * frame:2 * frame + 2] = np.sqrt(smoothness) * coef * bases[frame].T
        second = points[k + 2] - 2.0 * points[k + 1] + points[k]
        target[rows] = -np.sqrt(smoothness) * second
    offsets = np.linalg.lstsq(design, target, rcond=None)[0].reshape(FRAMES, 2)
    expected = points + np.einsum("tic,ti->tc", bases, offsets)
    np.testing.assert_allclose(out[0], expected, atol=1e-5)
