"""Building blocks of SEA-RAFT: ResNet encoders, correlation pyramid, ConvNeXt update block.

Every module here mirrors the parameter names of the SEA-RAFT reference
(princeton-vl/SEA-RAFT ``core/``) so that its checkpoints load strictly, but the
code is written for this package. Tensors are ``[batch, channels, height, width]``
(NCHW) float32 unless stated; ``8x`` marks maps at 1/8 of the padded image size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# --- constants of the architecture (fixed in SEA-RAFT, not configurable there) --------------

STEM_KERNEL = 7
"""Kernel of the encoders' first (stride-2) convolution."""
STEM_STRIDE = 2
"""Stride of the first convolution: together with two stride-2 stages the encoders reach 1/8."""
CONVNEXT_KERNEL = 7
"""Kernel of the depthwise convolution in a ConvNeXt block."""
CONVNEXT_EXPANSION = 4
"""Hidden width of a ConvNeXt block's MLP, as a multiple of its output channels."""
LAYER_NORM_EPS = 1e-6
"""Epsilon of the ConvNeXt block's LayerNorm."""
FLOW_CHANNELS = 2
"""Flow channels (x, y) in pixels."""
FLOW_KERNEL = 7
"""Kernel of the motion encoder's first convolution on the flow."""


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with bias, padding 1."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution with bias, no padding."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, padding=0)


class ResidualBlock(nn.Module):
    """Two 3x3 conv + BatchNorm + ReLU layers with a skip connection (ResNet BasicBlock).

    When the block changes resolution or width, the skip goes through a 1x1 conv and
    a BatchNorm. That BatchNorm is registered twice, as ``bn3`` and as
    ``downsample.1`` (one module, two state_dict names), as in the reference.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        # Registration order fixes the state_dict order: conv1, conv2, bn1, bn2, bn3, downsample.
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or in_channels != out_channels:
            self.bn3 = nn.BatchNorm2d(out_channels)
            self.downsample = nn.Sequential(conv1x1(in_channels, out_channels, stride), self.bn3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        skip = x if self.downsample is None else self.downsample(x)
        return F.relu(skip + y)


class ResNetEncoder(nn.Module):
    """ResNet feature encoder to 1/8 resolution ("ResNetFPN" in the reference).

    Input ``[B, input_dim, H, W]`` (images scaled to [-1, 1]), output
    ``[B, output_dim, ceil(H/8), ceil(W/8)]``. Stage ``k`` has ``blocks_per_stage[k]``
    residual blocks of width ``block_dims[k]``; stages 2 and 3 halve the resolution.
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        initial_dim: int,
        block_dims: tuple[int, int, int],
        blocks_per_stage: tuple[int, int, int],
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(
            input_dim,
            initial_dim,
            kernel_size=STEM_KERNEL,
            stride=STEM_STRIDE,
            padding=STEM_KERNEL // 2,
        )
        self.bn1 = nn.BatchNorm2d(initial_dim)
        stage_strides = (1, 2, 2)
        in_channels = initial_dim
        stages = []
        for width, num_blocks, stride in zip(block_dims, blocks_per_stage, stage_strides):
            blocks = [ResidualBlock(in_channels, width, stride)]
            blocks += [ResidualBlock(width, width) for _ in range(num_blocks - 1)]
            stages.append(nn.Sequential(*blocks))
            in_channels = width
        self.layer1, self.layer2, self.layer3 = stages
        self.final_conv = conv1x1(block_dims[-1], output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.final_conv(x)


class LayerScaledConvNextBlock(nn.Module):
    """ConvNeXt block with a 1x1 output projection: ``[B, dim, h, w] -> [B, output_dim, h, w]``.

    depthwise 7x7 conv -> LayerNorm over channels -> Linear(4 * output_dim) -> GELU ->
    Linear(dim) -> per-channel scale ``gamma`` -> add the input -> 1x1 conv to output_dim.
    """

    def __init__(self, dim: int, output_dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))
        self.dwconv = nn.Conv2d(
            dim, dim, kernel_size=CONVNEXT_KERNEL, padding=CONVNEXT_KERNEL // 2, groups=dim
        )
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.pwconv1 = nn.Linear(dim, CONVNEXT_EXPANSION * output_dim)
        self.pwconv2 = nn.Linear(CONVNEXT_EXPANSION * output_dim, dim)
        self.final = conv1x1(dim, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)  # [B, h, w, dim]
        y = self.pwconv2(F.gelu(self.pwconv1(self.norm(y))))
        y = (self.gamma * y).permute(0, 3, 1, 2)
        return self.final(x + y)


class MotionEncoder(nn.Module):
    """Encodes correlation features and the current flow into ``dim`` channels.

    ``corr`` [B, corr_channels, h, w] and ``flow_8x`` [B, 2, h, w] (pixels at 1/8) ->
    [B, dim, h, w]; the last two output channels are the flow itself.
    """

    def __init__(self, corr_channels: int, dim: int) -> None:
        super().__init__()
        self.convc1 = conv1x1(corr_channels, 2 * dim)
        self.convc2 = conv3x3(2 * dim, dim + dim // 2)
        self.convf1 = nn.Conv2d(FLOW_CHANNELS, dim, FLOW_KERNEL, padding=FLOW_KERNEL // 2)
        self.convf2 = conv3x3(dim, dim // 2)
        self.conv = conv3x3(2 * dim, dim - FLOW_CHANNELS)

    def forward(self, flow_8x: torch.Tensor, corr: torch.Tensor) -> torch.Tensor:
        corr_features = F.relu(self.convc2(F.relu(self.convc1(corr))))
        flow_features = F.relu(self.convf2(F.relu(self.convf1(flow_8x))))
        motion = F.relu(self.conv(torch.cat([corr_features, flow_features], dim=1)))
        return torch.cat([motion, flow_8x], dim=1)


class UpdateBlock(nn.Module):
    """One recurrent refinement of the hidden state ``net`` [B, dim, h, w].

    Inputs: ``context`` [B, dim, h, w], ``corr`` [B, corr_channels, h, w] and
    ``flow_8x`` [B, 2, h, w]; returns the new hidden state [B, dim, h, w].
    """

    def __init__(self, corr_channels: int, dim: int, num_blocks: int) -> None:
        super().__init__()
        self.encoder = MotionEncoder(corr_channels, dim)
        self.refine = nn.ModuleList(
            [LayerScaledConvNextBlock(3 * dim, dim) for _ in range(num_blocks)]
        )

    def forward(
        self, net: torch.Tensor, context: torch.Tensor, corr: torch.Tensor, flow_8x: torch.Tensor
    ) -> torch.Tensor:
        inputs = torch.cat([context, self.encoder(flow_8x, corr)], dim=1)
        for block in self.refine:
            net = block(torch.cat([net, inputs], dim=1))
        return net


def pixel_grid_xy(batch: int, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """Pixel coordinates ``[batch, 2, height, width]``: channel 0 is x (column), 1 is y (row)."""
    ys = torch.arange(height, device=like.device, dtype=like.dtype)
    xs = torch.arange(width, device=like.device, dtype=like.dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y])[None].expand(batch, -1, -1, -1)


class CorrelationPyramid:
    """All-pairs correlation volume of two feature maps, pooled into ``num_levels`` levels.

    Level ``l`` correlates every 1/8 pixel of ``fmap1`` with ``fmap2`` bilinearly halved
    ``l`` times (scale factor 0.5, no align_corners, as the reference). ``lookup``
    samples a ``(2r+1) x (2r+1)`` window around given positions on every level.
    """

    def __init__(self, fmap1: torch.Tensor, fmap2: torch.Tensor, num_levels: int, radius: int):
        batch, channels, height, width = fmap1.shape
        self.radius = radius
        self.levels: list[torch.Tensor] = []  # each [B * h * w, 1, h_l, w_l]
        queries = fmap1.reshape(batch, channels, height * width).transpose(1, 2)
        for level in range(num_levels):
            if level > 0:
                fmap2 = F.interpolate(fmap2, scale_factor=0.5, mode="bilinear", align_corners=False)
            h2, w2 = fmap2.shape[-2:]
            corr = queries @ fmap2.reshape(batch, channels, h2 * w2)
            corr = corr / torch.sqrt(torch.tensor(float(channels), dtype=corr.dtype))
            self.levels.append(corr.reshape(batch * height * width, 1, h2, w2))

    def lookup(self, coords_xy_8x: torch.Tensor) -> torch.Tensor:
        """Correlation windows around ``coords_xy_8x`` [B, 2, h, w] (x, y in 1/8 pixels).

        Returns ``[B, num_levels * (2r+1)^2, h, w]``. Channel ``level * (2r+1)^2 + i * (2r+1) + j``
        is sampled at x offset ``i - r`` and y offset ``j - r`` (the reference's order, x-major),
        at positions ``coords / 2**level``; outside the map reads zero.
        """
        batch, _, height, width = coords_xy_8x.shape
        r = self.radius
        offsets = torch.arange(-r, r + 1, device=coords_xy_8x.device, dtype=coords_xy_8x.dtype)
        off_a, off_b = torch.meshgrid(offsets, offsets, indexing="ij")
        window_xy = torch.stack([off_a, off_b], dim=-1)[None]  # [1, 2r+1, 2r+1, 2], x = row index
        centers_xy = coords_xy_8x.permute(0, 2, 3, 1).reshape(batch * height * width, 1, 1, 2)
        samples = []
        for level, corr in enumerate(self.levels):
            h2, w2 = corr.shape[-2:]
            points_xy = centers_xy / 2**level + window_xy
            # Normalise as the reference does (align_corners=True convention).
            grid = torch.cat(
                [2 * points_xy[..., :1] / (w2 - 1) - 1, 2 * points_xy[..., 1:] / (h2 - 1) - 1],
                dim=-1,
            )
            sampled = F.grid_sample(corr, grid, mode="bilinear", align_corners=True)
            samples.append(sampled.reshape(batch, height, width, -1))
        return torch.cat(samples, dim=-1).permute(0, 3, 1, 2).contiguous()
