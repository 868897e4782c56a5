"""CPU speed of the native neural backends (SEA-RAFT, BootsTAPIR) at the pipeline's sizes.

The official weights cannot be downloaded here; the networks run with the
deterministic weights of the parity kit (same architecture, so the same
compute). Prints seconds per frame for SEA-RAFT stereo (forward + backward flow
of a 512x512 pair, the reference's half-size step) and for BootsTAPIR (feature
grids of a 512x512 video plus a chunk of queries), and the projection to the
demo clip (48 frames, ~64,000 tracks after pruning).

Usage: .venv/bin/python benchmarks/bench_neural.py [--frames=4] [--queries=1024]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from stereo4d.backends.sea_raft_flow import sea_raft_stereo_flows_batched
from stereo4d.backends.tapir_tracker import build_tapir_tracker
from stereo4d.weights.sea_raft import load_sea_raft
from tests.conftest import PARITY_DIR, load_make_weights

#: Tracks and frames of the demo clip, for the projection line.
DEMO_FRAMES, DEMO_TRACKS = 48, 64_000


def _deterministic_checkpoint(spec_name: str, folder: Path) -> Path:
    make_weights = load_make_weights()
    state = make_weights.deterministic_state_dict(make_weights.load_spec(PARITY_DIR / spec_name))
    path = folder / (spec_name.replace("_state_dict_spec.json", "") + ".pth")
    torch.save({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()}, path)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--queries", type=int, default=1024)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    video = rng.integers(0, 255, size=(args.frames, 512, 512, 3), dtype=np.uint8)
    right = np.roll(video, -6, axis=2)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    with tempfile.TemporaryDirectory() as tmp:
        raft = load_sea_raft(_deterministic_checkpoint("sea_raft_M_state_dict_spec.json", Path(tmp)),
                             device="cpu")
        sea_raft_stereo_flows_batched(raft, video[:1], right[:1], "cpu", frames_per_call=1)
        t0 = time.perf_counter()
        sea_raft_stereo_flows_batched(raft, video, right, "cpu", frames_per_call=1)
        raft_s = (time.perf_counter() - t0) / args.frames
        del raft
        tracker = build_tapir_tracker(
            _deterministic_checkpoint("tapir_bootstap_state_dict_spec.json", Path(tmp)),
            device="cpu", download=False, progress=False)
        timings = {}
        for num in (args.queries // 4, args.queries):  # t(n) = grids + n * per-query cost
            queries = np.stack([rng.integers(0, args.frames, num), rng.uniform(0, 512, num),
                                rng.uniform(0, 512, num)], axis=-1)
            t0 = time.perf_counter()
            tracker.track(video, queries)
            timings[num] = time.perf_counter() - t0
    (n1, t1), (n2, t2) = sorted(timings.items())
    per_query_s = max(t2 - t1, 0.0) / (n2 - n1)  # per query, all args.frames frames
    grids_per_frame_s = max(t1 - n1 * per_query_s, 0.0) / args.frames
    demo_s = DEMO_FRAMES * grids_per_frame_s + DEMO_TRACKS * per_query_s * DEMO_FRAMES / args.frames
    print("| backend | work | seconds | projection to the demo clip |")
    print("|---|---|---:|---:|")
    print(f"| sea-raft | one 512x512 frame (fwd + bwd) | {raft_s:.2f} | "
          f"{raft_s * DEMO_FRAMES / 60:.1f} min for {DEMO_FRAMES} frames |")
    print(f"| bootstapir | feature grids of one 512x512 frame | {grids_per_frame_s:.2f} | |")
    print(f"| bootstapir | 1000 queries over {args.frames} frames | {1000 * per_query_s:.2f} | "
          f"~{demo_s / 60:.0f} min for {DEMO_TRACKS} tracks x {DEMO_FRAMES} frames |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
