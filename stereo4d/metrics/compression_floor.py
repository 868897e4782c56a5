"""How precise can stereo matching be on a clip's frames: an oracle matcher that knows the truth.

A real matcher's disparity error mixes two things: what the images allow (texture, noise,
compression artefacts) and the matcher's own failures (wrong integer matches, biased
sub-pixel fits, windows across depth edges). The oracle here removes the second kind. For
each pixel it searches only a small interval of common offsets ``delta`` (default +-1 px)
around the TRUE disparity and picks the one that minimises the matching cost:

    cost_p(delta) = sum over q in the block around p, over frames s in the window of
                    (L_s(q_s(delta)) - R_s(q_s(delta) - d_s(delta)))^2

where every block pixel ``q`` is shifted by its own true disparity plus the common offset
(the block has the true shape of the surface: no fronto-parallel or plane bias), and
``L``, ``R`` are the views minus their local mean (``stereo_refine.remove_local_mean``, the
same images the pipeline's sub-pixel refinement compares). With one frame this is the stereo
pair's own cost. With a temporal window (``radius`` frames each side) the hypothesis is a 3D
point on the pixel's ray at the depth ``f B / (d + delta)``: it is moved into each
neighbouring frame's camera with the true poses, and that frame's stereo pair is compared at
its projection (static surfaces only, and only where the truth says the point is visible):
the aggregation over time that a multi-frame matcher could at best buy.

The sub-pixel minimum comes from a parabola through the best sampled offset and its two
neighbours. The oracle's disparity ``d + delta_hat`` is scored like the pipeline's (EPE,
depth AbsRel) on the pixels the pipeline keeps, so the two compare directly: the oracle's
figure is a floor set by the data for that matching cost and block, not by the matcher.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

from stereo4d.geometry import relative_pose

__all__ = [
    "ORACLE_VARIANTS",
    "SEARCH_PX",
    "SPLINE_ORDER",
    "STEP_PX",
    "VISIBILITY_TOLERANCE",
    "block_cost",
    "floor_errors",
    "hypothesis_offsets",
    "neighbour_residuals",
    "oracle_frame",
    "pair_residuals",
    "subpixel_minimum",
]

SEARCH_PX = 1.0
"""Half-width (px) of the interval of offsets searched around the true disparity: wide enough
for any sub-pixel error, narrow enough that a wrong integer match (a different minimum of the
cost) cannot be picked."""
STEP_PX = 0.1
"""Spacing (px) of the sampled offsets; a parabola refines the best one (the cost curve of an
exact interpolation is smooth: 0.05 changed the figures by < 0.002 px on h4)."""
VISIBILITY_TOLERANCE = 0.02
"""A hypothesis point counts as visible in a neighbouring frame when that frame's true depth at
its projection agrees with the point's depth within this fraction."""
SPLINE_ORDER = 3
"""Image interpolation at sub-pixel positions: cubic B-spline at the exact positions
(``scipy.ndimage.map_coordinates``). Not ``cv2.remap``: it rounds positions to 1/32 px, which
puts steps of that size into the cost curves (0.03 px of error on an exact, noise-free pair)."""
ORACLE_VARIANTS = {
    "1 pair, block 5": (5, 0, ()),
    "1 pair, block 9": (9, 0, ()),
    "1 pair, block 15": (15, 0, ()),
    "5 pairs, block 5": (5, 2, ()),
    "5 pairs, block 15": (15, 2, ()),
    "13 pairs, block 5": (5, 6, ()),
    "13 pairs, block 15": (15, 6, ()),
    "1 pair + motion, block 5": (5, 0, (6, 12)),
    "1 pair + motion, block 15": (15, 0, (6, 12)),
}
"""The oracles ``oracle_frame`` runs by default: name -> (block side px, stereo radius: the
stereo pairs of the frames up to this far on each side are summed, motion offsets: the left
views this many frames before and after are compared with the frame's own left view, as the
pipeline's temporal refinement does with 6 and 12). Block 5 is the SGBM block, 15 the
sub-pixel refinement's window; 13 pairs is the fusion's span."""
_FAR = -1e4
"""Sample position (px) given to pixels without a hypothesis: outside any image."""


def hypothesis_offsets(search_px: float = SEARCH_PX, step_px: float = STEP_PX) -> np.ndarray:
    """Offsets from the true disparity, float64 [K], symmetric around 0 (0 included)."""
    half = round(search_px / step_px)
    return np.arange(-half, half + 1, dtype=np.float64) * step_px


def _spline(image: np.ndarray) -> np.ndarray:
    """B-spline coefficients of an image [H, W] for ``_sample``."""
    return ndimage.spline_filter(np.asarray(image, np.float32), order=SPLINE_ORDER,
                                 output=np.float32)


def _sample(coefficients: np.ndarray, map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
    """The image of ``coefficients`` (``_spline``) at (map_x, map_y) [H, W]; 0 outside."""
    return ndimage.map_coordinates(coefficients, [map_y, map_x], order=SPLINE_ORDER,
                                   prefilter=False, mode="constant", cval=0.0,
                                   output=np.float32)


def _inside(map_x: np.ndarray, map_y: np.ndarray, width: int, height: int) -> np.ndarray:
    """Positions whose cubic footprint (2 px each side) lies in the image."""
    margin = 2.0
    return ((map_x >= margin) & (map_x <= width - 1 - margin)
            & (map_y >= margin) & (map_y <= height - 1 - margin))


def pair_residuals(left: np.ndarray, right: np.ndarray, disparity_px: np.ndarray,
                   offsets_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Squared differences of one rectified pair at the true disparity plus each offset.

    Args:
      left, right: float32 [H, W] views (e.g. minus their local mean).
      disparity_px: float [H, W] true left disparity (the left pixel x matches the right pixel
        x - d; not > 0 or NaN: no surface).
      offsets_px: [K] offsets.
    Returns:
      (residuals float32 [K, H, W], weight float32 [H, W]: 1 where every offset's right sample
      lies inside the view and the truth has a surface, else 0; residuals are 0 there).
    """
    height, width = disparity_px.shape
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float64),
                                 np.arange(height, dtype=np.float64))
    surface = np.isfinite(disparity_px) & (disparity_px > 0)
    d = np.where(surface, disparity_px, 0.0)
    span = float(np.max(np.abs(offsets_px)))
    weight = surface & _inside(grid_x - d - span, grid_y, width, height) \
        & _inside(grid_x - d + span, grid_y, width, height)
    out = np.empty((len(offsets_px), height, width), np.float32)
    right = _spline(right)
    for k, offset in enumerate(offsets_px):
        out[k] = (left - _sample(right, grid_x - d - offset, grid_y)) ** 2
    out *= weight
    return out, weight.astype(np.float32)


def _rays(height: int, width: int, focal_px: float) -> np.ndarray:
    """Camera rays (x/z, y/z, 1) of every pixel, float64 [H, W, 3] (principal point centred)."""
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    return np.stack([(cols - (width - 1) / 2) / focal_px, (rows - (height - 1) / 2) / focal_px,
                     np.ones_like(cols)], axis=-1)


def _project(points: np.ndarray, focal_px: float, height: int, width: int):
    """Camera points [..., 3] -> (x, y, depth) [...] pixels (x = _FAR behind the camera)."""
    z = points[..., 2]
    ahead = z > 1e-3
    safe_z = np.where(ahead, z, 1.0)
    x = np.where(ahead, focal_px * points[..., 0] / safe_z + (width - 1) / 2, _FAR)
    y = np.where(ahead, focal_px * points[..., 1] / safe_z + (height - 1) / 2, _FAR)
    return x, y, np.where(ahead, z, np.nan)


def _hypotheses_in(disparity_px, static, c2w_ref, c2w_other, depth_other_m, focal_px,
                   baseline_m, offsets_px, need_right):
    """The reference pixels' hypotheses seen from another frame: (positions, weight).
    ``positions(offset)`` -> (x, y, x in the right view, depth) [H, W] in the other frame;
    weight bool [H, W]: static, visible there (truth at offset 0) and inside its left view
    (and right view with ``need_right``) for every offset."""
    height, width = disparity_px.shape
    fb = focal_px * baseline_m
    surface = np.isfinite(disparity_px) & (disparity_px > 0) & static
    d = np.where(surface, disparity_px, 1.0)
    rotation, translation = relative_pose(np.asarray(c2w_ref, np.float64), c2w_other)
    rays = _rays(height, width, focal_px)

    def positions(offset):
        depth = fb / np.maximum(d + offset, 1e-3)
        x, y, z = _project((rays * depth[..., None]) @ rotation.T + translation, focal_px,
                           height, width)
        return x, y, x - fb / z, z

    weight = surface.copy()
    for offset in (offsets_px.min(), offsets_px.max()):  # they bound the others' positions
        x, y, x_right, _ = positions(offset)
        weight &= _inside(x, y, width, height)
        if need_right:
            weight &= _inside(x_right, y, width, height)
    # Visibility from the truth at offset 0: the point's depth in the other camera against
    # the other frame's true depth at its projection (nearest pixel; the right view's
    # occlusions in the other frame are not tested).
    x, y, _, z = positions(0.0)
    cols = np.clip(np.rint(x), 0, width - 1).astype(np.intp)
    rows = np.clip(np.rint(y), 0, height - 1).astype(np.intp)
    seen = np.nan_to_num(np.asarray(depth_other_m, np.float64)[rows, cols], nan=-1.0)
    with np.errstate(invalid="ignore"):
        weight &= np.abs(seen - z) <= VISIBILITY_TOLERANCE * z
    return positions, weight


def neighbour_residuals(disparity_px: np.ndarray, static: np.ndarray, c2w_ref: np.ndarray,
                        c2w_other: np.ndarray, left_other: np.ndarray, right_other: np.ndarray,
                        depth_other_m: np.ndarray, focal_px: float, baseline_m: float,
                        offsets_px: np.ndarray, left_ref: np.ndarray | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Squared differences in another frame at each hypothesis of the reference frame's pixels
    (the 3D point on the pixel's ray at the disparity d + offset).

    Args:
      disparity_px: float [H, W] true disparity of the reference frame.
      static: bool [H, W] reference pixels on static surfaces (the others get weight 0).
      c2w_ref, c2w_other: [3, 4] left rectified camera-to-world of both frames.
      left_other, right_other: float32 [H, W] the other frame's views (as ``pair_residuals``).
      depth_other_m: float [H, W] the other frame's true depth (NaN or <= 0: none), for the
        visibility test (``VISIBILITY_TOLERANCE``).
      focal_px, baseline_m: rectified focal length and stereo baseline.
      offsets_px: [K] offsets.
      left_ref: None: compare the other frame's stereo pair (its left view against its right
        view at the hypothesis); float32 [H, W] the reference frame's left view: compare it
        with the other frame's left view (the camera's motion as the baseline, as
        ``temporal_stereo``; ``right_other`` unused).
    Returns:
      (residuals float32 [K, H, W], weight float32 [H, W]) as ``pair_residuals``: weight 1
      where the point is static, visible in the other frame and every sample lies inside.
    """
    motion = left_ref is not None
    positions, weight = _hypotheses_in(disparity_px, static, c2w_ref, c2w_other, depth_other_m,
                                       focal_px, baseline_m, offsets_px, need_right=not motion)
    out = np.empty((len(offsets_px), *disparity_px.shape), np.float32)
    left_other = _spline(left_other)
    right_other = None if motion else _spline(right_other)
    for k, offset in enumerate(offsets_px):
        x, y, x_right, _ = positions(offset)
        other = left_ref if motion else _sample(right_other, x_right, y)
        out[k] = (_sample(left_other, x, y) - other) ** 2
    out *= weight
    return out, weight.astype(np.float32)


def block_cost(residuals: np.ndarray, block_px: int) -> np.ndarray:
    """Sum of ``residuals`` [K, H, W] over the ``block_px`` square around each pixel (zero
    outside the image). float32 [K, H, W]."""
    return np.stack([cv2.boxFilter(r, cv2.CV_32F, (block_px, block_px), normalize=False,
                                   borderType=cv2.BORDER_CONSTANT) for r in residuals])


def subpixel_minimum(cost: np.ndarray, offsets_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Offset minimising ``cost`` [K, H, W] sampled at ``offsets_px`` [K] (evenly spaced):
    the best sample refined by a parabola through it and its neighbours.

    Returns (offset float64 [H, W], at_edge bool [H, W]: the best sample is the first or
    last, so the minimum may lie outside the searched interval).
    """
    count = len(offsets_px)
    step = offsets_px[1] - offsets_px[0]
    best = np.argmin(cost, axis=0)
    inner = np.clip(best, 1, count - 2)
    c_minus, c_zero, c_plus = (np.take_along_axis(cost, (inner + k)[None], axis=0)[0]
                               .astype(np.float64) for k in (-1, 0, 1))
    curvature = c_minus - 2 * c_zero + c_plus
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(curvature > 0, 0.5 * (c_minus - c_plus) / curvature, 0.0)
    at_edge = (best == 0) | (best == count - 1)
    offset = np.where(at_edge, offsets_px[best], offsets_px[inner] + np.clip(shift, -1, 1) * step)
    return offset, at_edge


def floor_errors(offset_px: np.ndarray, disparity_px: np.ndarray, depth_m: np.ndarray,
                 mask: np.ndarray, fb_px_m: float) -> dict:
    """EPE and depth AbsRel of the disparities ``disparity_px + offset_px`` ([..., H, W]) on
    ``mask``, the depth being ``fb_px_m / disparity`` against the true ``depth_m``.

    Returns {"epe_px", "depth_absrel", "pixels"}.
    """
    mask = np.asarray(mask, bool)
    offset = np.asarray(offset_px, np.float64)[mask]
    estimate = np.asarray(disparity_px, np.float64)[mask] + offset
    truth = np.asarray(depth_m, np.float64)[mask]
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.abs(fb_px_m / estimate - truth) / truth
    return {"epe_px": float(np.mean(np.abs(offset))) if offset.size else float("nan"),
            "depth_absrel": float(np.mean(relative)) if offset.size else float("nan"),
            "pixels": int(mask.sum())}


def oracle_frame(t: int, left: np.ndarray, right: np.ndarray, disparity_px: np.ndarray,
                 depth_m: np.ndarray, static: np.ndarray, camera2world: np.ndarray,
                 focal_px: float, baseline_m: float, variants: dict = ORACLE_VARIANTS,
                 offsets_px: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Every oracle of ``variants`` on frame ``t``.

    Args:
      t: frame index.
      left, right: float32 [T, H, W] matching images of both views (e.g. grey minus local mean).
      disparity_px, depth_m: float [T, H, W] the truth (NaN / <= 0: no surface).
      static: bool [T, H, W] pixels on static surfaces (only these use other frames).
      camera2world: [T, 3, 4] left rectified cameras; focal_px, baseline_m: the rig.
      variants: name -> (block_px, stereo_radius, motion_offsets), as ``ORACLE_VARIANTS``.
      offsets_px: the searched offsets (default ``hypothesis_offsets()``).
    Returns:
      name -> offset from the true disparity float64 [H, W] (NaN where the truth has no
      surface or the frame's own pair leaves the view).
    """
    offsets = hypothesis_offsets() if offsets_px is None else np.asarray(offsets_px, np.float64)
    count = len(left)
    own, weight = pair_residuals(left[t], right[t], disparity_px[t], offsets)

    def others(frames, motion):
        total = np.zeros_like(own)
        for s in (s for s in frames if 0 <= s < count and s != t):
            total += neighbour_residuals(
                disparity_px[t], static[t], camera2world[t], camera2world[s], left[s], right[s],
                depth_m[s], focal_px, baseline_m, offsets,
                left_ref=left[t] if motion else None)[0]
        return total

    sums: dict[tuple, np.ndarray] = {}
    out = {}
    for name, (block_px, radius, motion) in variants.items():
        key = (radius, tuple(motion))
        if key not in sums:
            stereo = range(t - radius, t + radius + 1) if radius else ()
            sums[key] = own + others(stereo, False) + others(
                [t + sign * k for k in motion for sign in (-1, 1)], True)
        offset, _ = subpixel_minimum(block_cost(sums[key], block_px), offsets)
        out[name] = np.where(weight > 0, offset, np.nan)
    return out
