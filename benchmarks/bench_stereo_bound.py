"""What stereo precision APD3D on covered points needs: per suite clip, the disparity precision
at which a pipeline perfect but for its stereo would reach a target APD3D, beside the
precision the final 3D tracks actually show.

Reads the suite's processed clips (run benchmarks/bench_suite.py first); scores the final
tracks' covered points (true-visible, with an estimate) as `tracks3d.after.apd3d_covered`.
For each clip it prints:
  * the covered points' depths (median, share beyond 10 m);
  * APD3D covered of the final tracks;
  * their depth error as a disparity error (median |e|, and the Gaussian sigma whose expected
    APD3D equals the measured one: the precision the output behaves as if it had);
  * the sigma a stereo alone would need for the target (default 0.80), with every other stage
    perfect (`stereo4d.metrics.stereo_bound`);
  * the expected APD3D at the clip's per-pixel stereo EPE taken as sigma.
Example: python benchmarks/bench_stereo_bound.py --root=stereo4d_dataset/suite --half=heldout
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from stereo4d.depth import BASELINE_M
from stereo4d.geometry import PinholeCamera, focal_length_px
from stereo4d.io import InputError, load_dataset_npz, load_json, save_json
from stereo4d.metrics.stereo_bound import disparity_error_px, expected_apd3d, sigma_for_apd3d
from stereo4d.metrics.tracks3d import apd3d, eval_focal_px
from stereo4d.suite import DEMO_CLIP, SUITE_CLIPS, clip_paths
from stereo4d.tracks import Tracks2D

#: Horizontal FoV of the suite's rectified views (degrees).
HFOV_DEG = 60.0
#: Depth (m) beyond which a covered point counts as far in the table.
FAR_DEPTH_M = 10.0


def bound_clip(paths, target: float) -> dict:
    """The figures above for one processed clip (see the module docstring)."""
    from stereo4d.synthetic import SyntheticOracle

    for need in (paths.filtered_tracks, paths.export_npz, paths.npz, paths.gt):
        if not need.is_file():
            raise InputError(f"{paths.vid}: {need} is missing (run benchmarks/bench_suite.py)")
    filtered = Tracks2D.load(paths.filtered_tracks)
    truth = SyntheticOracle.from_gt_file(paths.gt).tracks_for_queries(filtered.query_points_tyx)
    optimized = load_dataset_npz(paths.export_npz)["track3d"].astype(np.float64)
    extrs = load_dataset_npz(paths.npz, required=("camera2world",))["extrs_rectified"]
    with np.load(paths.gt, allow_pickle=False) as z:
        width_px = int(z["depth_m"].shape[-1])
    covered = np.all(np.isfinite(optimized), axis=-1) & np.asarray(truth["visibles"], bool)
    cameras = PinholeCamera.from_hfov(extrs, HFOV_DEG)
    gt_cam = cameras.to_camera(np.nan_to_num(truth["tracks3d_world"]))[covered]
    pred_cam = cameras.to_camera(optimized)[covered]
    depth_m = gt_cam[:, 2]
    ray_norm = np.linalg.norm(gt_cam, axis=-1) / depth_m
    focal = focal_length_px(HFOV_DEG, width_px)
    f_eval = eval_focal_px(HFOV_DEG)
    args = (focal, BASELINE_M, f_eval)
    err_px = disparity_error_px(pred_cam[:, 2], depth_m, focal, BASELINE_M)
    measured = apd3d(optimized, truth["tracks3d_world"], covered, truth["depth_m"],
                     f_eval)["apd3d"]
    score_path = paths.out("suite_evaluation.json")
    epe = load_json(score_path).get("stereo.epe_px") if score_path.is_file() else None
    report = {
        "points": int(covered.sum()),
        "median_depth_m": float(np.median(depth_m)),
        "far_share": float(np.mean(depth_m > FAR_DEPTH_M)),
        "apd3d_covered": measured,
        "median_abs_disparity_error_px": float(np.nanmedian(np.abs(err_px))),
        "equivalent_sigma_px": sigma_for_apd3d(measured, depth_m, ray_norm, *args),
        "sigma_needed_px": sigma_for_apd3d(target, depth_m, ray_norm, *args),
        "stereo_epe_px": float(epe) if epe is not None else float("nan"),
    }
    report["apd3d_at_epe"] = (expected_apd3d(depth_m, ray_norm, report["stereo_epe_px"], *args)
                              if np.isfinite(report["stereo_epe_px"]) else float("nan"))
    return report


_COLUMNS = (
    ("points", "covered points", "{:d}"),
    ("median_depth_m", "median depth (m)", "{:.1f}"),
    ("far_share", f"beyond {FAR_DEPTH_M:.0f} m", "{:.2f}"),
    ("apd3d_covered", "APD3D covered", "{:.3f}"),
    ("median_abs_disparity_error_px", "median abs disparity error (px)", "{:.3f}"),
    ("equivalent_sigma_px", "equivalent sigma (px)", "{:.3f}"),
    ("sigma_needed_px", "sigma needed (px)", "{:.3f}"),
    ("stereo_epe_px", "stereo EPE (px)", "{:.3f}"),
    ("apd3d_at_epe", "bound at sigma = EPE", "{:.3f}"),
)


def format_table(per_clip: dict, target: float) -> str:
    head = [label.replace("sigma needed", f"sigma needed for {target:.2f}")
            for _, label, _ in _COLUMNS]
    lines = ["| clip | " + " | ".join(head) + " |", "|---|" + "---:|" * len(head)]
    for name, row in per_clip.items():
        lines.append(f"| {name} | " + " | ".join(
            fmt.format(row[k]) if k != "points" else str(row[k]) for k, _, fmt in _COLUMNS) + " |")
    means = {k: float(np.mean([r[k] for r in per_clip.values()])) for k, _, _ in _COLUMNS}
    lines.append("| **mean** | " + " | ".join(
        fmt.format(means[k]) if k != "points" else f"{means[k]:.0f}" for k, _, fmt in _COLUMNS)
        + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default="stereo4d_dataset/suite",
                        help="folder of the suite's processed clips (benchmarks/bench_suite.py)")
    parser.add_argument("--half", default="heldout", choices=("tuning", "heldout"))
    parser.add_argument("--clips", default="", help="comma-separated clip names (default: the "
                        "half); 'demo' names the demo clip")
    parser.add_argument("--target", type=float, default=0.80, help="APD3D on covered points")
    parser.add_argument("--json", default=None, help="output JSON (default: none)")
    args = parser.parse_args(argv)
    every = {c.name: c for c in SUITE_CLIPS + (DEMO_CLIP,)}
    names = [n for n in args.clips.split(",") if n]
    unknown = sorted(set(names) - set(every))
    if unknown:
        print(f"error: unknown clip(s) {unknown}", file=sys.stderr)
        return 2
    if not 0.0 < args.target < 1.0:
        print(f"error: --target must be in (0, 1), got {args.target}", file=sys.stderr)
        return 2
    clips = [every[n] for n in names] if names else [c for c in SUITE_CLIPS
                                                      if c.half == args.half]
    root = Path(args.root)
    try:
        per_clip = {c.name: bound_clip(clip_paths(c, root), args.target) for c in clips}
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(per_clip, args.target))
    if args.json:
        save_json(per_clip, Path(args.json))
    return 0


if __name__ == "__main__":
    sys.exit(main())
