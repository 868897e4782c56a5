"""Stage 0: camera poses and rig rectification estimated from the stereo video itself.

Reads only ``<raw_video_folder>/<video_id>.mp4`` and writes ``<npz_folder>/<vid>.npz`` in the
released format, so every later stage runs on footage that has no released npz:

* ``timestamps`` [T]: the video's frames from the vid's timestamp on (``num_frames``,
  ``frame_stride``), as ``round(k * stride * 1e6 / fps)`` after the vid's timestamp;
* ``camera2world`` [T, 3, 4]: the rectified left camera (metres, world = its first pose);
* ``rectified2rig`` [2, 3, 3]: from the estimated relative pose of the eyes (rectified rows are
  epipolar lines; the free rotation about the baseline is chosen by ``rectifying_rotations``);
* ``fov_bounds`` [4] as given; empty track arrays.

Input modes: ``vr180`` (side-by-side equirect eyes described by ``fov_bounds_deg``; a centred
perspective crop of each eye is what COLMAP sees) and ``perspective`` (side-by-side pinhole eyes
with ``focal_px`` and ``baseline_m`` given; the npz then describes the pinhole eyes and is meant
for tools that read poses, since rectify.py expects equirect eyes).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from tqdm import tqdm

from stereo4d import geometry
from stereo4d.backends.colmap_cameras import ColmapSettings, estimate_rig_poses
from stereo4d.io import ClipPaths, InputError, save_dataset_npz, split_vid
from stereo4d.stages.common import Timer, start_stage, write_provenance
from stereo4d.videoio import iter_video_frames, probe_video

__all__ = ["CamerasConfig", "crop_eyes", "run"]

#: The VR180 eye field of view (start_yaw, end_yaw, start_tilt, end_tilt), degrees.
VR180_FOV_BOUNDS_DEG = (-90.0, 90.0, -90.0, 90.0)
#: VR180 cameras' lens spacing (metres; the reference's).
DEFAULT_BASELINE_M = 0.063
#: The crop spans at most this share of the eye's field of view (its corners stay inside).
CROP_FOV_SHARE = 0.8
#: Widest perspective crop (degrees): wider ones waste pixels on stretched borders.
MAX_CROP_HFOV_DEG = 90.0
#: Fewest frames a camera path is estimated from.
MIN_FRAMES = 8


#: Provenance name (``<vid>-cameras.json``) and the batch runner's name of this stage.
STAGE_NAME = "cameras"


@dataclass(frozen=True)
class CamerasConfig:
    """Settings of ``estimate_cameras.py``.

    Attributes:
      vid: ``<video_id>_<timestamp_us>``; the clip starts at that timestamp.
      npz_folder, raw_video_folder, output_folder: as in ``ClipPaths``.
      num_frames: frames to take (None: to the end of the video).
      frame_stride: take every ``frame_stride``-th video frame.
      fov_bounds_deg: (start_yaw, end_yaw, start_tilt, end_tilt) of each equirect eye.
      input_mode: ``vr180`` (equirect eyes) or ``perspective`` (pinhole eyes).
      baseline_m: distance between the eyes (metres): the metric scale.
      focal_px: perspective mode: the eyes' focal length (pixels, principal point centred).
      crop_hfov_deg: VR180 mode: FoV of the crop COLMAP sees (0: auto from ``fov_bounds_deg``).
      crop_size_px: VR180 mode: side of the square crop (pixels).
      max_features: SIFT features per crop; match_overlap_frames: temporal matching window.
      force: overwrite an existing npz.
    """

    vid: str
    npz_folder: str = "stereo4d_dataset/npz"
    raw_video_folder: str = "stereo4d_dataset/raw"
    output_folder: str = "stereo4d_dataset/processed"
    num_frames: int | None = None
    frame_stride: int = 1
    fov_bounds_deg: tuple[float, float, float, float] = VR180_FOV_BOUNDS_DEG
    input_mode: str = "vr180"
    baseline_m: float = DEFAULT_BASELINE_M
    focal_px: float | None = None
    crop_hfov_deg: float = 0.0
    crop_size_px: int = 640
    max_features: int = ColmapSettings.max_features
    match_overlap_frames: int = ColmapSettings.overlap_frames
    force: bool = False

    @property
    def paths(self) -> ClipPaths:
        return ClipPaths(self.vid, self.npz_folder, self.raw_video_folder, self.output_folder)

    def resolved_crop_hfov_deg(self) -> float:
        """The crop's horizontal FoV: the setting, or the largest that fits the eye."""
        if self.crop_hfov_deg > 0:
            return float(self.crop_hfov_deg)
        yaw0, yaw1, tilt0, tilt1 = self.fov_bounds_deg
        return min(MAX_CROP_HFOV_DEG, CROP_FOV_SHARE * min(yaw1 - yaw0, tilt1 - tilt0))


def _check_config(config: CamerasConfig) -> None:
    if config.input_mode not in ("vr180", "perspective"):
        raise InputError(f"--input_mode must be vr180 or perspective, got {config.input_mode!r}")
    if config.num_frames is not None and config.num_frames < MIN_FRAMES:
        raise InputError(f"--num_frames={config.num_frames}: too few frames to estimate a camera "
                         f"path from (need at least {MIN_FRAMES})")
    if config.frame_stride < 1:
        raise InputError(f"--frame_stride must be >= 1, got {config.frame_stride}")
    if config.max_features < 64 or config.match_overlap_frames < 1:
        raise InputError("--max_features must be >= 64 and --match_overlap >= 1")
    if not config.baseline_m > 0:
        raise InputError(f"--baseline must be > 0 metres, got {config.baseline_m}")
    yaw0, yaw1, tilt0, tilt1 = config.fov_bounds_deg
    if not (yaw1 > yaw0 and tilt1 > tilt0 and yaw1 - yaw0 <= 360 and tilt1 - tilt0 <= 180):
        raise InputError(f"--fov_bounds must be START_YAW,END_YAW,START_TILT,END_TILT with "
                         f"START < END, got {config.fov_bounds_deg}")
    if config.input_mode == "perspective" and not (config.focal_px and config.focal_px > 0):
        raise InputError("--input_mode=perspective needs --focal_px (the eyes' focal length)")


def crop_eyes(frame: np.ndarray, maps: np.ndarray | None) -> np.ndarray:
    """Side-by-side frame [H, 2W, 3] -> [2, h, w, 3] eye crops (``maps`` [2, 2, h, w] float32
    ``cv2.remap`` x/y maps per eye; None keeps the halves as they are)."""
    half = frame.shape[1] // 2
    eyes = (frame[:, :half], frame[:, half:2 * half])
    if maps is None:
        return np.stack(eyes)
    return np.stack([cv2.remap(e, m[0], m[1], cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT) for e, m in zip(eyes, maps)])


def _read_clip(config: CamerasConfig, paths: ClipPaths, timer: Timer):
    """Decodes the wanted frames and crops both eyes: eyes [2, T, h, w, 3], timestamps, focal."""
    if not paths.raw_video.is_file():
        raise InputError(f"missing video: {paths.raw_video}")
    info = probe_video(paths.raw_video)
    if info.fps <= 0:
        raise InputError(f"{paths.raw_video}: unknown frame rate")
    stamp_us = int(split_vid(config.vid)[1])
    start = round(stamp_us * info.fps / 1e6)
    eye_hw = (info.height, info.width // 2)
    if config.input_mode == "vr180":
        hfov = config.resolved_crop_hfov_deg()
        size = config.crop_size_px
        maps = np.stack([np.stack(geometry.perspective_to_equirect_map(
            eye_hw, config.fov_bounds_deg, size, size, hfov))] * 2)
        focal_px = geometry.focal_length_px(hfov, size)
    else:
        maps, focal_px = None, float(config.focal_px)
    eyes, indices = [], []
    limit = config.num_frames
    bar = tqdm(total=limit, desc="estimate_cameras: read", unit="frame")
    with timer("decode"):
        for offset, frame in enumerate(iter_video_frames(paths.raw_video, start_frame=start)):
            if offset % config.frame_stride:
                continue
            eyes.append(crop_eyes(frame, maps))
            indices.append(offset)
            bar.update(1)
            if limit is not None and len(eyes) == limit:
                break
    bar.close()
    if len(eyes) < max(MIN_FRAMES, limit or 0):
        raise InputError(
            f"{paths.raw_video}: only {len(eyes)} frames from {stamp_us} us on (stride "
            f"{config.frame_stride}, {info.fps:g} fps, {info.num_frames} frames in the video); "
            f"need {max(MIN_FRAMES, limit or 0)}")
    timestamps = stamp_us + np.round(np.asarray(indices) * 1e6 / info.fps).astype(np.int64)
    return np.stack(eyes, axis=1), timestamps, focal_px


def run(config: CamerasConfig) -> dict:
    """Runs the stage. Returns a summary (frames, baseline, path length, timings, npz path)."""
    _check_config(config)
    paths = config.paths
    start_stage(paths, STAGE_NAME)
    if paths.npz.exists() and not config.force:
        raise InputError(f"{paths.npz} exists; pass --force to overwrite it")
    paths.provenance(STAGE_NAME).unlink(missing_ok=True)
    timer = Timer()
    eyes, timestamps, focal_px = _read_clip(config, paths, timer)
    settings = ColmapSettings(max_features=config.max_features,
                              overlap_frames=config.match_overlap_frames)
    try:
        with timer("colmap"):
            poses = estimate_rig_poses(eyes, focal_px, config.baseline_m, settings)
    except InputError as exc:
        raise InputError(f"{paths.raw_video}: {exc}") from exc
    rectified2rig, _ = geometry.rectifying_rotations(poses.right_from_left)
    camera2world = geometry.rectified_camera2world_from_rig(poses.left_cam_from_world,
                                                           rectified2rig[0])
    camera2world = geometry.reanchor_camera2world(camera2world)
    steps_m = np.linalg.norm(np.diff(camera2world[:, :, 3], axis=0), axis=1)
    path_m = float(steps_m.sum())
    if path_m < settings.min_path_m:
        raise InputError(f"{paths.raw_video}: the camera barely moves ({path_m * 100:.1f} cm over "
                         f"{len(timestamps)} frames; need {settings.min_path_m * 100:.0f} cm): a "
                         "static camera gives no camera path to estimate")
    num_frames = len(timestamps)
    save_dataset_npz(
        paths.npz, name=config.vid, video_id=paths.video_id, timestamps_us=timestamps,
        camera2world=camera2world, track3d=np.zeros((0, num_frames, 3)),
        rectified2rig=rectified2rig, fov_bounds_deg=np.asarray(config.fov_bounds_deg, np.float64))
    summary = {
        "frames": num_frames,
        "path_length_m": path_m,
        "crop_focal_px": focal_px,
        "moving_fraction": poses.moving_fraction,
        **poses.stats,
        "npz": str(paths.npz),
        "timings_s": {**timer.seconds, "total": timer.total_s},
    }
    write_provenance(paths.provenance(STAGE_NAME), stage=STAGE_NAME,
                     backend="pycolmap-global-rig", settings=config, timings_s=summary["timings_s"],
                     summary={k: v for k, v in summary.items() if k != "timings_s"})
    precision = (f", baseline direction +- {poses.stats['rig_baseline_dir_std_deg']:.3f} deg"
                 if "rig_baseline_dir_std_deg" in poses.stats else "")
    print(f"estimate_cameras: {num_frames} frames, path {path_m:.2f} m, "
          f"{poses.stats['registered_frames']} registered{precision}, "
          f"{summary['timings_s']['total']:.1f} s -> {paths.npz}")
    return summary
