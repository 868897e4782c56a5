"""Benchmark of the 2D tracking stage on the synthetic clip: TAP-Vid accuracy and speed.

Runs the stage's own query sampling + tracking + pruning (``stages.tracking.track_video``)
on ``<vid>-left_rectified.mp4`` (512 x 512 x 48 for the default synthetic clip), asks the
synthetic oracle for the exact tracks of a random subset of the kept queries, and prints
TAP-Vid <delta^x_avg, occlusion accuracy and average Jaccard (query-first and strided), the
pruning percentage, and the runtime per frame. Optionally also scores the ground truth's own
query points (``--gt_queries``).

Prepare the clip first:
  python make_synthetic_clip.py --vid=synthetic_street_1000000
  python rectify.py --vid=synthetic_street_1000000 --min_equirect_height=0

Usage: .venv/bin/python benchmarks/bench_tracking.py --vid=synthetic_street_1000000 \\
           [--backend dis-flow] [--num_scored 3000] [--gt_queries]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from stereo4d.backends.tracking import TRACKING_BACKENDS
from stereo4d.io import ClipPaths
from stereo4d.metrics.tapvid import compute_tapvid_metrics
from stereo4d.queries import QueryConfig
from stereo4d.stages.common import Timer
from stereo4d.stages.tracking import track_video
from stereo4d.videoio import read_video


def score(name: str, queries_tyx, pred_xy, pred_vis, gt: dict, image_hw) -> None:
    """Prints TAP-Vid figures of predictions against the oracle's ``gt`` for the same queries."""
    rows = np.arange(len(queries_tyx))
    query_t = np.round(queries_tyx[:, 0]).astype(int)
    valid = gt["visibles"][rows, query_t]  # drop sky queries and any the oracle cannot see
    gt_xy = np.nan_to_num(gt["tracks_xy"][valid])
    for mode in ("first", "strided"):
        m = compute_tapvid_metrics(queries_tyx[valid], gt_xy, gt["visibles"][valid], pred_xy[valid],
                                   pred_vis[valid], image_hw, mode)
        print(f"{name} [{mode:7s}] tracks {int(valid.sum()):5d}  <delta_avg {m['average_pts_within_thresh']:.3f}"
              f"  OA {m['occlusion_accuracy']:.3f}  AJ {m['average_jaccard']:.3f}  "
              f"(within 1/2/4/8/16: " + "/".join(f"{m[f'pts_within_{d}']:.2f}" for d in (1, 2, 4, 8, 16))
              + ")")
    if "is_dynamic" in gt:
        dyn = gt["is_dynamic"][valid]
        for label, sel in (("static", ~dyn), ("dynamic", dyn)):
            if sel.any():
                m = compute_tapvid_metrics(queries_tyx[valid][sel], gt_xy[sel], gt["visibles"][valid][sel],
                                           pred_xy[valid][sel], pred_vis[valid][sel], image_hw, "first")
                print(f"    {label:7s} tracks {int(sel.sum()):5d}  <delta_avg "
                      f"{m['average_pts_within_thresh']:.3f}  OA {m['occlusion_accuracy']:.3f}  "
                      f"AJ {m['average_jaccard']:.3f}")


#: Oracle tracks of the gt file's queries must match the stored ones to this (px).
ORACLE_CHECK_TOL_PX = 0.01
#: Queries of the gt file re-traced by the oracle for the consistency check.
ORACLE_CHECK_QUERIES = 50


def check_oracle(oracle, gt_path) -> None:
    """Warns when the oracle disagrees with the gt file (scene code changed after rendering)."""
    with np.load(gt_path) as z:
        queries = z["query_points_tyx"][:ORACLE_CHECK_QUERIES]
        stored_xy, stored_vis = z["tracks_xy"][:ORACLE_CHECK_QUERIES], z["visibles"][:ORACLE_CHECK_QUERIES]
    traced = oracle.tracks_for_queries(queries)
    diff = np.nanmax(np.abs(traced["tracks_xy"] - stored_xy)) if len(queries) else 0.0
    if diff > ORACLE_CHECK_TOL_PX or np.any(traced["visibles"] != stored_vis):
        print(f"WARNING: the oracle does not reproduce {gt_path} (max {diff:.2f} px): the scene code "
              "changed since the clip was rendered; re-render it. Pipeline-query scores are invalid.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vid", default="synthetic_street_1000000")
    parser.add_argument("--output_folder", default="stereo4d_dataset/processed")
    parser.add_argument("--gt_folder", default="stereo4d_dataset/gt")
    parser.add_argument("--backend", default="dis-flow", choices=TRACKING_BACKENDS.choices())
    parser.add_argument("--path", default=None, help="BootsTAPIR checkpoint")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--num_scored", type=int, default=3000, help="kept tracks scored against the oracle")
    parser.add_argument("--grid_stride_px", type=int, default=4)
    parser.add_argument("--gt_queries", action="store_true", help="also track the gt file's own queries")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from stereo4d.synthetic import SyntheticOracle

    paths = ClipPaths(args.vid, output_folder=args.output_folder, gt_folder=args.gt_folder)
    frames = read_video(paths.left_video)
    num_frames, height, width = frames.shape[:3]
    entry, tracker = TRACKING_BACKENDS.build(args.backend, path=args.path, device=args.device,
                                             progress=False)
    timer = Timer()
    t0 = time.perf_counter()
    tracks, counts = track_video(frames, tracker, QueryConfig(grid_stride_px=args.grid_stride_px,
                                                              seed=args.seed), timer)
    total = time.perf_counter() - t0
    print(f"{entry.name}: {num_frames} frames {width}x{height}, {counts['num_queries']} queries, "
          f"{counts['num_kept']} kept ({counts['pruned_percent']:.2f}% pruned)")
    print(f"time: track {timer.seconds['track']:.2f} s ({1e3 * timer.seconds['track'] / num_frames:.1f} "
          f"ms/frame), prune {timer.seconds['prune']:.2f} s, total {total:.2f} s")

    oracle = SyntheticOracle.from_gt_file(paths.gt)
    check_oracle(oracle, paths.gt)
    rng = np.random.default_rng(args.seed)
    pick = np.sort(rng.choice(tracks.num_tracks, min(args.num_scored, tracks.num_tracks), replace=False))
    queries = tracks.query_points_tyx[pick].astype(np.float64)
    t0 = time.perf_counter()
    gt = oracle.tracks_for_queries(queries)
    print(f"oracle: {len(pick)} tracks in {time.perf_counter() - t0:.1f} s")
    score("pipeline queries", queries, tracks.tracks_xy[pick], tracks.visibles[pick], gt, (height, width))

    if args.gt_queries:
        with np.load(paths.gt) as z:
            gt_file = {k: z[k] for k in ("query_points_tyx", "tracks_xy", "visibles", "is_dynamic")}
        t0 = time.perf_counter()
        pred_xy, pred_vis = tracker.track(frames, gt_file["query_points_tyx"])
        print(f"gt queries: {len(pred_xy)} tracked in {time.perf_counter() - t0:.1f} s")
        score("gt queries      ", gt_file["query_points_tyx"], pred_xy, pred_vis, gt_file, (height, width))


if __name__ == "__main__":
    main()
