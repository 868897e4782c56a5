"""Building blocks of TAPIR: ResNet encoder, extra convolutions and the PIPs mixer.

Module and attribute names follow the official PyTorch TAPIR ``state_dict``
(``tests/parity/tapir_bootstap_state_dict_spec.json``) so that the official
checkpoint loads with ``strict=True``. Convolutions emulate TensorFlow/JAX
``SAME`` padding (extra padding goes after, bottom/right), computed per axis so
that non-square and odd-sized inputs behave as in the JAX model.

Tensor layouts: images ``[B, C, H, W]`` (NCHW) inside the ResNet, feature maps
``[B, H, W, C]`` (NHWC) for ``ExtraConvs``, mixer sequences ``[M, T, C]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Epsilon of every normalisation layer (Haiku and PyTorch default).
NORM_EPS = 1e-5
# Channel multiplier of the depthwise temporal convolution and the MLPs in a mixer block.
MIXER_EXPANSION = 4


def same_padding_1d(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of a TF/JAX ``SAME`` convolution along one axis of ``size`` px."""
    out_size = -(-size // stride)  # ceil(size / stride)
    total = max((out_size - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def conv2d_same(conv: nn.Conv2d, x_bchw: torch.Tensor) -> torch.Tensor:
    """Applies ``conv`` (built with ``padding=0``) to ``x_bchw`` with ``SAME`` zero padding."""
    kernel_h, kernel_w = conv.kernel_size
    stride_h, stride_w = conv.stride
    pad_top, pad_bottom = same_padding_1d(x_bchw.shape[-2], kernel_h, stride_h)
    pad_left, pad_right = same_padding_1d(x_bchw.shape[-1], kernel_w, stride_w)
    return conv(F.pad(x_bchw, (pad_left, pad_right, pad_top, pad_bottom)))


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GELU with the tanh approximation (``jax.nn.gelu``'s default)."""
    return F.gelu(x, approximate="tanh")


def depthwise_conv1d_same(conv: nn.Conv1d, x_mtc: torch.Tensor) -> torch.Tensor:
    """Applies a per-channel temporal ``conv`` (odd kernel, ``SAME``) to channels-last ``[M, T, C]``.

    ``x_mtc`` must already hold one channel per output channel of ``conv`` (input
    channel ``c`` of a multiplier-m depthwise conv repeated m times, as consecutive
    channels). Equivalent to ``conv`` on ``[M, C, T]``, written as a weighted sum of
    shifted copies: oneDNN is very slow for these small grouped convolutions on CPU.
    """
    kernel = conv.weight.shape[-1]
    num_frames = x_mtc.shape[1]
    padded = F.pad(x_mtc, (0, 0, kernel // 2, kernel // 2))
    taps = conv.weight[:, 0, :]  # [C, K]
    out = conv.bias + padded[:, 0:num_frames] * taps[:, 0]
    for k in range(1, kernel):
        out = out + padded[:, k : k + num_frames] * taps[:, k]
    return out


class ResNetBlockV2(nn.Module):
    """Pre-activation residual block with instance norm.

    ``x -> IN -> relu -> conv3x3(stride) -> IN -> relu -> conv3x3 -> + shortcut``;
    the shortcut is a 1x1 projection of the pre-activated input when
    ``use_projection``, else the raw input.
    """

    def __init__(self, channels_in: int, channels_out: int, stride: int, use_projection: bool):
        super().__init__()
        self.use_projection = use_projection
        if use_projection:
            self.proj_conv = nn.Conv2d(channels_in, channels_out, 1, stride=stride, bias=False)
        self.bn_0 = nn.InstanceNorm2d(channels_in, eps=NORM_EPS, affine=True)
        self.conv_0 = nn.Conv2d(channels_in, channels_out, 3, stride=stride, bias=False)
        self.conv_1 = nn.Conv2d(channels_out, channels_out, 3, stride=1, bias=False)
        self.bn_1 = nn.InstanceNorm2d(channels_out, eps=NORM_EPS, affine=True)

    def forward(self, x_bchw: torch.Tensor) -> torch.Tensor:
        pre = torch.relu(self.bn_0(x_bchw))
        shortcut = conv2d_same(self.proj_conv, pre) if self.use_projection else x_bchw
        out = conv2d_same(self.conv_0, pre)
        out = conv2d_same(self.conv_1, torch.relu(self.bn_1(out)))
        return out + shortcut


class ResNetBlockGroup(nn.Module):
    """``num_blocks`` V2 blocks; only the first strides and (optionally) projects."""

    def __init__(
        self,
        channels_in: int,
        channels_out: int,
        num_blocks: int,
        stride: int,
        use_projection: bool,
    ):
        super().__init__()
        self.blocks = nn.ModuleList(
            ResNetBlockV2(
                channels_in if i == 0 else channels_out,
                channels_out,
                stride if i == 0 else 1,
                use_projection and i == 0,
            )
            for i in range(num_blocks)
        )

    def forward(self, x_bchw: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x_bchw = block(x_bchw)
        return x_bchw


class TapirResNet(nn.Module):
    """The TAPIR frame encoder (ResNet-18-like V2, instance norm, no max pool).

    A 7x7 stride-2 stem then four block groups with strides ``group_strides``
    (total strides 2, 4, 8, 8). Returns the outputs of groups 1 (stride 4) and 3
    (stride 8): the high- and low-resolution features.
    """

    def __init__(
        self,
        group_channels: tuple[int, ...] = (64, 128, 256, 256),
        group_strides: tuple[int, ...] = (1, 2, 2, 1),
        blocks_per_group: tuple[int, ...] = (2, 2, 2, 2),
        stem_channels: int = 64,
        stem_kernel: int = 7,
        stem_stride: int = 2,
    ):
        super().__init__()
        self.initial_conv = nn.Conv2d(3, stem_channels, stem_kernel, stride=stem_stride, bias=False)
        channels_in = (stem_channels,) + tuple(group_channels[:-1])
        self.block_groups = nn.ModuleList(
            ResNetBlockGroup(c_in, c_out, n, s, use_projection=True)
            for c_in, c_out, n, s in zip(
                channels_in, group_channels, blocks_per_group, group_strides
            )
        )

    def forward(self, images_bchw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images ``[B, 3, H, W]`` in [-1, 1] -> (hires ``[B, 128, H/4, W/4]``, lowres ``[B, 256, H/8, W/8]``)."""
        x = conv2d_same(self.initial_conv, images_bchw)
        outputs = []
        for group in self.block_groups:
            x = group(x)
            outputs.append(x)
        return outputs[1], outputs[3]


class ExtraConvBlock(nn.Module):
    """``x = LN(x); x = x + conv(gelu(conv(x)))`` on NHWC maps (the residual joins the normalised x)."""

    def __init__(self, channels: int, multiplier: int):
        super().__init__()
        self.layer_norm = nn.LayerNorm(channels, eps=NORM_EPS)
        self.conv = nn.Conv2d(channels, channels * multiplier, 3)
        self.conv_1 = nn.Conv2d(channels * multiplier, channels, 3)

    def forward(self, x_bhwc: torch.Tensor) -> torch.Tensor:
        x_bchw = self.layer_norm(x_bhwc).permute(0, 3, 1, 2)
        resid = conv2d_same(self.conv_1, gelu_tanh(conv2d_same(self.conv, x_bchw)))
        return (x_bchw + resid).permute(0, 2, 3, 1)


class ExtraConvs(nn.Module):
    """Stack of ``num_layers`` ``ExtraConvBlock`` applied to the low-resolution features."""

    def __init__(self, num_layers: int = 5, channels: int = 256, multiplier: int = 4):
        super().__init__()
        self.blocks = nn.ModuleList(ExtraConvBlock(channels, multiplier) for _ in range(num_layers))

    def forward(self, x_bhwc: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x_bhwc = block(x_bhwc)
        return x_bhwc


class ChannelMixer(nn.Module):
    """Per-frame MLP ``C -> 4C -> C`` with tanh-GELU."""

    def __init__(self, channels: int):
        super().__init__()
        self.mlp2_up = nn.Linear(channels, channels * MIXER_EXPANSION)
        self.mlp2_down = nn.Linear(channels * MIXER_EXPANSION, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp2_down(gelu_tanh(self.mlp2_up(x)))


class MixerBlock(nn.Module):
    """One PIPs mixer block on ``[M, T, C]``: a temporal depthwise-conv MLP then a channel MLP.

    The temporal part expands each channel ``c`` into channels ``4c .. 4c+3``
    (depthwise conv, kernel ``kernel_size`` over time, ``SAME``), applies GELU and a
    second depthwise conv, and sums the four back into channel ``c``.
    """

    def __init__(self, channels: int, kernel_size: int = 3):
        super().__init__()
        wide = channels * MIXER_EXPANSION
        pad = kernel_size // 2
        self.layer_norm = nn.LayerNorm(channels, eps=NORM_EPS, bias=False)
        self.mlp1_up = nn.Conv1d(channels, wide, kernel_size, padding=pad, groups=channels)
        self.mlp1_up_1 = nn.Conv1d(wide, wide, kernel_size, padding=pad, groups=wide)
        self.layer_norm_1 = nn.LayerNorm(channels, eps=NORM_EPS, bias=False)
        self.conv_channels_mixer = ChannelMixer(channels)

    def forward(self, x_mtc: torch.Tensor) -> torch.Tensor:
        y = self.layer_norm(x_mtc).repeat_interleave(MIXER_EXPANSION, dim=-1)  # [M, T, 4C]
        y = depthwise_conv1d_same(self.mlp1_up_1, gelu_tanh(depthwise_conv1d_same(self.mlp1_up, y)))
        y = y.unflatten(-1, (-1, MIXER_EXPANSION)).sum(dim=-1)  # [M, T, C]
        x_mtc = x_mtc + y
        return x_mtc + self.conv_channels_mixer(self.layer_norm_1(x_mtc))


class PipsMixer(nn.Module):
    """The PIPs refinement network: ``Linear -> blocks -> LN -> Linear`` on ``[M, T, C_in]``."""

    def __init__(
        self,
        input_channels: int,
        output_channels: int,
        hidden_dim: int = 512,
        num_blocks: int = 12,
        kernel_size: int = 3,
    ):
        super().__init__()
        self.linear = nn.Linear(input_channels, hidden_dim)
        self.layer_norm = nn.LayerNorm(hidden_dim, eps=NORM_EPS, bias=False)
        self.linear_1 = nn.Linear(hidden_dim, output_channels)
        self.blocks = nn.ModuleList(MixerBlock(hidden_dim, kernel_size) for _ in range(num_blocks))

    def forward(self, x_mtc: torch.Tensor) -> torch.Tensor:
        x_mtc = self.linear(x_mtc)
        for block in self.blocks:
            x_mtc = block(x_mtc)
        return self.linear_1(self.layer_norm(x_mtc))
