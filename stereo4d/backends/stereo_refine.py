"""Sub-pixel refinement and confidence of a rectified-stereo disparity map (no weights).

Slanted-window Lucas-Kanade along the epipolar line. For each pixel p the
disparity in its window is modelled as a plane ``d(q) = d_p + a u + b v``
(``u, v``: column and row offsets of q from p) and fitted by weighted least
squares to the brightness constancy ``own(q) = other(q + sign * d(q))``. Each
window pixel q is linearised at its *own* current disparity ``d_q``, which turns
the fit into a weighted local-linear regression of the per-pixel estimates
``t_q = d_q + r_q / g_q`` (``r``: residual ``own - warped other``, ``g``: signed
x-gradient of the warped other view) with weights ``g_q^2``:

    minimise  sum_q w(u, v) g_q^2 (t_q - d_p - a u - b v)^2  (+ damping)

All window sums are separable correlations (``cv2.sepFilter2D``), the 3 x 3
normal equations are solved in closed form for ``d_p``, so each Gauss-Newton
step costs a few image-sized filters. The plane model removes the bias of a
fronto-parallel window on slanted surfaces (road, facades) and at one-sided
windows (next to rejected pixels, which carry no weight). A plane cannot model a
depth edge, though: ``refine_disparity_two_scale`` uses a small window wherever
the initial disparities in the large window span more than a few pixels.

Confidence: ``relative_disparity_noise`` is the per-pixel disparity noise
predicted from the window (residual rms / gradient rms, pixels) divided by the
disparity, i.e. the relative depth noise of a single pixel. It is large on
texture-less surfaces (gradient ~ noise), at mismatches (large residual) and for
far surfaces (small disparity), the pixels that dominate depth AbsRel.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = [
    "RESIDUAL_FLOOR_GREY2",
    "disparity_spread",
    "refine_disparity",
    "refine_disparity_two_scale",
    "relative_disparity_noise",
    "remove_local_mean",
]

RESIDUAL_FLOOR_GREY2 = 1.0
"""Smallest residual variance assumed (grey levels^2, 8-bit scale): 8-bit quantisation
(1/12) plus a margin, so that a perfect match on weak texture is not over-trusted."""
_SINGULAR = 1e-12
"""Determinants below this mark windows without any weight (the disparity is kept)."""


def remove_local_mean(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """``image`` minus its Gaussian-blurred self (0: unchanged). float32 [H, W] -> float32 [H, W].

    Makes the brightness-constancy match blind to a brightness offset or gain
    difference between the two cameras that varies slowly across the image.
    """
    image = np.asarray(image, np.float32)
    if sigma_px <= 0:
        return image
    return image - cv2.GaussianBlur(image, (0, 0), sigma_px, borderType=cv2.BORDER_REFLECT_101)


def _window_kernels(window_px: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """1-D box window weights w(u) summing to 1, and w(u) u, w(u) u^2. float32 [window_px] each."""
    offsets = np.arange(window_px, dtype=np.float32) - window_px // 2
    weights = np.full(window_px, 1.0 / window_px, dtype=np.float32)
    return weights, weights * offsets, weights * offsets**2


def _window_sum(image: np.ndarray, kernel_x: np.ndarray, kernel_y: np.ndarray) -> np.ndarray:
    """sum_(u, v) kx(u) ky(v) image[y + v, x + u] (zero outside). float32 [H, W]."""
    return cv2.sepFilter2D(image, cv2.CV_32F, kernel_x, kernel_y, borderType=cv2.BORDER_CONSTANT)


def _warp_rows(image: np.ndarray, map_x: np.ndarray, grid_y: np.ndarray) -> np.ndarray:
    return cv2.remap(image, map_x, grid_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def refine_disparity(own: np.ndarray, other: np.ndarray, disparity: np.ndarray, sign: float, *,
                     iterations: int, window_px: int, damping: float, slope_damping: float,
                     max_step_px: float) -> np.ndarray:
    """Slanted-window Lucas-Kanade refinement of a disparity map.

    Args:
      own, other: float32 [H, W] grey images (0..255); ``own``'s pixel x matches
        ``other`` at ``x + sign * disparity`` on the same row (sign -1 for the left view).
      disparity: float32 [H, W] initial disparity in pixels (NaN = none: left NaN,
        and given no weight in its neighbours' windows).
      iterations: Gauss-Newton steps.
      window_px: side of the square (box) window, odd.
      damping: pull towards the current estimate, in squared grey levels per pixel
        of window-mean squared gradient: windows whose texture is weaker than this
        barely move.
      slope_damping: pull of the plane's slopes (a, b) towards 0, same units.
      max_step_px: the result stays within this of the input (and >= 0).
    Returns:
      float32 [H, W] refined disparity (NaN where the input is NaN).
    """
    height, width = own.shape
    valid = np.isfinite(disparity)
    weight_mask = valid.astype(np.float32)
    start = np.where(valid, disparity, 0.0).astype(np.float32)
    lower, upper = np.maximum(start - max_step_px, 0.0), start + max_step_px
    current = start.copy()
    grad_other = cv2.Sobel(other, cv2.CV_32F, 1, 0, ksize=3, scale=1 / 8)
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32),
                                 np.arange(height, dtype=np.float32))
    k0, k1, k2 = _window_kernels(window_px)
    slope_prior = slope_damping * float(np.sum(k2))  # sum w u^2: slopes in px per px
    for _ in range(iterations):
        map_x = grid_x + sign * current
        residual = own - _warp_rows(other, map_x, grid_y)
        grad = _warp_rows(grad_other, map_x, grid_y) * (sign * weight_mask)
        weight = grad * grad
        target = weight * current + grad * residual  # weight * t_q
        # normal equations [s00 s01 s02; s01 s11 s12; s02 s12 s22] (d, a, b) = (b0, b1, b2)
        s00 = _window_sum(weight, k0, k0) + damping
        s01, s02 = _window_sum(weight, k1, k0), _window_sum(weight, k0, k1)
        s11 = _window_sum(weight, k2, k0) + slope_prior
        s22 = _window_sum(weight, k0, k2) + slope_prior
        s12 = _window_sum(weight, k1, k1)
        b0 = _window_sum(target, k0, k0) + damping * current
        b1, b2 = _window_sum(target, k1, k0), _window_sum(target, k0, k1)
        cof0 = s11 * s22 - s12 * s12
        cof1 = s02 * s12 - s01 * s22
        cof2 = s01 * s12 - s02 * s11
        det = s00 * cof0 + s01 * cof1 + s02 * cof2
        solvable = np.abs(det) > _SINGULAR
        solved = (b0 * cof0 + b1 * cof1 + b2 * cof2) / np.where(solvable, det, 1.0)
        current = np.clip(np.where(solvable & np.isfinite(solved), solved, current), lower, upper)
    return np.where(valid, current, np.nan).astype(np.float32)


def disparity_spread(disparity: np.ndarray, window_px: int) -> np.ndarray:
    """Range (max - min) of the finite disparities in each pixel's square window.

    float [H, W] (NaN = none) -> float32 [H, W] pixels (negative where the window has none).
    """
    kernel = np.ones((window_px, window_px), np.uint8)
    finite = np.isfinite(disparity)
    highest = cv2.dilate(np.where(finite, disparity, -np.inf).astype(np.float32), kernel)
    lowest = cv2.erode(np.where(finite, disparity, np.inf).astype(np.float32), kernel)
    with np.errstate(invalid="ignore", over="ignore"):  # +-inf where the window has none
        return np.nan_to_num(highest - lowest, nan=-1.0, neginf=-1.0)


def refine_disparity_two_scale(own: np.ndarray, other: np.ndarray, disparity: np.ndarray,
                               sign: float, *, window_px: int, edge_window_px: int,
                               edge_spread_px: float, **options) -> np.ndarray:
    """``refine_disparity`` with ``window_px``, and with ``edge_window_px`` where the input
    disparities in the ``window_px`` window span more than ``edge_spread_px`` (depth edges).

    Arguments and result as in ``refine_disparity`` (``options``: its keyword arguments).
    """
    large = refine_disparity(own, other, disparity, sign, window_px=window_px, **options)
    near_edge = disparity_spread(disparity, window_px) > edge_spread_px
    if not np.any(near_edge):
        return large
    small = refine_disparity(own, other, disparity, sign, window_px=edge_window_px, **options)
    return np.where(near_edge, small, large)


def relative_disparity_noise(own: np.ndarray, other: np.ndarray, disparity: np.ndarray,
                             sign: float, window_px: int) -> np.ndarray:
    """Predicted single-pixel disparity noise over disparity (a relative depth error).

    ``sqrt((mean r^2 + RESIDUAL_FLOOR_GREY2) / mean g^2) / d`` over the valid pixels
    of the window, with ``r`` the residual and ``g`` the x-gradient of ``other``
    warped by ``disparity``.

    Args:
      own, other, disparity, sign: as in ``refine_disparity``.
      window_px: side of the averaging window (odd).
    Returns:
      float32 [H, W], dimensionless; inf where the disparity is NaN or <= 0 or the
      window has no gradient.
    """
    height, width = own.shape
    valid = np.isfinite(disparity)
    weight_mask = valid.astype(np.float32)
    current = np.where(valid, disparity, 0.0).astype(np.float32)
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32),
                                 np.arange(height, dtype=np.float32))
    map_x = grid_x + sign * current
    grad_other = cv2.Sobel(other, cv2.CV_32F, 1, 0, ksize=3, scale=1 / 8)
    residual = (own - _warp_rows(other, map_x, grid_y)) * weight_mask
    grad = _warp_rows(grad_other, map_x, grid_y) * weight_mask
    k0 = _window_kernels(window_px)[0]
    # Ratios of window sums: the count of valid pixels cancels.
    residual_energy = _window_sum(residual * residual, k0, k0)
    gradient_energy = _window_sum(grad * grad, k0, k0)
    count = _window_sum(weight_mask, k0, k0)
    with np.errstate(divide="ignore", invalid="ignore"):
        noise_px = np.sqrt((residual_energy + RESIDUAL_FLOOR_GREY2 * count) / gradient_energy)
        relative = noise_px / current
    usable = valid & (current > 0) & (gradient_energy > 0)
    return np.where(usable & np.isfinite(relative), relative, np.inf).astype(np.float32)
