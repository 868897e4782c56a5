"""estimate_cameras.py: round trip on a small synthetic clip, released format, bad inputs."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stereo4d import io as sio
from stereo4d import videoio
from stereo4d.metrics import cameras as camera_metrics
from stereo4d.synthetic import SyntheticClipConfig, make_synthetic_clip

pytest.importorskip("pycolmap", reason="the `cameras` extra (pycolmap) is not installed")

REPO = Path(__file__).resolve().parents[1]
VID = "camclip_100000"
FOV = "-50,50,-50,50"
#: Small: 12 frames of 512 px eyes (targets loosened for the size).
CLIP = SyntheticClipConfig(num_frames=12, eye_size_px=512, num_tracks=20, seed=5)
FAST_FLAGS = ("--crop_size=640", "--max_features=2048", "--match_overlap=3", f"--fov_bounds={FOV}")
#: Bad inputs are refused before any accuracy matters: small crops, few features (faster).
BAD_INPUT_FLAGS = ("--crop_size=320", "--max_features=512", "--match_overlap=2",
                   f"--fov_bounds={FOV}")


def _paths(root, vid=VID):
    return sio.ClipPaths(vid, root / "npz", root / "raw", root / "processed", root / "gt")


def _run(paths, *flags, npz_folder=None):
    cmd = [sys.executable, str(REPO / "estimate_cameras.py"), f"--vid={paths.vid}",
           f"--npz_folder={npz_folder or paths.npz_folder}",
           f"--raw_video_folder={paths.raw_video_folder}",
           f"--output_folder={paths.output_folder}", *flags]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=False)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    root = tmp_path_factory.mktemp("cameras")
    paths = _paths(root)
    make_synthetic_clip(paths, CLIP)
    return paths


def test_round_trip_on_a_synthetic_clip(clip):
    est_folder = clip.npz_folder.parent / "estimated"
    result = _run(clip, f"--num_frames={CLIP.num_frames}", *FAST_FLAGS, npz_folder=est_folder)
    assert result.returncode == 0, result.stderr[-2000:]
    est_path = est_folder / f"{VID}.npz"
    est = sio.load_dataset_npz(est_path)
    true = sio.load_dataset_npz(clip.npz)
    # Released format (load_dataset_npz checks every field rectify needs), same timestamps,
    # empty tracks.
    assert set(sio.DATASET_KEYS) <= set(np.load(est_path).files)
    np.testing.assert_array_equal(est["timestamps"], true["timestamps"])
    np.testing.assert_allclose(est["fov_bounds"], [-50, 50, -50, 50])
    assert est["track3d"].shape == (0, CLIP.num_frames, 3)
    np.testing.assert_allclose(est["camera2world"][0], np.eye(4)[:3], atol=1e-9)
    # Accuracy (issue targets: ATE <= 1 % of the path and 2 cm, RPE <= 0.05 deg/frame,
    # rig <= 0.02 deg, vertical disparity <= 0.2 px; loosened for 12 frames of 320 px).
    traj = camera_metrics.trajectory_errors(est["camera2world"], true["camera2world"])
    assert traj["ate_m"] <= 0.01 and traj["ate_fraction"] <= 0.03, traj
    assert traj["rpe_rot_deg"] <= 0.1, traj
    assert traj["scale_error"] <= 0.05, traj
    rig_errors, _ = camera_metrics.rig_rotation_errors_deg(est["rectified2rig"],
                                                           true["rectified2rig"])
    assert np.all(rig_errors <= 1.0), rig_errors  # the baseline direction: far from the target
    # The bundle adjustment's own standard deviations (provenance): the baseline direction's
    # error is of the order of its standard deviation (what the data allow), the relative
    # rotation's far smaller.
    stats = sio.load_json(sio.ClipPaths(VID, est_folder, clip.raw_video_folder,
                                        clip.output_folder).provenance("cameras"))["summary"]
    parts = camera_metrics.rig_error_parts_deg(est["rectified2rig"], true["rectified2rig"])
    assert 0.1 < stats["rig_sigma_px"] < 1.0, stats
    assert 0.0 < stats["rig_relative_rot_std_deg"] < 0.1 * stats["rig_baseline_dir_std_deg"]
    assert parts["baseline_deg"] < 4.0 * stats["rig_baseline_dir_std_deg"], (parts, stats)
    assert camera_metrics.vertical_disparity_px(est["rectified2rig"], true["rectified2rig"],
                                                CLIP.baseline_m) <= 0.3
    # An existing npz is never overwritten without --force.
    before = est_path.read_bytes()
    again = _run(clip, f"--num_frames={CLIP.num_frames}", *FAST_FLAGS, npz_folder=est_folder)
    assert again.returncode == 2 and "--force" in again.stderr
    assert est_path.read_bytes() == before


def _write_sbs(paths, frames):
    videoio.write_video(paths.raw_video, frames, fps=30.0, crf=4, chroma_444=True)


def _expect_error(paths, result, *words):
    assert result.returncode == 2, result.stderr[-2000:]
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error:")
    for word in words:
        assert word in line, line
    assert not paths.npz.exists()


def test_too_few_frames(clip, tmp_path):
    paths = _paths(tmp_path, "short_0")
    _expect_error(paths, _run(paths, "--num_frames=4", *BAD_INPUT_FLAGS), "too few frames", "4")
    # A video that ends before --num_frames: says how many frames there were.
    paths = _paths(tmp_path, VID)
    paths.raw_video.parent.mkdir(parents=True)
    paths.raw_video.write_bytes(clip.raw_video.read_bytes())
    _expect_error(paths, _run(paths, "--num_frames=200", *BAD_INPUT_FLAGS), "only", "frames")


def test_textureless_video(tmp_path):
    paths = _paths(tmp_path, "grey_0")
    _write_sbs(paths, [np.full((160, 320, 3), 128, np.uint8)] * 10)
    _expect_error(paths, _run(paths, "--num_frames=10", *BAD_INPUT_FLAGS), "texture")


def test_mono_and_static_videos(clip, tmp_path):
    frames = videoio.read_video(clip.raw_video)[3:15]
    half = frames.shape[2] // 2
    mono = _paths(tmp_path, "mono_0")
    _write_sbs(mono, np.concatenate([frames[:, :, :half]] * 2, axis=2))
    _expect_error(mono, _run(mono, "--num_frames=12", *BAD_INPUT_FLAGS), "mono")
    static = _paths(tmp_path, "static_0")
    _write_sbs(static, [frames[0]] * 12)
    _expect_error(static, _run(static, "--num_frames=12", *BAD_INPUT_FLAGS), "static")


def test_bad_flags(tmp_path):
    paths = _paths(tmp_path, "flags_0")
    _expect_error(paths, _run(paths, "--input_mode=perspective"), "--focal_px")
    _expect_error(paths, _run(paths, "--fov_bounds=1,2,3"), "--fov_bounds")
    _expect_error(paths, _run(paths, "--fov_bounds=50,-50,-50,50"), "START < END")
    _expect_error(paths, _run(paths, "--num_frames=20"), "missing video")
