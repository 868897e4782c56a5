"""Reading a dense flow field at points, and the forward-backward test of a flow step.

Coordinates: continuous pixels (``stereo4d.geometry``); the value of array element ``[i, j]``
belongs to the pixel centre ``(j + 0.5, i + 0.5)``.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["PIXEL_CENTRE", "forward_backward_consistent", "sample_field"]

#: Pixel-centre offset between continuous coordinates and array indices.
PIXEL_CENTRE = 0.5
#: cv2.remap handles maps up to SHRT_MAX wide; points are sampled in rows of this many.
_REMAP_ROW = 4096


def sample_field(field: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Bilinear samples of a [H, W, C] float32 field at continuous (x, y) [M, 2] -> [M, C].

    Border values are replicated outside the image.
    """
    count = len(xy)
    if count == 0:
        return np.zeros((0, field.shape[-1]), np.float32)
    rows = -(-count // _REMAP_ROW)
    padded = np.zeros((rows * _REMAP_ROW, 2), np.float32)
    padded[:count] = xy - PIXEL_CENTRE
    maps = padded.reshape(rows, _REMAP_ROW, 2)
    out = cv2.remap(field, maps[..., 0], maps[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(rows * _REMAP_ROW, -1)[:count].astype(np.float32, copy=False)


def forward_backward_consistent(f: np.ndarray, b: np.ndarray, rel_tol: float,
                                abs_tol_px: float) -> np.ndarray:
    """Forward-backward test of flow pairs f, b [M, 2] -> [M] bool: the step is trusted when
    ``|f + b|^2 < rel_tol (|f|^2 + |b|^2) + abs_tol_px^2`` (Sundaram et al. 2010)."""
    err2 = np.sum((f + b) ** 2, axis=-1)
    scale2 = np.sum(f**2, axis=-1) + np.sum(b**2, axis=-1)
    return err2 < rel_tol * scale2 + abs_tol_px**2
