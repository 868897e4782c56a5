"""All file I/O: clip paths, the released dataset npz, safe pickles, JSON, video, atomic writes.

No stage spells a file name itself: ``ClipPaths`` knows where everything lives.
Every writer writes to a temporary name in the target folder and renames when
complete, so an interrupted run never leaves a file that looks finished.
"""

from __future__ import annotations

import builtins
import collections
import contextlib
import io
import json
import os
import pickle
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DATASET_KEYS",
    "ClipPaths",
    "InputError",
    "atomic_path",
    "load_dataset_npz",
    "load_json",
    "load_pickle",
    "load_removal_reasons",
    "load_segmentation",
    "load_stereo_flows",
    "load_tracks_2d",
    "pack_tracks",
    "save_dataset_npz",
    "save_json",
    "save_pickle",
    "save_segmentation",
    "split_vid",
    "unpack_tracks",
    "validate_dataset_arrays",
]


class InputError(Exception):
    """Bad user input (missing or malformed file or field). Scripts print it and exit non-zero."""


# --------------------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------------------


#: Longest ``--vid`` accepted (released ids are an 11-character YouTube id, '_', microseconds).
MAX_VID_LENGTH = 128
#: A released clip id: URL-safe characters (YouTube ids may start with '-'), '_', digits.
_VID_PATTERN = re.compile(r"[A-Za-z0-9_-]+_[0-9]+")


def split_vid(vid: str) -> tuple[str, str]:
    """``<video_id>_<timestamp>`` -> (video_id, timestamp). Video ids may contain '_'.

    The one check of a clip id: URL-safe characters only (``[A-Za-z0-9_-]``), at most
    ``MAX_VID_LENGTH`` long, so it can never name a path ('/', '..', absolute).
    """
    if not isinstance(vid, str) or len(vid) > MAX_VID_LENGTH or not _VID_PATTERN.fullmatch(vid):
        shown = vid if not isinstance(vid, str) or len(vid) <= MAX_VID_LENGTH else vid[:40] + "..."
        raise InputError(f"--vid must look like <video_id>_<timestamp> of letters, digits, '_' and "
                         f"'-' (at most {MAX_VID_LENGTH} characters), got {shown!r}")
    video_id, _, stamp = vid.rpartition("_")
    return video_id, stamp


def _inside(folder: Path, name: str) -> Path:
    """``folder / name``, refused unless it stays inside ``folder`` (compared lexically, so a
    symlinked file such as a raw video on another disk is still allowed)."""
    path = folder / name
    base = os.path.abspath(folder)
    if os.path.commonpath([base, os.path.abspath(path)]) != base or os.path.abspath(path) == base:
        raise InputError(f"{path} is outside its folder {folder}")
    return path


@dataclass(frozen=True)
class ClipPaths:
    """Every path the pipeline reads or writes for one clip.

    Attributes:
      vid: ``<video_id>_<timestamp>``.
      npz_folder: released-format metadata (``<vid>.npz``).
      raw_video_folder: side-by-side equirect videos (``<video_id>.mp4``).
      output_folder: processed outputs; files go to ``<output_folder>/<vid>/``.
      gt_folder: synthetic ground truth (``<vid>.npz``).
    """

    vid: str
    npz_folder: Path = Path("stereo4d_dataset/npz")
    raw_video_folder: Path = Path("stereo4d_dataset/raw")
    output_folder: Path = Path("stereo4d_dataset/processed")
    gt_folder: Path = Path("stereo4d_dataset/gt")

    def __post_init__(self):
        split_vid(self.vid)
        for name in ("npz_folder", "raw_video_folder", "output_folder", "gt_folder"):
            object.__setattr__(self, name, Path(getattr(self, name)))

    @property
    def video_id(self) -> str:
        return split_vid(self.vid)[0]

    @property
    def npz(self) -> Path:
        return _inside(self.npz_folder, f"{self.vid}.npz")

    @property
    def raw_video(self) -> Path:
        return _inside(self.raw_video_folder, f"{self.video_id}.mp4")

    @property
    def gt(self) -> Path:
        return _inside(self.gt_folder, f"{self.vid}.npz")

    @property
    def clip_dir(self) -> Path:
        return _inside(self.output_folder, self.vid)

    def out(self, suffix: str) -> Path:
        """``<output_folder>/<vid>/<vid>-<suffix>``."""
        return _inside(self.clip_dir, f"{self.vid}-{suffix}")

    # Stage 1: rectify
    @property
    def raw_equirect_video(self) -> Path:
        return self.out("raw_equirect.mp4")

    @property
    def rectified_equirect_video(self) -> Path:
        return self.out("rectified_equirect.mp4")

    @property
    def left_video(self) -> Path:
        return self.out("left_rectified.mp4")

    @property
    def right_video(self) -> Path:
        return self.out("right_rectified.mp4")

    # Stage 2: stereo
    @property
    def flows_stereo(self) -> Path:
        return self.out("flows_stereo.pkl")

    # Stage 3: tracking
    @property
    def tracks_2d(self) -> Path:
        return self.out("tapir_2d.pkl")

    @property
    def tracks_2d_video(self) -> Path:
        return self.out("tapir_2d.mp4")

    # Stage 4: filtering
    @property
    def filtered_tracks(self) -> Path:
        return self.out("tapir_remove_drift_tracks.pkl")

    @property
    def filtered_tracks_video(self) -> Path:
        return self.out("tapir_3dtrack_filtered.mp4")

    @property
    def segmentation(self) -> Path:
        """Label maps [T, H, W] uint8 (ADE20K ids) and the filter's ``kept`` [N] mask."""
        return self.out("segmentation.npz")

    # Stage 5: optimisation
    @property
    def optimized_tracks(self) -> Path:
        return self.out("optimized_tracks.pkl")

    @property
    def export_npz(self) -> Path:
        """Optimised tracks in the released dataset format."""
        return _inside(self.clip_dir, f"{self.vid}.npz")

    def provenance(self, stage: str) -> Path:
        """Small JSON beside a stage's output: backend, settings, timings."""
        return self.out(f"{stage}.json")

    def intermediates(self) -> list[Path]:
        """Files only later stages read (stereo flows, 2D track pickles, label maps).

        ``--keep=final`` deletes them once ``finals()`` are written; the stage markers, the
        rectified views and every preview video stay.
        """
        return [self.flows_stereo, self.tracks_2d, self.filtered_tracks, self.segmentation]

    def finals(self) -> list[Path]:
        """What a finished clip keeps: released-format npz, optimised tracks, rectified views."""
        return [self.export_npz, self.optimized_tracks, self.left_video, self.right_video]


# --------------------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; renames it onto ``path`` on success.

    The temporary name keeps the extension (tools like ffmpeg pick the format from
    it). On an exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ext = suffix if suffix is not None else path.suffix
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{ext}")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------
# Pickles (the reference's intermediate format), read safely
# --------------------------------------------------------------------------------------

def _latin1_encode(text: str, encoding: str = "latin1", errors: str = "strict") -> bytes:
    """Stand-in for ``_codecs.encode``: protocol-2 pickles spell bytes as ``encode(text, 'latin1')``.

    Only that one use is admitted (no other codec, no other argument types).
    """
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise pickle.UnpicklingError("refusing _codecs.encode with anything but (str, 'latin1')")
    return text.encode("latin1")


def _safe_globals() -> dict[tuple[str, str], Any]:
    """The exact (module, name) pairs a pickle may name, mapped to the objects they stand for.

    Numpy's array, dtype and scalar reconstruction (under numpy 1.x ``numpy.core`` and 2.x
    ``numpy._core`` spellings) and the builtin containers and scalars that have no opcode of
    their own. The objects are looked up here, once, never imported on a pickle's request.
    """
    core = getattr(np, "_core", None) or np.core
    table: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
        ("collections", "OrderedDict"): collections.OrderedDict,
    }
    for spelling in ("numpy.core", "numpy._core"):
        table[(f"{spelling}.multiarray", "_reconstruct")] = core.multiarray._reconstruct
        table[(f"{spelling}.multiarray", "scalar")] = core.multiarray.scalar
        table[(f"{spelling}.numeric", "_frombuffer")] = core.numeric._frombuffer
    for name in ("set", "frozenset", "complex", "slice", "bytearray", "bytes"):
        table[("builtins", name)] = getattr(builtins, name)
        table[("__builtin__", name)] = getattr(builtins, name)  # protocol-2 (Python 2) spelling
    return table


#: Everything a pickle may reference; any other global (or a dotted name) is refused.
SAFE_PICKLE_GLOBALS = _safe_globals()


class _RestrictedUnpickler(pickle.Unpickler):
    """Admits numpy arrays, dtypes and scalars and builtin containers and scalars only.

    ``find_class`` answers from ``SAFE_PICKLE_GLOBALS`` alone: no import, no attribute lookup,
    so no dotted name (protocol 4) can walk from an admitted object to anything else.
    """

    def find_class(self, module: str, name: str):
        obj = SAFE_PICKLE_GLOBALS.get((module, name)) if "." not in name else None
        if obj is None:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name} from a pickle (only numpy arrays, dtypes, "
                "scalars and builtin containers are allowed)")
        return obj

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refusing a persistent id in a pickle")


def safe_pickle_loads(data: bytes) -> Any:
    """``pickle.loads`` restricted to numpy arrays and builtin containers (never runs code)."""
    return _RestrictedUnpickler(io.BytesIO(data)).load()


def load_pickle(path: str | os.PathLike) -> Any:
    """Reads a pickle written by this pipeline (or the reference) without running code.

    Raises:
      InputError: missing file, or a file that is not a safe pickle (naming the file).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"missing file: {path}")
    try:
        return safe_pickle_loads(path.read_bytes())
    except Exception as exc:  # truncated or hostile pickles fail in many types
        raise InputError(f"cannot read {path}: {exc.__class__.__name__}: {exc}") from exc


def save_pickle(obj: Any, path: str | os.PathLike) -> Path:
    """Writes ``obj`` atomically with the highest pickle protocol."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
    return Path(path)


def _type_name(obj: Any) -> str:
    return type(obj).__name__


def _numeric_array(value: Any, path: Path, field: str) -> np.ndarray:
    """``value`` as an array of numbers (bool, int or float); InputError naming file and field."""
    if not isinstance(value, (np.ndarray, list, tuple)):
        raise InputError(f"{path}: {field} must be an array, got {_type_name(value)}")
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise InputError(f"{path}: {field} must hold numbers, got dtype {array.dtype}")
    return array


def load_stereo_flows(path: str | os.PathLike) -> list[dict[str, np.ndarray]]:
    """The stereo stage's ``<vid>-flows_stereo.pkl``, checked for its format.

    Returns:
      one ``{'fwd': [H, W, 2], 'bwd': [H, W, 2]}`` float32 per frame (left->right and
      right->left flows in pixels, all finite), every frame the same size, at least one frame.
    Raises:
      InputError: missing or unreadable file, or not that layout (naming file and field).
    """
    path = Path(path)
    flows = load_pickle(path)
    if not isinstance(flows, (list, tuple)) or not all(
            isinstance(f, dict) and "fwd" in f and "bwd" in f for f in flows):
        raise InputError(f"{path}: expected a list of {{'fwd', 'bwd'}} flows per frame, got "
                         f"{_type_name(flows)}")
    if not flows:
        raise InputError(f"{path}: no frames (expected one {{'fwd', 'bwd'}} flow per frame)")
    out = []
    for t, f in enumerate(flows):
        frame = {}
        for key in ("fwd", "bwd"):
            frame[key] = _numeric_array(f[key], path, f"flow [{t}]['{key}']").astype(np.float32,
                                                                                 copy=False)
        out.append(frame)
    shapes = {f[key].shape for f in out for key in ("fwd", "bwd")}
    if len(shapes) > 1 or any(len(s) != 3 or s[2] != 2 for s in shapes):
        raise InputError(f"{path}: every flow must be [H, W, 2] of one size, got shapes "
                         f"{sorted(shapes)}")
    for t, f in enumerate(out):
        for key in ("fwd", "bwd"):
            if not np.all(np.isfinite(f[key])):
                raise InputError(f"{path}: flow [{t}]['{key}'] (frame {t}) has non-finite values")
    return out


#: Keys of the 2D-track pickles (``tapir_2d.pkl``, ``tapir_remove_drift_tracks.pkl``).
TRACKS_2D_KEYS = ("tracks", "visibles", "query_points")


def load_tracks_2d(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A 2D-track pickle (the reference's layout), checked.

    Returns:
      ``{'tracks': [N, T, 2] float32 (x, y) px, 'visibles': [N, T] bool,
      'query_points': [N, 3] (t, y, x)}``; tracks finite where visible, query frames in [0, T).
    Raises:
      InputError: missing or unreadable file, not a dict, missing key, wrong shape, non-finite
        (naming file and field).
    """
    path = Path(path)
    data = load_pickle(path)
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a dict with keys {', '.join(TRACKS_2D_KEYS)}, got "
                         f"{_type_name(data)}")
    missing = [k for k in TRACKS_2D_KEYS if k not in data]
    if missing:
        raise InputError(f"{path}: missing key(s) {', '.join(missing)}")
    tracks = _numeric_array(data["tracks"], path, "'tracks'")
    visibles = _numeric_array(data["visibles"], path, "'visibles'")
    queries = _numeric_array(data["query_points"], path, "'query_points'")
    if tracks.size == 0 and tracks.ndim != 3:  # an empty result may have lost its frame axis
        tracks = tracks.reshape(0, 0, 2)
    if tracks.ndim != 3 or tracks.shape[2] != 2:
        raise InputError(f"{path}: 'tracks' must be [N, T, 2], got {list(tracks.shape)}")
    num_tracks, num_frames = tracks.shape[:2]
    if num_tracks == 0:  # empty arrays may come flattened
        visibles = visibles.reshape(0, num_frames) if visibles.size == 0 else visibles
        queries = queries.reshape(0, 3) if queries.size == 0 else queries
    if visibles.shape != (num_tracks, num_frames):
        raise InputError(f"{path}: 'visibles' must be [{num_tracks}, {num_frames}], got "
                         f"{list(visibles.shape)}")
    if queries.shape != (num_tracks, 3):
        raise InputError(f"{path}: 'query_points' must be [{num_tracks}, 3], got "
                         f"{list(queries.shape)}")
    visibles = visibles.astype(bool)
    if not np.all(np.isfinite(tracks[visibles])):
        frame = int(np.nonzero(visibles & ~np.all(np.isfinite(tracks), axis=-1))[1][0])
        raise InputError(f"{path}: 'tracks' has non-finite visible points (first in frame {frame})")
    if not np.all(np.isfinite(queries)) or np.any((queries[:, 0] < 0) | (queries[:, 0] >= num_frames)):
        raise InputError(f"{path}: 'query_points' frames must be finite and in [0, {num_frames})")
    return {"tracks": tracks.astype(np.float32, copy=False), "visibles": visibles,
            "query_points": queries}


def _to_jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def save_json(obj: Any, path: str | os.PathLike) -> Path:
    """Writes ``obj`` (numpy values allowed) as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_to_jsonable(obj), indent=2, sort_keys=True) + "\n")
    return Path(path)


def load_json(path: str | os.PathLike) -> Any:
    """Inverse of ``save_json``. Raises InputError for a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"missing file: {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc


REMOVED_PREFIX = "removed_"
"""Prefix of the per-reason removal masks in the segmentation record."""


def save_segmentation(path: str | os.PathLike, labels: np.ndarray, kept: np.ndarray,
                      removed: dict[str, np.ndarray] | None = None) -> Path:
    """Filtering-stage record: ``labels`` [T, H, W] uint8 ADE20K ids, ``kept`` [N] bool.

    ``removed`` (optional): reason -> [N] bool, the tracks each filter removed (stored as
    ``removed_<reason>``; read back by ``load_removal_reasons``).
    """
    reasons = {f"{REMOVED_PREFIX}{k}": np.asarray(v, bool) for k, v in (removed or {}).items()}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, labels=np.asarray(labels, np.uint8), kept=np.asarray(kept, bool),
                            **reasons)
    return Path(path)


def load_segmentation(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of ``save_segmentation``: (labels [T, H, W] uint8, kept [N] bool)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"missing file: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            return z["labels"], z["kept"]
    except Exception as exc:  # zipfile / format / missing-key errors come in many types
        raise InputError(f"cannot read {path}: {exc}") from exc


def load_removal_reasons(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The filter's removal masks of ``save_segmentation``: reason -> [N] bool.

    Empty for a record written before reasons were stored.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"missing file: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k[len(REMOVED_PREFIX):]: np.asarray(z[k], bool) for k in z.files
                    if k.startswith(REMOVED_PREFIX)}
    except Exception as exc:  # zipfile / format errors come in many types
        raise InputError(f"cannot read {path}: {exc}") from exc


# --------------------------------------------------------------------------------------
# Released dataset npz
# --------------------------------------------------------------------------------------

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


def _check_integers(array: np.ndarray, path: Path, field: str) -> None:
    if array.dtype.kind not in "iu":
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
        _check_integers(ts, path, "timestamps")
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
    arrays = dict(
        name=np.asarray(name),
        video_id=np.asarray(video_id),
        timestamps=np.asarray(timestamps_us, dtype=np.int64),
        camera2world=np.asarray(camera2world)[..., :3, :4],
        track_lengths=lengths,
        track_indices=indices,
        track_coordinates=coords,
        rectified2rig=np.asarray(rectified2rig),
        fov_bounds=np.asarray(fov_bounds_deg),
    )
    arrays.update(extra or {})
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    return Path(path)
