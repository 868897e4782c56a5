"""Batch runner: a real local Ray instance and the local pool on tiny synthetic clips.

One Ray session for the module. The Ray batch and the local batch (killed with SIGKILL
halfway, then rerun) run the same three clips, one with a corrupt npz; their outputs must be
byte-identical (the stages are deterministic run to run: x264 with the same thread count,
SGBM/DIS, XLA on CPU), except the provenance JSONs, which hold wall-clock times and the
output folder and are compared without those. The scheduler's retry and isolation rules are
also checked on a fake executor (no processes).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from stereo4d.batch.plan import BatchPlan, parse_stage_args, read_vid_list
from stereo4d.batch.runner import run_batch
from stereo4d.batch.task import error_line
from stereo4d.commands import batch_run
from stereo4d.io import ClipPaths, InputError
from stereo4d.pipeline import clip_complete, pipeline_stages, stage_dependencies
from tests.conftest import REPO_ROOT, still_running

GOOD = ("syn0_100", "syn1_200")
BAD = "broken_300"  # corrupt npz, video present
#: The tiniest clips the stages accept: 8 frames, 128 px eyes, 64x80 rectified views.
STAGE_ARGS = ("rectify:--min_equirect_height=0 --output_height=64 --output_width=80",
              "stereo:--backend=sgbm", "tracking:--backend=dis-flow",
              "filtering:--backend=classical")
#: Provenance keys that differ run to run or folder to folder by design.
VOLATILE_KEYS = ("created", "timings_s")
#: Seconds allowed for the killed batch to reach its first stage marker.
KILL_WAIT_S = 300.0
#: Seconds a killed driver's own Ray instance (GCS, raylet, workers, stage children) gets to
#: go away: they share the driver's fate (parent-death signal, pipes) and exit at once.
RAY_CORE_GRACE_S = 15.0
#: Seconds Ray's two per-node agents (dashboard and runtime-env agents) get: they notice the
#: raylet's death at once but first try to report it to the (dead) GCS, which Ray gives up
#: after a fixed 60 s (``publish_error_to_driver``), then exit.
RAY_AGENT_GRACE_S = 90.0
#: Ray's per-node agent processes (their process names).
RAY_AGENT_NAMES = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from stereo4d.synthetic import SyntheticClipConfig, make_synthetic_clip

    root = tmp_path_factory.mktemp("batch")
    folders = {k: root / k for k in ("npz", "raw", "gt")}
    for seed, vid in enumerate(GOOD, start=1):
        make_synthetic_clip(ClipPaths(vid, folders["npz"], folders["raw"], root / "out", folders["gt"]),
                            # 8 frames, 128 px eyes: the least that leaves the optimiser
                            # (5-frame erosion) points to keep; fewer is refused (exit 2).
                            SyntheticClipConfig(num_frames=8, eye_size_px=128, seed=seed,
                                                gt_size_px=64, num_tracks=64))
    (folders["raw"] / "broken.mp4").write_bytes((folders["raw"] / "syn0.mp4").read_bytes())
    (folders["npz"] / f"{BAD}.npz").write_bytes(b"PK\x03\x04 truncated")
    vids = root / "vids.txt"
    vids.write_text(f"# tiny clips\n{GOOD[0]}\n{BAD}   # corrupt npz\n\n{GOOD[1]}\n{GOOD[0]}\n")
    return root


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO_ROOT)}})
    yield ray
    ray.shutdown()


def batch_argv(root: Path, out: str, *extra: str) -> list[str]:
    argv = [f"--vids={root / 'vids.txt'}", f"--npz_folder={root / 'npz'}",
            f"--raw_video_folder={root / 'raw'}", f"--output_folder={root / out}", "--quiet"]
    for item in STAGE_ARGS:
        argv += ["--stage_args", item]
    return argv + list(extra)


def report(root: Path, out: str) -> dict:
    return json.loads((root / out / "_batch" / "report.json").read_text())


def records(root: Path, out: str) -> list[dict]:
    lines = (root / out / "_batch" / "records.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def clip_files(folder: Path) -> dict[str, Path]:
    """Finished files of a clip folder (atomic writers' hidden temporaries left out)."""
    return {p.name: p for p in sorted(folder.iterdir()) if not p.name.startswith(".")}


def stable_provenance(path: Path, out_root: Path) -> dict:
    record = json.loads(path.read_text().replace(str(out_root), "<out>"))
    return {k: v for k, v in record.items() if k not in VOLATILE_KEYS}


@pytest.fixture(scope="module")
def ray_batch(dataset, ray_session):
    status = batch_run.main(batch_argv(dataset, "out_ray", "--executor=ray"))
    return status, report(dataset, "out_ray")


def test_ray_batch_isolates_the_broken_clip(ray_batch, dataset):
    status, rep = ray_batch
    assert status == 1  # one clip failed
    clips = {c["clip"]: c for c in rep["clips"]}
    assert list(clips) == [GOOD[0], BAD, GOOD[1]]  # file order, repeat dropped
    assert [clips[v]["status"] for v in GOOD] == ["ok", "ok"]
    assert clips[BAD]["status"] == "failed" and clips[BAD]["failed_stage"] == "rectify"
    assert clips[BAD]["error"].startswith(f"cannot read npz {dataset / 'npz' / BAD}.npz")
    assert [s["status"] for s in clips[BAD]["stages"]] == ["failed"] + ["not run"] * 4
    assert clips[BAD]["stages"][0]["attempt"] == 1  # bad input (exit 2) is not retried
    for vid in GOOD:
        stages = clips[vid]["stages"]
        assert [s["backend"] for s in stages] == ["opencv-remap", "sgbm", "dis-flow", "classical",
                                                  "jax-adam"]
        assert all(s["status"] == "ok" and s["peak_mem_mb"] > 10 for s in stages)
        assert all(s["worker_pid"] != os.getpid() for s in stages)  # ran in Ray workers
        assert ClipPaths(vid, output_folder=dataset / "out_ray").export_npz.is_file()
    assert rep["totals"]["ok"] == 2 and rep["totals"]["failed"] == 1
    assert set(rep["totals"]["seconds_per_stage"]) == {"rectify", "stereo", "tracking",
                                                       "filtering", "optimization"}
    assert len(rep["table"]) == 15
    assert sorted(r["clip"] for r in records(dataset, "out_ray")) == sorted(clips)


def test_local_batch_killed_and_rerun_matches_ray(ray_batch, dataset):
    out = dataset / "out_local"
    cmd = [sys.executable, str(REPO_ROOT / "batch_run.py"), "--workers=2",
           *batch_argv(dataset, "out_local")]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = ClipPaths(GOOD[0], output_folder=out).provenance("stereo")
    deadline = time.monotonic() + KILL_WAIT_S
    while not marker.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the batch finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not ClipPaths(GOOD[1], output_folder=out).provenance("optimization").is_file()

    assert batch_run.main([*batch_argv(dataset, "out_local"), "--workers=2"]) == 1
    rerun = {c["clip"]: c for c in report(dataset, "out_local")["clips"]}
    assert [rerun[v]["status"] for v in GOOD] == ["ok", "ok"]
    first = {s["stage"]: s["status"] for s in rerun[GOOD[0]]["stages"]}
    assert first["rectify"] == first["stereo"] == "skipped"  # done before the kill
    assert first["optimization"] == "ok"
    assert rerun[BAD]["failed_stage"] == "rectify"

    for vid in GOOD:  # local pool == Ray, killed-and-resumed == uninterrupted
        ray_files = clip_files(dataset / "out_ray" / vid)
        local_files = clip_files(out / vid)
        assert sorted(ray_files) == sorted(local_files)
        for name, path in ray_files.items():
            if name.endswith(".json"):
                assert (stable_provenance(path, dataset / "out_ray")
                        == stable_provenance(local_files[name], out)), name
            else:
                assert path.read_bytes() == local_files[name].read_bytes(), name


def test_ray_batch_driver_killed_leaves_no_process_behind(dataset):
    """A batch that started its own Ray instance is killed -9 while a stage task runs: every
    process of that instance (GCS, raylet, workers, the stage's child) must exit by itself.
    (Resuming after a kill is checked with the local pool above.)"""
    psutil = pytest.importorskip("psutil")
    cmd = [sys.executable, str(REPO_ROOT / "batch_run.py"), "--executor=ray", "--num_cpus=2",
           *batch_argv(dataset, "out_ray_killed")]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "RAY_ADDRESS": ""}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    driver = psutil.Process(proc.pid)
    deadline = time.monotonic() + KILL_WAIT_S
    stage_child = None
    while stage_child is None and proc.poll() is None and time.monotonic() < deadline:
        for child in driver.children(recursive=True):
            try:
                if "stereo4d.batch.child" in " ".join(child.cmdline()):
                    stage_child = child
            except psutil.Error:
                continue
        time.sleep(0.05)
    assert stage_child is not None, "no stage task started under the batch's own Ray instance"
    family = driver.children(recursive=True)
    names = {p.name() for p in family if p.is_running()}
    assert any("raylet" in n for n in names), names  # the batch's own instance, not the test's
    agents = [p for p in family if p.name() in RAY_AGENT_NAMES]
    core = [p for p in family if p not in agents]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for group, grace_s in ((core, RAY_CORE_GRACE_S), (agents, RAY_AGENT_GRACE_S)):
        alive = still_running(group, grace_s, poll_s=0.2)
        assert not alive, f"outlived the killed batch by {grace_s} s: {[p.name() for p in alive]}"


def test_rerun_skips_everything_and_keep_final_drops_intermediates(ray_batch, dataset):
    out = "out_ray"
    paths = ClipPaths(GOOD[1], output_folder=dataset / out)
    mtimes = {p.name: p.stat().st_mtime_ns for p in clip_files(paths.clip_dir).values()}
    assert batch_run.main(batch_argv(dataset, out, "--keep=final")) == 1
    clips = {c["clip"]: c for c in report(dataset, out)["clips"]}
    for vid in GOOD:
        assert clips[vid]["status"] == "ok" and clips[vid]["stages_run"] == 0
        assert clips[vid]["dropped_mb"] > 0
    assert all(not p.exists() for p in paths.intermediates())
    assert all(p.is_file() for p in paths.finals())
    kept = {p.name: p.stat().st_mtime_ns for p in clip_files(paths.clip_dir).values()}
    assert kept == {k: v for k, v in mtimes.items() if k in kept}  # nothing rewritten
    with np.load(paths.export_npz) as z:
        assert z["track_coordinates"].shape[1] == 3 and np.isfinite(z["track_coordinates"]).all()
    # Intermediates gone, finals fresh: the clip stays done.
    assert batch_run.main(batch_argv(dataset, out)) == 1
    clips = {c["clip"]: c for c in report(dataset, out)["clips"]}
    assert [clips[v]["stages_run"] for v in GOOD] == [0, 0]
    # A newer input makes the clip stale again.
    clip = ClipPaths(GOOD[1], dataset / "npz", dataset / "raw", dataset / out)
    assert clip_complete(clip)
    stat = clip.npz.stat()
    os.utime(clip.npz, ns=(stat.st_atime_ns, time.time_ns() + 10**9))
    try:
        assert not clip_complete(clip)
    finally:
        os.utime(clip.npz, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_bad_inputs_are_recorded_with_the_stage_error(dataset, tmp_path):
    npz, raw = tmp_path / "npz", tmp_path / "raw"
    npz.mkdir()
    raw.mkdir()
    with np.load(dataset / "npz" / f"{GOOD[0]}.npz") as z:
        meta = dict(z)
    meta["camera2world"][2, 0, 3] = np.nan
    np.savez(npz / "nanpose_400.npz", **meta)
    (raw / "nanpose.mp4").write_bytes((dataset / "raw" / "syn0.mp4").read_bytes())
    (npz / "novideo_500.npz").write_bytes((dataset / "npz" / f"{GOOD[0]}.npz").read_bytes())
    vids = tmp_path / "vids.txt"
    vids.write_text("nanpose_400\nnovideo_500\n")
    argv = [f"--vids={vids}", f"--npz_folder={npz}", f"--raw_video_folder={raw}",
            f"--output_folder={tmp_path / 'out'}", "--stages=rectify", "--workers=2", "--quiet",
            "--retries=2", "--stage_args", STAGE_ARGS[0]]
    assert batch_run.main(argv) == 1
    clips = {c["clip"]: c for c in report(tmp_path, "out")["clips"]}
    assert clips["nanpose_400"]["error"] == (f"npz {npz / 'nanpose_400.npz'}: 'camera2world' "
                                             "has non-finite values (frame 2)")
    assert str(raw / "novideo.mp4") in clips["novideo_500"]["error"]
    for clip in clips.values():
        assert clip["failed_stage"] == "rectify" and clip["stages"][0]["attempt"] == 1
        assert clip["stages"][0]["exit_code"] == 2


class FakeExecutor:
    """Runs nothing: answers each task with ``outcome(task)`` (a transient or permanent failure)."""

    capacity = 2

    def __init__(self, outcome):
        self.outcome, self.submitted, self.in_flight, self._n = outcome, [], [], 0

    def submit(self, task):
        self._n += 1
        self.submitted.append(task)
        return self._n

    def wait(self, handles, timeout_s):
        self.in_flight.append({(t.vid, t.stage) for t in handles.values()})
        handle = min(handles)
        task = handles[handle]
        status, permanent, error = self.outcome(task)
        return [(handle, {"vid": task.vid, "stage": task.stage, "attempt": task.attempt,
                          "status": status, "permanent": permanent, "seconds": 1.0,
                          "peak_mem_mb": 50.0, "backend": None, "error": error})]


class ListReporter:
    def __init__(self):
        self.records, self.notes = [], []

    def clip_finished(self, record):
        self.records.append(record)

    def note(self, message):
        self.notes.append(message)


def fake_plan(tmp_path, vids):
    return BatchPlan(vids=list(vids), stages=pipeline_stages(), npz_folder=tmp_path / "npz",
                     raw_video_folder=tmp_path / "raw", output_folder=tmp_path / "out",
                     log_dir=tmp_path / "logs")


def test_scheduler_retries_transient_failures_only(tmp_path):
    def outcome(task):
        if task.vid == "flaky_1" and task.stage == "stereo" and task.attempt == 1:
            return "failed", False, "killed by SIGKILL"
        if task.vid == "bad_2" and task.stage == "tracking":
            return "failed", True, "left video has no frames"
        return "ok", False, None

    executor, reporter = FakeExecutor(outcome), ListReporter()
    out = {r["clip"]: r for r in run_batch(fake_plan(tmp_path, ["flaky_1", "bad_2", "x_y"]),
                                           executor, reporter, retries=1)}
    assert out["flaky_1"]["status"] == "ok"
    stereo = next(s for s in out["flaky_1"]["stages"] if s["stage"] == "stereo")
    assert stereo["attempt"] == 2 and len(reporter.notes) == 1
    bad = out["bad_2"]
    assert bad["status"] == "failed" and bad["failed_stage"] == "tracking"
    assert [s["status"] for s in bad["stages"]] == ["ok", "ok", "failed", "not run", "not run"]
    assert sum(t.vid == "bad_2" and t.stage == "tracking" for t in executor.submitted) == 1
    assert out["x_y"]["failed_stage"] == "plan" and "timestamp" in out["x_y"]["error"]
    assert reporter.records[0]["clip"] == "x_y"  # settled while planning
    assert len(reporter.records) == 3
    assert any({("flaky_1", "stereo"), ("flaky_1", "tracking")} <= f for f in executor.in_flight)


def test_stage_table_lets_stereo_and_tracking_run_side_by_side():
    deps = stage_dependencies(pipeline_stages(), ClipPaths("a_1"))
    assert deps == {"rectify": set(), "stereo": {"rectify"}, "tracking": {"rectify"},
                    "filtering": {"rectify", "stereo", "tracking"},
                    "optimization": {"rectify", "stereo", "filtering"}}


def test_camera_stage_zero_for_videos_without_an_npz(tmp_path):
    """--stages=cameras,...: raw videos without an npz join as <video_id>_0 and get stage 0;
    a released npz (no camera marker) counts as done and is never overwritten."""
    from stereo4d.batch.plan import discover_vids
    from stereo4d.pipeline import CAMERA_STAGE, stage_fresh

    npz_dir, raw_dir, out_dir = tmp_path / "npz", tmp_path / "raw", tmp_path / "out"
    npz_dir.mkdir()
    raw_dir.mkdir()
    for name in ("released.mp4", "newvideo.mp4"):
        (raw_dir / name).write_bytes(b"video")
    (npz_dir / "released_500.npz").write_bytes(b"npz")
    assert discover_vids(npz_dir, raw_dir) == (["released_500"], [])
    vids, _ = discover_vids(npz_dir, raw_dir, new_videos=True)
    assert vids == ["released_500", "newvideo_0"]

    stages = BatchPlan.select_stages([CAMERA_STAGE, "rectify", "stereo"])
    assert [s.name for s in stages] == [CAMERA_STAGE, "rectify", "stereo"]
    plan = BatchPlan(vids=vids, stages=stages, npz_folder=npz_dir, raw_video_folder=raw_dir,
                     output_folder=out_dir, log_dir=tmp_path / "logs")
    released, new = plan.paths("released_500"), plan.paths("newvideo_0")
    assert stage_fresh(released, stages[0])          # a released npz: stage 0 not needed
    assert not stage_fresh(new, stages[0])           # no npz yet: stage 0 runs
    assert stage_dependencies(stages, new)["rectify"] == {CAMERA_STAGE}
    task = plan.task("newvideo_0", stages[0])
    assert task.command == "stereo4d.commands.estimate_cameras"
    assert f"--raw_video_folder={raw_dir}" in task.argv and "--vid=newvideo_0" in task.argv
    # Once stage 0 wrote the npz (its marker newer than the video), it is fresh as any stage.
    new.npz.write_bytes(b"npz")
    new.provenance(CAMERA_STAGE).parent.mkdir(parents=True)
    new.provenance(CAMERA_STAGE).write_text("{}")
    assert stage_fresh(new, stages[0])


def test_flag_parsing(tmp_path):
    parsed = parse_stage_args(["rectify:--output_height=96 --min_equirect_height=0",
                               "rectify: --skip_equirect_videos", "stereo:--backend sgbm"])
    assert parsed["rectify"] == ["--output_height=96", "--min_equirect_height=0",
                                 "--skip_equirect_videos"]
    assert parsed["stereo"] == ["--backend", "sgbm"] and parsed["tracking"] == []
    with pytest.raises(InputError, match="<stage>:<flags>"):
        parse_stage_args(["segmentation:--hfov=60"])
    listing = tmp_path / "vids.txt"
    listing.write_text("a_1\n# b_2\n c_3  # note\n\na_1\n")
    assert read_vid_list(listing) == ["a_1", "c_3"]
    assert error_line("progress\nerror: missing npz: x.npz\n", 2) == "missing npz: x.npz"
    assert error_line("Traceback\n  ...\nValueError: boom\n", 1) == "ValueError: boom"
    assert error_line("", -9) == "killed by SIGKILL"


def test_batch_command_entry_points():
    import importlib

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    script = importlib.import_module("batch_run")
    assert script.main is batch_run.main
    assert len((REPO_ROOT / "batch_run.py").read_text().splitlines()) <= 30
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["stereo4d-batch"] == "stereo4d.commands.batch_run:cli"
    assert batch_run.run_cli_status(lambda argv: 1) == 1  # clips failed: status kept
    assert batch_run.run_cli_status(batch_run.main, ["--stages=nope"]) == 2  # bad flags
