"""The track filters (stereo4d.filtering) and the filter metrics, on hand-built inputs."""

from __future__ import annotations

import numpy as np
import pytest

from stereo4d import ade20k, filtering
from stereo4d.geometry import PinholeCamera
from stereo4d.metrics.segmentation import bad_track_mask, class_set_iou, filter_scores
from stereo4d.motion import scene_motion_displacement_px
from stereo4d.tracks import Tracks2D, lift_tracks_to_3d, sample_tracks_for_display

S, K, O = ade20k.SKY, ade20k.BUILDING, ade20k.OTHER


def test_ade20k_ids_match_reference_indexing():
    assert (ade20k.WALL, ade20k.BUILDING, ade20k.SKY, ade20k.ROAD) == (1, 2, 3, 7)
    assert (ade20k.SIDEWALK, ade20k.PERSON, ade20k.EARTH, ade20k.CAR) == (12, 13, 14, 21)
    assert sorted(ade20k.STATIC_CLASS_IDS) == [1, 2, 7, 12, 14]
    assert len(ade20k.CLASS_NAMES) == 151 and ade20k.CLASS_NAMES[150] == "flag"


def test_labels_at_tracks_reads_pixel_containing_point_and_clips():
    labels = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    tracks_xy = np.array([[[0.2, 0.9], [3.99, 2.5]],     # pixel (0, 0) at t0; (2, 3) at t1
                          [[1.5, 1.0], [-7.0, 9.0]],     # (1, 1); clipped to (2, 0)
                          [[np.nan, 0.0], [4.0, 3.0]]])  # NaN -> 0; (4, 3) clipped to (2, 3)
    got = filtering.labels_at_tracks(labels, tracks_xy)
    np.testing.assert_array_equal(got, [[0, 12 + 11], [5, 12 + 8], [0, 12 + 11]])


def test_sky_uses_2d_visibility():
    on_sky = np.array([[True, False], [True, False], [False, False]])
    visibles = np.array([[True, True], [False, True], [True, True]])
    np.testing.assert_array_equal(filtering.sky_track_mask(on_sky, visibles), [True, False, False])


def test_static_fraction_and_boundary():
    on_static = np.array([[1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 0, 1], [1, 1, 1, 1]], bool)
    visibles = np.array([[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 1, 0], [0, 0, 0, 0]], bool)
    fraction = filtering.static_fraction(on_static, visibles)
    np.testing.assert_allclose(fraction[:3], [0.5, 1.0, 0.0])
    assert np.isnan(fraction[3])
    np.testing.assert_array_equal(filtering.boundary_track_mask(fraction), [True, False, False, False])


def test_drift_needs_static_valid_and_strictly_above_threshold():
    disp = np.array([[0, 6.0], [0, 6.0], [0, 6.0], [0, 5.0], [0, 4.0]])
    valid = np.array([[1, 1], [1, 0], [1, 1], [1, 1], [1, 1]], bool)
    on_static = np.array([[1, 1], [1, 1], [1, 0], [1, 1], [1, 1]], bool)
    np.testing.assert_array_equal(filtering.drift_track_mask(disp, valid, on_static, 5.0),
                                  [True, False, False, False, False])


def test_filter_tracks_combines_and_reports_shares():
    labels = np.array([[K, K, K], [S, K, K], [K, O, K], [O, O, O]])
    visibles = np.ones((4, 3), bool)
    disp = np.zeros((4, 3))
    disp[3] = 9.0  # moves, but not on a static class
    result = filtering.filter_tracks(labels, visibles, visibles, disp)
    np.testing.assert_array_equal(result.keep, [True, False, False, True])
    np.testing.assert_array_equal(result.sky, [False, True, False, False])
    np.testing.assert_array_equal(result.boundary, [False, True, True, False])
    assert result.stats["remaining_share"] == 0.5
    assert result.stats["static_point_share"] == pytest.approx(7 / 12)
    assert "remaining tracks: 50.00%" in filtering.format_stats(result.stats)


def _static_camera_scene(num_frames=12, size=64, depth_m=5.0):
    extrs = np.tile(np.eye(3, 4), (num_frames, 1, 1))
    cameras = PinholeCamera.from_hfov(extrs, 60.0)
    depth = np.full((num_frames, size, size), depth_m, np.float32)
    return extrs, cameras, depth


def test_sliding_track_on_wall_is_dropped_by_drift():
    """A static camera looks at a wall at 5 m; one track slides 1 px per frame, one stays."""
    num_frames, size = 12, 64
    extrs, cameras, depth = _static_camera_scene(num_frames, size)
    t = np.arange(num_frames, dtype=np.float32)
    still = np.stack([np.full(num_frames, 20.5), np.full(num_frames, 30.5)], -1)
    sliding = np.stack([10.5 + t, np.full(num_frames, 30.5)], -1)
    tracks = Tracks2D(np.stack([still, sliding, sliding]), np.ones((3, num_frames), bool),
                      np.array([[0, 30, 20], [0, 30, 10], [0, 30, 10]]))
    track3d, valid = lift_tracks_to_3d(tracks, depth, cameras)
    disp = scene_motion_displacement_px(track3d, valid, extrs,
                                        (cameras.fx, cameras.fy, cameras.cx, cameras.cy), size, size)
    np.testing.assert_allclose(disp[1, 1:], np.minimum(t[1:], 16), atol=1e-4)
    labels = np.full((num_frames, size, size), ade20k.WALL, np.int32)
    labels[:, :, 40:] = ade20k.PERSON  # not reached by the tracks
    at_points = filtering.labels_at_tracks(labels, tracks.tracks_xy)
    at_points[2] = ade20k.PERSON  # the third track slides the same way on a person
    result = filtering.filter_tracks(at_points, tracks.visibles, valid, disp)
    np.testing.assert_array_equal(result.drift, [False, True, False])
    np.testing.assert_array_equal(result.keep, [True, False, True])


def test_drift_ignores_points_without_valid_depth():
    num_frames, size = 12, 64
    extrs, cameras, depth = _static_camera_scene(num_frames, size, depth_m=25.0)  # beyond 20 m
    t = np.arange(num_frames, dtype=np.float32)
    sliding = np.stack([10.5 + t, np.full(num_frames, 30.5)], -1)[None]
    tracks = Tracks2D(sliding, np.ones((1, num_frames), bool), np.array([[0, 30, 10]]))
    track3d, valid = lift_tracks_to_3d(tracks, depth, cameras)
    assert not valid.any()
    disp = scene_motion_displacement_px(track3d, valid, extrs,
                                        (cameras.fx, cameras.fy, cameras.cx, cameras.cy), size, size)
    at_points = np.full((1, num_frames), ade20k.WALL)
    assert filtering.filter_tracks(at_points, tracks.visibles, valid, disp).keep[0]


def test_zero_tracks():
    result = filtering.filter_tracks(np.zeros((0, 5), int), np.zeros((0, 5), bool),
                                     np.zeros((0, 5), bool), np.zeros((0, 5)))
    assert result.keep.shape == (0,) and result.stats["remaining_share"] == 0.0


def test_display_sample_is_fixed_and_bounded():
    settings = (filtering.MAX_DISPLAY_TRACKS, filtering.DISPLAY_SEED)
    a = sample_tracks_for_display(10000, *settings)
    np.testing.assert_array_equal(a, sample_tracks_for_display(10000, *settings))
    assert len(np.unique(a)) == 4096 and a.max() < 10000
    np.testing.assert_array_equal(sample_tracks_for_display(7, *settings), np.arange(7))


def test_class_set_iou_and_filter_scores_hand_values():
    gt = np.array([[S, S, K, K], [K, K, O, O]])
    pred = np.array([[S, K, K, K], [K, ade20k.ROAD, O, S]])
    assert class_set_iou(pred, gt, [S]) == pytest.approx(1 / 3)
    assert class_set_iou(pred, gt, ade20k.STATIC_CLASS_IDS) == pytest.approx(4 / 5)
    scores = filter_scores(removed=np.array([1, 1, 0, 0, 1], bool), bad=np.array([1, 0, 1, 0, 1], bool))
    assert scores["precision"] == pytest.approx(2 / 3)
    assert scores["recall"] == pytest.approx(2 / 3)
    assert scores["good_kept"] == pytest.approx(1 / 2)


def test_bad_track_mask():
    gt = np.zeros((3, 2, 2))
    est = gt.copy()
    est[0, 1] = [9.0, 0.0]   # 9 px off in a visible frame: bad
    est[1, 1] = [20.0, 0.0]  # 20 px off but invisible there: good
    visibles = np.array([[1, 1], [1, 0], [1, 1]], bool)
    on_sky = np.array([False, False, True])
    np.testing.assert_array_equal(bad_track_mask(est, visibles, gt, on_sky), [True, False, True])


def test_stage_boundary_margin_keeps_mostly_one_class_tracks():
    """A track on a mover labelled static in 3 of its 10 frames survives the stage's default
    (margin 0.4) but not the reference's rule (any mix) nor the previous default (0.2); a track
    half on each side is a boundary track under every rule."""
    fractions = np.array([0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0, np.nan])
    stage = filtering.boundary_track_mask(fractions, filtering.STAGE_BOUNDARY_MARGIN)
    np.testing.assert_array_equal(stage, [0, 0, 0, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(filtering.boundary_track_mask(fractions, 0.2),
                                  [0, 0, 1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(filtering.boundary_track_mask(fractions),
                                  [0, 1, 1, 1, 1, 1, 0, 0])
    labels = np.full((3, 10), O)
    labels[0, :3] = K          # mover labelled building in 3 of 10 frames
    labels[1, :5] = K          # straddles a building edge half the time
    labels[2, :] = K           # a building
    visibles = np.ones((3, 10), bool)
    still = np.zeros((3, 10))
    settings = filtering.FilterSettings(filtering.STAGE_DRIFT_THRESHOLD_PX,
                                        boundary_margin=filtering.STAGE_BOUNDARY_MARGIN)
    kept = filtering.filter_tracks(labels, visibles, visibles, still, settings).keep
    np.testing.assert_array_equal(kept, [True, False, True])
    reference = filtering.filter_tracks(labels, visibles, visibles, still).keep
    np.testing.assert_array_equal(reference, [False, False, True])
