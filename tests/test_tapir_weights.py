"""BootsTAPIR checkpoints: torch .pt, Haiku .npy conversion, cache/download, bad files."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pytest
import torch

from stereo4d.models.tapir import TAPIR
from stereo4d.weights import CheckpointError, WeightsNotFoundError
from stereo4d.weights import tapir as tapir_weights
from tests.conftest import load_make_weights

PARITY = Path(__file__).parent / "parity"


@pytest.fixture(scope="module")
def numpy_weights() -> dict[str, np.ndarray]:
    make_weights = load_make_weights()
    spec = make_weights.load_spec(PARITY / "tapir_bootstap_state_dict_spec.json")
    return make_weights.deterministic_state_dict(spec)


@pytest.fixture(scope="module")
def pt_file(numpy_weights, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tapir") / "bootstapir_checkpoint_v2.pt"
    torch.save({k: torch.from_numpy(v) for k, v in numpy_weights.items()}, path)
    return path


def _save_npy(path: Path, content) -> Path:
    np.save(path, np.array(content, dtype=object), allow_pickle=True)
    return path


def test_torch_checkpoint_loads_strictly(pt_file, numpy_weights):
    model = tapir_weights.load_tapir(pt_file, download=False)
    assert not model.training
    loaded = model.state_dict()
    assert list(loaded) == list(numpy_weights)
    for name, value in numpy_weights.items():
        np.testing.assert_array_equal(loaded[name].numpy(), value, err_msg=name)


def test_haiku_names_and_layouts_follow_the_notes(numpy_weights):
    assert tapir_weights.haiku_key("resnet_torch.block_groups.2.blocks.0.proj_conv.weight") == (
        "tapir/~/resnet/~/block_group_2/~/block_0/~/shortcut_conv",
        "w",
    )
    assert tapir_weights.haiku_key("resnet_torch.block_groups.3.blocks.1.bn_1.bias") == (
        "tapir/~/resnet/~/block_group_3/~/block_1/~/instancenorm_1",
        "offset",
    )
    assert tapir_weights.haiku_key("torch_pips_mixer.blocks.0.mlp1_up_1.weight") == (
        "tapir/~/pips_mlp_mixer/block/mlp1_up_1",
        "w",
    )
    assert tapir_weights.haiku_key(
        "torch_pips_mixer.blocks.7.conv_channels_mixer.mlp2_down.bias"
    ) == (
        "tapir/~/pips_mlp_mixer/block_7/mlp2_down",
        "b",
    )
    assert tapir_weights.haiku_key("extra_convs.blocks.0.conv.weight") == (
        "tapir/~/extra_convs/conv2_d",
        "w",
    )
    assert tapir_weights.haiku_key("extra_convs.blocks.2.conv_1.bias") == (
        "tapir/~/extra_convs/conv2_d_5",
        "b",
    )
    assert tapir_weights.haiku_key("extra_convs.blocks.3.layer_norm.weight") == (
        "tapir/~/extra_convs/layer_norm_3",
        "scale",
    )
    assert tapir_weights.haiku_key("torch_cost_volume_track_mods.hid3.weight") == (
        "tapir/~/cost_volume_occlusion_1",
        "w",
    )

    params = tapir_weights.state_dict_to_haiku_params(numpy_weights)
    assert sum(len(p) for p in params.values()) == len(numpy_weights) == 218
    conv = params["tapir/~/resnet/~/initial_conv"]["w"]  # HWIO
    assert conv.shape == (7, 7, 3, 64)
    assert conv[1, 2, 0, 5] == numpy_weights["resnet_torch.initial_conv.weight"][5, 0, 1, 2]
    linear = params["tapir/~/pips_mlp_mixer/linear"]["w"]  # [in, out]
    assert linear.shape == (535, 512)
    assert linear[7, 3] == numpy_weights["torch_pips_mixer.linear.weight"][3, 7]
    depthwise = params["tapir/~/pips_mlp_mixer/block_1/mlp1_up"]["w"]  # [k, 1, C*m]
    assert depthwise.shape == (3, 1, 2048)
    assert depthwise[2, 0, 9] == numpy_weights["torch_pips_mixer.blocks.1.mlp1_up.weight"][9, 0, 2]


def test_jax_checkpoint_converts_back_exactly(numpy_weights, tmp_path):
    params = tapir_weights.state_dict_to_haiku_params(numpy_weights)
    path = _save_npy(tmp_path / "bootstapir_checkpoint_v2.npy", {"params": params, "state": {}})
    converted = tapir_weights.read_tapir_state_dict(path)
    assert list(converted) == list(numpy_weights)
    for name, value in numpy_weights.items():
        assert converted[name].shape == value.shape, name
        np.testing.assert_array_equal(converted[name].numpy(), value, err_msg=name)


def test_jax_checkpoint_missing_array_is_named(numpy_weights):
    params = tapir_weights.state_dict_to_haiku_params(numpy_weights)
    del params["tapir/~/occlusion_out"]["b"]
    with pytest.raises(CheckpointError, match="lacks 1 arrays of TAPIR: tapir/~/occlusion_out/b"):
        tapir_weights.haiku_params_to_state_dict(params, list(numpy_weights))


def test_npy_pickle_with_foreign_objects_is_refused(tmp_path):
    path = _save_npy(tmp_path / "evil.npy", {"params": {}, "state": datetime.date(2024, 1, 1)})
    with pytest.raises(CheckpointError, match="could not read"):
        tapir_weights.read_tapir_state_dict(path)


@pytest.mark.parametrize("content", [b"\x93NUMPY\x01\x00garbage", b"PK\x03\x04 not a zip", b""])
def test_corrupt_files_raise_checkpoint_error(tmp_path, content):
    path = tmp_path / "corrupt.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError):
        tapir_weights.load_tapir(path, download=False)


def test_truncated_torch_checkpoint_raises_checkpoint_error(pt_file, tmp_path):
    path = tmp_path / "truncated.pt"
    path.write_bytes(pt_file.read_bytes()[:100_000])
    with pytest.raises(CheckpointError, match="corrupt"):
        tapir_weights.read_tapir_state_dict(path)


def test_wrong_keys_raise_checkpoint_error(numpy_weights, tmp_path):
    state = {k: torch.from_numpy(v) for k, v in numpy_weights.items()}
    state["torch_pips_mixer.linear_2.weight"] = state.pop("torch_pips_mixer.linear_1.weight")
    path = tmp_path / "renamed.pt"
    torch.save(state, path)
    with pytest.raises(
        CheckpointError, match="missing keys: torch_pips_mixer.linear_1.weight"
    ) as err:
        tapir_weights.load_tapir(path, download=False)
    assert "unexpected keys: torch_pips_mixer.linear_2.weight" in str(err.value)


def test_wrong_shape_raises_checkpoint_error(numpy_weights):
    state = {k: torch.from_numpy(v) for k, v in numpy_weights.items()}
    state["torch_pips_mixer.linear.weight"] = state["torch_pips_mixer.linear.weight"][:, :500]
    with torch.device("meta"):
        model = TAPIR()
    with pytest.raises(
        CheckpointError, match=r"wrong shapes: torch_pips_mixer.linear.weight \(512, 500\)"
    ):
        tapir_weights.load_tapir_state_dict(model, state)


def test_offline_without_file_raises_weights_not_found(tmp_path, monkeypatch):
    monkeypatch.setenv("STEREO4D_CACHE", str(tmp_path))
    calls = []

    def offline(url, dest, timeout_s=60.0):
        calls.append(url)
        try:
            raise OSError("network is unreachable")
        except OSError as exc:
            raise WeightsNotFoundError(f"could not download {url}") from exc

    monkeypatch.setattr(tapir_weights, "download_url", offline)
    with pytest.raises(WeightsNotFoundError, match="network is unreachable") as err:
        tapir_weights.find_tapir_checkpoint()
    assert calls == [tapir_weights.TORCH_CHECKPOINT_URL, tapir_weights.JAX_CHECKPOINT_URL]
    assert str(tmp_path / "tapir") in str(err.value) and tapir_weights.TORCH_CHECKPOINT_URL in str(
        err.value
    )
    with pytest.raises(WeightsNotFoundError, match="no TAPIR checkpoint in"):
        tapir_weights.find_tapir_checkpoint(download=False)
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        tapir_weights.find_tapir_checkpoint(tmp_path / "nowhere.pt")
    assert len(calls) == 2  # neither of the last two tried the network


def test_download_goes_to_cache_and_cache_is_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("STEREO4D_CACHE", str(tmp_path))
    calls = []

    def fake_download(url, dest, timeout_s=60.0):
        calls.append(url)
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        Path(dest).write_bytes(b"checkpoint")
        return Path(dest)

    monkeypatch.setattr(tapir_weights, "download_url", fake_download)
    expected = tmp_path / "tapir" / "bootstapir_checkpoint_v2.pt"
    assert tapir_weights.find_tapir_checkpoint() == expected
    assert tapir_weights.find_tapir_checkpoint() == expected
    assert calls == [tapir_weights.TORCH_CHECKPOINT_URL]

    expected.unlink()
    jax_file = tmp_path / "tapir" / "bootstapir_checkpoint_v2.npy"
    jax_file.write_bytes(b"x")
    assert tapir_weights.find_tapir_checkpoint(download=False) == jax_file
