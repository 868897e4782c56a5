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
from pathlib import Path

__all__ = ["WeightsNotFoundError", "CheckpointError", "cache_dir", "download_url"]


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


def download_url(url: str, dest: Path, timeout_s: float = 60.0) -> Path:
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
