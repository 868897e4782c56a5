"""Track optimisation stage: accuracy against known truth, end-to-end outputs, empty and bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

from stereo4d.depth import BASELINE_M
from stereo4d.geometry import PinholeCamera, focal_length_px, invert_rigid
from stereo4d.io import (
    ClipPaths,
    load_dataset_npz,
    load_json,
    load_pickle,
    save_dataset_npz,
    save_pickle,
)
from stereo4d.metrics.tracks3d import score_against_truth
from stereo4d.stages import optimization
from stereo4d.track_opt import TrackOptConfig, optimize_tracks
from stereo4d.tracks import select_dynamic_tracks
from stereo4d.videoio import read_video, write_video

HFOV_DEG = 60.0
VID = "testclip_1000000"
# Small clip: non-square frames catch (height, width) mix-ups.
NUM_FRAMES, IMH, IMW = 10, 48, 64
PLANE_Z_M = 3.0
CAMERA_STEP_M = np.array([0.05, 0.01, 0.0])  # per frame, no rotation: the plane stays at z = 3
MOVER_STEP_M = np.array([0.25, 0.0, 0.0])  # per frame, in the world: 3.7 px/frame relative,
# so scene motion passes 20 px within ~6 frames and Eq. 5 treats the movers as dynamic
VIDEO_RGB = np.array([200, 40, 90])
#: Tracks this far inside the border avoid the columns the left-right depth check invalidates.
BORDER_PX = 6.0


# ------------------------------------------------------------------ accuracy (parity golden scene)


@pytest.fixture(scope="module")
def golden_scores(parity_dir):
    """Scores of the golden scene's noisy lifted tracks and of our optimisation of them."""
    z = np.load(parity_dir / "track_opt_golden.npz")
    cameras = PinholeCamera.from_hfov(z["extrs"], float(z["hfov_deg"]))
    imh, imw = int(z["imh"]), int(z["imw"])
    result = optimize_tracks(z["track3d"], z["visible_list"], z["extrs"],
                             (cameras.fx, cameras.fy, cameras.cx, cameras.cy), imh, imw)
    _, gt_depth, _ = cameras.project(z["gt_track3d"], imh, imw)
    truth = {"tracks3d_world": z["gt_track3d"], "visibles": z["visible_list"], "depth_m": gt_depth}
    return {
        "before": score_against_truth(z["track3d"], z["visible_list"], truth, HFOV_DEG),
        "before_same_frames": score_against_truth(z["track3d"], result.visible, truth, HFOV_DEG),
        "after": score_against_truth(result.track3d, result.visible, truth, HFOV_DEG),
    }


def test_optimisation_halves_jitter_without_losing_accuracy(golden_scores):
    before, same, after = (golden_scores[k] for k in ("before", "before_same_frames", "after"))
    # Figures on this scene: jitter 0.709 -> 0.005 m, APD3D 0.404 -> 0.633 (same frames),
    # mean error 0.285 -> 0.103 m. Guards with wide margins:
    assert after["jitter_m"] < 0.5 * same["jitter_m"]
    assert after["jitter_m"] < 0.05 * same["jitter_m"]
    assert after["apd3d"] > same["apd3d"] + 0.15
    # Even counting the frames that erosion drops as misses, APD3D does not fall.
    assert after["apd3d"] > before["apd3d"] + 0.1
    assert after["mean_error_m"] < 0.5 * same["mean_error_m"]
    assert after["coverage"] == pytest.approx(same["coverage"])
    assert 0.8 < after["coverage"] < 0.95  # erosion by 5 frames drops the ends of visible runs


def test_score_against_truth_known_values():
    gt = np.zeros((1, 4, 3))
    gt[..., 2] = 2.0
    pred = gt.copy()
    pred[0, 1, 0] = 0.1  # 0.1 m error at 2 m depth: 0.1 / (2 / f256) = 11.1 px at 256 px
    truth = {"tracks3d_world": gt, "visibles": np.ones((1, 4), bool), "depth_m": gt[..., 2]}
    visible = np.array([[True, True, True, False]])
    s = score_against_truth(pred, visible, truth, HFOV_DEG)
    assert s["pct_within_8"] == pytest.approx(0.5)  # 2 exact of 4 (one missing, one 11 px off)
    assert s["pct_within_16"] == pytest.approx(0.75)
    assert s["mean_error_m"] == pytest.approx(0.1 / 3)
    assert s["jitter_m"] == pytest.approx(0.2)  # |0 - 2 * 0.1 + 0| over the one visible triple
    assert s["coverage"] == pytest.approx(0.75)


def test_select_dynamic_tracks_orders_by_height():
    track3d = np.zeros((4, 3, 3))
    track3d[:, :, 1] = np.array([3.0, -1.0, 2.0, 0.0])[:, None]  # world y (down) per track
    visible = np.ones((4, 3), bool)
    visible[2, 0] = False
    track3d[2, 0] = np.nan
    motion = np.array([[0, 20, 0], [0, 5, 0], [0, 0, 17], [0, 30, 0]], float)
    picked = select_dynamic_tracks(track3d, visible, motion, 16.0, max_tracks=10)
    np.testing.assert_array_equal(picked, [3, 2, 0])  # track 1 is static; top (small y) first
    assert len(select_dynamic_tracks(track3d, visible, motion, 16.0, max_tracks=2)) == 2


# ------------------------------------------------------------------------ end to end (tiny clip)


def _make_clip(root, num_static: int = 12, num_movers: int = 4) -> tuple[ClipPaths, dict]:
    """A plane at z = 3 m seen by a sliding camera; static and moving tracks on it (exact)."""
    paths = ClipPaths(VID, npz_folder=root / "npz", output_folder=root / "processed")
    centres = np.arange(NUM_FRAMES)[:, None] * CAMERA_STEP_M  # [T, 3]
    camera2world = np.concatenate([np.broadcast_to(np.eye(3), (NUM_FRAMES, 3, 3)),
                                   centres[..., None]], axis=-1)
    save_dataset_npz(paths.npz, name=VID, video_id="testclip",
                     timestamps_us=1_000_000 + np.arange(NUM_FRAMES) * 33_333,
                     camera2world=camera2world, track3d=np.zeros((0, NUM_FRAMES, 3)),
                     rectified2rig=np.stack([np.eye(3)] * 2), fov_bounds_deg=[-90, 90, -90, 90])
    cameras = PinholeCamera.from_hfov(invert_rigid(camera2world), HFOV_DEG, IMH / IMW)
    rng = np.random.default_rng(0)
    start_xy = np.stack([rng.uniform(20, IMW - 20, num_static + num_movers),
                         rng.uniform(BORDER_PX + 4, IMH - BORDER_PX - 4, num_static + num_movers)], -1)
    start_xy[num_static:, 0] = rng.uniform(BORDER_PX + 2, 14, num_movers)  # movers go right
    world0 = cameras.__class__(cameras.world_to_camera[0], cameras.fx, cameras.fy).unproject(
        start_xy, np.full(len(start_xy), PLANE_Z_M), IMH, IMW)
    steps = np.where(np.arange(len(start_xy))[:, None] >= num_static, 1.0, 0.0)[..., None]
    world = world0[:, None] + steps * np.arange(NUM_FRAMES)[None, :, None] * MOVER_STEP_M  # [N, T, 3]
    xy, _, _ = cameras.project(world, IMH, IMW)
    visible = ((xy[..., 0] > BORDER_PX) & (xy[..., 0] < IMW - BORDER_PX)
               & (xy[..., 1] > BORDER_PX) & (xy[..., 1] < IMH - BORDER_PX))
    query = np.concatenate([np.zeros((len(xy), 1)), start_xy[:, ::-1]], axis=1)  # (t, y, x)
    save_pickle({"tracks": xy.astype(np.float32), "visibles": visible, "query_points": query},
                paths.filtered_tracks)
    disparity = focal_length_px(HFOV_DEG, IMW) * BASELINE_M / PLANE_Z_M
    fwd = np.zeros((IMH, IMW, 2), np.float32)
    fwd[..., 0] = -disparity
    save_pickle([{"fwd": fwd, "bwd": -fwd} for _ in range(NUM_FRAMES)], paths.flows_stereo)
    write_video(paths.left_video, [np.broadcast_to(VIDEO_RGB, (IMH, IMW, 3)).astype(np.uint8)]
                * NUM_FRAMES)
    return paths, {"world": world, "visible": visible, "num_static": num_static}


VIDEO_SUFFIXES = ["raw_depth.mp4", "optimized_depth.mp4"] + [
    f"dyna_{kind}-{tag}.mp4" for kind in ("2dtrack", "3dtrack", "3dtrack_concated")
    for tag in ("original", "optimized")]


def _config(paths: ClipPaths) -> optimization.OptimizationConfig:
    return optimization.OptimizationConfig(vid=VID, npz_folder=str(paths.npz_folder),
                                           output_folder=str(paths.output_folder))


class _FakeOracle:
    """Stands in for ``SyntheticOracle``: the tiny clip's exact tracks."""

    def __init__(self, truth: dict, cameras: PinholeCamera):
        _, depth_m, _ = cameras.project(truth["world"], IMH, IMW)
        self.truth = {"tracks3d_world": truth["world"], "visibles": truth["visible"],
                      "depth_m": depth_m}

    def tracks_for_queries(self, query_points_tyx):
        assert len(query_points_tyx) == len(self.truth["visibles"])
        return self.truth


def test_stage_writes_exact_tracks_export_and_videos(tmp_path, monkeypatch):
    paths, truth = _make_clip(tmp_path)
    cameras = PinholeCamera.from_hfov(load_dataset_npz(paths.npz)["extrs_rectified"], HFOV_DEG,
                                      IMH / IMW)
    monkeypatch.setattr(optimization, "_load_oracle", lambda *args: _FakeOracle(truth, cameras))
    config = _config(paths)
    summary = optimization.run(optimization.OptimizationConfig(**{
        **config.__dict__, "gt_folder": str(tmp_path / "gt")}))
    # Scores against the truth: the lifted tracks are exact, and the optimisation keeps every
    # track, static or moving at constant velocity, on its true path (dynamic_edges="inside").
    accuracy = summary["accuracy"]
    assert accuracy["before"]["apd3d"] == 1.0 and accuracy["before"]["mean_error_m"] < 1e-5
    assert accuracy["before_same_frames"]["coverage"] == accuracy["after"]["coverage"] > 0.6
    assert accuracy["after"]["pct_within_4"] == 1.0 and accuracy["after"]["mean_error_m"] < 0.01
    assert load_json(paths.provenance("optimization"))["accuracy"]["after"]["apd3d"] == (
        pytest.approx(accuracy["after"]["apd3d"]))
    record = load_pickle(paths.optimized_tracks)
    assert set(record) == {"cameras", "track3d", "imh", "imw", "visible_list", "color_values", "video"}
    assert (record["imh"], record["imw"], record["video"]) == (IMH, IMW, None)
    assert len(record["cameras"]) == NUM_FRAMES
    intr = record["cameras"][0]["intr_normalized"]
    assert intr["fx"] * IMW == pytest.approx(focal_length_px(HFOV_DEG, IMW))
    assert intr["fy"] * IMH == pytest.approx(intr["fx"] * IMW)  # square pixels
    np.testing.assert_allclose(record["cameras"][3]["extr"][:, 3], -3 * CAMERA_STEP_M, atol=1e-12)
    # Exact scene (exact depth, constant velocities): lifting is exact. Eq. 5 keeps static tracks
    # (to Adam's noise floor: float32 round-off gradients still take steps of ~1 mm), and moves
    # the movers exactly as optimize_tracks does given the true points.
    track3d, kept = record["track3d"], record["visible_list"]
    assert record["track3d"].dtype == np.float32 and kept.shape == truth["visible"].shape
    assert not (kept & ~truth["visible"]).any() and kept.sum() > 0.6 * truth["visible"].sum()
    static = np.arange(len(kept)) < truth["num_static"]
    err_m = np.linalg.norm(track3d - truth["world"], axis=-1)
    assert err_m[static][kept[static]].max() < 5e-3
    intr = (cameras.fx, cameras.fy, cameras.cx, cameras.cy)
    direct = optimize_tracks(truth["world"], truth["visible"], cameras.world_to_camera, intr, IMH,
                             IMW, TrackOptConfig(dynamic_edges="inside"))
    np.testing.assert_array_equal(direct.visible, kept)
    direct_err = np.linalg.norm(direct.track3d - truth["world"], axis=-1)[~static][kept[~static]]
    assert direct_err.max() < 0.03 and err_m[~static][kept[~static]].max() < 0.05
    # The reference's edge clamping: second differences at the clip ends are not zero for a
    # constant-velocity track, so the movers are pulled along their rays (~0.2-0.4 m here).
    clamped = optimize_tracks(truth["world"], truth["visible"], cameras.world_to_camera, intr,
                              IMH, IMW, TrackOptConfig(dynamic_edges="clamp"))
    clamp_err = np.linalg.norm(clamped.track3d - truth["world"], axis=-1)[~static][kept[~static]]
    assert clamp_err.max() > 0.1
    assert np.isnan(track3d[~kept]).all()
    # Colours from the left video at the query points, in [0, 1] (video is lossy: +-4 levels).
    np.testing.assert_allclose(record["color_values"] * 255, np.broadcast_to(VIDEO_RGB, (16, 3)),
                               atol=4)
    # Export: visible points equal the pickle's float32 values exactly; metadata copied.
    exported, source = load_dataset_npz(paths.export_npz), load_dataset_npz(paths.npz)
    np.testing.assert_array_equal(exported["track3d"][kept], track3d[kept])
    assert np.isnan(exported["track3d"][~kept]).all()
    for key in ("name", "video_id", "timestamps", "camera2world", "rectified2rig", "fov_bounds"):
        np.testing.assert_array_equal(exported[key], source[key])
    # Videos: every frame, 3D view square at the video's height, concatenation side by side.
    for suffix in VIDEO_SUFFIXES:
        assert len(read_video(paths.out(suffix))) == NUM_FRAMES, suffix
    assert read_video(paths.out("dyna_3dtrack_concated-optimized.mp4")).shape[1:3] == (IMH, IMW + IMH)
    assert summary["num_tracks_shown"]["original"] == 4  # the four movers (~22 px in 9 frames)
    assert paths.provenance("optimization").is_file()
    # The provenance JSON is the completion marker: nothing may be newer.
    newest = max(p.stat().st_mtime for p in paths.clip_dir.iterdir() if p.suffix != ".json")
    assert paths.provenance("optimization").stat().st_mtime >= newest


def test_stage_with_no_tracks_exits_2_and_keeps_earlier_outputs(tmp_path, capsys):
    import track_optimization

    paths, _ = _make_clip(tmp_path, num_static=0, num_movers=0)
    save_pickle({"tracks": np.zeros((0, NUM_FRAMES, 2), np.float32),
                 "visibles": np.zeros((0, NUM_FRAMES), bool), "query_points": np.zeros((0, 3))},
                paths.filtered_tracks)
    earlier = {p: f"earlier {p.name}".encode() for p in (paths.optimized_tracks, paths.export_npz)}
    for path, content in earlier.items():
        path.write_bytes(content)
    code = track_optimization.run_cli(track_optimization.main, [
        f"--vid={VID}", f"--npz_folder={paths.npz_folder}", f"--output_folder={paths.output_folder}"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: optimization: nothing usable") and "no finite" in err[-1]
    assert all(path.read_bytes() == content for path, content in earlier.items())
    assert not paths.provenance("optimization").exists()
    assert not any(paths.out(suffix).exists() for suffix in VIDEO_SUFFIXES)


def test_script_missing_input_exits_2_without_outputs(tmp_path, capsys):
    import track_optimization

    paths, _ = _make_clip(tmp_path, num_static=2, num_movers=0)
    paths.flows_stereo.unlink()
    before = set(paths.clip_dir.iterdir())
    code = track_optimization.run_cli(track_optimization.main, [
        f"--vid={VID}", f"--npz_folder={paths.npz_folder}", f"--output_folder={paths.output_folder}"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: missing input(s)") and "stereo.npz" in err
    assert set(paths.clip_dir.iterdir()) == before
