"""Depth maps as colour images: ``turbo`` on inverse depth (the raw and optimised depth videos).

As the reference's ``plot_depth_prism``: the colour range is the 5th..95th percentile of the
clip's valid depths (all frames together), mapped through inverse depth so near things get the
warm end of ``turbo``; invalid pixels (depth 0 or non-finite) are black. The colormap is looked
up once into a 256-entry table and applied with numpy indexing (no matplotlib call per frame);
the table and the index rule are matplotlib's own, so colours match ``cmap(x)`` exactly.
"""

from __future__ import annotations

import functools

import numpy as np

from stereo4d.geometry import PinholeCamera

__all__ = [
    "COLORMAP",
    "HIGH_PERCENTILE",
    "LOW_PERCENTILE",
    "LUT_SIZE",
    "colorize_depth",
    "colormap_lut",
    "depth_from_tracks",
    "inverse_depth_range",
]

COLORMAP = "turbo"
"""Matplotlib colormap of the depth videos (the reference's)."""
LUT_SIZE = 256
"""Entries of the colour table (matplotlib's default colormap resolution)."""
LOW_PERCENTILE = 5.0
"""Depth percentile (over the clip's valid pixels) mapped to the far end of the colormap."""
HIGH_PERCENTILE = 95.0
"""Depth percentile mapped to the near end of the colormap."""
INVALID_RGB = (0, 0, 0)
"""Colour of pixels without depth."""


@functools.lru_cache(maxsize=8)
def colormap_lut(name: str = COLORMAP, size: int = LUT_SIZE) -> np.ndarray:
    """[size, 3] uint8 table: entry i = 255 * cmap(i) truncated, as the reference's cast."""
    from matplotlib import colormaps

    cmap = colormaps[name].resampled(size)
    lut = (255 * cmap(np.arange(size))[:, :3]).astype(np.uint8)
    lut.setflags(write=False)
    return lut


def _valid(depth_m: np.ndarray) -> np.ndarray:
    return np.isfinite(depth_m) & (depth_m > 0)


def inverse_depth_range(
    depth_m: np.ndarray, low: float = LOW_PERCENTILE, high: float = HIGH_PERCENTILE
) -> tuple[float, float]:
    """(1 / high-percentile depth, 1 / low-percentile depth) over the valid pixels, 1/m.

    Args:
      depth_m: [..., H, W] metres; 0 or non-finite = invalid.
    Returns:
      (inv_lo, inv_hi) with inv_lo <= inv_hi; (0, 1) when no pixel is valid.
    """
    depth_m = np.asarray(depth_m)
    values = depth_m[_valid(depth_m)]
    if values.size == 0:
        return 0.0, 1.0
    near_m, far_m = np.percentile(values, [low, high])
    return float(1.0 / far_m), float(1.0 / near_m)


def colorize_depth(
    depth_m: np.ndarray,
    inv_range: tuple[float, float] | None = None,
    lut: np.ndarray | None = None,
) -> np.ndarray:
    """Depth -> RGB: ``lut[(1/d - inv_lo) / (inv_hi - inv_lo)]``, clipped at both ends.

    Args:
      depth_m: [..., H, W] metres; 0 or non-finite = invalid (drawn black).
      inv_range: (inv_lo, inv_hi) in 1/m; default ``inverse_depth_range(depth_m)`` (so pass the
        whole clip at once, or the clip's range, for colours that are stable over time).
      lut: [K, 3] uint8 table; default ``colormap_lut()``.
    Returns:
      [..., H, W, 3] uint8.
    """
    depth_m = np.asarray(depth_m, dtype=np.float32)
    lut = colormap_lut() if lut is None else lut
    inv_lo, inv_hi = inverse_depth_range(depth_m) if inv_range is None else inv_range
    valid = _valid(depth_m)
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = (1.0 / depth_m - inv_lo) / max(inv_hi - inv_lo, np.finfo(np.float32).tiny)
    # matplotlib's rule for floats: index floor(x * K), x == 1 -> K - 1, outside [0, 1] clipped.
    index = np.clip(np.nan_to_num(relative * len(lut), nan=0.0), 0, len(lut) - 1).astype(np.intp)
    rgb = lut[index]
    rgb[~valid] = INVALID_RGB
    return rgb


def depth_from_tracks(
    track3d_world: np.ndarray,
    visible: np.ndarray,
    cameras: PinholeCamera,
    imh: int,
    imw: int,
) -> np.ndarray:
    """Sparse depth maps from 3D tracks: each visible point's camera depth at its pixel.

    Where several points land on one pixel the nearest wins (the reference keeps whichever came
    last). Points out of view (see ``PinholeCamera.project``) are skipped.

    Args:
      track3d_world: [N, T, 3] metres (NaN allowed where not visible).
      visible: [N, T] bool.
      cameras: T world-to-camera extrinsics [T, 3, 4] with normalised intrinsics.
      imh, imw: image size in pixels.
    Returns:
      [T, imh, imw] float32 metres, 0 where no point landed.
    """
    track3d_world = np.asarray(track3d_world, dtype=np.float64)
    num_frames = np.shape(cameras.world_to_camera)[0]
    depth = np.zeros((num_frames, imh, imw), dtype=np.float32)
    if track3d_world.size == 0:
        return depth
    xy, z_m, in_view = cameras.project(track3d_world, imh, imw)  # broadcast [N, T] over frames
    keep = in_view & np.asarray(visible, dtype=bool)
    point, frame = np.nonzero(keep)
    z_keep = z_m[point, frame]
    order = np.argsort(-z_keep, kind="stable")  # far first: the nearest point is written last
    x = xy[point, frame, 0].astype(np.intp)[order]
    y = xy[point, frame, 1].astype(np.intp)[order]
    depth[frame[order], y, x] = z_keep[order]
    return depth
