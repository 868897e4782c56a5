"""flow-anchor backend: Lucas-Kanade re-anchoring removes drift; figures on the synthetic clips."""

import numpy as np
from test_classical_tracker import FRAMES, HEIGHT, WIDTH, make_clip
from test_tracking_stage import VELOCITY_XY, _translating_frames

from stereo4d.backends.classical_tracker import (
    ClassicalTrackerConfig,
    _anchor,
    build_flow_anchor_tracker,
)
from stereo4d.backends.imageops import to_gray
from stereo4d.backends.tracking import TRACKING_BACKENDS
from stereo4d.metrics.tapvid import compute_tapvid_metrics
from stereo4d.queries import QueryConfig, sample_video_queries


def test_anchor_pulls_drifted_points_back():
    gray = np.stack([to_gray(f) for f in _translating_frames()])
    query_xy = np.array([[30.5, 20.5], [50.25, 35.0], [60.0, 25.5]], np.float32)
    truth = query_xy + 5 * VELOCITY_XY
    drifted = truth + np.array([[2.0, -1.5], [-1.0, 1.0], [1.5, 1.5]], np.float32)
    config = ClassicalTrackerConfig(anchor_every=1)
    refined, accepted = _anchor(gray, 5, np.zeros(3, int), query_xy, drifted, config)
    assert accepted.all()
    assert np.abs(refined - truth).max() < 0.2  # drift of up to 2.5 px removed
    # A correction larger than anchor_max_shift_px is refused: the point keeps its position.
    far = truth + np.array([[9.0, 0.0]], np.float32)
    kept, accepted = _anchor(gray, 5, np.zeros(1, int), query_xy[:1], far[:1], config)
    assert not accepted.any() and np.array_equal(kept, far[:1])


def test_flow_anchor_refuses_corrections_above_two_px():
    """flow-anchor re-anchors every frame, so it keeps only small corrections (< 2 px)."""
    gray = np.stack([to_gray(f) for f in _translating_frames()])
    query_xy = np.array([[30.5, 20.5], [50.25, 35.0], [60.0, 25.5]], np.float32)
    truth = query_xy + 5 * VELOCITY_XY
    config = build_flow_anchor_tracker(progress=False).config
    assert config.anchor_window_px == 15 and config.anchor_max_shift_px == 2.0
    near = truth + np.array([[1.2, -0.8], [-1.0, 1.0], [0.5, 1.5]], np.float32)  # < 2 px off
    refined, accepted = _anchor(gray, 5, np.zeros(3, int), query_xy, near, config)
    assert accepted.all() and np.abs(refined - truth).max() < 0.2
    far = truth + np.array([[3.0, 0.0], [0.0, -2.5], [2.0, 2.0]], np.float32)  # >= 2 px off
    kept, accepted = _anchor(gray, 5, np.zeros(3, int), query_xy, far, config)
    assert not accepted.any() and np.array_equal(kept, far)


def test_flow_anchor_figures_on_the_test_clip():
    frames, gt = make_clip()
    queries = sample_video_queries(FRAMES, HEIGHT, WIDTH, QueryConfig(query_stride_frames=5, grid_stride_px=6))
    entry, tracker = TRACKING_BACKENDS.build("flow-anchor", progress=False)
    assert entry.name == "flow-anchor" and tracker.settings()["backend"] == "flow-anchor"
    tracks, vis = tracker.track(frames, queries)
    gt_tracks, gt_vis = gt(queries)
    m = compute_tapvid_metrics(queries, gt_tracks, gt_vis, tracks, vis, (HEIGHT, WIDTH), "strided")
    # measured: <delta_avg 0.903, OA 0.936, AJ 0.835 (dis-flow: 0.905 / 0.945 / 0.838)
    assert m["average_pts_within_thresh"] > 0.9
    assert m["occlusion_accuracy"] > 0.9
    assert m["average_jaccard"] > 0.8
    assert build_flow_anchor_tracker(progress=False, anchor_every=3).config.anchor_every == 3
