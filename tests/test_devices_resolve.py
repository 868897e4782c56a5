"""``resolve_device``: explicit names pass through; ``auto`` follows torch's CUDA check."""

from __future__ import annotations

import torch

from stereo4d.devices import resolve_device


def test_explicit_names_pass_through():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("cuda") == "cuda"
    assert resolve_device("meta") == "meta"


def test_auto_follows_torch(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"


def test_backends_do_not_import_stages():
    """Foundations and backends sit below the stages: no import reaches up."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "stereo4d"
    lower = [root / "backends", root / "models", root / "weights", root / "io"]
    offenders = [str(p.relative_to(root)) for d in lower for p in d.rglob("*.py")
                 if "stereo4d.stages" in p.read_text()]
    assert offenders == []
