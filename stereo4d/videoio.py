"""Video reading and writing through imageio-ffmpeg's bundled ffmpeg binary (the background-
thread reader and writer are in ``stereo4d.video_threads``).

Why not mediapy's ``read_video``: it passes ``-vsync`` to ffmpeg, which the
ffmpeg 9 bundled with current imageio-ffmpeg rejects. imageio-ffmpeg's own
reader and writer do not, and need no system ffmpeg. Writers go through
``io.atomic_path``: a killed run leaves no finished-looking video.

The long-lived ffmpeg children (frame readers and writers) are started here, not by
imageio-ffmpeg, so that they die with their stage: on Linux each is started with
``prctl(PR_SET_PDEATHSIG, SIGKILL)``, so a stage killed with ``kill -9`` takes its ffmpeg
children with it instead of leaving them to finish a hidden temporary video. Like
imageio-ffmpeg, each child gets its own process group, so a Ctrl-C in the terminal reaches
the stage (which then discards its outputs) and not ffmpeg.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # typing.Self is Python >= 3.11; annotations are not evaluated
    from typing import Self

from stereo4d.io import InputError, atomic_path
from stereo4d.lifetime import parent_death_hook

__all__ = [
    "DEFAULT_CRF",
    "DEFAULT_FPS",
    "DEFAULT_PRESET",
    "X264_THREADS",
    "VideoInfo",
    "VideoWriter",
    "configure_mediapy",
    "iter_video_frames",
    "probe_video",
    "read_video",
    "start_ffmpeg",
    "write_video",
]

#: Frame rate used when writing pipeline videos (the reference's ``fps=30``).
DEFAULT_FPS = 30.0
#: x264 constant rate factor for pipeline videos (lower = better; 18 is visually lossless).
DEFAULT_CRF = 18
#: x264 speed preset of pipeline videos (faster presets: larger files at the same crf).
DEFAULT_PRESET = "veryfast"
#: x264 encoder threads, fixed: x264's output depends on its thread count, which it would
#: otherwise take from the machine's cores, so nodes with different core counts would write
#: different bytes. Four keeps a 2-core machine busy (as x264's own 1.5 x cores would) and a
#: batch keeps a large node busy with many clips at once rather than many threads per video.
X264_THREADS = 4


@dataclass(frozen=True)
class VideoInfo:
    """Size, frame rate and (estimated) frame count of a video file."""

    width: int
    height: int
    fps: float
    num_frames: int


def _ffmpeg():
    import imageio_ffmpeg

    return imageio_ffmpeg


@contextlib.contextmanager
def _quiet_fork_warning():
    """ffmpeg is started with fork + exec; JAX's at-fork warning does not apply to that."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
        yield


def _child_setup():
    """``preexec_fn`` of ffmpeg children: own process group; on Linux, die with the parent
    (``lifetime.parent_death_hook``: a video opened in a short-lived thread must also be closed
    in it)."""
    die_with_parent = parent_death_hook(os.getpid())

    def setup() -> None:
        os.setpgrp()
        die_with_parent()

    return setup


def start_ffmpeg(args: list[str], **popen_kwargs) -> subprocess.Popen:
    """Starts imageio-ffmpeg's bundled ffmpeg with ``args`` as a child that dies with us.

    Args:
      args: ffmpeg arguments (without the executable).
      popen_kwargs: ``stdin``, ``stdout``, ``stderr`` as for ``subprocess.Popen``.
    """
    cmd = [_ffmpeg().get_ffmpeg_exe(), *args]
    if os.name != "posix":  # pragma: no cover - no preexec_fn outside POSIX
        return subprocess.Popen(cmd, **popen_kwargs)
    with _quiet_fork_warning():
        # The child runs only setpgrp and an already resolved prctl before exec.
        return subprocess.Popen(cmd, preexec_fn=_child_setup(), **popen_kwargs)  # noqa: PLW1509


def configure_mediapy() -> None:
    """Points mediapy (used in notebooks to *show* videos) at imageio-ffmpeg's bundled binary."""
    import mediapy

    mediapy.set_ffmpeg(_ffmpeg().get_ffmpeg_exe())


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Reads the header of ``path``. Raises InputError when missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"missing video: {path}")
    try:
        gen = _ffmpeg().read_frames(str(path), pix_fmt="rgb24")
        with _quiet_fork_warning():
            meta = next(gen)
        gen.close()
    except Exception as exc:
        raise InputError(f"unreadable video {path}: {exc}") from exc
    width, height = (int(v) for v in meta["size"])
    fps = float(meta.get("fps") or 0.0)
    duration = float(meta.get("duration") or 0.0)
    return VideoInfo(width, height, fps, round(duration * fps))


def iter_video_frames(path: str | os.PathLike, start_frame: int = 0,
                      info: VideoInfo | None = None) -> Iterator[np.ndarray]:
    """Decodes ``path`` sequentially from frame ``start_frame``. Yields uint8 [H, W, 3] RGB.

    A non-zero ``start_frame`` uses ffmpeg's accurate input seek (to half a frame
    before it), so the first frame yielded is frame ``start_frame`` of a
    constant-frame-rate video without decoding the ones before its keyframe.
    ``info``: the file's ``probe_video`` result when the caller has it (saves starting
    ffmpeg once more).
    """
    path = Path(path)
    info = info if info is not None else probe_video(path)
    frame_bytes = info.width * info.height * 3
    input_params = []
    if start_frame > 0 and info.fps > 0:
        input_params = ["-ss", f"{(start_frame - 0.5) / info.fps:.6f}"]
    args = ["-nostdin", "-v", "error", *input_params, "-i", str(path), "-pix_fmt", "rgb24",
            "-vcodec", "rawvideo", "-f", "image2pipe", "-"]
    # ffmpeg's messages go to a file, not a pipe: a pipe nobody drains could block it.
    with tempfile.TemporaryFile() as log:
        process = start_ffmpeg(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log)
        try:
            while True:
                buf = process.stdout.read(frame_bytes)
                if not buf:
                    break
                if len(buf) != frame_bytes:
                    raise InputError(f"truncated frame in {path}")
                yield np.frombuffer(buf, dtype=np.uint8).reshape(info.height, info.width, 3)
            if process.wait() != 0:
                log.seek(0)
                message = log.read().decode(errors="replace").strip().splitlines()
                raise InputError(f"error decoding {path}: "
                                 f"{message[-1] if message else f'ffmpeg exit {process.returncode}'}")
        finally:
            process.stdout.close()
            if process.poll() is None:  # stopped early (generator closed): no need to finish
                process.kill()
            process.wait()


def read_video(path: str | os.PathLike) -> np.ndarray:
    """All frames of ``path``: uint8 [T, H, W, 3] RGB. Raises InputError if empty."""
    frames = list(iter_video_frames(path))
    if not frames:
        raise InputError(f"video has no frames: {path}")
    return np.stack(frames)


class VideoWriter:
    """Streams RGB frames to an H.264 mp4; the file appears only when ``close(commit=True)``.

    Use as a context manager: leaving the block normally commits (renames the
    temporary file onto ``path``), an exception discards it.

    Args:
      path: output ``.mp4``.
      fps: frame rate; crf: x264 quality (lower is better);
      chroma_444: keep full colour resolution (yuv444p) instead of yuv420p;
      preset: x264 speed preset (``ultrafast`` ... ``veryslow``): only the file size and the
        encoding time change at a given crf, slightly the quality.
    """

    def __init__(self, path: str | os.PathLike, fps: float = DEFAULT_FPS, crf: int = DEFAULT_CRF,
                 chroma_444: bool = False, preset: str = DEFAULT_PRESET):
        self.path = Path(path)
        self.fps, self.crf, self.chroma_444, self.preset = fps, crf, chroma_444, preset
        self._ctx = None
        self._tmp: Path | None = None
        self._writer = None
        self.num_frames = 0

    def _open(self, height: int, width: int):
        self._ctx = atomic_path(self.path)
        self._tmp = self._ctx.__enter__()
        odd = width % 2 or height % 2
        fps = str(Fraction(self.fps).limit_denominator())
        self._writer = start_ffmpeg(
            ["-y", "-f", "rawvideo", "-vcodec", "rawvideo", "-s", f"{width}x{height}",
             "-pix_fmt", "rgb24", "-r", fps, "-i", "-", "-an", "-vcodec", "libx264",
             "-pix_fmt", "yuv444p" if (self.chroma_444 or odd) else "yuv420p",
             "-v", "error", "-crf", str(self.crf), "-preset", self.preset,
             "-threads", str(X264_THREADS), str(self._tmp)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)

    def append(self, frame: np.ndarray) -> None:
        """Adds one uint8 [H, W, 3] RGB frame (all frames must share one size)."""
        if self._writer is None:
            self._open(*frame.shape[:2])
        try:
            self._writer.stdin.write(np.ascontiguousarray(frame, dtype=np.uint8).tobytes())
        except BrokenPipeError as exc:
            raise OSError(f"ffmpeg stopped while writing {self.path} "
                          f"(exit {self._writer.wait()})") from exc
        self.num_frames += 1

    def close(self, commit: bool = True) -> None:
        failed_exit = None
        if self._writer is not None:
            writer, self._writer = self._writer, None
            with contextlib.suppress(BrokenPipeError):
                writer.stdin.close()
            if not commit:  # discarded anyway: no need to let the encoder finish
                writer.kill()
            if writer.wait() != 0 and commit:
                failed_exit = writer.returncode
        if self._ctx is not None:
            ctx, self._ctx = self._ctx, None
            if commit and self.num_frames and failed_exit is None:
                ctx.__exit__(None, None, None)
            else:
                ctx.__exit__(RuntimeError, RuntimeError("discarded"), None)
        if failed_exit is not None:
            raise OSError(f"ffmpeg failed writing {self.path} (exit {failed_exit})")
        if commit and not self.num_frames:
            raise ValueError(f"no frames were written to {self.path}")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(commit=exc_type is None)


def write_video(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    fps: float = DEFAULT_FPS,
    crf: int = DEFAULT_CRF,
    chroma_444: bool = False,
) -> Path:
    """Writes RGB frames (uint8 [H, W, 3] each) as H.264 mp4, atomically.

    ``frames`` may be a generator: frames are streamed to ffmpeg. ``chroma_444``
    keeps full colour resolution (used for the synthetic raw clip).
    """
    with VideoWriter(path, fps=fps, crf=crf, chroma_444=chroma_444) as writer:
        for frame in frames:
            writer.append(frame)
    return Path(path)
