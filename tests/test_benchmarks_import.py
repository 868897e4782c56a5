"""Every benchmark script imports cleanly (they only run under __main__), so none rots unseen."""

import importlib.util

import pytest

from tests.conftest import REPO_ROOT

SCRIPTS = sorted((REPO_ROOT / "benchmarks").glob("*.py"))


def test_there_are_benchmarks():
    assert {p.name for p in SCRIPTS} >= {"run_all.py", "bench_rectify.py", "bench_stereo.py",
                                         "bench_tracking.py", "bench_filtering.py",
                                         "bench_optimization.py", "bench_track_opt.py"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_benchmark_imports_and_has_main(script):
    spec = importlib.util.spec_from_file_location(f"bench_{script.stem}", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert callable(getattr(module, "main", None)), f"{script.name} has no main()"
