"""Benchmark of the track optimisation (stereo4d.track_opt.optimize_tracks).

Prints tracks per second for a large synthetic clip (default 20,000 tracks x 64 frames) and the
time of the reference-sized call (300 tracks x 48 frames), to compare with the reference's
6.35 s (second call; 7.84 s first call) on 2 CPU cores, i.e. ~47 tracks/s.

Synthetic input resembles tests/parity/track_opt_golden.npz: half static points, half moving
with a velocity plus a sinusoid, a camera walking forward with small rotations (60 deg hfov,
512 x 512), depth noise along each ray (sigma 0.004 * dist^2), occlusion spans and dropouts.

Per clip, per process (a batch runs each clip's stage in a fresh process): the first
optimize_tracks call of a process with JAX's persistent compilation cache off (compiles: today's
per-process cost), cold (empty cache: compiles and writes) and warm (a second process, another
clip length in the same frame bucket: loads the executable). ``--skip_per_process`` skips it.

Usage: .venv/bin/python benchmarks/bench_track_opt.py [--tracks 20000] [--frames 64]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from stereo4d.geometry import project_frames
from stereo4d.motion import scene_motion_displacement_px
from stereo4d.track_opt import TrackOptConfig, camera_centres, optimize_tracks

REFERENCE_SECONDS_300x48 = 6.35
"""Reference optimize_tracks on 300 x 48, second call, 2 cores (tests/parity/track_opt_notes.json)."""
REFERENCE_SECONDS_300x48_FIRST = 7.84
"""Same, first call in the process."""
HFOV_DEG = 60.0
IMAGE_SIZE_PX = 512
DEPTH_NOISE_PER_M2 = 0.004
"""Depth noise sigma along the ray = this * distance^2 (metres)."""


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    cy, sy, cp, sp, cr, sr = (f(a) for a in (yaw, pitch, roll) for f in (np.cos, np.sin))
    r_yaw = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    r_pitch = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    r_roll = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return r_yaw @ r_pitch @ r_roll


def synthetic_clip(num_tracks: int, num_frames: int, seed: int = 0):
    """Returns track3d [N, T, 3], visible [N, T], world_to_camera [T, 3, 4], intr, imh, imw."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_frames)
    cam_to_world_rot = np.stack(
        [
            _rotation(0.05 * np.sin(0.2 * k), 0.03 * np.sin(0.3 * k), 0.02 * np.sin(0.25 * k))
            for k in t
        ]
    )
    centres = np.stack([0.02 * np.sin(0.1 * t), 0.01 * np.sin(0.15 * t), 0.03 * t], axis=-1)
    rot_w2c = np.swapaxes(cam_to_world_rot, 1, 2)
    world_to_camera = np.concatenate([rot_w2c, -(rot_w2c @ centres[:, :, None])], axis=2)

    start = np.stack(
        [
            rng.uniform(-3, 3, num_tracks),
            rng.uniform(-2, 2, num_tracks),
            rng.uniform(3, 8, num_tracks),
        ],
        axis=-1,
    )
    moving = np.arange(num_tracks) % 2 == 1
    velocity = rng.normal(0, 0.03, (num_tracks, 3)) * moving[:, None]
    wobble = rng.normal(0, 0.1, (num_tracks, 3)) * moving[:, None]
    gt = (
        start[:, None]
        + velocity[:, None] * t[None, :, None]
        + wobble[:, None] * np.sin(0.3 * t)[None, :, None]
    )

    ray = gt - centres[None]
    dist = np.linalg.norm(ray, axis=-1, keepdims=True)
    noise = rng.normal(0, 1, dist.shape) * DEPTH_NOISE_PER_M2 * dist**2
    track3d = gt + ray / dist * noise

    fx = 0.5 / math.tan(math.radians(HFOV_DEG / 2))
    intr = (fx, fx, 0.5, 0.5)
    _, in_view, _ = project_frames(gt, world_to_camera, intr, IMAGE_SIZE_PX, IMAGE_SIZE_PX)
    visible = in_view.copy()
    span_start = rng.integers(0, num_frames, num_tracks)
    span_len = rng.integers(0, num_frames // 4, num_tracks)
    visible &= ~((t[None] >= span_start[:, None]) & (t[None] < (span_start + span_len)[:, None]))
    visible &= rng.uniform(size=visible.shape) > 0.03  # 1-frame dropouts
    # Invisible entries sit on an occluder, 60 % of the way along the ray (finite, as in the pipeline).
    occluded = centres[None] + 0.6 * (track3d - centres[None])
    track3d = np.where(visible[..., None], track3d, occluded)
    assert np.allclose(camera_centres(world_to_camera), centres)
    return track3d, visible, world_to_camera, intr, IMAGE_SIZE_PX, IMAGE_SIZE_PX


def _timed(fn, *args, **kwargs):
    """Returns (output, wall seconds, CPU seconds of this process)."""
    tic, cpu_tic = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - tic, time.process_time() - cpu_tic


PER_PROCESS_CLIPS = ((1000, 45), (1000, 47))
"""(tracks, frames) of the cold and the warm process: two lengths sharing the 48-frame bucket."""


def _one_clip_process(tracks: int, frames: int, cache_dir: str) -> None:
    """Child process: times its first optimize_tracks call (pipeline settings), prints JSON."""
    from stereo4d.jax_cache import cache_events, enable_compilation_cache

    enable_compilation_cache(cache_dir)
    clip = synthetic_clip(tracks, frames, seed=3)
    _, first, first_cpu = _timed(optimize_tracks, *clip,
                                 config=TrackOptConfig(dynamic_edges="inside"))
    print(json.dumps({"first_call_s": first, "first_call_cpu_s": first_cpu,
                      "process_cpu_s": time.process_time(), **cache_events()}))


def per_process_figures() -> None:
    """Per-clip seconds of the first call in a fresh process: cache off, cold, warm."""
    print(f"== per clip, one process each ({PER_PROCESS_CLIPS[0][0]} tracks; pipeline settings) ==")
    with tempfile.TemporaryDirectory() as tmp:
        runs = (("cache off", "none", PER_PROCESS_CLIPS[0]),
                ("cold cache (1st process)", str(Path(tmp) / "jax"), PER_PROCESS_CLIPS[0]),
                ("warm cache (2nd process)", str(Path(tmp) / "jax"), PER_PROCESS_CLIPS[1]))
        for label, cache_dir, (tracks, frames) in runs:
            tic = time.perf_counter()
            out = subprocess.run(
                [sys.executable, __file__, "--one_clip", str(tracks), str(frames), cache_dir],
                capture_output=True, text=True, check=True)
            process_s = time.perf_counter() - tic
            record = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{label:>26}: {frames} frames, optimize_tracks {record['first_call_s']:.2f} s "
                  f"wall / {record['first_call_cpu_s']:.2f} s CPU, process {process_s:.1f} s "
                  f"wall / {record['process_cpu_s']:.1f} s CPU (cache hits {record['hits']}, "
                  f"misses {record['misses']})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=20000)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=TrackOptConfig().batch_size)
    parser.add_argument("--workers", type=int, default=TrackOptConfig().num_workers)
    parser.add_argument("--skip_per_process", action="store_true",
                        help="skip the per-process cold / warm compilation-cache figures")
    parser.add_argument("--one_clip", nargs=3, metavar=("TRACKS", "FRAMES", "CACHE_DIR"),
                        help=argparse.SUPPRESS)  # child process of per_process_figures
    args = parser.parse_args()
    if args.one_clip:
        _one_clip_process(int(args.one_clip[0]), int(args.one_clip[1]), args.one_clip[2])
        return
    config = TrackOptConfig(batch_size=args.batch_size, num_workers=args.workers)
    print(
        f"load average before: {os.getloadavg()[0]:.2f} (the machine may be shared; CPU time "
        "is less sensitive to that than wall time)"
    )

    print("== reference-sized call: 300 tracks x 48 frames ==")
    clip = synthetic_clip(300, 48, seed=1)
    _, first, _ = _timed(optimize_tracks, *clip, config=config)
    _, second, second_cpu = _timed(optimize_tracks, *clip, config=config)
    print(
        f"first call {first:.3f} s (reference {REFERENCE_SECONDS_300x48_FIRST} s), "
        f"second call {second:.3f} s wall, {second_cpu:.3f} s CPU "
        f"(reference {REFERENCE_SECONDS_300x48} s): "
        f"speed-up {REFERENCE_SECONDS_300x48_FIRST / first:.1f}x / "
        f"{REFERENCE_SECONDS_300x48 / second:.1f}x"
    )

    print(f"== {args.tracks} tracks x {args.frames} frames, batch {config.batch_size} ==")
    clip = synthetic_clip(args.tracks, args.frames, seed=2)
    _, motion_s, motion_cpu = _timed(scene_motion_displacement_px, *clip)
    result, first, _ = _timed(optimize_tracks, *clip, config=config)
    _, second, second_cpu = _timed(optimize_tracks, *clip, config=config)
    reference_rate = 300 / REFERENCE_SECONDS_300x48
    rate = args.tracks / second
    print(
        f"first call (with compile) {first:.2f} s, second call {second:.2f} s wall, "
        f"{second_cpu:.2f} s CPU (of which scene motion {motion_s:.2f} s wall, "
        f"{motion_cpu:.2f} s CPU)"
    )
    print(
        f"throughput {rate:.0f} tracks/s ({rate / reference_rate:.1f}x the reference's "
        f"{reference_rate:.0f} tracks/s at 300 x 48; ours at {args.frames} frames); "
        f"{args.tracks / second_cpu:.0f} tracks per CPU-second"
    )
    valid = result.visible
    print(f"valid entries {valid.mean():.1%}, NaN on valid {np.isnan(result.track3d[valid]).sum()}")
    if not args.skip_per_process:
        per_process_figures()


if __name__ == "__main__":
    main()
