"""tracking.py end to end: classical and BootsTAPIR backends on a tiny clip, bad inputs, trails drawing."""

import importlib.util

import cv2
import numpy as np
import pytest
import torch
from conftest import PARITY_DIR, REPO_ROOT, load_make_weights

from stereo4d.io import ClipPaths, load_json, load_pickle
from stereo4d.queries import QueryConfig, prune_redundant_queries, sample_video_queries
from stereo4d.tracks import Tracks2D
from stereo4d.videoio import read_video, write_video
from stereo4d.viz.trails import draw_trails_frame

VID = "tinyclip_1000000"
HEIGHT, WIDTH, FRAMES = 64, 96, 10
VELOCITY_XY = np.array([1.5, -0.75])  # px per frame
STAGE_ARGS = ["--query_stride_frames", "5", "--grid_stride_px", "4", "--device", "cpu"]


def _script():
    spec = importlib.util.spec_from_file_location("tracking_script", REPO_ROOT / "tracking.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(argv):
    from stereo4d.cli import run_cli

    return run_cli(_script().main, argv)


def _translating_frames():
    """A smooth texture moving by VELOCITY_XY per frame (exact sub-pixel shifts by warpAffine)."""
    rng = np.random.default_rng(0)
    tex = np.zeros((2 * HEIGHT, 2 * WIDTH, 3), np.float32)
    for cell in (3, 6, 12):
        small = rng.uniform(0, 1, (2 * HEIGHT // cell + 2, 2 * WIDTH // cell + 2, 3)).astype(np.float32)
        tex += cv2.resize(small, (2 * WIDTH + 2 * cell, 2 * HEIGHT + 2 * cell),
                          interpolation=cv2.INTER_CUBIC)[cell:cell + 2 * HEIGHT, cell:cell + 2 * WIDTH]
    tex = np.round(255 * (tex - tex.min()) / (tex.max() - tex.min())).astype(np.uint8)
    frames = []
    for t in range(FRAMES):
        shift = np.array([-WIDTH / 2, -HEIGHT / 2]) + VELOCITY_XY * t
        m = np.array([[1, 0, shift[0]], [0, 1, shift[1]]], np.float64)
        frames.append(cv2.warpAffine(tex, m, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR))
    return np.stack(frames)


@pytest.fixture()
def clip(tmp_path):
    paths = ClipPaths(VID, output_folder=tmp_path)
    write_video(paths.left_video, _translating_frames())
    return paths


@pytest.fixture()
def no_cached_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("STEREO4D_CACHE", str(tmp_path / "empty_cache"))


def test_classical_end_to_end(clip, no_cached_weights, capsys):
    assert _run(["--vid", VID, "--output_folder", str(clip.output_folder), *STAGE_ARGS]) == 0
    captured = capsys.readouterr()
    assert "redundant points" in captured.out
    assert "using backend 'dis-flow'" in captured.err  # auto fell back: no checkpoint
    data = load_pickle(clip.tracks_2d)
    assert set(data) == {"tracks", "visibles", "query_points"}
    assert data["tracks"].dtype == np.float32 and data["visibles"].dtype == bool
    assert np.issubdtype(data["query_points"].dtype, np.integer)
    tracks = Tracks2D.from_dict(data)
    q = tracks.query_points_tyx
    rows = np.arange(tracks.num_tracks)
    np.testing.assert_array_equal(tracks.tracks_xy[rows, q[:, 0]], q[:, [2, 1]])
    assert tracks.visibles[rows, q[:, 0]].all()
    # Accuracy against the known translation, away from the borders (flow there is extrapolated).
    gt = q[:, None, [2, 1]] + (np.arange(FRAMES)[None, :, None] - q[:, None, :1]) * VELOCITY_XY
    inner = np.all((gt > 6) & (gt < [WIDTH - 6, HEIGHT - 6]), axis=-1)
    err = np.linalg.norm(tracks.tracks_xy - gt, axis=-1)[inner]
    assert np.median(err) < 0.25 and np.mean(err < 1.0) > 0.95
    assert tracks.visibles[inner].mean() > 0.95
    # Provenance and pruning figures agree with the pickle.
    record = load_json(clip.provenance("tracking"))
    assert record["backend"] == "dis-flow" and record["num_kept"] == tracks.num_tracks
    assert record["num_queries"] == 2 * (HEIGHT // 4) * (WIDTH // 4)
    pruned = 100 * (1 - record["num_kept"] / record["num_queries"])
    assert record["pruned_percent"] == pytest.approx(pruned)
    # A 1 px disc around each of the frame-0 tracks (one per 16 px^2) covers ~1 - exp(-pi / 16)
    # = 18% of the frame-5 grid, so ~9% of all queries.
    assert 5 < pruned < 15
    assert read_video(clip.tracks_2d_video).shape == (FRAMES, HEIGHT, WIDTH, 3)


def _tapir_checkpoint(path):
    make_weights = load_make_weights()
    state = make_weights.deterministic_state_dict(
        make_weights.load_spec(PARITY_DIR / "tapir_bootstap_state_dict_spec.json"))
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, path)
    return path


def test_bootstapir_end_to_end(tmp_path, no_cached_weights, monkeypatch):
    from stereo4d.backends.tapir_tracker import TapirTracker

    calls = []
    original = TapirTracker.track

    def recording_track(self, frames, queries):
        out = original(self, frames, queries)
        calls.append((frames, queries, *out))
        return out

    monkeypatch.setattr(TapirTracker, "track", recording_track)
    paths = ClipPaths(VID, output_folder=tmp_path)
    write_video(paths.left_video, _translating_frames()[:2])  # TAPIR runs at 512x512: keep it short
    checkpoint = _tapir_checkpoint(tmp_path / "tapir.pt")
    argv = ["--vid", VID, "--output_folder", str(tmp_path), "--backend", "bootstapir", "--path",
            str(checkpoint), "--device", "cpu", "--query_stride_frames", "1", "--grid_stride_px", "16",
            "--chunk_size", "7"]
    assert _run(argv) == 0
    tracks = Tracks2D.from_dict(load_pickle(paths.tracks_2d))
    assert load_json(paths.provenance("tracking"))["backend"] == "bootstapir"
    # The network saw the decoded video and the reference's queries; the pickle holds its
    # output after pruning.
    (frames, queries, want_xy, want_vis), = calls
    np.testing.assert_array_equal(frames, read_video(paths.left_video))
    np.testing.assert_array_equal(
        queries, sample_video_queries(2, HEIGHT, WIDTH, QueryConfig(query_stride_frames=1, grid_stride_px=16)))
    keep = prune_redundant_queries(want_xy, want_vis, queries)
    assert keep.sum() == tracks.num_tracks > len(queries) // 2
    np.testing.assert_array_equal(tracks.query_points_tyx, queries[keep])
    np.testing.assert_array_equal(tracks.tracks_xy, want_xy[keep])
    np.testing.assert_array_equal(tracks.visibles, want_vis[keep])
    assert np.all(np.isfinite(tracks.tracks_xy)) and np.abs(tracks.tracks_xy).max() < 4 * WIDTH
    assert read_video(paths.tracks_2d_video).shape == (2, HEIGHT, WIDTH, 3)


def _assert_failed_cleanly(code, capsys, paths):
    assert code == 2
    assert "error:" in capsys.readouterr().err
    assert not paths.tracks_2d.exists() and not paths.tracks_2d_video.exists()
    leftovers = list(paths.clip_dir.glob(".*tmp*")) if paths.clip_dir.exists() else []
    assert leftovers == []


def test_missing_video(tmp_path, capsys):
    paths = ClipPaths(VID, output_folder=tmp_path)
    code = _run(["--vid", VID, "--output_folder", str(tmp_path), "--backend", "dis-flow"])
    _assert_failed_cleanly(code, capsys, paths)


def test_empty_video(tmp_path, capsys):
    paths = ClipPaths(VID, output_folder=tmp_path)
    paths.clip_dir.mkdir(parents=True)
    paths.left_video.write_bytes(b"")
    code = _run(["--vid", VID, "--output_folder", str(tmp_path), "--backend", "dis-flow"])
    _assert_failed_cleanly(code, capsys, paths)


def test_corrupt_checkpoint(clip, tmp_path, capsys):
    bad = tmp_path / "bootstapir_checkpoint_v2.pt"
    bad.write_bytes(b"PK\x03\x04 this is not a checkpoint" * 10)
    code = _run(["--vid", VID, "--output_folder", str(clip.output_folder), "--backend", "bootstapir",
                 "--path", str(bad), "--device", "cpu"])
    _assert_failed_cleanly(code, capsys, clip)


def test_trails_hand_drawn():
    frame = np.zeros((8, 8, 3), np.uint8)
    tracks = np.array([[[1.5, 1.5], [4.5, 1.5], [4.5, 4.5]]], np.float32)
    red = np.array([[255, 0, 0]], np.uint8)
    out = draw_trails_frame(frame, 2, tracks, np.ones((1, 3), bool), red, dot_radius_px=0)
    want = np.zeros((8, 8), np.uint8)
    want[1, 1:4] = 128  # older segment at half opacity
    want[1:5, 4] = 255  # newer segment (drawn on top) and the dot at (4, 4)
    np.testing.assert_array_equal(out[..., 0], want)
    assert out[..., 1:].max() == 0 and frame.max() == 0  # input untouched
    # A track invisible at frame 1 has no trail, only its current dot.
    out = draw_trails_frame(frame, 2, tracks, np.array([[True, False, True]]), red, dot_radius_px=0)
    assert out[..., 0].sum() == 255 and out[4, 4, 0] == 255
