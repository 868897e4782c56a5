"""Degenerate content: blank and nearly blank clips warn or stop every stage; a normal clip does not.

Three versions of one tiny synthetic clip (8 frames, 96x96 views, seed 1; the thresholds
of ``stereo4d.stages.health`` were checked on the 512 px demo clip of seed 0): the clip
itself, the same video all grey, and all grey but a small patch of the scene in the middle
of each eye (about 8 % of the view). Every stage runs as its script (``run_cli``), so exit
codes and stderr lines are what a user sees.
"""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

import inference_raft
import rectify as rectify_script
import segmentation as segmentation_script
import track_optimization
import tracking as tracking_script
from stereo4d.backends.classical_tracker import ClassicalTracker, ClassicalTrackerConfig
from stereo4d.cli import run_cli
from stereo4d.io import ClipPaths, load_json, save_pickle
from stereo4d.stages import health
from stereo4d.stages.tracking import track_video
from stereo4d.synthetic import SyntheticClipConfig, make_synthetic_clip
from stereo4d.videoio import read_video, write_video

VID = "health_33333"
VIEW_PX = 96
#: Half side (px) of the scene patch kept in each raw eye of the nearly blank clip.
PATCH_HALF_PX = 16
GREY = 128
STAGES = ("rectify", "stereo", "tracking", "filtering", "optimization")


def _paths(root) -> ClipPaths:
    return ClipPaths(VID, root / "npz", root / "raw", root / "processed", root / "gt")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """{"normal", "grey", "nearly_blank"} -> ClipPaths (same cameras, different videos)."""
    root = tmp_path_factory.mktemp("health")
    normal = _paths(root / "normal")
    make_synthetic_clip(normal, SyntheticClipConfig(num_frames=8, eye_size_px=256,
                                                    gt_size_px=VIEW_PX, num_tracks=50, seed=1))
    raw = read_video(normal.raw_video)
    height, width = raw.shape[1], raw.shape[2] // 2
    patch = np.full_like(raw, GREY)
    rows = slice(height // 2 - PATCH_HALF_PX, height // 2 + PATCH_HALF_PX)
    for centre in (width // 2, width + width // 2):
        cols = slice(centre - PATCH_HALF_PX, centre + PATCH_HALF_PX)
        patch[:, rows, cols] = raw[:, rows, cols]
    out = {"normal": normal}
    for name, video in (("grey", np.full_like(raw, GREY)), ("nearly_blank", patch)):
        paths = _paths(root / name)
        paths.npz_folder.mkdir(parents=True)
        shutil.copy(normal.npz, paths.npz)
        write_video(paths.raw_video, video, chroma_444=True)
        out[name] = paths
    return out


def _run(stage: str, paths: ClipPaths, capsys) -> tuple[int, str]:
    """Runs one stage's script on ``paths``; returns (exit code, stderr)."""
    common = [f"--vid={VID}", f"--npz_folder={paths.npz_folder}",
              f"--output_folder={paths.output_folder}"]
    script, flags = {
        "rectify": (rectify_script, [f"--raw_video_folder={paths.raw_video_folder}",
                                     "--min_equirect_height=0", f"--output_height={VIEW_PX}",
                                     f"--output_width={VIEW_PX}", "--skip_equirect_videos"]),
        "stereo": (inference_raft, ["--backend=sgbm"]),
        "tracking": (tracking_script, ["--backend=dis-flow"]),
        "filtering": (segmentation_script, ["--backend=classical"]),
        "optimization": (track_optimization, []),
    }[stage]
    capsys.readouterr()
    code = run_cli(script.main, [*common, *flags])
    return code, capsys.readouterr().err


def _warning_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning:")]


def test_normal_clip_gives_no_warning(clips, capsys):
    paths = clips["normal"]
    for stage in STAGES:
        code, err = _run(stage, paths, capsys)
        assert code == 0, (stage, err)
        assert _warning_lines(err) == [], stage
        record = load_json(paths.provenance(stage))
        assert record["warnings"] == [], stage
    figures = {stage: load_json(paths.provenance(stage))["health"] for stage in STAGES}
    assert figures["rectify"]["textured_pixel_fraction"] > 0.9
    assert figures["stereo"]["valid_depth_fraction"] > 0.15  # small views lose far depth
    assert figures["tracking"]["trusted_fraction"] > 0.9
    assert figures["tracking"]["visible_fraction"] > 0.9
    assert figures["filtering"]["kept_fraction"] > 0.5
    assert figures["filtering"]["dominant_label_fraction"] < 0.8
    assert figures["optimization"]["finite_fraction"] == 1.0
    assert figures["optimization"]["kept_point_fraction"] > 0.5


def _sentinels(paths: ClipPaths, outputs: list) -> dict:
    """Stand-ins for an earlier good run's outputs: must be left byte-identical."""
    paths.clip_dir.mkdir(parents=True, exist_ok=True)
    contents = {}
    for path in outputs:
        contents[path] = f"earlier output {path.name}".encode()
        path.write_bytes(contents[path])
    return contents


def _assert_refused(code: int, err: str, message: str, sentinels: dict) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: ") and message in lines[-1], err
    assert "Traceback" not in err
    for path, content in sentinels.items():
        assert path.read_bytes() == content, path


def _write_tracker_tracks(paths: ClipPaths, target) -> None:
    """The classical tracker's tracks of the clip's left video, written where a stage reads them."""
    frames = read_video(paths.left_video)
    tracks, _ = track_video(frames, ClassicalTracker(ClassicalTrackerConfig(progress=False)))
    save_pickle(tracks.to_dict(), target)


def test_grey_clip_warns_then_stops_each_stage(clips, capsys):
    paths = clips["grey"]
    code, err = _run("rectify", paths, capsys)
    assert code == 0 and len(_warning_lines(err)) == 1 and "textured pixels" in err
    record = load_json(paths.provenance("rectify"))
    assert record["health"]["textured_pixel_fraction"] == 0.0 and len(record["warnings"]) == 1

    earlier = _sentinels(paths, [paths.flows_stereo])
    _assert_refused(*_run("stereo", paths, capsys), "no pixel has a valid disparity", earlier)
    assert not paths.provenance("stereo").exists()

    earlier = _sentinels(paths, [paths.tracks_2d, paths.tracks_2d_video])
    _assert_refused(*_run("tracking", paths, capsys), "none of the", earlier)

    # Later stages on what the earlier ones would have made of the grey video: zero disparity
    # (no valid depth) and the tracker's tracks, kept outputs of an earlier run beside them.
    zero = np.zeros((VIEW_PX, VIEW_PX, 2), np.float32)
    save_pickle([{"fwd": zero, "bwd": zero}] * 8, paths.flows_stereo)
    _write_tracker_tracks(paths, paths.tracks_2d)
    earlier = _sentinels(paths, [paths.filtered_tracks, paths.filtered_tracks_video,
                                 paths.segmentation])
    _assert_refused(*_run("filtering", paths, capsys), "has a stereo depth", earlier)

    _write_tracker_tracks(paths, paths.filtered_tracks)
    earlier = _sentinels(paths, [paths.optimized_tracks, paths.export_npz])
    _assert_refused(*_run("optimization", paths, capsys), "no finite optimised point", earlier)


def test_nearly_blank_clip_warns_at_every_stage_it_passes(clips, capsys):
    paths = clips["nearly_blank"]
    expected = {"rectify": "textured pixels", "stereo": "valid depth on",
                "tracking": "trustworthy tracks", "filtering": "one label"}
    for stage, message in expected.items():
        code, err = _run(stage, paths, capsys)
        assert code == 0, (stage, err)
        lines = _warning_lines(err)
        assert len(lines) == 1 and message in lines[0], (stage, err)
        assert load_json(paths.provenance(stage))["warnings"], stage
    figures = load_json(paths.provenance("tracking"))["health"]
    assert 0.0 < figures["trusted_fraction"] < health.TRACKING_MIN_TRUSTED_FRACTION
    # The optimiser's 5-frame erosion leaves none of the few short tracks with depth.
    earlier = _sentinels(paths, [paths.optimized_tracks])
    _assert_refused(*_run("optimization", paths, capsys), "no finite optimised point", earlier)


def _textured_frames(num_frames: int, size: int, shift_px: int) -> np.ndarray:
    rng = np.random.default_rng(3)
    base = (rng.random((size, size * 2)) * 255).astype(np.float32)
    base = cv2.GaussianBlur(base, (0, 0), 1.5)
    frames = [base[:, t * shift_px:t * shift_px + size] for t in range(num_frames)]
    return np.repeat(np.clip(np.stack(frames), 0, 255).astype(np.uint8)[..., None], 3, axis=-1)


def test_classical_tracker_does_not_invent_visibility_on_blank_regions():
    num_frames, size = 6, 64
    textured = _textured_frames(num_frames, size, shift_px=2)  # content moves 2 px left per frame
    frames = textured.copy()
    frames[:, :, size // 2:] = GREY  # right half blank
    queries = np.array([[0, 20.5, 12.5], [2, 40.5, 20.5], [0, 20.5, 48.5], [3, 40.5, 52.5]])
    tracker = ClassicalTracker(ClassicalTrackerConfig(progress=False))
    tracks_xy, visibles = tracker.track(frames, queries)
    # On the texture: followed, visible, at the true position (2 px left per frame).
    for i in (0, 1):
        t0 = int(queries[i, 0])
        inside = np.arange(num_frames)[tracks_xy[i, :, 0] < size // 2 - 6]
        assert visibles[i, inside].all()
        np.testing.assert_allclose(tracks_xy[i, inside, 0],
                                   queries[i, 2] - 2 * (inside - t0), atol=0.3)
    # On the blank half: seen at the query frame only.
    for i in (2, 3):
        assert visibles[i].sum() == 1 and visibles[i, int(queries[i, 0])]
    blank_health = health.tracking_health(frames, tracks_xy, visibles, queries)
    assert blank_health.figures["textured_query_fraction"] == 0.5
    assert blank_health.figures["trusted_fraction"] == 0.5 and blank_health.unusable is None


def test_health_figures_known_values():
    stereo = health.stereo_health(np.zeros((2, 4, 5), bool))
    assert stereo.unusable and stereo.figures["valid_depth_pixels"] == 0
    valid = np.zeros((2, 4, 5), bool)
    valid[0, :2] = True  # 10 of 40 pixels: 25 %, no warning
    assert health.stereo_health(valid).warnings == []
    valid[0, 1] = False  # 12.5 % -> still above 10 %
    assert health.stereo_health(valid).warnings == []
    valid[0, 0, 1:] = False  # 1 of 40: 2.5 %
    assert health.stereo_health(valid).warnings == ["valid depth on 2.5% (< 10.0%)"]

    labels = np.zeros((1, 10, 10), np.uint8)
    labels[0, 0, :3] = 4  # 97 % one label
    has_depth = np.ones((3, 1), bool)
    filt = health.filtering_health(labels, np.array([True, False, True]), has_depth)
    assert filt.figures["kept_fraction"] == pytest.approx(2 / 3)
    assert filt.figures["dominant_label"] == 0
    assert filt.figures["dominant_label_fraction"] == pytest.approx(0.97)
    assert len(filt.warnings) == 1 and "one label" in filt.warnings[0]
    assert health.filtering_health(labels, np.zeros(3, bool), has_depth).unusable

    points = np.zeros((4, 3, 3))
    visible = np.ones((4, 3), bool)
    points[0, 0] = np.nan  # 1 of 12 kept points non-finite
    opt = health.optimization_health(visible, points, visible)
    assert opt.figures["finite_fraction"] == pytest.approx(11 / 12)
    assert opt.warnings == ["finite kept points 91.7% (< 99.9%)"]
    assert health.optimization_health(visible, points + np.nan, visible).unusable
    none_kept = health.optimization_health(visible, points, np.zeros_like(visible))
    assert none_kept.unusable and none_kept.figures["kept_point_fraction"] == 0.0
    # Points filled from lifted tracks while the optimisation itself kept none: no result.
    filled_only = health.optimization_health(visible, points, visible, np.zeros_like(visible))
    assert filled_only.unusable and filled_only.figures["num_points_optimised"] == 0
    assert not health.optimization_health(visible, points, visible, visible).unusable


def test_unusable_output_is_an_input_error_and_warnings_go_to_stderr(capsys):
    h = health.Health("demo", figures={"x": 0.0}, warnings=["x low"])
    h.enforce("clip.mp4")
    assert capsys.readouterr().err == "warning: demo: degenerate output from clip.mp4: x low\n"
    assert h.record() == {"health": {"x": 0.0}, "warnings": ["x low"]}
    h.unusable = "nothing"
    with pytest.raises(health.DegenerateOutputError, match="nothing usable from clip.mp4"):
        h.enforce("clip.mp4")
