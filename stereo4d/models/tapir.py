"""TAPIR point tracker (Doersch et al. 2023) with the BootsTAPIR settings, in PyTorch.

Network only: weights come from ``stereo4d.weights.tapir`` and frames/queries are
prepared by ``stereo4d.backends.tapir_tracker``. The parameter names match the
official PyTorch checkpoint ``bootstapir_checkpoint_v2.pt`` (218 entries).

Algorithm (per query, all frames at once):
1. Feature grids: a ResNet encodes each frame at the initial resolution
   (256x256) and at every refinement resolution; low-res features (stride 8,
   256 channels, plus extra convs) and high-res features (stride 4, 128
   channels), both L2-normalised per cell.
2. Query features: trilinear samples of both grids at the query (t, y, x).
3. Initialisation: cost volume query . low-res grid per frame -> small CNN ->
   heatmap (softmax with ``softmax_temperature``) -> local soft argmax, plus
   occlusion and expected-distance logits. Positions on the query frame are
   replaced by the query itself.
4. Refinement, at each refinement resolution ``num_pips_iter`` times: 7x7
   correlation patches around the current guess on the high-res grid, the
   low-res grid and its 2x average-pooled copy feed the PIPs mixer, which
   updates position, logits and a per-frame feature. Each resolution starts from
   the previous one's positions and the initial logits; the final output is the
   mean over resolutions of each one's last iteration.

Positions inside the model are raster (x, y) pixels of the initial resolution;
outputs are raster (x, y) pixels of the input video.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from stereo4d.models import tapir_ops as ops
from stereo4d.models.tapir_layers import ExtraConvs, PipsMixer, TapirResNet, conv2d_same

# Channels of the high-resolution (stride 4) and low-resolution (stride 8) features.
HIRES_DIM = 128
LOWRES_DIM = 256
# Mixer input/output channels besides features: (dx, dy, occlusion, expected_dist).
MIXER_STATE_DIM = 4


@dataclass(frozen=True)
class TapirConfig:
    """Architecture and inference settings (defaults: BootsTAPIR as the Stereo4D pipeline uses it)."""

    num_pips_iter: int = 4
    """Refinement iterations per refinement resolution."""
    pyramid_level: int = 1
    """Number of 2x average-pooled copies of the low-res grid used for correlation patches."""
    mixer_hidden_dim: int = 512
    """Width of the PIPs mixer."""
    num_mixer_blocks: int = 12
    """Depth of the PIPs mixer."""
    mixer_kernel_size: int = 3
    """Temporal kernel of the mixer's depthwise convolutions (frames)."""
    softmax_temperature: float = 10.0
    """Heatmap sharpness of the initialisation (pipeline value; tapnet's torch default is 20)."""
    initial_resolution: tuple[int, int] = (256, 256)
    """(height, width) at which the cost-volume initialisation runs (the training size)."""
    extra_convs: bool = True
    """Apply the 5 extra conv blocks to the low-res features (BootsTAPIR)."""
    patch_radius: int = 3
    """Correlation patches are (2 r + 1)^2 cells around the current guess."""
    soft_argmax_radius: float = 5.0
    """Cells within this distance of the heatmap peak enter the soft argmax."""
    antialias_resize: bool = True
    """Antialias when downsizing the video for a feature grid (JAX model, i.e. the pipeline)."""
    feature_chunk_frames: int = 10
    """Frames encoded per ResNet call (memory only; results do not depend on it)."""


class FeatureGrids(NamedTuple):
    """Per-frame features; entry 0 is the initial resolution, then one per refinement level.

    ``lowres[i]`` ``[B, T, h/8, w/8, 256]``, ``hires[i]`` ``[B, T, h/4, w/4, 128]`` and
    ``resolutions[i]`` the (h, w) of the resized video they were computed from.
    """

    lowres: tuple[torch.Tensor, ...]
    hires: tuple[torch.Tensor, ...]
    resolutions: tuple[tuple[int, int], ...]


class QueryFeatures(NamedTuple):
    """Features at the query points per entry of ``FeatureGrids``: ``[B, N, 256]`` / ``[B, N, 128]``."""

    lowres: tuple[torch.Tensor, ...]
    hires: tuple[torch.Tensor, ...]


class TAPIR(nn.Module):
    """TAPIR network. See the module docstring for the algorithm."""

    def __init__(self, config: TapirConfig = TapirConfig()):
        super().__init__()
        self.config = config
        self.resnet_torch = TapirResNet()
        self.torch_cost_volume_track_mods = nn.ModuleDict(
            {
                "hid1": nn.Conv2d(1, 16, 3),
                "hid2": nn.Conv2d(16, 1, 3),
                "hid3": nn.Conv2d(16, 32, 3, stride=2),
                "hid4": nn.Linear(32, 16),
                "occ_out": nn.Linear(16, 2),
            }
        )
        feature_dim = HIRES_DIM + LOWRES_DIM
        patch_cells = (2 * config.patch_radius + 1) ** 2
        mixer_in = MIXER_STATE_DIM + feature_dim + (config.pyramid_level + 2) * patch_cells
        self.torch_pips_mixer = PipsMixer(
            mixer_in,
            MIXER_STATE_DIM + feature_dim,
            hidden_dim=config.mixer_hidden_dim,
            num_blocks=config.num_mixer_blocks,
            kernel_size=config.mixer_kernel_size,
        )
        self.extra_convs = ExtraConvs() if config.extra_convs else None

    # ------------------------------------------------------------------ features
    def _encode(self, video_bthwc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised (lowres, hires) features of a ``[B, T, H, W, 3]`` video in [-1, 1]."""
        b, t, h, w, _ = video_bthwc.shape
        frames = video_bthwc.reshape(b * t, h, w, 3).permute(0, 3, 1, 2)
        lowres, hires = [], []
        for chunk in torch.split(frames, self.config.feature_chunk_frames):
            hi, lo = self.resnet_torch(chunk)
            hires.append(hi.permute(0, 2, 3, 1))
            lowres.append(lo.permute(0, 2, 3, 1))
        lo, hi = torch.cat(lowres), torch.cat(hires)
        if self.extra_convs is not None:
            lo = self.extra_convs(lo)
        lo, hi = ops.l2_normalise(lo), ops.l2_normalise(hi)
        return lo.reshape(b, t, *lo.shape[1:]), hi.reshape(b, t, *hi.shape[1:])

    def refinement_resolutions(self, video_hw: tuple[int, int]) -> list[tuple[int, int]]:
        """Default refinement (h, w) sizes for a video of ``video_hw``."""
        return ops.default_refinement_resolutions(video_hw, self.config.initial_resolution)

    def get_feature_grids(
        self,
        video: torch.Tensor,
        refinement_resolutions: list[tuple[int, int]] | None = None,
    ) -> FeatureGrids:
        """Encodes ``video`` ``[B, T, H, W, 3]`` (float, [-1, 1]) at every needed resolution."""
        video_hw = tuple(video.shape[2:4])
        if refinement_resolutions is None:
            refinement_resolutions = self.refinement_resolutions(video_hw)
        resolutions = [tuple(self.config.initial_resolution)] + [
            tuple(r) for r in refinement_resolutions
        ]
        lowres, hires = [], []
        for i, res in enumerate(resolutions):
            if res[0] % ops.RESOLUTION_MULTIPLE or res[1] % ops.RESOLUTION_MULTIPLE:
                raise ValueError(f"resolution {res} is not a multiple of {ops.RESOLUTION_MULTIPLE}")
            if i > 0 and res == resolutions[i - 1]:
                lowres.append(lowres[-1])
                hires.append(hires[-1])
                continue
            resized = (
                video
                if res == video_hw
                else ops.resize_video(video, res, self.config.antialias_resize)
            )
            lo, hi = self._encode(resized)
            lowres.append(lo)
            hires.append(hi)
        return FeatureGrids(tuple(lowres), tuple(hires), tuple(resolutions))

    def get_query_features(
        self, query_points_tyx: torch.Tensor, video_hw: tuple[int, int], grids: FeatureGrids
    ) -> QueryFeatures:
        """Samples every grid at ``query_points_tyx`` ``[B, N, 3]`` (frame, raster y/x px of the video)."""
        lowres, hires = [], []
        for lo, hi in zip(grids.lowres, grids.hires):
            lowres.append(
                ops.sample_video_trilinear(
                    lo, ops.scale_tyx(query_points_tyx, video_hw, lo.shape[2:4])
                )
            )
            hires.append(
                ops.sample_video_trilinear(
                    hi, ops.scale_tyx(query_points_tyx, video_hw, hi.shape[2:4])
                )
            )
        return QueryFeatures(tuple(lowres), tuple(hires))

    # ------------------------------------------------------------ initialisation
    def tracks_from_cost_volume(
        self,
        query_feats: torch.Tensor,
        grid_bthwc: torch.Tensor,
        query_points_tyx: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Initial tracks from a cost volume at the initial resolution.

        Args:
          query_feats: ``[B, N, C]`` low-res query features.
          grid_bthwc: ``[B, T, h, w, C]`` low-res grid of the initial resolution.
          query_points_tyx: ``[B, N, 3]`` in initial-resolution pixels, or None; on
            the query frame the output position is the query itself.

        Returns:
          points ``[B, N, T, 2]`` raster (x, y) px of the initial resolution, and
          occlusion and expected-distance logits ``[B, N, T]``.
        """
        mods = self.torch_cost_volume_track_mods
        b, t, h, w, _ = grid_bthwc.shape
        n = query_feats.shape[1]
        cost = torch.einsum("bnc,bthwc->bnthw", query_feats, grid_bthwc).reshape(b * n * t, 1, h, w)
        hidden = torch.relu(conv2d_same(mods["hid1"], cost))
        logits = conv2d_same(mods["hid2"], hidden).reshape(b, n, t, h * w)
        heatmaps = F.softmax(logits * self.config.softmax_temperature, dim=-1).reshape(
            b, n, t, h, w
        )
        points_cells = ops.soft_argmax_xy(heatmaps, self.config.soft_argmax_radius)
        points = ops.scale_xy(points_cells, (h, w), self.config.initial_resolution)
        if query_points_tyx is not None:
            frames = torch.arange(t, device=points.device, dtype=query_points_tyx.dtype)
            on_query_frame = torch.round(query_points_tyx[:, :, None, 0]) == frames  # [B, N, T]
            query_xy = query_points_tyx[:, :, None, 1:].flip(-1).expand_as(points)
            points = torch.where(on_query_frame[..., None], query_xy, points)

        occ = torch.relu(conv2d_same(mods["hid3"], hidden)).mean(dim=(-2, -1))
        occ = mods["occ_out"](torch.relu(mods["hid4"](occ))).reshape(b, n, t, 2)
        return points, occ[..., 0], occ[..., 1]

    # ---------------------------------------------------------------- refinement
    def refine_step(
        self,
        query_feats: list[torch.Tensor],
        pyramid: list[torch.Tensor],
        points_xy: torch.Tensor,
        occlusion: torch.Tensor,
        expected_dist: torch.Tensor,
        mixer_feats: torch.Tensor | None,
        resize_hw: tuple[int, int],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One PIPs iteration.

        Args:
          query_feats: per pyramid level ``[B, N, C_l]`` (hires, lowres, lowres, ...).
          pyramid: grids ``[B, T, h_l, w_l, C_l]`` (hires, lowres, pooled lowres, ...).
          points_xy: ``[B, N, T, 2]`` current guess, raster px of the initial resolution.
          occlusion, expected_dist: ``[B, N, T]`` current logits.
          mixer_feats: ``[B, N, T, 384]`` from the previous iteration, or None on the
            first iteration of a resolution (then the query features are used).
          resize_hw: (h, w) of the video the grids come from (scales the update).

        Returns:
          updated points, occlusion, expected_dist, mixer_feats.
        """
        init_hw = self.config.initial_resolution
        offsets = ops.patch_offsets_yx(self.config.patch_radius, points_xy.device, points_xy.dtype)
        corrs = []
        for level, (query, grid) in enumerate(zip(query_feats, pyramid)):
            coords_yx = ops.scale_xy(points_xy, init_hw, grid.shape[2:4]).flip(-1)
            patches = ops.sample_frames_bilinear(grid, coords_yx[:, :, :, None, :] + offsets)
            if mixer_feats is None:
                corrs.append(torch.einsum("bntsc,bnc->bnts", patches, query))
            else:
                own = mixer_feats[..., :HIRES_DIM] if level == 0 else mixer_feats[..., HIRES_DIM:]
                corrs.append(torch.einsum("bntsc,bntc->bnts", patches, own))
        b, n, t, _ = points_xy.shape
        if mixer_feats is None:
            both = torch.cat([query_feats[0], query_feats[1]], dim=-1)
            mixer_feats = both[:, :, None, :].expand(b, n, t, both.shape[-1])
        mixer_in = torch.cat(
            [
                torch.zeros_like(points_xy),
                occlusion[..., None],
                expected_dist[..., None],
                mixer_feats,
                *corrs,
            ],
            dim=-1,
        )
        res = self.torch_pips_mixer(mixer_in.reshape(b * n, t, -1)).reshape(b, n, t, -1)
        points_xy = points_xy + ops.scale_xy(res[..., :2], resize_hw, init_hw)
        return (
            points_xy,
            occlusion + res[..., 2],
            expected_dist + res[..., 3],
            mixer_feats + res[..., MIXER_STATE_DIM:],
        )

    def _pyramids(self, grids: FeatureGrids) -> list[list[torch.Tensor]]:
        """For each refinement level: [hires, lowres, lowres pooled 2x, pooled 4x, ...]."""
        pyramids = []
        for lo, hi in zip(grids.lowres[1:], grids.hires[1:]):
            levels = [hi, lo]
            for _ in range(self.config.pyramid_level):
                prev = levels[-1]
                b, t, h, w, c = prev.shape
                pooled = F.avg_pool2d(prev.reshape(b * t, h, w, c).permute(0, 3, 1, 2), 2)
                levels.append(pooled.permute(0, 2, 3, 1).reshape(b, t, h // 2, w // 2, c))
            pyramids.append(levels)
        return pyramids

    def estimate_trajectories(
        self,
        video_hw: tuple[int, int],
        grids: FeatureGrids,
        query_feats: QueryFeatures,
        query_points_tyx: torch.Tensor | None,
        query_chunk_size: int = 64,
    ) -> dict[str, list[torch.Tensor]]:
        """All iterations' outputs, in video pixels.

        Returns lists (entry 0: initialisation, then one per refinement iteration)
        under ``tracks`` (``[B, N, T, 2]`` raster x, y px of the video),
        ``occlusion`` and ``expected_dist`` (``[B, N, T]`` logits).
        """
        init_hw = self.config.initial_resolution
        pyramids = self._pyramids(grids)
        num_queries = query_feats.lowres[0].shape[1]
        if num_queries == 0 or query_chunk_size < 1:
            raise ValueError(
                f"need >= 1 query and chunk size, got {num_queries}, {query_chunk_size}"
            )
        chunks: list[dict[str, list[torch.Tensor]]] = []
        for start in range(0, num_queries, query_chunk_size):
            sl = slice(start, start + query_chunk_size)
            init_queries = (
                None
                if query_points_tyx is None
                else ops.scale_tyx(query_points_tyx[:, sl], video_hw, init_hw)
            )
            points, occ0, expd0 = self.tracks_from_cost_volume(
                query_feats.lowres[0][:, sl], grids.lowres[0], init_queries
            )
            out = {"tracks": [points], "occlusion": [occ0], "expected_dist": [expd0]}
            for level, pyramid in enumerate(pyramids, start=1):
                queries = [query_feats.hires[level][:, sl], query_feats.lowres[level][:, sl]]
                queries += [queries[-1]] * self.config.pyramid_level
                occ, expd, mixer_feats = occ0, expd0, None
                for _ in range(self.config.num_pips_iter):
                    points, occ, expd, mixer_feats = self.refine_step(
                        queries, pyramid, points, occ, expd, mixer_feats, grids.resolutions[level]
                    )
                    out["tracks"].append(points)
                    out["occlusion"].append(occ)
                    out["expected_dist"].append(expd)
            out["tracks"] = [ops.scale_xy(p, init_hw, video_hw) for p in out["tracks"]]
            chunks.append(out)
        return {
            key: [torch.cat([c[key][i] for c in chunks], dim=1) for i in range(len(chunks[0][key]))]
            for key in ("tracks", "occlusion", "expected_dist")
        }

    def forward(
        self,
        video: torch.Tensor,
        query_points_tyx: torch.Tensor,
        query_chunk_size: int = 64,
        feature_grids: FeatureGrids | None = None,
        refinement_resolutions: list[tuple[int, int]] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Tracks query points through a video.

        Args:
          video: ``[B, T, H, W, 3]`` float in [-1, 1] (``uint8 / 255 * 2 - 1``).
          query_points_tyx: ``[B, N, 3]`` (frame index, raster y px, raster x px).
          query_chunk_size: queries processed together (memory only).
          feature_grids: precomputed ``get_feature_grids(video)`` to reuse.
          refinement_resolutions: overrides the default refinement sizes.

        Returns:
          ``tracks`` ``[B, N, T, 2]`` raster (x, y) px; ``occlusion``,
          ``expected_dist`` ``[B, N, T]`` logits (higher = occluded / far);
          ``*_all_iters`` stacked ``[1 + L * num_pips_iter, ...]`` per iteration.
        """
        video_hw = tuple(video.shape[2:4])
        if feature_grids is None:
            feature_grids = self.get_feature_grids(video, refinement_resolutions)
        query_feats = self.get_query_features(query_points_tyx, video_hw, feature_grids)
        traj = self.estimate_trajectories(
            video_hw, feature_grids, query_feats, query_points_tyx, query_chunk_size
        )
        p = self.config.num_pips_iter
        out = {}
        for key, values in traj.items():
            out[key] = torch.stack(values[p::p]).mean(dim=0)
            out[f"{key}_all_iters"] = torch.stack(values)
        return out
