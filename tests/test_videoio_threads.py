"""Overlapped video I/O of rectify: prefetched decoding and background encoding change nothing
but the timing (same frames in the same order, byte-identical files, errors still raised)."""

from __future__ import annotations

import numpy as np
import pytest

import rectify as rectify_script
from stereo4d import video_threads, videoio
from stereo4d.io import load_dataset_npz
from stereo4d.stages import rectify
from tests.test_rectify import _argv, _make_clip


def _frames(count: int, height: int = 48, width: int = 64) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]


def test_prefetcher_yields_the_same_frames_and_raises_at_the_failing_one():
    frames = _frames(6)
    with video_threads.FramePrefetcher(iter(frames), depth=2) as prefetched:
        got = list(prefetched)
    assert len(got) == 6 and all(a is b for a, b in zip(got, frames, strict=True))

    def broken():
        yield from frames[:3]
        raise ValueError("corrupt frame 3")

    prefetched = video_threads.FramePrefetcher(broken(), depth=1)
    assert [next(prefetched) is f for f in frames[:3]] == [True] * 3
    with pytest.raises(ValueError, match="corrupt frame 3"):
        next(prefetched)
    prefetched.close()


def test_prefetcher_close_stops_a_long_iterator_early():
    closed = []

    def endless():
        try:
            while True:
                yield np.zeros((2, 2, 3), np.uint8)
        finally:
            closed.append(True)

    prefetched = video_threads.FramePrefetcher(endless(), depth=2)
    next(prefetched)
    prefetched.close()
    assert closed == [True]
    # ``limit``: exactly that many frames, then the iterator is closed (no decoding ahead).
    with video_threads.FramePrefetcher(endless(), depth=8, limit=3) as limited:
        assert len(list(limited)) == 3
    assert closed == [True, True]


def test_background_writer_writes_the_same_bytes(tmp_path):
    frames = _frames(5)
    videoio.write_video(tmp_path / "direct.mp4", frames)
    with video_threads.BackgroundVideoWriter(videoio.VideoWriter(tmp_path / "queued.mp4"),
                                       depth=2) as writer:
        for frame in frames:
            writer.append(frame)
    assert writer.num_frames == 5
    assert (tmp_path / "queued.mp4").read_bytes() == (tmp_path / "direct.mp4").read_bytes()


class _FailingWriter(videoio.VideoWriter):
    """A VideoWriter whose third frame fails (as a dead ffmpeg pipe would)."""

    def append(self, frame):
        if self.num_frames == 2:
            raise BrokenPipeError("ffmpeg died")
        super().append(frame)


def test_background_writer_errors_discard_the_file(tmp_path):
    writer = video_threads.BackgroundVideoWriter(_FailingWriter(tmp_path / "bad.mp4"), depth=1)
    with pytest.raises(BrokenPipeError, match="ffmpeg died"):
        for frame in _frames(8):  # raised by a later append, or else by close
            writer.append(frame)
        writer.close()
    writer.close(commit=False)  # the stage's cleanup path: no second error
    assert not (tmp_path / "bad.mp4").exists()
    assert not list(tmp_path.glob("*.tmp*"))
    discarded = video_threads.BackgroundVideoWriter(videoio.VideoWriter(tmp_path / "gone.mp4"))
    discarded.append(_frames(1)[0])
    discarded.close(commit=False)
    assert not (tmp_path / "gone.mp4").exists()


def _psnr_db(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(float) - b.astype(float)) ** 2)))


def test_preset_changes_only_the_encoding(tmp_path):
    """ultrafast (the equirect previews) vs veryfast (the views): other bytes, similar fidelity."""
    y, x = np.mgrid[0:96, 0:128]
    frames = [np.stack([(x * 2 + 5 * t) % 256, (y * 2) % 256, ((x + y + 9 * t) // 2) % 256],
                       -1).astype(np.uint8) for t in range(3)]
    videoio.write_video(tmp_path / "veryfast.mp4", frames)
    with videoio.VideoWriter(tmp_path / "ultrafast.mp4", preset="ultrafast") as writer:
        for frame in frames:
            writer.append(frame)
    assert (tmp_path / "ultrafast.mp4").read_bytes() != (tmp_path / "veryfast.mp4").read_bytes()
    truth = np.stack(frames)
    fast = _psnr_db(videoio.read_video(tmp_path / "ultrafast.mp4"), truth)
    slow = _psnr_db(videoio.read_video(tmp_path / "veryfast.mp4"), truth)
    assert min(fast, slow) >= 30.0 and abs(fast - slow) <= 2.0, (fast, slow)  # measured 34.7, 34.5


def test_overlapped_rectify_writes_what_a_sequential_loop_writes(tmp_path):
    """The stage's views equal, byte for byte, a plain decode -> remap -> encode of the same
    frames; the previews hold the same pixels up to the encoder preset."""
    paths = _make_clip(tmp_path)
    assert rectify_script.main(_argv(paths)) is None
    meta = load_dataset_npz(paths.npz)
    info = videoio.probe_video(paths.raw_video)
    wanted = rectify.frame_indices(meta["timestamps"], info.fps)
    maps = rectify.RectifyMaps.build((info.height, info.width // 2), meta["fov_bounds"],
                                     meta["rectified2rig"], 64, 80, 60.0)
    decoded = list(videoio.iter_video_frames(paths.raw_video))
    views = {eye: [rectify._remap(rectify.split_eyes(decoded[f])[eye], maps.pers_x[eye],
                                  maps.pers_y[eye]) for f in wanted] for eye in (0, 1)}
    for eye, path in ((0, paths.left_video), (1, paths.right_video)):
        videoio.write_video(tmp_path / f"sequential_{eye}.mp4", views[eye])
        assert path.read_bytes() == (tmp_path / f"sequential_{eye}.mp4").read_bytes()
    preview = videoio.read_video(paths.raw_equirect_video).astype(float)
    source = np.stack([decoded[f] for f in wanted]).astype(float)
    assert _psnr_db(preview, source) >= 35.0


ENCODE_SCRIPT = """
import sys
import numpy as np
from stereo4d.videoio import VideoWriter
rng = np.random.default_rng(0)
base = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
with VideoWriter(sys.argv[1]) as writer:
    for t in range(24):
        writer.append(np.roll(base, 3 * t, axis=1))
"""


def test_encoded_bytes_do_not_depend_on_the_cores_a_node_has(tmp_path):
    """x264 takes its default thread count from the CPUs it may use; the pinned thread count
    makes a node with one core and a node with two write the same bytes."""
    import os
    import subprocess
    import sys

    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        pytest.skip("needs a machine with at least 2 cores to compare 1 and 2")
    outputs = []
    for allowed in ([cores[0]], cores[:2]):
        out = tmp_path / f"cores{len(allowed)}.mp4"
        subprocess.run([sys.executable, "-c", ENCODE_SCRIPT, str(out)], check=True,
                       preexec_fn=lambda allowed=allowed: os.sched_setaffinity(0, allowed))
        outputs.append(out.read_bytes())
    assert len(outputs[0]) > 1000 and outputs[0] == outputs[1]
