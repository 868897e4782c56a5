"""How much of a compressed clip's stereo error is in the data: an oracle matcher on the clip
and on its uncompressed twin (`stereo4d.metrics.compression_floor`).

For each suite clip named (default t4 and h4, the low-bitrate 4:2:0 ones), the twin is the
same clip (seed, scene, camera path) rendered with the clean clips' raw video (x264 crf 10,
4:4:4 chroma) into `--twin_root`; it is rendered, rectified and run through the stereo stage
there when missing. On every `--frame_stride`-th frame, on the pixels the pipeline keeps on both
versions (valid depth after its checks, inside the evaluation mask), the table gives
the disparity EPE and depth AbsRel of:
  * the pipeline (the stereo stage's output of each version), and the same with its errors
    clipped to the oracles' search interval (+-1 px: its gross errors made no larger than an
    oracle's can be);
  * each oracle of `ORACLE_VARIANTS`: the sub-pixel offset within +-1 px of the true disparity
    that minimises the SSD of the views minus their local mean (the images the pipeline's
    sub-pixel refinement compares; each scaled to unit RMS so an exposure or eye-gain
    difference does not bias the SSD), over a block of the true surface's shape, over one
    stereo pair, 5 or 13 pairs (the fusion's span) or one pair plus the left view 6 and 12
    frames away (the temporal refinement's views).
With `--suite_json` (bench_suite.py's JSON) it also prints the 85 % line of the issue for each
figure: the held-out mean / 0.85.
Example: python benchmarks/bench_compression_floor.py --root=stereo4d_dataset/suite
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from stereo4d.backends.imageops import to_gray
from stereo4d.backends.stereo_refine import remove_local_mean
from stereo4d.depth import depth_maps_from_flows
from stereo4d.evaluation import MAX_GT_DISPARITY_PX
from stereo4d.io import InputError, load_json, load_stereo_flows, save_json
from stereo4d.metrics.compression_floor import (
    ORACLE_VARIANTS,
    SEARCH_PX,
    floor_errors,
    oracle_frame,
)
from stereo4d.metrics.stereo import non_occluded_from_left_disparity
from stereo4d.stages.stereo import read_stereo_pair
from stereo4d.suite import SUITE_CLIPS, SuiteClip, clip_paths, render, stage_runs

#: Horizontal FoV of the suite's rectified views (degrees).
HFOV_DEG = 60.0
#: Raw video of the twin: the clean suite clips' settings.
TWIN_CRF = 10
#: High-pass of the matching images: the sgbm backend's ``refine_highpass_sigma_px``.
HIGHPASS_SIGMA_PX = 3.0
#: The issue's rule: no clip's figure below this fraction of the held-out mean.
CLIP_FRACTION = 0.85
_SUITE_KEYS = {"epe_px": "stereo.epe_px", "depth_absrel": "stereo.depth_absrel"}


def twin_of(clip: SuiteClip) -> SuiteClip:
    """The clip with the clean clips' raw video (name ``<name>twin``)."""
    config = dataclasses.replace(clip.config, crf=TWIN_CRF, chroma_444=True)
    return SuiteClip(f"{clip.name}twin", clip.half, f"{clip.about} (uncompressed twin)", config)


def ensure_stereo(clip: SuiteClip, root: Path) -> None:
    """Renders ``clip`` under ``root`` and runs its rectify and stereo stages (the suite's
    settings, ``suite.stage_runs``) where their outputs are missing."""
    paths = clip_paths(clip, root)
    render(clip, paths)
    for name, _, outputs, run in stage_runs(paths, clip.config.gt_size_px, progress=False):
        if not all(path.is_file() for path in outputs):
            run()
        if name == "stereo":
            break


def matching_images(frames_uint8: np.ndarray) -> np.ndarray:
    """uint8 [T, H, W, 3] -> float32 [T, H, W]: grey minus its local mean, unit RMS per frame."""
    out = np.stack([remove_local_mean(to_gray(f), HIGHPASS_SIGMA_PX) for f in frames_uint8])
    return out / np.sqrt(np.mean(out**2, axis=(1, 2), keepdims=True))


def _load_truth(gt_path: Path) -> dict:
    """The ground truth the oracles need, and ``static`` [T, H, W]: pixels on an object the
    clip's scene does not move (``SyntheticOracle``'s scene)."""
    from stereo4d.synthetic import SyntheticOracle

    with np.load(gt_path, allow_pickle=False) as z:
        truth = {k: z[k] for k in ("disparity_px", "depth_m", "object_id", "camera2world",
                                   "focal_px", "baseline_m")}
    dynamic = SyntheticOracle.from_gt_file(gt_path).scene.is_dynamic  # [objects] bool
    object_id = truth["object_id"]
    hit = object_id >= 0
    truth["static"] = hit & ~dynamic[np.where(hit, object_id, 0)]
    return truth


def _check_processed(paths) -> None:
    """InputError unless the clip's ground truth and stereo output exist."""
    for path in (paths.gt, paths.stereo_output):
        if not path.is_file():
            raise InputError(f"{paths.vid}: {path} is missing (run bench_suite.py)")


def _kept_pixels(paths, truth: dict) -> tuple[np.ndarray, np.ndarray]:
    """(mask bool [T, H, W] of the evaluation pixels with a valid stage depth, disparity [T, H, W])."""
    _check_processed(paths)
    flows = load_stereo_flows(paths.stereo_output)
    depth = depth_maps_from_flows(flows, HFOV_DEG, remove_floaters=False)
    disparity_gt = truth["disparity_px"]
    evaluated = ((disparity_gt > 0) & np.isfinite(truth["depth_m"])
                 & non_occluded_from_left_disparity(disparity_gt, MAX_GT_DISPARITY_PX))
    return evaluated & (depth > 0), -np.stack([f["fwd"][..., 0] for f in flows])


def floor_clip(clip: SuiteClip, root: Path, twin_root: Path, frame_stride: int) -> dict:
    """{version: {row: {"epe_px", "depth_absrel", "pixels"}}} for the compressed clip and its
    twin, on the pixels of every ``frame_stride``-th frame that the pipeline keeps on both
    (and whose match stays inside the views for every oracle: all but a few near the left
    edge)."""
    paths = clip_paths(clip, root)
    truth = _load_truth(paths.gt)
    mask = None
    twin = twin_of(clip)
    ensure_stereo(twin, twin_root)
    frames = list(range(0, len(truth["disparity_px"]), frame_stride))
    fb = float(truth["focal_px"] * truth["baseline_m"])
    offsets = {}
    for version, version_paths in (("compressed", paths), ("twin", clip_paths(twin, twin_root))):
        kept, disparity = _kept_pixels(version_paths, truth)
        mask = kept if mask is None else mask & kept
        left, right = (matching_images(v) for v in read_stereo_pair(version_paths))
        pipeline = disparity[frames] - truth["disparity_px"][frames]
        offsets[version] = {"pipeline": pipeline,
                            "pipeline, errors clipped to the search": np.clip(
                                pipeline, -SEARCH_PX, SEARCH_PX)}
        per_frame = [oracle_frame(t, left, right, truth["disparity_px"], truth["depth_m"],
                                  truth["static"], truth["camera2world"],
                                  float(truth["focal_px"]), float(truth["baseline_m"]))
                     for t in tqdm(frames, desc=f"{clip.name} {version}", leave=False)]
        offsets[version].update({name: np.stack([f[name] for f in per_frame])
                                 for name in ORACLE_VARIANTS})
    # Every row on the same pixels: kept by both versions' pipeline, and with every oracle's
    # own pair inside the views.
    common = mask[frames] & np.all([np.isfinite(o) for rows in offsets.values()
                                    for o in rows.values()], axis=0)
    return {version: {name: floor_errors(o, truth["disparity_px"][frames],
                                         truth["depth_m"][frames], common, fb)
                      for name, o in rows.items()} for version, rows in offsets.items()}


def format_table(name: str, report: dict, line: dict | None) -> str:
    rows = ["| matcher | EPE px | depth AbsRel | EPE px, twin | depth AbsRel, twin |",
            "|---|---:|---:|---:|---:|"]
    for row in report["compressed"]:
        cells = [report[v][row] for v in ("compressed", "twin")]
        rows.append(f"| {row} | " + " | ".join(
            f"{c['epe_px']:.3f} | {100 * c['depth_absrel']:.2f} %" for c in cells) + " |")
    pixels = report["compressed"]["pipeline"]["pixels"]
    head = f"{name}: {pixels} kept pixels"
    if line:
        head += (f"; 85 % line: EPE <= {line['epe_px']:.3f} px, AbsRel <= "
                 f"{100 * line['depth_absrel']:.2f} %")
    return head + "\n" + "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default="stereo4d_dataset/suite",
                        help="folder of the suite's processed clips (benchmarks/bench_suite.py)")
    parser.add_argument("--twin_root", default=None,
                        help="folder of the uncompressed twins (default: <root>/twins)")
    parser.add_argument("--clips", default="t4,h4", help="comma-separated suite clip names")
    parser.add_argument("--frame_stride", type=int, default=4, help="score every n-th frame")
    parser.add_argument("--suite_json", default=None,
                        help="bench_suite.py's JSON, for the 85 %% line of the held-out mean")
    parser.add_argument("--json", default=None, help="output JSON (default: none)")
    args = parser.parse_args(argv)
    every = {c.name: c for c in SUITE_CLIPS}
    names = [n for n in args.clips.split(",") if n]
    unknown = sorted(set(names) - set(every))
    if unknown or not names:
        print(f"error: unknown or no clip(s) {unknown or args.clips!r}", file=sys.stderr)
        return 2
    if args.frame_stride < 1:
        print(f"error: --frame_stride must be >= 1, got {args.frame_stride}", file=sys.stderr)
        return 2
    root = Path(args.root)
    twin_root = Path(args.twin_root) if args.twin_root else root / "twins"
    line = None
    try:
        if args.suite_json:
            mean = load_json(Path(args.suite_json))["summary"]["heldout"]["mean"]
            line = {k: mean[key] / CLIP_FRACTION for k, key in _SUITE_KEYS.items()}
        for name in names:  # checked before any long work
            _check_processed(clip_paths(every[name], root))
        t0 = time.perf_counter()
        reports = {n: floor_clip(every[n], root, twin_root, args.frame_stride) for n in names}
    except (InputError, FileNotFoundError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, report in reports.items():
        print(format_table(name, report, line) + "\n")
    print(f"{time.perf_counter() - t0:.0f} s")
    if args.json:
        save_json({"clips": reports, "line": line, "frame_stride": args.frame_stride},
                  Path(args.json))
    return 0


if __name__ == "__main__":
    sys.exit(main())
