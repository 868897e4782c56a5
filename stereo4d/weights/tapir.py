"""Finding and loading BootsTAPIR checkpoints for ``stereo4d.models.tapir.TAPIR``.

Accepted files (told apart by their first bytes, not their names):

- the official PyTorch state dict ``bootstapir_checkpoint_v2.pt`` (loaded strictly;
  its keys are exactly the model's 218 ``state_dict`` entries);
- the official JAX/Haiku checkpoint ``bootstapir_checkpoint_v2.npy`` (what the
  reference ``tracking.py`` downloads): a pickled dict ``{"params", "state"}``
  of Haiku arrays, read with a restricted unpickler (numpy arrays and builtin
  containers only) and converted to our names and layouts.

With ``path=None`` the weights cache ``stereo4d.weights.cache_dir("tapir")`` is
searched (``.pt`` first) and, failing that, the official files are downloaded
into it. Offline with nothing cached: ``WeightsNotFoundError`` saying what to
fetch and where to put it. Unreadable or ill-fitting files: ``CheckpointError``.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from stereo4d.io import safe_pickle_loads
from stereo4d.models.tapir import TAPIR, TapirConfig
from stereo4d.weights import (
    CheckpointError,
    WeightsNotFoundError,
    as_state_dict,
    cache_dir,
    download_url,
    key_list,
    load_state_dict_strict,
)

__all__ = [
    "JAX_CHECKPOINT_URL",
    "TORCH_CHECKPOINT_URL",
    "find_tapir_checkpoint",
    "haiku_key",
    "haiku_params_to_state_dict",
    "load_tapir",
    "load_tapir_state_dict",
    "read_tapir_state_dict",
    "state_dict_to_haiku_params",
]

TORCH_CHECKPOINT_URL = (
    "https://storage.googleapis.com/dm-tapnet/bootstap/bootstapir_checkpoint_v2.pt"
)
JAX_CHECKPOINT_URL = (
    "https://storage.googleapis.com/dm-tapnet/bootstap/bootstapir_checkpoint_v2.npy"
)
CHECKPOINT_URLS = (TORCH_CHECKPOINT_URL, JAX_CHECKPOINT_URL)
"""Official BootsTAPIR checkpoints, in order of preference."""
CACHE_SUBDIR = "tapir"
HAIKU_ROOT = "tapir/~/"
"""Prefix of every Haiku module path of the JAX TAPIR."""
NPY_MAGIC = b"\x93NUMPY"


# --------------------------------------------------------------------------------------
# Haiku <-> torch names and layouts
# --------------------------------------------------------------------------------------


def _hk(name: str, index: int) -> str:
    """Haiku's name for the ``index``-th module called ``name`` in one scope (0 has no suffix)."""
    return name if index == 0 else f"{name}_{index}"


def _resnet_key(m: re.Match) -> tuple[str, str]:
    group, block, layer, kind, leaf = m.groups()
    prefix = f"resnet/~/block_group_{group}/~/block_{block}/~/"
    if layer == "proj_conv":
        return prefix + "shortcut_conv", "w"
    if layer.startswith("bn"):
        return prefix + f"instancenorm_{kind}", "scale" if leaf == "weight" else "offset"
    return prefix + f"conv_{kind}", "w"


_COST_VOLUME_MODULES = {
    "hid1": "cost_volume_regression_1",
    "hid2": "cost_volume_regression_2",
    "hid3": "cost_volume_occlusion_1",
    "hid4": "cost_volume_occlusion_2",
    "occ_out": "occlusion_out",
}
_WB = {"weight": "w", "bias": "b"}
_NORM = {"weight": "scale", "bias": "offset"}

# (pattern on the torch name, function of the match -> (haiku module without root, param)).
_NAME_RULES: list[tuple[re.Pattern, object]] = [
    (re.compile(r"resnet_torch\.initial_conv\.weight"), lambda m: ("resnet/~/initial_conv", "w")),
    (
        re.compile(
            r"resnet_torch\.block_groups\.(\d+)\.blocks\.(\d+)\.(proj_conv|(?:bn|conv)_(\d))\.(\w+)"
        ),
        _resnet_key,
    ),
    (
        re.compile(r"torch_cost_volume_track_mods\.(\w+)\.(weight|bias)"),
        lambda m: (_COST_VOLUME_MODULES[m[1]], _WB[m[2]]),
    ),
    (
        re.compile(r"torch_pips_mixer\.(linear|linear_1)\.(weight|bias)"),
        lambda m: (f"pips_mlp_mixer/{m[1]}", _WB[m[2]]),
    ),
    (
        re.compile(r"torch_pips_mixer\.layer_norm\.weight"),
        lambda m: ("pips_mlp_mixer/layer_norm", "scale"),
    ),
    (
        re.compile(r"torch_pips_mixer\.blocks\.(\d+)\.(layer_norm|layer_norm_1)\.weight"),
        lambda m: (f"pips_mlp_mixer/{_hk('block', int(m[1]))}/{m[2]}", "scale"),
    ),
    (
        re.compile(
            r"torch_pips_mixer\.blocks\.(\d+)\.(?:conv_channels_mixer\.)?(mlp1_up|mlp1_up_1|mlp2_up|mlp2_down)\.(weight|bias)"
        ),
        lambda m: (f"pips_mlp_mixer/{_hk('block', int(m[1]))}/{m[2]}", _WB[m[3]]),
    ),
    (
        re.compile(r"extra_convs\.blocks\.(\d+)\.layer_norm\.(weight|bias)"),
        lambda m: (f"extra_convs/{_hk('layer_norm', int(m[1]))}", _NORM[m[2]]),
    ),
    (
        re.compile(r"extra_convs\.blocks\.(\d+)\.(conv|conv_1)\.(weight|bias)"),
        lambda m: (f"extra_convs/{_hk('conv2_d', 2 * int(m[1]) + (m[2] == 'conv_1'))}", _WB[m[3]]),
    ),
]


def haiku_key(torch_name: str) -> tuple[str, str]:
    """The Haiku (module path, parameter) holding the torch ``state_dict`` entry ``torch_name``."""
    for pattern, rule in _NAME_RULES:
        match = pattern.fullmatch(torch_name)
        if match:
            module, param = rule(match)
            return HAIKU_ROOT + module, param
    raise KeyError(f"no Haiku name known for {torch_name!r}")


# Axis orders taking a Haiku array to the torch layout, by rank:
# conv2d HWIO -> OIHW, linear [in, out] -> [out, in], depthwise conv1d [k, 1, C*m] -> [C*m, 1, k].
_HAIKU_TO_TORCH_AXES = {4: (3, 2, 0, 1), 3: (2, 1, 0), 2: (1, 0), 1: (0,)}


def _inverse(axes: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argsort(axes))


def haiku_params_to_state_dict(
    params: Mapping[str, Mapping[str, np.ndarray]], torch_names: list[str]
) -> dict[str, torch.Tensor]:
    """Converts Haiku ``params`` to a torch state dict with the keys ``torch_names``.

    Raises ``CheckpointError`` naming the Haiku arrays that are missing; Haiku
    arrays no torch key uses are ignored with a warning.
    """
    state_dict, missing, used = {}, [], set()
    for name in torch_names:
        module, param = haiku_key(name)
        if module not in params or param not in params[module]:
            missing.append(f"{module}/{param}")
            continue
        used.add((module, param))
        array = np.asarray(params[module][param])
        state_dict[name] = torch.from_numpy(
            np.ascontiguousarray(array.transpose(_HAIKU_TO_TORCH_AXES[array.ndim]))
        )
    if missing:
        raise CheckpointError(
            f"the Haiku checkpoint lacks {len(missing)} arrays of TAPIR: {key_list(missing)}"
        )
    extra = [f"{m}/{p}" for m, d in params.items() for p in d if (m, p) not in used]
    if extra:
        warnings.warn(
            f"ignoring {len(extra)} unused Haiku arrays: {key_list(extra)}", stacklevel=2
        )
    return state_dict


def state_dict_to_haiku_params(
    state_dict: Mapping[str, torch.Tensor | np.ndarray],
) -> dict[str, dict[str, np.ndarray]]:
    """Inverse of ``haiku_params_to_state_dict`` (e.g. to export or to test a conversion)."""
    params: dict[str, dict[str, np.ndarray]] = {}
    for name, value in state_dict.items():
        module, param = haiku_key(name)
        array = (
            value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        )
        params.setdefault(module, {})[param] = np.ascontiguousarray(
            array.transpose(_inverse(_HAIKU_TO_TORCH_AXES[array.ndim]))
        )
    return params


# --------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------



def _download_hint(folder: Path) -> str:
    return (
        f"Download {TORCH_CHECKPOINT_URL} (or the JAX {JAX_CHECKPOINT_URL}) while online and "
        f"place it in {folder}, or pass its path (--path)."
    )


def find_tapir_checkpoint(path: str | Path | None = None, download: bool = True) -> Path:
    """The checkpoint file: ``path``, else the cache, else a fresh download into the cache.

    Raises:
      WeightsNotFoundError: ``path`` does not exist, or nothing is cached and the
        download is disabled or fails (offline); the message says what to fetch.
    """
    folder = cache_dir(CACHE_SUBDIR)
    if path is not None:
        path = Path(path).expanduser()
        if path.is_file():
            return path
        raise WeightsNotFoundError(
            f"TAPIR checkpoint {path} does not exist. " + _download_hint(folder)
        )
    candidates = [folder / url.rsplit("/", 1)[-1] for url in CHECKPOINT_URLS]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    if not download:
        raise WeightsNotFoundError(f"no TAPIR checkpoint in {folder}. " + _download_hint(folder))
    failures = []
    for url, dest in zip(CHECKPOINT_URLS, candidates):
        try:
            return download_url(url, dest)
        except WeightsNotFoundError as exc:
            failures.append(str(exc.__cause__ or exc))
    raise WeightsNotFoundError(
        f"no TAPIR checkpoint in {folder} and the download failed ({'; '.join(failures)}). "
        + _download_hint(folder)
    )


def _read_npy_pickle(path: Path) -> object:
    """The object inside a pickled (object-dtype) ``.npy`` file, unpickled safely."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            _, _, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            _, _, dtype = np.lib.format.read_array_header_2_0(f)
        if not dtype.hasobject:
            raise ValueError(f"holds a plain {dtype} array, not a pickled checkpoint dict")
        content = safe_pickle_loads(f.read())
    return content.item() if isinstance(content, np.ndarray) else content


def read_tapir_state_dict(
    path: str | Path, config: TapirConfig | None = None
) -> dict[str, torch.Tensor]:
    """Reads a torch ``.pt`` state dict or a Haiku ``.npy`` checkpoint as our state dict (CPU).

    ``config`` (default ``TapirConfig()``) decides which entries a Haiku checkpoint must hold.

    Raises ``CheckpointError`` for corrupt files and content that is not a TAPIR checkpoint.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            is_npy = f.read(len(NPY_MAGIC)) == NPY_MAGIC
        if is_npy:
            content = _read_npy_pickle(path)
        else:
            content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 (corrupt files raise many different types)
        raise CheckpointError(
            f"could not read TAPIR checkpoint {path} ({exc.__class__.__name__}: {exc}). The file "
            "is corrupt, truncated or not a TAPIR .pt/.npy checkpoint; download it again."
        ) from None
    if is_npy:
        if not isinstance(content, Mapping) or not isinstance(content.get("params"), Mapping):
            raise CheckpointError(f"{path} is not a Haiku checkpoint dict with 'params'")
        with torch.device("meta"):  # names and shapes only, no memory
            names = list(TAPIR(config or TapirConfig()).state_dict())
        return haiku_params_to_state_dict(content["params"], names)
    return as_state_dict(content, path)


def load_tapir_state_dict(
    model: TAPIR, state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint"
) -> None:
    """Loads ``state_dict`` strictly; ``CheckpointError`` names missing/unexpected keys and bad shapes."""
    load_state_dict_strict(model, state_dict, "TAPIR", source)


def load_tapir(
    path: str | Path | None = None,
    device: torch.device | str = "cpu",
    config: TapirConfig | None = None,
    download: bool = True,
) -> TAPIR:
    """Builds ``TAPIR(config)``, loads the checkpoint strictly, returns it in eval mode.

    ``path``/``download`` as in ``find_tapir_checkpoint``; ``config`` defaults to
    ``TapirConfig()`` (BootsTAPIR as the pipeline runs it). Raises
    ``WeightsNotFoundError`` (nothing to load) or ``CheckpointError`` (unusable file).
    """
    config = config or TapirConfig()
    checkpoint = find_tapir_checkpoint(path, download)
    model = TAPIR(config)
    load_tapir_state_dict(model, read_tapir_state_dict(checkpoint, config), str(checkpoint))
    return model.to(device).eval()
