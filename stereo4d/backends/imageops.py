"""Small image helpers shared by the classical backends."""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["MIN_TEXTURE_LEVELS_PER_PX", "TEXTURE_WINDOW_PX", "texture_at_points", "texture_map",
           "to_gray"]


def to_gray(image: np.ndarray) -> np.ndarray:
    """uint8 RGB [H, W, 3] -> grey uint8 [H, W] (a grey [H, W] image is returned as is)."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image


#: Side (px) of the square window over which local texture is measured.
TEXTURE_WINDOW_PX = 7
#: Local texture (RMS grey-level gradient over ``TEXTURE_WINDOW_PX``, levels per px) below which
#: a patch is blank: nothing there can be matched or tracked. A flat image, even after video
#: compression, measures 0. Chosen on the synthetic clip of seed 3 (512 px views): 0.2 % of
#: its surface query points measure less, and taking them as untrackable costs the classical
#: tracker 0.001 of occlusion accuracy (a threshold of 0.5 would cost 0.016: low-contrast
#: surfaces are still followed correctly through the flow propagated from their edges).
MIN_TEXTURE_LEVELS_PER_PX = 0.1


def texture_map(image: np.ndarray) -> np.ndarray:
    """Local texture of an image: RMS grey-level gradient over a ``TEXTURE_WINDOW_PX`` window.

    Args:
      image: [H, W, 3] uint8 RGB or [H, W] grey.
    Returns:
      [H, W] float32, grey levels per pixel (0 on a flat image).
    """
    gray = to_gray(image).astype(np.float32)
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3, scale=0.125, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3, scale=0.125, borderType=cv2.BORDER_REPLICATE)
    energy = cv2.boxFilter(gx * gx + gy * gy, -1, (TEXTURE_WINDOW_PX, TEXTURE_WINDOW_PX),
                           borderType=cv2.BORDER_REPLICATE)
    return np.sqrt(np.maximum(energy, 0.0))


def texture_at_points(frames: np.ndarray, points_tyx: np.ndarray) -> np.ndarray:
    """``texture_map`` of each point's frame at the point (nearest pixel).

    Args:
      frames: [T, H, W, 3] uint8 RGB.
      points_tyx: [N, 3] (t, y, x), continuous pixel coordinates (pixel centres at +0.5).
    Returns:
      [N] float32 grey levels per pixel.
    """
    points = np.asarray(points_tyx, dtype=np.float64).reshape(-1, 3)
    num_frames, height, width = frames.shape[:3]
    t = np.clip(np.round(points[:, 0]).astype(np.int64), 0, num_frames - 1)
    rows = np.clip(np.floor(points[:, 1]).astype(np.int64), 0, height - 1)
    cols = np.clip(np.floor(points[:, 2]).astype(np.int64), 0, width - 1)
    out = np.zeros(len(points), np.float32)
    for frame in np.unique(t):  # one texture map per query frame
        at = t == frame
        out[at] = texture_map(frames[frame])[rows[at], cols[at]]
    return out
