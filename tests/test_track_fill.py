"""Gap filling of optimised tracks: static tracks take their mean point, moving ones the 2D ray
at a time-interpolated depth; tracks without optimised frames stay empty."""

import numpy as np

from stereo4d.geometry import PinholeCamera
from stereo4d.track_fill import _interpolate_in_time, fill_track_gaps, static_tracks

SIZE = 64
T = 6


def _cameras():
    w2c = np.tile(np.concatenate([np.eye(3), np.zeros((3, 1))], 1), (T, 1, 1))
    w2c[:, 2, 3] = -0.2 * np.arange(T)  # the camera walks forward 0.2 m per frame
    return PinholeCamera.from_hfov(w2c, 60.0)


def test_interpolation_in_time():
    values = np.array([[0.0, 2.0, 0.0, 0.0, 8.0, 0.0], [0.0] * 6])
    known = np.array([[False, True, False, False, True, False], [False] * 6])
    out = _interpolate_in_time(values, known)
    np.testing.assert_allclose(out[0], [2.0, 2.0, 4.0, 6.0, 8.0, 8.0])
    assert np.isnan(out[1]).all()


def test_static_and_moving_gaps_are_filled():
    cams = _cameras()
    static_point = np.array([0.5, -0.2, 5.0])
    # Moving track: straight ahead of the camera, its depth 3, 3.5, ... (z world = depth + 0.2 t).
    depth = 3.0 + 0.5 * np.arange(T)
    moving = np.stack([np.zeros(T), np.zeros(T), depth + 0.2 * np.arange(T)], -1)
    truth = np.stack([np.broadcast_to(static_point, (T, 3)), moving, moving])
    xy, _, _ = cams.project(truth, SIZE, SIZE)
    optimised = np.array([[1, 1, 0, 0, 1, 1], [1, 0, 0, 1, 0, 0], [0] * 6], bool)
    track3d = np.where(optimised[..., None], truth, np.nan)
    track3d[0, 0] += [0.02, 0.0, 0.0]  # optimised static points scatter a little
    track3d[0, 1] -= [0.02, 0.0, 0.0]
    visibles_2d = np.ones((3, T), bool)
    visibles_2d[0, 3] = False
    out, vis = fill_track_gaps(track3d, optimised, xy, visibles_2d, cams,
                               np.array([True, False, False]), SIZE, SIZE)
    np.testing.assert_array_equal(vis[0], [1, 1, 1, 0, 1, 1])  # hidden in 2D: not filled
    np.testing.assert_allclose(out[0, 2], static_point, atol=1e-6)
    assert np.isnan(out[0, 3]).all()
    assert vis[1].all() and not vis[2].any()  # no optimised frame: nothing to fill from
    # Interior gap: depth 3 at t=0, 4.5 at t=3 -> exact on the ray at t=1, 2; held after t=3.
    np.testing.assert_allclose(out[1, 1:4], moving[1:4], atol=1e-5)
    cam_z = out[1, 4:, 2] - 0.2 * np.arange(4, T)
    np.testing.assert_allclose(cam_z, [4.5, 4.5], atol=1e-5)
    np.testing.assert_allclose(out[1, 0], moving[0], atol=1e-6)  # optimised frames unchanged


def test_static_tracks_rule():
    motion = np.array([[1.0, 2.0, 3.0], [30.0, 40.0, 50.0]])
    mask = np.ones((2, 3), bool)
    np.testing.assert_array_equal(static_tracks(motion, mask, 20.0, 90.0), [True, False])
