"""Shared test fixtures: paths to the parity kit and the repository root."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PARITY_DIR = Path(os.environ.get("STEREO4D_PARITY_DIR", REPO_ROOT / "tests" / "parity"))

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

# Tests never write into the user's caches: the JAX compilation cache of the stages (and of
# the stage processes the tests start, which inherit the environment) goes to a folder of
# this test run, shared by the xdist workers (JAX locks it).
if "STEREO4D_JAX_CACHE" not in os.environ:
    import tempfile

    os.environ["STEREO4D_JAX_CACHE"] = str(Path(tempfile.gettempdir())
                                           / f"stereo4d-test-jax-cache-{os.getppid()}")


def load_make_weights():
    """The parity kit's ``make_weights`` module (numpy-only deterministic weights)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_weights", PARITY_DIR / "make_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    assert PARITY_DIR.is_dir(), f"parity kit missing at {PARITY_DIR}"
    return PARITY_DIR


def still_running(processes: list, grace_s: float, poll_s: float = 0.05) -> list:
    """The ``psutil.Process`` es of ``processes`` still running (zombies count as exited) after
    waiting up to ``grace_s`` seconds for them all to exit."""
    import psutil

    deadline = time.monotonic() + grace_s
    alive = list(processes)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        if alive:
            time.sleep(poll_s)
    return alive
