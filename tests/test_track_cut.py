"""The surface-change cut (``stereo4d.track_cut``): a track whose stereo depth jumps to another
surface for good is cut at the right frame, on either side of its query frame; tracks on one
surface, moving ones and single stereo outliers are untouched."""

import numpy as np

from stereo4d.geometry import PinholeCamera
from stereo4d.track_cut import SurfaceCutSettings, cut_surface_changes, surface_change_keep

T = 40
SIZE = 64
WALK_M_PER_FRAME = 0.05  # 1.5 m/s at 30 frames/s


def _cameras() -> PinholeCamera:
    w2c = np.tile(np.concatenate([np.eye(3), np.zeros((3, 1))], 1), (T, 1, 1))
    w2c[:, 2, 3] = -WALK_M_PER_FRAME * np.arange(T)  # the camera walks forward along +z
    return PinholeCamera.from_hfov(w2c, 60.0)


def _lift(cams: PinholeCamera, xy: np.ndarray, depth_m: np.ndarray) -> np.ndarray:
    """[N, T, 2] pixels and [N, T] camera depth -> [N, T, 3] world points."""
    per_frame = PinholeCamera(cams.world_to_camera[:, None], cams.fx, cams.fy)
    return per_frame.unproject(xy.transpose(1, 0, 2), depth_m.T, SIZE, SIZE).transpose(1, 0, 2)


def _scene():
    """Five tracks over T frames, 2D fixed at the image centre-right, each with its depth [T]:
    0 static facade at 12 m switching at frame 25 onto a person 2 m away (query at 5);
    1 the same switch before its query (query at 35, on the facade from frame 15 on);
    2 a static point at 8 m, never switching, with stereo noise and two single outliers;
    3 a person walking towards the camera at 1.5 m/s from 6 m (no switch);
    4 a ground point at 4 m sliding onto a far wall (18 m) at frame 30, with a stereo hole."""
    cams = _cameras()
    rng = np.random.default_rng(0)
    frames = np.arange(T)
    walked = WALK_M_PER_FRAME * frames
    depth = np.empty((5, T))
    depth[0] = np.where(frames < 25, 12.0 - walked, 2.0)
    depth[1] = np.where(frames >= 15, 12.0 - walked, 2.0)
    depth[2] = (8.0 - walked) * np.exp(rng.normal(0, 0.03, T))
    depth[2, [10, 11 + 9]] *= 0.5  # one-frame stereo outliers
    depth[3] = 6.0 - walked - 0.05 * frames
    depth[4] = np.where(frames < 30, 4.0 - walked, 18.0 - walked)
    valid = np.ones((5, T), bool)
    valid[4, 26:30] = False  # no stereo depth just before the slide
    xy = np.broadcast_to(np.array([40.0, 30.0]), (5, T, 2))
    query = np.array([5, 35, 0, 20, 2])
    return cams, _lift(cams, xy, depth), valid, query


def test_switching_tracks_are_cut_at_the_switch_and_others_untouched():
    cams, lifted, valid, query = _scene()
    keep = surface_change_keep(lifted, valid, query, cams)
    frames = np.arange(T)
    np.testing.assert_array_equal(keep[0], frames < 25)  # cut from the first frame on the person
    np.testing.assert_array_equal(keep[1], frames >= 15)  # backwards from the query
    assert keep[2].all() and keep[3].all()  # noise, outliers and a walking person: untouched
    np.testing.assert_array_equal(keep[4], frames < 26)  # from the last frame on the ground


def test_cut_removes_frames_from_visibility_and_lifted_validity():
    cams, lifted, valid, query = _scene()
    visibles = np.ones_like(valid)
    vis, lifted_valid = cut_surface_changes(visibles, lifted, valid, query, cams)
    assert vis.sum() == T * 5 - 15 - 15 - 14 and not vis[0, 25:].any()
    np.testing.assert_array_equal(lifted_valid, valid & vis)


def test_a_short_jump_is_not_a_surface_change():
    """A person crossing in front for 3 frames (fewer than ``min_persistent``) is not a cut;
    with ``min_persistent=3`` it is."""
    cams = _cameras()
    depth = np.full((1, T), 10.0) - WALK_M_PER_FRAME * np.arange(T)
    depth[0, 20:23] = 2.0
    lifted = _lift(cams, np.full((1, T, 2), 32.0), depth)
    valid = np.ones((1, T), bool)
    assert surface_change_keep(lifted, valid, np.array([0]), cams).all()
    strict = SurfaceCutSettings(min_persistent=3)
    keep = surface_change_keep(lifted, valid, np.array([0]), cams, strict)
    np.testing.assert_array_equal(keep[0], np.arange(T) < 20)


def test_a_side_without_depth_near_the_query_is_cut_whole():
    """No valid depth at the query frame and the 15 after it (more than ``max_anchor_frames``,
    10 here): nothing ties the later depth to the query's surface, so every frame after the
    query is cut; the frames before it (valid depth from the frame before the query) stay. With
    depth again 9 frames after the query, or with the rule off, nothing is cut."""
    cams = _cameras()
    depth = np.full((1, T), 10.0) - WALK_M_PER_FRAME * np.arange(T)
    lifted = _lift(cams, np.full((1, T, 2), 32.0), depth)
    valid = np.ones((1, T), bool)
    valid[0, 20:36] = False
    query = np.array([20])
    settings = SurfaceCutSettings(max_anchor_frames=10)
    keep = surface_change_keep(lifted, valid, query, cams, settings)
    np.testing.assert_array_equal(keep[0], np.arange(T) <= 20)
    off = SurfaceCutSettings(max_anchor_frames=None)
    assert surface_change_keep(lifted, valid, query, cams, off).all()
    valid[0, 29:36] = True
    assert surface_change_keep(lifted, valid, query, cams, settings).all()


def test_the_stage_cuts_by_default_and_not_in_the_reference_mode():
    from stereo4d.stages.optimization import OptimizationConfig

    default = OptimizationConfig(vid="x_1").fill_settings
    assert default.cuts_surface_changes
    assert default.surface_cut.max_anchor_frames == OptimizationConfig.surface_cut_anchor_frames
    reference = OptimizationConfig(vid="x_1", fill_gaps=False, snap_static=False,
                                   smooth_moving=0.0).fill_settings
    assert not reference.cuts_surface_changes
    off = OptimizationConfig(vid="x_1", surface_cut_log_depth=0.0, surface_cut_anchor_frames=None)
    assert not off.fill_settings.cuts_surface_changes


def test_the_optimisation_leaves_the_cut_frames_empty():
    """Through ``optimize_and_fill``: with the cut, the switching track has no 3D point after
    its switch (gap filling does not bring the frames back); without it, it has."""
    from stereo4d.track_3d import optimize_and_fill
    from stereo4d.track_fill import FillSettings
    from stereo4d.track_opt import TrackOptConfig
    from stereo4d.tracks import Tracks2D

    cams, lifted, valid, query = _scene()
    xy = np.broadcast_to(np.array([40.0, 30.0]), (5, T, 2))
    tracks = Tracks2D(xy, np.ones((5, T), bool),
                      np.stack([query, np.full(5, 30.0), np.full(5, 40.0)], 1))
    config = TrackOptConfig(dynamic_edges="inside")
    outputs = {}
    for cut in (None, SurfaceCutSettings()):
        fill = FillSettings(fill_gaps=True, snap_static=True, surface_cut=cut)
        outputs[cut is None] = optimize_and_fill(lifted, valid, tracks, cams, SIZE, SIZE, config,
                                                 fill)[2]
    assert outputs[False][0, :25].all() and not outputs[False][0, 25:].any()
    assert not outputs[False][1, :15].any() and outputs[False][1, 15:].all()
    assert outputs[True][0, 25:].all() and outputs[True][1, :15].all()
