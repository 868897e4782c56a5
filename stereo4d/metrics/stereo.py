"""Stereo accuracy against ground truth: flow EPE, bad-N, density, depth AbsRel and delta<1.25.

Arrays in, numbers out (no files). Conventions as in ``stereo4d.depth``: ``fwd``
[..., H, W, 2] flow left->right in pixels (ground truth ``(-disparity, 0)``),
disparities [..., H, W] in pixels (positive), depths in metres with 0 = invalid.

Evaluation pixels (``eval_mask``): ground truth valid and not occluded in the
right view. Density is the fraction of evaluation pixels that keep a valid depth
after the pipeline's checks; EPE, bad-1 and the depth errors are measured on
those kept pixels (``epe_all_px`` on every evaluation pixel, the raw flow).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "DELTA_RATIO",
    "NON_OCCLUDED_TOLERANCE_PX",
    "depth_abs_rel",
    "depth_delta_accuracy",
    "disparity_bad_fraction",
    "flow_epe",
    "middlebury_bad",
    "non_occluded_from_left_disparity",
    "non_occluded_mask",
    "stereo_metrics",
]

NON_OCCLUDED_TOLERANCE_PX = 1.0
"""A left pixel is visible in the right view if the right view's disparity at its match agrees within this."""
DELTA_RATIO = 1.25
"""delta accuracy: fraction of pixels with max(pred/gt, gt/pred) below this."""


def non_occluded_mask(disparity_left: np.ndarray, disparity_right: np.ndarray,
                      tolerance_px: float = NON_OCCLUDED_TOLERANCE_PX) -> np.ndarray:
    """Left pixels visible in the right view, from ground-truth disparities of both views.

    Left pixel x matches right pixel ``round(x - d)``; it is visible if that pixel
    lies inside the image and its disparity agrees with ``d`` within ``tolerance_px``.

    Args:
      disparity_left, disparity_right: [..., H, W] pixels (non-finite = unknown).
    Returns:
      bool [..., H, W].
    """
    disparity_left = np.asarray(disparity_left, dtype=np.float64)
    width = disparity_left.shape[-1]
    target = np.round(np.arange(width) - np.nan_to_num(disparity_left, nan=np.inf, posinf=np.inf))
    inside = (target >= 0) & (target <= width - 1)
    index = np.clip(np.nan_to_num(target, posinf=0, neginf=0), 0, width - 1).astype(np.intp)
    other = np.take_along_axis(np.asarray(disparity_right, dtype=np.float64), index, axis=-1)
    with np.errstate(invalid="ignore"):
        return inside & (np.abs(other - disparity_left) <= tolerance_px)


def non_occluded_from_left_disparity(disparity_left: np.ndarray, max_disparity_px: float,
                                     tolerance_px: float = NON_OCCLUDED_TOLERANCE_PX) -> np.ndarray:
    """Left pixels visible in the right view, from the left view's ground truth only.

    Left pixel x lands at ``x - d(x)`` in the right view; a pixel ``x + k`` to its
    right lands at ``x + k - d(x + k)``, so it hides x when ``d(x + k) - k`` exceeds
    ``d(x)`` by more than ``tolerance_px`` (it is nearer and covers the same spot).
    Offsets up to ``max_disparity_px`` are tested (one vectorised pass per offset).

    Args:
      disparity_left: [..., H, W] pixels (non-finite = unknown; never hides anything).
    Returns:
      bool [..., H, W]: inside the right view and not hidden.
    """
    disparity = np.nan_to_num(np.asarray(disparity_left, dtype=np.float64), nan=0.0,
                              posinf=0.0, neginf=0.0)
    width = disparity.shape[-1]
    visible = (np.arange(width) - disparity) >= 0
    for offset in range(1, min(int(np.ceil(max_disparity_px)) + 1, width)):
        hides = disparity[..., offset:] - offset > disparity[..., :-offset] + tolerance_px
        visible[..., :-offset] &= ~hides
    return visible


def flow_epe(fwd: np.ndarray, disparity_gt: np.ndarray, mask: np.ndarray) -> float:
    """Mean end-point error of ``fwd`` against the stereo flow ``(-disparity_gt, 0)`` on ``mask``."""
    fwd = np.asarray(fwd, dtype=np.float64)
    error = np.hypot(fwd[..., 0] + disparity_gt, fwd[..., 1])
    return float(error[mask].mean()) if np.any(mask) else float("nan")


def disparity_bad_fraction(disparity: np.ndarray, disparity_gt: np.ndarray, mask: np.ndarray,
                           threshold_px: float) -> float:
    """Fraction of ``mask`` pixels whose disparity error exceeds ``threshold_px``."""
    error = np.abs(np.asarray(disparity, np.float64) - disparity_gt)
    return float(np.mean(error[mask] > threshold_px)) if np.any(mask) else float("nan")


def middlebury_bad(disparity: np.ndarray, disparity_gt: np.ndarray,
                   threshold_px: float = 2.0) -> float:
    """Middlebury "bad N": over every pixel with finite ground truth, the fraction whose
    estimate is missing (non-finite or <= 0) or off by more than ``threshold_px``."""
    disparity = np.asarray(disparity, np.float64)
    valid_gt = np.isfinite(disparity_gt)
    missing = ~np.isfinite(disparity) | (disparity <= 0)
    with np.errstate(invalid="ignore"):
        bad = missing | (np.abs(disparity - disparity_gt) > threshold_px)
    return float(np.mean(bad[valid_gt]))


def depth_abs_rel(depth_m: np.ndarray, depth_gt_m: np.ndarray, mask: np.ndarray) -> float:
    """Mean |pred - gt| / gt on ``mask`` (pixels where both are valid)."""
    gt = np.asarray(depth_gt_m, np.float64)[mask]
    return float(np.mean(np.abs(np.asarray(depth_m, np.float64)[mask] - gt) / gt)) if gt.size else float("nan")


def depth_delta_accuracy(depth_m: np.ndarray, depth_gt_m: np.ndarray, mask: np.ndarray,
                         ratio: float = DELTA_RATIO) -> float:
    """Fraction of ``mask`` pixels with max(pred/gt, gt/pred) < ``ratio``."""
    pred = np.asarray(depth_m, np.float64)[mask]
    gt = np.asarray(depth_gt_m, np.float64)[mask]
    if not gt.size:
        return float("nan")
    return float(np.mean(np.maximum(pred / gt, gt / pred) < ratio))


def stereo_metrics(fwd: np.ndarray, depth_m: np.ndarray, disparity_gt: np.ndarray,
                   depth_gt_m: np.ndarray, eval_mask: np.ndarray) -> dict[str, float]:
    """All stereo figures of one clip or frame.

    Args:
      fwd: [..., H, W, 2] predicted flow left->right (pixels).
      depth_m: [..., H, W] depth after the pipeline's checks (``stereo4d.depth``), 0 = invalid.
      disparity_gt: [..., H, W] ground-truth left disparity (pixels).
      depth_gt_m: [..., H, W] ground-truth depth (metres, > 0 where valid).
      eval_mask: [..., H, W] bool, ground truth valid and not occluded.
    Returns:
      ``epe_px`` and ``bad1`` on kept pixels, ``epe_all_px`` on every evaluation
      pixel, ``density`` (kept / evaluation pixels), ``abs_rel`` and ``delta_1.25``
      of depth on kept pixels, ``num_eval_pixels``.
    """
    eval_mask = np.asarray(eval_mask, bool)
    kept = eval_mask & (np.asarray(depth_m) > 0)
    disparity = -np.asarray(fwd, np.float64)[..., 0]
    return {
        "epe_px": flow_epe(fwd, disparity_gt, kept),
        "bad1": disparity_bad_fraction(disparity, disparity_gt, kept, 1.0),
        "epe_all_px": flow_epe(fwd, disparity_gt, eval_mask),
        "density": float(kept.sum() / max(eval_mask.sum(), 1)),
        "abs_rel": depth_abs_rel(depth_m, depth_gt_m, kept),
        "delta_1.25": depth_delta_accuracy(depth_m, depth_gt_m, kept),
        "num_eval_pixels": int(eval_mask.sum()),
    }
