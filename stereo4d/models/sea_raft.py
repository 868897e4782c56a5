"""SEA-RAFT optical flow network (Wang, Lipson and Deng, ECCV 2024), spring-M configuration.

A native re-implementation of the network of princeton-vl/SEA-RAFT with the same
``state_dict`` names and shapes, so the official checkpoints
(``MemorySlices/Tartan-C-T-TSKH-spring540x960-M`` on the Hugging Face Hub) load
strictly. Only inference ("test mode") is implemented: no training loss.

The network never touches files (``stereo4d.weights.sea_raft`` loads weights) and
does no resizing of its inputs (``stereo4d.backends.sea_raft_flow`` does the
pipeline's pre/post-processing).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from stereo4d.models.sea_raft_layers import (
    FLOW_CHANNELS,
    CorrelationPyramid,
    ResNetEncoder,
    UpdateBlock,
    conv3x3,
    pixel_grid_xy,
)

__all__ = ["MIN_PADDED_SIZE_PX", "SeaRaft", "SeaRaftConfig", "SeaRaftPrediction"]

FEATURE_STRIDE = 8
"""The encoders work at 1/8 of the (padded) input resolution."""
MIN_PADDED_SIZE_PX = 128
"""Smallest padded input side: the coarsest correlation level must keep >= 2 pixels
(128 / 8 / 2**3 = 2) for its align_corners normalisation; the reference has the same limit."""
UPSAMPLE_WEIGHT_SCALE = 0.25
"""The convex-upsampling logits are scaled by this factor before the softmax."""
UPSAMPLE_NEIGHBOURS = 9
"""Convex upsampling combines the 3x3 coarse neighbours of each fine pixel."""
INFO_CHANNELS = 4
"""Uncertainty channels: 2 mixture logits, then 2 log-scales (Laplace mixture), raw values."""
PIXEL_MAX = 255.0
"""Inputs are images in [0, PIXEL_MAX]; the network maps them to [-1, 1]."""

RESNET_BLOCKS_PER_STAGE = {"resnet18": (2, 2, 2), "resnet34": (3, 4, 6)}
"""Residual blocks per encoder stage for each ``pretrain`` layout of the reference."""


@dataclass(frozen=True)
class SeaRaftConfig:
    """Hyperparameters of SEA-RAFT; the defaults are ``config/eval/spring-M.json``."""

    iters: int = 4
    """Recurrent refinement iterations at inference."""
    radius: int = 4
    """Correlation window radius r: a (2r+1) x (2r+1) window per pyramid level."""
    dim: int = 128
    """Width of the hidden state and of the context features."""
    block_dims: tuple[int, int, int] = (64, 128, 256)
    """Widths of the three ResNet encoder stages."""
    initial_dim: int = 64
    """Width of the encoders' first convolution."""
    num_blocks: int = 2
    """ConvNeXt blocks in the update block."""
    pretrain: str = "resnet34"
    """Encoder layout ('resnet34': 3/4/6 blocks per stage, 'resnet18': 2/2/2)."""
    corr_levels: int = 4
    """Levels of the correlation pyramid (fixed to 4 by the reference)."""
    use_var: bool = True
    """Training only: whether the loss uses the predicted uncertainty. Unused at inference."""
    var_min: float = 0.0
    """Training only: lower clamp of the small log-scale. Unused at inference."""
    var_max: float = 10.0
    """Training only: upper clamp of the large log-scale. Unused at inference."""
    scale: int = -1
    """Pipeline: images are resized by 2**scale before the network (-1: half size)."""

    @property
    def corr_channels(self) -> int:
        """Correlation features per pixel: levels x (2r+1)^2 (324 for spring-M)."""
        return self.corr_levels * (2 * self.radius + 1) ** 2

    @property
    def blocks_per_stage(self) -> tuple[int, int, int]:
        """Residual blocks in each encoder stage."""
        return RESNET_BLOCKS_PER_STAGE[self.pretrain]


@dataclass(frozen=True)
class SeaRaftPrediction:
    """Outputs of one forward pass, at the input resolution.

    ``flow_px``: [B, 2, H, W] float, (x, y) displacement in pixels from image1 to image2.
    ``info``: [B, 4, H, W] float, raw uncertainty (2 mixture logits, 2 log-scales).
    ``flow_px_per_iter`` / ``info_per_iter``: iters + 1 entries, the first before any
    refinement, the last equal to ``flow_px`` / ``info``.
    """

    flow_px: torch.Tensor
    info: torch.Tensor
    flow_px_per_iter: tuple[torch.Tensor, ...]
    info_per_iter: tuple[torch.Tensor, ...]


def replicate_pad_to_multiple(
    images: torch.Tensor, multiple: int = FEATURE_STRIDE
) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Pads [B, C, H, W] by edge replication to a multiple of ``multiple`` per side.

    The padding is split evenly with the extra pixel after (bottom/right). Returns the
    padded tensor and ``(left, right, top, bottom)`` in pixels.
    """
    height, width = images.shape[-2:]
    pad_h = -height % multiple
    pad_w = -width % multiple
    pads = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)
    if pad_h == 0 and pad_w == 0:
        return images, pads
    return F.pad(images, pads, mode="replicate"), pads


def crop_padding(x: torch.Tensor, pads: tuple[int, int, int, int]) -> torch.Tensor:
    """Undoes ``replicate_pad_to_multiple`` on [..., H_padded, W_padded]."""
    left, right, top, bottom = pads
    height, width = x.shape[-2:]
    return x[..., top : height - bottom, left : width - right]


def convex_upsample(values_8x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Upsamples [B, C, h, w] by 8 as a learned convex combination of 3x3 neighbours.

    ``logits`` [B, 9 * 8 * 8, h, w] hold, for each of the 8x8 sub-pixels (row, column) of
    a coarse pixel, the weights of its 9 neighbours (softmax over the 9). Neighbours
    outside the map count as zero. Returns [B, C, 8h, 8w].
    """
    batch, channels, height, width = values_8x.shape
    s = FEATURE_STRIDE
    weights = torch.softmax(logits.view(batch, 1, UPSAMPLE_NEIGHBOURS, s, s, height, width), dim=2)
    patches = F.unfold(values_8x, kernel_size=3, padding=1)
    patches = patches.view(batch, channels, UPSAMPLE_NEIGHBOURS, 1, 1, height, width)
    fine = torch.sum(weights * patches, dim=2)  # [B, C, s_row, s_col, h, w]
    return fine.permute(0, 1, 4, 2, 5, 3).reshape(batch, channels, s * height, s * width)


class SeaRaft(nn.Module):
    """SEA-RAFT: ``forward(image1, image2)`` -> flow from image1 to image2.

    Submodule names match the reference (``cnet``, ``init_conv``, ``upsample_weight``,
    ``flow_head``, ``fnet``, ``update_block``); the state_dict has 472 entries, of which
    20 are the downsampling BatchNorms listed twice (``bn3`` and ``downsample.1``).
    """

    def __init__(self, config: SeaRaftConfig | None = None) -> None:
        super().__init__()
        config = SeaRaftConfig() if config is None else config
        self.config = config
        dim = config.dim
        encoder_kwargs = {
            "initial_dim": config.initial_dim,
            "block_dims": tuple(config.block_dims),
            "blocks_per_stage": config.blocks_per_stage,
        }
        # Context encoder sees both images stacked along channels.
        self.cnet = ResNetEncoder(input_dim=6, output_dim=2 * dim, **encoder_kwargs)
        self.init_conv = conv3x3(2 * dim, 2 * dim)
        self.upsample_weight = nn.Sequential(
            nn.Conv2d(dim, 2 * dim, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(2 * dim, UPSAMPLE_NEIGHBOURS * FEATURE_STRIDE**2, 1, padding=0),
        )
        self.flow_head = nn.Sequential(
            nn.Conv2d(dim, 2 * dim, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(2 * dim, FLOW_CHANNELS + INFO_CHANNELS, 3, padding=1),
        )
        self.fnet = ResNetEncoder(input_dim=3, output_dim=2 * dim, **encoder_kwargs)
        self.update_block = UpdateBlock(config.corr_channels, dim, config.num_blocks)

    def _heads(self, net: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Hidden state -> (flow update [B,2,h,w], info [B,4,h,w], upsampling logits)."""
        out = self.flow_head(net)
        logits = UPSAMPLE_WEIGHT_SCALE * self.upsample_weight(net)
        return out[:, :FLOW_CHANNELS], out[:, FLOW_CHANNELS:], logits

    def forward(
        self, image1: torch.Tensor, image2: torch.Tensor, iters: int | None = None
    ) -> SeaRaftPrediction:
        """Flow from ``image1`` to ``image2``.

        Args:
          image1, image2: [B, 3, H, W] float RGB in [0, 255] (not normalised), same
            device and dtype as the model. Padded internally (edge replication) to a
            multiple of 8; the padded size must be >= ``MIN_PADDED_SIZE_PX`` per side.
          iters: refinement iterations (default ``config.iters``).
        Returns:
          ``SeaRaftPrediction`` at [H, W] (padding removed).
        """
        if iters is None:
            iters = self.config.iters
        if image1.shape != image2.shape or image1.ndim != 4 or image1.shape[1] != 3:
            raise ValueError(
                f"expected two [B, 3, H, W] images of one shape, got {tuple(image1.shape)} "
                f"and {tuple(image2.shape)}"
            )
        image1 = 2 * (image1 / PIXEL_MAX) - 1
        image2 = 2 * (image2 / PIXEL_MAX) - 1
        image1, pads = replicate_pad_to_multiple(image1.contiguous())
        image2, _ = replicate_pad_to_multiple(image2.contiguous())
        padded_h, padded_w = image1.shape[-2:]
        if min(padded_h, padded_w) < MIN_PADDED_SIZE_PX:
            raise ValueError(
                f"SEA-RAFT needs inputs of at least {MIN_PADDED_SIZE_PX} px per side after "
                f"padding to a multiple of {FEATURE_STRIDE}; got {padded_h}x{padded_w}"
            )

        context_all = self.init_conv(self.cnet(torch.cat([image1, image2], dim=1)))
        net, context = torch.split(context_all, [self.config.dim, self.config.dim], dim=1)

        flow_8x, info_8x, logits = self._heads(net)
        flows = [convex_upsample(FEATURE_STRIDE * flow_8x, logits)]
        infos = [convex_upsample(info_8x, logits)]

        if iters > 0:
            corr_pyramid = CorrelationPyramid(
                self.fnet(image1), self.fnet(image2), self.config.corr_levels, self.config.radius
            )
            batch, _, height_8x, width_8x = flow_8x.shape
            grid_xy_8x = pixel_grid_xy(batch, height_8x, width_8x, like=flow_8x)
        for _ in range(iters):
            corr = corr_pyramid.lookup(grid_xy_8x + flow_8x)
            net = self.update_block(net, context, corr, flow_8x)
            delta_8x, info_8x, logits = self._heads(net)
            flow_8x = flow_8x + delta_8x
            flows.append(convex_upsample(FEATURE_STRIDE * flow_8x, logits))
            infos.append(convex_upsample(info_8x, logits))

        flows = tuple(crop_padding(f, pads) for f in flows)
        infos = tuple(crop_padding(i, pads) for i in infos)
        return SeaRaftPrediction(
            flow_px=flows[-1], info=infos[-1], flow_px_per_iter=flows, info_per_iter=infos
        )
