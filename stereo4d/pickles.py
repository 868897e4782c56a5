"""Pickles (the reference's intermediate format), read without running code, and checked.

``load_pickle`` admits only an exact list of globals (``SAFE_PICKLE_GLOBALS``): numpy's array,
dtype and scalar reconstruction and builtin containers. It imports nothing and follows no
dotted name. ``load_stereo_flows`` and ``load_tracks_2d`` then check each file's layout, so a
valid pickle of the wrong type is refused with what was expected. ``stereo4d.io`` re-exports
all of them.
"""

from __future__ import annotations

import builtins
import collections
import io
import os
import pickle
import types
from pathlib import Path
from typing import Any

import numpy as np

from stereo4d.errors import InputError

__all__ = [
    "SAFE_PICKLE_GLOBALS",
    "TRACKS_2D_KEYS",
    "load_pickle",
    "load_stereo_flows",
    "load_tracks_2d",
    "safe_pickle_loads",
]


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


#: Everything a pickle may reference (read-only); any other global (or a dotted name) is refused.
SAFE_PICKLE_GLOBALS = types.MappingProxyType(_safe_globals())


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
