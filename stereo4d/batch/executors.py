"""Where stage tasks run: a local pool of worker threads (each runs one stage process) or Ray.

Both take a ``StageTask``, run ``run_stage_task`` somewhere and hand back its small record;
the scheduler above them never knows which one it drives.
"""

from __future__ import annotations

import os
import platform
import queue
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import replace
from typing import Any

from stereo4d.batch.task import StageTask, run_stage_task

__all__ = ["LocalExecutor", "RayExecutor", "crash_record"]

#: Control device of the NVIDIA driver; without it there is no CUDA GPU to look for.
NVIDIA_DEVICE = "/dev/nvidiactl"

#: Seconds between two reads of the Ray cluster's CPU count.
CAPACITY_REFRESH_S = 10.0


def crash_record(task: StageTask, error: str, seconds: float = 0.0) -> dict:
    """The record of a task whose worker died or raised (a transient failure: retried)."""
    return {
        "vid": task.vid, "stage": task.stage, "attempt": task.attempt, "status": "failed",
        "exit_code": None, "permanent": False, "seconds": round(seconds, 3), "peak_mem_mb": None,
        "worker_rss_mb": None, "worker_pid": None, "backend": None, "error": error,
        "log": task.log_path, "host": platform.node(),
    }


def local_gpu_count() -> int:
    """GPUs torch sees on this machine (0 without torch, CUDA or an NVIDIA driver)."""
    if not os.path.exists(NVIDIA_DEVICE):  # no driver: skip importing torch in the runner
        return 0
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:
        return 0


class LocalExecutor:
    """``workers`` stage processes at a time on this machine.

    Each worker thread launches one stage command and waits for it (the work happens in
    the child process, so threads suffice). A task asking for a GPU waits for a free device
    and runs with ``CUDA_VISIBLE_DEVICES`` set to it.
    """

    name = "local"

    def __init__(self, workers: int, gpus: int = 0):
        self.workers = max(1, int(workers))
        self.gpus = int(gpus)
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="stage")
        self._free_gpus: queue.Queue[int] = queue.Queue()
        for gpu in range(self.gpus):
            self._free_gpus.put(gpu)

    @property
    def capacity(self) -> int:
        return self.workers

    def _run(self, task: StageTask) -> dict:
        if task.gpus <= 0 or self.gpus == 0:
            return run_stage_task(task)
        gpu = self._free_gpus.get()
        try:
            env = {**task.env, "CUDA_VISIBLE_DEVICES": str(gpu)}
            return run_stage_task(replace(task, env=env))
        finally:
            self._free_gpus.put(gpu)

    def submit(self, task: StageTask) -> Future:
        return self._pool.submit(self._run, task)

    def wait(self, handles: dict[Any, StageTask], timeout_s: float) -> list[tuple[Any, dict]]:
        """(handle, record) of the tasks among ``handles`` that finished (waits for one)."""
        done, _ = futures_wait(list(handles), timeout=timeout_s, return_when=FIRST_COMPLETED)
        out = []
        for fut in done:
            try:
                out.append((fut, fut.result()))
            except Exception as exc:  # noqa: BLE001 - e.g. the launcher could not start python
                out.append((fut, crash_record(handles[fut], f"{type(exc).__name__}: {exc}")))
        return out

    def describe(self) -> str:
        return f"local pool, {self.workers} worker(s)" + (f", {self.gpus} GPU(s)" if self.gpus else "")

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)


class RayExecutor:
    """Stage tasks as Ray tasks with per-stage ``num_cpus`` / ``num_gpus``.

    ``address``: ``"auto"`` (a running cluster), ``"ray://..."`` or ``"host:port"``, or None to
    start a local Ray instance with ``num_cpus``. When Ray is already initialised in this
    process (a test, a notebook) that session is used and left running.
    """

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None):
        import ray

        self._ray = ray
        self._owns_session = not ray.is_initialized()
        if self._owns_session:
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address:
                ray.init(address=address, **kwargs)
            else:
                ray.init(num_cpus=num_cpus or os.cpu_count(), **kwargs)
        self._remote = ray.remote(max_retries=0)(run_stage_task)
        self._started: dict[Any, float] = {}
        self._capacity, self._capacity_t = 1, -float("inf")

    @property
    def resources(self) -> dict[str, float]:
        return self._ray.cluster_resources()

    @property
    def capacity(self) -> int:
        """Tasks kept in flight: one per cluster CPU (Ray queues what does not fit).

        Re-read every CAPACITY_REFRESH_S, so nodes joining during a batch are used.
        """
        if time.monotonic() - self._capacity_t > CAPACITY_REFRESH_S:
            self._capacity = max(1, int(self.resources.get("CPU", 1)))
            self._capacity_t = time.monotonic()
        return self._capacity

    def submit(self, task: StageTask):
        ref = self._remote.options(num_cpus=task.cpus, num_gpus=task.gpus,
                                   name=f"{task.stage}:{task.vid}").remote(task)
        self._started[ref] = time.perf_counter()
        return ref

    def wait(self, handles: dict[Any, StageTask], timeout_s: float) -> list[tuple[Any, dict]]:
        ready, _ = self._ray.wait(list(handles), num_returns=1, timeout=timeout_s)
        out = []
        for ref in ready:
            seconds = time.perf_counter() - self._started.pop(ref, time.perf_counter())
            try:
                out.append((ref, self._ray.get(ref)))
            except self._ray.exceptions.RayError as exc:  # worker or node died: transient
                message = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
                out.append((ref, crash_record(handles[ref], f"{type(exc).__name__}: {message}",
                                              seconds)))
        return out

    def describe(self) -> str:
        res = self.resources
        nodes = len([n for n in self._ray.nodes() if n.get("Alive")])
        return (f"ray, {nodes} node(s), {res.get('CPU', 0):g} CPU(s)"
                + (f", {res.get('GPU', 0):g} GPU(s)" if res.get("GPU") else ""))

    def gpu_count(self) -> int:
        return int(self.resources.get("GPU", 0))

    def shutdown(self) -> None:
        if self._owns_session:
            self._ray.shutdown()
