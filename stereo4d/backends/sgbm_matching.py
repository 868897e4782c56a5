"""The raw matching of the ``sgbm`` stereo backend: OpenCV semi-global block matching of both
views of a rectified pair, their two-way consistency check and the background fill of the
pixels left without a match (``classical_stereo`` refines and fuses what these give)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from stereo4d.backends.classical_stereo import SgbmSettings

__all__ = [
    "SGBM_DISPARITY_STEP",
    "SGBM_MODES",
    "SGBM_SUBPIXEL",
    "fill_from_background",
    "left_right_consistent",
    "sgbm_disparities",
]

SGBM_MODES = {
    "sgbm": cv2.STEREO_SGBM_MODE_SGBM,
    "hh": cv2.STEREO_SGBM_MODE_HH,
    "sgbm_3way": cv2.STEREO_SGBM_MODE_SGBM_3WAY,
    "hh4": cv2.STEREO_SGBM_MODE_HH4,
}
"""OpenCV SGBM variants: path directions and speed (3way: fastest, hh: 8 paths, slowest)."""
SGBM_SUBPIXEL = 16
"""StereoSGBM returns fixed-point disparities in 1/16 px."""
SGBM_DISPARITY_STEP = 16
"""StereoSGBM's ``numDisparities`` must be a multiple of this."""


def _matcher(settings: SgbmSettings) -> cv2.StereoSGBM:
    area = settings.block_size_px**2
    return cv2.StereoSGBM_create(
        minDisparity=0,
        numDisparities=settings.num_disparities,
        blockSize=settings.block_size_px,
        P1=settings.smoothness_p1 * area,
        P2=settings.smoothness_p2 * area,
        disp12MaxDiff=-1,  # our own two-way check below
        uniquenessRatio=settings.uniqueness_percent,
        speckleWindowSize=settings.speckle_window_px,
        speckleRange=settings.speckle_range_px,
        mode=SGBM_MODES[settings.mode],
    )


def sgbm_disparities(left_gray: np.ndarray, right_gray: np.ndarray, settings: SgbmSettings
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Raw SGBM disparities of both views. uint8 [H, W] each -> float32 [H, W] x 2 (NaN = none).

    The right view's disparity (positive; its match is at ``x + d`` in the left
    view) comes from matching the mirrored pair.
    """
    matcher = _matcher(settings)
    pad = settings.num_disparities

    def match(reference: np.ndarray, target: np.ndarray) -> np.ndarray:
        # SGBM leaves the first ``numDisparities`` columns unmatched; padding on the
        # left lets every pixel whose match lies inside the other view be matched.
        padded = [cv2.copyMakeBorder(np.ascontiguousarray(im), 0, 0, pad, 0, cv2.BORDER_REFLECT_101)
                  for im in (reference, target)]
        return matcher.compute(padded[0], padded[1])[:, pad:]

    left_raw = match(left_gray, right_gray)
    right_raw = match(right_gray[:, ::-1], left_gray[:, ::-1])[:, ::-1]
    out = []
    for raw in (left_raw, right_raw):
        disparity = raw.astype(np.float32) / SGBM_SUBPIXEL
        disparity[raw < 0] = np.nan  # SGBM marks "no match" as (minDisparity - 1) * 16 < 0
        out.append(np.ascontiguousarray(disparity))
    return out[0], out[1]


def left_right_consistent(disp_left: np.ndarray, disp_right: np.ndarray,
                          tolerance_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Two-way check. Disparities float [H, W] (NaN = none) -> (keep_left, keep_right) bool.

    Left pixel x matches right pixel x - d_L; right pixel x matches left pixel x + d_R.
    The other view's disparity is sampled at the nearest pixel on either side and
    the better one counts (robust at the discontinuities).
    """
    width = disp_left.shape[1]
    cols = np.arange(width, dtype=np.float32)[None, :]

    def check(own, other, sign):
        target = cols + sign * own
        near = []
        for rounding in (np.floor, np.ceil):
            idx = rounding(np.nan_to_num(target, nan=-1.0))
            ok = (idx >= 0) & (idx <= width - 1)
            picked = np.take_along_axis(other, np.clip(idx, 0, width - 1).astype(np.intp), axis=1)
            near.append(np.where(ok, np.abs(picked - own), np.inf))
        return np.fmin(near[0], near[1]) <= tolerance_px

    return check(disp_left, disp_right, -1.0), check(disp_right, disp_left, +1.0)


def fill_from_background(disparity: np.ndarray) -> np.ndarray:
    """Fills NaN pixels with the smaller of the nearest finite values left and right on the row.

    float [H, W] -> float32 [H, W]; rows without any finite value become 0.
    """
    height, width = disparity.shape
    valid = np.isfinite(disparity)
    cols = np.broadcast_to(np.arange(width), (height, width))
    left_idx = np.maximum.accumulate(np.where(valid, cols, -1), axis=1)
    right_idx = np.minimum.accumulate(np.where(valid, cols, width)[:, ::-1], axis=1)[:, ::-1]
    rows = np.arange(height)[:, None]
    from_left = np.where(left_idx >= 0, disparity[rows, np.clip(left_idx, 0, width - 1)], np.nan)
    from_right = np.where(right_idx < width,
                          disparity[rows, np.clip(right_idx, 0, width - 1)], np.nan)
    filled = np.where(valid, disparity, np.fmin(from_left, from_right))
    return np.nan_to_num(filled, nan=0.0).astype(np.float32)
