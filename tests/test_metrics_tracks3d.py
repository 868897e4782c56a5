"""APD3D, mean 3D error and jitter on hand-computed cases."""

import numpy as np
import pytest

from stereo4d.metrics import tracks3d as m


def test_apd3d_known_values():
    gt = np.zeros((1, 4, 3))
    depth = np.full((1, 4), 10.0)
    focal = 100.0  # 1 px at 10 m = 0.1 m
    pred = gt.copy()
    pred[0, :, 0] = [0.05, 0.15, 0.5, np.nan]  # within 1 px / within 2 px / within 8 px / missing
    out = m.apd3d(pred, gt, np.ones((1, 4), bool), depth, focal)
    assert out["pct_within_1"] == pytest.approx(0.25)
    assert out["pct_within_2"] == pytest.approx(0.5)
    assert out["pct_within_4"] == pytest.approx(0.5)
    assert out["pct_within_8"] == pytest.approx(0.75)
    assert out["pct_within_16"] == pytest.approx(0.75)
    assert out["apd3d"] == pytest.approx((0.25 + 0.5 + 0.5 + 0.75 + 0.75) / 5)


def test_mean_error_and_jitter():
    gt = np.zeros((2, 5, 3))
    pred = gt.copy()
    pred[0, :, 2] = 0.1
    assert m.mean_error_m(pred, gt, np.ones((2, 5), bool)) == pytest.approx(0.05)
    straight = np.zeros((1, 5, 3))
    straight[0, :, 0] = np.arange(5) * 0.3  # constant velocity: no jitter
    assert m.jitter_m(straight, np.ones((1, 5), bool)) == pytest.approx(0.0)
    zigzag = np.zeros((1, 5, 3))
    zigzag[0, :, 1] = [0, 0.1, 0, 0.1, 0]  # second difference magnitude 0.2 everywhere
    assert m.jitter_m(zigzag, np.ones((1, 5), bool)) == pytest.approx(0.2)
    vis = np.array([[True, True, False, True, True]])
    assert np.isnan(m.jitter_m(zigzag, vis))  # no run of three visible frames


def test_eval_focal_is_the_reference_formula():
    """128 / tan(hfov / 2) at the 256 px evaluation resolution; 60 deg -> 128 * sqrt(3)."""
    from stereo4d.metrics.tracks3d import eval_focal_px

    assert abs(eval_focal_px(60.0) - 128.0 * np.sqrt(3.0)) < 1e-9
    assert abs(eval_focal_px(90.0) - 128.0) < 1e-9
