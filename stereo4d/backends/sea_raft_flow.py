"""Stereo flow with SEA-RAFT: the pre/post-processing of the reference ``inference_raft.py``.

For each rectified stereo frame pair the reference computes the flow left->right
(``fwd``) and right->left (``bwd``) at half resolution and brings it back to full
resolution. This module reproduces those steps around ``stereo4d.models.sea_raft``:

1. frames uint8 RGB [H, W, 3] -> float32 [1, 3, H, W] in [0, 255] (no normalisation);
2. resize by ``2**scale`` (``scale = -1``: half size) with bilinear interpolation,
   ``align_corners=False``, no antialiasing, the scale factor itself used for the
   sampling positions (as ``F.interpolate(scale_factor=...)``);
3. the network (which pads to a multiple of 8 by edge replication), ``config.iters``
   iterations, last prediction;
4. flow resized by ``2**-scale`` (bilinear, ``align_corners=False``) and multiplied
   by ``2**-scale`` (pixels of the full-size frame); the uncertainty is resized with
   area interpolation (for an integer factor: each value repeated).

Outputs are numpy float32 [H, W, 2], (x, y) displacement in pixels, exactly the
``fwd``/``bwd`` entries of the reference's ``<vid>-flows_stereo.pkl``. Frame sides
must be divisible by ``2**-scale`` (even for the default) so that the result has
the frame's size.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from stereo4d.models.sea_raft import SeaRaft

__all__ = [
    "DEFAULT_FRAMES_PER_CALL",
    "sea_raft_flow_and_info",
    "sea_raft_stereo_flows",
    "sea_raft_stereo_flows_batched",
]

DEFAULT_FRAMES_PER_CALL = 2
"""Frames per network call in ``sea_raft_stereo_flows_batched`` (each frame is two pairs,
fwd and bwd). Memory grows with the square of the frame area (all-pairs correlation)."""


def _model_device(model: SeaRaft) -> torch.device:
    return next(model.parameters()).device


def sea_raft_flow_and_info(
    model: SeaRaft,
    image1: torch.Tensor,
    image2: torch.Tensor,
    scale: int | None = None,
    iters: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flow from ``image1`` to ``image2`` at full resolution (the reference's ``calc_flow``).

    Args:
      model: SEA-RAFT in eval mode.
      image1, image2: [B, 3, H, W] float RGB in [0, 255] on the model's device and dtype.
      scale: the network runs at ``2**scale`` of the input size (default ``model.config.scale``).
      iters: refinement iterations (default ``model.config.iters``).
    Returns:
      flow [B, 2, H, W] (x, y) in pixels of the input, info [B, 4, H, W] (raw uncertainty).
    Raises:
      ValueError: model in training mode, or sides not divisible by ``2**-scale``.
    """
    if model.training:
        raise ValueError("call model.eval() first: BatchNorm must use its running statistics")
    if scale is None:
        scale = model.config.scale
    down = 2.0**scale
    up = 0.5**scale
    small1 = F.interpolate(image1, scale_factor=down, mode="bilinear", align_corners=False)
    small2 = F.interpolate(image2, scale_factor=down, mode="bilinear", align_corners=False)
    with torch.no_grad():
        prediction = model(small1, small2, iters=iters)
    flow = F.interpolate(prediction.flow_px, scale_factor=up, mode="bilinear", align_corners=False)
    flow = flow * up
    info = F.interpolate(prediction.info, scale_factor=up, mode="area")
    if flow.shape[-2:] != image1.shape[-2:]:
        raise ValueError(
            f"frame size {tuple(image1.shape[-2:])} is not divisible by {int(up)} "
            f"(scale {scale}); the flow would come back as {tuple(flow.shape[-2:])}"
        )
    return flow, info


def _frames_to_tensor(frames_uint8: np.ndarray, device: torch.device) -> torch.Tensor:
    """[..., H, W, 3] uint8 -> [N, 3, H, W] float32 in [0, 255] on ``device``."""
    frames = np.asarray(frames_uint8)
    if frames.dtype != np.uint8 or frames.shape[-1] != 3:
        raise ValueError(
            f"expected uint8 RGB frames [..., H, W, 3], got {frames.dtype} {frames.shape}"
        )
    tensor = torch.from_numpy(np.ascontiguousarray(frames)).to(device=device, dtype=torch.float32)
    return tensor.reshape(-1, *frames.shape[-3:]).permute(0, 3, 1, 2)


def sea_raft_stereo_flows(
    model: SeaRaft,
    left_uint8: np.ndarray,
    right_uint8: np.ndarray,
    device: torch.device | str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Stereo flows of one rectified frame pair (the reference's ``raft_fn``).

    Args:
      model: SEA-RAFT in eval mode, already on ``device``.
      left_uint8, right_uint8: [H, W, 3] uint8 RGB frames.
      device: where to run (default: the model's device).
    Returns:
      fwd (left -> right) and bwd (right -> left): float32 [H, W, 2], (x, y) in pixels.
    """
    device = _model_device(model) if device is None else torch.device(device)
    left = _frames_to_tensor(left_uint8, device)
    right = _frames_to_tensor(right_uint8, device)
    fwd, _ = sea_raft_flow_and_info(model, left, right)
    bwd, _ = sea_raft_flow_and_info(model, right, left)
    return _to_hwc_numpy(fwd[0]), _to_hwc_numpy(bwd[0])


def sea_raft_stereo_flows_batched(
    model: SeaRaft,
    left_frames_uint8: np.ndarray,
    right_frames_uint8: np.ndarray,
    device: torch.device | str | None = None,
    frames_per_call: int = DEFAULT_FRAMES_PER_CALL,
) -> tuple[np.ndarray, np.ndarray]:
    """Stereo flows of a rectified video, several frames per network call.

    Args:
      model: SEA-RAFT in eval mode, already on ``device``.
      left_frames_uint8, right_frames_uint8: [T, H, W, 3] uint8 RGB.
      device: where to run (default: the model's device).
      frames_per_call: frames per batch; each contributes a fwd and a bwd pair.
    Returns:
      fwd, bwd: float32 [T, H, W, 2]; frame t equals ``sea_raft_stereo_flows`` of frame t
      up to float rounding (batching may change the order of float operations).
    """
    if left_frames_uint8.shape != right_frames_uint8.shape or left_frames_uint8.ndim != 4:
        raise ValueError(
            f"expected two [T, H, W, 3] videos of one shape, got {left_frames_uint8.shape} "
            f"and {right_frames_uint8.shape}"
        )
    if frames_per_call < 1:
        raise ValueError(f"frames_per_call must be >= 1, got {frames_per_call}")
    device = _model_device(model) if device is None else torch.device(device)
    num_frames, height, width = left_frames_uint8.shape[:3]
    fwd = np.empty((num_frames, height, width, 2), dtype=np.float32)
    bwd = np.empty_like(fwd)
    for start in range(0, num_frames, frames_per_call):
        stop = min(start + frames_per_call, num_frames)
        left = _frames_to_tensor(left_frames_uint8[start:stop], device)
        right = _frames_to_tensor(right_frames_uint8[start:stop], device)
        # One call for both directions: pairs (left, right) then (right, left).
        flow, _ = sea_raft_flow_and_info(model, torch.cat([left, right]), torch.cat([right, left]))
        count = stop - start
        fwd[start:stop] = flow[:count].permute(0, 2, 3, 1).cpu().numpy()
        bwd[start:stop] = flow[count:].permute(0, 2, 3, 1).cpu().numpy()
    return fwd, bwd


def _to_hwc_numpy(flow_chw: torch.Tensor) -> np.ndarray:
    """[2, H, W] tensor -> float32 numpy [H, W, 2]."""
    return flow_chw.permute(1, 2, 0).to(torch.float32).cpu().numpy()
