"""The released Stereo4D npz: sparse track packing, checked reading, atomic writing."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from stereo4d.dataset_checks import validate_dataset_arrays
from stereo4d.errors import InputError
from stereo4d.io.files import atomic_path

__all__ = ["DATASET_KEYS", "load_dataset_npz", "pack_tracks", "save_dataset_npz",
           "unpack_tracks"]

#: Keys of the released Stereo4D npz format.
DATASET_KEYS = (
    "name",
    "video_id",
    "timestamps",
    "camera2world",
    "track_lengths",
    "track_indices",
    "track_coordinates",
    "rectified2rig",
    "fov_bounds",
)


def pack_tracks(track3d: np.ndarray, visible: np.ndarray | None = None):
    """Dense tracks -> the released sparse layout.

    Args:
      track3d: [N, T, 3] world points (NaN where absent).
      visible: [N, T] bool; default: where ``track3d`` is finite.
    Returns:
      track_lengths [N] int, track_indices [M] int (frame of each point, track-major),
      track_coordinates [M, 3] float32.
    """
    track3d = np.asarray(track3d)
    if visible is None:
        visible = np.all(np.isfinite(track3d), axis=-1)
    visible = np.asarray(visible, dtype=bool)
    lengths = visible.sum(axis=1).astype(np.int32)
    _, frame_idx = np.nonzero(visible)  # row-major: grouped by track, frames ascending
    coords = track3d[visible].astype(np.float32)
    return lengths, frame_idx.astype(np.int32), coords


def unpack_tracks(lengths: np.ndarray, indices: np.ndarray, coords: np.ndarray, num_frames: int):
    """The released sparse layout -> [N, T, 3] float64 (NaN where absent)."""
    lengths = np.asarray(lengths).astype(np.int64)
    tracks = np.full((len(lengths), num_frames, 3), np.nan)
    rows = np.repeat(np.arange(len(lengths)), lengths)
    tracks[rows, np.asarray(indices).astype(np.int64)] = coords
    return tracks


def load_dataset_npz(path: str | os.PathLike, required: tuple[str, ...] = DATASET_KEYS) -> dict:
    """Reads a released-format npz (reference semantics of ``utils.load_dataset_npz``).

    Returns a dict with the file's keys except that ``fov_bounds`` becomes
    ``meta_fov`` (dict of ``{start,end}_{yaw,tilt}_in_degrees``), ``camera2world``
    [T, 3, 4] becomes ``extrs_rectified`` (its inverse, world -> camera), and
    ``track_*`` become ``track3d`` [N, T, 3] (NaN where a track has no point). The
    raw arrays are also kept as ``fov_bounds`` and ``camera2world`` for convenience.

    Every field present is checked by ``validate_dataset_arrays`` (finite rigid poses,
    ordered timestamps, consistent track counts) before anything is derived from it.

    Raises:
      InputError: missing file, unreadable file, missing key, or a field that fails the checks
        (the message names the file, the field and the frame).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"missing npz: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except Exception as exc:  # zipfile / format errors come in many types
        raise InputError(f"cannot read npz {path}: {exc}") from exc
    missing = [k for k in required if k not in data]
    if missing:
        raise InputError(f"npz {path} is missing key(s): {', '.join(missing)}")
    validate_dataset_arrays(data, path)
    if "fov_bounds" in data:
        fov = np.asarray(data["fov_bounds"], dtype=np.float64)
        data["meta_fov"] = {
            "start_yaw_in_degrees": fov[0],
            "end_yaw_in_degrees": fov[1],
            "start_tilt_in_degrees": fov[2],
            "end_tilt_in_degrees": fov[3],
        }
    if "timestamps" in data:
        data["timestamps"] = np.asarray(data["timestamps"]).astype(np.int64)  # checked whole
    if "camera2world" in data:
        c2w = np.asarray(data["camera2world"], dtype=np.float64)[..., :3, :4]
        data["extrs_rectified"] = np.concatenate(
            [np.swapaxes(c2w[..., :3], -1, -2), -np.swapaxes(c2w[..., :3], -1, -2) @ c2w[..., 3:]],
            axis=-1,
        )
    if "track_lengths" in data:
        num_frames = len(data["timestamps"] if "timestamps" in data else data["camera2world"])
        data["track3d"] = unpack_tracks(
            data.pop("track_lengths"),
            data.pop("track_indices"),
            data.pop("track_coordinates"),
            num_frames,
        )
    return data


def save_dataset_npz(
    path: str | os.PathLike,
    *,
    name: str,
    video_id: str,
    timestamps_us: np.ndarray,
    camera2world: np.ndarray,
    track3d: np.ndarray,
    rectified2rig: np.ndarray,
    fov_bounds_deg: np.ndarray,
    visible: np.ndarray | None = None,
    extra: dict | None = None,
) -> Path:
    """Writes the released format (inverse of ``load_dataset_npz``), atomically.

    Args:
      timestamps_us: [T] int microseconds; camera2world: [T, 3, 4];
      track3d: [N, T, 3] world metres; visible: [N, T] bool (default: finite points);
      rectified2rig: [2, 3, 3]; fov_bounds_deg: [4].
      extra: more arrays to store (not part of the released format).
    """
    lengths, indices, coords = pack_tracks(track3d, visible)
    arrays = {
        "name": np.asarray(name),
        "video_id": np.asarray(video_id),
        "timestamps": np.asarray(timestamps_us, dtype=np.int64),
        "camera2world": np.asarray(camera2world)[..., :3, :4],
        "track_lengths": lengths,
        "track_indices": indices,
        "track_coordinates": coords,
        "rectified2rig": np.asarray(rectified2rig),
        "fov_bounds": np.asarray(fov_bounds_deg),
    }
    arrays.update(extra or {})
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    return Path(path)
