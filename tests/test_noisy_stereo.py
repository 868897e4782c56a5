"""The temporal refinement's settings for noisy (low-bitrate) clips: the gate on the clip's
left-right disagreement, the smoothed sweep centre and the stereo weight, on small synthetic
inputs (a textured wall seen by a walking camera, from ``test_temporal_stereo``)."""

from __future__ import annotations

import numpy as np
import pytest

from stereo4d.backends.classical_stereo import SgbmSettings
from stereo4d.backends.temporal_stereo import (
    TemporalSettings,
    _smoothed_base,
    combine,
    temporal_refine_frame,
)
from tests.test_temporal_stereo import (
    BORDER_PX,
    FB_PX_M,
    FOCAL_PX,
    FRAME,
    MATCH_SIGMA_PX,
    SETTINGS,
    _render,
)

PIXEL_NOISE_PX = 0.15
"""Independent per-pixel error of the simulated stereo (as compressed video leaves it)."""


def test_gate_leaves_clean_clips_exactly_as_before():
    settings = SgbmSettings()
    for clean in (0.0, 0.010, settings.noise_clean_px, float("nan")):
        assert settings.temporal_for(clean) == settings.temporal
    noisy = settings.temporal_for(0.05)
    assert noisy.smooth_base_px == settings.noisy_smooth_base_px == 11
    assert noisy.stereo_weight_scale == settings.noisy_stereo_weight_scale == 0.4
    assert (noisy.offsets, noisy.window_px) == (settings.temporal.offsets,
                                                settings.temporal.window_px)
    off = SgbmSettings(noisy_smooth_base_px=0, noisy_stereo_weight_scale=1.0)
    assert off.temporal_for(0.05) == off.temporal
    with pytest.raises(ValueError):
        SgbmSettings(noisy_smooth_base_px=10)
    with pytest.raises(ValueError):
        SgbmSettings(noisy_stereo_weight_scale=0.0)


def test_smoothed_base_averages_pixel_noise_keeps_planes_and_edges():
    rows, cols = np.mgrid[0:60, 0:80].astype(np.float64)
    plane = 3.0 + 0.02 * cols + 0.01 * rows
    plane[:, 40:] += 5.0  # a depth edge at column 40
    has = np.ones(plane.shape, bool)
    has[10, 10] = False  # a hole: keeps its (zero) value, not counted by its neighbours
    clean = _smoothed_base(np.where(has, plane, 0.0), has, 11, 1.0)
    inner = np.zeros_like(has)
    inner[5:-5, 5:35] = inner[5:-5, 45:-5] = True
    inner &= has
    away = inner & (np.maximum(np.abs(rows - 10), np.abs(cols - 10)) > 5)  # from the hole
    np.testing.assert_allclose(clean[away], plane[away], atol=1e-4)  # a plane's mean: its centre
    near_edge = np.abs(cols - 39.5) < 5
    np.testing.assert_array_equal(clean[near_edge], plane[near_edge])  # edges keep their own
    assert clean[10, 10] == 0.0
    noisy = plane + np.random.default_rng(0).normal(0, PIXEL_NOISE_PX, plane.shape)
    smoothed = _smoothed_base(noisy, np.ones_like(has), 11, 1.0)
    flat = np.zeros_like(has)
    flat[5:-5, 5:34] = True
    error = np.abs(smoothed - plane)[flat].mean()
    assert error < 0.2 * np.abs(noisy - plane)[flat].mean()  # 121 pixels: about 1/11


def test_combine_weights_the_stereo_by_the_scale():
    one = np.ones((1, 1))
    plain, sigma = combine(10 * one, one, 11 * one, one)
    scaled, scaled_sigma = combine(10 * one, one, 11 * one, one, stereo_weight_scale=0.25)
    assert plain[0, 0] == pytest.approx(10.5)
    assert scaled[0, 0] == pytest.approx((10 * 0.25 + 11) / 1.25)
    assert scaled_sigma[0, 0] == sigma[0, 0]  # the combined noise is not changed


def test_smoothed_sweep_removes_the_stereos_pixel_noise():
    gray, c2w, truth, mover = _render()
    noise = np.random.default_rng(1).normal(0, PIXEL_NOISE_PX, truth[FRAME].shape)
    stereo = (truth[FRAME] + noise).astype(np.float32)
    sigma = np.full_like(stereo, PIXEL_NOISE_PX)
    match_sigma = np.full_like(stereo, MATCH_SIGMA_PX)
    wall = np.zeros_like(mover[FRAME])
    wall[BORDER_PX:-BORDER_PX, BORDER_PX:-BORDER_PX] = True
    wall &= ~np.any(mover, axis=0)
    errors = {}
    for name, settings in (("plain", SETTINGS), ("smoothed", TemporalSettings(
            offsets=SETTINGS.offsets, smooth_base_px=11)), ("smoothed, stereo weight 0.4",
            TemporalSettings(offsets=SETTINGS.offsets, smooth_base_px=11,
                             stereo_weight_scale=0.4))):
        refined, _, _ = temporal_refine_frame(FRAME, gray, stereo, sigma, match_sigma, c2w,
                                              FOCAL_PX, FB_PX_M, settings)
        errors[name] = np.abs(refined - truth[FRAME])[wall].mean()
    stereo_error = np.abs(stereo - truth[FRAME])[wall].mean()
    # The plain sweep moves each window together, so the pixel noise stays in its result.
    assert errors["plain"] > 0.5 * stereo_error, (stereo_error, errors)
    assert errors["smoothed"] < 0.8 * errors["plain"], errors
    assert errors["smoothed, stereo weight 0.4"] < 0.8 * errors["smoothed"], errors
