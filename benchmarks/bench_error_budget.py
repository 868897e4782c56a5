"""Error budget of the final 3D tracks over the accuracy suite's held-out clips: the 3D part
(filtering + optimisation + scoring) re-run with one ground-truth substitution at a time
(true disparity, true 2D tracks, true labels, true filter decisions, all four).

Runs the suite's pipeline first on clips that have not been processed yet (cached).
Example: nice -n 10 python benchmarks/bench_error_budget.py --root=stereo4d_dataset/suite
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stereo4d.error_budget import format_budget_table
from stereo4d.io import save_json
from stereo4d.suite import SUITE_CLIPS, clip_paths, run_clip


def main(argv=None) -> int:
    from stereo4d.error_budget import budget_clip

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default="stereo4d_dataset/suite",
                        help="folder of the suite's clips (as benchmarks/bench_suite.py)")
    parser.add_argument("--half", default="heldout", choices=("tuning", "heldout"))
    parser.add_argument("--clips", default="", help="comma-separated clip names (default: the half)")
    parser.add_argument("--max_tracks", type=int, default=0,
                        help="score a random subset of this many 2D tracks per clip (0: all)")
    parser.add_argument("--json", default=None, help="output JSON (default <root>/error_budget.json)")
    args = parser.parse_args(argv)
    names = [n for n in args.clips.split(",") if n]
    unknown = sorted(set(names) - {c.name for c in SUITE_CLIPS})
    if unknown:
        print(f"error: unknown clip(s) {unknown}", file=sys.stderr)
        return 2
    clips = [c for c in SUITE_CLIPS if (c.name in names if names else c.half == args.half)]
    root = Path(args.root)
    per_clip = {}
    for clip in clips:
        run_clip(clip, root)  # cached: only renders / runs what is missing or stale
        per_clip[clip.name] = budget_clip(clip_paths(clip, root), max_tracks=args.max_tracks)
    table = format_budget_table(per_clip)
    print(f"\nError budget, mean over {', '.join(per_clip)} (after optimisation):\n{table}")
    save_json(per_clip, Path(args.json) if args.json else root / "error_budget.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
