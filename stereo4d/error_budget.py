"""Error budget of the final 3D tracks: the 3D part of the pipeline (filtering, optimisation,
scoring) re-run with one ground-truth substitution at a time.

Substitutions (each replaces one estimated input by the synthetic clip's exact one):
* ``true_disparity``: the stereo depth maps become the true depth (same 20 m cut, and the
  optimisation's floater removal still applies); the segmentation is re-run on it.
* ``true_tracks``: the 2D tracks of the same query points become the true tracks and
  visibility (sky queries keep their estimated tracks; the sky filter drops them).
* ``true_labels``: the per-frame segmentation becomes the true ADE20K labels.
* ``true_filter``: the filter keeps exactly the good tracks (``metrics.segmentation``'s
  definition: no visible frame off by more than 4 px, query not on the sky).
* ``all_true``: the four at once (what is left is the optimisation itself and its erosion).
``pipeline`` re-runs the same code with no substitution (the baseline).

Every variant is scored like ``evaluate.py``'s ``tracks3d.after``: against the true tracks of
the kept tracks' own queries (APD3D over all true-visible points and over the covered ones,
coverage, mean error, jitter over the true tracks' jitter).
"""

from __future__ import annotations

import math

import numpy as np

from stereo4d import filtering
from stereo4d.backends.segmentation import SEGMENTATION_BACKENDS
from stereo4d.depth import MAX_DEPTH_M, depth_maps_from_flows, floater_mask
from stereo4d.geometry import PinholeCamera
from stereo4d.io import ClipPaths, load_dataset_npz, load_pickle, load_stereo_flows
from stereo4d.metrics.segmentation import bad_track_mask
from stereo4d.metrics.tracks3d import score_against_truth
from stereo4d.motion import scene_motion_displacement_px
from stereo4d.stages.filtering import FilteringConfig
from stereo4d.stages.optimization import OptimizationConfig
from stereo4d.track_3d import optimize_and_fill
from stereo4d.tracks import Tracks2D, lift_tracks_to_3d
from stereo4d.videoio import read_video

__all__ = ["BUDGET_METRICS", "VARIANTS", "budget_clip", "format_budget_table"]

#: Variant name -> substitutions (disparity, tracks, labels, filter).
VARIANTS = {
    "pipeline": (),
    "true_disparity": ("disparity",),
    "true_tracks": ("tracks",),
    "true_labels": ("labels",),
    "true_filter": ("filter",),
    "all_true": ("disparity", "tracks", "labels", "filter"),
}
#: Seed of the random track subset (``budget_clip``'s ``max_tracks``).
SUBSET_SEED = 0
#: (key, label, format) of the budget table.
BUDGET_METRICS = (
    ("apd3d_covered", "APD3D covered", "{:.3f}"),
    ("coverage", "coverage", "{:.3f}"),
    ("apd3d", "APD3D", "{:.3f}"),
    ("mean_error_m", "mean error (m)", "{:.3f}"),
    ("jitter_ratio", "jitter / GT", "{:.2f}"),
    ("kept_share", "tracks kept", "{:.3f}"),
)


def _true_depth(gt_depth_m: np.ndarray) -> np.ndarray:
    """[T, H, W] true depth with the stereo depth's conventions (0 = invalid, <= 20 m)."""
    d = np.asarray(gt_depth_m, np.float32)
    return np.where(np.isfinite(d) & (d > 0) & (d <= MAX_DEPTH_M), d, 0.0).astype(np.float32)


def _true_tracks(tracks: Tracks2D, truth: dict) -> Tracks2D:
    """The same queries with the true positions and visibility (sky queries unchanged)."""
    surface = np.isfinite(truth["tracks_xy"][..., 0]).any(axis=1)
    xy = np.where(surface[:, None, None], np.nan_to_num(truth["tracks_xy"]), tracks.tracks_xy)
    vis = np.where(surface[:, None], truth["visibles"], tracks.visibles)
    return Tracks2D(xy, vis, tracks.query_points_tyx)


def budget_clip(paths: ClipPaths, hfov_deg: float = 60.0, variants=tuple(VARIANTS),
                progress: bool = False, max_tracks: int = 0) -> dict:
    """Runs the variants on one clip already processed by the pipeline (stereo flows, 2D
    tracks and the left video in ``paths.clip_dir``). Returns {variant: scores}.

    ``max_tracks`` > 0: a random subset (seed ``SUBSET_SEED``) of that many 2D tracks, for speed;
    the figures are then estimates over that subset (0: all tracks)."""
    from stereo4d.synthetic import SyntheticOracle

    meta = load_dataset_npz(paths.npz, required=("camera2world",))
    tracks_est = Tracks2D.from_dict(load_pickle(paths.tracks_2d), str(paths.tracks_2d))
    if 0 < max_tracks < tracks_est.num_tracks:
        subset = np.random.default_rng(SUBSET_SEED).choice(tracks_est.num_tracks, max_tracks,
                                                           replace=False)
        tracks_est = tracks_est.subset(np.isin(np.arange(tracks_est.num_tracks), subset))
    flows = load_stereo_flows(paths.stereo_output)
    video = read_video(paths.left_video)
    with np.load(paths.gt, allow_pickle=False) as z:
        gt_depth, gt_labels = z["depth_m"], z["labels"]
    oracle = SyntheticOracle.from_gt_file(paths.gt)
    truth_all = oracle.tracks_for_queries(tracks_est.query_points_tyx)
    on_sky = ~np.isfinite(
        truth_all["tracks3d_world"][np.arange(tracks_est.num_tracks),
                                    tracks_est.query_points_tyx[:, 0].astype(int), 0])
    extrs = meta["extrs_rectified"]
    _, imh, imw = video.shape[:3]
    cameras = PinholeCamera.from_hfov(extrs, hfov_deg, aspect_hw=imh / imw)
    intr = (cameras.fx, cameras.fy, cameras.cx, cameras.cy)
    settings = FilteringConfig(vid=paths.vid).filter_settings  # the stage's defaults
    opt_config = OptimizationConfig(vid=paths.vid)
    track_opt = opt_config.track_opt
    depth_est = depth_maps_from_flows(flows, hfov_deg, remove_floaters=False)
    del flows
    depth_true = _true_depth(gt_depth)
    _, segmenter = SEGMENTATION_BACKENDS.build("classical", path=None, progress=progress)
    labels_cache: dict[bool, np.ndarray] = {}

    out = {}
    for name in variants:
        subs = VARIANTS[name]
        depth_raw = depth_true if "disparity" in subs else depth_est
        tracks = _true_tracks(tracks_est, truth_all) if "tracks" in subs else tracks_est
        if "labels" in subs:
            labels = gt_labels
        else:
            key = "disparity" in subs
            if key not in labels_cache:
                labels_cache[key] = segmenter.segment(video, depth_m=depth_raw, cameras=cameras)
            labels = labels_cache[key]
        if "filter" in subs:
            keep = ~bad_track_mask(tracks.tracks_xy, tracks.visibles, truth_all["tracks_xy"],
                                   on_sky)
        else:
            lifted, valid = lift_tracks_to_3d(tracks, depth_raw, cameras)
            displacement = scene_motion_displacement_px(lifted, valid, extrs, intr, imh, imw,
                                                        settings.trace_frames)
            keep = filtering.filter_tracks(filtering.labels_at_tracks(labels, tracks.tracks_xy),
                                           tracks.visibles, valid, displacement, settings).keep
        depth_opt = depth_raw.copy()
        depth_opt[floater_mask(depth_opt)] = 0.0
        kept = tracks.subset(keep)
        lifted, lifted_visible = lift_tracks_to_3d(kept, depth_opt, cameras)
        _, track3d, visible = optimize_and_fill(lifted, lifted_visible, kept, cameras, imh, imw,
                                                track_opt, opt_config.fill_settings)
        truth = {k: v[keep] for k, v in truth_all.items()}
        scores = score_against_truth(track3d, visible, truth, hfov_deg)
        scores["jitter_ratio"] = scores["jitter_m"] / scores["gt_jitter_m"]
        scores["kept_share"] = float(np.mean(keep))
        out[name] = {k: float(v) for k, v in scores.items()}
        print(f"[budget] {paths.vid} {name}: " + ", ".join(
            f"{label} {fmt.format(out[name][k])}" for k, label, fmt in BUDGET_METRICS), flush=True)
    return out


def format_budget_table(per_clip: dict[str, dict]) -> str:
    """Markdown table of the variants' means over the clips (``per_clip``: vid -> budget)."""
    variants = [v for v in VARIANTS if all(v in b for b in per_clip.values())]
    lines = ["| substitution | " + " | ".join(label for _, label, _ in BUDGET_METRICS) + " |",
             "|---|" + "---:|" * len(BUDGET_METRICS)]
    for v in variants:
        cells = []
        for key, _, fmt in BUDGET_METRICS:
            value = float(np.mean([b[v][key] for b in per_clip.values()]))
            cells.append("n/a" if math.isnan(value) else fmt.format(value))
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
