"""Geometry: parity with the reference maps, round trips and conventions."""

import cv2
import numpy as np
import pytest

from stereo4d import geometry


@pytest.fixture(scope="module")
def golden(parity_dir):
    return dict(np.load(parity_dir / "rectify_golden.npz"))


def test_rectification_map_matches_reference(golden):
    hw = tuple(int(v) for v in golden["equirect_hw"])
    for key, rot in (("", golden["rectified2rig"]), ("_right", golden["rectified2rig_right"])):
        mx, my = geometry.rectification_map(hw, golden["fov_bounds"], rot)
        assert np.abs(mx - golden["rect_map_x" + key]).max() <= 1e-3
        assert np.abs(my - golden["rect_map_y" + key]).max() <= 1e-3


def test_perspective_map_matches_reference(golden):
    hw = tuple(int(v) for v in golden["equirect_hw"])
    px, py = geometry.perspective_to_equirect_map(hw, golden["fov_bounds"], 64, 64, 60.0)
    assert np.abs(px - golden["pers_map_x"]).max() <= 1e-3
    assert np.abs(py - golden["pers_map_y"]).max() <= 1e-3
    assert geometry.focal_length_px(60.0, 64) == pytest.approx(float(golden["camera_focal_px"]))


def test_remapped_images_match_reference(golden):
    hw = tuple(int(v) for v in golden["equirect_hw"])
    sbs = golden["sbs_equirect"]
    outs = []
    for eye, rot in enumerate((golden["rectified2rig"], golden["rectified2rig_right"])):
        img = sbs[:, eye * hw[1]:(eye + 1) * hw[1]]
        mx, my = geometry.rectification_map(hw, golden["fov_bounds"], rot)
        outs.append(cv2.remap(img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT))
    assert np.array_equal(np.concatenate(outs, axis=1), golden["sbs_rectified"])
    px, py = geometry.perspective_to_equirect_map(hw, golden["fov_bounds"], 64, 64, 60.0)
    pers = cv2.remap(outs[0], px, py, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    diff = np.abs(pers.astype(int) - golden["perspective_image"]).max()
    assert diff <= 2


def test_equirect_rays_round_trip():
    hw, fov = (31, 45), (-80.0, 70.0, -60.0, 85.0)
    rays = geometry.equirect_pixel_rays(hw, fov)
    assert np.allclose(np.linalg.norm(rays, axis=-1), 1.0)
    u, v = geometry.rays_to_equirect_pixels(rays, hw, fov)
    uu, vv = np.meshgrid(np.arange(hw[1]), np.arange(hw[0]))
    assert np.abs(u - uu).max() < 1e-9 and np.abs(v - vv).max() < 1e-9


def test_conventions_top_rays_point_up_and_centre_forward():
    rays = geometry.perspective_pixel_rays(64, 96, 60.0)
    assert rays[0, :, 1].max() < 0  # y down: the top row looks up
    assert rays[:, 0, 0].max() < 0  # x right: the left column looks left
    centre = rays[31:33, 47:49].mean(axis=(0, 1))
    assert np.allclose(centre / np.linalg.norm(centre), [0, 0, 1], atol=1e-12)
    # The hfov spans the outer pixel edges: the edge ray angle is hfov / 2.
    f = geometry.focal_length_px(60.0, 96)
    assert np.degrees(np.arctan(48 / f)) == pytest.approx(30.0)


def test_identity_rectification_is_identity_map():
    hw, fov = (20, 30), (-90, 90, -90, 90)
    mx, my = geometry.rectification_map(hw, fov, np.eye(3))
    uu, vv = np.meshgrid(np.arange(30), np.arange(20))
    inner = (slice(1, -1), slice(1, -1))  # the poles are degenerate in longitude
    assert np.abs(mx[inner] - uu[inner]).max() < 1e-4 and np.abs(my - vv).max() < 1e-4


def test_pinhole_project_unproject_round_trip():
    rng = np.random.default_rng(0)
    rot = geometry.rotation_xyz_deg(5, -10, 3)
    w2c = np.concatenate([rot, [[0.3], [-0.1], [2.0]]], axis=1)
    cam = geometry.PinholeCamera.from_hfov(w2c, 60.0)
    xy = rng.uniform(0, 512, size=(100, 2))
    depth = rng.uniform(1, 20, size=100)
    world = cam.unproject(xy, depth, 512, 512)
    xy2, depth2, in_view = cam.project(world, 512, 512)
    assert np.abs(xy2 - xy).max() < 1e-9 and np.abs(depth2 - depth).max() < 1e-9
    assert in_view[(xy[:, 0] > 0.5) & (xy[:, 1] > 0.5) & (xy[:, 0] < 511.5) & (xy[:, 1] < 511.5)].all()
    # world -> camera @ camera -> world is the identity.
    c2w = cam.camera_to_world
    both = np.vstack([w2c, [0, 0, 0, 1]]) @ np.vstack([c2w, [0, 0, 0, 1]])
    assert np.allclose(both, np.eye(4))


def test_pinhole_known_value_and_batched_frames():
    w2c = np.stack([np.hstack([np.eye(3), [[0], [0], [-t]]]) for t in (0.0, 1.0)])  # walk +z
    cam = geometry.PinholeCamera.from_hfov(w2c, 90.0)  # f = 256 px for 512 px
    xy, depth, _ = cam.project(np.array([1.0, 0.5, 4.0]), 512, 512)
    assert np.allclose(depth, [4.0, 3.0])
    assert np.allclose(xy[0], [256 + 256 * 1 / 4, 256 + 256 * 0.5 / 4])
    assert np.allclose(xy[1], [256 + 256 * 1 / 3, 256 + 256 * 0.5 / 3])


def test_is_rotation():
    assert geometry.is_rotation(geometry.rotation_xyz_deg(10, 20, 30))
    assert not geometry.is_rotation(np.diag([1.0, 1.0, -1.0]))
    assert not geometry.is_rotation(np.eye(3) * 1.1)
    assert not geometry.is_rotation(np.full((3, 3), np.nan))


def test_camera_at_frame_projects_as_that_frame():
    """``cameras.at(t)`` keeps the intrinsics and takes frame t's extrinsics."""
    w2c = np.tile(np.hstack([np.eye(3), np.zeros((3, 1))]), (3, 1, 1))
    w2c[:, 0, 3] = [0.0, 1.0, 2.0]  # camera t sits at x = -t
    cams = geometry.PinholeCamera(w2c, 0.5, 0.75, 0.5, 0.5)
    xy, depth, _ = cams.at(2).project(np.array([0.0, 0.0, 4.0]), 40, 60)
    # x = fx * W * (0 + 2) / 4 + cx * W = 0.5 * 60 * 0.5 + 30
    np.testing.assert_allclose(xy, [45.0, 20.0])
    assert depth == 4.0 and cams.at(2).fy == 0.75 and cams.at(slice(0, 2)).world_to_camera.shape == (2, 3, 4)
