"""Named wall-clock sections for stage and backend timings (a foundation: imports nothing of ours)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["Timer"]


class Timer:
    """Named wall-clock sections: ``with timer('decode'): ...``; ``timer.seconds`` holds totals."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._t0 = time.perf_counter()

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t

    @property
    def total_s(self) -> float:
        return time.perf_counter() - self._t0
