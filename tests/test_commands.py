"""The top-level scripts and the stereo4d-* console commands are the same entry points."""

import importlib
import re
from importlib.metadata import entry_points

import pytest

from tests.conftest import REPO_ROOT

SCRIPTS = ("make_synthetic_clip", "rectify", "inference_raft", "tracking", "segmentation",
           "track_optimization", "evaluate", "view", "batch_run", "estimate_cameras")


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_delegates_to_the_package(name):
    assert (REPO_ROOT / f"{name}.py").is_file()
    script = importlib.import_module(name)
    command = importlib.import_module(f"stereo4d.commands.{name}")
    assert script.main is command.main
    assert len((REPO_ROOT / f"{name}.py").read_text().splitlines()) <= 30  # a thin entry point


def test_console_commands_are_registered(capsys, monkeypatch):
    commands = {ep.name: ep for ep in entry_points(group="console_scripts")
                if ep.name.startswith("stereo4d-")}
    targets = {ep.value.split(":")[0].rsplit(".", 1)[-1] for ep in commands.values()}
    # pyproject declares every script; an installed environment may predate the newest ones.
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    section = pyproject.split("[project.scripts]", 1)[1].split("\n[", 1)[0]
    assert set(re.findall(r'"stereo4d\.commands\.(\w+):cli"', section)) == set(SCRIPTS)
    assert targets <= set(SCRIPTS)
    monkeypatch.setattr("sys.argv", ["stereo4d-rectify", "--vid=abc_1", "--npz_folder=/nonexistent"])
    with pytest.raises(SystemExit) as exit_info:
        commands["stereo4d-rectify"].load()()
    assert exit_info.value.code == 2
    assert "error: missing npz: /nonexistent/abc_1.npz" in capsys.readouterr().err
