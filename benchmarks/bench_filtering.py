"""Benchmark of the filtering stage on the synthetic clip: segmenter accuracy and filter quality.

Runs the earlier stages on the synthetic clip when their outputs are missing (rectify, stereo and
tracking, each with ``--backend auto``, i.e. the classical backends offline), then prints:

* the weight-free segmenter's IoU against the ground-truth label maps: sky, and the static
  classes (wall, building, road, earth, sidewalk) as one group; seconds per frame;
* the filter as a detector of bad tracks (``stereo4d.metrics.segmentation``: 2D error > 8 px
  against the oracle in a visible frame, or a sky query): precision, recall and the share of
  good tracks kept, with the classical segmenter (the stage's own run) and with the
  ground-truth labels (the filter's ceiling on this clip).

Usage:
  .venv/bin/python make_synthetic_clip.py --vid=synthfilter_66667 --num_frames=32 \
      --npz_folder=D/npz --raw_video_folder=D/raw --output_folder=D/processed --gt_folder=D/gt
  .venv/bin/python benchmarks/bench_filtering.py --data=D --vid=synthfilter_66667
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from stereo4d import ade20k, filtering
from stereo4d.backends.classical_segmenter import ClassicalSegmenter
from stereo4d.depth import depth_maps_from_flows
from stereo4d.geometry import PinholeCamera
from stereo4d.io import ClipPaths, load_dataset_npz, load_stereo_flows
from stereo4d.metrics.segmentation import bad_track_mask, class_set_iou, filter_scores
from stereo4d.motion import scene_motion_displacement_px
from stereo4d.stages import filtering as stage
from stereo4d.synthetic.clip import SyntheticOracle
from stereo4d.tracks import Tracks2D, lift_tracks_to_3d
from stereo4d.videoio import read_video

REPO_ROOT = Path(__file__).resolve().parents[1]
HFOV_DEG = 60.0
TARGET_SKY_IOU = 0.90
TARGET_STATIC_IOU = 0.70


def _ensure_inputs(paths: ClipPaths, data: Path) -> None:
    folders = [f"--npz_folder={data / 'npz'}", f"--output_folder={data / 'processed'}"]
    steps = [
        (paths.left_video, ["rectify.py", f"--raw_video_folder={data / 'raw'}",
                            "--min_equirect_height=0", "--skip_equirect_videos"]),
        (paths.stereo_output, ["inference_raft.py"]),
        (paths.tracks_2d, ["tracking.py", "--skip_video"]),
    ]
    for output, cmd in steps:
        if output.is_file():
            continue
        args = [sys.executable, cmd[0], f"--vid={paths.vid}", *folders, *cmd[1:]]
        if cmd[0] == "tracking.py":
            args = [a for a in args if not a.startswith("--npz_folder")]
        print("running", " ".join(args[1:]), flush=True)
        subprocess.run(args, cwd=REPO_ROOT, check=True)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="folder with npz/, raw/, gt/, processed/")
    parser.add_argument("--vid", default="synthfilter_66667")
    args = parser.parse_args(argv)
    data = Path(args.data)
    paths = ClipPaths(args.vid, npz_folder=data / "npz", raw_video_folder=data / "raw",
                      output_folder=data / "processed", gt_folder=data / "gt")
    _ensure_inputs(paths, data)
    with np.load(paths.gt) as z:
        gt_labels = z["labels"].astype(np.int32)

    # 1. Segmenter accuracy.
    video = read_video(paths.left_video)
    depth_m = depth_maps_from_flows(load_stereo_flows(paths.stereo_output), HFOV_DEG,
                                    remove_floaters=False)
    extrs = load_dataset_npz(paths.npz, required=("camera2world",))["extrs_rectified"]
    imh, imw = video.shape[1:3]
    cameras = PinholeCamera.from_hfov(extrs, HFOV_DEG, aspect_hw=imh / imw)
    t0 = time.perf_counter()
    labels = ClassicalSegmenter().segment(video, depth_m=depth_m, cameras=cameras)
    seg_s = (time.perf_counter() - t0) / len(video)
    seg = {
        "sky_iou": class_set_iou(labels, gt_labels, ade20k.SKY_CLASS_IDS),
        "static_iou": class_set_iou(labels, gt_labels, ade20k.STATIC_CLASS_IDS),
        "gt_static_share": float(np.isin(gt_labels, ade20k.STATIC_CLASS_IDS).mean()),
        "gt_sky_share": float(np.isin(gt_labels, ade20k.SKY_CLASS_IDS).mean()),
        "seconds_per_frame": seg_s,
    }

    # 2. The stage itself (classical backend), scored against the oracle.
    summary = stage.run(stage.FilteringConfig(args.vid, npz_folder=str(paths.npz_folder),
                                              output_folder=str(paths.output_folder),
                                              backend="classical", progress=False))
    tracks = Tracks2D.load(paths.tracks_2d)
    kept = Tracks2D.load(paths.filtered_tracks)
    kept_keys = {tuple(q) for q in np.asarray(kept.query_points_tyx).tolist()}
    keep_stage = np.array([tuple(q) in kept_keys for q in np.asarray(tracks.query_points_tyx).tolist()])
    oracle = SyntheticOracle.from_gt_file(paths.gt)
    gt = oracle.tracks_for_queries(np.asarray(tracks.query_points_tyx, np.float64))
    bad = bad_track_mask(tracks.tracks_xy, tracks.visibles, gt["tracks_xy"], gt["object_id"] < 0)
    scores = {"classical": filter_scores(~keep_stage, bad)}

    # 3. The same filters with ground-truth labels (ceiling of the filter on this clip).
    track3d, valid = lift_tracks_to_3d(tracks, depth_m, cameras)
    disp = scene_motion_displacement_px(track3d, valid, extrs,
                                        (cameras.fx, cameras.fy, cameras.cx, cameras.cy), imh, imw)
    result = filtering.filter_tracks(filtering.labels_at_tracks(gt_labels, tracks.tracks_xy),
                                     tracks.visibles, valid, disp)
    scores["gt_labels"] = filter_scores(~result.keep, bad)
    scores["no_filter_bad_share"] = float(bad.mean())

    report = {"segmentation": seg, "filter": scores, "stage": {
        "num_tracks_in": summary["num_tracks_in"], "num_tracks_kept": summary["num_tracks_kept"],
        "filters": summary["filters"], "timings_s": summary["timings_s"]}}
    print(json.dumps(report, indent=2, default=float))
    print(f"\nsky IoU {seg['sky_iou']:.3f} (target >= {TARGET_SKY_IOU}), static IoU "
          f"{seg['static_iou']:.3f} (target >= {TARGET_STATIC_IOU}), {seg_s:.2f} s/frame")
    for name in ("classical", "gt_labels"):
        s = scores[name]
        print(f"filter with {name} labels: precision {s['precision']:.3f}, recall {s['recall']:.3f}, "
              f"good kept {s['good_kept']:.3f} ({s['num_bad']} bad of {s['num_tracks']}, "
              f"{s['num_removed']} removed)")
    return report


if __name__ == "__main__":
    main()
