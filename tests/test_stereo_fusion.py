"""Multi-frame stereo fusion (``stereo4d.backends.stereo_fusion`` and the ``sgbm`` backend's use
of it): on small synthetic sequences with known cameras and exact disparities, fusion lowers the
disparity error of static surfaces, keeps more pixels, fills holes, and leaves a moving object
(that breaks the static-world assumption) unsmeared."""

from __future__ import annotations

import numpy as np

from stereo4d import depth as depth_lib
from stereo4d.backends.classical_stereo import SgbmSettings, SgbmStereo
from stereo4d.backends.stereo_fusion import fuse_sequence, reprojected_disparity
from stereo4d.geometry import focal_length_px
from tests.test_classical_stereo import _texture

HEIGHT, WIDTH = 64, 96
FOCAL_PX = focal_length_px(60.0, 512)  # the suite's 512 px, 60-degree views, cropped
FB_PX_M = FOCAL_PX * depth_lib.BASELINE_M
BACKGROUND_DEPTH_M = 10.0
MOVER_DEPTH_M, MOVER_SPEED_M = 2.0, 0.1  # walks away from the camera 0.1 m per frame
MOVER_HALF_M = 0.1
CAMERA_STEP_M = 0.05  # sideways, per frame
NOISE_PX = 0.08
NUM_FRAMES, RADIUS = 7, 3
NOISY_GREY = 20.0  # image noise (grey levels) under which a single frame rejects many pixels


def _cameras(num_frames: int) -> np.ndarray:
    """camera2world [T, 3, 4]: identity rotation, moving along +x."""
    c2w = np.tile(np.eye(4)[:3], (num_frames, 1, 1))
    c2w[:, 0, 3] = CAMERA_STEP_M * np.arange(num_frames)
    return c2w


def _true_disparities(c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact left disparities [T, H, W] of a fronto-parallel wall at 10 m and a square moving
    away from the camera (in front of it), and the square's mask [T, H, W]."""
    cx, cy = (WIDTH - 1) / 2, (HEIGHT - 1) / 2
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    ray_x, ray_y = (cols - cx) / FOCAL_PX, (rows - cy) / FOCAL_PX
    disparities, movers = [], []
    for t, cam in enumerate(c2w):
        z = MOVER_DEPTH_M + MOVER_SPEED_M * t
        x_world = cam[0, 3] + ray_x * z  # the square is centred on x = 0, y = 0 in the world
        on_mover = (np.abs(x_world) < MOVER_HALF_M) & (np.abs(ray_y * z) < MOVER_HALF_M)
        disparities.append(np.where(on_mover, FB_PX_M / z, FB_PX_M / BACKGROUND_DEPTH_M))
        movers.append(on_mover)
    return np.stack(disparities).astype(np.float32), np.stack(movers)


def test_reprojection_is_exact_for_a_static_wall():
    c2w = _cameras(2)
    truth, mover = _true_disparities(c2w)
    wall = np.where(mover, np.nan, truth)
    moved, _ = reprojected_disparity(wall[0], wall[1], np.full_like(wall[1], NOISE_PX),
                                     _pose(c2w[0], c2w[1]), FOCAL_PX, FB_PX_M)
    seen = np.isfinite(moved)
    assert seen.mean() > 0.5  # the mover and its disocclusion are not seen
    np.testing.assert_allclose(moved[seen], truth[0][seen], atol=1e-4)


def _pose(c2w_from, c2w_to):
    from stereo4d.geometry import relative_pose

    return relative_pose(c2w_from, c2w_to)


def test_fusion_averages_static_noise_and_does_not_smear_a_mover():
    c2w = _cameras(NUM_FRAMES)
    truth, mover = _true_disparities(c2w)
    rng = np.random.default_rng(0)
    measured = truth + rng.normal(0.0, NOISE_PX, truth.shape).astype(np.float32)
    hole = np.zeros(truth.shape[1:], bool)
    hole[5:12, 5:15] = True  # a hole in frame 3's wall, seen by the other frames
    measured[3][hole] = np.nan
    sigma = np.full_like(measured, NOISE_PX)
    fused = list(fuse_sequence(zip(measured, sigma), c2w, RADIUS, FOCAL_PX, FB_PX_M,
                               consistency_sigmas=2.0, fill_holes=True))
    disparity = np.stack([f[0] for f in fused])
    fused_sigma = np.stack([f[1] for f in fused])
    views = np.stack([f[2] for f in fused])
    wall = ~mover & np.isfinite(measured)
    single_error = np.abs(measured - truth)[wall].mean()
    fused_error = np.nanmean(np.abs(disparity - truth)[wall])
    assert fused_error < 0.55 * single_error  # ~1 / sqrt(7) for independent noise
    assert np.median(fused_sigma[wall]) < 0.75 * NOISE_PX  # more pixels pass a noise test
    # The mover changes its disparity by ~0.3-0.7 px per frame: its neighbours are rejected.
    assert np.mean(views[mover] == 1) > 0.9
    mover_error = np.abs(disparity - truth)[mover].mean()
    assert mover_error < 1.2 * np.abs(measured - truth)[mover].mean()
    # The hole is filled from the neighbours, about as precisely as the fused wall.
    filled = disparity[3][hole]
    assert np.isfinite(filled).mean() > 0.9  # a few pixels no splatted neighbour lands on
    assert np.nanmean(np.abs(filled - truth[3][hole])) < 0.6 * single_error


def _shifted_wall_clip(num_frames: int, disparity_px: float, noise_grey: float):
    """Rectified views of a textured fronto-parallel wall (constant disparity) while the rig
    moves sideways: frame k shows the texture shifted by k * disparity * step / baseline px.
    Returns left, right uint8 [T, H, W, 3] and camera2world [T, 3, 4]."""
    depth_m = FB_PX_M / disparity_px
    step_m = 0.03
    shift_px = FOCAL_PX * step_m / depth_m
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    rng = np.random.default_rng(1)

    def view(u):
        rgb = np.stack([_texture(u, y, ch) for ch in range(3)], -1) * 255
        return np.clip(rgb + rng.normal(0, noise_grey, rgb.shape), 0, 255).round().astype(np.uint8)

    left = np.stack([view(x + k * shift_px) for k in range(num_frames)])
    right = np.stack([view(x + disparity_px + k * shift_px) for k in range(num_frames)])
    c2w = np.tile(np.eye(4)[:3], (num_frames, 1, 1))
    c2w[:, 0, 3] = step_m * np.arange(num_frames)
    return left, right, c2w


def test_sgbm_backend_fuses_both_views():
    """Through ``compute_flows``: with the cameras, the wall keeps more pixels after the
    pipeline's left-right check (both views fused) at a lower disparity error."""
    disparity_px = 2.5  # ~11 m: a far wall, where the confidence test rejects most pixels
    left, right, c2w = _shifted_wall_clip(NUM_FRAMES, disparity_px, noise_grey=NOISY_GREY)
    # threshold 0.4 (the default before this round's 0.34): single frames keep a few pixels
    backend = SgbmStereo(SgbmSettings(max_disparity_px=16, fusion_radius_frames=RADIUS,
                                      max_relative_noise=0.4))
    results = {}
    for name, kwargs in (("single", {}), ("fused", {"camera2world": c2w, "focal_px": FOCAL_PX})):
        flows = backend.compute_flows(left, right, **kwargs)
        mid = flows[NUM_FRAMES // 2]
        valid = (depth_lib.stereo_valid_mask(mid["fwd"], mid["bwd"])
                 & (mid["fwd"][..., 0] < 0))[8:-8, 24:-8]  # disparity 0 = rejected
        error = np.abs(-mid["fwd"][..., 0][8:-8, 24:-8] - disparity_px)[valid]
        results[name] = (valid.mean(), error.mean())
    (single_density, single_error), (fused_density, fused_error) = results.values()
    assert fused_density > single_density + 0.5, results  # measured: 0.02 -> 0.99
    assert fused_error < 0.8 * single_error, results  # measured: 0.065 -> 0.025 px


def test_fusion_off_is_the_single_frame_result():
    """--fusion_radius=0 --temporal_refine=false with cameras, and no cameras at all, give the
    single-frame result."""
    left, right, c2w = _shifted_wall_clip(2, 4.0, noise_grey=2.0)
    off = SgbmStereo(SgbmSettings(max_disparity_px=16, fusion_radius_frames=0,
                                  temporal_refine=False))
    with_cams = off.compute_flows(left, right, camera2world=c2w, focal_px=FOCAL_PX)
    without = SgbmStereo(SgbmSettings(max_disparity_px=16)).compute_flows(left, right)
    for a, b in zip(with_cams, without):
        np.testing.assert_array_equal(a["fwd"], b["fwd"])
        np.testing.assert_array_equal(a["bwd"], b["bwd"])


def test_each_view_fuses_its_own_measurements():
    """The backend's fused flows are exactly ``fuse_sequence`` of each view's own measured
    disparities with that view's cameras (the right camera moved by the baseline)."""
    from stereo4d.backends.stereo_fusion import right_camera2world

    left, right, c2w = _shifted_wall_clip(3, 2.5, noise_grey=NOISY_GREY)
    backend = SgbmStereo(SgbmSettings(max_disparity_px=16, fusion_radius_frames=1))
    flows = backend.compute_flows(left, right, camera2world=c2w, focal_px=FOCAL_PX)
    measured = [backend.measure(lf, rf) for lf, rf in zip(left, right)]
    cameras = (c2w, right_camera2world(c2w, depth_lib.BASELINE_M))
    for view, key, sign in ((0, "fwd", -1.0), (1, "bwd", 1.0)):
        with np.errstate(invalid="ignore"):  # NaN disparity x inf noise: NaN sigma
            frames = [(m[view], m[view + 2] * m[view]) for m in measured]
        fused = fuse_sequence(frames, cameras[view], 1, FOCAL_PX, FB_PX_M, 2.0, False)
        for flow, (disparity, sigma, _) in zip(flows, fused):
            with np.errstate(divide="ignore", invalid="ignore"):
                expected = backend.finish(disparity, sigma / disparity)
            np.testing.assert_array_equal(flow[key][..., 0], sign * np.nan_to_num(expected))
