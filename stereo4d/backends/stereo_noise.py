"""A clip's stereo noise level from the left-right disagreement, and the confidence test scaled by it.

The per-pixel noise that ``stereo_refine.relative_disparity_noise`` predicts from one
matching window (residual rms / gradient rms) is calibrated on clean video. On low-bitrate
video (x264, 4:2:0 chroma) the real error is larger than predicted for the same residual:
compression blurs and displaces the fine texture the match relies on, and its error is
spatially correlated, so the window does not average it away. On the suite's tuning clips
the median |error| / predicted sigma is 0.10-0.11 on the four clean clips and 0.20 on the
low-bitrate one (t4).

The left and right views are refined separately, so their disagreement measures the same
miscalibration without ground truth: the median of ``|d_L(x) - d_R(x - d_L)|`` over the
combined predicted sigma is 0.011-0.013 on the clean tuning clips and 0.024 on t4 (2.0x,
as the true error ratio). ``clip_noise_ratio`` computes it on a few frames of a clip;
``scaled_noise_threshold`` lowers the confidence test's relative-noise threshold on clips
whose ratio exceeds a clean-video reference, so compressed clips reject what they cannot
measure. Clean clips (ratio below the reference) keep the threshold exactly.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["CLEAN_LR_RATIO", "NOISE_SAMPLE_FRAMES", "clip_noise_ratio", "left_right_ratios",
           "noise_sample_frames", "scaled_noise_threshold"]

CLEAN_LR_RATIO = 0.015
"""Left-right disagreement over predicted sigma (median) up to which a clip counts as clean:
above the four clean tuning clips (t1, t2, t3, t5: 0.011-0.013), below the low-bitrate t4
(0.024)."""
NOISE_SAMPLE_FRAMES = 4
"""Frames (spread evenly over the clip) on which the clip's ratio is measured."""
_NO_MATCH = -1e6
"""Disparity written where the other view has none, so that interpolation near it fails the
finite-value test (any |difference| with it is huge)."""


def noise_sample_frames(num_frames: int, count: int = NOISE_SAMPLE_FRAMES) -> list[int]:
    """Up to ``count`` distinct frame indices spread evenly over ``num_frames`` frames."""
    if num_frames <= 0:
        return []
    return sorted({int(t) for t in np.linspace(0, num_frames - 1, count).round()})


def left_right_ratios(disp_left: np.ndarray, disp_right: np.ndarray, sigma_left_px: np.ndarray,
                      sigma_right_px: np.ndarray, max_relative_noise: float) -> np.ndarray:
    """Left-right disagreement over combined predicted sigma at the left pixels that pass the
    confidence test (``sigma_L / d_L <= max_relative_noise``; 0: every pixel) and have a match.

    Args:
      disp_left, disp_right: float [H, W] refined disparities (NaN = none); the left pixel x
        matches the right pixel x - d_L.
      sigma_left_px, sigma_right_px: float [H, W] predicted single-pixel disparity noise (px;
        NaN / inf = none).
      max_relative_noise: the confidence test's threshold (0: off).
    Returns:
      float32 [N] ``|d_L(x) - d_R(x - d_L)| / sqrt(sigma_L^2 + sigma_R(x - d_L)^2)`` (the right
      view bilinear for the disparity, nearest for its sigma), over the left pixels where
      every term is finite.
    """
    height, width = disp_left.shape
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32),
                                 np.arange(height, dtype=np.float32))
    map_x = grid_x - np.nan_to_num(disp_left, nan=0.0).astype(np.float32)
    right = np.where(np.isfinite(disp_right), disp_right, _NO_MATCH).astype(np.float32)
    right_at = cv2.remap(right, map_x, grid_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=_NO_MATCH)
    sigma_r = np.where(np.isfinite(sigma_right_px), sigma_right_px, np.inf).astype(np.float32)
    sigma_r_at = cv2.remap(sigma_r, map_x, grid_y, cv2.INTER_NEAREST,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=np.inf)
    with np.errstate(invalid="ignore", over="ignore"):
        combined = np.hypot(sigma_left_px, sigma_r_at)
        ratio = np.abs(disp_left - right_at) / combined
        confident = (sigma_left_px <= max_relative_noise * disp_left if max_relative_noise
                     else np.isfinite(sigma_left_px))
    ok = (np.isfinite(ratio) & np.isfinite(disp_left) & (right_at > _NO_MATCH / 2)
          & (combined > 0) & confident)
    return ratio[ok].astype(np.float32)


def clip_noise_ratio(ratios: list[np.ndarray]) -> float:
    """Median of the sample frames' ``left_right_ratios`` (NaN when none has a pixel)."""
    values = np.concatenate([np.asarray(r, np.float32).ravel() for r in ratios] or [[]])
    return float(np.median(values)) if values.size else float("nan")


def scaled_noise_threshold(max_relative_noise: float, ratio: float, exponent: float,
                           clean_ratio: float = CLEAN_LR_RATIO) -> float:
    """The confidence test's threshold for a clip: ``max_relative_noise * min(1, clean_ratio /
    ratio) ** exponent`` (unchanged when the ratio is NaN, the exponent 0 or the test off)."""
    if not max_relative_noise or not exponent or not np.isfinite(ratio) or ratio <= clean_ratio:
        return max_relative_noise
    return float(max_relative_noise * (clean_ratio / ratio) ** exponent)
