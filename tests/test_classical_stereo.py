"""Classical (SGBM) stereo backend and stereo metrics: accuracy on exact renders and Middlebury.

``render_layered_pair`` draws a rectified pair with known disparity: a slanted
textured background plane and a fronto-parallel textured box in front of it.
Both views sample the same analytic, band-limited textures at the surface point
each pixel sees, so ground truth is exact (also used by ``test_stereo_stage`` and
``benchmarks/bench_stereo.py``).
"""

from __future__ import annotations

import numpy as np
import pytest

from stereo4d import depth as depth_lib
from stereo4d.backends.classical_stereo import SgbmSettings, SgbmStereo
from stereo4d.backends.sgbm_matching import fill_from_background, left_right_consistent
from stereo4d.backends.stereo_refine import (
    RESIDUAL_FLOOR_GREY2,
    disparity_spread,
    refine_disparity,
    relative_disparity_noise,
)
from stereo4d.metrics import stereo as metrics

HFOV_DEG = 60.0
#: Waves per texture channel; wavelengths are drawn in this range (px), band-limited.
TEXTURE_WAVES = 12
TEXTURE_WAVELENGTH_PX = (4.0, 24.0)


def _texture(u: np.ndarray, v: np.ndarray, seed: int) -> np.ndarray:
    """Analytic texture in [0, 1] at continuous surface coordinates (u, v) in pixels."""
    rng = np.random.default_rng(seed)
    out = np.zeros(np.broadcast(u, v).shape)
    for _ in range(TEXTURE_WAVES):
        k = 2 * np.pi / rng.uniform(*TEXTURE_WAVELENGTH_PX)
        angle, phase = rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
        out += np.cos(k * (np.cos(angle) * u + np.sin(angle) * v) + phase)
    return 0.5 + out / (2 * np.sqrt(2 * TEXTURE_WAVES))


def render_layered_pair(height: int = 96, width: int = 128,
                        background: tuple[float, float, float] = (2.0, 0.004, 0.003),
                        foreground_disparity_px: float = 20.0,
                        foreground_box: tuple[float, float, float, float] = (0.35, 0.75, 0.3, 0.7),
                        seed: int = 0):
    """A rectified pair with exact disparities.

    Args:
      background: (a, b, c): background disparity ``a + b x + c y`` at left pixel (x, y).
      foreground_disparity_px: disparity of the box.
      foreground_box: (x0, x1, y0, y1) of the box in the left view, fractions of the size.
    Returns:
      left, right uint8 [H, W, 3]; disparity_left, disparity_right float64 [H, W] (pixels;
      left pixel x matches right pixel x - d_left, right pixel x matches left x + d_right).
    """
    a, b, c = background
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    x0, x1 = foreground_box[0] * width, foreground_box[1] * width
    rows = (y >= foreground_box[2] * height) & (y < foreground_box[3] * height)
    fg_left = rows & (x >= x0) & (x < x1)
    disparity_left = np.where(fg_left, foreground_disparity_px, a + b * x + c * y)
    x_left_fg = x + foreground_disparity_px
    fg_right = rows & (x_left_fg >= x0) & (x_left_fg < x1)
    x_left_of_right = np.where(fg_right, x_left_fg, (x + a + c * y) / (1 - b))

    def shade(u, foreground):
        channels = [np.where(foreground, _texture(u, y, seed + 100 + ch), _texture(u, y, seed + ch))
                    for ch in range(3)]
        return np.clip(np.stack(channels, -1) * 255, 0, 255).round().astype(np.uint8)

    return (shade(x, fg_left), shade(x_left_of_right, fg_right), disparity_left,
            x_left_of_right - x)


def evaluate_pair(flows, disparity_left, disparity_right):
    """Metrics of one frame's flows against the layered pair's ground truth."""
    depth_m = depth_lib.depth_maps_from_flows(flows, HFOV_DEG, remove_floaters=False)[0]
    eval_mask = metrics.non_occluded_mask(disparity_left, disparity_right)
    depth_gt = depth_lib.depth_from_disparity(disparity_left, HFOV_DEG)
    return metrics.stereo_metrics(flows[0]["fwd"], depth_m, disparity_left, depth_gt, eval_mask)


@pytest.fixture(scope="module")
def layered():
    return render_layered_pair(192, 256)


def test_layered_pair_occlusion_ground_truth(layered):
    _, _, disp_left, disp_right = layered
    mask = metrics.non_occluded_mask(disp_left, disp_right)
    # Occluded: left of the box, a strip as wide as the disparity jump (20 - ~2.5 px), on
    # the box rows; plus the left border where x - d < 0.
    row = 96
    occluded_cols = np.flatnonzero(~mask[row])
    box_x0 = int(np.ceil(0.35 * 256))  # first box column
    strip = occluded_cols[occluded_cols > 10]
    assert strip.min() >= box_x0 - 19 and strip.max() == box_x0 - 1
    assert 16 <= len(strip) <= 18
    assert np.all(~mask[:, 0]) and np.all(mask[:, 5])


@pytest.mark.parametrize("refine", [False, True])
def test_sgbm_accuracy_on_layered_pair(layered, refine):
    left, right, disp_left, disp_right = layered
    settings = SgbmSettings(refine_iterations=SgbmSettings().refine_iterations if refine else 0)
    flows = SgbmStereo(settings).compute_flows(left[None], right[None])
    m = evaluate_pair(flows, disp_left, disp_right)
    assert m["density"] >= 0.95  # measured 0.975 / 0.986
    if refine:  # measured: EPE 0.074 px, bad-1 0.008, AbsRel 1.7 %, delta 0.990
        assert m["epe_px"] <= 0.09 and m["bad1"] <= 0.015
        assert m["abs_rel"] <= 0.02 and m["delta_1.25"] >= 0.985
    else:  # SGBM's parabola sub-pixel fit alone: EPE 0.17 px, bad-1 0.003, AbsRel 5.8 %
        assert m["epe_px"] <= 0.25 and m["bad1"] <= 0.01


def test_refinement_beats_plain_sgbm(layered):
    left, right, disp_left, disp_right = layered
    plain = evaluate_pair(SgbmStereo(SgbmSettings(refine_iterations=0)).compute_flows(
        left[None], right[None]), disp_left, disp_right)
    refined = evaluate_pair(SgbmStereo().compute_flows(left[None], right[None]),
                            disp_left, disp_right)
    assert refined["epe_px"] < 0.6 * plain["epe_px"]  # measured 0.074 vs 0.170
    assert refined["abs_rel"] < 0.4 * plain["abs_rel"]  # measured 1.7 % vs 5.8 %


def test_refinement_on_noisy_far_surface():
    """Far background (1.6 px disparity, like the synthetic clip's buildings) and
    sensor-like noise: window averaging brings depth AbsRel from ~7 % to ~2-3 %."""
    left, right, disp_left, disp_right = render_layered_pair(192, 256,
                                                            background=(1.6, 0.002, 0.001))
    rng = np.random.default_rng(0)
    left, right = (np.clip(im + rng.normal(0.0, 4.0, im.shape), 0, 255).round().astype(np.uint8)
                   for im in (left, right))
    figures = {}
    for name, settings in {
        "default": SgbmSettings(),
        "no confidence": SgbmSettings(max_relative_noise=0.0),
        "plain": SgbmSettings(refine_iterations=0, max_relative_noise=0.0),
    }.items():
        flows = SgbmStereo(settings).compute_flows(left[None], right[None])
        figures[name] = evaluate_pair(flows, disp_left, disp_right)
    # measured: AbsRel 6.7 % (plain), 3.0 % (refined), 2.3 % (refined + confidence)
    assert figures["plain"]["abs_rel"] >= 0.05
    assert figures["no confidence"]["abs_rel"] <= 0.035
    assert figures["default"]["abs_rel"] <= 0.03 and figures["default"]["epe_px"] <= 0.1
    assert figures["default"]["density"] >= 0.90  # measured 0.926 (0.982 without confidence)


def test_highpass_makes_refinement_blind_to_camera_gain(layered):
    """The right camera 15 % darker with a sideways gain ramp and an offset (as real rigs)."""
    left, right, disp_left, disp_right = layered
    column = np.arange(right.shape[1])[None, :, None]
    right = np.clip(right * (0.85 + 0.001 * column) + 12, 0, 255).round().astype(np.uint8)
    figures = {sigma: evaluate_pair(SgbmStereo(SgbmSettings(refine_highpass_sigma_px=sigma))
                                    .compute_flows(left[None], right[None]), disp_left, disp_right)
               for sigma in (SgbmSettings().refine_highpass_sigma_px, 0.0)}
    high_passed, raw = figures[SgbmSettings().refine_highpass_sigma_px], figures[0.0]
    # measured: EPE 0.088 vs 0.150 px, AbsRel 2.1 % vs 3.7 %
    assert high_passed["epe_px"] <= 0.11 and high_passed["abs_rel"] <= 0.027
    assert raw["epe_px"] > 1.3 * high_passed["epe_px"]


def _ramp_texture(height: int, width: int, disparity: np.ndarray, seed: int = 3):
    """Float grey views (no quantisation) of a textured surface: left(x) = T(x - d), right = T."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    right = 255 * _texture(x, y, seed)
    left = 255 * _texture(x - disparity, y, seed)
    return left.astype(np.float32), right.astype(np.float32)


REFINE_OPTIONS = {"iterations": 3, "window_px": 15, "damping": 1.0, "slope_damping": 1.0,
                  "max_step_px": 1.0}


def test_refine_recovers_subpixel_slanted_plane():
    height, width = 64, 96
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    truth = 5.3 + 0.03 * x - 0.02 * y  # 5.3 .. 7.8 px, slanted both ways
    left, right = _ramp_texture(height, width, truth)
    start = np.round(truth).astype(np.float32)  # integer disparities, error up to 0.5 px
    refined = refine_disparity(left, right, start, -1.0, **REFINE_OPTIONS)
    interior = (slice(10, -10), slice(20, -10))
    error = np.abs(refined - truth)[interior]
    assert np.abs(start - truth)[interior].mean() > 0.2
    assert error.mean() < 0.01 and error.max() < 0.05
    # The same surface seen from the right view: right pixel x matches left x + d_right.
    right_truth = (5.3 + 0.03 * x - 0.02 * y) / (1 - 0.03)  # solves d = plane(x + d)
    refined_right = refine_disparity(right, left, np.round(right_truth).astype(np.float32), 1.0,
                                     **REFINE_OPTIONS)
    assert np.abs(refined_right - right_truth)[interior].mean() < 0.01


def test_refine_keeps_invalid_pixels_out_of_windows():
    height, width = 48, 96
    truth = np.full((height, width), 4.4)
    left, right = _ramp_texture(height, width, truth)
    start = np.full((height, width), 4.0, np.float32)
    start[:, 40:48] = np.nan  # rejected band: left NaN, no weight for its neighbours
    refined = refine_disparity(left, right, start, -1.0, **REFINE_OPTIONS)
    assert np.all(np.isnan(refined[:, 40:48])) and np.all(np.isfinite(refined[:, :40]))
    # pixels right next to the band (one-sided windows) stay accurate (measured <= 0.026 px,
    # 0.012 px away from it); the band given disparity 0 instead would pull them ~0.9 px off
    np.testing.assert_allclose(refined[10:-10, 34:40], 4.4, atol=0.04)
    np.testing.assert_allclose(refined[10:-10, 48:54], 4.4, atol=0.04)
    np.testing.assert_allclose(refined[10:-10, 60:80], 4.4, atol=0.02)
    polluted = refine_disparity(left, right, np.nan_to_num(start, nan=0.0), -1.0, **REFINE_OPTIONS)
    assert np.abs(polluted[10:-10, 34:40] - 4.4).max() > 0.5
    # a bounded step: 4.0 may move by at most 0.25 px here
    limited = refine_disparity(left, right, start, -1.0, **{**REFINE_OPTIONS, "max_step_px": 0.25})
    assert np.nanmax(limited) <= 4.25 + 1e-6


def test_relative_noise_known_value():
    """A linear ramp matches exactly (zero residual): noise = sqrt(floor) / slope / d."""
    height, width, slope, disparity = 32, 64, 2.0, 4.0
    x = np.broadcast_to(np.arange(width, dtype=np.float32), (height, width))
    left, right = slope * (x - disparity) + 50, slope * x + 50
    d = np.full((height, width), disparity, np.float32)
    noise = relative_disparity_noise(left, right, d, -1.0, window_px=5)
    expected = np.sqrt(RESIDUAL_FLOOR_GREY2) / slope / disparity
    np.testing.assert_allclose(noise[5:-5, 10:-10], expected, rtol=1e-4)
    # texture-less: infinite; no disparity: infinite
    flat = relative_disparity_noise(np.full_like(left, 80), np.full_like(right, 80), d, -1.0, 5)
    assert np.all(np.isinf(flat))
    d[:, :8] = np.nan
    assert np.all(np.isinf(relative_disparity_noise(left, right, d, -1.0, 5)[:, :8]))


def test_disparity_spread_known_values():
    nan = np.nan
    d = np.array([[1.0, 2.0, nan, 9.0, nan, nan, nan]])
    np.testing.assert_allclose(disparity_spread(d, 3), [[1.0, 1.0, 7.0, 0.0, 0.0, -1.0, -1.0]])


def test_confidence_rejects_textureless_patch(layered):
    left, right, disp_left, disp_right = layered
    x = np.arange(disp_left.shape[1])[None, :]
    patch_u, patch_rows = (20.0, 70.0), slice(20, 60)  # background surface coordinates
    left, right = left.copy(), right.copy()
    for image, u in ((left, x + 0 * disp_left), (right, x + disp_right)):
        flat = (u >= patch_u[0]) & (u < patch_u[1])
        flat[:patch_rows.start], flat[patch_rows.stop:] = False, False
        image[flat] = 120
    disparity = SgbmStereo().disparities(left, right)[0]
    kept = np.isfinite(disparity)
    inner = (slice(32, 48), slice(32, 58))  # the patch, away from the high-pass's reach
    assert kept[inner].mean() <= 0.05
    textured = (slice(100, 180), slice(120, 240))
    assert kept[textured].mean() >= 0.97


def test_flow_format_and_sign(layered):
    left, right, _, _ = layered
    flows = SgbmStereo().compute_flows(left[None], right[None])
    fwd, bwd = flows[0]["fwd"], flows[0]["bwd"]
    assert fwd.dtype == np.float32 and fwd.shape == (192, 256, 2)
    assert np.all(fwd[..., 1] == 0) and np.all(bwd[..., 1] == 0)
    assert np.all(fwd[..., 0] <= 0) and np.all(bwd[..., 0] >= 0)
    box = (slice(80, 110), slice(100, 180))
    assert np.median(-fwd[box + (0,)]) == pytest.approx(20.0, abs=0.1)
    # The right view's box sits 20 px further left.
    assert np.median(bwd[80:110, 80:160, 0]) == pytest.approx(20.0, abs=0.1)


def test_swapping_views_swaps_directions(layered):
    left, right, _, _ = layered
    # Mirroring both views and swapping them turns the right view into a left view.
    a = SgbmStereo().compute_flows(left[None], right[None])[0]
    b = SgbmStereo().compute_flows(right[None, :, ::-1], left[None, :, ::-1])[0]
    np.testing.assert_allclose(-b["fwd"][:, ::-1, 0], a["bwd"][..., 0], atol=1e-4)
    np.testing.assert_allclose(-b["bwd"][:, ::-1, 0], a["fwd"][..., 0], atol=1e-4)


def test_left_right_check_and_fill():
    nan = np.nan
    disp_left = np.array([[nan, 1.0, 1.0, 3.0, 3.0, 1.0]])
    disp_right = np.array([[1.0, 1.0, 3.0, 1.0, 1.0, nan]])
    keep_left, keep_right = left_right_consistent(disp_left, disp_right, 1.0)
    # left x=3 (d=3) -> right x=0 (d=1): |3-1| > 1, rejected; x=1 -> right 0 (1): kept.
    np.testing.assert_array_equal(keep_left, [[False, True, True, False, False, True]])
    # right x=2 (d=3) -> left 5 (d=1) and x=3 (d=1) -> left 4 (d=3): rejected; x=5: none.
    np.testing.assert_array_equal(keep_right, [[True, True, False, False, True, False]])
    filled = fill_from_background(np.array([[nan, 4.0, nan, nan, 2.0, nan], [nan] * 6]))
    np.testing.assert_array_equal(filled, [[4.0, 4.0, 2.0, 2.0, 2.0, 2.0], [0.0] * 6])


def test_middlebury_motorcycle_bad2():
    import skimage.data as skimage_data  # the [dev] extra
    left, right, disparity_gt = skimage_data.stereo_motorcycle()  # quarter size, disparity <= 60 px
    disparity = SgbmStereo().disparities(left, right)[0]
    bad2 = metrics.middlebury_bad(disparity, disparity_gt, 2.0)
    assert bad2 <= 0.17  # measured 0.143 (missing pixels count as bad); aim <= 0.20
    filled = SgbmStereo(SgbmSettings(fill=True)).disparities(left, right)[0]
    assert metrics.middlebury_bad(filled, disparity_gt, 2.0) <= 0.09  # measured 0.069


def test_metrics_known_values():
    gt = np.array([[2.0, 4.0, np.inf, 8.0]])
    pred = np.array([[2.5, np.nan, 1.0, 5.0]])
    # valid gt: 3 pixels; bad: missing (x=1) and |5-8| > 2 (x=3).
    assert metrics.middlebury_bad(pred, gt, 2.0) == pytest.approx(2 / 3)
    fwd = np.stack([-pred, np.array([[0.0, 0.0, 0.0, 4.0]])], -1)
    mask = np.array([[True, False, False, True]])
    assert metrics.flow_epe(fwd, gt, mask) == pytest.approx((0.5 + 5.0) / 2)
    depth_gt = np.array([[1.0, 2.0, 3.0, 4.0]])
    depth = np.array([[1.1, 0.0, 3.0, 6.0]])
    assert metrics.depth_abs_rel(depth, depth_gt, mask) == pytest.approx((0.1 + 0.5) / 2)
    assert metrics.depth_delta_accuracy(depth, depth_gt, mask) == pytest.approx(0.5)


def test_left_only_occlusion_matches_two_view_occlusion(layered):
    _, _, disp_left, disp_right = layered
    two_view = metrics.non_occluded_mask(disp_left, disp_right)
    left_only = metrics.non_occluded_from_left_disparity(disp_left, 64)
    # They differ only by rounding: the left border column and one column per occlusion edge.
    assert np.mean(two_view != left_only) <= 0.008
    assert (~left_only).sum() >= 0.9 * (~two_view).sum()
