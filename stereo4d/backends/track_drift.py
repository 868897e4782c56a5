"""Drift removal for the chained-flow tracker (``classical_tracker``; on in ``flow-anchor``).

Chaining one-frame flows accumulates their errors. Two corrections:
- ``anchor_to_query``: re-anchoring, each chained position refined by pyramidal Lucas-Kanade
  against the point's query-frame patch, kept when the match is close and good;
- ``keyframe_step``: keyframe chaining, at every k-th frame a point comes straight from its
  position k frames earlier by the k-frame flow, so drift builds up over fewer steps;
- ``redetect_query``: re-detection, at keyframes the query patch is searched for over a wide
  window by normalised cross-correlation, and a good and distinctive match moves the point.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

from stereo4d.backends.flow_sampling import PIXEL_CENTRE, sample_field

if TYPE_CHECKING:
    from stereo4d.backends.classical_tracker import ClassicalTrackerConfig

__all__ = ["REDETECT_MIN_STD", "anchor_to_query", "grey_patches", "keyframe_step", "normalised_correlation",
           "redetect_query"]


def anchor_to_query(gray: np.ndarray, frame: int, query_t: np.ndarray, query_xy: np.ndarray, xy: np.ndarray,
                    config: ClassicalTrackerConfig) -> tuple[np.ndarray, np.ndarray]:
    """Refines positions in ``frame`` against each point's query-frame patch (Lucas-Kanade).

    Args:
      gray: [T, H, W] uint8 frames; query_t [M], query_xy [M, 2] of the points; xy [M, 2]
        their chained positions in ``frame``.
    Returns:
      (refined xy [M, 2], accepted [M] bool); rejected points keep their position.
    """
    out, accepted = xy.copy(), np.zeros(len(xy), bool)
    window = (config.anchor_window_px, config.anchor_window_px)
    for t in np.unique(query_t):  # one call per query frame (a loop over frames, not points)
        group = np.flatnonzero(query_t == t)
        if t == frame:
            continue
        start = (query_xy[group] - PIXEL_CENTRE).reshape(-1, 1, 2).astype(np.float32)
        guess = (xy[group] - PIXEL_CENTRE).reshape(-1, 1, 2).astype(np.float32)
        found, status, error = cv2.calcOpticalFlowPyrLK(
            gray[t], gray[frame], start, guess, winSize=window, maxLevel=config.anchor_levels,
            flags=cv2.OPTFLOW_USE_INITIAL_FLOW)
        found = found.reshape(-1, 2) + PIXEL_CENTRE
        good = ((status.ravel() == 1) & (error.ravel() < config.anchor_max_error)
                & (np.linalg.norm(found - xy[group], axis=-1) < config.anchor_max_shift_px))
        out[group[good]], accepted[group[good]] = found[good], True
    return out, accepted


def keyframe_step(skip_flows: dict, forward: bool, nxt: int, active: np.ndarray, query_t: np.ndarray,
               tracks_xy: np.ndarray, visibles: np.ndarray, images: np.ndarray, color: np.ndarray,
               moved: np.ndarray, config: ClassicalTrackerConfig) -> np.ndarray:
    """Keyframe chaining: at a keyframe ``nxt`` (a multiple of k), the points come straight from
    their positions k frames earlier in the sweep by the k-frame flow, instead of k one-frame steps.

    Args:
      skip_flows: {k: (forward [P, H, W, 2] keyframe jk -> jk+k, backward [P, H, W, 2])}, see
        ``compute_flow(..., skip=k)``.
      active [M] indices of the sweep's points, moved [M, 2] their one-frame positions at
        ``nxt``, color [M, 3] their colours when last seen; tracks_xy / visibles as in ``_sweep``.
    Returns:
      positions [M, 2] at ``nxt``: from the longest skip whose start position was visible, whose
      flow passes the forward-backward test and whose colour matches; else ``moved``.
    """
    out = moved.copy()
    for k in sorted(skip_flows):  # a longer skip, applied later, wins
        fwd, bwd = skip_flows[k]
        src = nxt - k if forward else nxt + k
        pair = min(src, nxt) // k
        if nxt % k or src < 0 or pair >= len(fwd):
            continue
        step, check = (fwd[pair], bwd[pair]) if forward else (bwd[pair], fwd[pair])
        started = (query_t[active] <= src) if forward else (query_t[active] >= src)
        start = tracks_xy[active, src]
        f = sample_field(step, start)
        landed = start + f
        b = sample_field(check, landed)
        same_color = np.linalg.norm(sample_field(images[nxt], landed) - color, axis=-1) < config.color_tol
        good = started & visibles[active, src] & config.consistent(f, b) & same_color
        out[good] = landed[good]
    return out


#: Points per block of the re-detection search (bounds its memory to ~40 MB at a 63 px region).
_REDETECT_BLOCK = 1024
#: Floor of the grey-level standard deviation of a template or a search window (levels); a
#: flatter patch has no position to find, and its correlation is refused.
REDETECT_MIN_STD = 2.0


def grey_patches(gray: np.ndarray, xy: np.ndarray, side: int) -> np.ndarray:
    """Square grey patches centred on continuous points, bilinear.

    Args:
      gray: [H, W] uint8 or float32; xy: [M, 2] (x, y) px; side: patch side (px, odd).
    Returns:
      [M, side, side] float32; element [m, i, j] is the grey level at
      ``xy[m] + (j - (side - 1) / 2, i - (side - 1) / 2)`` (border replicated).
    """
    offsets = np.arange(side, dtype=np.float32) - (side - 1) / 2
    grid = np.stack(np.meshgrid(offsets, offsets), axis=-1)  # [side, side, 2] (dx, dy)
    points = (xy[:, None, None, :].astype(np.float32) + grid[None]).reshape(-1, 2)
    return sample_field(gray.astype(np.float32), points).reshape(len(xy), side, side)


def _fast_fft_length(size: int) -> int:
    """Smallest length >= size with no prime factor above 5 (a fast FFT size)."""
    n = size
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def normalised_correlation(templates: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """Zero-mean normalised cross-correlation of each template over its own search region (FFT).

    Args:
      templates: [M, P, P] float32; regions: [M, S, S] float32, S >= P.
    Returns:
      [M, S - P + 1, S - P + 1] float32 in [-1, 1]: entry [m, v, u] compares templates[m] with
      regions[m, v:v + P, u:u + P]; -1 where the template or the window is flat
      (standard deviation below ``REDETECT_MIN_STD``).
    """
    side, size = templates.shape[-1], regions.shape[-1]
    valid = size - side + 1
    area = float(side * side)
    centred = templates - templates.mean(axis=(1, 2), keepdims=True)
    t_norm = np.sqrt(np.sum(centred**2, axis=(1, 2)))  # [M]
    n = _fast_fft_length(size)  # circular correlation of length >= size: no wrap-around in [0, valid)
    spectrum = np.fft.rfft2(regions, s=(n, n)) * np.conj(np.fft.rfft2(centred, s=(n, n)))
    corr = np.fft.irfft2(spectrum, s=(n, n))[:, :valid, :valid]
    # Window sums by integral images: sum and sum of squares of each P x P window.
    sums = []
    for values in (regions.astype(np.float64), regions.astype(np.float64) ** 2):
        integral = np.pad(values.cumsum(1).cumsum(2), ((0, 0), (1, 0), (1, 0)))
        sums.append(integral[:, side:, side:] - integral[:, :valid, side:] - integral[:, side:, :valid]
                    + integral[:, :valid, :valid])
    w_norm = np.sqrt(np.maximum(sums[1] - sums[0] ** 2 / area, 0.0))
    floor = REDETECT_MIN_STD * np.sqrt(area)
    ncc = corr / np.maximum(t_norm[:, None, None] * w_norm, 1e-9)
    flat = (w_norm < floor) | (t_norm[:, None, None] < floor)
    return np.where(flat, -1.0, ncc).astype(np.float32)


def _peaks(ncc: np.ndarray, exclusion_px: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best peak of each correlation map [M, V, V], sub-pixel, and the best value outside it.

    Returns:
      (offset [M, 2] (du, dv) of the best peak from the map's centre, sub-pixel by a parabola
      through its neighbours; best [M]; second [M]: the largest value farther than
      ``exclusion_px`` (Chebyshev) from the best peak, -1 if none).
    """
    count, valid = ncc.shape[0], ncc.shape[-1]
    flat_index = ncc.reshape(count, -1).argmax(axis=1)
    v, u = np.divmod(flat_index, valid)
    rows = np.arange(count)
    best = ncc[rows, v, u]
    grid = np.arange(valid)
    near = ((np.abs(grid[None, :, None] - v[:, None, None]) <= exclusion_px)
            & (np.abs(grid[None, None, :] - u[:, None, None]) <= exclusion_px))
    second = np.where(near, -1.0, ncc).reshape(count, -1).max(axis=1)
    offset = np.stack([u, v], axis=1).astype(np.float32) - (valid - 1) / 2
    for axis, index in ((0, u), (1, v)):  # parabola along x, then y
        inner = (index > 0) & (index < valid - 1)
        lo, hi = np.clip(index - 1, 0, valid - 1), np.clip(index + 1, 0, valid - 1)
        before = ncc[rows, v, lo] if axis == 0 else ncc[rows, lo, u]
        after = ncc[rows, v, hi] if axis == 0 else ncc[rows, hi, u]
        curvature = before - 2 * best + after
        shift = np.where(inner & (curvature < 0), 0.5 * (before - after) / np.minimum(curvature, -1e-9), 0)
        offset[:, axis] += np.clip(shift, -0.5, 0.5)
    return offset, best, second


def redetect_query(gray: np.ndarray, frame: int, query_t: np.ndarray, query_xy: np.ndarray,
                   xy: np.ndarray, config: ClassicalTrackerConfig) -> tuple[np.ndarray, np.ndarray]:
    """Re-detection: the query patch searched for over a wide window around each chained position.

    Unlike ``anchor_to_query`` (a local Lucas-Kanade step, kept when small) this searches
    ``redetect_radius_px`` each way by normalised cross-correlation and moves the point to the
    best match when it is good (``redetect_min_ncc``), distinctive (better than any match
    farther than ``redetect_exclusion_px`` by ``redetect_min_margin``) and clearly better than
    the chained position itself (by ``redetect_min_gain``). So drift that re-anchoring has
    refused to correct can be removed at the next keyframe.

    Args:
      gray: [T, H, W] uint8 frames; query_t [M], query_xy [M, 2] of the points; xy [M, 2] their
        positions in ``frame``.
    Returns:
      (positions [M, 2], accepted [M] bool); refused points keep their position.
    """
    side, radius = config.redetect_patch_px, config.redetect_radius_px
    out, accepted = xy.copy(), np.zeros(len(xy), bool)
    frame_f32 = gray[frame].astype(np.float32)
    templates = np.zeros((len(xy), side, side), np.float32)
    for t in np.unique(query_t):  # one sampling per query frame (a loop over frames, not points)
        group = np.flatnonzero(query_t == t)
        templates[group] = grey_patches(gray[t], query_xy[group], side)
    for start in range(0, len(xy), _REDETECT_BLOCK):
        block = slice(start, start + _REDETECT_BLOCK)
        regions = grey_patches(frame_f32, xy[block], side + 2 * radius)
        ncc = normalised_correlation(templates[block], regions)
        offset, best, second = _peaks(ncc, config.redetect_exclusion_px)
        here = ncc[:, radius, radius]  # the template at the chained position itself
        good = ((best >= config.redetect_min_ncc) & (best - second >= config.redetect_min_margin)
                & (best - here >= config.redetect_min_gain) & (query_t[block] != frame))
        out[block][good] = xy[block][good] + offset[good]
        accepted[block] = good
    return out, accepted
