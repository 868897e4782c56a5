"""Benchmark of estimate_cameras.py: camera accuracy against synthetic truth, and its cost.

For each seed, renders a synthetic VR180 clip (make_synthetic_clip.py; movers include a person
walking ahead of the camera) unless present, estimates its cameras from the raw video alone into
a separate npz folder, and prints per clip and against the issue's targets:

* ATE (cm, and % of the path) after a rigid alignment, RPE rotation (deg/frame), scale error;
* ``rectified2rig`` error per eye (deg, after the unobservable common rotation about the
  baseline is removed; the removed angle is printed too) and the median vertical disparity
  (px, 512 px / 60 deg views) of the estimated rectification;
* ``rectified2rig``'s error split in two (``metrics.cameras.rig_error_parts_deg``): the eyes'
  relative rotation (what rectification depends on) and the baseline's direction, each beside
  the standard deviation the bundle adjustment's own covariance gives it
  (``backends.rig_covariance``, from the stage's provenance JSON): an error of the order of its
  standard deviation is what the video's data allow, not an estimation shortfall;
* wall-clock and CPU seconds (CPU = the child process's user + system time: on a shared
  machine the wall clock mostly measures waiting; on 2 free cores wall ~ CPU / 2) and the
  machine's 1-minute load average during the run (2 = both cores busy).

``--downstream`` also runs the whole pipeline and evaluate.py on each clip twice, with the
true npz and with the estimated one (aligned to the truth's world frame and baseline gauge,
``metrics.cameras.align_to_reference``), and prints the APD3D and AbsRel differences.

Seeds used while developing the stage: 0, 3, 5 (the test clip) and 1 (the mapper's track subset).
Report on others.

Usage:
  .venv/bin/python benchmarks/bench_cameras.py --data=/tmp/cams --seeds=2,4,6 --num_frames=48
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from stereo4d.io import ClipPaths, load_dataset_npz, save_dataset_npz
from stereo4d.metrics import cameras as camera_metrics

REPO_ROOT = Path(__file__).resolve().parents[1]
SYNTHETIC_FOV = "-50,50,-50,50"
TARGETS = {"ate_cm": 2.0, "ate_pct": 1.0, "rpe_deg": 0.05, "rig_deg": 0.02, "vdisp_px": 0.2,
           "apd3d": 0.02, "absrel_pct": 0.5}
PIPELINE = (("rectify.py", "--min_equirect_height=0", "--skip_equirect_videos"),
            ("inference_raft.py",), ("tracking.py",), ("segmentation.py",),
            ("track_optimization.py",))


def _run(cmd: list[str]) -> tuple[float, float]:
    """Runs a child; returns (wall s, CPU s of that child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    result = subprocess.run([sys.executable, *cmd], cwd=REPO_ROOT, capture_output=True, text=True,
                            check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode:
        raise SystemExit(f"{' '.join(cmd[:2])} failed:\n{result.stderr[-3000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _folders(paths: ClipPaths, npz_folder: Path, raw: bool = True) -> list[str]:
    folders = [f"--vid={paths.vid}", f"--npz_folder={npz_folder}",
               f"--output_folder={paths.output_folder}"]
    return folders + ([f"--raw_video_folder={paths.raw_video_folder}"] if raw else [])


def _clip(data: Path, seed: int, num_frames: int) -> ClipPaths:
    paths = ClipPaths(f"camseed{seed}_100000", data / "npz", data / "raw", data / "processed",
                      data / "gt")
    if not paths.gt.is_file():
        _run(["make_synthetic_clip.py", *_folders(paths, paths.npz_folder),
              f"--gt_folder={paths.gt_folder}", f"--seed={seed}", f"--num_frames={num_frames}"])
    return paths


def _evaluate(paths: ClipPaths, npz_folder: Path, output: Path) -> dict:
    run = ClipPaths(paths.vid, npz_folder, paths.raw_video_folder, output, paths.gt_folder)
    for step in PIPELINE:
        _run([step[0], *_folders(run, npz_folder, raw=step[0] == "rectify.py"), *step[1:]])
    report = output / "evaluation.json"
    _run(["evaluate.py", *_folders(run, npz_folder, raw=False), f"--gt_folder={paths.gt_folder}",
          f"--json={report}"])
    return json.loads(report.read_text())


def _find(tree: dict, key: str):
    """First value under a key ending with ``key`` in a nested dict (flattened search)."""
    stack = [("", tree)]
    while stack:
        prefix, node = stack.pop(0)
        for k, v in node.items():
            if isinstance(v, dict):
                stack.append((f"{prefix}{k}.", v))
            elif f"{prefix}{k}".endswith(key):
                return float(v)
    return float("nan")


def bench_clip(paths: ClipPaths, data: Path, num_frames: int, downstream: bool) -> dict:
    est_folder = data / "npz_estimated"
    load = os.getloadavg()[0]
    wall, cpu = _run(["estimate_cameras.py", *_folders(paths, est_folder),
                      f"--num_frames={num_frames}", f"--fov_bounds={SYNTHETIC_FOV}", "--force"])
    est = load_dataset_npz(est_folder / f"{paths.vid}.npz")
    stage = json.loads(ClipPaths(paths.vid, est_folder, paths.raw_video_folder,
                                 paths.output_folder).provenance("cameras").read_text())["summary"]
    true = load_dataset_npz(paths.npz)
    traj = camera_metrics.trajectory_errors(est["camera2world"], true["camera2world"])
    rig_err, gauge_deg = camera_metrics.rig_rotation_errors_deg(est["rectified2rig"],
                                                                true["rectified2rig"])
    parts = camera_metrics.rig_error_parts_deg(est["rectified2rig"], true["rectified2rig"])
    row = {
        "vid": paths.vid, "frames": num_frames, "path_m": traj["path_m"],
        "ate_cm": 100 * traj["ate_m"], "ate_pct": 100 * traj["ate_fraction"],
        "rpe_deg": traj["rpe_rot_deg"], "scale_pct": 100 * traj["scale_error"],
        "rig_left_deg": float(rig_err[0]), "rig_right_deg": float(rig_err[1]),
        "gauge_deg": gauge_deg, "rig_rel_deg": parts["relative_deg"],
        "baseline_dir_deg": parts["baseline_deg"],
        "rel_std_deg": stage.get("rig_relative_rot_std_deg", float("nan")),
        "baseline_std_deg": stage.get("rig_baseline_dir_std_deg", float("nan")),
        "vdisp_px": camera_metrics.vertical_disparity_px(est["rectified2rig"],
                                                         true["rectified2rig"], 0.063),
        "wall_s": wall, "cpu_s": cpu, "load": (load + os.getloadavg()[0]) / 2,
    }
    if downstream:
        aligned_folder = data / "npz_aligned"
        c2w, r2r = camera_metrics.align_to_reference(est["camera2world"], est["rectified2rig"],
                                                     true["camera2world"], true["rectified2rig"])
        save_dataset_npz(aligned_folder / f"{paths.vid}.npz", name=paths.vid,
                         video_id=paths.video_id, timestamps_us=est["timestamps"],
                         camera2world=c2w, track3d=true["track3d"], rectified2rig=r2r,
                         fov_bounds_deg=est["fov_bounds"])
        with_true = _evaluate(paths, paths.npz_folder, data / "processed_true")
        with_est = _evaluate(paths, aligned_folder, data / "processed_estimated")
        for name, key in (("apd3d", "after.apd3d"), ("absrel", "depth_absrel")):
            row[f"{name}_true"], row[f"{name}_est"] = _find(with_true, key), _find(with_est, key)
    return row


def format_table(rows: list[dict]) -> str:
    cols = [("vid", "clip", "{}"), ("path_m", "path m", "{:.2f}"), ("ate_cm", "ATE cm", "{:.2f}"),
            ("ate_pct", "ATE %", "{:.2f}"), ("rpe_deg", "RPE deg/fr", "{:.3f}"),
            ("scale_pct", "scale %", "{:.2f}"), ("rig_left_deg", "rig L deg", "{:.3f}"),
            ("rig_right_deg", "rig R deg", "{:.3f}"), ("rig_rel_deg", "rig rel deg", "{:.4f}"),
            ("rel_std_deg", "rel std deg", "{:.4f}"),
            ("baseline_dir_deg", "baseline dir deg", "{:.3f}"),
            ("baseline_std_deg", "baseline std deg", "{:.3f}"),
            ("gauge_deg", "gauge deg", "{:.2f}"),
            ("vdisp_px", "vdisp px", "{:.3f}"), ("wall_s", "wall s", "{:.0f}"),
            ("cpu_s", "CPU s", "{:.0f}"), ("load", "load", "{:.1f}")]
    if rows and "apd3d_true" in rows[0]:
        cols += [("apd3d_true", "APD3D true", "{:.3f}"), ("apd3d_est", "APD3D est", "{:.3f}"),
                 ("absrel_true", "AbsRel true", "{:.4f}"), ("absrel_est", "AbsRel est", "{:.4f}")]
    lines = ["| " + " | ".join(c[1] for c in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(fmt.format(r[k]) for k, _, fmt in cols) + " |")
    med = {k: float(np.median([r[k] for r in rows])) for k, _, _ in cols[1:]}
    lines.append("| median | " + " | ".join(fmt.format(med[k]) for k, _, fmt in cols[1:]) + " |")
    checks = [("ATE <= 2 cm", med["ate_cm"] <= TARGETS["ate_cm"]),
              ("ATE <= 1 % path", med["ate_pct"] <= TARGETS["ate_pct"]),
              ("RPE <= 0.05 deg/frame", med["rpe_deg"] <= TARGETS["rpe_deg"]),
              ("rig <= 0.02 deg/eye", max(med["rig_left_deg"], med["rig_right_deg"])
               <= TARGETS["rig_deg"]),
              ("vertical disparity <= 0.2 px", med["vdisp_px"] <= TARGETS["vdisp_px"])]
    lines.append("targets (medians): " + "; ".join(f"{n}: {'met' if ok else 'NOT met'}"
                                                   for n, ok in checks))
    ratio = [r["baseline_dir_deg"] / r["baseline_std_deg"] for r in rows]
    lines.append(
        f"baseline direction: error / bundle-adjustment std = {np.median(ratio):.2f} (median); "
        f"std {med['baseline_std_deg']:.3f} deg (median) vs the 0.02 deg target: the data "
        "determine it to about that std at best")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="folder for clips and outputs")
    parser.add_argument("--seeds", default="2,4,6", help="synthetic scene seeds (held out)")
    parser.add_argument("--num_frames", type=int, default=48)
    parser.add_argument("--reuse", action="store_true",
                        help="reuse rows measured by an earlier run (<data>/rows/<vid>.json)")
    parser.add_argument("--downstream", action="store_true",
                        help="also run the pipeline + evaluation with true vs estimated cameras")
    args = parser.parse_args(argv)
    data = Path(args.data)
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        paths = _clip(data, seed, args.num_frames)
        saved = data / "rows" / f"{paths.vid}-{args.num_frames}.json"
        if args.reuse and saved.is_file():
            rows.append(json.loads(saved.read_text()))
            continue
        rows.append(bench_clip(paths, data, args.num_frames, args.downstream))
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(rows[-1]))
        print(json.dumps(rows[-1]), flush=True)
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
