"""Rectify speed: frames per second of rectify.py's work next to a bare decode of the same video.

Also times the reference's method on the same clip: a seek per timestamp with OpenCV's
VideoCapture (``CAP_PROP_POS_MSEC``), then two remaps per eye (rectify the equirect, then
crop the perspective view from it), without encoding.

Usage: .venv/bin/python benchmarks/bench_rectify.py [--vid=synthvr180demo_66667] [--vr180_size]
    [--repeats=2]
Renders the demo clip first when it is missing. ``--vr180_size`` renders and uses a 12-frame
clip at real VR180 size instead (3840x1920 side by side, 180-degree eyes), starting 2 s
into its video as real clips start inside long videos. Each figure is the best of
``--repeats`` interleaved runs (the machine may be shared). Also prints the fidelity (PSNR
against the decoded source frames) of the raw equirect preview at the default preview preset
and at the views' preset.
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

import cv2
import numpy as np

from stereo4d import geometry
from stereo4d.io import ClipPaths, load_dataset_npz
from stereo4d.stages import rectify
from stereo4d.synthetic import SyntheticClipConfig, make_synthetic_clip
from stereo4d.videoio import DEFAULT_PRESET, iter_video_frames, probe_video, read_video

#: The real-size clip of ``--vr180_size``.
VR180_VID, VR180_FRAMES, VR180_EYE_PX = "synthvr180full_2000000", 12, 1920
#: Perspective view of the pipeline.
VIEW_PX, VIEW_HFOV_DEG = 512, 60.0


def reference_method_seconds(paths: ClipPaths, meta: dict, info) -> float:
    """Seconds for the reference's extraction: VideoCapture seek + read per timestamp, the
    rectification remap of each eye, then the perspective crop from the rectified eye."""
    eye_hw = (info.height, info.width // 2)
    fov = meta["fov_bounds"]
    rect = [geometry.rectification_map(eye_hw, fov, r) for r in meta["rectified2rig"]]
    crop = geometry.perspective_to_equirect_map(eye_hw, fov, VIEW_PX, VIEW_PX, VIEW_HFOV_DEG)
    t0 = time.perf_counter()
    capture = cv2.VideoCapture(str(paths.raw_video))
    for timestamp_us in meta["timestamps"]:
        capture.set(cv2.CAP_PROP_POS_MSEC, float(timestamp_us) / 1000)
        ok, frame = capture.read()
        if not ok:
            raise RuntimeError(f"OpenCV could not read the frame at {timestamp_us} us")
        for eye, (mx, my) in enumerate(rect):
            half = frame[:, eye * eye_hw[1]:(eye + 1) * eye_hw[1]]
            rectified = cv2.remap(half, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            cv2.remap(rectified, crop[0], crop[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    capture.release()
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vid", default="synthvr180demo_66667")
    parser.add_argument("--vr180_size", action="store_true",
                        help="use a 12-frame 3840x1920 clip (rendered on first use)")
    parser.add_argument("--repeats", type=int, default=2, help="best of this many runs")
    args = parser.parse_args()
    if args.vr180_size:
        args.vid = VR180_VID
    paths = ClipPaths(args.vid)
    if not paths.npz.is_file():
        if args.vr180_size:
            make_synthetic_clip(paths, SyntheticClipConfig(
                num_frames=VR180_FRAMES, eye_size_px=VR180_EYE_PX,
                fov_bounds_deg=(-90.0, 90.0, -90.0, 90.0), num_tracks=100))
        else:
            subprocess.run([sys.executable, "make_synthetic_clip.py", f"--vid={args.vid}"],
                           cwd=REPO_ROOT, check=True)
    meta = load_dataset_npz(paths.npz)
    info = probe_video(paths.raw_video)
    wanted = rectify.frame_indices(meta["timestamps"], info.fps)

    runs = {
        "perspective views only": {"write_equirect": False},
        f"all four videos (previews {rectify.EQUIRECT_PRESET})": {},
        f"all four videos (previews {DEFAULT_PRESET}, as before)": {
            "equirect_preset": DEFAULT_PRESET},
    }
    best = {label: np.inf for label in ["bare decode", *runs, "reference"]}
    frames = {}
    psnr_db = {}
    with tempfile.TemporaryDirectory() as out:
        for repeat in range(args.repeats):
            t0 = time.perf_counter()
            frames["bare decode"] = sum(
                1 for _ in iter_video_frames(paths.raw_video, start_frame=int(wanted[0])))
            best["bare decode"] = min(best["bare decode"], time.perf_counter() - t0)
            best["reference"] = min(best["reference"], reference_method_seconds(paths, meta, info))
            frames["reference"] = len(meta["timestamps"])
            for i, (label, settings) in enumerate(runs.items()):
                cfg = rectify.RectifyConfig(vid=args.vid, npz_folder=str(paths.npz_folder),
                                            raw_video_folder=str(paths.raw_video_folder),
                                            output_folder=f"{out}/{i}", min_equirect_height=0,
                                            **settings)
                t0 = time.perf_counter()
                summary = rectify.run(cfg)
                best[label] = min(best[label], time.perf_counter() - t0)
                frames[label] = summary["frames"]
                if repeat == 0 and "raw_equirect" in summary["outputs"]:
                    preview = read_video(summary["outputs"]["raw_equirect"]).astype(np.float32)
                    source = np.stack(list(iter_video_frames(
                        paths.raw_video, start_frame=int(wanted[0])))[:len(preview)])
                    mse = np.mean((preview - source.astype(np.float32)) ** 2)
                    size_mb = Path(summary["outputs"]["raw_equirect"]).stat().st_size / 1e6
                    psnr_db[label] = (10 * np.log10(255.0**2 / mse), size_mb)

    print(f"\nvideo {paths.raw_video}: {info.width}x{info.height} @ {info.fps:g} fps; best of "
          f"{args.repeats}")
    print("| what | frames | seconds | frames/s | vs bare decode |")
    print("|---|---:|---:|---:|---:|")
    names = {"bare decode": "bare decode (imageio-ffmpeg, from the first wanted frame)",
             "reference": "reference method: seek per frame + two remaps per eye, no encoding"}
    for label, seconds in best.items():
        name = names.get(label, f"rectify, {label}")
        ratio = seconds / frames[label] / (best["bare decode"] / frames["bare decode"])
        print(f"| {name} | {frames[label]} | {seconds:.2f} | {frames[label] / seconds:.1f} | "
              f"{ratio:.2f}x |")
    for label, (psnr, size_mb) in psnr_db.items():
        print(f"raw equirect preview, {label}: PSNR {psnr:.2f} dB against the decoded source, "
              f"{size_mb:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
