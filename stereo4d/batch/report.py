"""Batch records: a progress bar over clips, a line per clip, a JSONL log, a table and a JSON.

Each clip's record is appended to the JSONL file as soon as the clip settles (flushed and
fsynced), so a runner that crashes or is killed loses no finished record.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
from pathlib import Path

from tqdm import tqdm

from stereo4d.io import save_json
from stereo4d.pipeline import STAGE_NAMES

__all__ = ["Reporter", "format_table", "summarize", "write_report"]

SECONDS_PER_HOUR = 3600.0


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class Reporter:
    """Receives clip records as they settle: JSONL append, one printed line, progress bar.

    Args:
      records_path: JSONL file (appended; one JSON object per line).
      total_clips: length of the progress bar. run_id: stamped on every record.
      show_progress: draw the tqdm bar (stderr).
    """

    def __init__(self, records_path: Path, total_clips: int, run_id: str,
                 show_progress: bool = True):
        self.records_path = Path(records_path)
        self.records_path.parent.mkdir(parents=True, exist_ok=True)
        self.run_id = run_id
        self._bar = tqdm(total=total_clips, unit="clip", desc="batch", file=sys.stderr,
                         disable=not show_progress, dynamic_ncols=True)

    def clip_finished(self, record: dict) -> None:
        record.setdefault("run_id", self.run_id)
        record.setdefault("finished", _now())
        with open(self.records_path, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self._bar.write(clip_line(record))
        self._bar.update(1)

    def note(self, message: str) -> None:
        self._bar.write(f"[batch] {message}")

    def close(self) -> None:
        self._bar.close()


def clip_line(record: dict) -> str:
    """One line for a settled clip."""
    ran = [r for r in record["stages"] if r["status"] in ("ok", "failed")]
    timing = ", ".join(f"{r['stage']} {r['seconds']:.1f} s" for r in ran) or "all up to date"
    if record["status"] == "failed":
        return f"FAILED {record['clip']} at {record['failed_stage']}: {record['error']}"
    dropped = f"; dropped {record['dropped_mb']:.1f} MB" if record.get("dropped") else ""
    return f"ok     {record['clip']} ({timing}){dropped}"


def summarize(records: list[dict], wall_s: float) -> dict:
    """Totals over clip records: counts, clips per hour, per-stage seconds and peak memory."""
    ok = [r for r in records if r["status"] == "ok"]
    per_stage: dict[str, dict] = {}
    for name in STAGE_NAMES:
        runs = [s for r in records for s in r["stages"]
                if s["stage"] == name and s["status"] in ("ok", "failed")]
        if not runs:
            continue
        seconds = [s["seconds"] for s in runs]
        overheads = [s.get("overhead_s") or 0.0 for s in runs]
        peaks = [s["peak_mem_mb"] for s in runs if s.get("peak_mem_mb") is not None]
        per_stage[name] = {"runs": len(runs), "total_s": round(sum(seconds), 3),
                           "mean_s": round(sum(seconds) / len(runs), 3),
                           "mean_overhead_s": round(sum(overheads) / len(runs), 3),
                           "peak_mem_mb": max(peaks) if peaks else None}
    return {
        "clips": len(records),
        "ok": len(ok),
        "failed": len(records) - len(ok),
        "up_to_date": sum(r["status"] == "ok" and r["stages_run"] == 0 for r in records),
        "wall_s": round(wall_s, 3),
        "clips_per_hour": round(len(ok) * SECONDS_PER_HOUR / wall_s, 2) if wall_s > 0 else None,
        "seconds_per_stage": per_stage,
        "dropped_mb": round(sum(r.get("dropped_mb", 0.0) for r in records), 3),
    }


def format_table(records: list[dict], totals: dict) -> str:
    """A plain-text table: one row per clip and stage, then the per-stage totals."""
    rows = [("clip", "stage", "status", "seconds", "peak MB", "backend", "error")]
    for record in records:
        for s in record["stages"]:
            peak = s.get("peak_mem_mb")
            rows.append((record["clip"], s["stage"], s["status"], f"{s['seconds'] or 0.0:.1f}",
                         "-" if peak is None else f"{peak:.0f}", s.get("backend") or "-",
                         (s.get("error") or "")[:80]))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in rows]
    lines.append("")
    lines.append(f"{totals['ok']} of {totals['clips']} clips ok ({totals['up_to_date']} already up "
                 f"to date), {totals['failed']} failed; {totals['wall_s']:.1f} s wall, "
                 f"{totals['clips_per_hour'] or 0:.1f} clips/hour")
    for name, s in totals["seconds_per_stage"].items():
        peak = "-" if s["peak_mem_mb"] is None else f"{s['peak_mem_mb']:.0f} MB"
        lines.append(f"  {name:<13} {s['runs']:>4} run(s)  {s['total_s']:9.1f} s total  "
                     f"{s['mean_s']:7.1f} s mean  peak {peak}")
    return "\n".join(lines)


def write_report(path: Path, records: list[dict], totals: dict, settings: dict) -> Path:
    """The batch's JSON report: settings, totals, clip records and a flat stage table."""
    table = [{"clip": r["clip"], "stage": s["stage"], "status": s["status"],
              "seconds": s["seconds"], "peak_mem_mb": s.get("peak_mem_mb"),
              "backend": s.get("backend"), "error": s.get("error")}
             for r in records for s in r["stages"]]
    return save_json({"created": _now(), "settings": settings, "totals": totals,
                      "table": table, "clips": records}, path)
