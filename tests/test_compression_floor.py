"""The oracle matcher of ``metrics.compression_floor`` on a textured plane seen by a moving rig
(exact views from an analytic texture), and the floor benchmark's refusals."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from stereo4d.metrics import compression_floor as cf

REPO_ROOT = Path(__file__).resolve().parents[1]
HEIGHT, WIDTH = 48, 72
FOCAL_PX = 60.0
BASELINE_M = 0.179
DEPTH_M = 2.0  # disparity f B / Z = 5.37 px
STEP_M = 0.0903  # sideways camera motion per frame: 2.71 px of image motion


def _texture(x_m, y_m, seed=0):
    """Sum of sinusoids with periods of 8-16 px on the plane at DEPTH_M."""
    rng = np.random.default_rng(seed)
    value = np.zeros_like(x_m)
    for _ in range(8):
        period_m = rng.uniform(8.0, 16.0) * DEPTH_M / FOCAL_PX
        angle, phase = rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
        value += np.sin(2 * np.pi * (np.cos(angle) * x_m + np.sin(angle) * y_m) / period_m
                        + phase)
    return value.astype(np.float32)


def _view(camera_x_m):
    """The plane seen by a camera at (camera_x_m, 0, 0) looking along +z. float32 [H, W]."""
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    x_m = camera_x_m + (cols - (WIDTH - 1) / 2) * DEPTH_M / FOCAL_PX
    y_m = (rows - (HEIGHT - 1) / 2) * DEPTH_M / FOCAL_PX
    return _texture(x_m, y_m)


def _clip(frames=3, noise=0.0, seed=1):
    """(left, right [T, H, W], disparity, depth, static [T, H, W], camera2world [T, 3, 4])."""
    rng = np.random.default_rng(seed)
    positions = np.arange(frames) * STEP_M
    left = np.stack([_view(x) for x in positions])
    right = np.stack([_view(x + BASELINE_M) for x in positions])
    left += rng.normal(0, noise, left.shape).astype(np.float32)
    right += rng.normal(0, noise, right.shape).astype(np.float32)
    c2w = np.zeros((frames, 3, 4))
    c2w[:, :, :3] = np.eye(3)
    c2w[:, 0, 3] = positions
    shape = (frames, HEIGHT, WIDTH)
    disparity = np.full(shape, FOCAL_PX * BASELINE_M / DEPTH_M)
    return left, right, disparity, np.full(shape, DEPTH_M), np.ones(shape, bool), c2w


def _interior_error(offset, truth_shift=0.0, margin=12):
    inner = offset[margin:-margin, margin:-margin] + truth_shift
    assert np.isfinite(inner).all()
    return float(np.mean(np.abs(inner)))


def test_subpixel_minimum_finds_the_parabola_vertex_and_flags_the_edge():
    offsets = cf.hypothesis_offsets()
    assert offsets[0] == -cf.SEARCH_PX and offsets[-1] == cf.SEARCH_PX and 0.0 in offsets
    vertex = np.array([[0.237, -0.61, 0.0], [0.999, 1.4, -0.02]])
    cost = (offsets[:, None, None] - vertex[None]) ** 2
    found, at_edge = cf.subpixel_minimum(cost, offsets)
    inside = np.abs(vertex) <= cf.SEARCH_PX - cf.STEP_PX
    np.testing.assert_allclose(found[inside], vertex[inside], atol=1e-9)
    assert at_edge[1, 1] and not at_edge[inside].any()


def test_pair_oracle_minimises_the_data_cost_not_the_truth():
    left, right, disparity, depth, static, c2w = _clip(frames=1)
    one = {"pair": (5, 0, ())}
    exact = cf.oracle_frame(0, left, right, disparity, depth, static, c2w, FOCAL_PX, BASELINE_M,
                            one)["pair"]
    assert _interior_error(exact) < 0.01
    # Told a truth 0.3 px too large, the oracle moves back to where the images match.
    wrong = cf.oracle_frame(0, left, right, disparity + 0.3, depth, static, c2w, FOCAL_PX,
                            BASELINE_M, one)["pair"]
    assert _interior_error(wrong, truth_shift=0.3) < 0.01
    # Pixels whose match leaves the right view have no estimate.
    assert np.isnan(exact[:, :3]).all()


def test_larger_blocks_and_more_frames_average_the_noise():
    left, right, disparity, depth, static, c2w = _clip(frames=5, noise=0.5)
    variants = {"block 5": (5, 0, ()), "block 15": (15, 0, ()), "5 pairs, block 5": (5, 2, ()),
                "motion, block 5": (5, 0, (1, 2))}
    offsets = cf.oracle_frame(2, left, right, disparity, depth, static, c2w, FOCAL_PX,
                              BASELINE_M, variants)
    error = {name: _interior_error(o) for name, o in offsets.items()}
    assert error["block 5"] > 0.02  # the noise matters at block 5 ...
    assert error["block 15"] < 0.5 * error["block 5"]  # ... 9x the pixels: about a third
    assert error["5 pairs, block 5"] < 0.65 * error["block 5"]  # 5 independent pairs
    # Motion 3 and 6 px per frame against a 6 px baseline: the far views weigh more.
    assert error["motion, block 5"] < 0.65 * error["block 5"]


def test_neighbour_residuals_follow_the_cameras_and_respect_masks():
    left, right, disparity, depth, static, c2w = _clip(frames=2)
    offsets = cf.hypothesis_offsets()
    # Told a truth 0.3 px too large (and a depth to match, so that it passes the visibility
    # test), both comparisons move back to where the images match.
    told_depth = depth[1] * disparity[0] / (disparity[0] + 0.3)
    for left_ref in (None, left[0]):
        residuals, weight = cf.neighbour_residuals(
            disparity[0] + 0.3, static[0], c2w[0], c2w[1], left[1], right[1], told_depth,
            FOCAL_PX, BASELINE_M, offsets, left_ref=left_ref)
        assert weight.mean() > 0.5
        found, _ = cf.subpixel_minimum(cf.block_cost(residuals, 5), offsets)
        inner = (weight > 0) & (cf.block_cost(weight[None], 5)[0] == 25)
        np.testing.assert_allclose(found[inner], -0.3, atol=0.01)
    # Moving pixels, and points the other frame's truth does not see, get no weight.
    _, weight = cf.neighbour_residuals(disparity[0], np.zeros_like(static[0]), c2w[0], c2w[1],
                                       left[1], right[1], depth[1], FOCAL_PX, BASELINE_M, offsets)
    assert not weight.any()
    _, weight = cf.neighbour_residuals(disparity[0], static[0], c2w[0], c2w[1], left[1], right[1],
                                       depth[1] * 1.05, FOCAL_PX, BASELINE_M, offsets)
    assert not weight.any()


def test_floor_errors_known_values():
    disparity = np.array([2.0, 4.0, 1.0])
    offset = np.array([0.1, -0.2, 5.0])
    mask = np.array([True, True, False])
    fb = 27.9
    out = cf.floor_errors(offset, disparity, fb / disparity, mask, fb)
    assert out["pixels"] == 2
    assert out["epe_px"] == pytest.approx(0.15)
    assert out["depth_absrel"] == pytest.approx((0.1 / 2.1 + 0.2 / 3.8) / 2)


def _bench():
    spec = importlib.util.spec_from_file_location(
        "bench_compression_floor", REPO_ROOT / "benchmarks/bench_compression_floor.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_refuses_unknown_clips_and_unprocessed_roots(tmp_path, capsys):
    bench = _bench()
    out = tmp_path / "floor.json"
    assert bench.main(["--root", str(tmp_path), "--clips", "t4,zz", "--json", str(out)]) == 2
    assert "unknown" in capsys.readouterr().err
    assert bench.main(["--root", str(tmp_path), "--frame_stride", "0"]) == 2
    assert bench.main(["--root", str(tmp_path), "--clips", "t4", "--json", str(out)]) == 2
    assert capsys.readouterr().err.startswith("error:")
    assert not out.exists() and not any(tmp_path.iterdir())
    (tmp_path / "suite.json").write_text(json.dumps({"summary": {}}))
    assert bench.main(["--root", str(tmp_path), "--suite_json",
                       str(tmp_path / "suite.json")]) == 2
