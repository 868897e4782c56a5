"""Query points for dense 2D tracking: jittered grids every few frames, and pruning.

Conventions: query points are ``(t, y, x)`` (frame index, row, column) in the
continuous pixel coordinates of ``stereo4d.geometry`` (pixel ``(i, j)`` spans
``[j, j+1) x [i, i+1)``); they are stored as integers, as the reference does
(its jittered grid is cast to int32). Tracks are ``(x, y)`` in the same units.

Reference behaviour (``tracking.py``): for every 10th frame a grid with a 4 px
stride starting at ``stride // 2`` (128 x 128 points on 512 x 512 frames),
each point moved by uniform jitter in ``[-stride/2, stride/2)``, clipped to
``[0, size - 1]`` and truncated to int. After tracking, for each query frame in
increasing order, a new query is dropped when it lies within ``prune_radius_px``
(not strictly farther) of a kept track that is visible in that frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from stereo4d.io import InputError

__all__ = ["QueryConfig", "load_query_points", "prune_redundant_queries", "sample_grid_queries",
           "sample_video_queries"]


@dataclass(frozen=True)
class QueryConfig:
    """How queries are sampled and pruned.

    Attributes:
      query_stride_frames: a grid of queries on every ``query_stride_frames``-th frame
        (0, stride, 2 * stride, ...).
      grid_stride_px: grid spacing in pixels of the video (4 -> 128 x 128 on 512 x 512).
      jitter: add uniform jitter of up to half the grid stride to every point.
      prune_radius_px: a new query within this distance of an already kept, visible
        track in its query frame is redundant.
      seed: random seed of the jitter (and of nothing else).
    """

    query_stride_frames: int = 10
    grid_stride_px: int = 4
    jitter: bool = True
    prune_radius_px: float = 1.0
    seed: int = 0

    def __post_init__(self):
        if self.query_stride_frames < 1 or self.grid_stride_px < 1:
            raise ValueError("query_stride_frames and grid_stride_px must be >= 1")


def sample_grid_queries(
    frame_index: int, height: int, width: int, stride_px: int, rng: np.random.Generator | None = None
) -> np.ndarray:
    """A (jittered) grid of queries on one frame.

    Args:
      frame_index: the query frame t.
      height, width: frame size in pixels.
      stride_px: grid spacing; the first row/column sits at ``stride_px // 2``.
      rng: if given, each coordinate moves by uniform jitter in
        ``[-(stride_px // 2), stride_px // 2)`` and is clipped to ``[0, size - 1]``.

    Returns:
      [ceil(H'/s) * ceil(W'/s), 3] int32 (t, y, x), rows in raster order.
    """
    ys = np.arange(stride_px // 2, height, stride_px, dtype=np.float64)
    xs = np.arange(stride_px // 2, width, stride_px, dtype=np.float64)
    grid_yx = np.stack(np.meshgrid(ys, xs, indexing="ij"), axis=-1).reshape(-1, 2)
    if rng is not None and stride_px > 1:
        half = stride_px // 2
        grid_yx = grid_yx + rng.uniform(-half, half, size=grid_yx.shape)
        grid_yx = np.clip(grid_yx, 0, np.array([height - 1, width - 1], dtype=np.float64))
    t = np.full((len(grid_yx), 1), frame_index, dtype=np.float64)
    # Truncation toward zero (all values are >= 0): the reference's int32 cast.
    return np.concatenate([t, grid_yx], axis=1).astype(np.int32)


def sample_video_queries(num_frames: int, height: int, width: int, config: QueryConfig = QueryConfig()
                         ) -> np.ndarray:
    """Grids on frames 0, s, 2s, ... < num_frames. Returns [N, 3] int32 (t, y, x)."""
    rng = np.random.default_rng(config.seed) if config.jitter else None
    grids = [
        sample_grid_queries(t, height, width, config.grid_stride_px, rng)
        for t in range(0, num_frames, config.query_stride_frames)
    ]
    return np.concatenate(grids, axis=0) if grids else np.zeros((0, 3), np.int32)


def prune_redundant_queries(
    tracks_xy: np.ndarray, visibles: np.ndarray, query_points_tyx: np.ndarray, radius_px: float = 1.0
) -> np.ndarray:
    """Which tracks to keep: drops queries that re-sample an existing track.

    Query frames are visited in increasing order. All queries of the first frame
    are kept. A query on a later frame t is kept only when its (x, y) is farther
    than ``radius_px`` from every already kept track that is visible at t
    (queries of the same frame do not prune each other).

    Args:
      tracks_xy: [N, T, 2] (x, y) px.
      visibles: [N, T] bool.
      query_points_tyx: [N, 3] (t, y, x).
      radius_px: pruning distance in pixels.

    Returns:
      keep: [N] bool.
    """
    query_t = np.round(query_points_tyx[:, 0]).astype(np.int64)
    query_xy = np.asarray(query_points_tyx[:, [2, 1]], dtype=np.float64)
    keep = np.zeros(len(query_t), dtype=bool)
    for t in np.unique(query_t):
        new = np.flatnonzero(query_t == t)
        kept_visible = keep & visibles[:, t]
        if not kept_visible.any():
            keep[new] = True
            continue
        tree = cKDTree(np.asarray(tracks_xy[kept_visible, t], dtype=np.float64))
        distance, _ = tree.query(query_xy[new], k=1)
        keep[new[distance > radius_px]] = True
    return keep


def load_query_points(path, num_frames: int, height: int, width: int) -> np.ndarray:
    """Reads and validates user query points (``tracking.py --query_points``).

    Args:
      path: ``.npy`` file of [N, 3] (t, y, x): integer frame index t in ``[0, num_frames)``,
        continuous pixel coordinates y in ``[0, height)`` and x in ``[0, width)``.
      num_frames, height, width: size of the video the points are tracked in.

    Returns:
      [N, 3] float32 (t, y, x).

    Raises:
      InputError: unreadable file, object arrays (never unpickled), wrong shape, non-finite
        values, a non-integer or out-of-range t, or a point outside the frame.
    """
    try:
        raw = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"{path}: not a readable .npy array of query points ({exc})") from exc
    if not isinstance(raw, np.ndarray) or raw.ndim != 2 or raw.shape[1] != 3 or len(raw) == 0:
        shape = list(raw.shape) if isinstance(raw, np.ndarray) else type(raw).__name__
        raise InputError(f"{path}: query points must be a non-empty [N, 3] (t, y, x) array, got {shape}")
    if not (np.issubdtype(raw.dtype, np.integer) or np.issubdtype(raw.dtype, np.floating)):
        raise InputError(f"{path}: query points must be numbers, got dtype {raw.dtype}")
    points = raw.astype(np.float64)
    bad = ~np.all(np.isfinite(points), axis=1)
    t, y, x = points[:, 0], points[:, 1], points[:, 2]
    with np.errstate(invalid="ignore"):
        bad |= (t != np.round(t)) | (t < 0) | (t >= num_frames)
        bad |= (y < 0) | (y >= height) | (x < 0) | (x >= width)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{path}: {int(bad.sum())} of {len(points)} query points invalid (first: row {first} "
            f"= {raw[first].tolist()}); need finite (t, y, x) with integer t in [0, {num_frames}), "
            f"y in [0, {height}), x in [0, {width})")
    return points.astype(np.float32)
