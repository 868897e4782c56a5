"""The filtering stage end to end on a tiny clip (non-square, static camera, known labels)."""

from __future__ import annotations

import numpy as np
import pytest

import segmentation as segmentation_script
from stereo4d import ade20k
from stereo4d.geometry import focal_length_px
from stereo4d.io import (
    ClipPaths,
    InputError,
    load_json,
    load_pickle,
    load_removal_reasons,
    save_dataset_npz,
    save_pickle,
)
from stereo4d.stages import filtering as stage
from stereo4d.videoio import probe_video, write_video

VID = "tinyclip_1000000"
T, H, W = 8, 48, 64
SKY_ROWS = 16
"""Rows 0..15 are sky (no disparity); the rest is a wall at WALL_DEPTH_M."""
PERSON_COL = 48
"""The fake segmenter calls columns >= 48 'person'."""
WALL_DEPTH_M = 5.0


class FakeSegmenter:
    name = "fake"

    def segment(self, video_rgb, depth_m=None, cameras=None):
        labels = np.full(video_rgb.shape[:3], ade20k.WALL, np.int32)
        labels[:, :SKY_ROWS] = ade20k.SKY
        labels[:, :, PERSON_COL:] = ade20k.PERSON
        return labels


@pytest.fixture
def fake_backend(monkeypatch):
    def build(requested, **options):
        entry = type("Entry", (), {"name": "fake"})()
        return entry, FakeSegmenter()

    monkeypatch.setattr(stage.SEGMENTATION_BACKENDS, "build", build)


def _track(x0, y0, vx=0.0):
    t = np.arange(T, dtype=np.float32)
    return np.stack([x0 + vx * t, np.full(T, y0, np.float32)], -1)


def _write_clip(root, tracks_xy, visibles=None):
    paths = ClipPaths(VID, npz_folder=root / "npz", output_folder=root / "processed")
    rng = np.random.default_rng(0)
    frames = np.repeat(rng.integers(60, 200, (1, H, W, 3), dtype=np.uint8), T, axis=0)
    frames[:, :SKY_ROWS] = (90, 140, 230)
    write_video(paths.left_video, frames)
    disparity = focal_length_px(60.0, W) * 0.063 / WALL_DEPTH_M
    fwd = np.zeros((H, W, 2), np.float32)
    fwd[SKY_ROWS:, :, 0] = -disparity
    save_pickle([{"fwd": fwd, "bwd": -fwd} for _ in range(T)], paths.flows_stereo)
    tracks_xy = np.asarray(tracks_xy, np.float32).reshape(-1, T, 2)
    n = len(tracks_xy)
    visibles = np.ones((n, T), bool) if visibles is None else visibles
    queries = np.stack([np.zeros(n), tracks_xy[:, 0, 1], tracks_xy[:, 0, 0]], -1).astype(np.int32)
    save_pickle({"tracks": tracks_xy, "visibles": visibles, "query_points": queries},
                paths.tracks_2d)
    save_dataset_npz(paths.npz, name=VID, video_id="tinyclip",
                     timestamps_us=1000000 + np.arange(T) * 33333,
                     camera2world=np.tile(np.eye(3, 4), (T, 1, 1)), track3d=np.zeros((0, T, 3)),
                     rectified2rig=np.stack([np.eye(3)] * 2), fov_bounds_deg=np.array([-90, 90, -90, 90.0]))
    return paths


def _config(paths, **kw):
    return stage.FilteringConfig(VID, npz_folder=str(paths.npz_folder),
                                 output_folder=str(paths.output_folder), progress=False, **kw)


def test_stage_drops_sky_boundary_and_drift(tmp_path, fake_backend, capsys):
    tracks = [
        _track(20.5, 30.5),            # 0 still on the wall: kept
        _track(20.5, 5.5),             # 1 on the sky: dropped
        _track(10.5, 36.5, vx=2.0),    # 2 slides 2 px/frame on the wall: drift
        _track(40.5, 40.5, vx=2.0),    # 3 slides from the wall onto the person: boundary
        _track(50.5, 26.5, vx=1.5),    # 4 moves on the person: kept
    ]
    paths = _write_clip(tmp_path, tracks)
    summary = stage.run(_config(paths, drift_threshold_px=5.0, boundary_margin=0.0))  # reference
    out = load_pickle(paths.filtered_tracks)
    assert set(out) == {"tracks", "visibles", "query_points"}
    np.testing.assert_array_equal(out["tracks"], np.stack([tracks[0], tracks[4]]))
    assert out["tracks"].dtype == np.float32 and out["visibles"].shape == (2, T)
    assert summary["num_tracks_kept"] == 2
    prov = load_json(paths.provenance("filtering"))
    assert prov["backend"] == "fake" and prov["filters"]["sky_share"] == pytest.approx(0.2)
    assert prov["filters"]["drift_share"] == pytest.approx(0.4)  # track 3 also slid on the wall
    assert prov["filters"]["boundary_share"] == pytest.approx(0.2)
    assert prov["settings"]["drift_threshold_px"] == 5.0 and prov["settings"]["boundary_margin"] == 0
    default = _config(paths)  # the stage's defaults (chosen on the suite's tuning clips)
    assert (default.drift_threshold_px, default.boundary_margin) == (8.0, 0.4)
    info = probe_video(paths.filtered_tracks_video)
    assert (info.width, info.height) == (W, H)
    assert "remaining tracks: 40.00%" in capsys.readouterr().out
    # The record keeps why each track went (the viewer shows removed tracks by reason).
    reasons = load_removal_reasons(paths.segmentation)
    np.testing.assert_array_equal(reasons["sky"], [False, True, False, False, False])
    np.testing.assert_array_equal(reasons["boundary"], [False, False, False, True, False])
    np.testing.assert_array_equal(reasons["drift"], [False, False, True, True, False])


def test_higher_drift_threshold_keeps_sliding_track(tmp_path, fake_backend):
    paths = _write_clip(tmp_path, [_track(20.5, 30.5), _track(10.5, 36.5, vx=2.0)])
    stage.run(_config(paths, drift_threshold_px=100.0))
    assert len(load_pickle(paths.filtered_tracks)["tracks"]) == 2


def test_zero_survivors_exit_2_and_keep_earlier_outputs(tmp_path, fake_backend, capsys):
    paths = _write_clip(tmp_path, [_track(10.5, 3.5), _track(30.5, 8.5)])  # both on the sky
    earlier = {p: f"earlier {p.name}".encode() for p in
               (paths.filtered_tracks, paths.filtered_tracks_video, paths.segmentation)}
    for path, content in earlier.items():
        path.write_bytes(content)
    with pytest.raises(InputError, match=r"no track survived the filters \(2 in\)"):
        stage.run(_config(paths))
    assert all(path.read_bytes() == content for path, content in earlier.items())
    assert not paths.provenance("filtering").exists()


def test_missing_input_exits_2_without_outputs(tmp_path, capsys):
    paths = _write_clip(tmp_path, [_track(20.5, 30.5)])
    paths.flows_stereo.unlink()
    argv = [f"--vid={VID}", f"--npz_folder={paths.npz_folder}",
            f"--output_folder={paths.output_folder}", "--backend=classical"]
    assert segmentation_script.run_cli(segmentation_script.main, argv) == 2
    assert "stereo.npz" in capsys.readouterr().err  # the default format is the one named
    assert not paths.filtered_tracks.exists() and not paths.filtered_tracks_video.exists()
    assert not paths.provenance("filtering").exists()


def test_frame_count_mismatch_is_an_input_error(tmp_path, fake_backend):
    paths = _write_clip(tmp_path, [_track(20.5, 30.5)])
    flows = load_pickle(paths.flows_stereo)
    save_pickle(flows[:-1], paths.flows_stereo)
    with pytest.raises(InputError, match="frame counts differ"):
        stage.run(_config(paths))
    assert not paths.filtered_tracks.exists()


def test_classical_backend_runs_the_stage(tmp_path):
    """With the weight-free segmenter the sky track goes and the still wall track stays."""
    paths = _write_clip(tmp_path, [_track(20.5, 30.5), _track(20.5, 5.5), _track(30.5, 40.5)])
    summary = stage.run(_config(paths, backend="classical"))
    assert summary["backend"] == "classical"
    np.testing.assert_array_equal(load_pickle(paths.filtered_tracks)["tracks"][:, 0, 1], [30.5, 40.5])
