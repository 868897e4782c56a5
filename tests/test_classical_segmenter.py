"""The weight-free segmenter on a small rendered scene with known labels (static camera).

Scene (rows of a 64 x 96 frame): a smooth blue sky gradient on top (no stereo depth) with a
smooth brown far-away block (no depth either, but not sky-coloured); a textured wall at 4 m;
a textured ground plane below the horizon; a textured person square moving 3 px per frame at
2.5 m; a smooth blue patch without depth on the ground (not connected to the top: not sky).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from stereo4d import ade20k
from stereo4d.backends.classical_segmenter import (
    ClassicalSegmenter,
    ClassicalSegmenterSettings,
    fill_holes,
    moving_mask,
)
from stereo4d.geometry import PinholeCamera
from stereo4d.metrics.segmentation import class_set_iou

T, H, W = 8, 64, 96
SKY_ROWS, GROUND_ROW = 18, 44
EYE_HEIGHT_M, WALL_M, PERSON_M = 1.5, 4.0, 2.5
PERSON_SIZE, PERSON_SPEED = 16, 3


def _texture(rng, shape, blur_sigma_px=1.5):
    """Spatially correlated noise texture (grey levels around 128)."""
    noise = cv2.GaussianBlur(rng.normal(0, 120, shape).astype(np.float32), (0, 0), blur_sigma_px)
    return np.clip(128 + noise, 0, 255)


def _scene():
    rng = np.random.default_rng(0)
    cameras = PinholeCamera.from_hfov(np.tile(np.eye(3, 4), (T, 1, 1)), 60.0, aspect_hw=H / W)
    f_y, c_y = cameras.fy * H, cameras.cy * H
    wall = _texture(rng, (H, W + PERSON_SPEED * T, 3))
    ground_depth = EYE_HEIGHT_M * f_y / (np.arange(H) + 0.5 - c_y)
    video = np.zeros((T, H, W, 3))
    depth = np.zeros((T, H, W), np.float32)
    labels = np.full((T, H, W), ade20k.WALL, np.int32)
    sky_rgb = np.stack([np.linspace(110, 130, SKY_ROWS), np.linspace(160, 175, SKY_ROWS),
                        np.full(SKY_ROWS, 235)], -1)
    person_tex = _texture(rng, (PERSON_SIZE, PERSON_SIZE, 3)) * [1.0, 0.6, 0.4]
    ground_tex = _texture(rng, (H, W, 3)) * 0.8
    for t in range(T):
        video[t] = wall[:, :W]
        depth[t] = WALL_M
        video[t, :SKY_ROWS] = sky_rgb[:, None]
        depth[t, :SKY_ROWS] = 0
        labels[t, :SKY_ROWS] = ade20k.SKY
        video[t, 8:SKY_ROWS + 6, 70:86] = (150, 110, 80)  # smooth brown block without depth
        depth[t, 8:SKY_ROWS + 6, 70:86] = 0
        labels[t, 8:SKY_ROWS + 6, 70:86] = ade20k.BUILDING
        video[t, GROUND_ROW:] = ground_tex[GROUND_ROW:]
        depth[t, GROUND_ROW:] = ground_depth[GROUND_ROW:, None]
        labels[t, GROUND_ROW:] = ade20k.ROAD
        video[t, 56:62, 10:30] = (90, 140, 230)  # blue puddle without depth
        depth[t, 56:62, 10:30] = 0
        x0 = 20 + PERSON_SPEED * t
        video[t, 26:26 + PERSON_SIZE, x0:x0 + PERSON_SIZE] = person_tex
        depth[t, 26:26 + PERSON_SIZE, x0:x0 + PERSON_SIZE] = PERSON_M
        labels[t, 26:26 + PERSON_SIZE, x0:x0 + PERSON_SIZE] = ade20k.PERSON
    return np.round(video).astype(np.uint8), depth, cameras, labels


@pytest.fixture(scope="module")
def segmented():
    video, depth, cameras, labels = _scene()
    return ClassicalSegmenter().segment(video, depth_m=depth, cameras=cameras), labels


def test_sky_iou(segmented):
    pred, gt = segmented
    assert class_set_iou(pred, gt, ade20k.SKY_CLASS_IDS) >= 0.95
    assert not np.any(pred[:, 56:62, 10:30] == ade20k.SKY)  # puddle: not connected to the top
    assert np.mean(pred[:, 8:SKY_ROWS, 72:84] == ade20k.SKY) < 0.05  # brown block


def test_static_iou_and_ground(segmented):
    pred, gt = segmented
    assert class_set_iou(pred, gt, ade20k.STATIC_CLASS_IDS) >= 0.85
    ground = pred[:, GROUND_ROW + 4:52]
    assert np.mean(ground == ade20k.ROAD) >= 0.8
    assert np.mean(pred[:, SKY_ROWS + 8:GROUND_ROW - 4, :12] == ade20k.BUILDING) >= 0.9


def test_moving_person_is_not_static(segmented):
    pred, gt = segmented
    person = gt == ade20k.PERSON
    assert np.mean(pred[person] == ade20k.OTHER) >= 0.7
    assert class_set_iou(pred, gt, [ade20k.OTHER, ade20k.PERSON]) >= 0.5


def test_without_depth_only_sky_cues():
    video, _, _, gt = _scene()
    pred = ClassicalSegmenter().segment(video)
    assert not np.any(pred == ade20k.OTHER)  # no motion without cameras
    # The sky is found from texture, colour and position; the puddle has the sky's colour and
    # no depth but does not touch the top.
    assert class_set_iou(pred, gt, ade20k.SKY_CLASS_IDS) >= 0.9


def test_moving_mask_fills_and_drops_small_blobs():
    evidence = np.zeros((60, 60), bool)
    evidence[10:30, 10:30] = True
    evidence[15:25, 15:25] = False  # hole: filled
    evidence[50, 50] = True  # speck: dropped
    settings = ClassicalSegmenterSettings(min_motion_area_fraction=0.01)
    mask = moving_mask(evidence, settings)
    assert mask[20, 20] and not mask[50, 50]
    assert mask[10:30, 10:30].mean() > 0.95 and mask.sum() < 1.1 * 400
    ring = np.zeros((7, 7), bool)
    ring[1:6, 1:6] = True
    ring[2:5, 2:5] = False
    filled = np.zeros((7, 7), bool)
    filled[1:6, 1:6] = True
    np.testing.assert_array_equal(fill_holes(ring), filled)
    open_ring = ring.copy()
    open_ring[3, 1] = False  # a gap to the outside: nothing is enclosed
    np.testing.assert_array_equal(fill_holes(open_ring), open_ring)
