"""Query sampling (grid, jitter, (t, y, x) order on non-square frames) and redundant-query pruning."""

import numpy as np
import pytest

from stereo4d.queries import (
    QueryConfig,
    prune_redundant_queries,
    sample_grid_queries,
    sample_video_queries,
)


def test_grid_without_jitter_is_the_reference_grid():
    q = sample_grid_queries(7, height=16, width=16, stride_px=4)
    assert q.dtype == np.int32 and q.shape == (16, 3)
    assert np.all(q[:, 0] == 7)
    assert sorted(set(q[:, 1])) == [2, 6, 10, 14]
    assert sorted(set(q[:, 2])) == [2, 6, 10, 14]
    # raster order: y outer, x inner
    np.testing.assert_array_equal(q[:4, 1:], [[2, 2], [2, 6], [2, 10], [2, 14]])


def test_reference_size_128x128_per_frame_on_512():
    q = sample_video_queries(48, 512, 512, QueryConfig())
    assert q.shape == (5 * 128 * 128, 3)
    np.testing.assert_array_equal(np.unique(q[:, 0]), [0, 10, 20, 30, 40])


def test_jitter_stays_within_half_stride_and_image():
    height, width, stride = 40, 24, 4
    rng = np.random.default_rng(3)
    q = sample_grid_queries(0, height, width, stride, rng)
    base = sample_grid_queries(0, height, width, stride)
    offset = q[:, 1:].astype(int) - base[:, 1:]
    assert offset.min() >= -stride // 2 and offset.max() <= stride // 2 - 1
    assert q[:, 1].min() >= 0 and q[:, 1].max() <= height - 1
    assert q[:, 2].min() >= 0 and q[:, 2].max() <= width - 1
    assert np.std(offset) > 0.8  # the jitter is really there (uniform over 4 values: std 1.1)


def test_non_square_order_is_t_y_x():
    q = sample_video_queries(3, height=8, width=32, config=QueryConfig(grid_stride_px=4, jitter=False))
    assert q.shape == (2 * 8, 3)  # one frame (t=0), 2 rows x 8 columns
    assert q[:, 1].max() == 6 and q[:, 2].max() == 30


def test_seed_makes_sampling_deterministic():
    a = sample_video_queries(20, 64, 48, QueryConfig(seed=5))
    b = sample_video_queries(20, 64, 48, QueryConfig(seed=5))
    c = sample_video_queries(20, 64, 48, QueryConfig(seed=6))
    np.testing.assert_array_equal(a, b)
    assert np.any(a != c)


def test_bad_strides_rejected():
    with pytest.raises(ValueError):
        QueryConfig(grid_stride_px=0)


def _tracks(num_frames, rows):
    """rows: list of (query t, y, x, xy per frame (or one xy for all), visible per frame)."""
    tracks = np.zeros((len(rows), num_frames, 2), np.float32)
    vis = np.zeros((len(rows), num_frames), bool)
    queries = np.zeros((len(rows), 3), np.int32)
    for i, (t, y, x, xy, v) in enumerate(rows):
        queries[i] = (t, y, x)
        tracks[i] = xy
        vis[i] = v
    return tracks, vis, queries


def test_pruning_hand_case():
    T = 3
    rows = [
        # frame-0 queries: always kept
        (0, 5, 5, (5, 5), [1, 1, 1]),         # A: sits at x=5, y=5, visible everywhere
        (0, 5, 5, (5, 5), [1, 1, 1]),         # B: same place as A, same frame: frames do not prune themselves
        (0, 20, 20, (20, 20), [1, 0, 1]),     # C: at (20, 20), occluded at frame 1
        # frame-1 queries
        (1, 5, 6, (6, 5), [0, 1, 1]),         # D: 1.0 px from A (not farther) -> pruned
        (1, 20, 20, (20, 20), [0, 1, 1]),     # E: on C, but C is occluded at frame 1 -> kept
        (1, 9, 5, (5, 9), [0, 1, 1]),         # F: 4 px from A -> kept
        # frame-2 query
        (2, 20, 20, (20.5, 20), [0, 0, 1]),   # G: on C and E (both visible at 2) -> pruned
        (2, 5, 7, (7, 5), [0, 0, 1]),         # H: 2 px from A, 1 px from D but D was pruned -> kept
    ]
    tracks, vis, queries = _tracks(T, rows)
    keep = prune_redundant_queries(tracks, vis, queries, radius_px=1.0)
    np.testing.assert_array_equal(keep, [1, 1, 1, 0, 1, 1, 0, 1])


def test_pruning_radius_and_xy_order():
    # The query is (t, y, x); tracks are (x, y). A query at y=3, x=10 is 0.5 px from a track
    # at x=10.5, y=3 but 7 px from one at x=3, y=10.
    tracks = np.array([[[3, 10], [3, 10]], [[10.5, 3], [10.5, 3]], [[0, 0], [10, 3]]], np.float32)
    vis = np.array([[1, 1], [0, 0], [0, 1]], bool)
    queries = np.array([[0, 10, 3], [0, 3, 10], [1, 3, 10]], np.int32)
    keep = prune_redundant_queries(tracks, vis, queries, radius_px=1.0)
    np.testing.assert_array_equal(keep, [1, 1, 1])  # track 1 is invisible at frame 1
    vis[1, 1] = True
    keep = prune_redundant_queries(tracks, vis, queries, radius_px=1.0)
    np.testing.assert_array_equal(keep, [1, 1, 0])
    keep = prune_redundant_queries(tracks, vis, queries, radius_px=0.25)
    np.testing.assert_array_equal(keep, [1, 1, 1])
