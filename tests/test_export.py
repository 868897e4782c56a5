"""Released-format export of optimised tracks and the reference's pickle dict."""

from __future__ import annotations

import numpy as np
import pytest

from stereo4d.export import COPIED_KEYS, export_released_npz, optimized_tracks_record
from stereo4d.geometry import PinholeCamera, invert_rigid, rotation_xyz_deg
from stereo4d.io import InputError, load_dataset_npz, save_dataset_npz

NUM_TRACKS, NUM_FRAMES = 7, 5


@pytest.fixture()
def clip_meta(tmp_path):
    """An input npz (with tracks of its own, which the export must replace), read back."""
    rng = np.random.default_rng(1)
    camera2world = np.concatenate(
        [np.stack([rotation_xyz_deg(*rng.uniform(-10, 10, 3)) for _ in range(NUM_FRAMES)]),
         rng.normal(size=(NUM_FRAMES, 3, 1))], axis=-1)
    path = tmp_path / "in.npz"
    save_dataset_npz(path, name="abc_123", video_id="abc", timestamps_us=123 + np.arange(NUM_FRAMES) * 33367,
                     camera2world=camera2world, track3d=rng.normal(size=(3, NUM_FRAMES, 3)),
                     rectified2rig=np.stack([rotation_xyz_deg(1, 2, 3), rotation_xyz_deg(-1, 0, 2)]),
                     fov_bounds_deg=np.array([-95.0, 95.0, -90.0, 90.0]))
    return load_dataset_npz(path)


def _optimised_tracks(seed: int = 0):
    rng = np.random.default_rng(seed)
    track3d = rng.normal(scale=3.0, size=(NUM_TRACKS, NUM_FRAMES, 3))  # float64: export casts
    visible = rng.uniform(size=(NUM_TRACKS, NUM_FRAMES)) < 0.6
    visible[2] = False  # a track with no point left
    track3d[~visible] = np.nan
    return track3d, visible


def test_export_round_trips_through_load_dataset_npz(tmp_path, clip_meta):
    track3d, visible = _optimised_tracks()
    path = export_released_npz(tmp_path / "out" / "abc_123.npz", clip_meta, track3d, visible)
    loaded = load_dataset_npz(path)
    assert loaded["track3d"].shape == (NUM_TRACKS, NUM_FRAMES, 3)
    # Visible points exactly as float32; everything else absent (NaN), the empty track kept.
    np.testing.assert_array_equal(loaded["track3d"][visible], track3d[visible].astype(np.float32))
    assert np.isnan(loaded["track3d"][~visible]).all()
    for key in COPIED_KEYS:
        np.testing.assert_array_equal(loaded[key], clip_meta[key])
    np.testing.assert_allclose(loaded["extrs_rectified"], clip_meta["extrs_rectified"], atol=1e-12)
    with np.load(path) as raw:
        np.testing.assert_array_equal(raw["track_lengths"], visible.sum(axis=1))
        assert raw["track_coordinates"].dtype == np.float32
        assert len(raw["track_indices"]) == visible.sum()
        # Track-major, frames ascending within each track.
        np.testing.assert_array_equal(raw["track_indices"], np.nonzero(visible)[1])


def test_export_skips_non_finite_points_and_handles_no_tracks(tmp_path, clip_meta):
    track3d, visible = _optimised_tracks(seed=3)
    track3d[0, 0] = np.nan
    visible[0, 0] = True  # claimed visible but no estimate: not exported
    loaded = load_dataset_npz(export_released_npz(tmp_path / "a.npz", clip_meta, track3d, visible))
    assert np.isnan(loaded["track3d"][0, 0]).all()
    assert np.isfinite(loaded["track3d"]).all(axis=-1).sum() == visible.sum() - 1
    empty = load_dataset_npz(export_released_npz(
        tmp_path / "b.npz", clip_meta, np.zeros((0, NUM_FRAMES, 3)), np.zeros((0, NUM_FRAMES), bool)))
    assert empty["track3d"].shape == (0, NUM_FRAMES, 3)


def test_export_rejects_wrong_frame_count_and_missing_metadata(tmp_path, clip_meta):
    track3d, visible = _optimised_tracks()
    with pytest.raises(InputError, match="do not match"):
        export_released_npz(tmp_path / "x.npz", clip_meta, track3d[:, :-1], visible[:, :-1])
    meta = {k: v for k, v in clip_meta.items() if k != "rectified2rig"}
    with pytest.raises(InputError, match="rectified2rig"):
        export_released_npz(tmp_path / "y.npz", meta, track3d, visible)
    assert not (tmp_path / "x.npz").exists() and not (tmp_path / "y.npz").exists()


def test_optimized_tracks_record_layout(clip_meta):
    track3d, visible = _optimised_tracks()
    cameras = PinholeCamera.from_hfov(invert_rigid(clip_meta["camera2world"]), 60.0, 0.75)
    colors = np.array([[255, 0, 51]] * NUM_TRACKS, np.uint8)
    record = optimized_tracks_record(cameras, track3d, visible, colors, 48, 64)
    assert record["video"] is None and (record["imh"], record["imw"]) == (48, 64)
    assert record["track3d"].dtype == np.float32
    np.testing.assert_array_equal(record["visible_list"], visible)
    np.testing.assert_allclose(record["color_values"][0], [1.0, 0.0, 0.2])
    assert len(record["cameras"]) == NUM_FRAMES
    cam = record["cameras"][4]
    np.testing.assert_allclose(cam["extr"], invert_rigid(clip_meta["camera2world"][4]), atol=1e-12)
    fx = 0.5 / np.tan(np.radians(30.0))
    assert cam["intr_normalized"] == pytest.approx(
        {"fx": fx, "fy": fx / 0.75, "cx": 0.5, "cy": 0.5, "k1": 0.0, "k2": 0.0})
