"""TAP-Vid metrics against hand-computed values (2 tracks x 4 frames)."""

import numpy as np
import pytest

from stereo4d.metrics.tapvid import compute_tapvid_metrics, evaluation_mask

# Track 0 queried at frame 0, track 1 at frame 1. Errors are along x, in 256-px units.
QUERIES = np.array([[0, 10, 10], [1, 20, 20]])
GT_VIS = np.array([[1, 1, 0, 1], [1, 1, 1, 1]], bool)
PRED_VIS = np.array([[1, 1, 1, 1], [1, 1, 1, 0]], bool)
ERR_PX = np.array([[0.0, 0.5, 100.0, 3.0], [0.2, 0.0, 1.5, 10.0]])


def _case(height=256, width=256, axis=0):
    gt = np.full((2, 4, 2), 50.0)
    pred = gt.copy()
    scale = width / 256 if axis == 0 else height / 256
    pred[..., axis] += ERR_PX * scale
    return QUERIES, gt, GT_VIS, pred, PRED_VIS, (height, width)


def test_evaluation_mask():
    np.testing.assert_array_equal(evaluation_mask([0, 1], 4, "first"), [[0, 1, 1, 1], [0, 0, 1, 1]])
    np.testing.assert_array_equal(evaluation_mask([0, 1], 4, "strided"), [[0, 1, 1, 1], [1, 0, 1, 1]])
    with pytest.raises(ValueError):
        evaluation_mask([0], 4, "last")


def test_query_first_hand_values():
    m = compute_tapvid_metrics(*_case())
    # Evaluated: t0 frames 1-3, t1 frames 2-3. Visibility agrees at t0f1, t0f3, t1f2 -> 3/5.
    assert m["num_evaluated"] == 5
    assert m["occlusion_accuracy"] == pytest.approx(3 / 5)
    # gt-visible evaluated errors: 0.5, 3.0, 1.5, 10.0
    expected_within = [1 / 4, 2 / 4, 3 / 4, 3 / 4, 4 / 4]
    for d, e in zip((1, 2, 4, 8, 16), expected_within):
        assert m[f"pts_within_{d}"] == pytest.approx(e)
    assert m["average_pts_within_thresh"] == pytest.approx(0.65)
    # Jaccard: predicted visible evaluated = t0f1 (0.5), t0f2 (gt occluded), t0f3 (3.0), t1f2 (1.5).
    expected_jaccard = [1 / 7, 2 / 6, 3 / 5, 3 / 5, 3 / 5]
    for d, e in zip((1, 2, 4, 8, 16), expected_jaccard):
        assert m[f"jaccard_{d}"] == pytest.approx(e)
    assert m["average_jaccard"] == pytest.approx((1 / 7 + 1 / 3 + 1.8) / 5)


def test_strided_adds_frames_before_the_query():
    m = compute_tapvid_metrics(*_case(), query_mode="strided")
    assert m["num_evaluated"] == 6
    assert m["occlusion_accuracy"] == pytest.approx(4 / 6)
    assert m["average_pts_within_thresh"] == pytest.approx(18 / 25)


@pytest.mark.parametrize("height,width,axis", [(512, 1024, 0), (512, 1024, 1), (128, 300, 0)])
def test_coordinates_are_scaled_to_256(height, width, axis):
    ref = compute_tapvid_metrics(*_case())
    m = compute_tapvid_metrics(*_case(height, width, axis))
    for key in ("occlusion_accuracy", "average_pts_within_thresh", "average_jaccard"):
        assert m[key] == pytest.approx(ref[key])


def test_perfect_prediction():
    q, gt, gt_vis, _, _, hw = _case()
    m = compute_tapvid_metrics(q, gt, gt_vis, gt, gt_vis, hw)
    assert m["occlusion_accuracy"] == 1.0
    assert m["average_pts_within_thresh"] == 1.0
    assert m["average_jaccard"] == 1.0
