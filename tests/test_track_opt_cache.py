"""Compile once per batch: frame buckets (padding that does not change results) and JAX's
persistent compilation cache shared by processes."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np

from stereo4d import jax_cache, track_opt
from stereo4d.track_opt import TrackOptConfig, frame_bucket, optimize_tracks
from tests.conftest import REPO_ROOT

PARITY_DIR = Path(__file__).parent / "parity"
#: Padding adds hidden frames (zero terms) to the sums over frames: float32 round-off only.
PADDING_TOL_M = 1e-5


def test_frame_buckets_cover_every_length_with_at_most_a_quarter_more():
    lengths = np.arange(1, 2000)
    buckets = np.array([frame_bucket(int(t)) for t in lengths])
    assert np.all(buckets >= lengths) and np.all(np.diff(buckets) >= 0)
    long = lengths > track_opt.MIN_FRAME_BUCKET
    assert np.all(buckets[long] <= 1.25 * lengths[long])
    assert len(np.unique(buckets)) <= 40  # 2000 lengths share about 4 shapes per octave
    assert [frame_bucket(t) for t in (10, 48, 49, 200)] == [16, 48, 56, 224]


def test_frame_padding_does_not_change_results(monkeypatch):
    """45 frames run padded to 48 equal the same clip run at its own length."""
    with np.load(PARITY_DIR / "track_opt_golden.npz") as z:
        golden = {k: z[k] for k in z.files}
    frames, tracks = 45, 60
    fx = 0.5 / math.tan(math.radians(float(golden["hfov_deg"]) / 2))
    args = (golden["track3d"][:tracks, :frames], golden["visible_list"][:tracks, :frames],
            golden["extrs"][:frames], (fx, fx, 0.5, 0.5), int(golden["imh"]), int(golden["imw"]))
    config = TrackOptConfig(dynamic_edges="inside")
    padded = optimize_tracks(*args, config)
    assert frame_bucket(frames) == 48
    monkeypatch.setattr(track_opt, "frame_bucket", lambda num_frames: num_frames)
    own_length = optimize_tracks(*args, config)
    mask = own_length.visible
    np.testing.assert_array_equal(padded.visible, mask)
    assert np.all(np.isnan(padded.track3d[~mask]))
    np.testing.assert_allclose(padded.track3d[mask], own_length.track3d[mask], rtol=0,
                               atol=PADDING_TOL_M)
    # The optimisation moved points far beyond that tolerance: the comparison has teeth.
    moved = np.linalg.norm(padded.track3d - args[0], axis=-1)[mask]
    assert np.median(moved) > 100 * PADDING_TOL_M


_PROCESS = """
import json, sys
from stereo4d.jax_cache import cache_events, enable_compilation_cache
enable_compilation_cache(sys.argv[1])
from benchmarks.bench_track_opt import synthetic_clip
from stereo4d.track_opt import TrackOptConfig, optimize_tracks
clip = synthetic_clip(int(sys.argv[2]), int(sys.argv[3]), seed=1)
optimize_tracks(*clip, config=TrackOptConfig(dynamic_edges="inside"))
print(json.dumps(cache_events()))
"""


def _process_events(cache_dir: Path, tracks: int, frames: int) -> dict:
    out = subprocess.run([sys.executable, "-c", _PROCESS, str(cache_dir), str(tracks), str(frames)],
                         cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_second_process_loads_instead_of_compiling(tmp_path):
    """A clip of another length in the same bucket, in a new process: every executable is a hit."""
    cache_dir = tmp_path / "jax"
    first = _process_events(cache_dir, 150, 45)
    assert first["misses"] >= 1 and first["hits"] == 0
    assert any(p.name.startswith("jit__optimize_batch") for p in cache_dir.iterdir())
    second = _process_events(cache_dir, 200, 47)  # batch shape 128 x 48 again
    assert second["misses"] == 0 and second["hits"] == first["misses"]


def test_cache_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv(jax_cache.CACHE_ENV, raising=False)
    monkeypatch.setenv("STEREO4D_CACHE", str(tmp_path / "c"))
    assert jax_cache.resolve_cache_dir() == tmp_path / "c" / "jax"
    monkeypatch.setenv(jax_cache.CACHE_ENV, str(tmp_path / "env"))
    assert jax_cache.resolve_cache_dir() == tmp_path / "env"
    assert jax_cache.resolve_cache_dir(str(tmp_path / "flag")) == tmp_path / "flag"
    assert jax_cache.resolve_cache_dir("none") is None
    monkeypatch.setenv(jax_cache.CACHE_ENV, "off")
    assert jax_cache.resolve_cache_dir() is None


    assert jax_cache.enable_compilation_cache("none") is None  # off: JAX is left untouched
