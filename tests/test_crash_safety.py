"""What a crash leaves: stale temporaries are found and removed, ffmpeg children die with the stage."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psutil

from stereo4d.io import ClipPaths, atomic_path, remove_stale_temporaries
from stereo4d.stages.common import start_stage
from tests.conftest import REPO_ROOT


def _stale_temporary(target: Path) -> Path:
    """A temporary named as ``atomic_path`` names them, whose writer is gone."""
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.",
                                suffix=f".tmp{target.suffix}")
    os.close(fd)
    return Path(name)


def test_only_stale_temporaries_of_the_given_outputs_are_removed(tmp_path):
    video, pickle_, other = tmp_path / "c-left.mp4", tmp_path / "c-flows.pkl", tmp_path / "c.npz"
    stale = [_stale_temporary(video), _stale_temporary(video), _stale_temporary(pickle_)]
    kept = [
        _stale_temporary(other),                        # another stage's output
        _stale_temporary(tmp_path / "c-left-2.mp4"),    # a name that starts like ours
        tmp_path / ".c-left.abc.tmp.pkl",               # our stem, another extension
        tmp_path / "c-left.mp4.tmp.mp4",                # not hidden: not ours
    ]
    for path in kept[2:]:
        path.write_bytes(b"x")
    with atomic_path(video) as live:  # a writer still running: its lock is held
        live.write_bytes(b"being written")
        removed = remove_stale_temporaries([video, pickle_])
        assert sorted(removed) == sorted(stale)
        assert live.is_file()
    assert video.read_bytes() == b"being written"
    assert all(path.is_file() for path in kept)
    assert not any(path.exists() for path in stale)
    assert remove_stale_temporaries([tmp_path / "missing" / "x.mp4"]) == []


def test_start_stage_removes_the_temporaries_of_outputs_and_marker_only(tmp_path):
    paths = ClipPaths("c_1", output_folder=tmp_path)
    marker, output = paths.provenance("tracking"), paths.tracks_2d
    marker.parent.mkdir(parents=True)
    marker.write_text("{}")  # an earlier complete run: stays until outputs change
    stale = [_stale_temporary(marker), _stale_temporary(output)]
    other = _stale_temporary(paths.filtered_tracks)  # another stage's: left alone
    assert sorted(start_stage(paths, "tracking")) == sorted(stale)
    assert marker.read_text() == "{}" and other.exists()


WRITER_SCRIPT = textwrap.dedent("""
    import sys, time
    import numpy as np
    import psutil
    from stereo4d.videoio import VideoWriter

    writer = VideoWriter(sys.argv[1])
    for level in range(0, 240, 30):
        writer.append(np.full((32, 32, 3), level, np.uint8))
    print(" ".join(str(c.pid) for c in psutil.Process().children()), flush=True)
    time.sleep(60)
""")
#: Writers killed in the test below. When the parent dies the kernel closes its end of the
#: pipe an instant before it signals the child, and ffmpeg sometimes finishes a tiny video in
#: that instant (3 of 10 here); an orphan that is not killed always finishes it.
KILLED_WRITERS = 8
#: The mp4 index box, which ffmpeg writes when it finishes a video (at the end of the file).
MP4_INDEX_BOX = b"moov"


def test_ffmpeg_writers_die_with_a_killed_parent(tmp_path):
    unfinished = 0
    for attempt in range(KILLED_WRITERS):
        target = tmp_path / f"v{attempt}.mp4"
        process = subprocess.Popen([sys.executable, "-c", WRITER_SCRIPT, str(target)],
                                   stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT,
                                   env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
        children = [psutil.Process(int(pid)) for pid in process.stdout.readline().split()]
        assert children and all("ffmpeg" in c.name() for c in children)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        process.stdout.close()
        deadline = time.monotonic() + 5.0
        while any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children):
            assert time.monotonic() < deadline, "ffmpeg outlived its parent"
            time.sleep(0.02)
        temporaries = [p for p in tmp_path.iterdir() if p.name.startswith(f".v{attempt}.")]
        assert not target.exists() and len(temporaries) == 1
        unfinished += MP4_INDEX_BOX not in temporaries[0].read_bytes()
        assert remove_stale_temporaries([target]) == temporaries
    assert unfinished > 0, "every orphaned ffmpeg finished its video: it was not killed"
