"""All file I/O: clip paths, the released dataset npz, safe pickles, JSON, video, atomic writes.

No stage spells a file name itself: ``ClipPaths`` knows where everything lives.
Every writer writes to a temporary name in the target folder and renames when
complete, so an interrupted run never leaves a file that looks finished.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: stale temporaries are found by name only
    fcntl = None

from stereo4d.dataset_checks import validate_dataset_arrays
from stereo4d.errors import InputError
from stereo4d.pickles import (
    SAFE_PICKLE_GLOBALS,
    load_pickle,
    load_tracks_2d,
    safe_pickle_loads,
)
from stereo4d.pickles import load_stereo_flows as _load_stereo_flows_pickle

__all__ = [
    "DATASET_KEYS",
    "SAFE_PICKLE_GLOBALS",
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
    "remove_stale_temporaries",
    "safe_pickle_loads",
    "save_dataset_npz",
    "save_json",
    "save_pickle",
    "save_segmentation",
    "save_stereo_compact",
    "split_vid",
    "unpack_tracks",
    "validate_dataset_arrays",
]


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
        """Reference format: float32 ``fwd``/``bwd`` flows per frame (``--stereo_format=pickle``)."""
        return self.out("flows_stereo.pkl")

    @property
    def stereo_compact(self) -> Path:
        """Compact format (default): quantised ``fwd`` flow and validity (``save_stereo_compact``)."""
        return self.out("stereo.npz")

    @property
    def stereo_output(self) -> Path:
        """The stereo stage's output as written: the compact npz if present, else the pickle.

        When neither exists, the compact path (the default format), for messages.
        """
        if not self.stereo_compact.is_file() and self.flows_stereo.is_file():
            return self.flows_stereo
        return self.stereo_compact

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
        return [self.flows_stereo, self.stereo_compact, self.tracks_2d, self.filtered_tracks,
                self.segmentation]

    def finals(self) -> list[Path]:
        """What a finished clip keeps: released-format npz, optimised tracks, rectified views."""
        return [self.export_npz, self.optimized_tracks, self.left_video, self.right_video]


# --------------------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------------------


#: Marks the temporary names of ``atomic_path``: ``.<stem>.<random>.tmp<ext>`` beside the target.
TEMP_MARK = ".tmp"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; renames it onto ``path`` on success.

    The temporary name is ``.<stem>.<random>.tmp<ext>`` (hidden; it keeps the extension,
    as tools like ffmpeg pick the format from it). On an exception the temporary file is
    removed and ``path`` is untouched. While the block runs, the temporary file is held under
    an exclusive ``flock``: ``remove_stale_temporaries`` takes a temporary whose lock is free
    (its writer died, e.g. by ``kill -9``) as stale, and leaves a live writer's alone.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ext = suffix if suffix is not None else path.suffix
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f"{TEMP_MARK}{ext}")
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)
        os.close(fd)  # releases the lock


def _temporary_name_pattern(path: Path) -> re.Pattern:
    """Names ``atomic_path`` gives the temporaries of ``path`` (mkstemp's random part has no dot)."""
    return re.compile(re.escape(f".{path.stem}.") + r"[A-Za-z0-9_]+"
                      + re.escape(f"{TEMP_MARK}{path.suffix}"))


def remove_stale_temporaries(outputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Removes the temporaries a killed run left for ``outputs``, and only theirs.

    A stage calls it when it starts, with its own output paths. A temporary is stale when
    no live process holds its lock (see ``atomic_path``): temporaries of other outputs, and
    those of a writer still running, are left alone.

    Returns:
      the removed paths.
    """
    removed = []
    for output in outputs:
        output = Path(output)
        if not output.parent.is_dir():
            continue
        pattern = _temporary_name_pattern(output)
        for candidate in output.parent.iterdir():
            if pattern.fullmatch(candidate.name) and _remove_if_unlocked(candidate):
                removed.append(candidate)
    return removed


def _remove_if_unlocked(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # gone meanwhile (renamed by its writer) or unreadable
        return False
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # its writer is alive
                return False
        path.unlink(missing_ok=True)
        return True
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------
# Pickles (the reference's intermediate format); read by ``stereo4d.pickles`` (re-exported)
# --------------------------------------------------------------------------------------

def save_pickle(obj: Any, path: str | os.PathLike) -> Path:
    """Writes ``obj`` atomically with the highest pickle protocol."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
    return Path(path)


#: Finest quantisation step of the compact stereo file's flows, pixels (max error: half of it).
#: Coarser steps round disparity noise across the floater test's 3 % depth-gradient threshold:
#: on a 48-frame clip 1/64 px flipped 1.3 % of the depth pixels, 1/256 px 0.27 %, 1/1024 px
#: 0.07 % (file 0.14 / 0.20 / 0.27 MB per 512x512 frame).
STEREO_FLOW_STEP_PX = 1.0 / 1024.0
#: Flows are stored as int16 multiples of their frame's step; a frame whose flows exceed
#: ``STEREO_FLOW_STEP_PX * STEREO_INT16_MAX`` (32 px) gets a coarser power-of-two step.
STEREO_INT16_MAX = 32767
#: Version of the compact stereo layout, stored in the file.
STEREO_COMPACT_VERSION = 2


def _stereo_flow_step_px(max_abs_px: np.ndarray) -> np.ndarray:
    """Per frame, the smallest power-of-two step >= ``STEREO_FLOW_STEP_PX`` that keeps
    ``max_abs_px`` [T] in int16 (with one count to spare for rounding). -> [T] float64."""
    needed = np.maximum(np.asarray(max_abs_px, np.float64) / (STEREO_INT16_MAX - 1),
                        STEREO_FLOW_STEP_PX)
    return 2.0 ** np.ceil(np.log2(needed))


def save_stereo_compact(path: str | os.PathLike, fwd: np.ndarray, valid: np.ndarray) -> Path:
    """Writes the stereo stage's compact file (``ClipPaths.stereo_compact``), atomically.

    Stores what the later stages use: the forward flow (its x is minus the left disparity,
    its y the vertical mismatch) quantised to int16 multiples of a per-frame ``step_px``
    (1/1024 px for flows up to 32 px, doubling per octave beyond), delta-coded along x
    (smooth flows compress well), and the per-pixel validity of
    the match (left-right check and vertical-flow check, computed from the float32 flows).
    The backward flow is not stored: it only served the left-right check.

    Args:
      fwd: [T, H, W, 2] finite float flows left->right, pixels.
      valid: [T, H, W] bool, True where the match passed the checks.
    """
    fwd = np.asarray(fwd, dtype=np.float32)
    valid = np.asarray(valid, dtype=bool)
    if fwd.ndim != 4 or fwd.shape[-1] != 2 or valid.shape != fwd.shape[:3]:
        raise ValueError(f"expected fwd [T, H, W, 2] and valid [T, H, W], got {fwd.shape} "
                         f"and {valid.shape}")
    step_px = _stereo_flow_step_px(np.abs(fwd).reshape(len(fwd), -1).max(axis=1, initial=0.0))
    quantised = np.rint(fwd / step_px.astype(np.float32)[:, None, None, None]).astype(np.int16)
    delta_x = np.diff(quantised, axis=2, prepend=np.int16(0))  # int16 wrap-around is undone
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, fwd_delta_x=delta_x, step_px=step_px, valid=valid,
                            version=np.int32(STEREO_COMPACT_VERSION))
    return Path(path)


def _load_stereo_compact(path: Path) -> list[dict[str, np.ndarray]]:
    try:
        with np.load(path, allow_pickle=False) as z:
            delta_x, step_px, valid = z["fwd_delta_x"], z["step_px"], z["valid"]
            version = int(z["version"])
    except Exception as exc:  # zipfile / format / missing-key errors come in many types
        raise InputError(f"cannot read {path}: {exc}") from exc
    if version != STEREO_COMPACT_VERSION:
        raise InputError(f"{path}: compact stereo version {version}, this code reads "
                         f"{STEREO_COMPACT_VERSION}")
    if len(delta_x) == 0:
        raise InputError(f"{path}: no frames")
    if (delta_x.dtype != np.int16 or delta_x.ndim != 4 or delta_x.shape[-1] != 2
            or valid.dtype != bool or valid.shape != delta_x.shape[:3]
            or step_px.shape != delta_x.shape[:1] or not np.all(step_px > 0)):
        raise InputError(f"{path}: expected fwd_delta_x int16 [T, H, W, 2], valid bool "
                         f"[T, H, W] and step_px > 0 [T], got {delta_x.dtype} {delta_x.shape}, "
                         f"{valid.dtype} {valid.shape} and {step_px.shape}")
    steps = step_px.astype(np.float32)[:, None, None, None]
    fwd = np.cumsum(delta_x, axis=2, dtype=np.int16).astype(np.float32) * steps
    return [{"fwd": fwd[t], "valid": valid[t]} for t in range(len(fwd))]


def load_stereo_flows(path: str | os.PathLike) -> list[dict[str, np.ndarray]]:
    """The stereo stage's output, either format (``ClipPaths.stereo_output``), checked.

    Returns:
      one dict per frame, every frame the same size, with ``'fwd'``: [H, W, 2] float32
      left->right flow in pixels, and either ``'bwd'``: [H, W, 2] right->left flow (the
      reference's ``<vid>-flows_stereo.pkl``, checked by ``pickles.load_stereo_flows``) or
      ``'valid'``: [H, W] bool, the match checks already applied (the compact
      ``<vid>-stereo.npz``; ``fwd`` within half its frame's quantisation step).
      ``stereo4d.depth.depth_maps_from_flows`` takes both.
    Raises:
      InputError: missing or unreadable file, or not that layout.
    """
    path = Path(path)
    if path.suffix == ".npz":
        if not path.is_file():
            raise InputError(f"missing file: {path}")
        return _load_stereo_compact(path)
    return _load_stereo_flows_pickle(path)


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
