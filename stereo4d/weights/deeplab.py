"""Finding and reading the official DeepLabv3 (Xception, ADE20K) frozen graph.

The model is a TensorFlow 1 frozen graph ``frozen_inference_graph.pb`` shipped inside
``deeplabv3_xception_ade20k_train_2018_05_29.tar.gz``. Accepted for ``path``: that tar.gz
(or any tar holding a member whose base name contains ``frozen_inference_graph``), the
extracted ``.pb`` itself, or a folder holding either. With ``path=None`` the weights cache
``stereo4d.weights.cache_dir("deeplab")`` is searched and, failing that, the tarball is
downloaded into it. Offline with nothing cached: ``WeightsNotFoundError`` saying what to
fetch and where to put it. This module only reads bytes; TensorFlow is not imported here.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

from stereo4d.weights import CheckpointError, WeightsNotFoundError, cache_dir, download_url

__all__ = [
    "GRAPH_NAME",
    "TARBALL_NAME",
    "TARBALL_URL",
    "find_deeplab_model",
    "read_frozen_graph_bytes",
]

TARBALL_URL = "http://download.tensorflow.org/models/deeplabv3_xception_ade20k_train_2018_05_29.tar.gz"
TARBALL_NAME = TARBALL_URL.rsplit("/", 1)[-1]
GRAPH_NAME = "frozen_inference_graph"
"""Base-name stem of the frozen graph inside the tarball."""
CACHE_SUBDIR = "deeplab"


def _hint(folder: Path) -> str:
    return (f"Download {TARBALL_URL} and pass it with --path, or place it at {folder / TARBALL_NAME} "
            "(TensorFlow is needed too: pip install -e .[tf]).")


def _model_in_folder(folder: Path) -> Path | None:
    """The tarball, else any ``*.tar.gz``, else a frozen ``.pb`` inside ``folder``."""
    for pattern in (TARBALL_NAME, "*.tar.gz", "*.tgz", "*.tar", f"*{GRAPH_NAME}*.pb", "*/*.pb"):
        found = sorted(folder.glob(pattern))
        if found:
            return found[0]
    return None


def find_deeplab_model(path: str | Path | None = None, download: bool = True) -> Path:
    """The model file (tarball or ``.pb``): ``path``, else the cache, else a fresh download.

    Raises:
      WeightsNotFoundError: ``path`` does not exist or holds no model, or nothing is cached
        and the download is disabled or fails.
    """
    folder = cache_dir(CACHE_SUBDIR)
    if path is not None:
        path = Path(path).expanduser()
        if path.is_file():
            return path
        if path.is_dir():
            found = _model_in_folder(path)
            if found is not None:
                return found
            raise WeightsNotFoundError(f"no DeepLab tarball or frozen graph in {path}. " + _hint(folder))
        raise WeightsNotFoundError(f"DeepLab model {path} does not exist. " + _hint(folder))
    if folder.is_dir():
        found = _model_in_folder(folder)
        if found is not None:
            return found
    if not download:
        raise WeightsNotFoundError(f"no DeepLab model in {folder}. " + _hint(folder))
    print(f"downloading {TARBALL_URL} (about 440 MB) ...")
    return download_url(TARBALL_URL, folder / TARBALL_NAME)


def read_frozen_graph_bytes(model_path: str | Path) -> bytes:
    """Serialized ``GraphDef`` bytes of the frozen graph in a tarball (or a ``.pb`` file).

    Raises:
      CheckpointError: unreadable archive, or no frozen graph member in it.
    """
    model_path = Path(model_path)
    if model_path.suffix == ".pb":
        try:
            return model_path.read_bytes()
        except OSError as exc:
            raise CheckpointError(f"cannot read frozen graph {model_path}: {exc}") from exc
    try:
        with tarfile.open(model_path) as tar:
            for member in tar.getmembers():
                if member.isfile() and GRAPH_NAME in Path(member.name).name:
                    handle = tar.extractfile(member)
                    if handle is not None:
                        return handle.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise CheckpointError(f"cannot read DeepLab tarball {model_path}: {exc}") from exc
    raise CheckpointError(f"{model_path} holds no '{GRAPH_NAME}*' member (not a DeepLab export?)")
