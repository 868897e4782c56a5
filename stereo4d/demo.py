"""The end-to-end demo behind ``demo_run.bash``: every stage, skipping up-to-date ones.

Each stage runs as its top-level script (exactly what a user would type). A
stage counts as complete when its provenance JSON (written last, after all of
its outputs) and all its outputs exist and are newer than its inputs; the JSON
is deleted by each stage just before it replaces its first output, so a stage killed
halfway is re-run (one refused before writing leaves its complete outputs and JSON as they were).
The stage table and that rule live in ``stereo4d.pipeline`` (shared with the batch runner).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from stereo4d.io import ClipPaths, load_json
from stereo4d.pipeline import Stage, pipeline_stages, stage_fresh

__all__ = ["Stage", "main", "pipeline_stages"]

REPO_ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], label: str) -> None:
    print(f"\n=== {label}: {' '.join(cmd[1:])}", flush=True)
    t0 = time.perf_counter()
    result = subprocess.run(cmd, cwd=REPO_ROOT, check=False)
    if result.returncode != 0:
        print(f"\n[demo] stage '{label}' failed (exit {result.returncode}); see its message above.",
              file=sys.stderr)
        raise SystemExit(result.returncode)
    print(f"=== {label} done in {time.perf_counter() - t0:.1f} s", flush=True)


#: The synthetic clips' equirect eye field of view (estimate_cameras.py's --fov_bounds).
SYNTHETIC_FOV_BOUNDS = "-50,50,-50,50"


def set_aside_npz(paths: ClipPaths) -> Path:
    """Where ``--estimate_cameras`` keeps a clip's released (or synthetic true) npz."""
    return paths.npz_folder / "set_aside" / paths.npz.name


def restore_set_aside_npz(paths: ClipPaths) -> bool:
    """A run without ``--estimate_cameras`` after one with it: puts the clip's own npz back in
    place of the estimated one and marks it new (so every stage that read the estimated
    cameras runs again). Returns whether it did."""
    aside = set_aside_npz(paths)
    if not aside.is_file():
        return False
    aside.replace(paths.npz)
    os.utime(paths.npz)
    print(f"[demo] restored the clip's own npz from {aside} (the estimated one was in its place)")
    return True


def _estimate_cameras(paths: ClipPaths, py: str, num_frames: int, force: bool) -> None:
    """Stage 0: sets the clip's npz aside, estimates the cameras from the video; on a synthetic
    clip scores them and, for the evaluation against the truth only, expresses them in the
    truth's world frame and baseline gauge (rigid alignment, as ATE does)."""
    import numpy as np

    from stereo4d.io import load_dataset_npz, save_dataset_npz
    from stereo4d.metrics import cameras as camera_metrics

    aside = set_aside_npz(paths)
    if paths.npz.is_file() and not aside.is_file():
        aside.parent.mkdir(parents=True, exist_ok=True)
        paths.npz.replace(aside)
        print(f"[demo] set the clip's npz aside: {aside}")
    estimated = paths.npz_folder / "estimated" / paths.npz.name
    if force or not estimated.is_file():
        synthetic = paths.gt.is_file()
        flags = [f"--fov_bounds={SYNTHETIC_FOV_BOUNDS}"] if synthetic else []
        _run([py, "estimate_cameras.py", f"--vid={paths.vid}", f"--num_frames={num_frames}",
              f"--npz_folder={estimated.parent}", "--force", *flags], "estimate_cameras")
    est = load_dataset_npz(estimated)
    c2w, r2r = est["camera2world"], est["rectified2rig"]
    if paths.gt.is_file() and aside.is_file():
        true = load_dataset_npz(aside)
        traj = camera_metrics.trajectory_errors(c2w, true["camera2world"])
        rig_err, _ = camera_metrics.rig_rotation_errors_deg(r2r, true["rectified2rig"])
        print(f"[demo] estimated cameras vs truth: ATE {traj['ate_m'] * 100:.2f} cm "
              f"({traj['ate_fraction'] * 100:.2f} % of {traj['path_m']:.2f} m), RPE "
              f"{traj['rpe_rot_deg']:.3f} deg/frame, scale {traj['scale_error'] * 100:.2f} %, "
              f"rig {np.max(rig_err):.3f} deg")
        c2w, r2r = camera_metrics.align_to_reference(c2w, r2r, true["camera2world"],
                                                     true["rectified2rig"])
    if (force or not paths.npz.is_file()
            or paths.npz.stat().st_mtime < estimated.stat().st_mtime):
        save_dataset_npz(paths.npz, name=paths.vid, video_id=paths.video_id,
                         timestamps_us=est["timestamps"], camera2world=c2w,
                         track3d=est["track3d"], rectified2rig=r2r,
                         fov_bounds_deg=est["fov_bounds"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Run the whole Stereo4D pipeline on one clip.")
    parser.add_argument("--vid", required=True)
    parser.add_argument("--default_vid", default=None,
                        help="the synthetic demo clip id (rendered when missing)")
    parser.add_argument("--num_frames", type=int, default=48)
    parser.add_argument("--force", action="store_true", help="re-run up-to-date stages")
    parser.add_argument("--estimate_cameras", action="store_true",
                        help="estimate the cameras from the video (estimate_cameras.py) instead "
                             "of using a released npz; a synthetic clip's npz is set aside and "
                             "the estimate is scored against it")
    args = parser.parse_args(argv)
    paths = ClipPaths(args.vid)
    py = sys.executable
    t0 = time.perf_counter()

    have_inputs = paths.raw_video.is_file() and (paths.npz.is_file() or (args.estimate_cameras and (
        set_aside_npz(paths).is_file() or args.vid != args.default_vid)))
    if not have_inputs:
        if args.vid != args.default_vid:
            print(f"error: clip {args.vid} not found: need {paths.npz} and {paths.raw_video}",
                  file=sys.stderr)
            return 2
        _run([py, "make_synthetic_clip.py", f"--vid={args.vid}", f"--num_frames={args.num_frames}"],
             "synthetic clip")
    else:
        print(f"[demo] using clip {args.vid} ({paths.npz}, {paths.raw_video})")

    if args.estimate_cameras:
        _estimate_cameras(paths, py, args.num_frames, args.force)
    else:
        restore_set_aside_npz(paths)

    backends = {}
    for stage in pipeline_stages(synthetic=paths.gt.is_file()):
        script = REPO_ROOT / stage.script
        if not script.is_file():
            print(f"[demo] skipping {stage.name}: {stage.script} is not part of this checkout yet")
            continue
        marker = paths.provenance(stage.name)
        if not args.force and stage_fresh(paths, stage):
            print(f"[demo] {stage.name}: outputs are up to date, skipping (--force re-runs)")
        else:
            _run([py, stage.script, f"--vid={args.vid}", *stage.extra_args], stage.name)
        if marker.is_file():
            backends[stage.name] = load_json(marker).get("backend", "?")

    print(f"\n[demo] pipeline finished in {time.perf_counter() - t0:.1f} s; backends: "
          + ", ".join(f"{k}={v}" for k, v in backends.items()))
    if paths.gt.is_file() and (REPO_ROOT / "evaluate.py").is_file():
        _run([py, "evaluate.py", f"--vid={args.vid}",
              f"--json={paths.out('evaluation.json')}"], "evaluation")
    print(f"\n[demo] outputs are in {paths.clip_dir}/:")
    for f in sorted(paths.clip_dir.glob("*")):
        if f.is_file() and not f.name.startswith("."):
            print(f"  {f}  ({f.stat().st_size / 1e6:.1f} MB)")
    if paths.export_npz.is_file():
        print(f"[demo] released-format tracks: {paths.export_npz}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
