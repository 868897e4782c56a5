"""Where model weights come from: a local path, a cache directory, a URL or a Hub id.

Networks in ``stereo4d.models`` never touch files; the functions here find and
read checkpoints and hand plain state dicts to the models. Each model family has
its own submodule (``stereo4d.weights.sea_raft``, ``stereo4d.weights.tapir``)
built on the helpers below.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.request
from collections.abc import Mapping
from pathlib import Path

__all__ = [
    "DOWNLOAD_TIMEOUT_S",
    "CheckpointError",
    "WeightsNotFoundError",
    "as_state_dict",
    "cache_dir",
    "download_url",
    "key_list",
    "load_state_dict_strict",
]

#: How many keys an error message lists before "... and N more".
MAX_KEYS_IN_MESSAGE = 8
#: Seconds a download may wait on the network (connection or one read) before failing.
DOWNLOAD_TIMEOUT_S = 60.0


class WeightsNotFoundError(FileNotFoundError):
    """No checkpoint could be found locally (and none could be downloaded).

    The message tells the user what to download and where to put it.
    """


class CheckpointError(ValueError):
    """A checkpoint file exists but is unreadable or does not fit the model."""


def cache_dir(subdir: str = "") -> Path:
    """The weights cache: ``$STEREO4D_CACHE`` or ``~/.cache/stereo4d`` (plus ``subdir``)."""
    root = Path(os.environ.get("STEREO4D_CACHE", Path.home() / ".cache" / "stereo4d"))
    return root / subdir if subdir else root


def download_url(url: str, dest: Path, timeout_s: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Downloads ``url`` to ``dest`` atomically (temporary file, then rename).

    Returns ``dest``. Raises ``WeightsNotFoundError`` with a clear message when the
    download fails (e.g. offline).
    """
    dest = Path(dest)
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout_s) as resp:
            shutil.copyfileobj(resp, out)
        os.replace(tmp, dest)
    except Exception as exc:  # network errors come in many types
        Path(tmp).unlink(missing_ok=True)
        raise WeightsNotFoundError(
            f"could not download {url} ({exc.__class__.__name__}: {exc}). "
            f"Download it by hand and pass its path with --path, or place it at {dest}."
        ) from exc
    return dest


def key_list(keys: list[str]) -> str:
    """The first ``MAX_KEYS_IN_MESSAGE`` keys, comma-separated, then how many more."""
    shown = ", ".join(keys[:MAX_KEYS_IN_MESSAGE])
    more = len(keys) - MAX_KEYS_IN_MESSAGE
    return shown + (f" ... and {more} more" if more > 0 else "")


def as_state_dict(content: object, source: str | Path) -> dict:
    """``content`` read from ``source`` as a plain dict of names to tensors.

    Raises:
      CheckpointError: ``content`` is not a mapping of ``str`` to ``torch.Tensor``.
    """
    import torch

    if not isinstance(content, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in content.items()
    ):
        raise CheckpointError(
            f"{source} does not hold a state dict (a mapping of names to tensors) but "
            f"{type(content).__name__}"
        )
    return dict(content)


def load_state_dict_strict(model, state_dict, model_name: str, source: str = "checkpoint") -> None:
    """``model.load_state_dict(state_dict, strict=True)`` with a readable refusal.

    Raises:
      CheckpointError: naming the missing keys, unexpected keys and wrong shapes, if any.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong_shape = [
        f"{k} {tuple(state_dict[k].shape)} (model {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys: {key_list(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {key_list(unexpected)}")
    if wrong_shape:
        problems.append(f"{len(wrong_shape)} wrong shapes: {key_list(wrong_shape)}")
    if problems:
        raise CheckpointError(f"{source} does not fit {model_name}: " + "; ".join(problems))
    model.load_state_dict(state_dict, strict=True)
