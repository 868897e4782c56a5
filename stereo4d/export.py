"""Output formats of the track optimisation: the reference's pickle dict and the released npz.

* ``optimized_tracks_record``: the dict the reference pickles as ``<vid>-optimized_tracks.pkl``
  (``Track3d.to_json_format(save_video=False)``), so downstream code written for it still works.
* ``export_released_npz``: the optimised tracks in the released Stereo4D format
  (``<output_folder>/<vid>/<vid>.npz``): visible points only, packed as ``track_lengths``,
  ``track_indices``, ``track_coordinates``; the clip's metadata (``name``, ``video_id``,
  ``timestamps``, ``camera2world``, ``rectified2rig``, ``fov_bounds``) copied from the input npz.
  ``io.load_dataset_npz`` reads it back.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from stereo4d.geometry import PinholeCamera
from stereo4d.io import InputError, save_dataset_npz

__all__ = ["COPIED_KEYS", "export_released_npz", "optimized_tracks_record"]

COPIED_KEYS = ("name", "video_id", "timestamps", "camera2world", "rectified2rig", "fov_bounds")
"""Keys of the input npz that the export carries over unchanged."""


def optimized_tracks_record(
    cameras: PinholeCamera,
    track3d_world: np.ndarray,
    visible: np.ndarray,
    colors_rgb: np.ndarray,
    imh: int,
    imw: int,
) -> dict:
    """The reference's ``optimized_tracks.pkl`` dict.

    Args:
      cameras: T cameras, world-to-camera [T, 3, 4] with normalised intrinsics.
      track3d_world: [N, T, 3] optimised world points, metres (NaN where not visible).
      visible: [N, T] bool, the frames the optimisation kept.
      colors_rgb: [N, 3] uint8 track colours (stored as float in [0, 1], as the reference).
      imh, imw: image size in pixels.
    Returns:
      {'cameras': [{'extr': [3, 4], 'intr_normalized': {fx, fy, cx, cy, k1, k2}}] * T,
       'track3d': [N, T, 3] float32, 'imh', 'imw', 'visible_list': [N, T] bool,
       'color_values': [N, 3] float64 in [0, 1], 'video': None}
    """
    intr = {"fx": float(cameras.fx), "fy": float(cameras.fy), "cx": float(cameras.cx),
            "cy": float(cameras.cy), "k1": 0.0, "k2": 0.0}
    extrs = np.asarray(cameras.world_to_camera, dtype=np.float64)[..., :3, :4]
    return {
        "cameras": [{"extr": extr, "intr_normalized": dict(intr)} for extr in extrs],
        "track3d": np.asarray(track3d_world, dtype=np.float32),
        "imh": int(imh),
        "imw": int(imw),
        "visible_list": np.asarray(visible, dtype=bool),
        "color_values": np.asarray(colors_rgb, dtype=np.float64).reshape(-1, 3) / 255.0,
        "video": None,
    }


def export_released_npz(
    path: str | os.PathLike, clip_meta: dict, track3d_world: np.ndarray, visible: np.ndarray
) -> Path:
    """Writes optimised tracks in the released npz format (atomically).

    Args:
      path: output ``.npz``.
      clip_meta: the input npz as read by ``io.load_dataset_npz`` (needs ``COPIED_KEYS``).
      track3d_world: [N, T, 3] world points, metres; stored as float32.
      visible: [N, T] bool; only visible, finite points are stored.
    Returns:
      ``path``.
    Raises:
      InputError: a copied key is missing or the frame counts disagree.
    """
    missing = [k for k in COPIED_KEYS if k not in clip_meta]
    if missing:
        raise InputError(f"clip metadata lacks {', '.join(missing)}; cannot export {path}")
    track3d_world = np.asarray(track3d_world)
    num_frames = len(clip_meta["timestamps"])
    if track3d_world.ndim != 3 or track3d_world.shape[1:] != (num_frames, 3):
        raise InputError(f"tracks {list(track3d_world.shape)} do not match {num_frames} frames")
    keep = np.asarray(visible, dtype=bool) & np.all(np.isfinite(track3d_world), axis=-1)
    return save_dataset_npz(
        path,
        name=clip_meta["name"],
        video_id=clip_meta["video_id"],
        timestamps_us=clip_meta["timestamps"],
        camera2world=clip_meta["camera2world"],
        track3d=track3d_world.astype(np.float32),
        rectified2rig=clip_meta["rectified2rig"],
        fov_bounds_deg=clip_meta["fov_bounds"],
        visible=keep,
    )
