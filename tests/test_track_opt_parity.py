"""Track optimisation (stereo4d.track_opt) against the reference's golden data, plus the pieces
of the loss against direct (slow) formulas.

Golden: tests/parity/track_opt_golden.npz (reference optimize_tracks on 300 tracks x 48 frames,
see tests/parity/README.md section 3 and track_opt_notes.json).
"""

from __future__ import annotations

import math
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from stereo4d.track_opt import (
    TrackOptConfig,
    dynamic_loss,
    erode_visibility,
    make_problem,
    masked_percentile,
    optimize_tracks,
    static_loss,
)

PARITY_DIR = Path(__file__).parent / "parity"
POSITION_TOL_M = 1e-3
MOTION_TOL_PX = 1e-4
STRIDES = TrackOptConfig().dynamic_strides


def _load(name: str) -> dict:
    with np.load(PARITY_DIR / name) as data:
        return {k: data[k] for k in data.files}


def _run(golden: dict, config: TrackOptConfig | None = None):
    config = config or TrackOptConfig()
    fx = 0.5 / math.tan(math.radians(float(golden["hfov_deg"]) / 2))
    return optimize_tracks(
        golden["track3d"],
        golden["visible_list"],
        golden["extrs"],
        (fx, fx, 0.5, 0.5),
        int(golden["imh"]),
        int(golden["imw"]),
        config,
    )


@pytest.fixture(scope="module")
def golden() -> dict:
    return _load("track_opt_golden.npz")


@pytest.fixture(scope="module")
def result(golden):
    return _run(golden)


def test_masks_and_motion_match_reference(golden, result):
    np.testing.assert_array_equal(result.visible, golden["optimized_visible_list"])
    assert result.motion_px.dtype == np.float32
    assert np.abs(result.motion_px - golden["motion"]).max() <= MOTION_TOL_PX


def test_positions_match_reference(golden, result):
    mask = golden["optimized_visible_list"]
    assert result.track3d.dtype == np.float32
    err_m = np.linalg.norm(result.track3d - golden["optimized_track3d"], axis=-1)[mask]
    assert np.all(np.isfinite(err_m))
    assert err_m.max() <= POSITION_TOL_M, err_m.max()
    # The optimisation did move points (well beyond the tolerance), so the check has teeth.
    moved_m = np.linalg.norm(golden["optimized_track3d"] - golden["track3d"], axis=-1)[mask]
    assert np.median(moved_m) > 10 * POSITION_TOL_M
    # Off the mask: NaN, as in the reference's output.
    assert np.all(np.isnan(result.track3d[~mask]))


def test_nan_input_gives_the_finite_input_result(golden, result):
    """The released-dataset convention (NaN where invisible) must not leak into valid frames."""
    nan_golden = _load("track_opt_golden_nan.npz")
    assert np.isnan(nan_golden["track3d"]).any()
    nan_result = _run(nan_golden)
    mask = result.visible
    np.testing.assert_array_equal(nan_result.visible, mask)
    assert not np.isnan(nan_result.track3d[mask]).any()
    np.testing.assert_allclose(nan_result.track3d[mask], result.track3d[mask], rtol=0, atol=1e-6)


def test_batching_and_padding_do_not_change_results(golden, result):
    """Batches of 64 (last one padded) give the same points as the default batching (up to
    float32 round-off: XLA vectorises the two batch shapes differently)."""
    subset = {k: golden[k] for k in ("hfov_deg", "imh", "imw", "extrs")}
    subset["track3d"] = golden["track3d"][:150]
    subset["visible_list"] = golden["visible_list"][:150]
    small = _run(subset, TrackOptConfig(batch_size=64))
    mask = result.visible[:150]
    np.testing.assert_allclose(small.track3d[mask], result.track3d[:150][mask], rtol=0, atol=1e-5)


def test_empty_and_fully_hidden_tracks(golden):
    fx = 0.5 / math.tan(math.radians(60.0) / 2)
    extrs = golden["extrs"][:10]
    empty = optimize_tracks(
        np.zeros((0, 10, 3)), np.zeros((0, 10), bool), extrs, (fx, fx, 0.5, 0.5), 64, 64
    )
    assert empty.track3d.shape == (0, 10, 3) and empty.visible.shape == (0, 10)
    assert empty.motion_px.shape == (0, 10)

    # Track 0 visible throughout; track 1 never; track 2 only 4 frames (erodes to nothing).
    track = np.tile(golden["track3d"][:1, :10], (3, 1, 1))
    visible = np.zeros((3, 10), bool)
    visible[0] = True
    visible[2, 3:7] = True
    out = optimize_tracks(track, visible, extrs, (fx, fx, 0.5, 0.5), 512, 512)
    np.testing.assert_array_equal(out.visible, [[True] * 10, [False] * 10, [False] * 10])
    assert np.all(np.isfinite(out.track3d[0]))
    assert np.all(np.isnan(out.track3d[1:]))


def test_erosion_window_clipped_at_ends():
    visible = np.array(
        [
            [1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
            [0, 1, 1, 1, 1, 1, 1, 1, 1, 1],
            [1, 1, 1, 1, 1, 0, 1, 1, 1, 1],
            [1, 1, 1, 1, 1, 1, 1, 1, 1, 0],
        ],
        bool,
    )
    expected = np.array(
        [
            [1, 1, 1, 1, 1, 1, 1, 1, 1, 1],  # frames beyond the ends count as visible
            [0, 0, 0, 1, 1, 1, 1, 1, 1, 1],
            [1, 1, 1, 0, 0, 0, 0, 0, 1, 1],
            [1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
        ],
        bool,
    )
    np.testing.assert_array_equal(erode_visibility(visible, 5), expected)


def test_masked_percentile_matches_numpy():
    rng = np.random.default_rng(3)
    values = rng.uniform(0, 50, (40, 17))
    mask = rng.uniform(size=values.shape) > 0.4
    mask[0] = False
    mask[1] = False
    mask[1, 4] = True
    ours = masked_percentile(values, mask, 90.0)
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        ref = np.nanpercentile(np.where(mask, values, np.nan), 90.0, axis=1)
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12, equal_nan=True)


def _random_problem(seed: int, num_tracks: int = 12, num_frames: int = 20):
    """Points around random centres, a few cameras, a random mask (row 0: no valid frame, row 1:
    one valid frame), random offsets. Returns float64 numpy arrays and the jax problem."""
    rng = np.random.default_rng(seed)
    centre = rng.uniform(-3, 3, (num_tracks, 1, 3)) + np.array([0, 0, 5.0])
    points = centre + rng.normal(0, 0.3, (num_tracks, num_frames, 3))
    cams = rng.normal(0, 0.2, (num_frames, 3))
    mask = rng.uniform(size=(num_tracks, num_frames)) > 0.3
    mask[0] = False
    mask[1] = False
    mask[1, 5] = True
    offset = rng.normal(0, 0.2, (num_tracks, num_frames)) * mask
    problem = make_problem(
        jnp.asarray(points.transpose(2, 0, 1), jnp.float32),
        jnp.asarray(cams.T[:, None, :], jnp.float32),
        jnp.asarray(mask, jnp.float32),
        jnp.zeros(num_tracks, jnp.float32),
        STRIDES,
    )
    ray = points - cams[None]
    ray_unit = ray / np.linalg.norm(ray, axis=-1, keepdims=True)
    adjusted = points + ray_unit * offset[..., None]
    return adjusted, ray_unit, mask, offset, problem


def _static_pairwise(points: np.ndarray, mask: np.ndarray, w_static: float) -> np.ndarray:
    """The reference's O(T^2) formula, in float64 numpy: [B, T, 3], [B, T] -> [B]."""
    m = mask.astype(np.float64)
    count = m.sum(-1)
    norm = (np.linalg.norm(points, axis=-1) * m).sum(-1) / (count + 1e-8)
    q = points / (norm + 1e-5)[:, None, None] * m[..., None]
    sq_dist = ((q[:, :, None] - q[:, None, :]) ** 2).sum(-1)  # [B, T, T]
    pair_mask = m[:, :, None] * m[:, None, :]
    pairs = np.maximum(pair_mask.sum((1, 2)), 1.0)
    return w_static / (2 * pairs) * (sq_dist * pair_mask).sum((1, 2))


def _dynamic_direct(points, ray_unit, mask, w_dynamic: float) -> np.ndarray:
    """Second differences with edge-clamped neighbours, in float64 numpy: [B, T, 3] -> [B]."""
    frames = np.arange(mask.shape[1])
    total = np.zeros(len(points))
    for stride in STRIDES:
        ahead = np.minimum(frames + stride, frames[-1])
        behind = np.maximum(frames - stride, 0)
        valid = mask & mask[:, ahead] & mask[:, behind]
        second = points[:, ahead] - 2 * points + points[:, behind]
        accel = (second * ray_unit).sum(-1) * valid
        total += (accel**2).sum(-1)
    return w_dynamic * total


def test_static_term_linear_form_equals_pairwise_sum():
    adjusted, _, mask, offset, problem = _random_problem(7)
    expected = _static_pairwise(adjusted, mask, 100.0)
    ours = np.asarray(static_loss(jnp.asarray(offset, jnp.float32), problem, 100.0))
    assert expected[0] == 0.0 and expected[1] == 0.0 and expected[2:].min() > 0.1
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)


def test_dynamic_term_affine_form_equals_second_differences():
    adjusted, ray_unit, mask, offset, problem = _random_problem(8, num_frames=9)  # T < 2 * 5
    expected = _dynamic_direct(adjusted, ray_unit, mask, 100.0)
    ours = np.asarray(dynamic_loss(jnp.asarray(offset, jnp.float32), problem, 100.0, STRIDES))
    assert expected[0] == 0.0 and expected[2:].max() > 1.0
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-5)


def test_point_at_world_origin_stays_finite(golden):
    """|P'| has an infinite derivative at 0 (the reference's sqrt(0) -> NaN); a valid point that
    sits exactly at the world origin must still give finite offsets everywhere."""
    fx = 0.5 / math.tan(math.radians(60.0) / 2)
    track = golden["track3d"][:2, :12].copy()
    track[:, 6] = 0.0  # frame 6's camera centre is not at the origin, so the ray is defined
    visible = np.ones((2, 12), bool)
    out = optimize_tracks(track, visible, golden["extrs"][:12], (fx, fx, 0.5, 0.5), 512, 512)
    assert out.visible.all()
    assert np.all(np.isfinite(out.track3d))
    # The other frames still moved (the optimisation ran).
    assert np.abs(out.track3d[:, :6] - track[:, :6]).max() > 1e-3
