"""Rectify speed: frames per second of rectify.py's work next to a bare decode of the same video.

Also times the reference's method on the same clip: a seek per timestamp with OpenCV's
VideoCapture (``CAP_PROP_POS_MSEC``), then two remaps per eye (rectify the equirect, then
crop the perspective view from it), without encoding.

Usage: .venv/bin/python benchmarks/bench_rectify.py [--vid=synthvr180demo_66667] [--vr180_size]
Renders the demo clip first when it is missing. ``--vr180_size`` renders and uses a 12-frame
clip at real VR180 size instead (3840x1920 side by side, 180-degree eyes), starting 2 s
into its video as real clips start inside long videos.
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

from stereo4d import geometry
from stereo4d.io import ClipPaths, load_dataset_npz
from stereo4d.stages import rectify
from stereo4d.synthetic import SyntheticClipConfig, make_synthetic_clip
from stereo4d.videoio import iter_video_frames, probe_video

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

    t0 = time.perf_counter()
    decoded = sum(1 for _ in iter_video_frames(paths.raw_video, start_frame=int(wanted[0])))
    decode_s = time.perf_counter() - t0

    reference_s = reference_method_seconds(paths, meta, info)

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
    frames = len(meta["timestamps"])
    print(f"| reference method: seek per frame + two remaps per eye, no encoding | {frames} | "
          f"{reference_s:.2f} | {frames / reference_s:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
