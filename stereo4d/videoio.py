"""Video reading and writing through imageio-ffmpeg's bundled ffmpeg binary.

Why not mediapy's ``read_video``: it passes ``-vsync`` to ffmpeg, which the
ffmpeg 9 bundled with current imageio-ffmpeg rejects. imageio-ffmpeg's own
reader and writer do not, and need no system ffmpeg. Writers go through
``io.atomic_path``: a killed run leaves no finished-looking video.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from stereo4d.io import InputError, atomic_path

__all__ = ["VideoInfo", "probe_video", "iter_video_frames", "read_video", "write_video",
           "DEFAULT_FPS", "DEFAULT_CRF"]

#: Frame rate used when writing pipeline videos (the reference's ``fps=30``).
DEFAULT_FPS = 30.0
#: x264 constant rate factor for pipeline videos (lower = better; 18 is visually lossless).
DEFAULT_CRF = 18


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


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Reads the header of ``path``. Raises InputError when missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"missing video: {path}")
    try:
        gen = _ffmpeg().read_frames(str(path), pix_fmt="rgb24")
        meta = next(gen)
        gen.close()
    except Exception as exc:
        raise InputError(f"unreadable video {path}: {exc}") from exc
    width, height = (int(v) for v in meta["size"])
    fps = float(meta.get("fps") or 0.0)
    duration = float(meta.get("duration") or 0.0)
    return VideoInfo(width, height, fps, int(round(duration * fps)))


def iter_video_frames(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """Decodes ``path`` sequentially. Yields uint8 [H, W, 3] RGB frames."""
    path = Path(path)
    info = probe_video(path)
    frame_bytes = info.width * info.height * 3
    try:
        gen = _ffmpeg().read_frames(str(path), pix_fmt="rgb24")
        next(gen)
        for buf in gen:
            if len(buf) != frame_bytes:
                raise InputError(f"truncated frame in {path}")
            yield np.frombuffer(buf, dtype=np.uint8).reshape(info.height, info.width, 3)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"error decoding {path}: {exc}") from exc


def read_video(path: str | os.PathLike) -> np.ndarray:
    """All frames of ``path``: uint8 [T, H, W, 3] RGB. Raises InputError if empty."""
    frames = list(iter_video_frames(path))
    if not frames:
        raise InputError(f"video has no frames: {path}")
    return np.stack(frames)


def write_video(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    fps: float = DEFAULT_FPS,
    crf: int = DEFAULT_CRF,
    chroma_444: bool = False,
) -> Path:
    """Writes RGB frames (uint8 [H, W, 3] each, even sizes preferred) as H.264 mp4, atomically.

    ``frames`` may be a generator: frames are streamed to ffmpeg. ``chroma_444`` keeps
    full colour resolution (used for the synthetic raw clip).
    """
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ValueError(f"no frames to write to {path}")
    height, width = first.shape[:2]
    with atomic_path(path) as tmp:
        writer = _ffmpeg().write_frames(
            str(tmp),
            (width, height),
            fps=fps,
            codec="libx264",
            pix_fmt_in="rgb24",
            pix_fmt_out="yuv444p" if (chroma_444 or width % 2 or height % 2) else "yuv420p",
            output_params=["-crf", str(crf), "-preset", "veryfast"],
            macro_block_size=1,
            quality=None,
            ffmpeg_log_level="error",
        )
        writer.send(None)
        try:
            for frame in itertools.chain([first], frames):
                writer.send(np.ascontiguousarray(frame, dtype=np.uint8))
        finally:
            writer.close()
    return Path(path)
