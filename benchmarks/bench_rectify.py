"""Rectify speed: frames per second of rectify.py's work next to a bare decode of the same video.

Usage: .venv/bin/python benchmarks/bench_rectify.py [--vid=synthvr180demo_66667]
Renders the demo clip first when it is missing.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from stereo4d.io import ClipPaths, load_dataset_npz
from stereo4d.stages import rectify
from stereo4d.videoio import iter_video_frames, probe_video


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vid", default="synthvr180demo_66667")
    args = parser.parse_args()
    paths = ClipPaths(args.vid)
    if not paths.npz.is_file():
        subprocess.run([sys.executable, "make_synthetic_clip.py", f"--vid={args.vid}"],
                       cwd=REPO_ROOT, check=True)
    meta = load_dataset_npz(paths.npz)
    info = probe_video(paths.raw_video)
    wanted = rectify.frame_indices(meta["timestamps"], info.fps)

    t0 = time.perf_counter()
    decoded = sum(1 for _ in iter_video_frames(paths.raw_video, start_frame=int(wanted[0])))
    decode_s = time.perf_counter() - t0

    results = {}
    with tempfile.TemporaryDirectory() as out:
        for label, equirect in (("perspective views only", False), ("all four videos", True)):
            cfg = rectify.RectifyConfig(vid=args.vid, npz_folder=str(paths.npz_folder),
                                        raw_video_folder=str(paths.raw_video_folder),
                                        output_folder=out, min_equirect_height=0,
                                        write_equirect=equirect)
            t0 = time.perf_counter()
            summary = rectify.run(cfg)
            results[label] = (summary["frames"], time.perf_counter() - t0)

    print(f"\nvideo {paths.raw_video}: {info.width}x{info.height} @ {info.fps:g} fps")
    print("| what | frames | seconds | frames/s |")
    print("|---|---:|---:|---:|")
    print(f"| bare decode (imageio-ffmpeg, from the first wanted frame) | {decoded} | "
          f"{decode_s:.2f} | {decoded / decode_s:.1f} |")
    for label, (frames, secs) in results.items():
        print(f"| rectify, {label} | {frames} | {secs:.2f} | {frames / secs:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
