"""Point-cloud exports of 3D tracks as PLY files (``plyfile``), for MeshLab and Open3D.

* ``write_frame_plys``: one binary PLY per frame, ``<folder>/frame_<t:05d>.ply``, with the
  points of the tracks present in that frame: ``x, y, z`` float32 world metres, ``red, green,
  blue`` uint8 track colours, ``track`` int32 (track index, so points can be matched across
  frames) and ``moving`` uint8 (1 for moving tracks).
* ``write_static_scene_ply``: the static scene as one PLY, ``<folder>/static_scene.ply``: one
  point per static track, at the median of its present points (same properties).

Every file is written atomically (``io.atomic_path``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from stereo4d.io import atomic_path

__all__ = ["FRAME_PLY_PATTERN", "STATIC_SCENE_PLY", "write_frame_plys", "write_static_scene_ply"]

FRAME_PLY_PATTERN = "frame_{:05d}.ply"
"""File name of frame t's point cloud."""
STATIC_SCENE_PLY = "static_scene.ply"
"""File name of the static scene's point cloud."""
_VERTEX_DTYPE = [("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"),
                 ("blue", "u1"), ("track", "i4"), ("moving", "u1")]


def _write_ply(path: Path, xyz: np.ndarray, rgb: np.ndarray, track: np.ndarray,
               moving: np.ndarray) -> Path:
    from plyfile import PlyData, PlyElement

    vertices = np.empty(len(xyz), dtype=_VERTEX_DTYPE)
    for i, axis in enumerate("xyz"):
        vertices[axis] = xyz[:, i]
    for i, channel in enumerate(("red", "green", "blue")):
        vertices[channel] = rgb[:, i]
    vertices["track"] = track
    vertices["moving"] = moving
    with atomic_path(path) as tmp:
        PlyData([PlyElement.describe(vertices, "vertex")]).write(str(tmp))
    return path


def write_frame_plys(folder: str | os.PathLike, track3d_world: np.ndarray, visible: np.ndarray,
                     colors_rgb: np.ndarray, moving: np.ndarray, frames=None,
                     progress: bool = True) -> list[Path]:
    """One PLY per frame with the points present in it.

    Args:
      folder: output folder (created).
      track3d_world: [N, T, 3] metres, NaN where absent; visible: [N, T] bool.
      colors_rgb: [N, 3] uint8; moving: [N] bool.
      frames: frame indices to write (default: all T).
    Returns:
      the paths written, in frame order.
    """
    from tqdm import tqdm

    folder = Path(folder)
    present = np.asarray(visible, bool) & np.all(np.isfinite(track3d_world), axis=-1)
    frames = range(present.shape[1]) if frames is None else frames
    written = []
    for t in tqdm(frames, desc="ply", unit="frame", disable=not progress):
        rows = np.flatnonzero(present[:, t])
        written.append(_write_ply(folder / FRAME_PLY_PATTERN.format(t), track3d_world[rows, t],
                                  colors_rgb[rows], rows, moving[rows]))
    return written


def write_static_scene_ply(folder: str | os.PathLike, track3d_world: np.ndarray,
                           visible: np.ndarray, colors_rgb: np.ndarray,
                           moving: np.ndarray) -> Path:
    """The static tracks as one cloud: the median of each static track's present points.

    Args: as ``write_frame_plys``. Returns: ``<folder>/static_scene.ply``.
    """
    present = np.asarray(visible, bool) & np.all(np.isfinite(track3d_world), axis=-1)
    rows = np.flatnonzero(~np.asarray(moving, bool) & present.any(axis=1))
    pts = np.where(present[rows, :, None], track3d_world[rows], np.nan)
    median = np.nanmedian(pts, axis=1) if len(rows) else np.zeros((0, 3))
    return _write_ply(Path(folder) / STATIC_SCENE_PLY, median, colors_rgb[rows], rows,
                      np.zeros(len(rows), np.uint8))
