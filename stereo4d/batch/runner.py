"""The batch scheduler: every clip's stages in dependency order on an executor, like make.

Per clip, a stage is submitted once the stages it reads from are done (so stereo and
tracking of one clip run side by side after rectify). Just before submitting, the stage's
completion rule (``stereo4d.pipeline.stage_fresh``) decides whether it must run at all, so
a rerun redoes only what is missing or stale; a clip whose final outputs are fresh is done
even when ``--keep=final`` dropped its intermediates. Earlier clips go first, so clips
finish one after another rather than all at the end. A failing stage fails its clip only:
the clip's later stages are not run and every other clip carries on. Transient failures
(a crash, a killed worker) are retried; bad input (exit status 2) is not.
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, field

from stereo4d.batch.plan import BatchPlan
from stereo4d.batch.task import StageTask
from stereo4d.io import ClipPaths, InputError, load_json
from stereo4d.pipeline import Stage, clip_complete, stage_dependencies, stage_fresh

__all__ = ["KEEP_CHOICES", "ClipState", "drop_intermediates", "run_batch"]

#: ``--keep`` values: every file, or only what a finished clip keeps (``ClipPaths.finals``).
KEEP_CHOICES = ("all", "final")

#: Seconds the scheduler waits for a task before checking again.
POLL_S = 1.0


@dataclass
class ClipState:
    """Progress of one clip through its stages.

    Attributes:
      index: position in the batch (lower goes first). vid, paths: the clip.
      deps: stage name -> names of selected stages it waits for.
      done: stages finished or up to date. running: stages in flight.
      records: one per stage settled (ok, skipped, failed, not run), in settling order.
      failed: the record of the stage that failed the clip. finished: record written.
      t0: time its first stage was submitted (None while nothing ran).
    """

    index: int
    vid: str
    paths: ClipPaths | None
    deps: dict[str, set[str]] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)
    running: set[str] = field(default_factory=set)
    records: list[dict] = field(default_factory=list)
    failed: dict | None = None
    finished: bool = False
    t0: float | None = None


def _backend(paths: ClipPaths, stage: str) -> str | None:
    try:
        return str(load_json(paths.provenance(stage)).get("backend"))
    except (InputError, AttributeError):
        return None


def drop_intermediates(paths: ClipPaths) -> tuple[list[str], float]:
    """Deletes the clip's intermediates (``ClipPaths.intermediates``); returns (names, MB freed)."""
    names, freed = [], 0.0
    for path in paths.intermediates():
        if path.is_file():
            freed += path.stat().st_size / 1e6
            path.unlink()
            names.append(path.name)
    return names, round(freed, 3)


def _stage_record(vid: str, stage: str, status: str, **extra) -> dict:
    record = {"vid": vid, "stage": stage, "status": status, "seconds": 0.0, "peak_mem_mb": None,
              "backend": None, "error": None, "attempt": 0}
    record.update(extra)
    return record


def _clip_record(clip: ClipState, stages: list[Stage], keep: str) -> dict:
    settled = {r["stage"] for r in clip.records}
    for stage in stages:  # stages after a failure never ran
        if stage.name not in settled:
            clip.records.append(_stage_record(clip.vid, stage.name, "not run",
                                              error=f"after {clip.failed['stage']} failed"))
    order = {s.name: i for i, s in enumerate(stages)}
    records = sorted(clip.records, key=lambda r: order.get(r["stage"], -1))
    peaks = [r["peak_mem_mb"] for r in records if r.get("peak_mem_mb") is not None]
    record = {
        "clip": clip.vid,
        "status": "failed" if clip.failed else "ok",
        "failed_stage": clip.failed["stage"] if clip.failed else None,
        "error": clip.failed["error"] if clip.failed else None,
        "stages_run": sum(r["status"] in ("ok", "failed") for r in records),
        "seconds": round(sum(r["seconds"] or 0.0 for r in records), 3),
        "wall_s": round(time.perf_counter() - clip.t0, 3) if clip.t0 is not None else 0.0,
        "peak_mem_mb": max(peaks) if peaks else None,
        "stages": records,
    }
    if keep == "final" and not clip.failed and clip.paths is not None and clip_complete(clip.paths):
        record["dropped"], record["dropped_mb"] = drop_intermediates(clip.paths)
    return record


def run_batch(plan: BatchPlan, executor, reporter, *, force: bool = False, retries: int = 0,
              keep: str = "all") -> list[dict]:
    """Runs ``plan`` on ``executor``; returns one record per clip, in ``plan.vids`` order.

    ``reporter`` gets each record as its clip settles (in finishing order).

    Args:
      plan: clips, stages, flags and resources.
      executor: a LocalExecutor or RayExecutor (``submit``, ``wait``, ``capacity``).
      reporter: receives ``clip_finished(record)`` as each clip settles.
      force: run every selected stage even when its outputs are fresh.
      retries: further attempts for a stage that failed transiently (not on exit status 2).
      keep: ``final`` deletes a finished clip's intermediates.
    """
    stages = plan.stages
    by_name = {s.name: s for s in stages}
    clips: list[ClipState] = []
    ready: list[tuple[int, int]] = []  # heap of (clip index, stage index)
    finished: list[dict] = []

    def settle(clip: ClipState) -> None:
        if clip.finished or clip.running:
            return
        if clip.failed or len(clip.done) == len(stages):
            clip.finished = True
            record = _clip_record(clip, stages, keep)
            finished.append(record)
            reporter.clip_finished(record)

    def mark_done(clip: ClipState, name: str) -> None:
        clip.done.add(name)
        for i, stage in enumerate(stages):
            if (stage.name not in clip.done and stage.name not in clip.running
                    and name in clip.deps[stage.name] and clip.deps[stage.name] <= clip.done):
                heapq.heappush(ready, (clip.index, i))

    for index, vid in enumerate(plan.vids):
        reason = plan.check_vid(vid)
        clip = ClipState(index, vid, None if reason else plan.paths(vid))
        clips.append(clip)
        if reason:
            clip.failed = _stage_record(vid, "plan", "failed", error=reason, permanent=True)
            clip.records.append(clip.failed)
        elif not force and clip_complete(clip.paths):
            for stage in stages:
                clip.records.append(_stage_record(vid, stage.name, "skipped", error=None,
                                                  backend=_backend(clip.paths, stage.name),
                                                  reason="clip complete"))
            clip.done = {s.name for s in stages}
        else:
            clip.deps = stage_dependencies(stages, clip.paths)
            for i, stage in enumerate(stages):
                if not clip.deps[stage.name]:
                    heapq.heappush(ready, (index, i))
        settle(clip)

    in_flight: dict[object, StageTask] = {}
    submitted_at: dict[object, float] = {}

    def submit(task: StageTask) -> None:
        clip = clip_of[task.vid]
        clip.running.add(task.stage)
        clip.t0 = clip.t0 if clip.t0 is not None else time.perf_counter()
        handle = executor.submit(task)
        in_flight[handle], submitted_at[handle] = task, time.perf_counter()

    clip_of = {c.vid: c for c in clips}
    while True:
        while ready and len(in_flight) < executor.capacity:
            index, stage_index = heapq.heappop(ready)
            clip, stage = clips[index], stages[stage_index]
            if clip.failed:
                continue  # recorded as "not run" when the clip settles
            if not force and stage_fresh(clip.paths, stage):
                clip.records.append(_stage_record(clip.vid, stage.name, "skipped",
                                                  backend=_backend(clip.paths, stage.name),
                                                  reason="outputs fresh"))
                mark_done(clip, stage.name)
                settle(clip)
                continue
            submit(plan.task(clip.vid, stage))
        if not in_flight:
            break
        for handle, record in executor.wait(in_flight, POLL_S):
            task = in_flight.pop(handle)
            # Time the executor added around the stage process (dispatch, result transfer).
            latency_s = time.perf_counter() - submitted_at.pop(handle)
            record["overhead_s"] = round(max(0.0, latency_s - (record["seconds"] or 0.0)), 3)
            clip = clip_of[task.vid]
            clip.running.discard(task.stage)
            if record["status"] == "ok":
                clip.records.append(record)
                mark_done(clip, task.stage)
            elif not record["permanent"] and task.attempt <= retries and not clip.failed:
                reporter.note(f"retrying {task.vid} {task.stage} (attempt {task.attempt + 1}): "
                              f"{record['error']}")
                submit(plan.task(task.vid, by_name[task.stage], attempt=task.attempt + 1))
                continue
            else:
                clip.records.append(record)
                clip.failed = clip.failed or record
            settle(clip)
    for clip in clips:  # defensive: nothing may be left unreported
        settle(clip)
    order = {vid: i for i, vid in enumerate(plan.vids)}
    return sorted(finished, key=lambda r: order[r["clip"]])

