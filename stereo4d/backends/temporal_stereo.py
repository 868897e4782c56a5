"""Temporal multi-view refinement of a rectified view's disparities (the camera's motion as a
wider baseline).

The rig's baseline is 6.3 cm; a walking camera moves 3 cm per frame, so frames 6-12 apart
see a static surface from 0.2-0.4 m away. Where that motion has a component across the
pixel's ray (away from the motion's epipole) the neighbouring frames measure the pixel's
inverse depth more precisely than the stereo pair. For frame ``t`` of one view (a plane
sweep around the stereo answer, in inverse depth):

1. Hypotheses ``d0 + j step`` (``j = -half_hypotheses .. half_hypotheses``) around each
   pixel's (fused) stereo disparity ``d0`` px; ``step`` follows the pixel's predicted
   stereo noise (``search_sigmas`` sigmas on each side), within [``MIN_STEP_PX``,
   ``MAX_STEP_PX``], box-smoothed so that a window's pixels sweep one surface together.
2. For each neighbour ``s = t +- k`` (``offsets``) and hypothesis, every pixel is lifted
   with its hypothesis, moved into camera ``s`` (``camera2world``) and ``s``'s image is
   sampled there (``cv2.remap``); the match is scored by zero-mean normalised cross-
   correlation (ZNCC) over a ``window_px`` window, blind to exposure changes and gain.
3. A neighbour counts at a pixel where its best ZNCC reaches ``min_zncc`` and where it has
   parallax; the counting neighbours' ZNCC curves are summed (a multi-baseline cost in
   inverse depth), its maximum located with a parabola (only strictly inside the sweep).
4. The temporal estimate's noise is the pixel's single-view matching noise (the stereo
   pair's, px) over the root sum of squares of the neighbours' parallax ratios (image
   motion in px per px of disparity), with a floor (``TEMPORAL_NOISE_FLOOR``); it is
   combined with the stereo estimate in inverse depth (disparity), weights 1 / sigma^2,
   the combined noise inflated by ``NOISE_CORRELATION``.

The sweep moves the whole window's stereo surface together, so the temporal estimate keeps
the stereo's detail finer than the window and corrects its error at the window's scale.
Cost: 4 neighbours x 13 hypotheses of one remap and four box filters each, about 0.4 s per
512 x 512 frame and view on one core.

Pixels without a stereo disparity stay without one; pixels near the epipole (no parallax)
keep their stereo value. Moving objects and occlusions fail the ZNCC test or the sweep.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from stereo4d.geometry import relative_pose

__all__ = [
    "HALF_HYPOTHESES",
    "NOISE_CORRELATION",
    "SMOOTH_BASE_SPREAD_PX",
    "TEMPORAL_NOISE_FLOOR",
    "TemporalSettings",
    "combine",
    "parallax_ratio",
    "refine_sequence",
    "temporal_estimate",
    "temporal_refine_frame",
    "zncc",
]

HALF_HYPOTHESES = 6
"""Default hypotheses on each side of the stereo disparity (2 HALF_HYPOTHESES + 1 in all)."""
SEARCH_SIGMAS = 2.5
"""Default span of the sweep, in predicted stereo sigmas on each side (1.0 changed nothing
on t1: the predicted noise overestimates the error, so the steps are fine already)."""
SMOOTH_BASE_SPREAD_PX = 5.0
"""With ``smooth_base_px``, windows whose stereo disparities span more than this (px: a large
depth edge) keep the pixel's own value as the sweep's centre. On t4, x40, x41 (stereo
weight 0.4) 1 / 2 / 3 / 5 px / no limit gave mean AbsRel 4.33 / 4.24 / 4.20 / 4.16 / 4.16 %
at density 0.745 / 0.746 / 0.747 / 0.749 / 0.749."""
MIN_STEP_PX = 0.01
"""Smallest hypothesis step (disparity px)."""
MAX_STEP_PX = 0.25
"""Largest hypothesis step (disparity px)."""
MIN_PARALLAX_RATIO = 0.25
"""A neighbour counts only where its image moves at least this many px per px of disparity."""
TEMPORAL_NOISE_FLOOR = 0.35
"""The temporal estimate is never predicted more precise than this fraction of the
single-view matching noise, however large the parallax: measured on tuning clip t1, its
median error stops falling near 0.035 px while the parallax-only prediction keeps falling
(appearance change between frames 6-12 apart, interpolation). Chosen on t1-t5 (left view,
every third frame, no left-right check; 0 / 0.2 / 0.35 / 0.5: mean density 0.917 / 0.915 /
0.912 / 0.909 at AbsRel 3.40 / 3.34 / 3.29 / 3.28 %; without the refinement 0.896 / 3.58 %)."""
NOISE_CORRELATION = 0.3
"""Assumed correlation of the temporal and stereo estimates' errors (one texture, one
reference image): the combined variance is inflated by ``1 + NOISE_CORRELATION``. Chosen on
t1-t5 with the floor above (0 / 0.3 / 0.6: density 0.916 / 0.912 / 0.909 at AbsRel 3.34 /
3.29 / 3.26 %)."""
INTERPOLATION = cv2.INTER_LINEAR
"""Sampling of the neighbouring images."""
_MIN_DEPTH = 1e-3
"""Points closer than this (in the neighbour's normalised depth) are not projected."""
_NO_VALUE = 1e6
"""Stands for a missing disparity in ``_smoothed_base``'s max / min filters (px)."""
_MIN_VARIANCE = 1e-2
"""Windows whose grey-level variance is below this (levels^2) score no ZNCC."""


@dataclass(frozen=True)
class TemporalSettings:
    """Settings of the temporal refinement.

    Attributes:
      offsets: frame distances of the neighbours used on each side (both t - k and t + k).
        (4, 8, 12, 16, 20) on t1 / t4: more density (+0.01 / +0.01) at a higher AbsRel
        (+0.2 / +0.1 points) and 1.6x the cost.
      window_px: ZNCC window side (odd). 7 / 11 / 15 on t1 + t4: mean AbsRel 3.91 / 3.91 /
        4.00 % at density 0.887 / 0.888 / 0.888.
      min_zncc: a neighbour counts at a pixel where its best ZNCC reaches this (0.5 / 0.7 on
        t1 + t4: density 0.889 / 0.888 at AbsRel 4.00 / 3.91 %).
      search_sigmas: see ``SEARCH_SIGMAS``.
      half_hypotheses: see ``HALF_HYPOTHESES``.
      stereo_weight_scale: the stereo estimate's weight in ``combine`` is multiplied by this
        (1: weights 1 / sigma^2 as predicted; the combined noise is unchanged).
      smooth_base_px: the sweep's centre is the stereo disparity averaged over this window
        (odd; 0: the disparity itself) wherever its values in the window span at most
        ``smooth_base_spread_px``: the sweep corrects the stereo at the window's scale only,
        so without it the stereo's pixel-scale noise stays in the result.
      smooth_base_spread_px: see ``smooth_base_px`` and ``SMOOTH_BASE_SPREAD_PX``.
    """

    offsets: tuple[int, ...] = (6, 12)
    window_px: int = 11
    min_zncc: float = 0.7
    search_sigmas: float = SEARCH_SIGMAS
    half_hypotheses: int = HALF_HYPOTHESES
    stereo_weight_scale: float = 1.0
    smooth_base_px: int = 0
    smooth_base_spread_px: float = SMOOTH_BASE_SPREAD_PX

    def __post_init__(self):
        if self.window_px % 2 == 0 or self.window_px < 3:
            raise ValueError("temporal window_px must be odd and >= 3")
        if any(k <= 0 for k in self.offsets):
            raise ValueError("temporal offsets must be positive frame counts")
        if self.smooth_base_px < 0 or (self.smooth_base_px and self.smooth_base_px % 2 == 0):
            raise ValueError("temporal smooth_base_px must be 0 or odd")
        if self.stereo_weight_scale <= 0:
            raise ValueError("temporal stereo_weight_scale must be positive")
        if self.half_hypotheses < 1 or self.search_sigmas <= 0:
            raise ValueError("temporal half_hypotheses must be >= 1 and search_sigmas > 0")


def _box(image: np.ndarray, window_px: int) -> np.ndarray:
    return cv2.boxFilter(image, cv2.CV_32F, (window_px, window_px),
                         borderType=cv2.BORDER_REFLECT_101)


def zncc(reference_mean: np.ndarray, reference_std: np.ndarray, reference: np.ndarray,
         other: np.ndarray, weight: np.ndarray, window_px: int) -> np.ndarray:
    """ZNCC of ``other`` with ``reference`` over each pixel's window. float32 [H, W] each.

    reference_mean, reference_std: window mean and standard deviation of ``reference``;
    weight: 1 where ``other`` was sampled inside its image, else 0 (the window must be full).
    Returns float32 [H, W] in [-1, 1] (-1 where not defined).
    """
    mean_o = _box(other, window_px)
    var_o = _box(other * other, window_px) - mean_o * mean_o
    cross = _box(reference * other, window_px) - reference_mean * mean_o
    full = _box(weight, window_px) > 0.999
    with np.errstate(invalid="ignore", divide="ignore"):
        score = cross / (reference_std * np.sqrt(np.maximum(var_o, 0.0)))
    ok = full & (var_o > _MIN_VARIANCE) & (reference_std > np.sqrt(_MIN_VARIANCE))
    return np.where(ok & np.isfinite(score), score, -1.0).astype(np.float32)


def _rays(height: int, width: int, focal_px: float) -> np.ndarray:
    """Rays (x/z, y/z, 1) [3, H, W] float64 of the pixels (principal point at the centre)."""
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    return np.stack([(cols - (width - 1) / 2.0) / focal_px, (rows - (height - 1) / 2.0) / focal_px,
                     np.ones_like(rows)])


def parallax_ratio(rotated_rays: np.ndarray, translation: np.ndarray, disparity_px: np.ndarray,
                   focal_px: float, fb_px_m: float) -> np.ndarray:
    """Image motion in a neighbour per px of disparity (px / px) at ``disparity_px``.

    rotated_rays: [3, H, W] R ray; translation [3] (X_other = R X + t); disparity_px [H, W].
    The neighbour sees pixel p at ``f (A + rho t)_xy / (A + rho t)_z`` with ``rho = d / fB``.
    Returns float64 [H, W] (0 where the point is behind the neighbour).
    """
    rho = disparity_px / fb_px_m
    z = rotated_rays[2] + rho * translation[2]
    with np.errstate(invalid="ignore", divide="ignore"):
        du = (translation[0] * rotated_rays[2] - translation[2] * rotated_rays[0]) / z**2
        dv = (translation[1] * rotated_rays[2] - translation[2] * rotated_rays[1]) / z**2
        ratio = focal_px / fb_px_m * np.hypot(du, dv)
    return np.where(z > _MIN_DEPTH, np.nan_to_num(ratio), 0.0)


def _sample(image: np.ndarray, rotated_rays: np.ndarray, translation: np.ndarray,
            disparity_px: np.ndarray, focal_px: float, fb_px_m: float
            ) -> tuple[np.ndarray, np.ndarray]:
    """``image`` [H, W] float32 sampled where the neighbour sees each pixel lifted with
    ``disparity_px`` (rotated_rays [3, H, W] R ray, translation [3]; float32 arithmetic).
    Returns (values, inside) float32 [H, W] each."""
    height, width = image.shape
    rays = np.asarray(rotated_rays, np.float32)
    rho = np.asarray(disparity_px, np.float32) * np.float32(1.0 / fb_px_m)
    tx, ty, tz = (np.float32(v) for v in translation)
    z = rays[2] + rho * tz
    ahead = z > _MIN_DEPTH
    scale = np.float32(focal_px) / np.where(ahead, z, np.float32(1.0))
    map_x = (rays[0] + rho * tx) * scale + np.float32((width - 1) / 2.0)
    map_y = (rays[1] + rho * ty) * scale + np.float32((height - 1) / 2.0)
    inside = ahead & (map_x >= 0) & (map_x <= width - 1) & (map_y >= 0) & (map_y <= height - 1)
    map_x[~inside] = -1.0
    map_y[~inside] = -1.0
    values = cv2.remap(image, map_x, map_y, INTERPOLATION, borderMode=cv2.BORDER_REPLICATE)
    return values, inside.astype(np.float32)


def _smoothed_base(disparity_px: np.ndarray, has: np.ndarray, window_px: int,
                   max_spread_px: float) -> np.ndarray:
    """[H, W] disparities replaced by their mean over the valid pixels of the window where the
    window's valid values span at most ``max_spread_px`` (a plane's mean is its centre value,
    so slanted surfaces stay unbiased; depth edges keep the pixel's own value)."""
    valid = has.astype(np.float32)
    values = np.where(has, disparity_px, 0.0).astype(np.float32)
    kernel = np.ones((window_px, window_px), np.uint8)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = _box(values, window_px) / _box(valid, window_px)
    high = cv2.dilate(np.where(has, values, -_NO_VALUE).astype(np.float32), kernel)
    low = cv2.erode(np.where(has, values, _NO_VALUE).astype(np.float32), kernel)
    flat = has & (high - low <= max_spread_px)
    return np.where(flat, mean, disparity_px)


def _sweep_steps(sigma_px: np.ndarray, settings: TemporalSettings) -> np.ndarray:
    """Per-pixel hypothesis step (disparity px) [H, W] float32 from the stereo noise."""
    step = np.clip(settings.search_sigmas * np.nan_to_num(sigma_px, nan=MAX_STEP_PX)
                   / settings.half_hypotheses, MIN_STEP_PX, MAX_STEP_PX).astype(np.float32)
    return _box(step, settings.window_px)


def temporal_estimate(t: int, gray: np.ndarray, disparity_px: np.ndarray, sigma_px: np.ndarray,
                      match_sigma_px: np.ndarray, camera2world: np.ndarray, focal_px: float,
                      fb_px_m: float, settings: TemporalSettings = TemporalSettings()
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The neighbouring frames' own estimate of frame ``t``'s disparity (steps 1-3 above).

    Args:
      t: frame index.
      gray: [T, H, W] grey images of the view (all frames of the clip; uint8 or float32).
      disparity_px, sigma_px: [H, W] frame t's stereo disparity and its predicted noise
        (px; NaN = none), e.g. after ``stereo_fusion``: the sweep's centre and width.
      match_sigma_px: [H, W] single-view matching noise of the pixel's texture (px): the
        stereo pair's predicted noise before any fusion.
      camera2world: [T, 3, 4] the view's cameras; focal_px, fb_px_m: focal length (px) and
        focal length x baseline (px m).
    Returns:
      (disparity, sigma, views) float32 [H, W] x 2 and int32 [H, W]: the temporal disparity
      and its predicted noise (px; NaN where no neighbour counts or the best hypothesis is at
      the sweep's end: the neighbours then disagree with the stereo disparity) and the number
      of neighbours that counted.
    """
    count, height, width = gray.shape
    d0 = np.asarray(disparity_px, np.float32)
    has = np.isfinite(d0) & (d0 > 0) & np.isfinite(sigma_px) & (sigma_px > 0)
    d_base = np.where(has, d0, 0.0).astype(np.float64)
    if settings.smooth_base_px:
        d_base = _smoothed_base(d_base, has, settings.smooth_base_px,
                                settings.smooth_base_spread_px)
    window = settings.window_px
    reference = gray[t].astype(np.float32)
    ref_mean = _box(reference, window)
    ref_std = np.sqrt(np.maximum(_box(reference * reference, window) - ref_mean**2, 0.0))
    step = _sweep_steps(np.where(has, sigma_px, np.nan), settings).astype(np.float64)
    base32, step32 = d_base.astype(np.float32), step.astype(np.float32)
    half = settings.half_hypotheses
    offsets = np.arange(-half, half + 1)
    rays = _rays(height, width, focal_px)
    total = np.zeros((len(offsets), height, width), np.float32)
    parallax_sq = np.zeros((height, width))
    views = np.zeros((height, width), np.int32)
    neighbours = sorted({t + sign * k for k in settings.offsets for sign in (-1, 1)})
    for s in (s for s in neighbours if 0 <= s < count):
        rotation, translation = relative_pose(camera2world[t], camera2world[s])
        rotated = np.einsum("ij,jhw->ihw", rotation, rays)
        rotated32 = rotated.astype(np.float32)
        curve = np.empty_like(total)
        image = gray[s].astype(np.float32)
        for j, offset in enumerate(offsets):
            hypothesis = np.maximum(base32 + np.float32(offset) * step32, np.float32(1e-3))
            values, inside = _sample(image, rotated32, translation, hypothesis, focal_px, fb_px_m)
            curve[j] = zncc(ref_mean, ref_std, reference, values, inside, window)
        ratio = parallax_ratio(rotated, translation, d_base, focal_px, fb_px_m)
        counts = has & (curve.max(axis=0) >= settings.min_zncc) & (ratio >= MIN_PARALLAX_RATIO)
        total += curve * counts.astype(np.float32)
        parallax_sq += np.where(counts, ratio**2, 0.0)
        views += counts
    best = np.argmax(total, axis=0)
    interior = (best > 0) & (best < len(offsets) - 1) & (views > 0)
    j = np.clip(best, 1, len(offsets) - 2)
    left, centre, right = (np.take_along_axis(total, (j + o)[None], axis=0)[0] for o in (-1, 0, 1))
    curvature = left - 2 * centre + right
    with np.errstate(invalid="ignore", divide="ignore"):
        shift = np.where(curvature < 0, 0.5 * (left - right) / curvature, np.nan)
        d_temporal = d_base + (j - half + shift) * step
        sigma_temporal = match_sigma_px * np.sqrt(1.0 / parallax_sq + TEMPORAL_NOISE_FLOOR**2)
    usable = interior & np.isfinite(d_temporal) & np.isfinite(sigma_temporal) & (sigma_temporal > 0)
    return (np.where(usable, d_temporal, np.nan).astype(np.float32),
            np.where(usable, sigma_temporal, np.nan).astype(np.float32), views)


def combine(disparity_px: np.ndarray, sigma_px: np.ndarray, temporal_px: np.ndarray,
            temporal_sigma_px: np.ndarray, stereo_weight_scale: float = 1.0
            ) -> tuple[np.ndarray, np.ndarray]:
    """Stereo and temporal estimates [H, W] (px) combined with weights 1 / sigma^2 (step 4),
    the stereo's weight multiplied by ``stereo_weight_scale`` for the disparity only.

    Returns (disparity, sigma) float32 [H, W]; the stereo values where there is no temporal one.
    """
    usable = np.isfinite(temporal_px) & np.isfinite(disparity_px) & (sigma_px > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        w0, w1 = 1.0 / sigma_px**2, 1.0 / temporal_sigma_px**2
        scaled = w0 * stereo_weight_scale  # exactly w0 at 1.0 (clean clips unchanged)
        combined = (disparity_px * scaled + temporal_px * w1) / (scaled + w1)
        combined_sigma = np.minimum(np.sqrt((1.0 + NOISE_CORRELATION) / (w0 + w1)), sigma_px)
    return (np.where(usable, combined, disparity_px).astype(np.float32),
            np.where(usable, combined_sigma, sigma_px).astype(np.float32))


def temporal_refine_frame(t: int, gray: np.ndarray, disparity_px: np.ndarray,
                          sigma_px: np.ndarray, match_sigma_px: np.ndarray,
                          camera2world: np.ndarray, focal_px: float, fb_px_m: float,
                          settings: TemporalSettings = TemporalSettings()
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``temporal_estimate`` then ``combine``: frame t's refined (disparity, sigma) float32
    [H, W] px and the neighbours counted int32 [H, W] (arguments as ``temporal_estimate``)."""
    temporal, temporal_sigma, views = temporal_estimate(
        t, gray, disparity_px, sigma_px, match_sigma_px, camera2world, focal_px, fb_px_m, settings)
    return (*combine(disparity_px, sigma_px, temporal, temporal_sigma,
                     settings.stereo_weight_scale), views)


def refine_sequence(fused: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]], gray: np.ndarray,
                    camera2world: np.ndarray, focal_px: float, fb_px_m: float,
                    settings: TemporalSettings = TemporalSettings()
                    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``temporal_refine_frame`` over a clip's frames, in order.

    fused: per frame (disparity, sigma, match_sigma) [H, W] px (see ``temporal_estimate``);
    gray: [T, H, W] the view's grey images; camera2world: [T, 3, 4] the view's cameras.
    Yields per frame (disparity, sigma) float32 [H, W] px.
    """
    for t, (disparity, sigma, match_sigma) in enumerate(fused):
        refined, refined_sigma, _ = temporal_refine_frame(
            t, gray, disparity, sigma, match_sigma, camera2world, focal_px, fb_px_m, settings)
        yield refined, refined_sigma
