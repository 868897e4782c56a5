"""Issue 10's bad-input matrix: every stage x every kind of bad input, run as a user runs it.

Each case starts from a copy of one valid, fully processed tiny synthetic clip (8 frames,
96 x 96 views; built once per module), spoils one input, runs the stage's top-level script in a
subprocess and checks: exit 2, exactly one stderr line starting ``error:`` that names the file
(or flag) and the field, no traceback, and every file in the dataset folders byte-identical
afterwards (outputs of earlier runs and the stage's own completion marker included).

Which kinds apply to which stage (the others have no such input):
- rectify (npz + raw video): missing, truncated, wrong type (a hostile pickle in place of the
  npz), non-finite, wrong shape, frame count, past-the-end timestamps, vid, flag.
- inference_raft (rectified videos): missing, truncated, wrong type, frame count, vid, flag.
  No pickle, no npz, nothing that can be non-finite.
- tracking (left video; a ``--path`` checkpoint for bootstapir): missing, truncated, wrong type,
  hostile pickle (a TAPIR .npy checkpoint), vid, flag.
- segmentation and track_optimization (npz, flows and track pickles, left video): all kinds.
- evaluate (outputs + ground truth): missing (ground truth; nothing to score), truncated,
  wrong type, hostile pickle, non-finite, wrong shape, vid, flag.
Findings reproduced here: hostile pickles (1), non-finite poses (2), path-like vids (3),
flag ranges (6), wrong-type pickles and nothing to score (8).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stereo4d.io import ClipPaths, InputError, save_pickle
from tests.conftest import REPO_ROOT
from tests.test_input_safety import _wrap, hostile_payloads

VID = "badin_66667"
NUM_FRAMES = 8
VIEW_PX = 96


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    """A valid clip run through every stage with the weight-free backends (in-process, once)."""
    import inference_raft
    import rectify
    import segmentation
    import track_optimization
    import tracking
    from stereo4d.synthetic import SyntheticClipConfig, make_synthetic_clip

    root = tmp_path_factory.mktemp("baseline")
    paths = _paths(root)
    make_synthetic_clip(paths, SyntheticClipConfig(num_frames=NUM_FRAMES, eye_size_px=256,
                                                   gt_size_px=VIEW_PX, num_tracks=100))
    for script in (rectify, inference_raft, tracking, segmentation, track_optimization):
        assert script.main(_args(script.__name__, paths)) is None
    return root


def _paths(root: Path) -> ClipPaths:
    return ClipPaths(VID, root / "npz", root / "raw", root / "processed", root / "gt")


def _args(stage: str, paths: ClipPaths, vid: str = VID) -> list[str]:
    common = [f"--vid={vid}", f"--npz_folder={paths.npz_folder}",
              f"--output_folder={paths.output_folder}"]
    return {
        "rectify": [*common, f"--raw_video_folder={paths.raw_video_folder}",
                    "--min_equirect_height=0", "--skip_equirect_videos",
                    f"--output_height={VIEW_PX}", f"--output_width={VIEW_PX}"],
        # The pickle: this matrix spoils the reference format (test_io covers the compact one).
        "inference_raft": [*common, "--backend=sgbm", "--max_disparity=32",
                           "--stereo_format=pickle"],
        "tracking": [f"--vid={vid}", f"--output_folder={paths.output_folder}",
                     "--backend=dis-flow", "--skip_video"],
        "segmentation": [*common, "--backend=classical"],
        "track_optimization": [*common, "--skip_videos"],
        "evaluate": [*common, f"--gt_folder={paths.gt_folder}"],
    }[stage]


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------- spoilers


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _edit_npz(path: Path, **changes) -> None:
    with np.load(path) as z:
        data = {k: z[k] for k in z.files}
    for key, change in changes.items():
        data[key] = change(data[key])
    np.savez(path, **data)


def _nan_at(index):
    def change(a):
        a = a.astype(np.float64)
        a[index] = np.nan
        return a
    return change


def _hostile(path: Path, proto: int = 4, nest: str = "dict") -> None:
    """The payload that ran code under the old allow-list; it would create ``ran`` beside it."""
    build = hostile_payloads(path.parent / "ran")["dotted numpy.dtypes.__builtins__"]
    path.write_bytes(_wrap(build(proto), proto, nest))


def _tracks_edit(change):
    def spoil(path: Path) -> None:
        data = pickle.loads(path.read_bytes())
        save_pickle(change(data), path)
    return spoil


def _short_video(path: Path) -> None:
    from stereo4d import videoio

    frames = videoio.read_video(path)[:3]
    path.unlink()
    videoio.write_video(path, frames)


def _hostile_npy(paths: ClipPaths) -> Path:
    path = paths.npz_folder.parent / "evil_checkpoint.npy"
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False,
                                                 "shape": ()})
        build = hostile_payloads(path.parent / "ran")["dotted numpy.dtypes.__builtins__"]
        f.write(_wrap(build(5), 5, "dict"))
    return path


# (stage, kind, spoil(paths) -> extra args or None, expected fragments of the error line)
# ``{npz}`` etc. in a fragment are replaced by that file's name.
CASES = [
    # rectify
    ("rectify", "missing", lambda p: p.npz.unlink(), ["missing npz", "{npz}"]),
    ("rectify", "truncated", lambda p: _truncate(p.npz), ["cannot read npz", "{npz}"]),
    ("rectify", "truncated video", lambda p: _truncate(p.raw_video), ["{raw_video}"]),
    ("rectify", "wrong type", lambda p: _hostile(p.npz), ["cannot read npz", "{npz}"]),
    ("rectify", "non-finite", lambda p: _edit_npz(p.npz, camera2world=_nan_at((3, 1, 3))),
     ["{npz}", "'camera2world'", "non-finite", "frame 3"]),
    ("rectify", "wrong shape", lambda p: _edit_npz(p.npz, rectified2rig=lambda a: a[0]),
     ["{npz}", "'rectified2rig'"]),
    ("rectify", "frame count", lambda p: _edit_npz(p.npz, timestamps=lambda a: a[:-1]),
     ["{npz}", "'camera2world' has 8 poses but 'timestamps' has 7"]),
    ("rectify", "past the end", lambda p: _edit_npz(p.npz, timestamps=lambda a: a + 10**6),
     ["{raw_video}", "past the end"]),
    ("rectify", "vid", lambda p: ["--vid=../../badin_66667"], ["--vid", "'../../badin_66667'"]),
    ("rectify", "flag", lambda p: ["--output_hfov=200"], ["--output_hfov", "200"]),
    ("rectify", "flag", lambda p: ["--output_height=0"], ["--output_height", "got 0"]),
    # inference_raft
    ("inference_raft", "missing", lambda p: p.right_video.unlink(), ["{right_video}"]),
    ("inference_raft", "truncated", lambda p: _truncate(p.left_video), ["{left_video}"]),
    ("inference_raft", "wrong type", lambda p: p.left_video.write_text("not a video"),
     ["unreadable video", "{left_video}"]),
    ("inference_raft", "frame count", lambda p: _short_video(p.right_video),
     ["{left_video} has 8 frames", "{right_video} has 3"]),
    ("inference_raft", "vid", lambda p: ["--vid=a/b_1"], ["--vid", "'a/b_1'"]),
    ("inference_raft", "flag", lambda p: ["--max_disparity=0"], ["--max_disparity", "got 0"]),
    # tracking
    ("tracking", "missing", lambda p: p.left_video.unlink(), ["missing video", "{left_video}"]),
    ("tracking", "truncated", lambda p: _truncate(p.left_video), ["{left_video}"]),
    ("tracking", "wrong type", lambda p: p.left_video.write_bytes(b"\x00" * 99),
     ["unreadable video", "{left_video}"]),
    ("tracking", "hostile pickle",
     lambda p: ["--backend=bootstapir", f"--path={_hostile_npy(p)}"],
     ["evil_checkpoint.npy", "refusing"]),
    ("tracking", "vid", lambda p: ["--vid=/abs/path_123"], ["--vid", "'/abs/path_123'"]),
    ("tracking", "flag", lambda p: ["--grid_stride_px=0"], ["--grid_stride_px", "got 0"]),
    # segmentation
    ("segmentation", "missing", lambda p: p.tracks_2d.unlink(), ["missing", "{tracks_2d}"]),
    ("segmentation", "truncated", lambda p: _truncate(p.flows_stereo),
     ["cannot read", "{flows_stereo}"]),
    ("segmentation", "wrong type", lambda p: save_pickle(7, p.tracks_2d),
     ["{tracks_2d}", "expected a dict", "got int"]),
    ("segmentation", "wrong type", lambda p: save_pickle({"fwd": 1}, p.flows_stereo),
     ["{flows_stereo}", "expected a list", "got dict"]),
    ("segmentation", "hostile pickle", lambda p: _hostile(p.tracks_2d, 4, "dict"),
     ["{tracks_2d}", "refusing", "numpy.dtypes.__builtins__.get"]),
    ("segmentation", "hostile pickle", lambda p: _hostile(p.flows_stereo, 5, "list"),
     ["{flows_stereo}", "refusing"]),
    ("segmentation", "non-finite", lambda p: _edit_npz(p.npz, camera2world=_nan_at((5, 0, 0))),
     ["{npz}", "'camera2world'", "frame 5"]),
    ("segmentation", "non-finite", lambda p: _tracks_edit(lambda d: [
        {**f, "fwd": np.full_like(f["fwd"], np.nan)} if i == 2 else f
        for i, f in enumerate(d)])(p.flows_stereo),
     ["{flows_stereo}", "non-finite", "frame 2"]),
    ("segmentation", "wrong shape", lambda p: _tracks_edit(
        lambda d: {**d, "query_points": d["query_points"][:, :2]})(p.tracks_2d),
     ["{tracks_2d}", "'query_points'"]),
    ("segmentation", "frame count", lambda p: _tracks_edit(
        lambda d: {**d, "tracks": d["tracks"][:, :-1], "visibles": d["visibles"][:, :-1],
                   "query_points": np.minimum(d["query_points"], [6, 1e9, 1e9])})(p.tracks_2d),
     ["frame counts differ", "{tracks_2d} 7", "{flows_stereo} 8"]),
    ("segmentation", "vid", lambda p: ["--vid=x_1/../../y_2"], ["--vid", "'x_1/../../y_2'"]),
    ("segmentation", "flag", lambda p: ["--hfov=0"], ["--hfov", "got 0"]),
    # track_optimization
    ("track_optimization", "missing", lambda p: p.filtered_tracks.unlink(),
     ["missing", "{filtered_tracks}"]),
    ("track_optimization", "truncated", lambda p: _truncate(p.filtered_tracks),
     ["cannot read", "{filtered_tracks}"]),
    ("track_optimization", "wrong type", lambda p: save_pickle([1, 2], p.filtered_tracks),
     ["{filtered_tracks}", "expected a dict", "got list"]),
    ("track_optimization", "hostile pickle", lambda p: _hostile(p.filtered_tracks, 2, "none"),
     ["{filtered_tracks}", "refusing"]),
    ("track_optimization", "non-finite",
     lambda p: _edit_npz(p.npz, camera2world=_nan_at((4, 2, 3))),
     ["{npz}", "'camera2world'", "non-finite", "frame 4"]),
    ("track_optimization", "wrong shape",
     lambda p: _edit_npz(p.npz, camera2world=lambda a: a[:, :, :3]),
     ["{npz}", "'camera2world' must be [T, 3, 4]"]),
    ("track_optimization", "frame count", lambda p: _edit_npz(
        p.npz, timestamps=lambda a: np.append(a, a[-1] + 33333),
        camera2world=lambda a: np.concatenate([a, a[-1:]])),
     ["frame counts differ", "{npz} timestamps 9", "{left_video} 8"]),
    ("track_optimization", "vid", lambda p: [f"--vid={p.npz_folder / VID}"],
     ["--vid", str(Path("npz") / VID)]),
    ("track_optimization", "flag", lambda p: ["--hfov=-5"], ["--hfov", "got -5"]),
    # evaluate
    ("evaluate", "missing", lambda p: p.gt.unlink(), ["no ground truth", "{gt}"]),
    ("evaluate", "nothing to score", lambda p: shutil.rmtree(p.clip_dir),
     ["nothing to score", VID]),
    ("evaluate", "truncated", lambda p: _truncate(p.export_npz), ["{export_npz}"]),
    ("evaluate", "wrong type", lambda p: save_pickle(3.5, p.flows_stereo),
     ["{flows_stereo}", "expected a list", "got float"]),
    ("evaluate", "hostile pickle", lambda p: _hostile(p.filtered_tracks, 3, "list"),
     ["{filtered_tracks}", "refusing"]),
    ("evaluate", "non-finite", lambda p: _edit_npz(
        p.export_npz, track_coordinates=_nan_at((0, 1))),
     ["{export_npz}", "'track_coordinates'", "non-finite"]),
    ("evaluate", "wrong shape", lambda p: _edit_npz(
        p.export_npz, track_lengths=lambda a: a + 1),
     ["{export_npz}", "track counts disagree"]),
    ("evaluate", "vid", lambda p: ["--vid=.."], ["--vid", "'..'"]),
    ("evaluate", "flag", lambda p: ["--hfov=200"], ["--hfov", "200"]),
]


def _case_id(case) -> str:
    return f"{case[0]}-{case[1].replace(' ', '_')}"


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_bad_input_is_refused_and_nothing_changes(baseline, tmp_path, case):
    stage, kind, spoil, fragments = case
    root = tmp_path / "data"
    shutil.copytree(baseline, root)
    paths = _paths(root)
    extra = spoil(paths)
    extra = extra if isinstance(extra, list) else []  # a spoiler may return flags to add
    before = _hashes(root)
    args = _args(stage, paths)
    overrides = {a.split("=")[0] for a in extra}
    args = [a for a in args if a.split("=")[0] not in overrides] + extra
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "JAX_PLATFORMS": "cpu",
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, str(REPO_ROOT / f"{stage}.py"), *args],
                            check=False, capture_output=True, text=True, env=env, cwd=tmp_path,
                            timeout=300)
    err = result.stderr
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert result.returncode == 2, f"{stage} {kind}: exit {result.returncode}\n{err}"
    assert len(errors) == 1 and "Traceback" not in err, err
    names = {k: getattr(paths, k).name for k in (
        "npz", "raw_video", "gt", "left_video", "right_video", "flows_stereo", "tracks_2d",
        "filtered_tracks", "export_npz")}
    for fragment in fragments:
        assert fragment.format(**names) in errors[0], (fragment, errors[0])
    assert _hashes(root) == before  # inputs, earlier outputs and completion markers untouched
    assert not (root / "ran").exists()


def test_baseline_is_valid(baseline):
    """The matrix's baseline itself passes every check the matrix spoils."""
    from stereo4d.io import load_dataset_npz, load_stereo_flows
    from stereo4d.tracks import Tracks2D

    paths = _paths(baseline)
    assert len(load_dataset_npz(paths.npz)["timestamps"]) == NUM_FRAMES
    assert len(load_stereo_flows(paths.flows_stereo)) == NUM_FRAMES
    assert Tracks2D.load(paths.filtered_tracks).num_tracks > 0
    assert np.isfinite(load_dataset_npz(paths.export_npz)["track3d"]).any()
    assert all(paths.provenance(s).is_file()
               for s in ("rectify", "stereo", "tracking", "filtering", "optimization"))


def test_optimiser_refuses_non_finite_output(baseline, tmp_path, monkeypatch):
    """Finding 2: output that is not finite where it claims to be is never written."""
    from stereo4d import track_3d
    from stereo4d.stages import optimization
    from stereo4d.track_opt import optimize_tracks

    root = tmp_path / "data"
    shutil.copytree(baseline, root)
    before = _hashes(root)

    def poisoned(*args, **kwargs):
        result = optimize_tracks(*args, **kwargs)
        result.track3d[result.visible.nonzero()[0][:3], result.visible.nonzero()[1][:3]] = np.nan
        return result

    monkeypatch.setattr(track_3d, "optimize_tracks", poisoned)
    paths = _paths(root)
    # The 3 poisoned points, and whatever gap filling derives from those tracks, are refused.
    with pytest.raises(InputError, match="refusing to write .*points marked visible are not "
                                         "finite") as info:
        optimization.run(optimization.OptimizationConfig(
            VID, str(paths.npz_folder), str(paths.output_folder), write_videos=False))
    assert int(str(info.value).split(": ")[1].split(" of ")[0]) >= 3
    assert _hashes(root) == before
