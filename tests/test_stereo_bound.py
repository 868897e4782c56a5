"""The stereo-precision bound of APD3D: the closed form against sampling through the metric."""

import itertools

import numpy as np
import pytest
from scipy.stats import norm

from stereo4d.depth import BASELINE_M
from stereo4d.geometry import focal_length_px
from stereo4d.metrics.stereo_bound import disparity_error_px, expected_apd3d, sigma_for_apd3d
from stereo4d.metrics.tracks3d import apd3d, eval_focal_px

FOCAL_PX = focal_length_px(60.0, 512)
F_EVAL = eval_focal_px(60.0)


def _points(n: int, seed: int):
    """[n] depths 1-20 m and [n, 3] camera points on rays up to 30 deg off the axis."""
    rng = np.random.default_rng(seed)
    depth_m = rng.uniform(1.0, 20.0, n)
    xy = rng.uniform(-0.5, 0.5, (n, 2))
    points = np.concatenate([xy, np.ones((n, 1))], axis=1) * depth_m[:, None]
    return depth_m, points


@pytest.mark.parametrize("sigma_px", [0.02, 0.1, 0.4])
def test_expected_apd3d_matches_sampled_disparity_noise(sigma_px):
    depth_m, points = _points(40_000, seed=1)
    ray_norm = np.linalg.norm(points, axis=1) / depth_m
    noise = np.random.default_rng(2).normal(0.0, sigma_px, len(depth_m))
    disparity = FOCAL_PX * BASELINE_M / depth_m
    with np.errstate(divide="ignore"):
        noisy_depth = np.where(disparity + noise > 0, FOCAL_PX * BASELINE_M / (disparity + noise),
                               np.nan)
    pred = points * (noisy_depth / depth_m)[:, None]  # moved along the ray
    sampled = apd3d(pred[:, None], points[:, None], np.ones((len(depth_m), 1), bool),
                    depth_m[:, None], F_EVAL)["apd3d"]
    closed = expected_apd3d(depth_m, ray_norm, sigma_px, FOCAL_PX, BASELINE_M, F_EVAL)
    assert closed == pytest.approx(sampled, abs=0.006)


def test_expected_apd3d_limits_and_monotone():
    depth_m, points = _points(2_000, seed=3)
    ray_norm = np.linalg.norm(points, axis=1) / depth_m
    values = [expected_apd3d(depth_m, ray_norm, s, FOCAL_PX, BASELINE_M, F_EVAL)
              for s in (0.0, 0.01, 0.05, 0.2, 1.0)]
    assert values[0] == 1.0
    assert all(a > b for a, b in itertools.pairwise(values))
    # near points are easier: the same noise at 2 m scores higher than at 15 m
    near = expected_apd3d(np.full(10, 2.0), np.ones(10), 0.1, FOCAL_PX, BASELINE_M, F_EVAL)
    far = expected_apd3d(np.full(10, 15.0), np.ones(10), 0.1, FOCAL_PX, BASELINE_M, F_EVAL)
    assert near > far + 0.3


def test_sigma_for_apd3d_inverts_expected_apd3d():
    depth_m, points = _points(5_000, seed=4)
    ray_norm = np.linalg.norm(points, axis=1) / depth_m
    sigma = sigma_for_apd3d(0.8, depth_m, ray_norm, FOCAL_PX, BASELINE_M, F_EVAL)
    assert expected_apd3d(depth_m, ray_norm, sigma, FOCAL_PX, BASELINE_M, F_EVAL) == \
        pytest.approx(0.8, abs=1e-6)
    # one depth, one threshold, on axis: the bound is Phi(hi / s) - Phi(lo / s) exactly
    d = 8.0
    t = 4 / F_EVAL
    disparity = FOCAL_PX * BASELINE_M / d
    s = sigma_for_apd3d(0.5, [d], [1.0], FOCAL_PX, BASELINE_M, F_EVAL, thresholds_px=(4,))

    assert norm.cdf(t * disparity / (1 - t) / s) - norm.cdf(-t * disparity / (1 + t) / s) == \
        pytest.approx(0.5, abs=1e-6)


def test_disparity_error_px():
    fb = FOCAL_PX * BASELINE_M
    true = np.array([5.0, 10.0, 10.0])
    pred = np.array([fb / (fb / 5.0 + 0.1), 10.0, -1.0])
    err = disparity_error_px(pred, true, FOCAL_PX, BASELINE_M)
    np.testing.assert_allclose(err[:2], [0.1, 0.0], atol=1e-12)
    assert np.isnan(err[2])


def _bound_bench():
    import importlib.util

    from tests.conftest import REPO_ROOT
    spec = importlib.util.spec_from_file_location(
        "bench_stereo_bound", REPO_ROOT / "benchmarks/bench_stereo_bound.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bound_benchmark_refuses_bad_input(tmp_path, capsys):
    bench = _bound_bench()
    assert bench.main(["--clips=nope"]) == 2
    assert bench.main(["--clips=h1", "--target=1.5"]) == 2
    assert bench.main(["--root", str(tmp_path), "--clips=h1"]) == 2  # not processed
    err = capsys.readouterr().err
    assert "unknown clip" in err and "--target" in err and "is missing" in err
    assert not any(tmp_path.iterdir())  # nothing written
