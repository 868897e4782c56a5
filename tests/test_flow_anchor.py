"""flow-anchor backend: re-anchoring and keyframe chaining remove drift; synthetic figures."""

import numpy as np
from test_classical_tracker import FRAMES, HEIGHT, WIDTH, make_clip
from test_tracking_stage import VELOCITY_XY, _translating_frames

from stereo4d.backends.classical_tracker import (
    ClassicalTracker,
    ClassicalTrackerConfig,
    build_flow_anchor_tracker,
)
from stereo4d.backends.dense_flow import compute_flow
from stereo4d.backends.imageops import to_gray
from stereo4d.backends.track_drift import anchor_to_query
from stereo4d.backends.tracking import TRACKING_BACKENDS
from stereo4d.metrics.tapvid import compute_tapvid_metrics
from stereo4d.queries import QueryConfig, sample_video_queries

#: Query points (x, y) px of the drift tests on the translating clip, at frame 0.
QUERY_XY = np.array([[30.5, 20.5], [50.25, 35.0], [60.0, 25.5]], np.float32)


def _translating_gray() -> np.ndarray:
    """[T, H, W] grey frames of the translating test clip."""
    return np.stack([to_gray(f) for f in _translating_frames()])


def test_anchor_pulls_drifted_points_back():
    gray, query_xy = _translating_gray(), QUERY_XY.copy()
    truth = query_xy + 5 * VELOCITY_XY
    drifted = truth + np.array([[2.0, -1.5], [-1.0, 1.0], [1.5, 1.5]], np.float32)
    config = ClassicalTrackerConfig(anchor_every=1)
    refined, accepted = anchor_to_query(gray, 5, np.zeros(3, int), query_xy, drifted, config)
    assert accepted.all()
    assert np.abs(refined - truth).max() < 0.2  # drift of up to 2.5 px removed
    # A correction larger than anchor_max_shift_px is refused: the point keeps its position.
    far = truth + np.array([[9.0, 0.0]], np.float32)
    kept, accepted = anchor_to_query(gray, 5, np.zeros(1, int), query_xy[:1], far[:1], config)
    assert not accepted.any() and np.array_equal(kept, far[:1])


def test_flow_anchor_refuses_corrections_above_two_px():
    """flow-anchor re-anchors every frame, so it keeps only small corrections (< 2 px)."""
    gray, query_xy = _translating_gray(), QUERY_XY.copy()
    truth = query_xy + 5 * VELOCITY_XY
    config = build_flow_anchor_tracker(progress=False).config
    assert config.anchor_window_px == 15 and config.anchor_max_shift_px == 2.0
    near = truth + np.array([[1.2, -0.8], [-1.0, 1.0], [0.5, 1.5]], np.float32)  # < 2 px off
    refined, accepted = anchor_to_query(gray, 5, np.zeros(3, int), query_xy, near, config)
    assert accepted.all() and np.abs(refined - truth).max() < 0.2
    far = truth + np.array([[3.0, 0.0], [0.0, -2.5], [2.0, 2.0]], np.float32)  # >= 2 px off
    kept, accepted = anchor_to_query(gray, 5, np.zeros(3, int), query_xy, far, config)
    assert not accepted.any() and np.array_equal(kept, far)


def test_flow_anchor_figures_on_the_test_clip():
    frames, gt = make_clip()
    queries = sample_video_queries(FRAMES, HEIGHT, WIDTH, QueryConfig(query_stride_frames=5, grid_stride_px=6))
    entry, tracker = TRACKING_BACKENDS.build("flow-anchor", progress=False)
    assert entry.name == "flow-anchor" and tracker.settings()["backend"] == "flow-anchor"
    tracks, vis = tracker.track(frames, queries)
    gt_tracks, gt_vis = gt(queries)
    m = compute_tapvid_metrics(queries, gt_tracks, gt_vis, tracks, vis, (HEIGHT, WIDTH), "strided")
    # measured: <delta_avg 0.911, OA 0.940, AJ 0.841 (dis-flow: 0.905 / 0.944 / 0.838)
    assert m["average_pts_within_thresh"] > 0.9
    assert m["occlusion_accuracy"] > 0.9
    assert m["average_jaccard"] > 0.8
    assert build_flow_anchor_tracker(progress=False, anchor_every=3).config.anchor_every == 3


def test_keyframe_chaining_removes_one_frame_drift():
    """Keyframe flows over 4 frames reset the drift that biased one-frame flows accumulate."""
    frames = _translating_frames()  # [10, 64, 96, 3], moving by VELOCITY_XY per frame
    num_frames = len(frames)
    bias_xy = np.array([0.25, 0.0], np.float32)  # error of every one-frame flow (px)
    shape = (num_frames - 1, *frames.shape[1:3], 2)
    forward = np.broadcast_to(VELOCITY_XY + bias_xy, shape).astype(np.float32)
    keyframe = np.broadcast_to(4 * VELOCITY_XY, (2, *shape[1:])).astype(np.float32)  # exact
    skip_flows = {4: (keyframe, -keyframe)}
    queries = np.array([[0, 30.5, 40.5], [0, 36.0, 52.25], [9, 28.0, 50.5]], np.float64)  # (t, y, x)
    truth = (queries[:, None, [2, 1]] + (np.arange(num_frames)[None, :, None] - queries[:, None, :1])
             * VELOCITY_XY).astype(np.float32)  # [3, 10, 2]
    config = ClassicalTrackerConfig(anchor_every=0, min_query_texture=0.0, progress=False)
    chained, _ = ClassicalTracker(config).track_with_flows(frames, queries, forward, -forward)
    keyed, visible = ClassicalTracker(config).track_with_flows(frames, queries, forward, -forward,
                                                               skip_flows)
    # One-frame chaining drifts by 0.25 px per frame from the query (2.25 px after 9 frames) ...
    np.testing.assert_allclose(np.abs(chained - truth)[:2, -1, 0], 2.25, atol=1e-3)
    # ... keyframe chaining is exact at frames 4 and 8 and drifts at most 3 steps in between;
    # backwards from frame 9 only the one-frame step to keyframe 8 is off (not 5 and 9 steps).
    error = np.abs(keyed - truth)[..., 0]
    assert error[:2, [4, 8]].max() < 1e-3
    np.testing.assert_allclose(error[2, [8, 4, 0]], 0.25, atol=1e-3)
    assert error[:2].max() < 3 * bias_xy[0] + 1e-3 and error.max() < 4 * bias_xy[0] + 1e-3
    assert visible.all()
    # compute_flow(skip=4) gives the keyframe pairs 0->4, 4->8 of the clip.
    fwd4, bwd4 = compute_flow(frames, config, skip=4)
    assert fwd4.shape == (2, *shape[1:])
    inner = (slice(16, -16), slice(16, -16))
    np.testing.assert_allclose(np.median(fwd4[(slice(None), *inner)], axis=(1, 2)), [4 * VELOCITY_XY] * 2,
                               atol=0.05)
    np.testing.assert_allclose(np.median(bwd4[(slice(None), *inner)], axis=(1, 2)), [-4 * VELOCITY_XY] * 2,
                               atol=0.05)


def test_flow_anchor_redetects_drift_the_re_anchoring_refuses():
    """flow-anchor's re-detection (every 4 frames, 8 px each way) puts back points 3-6 px off."""
    from stereo4d.backends.track_drift import redetect_query

    gray, query_xy = _translating_gray(), QUERY_XY.copy()
    truth = query_xy + 4 * VELOCITY_XY
    config = build_flow_anchor_tracker(progress=False).config
    assert config.redetect_every == 4 and config.redetect_radius_px == 8
    far = truth + np.array([[3.0, 0.0], [0.0, -4.5], [4.0, 4.0]], np.float32)
    _, refused = anchor_to_query(gray, 4, np.zeros(3, int), query_xy, far, config)
    found, accepted = redetect_query(gray, 4, np.zeros(3, int), query_xy, far, config)
    assert not refused.any() and accepted.all()
    assert np.abs(found - truth).max() < 0.3
