"""Benchmark table: every stage on the demo clip, plus rectify vs bare decode and optimiser throughput.

Prints, per stage: wall time, frames per second, peak memory (RSS of the stage's
process), output size on disk and the backend used. Each stage runs as its
top-level script in a fresh process (forced, so nothing is skipped).

Usage: .venv/bin/python benchmarks/run_all.py [--vid=synthvr180demo_66667] [--skip_extras]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from stereo4d.io import ClipPaths, load_dataset_npz, load_json
from stereo4d.pipeline import pipeline_stages


def run_measured(cmd: list[str]) -> tuple[float, float, int]:
    """Runs ``cmd``; returns (wall seconds, peak RSS in MB of that process, exit code)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr.read().decode(errors="replace")[-2000:])
    return wall, usage.ru_maxrss / 1024.0, proc.returncode


def machine_line() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vid", default="synthvr180demo_66667")
    parser.add_argument("--skip_extras", action="store_true",
                        help="skip rectify-vs-decode and optimiser throughput")
    args = parser.parse_args()
    paths = ClipPaths(args.vid)
    py = sys.executable
    if not paths.npz.is_file():
        print(f"rendering the demo clip {args.vid} first")
        subprocess.run([py, "make_synthetic_clip.py", f"--vid={args.vid}"], cwd=REPO_ROOT, check=True)
    num_frames = len(load_dataset_npz(paths.npz)["timestamps"])
    rows = []
    for stage in pipeline_stages(synthetic=paths.gt.is_file()):
        if not (REPO_ROOT / stage.script).is_file():
            continue
        wall, rss_mb, code = run_measured([py, stage.script, f"--vid={args.vid}", *stage.extra_args])
        if code != 0:
            print(f"{stage.name} failed (exit {code})")
            return code
        size_mb = sum(p.stat().st_size for p in [*stage.outputs(paths), *stage.previews(paths)]
                      if p.is_file()) / 1e6
        marker = paths.provenance(stage.name)
        backend = load_json(marker).get("backend", "?") if marker.is_file() else "?"
        rows.append((stage.name, stage.script, backend, wall, num_frames / wall, rss_mb, size_mb))

    print(f"\nMachine: {machine_line()}; clip {args.vid}, {num_frames} frames, 512x512\n")
    print("| stage | script | backend | wall (s) | frames/s | peak RSS (MB) | output (MB) |")
    print("|---|---|---|---:|---:|---:|---:|")
    for name, script, backend, wall, fps, rss, size in rows:
        print(f"| {name} | `{script}` | {backend} | {wall:.1f} | {fps:.2f} | {rss:.0f} | {size:.1f} |")
    total = sum(r[3] for r in rows)
    print(f"| **total** | | | {total:.1f} | {num_frames / total:.2f} | | |")

    if not args.skip_extras:
        for extra in ("bench_rectify.py", "bench_track_opt.py"):
            script = REPO_ROOT / "benchmarks" / extra
            if script.is_file():
                print(f"\n## {extra}")
                subprocess.run([py, str(script)], cwd=REPO_ROOT, check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
