"""Accuracy suite: renders the fixed list of varied synthetic clips (cached), runs the pipeline
on each (classical backends, default flags) and prints one table (per clip, mean and worst of
the tuning and held-out halves) and writes a JSON.

Example: nice -n 10 python benchmarks/bench_suite.py --root=stereo4d_dataset/suite
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stereo4d.suite import DEMO_CLIP, STAGES, SUITE_CLIPS, format_suite_table, run_suite


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default="stereo4d_dataset/suite",
                        help="folder of the suite's clips (npz/, raw/, gt/, processed/)")
    parser.add_argument("--json", default=None,
                        help="output JSON (default <root>/suite_report.json)")
    parser.add_argument("--clips", default="",
                        help="comma-separated clip names to run (default: all; "
                             "'demo' with --demo: only the demo clip)")
    parser.add_argument("--demo", action="store_true",
                        help="also run the demo clip (reported beside the suite, in no half)")
    parser.add_argument("--force", action="store_true", help="re-render and re-run every stage")
    parser.add_argument("--from_stage", default=None, choices=STAGES,
                        help="re-run this stage and the later ones (after a code change)")
    args = parser.parse_args(argv)
    names = [n for n in args.clips.split(",") if n]
    unknown = sorted(set(names) - {c.name for c in SUITE_CLIPS} - {DEMO_CLIP.name})
    if unknown:
        print(f"error: unknown clip(s) {unknown}; choose from "
              f"{[c.name for c in SUITE_CLIPS]}", file=sys.stderr)
        return 2
    clips = tuple(c for c in SUITE_CLIPS if not names or c.name in names)
    if args.demo:
        clips = (*(clips if args.clips != DEMO_CLIP.name else ()), DEMO_CLIP)
    root = Path(args.root)
    json_path = Path(args.json) if args.json else root / "suite_report.json"
    reports, summary, times = run_suite(root, clips, force=args.force, json_path=json_path,
                                        from_stage=args.from_stage)
    print(format_suite_table(reports, summary))
    print(f"\n{len(clips)} clips: wall time {times['wall_s'] / 60:.1f} min, CPU time "
          f"{times['cpu_s'] / 60:.1f} min (this process and its children); JSON: {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
