"""Real-footage benchmark on a fake stereo4d-viz folder: clip listing, queries, scoring, backends."""

import importlib.util
import json

import numpy as np
import pytest
from conftest import REPO_ROOT
from test_tracking_stage import (
    FRAMES,
    HEIGHT,
    VELOCITY_XY,
    WIDTH,
    _tapir_checkpoint,
    _translating_frames,
)

from stereo4d.backends.classical_tracker import ClassicalTracker, ClassicalTrackerConfig
from stereo4d.io import InputError
from stereo4d.realclips import list_clips, load_clip, score_tracks
from stereo4d.videoio import write_video

#: (t, x, y) where each fake released track starts; before it the track is invisible.
STARTS_TXY = np.array([[0, 20.0, 20.0], [2, 40.5, 30.25], [4, 60.0, 40.0], [1, 30.0, 16.0]])


def _bench():
    spec = importlib.util.spec_from_file_location("bench_real", REPO_ROOT / "benchmarks/bench_real_tracking.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _released_tracks():
    """[T, N, 2] float16 (x, y) following the texture's translation, [T, N] visibility."""
    t = np.arange(FRAMES)[:, None]
    xy = STARTS_TXY[None, :, 1:] + (t - STARTS_TXY[None, :, 0])[..., None] * VELOCITY_XY
    vis = t >= STARTS_TXY[None, :, 0]
    vis[-1, 3] = False  # the last track ends one frame early (as released tracks do)
    return np.where(vis[..., None], xy, 0.0).astype(np.float16), vis


@pytest.fixture(scope="module")
def clips_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("viz")
    (root / "videos").mkdir()
    (root / "clips").mkdir()
    tracks, vis = _released_tracks()
    entries = []
    for clip_id, split, with_video in (("aaaa_1", "train", True), ("bbbb_2", "train", False),
                                       ("cccc_3", "test", True)):
        entries.append({"id": clip_id, "split": split})
        np.savez(root / "clips" / f"{clip_id}.npz", tracks2d=tracks, vis2d=vis)
        if with_video:
            write_video(root / "videos" / f"{clip_id}.mp4", _translating_frames())
    (root / "manifest.json").write_text(json.dumps({"clips": entries}))
    return root


def test_listing_skips_clips_without_video(clips_dir):
    clips, missing = list_clips(clips_dir, "train")
    assert [c.clip_id for c in clips] == ["aaaa_1"] and missing == ["bbbb_2"]
    with pytest.raises(InputError):
        list_clips(clips_dir / "nowhere", "test")
    with pytest.raises(InputError):
        list_clips(clips_dir, "val")


def test_queries_are_first_visible_points(clips_dir):
    data = load_clip(list_clips(clips_dir, "test")[0][0])
    np.testing.assert_allclose(data["query_points_tyx"], STARTS_TXY[:, [0, 2, 1]], atol=1e-2)
    assert data["frames"].shape == (FRAMES, HEIGHT, WIDTH, 3)
    short = load_clip(list_clips(clips_dir, "test")[0][0], max_frames=3)
    assert short["tracks_xy"].shape == (3, 3, 2)  # the track starting at frame 4 is dropped


def test_scores_exact_still_and_chained(clips_dir):
    data = load_clip(list_clips(clips_dir, "test")[0][0])
    exact = score_tracks(data, data["tracks_xy"], data["visibles"])
    assert exact["delta_avg"] == 1.0 and exact["occlusion_accuracy"] == 1.0 and exact["median_error_px"] == 0
    # Holding each query still scores low: after k frames the error is 1.68 k px.
    still = np.repeat(data["query_points_tyx"][:, None, [2, 1]], FRAMES, axis=1)
    held = score_tracks(data, still, np.ones_like(data["visibles"]))
    assert held["delta_avg"] < 0.6 and held["median_error_px"] > 3
    xy, vis = ClassicalTracker(ClassicalTrackerConfig(progress=False)).track(
        data["frames"], data["query_points_tyx"])
    tracked = score_tracks(data, xy, vis)
    assert tracked["delta_avg"] > 0.95 and tracked["median_error_px"] < 0.5
    assert tracked["num_points"] == int(data["visibles"].sum()) - 4  # query frames are not counted


def test_bench_dis_flow_json(clips_dir, tmp_path, capsys):
    out = tmp_path / "real.json"
    assert _bench().main(["--clips_dir", str(clips_dir), "--split", "both", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "skipped 1 clip(s) without a video or npz: bbbb_2" in printed
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"train", "test"}
    for split in ("train", "test"):
        assert results[split]["mean"]["num_clips"] == 1 and results[split]["mean"]["delta_avg"] > 0.95
    assert _bench().main(["--clips_dir", str(tmp_path / "nothing")]) == 2


def test_bench_bootstapir_with_weights(clips_dir, tmp_path, monkeypatch):
    """The --path code path with deterministic (untrained) weights: runs, scores are finite."""
    monkeypatch.setenv("STEREO4D_CACHE", str(tmp_path / "empty_cache"))
    bench = _bench()
    entry, tracker = bench.TRACKING_BACKENDS.build(
        "bootstapir", path=str(_tapir_checkpoint(tmp_path / "tapir.pt")), device="cpu", progress=False)
    result = bench.evaluate_split(str(clips_dir), "test", tracker, max_frames=2, verbose=False)
    (figures,) = result["per_clip"].values()
    assert entry.name == "bootstapir" and figures["num_tracks"] == 2  # tracks seen in the first 2 frames
    assert np.isfinite(figures["delta_avg"]) and 0 <= figures["occlusion_accuracy"] <= 1


def test_bench_figure(clips_dir, tmp_path):
    import cv2

    out = tmp_path / "fig.png"
    assert _bench().main(["--clips_dir", str(clips_dir), "--figure", str(out)]) == 0
    image = cv2.imread(str(out))
    panel = _bench().FIGURE_PANEL_PX
    assert image.shape == (panel, 2 * panel + 8, 3)
    # Both panels show the same (well tracked) texture and trails: nearly identical pixels.
    assert np.mean(np.abs(image[:, :panel].astype(int) - image[:, -panel:])) < 3


def test_bench_flow_cache(clips_dir, tmp_path, capsys):
    """Flows are written once (float16, keyed by the flow settings), read back, and reused by a
    shorter run; the figures match those of a run without the cache."""
    bench = _bench()
    _, tracker = bench.TRACKING_BACKENDS.build("flow-anchor", progress=False)
    cache = tmp_path / "flows"
    plain = bench.evaluate_split(str(clips_dir), "test", tracker, verbose=False)
    first = bench.evaluate_split(str(clips_dir), "test", tracker, verbose=False, flow_cache=str(cache))
    folder = bench.flow_cache_folder(cache, tracker, "cccc_3")
    stored = np.load(folder / "forward_skip1.npy")
    assert stored.dtype == np.float16 and stored.shape == (FRAMES - 1, HEIGHT, WIDTH, 2)
    assert np.load(folder / "backward_skip4.npy").shape == ((FRAMES - 1) // 4, HEIGHT, WIDTH, 2)
    np.testing.assert_allclose(np.median(stored[:, 16:-16, 16:-16].astype(np.float32), axis=(1, 2)),
                               np.broadcast_to(VELOCITY_XY, (FRAMES - 1, 2)), atol=0.1)  # mp4 noise
    stamp = (folder / "forward_skip1.npy").stat().st_mtime_ns
    again = bench.evaluate_split(str(clips_dir), "test", tracker, verbose=False, flow_cache=str(cache))
    short = bench.evaluate_split(str(clips_dir), "test", tracker, max_frames=5, verbose=False,
                                 flow_cache=str(cache))
    assert (folder / "forward_skip1.npy").stat().st_mtime_ns == stamp  # read, not recomputed
    for result in (first, again):
        for key in ("delta_avg", "occlusion_accuracy"):
            assert abs(result["mean"][key] - plain["mean"][key]) < 0.01
    assert short["mean"]["delta_avg"] > 0.95
    # Other flow settings, other key; the neural backend has no flow to cache.
    _, finer = bench.TRACKING_BACKENDS.build("flow-anchor", progress=False, dis_patch_size=8)
    assert bench.flow_cache_folder(cache, finer, "cccc_3") != folder
    assert bench.main(["--clips_dir", str(clips_dir), "--backend", "bootstapir",
                       "--flow_cache", str(cache)]) == 2
    assert "--flow_cache needs a classical backend" in capsys.readouterr().err


def test_bench_named_clips(clips_dir, tmp_path, capsys):
    out = tmp_path / "named.json"
    assert _bench().main(["--clips_dir", str(clips_dir), "--split", "train", "--clips", "aaaa_1",
                          "--max_frames", "4", "--json", str(out)]) == 0
    assert list(json.loads(out.read_text())["results"]["train"]["per_clip"]) == ["aaaa_1"]
    assert _bench().main(["--clips_dir", str(clips_dir), "--split", "train", "--clips", "aaaa_1,zzzz_9"]) == 2
    assert "no train clip(s) zzzz_9" in capsys.readouterr().err
