"""Stereo stage figures: accuracy (Middlebury motorcycle, exact layered render, synthetic clip)
and speed of the classical backend at 512x512.

Usage:
  python benchmarks/bench_stereo.py    # motorcycle + layered pair + speed + the demo clip
  python benchmarks/bench_stereo.py --synthetic_vid=synthetic_street_1000000 \\
      --output_folder=... --gt_folder=...    # another synthetic clip (after rectify.py)

The synthetic clip is skipped (with a note) when its rectified videos or ground
truth are missing; make them with ``make_synthetic_clip.py`` and ``rectify.py``.

Variants: ``sgbm default`` (refinement + confidence rejection), ``no confidence``
(refinement only), ``no refinement`` (SGBM's own sub-pixel fit, no rejection),
``fill`` and ``hh4`` (8-path SGBM).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from stereo4d import depth as depth_lib
from stereo4d.backends.classical_stereo import SgbmSettings, SgbmStereo
from stereo4d.io import ClipPaths
from stereo4d.metrics import stereo as metrics
from stereo4d.videoio import read_video
from tests.test_classical_stereo import evaluate_pair, render_layered_pair

SPEED_SIZE_PX = 512
SPEED_FRAMES = 6
DEMO_VID = "synthvr180demo_66667"
"""The synthetic demo clip (``make_synthetic_clip.py --vid=...``), evaluated by default."""


def _fmt(m: dict) -> str:
    return (f"EPE {m['epe_px']:.3f} px, bad-1 {m['bad1']:.4f}, density {m['density']:.3f}, "
            f"AbsRel {m['abs_rel']:.2%}, delta<1.25 {m['delta_1.25']:.4f} "
            f"(EPE on all eval px {m['epe_all_px']:.3f})")


def bench_motorcycle(variants: dict[str, SgbmSettings]) -> None:
    from skimage.data import stereo_motorcycle

    left, right, disparity_gt = stereo_motorcycle()  # quarter size: 741x500, disparity 7..60 px
    for name, settings in variants.items():
        t0 = time.perf_counter()
        disparity = SgbmStereo(settings).disparities(left, right)[0]
        seconds = time.perf_counter() - t0
        valid = np.isfinite(disparity_gt)
        have = valid & np.isfinite(disparity) & (disparity > 0)
        err = np.abs(disparity - disparity_gt)[have]
        print(f"motorcycle 741x500 [{name}]: bad-2 (missing = bad) "
              f"{metrics.middlebury_bad(disparity, disparity_gt, 2.0):.3f}, "
              f"coverage {have.sum() / valid.sum():.3f}, EPE on covered {err.mean():.3f} px, "
              f"median {np.median(err):.3f} px, {seconds:.2f} s")


def bench_layered(variants: dict[str, SgbmSettings]) -> None:
    left, right, disp_left, disp_right = render_layered_pair(SPEED_SIZE_PX, SPEED_SIZE_PX)
    for name, settings in variants.items():
        flows = SgbmStereo(settings).compute_flows(left[None], right[None])
        print(f"layered render 512x512 [{name}]: " + _fmt(evaluate_pair(flows, disp_left, disp_right)))


def bench_speed(variants: dict[str, SgbmSettings]) -> None:
    left, right, _, _ = render_layered_pair(SPEED_SIZE_PX, SPEED_SIZE_PX)
    lefts, rights = np.stack([left] * SPEED_FRAMES), np.stack([right] * SPEED_FRAMES)
    for name, settings in variants.items():
        backend = SgbmStereo(settings)
        backend.compute_flows(lefts[:1], rights[:1])  # warm-up
        t0 = time.perf_counter()
        backend.compute_flows(lefts, rights)
        seconds = time.perf_counter() - t0
        print(f"speed 512x512 [{name}]: {SPEED_FRAMES / seconds:.2f} frames/s "
              f"(both directions, {seconds / SPEED_FRAMES * 1000:.0f} ms/frame)")


def bench_synthetic(paths: ClipPaths, variants: dict[str, SgbmSettings], max_frames: int,
                    stride: int) -> None:
    missing = [str(p) for p in (paths.gt, paths.left_video, paths.right_video) if not p.is_file()]
    if missing:
        print(f"synthetic clip {paths.vid}: skipped, missing {', '.join(missing)}")
        return
    frames = slice(None, stride * max_frames, stride)
    with np.load(paths.gt) as gt:
        disparity_gt = gt["disparity_px"][frames].astype(np.float64)
        depth_gt = gt["depth_m"][frames].astype(np.float64)
        hfov = float(gt["hfov_deg"])
    left, right = read_video(paths.left_video)[frames], read_video(paths.right_video)[frames]
    valid_gt = np.isfinite(depth_gt) & (disparity_gt > 0) & (depth_gt <= depth_lib.MAX_DEPTH_M)
    eval_mask = valid_gt & metrics.non_occluded_from_left_disparity(
        disparity_gt, float(disparity_gt.max()))
    print(f"synthetic clip {paths.vid}: {len(left)} frames (every {stride}th) "
          f"{left.shape[2]}x{left.shape[1]}, "
          f"GT disparity {disparity_gt[valid_gt].min():.2f}..{disparity_gt.max():.1f} px, "
          f"eval pixels {eval_mask.mean():.1%}")
    for name, settings in variants.items():
        t0 = time.perf_counter()
        flows = SgbmStereo(settings).compute_flows(left, right)
        seconds = time.perf_counter() - t0
        fwd = np.stack([f["fwd"] for f in flows])
        for floaters in (False, True):
            depth = depth_lib.depth_maps_from_flows(flows, hfov, remove_floaters=floaters)
            m = metrics.stereo_metrics(fwd, depth, disparity_gt, depth_gt, eval_mask)
            print(f"  [{name}{', floaters removed' if floaters else ''}] " + _fmt(m)
                  + (f", {len(left) / seconds:.2f} frames/s" if not floaters else ""))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic_vid", default=DEMO_VID,
                        help="synthetic clip to evaluate ('' to skip)")
    parser.add_argument("--output_folder", default="stereo4d_dataset/processed")
    parser.add_argument("--gt_folder", default="stereo4d_dataset/gt")
    parser.add_argument("--max_frames", type=int, default=12)
    parser.add_argument("--stride", type=int, default=4, help="use every stride-th frame")
    args = parser.parse_args(argv)
    default = SgbmSettings()
    variants = {
        "sgbm default": default,
        "no confidence": replace(default, max_relative_noise=0.0),
        "no refinement": replace(default, refine_iterations=0, max_relative_noise=0.0),
        "fill": replace(default, fill=True),
        "hh4": replace(default, mode="hh4"),
    }
    bench_motorcycle(variants)
    bench_layered(variants)
    bench_speed({k: variants[k] for k in ("sgbm default", "no refinement", "hh4")})
    if args.synthetic_vid:
        paths = ClipPaths(args.synthetic_vid, output_folder=args.output_folder,
                          gt_folder=args.gt_folder)
        bench_synthetic(paths, variants, args.max_frames, args.stride)


if __name__ == "__main__":
    main()
