"""Local rigidity prior of the chained-flow tracker (``track_rigidity``): neighbour medians, pulls."""

import numpy as np
from test_tracking_stage import VELOCITY_XY, _translating_frames

from stereo4d.backends.classical_tracker import ClassicalTracker, ClassicalTrackerConfig
from stereo4d.backends.track_rigidity import (
    RIGIDITY_MIN_NEIGHBOURS,
    neighbour_median_step,
    rigidity_step,
)

#: A 5 x 5 grid of points 6 px apart, all stepping by STEP_XY px to the next frame.
GRID_XY = np.stack(np.meshgrid(np.arange(5) * 6.0, np.arange(5) * 6.0), -1).reshape(-1, 2).astype(np.float32)
STEP_XY = np.float32([3.0, 1.0])
CENTRE = 12  # the grid's middle point


def test_neighbour_median_ignores_the_point_itself_and_an_outlier_neighbour():
    step = np.tile(STEP_XY, (len(GRID_XY), 1))
    step[CENTRE] += [40, -40]  # the centre's own step must not enter its median
    step[CENTRE + 1] += [9, 0]  # one odd neighbour among 8 does not move the median
    median, count = neighbour_median_step(GRID_XY, step, np.ones(len(GRID_XY), bool), 8, 10.0)
    np.testing.assert_allclose(median[CENTRE], STEP_XY, atol=1e-6)
    assert count[CENTRE] == 8 and count[0] == 3  # a corner has 3 points within 10 px (6, 6, 8.5)
    # Only unseen neighbours, or too few within the radius: no median (NaN).
    median, count = neighbour_median_step(GRID_XY, step, np.arange(len(GRID_XY)) == CENTRE, 8, 10.0)
    assert np.isnan(median).all() and count.max() == 0
    median, _ = neighbour_median_step(GRID_XY, step, np.ones(len(GRID_XY), bool), 8, 5.0)
    assert np.isnan(median).all() and RIGIDITY_MIN_NEIGHBOURS > 0


def test_neighbours_must_have_moved_alike_when_asked():
    """At an object's edge: the centre's column (but itself) and those right of it are background
    (another step); with previous velocities given, only the centre's own mover enters its median."""
    right = (GRID_XY[:, 0] >= GRID_XY[CENTRE, 0]) & (np.arange(len(GRID_XY)) != CENTRE)
    step = np.where(right[:, None], np.float32([-4.0, 0.0]), STEP_XY).astype(np.float32)
    velocity = step.copy()  # each point moved the same way the frame before
    seen = np.ones(len(GRID_XY), bool)
    mixed, _ = neighbour_median_step(GRID_XY, step, seen, 8, 10.0)
    alike, count = neighbour_median_step(GRID_XY, step, seen, 8, 10.0, velocity, similar_px=1.0)
    np.testing.assert_allclose(mixed[CENTRE], [-4.0, 0.0], atol=1e-6)  # 5 of 8 are background
    np.testing.assert_allclose(alike[CENTRE], STEP_XY, atol=1e-6)
    assert count[CENTRE] == 3


def test_a_point_off_its_neighbours_is_pulled_after_the_patience_and_an_occluded_one_at_once():
    moved = GRID_XY + STEP_XY
    moved[CENTRE] += [6, 0]  # slipped 6 px off the body's motion (limit 2 + 0.5 |step| = 3.6 px)
    seen = np.ones(len(GRID_XY), bool)
    config = ClassicalTrackerConfig(rigidity_neighbours=6, rigidity_patience=2)
    streak = np.zeros(len(GRID_XY), np.int64)
    out, streak, pulled = rigidity_step(GRID_XY, moved, seen, streak, config)
    assert not pulled.any() and streak[CENTRE] == 1 and np.array_equal(out, moved)
    out, streak, pulled = rigidity_step(GRID_XY, moved, seen, streak, config)
    assert np.flatnonzero(pulled).tolist() == [CENTRE]
    np.testing.assert_allclose(out[CENTRE], GRID_XY[CENTRE] + STEP_XY, atol=1e-6)
    np.testing.assert_array_equal(np.delete(out, CENTRE, 0), np.delete(moved, CENTRE, 0))
    # A step within the limit resets the streak; an occluded point follows its neighbours at once.
    moved[CENTRE] = GRID_XY[CENTRE] + STEP_XY + [3, 0]
    _, streak, pulled = rigidity_step(GRID_XY, moved, seen, streak, config)
    assert streak[CENTRE] == 0 and not pulled.any()
    seen[CENTRE] = False
    moved[CENTRE] = GRID_XY[CENTRE] - [10, 0]  # background flow under the occluder
    occluded = ClassicalTrackerConfig(rigidity_neighbours=6, rigidity_occluded=True)
    out, _, pulled = rigidity_step(GRID_XY, moved, seen, np.zeros_like(streak), occluded)
    assert np.flatnonzero(pulled).tolist() == [CENTRE]
    np.testing.assert_allclose(out[CENTRE], GRID_XY[CENTRE] + STEP_XY, atol=1e-6)


def test_tracker_with_the_prior_keeps_a_point_on_its_neighbours_through_a_wrong_flow_patch():
    """A patch of wrong flow (+5 px) under one point at one frame: chaining alone keeps the 5 px
    error (and coasts on the wrong velocity once occluded); with the prior the point stays exact."""
    frames = _translating_frames()  # [10, 64, 96, 3], moving by VELOCITY_XY per frame
    num_frames = len(frames)
    shape = (num_frames - 1, *frames.shape[1:3], 2)
    forward = np.broadcast_to(VELOCITY_XY, shape).astype(np.float32).copy()
    backward = -forward
    grid_xy = GRID_XY + np.float32([30.5, 20.5])  # 5 x 5 points 6 px apart, at frame 0
    queries = np.concatenate([np.zeros((len(grid_xy), 1)), grid_xy[:, ::-1]], axis=1)  # (t, y, x)
    truth = (grid_xy[:, None] + np.arange(num_frames)[None, :, None] * VELOCITY_XY).astype(np.float32)
    x, y = np.floor(truth[CENTRE, 3]).astype(int)
    forward[3, y - 1:y + 2, x - 1:x + 2] += [5.0, 0.0]  # wrong flow under the centre point only
    base = {"anchor_every": 0, "accel_check": False, "min_query_texture": 0.0, "color_tol": 1e9,
            "progress": False}
    plain, _ = ClassicalTracker(ClassicalTrackerConfig(**base)).track_with_flows(
        frames, queries, forward, backward)
    prior = ClassicalTrackerConfig(**base, rigidity_neighbours=6, rigidity_tol_px=0.5,
                                   rigidity_patience=1, rigidity_occluded=True)
    kept, _ = ClassicalTracker(prior).track_with_flows(frames, queries, forward, backward)
    assert np.abs(plain[CENTRE, -1] - truth[CENTRE, -1]).max() > 4.9
    assert np.abs(kept - truth).max() < 1e-3
