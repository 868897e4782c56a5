"""3D track accuracy: APD3D (TAPVid-3D), mean 3D error and temporal jitter."""

from __future__ import annotations

import numpy as np

from stereo4d.geometry import focal_length_px

__all__ = [
    "APD_THRESHOLDS_PX",
    "EVAL_RESOLUTION_PX",
    "apd3d",
    "eval_focal_px",
    "jitter_m",
    "mean_error_m",
    "score_against_truth",
    "score_before_after",
    "score_tracks3d",
]

#: TAPVid-3D pixel thresholds.
APD_THRESHOLDS_PX = (1, 2, 4, 8, 16)
#: Resolution at which the pixel thresholds are measured (the focal length is scaled to it).
EVAL_RESOLUTION_PX = 256


def eval_focal_px(hfov_deg: float) -> float:
    """Focal length (px) of a view of horizontal FoV ``hfov_deg`` at ``EVAL_RESOLUTION_PX``.

    The ``focal_px`` of ``apd3d`` / ``score_tracks3d``: ``128 / tan(hfov / 2)``.
    """
    return focal_length_px(hfov_deg, EVAL_RESOLUTION_PX)


def apd3d(pred_world: np.ndarray, gt_world: np.ndarray, gt_visible: np.ndarray,
          gt_depth_m: np.ndarray, focal_px: float, thresholds_px=APD_THRESHOLDS_PX) -> dict:
    """Average percent of points within a depth-scaled 3D distance of the truth.

    A point counts as correct for threshold ``d`` px when its 3D error is below
    ``d * z / f`` (``z`` the true depth, ``f`` the focal length in pixels at the
    evaluation resolution). Missing predictions (NaN) count as wrong. No scale
    alignment: our depth is metric.

    Args:
      pred_world, gt_world: [N, T, 3] metres; gt_visible: [N, T] bool;
      gt_depth_m: [N, T] true camera z-depth; focal_px: focal length in px at 256x256.
    Returns:
      {'apd3d': mean over thresholds, 'pct_within_<d>': per threshold}.
    """
    mask = np.asarray(gt_visible, bool)
    if not mask.any():
        return {"apd3d": float("nan")}
    err = np.linalg.norm(pred_world - gt_world, axis=-1)[mask]
    err = np.where(np.isfinite(err), err, np.inf)
    scale = np.asarray(gt_depth_m)[mask] / focal_px
    out = {f"pct_within_{d}": float(np.mean(err < d * scale)) for d in thresholds_px}
    out["apd3d"] = float(np.mean([out[f"pct_within_{d}"] for d in thresholds_px]))
    return out


def mean_error_m(pred_world: np.ndarray, gt_world: np.ndarray, gt_visible: np.ndarray) -> float:
    """Mean Euclidean error over true-visible points that have a prediction."""
    err = np.linalg.norm(pred_world - gt_world, axis=-1)[np.asarray(gt_visible, bool)]
    err = err[np.isfinite(err)]
    return float(err.mean()) if err.size else float("nan")


def jitter_m(track_world: np.ndarray, visible: np.ndarray) -> float:
    """Mean norm of the second difference over runs of three visible consecutive frames.

    Args:
      track_world: [N, T, 3]; visible: [N, T] bool.
    """
    v = np.asarray(visible, bool) & np.all(np.isfinite(track_world), axis=-1)
    if track_world.shape[1] < 3:
        return float("nan")
    second = track_world[:, 2:] - 2 * track_world[:, 1:-1] + track_world[:, :-2]
    ok = v[:, 2:] & v[:, 1:-1] & v[:, :-2]
    norms = np.linalg.norm(second, axis=-1)[ok]
    return float(norms.mean()) if norms.size else float("nan")


def score_tracks3d(pred_world, pred_visible, gt_world, gt_visible, gt_depth_m, focal_px) -> dict:
    """APD3D, mean error and jitter in one dict (``apd3d``, ``mean_error_m``, ``jitter_m``).

    Predictions are used only where ``pred_visible``; elsewhere they count as missing.
    """
    pred = np.where(np.asarray(pred_visible, bool)[..., None], pred_world, np.nan)
    scores = apd3d(pred, gt_world, gt_visible, gt_depth_m, focal_px)
    scores["mean_error_m"] = mean_error_m(pred, gt_world, gt_visible)
    scores["jitter_m"] = jitter_m(pred_world, pred_visible)
    scores["gt_jitter_m"] = jitter_m(gt_world, gt_visible)
    return scores


def score_against_truth(track3d_world: np.ndarray, visible: np.ndarray, truth: dict,
                        hfov_deg: float) -> dict:
    """APD3D / mean error / jitter of 3D tracks against the truth of the same query points.

    Args:
      track3d_world: [N, T, 3] metres; visible: [N, T] bool (frames with a prediction).
      truth: ``SyntheticOracle.tracks_for_queries`` output (``tracks3d_world``, ``visibles``,
        ``depth_m``).
      hfov_deg: horizontal FoV; the APD thresholds are pixels at 256 x 256 (``eval_focal_px``).
    Returns:
      ``score_tracks3d`` dict plus ``coverage`` (share of true-visible points predicted),
      ``apd3d_covered`` (APD3D over the true-visible points that have a prediction) and
      ``points`` (predicted points).
    """
    gt_visible = np.asarray(truth["visibles"], bool)
    visible = np.asarray(visible, bool)
    scores = score_tracks3d(track3d_world, visible, truth["tracks3d_world"], gt_visible,
                            truth["depth_m"], eval_focal_px(hfov_deg))
    covered = visible & gt_visible
    scores["coverage"] = float(covered.sum() / max(gt_visible.sum(), 1))
    pred = np.where(visible[..., None], track3d_world, np.nan)
    scores["apd3d_covered"] = apd3d(pred, truth["tracks3d_world"], covered, truth["depth_m"],
                                    eval_focal_px(hfov_deg))["apd3d"]
    scores["points"] = int(visible.sum())
    return scores


def score_before_after(truth: dict, lifted: np.ndarray, lifted_visible: np.ndarray,
                       optimized: np.ndarray, optimized_visible: np.ndarray,
                       hfov_deg: float) -> dict:
    """Scores of the track optimisation: ``before`` (lifted tracks on their own frames),
    ``before_same_frames`` (lifted, on the frames the optimisation kept that have a lifted
    point: gap-filled frames have none) and ``after``."""
    return {
        "before": score_against_truth(lifted, lifted_visible, truth, hfov_deg),
        "before_same_frames": score_against_truth(lifted, optimized_visible & lifted_visible,
                                                  truth, hfov_deg),
        "after": score_against_truth(optimized, optimized_visible, truth, hfov_deg),
    }
