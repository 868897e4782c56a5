"""Decoding and encoding overlapped with the caller's work: a frame iterator run ahead in a
background thread (``FramePrefetcher``) and a ``videoio.VideoWriter`` fed from one
(``BackgroundVideoWriter``)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # typing.Self is Python >= 3.11; annotations are not evaluated
    from typing import Self

    from stereo4d.videoio import VideoWriter

__all__ = ["POLL_S", "QUEUE_FRAMES", "BackgroundVideoWriter", "FramePrefetcher"]

#: Frames a ``FramePrefetcher`` / ``BackgroundVideoWriter`` holds in its queue (memory: this
#: many frames, e.g. 4 x 22 MB at 3840x1920).
QUEUE_FRAMES = 4
#: Seconds between checks of the stop flag while a background thread waits on its queue.
POLL_S = 0.1



class FramePrefetcher:
    """Runs a frame iterator in a background thread, up to ``depth`` frames ahead.

    Decoding (ffmpeg's pipe read) then overlaps the caller's work on earlier frames. Iterate
    it like the wrapped iterator; an exception in the iterator is raised to the caller at the
    frame where it happened. ``limit``: stop after this many frames (no decoding ahead past
    them). ``close()`` (or leaving a ``with`` block) stops the thread and closes the wrapped
    iterator in it.
    """

    _END = object()

    def __init__(self, frames: Iterator[np.ndarray], depth: int = QUEUE_FRAMES,
                 limit: int | None = None):
        self._frames = frames
        self._limit = limit
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="frame-prefetch", daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            if self._limit is None or self._limit > 0:
                for count, frame in enumerate(self._frames, start=1):
                    if not self._put(frame):
                        return  # closed early: the finally block closes the iterator
                    if self._limit is not None and count >= self._limit:
                        break
            self._put(self._END)
        except BaseException as exc:  # noqa: BLE001 (handed to the consumer, raised there)
            self._put(exc)
        finally:
            close = getattr(self._frames, "close", None)
            if close is not None:
                close()

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> np.ndarray:
        item = self._queue.get()
        if item is self._END:
            self._queue.put(item)  # later calls stop too
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class BackgroundVideoWriter:
    """A ``VideoWriter`` fed from a background thread: ``append`` returns once the frame is
    queued (at most ``depth`` waiting), so piping frames to ffmpeg overlaps the caller's work.

    Same interface as ``VideoWriter`` (``append``, ``close(commit)``, context manager, ``path``,
    ``num_frames``); an error in the writer thread is raised by the next ``append`` or ``close``.
    """

    _END = object()

    def __init__(self, writer: VideoWriter, depth: int = QUEUE_FRAMES):
        self.writer = writer
        self.path = writer.path
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._consume, name=f"write-{self.path.name}",
                                        daemon=True)
        self._thread.start()

    @property
    def num_frames(self) -> int:
        return self.writer.num_frames

    def _consume(self) -> None:
        """Writes queued frames; on the end marker closes the writer *in this thread*.

        ffmpeg is started by the first ``append`` of this thread, and its death signal
        (``PR_SET_PDEATHSIG``) follows the thread that started it: closing it here, before the
        thread ends, lets the encoder finish instead of being killed with the thread.
        """
        while True:
            item = self._queue.get()
            if isinstance(item, tuple) and item and item[0] is self._END:
                commit = item[1] and self._error is None
                try:
                    self.writer.close(commit=commit)
                except BaseException as exc:  # noqa: BLE001 (raised by close)
                    if self._error is None:
                        self._error = exc
                return
            if self._error is None:  # after an error, drain without writing
                try:
                    self.writer.append(item)
                except BaseException as exc:  # noqa: BLE001 (raised by append / close)
                    self._error = exc

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def append(self, frame: np.ndarray) -> None:
        """Queues one uint8 [H, W, 3] RGB frame (the array must not be modified afterwards)."""
        self._raise_error()
        self._queue.put(frame)

    def close(self, commit: bool = True) -> None:
        """Writes the queued frames, then closes like ``VideoWriter.close`` (in the writer
        thread). A writer-thread error discards the file (raised when committing, dropped when
        already discarding)."""
        if self._thread.is_alive():
            self._queue.put((self._END, commit))
            self._thread.join()
        if self._error is not None and commit:
            raise self._error

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(commit=exc_type is None)
