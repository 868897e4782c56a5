"""TAP-Vid point-tracking metrics: position accuracy <delta^x_avg, occlusion accuracy, average Jaccard.

Definitions (Doersch et al. 2022, as tapnet's ``compute_tapvid_metrics``):

* Coordinates are compared in a 256 x 256 frame: x is scaled by 256 / W and y
  by 256 / H before measuring distances.
* Evaluated entries: with ``query_mode="first"`` the frames strictly after each
  track's query frame; with ``"strided"`` every frame except the query frame.
* Occlusion accuracy (OA): fraction of evaluated entries whose predicted
  visibility equals the ground truth.
* ``pts_within_d`` for d in 1, 2, 4, 8, 16 px: among evaluated entries visible in
  the ground truth, the fraction predicted closer than d (strictly), whatever the
  predicted visibility. ``<delta^x_avg`` is their mean.
* ``jaccard_d``: TP / (TP + FN + FP) with TP = gt visible & predicted visible &
  within d; every gt-visible entry that is not a TP is a miss; FP = predicted
  visible & (gt occluded or not within d). Average Jaccard (AJ) is the mean over d.

Sums run over all tracks and frames of one video (tapnet's per-video figures).
"""

from __future__ import annotations

import numpy as np

__all__ = ["TAPVID_EVAL_SIZE_PX", "TAPVID_THRESHOLDS_PX", "compute_tapvid_metrics", "evaluation_mask"]

#: Distance thresholds in pixels of the 256 x 256 evaluation frame.
TAPVID_THRESHOLDS_PX = (1, 2, 4, 8, 16)
#: Side of the square frame the thresholds are defined on.
TAPVID_EVAL_SIZE_PX = 256


def evaluation_mask(query_t: np.ndarray, num_frames: int, query_mode: str = "first") -> np.ndarray:
    """Entries that count: [N] query frames -> [N, T] bool."""
    frames = np.arange(num_frames)[None, :]
    query_t = np.round(np.asarray(query_t)).astype(np.int64)[:, None]
    if query_mode == "first":
        return frames > query_t
    if query_mode == "strided":
        return frames != query_t
    raise ValueError(f"query_mode must be 'first' or 'strided', got {query_mode!r}")


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den > 0 else float("nan")


def compute_tapvid_metrics(
    query_points_tyx: np.ndarray,
    gt_tracks_xy: np.ndarray,
    gt_visibles: np.ndarray,
    pred_tracks_xy: np.ndarray,
    pred_visibles: np.ndarray,
    image_hw: tuple[int, int],
    query_mode: str = "first",
) -> dict[str, float]:
    """TAP-Vid metrics of one video.

    Args:
      query_points_tyx: [N, 3] (t, y, x); only t is used.
      gt_tracks_xy, pred_tracks_xy: [N, T, 2] (x, y) px of an ``image_hw`` frame.
      gt_visibles, pred_visibles: [N, T] bool.
      image_hw: (H, W) of the frame the coordinates are in.
      query_mode: ``first`` or ``strided`` (see module docstring).

    Returns:
      dict with ``occlusion_accuracy``, ``pts_within_{d}``, ``jaccard_{d}``,
      ``average_pts_within_thresh`` (<delta^x_avg), ``average_jaccard``, and
      ``num_evaluated`` (entries counted). Ratios are NaN when nothing counts.
    """
    gt_vis = np.asarray(gt_visibles, dtype=bool)
    pred_vis = np.asarray(pred_visibles, dtype=bool)
    evaluated = evaluation_mask(np.asarray(query_points_tyx)[:, 0], gt_vis.shape[1], query_mode)
    scale = np.array([TAPVID_EVAL_SIZE_PX / image_hw[1], TAPVID_EVAL_SIZE_PX / image_hw[0]])
    diff = (np.asarray(pred_tracks_xy, np.float64) - np.asarray(gt_tracks_xy, np.float64)) * scale
    dist2 = np.sum(diff**2, axis=-1)

    metrics: dict[str, float] = {
        "occlusion_accuracy": _ratio(np.sum((pred_vis == gt_vis) & evaluated), np.sum(evaluated)),
        "num_evaluated": int(np.sum(evaluated)),
    }
    gt_positives = np.sum(gt_vis & evaluated)
    within_all, jaccard_all = [], []
    for threshold in TAPVID_THRESHOLDS_PX:
        within = dist2 < threshold**2
        correct = within & gt_vis
        within_frac = _ratio(np.sum(correct & evaluated), gt_positives)
        true_pos = np.sum(correct & pred_vis & evaluated)
        false_pos = np.sum((~gt_vis | ~within) & pred_vis & evaluated)
        jaccard = _ratio(true_pos, gt_positives + false_pos)
        metrics[f"pts_within_{threshold}"] = within_frac
        metrics[f"jaccard_{threshold}"] = jaccard
        within_all.append(within_frac)
        jaccard_all.append(jaccard)
    metrics["average_pts_within_thresh"] = float(np.mean(within_all))
    metrics["average_jaccard"] = float(np.mean(jaccard_all))
    return metrics
