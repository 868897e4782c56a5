"""Batch throughput: 4 synthetic clips with 1 and 2 workers on the local pool and on Ray.

Each configuration runs ``batch_run.py`` in a fresh process into its own output folder
(nothing is up to date) and reads its report. Prints clips per hour (batch wall time, Ray
start-up apart), the summed stage seconds per clip (to show contention), the executor's
dispatch time per clip (time from submitting a stage to receiving its record, minus the
stage process's own wall time: Ray's overhead, near zero for the local pool), the wall-time
difference per clip against the local pool with the same number of workers, the largest
stage-process peak memory and the resident memory of the processes that launch the stages
(Ray workers; for the local pool, the runner itself).

Usage: .venv/bin/python benchmarks/bench_batch.py [--root=DIR] [--num_frames=16] [--clips=4]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from stereo4d.io import ClipPaths

#: Flags of every batch: weight-free backends (no downloads), small views for a short run.
STAGE_ARGS = ("rectify:--min_equirect_height=0 --output_height=128 --output_width=128",
              "stereo:--backend=sgbm", "tracking:--backend=dis-flow",
              "filtering:--backend=classical")
#: Local and Ray side by side for each worker count, so both see similar machine load.
CONFIGS = (("local", 1), ("ray", 1), ("local", 2), ("ray", 2))
SECONDS_PER_HOUR = 3600.0


def render_clips(root: Path, count: int, num_frames: int, eye_size_px: int) -> list[str]:
    from stereo4d.synthetic import SyntheticClipConfig, make_synthetic_clip

    vids = []
    for i in range(count):
        vid = f"benchclip{i}_{1000 * (i + 1)}"
        paths = ClipPaths(vid, root / "npz", root / "raw", root / "unused", root / "gt")
        if not paths.npz.is_file():
            make_synthetic_clip(paths, SyntheticClipConfig(
                num_frames=num_frames, eye_size_px=eye_size_px, seed=i + 1, gt_size_px=128,
                num_tracks=256))
        vids.append(vid)
    (root / "vids.txt").write_text("\n".join(vids) + "\n")
    return vids


def run_config(root: Path, executor: str, workers: int) -> dict:
    out = root / f"out_{executor}{workers}"
    cmd = [sys.executable, str(REPO_ROOT / "batch_run.py"), f"--vids={root / 'vids.txt'}",
           f"--npz_folder={root / 'npz'}", f"--raw_video_folder={root / 'raw'}",
           f"--output_folder={out}", f"--executor={executor}", "--quiet", "--force"]
    cmd += [f"--workers={workers}"] if executor == "local" else [f"--num_cpus={workers}"]
    for item in STAGE_ARGS:
        cmd += ["--stage_args", item]
    t0 = time.perf_counter()
    result = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    process_s = time.perf_counter() - t0
    if result.returncode != 0:
        sys.stderr.write(result.stderr[-3000:])
        raise SystemExit(f"{executor} x{workers} failed (exit {result.returncode})")
    report = json.loads((out / "_batch" / "report.json").read_text())
    stages = [s for c in report["clips"] for s in c["stages"]]
    totals = report["totals"]
    return {
        "executor": executor, "workers": workers, "clips": totals["clips"],
        "batch_s": totals["wall_s"], "startup_s": process_s - totals["wall_s"],
        "clips_per_hour": totals["clips_per_hour"],
        "stage_s_per_clip": sum(s["seconds"] for s in stages) / totals["clips"],
        "dispatch_s_per_clip": sum(s.get("overhead_s") or 0.0 for s in stages) / totals["clips"],
        "stage_peak_mb": max(s["peak_mem_mb"] for s in stages),
        "worker_rss_mb": max(s["worker_rss_mb"] for s in stages),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=None, help="work folder (default: a temporary one)")
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--num_frames", type=int, default=16)
    parser.add_argument("--eye_size", type=int, default=256, help="equirect eye side, px")
    parser.add_argument("--repeats", type=int, default=1,
                        help="passes over the configurations; the fastest batch of each is shown")
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench_batch_") as tmp:
        root = Path(args.root or tmp).resolve()
        render_clips(root, args.clips, args.num_frames, args.eye_size)
        best: dict[tuple[str, int], dict] = {}
        for _ in range(args.repeats):
            for executor, workers in CONFIGS:
                row = run_config(root, executor, workers)
                print(f"{executor} x{workers}: {row['batch_s']:.1f} s", file=sys.stderr)
                if (executor, workers) not in best or row["batch_s"] < best[executor, workers]["batch_s"]:
                    best[executor, workers] = row
        rows = [best[c] for c in sorted(best, key=lambda c: (c[0] != "local", c[1]))]
    local = {r["workers"]: r for r in rows if r["executor"] == "local"}
    load_after = os.getloadavg()
    print(f"\n{args.clips} synthetic clips, {args.num_frames} frames, 128x128 views, classical "
          f"backends; {os.cpu_count()} cores, load average {load_before[0]:.1f} before and "
          f"{load_after[0]:.1f} after; fastest of {args.repeats} pass(es)\n")
    print("| executor | workers | batch wall (s) | start-up (s) | clips/hour | stage s/clip | "
          "dispatch s/clip | wall vs local, s/clip | peak stage MB | launcher RSS MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        overhead = ("-" if r["executor"] == "local" else
                    f"{(r['batch_s'] - local[r['workers']]['batch_s']) / r['clips']:+.1f}")
        print(f"| {r['executor']} | {r['workers']} | {r['batch_s']:.1f} | {r['startup_s']:.1f} | "
              f"{r['clips_per_hour']:.0f} | {r['stage_s_per_clip']:.1f} | "
              f"{r['dispatch_s_per_clip']:.2f} | {overhead} | "
              f"{r['stage_peak_mb']:.0f} | {r['worker_rss_mb']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
