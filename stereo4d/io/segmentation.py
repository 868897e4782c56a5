"""The filtering stage's record: label maps, the kept mask and the removal reasons."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from stereo4d.errors import InputError
from stereo4d.io.files import atomic_path

__all__ = ["REMOVED_PREFIX", "load_removal_reasons", "load_segmentation", "save_segmentation"]

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
