"""kill -9 at a random moment, then rerun: outputs identical to an uninterrupted run, nothing stray.

Each stage runs as its script in a subprocess (its own session, so its whole process group
can be killed) on a tiny synthetic clip (8 frames, 96x96 views). For each stage:

1. an uninterrupted run gives the reference outputs and the stage's wall time;
2. it is killed with SIGKILL, whole process group, at moments drawn from seeded random
   generators: once after a random delay within its measured wall time, once just after its
   first ffmpeg video writer starts, i.e. while a video is being written;
3. no ffmpeg child (nor any other descendant) outlives the kill: they die with the stage
   (``videoio.start_ffmpeg``). The kernel closes the stage's pipes an instant before it
   signals the children, so a writer of a tiny video sometimes still finishes its temporary
   in that instant; ``tests/test_crash_safety.py`` checks that most are killed unfinished;
4. a rerun succeeds; its outputs are byte-identical to the reference (the provenance JSON
   apart from its ``created`` and ``timings_s`` fields), and the clip folder holds exactly the
   files of the reference run: the killed run's temporaries are gone (``start_stage``).

Byte-identical holds because the stages are deterministic run to run on one machine: x264
gives the same bitstream for the same input and settings, SGBM, DIS and the JAX optimiser
(independent batches, fixed order) give the same numbers (checked here by the comparison
itself). A persistent JAX compilation cache shared by the runs only saves compile time; the
compiled program, hence the result, is the same.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from stereo4d.io import ClipPaths, load_json
from stereo4d.stages import filtering, optimization, rectify, stereo, tracking
from stereo4d.synthetic import SyntheticClipConfig, make_synthetic_clip
from tests.conftest import REPO_ROOT, still_running

VID = "fault_33333"
VIEW_PX = 96
#: Random kills per stage (one more for a stage without video), and the seed of the delays.
RANDOM_KILLS = 1
SEED = 10
#: A stage that writes videos is also killed within this many seconds of its first ffmpeg
#: writer starting: ffmpeg is then still being fed (its start and 8 frames take longer).
MAX_VIDEO_KILL_DELAY_S = 0.02
#: Tries at killing the stage while a writer is still fed: a tiny video can be complete and
#: its pipe closed before the stage is stopped (then the kill proves nothing about writers),
#: so the kill is repeated, with no delay, until one lands while a writer is fed.
VIDEO_KILL_TRIES = 6
#: Seconds the children of a killed stage get to die (PR_SET_PDEATHSIG acts at once).
CHILD_GRACE_S = 5.0
#: Provenance fields that differ between runs by nature.
VOLATILE_FIELDS = ("created", "timings_s")

STAGES = {
    # name: (script, extra flags, module with output_paths)
    "rectify": ("rectify.py", ["--min_equirect_height=0", f"--output_height={VIEW_PX}",
                               f"--output_width={VIEW_PX}"], rectify),
    "stereo": ("inference_raft.py", ["--backend=sgbm"], stereo),
    "tracking": ("tracking.py", ["--backend=dis-flow"], tracking),
    "filtering": ("segmentation.py", ["--backend=classical"], filtering),
    "optimization": ("track_optimization.py", [], optimization),
}


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    root = tmp_path_factory.mktemp("fault")
    paths = ClipPaths(VID, root / "npz", root / "raw", root / "processed", root / "gt")
    make_synthetic_clip(paths, SyntheticClipConfig(num_frames=8, eye_size_px=256,
                                                   gt_size_px=VIEW_PX, num_tracks=50, seed=2))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "JAX_PLATFORMS": "cpu",
           "MPLBACKEND": "Agg", "TF_CPP_MIN_LOG_LEVEL": "3",
           "JAX_COMPILATION_CACHE_DIR": str(root / "jax_cache"),
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    return paths, env, root


def _command(stage: str, paths: ClipPaths) -> list[str]:
    script, flags, _ = STAGES[stage]
    folders = [f"--npz_folder={paths.npz_folder}", f"--output_folder={paths.output_folder}"]
    if stage == "rectify":
        folders.append(f"--raw_video_folder={paths.raw_video_folder}")
    return [sys.executable, str(REPO_ROOT / script), f"--vid={VID}", *folders, *flags]


def _start(stage: str, paths: ClipPaths, env: dict, log) -> subprocess.Popen:
    return subprocess.Popen(_command(stage, paths), cwd=REPO_ROOT, env=env, stdout=log,
                            stderr=log, start_new_session=True)


def _snapshot(paths: ClipPaths) -> dict:
    """Every file of the clip folder -> its content (provenance JSON without volatile fields)."""
    files = {}
    for path in sorted(paths.clip_dir.iterdir()):
        if path.suffix == ".json":
            record = load_json(path)
            files[path.name] = {k: v for k, v in record.items() if k not in VOLATILE_FIELDS}
        else:
            files[path.name] = path.read_bytes()
    return files


def _pipe_ends(pid: int) -> set[str]:
    """``pipe:[inode]`` of every pipe end process ``pid`` holds open."""
    ends = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("pipe:"):
                ends.add(target)
    return ends


def _kill_group(process: subprocess.Popen) -> tuple[list[psutil.Process], set[str]]:
    """SIGKILL to the stage's process group.

    The stage is stopped first, to see which videos its ffmpeg writers were still being fed:
    a writer whose input pipe the stage still holds open has not been told to finish, so after
    the kill it must not finish its file. (One the stage already closed may finish legitimately:
    the kill then fell between ffmpeg's end and the rename.)

    Returns:
      the stage's descendants as they were, and the temporary videos still being fed.
    """
    try:
        os.killpg(process.pid, signal.SIGSTOP)
        stage = psutil.Process(process.pid)
        deadline = time.monotonic() + CHILD_GRACE_S
        while stage.status() not in (psutil.STATUS_STOPPED, psutil.STATUS_ZOMBIE):
            assert time.monotonic() < deadline, "the stage did not stop"
            time.sleep(0.001)
        stage_pipes = _pipe_ends(process.pid)
        descendants = psutil.Process(process.pid).children(recursive=True)
    except (ProcessLookupError, psutil.NoSuchProcess):  # already finished
        stage_pipes, descendants = set(), []
    being_fed = set()
    for child in descendants:
        with contextlib.suppress(OSError, psutil.Error, IndexError):  # IndexError: exited child
            if os.readlink(f"/proc/{child.pid}/fd/0") in stage_pipes:
                being_fed.add(Path(child.cmdline()[-1]).name)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return descendants, being_fed


def _assert_all_died(descendants: list[psutil.Process]) -> None:
    alive = still_running(descendants, CHILD_GRACE_S)
    assert not alive, f"children outlived their stage: {[p.cmdline()[:1] for p in alive]}"


def _wait_for_video_writer(process: subprocess.Popen, timeout_s: float) -> None:
    """Returns once the stage has an ffmpeg child writing a temporary video (or has ended)."""
    deadline = time.monotonic() + timeout_s
    while process.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(psutil.Error):
            # One cmdline() per child: a child that exits in between has an empty one.
            commands = [child.cmdline() for child in psutil.Process(process.pid).children()]
            if any(cmd and cmd[-1].endswith(".tmp.mp4") for cmd in commands):
                return
        time.sleep(0.005)


@pytest.mark.parametrize("stage", list(STAGES))
def test_kill_9_then_rerun_gives_the_uninterrupted_outputs(clip, stage, tmp_path):
    paths, env, _ = clip
    log = open(tmp_path / "log.txt", "wb")  # noqa: SIM115 - shared by the runs, closed below
    for earlier in list(STAGES)[:list(STAGES).index(stage)]:  # inputs, when run on its own (-k)
        if not paths.provenance(earlier).is_file():
            assert _start(earlier, paths, env, log).wait() == 0, (tmp_path / "log.txt").read_text()
    t0 = time.monotonic()
    reference_run = _start(stage, paths, env, log)
    assert reference_run.wait() == 0, (tmp_path / "log.txt").read_text()
    wall_s = time.monotonic() - t0
    reference = _snapshot(paths)
    expected_outputs = {p.name for p in STAGES[stage][2].output_paths(paths)}
    assert expected_outputs & set(reference), "the stage wrote none of its outputs"

    rng = np.random.default_rng([SEED, list(STAGES).index(stage)])
    writes_video = any(name.endswith(".mp4") for name in expected_outputs)
    kills = [("random", rng.uniform(0.1, 1.0) * wall_s)
             for _ in range(RANDOM_KILLS + (0 if writes_video else 1))]
    if writes_video:
        kills.append(("while a video is written", rng.uniform(0.0, MAX_VIDEO_KILL_DELAY_S)))
        kills += [("while a video is written", 0.0)] * (VIDEO_KILL_TRIES - 1)
    stray_before_rerun = []
    killed_while_fed = 0  # temporary videos left by a kill while ffmpeg was being fed
    for how, delay_s in kills:
        if how != "random" and killed_while_fed:
            break  # a kill already hit a writer being fed: the retries are not needed
        process = _start(stage, paths, env, log)
        if how == "random":
            time.sleep(delay_s)
        else:
            _wait_for_video_writer(process, timeout_s=3 * wall_s)
            time.sleep(delay_s)
        descendants, being_fed = _kill_group(process)
        _assert_all_died(descendants)
        leftovers = [p for p in paths.clip_dir.iterdir() if ".tmp" in p.name]
        killed_while_fed += sum(path.name in being_fed for path in leftovers)
        stray_before_rerun += [p.name for p in leftovers]

        rerun = _start(stage, paths, env, log)
        assert rerun.wait() == 0, (tmp_path / "log.txt").read_text()
        after = _snapshot(paths)
        assert sorted(after) == sorted(reference), f"{how} kill after {delay_s:.2f} s: stray files"
        for name, content in reference.items():
            assert after[name] == content, f"{how} kill after {delay_s:.2f} s: {name} differs"
    log.close()
    if writes_video:  # a kill did hit a video being written, and left its temporary to clean
        assert killed_while_fed > 0 and any(n.endswith(".tmp.mp4") for n in stray_before_rerun)
