"""Depth colouring, track depth splatting, the 3D view and the scene-motion trails."""

from __future__ import annotations

import numpy as np
import pytest

from stereo4d.geometry import PinholeCamera
from stereo4d.viz import scene3d
from stereo4d.viz.depth import colorize_depth, colormap_lut, depth_from_tracks, inverse_depth_range
from stereo4d.viz.scene3d import SceneView, render_scene3d, render_scene_motion_2d

# ------------------------------------------------------------------------------------ depth


def test_colorize_depth_matches_matplotlib_colormap():
    from matplotlib import colormaps

    rng = np.random.default_rng(0)
    depth = rng.uniform(0.5, 20.0, (2, 16, 24)).astype(np.float32)
    depth[0, 0, :5] = 0.0
    depth[1, 3, 3] = np.nan
    inv_lo, inv_hi = inverse_depth_range(depth)
    valid = np.isfinite(depth) & (depth > 0)
    near, far = np.percentile(depth[valid], [5, 95])
    assert (inv_lo, inv_hi) == pytest.approx((1 / far, 1 / near))
    rgb = colorize_depth(depth)
    # The reference: 255 * turbo((1/d - 1/far) / (1/near - 1/far)) cast to uint8, black if invalid.
    relative = (1.0 / depth[valid] - inv_lo) / (inv_hi - inv_lo)
    expected = (255 * colormaps["turbo"](relative)[:, :3]).astype(np.uint8)
    np.testing.assert_array_equal(rgb[valid], expected)
    assert (rgb[~valid] == 0).all()
    # Nearer than the 5th percentile saturates at the warm end, farther than the 95th at the cold.
    lut = colormap_lut()
    np.testing.assert_array_equal(colorize_depth(np.array([[0.1, 100.0]]), (inv_lo, inv_hi)),
                                  [[lut[-1], lut[0]]])
    assert lut[-1, 0] > lut[-1, 2] and lut[0, 2] > lut[0, 0]  # turbo: red near, blue far


def test_depth_range_of_empty_maps_is_harmless():
    assert inverse_depth_range(np.zeros((2, 4, 4))) == (0.0, 1.0)
    assert (colorize_depth(np.zeros((4, 4))) == 0).all()


def test_depth_from_tracks_projects_and_keeps_nearest():
    extr = np.concatenate([np.eye(3), np.zeros((3, 1))], axis=1)
    cameras = PinholeCamera.from_hfov(np.stack([extr, extr]), 90.0, 0.5)  # fx = 0.5, fy = 1.0
    imh, imw = 8, 16
    # Pixel (x, y) of point (X, Y, Z): (0.5 * 16 * X / Z + 8, 1.0 * 8 * Y / Z + 4).
    track3d = np.array([
        [[0.0, 0.0, 2.0], [1.0, 0.5, 4.0]],     # frame 0 -> (8, 4), frame 1 -> (10, 5)
        [[0.0, 0.0, 3.0], [np.nan] * 3],        # same pixel as track 0 at frame 0, farther
        [[0.0, 0.0, -1.0], [9.0, 0.0, 1.0]],    # behind the camera; out of view
    ])
    visible = np.array([[True, True], [True, False], [True, True]])
    depth = depth_from_tracks(track3d, visible, cameras, imh, imw)
    expected = np.zeros((2, imh, imw), np.float32)
    expected[0, 4, 8] = 2.0
    expected[1, 5, 10] = 4.0
    np.testing.assert_array_equal(depth, expected)
    assert not depth_from_tracks(np.zeros((0, 2, 3)), np.zeros((0, 2), bool), cameras, imh, imw).any()


# ------------------------------------------------------------------------------------ 3D view


def test_scene_view_frames_the_cube_with_up_on_top():
    rng = np.random.default_rng(1)
    points = rng.uniform(-1, 1, (500, 3)) + [0.0, 0.0, 5.0]
    view = SceneView.fit(points, 64, 96)
    xy, _, _ok = view.project(view.centre_m)
    np.testing.assert_allclose(xy, [48.0, 32.0], atol=1e-9)  # the centre is in the middle
    xy_cube, _, ok_cube = view.project(view.cube_corners())
    assert ok_cube.all() and (xy_cube >= 0).all() and (xy_cube <= [96, 64]).all()
    # World up is -y: a point above the centre appears higher (smaller row).
    above, _, _ = view.project(view.centre_m + [0.0, -0.5, 0.0])
    assert above[1] < 32.0 - 5
    # Azimuth -60 deg: the eye sits at -z (behind) and +x (right) of the centre, so +x points
    # to the right on screen and +z into the screen (to the upper right).
    right, _, _ = view.project(view.centre_m + [0.5, 0.0, 0.0])
    assert right[0] > 48.0 + 5
    eye = view.camera.camera_to_world[:, 3]
    assert eye[0] > view.centre_m[0] and eye[2] < view.centre_m[2] and eye[1] < view.centre_m[1]


def _line_scene(num_frames: int = 6):
    """One static camera, a static point and a point moving along +x, 2 m ahead."""
    extr = np.concatenate([np.eye(3), np.zeros((3, 1))], axis=1)
    cameras = PinholeCamera.from_hfov(np.stack([extr] * num_frames), 60.0)
    t = np.arange(num_frames)
    static = np.stack([np.full(num_frames, -0.3), np.zeros(num_frames), np.full(num_frames, 2.0)], -1)
    moving = np.stack([0.1 * t, np.full(num_frames, 0.2), np.full(num_frames, 2.0)], -1)
    return cameras, np.stack([static, moving]), np.ones((2, num_frames), bool)


def test_render_scene3d_draws_trails_frustum_and_background():
    cameras, track3d, visible = _line_scene()
    colors = np.array([[255, 0, 0], [0, 200, 0]], np.uint8)
    depth = np.full((6, 8, 8), 2.0, np.float32)
    video = np.zeros((6, 8, 8, 3), np.uint8)  # black background cloud
    corners = np.stack(np.meshgrid([-1.0, 1.0], [-1.0, 1.0], [0.0, 2.5]), -1).reshape(-1, 3)
    view = SceneView.fit(corners)  # a cube holding the camera and the points
    frames = list(render_scene3d(track3d, visible, colors, cameras, depth, video, 60.0, view))
    assert len(frames) == 6 and frames[0].shape == (512, 512, 3)
    last = frames[-1]
    # The moving point's trail: green pixels along its projected path, the newest opaque.
    path, _, _ = view.project(track3d[1])
    for xy in path[-2:]:
        r, c = np.floor(xy[::-1]).astype(int)
        assert (last[r - 1:r + 2, c - 1:c + 2] == [0, 200, 0]).all(-1).any()
    mid = np.floor(0.5 * (path[0] + path[-1])[::-1]).astype(int)  # an older, fainter part
    patch = last[mid[0] - 1:mid[0] + 2, mid[1] - 1:mid[1] + 2].reshape(-1, 3).astype(int)
    assert (patch[:, 1] > patch[:, 0] + 50).any()
    # The static point is a red dot and leaves no trail beside it.
    dot, _, _ = view.project(track3d[0, -1])
    r, c = np.floor(dot[::-1]).astype(int)
    assert (last[r, c] == [255, 0, 0]).all()
    # Background: black points blended at 40 % over white = 153 grey, at the cloud's location.
    cloud, _ = scene3d.background_points(depth[0], video[0], PinholeCamera(
        cameras.world_to_camera[0], cameras.fx, cameras.fy))
    bg_xy, _, _ = view.project(cloud)
    bg_xy = bg_xy[((bg_xy >= 0) & (bg_xy < 512)).all(-1)]
    assert len(bg_xy) > 10
    greys = last[np.floor(bg_xy[:, 1]).astype(int), np.floor(bg_xy[:, 0]).astype(int)]
    assert np.mean((greys == 153).all(-1)) > 0.5
    # Frustum and camera path in dark blue near the camera centre's projection.
    centre, _, _ = view.project(np.zeros(3))
    r, c = np.floor(centre[::-1]).astype(int)
    patch = last[r - 3:r + 4, c - 3:c + 4].reshape(-1, 3).astype(int)
    assert ((patch[:, 2] > 100) & (patch[:, 0] < 80) & (patch[:, 1] < 80)).any()


def test_scene_motion_2d_trails_only_for_moving_points():
    cameras, track3d, visible = _line_scene()
    video = np.full((6, 64, 64, 3), 255, np.uint8)
    colors = np.array([[255, 0, 0], [0, 0, 255]], np.uint8)
    frames = list(render_scene_motion_2d(video, track3d, visible, colors, cameras))
    last = frames[-1]
    xy, _, _ = cameras.project(track3d, 64, 64)  # [2, T, 2], all frames share one camera
    red = (last == [255, 0, 0]).all(-1)
    blue_ish = (last[..., 2] > 200) & (last[..., 0] < 250)
    r, c = np.floor(xy[0, -1, ::-1]).astype(int)
    assert red[r - 1:r + 2, c - 1:c + 2].sum() == red.sum() > 0  # just the dot
    # The mover's trail spans its whole path (x from frame 0 to frame 5).
    cols = np.nonzero(blue_ish.any(axis=0))[0]
    assert cols.min() <= np.floor(xy[1, 0, 0]) + 1 and cols.max() >= np.floor(xy[1, -1, 0]) - 1
    # Frame 0 has no history: only dots.
    assert ((frames[0] != 255).any(-1)).sum() <= 2 * 9


def test_dashes_cover_half_of_a_polyline():
    pieces = scene3d._dashes(np.array([[0.0, 0.0], [60.0, 0.0], [60.0, 30.0]]), 6.0)
    lengths = np.linalg.norm(pieces[:, 1] - pieces[:, 0], axis=-1)
    assert lengths.sum() == pytest.approx(45.0, abs=6.0) and lengths.max() <= 6.0 + 1e-9


def test_trails_with_no_tracks_return_the_frames_unchanged():
    """Zero tracks (an empty tracking result) draw nothing instead of failing in OpenCV."""
    from stereo4d.viz.trails import rainbow_colors, render_trails

    assert rainbow_colors(0).shape == (0, 3) and rainbow_colors(0).dtype == np.uint8
    frames = np.arange(2 * 4 * 6 * 3, dtype=np.uint8).reshape(2, 4, 6, 3)
    out = list(render_trails(frames, np.zeros((0, 2, 2)), np.zeros((0, 2), bool)))
    np.testing.assert_array_equal(np.stack(out), frames)


def test_rainbow_colors_known_values():
    """Hue steps of 180 / num (OpenCV hue units) at full saturation and value."""
    from stereo4d.viz.trails import rainbow_colors

    np.testing.assert_array_equal(rainbow_colors(3), [[255, 0, 0], [0, 255, 0], [0, 0, 255]])
