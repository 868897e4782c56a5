"""Loading SEA-RAFT checkpoints: file formats, Hub-style folders, errors, offline Hub.

Most cases use a small SeaRaftConfig (same layer names, narrow widths) so the files
stay small; one case writes a full spring-M Hub-style safetensors file.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub
import huggingface_hub.constants
import pytest
import torch
from huggingface_hub.errors import RemoteEntryNotFoundError
from safetensors.torch import save_file

from stereo4d.models.sea_raft import SeaRaft, SeaRaftConfig
from stereo4d.weights import CheckpointError, WeightsNotFoundError
from stereo4d.weights.sea_raft import (
    DEFAULT_HUB_ID,
    find_sea_raft_checkpoint,
    load_sea_raft,
    read_sea_raft_state_dict,
)

TINY = SeaRaftConfig(
    dim=16, block_dims=(8, 16, 32), initial_dim=8, num_blocks=1, pretrain="resnet18"
)
NUM_ALIASES = 20  # {cnet,fnet}.layer{2,3}.0.downsample.1.{5 entries}
ALIAS_MARK = ".downsample.1."


def _random_state(config: SeaRaftConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with distinct random values everywhere (also in BatchNorm buffers)."""
    torch.manual_seed(seed)
    model = SeaRaft(config)
    with torch.no_grad():
        for tensor in model.state_dict(keep_vars=True).values():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand_like(tensor) + 0.5)
            else:
                tensor.fill_(7)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _hub_style(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The Hub file's content: the downsample.1.* duplicates of bn3.* dropped."""
    return {k: v.contiguous() for k, v in state.items() if ALIAS_MARK not in k}


def _assert_loaded(model: SeaRaft, state: dict[str, torch.Tensor]) -> None:
    loaded = model.state_dict()
    assert list(loaded) == list(state)
    for name, value in state.items():
        assert torch.equal(loaded[name], value), name
    assert not model.training


@pytest.fixture(scope="module")
def tiny_state() -> dict[str, torch.Tensor]:
    return _random_state(TINY)


def test_pth_state_dict_loads_exactly(tmp_path, tiny_state):
    path = tmp_path / "sea_raft.pth"
    torch.save(tiny_state, path)
    _assert_loaded(load_sea_raft(path, config=TINY), tiny_state)


def test_data_parallel_prefix_is_stripped(tmp_path, tiny_state):
    path = tmp_path / "ddp.pth"
    torch.save({"module." + k: v for k, v in tiny_state.items()}, path)
    assert list(read_sea_raft_state_dict(path)) == list(tiny_state)


def test_safetensors_without_aliases_fills_them_from_bn3(tmp_path, tiny_state):
    hub_state = _hub_style(tiny_state)
    assert len(tiny_state) - len(hub_state) == NUM_ALIASES
    path = tmp_path / "weights.safetensors"
    save_file(hub_state, str(path))
    model = load_sea_raft(path, config=TINY)
    _assert_loaded(model, tiny_state)
    loaded = model.state_dict()
    assert torch.equal(
        loaded["fnet.layer3.0.downsample.1.running_var"],
        tiny_state["fnet.layer3.0.bn3.running_var"],
    )


def test_full_size_hub_folder_with_config_json(tmp_path):
    state = _random_state(SeaRaftConfig(), seed=1)
    folder = tmp_path / "Tartan-C-T-TSKH-spring540x960-M"
    folder.mkdir()
    save_file(_hub_style(state), str(folder / "model.safetensors"))
    # A config.json never changes the architecture.
    (folder / "config.json").write_text(json.dumps({"args": {"dim": 64, "iters": 12}}))
    assert find_sea_raft_checkpoint(folder) == folder / "model.safetensors"
    model = load_sea_raft(folder)
    assert len(model.state_dict()) == 472
    _assert_loaded(model, state)


def test_hub_folder_with_pytorch_model_bin(tmp_path, tiny_state):
    torch.save(tiny_state, tmp_path / "pytorch_model.bin")
    _assert_loaded(load_sea_raft(tmp_path, config=TINY), tiny_state)


@pytest.mark.parametrize("name", ["corrupt.pth", "corrupt.safetensors", "pytorch_model.bin"])
def test_corrupt_file_raises_checkpoint_error(tmp_path, tiny_state, name):
    path = tmp_path / name
    torch.save(tiny_state, tmp_path / "good.pth")
    path.write_bytes((tmp_path / "good.pth").read_bytes()[:1000])  # truncated
    with pytest.raises(CheckpointError, match="could not read SEA-RAFT checkpoint"):
        load_sea_raft(path, config=TINY)


def test_non_state_dict_content_is_refused(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(CheckpointError, match="does not hold a state dict"):
        read_sea_raft_state_dict(path)


def test_renamed_key_is_reported_as_missing_and_unexpected(tmp_path, tiny_state):
    state = dict(tiny_state)
    state["fnet.final_conv.kernel"] = state.pop("fnet.final_conv.weight")
    path = tmp_path / "renamed.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as info:
        load_sea_raft(path, config=TINY)
    message = str(info.value)
    assert "1 missing keys: fnet.final_conv.weight" in message
    assert "1 unexpected keys: fnet.final_conv.kernel" in message


def test_wrong_shape_is_reported(tmp_path, tiny_state):
    state = dict(tiny_state)
    state["init_conv.bias"] = torch.zeros(3)
    path = tmp_path / "shape.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"init_conv.bias \(3,\) \(model \(32,\)\)"):
        load_sea_raft(path, config=TINY)


def test_checkpoint_of_other_config_is_refused(tmp_path, tiny_state):
    path = tmp_path / "tiny.pth"
    torch.save(tiny_state, path)
    with pytest.raises(CheckpointError, match="missing keys"):
        load_sea_raft(path)  # spring-M has more blocks (resnet34 layout)


def test_missing_path_and_empty_folder(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        find_sea_raft_checkpoint(tmp_path / "nothing.pth")
    with pytest.raises(WeightsNotFoundError, match="model.safetensors"):
        find_sea_raft_checkpoint(tmp_path)


@pytest.fixture
def offline_hub(monkeypatch, tmp_path) -> Path:
    """HF_HUB_OFFLINE=1 with an empty, private Hugging Face cache; returns the cache dir."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    cache = tmp_path / "hf_cache"
    cache.mkdir()
    return cache


def test_offline_without_cache_raises_weights_not_found(offline_hub):
    with pytest.raises(WeightsNotFoundError) as info:
        load_sea_raft(None, hub_id=DEFAULT_HUB_ID, hub_cache_dir=offline_hub)
    message = str(info.value)
    assert f"hf download {DEFAULT_HUB_ID} model.safetensors" in message
    assert "--path" in message
    assert info.value.__cause__ is None  # a message, not a chained library traceback


@pytest.mark.parametrize("filename", ["model.safetensors", "pytorch_model.bin"])
def test_offline_with_cached_hub_file_loads(offline_hub, tiny_state, filename):
    # The layout huggingface_hub writes: models--{owner}--{name}/{refs/main, snapshots/<rev>/}.
    repo_dir = offline_hub / ("models--" + DEFAULT_HUB_ID.replace("/", "--"))
    revision = "0123456789abcdef0123456789abcdef01234567"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(revision)
    snapshot = repo_dir / "snapshots" / revision
    snapshot.mkdir(parents=True)
    if filename.endswith(".safetensors"):
        save_file(_hub_style(tiny_state), str(snapshot / filename))
    else:
        torch.save(tiny_state, snapshot / filename)
    model = load_sea_raft(None, config=TINY, hub_cache_dir=offline_hub)
    _assert_loaded(model, tiny_state)


def _fake_hub(monkeypatch, primary_error: Exception, bin_path: Path) -> list[tuple[str, dict]]:
    """Replaces hf_hub_download: model.safetensors fails, pytorch_model.bin is ``bin_path``."""
    calls = []

    def fake_download(repo_id, filename, **kwargs):
        calls.append((filename, kwargs))
        if filename == "model.safetensors":
            raise primary_error
        return str(bin_path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    return calls


def test_hub_repo_without_safetensors_downloads_the_bin(monkeypatch, tmp_path):
    stub_response = SimpleNamespace(headers={}, request=None)
    missing = RemoteEntryNotFoundError("404: no model.safetensors", response=stub_response)
    calls = _fake_hub(monkeypatch, missing, tmp_path / "pytorch_model.bin")
    assert find_sea_raft_checkpoint(None) == tmp_path / "pytorch_model.bin"
    assert [name for name, _ in calls] == ["model.safetensors", "pytorch_model.bin"]
    assert not calls[1][1].get("local_files_only", False)  # a real download


def test_network_failure_only_looks_for_the_bin_in_the_cache(monkeypatch, tmp_path):
    calls = _fake_hub(monkeypatch, ConnectionError("no route to host"), tmp_path / "x.bin")
    find_sea_raft_checkpoint(None)
    assert calls[1] == ("pytorch_model.bin", {"cache_dir": None, "local_files_only": True})
