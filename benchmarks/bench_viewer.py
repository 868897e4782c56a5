"""Viewer benchmark: recording size and time of view.py on a processed clip, and (on a synthetic
clip) how well the moving/static split of the viewer agrees with the ground truth.

Each configuration runs ``view.py --save`` in a fresh process (wall time, peak RSS, .rrd size).

Usage: .venv/bin/python benchmarks/bench_viewer.py [--vid=synthvr180demo_66667]
       [--output_folder=stereo4d_dataset/processed] [--gt_folder=stereo4d_dataset/gt]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.run_all import run_measured

CONFIGS = {
    "default (8192 tracks, depth, removed)": [],
    "no depth images": ["--no_depth"],
    "all tracks": ["--max_tracks=0"],
    "all tracks, no depth images": ["--max_tracks=0", "--no_depth"],
    "no depth images, no removed tracks": ["--no_depth", "--no_removed"],
    "PLY export only (all tracks)": None,
}
"""Configurations measured: extra flags of view.py (None: --ply_folder instead of --save)."""


def moving_agreement(vid: str, output_folder: str, gt_folder: str, hfov_deg: float) -> dict:
    """The viewer's moving/static split against the synthetic clip's truth for the same queries."""
    import numpy as np

    from stereo4d.io import ClipPaths, load_pickle
    from stereo4d.synthetic import SyntheticOracle
    from stereo4d.viz.clip_view import load_outputs

    paths = ClipPaths(vid, output_folder=output_folder, gt_folder=gt_folder)
    view = load_outputs(paths, hfov_deg, depth=False, removed=False)
    queries = np.asarray(load_pickle(paths.filtered_tracks)["query_points"])
    truth = SyntheticOracle.from_gt_file(paths.gt).tracks_for_queries(queries)["is_dynamic"]
    moving = view.moving
    return {"tracks": len(moving), "moving": int(moving.sum()), "truly_dynamic": int(truth.sum()),
            "agreement": float((moving == truth).mean()),
            "precision": float((moving & truth).sum() / max(moving.sum(), 1)),
            "recall": float((moving & truth).sum() / max(truth.sum(), 1))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vid", default="synthvr180demo_66667")
    parser.add_argument("--output_folder", default="stereo4d_dataset/processed")
    parser.add_argument("--gt_folder", default="stereo4d_dataset/gt")
    parser.add_argument("--hfov", type=float, default=60.0)
    args = parser.parse_args(argv)
    base = [sys.executable, str(REPO_ROOT / "view.py"), f"--vid={args.vid}",
            f"--output_folder={args.output_folder}", f"--hfov={args.hfov}"]
    print(f"| view.py on {args.vid} | wall (s) | peak RSS (MB) | output (MB) |")
    print("|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, flags in CONFIGS.items():
            out = Path(tmp) / ("ply" if flags is None else "clip.rrd")
            extra = [f"--ply_folder={out}"] if flags is None else [f"--save={out}", *flags]
            wall, rss, code = run_measured([*base, *extra])
            if code != 0:
                print(f"| {name} | failed (exit {code}) | | |")
                continue
            files = list(out.glob("*")) if out.is_dir() else [out]
            size_mb = sum(f.stat().st_size for f in files) / 1e6
            print(f"| {name} | {wall:.1f} | {rss:.0f} | {size_mb:.1f} |")
    gt = Path(args.gt_folder) / f"{args.vid}.npz"
    if gt.is_file():
        stats = moving_agreement(args.vid, args.output_folder, args.gt_folder, args.hfov)
        print(f"\nmoving/static split vs ground truth: {stats['moving']} of {stats['tracks']} "
              f"tracks shown moving, {stats['truly_dynamic']} truly dynamic; agreement "
              f"{stats['agreement']:.3f}, precision {stats['precision']:.3f}, recall "
              f"{stats['recall']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
