"""Atomic writes (and the removal of a killed writer's temporaries), pickles and JSON.

Every writer writes to a temporary name in the target folder and renames when complete, so
an interrupted run never leaves a file that looks finished.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: stale temporaries are found by name only
    fcntl = None

from stereo4d.errors import InputError

__all__ = ["TEMP_MARK", "atomic_path", "load_json", "remove_stale_temporaries", "save_json",
           "save_pickle"]

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


def save_pickle(obj: Any, path: str | os.PathLike) -> Path:
    """Writes ``obj`` atomically with the highest pickle protocol."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
    return Path(path)


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
