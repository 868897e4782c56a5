"""2D point tracking with TAPIR: the pre/post-processing of the reference ``tracking.py``.

Steps (reference ``TapirTracker.inference``), around ``stereo4d.models.tapir``:

1. frames uint8 RGB ``[T, H, W, 3]`` resized to the model size (512x512) with a
   Lanczos filter (``mediapy.resize_video``, i.e. PIL's antialiased Lanczos);
   query points (t, y, x) scaled by (1, 512 / H, 512 / W);
2. frames -> float32 ``frames / 255 * 2 - 1`` (range [-1, 1]), batch axis;
3. feature grids computed once per video, then queries in chunks of
   ``chunk_size`` (memory only: results do not depend on the chunking);
4. visible where ``(1 - sigmoid(occlusion)) * (1 - sigmoid(expected_dist)) > 0.5``;
5. tracks (raster x, y px of the model input) scaled back by (W / 512, H / 512).

Unlike the reference, which converts query points with the size order
``(1, width, height)`` (right only for square frames), x is always scaled by
the width and y by the height, so any aspect ratio works.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from stereo4d.models.tapir import TAPIR
from stereo4d.models.tapir_ops import visibility_from_logits
from stereo4d.weights import WeightsNotFoundError
from stereo4d.weights.tapir import find_tapir_checkpoint, load_tapir

__all__ = [
    "TapirTracker",
    "TapirTrackerConfig",
    "build_tapir_tracker",
    "resize_frames_lanczos",
    "tapir_unavailable_reason",
]

UINT8_MAX = 255.0


@dataclass(frozen=True)
class TapirTrackerConfig:
    """Settings of the tracking backend (defaults: the reference ``tracking.py``)."""

    model_hw: tuple[int, int] = (512, 512)
    """(height, width) the frames are resized to before the network."""
    chunk_size: int = 32
    """Queries per network call."""
    progress: bool = True
    """Show a tqdm bar over query chunks."""


def resize_frames_lanczos(frames_uint8: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Resizes uint8 RGB frames ``[T, H, W, 3]`` to ``size_hw`` like ``mediapy.resize_video``.

    PIL's Lanczos filter (antialiased when shrinking); frames already of that size
    are returned unchanged.
    """
    if tuple(frames_uint8.shape[1:3]) == tuple(size_hw):
        return frames_uint8
    out_wh = (int(size_hw[1]), int(size_hw[0]))
    return np.stack(
        [
            np.asarray(Image.fromarray(f).resize(out_wh, Image.Resampling.LANCZOS))
            for f in frames_uint8
        ]
    )


class TapirTracker:
    """Tracks query points through a video with a loaded ``TAPIR`` model."""

    def __init__(self, model: TAPIR, config: TapirTrackerConfig = TapirTrackerConfig()):
        if config.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {config.chunk_size}")
        self.model = model.eval()
        self.config = config

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def track(
        self, frames_uint8: np.ndarray, query_points_tyx: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Tracks ``query_points_tyx`` through ``frames_uint8``.

        Args:
          frames_uint8: ``[T, H, W, 3]`` uint8 RGB, any H and W.
          query_points_tyx: ``[N, 3]`` (frame index, y px, x px) in raster
            coordinates of the frames (pixel (i, j) spans [j, j+1) x [i, i+1)).

        Returns:
          tracks_xy: float32 ``[N, T, 2]`` raster (x, y) px of the input frames;
          visibles: bool ``[N, T]``.
        """
        out = self.predict(frames_uint8, query_points_tyx)
        return out["tracks_xy"], out["visibles"]

    @torch.inference_mode()
    def predict(
        self, frames_uint8: np.ndarray, query_points_tyx: np.ndarray
    ) -> dict[str, np.ndarray]:
        """As ``track``, also returning the logits.

        Returns:
          ``tracks_xy`` float32 ``[N, T, 2]``, ``visibles`` bool ``[N, T]``,
          ``occlusion_logits`` and ``expected_dist_logits`` float32 ``[N, T]``.
        """
        frames = np.asarray(frames_uint8)
        queries = np.asarray(query_points_tyx, dtype=np.float32).reshape(-1, 3)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(
                f"expected uint8 frames [T, H, W, 3], got {frames.dtype} {frames.shape}"
            )
        num_frames, height, width = frames.shape[:3]
        if queries.size and (
            queries[:, 0].min() < 0 or np.round(queries[:, 0]).max() >= num_frames
        ):
            raise ValueError(f"query frame indices must lie in [0, {num_frames - 1}]")
        num_queries = queries.shape[0]
        out = {
            "tracks_xy": np.zeros((num_queries, num_frames, 2), np.float32),
            "visibles": np.zeros((num_queries, num_frames), bool),
            "occlusion_logits": np.zeros((num_queries, num_frames), np.float32),
            "expected_dist_logits": np.zeros((num_queries, num_frames), np.float32),
        }
        if num_queries == 0:
            return out

        model_h, model_w = self.config.model_hw
        to_model = np.array([1.0, model_h / height, model_w / width], np.float32)
        to_input_xy = np.array([width / model_w, height / model_h], np.float32)
        resized = resize_frames_lanczos(frames, (model_h, model_w))
        video = torch.from_numpy(resized).to(self.device, torch.float32) / UINT8_MAX * 2 - 1
        video = video[None]
        grids = self.model.get_feature_grids(video)

        starts = range(0, num_queries, self.config.chunk_size)
        for start in tqdm(starts, desc="TAPIR query chunks", disable=not self.config.progress):
            stop = min(start + self.config.chunk_size, num_queries)
            chunk = torch.from_numpy(queries[start:stop] * to_model).to(self.device)[None]
            pred = self.model(
                video, chunk, query_chunk_size=self.config.chunk_size, feature_grids=grids
            )
            visible = visibility_from_logits(pred["occlusion"], pred["expected_dist"])
            out["tracks_xy"][start:stop] = pred["tracks"][0].float().cpu().numpy() * to_input_xy
            out["visibles"][start:stop] = visible[0].cpu().numpy()
            out["occlusion_logits"][start:stop] = pred["occlusion"][0].float().cpu().numpy()
            out["expected_dist_logits"][start:stop] = pred["expected_dist"][0].float().cpu().numpy()
        return out


def tapir_unavailable_reason(path: str | Path | None = None, **_: object) -> str | None:
    """None when a TAPIR checkpoint is found locally (``path`` or the cache), else why not."""
    try:
        find_tapir_checkpoint(path, download=False)
    except WeightsNotFoundError as exc:
        return str(exc)
    return None


def build_tapir_tracker(
    path: str | Path | None = None,
    device: torch.device | str = "cpu",
    chunk_size: int = TapirTrackerConfig.chunk_size,
    download: bool = True,
    progress: bool = True,
) -> TapirTracker:
    """Loads BootsTAPIR (``stereo4d.weights.tapir.load_tapir``) and wraps it in a tracker."""
    model = load_tapir(path, device=device, download=download)
    return TapirTracker(model, TapirTrackerConfig(chunk_size=chunk_size, progress=progress))
