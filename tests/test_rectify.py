"""rectify.py on a self-made clip: accuracy against an analytic view, and bad inputs."""

import cv2
import numpy as np
import pytest

import rectify as rectify_script
from stereo4d import geometry, videoio
from stereo4d import io as sio
from stereo4d.stages import rectify

EYE_HW = (240, 240)
FOV = np.array([-60.0, 60.0, -60.0, 60.0])
FPS = 30.0
VID = "pattern_clip_66667"  # first frame = frame 2 of the video
RIG = np.stack([geometry.rotation_xyz_deg(2, -3, 1.5), geometry.rotation_xyz_deg(-1, 2, -2.5)])


def sky_colour(rays: np.ndarray, frame: int) -> np.ndarray:
    """A smooth colour per direction (an environment at infinity), changing with the frame."""
    x, y, z = np.moveaxis(rays, -1, 0)
    r = 0.5 + 0.4 * np.sin(5 * x + 0.3 * frame)
    g = 0.5 + 0.4 * np.cos(4 * y - 2 * x)
    b = 0.5 + 0.4 * np.sin(3 * (x + y) + 2 * z)
    return (np.stack([r, g, b], -1) * 255).round().astype(np.uint8)


def _make_clip(root, num_video_frames=8, **overrides):
    paths = sio.ClipPaths(VID, root / "npz", root / "raw", root / "processed")
    rays = geometry.equirect_pixel_rays(EYE_HW, FOV)
    frames = []
    for f in range(num_video_frames):
        eyes = [sky_colour(rays @ rot, f) for rot in RIG]  # raw ray d -> rectified ray R^T d
        frames.append(np.concatenate(eyes, axis=1))
    videoio.write_video(paths.raw_video, frames, fps=FPS, crf=4, chroma_444=True)
    t = 4
    fields = {
        "name": VID, "video_id": "pattern_clip", "timestamps_us": 66667 + np.round(np.arange(t) * 1e6 / FPS),
        "camera2world": np.tile(np.hstack([np.eye(3), np.zeros((3, 1))]), (t, 1, 1)),
        "rectified2rig": RIG, "fov_bounds_deg": FOV, "track3d": np.zeros((0, t, 3))}
    fields.update(overrides)
    sio.save_dataset_npz(paths.npz, **fields)
    return paths


def _argv(paths, *extra):
    return [f"--vid={paths.vid}", f"--npz_folder={paths.npz_folder}",
            f"--raw_video_folder={paths.raw_video_folder}", f"--output_folder={paths.output_folder}",
            "--output_height=64", "--output_width=80", "--min_equirect_height=0", *extra]


def test_rectified_views_match_the_analytic_scene(tmp_path):
    paths = _make_clip(tmp_path)
    assert rectify_script.main(_argv(paths)) is None
    left = videoio.read_video(paths.left_video)
    right = videoio.read_video(paths.right_video)
    assert left.shape == (4, 64, 80, 3) and right.shape == left.shape
    rays = geometry.perspective_pixel_rays(64, 80, 60.0)
    for i in range(4):  # clip frame i is video frame i + 2
        truth = sky_colour(rays, i + 2).astype(float)
        for view in (left[i], right[i]):
            mse = np.mean((view.astype(float) - truth) ** 2)
            assert 10 * np.log10(255**2 / mse) >= 30.0
    # A wrong frame would be clearly worse: the frame index matters.
    wrong = sky_colour(rays, 0).astype(float)
    assert 10 * np.log10(255**2 / np.mean((left[0] - wrong) ** 2)) < 30.0
    rect = videoio.read_video(paths.rectified_equirect_video)
    assert rect.shape == (4, EYE_HW[0], 2 * EYE_HW[1], 3)
    assert sio.load_json(paths.provenance("rectify"))["backend"] == "opencv-remap"


def _outputs(paths):
    return sorted(p.name for p in paths.clip_dir.glob("*.mp4")) if paths.clip_dir.exists() else []


@pytest.mark.parametrize("case, message", [
    ("missing_npz", "missing npz"),
    ("missing_key", "missing key"),
    ("missing_video", "missing video"),
    ("unreadable_video", "unreadable video"),
    ("past_end", "past the end"),
    ("not_rotation", "not a rotation"),
    ("non_finite", "non-finite"),
    ("low_height", "--min_equirect_height"),
])
def test_bad_input_gives_clear_error_and_no_outputs(tmp_path, capsys, case, message):
    paths = _make_clip(tmp_path, num_video_frames=5)
    extra = []
    if case == "missing_npz":
        paths.npz.unlink()
    elif case == "missing_key":
        with np.load(paths.npz) as z:
            data = {k: z[k] for k in z.files if k != "rectified2rig"}
        np.savez(paths.npz, **data)
    elif case == "missing_video":
        paths.raw_video.unlink()
    elif case == "unreadable_video":
        paths.raw_video.write_bytes(b"\x00garbage" * 50)
    elif case == "past_end":
        t = 4
        _make_clip(tmp_path, num_video_frames=5,
                   timestamps_us=66667 + np.round(np.arange(t) * 2e6 / FPS))
    elif case == "not_rotation":
        _make_clip(tmp_path, num_video_frames=5, rectified2rig=RIG * 1.2)
    elif case == "non_finite":
        c2w = np.tile(np.hstack([np.eye(3), np.zeros((3, 1))]), (4, 1, 1))
        c2w[2, 0, 3] = np.nan
        _make_clip(tmp_path, num_video_frames=5, camera2world=c2w)
    elif case == "low_height":
        extra = ["--min_equirect_height=1920"]
    argv = _argv(paths)
    if extra:
        argv = [a for a in argv if not a.startswith("--min_equirect_height")] + extra
    code = rectify_script.run_cli(rectify_script.main, argv)
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err
    assert _outputs(paths) == []
    leftovers = list(paths.clip_dir.glob(".*")) if paths.clip_dir.exists() else []
    assert leftovers == []


def test_frame_indices_round_to_nearest_frame():
    ts = np.array([0, 33333, 66667, 100000, 1_000_000])
    np.testing.assert_array_equal(rectify.frame_indices(ts, 30.0), [0, 1, 2, 3, 30])


def test_rectified_synthetic_clip_matches_ground_truth_render(tmp_path):
    """rectify.py on the synthetic VR180 clip reproduces the true left view (PSNR >= 30 dB)."""
    from stereo4d.synthetic import SyntheticClipConfig, make_synthetic_clip

    vid = "synthrect_66667"
    paths = sio.ClipPaths(vid, tmp_path / "npz", tmp_path / "raw", tmp_path / "processed",
                          tmp_path / "gt")
    make_synthetic_clip(paths, SyntheticClipConfig(num_frames=4, eye_size_px=400, gt_size_px=192,
                                                   num_tracks=100))
    assert rectify_script.main([f"--vid={vid}", f"--npz_folder={paths.npz_folder}",
                                f"--raw_video_folder={paths.raw_video_folder}",
                                f"--output_folder={paths.output_folder}", "--output_height=192",
                                "--output_width=192", "--min_equirect_height=0"]) is None
    left = videoio.read_video(paths.left_video).astype(float)
    with np.load(paths.gt) as gt:
        truth = gt["rgb_left"].astype(float)
    psnr = [10 * np.log10(255**2 / np.mean((a - b) ** 2)) for a, b in zip(left, truth)]
    assert len(psnr) == 4 and min(psnr) >= 30.0
    # Without the rig rotation (a rectification that does nothing) the views do not match.
    raw = videoio.read_video(paths.raw_equirect_video)[0]
    eye = raw.shape[1] // 2
    mx, my = geometry.perspective_to_equirect_map((raw.shape[0], eye),
                                                  sio.load_dataset_npz(paths.npz)["fov_bounds"],
                                                  192, 192, 60.0)
    unrectified = cv2.remap(raw[:, :eye], mx, my, cv2.INTER_LINEAR).astype(float)
    assert 10 * np.log10(255**2 / np.mean((unrectified - truth[0]) ** 2)) < 25.0


def test_refused_rerun_touches_no_output_not_even_the_completion_marker(tmp_path):
    paths = _make_clip(tmp_path)
    assert rectify_script.main(_argv(paths)) is None
    before = {p.name: p.read_bytes() for p in paths.clip_dir.iterdir()}
    assert paths.provenance("rectify").name in before
    paths.raw_video.write_bytes(b"\x00garbage" * 50)
    assert rectify_script.run_cli(rectify_script.main, _argv(paths)) == 2
    # Refused before any output was replaced: the outputs still match their marker.
    assert {p.name: p.read_bytes() for p in paths.clip_dir.iterdir()} == before


def test_marker_is_removed_before_the_first_output_is_replaced(tmp_path, monkeypatch):
    paths = _make_clip(tmp_path)
    assert rectify_script.main(_argv(paths)) is None
    original = videoio.VideoWriter.close
    seen = []

    def close(self, commit=True):  # the marker must be gone when an output is replaced
        if commit:
            seen.append(paths.provenance("rectify").exists())
        return original(self, commit)

    monkeypatch.setattr(rectify, "VideoWriter", type("W", (videoio.VideoWriter,), {"close": close}))
    assert rectify_script.main(_argv(paths)) is None
    assert seen and not any(seen) and paths.provenance("rectify").is_file()
