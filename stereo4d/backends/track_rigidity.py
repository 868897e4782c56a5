"""Local rigidity prior for the chained-flow tracker (``classical_tracker``, option ``rigidity_neighbours``).

Points on one small, fast mover (a child running, a limb) drift one by one: the flow at a point
slips onto the background or a neighbour while the points around it keep following the body.
The prior compares each point's one-frame step with the median step of its nearest tracked
neighbours (the other points being chained, at the same frame):

- a visible point whose step disagrees with that median for ``rigidity_patience`` frames in a row
  (by more than ``rigidity_tol_px + rigidity_rel_tol |median|``) is moved by the median step
  instead (pulled back onto the motion of its neighbourhood);
- with ``rigidity_occluded``, an occluded point moves by its neighbours' median step instead of the
  flow at its position (which belongs to the occluder or the background).

Neighbours are the ``rigidity_neighbours`` nearest visible points within ``rigidity_radius_px``
whose previous step was within ``rigidity_similar_px`` of the point's own (the same mover: at an
object's edge the background is not averaged in); a point with fewer than
``RIGIDITY_MIN_NEIGHBOURS`` of them is left alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy.spatial import cKDTree

if TYPE_CHECKING:
    from stereo4d.backends.classical_tracker import ClassicalTrackerConfig

__all__ = ["RIGIDITY_MIN_NEIGHBOURS", "SIMILAR_CANDIDATES", "neighbour_median_step", "rigidity_step"]

#: Fewest neighbours whose median step is trusted as the local motion.
RIGIDITY_MIN_NEIGHBOURS = 3
#: Nearest points examined per wanted neighbour when neighbours must also move alike.
SIMILAR_CANDIDATES = 2


def neighbour_median_step(xy: np.ndarray, step: np.ndarray, reference: np.ndarray, neighbours: int,
                          radius_px: float, velocity: np.ndarray | None = None,
                          similar_px: float = np.inf) -> tuple[np.ndarray, np.ndarray]:
    """Median step of each point's nearest reference points (itself excluded).

    Args:
      xy: [M, 2] (x, y) px positions at the current frame; step: [M, 2] px their steps to the next
        frame; reference: [M] bool, the points whose steps are trusted as neighbours.
      neighbours: how many nearest reference points; radius_px: farthest neighbour (px).
      velocity: [M, 2] px/frame, each point's previous step, and similar_px: only reference points
        whose previous step is within this of the point's own count as its neighbours (the same
        moving object, not the background or another mover beside it).
    Returns:
      (median [M, 2] px, NaN where fewer than ``RIGIDITY_MIN_NEIGHBOURS`` neighbours; count [M] int).
    """
    median = np.full(xy.shape, np.nan, np.float32)
    count = np.zeros(len(xy), np.int64)
    ref_index = np.flatnonzero(reference)
    if ref_index.size < RIGIDITY_MIN_NEIGHBOURS:
        return median, count
    # Candidates: twice as many as needed (some move unlike the point), +1 for the point itself.
    k = min(SIMILAR_CANDIDATES * neighbours + 1, ref_index.size)
    dist, nearest = cKDTree(xy[ref_index]).query(xy, k=k, distance_upper_bound=radius_px)
    dist, nearest = dist.reshape(len(xy), k), nearest.reshape(len(xy), k)
    found = np.isfinite(dist)
    safe = np.where(found, nearest, 0)
    found &= ref_index[safe] != np.arange(len(xy))[:, None]  # not the point itself
    if velocity is not None:
        found &= np.linalg.norm(velocity[ref_index[safe]] - velocity[:, None], axis=-1) < similar_px
    found &= np.cumsum(found, axis=1) <= neighbours  # the nearest `neighbours` when itself is absent
    values = np.where(found[..., None], step[ref_index[safe]], np.nan)  # [M, k, 2]
    count = found.sum(axis=1)
    enough = count >= RIGIDITY_MIN_NEIGHBOURS
    median[enough] = np.nanmedian(values[enough], axis=1)
    return median, count


def rigidity_step(xy: np.ndarray, moved: np.ndarray, seen: np.ndarray, streak: np.ndarray,
                  config: ClassicalTrackerConfig, velocity: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Applies the local rigidity prior to one chaining step (see the module docstring).

    Args:
      xy: [M, 2] px positions at the current frame; moved: [M, 2] px proposed positions at the next
      frame; seen: [M] bool, visible at the current frame; streak: [M] int, consecutive frames each
      point's step has disagreed with its neighbours so far; velocity: [M, 2] px/frame the points'
      previous steps (neighbours must have moved within ``rigidity_similar_px`` of it; None: any).
    Returns:
      (positions [M, 2] at the next frame, updated streak [M], pulled [M] bool: moved by the
      neighbours' median step).
    """
    step = moved - xy
    median, _ = neighbour_median_step(xy, step, seen, config.rigidity_neighbours,
                                      config.rigidity_radius_px, velocity, config.rigidity_similar_px)
    known = np.isfinite(median[:, 0])
    local = np.where(known[:, None], median, 0)  # the neighbours' step, 0 where unknown
    deviation = np.linalg.norm(step - local, axis=-1)
    limit = config.rigidity_tol_px + config.rigidity_rel_tol * np.linalg.norm(local, axis=-1)
    off = known & seen & (deviation > limit)
    streak = np.where(off, streak + 1, 0)
    pulled = off & (streak >= config.rigidity_patience)
    if config.rigidity_occluded:
        pulled |= known & ~seen
    out = np.where(pulled[:, None], xy + local, moved)
    return out.astype(np.float32), streak, pulled
