"""Re-detection of drifted points (``track_drift.redetect_query``): wide search, distinctiveness."""

import cv2
import numpy as np
from test_tracking_stage import VELOCITY_XY, _translating_frames

from stereo4d.backends.classical_tracker import ClassicalTracker, ClassicalTrackerConfig
from stereo4d.backends.track_drift import grey_patches, normalised_correlation, redetect_query


def _random_texture(size=128, seed=0):
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.uniform(0, 255, (size, size)).astype(np.float32), (0, 0), 1.5)
    return cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)


def test_normalised_correlation_matches_opencv():
    rng = np.random.default_rng(1)
    regions = rng.uniform(0, 255, (3, 21, 21)).astype(np.float32)
    templates = rng.uniform(0, 255, (3, 7, 7)).astype(np.float32)
    templates[1] = regions[1, 4:11, 9:16]  # an exact copy at (u, v) = (9, 4)
    ncc = normalised_correlation(templates, regions)
    assert ncc.shape == (3, 15, 15)
    for m in range(3):
        expected = cv2.matchTemplate(regions[m], templates[m], cv2.TM_CCOEFF_NORMED)
        np.testing.assert_allclose(ncc[m], expected, atol=1e-4)
    assert abs(ncc[1, 4, 9] - 1.0) < 1e-5
    # A flat template has no position: refused everywhere (-1).
    flat = normalised_correlation(np.full((1, 7, 7), 80, np.float32), regions[:1])
    assert np.all(flat == -1)


def test_grey_patches_are_centred_on_continuous_points():
    gray = np.arange(20 * 20, dtype=np.float32).reshape(20, 20)
    patch = grey_patches(gray, np.array([[10.5, 5.5]], np.float32), 3)  # pixel centre (10, 5)
    np.testing.assert_allclose(patch[0], gray[4:7, 9:12], atol=1e-3)


def test_redetection_recovers_drift_far_beyond_the_re_anchoring_limit():
    """Points 3-11 px off their true position are put back to < 0.3 px."""
    image = _random_texture()
    shift_xy = np.array([7.3, -4.6], np.float32)
    moved = cv2.warpAffine(image, np.float32([[1, 0, shift_xy[0]], [0, 1, shift_xy[1]]]), (128, 128),
                           flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    rng = np.random.default_rng(2)
    query_xy = rng.uniform(35, 93, (40, 2)).astype(np.float32)
    drift = rng.uniform(3, 8, (40, 2)).astype(np.float32) * rng.choice([-1, 1], (40, 2))
    chained = query_xy + shift_xy + drift
    config = ClassicalTrackerConfig(redetect_every=4, redetect_radius_px=16)
    found, accepted = redetect_query(np.stack([image, moved]), 1, np.zeros(40, int), query_xy, chained, config)
    assert accepted.all()
    assert np.abs(found - (query_xy + shift_xy)).max() < 0.3
    # Out of reach (beyond the search radius) or in the query frame: refused, position kept.
    far = query_xy[:5] + shift_xy + 30
    kept, accepted = redetect_query(np.stack([image, moved]), 1, np.zeros(5, int), query_xy[:5], far, config)
    assert not accepted.any() and np.array_equal(kept, far)
    _, accepted = redetect_query(np.stack([image, moved]), 0, np.zeros(5, int), query_xy[:5], far, config)
    assert not accepted.any()


def test_redetection_refuses_repeated_patterns():
    """On stripes every 8 px, equally good matches lie 8 px apart: not distinctive, refused."""
    x = np.arange(128, dtype=np.float32)
    stripes = np.tile(127.5 + 100 * np.sin(2 * np.pi * x / 8), (128, 1)).astype(np.uint8)
    query_xy = np.array([[40.5, 40.5], [64.0, 70.0], [80.5, 50.5]], np.float32)
    chained = query_xy + np.array([3.0, 0.0], np.float32)
    config = ClassicalTrackerConfig(redetect_every=4)
    kept, accepted = redetect_query(np.stack([stripes, stripes]), 1, np.zeros(3, int), query_xy, chained,
                                    config)
    assert not accepted.any() and np.array_equal(kept, chained)


def test_tracker_with_redetection_undoes_biased_flow():
    """A one-frame flow biased by 1 px/frame: re-detection every 4 frames resets the drift."""
    frames = _translating_frames()  # [10, 64, 96, 3]
    num_frames = len(frames)
    shape = (num_frames - 1, *frames.shape[1:3], 2)
    forward = np.broadcast_to(VELOCITY_XY + np.array([1.0, 0.0]), shape).astype(np.float32)
    queries = np.array([[0, 30.5, 30.5], [0, 34.0, 42.25], [0, 26.0, 36.5]], np.float64)  # (t, y, x)
    truth = (queries[:, None, [2, 1]] + np.arange(num_frames)[None, :, None] * VELOCITY_XY).astype(np.float32)
    base = {"anchor_every": 0, "fb_abs_tol_px": 3.0, "min_query_texture": 0.0, "progress": False}
    drifted, _ = ClassicalTracker(ClassicalTrackerConfig(**base)).track_with_flows(
        frames, queries, forward, -forward)
    fixed, _ = ClassicalTracker(ClassicalTrackerConfig(redetect_every=4, **base)).track_with_flows(
        frames, queries, forward, -forward)
    np.testing.assert_allclose(np.abs(drifted - truth)[:, -1, 0], 9.0, atol=1e-3)  # 1 px per frame
    error = np.abs(fixed - truth)[..., 0]
    assert error[:, [4, 8]].max() < 0.3  # put back at each keyframe (4 px off there without)
    assert error[:, 9].max() < 1.1  # one biased step after keyframe 8
