"""Gap filling of optimised tracks: static tracks take their mean point, moving ones the 2D ray
at a time-interpolated depth; tracks without optimised frames stay empty."""

import numpy as np

from stereo4d.geometry import PinholeCamera
from stereo4d.track_fill import FillSettings, _interpolate_in_time, fill_track_gaps, static_tracks

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

    # Extrapolation limit: the mover's frames 4, 5 lie 1, 2 frames past its last optimised
    # frame (3); interior gaps and static tracks are filled whatever the limit.
    for limit, expected in ((None, [1] * 6), (1, [1, 1, 1, 1, 1, 0]), (0, [1, 1, 1, 1, 0, 0])):
        out_k, vis_k = fill_track_gaps(track3d, optimised, xy, visibles_2d, cams,
                                       np.array([True, False, False]), SIZE, SIZE, limit)
        np.testing.assert_array_equal(vis_k[1], expected)
        np.testing.assert_array_equal(vis_k[0], vis[0])
        np.testing.assert_allclose(out_k[vis_k], out[vis_k])


def test_static_tracks_rule():
    motion = np.array([[1.0, 2.0, 3.0], [30.0, 40.0, 50.0]])
    mask = np.ones((2, 3), bool)
    np.testing.assert_array_equal(static_tracks(motion, mask, 20.0, 90.0), [True, False])


def _scene_with_tracking_noise(seed=0, frames=12, num_static=48, noise_px=0.3):
    """A walking, turning camera; static points 4-20 m away plus one mover; 2D tracks with
    ``noise_px`` tracking noise, lifted with the true depth. Returns (truth [N, T, 3], Tracks2D,
    lifted [N, T, 3], cameras, moving [N] bool)."""
    from stereo4d.geometry import rotation_xyz_deg
    from stereo4d.tracks import Tracks2D

    rng = np.random.default_rng(seed)
    w2c = np.zeros((frames, 3, 4))
    for t in range(frames):
        rot = rotation_xyz_deg(0.0, 1.5 * t, 0.0)  # a turn of 1.5 deg per frame
        w2c[t, :, :3] = rot
        w2c[t, :, 3] = -rot @ np.array([0.05 * t, 0.0, 0.1 * t])
    cams = PinholeCamera.from_hfov(w2c, 60.0)
    depth = rng.uniform(4.0, 20.0, num_static)
    static_pts = np.stack([rng.uniform(-0.3, 0.3, num_static) * depth,
                           rng.uniform(-0.3, 0.3, num_static) * depth, depth], -1)
    truth = np.broadcast_to(static_pts[:, None], (num_static, frames, 3)).copy()
    mover = np.array([0.0, 0.0, 5.0]) + np.arange(frames)[:, None] * np.array([0.25, 0.0, 0.0])
    truth = np.concatenate([truth, mover[None]], 0)
    xy, z, _ = cams.project(truth, SIZE * 8, SIZE * 8)
    noisy_xy = xy + rng.normal(0.0, noise_px, xy.shape)
    visibles = np.ones(xy.shape[:2], bool)
    tracks = Tracks2D(noisy_xy, visibles, np.stack([np.zeros(len(xy)), xy[:, 0, 1], xy[:, 0, 0]], -1))
    per_frame = PinholeCamera(w2c[:, None], cams.fx, cams.fy)
    lifted = per_frame.unproject(noisy_xy.transpose(1, 0, 2), z.T, SIZE * 8, SIZE * 8)
    lifted = lifted.transpose(1, 0, 2)
    moving = np.zeros(len(truth), bool)
    moving[-1] = True
    return truth, tracks, lifted, cams, moving


def test_snapping_static_tracks_removes_tracking_noise_jitter():
    """Static points get one point: jitter falls from the tracking noise's to zero and the mean
    error falls (the noise averages out); the moving track is left as optimised."""
    from stereo4d.metrics.tracks3d import jitter_m, mean_error_m
    from stereo4d.track_3d import optimize_and_fill
    from stereo4d.track_opt import TrackOptConfig

    truth, tracks, lifted, cams, moving = _scene_with_tracking_noise()
    config = TrackOptConfig(dynamic_edges="inside", num_workers=1)
    size = SIZE * 8
    runs = {snap: optimize_and_fill(lifted, tracks.visibles, tracks, cams, size, size, config,
                                    FillSettings(fill_gaps=True, snap_static=snap))
            for snap in (False, True)}
    (res_off, off, vis_off), (_, on, vis_on) = runs[False], runs[True]
    np.testing.assert_array_equal(vis_off, vis_on)  # same frames: only the points change
    static = ~moving
    jit_off, jit_on = jitter_m(off[static], vis_off[static]), jitter_m(on[static], vis_on[static])
    err_off = mean_error_m(off[static], truth[static], vis_off[static])
    err_on = mean_error_m(on[static], truth[static], vis_on[static])
    assert jit_off > 0.01  # 0.3 px of noise at 4-20 m, turning camera
    assert jit_on < 1e-5
    assert err_on < 0.8 * err_off
    np.testing.assert_array_equal(on[moving], off[moving])  # the mover is not static: unchanged
    assert res_off.motion_px[moving].max() > 20.0
    # The reference mode (no filling, no snapping) is the optimisation's output, unchanged.
    result, ref, ref_vis = optimize_and_fill(lifted, tracks.visibles, tracks, cams, size, size,
                                             config, FillSettings(min_lifted_frames=3,
                                                                  max_static_reprojection_px=4.0))
    np.testing.assert_array_equal(ref, result.track3d)
    np.testing.assert_array_equal(ref_vis, result.visible)


def test_tracks_without_optimised_frames_are_seeded_from_lifted_points():
    """A static track with 3 lifted frames and none optimised gets every 2D-visible frame (its
    lifted mean point); with 2 lifted frames it stays empty at min_frames=3; an optimised track
    keeps its optimised points."""
    from stereo4d.track_fill import seed_from_lifted, snap_static_tracks

    cams = _cameras()
    point = np.array([0.3, 0.1, 6.0])
    truth = np.broadcast_to(point, (3, T, 3)).copy()
    xy, _, _ = cams.project(truth, SIZE, SIZE)
    lifted = truth + np.array([0.0, 0.0, 0.06])[None, None] * np.where(np.arange(T) % 2, 1, -1)[:, None]
    lifted_visible = np.array([[1, 1, 1, 0, 0, 0], [1, 0, 1, 0, 0, 0], [1] * 6], bool)
    optimised = np.array([[0] * 6, [0] * 6, [0, 0, 1, 1, 0, 0]], bool)
    track3d = np.where(optimised[..., None], truth, np.nan)
    seeded, seeded_vis = seed_from_lifted(track3d, optimised, lifted, lifted_visible, 3)
    np.testing.assert_array_equal(seeded_vis, [[1, 1, 1, 0, 0, 0], [0] * 6, [0, 0, 1, 1, 0, 0]])
    np.testing.assert_allclose(seeded[0, :3], lifted[0, :3], atol=1e-6)
    np.testing.assert_allclose(seeded[2, 2:4], truth[2, 2:4], atol=1e-6)
    static = np.ones(3, bool)
    snapped = snap_static_tracks(seeded, seeded_vis, static)
    out, vis = fill_track_gaps(snapped, seeded_vis, xy, np.ones((3, T), bool), cams, static,
                               SIZE, SIZE)
    np.testing.assert_array_equal(vis.sum(axis=1), [T, 0, T])
    # lifted depths 5.94, 6.06, 5.94: the mean point is 0.02 m from the truth in every frame
    np.testing.assert_allclose(out[0], np.broadcast_to(point + [0, 0, -0.02], (T, 3)), atol=1e-5)


def test_static_points_off_their_2d_track_are_dropped():
    from stereo4d.track_fill import drop_off_track_static_frames, static_reprojection_px

    cams = _cameras()
    facade = np.array([0.4, -0.1, 20.0])  # far point the query was on
    occluder = np.array([0.3, -0.05, 2.0])  # near point the 2D track moves onto at frame 3
    on_facade, _, _ = cams.project(np.broadcast_to(facade, (T, 3))[None], SIZE, SIZE)
    on_occluder, _, _ = cams.project(np.broadcast_to(occluder, (T, 3))[None], SIZE, SIZE)
    switched = np.concatenate([on_facade[0, :3], on_occluder[0, 3:]])  # [T, 2]
    tracks_xy = np.stack([switched, switched, on_facade[0]])
    # Track 0: static, snapped to the occluder (where its depth was valid) in every frame;
    # track 1: the same points but moving (never dropped); track 2: a consistent static track.
    track3d = np.stack([np.broadcast_to(occluder, (T, 3)), np.broadcast_to(occluder, (T, 3)),
                        np.broadcast_to(facade, (T, 3))]).astype(np.float64)
    visible = np.ones((3, T), bool)
    static = np.array([True, False, True])

    dist = static_reprojection_px(track3d, tracks_xy, cams, SIZE, SIZE)
    np.testing.assert_allclose(dist[0, 3:], 0.0, atol=1e-6)
    assert dist[0, :3].min() > 1.0  # 0.2 m/frame of walking: the near point moves away
    np.testing.assert_allclose(dist[2], 0.0, atol=1e-6)

    out, kept = drop_off_track_static_frames(track3d, visible, tracks_xy, static, cams, SIZE,
                                             SIZE, max_px=1.0)
    expected = visible.copy()
    expected[0, :3] = dist[0, :3] <= 1.0
    np.testing.assert_array_equal(kept, expected)
    assert not expected[0, :3].all()
    assert np.isnan(out[~kept]).all() and np.isfinite(out[kept]).all()
    np.testing.assert_allclose(out[kept], track3d[kept].astype(np.float32))

    # Behind the camera counts as off the track; 0 turns the test off.
    behind = track3d.copy()
    behind[2, 1] = [0.0, 0.0, -1.0]
    assert np.isinf(static_reprojection_px(behind, tracks_xy, cams, SIZE, SIZE)[2, 1])
    # A non-finite point marked visible is not hidden: the stage's health check refuses it.
    poisoned = track3d.copy()
    poisoned[2, 4] = np.nan
    assert np.isnan(static_reprojection_px(poisoned, tracks_xy, cams, SIZE, SIZE)[2, 4])
    _, kept_nan = drop_off_track_static_frames(poisoned, visible, tracks_xy, static, cams, SIZE,
                                               SIZE, max_px=1.0)
    assert kept_nan[2, 4]
    _, kept_off = drop_off_track_static_frames(track3d, visible, tracks_xy, static, cams, SIZE,
                                               SIZE, max_px=0.0)
    assert kept_off.all()


def _movers_with_depth_noise(seed=0, frames=16, num=12, disparity_noise_px=0.15):
    """A walking, turning camera and ``num`` movers 3-8 m away walking at constant velocity; the
    2D tracks exact, the depth with stereo-like noise (``disparity_noise_px`` at f B = 27.9 px m).
    Returns (truth [N, T, 3], xy [N, T, 2], noisy [N, T, 3], cameras)."""
    from stereo4d.geometry import rotation_xyz_deg

    rng = np.random.default_rng(seed)
    w2c = np.zeros((frames, 3, 4))
    for t in range(frames):
        rot = rotation_xyz_deg(0.0, 1.0 * t, 0.0)
        w2c[t, :, :3] = rot
        w2c[t, :, 3] = -rot @ np.array([0.03 * t, 0.0, 0.05 * t])
    cams = PinholeCamera.from_hfov(w2c, 60.0)
    depth = rng.uniform(3.0, 8.0, num)
    start = np.stack([rng.uniform(-0.2, 0.2, num) * depth, rng.uniform(-0.2, 0.2, num) * depth,
                      depth], -1)
    velocity = rng.uniform(-0.04, 0.04, (num, 3))  # metres per frame
    truth = start[:, None] + np.arange(frames)[None, :, None] * velocity[:, None]
    xy, z, _ = cams.project(truth, SIZE * 8, SIZE * 8)
    focal_baseline_px_m = 27.9
    noisy_z = focal_baseline_px_m / (focal_baseline_px_m / z
                                     + rng.normal(0.0, disparity_noise_px, z.shape))
    per_frame = PinholeCamera(w2c[:, None], cams.fx, cams.fy)
    noisy = per_frame.unproject(xy.transpose(1, 0, 2), noisy_z.T, SIZE * 8, SIZE * 8)
    return truth, xy, noisy.transpose(1, 0, 2), cams


def test_smoothing_moving_tracks_lowers_jitter_against_truth():
    """Movers with noisy stereo depth and a gap filled by interpolation: the smoothing lowers
    the jitter (the truth's is near zero: constant velocity) and the mean error, keeping the 2D
    points; exact tracks at constant velocity and static tracks come out unchanged."""
    from stereo4d.metrics.tracks3d import jitter_m, mean_error_m
    from stereo4d.track_fill import smooth_moving_tracks

    truth, xy, noisy, cams = _movers_with_depth_noise()
    num, frames = truth.shape[:2]
    measured = np.ones((num, frames), bool)
    measured[:, 7:10] = False  # a left-out stretch, filled from the runs on either side
    static = np.zeros(num, bool)
    filled, visible = fill_track_gaps(np.where(measured[..., None], noisy, np.nan), measured, xy,
                                      np.ones((num, frames), bool), cams, static, SIZE * 8,
                                      SIZE * 8)
    assert visible.all()
    smoothed = smooth_moving_tracks(filled, visible, measured, static, cams, smoothness=10.0)
    jit_before, jit_after = jitter_m(filled, visible), jitter_m(smoothed, visible)
    err_before = mean_error_m(filled, truth, visible)
    err_after = mean_error_m(smoothed, truth, visible)
    assert jit_before > 0.02  # 0.15 px of disparity noise at 3-8 m: centimetres per frame
    assert jit_after < 0.2 * jit_before
    assert err_after < 0.8 * err_before
    # The 2D points are kept: every smoothed point lies on its frame's ray.
    xy_after, _, _ = cams.project(smoothed.astype(np.float64), SIZE * 8, SIZE * 8)
    np.testing.assert_allclose(xy_after, xy, atol=1e-3)
    # Exact tracks moving at constant velocity have no second difference: unchanged.
    exact = smooth_moving_tracks(truth, visible, measured, static, cams, smoothness=10.0)
    np.testing.assert_allclose(exact, truth, atol=1e-4)
    # Static tracks, and smoothness 0, leave the points as they are.
    kept = smooth_moving_tracks(filled, visible, measured, np.ones(num, bool), cams, 10.0)
    np.testing.assert_array_equal(kept, filled)
    np.testing.assert_array_equal(smooth_moving_tracks(filled, visible, measured, static, cams,
                                                       0.0), filled)


def test_pentadiagonal_solver_matches_dense_solve():
    from stereo4d.track_fill import _solve_pentadiagonal

    rng = np.random.default_rng(1)
    num, frames = 5, 9
    band = np.zeros((num, 3, frames))
    band[:, 1, :-1] = rng.normal(0.0, 1.0, (num, frames - 1))  # band[:, k, t] = A[t + k, t]
    band[:, 2, :-2] = rng.normal(0.0, 1.0, (num, frames - 2))
    band[:, 0] = 5.0 + rng.uniform(0.0, 1.0, (num, frames))  # diagonally dominant: SPD
    dense = np.zeros((num, frames, frames))
    t = np.arange(frames)
    dense[:, t, t] = band[:, 0]
    dense[:, t[1:], t[:-1]] = dense[:, t[:-1], t[1:]] = band[:, 1, :-1]
    dense[:, t[2:], t[:-2]] = dense[:, t[:-2], t[2:]] = band[:, 2, :-2]
    rhs = rng.normal(0.0, 1.0, (num, frames))
    np.testing.assert_allclose(_solve_pentadiagonal(band, rhs),
                               np.linalg.solve(dense, rhs[..., None])[..., 0], atol=1e-10)
