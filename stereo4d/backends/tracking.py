"""Backends of the 2D tracking stage.

Every backend object has
``track(frames [T, H, W, 3] uint8, query_points_tyx [N, 3]) -> (tracks_xy [N, T, 2] float32,
visibles [N, T] bool)`` and ``settings() -> dict`` (recorded in the provenance JSON).

``auto`` picks ``bootstapir`` when a BootsTAPIR checkpoint is found locally
(``--path`` or the weights cache; no download is attempted), else the classical
``dis-flow`` tracker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from stereo4d.backends.registry import BackendEntry, Registry

__all__ = ["TRACKING_BACKENDS", "PointTracker", "bootstapir_unavailable_reason", "build_bootstapir"]


class PointTracker(Protocol):
    """What the tracking stage needs from a backend."""

    def track(self, frames_uint8: np.ndarray, query_points_tyx: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]: ...

    def settings(self) -> dict: ...


def bootstapir_unavailable_reason(path: str | Path | None = None, **_: Any) -> str | None:
    """None when a BootsTAPIR checkpoint is available locally, else the reason."""
    from stereo4d.backends.tapir_tracker import tapir_unavailable_reason

    return tapir_unavailable_reason(path)


class _BootsTapirBackend:
    """Adds ``settings()`` to ``stereo4d.backends.tapir_tracker.TapirTracker``."""

    def __init__(self, tracker, checkpoint: Path, device: str):
        self._tracker, self._checkpoint, self._device = tracker, checkpoint, device

    def track(self, frames_uint8: np.ndarray, query_points_tyx: np.ndarray):
        return self._tracker.track(frames_uint8, query_points_tyx)

    def settings(self) -> dict:
        config = self._tracker.config
        return {"backend": "bootstapir", "checkpoint": str(self._checkpoint), "device": self._device,
                "model_hw": list(config.model_hw), "chunk_size": config.chunk_size}


def build_bootstapir(path: str | Path | None = None, device: str = "auto", chunk_size: int | None = None,
                     progress: bool = True, **_: Any) -> _BootsTapirBackend:
    """Loads BootsTAPIR (``--path``, else the cache, else a download) on ``device``."""
    from stereo4d.backends.tapir_tracker import TapirTrackerConfig, build_tapir_tracker
    from stereo4d.devices import resolve_device
    from stereo4d.weights.tapir import find_tapir_checkpoint

    device = resolve_device(device)
    checkpoint = find_tapir_checkpoint(path, download=True)
    tracker = build_tapir_tracker(checkpoint, device=device,
                                  chunk_size=chunk_size or TapirTrackerConfig.chunk_size,
                                  download=False, progress=progress)
    return _BootsTapirBackend(tracker, checkpoint, device)


TRACKING_BACKENDS = Registry("tracking")
TRACKING_BACKENDS.register(BackendEntry(
    name="bootstapir",
    target="stereo4d.backends.tracking:build_bootstapir",
    description="BootsTAPIR (the reference's tracker; needs its checkpoint)",
    needs_weights=True,
    availability=bootstapir_unavailable_reason,
))
TRACKING_BACKENDS.register(BackendEntry(
    name="dis-flow",
    target="stereo4d.backends.classical_tracker:build_classical_tracker",
    description="chained DIS optical flow with forward-backward occlusion checks (no weights)",
))
TRACKING_BACKENDS.register(BackendEntry(
    name="flow-anchor",
    target="stereo4d.backends.classical_tracker:build_flow_anchor_tracker",
    description="dis-flow tuned on real footage: 4-frame keyframe chaining, Lucas-Kanade "
                "re-anchoring to the query patch, re-detection of that patch every 4 frames, "
                "occluded points follow consistent flow (no weights)",
))
