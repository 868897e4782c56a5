"""Stage 1: extract frames at the clip's timestamps, rectify each eye, crop perspective views.

Reads ``<npz_folder>/<vid>.npz`` and ``<raw_video_folder>/<video_id>.mp4``
(side-by-side equirect, left eye on the left); writes into
``<output_folder>/<vid>/``: ``<vid>-raw_equirect.mp4`` (the extracted frames),
``<vid>-rectified_equirect.mp4``, ``<vid>-left_rectified.mp4`` and
``<vid>-right_rectified.mp4`` (perspective, ``output_height`` x ``output_width``).

Faster than the reference: the video is decoded once, sequentially, keeping the
frames whose timestamps are asked for (the reference seeks per frame), and the
perspective views come from one remap per eye that composes rectification and
crop (the reference remaps twice). Decoding (a background thread reading ffmpeg's
pipe), remapping (OpenCV, which releases the GIL) and encoding (one thread per output
feeding its ffmpeg) overlap; the equirect maps are only built when those videos are
written, and the two equirect previews use a faster x264 preset (``equirect_preset``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from stereo4d import geometry
from stereo4d.io import ClipPaths, InputError, load_dataset_npz
from stereo4d.stages.common import Timer, stage_output_paths, start_stage, write_provenance
from stereo4d.stages.health import rectify_health, textured_fraction
from stereo4d.video_threads import BackgroundVideoWriter, FramePrefetcher
from stereo4d.videoio import (
    DEFAULT_PRESET,
    VideoWriter,
    iter_video_frames,
    probe_video,
)

__all__ = ["RectifyConfig", "RectifyMaps", "frame_indices", "output_paths", "run"]

#: The reference's VR180 sanity check: real equirect videos are at least this high.
VR180_MIN_HEIGHT_PX = 1920
#: x264 preset of the two equirect preview videos. At 3840x1920, per frame against the views'
#: ``veryfast``: 0.19 vs 0.29 s of encoder CPU, 1.4x the file size, PSNR 39.7 vs 39.2 dB
#: (``ultrafast``: 0.14 s, 3.6x the size); see README "Speed".
EQUIRECT_PRESET = "superfast"


@dataclass(frozen=True)
class RectifyConfig:
    """Settings of ``rectify.py``.

    Attributes:
      vid: ``<video_id>_<timestamp_us>``.
      npz_folder, raw_video_folder, output_folder: as in ``ClipPaths``.
      output_hfov_deg: horizontal FoV of the perspective views.
      output_height, output_width: perspective view size in pixels.
      min_equirect_height: refuse videos lower than this (0 turns the check off).
      write_equirect: also write the raw and rectified equirect videos.
      equirect_preset: x264 preset of those two videos (the views use ``DEFAULT_PRESET``).
    """

    vid: str
    npz_folder: str = "stereo4d_dataset/npz"
    raw_video_folder: str = "stereo4d_dataset/raw"
    output_folder: str = "stereo4d_dataset/processed"
    output_hfov_deg: float = 60.0
    output_height: int = 512
    output_width: int = 512
    min_equirect_height: int = VR180_MIN_HEIGHT_PX
    write_equirect: bool = True
    equirect_preset: str = EQUIRECT_PRESET

    @property
    def paths(self) -> ClipPaths:
        return ClipPaths(self.vid, self.npz_folder, self.raw_video_folder, self.output_folder)


def frame_indices(timestamps_us: np.ndarray, fps: float) -> np.ndarray:
    """Frame index of each timestamp in a constant-frame-rate video. [T] int.

    Two timestamps closer than the frame interval (say 60 fps poses on a 30 fps video) can
    share a frame, as they would when the reference seeks each timestamp: ``run`` then writes
    that frame once per timestamp, so the outputs always have one frame per pose.
    """
    return np.round(np.asarray(timestamps_us, dtype=np.float64) * fps / 1e6).astype(np.int64)


@dataclass(frozen=True)
class RectifyMaps:
    """``cv2.remap`` maps of one clip, computed once.

    Attributes:
      rect_x, rect_y: [2, He, We] float32 per eye, rectified equirect -> raw equirect (None
        when built with ``equirect=False``).
      pers_x, pers_y: [2, H, W] float32 per eye, perspective view -> raw equirect
        (rectification composed in).
    """

    rect_x: np.ndarray | None
    rect_y: np.ndarray | None
    pers_x: np.ndarray
    pers_y: np.ndarray

    @classmethod
    def build(cls, eye_hw, fov_bounds_deg, rectified2rig, height, width, hfov_deg,
              equirect: bool = True):
        pers = [
            geometry.perspective_to_equirect_map(eye_hw, fov_bounds_deg, height, width, hfov_deg, r)
            for r in rectified2rig
        ]
        rect_x = rect_y = None
        if equirect:  # full-size maps: about 1 s per eye at 1920x1920
            rect = [geometry.rectification_map(eye_hw, fov_bounds_deg, r) for r in rectified2rig]
            rect_x, rect_y = (np.stack(m) for m in zip(*rect))
        return cls(rect_x, rect_y, *(np.stack(m) for m in zip(*pers)))


def _remap(image: np.ndarray, map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                     borderValue=(0, 0, 0))


def split_eyes(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Side-by-side frame [H, 2W, 3] -> (left [H, W, 3], right [H, W, 3])."""
    half = frame.shape[1] // 2
    return frame[:, :half], frame[:, half:]


def output_paths(paths: ClipPaths) -> list[Path]:
    """Every file this stage may write (its stale temporaries are removed when it starts)."""
    return stage_output_paths(paths, "rectify")


def run(config: RectifyConfig) -> dict:
    """Runs the stage. Returns a summary dict (frames, timings, output paths)."""
    paths = config.paths
    start_stage(paths, "rectify")
    timer = Timer()
    meta = load_dataset_npz(paths.npz, required=("timestamps", "camera2world", "rectified2rig",
                                                 "fov_bounds"))
    info = probe_video(paths.raw_video)
    if config.min_equirect_height and info.height < config.min_equirect_height:
        raise InputError(
            f"{paths.raw_video}: equirect video is {info.width}x{info.height}; VR180 videos are at "
            f"least {config.min_equirect_height} px high (pass --min_equirect_height=0 to allow it)"
        )
    if info.fps <= 0:
        raise InputError(f"{paths.raw_video}: unknown frame rate")
    wanted = frame_indices(meta["timestamps"], info.fps)
    needed = int(wanted[-1]) - int(wanted[0]) + 1  # no decoding past the last wanted frame
    # Started first: ffmpeg's seek and first frames overlap building the maps.
    frames = FramePrefetcher(iter_video_frames(paths.raw_video, start_frame=int(wanted[0]),
                                               info=info), limit=needed)
    try:
        return _rectify_frames(config, paths, meta, info, wanted, frames, timer)
    finally:
        frames.close()


def _rectify_frames(config: RectifyConfig, paths: ClipPaths, meta: dict, info, wanted: np.ndarray,
                    frames: FramePrefetcher, timer: Timer) -> dict:
    """The rest of ``run``: maps, the per-frame loop over ``frames``, outputs, provenance."""
    eye_hw = (info.height, info.width // 2)
    with timer("maps"):
        maps = RectifyMaps.build(eye_hw, meta["fov_bounds"], meta["rectified2rig"],
                                 config.output_height, config.output_width,
                                 config.output_hfov_deg, equirect=config.write_equirect)
    repeats = dict(zip(*(v.tolist() for v in np.unique(wanted, return_counts=True))))
    shared = len(wanted) - len(repeats)
    if shared:
        print(f"rectify: {shared} of {len(wanted)} timestamps fall in the same video frame as "
              f"the one before ({info.fps:g} fps video); that frame is repeated for each")
    outputs = {
        "left": VideoWriter(paths.left_video, preset=DEFAULT_PRESET),
        "right": VideoWriter(paths.right_video, preset=DEFAULT_PRESET),
    }
    if config.write_equirect:
        outputs["raw_equirect"] = VideoWriter(paths.raw_equirect_video,
                                              preset=config.equirect_preset)
        outputs["rectified_equirect"] = VideoWriter(paths.rectified_equirect_video,
                                                    preset=config.equirect_preset)
    outputs = {name: BackgroundVideoWriter(writer) for name, writer in outputs.items()}
    done = 0
    bar = tqdm(total=len(wanted), desc="rectify", unit="frame")
    textured = []  # share of textured pixels of each left view (health figure)
    try:
        for index in range(int(wanted[0]), int(wanted[-1]) + 1):
            with timer("decode"):
                frame = next(frames, None)
            if frame is None:
                decoded = index - int(wanted[0])  # from the first wanted frame on
                total = f"{index} frames" if decoded else f"about {info.num_frames} frames"
                raise InputError(
                    f"{paths.raw_video}: timestamp {int(meta['timestamps'][done])} us (frame "
                    f"{int(wanted[done])}) is past the end of the video ({total} at "
                    f"{info.fps:g} fps)"
                )
            if index not in repeats:
                continue
            with timer("remap"):
                eyes = split_eyes(frame)
                left, right = (_remap(e, maps.pers_x[i], maps.pers_y[i]) for i, e in enumerate(eyes))
            with timer("health"):
                textured.append(textured_fraction(left))
            if config.write_equirect:
                with timer("remap"):
                    rect = np.concatenate(
                        [_remap(e, maps.rect_x[i], maps.rect_y[i]) for i, e in enumerate(eyes)], axis=1
                    )
            for _ in range(repeats[index]):  # one output frame per timestamp
                with timer("encode"):
                    outputs["left"].append(left)
                    outputs["right"].append(right)
                    if config.write_equirect:
                        outputs["raw_equirect"].append(frame)
                        outputs["rectified_equirect"].append(rect)
                done += 1
                bar.update(1)
        bar.close()
        health = rectify_health(textured)
        health.enforce(str(paths.raw_video))
    except BaseException:
        bar.close()  # ends the bar's line: an error message starts on a line of its own
        frames.close()
        for writer in outputs.values():
            writer.close(commit=False)
        raise
    frames.close()  # the decoder's ffmpeg ends before the encoders are flushed
    paths.provenance("rectify").unlink(missing_ok=True)  # outputs change from here on
    with timer("encode"):
        for writer in outputs.values():
            writer.close(commit=True)
    summary = {
        "frames": done,
        "timestamps_sharing_a_frame": shared,
        "video_fps": info.fps,
        "equirect_size": [info.width, info.height],
        "outputs": {k: str(w.path) for k, w in outputs.items()},
        "timings_s": {**timer.seconds, "total": timer.total_s},
    }
    write_provenance(paths.provenance("rectify"), stage="rectify", backend="opencv-remap",
                     settings=config, timings_s=summary["timings_s"],
                     timestamps_sharing_a_frame=shared, **health.record())
    t = summary["timings_s"]
    print(
        f"rectify: {done} frames in {t['total']:.1f} s ({done / max(t['total'], 1e-9):.1f} fps; "
        f"decode {t.get('decode', 0):.1f} s, remap {t.get('remap', 0):.1f} s, "
        f"encode {t.get('encode', 0):.1f} s) -> {paths.clip_dir}"
    )
    return summary
