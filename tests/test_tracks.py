"""Track containers and lifting 2D tracks to 3D."""

import numpy as np
import pytest

from stereo4d import geometry
from stereo4d.io import InputError
from stereo4d.tracks import Tracks2D, lift_tracks_to_3d, sample_colors


def test_lift_recovers_known_world_points():
    rng = np.random.default_rng(0)
    t, n, imh, imw = 3, 50, 40, 60
    w2c = np.stack([np.hstack([geometry.rotation_xyz_deg(0, 5 * i, 0), [[0.1 * i], [0], [0]]])
                    for i in range(t)])
    cams = geometry.PinholeCamera.from_hfov(w2c, 60.0, aspect_hw=imh / imw)
    world = rng.uniform([-2, -1, 4], [2, 1, 8], size=(n, 3))
    per_frame = geometry.PinholeCamera(w2c[:, None], cams.fx, cams.fy)
    xy, depth, in_view = per_frame.project(np.broadcast_to(world, (t, n, 3)), imh, imw)
    # Depth maps that hold the true depth at the pixel of each point (no collisions at this density
    # matter: points landing on one pixel get that pixel's last write, so keep only unique pixels).
    depth_maps = np.zeros((t, imh, imw))
    ix = np.clip(np.floor(xy).astype(int), 0, [imw - 1, imh - 1])
    for f in range(t):
        depth_maps[f, ix[f, :, 1], ix[f, :, 0]] = depth[f]
    flat = ix[..., 1] * imw + ix[..., 0]  # [t, n] pixel ids
    shared = np.stack([np.isin(flat[f], flat[f][np.bincount(flat[f]) [flat[f]] > 1]) for f in range(t)])
    tracks = Tracks2D(xy.transpose(1, 0, 2), (in_view & ~shared).T, np.zeros((n, 3), int))
    lifted, valid = lift_tracks_to_3d(tracks, depth_maps, cams)
    assert valid.sum() == (in_view & ~shared).sum() > n
    err = np.linalg.norm(lifted - world[:, None], axis=-1)[valid]
    assert err.max() < 1e-5  # tracks are float32 pixels


def test_lift_marks_out_of_range_depth_invalid():
    tracks = Tracks2D(np.full((2, 1, 2), 5.0), np.ones((2, 1), bool), np.zeros((2, 3)))
    depth = np.full((1, 10, 10), 25.0)
    cams = geometry.PinholeCamera.from_hfov(np.hstack([np.eye(3), np.zeros((3, 1))])[None], 60.0)
    _, valid = lift_tracks_to_3d(tracks, depth, cams)
    assert not valid.any()


def test_tracks2d_dict_round_trip_and_validation():
    tr = Tracks2D(np.ones((4, 3, 2)), np.ones((4, 3), bool), np.zeros((4, 3), int))
    back = Tracks2D.from_dict(tr.to_dict())
    np.testing.assert_array_equal(back.tracks_xy, tr.tracks_xy)
    empty = Tracks2D.from_dict({"tracks": np.zeros((0, 3, 2)), "visibles": np.zeros((0, 3), bool),
                                "query_points": np.zeros((0, 3), int)})
    assert empty.num_tracks == 0 and empty.num_frames == 3
    with pytest.raises(InputError):
        Tracks2D(np.ones((4, 3, 2)), np.ones((4, 2), bool), np.zeros((4, 3)))
    with pytest.raises(InputError, match="missing"):
        Tracks2D.from_dict({"tracks": np.ones((1, 1, 2))})


def test_sample_colors_uses_the_pixel_containing_the_query():
    video = np.zeros((2, 4, 5, 3), np.uint8)
    video[1, 2, 3] = [10, 20, 30]
    cols = sample_colors(video, np.array([[1, 2.9, 3.2], [0, 0, 0]]))
    np.testing.assert_array_equal(cols, [[10, 20, 30], [0, 0, 0]])
