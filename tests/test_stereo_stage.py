"""inference_raft.py end to end: SGBM and SEA-RAFT (deterministic weights), bad inputs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import inference_raft
from stereo4d.backends.stereo import STEREO_BACKENDS, sea_raft_unavailable_reason
from stereo4d.depth import depth_maps_from_flows
from stereo4d.io import ClipPaths, load_json, load_pickle, load_stereo_flows
from stereo4d.videoio import read_video, write_video
from tests.conftest import PARITY_DIR, REPO_ROOT, load_make_weights
from tests.test_classical_stereo import evaluate_pair, render_layered_pair

VID = "stereotest_1000"
#: Smallest convenient SEA-RAFT input: half size 124x140 pads to 128x144 (>= 128 per side).
HEIGHT, WIDTH = 248, 280


@pytest.fixture(scope="module")
def pair():
    return render_layered_pair(HEIGHT, WIDTH)


def _write_clip(root: Path, left: np.ndarray, right: np.ndarray) -> ClipPaths:
    paths = ClipPaths(VID, output_folder=root)
    write_video(paths.left_video, left, chroma_444=True)
    write_video(paths.right_video, right, chroma_444=True)
    return paths


def _run(root: Path, *flags: str) -> int:
    from stereo4d.cli import run_cli

    return run_cli(inference_raft.main, [f"--vid={VID}", f"--output_folder={root}", *flags])


@pytest.fixture(scope="module")
def clip(tmp_path_factory, pair):
    left, right, _, _ = pair
    root = tmp_path_factory.mktemp("stereo_clip")
    # Frame 1 moves the scene 3 px to the right in both views (disparities unchanged).
    paths = _write_clip(root, np.stack([left, np.roll(left, 3, axis=1)]),
                        np.stack([right, np.roll(right, 3, axis=1)]))
    return root, paths


def test_sgbm_stage_end_to_end(clip, pair):
    root, paths = clip
    assert _run(root, "--backend=sgbm", "--stereo_format=pickle") == 0
    flows = load_pickle(paths.flows_stereo)
    assert isinstance(flows, list) and len(flows) == 2
    assert set(flows[0]) == {"fwd", "bwd"}
    assert flows[0]["fwd"].shape == (HEIGHT, WIDTH, 2) and flows[0]["fwd"].dtype == np.float32
    # Accuracy survives H.264 (crf 18): measured EPE 0.10 px, density 0.98, AbsRel 2.6 %.
    m = evaluate_pair(flows[:1], pair[2], pair[3])
    assert m["epe_px"] <= 0.2 and m["density"] >= 0.9 and m["abs_rel"] <= 0.05
    record = load_json(paths.provenance("stereo"))
    assert record["backend"] == "sgbm" and record["settings"]["mode"] == "sgbm_3way"
    assert record["frames"] == 2 and record["timings_s"]["stereo"] > 0
    assert 0.5 < record["valid_depth_fraction"] <= 1.0


#: Compact stereo file: largest flow rounding error (half the 1/1024 px step: flows < 32 px).
COMPACT_MAX_ERROR_PX = 1.0 / 2048
#: Floater removal compares depth differences with 3 % of depth: the rounding may flip a few
#: pixels at that threshold (0.47 % here with a 1/64 px step); the match checks are stored.
COMPACT_FLOATER_FLIPS = 0.001


def test_compact_format_matches_the_pickle(clip, pair):
    """Default format: <vid>-stereo.npz, the same depth as the pickle, and much smaller."""
    root, paths = clip
    assert _run(root, "--backend=sgbm", "--stereo_format=pickle") == 0
    reference = load_stereo_flows(paths.flows_stereo)
    pickle_bytes = paths.flows_stereo.stat().st_size
    assert _run(root, "--backend=sgbm") == 0
    assert paths.stereo_output == paths.stereo_compact and not paths.flows_stereo.exists()
    compact = load_stereo_flows(paths.stereo_output)
    assert len(compact) == 2 and set(compact[0]) == {"fwd", "valid"}
    for ref, new in zip(reference, compact, strict=True):
        assert np.abs(new["fwd"] - ref["fwd"]).max() <= COMPACT_MAX_ERROR_PX
    for floaters, max_flips in ((False, 0.0), (True, COMPACT_FLOATER_FLIPS)):
        depth_ref = depth_maps_from_flows(reference, 60.0, remove_floaters=floaters)
        depth_new = depth_maps_from_flows(compact, 60.0, remove_floaters=floaters)
        both = (depth_ref > 0) & (depth_new > 0)
        assert np.mean((depth_ref > 0) != (depth_new > 0)) <= max_flips and both.mean() > 0.5
        # depth = f B / d: a disparity error e moves it by at most e / (d - e) relatively.
        disparity = -np.stack([f["fwd"][..., 0] for f in reference])[both]
        bound = COMPACT_MAX_ERROR_PX / (disparity - COMPACT_MAX_ERROR_PX) + 1e-6
        assert np.all(np.abs(depth_new[both] / depth_ref[both] - 1.0) <= bound)
    m = evaluate_pair(compact[:1], pair[2], pair[3])
    assert m["epe_px"] <= 0.2 and m["density"] >= 0.9 and m["abs_rel"] <= 0.05
    assert paths.stereo_compact.stat().st_size * 4 < pickle_bytes
    assert load_json(paths.provenance("stereo"))["stereo_format"] == "compact"
    # Back to the pickle: the compact file goes, so no stage reads a stale one.
    assert _run(root, "--backend=sgbm", "--stereo_format=pickle") == 0
    assert paths.stereo_output == paths.flows_stereo and not paths.stereo_compact.exists()


@pytest.fixture(scope="module")
def sea_raft_weights(tmp_path_factory) -> Path:
    make_weights = load_make_weights()
    state = make_weights.deterministic_state_dict(
        make_weights.load_spec(PARITY_DIR / "sea_raft_M_state_dict_spec.json"))
    path = tmp_path_factory.mktemp("weights") / "sea_raft_M_deterministic.pth"
    torch.save({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()}, path)
    return path


def test_sea_raft_stage_end_to_end(clip, sea_raft_weights, monkeypatch):
    from stereo4d.backends.sea_raft_flow import sea_raft_flow_and_info
    from stereo4d.stages import health
    from stereo4d.stages import stereo as stereo_stage
    from stereo4d.weights.sea_raft import load_sea_raft

    root, paths = clip
    # Random weights match nothing: no pixel passes the depth checks, and the stage would
    # refuse its output (tests/test_health.py). This test is about the plumbing: record the
    # figures, but let the output through.
    def figures_only(valid_depth):
        result = health.stereo_health(valid_depth)
        result.unusable = None
        return result

    monkeypatch.setattr(stereo_stage, "stereo_health", figures_only)
    assert _run(root, "--backend=sea-raft", f"--path={sea_raft_weights}", "--device=cpu",
                "--stereo_format=pickle") == 0
    flows = load_pickle(paths.flows_stereo)
    assert len(flows) == 2 and flows[1]["bwd"].shape == (HEIGHT, WIDTH, 2)
    # The stage writes exactly what the backend computes on the decoded frames.
    model = load_sea_raft(sea_raft_weights)
    left, right = read_video(paths.left_video), read_video(paths.right_video)
    as_tensor = lambda frame: torch.from_numpy(frame).float().permute(2, 0, 1)[None]
    # bwd of frame 1 (one network call; fwd uses the same code path with the views swapped).
    bwd = sea_raft_flow_and_info(model, as_tensor(right[1]), as_tensor(left[1]))[0]
    bwd = bwd[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(flows[1]["bwd"], bwd, atol=1e-5)
    fwd = flows[1]["fwd"]
    assert np.abs(fwd).max() > 1.0  # random weights still give a non-trivial flow
    record = load_json(paths.provenance("stereo"))
    assert record["backend"] == "sea-raft" and record["settings"]["iters"] == 4
    assert record["settings"]["checkpoint"] == str(sea_raft_weights)


def test_auto_prefers_local_sea_raft_weights(sea_raft_weights, tmp_path):
    assert STEREO_BACKENDS.resolve("auto", path=str(sea_raft_weights)).name == "sea-raft"
    missing = tmp_path / "nope.pth"
    assert "does not exist" in sea_raft_unavailable_reason(path=str(missing))
    assert STEREO_BACKENDS.resolve("auto", path=str(missing)).name == "sgbm"


def _no_pickle(paths: ClipPaths) -> bool:
    return (not paths.flows_stereo.exists() and not paths.stereo_compact.exists()
            and not list(paths.clip_dir.glob("*.pkl*")) and not list(paths.clip_dir.glob("*.npz*")))


def test_missing_videos(tmp_path, capsys):
    assert _run(tmp_path, "--backend=sgbm") == 2
    assert "missing rectified video" in capsys.readouterr().err


@pytest.mark.parametrize("problem", ["frames", "size"])
def test_mismatched_views(tmp_path, pair, capsys, problem):
    left, right = pair[0][:96, :128], pair[1][:96, :128]
    other = np.stack([right] * 3) if problem == "frames" else np.stack([pair[1][:96, :120]] * 2)
    paths = _write_clip(tmp_path, np.stack([left] * 2), other)
    assert _run(tmp_path, "--backend=sgbm") == 2
    err = capsys.readouterr().err
    assert ("3" in err and "frames" in err) if problem == "frames" else "128x96" in err
    assert _no_pickle(paths)


@pytest.mark.parametrize("checkpoint", ["corrupt", "wrong_keys"])
def test_bad_checkpoints(tmp_path, pair, capsys, checkpoint):
    paths = _write_clip(tmp_path, pair[0][None], pair[1][None])
    path = tmp_path / "bad.pth"
    if checkpoint == "corrupt":
        path.write_bytes(b"\x80\x04 not a checkpoint" * 10)
    else:
        torch.save({"encoder.weight": torch.zeros(3)}, path)
    assert _run(tmp_path, "--backend=sea-raft", f"--path={path}") == 2
    err = capsys.readouterr().err
    assert err.startswith("error:")
    assert ("corrupt" in err) if checkpoint == "corrupt" else ("missing keys" in err)
    assert _no_pickle(paths)


def test_offline_without_weights_says_what_to_download(tmp_path, pair):
    paths = _write_clip(tmp_path, pair[0][None], pair[1][None])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "inference_raft.py"), f"--vid={VID}",
         f"--output_folder={tmp_path}", "--backend=sea-raft"],
        capture_output=True, text=True, env=env, timeout=120, check=False)
    assert result.returncode == 2, result.stderr
    assert "hf download MemorySlices/Tartan-C-T-TSKH-spring540x960-M" in result.stderr
    assert "--path" in result.stderr
    assert _no_pickle(paths)


def test_fusion_reads_the_cameras_of_the_npz(tmp_path, pair, capsys):
    """sgbm fuses with the npz's camera2world; without that key it warns and runs alone; a
    camera count that differs from the videos' frame count is refused (exit 2, nothing
    written)."""
    left, right, _, _ = pair
    paths = _write_clip(tmp_path, np.stack([left, left]), np.stack([right, right]))
    npz_folder = tmp_path / "npz"
    npz_folder.mkdir()
    still = np.tile(np.eye(4)[:3], (2, 1, 1))
    flags = ("--backend=sgbm", f"--npz_folder={npz_folder}")

    np.savez(npz_folder / f"{VID}.npz", timestamps=np.array([0, 33333]))
    assert _run(tmp_path, *flags) == 0
    assert "has no camera2world" in capsys.readouterr().out
    assert load_json(paths.provenance("stereo"))["fusion"] == "off"

    np.savez(npz_folder / f"{VID}.npz", camera2world=still[:1])
    before = paths.stereo_compact.read_bytes()
    assert _run(tmp_path, *flags) == 2
    assert "frame counts differ" in capsys.readouterr().err
    assert paths.stereo_compact.read_bytes() == before

    np.savez(npz_folder / f"{VID}.npz", camera2world=still)
    assert _run(tmp_path, *flags) == 0
    assert load_json(paths.provenance("stereo"))["fusion"] == "on"
