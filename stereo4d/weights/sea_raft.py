"""Finding and loading SEA-RAFT checkpoints for ``stereo4d.models.sea_raft.SeaRaft``.

Accepted sources (``path``):

- a state dict saved with ``torch.save(model.state_dict(), "x.pth")`` (the Google-Drive
  ``Tartan-C-T-TSKH-spring540x960-M.pth`` of the SEA-RAFT README has this layout);
- a ``.safetensors`` file, e.g. the Hub's ``model.safetensors``. It lacks the 20
  ``*.downsample.1.*`` entries, which are the same tensors as ``*.bn3.*``; they are filled in;
- a Hub-style folder holding ``model.safetensors`` or ``pytorch_model.bin`` (a
  ``config.json`` next to them is ignored: the architecture comes from ``SeaRaftConfig``,
  as in the reference, which always passes its local config);
- nothing (``path=None``): ``model.safetensors`` (else ``pytorch_model.bin``) of the Hub
  repo ``hub_id`` through ``huggingface_hub`` and its cache (works offline once cached).

Checkpoints must fit the model exactly: missing or unexpected keys and wrong shapes
raise ``CheckpointError`` naming them. Only tensors are unpickled (``weights_only=True``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from stereo4d.models.sea_raft import SeaRaft, SeaRaftConfig
from stereo4d.weights import (
    CheckpointError,
    WeightsNotFoundError,
    as_state_dict,
    load_state_dict_strict,
)

__all__ = [
    "DEFAULT_HUB_ID",
    "HUB_WEIGHT_FILES",
    "find_sea_raft_checkpoint",
    "load_sea_raft",
    "load_sea_raft_state_dict",
    "read_sea_raft_state_dict",
]

DEFAULT_HUB_ID = "MemorySlices/Tartan-C-T-TSKH-spring540x960-M"
"""Hub repo of the spring-M checkpoint used by the reference ``inference_raft.py``."""
HUB_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
"""Weight files of a Hub repo or Hub-style folder, in order of preference."""
SAFETENSORS_SUFFIX = ".safetensors"
WRAPPER_KEYS = ("state_dict", "model")
"""Keys under which some training scripts nest the state dict."""
DATA_PARALLEL_PREFIX = "module."
"""Prefix of every key in a state dict saved from a (Distributed)DataParallel wrapper."""


def _download_hint(hub_id: str) -> str:
    return (
        f"Download the weights while online with `hf download {hub_id} model.safetensors` "
        f"(they then load from the Hugging Face cache, also offline), or fetch "
        f"https://huggingface.co/{hub_id}/resolve/main/model.safetensors by hand (or the "
        f"SEA-RAFT README's Google-Drive .pth) and pass its path, or a folder holding it, "
        f"as the checkpoint path (--path)."
    )


def find_sea_raft_checkpoint(
    path: str | Path | None = None,
    hub_id: str = DEFAULT_HUB_ID,
    hub_cache_dir: str | Path | None = None,
) -> Path:
    """The checkpoint file to load: ``path`` (a file or Hub-style folder) or the Hub file.

    Args:
      path: local file or folder; ``None`` to use the Hub.
      hub_id: Hugging Face repo id used when ``path`` is None.
      hub_cache_dir: Hugging Face cache folder (default: huggingface_hub's own).
    Raises:
      WeightsNotFoundError: nothing found locally and the download failed (e.g.
        offline), with instructions on what to download.
    """
    if path is not None:
        path = Path(path).expanduser()
        if path.is_file():
            return path
        if path.is_dir():
            for name in HUB_WEIGHT_FILES:
                if (path / name).is_file():
                    return path / name
            raise WeightsNotFoundError(
                f"folder {path} holds none of {', '.join(HUB_WEIGHT_FILES)}. "
                + _download_hint(hub_id)
            )
        raise WeightsNotFoundError(
            f"SEA-RAFT checkpoint {path} does not exist. " + _download_hint(hub_id)
        )

    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import RemoteEntryNotFoundError

    primary, fallback = HUB_WEIGHT_FILES
    try:
        return Path(hf_hub_download(hub_id, primary, cache_dir=hub_cache_dir))
    except RemoteEntryNotFoundError:  # the repo has no safetensors file: use the .bin
        fallback_kwargs: dict = {}
        reason = f"{primary} is not in the repo"
    except Exception as exc:  # noqa: BLE001  offline, network or repo errors: look in the cache
        fallback_kwargs = {"local_files_only": True}
        reason = _first_line(exc)
    try:
        return Path(hf_hub_download(hub_id, fallback, cache_dir=hub_cache_dir, **fallback_kwargs))
    except Exception as exc:  # noqa: BLE001  reported in the message below
        if not fallback_kwargs:
            reason = f"{reason}; {fallback}: {_first_line(exc)}"
    raise WeightsNotFoundError(
        f"SEA-RAFT weights not found locally and not downloadable from the Hugging Face "
        f"Hub repo {hub_id!r} ({reason}). " + _download_hint(hub_id)
    ) from None


def _first_line(exc: Exception) -> str:
    """``"ErrorType: first line of the message"`` for short error reports."""
    text = str(exc).strip()
    return f"{exc.__class__.__name__}: {text.splitlines()[0]}" if text else exc.__class__.__name__


def _looks_like_safetensors(path: Path) -> bool:
    """Safetensors files start with an 8-byte header length followed by a JSON object."""
    if path.suffix == SAFETENSORS_SUFFIX:
        return True
    with open(path, "rb") as f:
        return f.read(9)[8:9] == b"{"


def read_sea_raft_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Reads a ``.pth``/``.bin`` (torch.save) or ``.safetensors`` state dict onto the CPU.

    Unwraps ``{"state_dict": ...}`` / ``{"model": ...}`` and strips a ``module.`` prefix.
    Raises ``CheckpointError`` for unreadable files or content that is not a state dict.
    """
    path = Path(path)
    try:
        if _looks_like_safetensors(path):
            from safetensors.torch import load_file

            content = load_file(str(path), device="cpu")
        else:
            content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  corrupt files raise many different types
        raise CheckpointError(
            f"could not read SEA-RAFT checkpoint {path} ({exc.__class__.__name__}: {exc}). "
            "The file is corrupt, truncated or not a PyTorch/safetensors state dict; "
            "download it again."
        ) from None
    for wrapper in WRAPPER_KEYS:
        if isinstance(content, Mapping) and isinstance(content.get(wrapper), Mapping):
            content = content[wrapper]
    state_dict = as_state_dict(content, path)
    if state_dict and all(k.startswith(DATA_PARALLEL_PREFIX) for k in state_dict):
        state_dict = {k[len(DATA_PARALLEL_PREFIX) :]: v for k, v in state_dict.items()}
    return state_dict


def _shared_tensor_groups(model: torch.nn.Module) -> list[list[str]]:
    """Names of state_dict entries that are one tensor (e.g. ``bn3.*`` and ``downsample.1.*``)."""
    groups: dict[tuple, list[str]] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        key = (tensor.data_ptr(), tensor.dtype, tuple(tensor.shape))
        groups.setdefault(key, []).append(name)
    return [names for names in groups.values() if len(names) > 1]


def _fill_shared_entries(
    state_dict: dict[str, torch.Tensor], model: torch.nn.Module
) -> dict[str, torch.Tensor]:
    """Copies each shared tensor to its other names when a checkpoint stores it only once."""
    filled = dict(state_dict)
    for names in _shared_tensor_groups(model):
        present = [n for n in names if n in filled]
        if present:
            for name in names:
                filled.setdefault(name, filled[present[0]])
    return filled


def load_sea_raft_state_dict(
    model: SeaRaft, state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint"
) -> None:
    """Loads ``state_dict`` into ``model`` strictly after filling aliased entries.

    Raises ``CheckpointError`` naming missing keys, unexpected keys and wrong shapes.
    """
    state_dict = _fill_shared_entries(dict(state_dict), model)
    load_state_dict_strict(model, state_dict, f"SEA-RAFT {model.config}", source)


def load_sea_raft(
    path: str | Path | None = None,
    hub_id: str = DEFAULT_HUB_ID,
    device: torch.device | str = "cpu",
    config: SeaRaftConfig | None = None,
    hub_cache_dir: str | Path | None = None,
) -> SeaRaft:
    """Builds ``SeaRaft(config)`` (default spring-M), loads the checkpoint strictly, returns it in eval mode.

    ``path``/``hub_id``/``hub_cache_dir`` as in ``find_sea_raft_checkpoint``. Raises
    ``WeightsNotFoundError`` (nothing to load) or ``CheckpointError`` (unusable file).
    """
    checkpoint = find_sea_raft_checkpoint(path, hub_id, hub_cache_dir)
    model = SeaRaft(config)
    load_sea_raft_state_dict(model, read_sea_raft_state_dict(checkpoint), str(checkpoint))
    return model.to(device).eval()
