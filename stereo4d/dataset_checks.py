"""Checks of the released dataset npz fields (``io.load_dataset_npz`` runs them on every read).

One function, ``validate_dataset_arrays``, for every stage that reads a clip's npz and for
``evaluate.py`` reading the optimisation's export: finite rigid poses, ordered integer
timestamps, rotations, field-of-view bounds and consistent sparse track counts. Messages name
the file, the field and the first bad frame.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from stereo4d.errors import InputError

__all__ = ["MAX_ABS_TILT_DEG", "MAX_ABS_YAW_DEG", "POSE_ROTATION_TOL", "validate_dataset_arrays"]


#: Largest error of a pose's rotation block accepted as rigid: max |R^T R - I| and |det R - 1|
#: (released poses are float32; 1e-3 leaves room for their rounding, not for a scale or shear).
POSE_ROTATION_TOL = 1e-3
#: Extent limits of ``fov_bounds`` (degrees): yaw within +-180, tilt within +-90.
MAX_ABS_YAW_DEG = 180.0
MAX_ABS_TILT_DEG = 90.0


def _rotation_errors(rotations: np.ndarray) -> np.ndarray:
    """[..., 3, 3] -> [...] largest of max |R^T R - I| and |det R - 1| (inf where non-finite)."""
    r = np.asarray(rotations, dtype=np.float64)
    finite = np.all(np.isfinite(r), axis=(-2, -1))
    r = np.where(finite[..., None, None], r, 0.0)
    ortho = np.abs(np.swapaxes(r, -1, -2) @ r - np.eye(3)).max(axis=(-2, -1))
    det = np.abs(np.linalg.det(r) - 1.0)
    return np.where(finite, np.maximum(ortho, det), np.inf)


def _check_integers(array: np.ndarray, path: Path, field: str,
                    whole_floats: bool = False) -> None:
    """Integer values: an integer dtype, or with ``whole_floats`` floats that are all finite
    whole numbers (timestamps written as float microseconds are the same stamps)."""
    if array.dtype.kind in "iu":
        return
    if whole_floats and array.dtype.kind == "f":
        finite = np.isfinite(array)
        whole = finite & (np.floor(np.where(finite, array, 0)) == np.where(finite, array, 0))
        if whole.all():
            return
        bad = int(np.flatnonzero(~whole.ravel())[0])
        raise InputError(f"npz {path}: '{field}' must be whole numbers (element {bad}: "
                         f"{array.ravel()[bad]})")
    raise InputError(f"npz {path}: '{field}' must be integers, got dtype {array.dtype}")


def validate_dataset_arrays(data: dict, path: str | os.PathLike) -> None:
    """Checks the released-format fields present in ``data`` (raw npz arrays).

    ``timestamps`` [T] integer microseconds, non-negative and strictly increasing;
    ``camera2world`` [T, 3, 4] (or [T, 4, 4]) finite, rotation block rigid (orthonormal,
    det +1, within ``POSE_ROTATION_TOL``); ``rectified2rig`` [2, 3, 3] rotations; ``fov_bounds``
    [4] finite (start_yaw < end_yaw, start_tilt < end_tilt, within +-180 / +-90 degrees);
    ``track_lengths`` [N] >= 0, ``track_indices`` [M] frames in [0, T), ``track_coordinates``
    [M, 3] finite, with sum(track_lengths) == M.

    Raises:
      InputError: naming the file, the field and (for per-frame fields) the first bad frame.
    """
    path = Path(path)
    num_frames = None
    if "timestamps" in data:
        ts = np.asarray(data["timestamps"])
        if ts.ndim != 1 or len(ts) == 0:
            raise InputError(f"npz {path}: 'timestamps' must be a non-empty [T] array, got shape "
                             f"{list(ts.shape)}")
        _check_integers(ts, path, "timestamps", whole_floats=True)
        bad = np.flatnonzero(np.diff(ts) <= 0)
        if len(bad):
            raise InputError(f"npz {path}: 'timestamps' must be strictly increasing (frame "
                             f"{bad[0] + 1}: {ts[bad[0] + 1]} after {ts[bad[0]]})")
        if ts[0] < 0:
            raise InputError(f"npz {path}: 'timestamps' must be non-negative (frame 0: {ts[0]})")
        num_frames = len(ts)
    if "camera2world" in data:
        c2w = np.asarray(data["camera2world"])
        if c2w.ndim != 3 or c2w.shape[1:] not in ((3, 4), (4, 4)) or c2w.dtype.kind not in "iuf":
            raise InputError(f"npz {path}: 'camera2world' must be [T, 3, 4] numbers, got "
                             f"{c2w.dtype} {list(c2w.shape)}")
        if num_frames is not None and len(c2w) != num_frames:
            raise InputError(f"npz {path}: 'camera2world' has {len(c2w)} poses but 'timestamps' "
                             f"has {num_frames} frames")
        bad = np.flatnonzero(~np.all(np.isfinite(c2w), axis=(1, 2)))
        if len(bad):
            raise InputError(f"npz {path}: 'camera2world' has non-finite values (frame {bad[0]}"
                             f"{f' and {len(bad) - 1} more' if len(bad) > 1 else ''})")
        bad = np.flatnonzero(_rotation_errors(c2w[:, :3, :3]) > POSE_ROTATION_TOL)
        if len(bad):
            raise InputError(f"npz {path}: 'camera2world' frame {bad[0]} is not a rigid pose "
                             f"(rotation block not orthonormal with det +1)")
        num_frames = len(c2w) if num_frames is None else num_frames
    if "rectified2rig" in data:
        r2r = np.asarray(data["rectified2rig"])
        if r2r.shape != (2, 3, 3) or r2r.dtype.kind not in "iuf":
            raise InputError(f"npz {path}: 'rectified2rig' must be [2, 3, 3] numbers, got "
                             f"{r2r.dtype} {list(r2r.shape)}")
        for eye, error in zip(("left", "right"), _rotation_errors(r2r)):
            if error > POSE_ROTATION_TOL:
                raise InputError(f"npz {path}: 'rectified2rig' [{eye}] is not a rotation matrix")
    if "fov_bounds" in data:
        fov = np.asarray(data["fov_bounds"])
        if fov.shape != (4,) or fov.dtype.kind not in "iuf" or not np.all(np.isfinite(fov)):
            raise InputError(f"npz {path}: 'fov_bounds' must be 4 finite numbers [start_yaw, "
                             f"end_yaw, start_tilt, end_tilt], got {fov.dtype} {list(fov.shape)}")
        if not (-MAX_ABS_YAW_DEG <= fov[0] < fov[1] <= MAX_ABS_YAW_DEG
                and -MAX_ABS_TILT_DEG <= fov[2] < fov[3] <= MAX_ABS_TILT_DEG):
            raise InputError(f"npz {path}: 'fov_bounds' {fov.tolist()} must be ordered (start < "
                             f"end) within +-{MAX_ABS_YAW_DEG:g} yaw, +-{MAX_ABS_TILT_DEG:g} tilt")
    _validate_track_arrays(data, path, num_frames)


def _validate_track_arrays(data: dict, path: Path, num_frames: int | None) -> None:
    """The sparse track fields of ``validate_dataset_arrays``."""
    keys = ("track_lengths", "track_indices", "track_coordinates")
    present = [k for k in keys if k in data]
    if not present:
        return
    if len(present) != len(keys):
        raise InputError(f"npz {path}: has {', '.join(present)} but not "
                         f"{', '.join(k for k in keys if k not in present)}")
    lengths, indices, coords = (np.asarray(data[k]) for k in keys)
    if lengths.ndim != 1 or indices.ndim != 1:
        raise InputError(f"npz {path}: 'track_lengths' and 'track_indices' must be 1-D, got "
                         f"{list(lengths.shape)} and {list(indices.shape)}")
    _check_integers(lengths, path, "track_lengths")
    _check_integers(indices, path, "track_indices")
    if coords.ndim != 2 or coords.shape[1] != 3 or coords.dtype.kind not in "iuf":
        raise InputError(f"npz {path}: 'track_coordinates' must be [M, 3] numbers, got "
                         f"{coords.dtype} {list(coords.shape)}")
    if np.any(lengths < 0) or int(lengths.sum()) != len(indices) or len(indices) != len(coords):
        raise InputError(f"npz {path}: track counts disagree: sum('track_lengths') = "
                         f"{int(lengths.sum())}, 'track_indices' {len(indices)}, "
                         f"'track_coordinates' {len(coords)}")
    if num_frames is not None and np.any((indices < 0) | (indices >= num_frames)):
        raise InputError(f"npz {path}: 'track_indices' must be frames in [0, {num_frames})")
    if not np.all(np.isfinite(coords)):
        raise InputError(f"npz {path}: 'track_coordinates' has non-finite values")
