"""Child processes that die with their parent (a foundation: imports nothing of ours).

Used for the ffmpeg children of a stage (``videoio``) and for the stage processes of a batch
(``batch``): a parent killed with ``kill -9`` must not leave children writing files.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Callable

__all__ = ["PR_SET_PDEATHSIG", "parent_death_hook"]

#: ``prctl`` option asking the kernel to signal a process when its parent dies (linux/prctl.h).
PR_SET_PDEATHSIG = 1
#: Exit status of a child that finds its parent already gone (as if killed by SIGKILL).
ORPHAN_EXIT_STATUS = 128 + 9


def parent_death_hook(parent_pid: int | None) -> Callable[[], None]:
    """A function that, run in a child, makes Linux SIGKILL it when its parent dies.

    Everything is resolved here, before any fork: the returned function only makes the system
    call, so it is safe as a ``preexec_fn``. If the parent (``parent_pid``; None: not checked)
    is already gone when it runs, the child exits at once. Outside Linux it does nothing.
    Caveat of ``PR_SET_PDEATHSIG``: the signal follows the *thread* that started the child.
    """
    prctl = None
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            prctl = ctypes.CDLL(None, use_errno=True).prctl
    kill = int(signal.SIGKILL) if hasattr(signal, "SIGKILL") else 9

    def hook() -> None:
        if prctl is None:
            return
        prctl(PR_SET_PDEATHSIG, kill, 0, 0, 0)
        if parent_pid is not None and os.getppid() != parent_pid:  # died before the prctl
            os._exit(ORPHAN_EXIT_STATUS)

    return hook
