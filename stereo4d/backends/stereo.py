"""Backends of the stereo stage (``inference_raft.py``).

Every backend object has ``compute_flows(left [T, H, W, 3] uint8, right [T, H, W, 3] uint8)
-> list of {'fwd': [H, W, 2], 'bwd': [H, W, 2]} float32`` (flows in pixels, left->right
and right->left, the ``<vid>-flows_stereo.pkl`` format) and ``settings() -> dict``
(recorded in the provenance JSON).

``auto`` picks ``sea-raft`` when its weights are found locally (``--path`` exists, or the
Hub file is already in the Hugging Face cache; no download is attempted), else the
classical ``sgbm``. An explicit ``--backend sea-raft`` may download from the Hub.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from stereo4d.backends.registry import BackendEntry, Registry

__all__ = [
    "STEREO_BACKENDS",
    "SeaRaftStereo",
    "StereoBackend",
    "build_sea_raft",
    "build_sgbm",
    "sea_raft_unavailable_reason",
]


class StereoBackend(Protocol):
    """What the stereo stage needs from a backend."""

    def compute_flows(self, left: np.ndarray, right: np.ndarray) -> list[dict[str, np.ndarray]]: ...

    def settings(self) -> dict: ...


def _default_hub_id() -> str:
    from stereo4d.weights.sea_raft import DEFAULT_HUB_ID

    return DEFAULT_HUB_ID


def sea_raft_unavailable_reason(path: str | Path | None = None, url: str | None = None,
                                **_: Any) -> str | None:
    """None when SEA-RAFT weights are on this machine (no network access), else the reason."""
    if path is not None:
        return None if Path(path).expanduser().exists() else f"--path {path} does not exist"
    hub_id = url or _default_hub_id()
    try:
        from huggingface_hub import try_to_load_from_cache

        from stereo4d.weights.sea_raft import HUB_WEIGHT_FILES
    except ImportError as exc:  # pragma: no cover - huggingface_hub is a dependency
        return f"huggingface_hub missing ({exc})"
    for name in HUB_WEIGHT_FILES:
        if isinstance(try_to_load_from_cache(hub_id, name), str):
            return None
    return f"no --path and {hub_id} is not in the Hugging Face cache"


#: Frames per SEA-RAFT call on the CPU (batching buys little there; keeps memory low).
FRAMES_PER_BATCH_CPU = 1
#: Frames per SEA-RAFT call on a GPU (8 pairs of 512x512 at half size fit in a few GB).
FRAMES_PER_BATCH_CUDA = 4


class SeaRaftStereo:
    """The ``sea-raft`` backend: the reference's SEA-RAFT spring-M stereo flows."""

    name = "sea-raft"

    def __init__(self, model, checkpoint: str, device: str, frames_per_batch: int | None = None):
        self.model, self.checkpoint, self.device = model, checkpoint, device
        #: Frames per network call (each is a forward and a backward pair): more on a GPU.
        self.frames_per_batch = frames_per_batch or (
            FRAMES_PER_BATCH_CUDA if str(device).startswith("cuda") else FRAMES_PER_BATCH_CPU)

    def compute_flows(self, left: np.ndarray, right: np.ndarray) -> list[dict[str, np.ndarray]]:
        """Forward and backward flows of every frame, ``frames_per_batch`` frames per call."""
        from tqdm import tqdm

        from stereo4d.backends.sea_raft_flow import sea_raft_stereo_flows_batched
        from stereo4d.io import InputError

        flows = []
        with tqdm(total=len(left), desc="sea-raft", unit="frame") as bar:
            for start in range(0, len(left), self.frames_per_batch):
                stop = start + self.frames_per_batch
                try:
                    fwd, bwd = sea_raft_stereo_flows_batched(
                        self.model, left[start:stop], right[start:stop], self.device,
                        frames_per_call=self.frames_per_batch)
                except ValueError as exc:  # frame size the network cannot take
                    raise InputError(f"SEA-RAFT cannot process frames of shape "
                                     f"{tuple(left.shape[1:])}: {exc}") from exc
                flows += [{"fwd": f, "bwd": b} for f, b in zip(fwd, bwd)]
                bar.update(len(fwd))
        return flows

    def settings(self) -> dict:
        config = self.model.config
        return {"backend": self.name, "checkpoint": self.checkpoint, "device": self.device,
                "iters": config.iters, "scale": config.scale,
                "frames_per_batch": self.frames_per_batch}


def build_sea_raft(path: str | None = None, url: str | None = None, device: str = "auto",
                   **_: Any) -> SeaRaftStereo:
    """Loads SEA-RAFT from ``path`` (file or Hub-style folder) or the Hub repo ``url``.

    Raises ``WeightsNotFoundError`` (with download instructions) or ``CheckpointError``.
    """
    from stereo4d.devices import resolve_device
    from stereo4d.weights.sea_raft import find_sea_raft_checkpoint, load_sea_raft

    device = resolve_device(device)
    hub_id = url or _default_hub_id()
    checkpoint = find_sea_raft_checkpoint(path, hub_id)
    model = load_sea_raft(checkpoint, hub_id=hub_id, device=device)
    source = str(checkpoint) if path is not None else f"{hub_id} ({checkpoint.name})"
    return SeaRaftStereo(model, source, device)


def build_sgbm(sgbm: Any = None, **_: Any):
    """The classical backend with ``sgbm`` (an ``SgbmSettings``; None = defaults)."""
    from stereo4d.backends.classical_stereo import SgbmSettings, SgbmStereo

    return SgbmStereo(sgbm if sgbm is not None else SgbmSettings())


STEREO_BACKENDS = Registry("stereo")
STEREO_BACKENDS.register(BackendEntry(
    name="sea-raft",
    target="stereo4d.backends.stereo:build_sea_raft",
    description="SEA-RAFT spring-M optical flow both ways (the reference's; needs its weights)",
    needs_weights=True,
    availability=sea_raft_unavailable_reason,
))
STEREO_BACKENDS.register(BackendEntry(
    name="sgbm",
    target="stereo4d.backends.stereo:build_sgbm",
    description="OpenCV semi-global matching both ways, left-right check, sub-pixel "
                "refinement (no weights)",
))
