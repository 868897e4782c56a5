"""One evaluation of every stage of a synthetic clip against its ground truth.

Reuses the metric modules (``stereo4d.metrics.*``) and the shared depth and
lifting code; nothing here re-derives a metric. Stages whose outputs are missing
are reported as missing (their keys hold NaN), not silently skipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from stereo4d.ade20k import SKY_CLASS_IDS, STATIC_CLASS_IDS
from stereo4d.depth import depth_maps_from_flows
from stereo4d.geometry import PinholeCamera
from stereo4d.io import (
    ClipPaths,
    InputError,
    load_dataset_npz,
    load_json,
    load_segmentation,
    load_stereo_flows,
)
from stereo4d.metrics.segmentation import bad_track_mask, class_set_iou, filter_scores
from stereo4d.metrics.stereo import non_occluded_from_left_disparity, stereo_metrics
from stereo4d.metrics.tapvid import compute_tapvid_metrics
from stereo4d.metrics.tracks3d import score_before_after
from stereo4d.tracks import Tracks2D, lift_tracks_to_3d

__all__ = ["REPORT_KEYS", "EvaluationConfig", "evaluate_clip", "format_table"]

#: Keys of the flat report (``evaluate.py --json``), in table order.
REPORT_KEYS = (
    "stereo.epe_px", "stereo.bad1", "stereo.density", "stereo.depth_absrel", "stereo.delta125",
    "tracks2d.delta_avg", "tracks2d.occlusion_accuracy", "tracks2d.average_jaccard",
    "segmentation.sky_iou", "segmentation.static_iou",
    "filter.precision", "filter.recall", "filter.good_kept",
    "tracks3d.before.apd3d", "tracks3d.before.mean_error_m", "tracks3d.before.jitter_m",
    "tracks3d.before_same_frames.apd3d", "tracks3d.before_same_frames.mean_error_m",
    "tracks3d.before_same_frames.jitter_m",
    "tracks3d.after.apd3d", "tracks3d.after.mean_error_m", "tracks3d.after.jitter_m",
)
#: Largest disparity (px) considered when deriving occlusion from the left ground truth.
MAX_GT_DISPARITY_PX = 64
#: Frames of the clip used for the (costly) stereo figures: every k-th.
STEREO_FRAME_STRIDE = 1


@dataclass(frozen=True)
class EvaluationConfig:
    """Where the clip and its ground truth are.

    Attributes:
      vid: clip id; npz_folder, output_folder, gt_folder: as ``ClipPaths``.
      hfov_deg: horizontal FoV of the rectified views.
    """

    vid: str
    npz_folder: str = "stereo4d_dataset/npz"
    output_folder: str = "stereo4d_dataset/processed"
    gt_folder: str = "stereo4d_dataset/gt"
    hfov_deg: float = 60.0

    @property
    def paths(self) -> ClipPaths:
        return ClipPaths(self.vid, self.npz_folder, output_folder=self.output_folder,
                         gt_folder=self.gt_folder)


def _nan_dict(keys) -> dict:
    return {k: math.nan for k in keys}


def evaluate_stereo(flows: list, gt: dict, hfov_deg: float) -> dict:
    """Stereo figures over the clip: EPE, bad-1, density, depth AbsRel and delta < 1.25."""
    frames = range(0, len(flows), STEREO_FRAME_STRIDE)
    fwd = np.stack([flows[t]["fwd"] for t in frames])
    depth_m = depth_maps_from_flows([flows[t] for t in frames], hfov_deg, remove_floaters=False)
    disp_gt = gt["disparity_px"][list(frames)]
    depth_gt = gt["depth_m"][list(frames)]
    valid_gt = (disp_gt > 0) & np.isfinite(depth_gt)
    eval_mask = valid_gt & non_occluded_from_left_disparity(disp_gt, MAX_GT_DISPARITY_PX)
    m = stereo_metrics(fwd, depth_m, disp_gt, np.where(valid_gt, depth_gt, 0.0), eval_mask)
    return {"epe_px": m["epe_px"], "bad1": m["bad1"], "density": m["density"],
            "depth_absrel": m["abs_rel"], "delta125": m["delta_1.25"],
            "epe_all_px": m["epe_all_px"]}


def _on_sky(query_points_tyx: np.ndarray, truth: dict) -> np.ndarray:
    """[N] bool: the query pixel sees no surface (no true 3D point at the query frame)."""
    t = np.asarray(query_points_tyx[:, 0]).astype(int)
    return ~np.isfinite(truth["tracks3d_world"][np.arange(len(t)), t, 0])


def evaluate_tracks2d(tracks: Tracks2D, truth: dict, image_hw: tuple[int, int]) -> dict:
    """TAP-Vid figures (query-first) of the stage's tracks on the truth of their own queries.

    Queries on the sky have no true track and are left out, as TAP-Vid queries only
    points on surfaces.
    """
    on_surface = ~_on_sky(tracks.query_points_tyx, truth)
    sel = tracks.subset(on_surface)
    m = compute_tapvid_metrics(sel.query_points_tyx, truth["tracks_xy"][on_surface],
                               truth["visibles"][on_surface], sel.tracks_xy, sel.visibles, image_hw)
    return {"delta_avg": m["average_pts_within_thresh"], "occlusion_accuracy": m["occlusion_accuracy"],
            "average_jaccard": m["average_jaccard"], "num_tracks": sel.num_tracks,
            "num_sky_queries": int((~on_surface).sum())}


def evaluate_segmentation(labels: np.ndarray, gt_labels: np.ndarray) -> dict:
    """IoU of sky and of the static classes (one group) over the clip."""
    return {"sky_iou": class_set_iou(labels, gt_labels, list(SKY_CLASS_IDS)),
            "static_iou": class_set_iou(labels, gt_labels, sorted(STATIC_CLASS_IDS))}


def evaluate_filter(tracks: Tracks2D, kept: np.ndarray, truth: dict) -> dict:
    """Precision / recall of the filter at removing bad tracks; share of good tracks kept."""
    on_sky = _on_sky(tracks.query_points_tyx, truth)
    bad = bad_track_mask(tracks.tracks_xy, tracks.visibles, truth["tracks_xy"], on_sky)
    scores = filter_scores(~np.asarray(kept, bool), bad)
    return {k: scores[k] for k in ("precision", "recall", "good_kept", "num_bad", "num_removed")}


def evaluate_tracks3d(filtered: Tracks2D, truth: dict, hfov_deg: float, flows: list,
                      extrs_rectified: np.ndarray, optimized: np.ndarray,
                      image_hw: tuple[int, int]) -> dict:
    """3D tracks before (lifted) and after optimisation, against the truth of their queries.

    Args:
      filtered: the filtered 2D tracks (N); truth: their true tracks; flows: stereo flows.
      extrs_rectified: [T, 3, 4] world -> camera (the clip's npz).
      optimized: [N, T, 3] the optimisation's released export (``<vid>.npz``; NaN where the
        optimisation kept no point), read instead of its pickle.
      image_hw: size of the rectified views (pixels).
    """
    imh, imw = image_hw
    cameras = PinholeCamera.from_hfov(extrs_rectified, hfov_deg, aspect_hw=imh / imw)
    depth_m = depth_maps_from_flows(flows, hfov_deg, remove_floaters=True)
    lifted, lifted_visible = lift_tracks_to_3d(filtered, depth_m, cameras)
    after = np.asarray(optimized, np.float64)
    after_visible = np.all(np.isfinite(after), axis=-1)
    scores = score_before_after(truth, lifted, lifted_visible, after, after_visible, hfov_deg)
    keep = ("apd3d", "apd3d_covered", "mean_error_m", "jitter_m", "gt_jitter_m", "coverage",
            "points")
    return {phase: {k: s[k] for k in keep} for phase, s in scores.items()}


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            flat.update(_flatten(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v
    return flat


def _load_outputs(paths: ClipPaths) -> dict:
    """Every stage output present, each read and checked by its one loader (nothing scored)."""
    out = {}
    if paths.stereo_output.is_file():
        out["flows"] = load_stereo_flows(paths.stereo_output)
    if paths.tracks_2d.is_file():
        out["tracks"] = Tracks2D.load(paths.tracks_2d)
    if paths.segmentation.is_file():
        out["labels"], out["kept"] = load_segmentation(paths.segmentation)
    if paths.export_npz.is_file() and paths.filtered_tracks.is_file() and "flows" in out:
        out["filtered"] = Tracks2D.load(paths.filtered_tracks)
        out["extrs"] = load_dataset_npz(paths.npz, required=("camera2world",))["extrs_rectified"]
        out["optimized"] = load_dataset_npz(paths.export_npz)["track3d"]
        if out["optimized"].shape[:2] != (out["filtered"].num_tracks, len(out["flows"])):
            raise InputError(f"{paths.export_npz}: {list(out['optimized'].shape[:2])} tracks x "
                             f"frames, but {paths.filtered_tracks.name} and "
                             f"{paths.stereo_output.name} give "
                             f"{[out['filtered'].num_tracks, len(out['flows'])]}")
    return out


def evaluate_clip(config: EvaluationConfig) -> dict:
    """Scores every available stage output of ``config.vid``. Returns a flat dict.

    Keys are ``REPORT_KEYS`` (NaN for a stage whose outputs are missing) plus
    extras, and ``backends`` (stage -> backend name from the provenance files).

    Raises:
      InputError: no ground truth, a stage output that fails its checks, or no stage output
        at all (nothing to score).
    """
    paths = config.paths
    if not paths.gt.is_file():
        raise InputError(f"no ground truth for {config.vid}: {paths.gt} (only synthetic clips "
                         "made by make_synthetic_clip.py can be scored)")
    outputs = _load_outputs(paths)  # every file checked before anything is scored
    if not outputs:
        raise InputError(f"nothing to score for {config.vid}: no stage outputs in "
                         f"{paths.clip_dir} (run the stages first)")
    from stereo4d.synthetic import SyntheticOracle

    try:
        with np.load(paths.gt, allow_pickle=False) as z:
            gt = {k: z[k] for k in ("disparity_px", "depth_m", "labels")}
    except Exception as exc:  # zipfile / format / missing-key errors come in many types
        raise InputError(f"cannot read ground truth {paths.gt}: {exc}") from exc
    oracle = SyntheticOracle.from_gt_file(paths.gt)
    image_hw = gt["labels"].shape[1:3]
    report: dict = {}
    missing = []

    flows = outputs.get("flows")
    if flows is not None:
        report["stereo"] = evaluate_stereo(flows, gt, config.hfov_deg)
    else:
        missing.append("stereo")

    tracks = outputs.get("tracks")
    truth = None
    if tracks is not None:
        truth = oracle.tracks_for_queries(tracks.query_points_tyx)
        report["tracks2d"] = evaluate_tracks2d(tracks, truth, image_hw)
    else:
        missing.append("tracks2d")

    kept = outputs.get("kept")
    if kept is not None:
        report["segmentation"] = evaluate_segmentation(outputs["labels"], gt["labels"])
        if tracks is not None and len(kept) == tracks.num_tracks:
            report["filter"] = evaluate_filter(tracks, kept, truth)
        else:
            missing.append("filter")
    else:
        missing += ["segmentation", "filter"]

    if "filtered" in outputs:
        filtered = outputs["filtered"]
        if kept is not None and tracks is not None and kept.sum() == filtered.num_tracks:
            truth3d = {k: v[kept] for k, v in truth.items()}
        else:
            truth3d = oracle.tracks_for_queries(filtered.query_points_tyx)
        report["tracks3d"] = evaluate_tracks3d(filtered, truth3d, config.hfov_deg, flows,
                                               outputs["extrs"], outputs["optimized"], image_hw)
    else:
        missing.append("tracks3d")

    flat = {k: math.nan for k in REPORT_KEYS}
    flat.update({k: float(v) for k, v in _flatten(report).items()})
    backends = {}
    for stage in ("rectify", "stereo", "tracking", "filtering", "optimization"):
        marker = paths.provenance(stage)
        if marker.is_file():
            backends[stage] = load_json(marker).get("backend", "?")
    flat["backends"] = backends
    flat["missing"] = missing
    flat["vid"] = config.vid
    return flat


#: (section, key, label, format) rows of the printed table.
_TABLE = (
    ("stereo", "stereo.epe_px", "EPE (px)", "{:.3f}"),
    ("stereo", "stereo.bad1", "bad-1", "{:.3f}"),
    ("stereo", "stereo.density", "density", "{:.3f}"),
    ("stereo", "stereo.depth_absrel", "depth AbsRel", "{:.3f}"),
    ("stereo", "stereo.delta125", "depth delta<1.25", "{:.3f}"),
    ("2D tracks", "tracks2d.delta_avg", "<delta_avg", "{:.3f}"),
    ("2D tracks", "tracks2d.occlusion_accuracy", "occlusion accuracy", "{:.3f}"),
    ("2D tracks", "tracks2d.average_jaccard", "average Jaccard", "{:.3f}"),
    ("segmentation", "segmentation.sky_iou", "sky IoU", "{:.3f}"),
    ("segmentation", "segmentation.static_iou", "static IoU", "{:.3f}"),
    ("filter", "filter.precision", "precision (bad removed)", "{:.3f}"),
    ("filter", "filter.recall", "recall (bad removed)", "{:.3f}"),
    ("filter", "filter.good_kept", "good tracks kept", "{:.3f}"),
)


def format_table(report: dict) -> str:
    """Markdown table of the report (3D tracks as before / same frames / after columns)."""
    lines = [f"Evaluation of {report.get('vid', '?')} against ground truth",
             "", "| stage | metric | value |", "|---|---|---:|"]
    for section, key, label, fmt in _TABLE:
        value = report.get(key, math.nan)
        lines.append(f"| {section} | {label} | {'missing' if math.isnan(value) else fmt.format(value)} |")
    lines += ["", "| 3D tracks | before (lifted) | before, optimised frames | after |",
              "|---|---:|---:|---:|"]
    for metric, label, fmt in (("apd3d", "APD3D", "{:.3f}"), ("mean_error_m", "mean error (m)",
                                                                 "{:.3f}"),
                               ("jitter_m", "jitter (m)", "{:.4f}")):
        cells = []
        for phase in ("before", "before_same_frames", "after"):
            v = report.get(f"tracks3d.{phase}.{metric}", math.nan)
            cells.append("missing" if math.isnan(v) else fmt.format(v))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    backends = report.get("backends", {})
    if backends:
        lines += ["", "backends: " + ", ".join(f"{k}={v}" for k, v in backends.items())]
    if report.get("missing"):
        lines.append("missing stage outputs: " + ", ".join(report["missing"]))
    return "\n".join(lines)
