"""A clip's stereo noise level from the left-right disagreement, and the confidence test scaled by it.

The per-pixel noise that ``stereo_refine.relative_disparity_noise`` predicts from one
matching window (residual rms / gradient rms) is right on clean video. On low-bitrate video
(x264, 4:2:0 chroma) the real error is larger than predicted for the same residual:
compression blurs and displaces the fine texture the match relies on, and its error is
spatially correlated, so the window does not average it away. On the suite's tuning clips
the median |error| / predicted sigma is 0.10-0.11 on the four clean clips and 0.20 on the
low-bitrate one (t4).

The left and right views are refined separately, so their disagreement shows the extra
noise without ground truth: the median of ``|d_L(x) - d_R(x - d_L)|`` over the pixels that
pass the confidence test is 0.010-0.014 px on the clean tuning clips (t1, t2, t3, t5) and
0.035 px on t4 (0.008-0.010 px on an exact render, 0.019-0.023 px on it after JPEG at
quality 15). ``clip_disagreement_px`` measures it on a few frames of a clip;
``scaled_noise_threshold`` lowers the confidence test's relative-noise threshold on a clip
whose disagreement exceeds clean video's, so compressed clips reject what they cannot
measure. Clean clips (disagreement below the reference) keep the threshold exactly. The
scaling is off by default (``SgbmSettings.noise_threshold_exponent`` = 0): on compressed
clips it costs 0.1-0.15 of density per point of depth AbsRel (README, "Stereo on compressed
video"); the disagreement is still measured and recorded, and above ``CLEAN_DISAGREEMENT_PX``
it switches the temporal refinement to its settings for noisy clips
(``SgbmSettings.temporal_for``: README, "Compressed video: the floor").
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["CLEAN_DISAGREEMENT_PX", "NOISE_SAMPLE_FRAMES", "clip_disagreement_px",
           "left_right_disagreement_px", "noise_sample_frames", "scaled_noise_threshold"]

CLEAN_DISAGREEMENT_PX = 0.015
"""Median left-right disagreement (px) up to which a clip counts as clean video: above the
four clean tuning clips (0.010-0.014 px) and exact renders (0.008-0.010 px), below the
low-bitrate tuning clip t4 (0.035 px)."""
NOISE_SAMPLE_FRAMES = 4
"""Frames (spread evenly over the clip) on which the clip's disagreement is measured."""
_NO_MATCH = -1e6
"""Disparity written where the right view has none: any bilinear sample touching it is < 0."""


def noise_sample_frames(num_frames: int, count: int = NOISE_SAMPLE_FRAMES) -> list[int]:
    """Up to ``count`` distinct frame indices spread evenly over ``num_frames`` frames."""
    if num_frames <= 0:
        return []
    return sorted({int(t) for t in np.linspace(0, num_frames - 1, count).round()})


def left_right_disagreement_px(disp_left: np.ndarray, disp_right: np.ndarray,
                               relative_noise_left: np.ndarray,
                               max_relative_noise: float) -> np.ndarray:
    """``|d_L(x) - d_R(x - d_L)|`` (px) at the left pixels that pass the confidence test.

    Args:
      disp_left, disp_right: float [H, W] refined disparities (NaN = none); the left pixel x
        matches the right pixel x - d_L (the right view is sampled bilinearly).
      relative_noise_left: float [H, W] the left view's predicted relative noise.
      max_relative_noise: the confidence test's threshold (0: every pixel counts).
    Returns:
      float32 [N] over the left pixels with a disparity, a right disparity around their match
      (all four bilinear neighbours) and, with a threshold, relative noise within it.
    """
    height, width = disp_left.shape
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32),
                                 np.arange(height, dtype=np.float32))
    map_x = grid_x - np.nan_to_num(disp_left, nan=0.0).astype(np.float32)
    right = np.where(np.isfinite(disp_right), disp_right, _NO_MATCH).astype(np.float32)
    right_at = cv2.remap(right, map_x, grid_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=_NO_MATCH)
    ok = np.isfinite(disp_left) & (right_at >= 0)
    if max_relative_noise:
        with np.errstate(invalid="ignore"):
            ok &= relative_noise_left <= max_relative_noise
    return np.abs(disp_left - right_at)[ok].astype(np.float32)


def clip_disagreement_px(disagreements: list[np.ndarray]) -> float:
    """Median over the sample frames' ``left_right_disagreement_px`` (NaN when none)."""
    values = np.concatenate([np.ravel(d) for d in disagreements] + [np.zeros(0, np.float32)])
    return float(np.median(values)) if values.size else float("nan")


def scaled_noise_threshold(max_relative_noise: float, disagreement_px: float, exponent: float,
                           clean_px: float = CLEAN_DISAGREEMENT_PX) -> float:
    """The confidence test's threshold for a clip: ``max_relative_noise * min(1, clean_px /
    disagreement_px) ** exponent`` (unchanged when the disagreement is NaN, the exponent 0
    or the test off)."""
    if (not max_relative_noise or not exponent or not np.isfinite(disagreement_px)
            or disagreement_px <= clean_px):
        return max_relative_noise
    return float(max_relative_noise * (clean_px / disagreement_px) ** exponent)
