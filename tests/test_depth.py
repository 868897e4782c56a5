"""Depth from stereo flows: known values, the reference's checks, floater removal."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from stereo4d import depth as depth_lib

HFOV_DEG = 60.0


def _reference_style_depth(fwd, bwd, hfov_deg, remove_floaters):
    """The reference's algorithm restated step by step for one frame (loops allowed in tests)."""
    height, width = fwd.shape[:2]
    disparity = np.clip(-fwd[..., 0], 0, None)
    fx = width / np.tan(np.radians(hfov_deg / 2)) / 2
    with np.errstate(divide="ignore"):
        depth = (fx * 0.063) / disparity
    map_xy = fwd.copy()
    map_xy[..., 0] += np.arange(width)
    map_xy[..., 1] += np.arange(height)[:, None]
    warped = cv2.remap(bwd, map_xy, None, cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT)
    depth[np.linalg.norm(warped + fwd, axis=-1) > 1] = 0
    depth[np.abs(fwd[..., 1]) > 1] = 0
    depth[depth > 20] = 0
    depth[depth < 0] = 0
    if remove_floaters:
        keep = depth.copy()
        for i in range(height):
            for j in range(width):
                d = depth[i, j]
                if d == 0:
                    continue
                gx = abs(depth[i, min(j + 1, width - 1)] - depth[i, max(j - 1, 0)])
                gy = abs(depth[min(i + 1, height - 1), j] - depth[max(i - 1, 0), j])
                if gx > 0.03 * d or gy > 0.03 * d:
                    keep[i, j] = 0
        depth = keep
    return depth


def _constant_flows(height, width, disparity_px):
    fwd = np.zeros((height, width, 2), np.float32)
    fwd[..., 0] = -disparity_px
    bwd = np.zeros_like(fwd)
    bwd[..., 0] = disparity_px
    return fwd, bwd


def test_depth_from_disparity_known_value():
    # 512 px wide, 60 deg: fx = 256 / tan(30 deg) = 443.405 px; d = 10 px -> 2.7934 m.
    depth = depth_lib.depth_from_disparity(np.full((2, 512), 10.0), HFOV_DEG)
    assert depth[0, 0] == pytest.approx(443.40500673 * 0.063 / 10, rel=1e-7)
    assert np.isinf(depth_lib.depth_from_disparity(np.zeros((1, 4)), HFOV_DEG)).all()
    disparity = np.array([[0.5, 3.0, 40.0]])
    round_trip = depth_lib.disparity_from_depth(depth_lib.depth_from_disparity(disparity, 90.0), 90.0)
    np.testing.assert_allclose(round_trip, disparity, rtol=1e-12)


def test_constant_disparity_plane():
    fwd, bwd = _constant_flows(8, 64, 12.0)
    depth = depth_lib.depth_map_from_flow_pair(fwd, bwd, HFOV_DEG)
    assert depth.dtype == np.float32
    expected = depth_lib.focal_length_px(HFOV_DEG, 64) * depth_lib.BASELINE_M / 12.0
    # Columns x < 12 match outside the right view: the warped bwd is 0 there, the check fails.
    assert np.all(depth[:, :12] == 0)
    np.testing.assert_allclose(depth[:, 12:], expected, rtol=1e-6)


def test_checks_drop_occluded_vertical_and_far_pixels():
    fwd, bwd = _constant_flows(16, 64, 10.0)
    bwd[:, 30:34, 0] = 14.0  # right view disagrees where left columns 40..43 land
    fwd[2, 50, 1] = 1.5  # vertical flow beyond 1 px
    fwd[3, 50, 1] = 0.9  # within tolerance
    depth = depth_lib.depth_map_from_flow_pair(fwd, bwd, HFOV_DEG)
    assert np.all(depth[:, 40:44] == 0) and np.all(depth[:, 45:] [:, :4] > 0)
    assert depth[2, 50] == 0 and depth[3, 50] > 0
    # 64 px / 60 deg: 20 m is a disparity of 0.1746 px; smaller is dropped.
    far_fwd, far_bwd = _constant_flows(4, 64, 0.17)
    assert np.all(depth_lib.depth_map_from_flow_pair(far_fwd, far_bwd, HFOV_DEG) == 0)
    near_fwd, near_bwd = _constant_flows(4, 64, 0.18)
    assert np.all(depth_lib.depth_map_from_flow_pair(near_fwd, near_bwd, HFOV_DEG)[:, 2:] > 0)


def test_floater_mask_relative_gradient():
    depth = np.full((5, 6), 2.0)
    depth[:, 3:] = 2.5  # a depth edge between columns 2 and 3
    depth[0, 0] = 0.0  # invalid pixel
    mask = depth_lib.floater_mask(depth)
    expected = np.zeros((5, 6), bool)
    expected[:, 2:4] = True  # both sides of the edge
    expected[0, 1] = expected[1, 0] = True  # neighbours of the invalid pixel
    np.testing.assert_array_equal(mask, expected)
    # A gentle slope (1 % per pixel, central difference 2 %) stays.
    slope = np.tile(1.01 ** np.arange(8), (4, 1))
    assert not depth_lib.floater_mask(slope).any()


@pytest.mark.parametrize("remove_floaters", [False, True])
def test_matches_reference_algorithm_on_random_flows(remove_floaters):
    rng = np.random.default_rng(3)
    height, width, frames = 24, 40, 2
    smooth = cv2.resize(rng.uniform(4.0, 5.0, (4, 5)), (width, height), interpolation=cv2.INTER_CUBIC)
    flows = []
    for t in range(frames):
        fwd, bwd = _constant_flows(height, width, 0.0)
        fwd[..., 0] = -smooth - t
        bwd[..., 0] = smooth + t + rng.normal(0, 0.35, (height, width))  # some fail the check
        fwd[..., 1] = rng.normal(0, 0.3, (height, width))
        fwd[5, 5, 0] = 3.0  # negative disparity
        flows.append({"fwd": fwd.astype(np.float32), "bwd": bwd.astype(np.float32)})
    depth = depth_lib.depth_maps_from_flows(flows, HFOV_DEG, remove_floaters=remove_floaters)
    expected = np.stack([_reference_style_depth(f["fwd"], f["bwd"], HFOV_DEG, False) for f in flows])
    if remove_floaters:  # the reference removes floaters on the stacked clip
        expected = np.stack([_reference_style_depth(f["fwd"], f["bwd"], HFOV_DEG, True)
                             for f in flows])
    assert depth.shape == (frames, height, width) and depth.dtype == np.float32
    valid = expected > 0
    assert 0.05 < valid.mean() < 0.95  # the checks did something, and kept something
    np.testing.assert_array_equal(depth > 0, valid)
    np.testing.assert_allclose(depth[valid], expected[valid], rtol=1e-6)
