"""Scores of the filtering stage: label IoU against ground truth, and the filter as a classifier.

A track is *bad* when its 2D position is more than ``BAD_TRACK_ERROR_PX`` away from the ground
truth in a frame where the tracker calls it visible, or when its query point lies on the sky
(no surface to track). The filter is scored as a detector of bad tracks: precision = share of
removed tracks that are bad, recall = share of bad tracks removed, and ``good_kept`` = share of
good tracks that survive.
"""

from __future__ import annotations

import numpy as np

__all__ = ["BAD_TRACK_ERROR_PX", "bad_track_mask", "class_set_iou", "filter_scores"]

BAD_TRACK_ERROR_PX = 8.0
"""2D error (px) in any visible frame above which a track counts as bad."""


def class_set_iou(pred_labels: np.ndarray, gt_labels: np.ndarray, class_ids) -> float:
    """IoU of the union of ``class_ids`` in two label maps of one shape (NaN if both empty)."""
    pred = np.isin(pred_labels, class_ids)
    gt = np.isin(gt_labels, class_ids)
    union = np.count_nonzero(pred | gt)
    return float(np.count_nonzero(pred & gt) / union) if union else float("nan")


def bad_track_mask(tracks_xy: np.ndarray, visibles: np.ndarray, gt_tracks_xy: np.ndarray,
                   on_sky: np.ndarray, max_error_px: float = BAD_TRACK_ERROR_PX) -> np.ndarray:
    """[N] bool: error above ``max_error_px`` in a visible frame, or a sky query.

    Args:
      tracks_xy: [N, T, 2] estimated (x, y) px; visibles: [N, T] estimated visibility.
      gt_tracks_xy: [N, T, 2] ground truth of the same query points (NaN where undefined:
        frames where the GT point is undefined do not count).
      on_sky: [N] bool, query point on the sky.
    """
    error = np.linalg.norm(np.asarray(tracks_xy, np.float64) - gt_tracks_xy, axis=-1)
    with np.errstate(invalid="ignore"):
        large = np.where(np.isfinite(error), error > max_error_px, False)
    return np.any(large & np.asarray(visibles, bool), axis=1) | np.asarray(on_sky, bool)


def filter_scores(removed: np.ndarray, bad: np.ndarray) -> dict:
    """Precision / recall of ``removed`` [N] bool at removing ``bad`` [N] bool tracks.

    Returns precision, recall, good_kept (shares in [0, 1]; NaN when undefined) and counts.
    """
    removed = np.asarray(removed, bool)
    bad = np.asarray(bad, bool)
    hits = np.count_nonzero(removed & bad)
    num_removed, num_bad = np.count_nonzero(removed), np.count_nonzero(bad)
    num_good = len(bad) - num_bad
    return {
        "precision": hits / num_removed if num_removed else float("nan"),
        "recall": hits / num_bad if num_bad else float("nan"),
        "good_kept": np.count_nonzero(~removed & ~bad) / num_good if num_good else float("nan"),
        "num_tracks": len(bad),
        "num_bad": int(num_bad),
        "num_removed": int(num_removed),
    }
