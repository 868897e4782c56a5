"""Dense optical flow of the classical tracker: OpenCV DIS or Farneback between consecutive
frames or keyframes, forward and backward (the tracker chains points through it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np
from tqdm import tqdm

from stereo4d.backends.imageops import to_gray

if TYPE_CHECKING:
    from stereo4d.backends.classical_tracker import ClassicalTrackerConfig

__all__ = ["DIS_PRESETS", "FARNEBACK_PARAMS", "FLOW_METHODS", "FlowEngine", "compute_flow"]

#: Supported dense flow methods.
FLOW_METHODS = ("dis", "farneback")
#: ``dis_preset`` name -> OpenCV DIS preset.
DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}
#: Settings of ``cv2.calcOpticalFlowFarneback`` (``flow_method="farneback"``): a 5-level
#: pyramid halving each level, 15 px averaging window, 3 iterations per level, polynomial
#: expansion over 5 px neighbourhoods with Gaussian sigma 1.2 px.
FARNEBACK_PARAMS = {"pyr_scale": 0.5, "levels": 5, "winsize": 15, "iterations": 3, "poly_n": 5,
                    "poly_sigma": 1.2, "flags": 0}


class FlowEngine:
    """Computes dense flow between two grey uint8 images [H, W] -> [H, W, 2] float32 (dx, dy) px."""

    def __init__(self, config: ClassicalTrackerConfig):
        self.config = config
        if config.flow_method == "dis":
            dis = cv2.DISOpticalFlow_create(DIS_PRESETS[config.dis_preset])
            dis.setFinestScale(config.dis_finest_scale)
            dis.setPatchSize(config.dis_patch_size)
            dis.setPatchStride(config.dis_patch_stride)
            dis.setVariationalRefinementIterations(config.dis_refinement_iters)
            dis.setUseSpatialPropagation(True)
            self._dis = dis

    def __call__(self, gray0: np.ndarray, gray1: np.ndarray) -> np.ndarray:
        if self.config.flow_method == "dis":
            return self._dis.calc(gray0, gray1, None)
        return cv2.calcOpticalFlowFarneback(gray0, gray1, None, **FARNEBACK_PARAMS)


def compute_flow(frames_rgb: np.ndarray, config: ClassicalTrackerConfig,
                 skip: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Forward and backward flow of consecutive frames, or of keyframes ``skip`` apart.

    Args:
      frames_rgb: [T, H, W, 3] uint8; config: the tracker's flow settings and ``progress``.
      skip: 1 for every pair ``t -> t+1``; k > 1 for the keyframe pairs ``jk -> (j+1)k`` only.
    Returns:
      forward [P, H, W, 2] float32 (pair j: frame jk -> jk+k), backward [P, H, W, 2]
      (jk+k -> jk); P = T-1 for skip 1, floor((T-1) / k) for skip k.
    """
    engine = FlowEngine(config)
    gray = [to_gray(f) for f in frames_rgb]
    num_pairs = max((len(gray) - 1) // skip, 0)
    shape = (num_pairs, *gray[0].shape, 2)
    forward, backward = np.empty(shape, np.float32), np.empty(shape, np.float32)
    desc = "optical flow" if skip == 1 else f"optical flow ({skip}-frame keyframes)"
    for j in tqdm(range(num_pairs), desc=desc, disable=not config.progress):
        forward[j] = engine(gray[j * skip], gray[(j + 1) * skip])
        backward[j] = engine(gray[(j + 1) * skip], gray[j * skip])
    return forward, backward
