"""Drift removal for the chained-flow tracker (``classical_tracker``; on in ``flow-anchor``).

Chaining one-frame flows accumulates their errors. Two corrections:
- ``anchor_to_query``: re-anchoring, each chained position refined by pyramidal Lucas-Kanade
  against the point's query-frame patch, kept when the match is close and good;
- ``keyframe_step``: keyframe chaining, at every k-th frame a point comes straight from its
  position k frames earlier by the k-frame flow, so drift builds up over fewer steps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

from stereo4d.backends.flow_sampling import PIXEL_CENTRE, sample_field

if TYPE_CHECKING:
    from stereo4d.backends.classical_tracker import ClassicalTrackerConfig

__all__ = ["anchor_to_query", "keyframe_step"]


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
