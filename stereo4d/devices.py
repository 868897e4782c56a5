"""Where tensors run: one place that turns ``--device auto`` into a torch device name.

A foundation module: it imports nothing of ours, so backends and stages can both use it.
"""

from __future__ import annotations

__all__ = ["resolve_device"]


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; any other name is returned as is."""
    if device != "auto":
        return device
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"
