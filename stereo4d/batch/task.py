"""One stage of one clip, run as its own command in a child process; returns a small record.

This is what a worker executes (a thread of the local pool or a Ray task). The stage runs
exactly as a user would type it (``python -m stereo4d.commands.<stage> --vid=... <flags>``),
so it never knows it is part of a batch; its output goes to a log file, and the record
carries only status, seconds, peak memory, backend and the stage's ``error:`` line. Data
moves through the clip's files, never through the record.
"""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from stereo4d.lifetime import parent_death_hook

__all__ = ["INPUT_ERROR_EXIT_CODE", "StageTask", "error_line", "run_stage_task"]

#: Exit status of a stage command on bad input (``stereo4d.cli.run_cli``): never retried.
INPUT_ERROR_EXIT_CODE = 2

#: Bytes of a stage's log read back to find its error message.
LOG_TAIL_BYTES = 16384


#: Environment variable naming the launcher's pid (the child checks it is still alive).
_PARENT_PID_ENV = "STEREO4D_BATCH_PARENT_PID"


@dataclass(frozen=True)
class StageTask:
    """A stage command to run for one clip (small and picklable: it travels to Ray workers).

    Attributes:
      vid: clip id. stage: provenance name (``<vid>-<stage>.json`` is its completion marker).
      command: module run with ``python -m`` (a ``stereo4d.commands`` module).
      argv: the command's flags (``--vid`` and folders included).
      marker: absolute path of the stage's provenance JSON (read for the backend name).
      log_path: absolute path of the file receiving the stage's stdout and stderr.
      cpus, gpus: resources the stage asks for (Ray's ``num_cpus`` / ``num_gpus``).
      env: extra environment variables for the stage process.
      cwd: working directory of the stage process (None, or absent on the worker's node: the
        worker's own; the runner passes every folder as an absolute path).
      attempt: 1 for the first try, 2 for the first retry, ...
    """

    vid: str
    stage: str
    command: str
    argv: tuple[str, ...]
    marker: str
    log_path: str
    cpus: float = 1.0
    gpus: float = 0.0
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    attempt: int = 1


def error_line(log_text: str, exit_code: int) -> str:
    """The stage's failure reason from its log tail.

    The last ``error: ...`` line (``run_cli``'s one-line message on bad input) when there
    is one; else the last non-empty line (a traceback's exception); else the signal.
    """
    lines = [ln.strip() for ln in log_text.splitlines() if ln.strip()]
    for line in reversed(lines):
        if line.startswith("error:"):
            return line[len("error:"):].strip()
    if exit_code < 0:
        try:
            return f"killed by {signal.Signals(-exit_code).name}"
        except ValueError:
            return f"killed by signal {-exit_code}"
    return lines[-1] if lines else f"exit status {exit_code}"


def _read_tail(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - LOG_TAIL_BYTES))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def _backend(marker: Path) -> str | None:
    from stereo4d.io import InputError, load_json

    try:
        return str(load_json(marker).get("backend"))
    except (InputError, AttributeError):
        return None


def _stage_env(task: StageTask) -> dict[str, str]:
    """The worker's environment, the task's extras, and the stereo4d this worker imports."""
    import stereo4d

    env = dict(os.environ)
    env.update(task.env)
    package_root = str(Path(stereo4d.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env[_PARENT_PID_ENV] = str(os.getpid())
    return env


def run_stage_task(task: StageTask) -> dict:
    """Runs ``task`` to completion and returns its record.

    Returns:
      dict with vid, stage, attempt, status (``ok`` | ``failed``), exit_code, permanent
      (True for bad input: exit status 2), seconds (wall), peak_mem_mb (largest resident
      set of the stage process or of a child it waited for), worker_rss_mb (the process that
      launched it) and worker_pid, backend (from the provenance JSON), error, log, host.
    """
    log_path = Path(task.log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "stereo4d.batch.child", task.command, *task.argv]
    cwd = task.cwd if task.cwd and os.path.isdir(task.cwd) else None  # absent on another node
    t0 = time.perf_counter()
    with open(log_path, "wb") as log:
        log.write(f"$ {' '.join(cmd[3:])}  (attempt {task.attempt})\n".encode())
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=_stage_env(task), cwd=cwd)
        # wait4 (not Popen.wait): its rusage is this child's own peak memory.
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = exit_code = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - t0
    ok = exit_code == 0
    return {
        "vid": task.vid,
        "stage": task.stage,
        "attempt": task.attempt,
        "status": "ok" if ok else "failed",
        "exit_code": exit_code,
        "permanent": exit_code == INPUT_ERROR_EXIT_CODE,
        "seconds": round(seconds, 3),
        "peak_mem_mb": round(usage.ru_maxrss / 1024.0, 1),  # ru_maxrss is in KiB on Linux
        "worker_rss_mb": round(_current_rss_mb(), 1),
        "worker_pid": os.getpid(),
        "backend": _backend(Path(task.marker)) if ok else None,
        "error": None if ok else error_line(_read_tail(log_path), exit_code),
        "log": str(log_path),
        "host": platform.node(),
    }


def _current_rss_mb() -> float:
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:  # psutil is in the [batch] extra; the peak of this process instead
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def die_with_parent() -> None:
    """Linux: this process gets SIGKILL when the process that launched it dies.

    A batch runner killed with ``kill -9`` must not leave stage processes writing into the
    clips a rerun is about to redo. Elsewhere this does nothing.
    """
    expected = os.environ.get(_PARENT_PID_ENV)
    parent_death_hook(int(expected) if expected else None)()
