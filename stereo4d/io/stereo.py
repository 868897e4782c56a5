"""The stereo stage's output: the compact quantised file and the reference's pickle."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from stereo4d.errors import InputError
from stereo4d.io.files import atomic_path
from stereo4d.pickles import load_stereo_flows as _load_stereo_flows_pickle

__all__ = ["STEREO_COMPACT_VERSION", "STEREO_FLOW_STEP_PX", "load_stereo_flows",
           "save_stereo_compact"]

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
