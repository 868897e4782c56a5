"""Sampling and coordinate helpers of TAPIR (pure tensor functions, no parameters).

Coordinate conventions (as in tapnet): spatial positions are *raster*
coordinates in pixels, so ``(0, 0)`` is the top-left corner of the top-left
pixel and pixel ``(i, j)`` has its centre at ``(i + 0.5, j + 0.5)``; time is a
frame index (frame ``t`` is at ``t``). Coordinate order is in each name:
``_yx``, ``_xy``, ``_tyx``.

Unlike tapnet's PyTorch ``map_coordinates_2d`` (which divides both coordinates
by the grid height), every function here scales x by the width and y by the
height, so non-square grids are sampled correctly.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

# Refinement resolutions must be multiples of this (the encoder's total stride).
RESOLUTION_MULTIPLE = 8
# Lower bound of the soft-argmax normaliser (avoids division by zero).
SOFT_ARGMAX_MIN_WEIGHT = 1e-12
# A point is visible when P(not occluded) * P(within the distance threshold) exceeds this.
VISIBLE_MIN_PROBABILITY = 0.5


def default_refinement_resolutions(
    video_hw: tuple[int, int], train_hw: tuple[int, int]
) -> list[tuple[int, int]]:
    """Log-spaced (height, width) refinement sizes from ``train_hw`` up to ``video_hw``.

    ``[train_hw]`` when the video is not larger; otherwise enough levels that
    each is at most twice the previous, each side rounded down to a multiple of 8.
    E.g. (512, 512) with train (256, 256) -> [(256, 256), (512, 512)].
    """
    if tuple(video_hw) == tuple(train_hw):
        return [tuple(train_hw)]
    ratio = np.asarray(video_hw, dtype=np.float64) / np.asarray(train_hw, dtype=np.float64)
    num_levels = math.ceil(float(np.max(np.log2(ratio)))) + 1
    if num_levels <= 1:
        return [tuple(train_hw)]
    fractions = np.arange(num_levels) / (num_levels - 1)
    sizes = []
    for train_side, full_side in zip(train_hw, video_hw):
        side = train_side * (full_side / train_side) ** fractions
        sizes.append((np.floor(side / RESOLUTION_MULTIPLE) * RESOLUTION_MULTIPLE).astype(int))
    return [(int(h), int(w)) for h, w in zip(*sizes)]


def resize_video(
    video_bthwc: torch.Tensor, size_hw: tuple[int, int], antialias: bool
) -> torch.Tensor:
    """Bilinear resize (half-pixel centres) of ``[B, T, H, W, C]`` to ``size_hw``.

    ``antialias=True`` widens the kernel when downsampling, as ``jax.image.resize``
    does (what the Stereo4D pipeline's JAX model uses); ``False`` is plain
    bilinear like tapnet's PyTorch model.
    """
    b, t, h, w, c = video_bthwc.shape
    frames = video_bthwc.reshape(b * t, h, w, c).permute(0, 3, 1, 2)
    frames = F.interpolate(
        frames, size=tuple(size_hw), mode="bilinear", align_corners=False, antialias=antialias
    )
    return frames.permute(0, 2, 3, 1).reshape(b, t, *size_hw, c)


def l2_normalise(features: torch.Tensor, min_sq_norm: float = 1e-12) -> torch.Tensor:
    """Divides the last axis by its L2 norm (squared norm floored at ``min_sq_norm``)."""
    sq_norm = torch.sum(features * features, dim=-1, keepdim=True)
    return features / torch.sqrt(torch.clamp(sq_norm, min=min_sq_norm))


def scale_xy(
    points_xy: torch.Tensor, from_hw: tuple[int, int], to_hw: tuple[int, int]
) -> torch.Tensor:
    """Rescales raster (x, y) points from a ``from_hw`` grid to a ``to_hw`` grid."""
    factor = points_xy.new_tensor([to_hw[1] / from_hw[1], to_hw[0] / from_hw[0]])
    return points_xy * factor


def scale_tyx(
    points_tyx: torch.Tensor, from_hw: tuple[int, int], to_hw: tuple[int, int]
) -> torch.Tensor:
    """Rescales (t, y, x) points between grids; t (frame index) is unchanged."""
    factor = points_tyx.new_tensor([1.0, to_hw[0] / from_hw[0], to_hw[1] / from_hw[1]])
    return points_tyx * factor


def sample_frames_bilinear(grid_bthwc: torch.Tensor, coords_bntsyx: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of each frame's feature map, zero outside the map.

    Args:
      grid_bthwc: features ``[B, T, H, W, C]``.
      coords_bntsyx: raster (y, x) positions ``[B, N, T, S, 2]``; the samples for
        frame t read frame t of the grid.

    Returns:
      ``[B, N, T, S, C]``.
    """
    b, t, h, w, c = grid_bthwc.shape
    _, n, _, s, _ = coords_bntsyx.shape
    maps = grid_bthwc.reshape(b * t, h, w, c).permute(0, 3, 1, 2)
    size_yx = coords_bntsyx.new_tensor([h, w])
    unit = 2.0 * coords_bntsyx / size_yx - 1.0  # grid_sample's [-1, 1] (align_corners=False)
    unit_xy = unit.flip(-1).permute(0, 2, 1, 3, 4).reshape(b * t, n, s, 2)
    out = F.grid_sample(maps, unit_xy, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.reshape(b, t, c, n, s).permute(0, 3, 1, 4, 2)


def sample_video_trilinear(grid_bthwc: torch.Tensor, points_bntyx: torch.Tensor) -> torch.Tensor:
    """Trilinear samples of a feature video at (t, y, x) points, clamped to the border.

    Args:
      grid_bthwc: features ``[B, T, H, W, C]``.
      points_bntyx: ``[B, N, 3]``: frame index t, raster y, raster x.

    Returns:
      ``[B, N, C]``.
    """
    t, h, w = grid_bthwc.shape[1:4]
    volume = grid_bthwc.permute(0, 4, 1, 2, 3)  # [B, C, T, H, W]
    centred = points_bntyx + points_bntyx.new_tensor([0.5, 0.0, 0.0])  # frame t -> raster t + 0.5
    unit = 2.0 * centred / points_bntyx.new_tensor([t, h, w]) - 1.0
    unit_xyt = unit.flip(-1)[:, :, None, None, :]  # [B, N, 1, 1, 3]
    out = F.grid_sample(
        volume, unit_xyt, mode="bilinear", padding_mode="border", align_corners=False
    )
    return out[:, :, :, 0, 0].permute(0, 2, 1)


def soft_argmax_xy(heatmaps: torch.Tensor, radius: float) -> torch.Tensor:
    """Local soft argmax of heatmaps ``[..., H, W]`` -> raster (x, y) ``[..., 2]`` in cells.

    Takes the arg-max cell, then averages the centres of the cells whose centre
    is closer than ``radius`` cells to it, weighted by the heatmap.
    """
    h, w = heatmaps.shape[-2:]
    flat = heatmaps.flatten(-2)
    centre_y = (torch.arange(h, device=flat.device, dtype=flat.dtype) + 0.5).repeat_interleave(w)
    centre_x = (torch.arange(w, device=flat.device, dtype=flat.dtype) + 0.5).repeat(h)
    peak = torch.argmax(flat, dim=-1, keepdim=True)
    near = (centre_x - centre_x[peak]) ** 2 + (centre_y - centre_y[peak]) ** 2 < radius**2
    weights = flat * near
    total = torch.clamp(weights.sum(-1), min=SOFT_ARGMAX_MIN_WEIGHT)
    return (
        torch.stack([(weights * centre_x).sum(-1), (weights * centre_y).sum(-1)], dim=-1)
        / total[..., None]
    )


def patch_offsets_yx(radius: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(dy, dx) offsets of a ``(2 r + 1)^2`` patch in row-major order (y outer) -> ``[S, 2]``."""
    steps = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    dy, dx = torch.meshgrid(steps, steps, indexing="ij")
    return torch.stack([dy, dx], dim=-1).reshape(-1, 2)


def visibility_from_logits(occlusion: torch.Tensor, expected_dist: torch.Tensor) -> torch.Tensor:
    """Visible where (1 - sigmoid(occlusion)) * (1 - sigmoid(expected_dist)) > 0.5 (tapnet's rule).

    The threshold is ``VISIBLE_MIN_PROBABILITY``.
    """
    visible_probability = (1 - torch.sigmoid(occlusion)) * (1 - torch.sigmoid(expected_dist))
    return visible_probability > VISIBLE_MIN_PROBABILITY
