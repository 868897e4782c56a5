"""Small image helpers shared by the classical backends."""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["to_gray"]


def to_gray(image: np.ndarray) -> np.ndarray:
    """uint8 RGB [H, W, 3] -> grey uint8 [H, W] (a grey [H, W] image is returned as is)."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
