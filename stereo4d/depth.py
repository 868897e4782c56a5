"""Metric depth from the stereo stage's flows, with the pipeline's validity checks (once).

The reference computed this in two diverging copies (``load_rgbd_cam_from_pkl`` in
``segmentation.py`` and ``track_optimization.py``; only the second removed
floaters). Here it lives once, and both uses call ``depth_maps_from_flows``.

Conventions
-----------
* ``fwd``: flow left -> right, ``bwd``: flow right -> left, float [..., H, W, 2],
  (x, y) displacement in pixels, as stored in ``<vid>-flows_stereo.pkl``. For a
  rectified pair ``fwd_x = -disparity_left`` and ``bwd_x = +disparity_right``.
* Depth maps are float32 metres, ``0`` marks an invalid pixel.
* Focal length from the horizontal FoV and the image width
  (``geometry.focal_length_px``); rectified views have the principal point at the
  centre, so ``depth = fx * baseline / disparity``.

Checks, in the reference's order: disparity ``clip(-fwd_x, 0)``; occluded pixels
(the backward flow, warped to the left view by the forward flow with bicubic
sampling and zero outside the image, must cancel the forward flow within
``OCCLUSION_TOLERANCE_PX``); pixels whose vertical flow exceeds
``MAX_VERTICAL_FLOW_PX``; depth outside ``(0, MAX_DEPTH_M]``. Optionally (track
optimisation, not segmentation) floaters: pixels where the central difference of
depth to a neighbour exceeds ``FLOATER_RELATIVE_GRADIENT`` times their depth.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from stereo4d.geometry import focal_length_px

__all__ = [
    "BASELINE_M",
    "FLOATER_RELATIVE_GRADIENT",
    "MAX_DEPTH_M",
    "MAX_VERTICAL_FLOW_PX",
    "OCCLUSION_TOLERANCE_PX",
    "depth_from_disparity",
    "depth_map_from_flow_pair",
    "depth_maps_from_flows",
    "disparity_from_depth",
    "disparity_from_flow",
    "floater_mask",
    "occlusion_mask",
    "stereo_valid_mask",
    "warp_by_flow",
]

BASELINE_M = 0.063
"""Stereo baseline of the VR180 rigs in metres (distance between the two eyes)."""
MAX_DEPTH_M = 20.0
"""Depths beyond this (disparity below ~1.4 px at 512 px, 60 deg) are too noisy to keep."""
OCCLUSION_TOLERANCE_PX = 1.0
"""Left-right check: |fwd + bwd warped by fwd| above this marks an occluded pixel."""
MAX_VERTICAL_FLOW_PX = 1.0
"""Rectified views have no vertical disparity; |fwd_y| above this marks a bad match."""
FLOATER_RELATIVE_GRADIENT = 0.03
"""Floater removal: |depth difference across a pixel| > this x its depth drops it."""


def disparity_from_flow(fwd: np.ndarray) -> np.ndarray:
    """Left-view disparity ``clip(-fwd_x, 0)`` in pixels. fwd [..., H, W, 2] -> [..., H, W]."""
    return np.clip(-np.asarray(fwd)[..., 0], 0.0, None)


def depth_from_disparity(
    disparity_px: np.ndarray, hfov_deg: float, baseline_m: float = BASELINE_M
) -> np.ndarray:
    """Depth ``fx * baseline / disparity`` in metres; ``inf`` where disparity is 0.

    Args:
      disparity_px: [..., H, W] non-negative disparity; W sets the focal length.
      hfov_deg: horizontal FoV of the view.
    Returns:
      float64 [..., H, W] depth in metres.
    """
    disparity_px = np.asarray(disparity_px, dtype=np.float64)
    fx_baseline = focal_length_px(hfov_deg, disparity_px.shape[-1]) * baseline_m
    depth_m = np.full(disparity_px.shape, np.inf)
    np.divide(fx_baseline, disparity_px, out=depth_m, where=disparity_px > 0)
    return depth_m


def disparity_from_depth(
    depth_m: np.ndarray, hfov_deg: float, baseline_m: float = BASELINE_M
) -> np.ndarray:
    """Inverse of ``depth_from_disparity``: [..., H, W] metres -> pixels (0 where depth <= 0)."""
    depth_m = np.asarray(depth_m, dtype=np.float64)
    fx_baseline = focal_length_px(hfov_deg, depth_m.shape[-1]) * baseline_m
    disparity_px = np.zeros(depth_m.shape)
    np.divide(fx_baseline, depth_m, out=disparity_px, where=depth_m > 0)
    return disparity_px


def warp_by_flow(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Samples ``image`` at ``pixel + flow`` (bicubic, zero outside): the reference's inverse_warp.

    Args:
      image: [H, W] or [H, W, C] float32, e.g. the backward flow (right view).
      flow: [H, W, 2] (x, y) in pixels, e.g. the forward flow (left view).
    Returns:
      [H, W(, C)] float32: image values seen from the left view's pixel grid.
    """
    height, width = flow.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32),
                                 np.arange(height, dtype=np.float32))
    map_xy = np.stack([grid_x + flow[..., 0], grid_y + flow[..., 1]], axis=-1).astype(np.float32)
    return cv2.remap(np.ascontiguousarray(image, dtype=np.float32), map_xy, None,
                     cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def occlusion_mask(fwd: np.ndarray, bwd: np.ndarray,
                   tolerance_px: float = OCCLUSION_TOLERANCE_PX) -> np.ndarray:
    """Left pixels failing the left-right check. fwd, bwd [H, W, 2] -> bool [H, W] (True = drop)."""
    fwd = np.asarray(fwd, dtype=np.float32)
    round_trip = warp_by_flow(np.asarray(bwd, dtype=np.float32), fwd) + fwd
    return np.linalg.norm(round_trip, axis=-1) > tolerance_px


def floater_mask(depth_m: np.ndarray,
                 relative_gradient: float = FLOATER_RELATIVE_GRADIENT) -> np.ndarray:
    """Valid pixels at depth edges (flying points between surfaces).

    The central difference along x and y (edge-replicated at the border) is
    compared with ``relative_gradient * depth``; as in the reference, a pixel
    next to an invalid (0) one is dropped too.

    Args:
      depth_m: [..., H, W] metres, 0 = invalid.
    Returns:
      bool [..., H, W], True where a valid pixel should be dropped.
    """
    depth_m = np.asarray(depth_m)
    pad = [(0, 0)] * (depth_m.ndim - 2) + [(1, 1), (1, 1)]
    padded = np.pad(depth_m, pad, mode="edge")
    grad_x = np.abs(padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2])
    grad_y = np.abs(padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1])
    limit = relative_gradient * depth_m
    return ((grad_x > limit) | (grad_y > limit)) & (depth_m != 0)


def stereo_valid_mask(fwd: np.ndarray, bwd: np.ndarray) -> np.ndarray:
    """Pixels whose match passes the per-frame checks (left-right and vertical flow).

    Args:
      fwd, bwd: [H, W, 2] float flows (left->right, right->left), pixels.
    Returns:
      bool [H, W], True = keep. The compact stereo file stores this mask.
    """
    fwd = np.asarray(fwd, dtype=np.float32)
    return ~(occlusion_mask(fwd, bwd) | (np.abs(fwd[..., 1]) > MAX_VERTICAL_FLOW_PX))


def _depth_map_from_valid_flow(fwd: np.ndarray, valid: np.ndarray, hfov_deg: float,
                               baseline_m: float, max_depth_m: float) -> np.ndarray:
    depth_m = depth_from_disparity(disparity_from_flow(fwd), hfov_deg, baseline_m)
    invalid = ~np.asarray(valid, dtype=bool)
    invalid |= ~((depth_m > 0) & (depth_m <= max_depth_m))
    return np.where(invalid, 0.0, depth_m).astype(np.float32)


def depth_map_from_flow_pair(fwd: np.ndarray, bwd: np.ndarray, hfov_deg: float,
                             baseline_m: float = BASELINE_M,
                             max_depth_m: float = MAX_DEPTH_M) -> np.ndarray:
    """Depth of the left view from one frame's flows, with all per-frame checks.

    Args:
      fwd, bwd: [H, W, 2] float flows (left->right, right->left), pixels.
      hfov_deg: horizontal FoV of the rectified views.
    Returns:
      float32 [H, W] metres in (0, max_depth_m], 0 where invalid.
    """
    fwd = np.asarray(fwd, dtype=np.float32)
    return _depth_map_from_valid_flow(fwd, stereo_valid_mask(fwd, bwd), hfov_deg, baseline_m,
                                      max_depth_m)


def depth_maps_from_flows(flows: Sequence[Mapping[str, np.ndarray]], hfov_deg: float,
                          remove_floaters: bool, baseline_m: float = BASELINE_M,
                          max_depth_m: float = MAX_DEPTH_M) -> np.ndarray:
    """Depth maps of a clip from the stereo stage's output (``io.load_stereo_flows``).

    Args:
      flows: one dict per frame: ``'fwd'`` [H, W, 2] and either ``'bwd'`` [H, W, 2] (the
        checks are computed here) or ``'valid'`` [H, W] bool (the compact file: the checks'
        result as stored).
      hfov_deg: horizontal FoV of the rectified views (60 in the pipeline).
      remove_floaters: also drop depth-edge pixels (``floater_mask``); track
        optimisation does, segmentation does not.
    Returns:
      float32 [T, H, W] metres, 0 where invalid.
    """
    if len(flows) == 0:
        return np.zeros((0, 0, 0), dtype=np.float32)
    depth_m = np.stack([
        _depth_map_from_valid_flow(np.asarray(f["fwd"], np.float32), f["valid"], hfov_deg,
                                   baseline_m, max_depth_m)
        if "valid" in f else
        depth_map_from_flow_pair(f["fwd"], f["bwd"], hfov_deg, baseline_m, max_depth_m)
        for f in flows
    ])
    if remove_floaters:
        depth_m[floater_mask(depth_m)] = 0.0
    return depth_m
