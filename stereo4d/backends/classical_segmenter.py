"""Weight-free segmenter: sky and static surfaces from classical cues, as ADE20K ids.

It labels what the track filters need, and nothing finer:

* **sky** (``ade20k.SKY``): pixels with no valid stereo depth or a far one (stereo checks
  reject sky, or fill it with the farthest nearby disparity), little texture, sky-like colour
  (bluish or very bright), in a connected region that touches the top of the image.
* **moving things** (``ade20k.OTHER``): regions whose dense optical flow (OpenCV DIS, frame t to
  t +- ``flow_gap_frames``) disagrees with the flow a rigid scene would produce given the
  stereo depth and the npz cameras. Evidence is only taken on *textured* pixels, then spread
  over the region by morphological closing and hole filling, and small blobs are dropped.
* **static surfaces** (everything else): ``ade20k.ROAD`` where the stereo surface normal points
  up (ground), else ``ade20k.BUILDING`` (walls, facades, and pixels without depth).

Why textured pixels only: the drift filter drops static-class tracks that slide over
textureless surfaces. Optical flow slides there too, so flow evidence from textureless pixels
would turn the very surfaces where tracks drift into "moving" and switch the drift filter off
for them (a circular test). On textured pixels flow is reliable. The cues used are the video,
the stereo depth and the cameras; never the 2D tracks.

Without depth (``depth_m=None``) every pixel counts as "no depth" and moving things are not
detected (no cameras either): sky then rests on texture, colour and position alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from stereo4d import ade20k
from stereo4d.backends.imageops import to_gray
from stereo4d.geometry import PinholeCamera

__all__ = [
    "ClassicalSegmenter",
    "ClassicalSegmenterSettings",
    "build_classical_segmenter",
    "fill_holes",
    "moving_mask",
    "rigid_flow",
    "sky_mask",
    "texture_energy",
]

SOBEL_GAIN = 8.0
"""cv2.Sobel (3x3) returns 8x the per-pixel grey-level difference; divided out."""


@dataclass(frozen=True)
class ClassicalSegmenterSettings:
    """Thresholds of the weight-free segmenter (grey levels are 0..255).

    Attributes:
      texture_window_px: side of the box window averaging the gradient magnitude.
      sky_max_texture: mean grey-level gradient (levels / px) below which a pixel may be sky.
      sky_min_blue_excess: blue minus red (levels) of a bluish sky pixel.
      sky_min_brightness: grey level above which a pixel may be (overcast) sky whatever its hue.
      sky_close_px: closing kernel smoothing the sky mask.
      sky_min_depth_m: stereo depth beyond which a pixel may still be sky. Stereo matchers
        that fill rejected pixels (SGBM with fill-in) give smooth sky the disparity of the
        farthest textured surface next to it, so "no depth" alone misses much of the sky.
      flow_gap_frames: frame gap of the optical flow compared with the rigid flow.
      residual_min_px: flow residual (px) above which a textured pixel is evidence of motion.
      residual_relative: plus this fraction of the rigid flow's length (depth noise scales with it).
      motion_texture_min: mean gradient (levels / px) a pixel needs to give motion evidence.
      motion_close_px, motion_open_px: closing (spread) and opening (despeckle) kernels.
      min_motion_area_fraction: moving blobs smaller than this share of the image are dropped.
      ground_min_up: surface normals with an "up" (-y camera) component above this are ground.
      normal_step_px: pixel step of the finite differences giving surface normals.
    """

    texture_window_px: int = 7
    sky_max_texture: float = 3.0
    sky_min_blue_excess: float = 12.0
    sky_min_brightness: float = 215.0
    sky_close_px: int = 5
    sky_min_depth_m: float = 8.0
    flow_gap_frames: int = 3
    residual_min_px: float = 1.5
    residual_relative: float = 0.15
    motion_texture_min: float = 2.0
    motion_close_px: int = 15
    motion_open_px: int = 5
    min_motion_area_fraction: float = 5e-4
    ground_min_up: float = 0.8
    normal_step_px: int = 3


def texture_energy(frame_rgb: np.ndarray, window_px: int) -> np.ndarray:
    """Mean grey-level gradient magnitude (levels / px) in a box window. [H, W] float32."""
    gray = to_gray(frame_rgb).astype(np.float32)
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3) / SOBEL_GAIN
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3) / SOBEL_GAIN
    return cv2.blur(np.hypot(gx, gy), (window_px, window_px))


def _ellipse(size_px: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size_px, size_px))


def sky_mask(frame_rgb: np.ndarray, has_near_depth: np.ndarray, texture: np.ndarray,
             s: ClassicalSegmenterSettings) -> np.ndarray:
    """[H, W] bool sky: no near depth, smooth, sky-coloured, connected to the top row.

    ``has_near_depth``: valid stereo depth closer than ``s.sky_min_depth_m``.
    """
    rgb = frame_rgb.astype(np.float32)
    bluish = rgb[..., 2] - rgb[..., 0] > s.sky_min_blue_excess
    bright = rgb.mean(axis=-1) > s.sky_min_brightness
    coloured = ~has_near_depth & (bluish | bright)
    candidate = coloured & (texture < s.sky_max_texture)
    candidate = cv2.morphologyEx(candidate.astype(np.uint8), cv2.MORPH_CLOSE, _ellipse(s.sky_close_px))
    _, components = cv2.connectedComponents(candidate, connectivity=4)
    touching_top = np.unique(components[0][candidate[0] > 0])
    touching_top = touching_top[touching_top != 0]
    core = np.isin(components, touching_top)
    # The texture window blurs edges: grow the sky into adjacent sky-coloured depthless pixels.
    near = cv2.dilate(core.astype(np.uint8), _ellipse(2 * s.texture_window_px + 1)) > 0
    return core | (near & coloured)


def rigid_flow(depth_m: np.ndarray, cameras: PinholeCamera, t: int, s: int) -> tuple[np.ndarray, np.ndarray]:
    """Flow from frame t to frame s of a static scene with depth ``depth_m`` [H, W] at t.

    Returns: flow [H, W, 2] px (x, y) and ok [H, W] bool (valid depth, in front of camera s).
    """
    imh, imw = depth_m.shape
    ys, xs = np.mgrid[0:imh, 0:imw].astype(np.float64) + 0.5
    xy = np.stack([xs, ys], axis=-1)
    cam_t, cam_s = cameras.at(t), cameras.at(s)
    world = cam_t.unproject(xy, depth_m, imh, imw)
    xy_s, depth_s, _ = cam_s.project(world, imh, imw)
    ok = (depth_m > 0) & (depth_s > 0) & np.all(np.isfinite(xy_s), axis=-1)
    return np.where(ok[..., None], xy_s - xy, 0.0), ok


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """[H, W] bool with enclosed background holes filled (flood fill from the border)."""
    padded = np.pad(mask.astype(np.uint8), 1)
    flood = padded.copy()
    cv2.floodFill(flood, np.zeros((padded.shape[0] + 2, padded.shape[1] + 2), np.uint8), (0, 0), 1)
    holes = flood[1:-1, 1:-1] == 0
    return mask | holes


def moving_mask(evidence: np.ndarray, s: ClassicalSegmenterSettings) -> np.ndarray:
    """Motion evidence [H, W] bool -> moving regions: close, fill holes, open, drop small blobs."""
    closed = cv2.morphologyEx(evidence.astype(np.uint8), cv2.MORPH_CLOSE, _ellipse(s.motion_close_px))
    filled = fill_holes(closed > 0).astype(np.uint8)
    opened = cv2.morphologyEx(filled, cv2.MORPH_OPEN, _ellipse(s.motion_open_px))
    _count, components, stats, _ = cv2.connectedComponentsWithStats(opened, connectivity=8)
    min_area = s.min_motion_area_fraction * evidence.size
    big = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] >= min_area)
    big = big[big != 0]
    return np.isin(components, big)


def ground_mask(depth_m: np.ndarray, cameras: PinholeCamera,
                s: ClassicalSegmenterSettings) -> np.ndarray:
    """[H, W] bool: surface normal (from depth finite differences) points up in the camera frame."""
    imh, imw = depth_m.shape
    ys, xs = np.mgrid[0:imh, 0:imw].astype(np.float64) + 0.5  # pixel centres
    in_camera = PinholeCamera(np.eye(3, 4), cameras.fx, cameras.fy, cameras.cx, cameras.cy)
    points = in_camera.unproject(np.stack([xs, ys], axis=-1), depth_m, imh, imw)
    k = s.normal_step_px
    du = np.roll(points, -k, axis=1) - np.roll(points, k, axis=1)
    dv = np.roll(points, -k, axis=0) - np.roll(points, k, axis=0)
    normal = np.cross(du, dv)
    normal /= np.maximum(np.linalg.norm(normal, axis=-1, keepdims=True), 1e-12)
    normal *= -np.sign(np.sum(normal * points, axis=-1, keepdims=True))  # face the camera
    valid = depth_m > 0
    for axis in (0, 1):
        valid &= np.roll(valid, k, axis=axis) & np.roll(valid, -k, axis=axis)
    return valid & (-normal[..., 1] > s.ground_min_up)


class ClassicalSegmenter:
    """ADE20K labels (sky, static, other) from video, stereo depth and cameras; no weights."""

    name = "classical"

    def __init__(self, settings: ClassicalSegmenterSettings = ClassicalSegmenterSettings()):
        self.settings = settings

    def _flow(self, frame_a: np.ndarray, frame_b: np.ndarray) -> np.ndarray:
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        return dis.calc(to_gray(frame_a), to_gray(frame_b), None)

    def motion_evidence(self, video: np.ndarray, depth_m: np.ndarray, cameras: PinholeCamera,
                        t: int, texture: np.ndarray) -> np.ndarray:
        """[H, W] bool: textured pixels whose flow disagrees with the rigid flow.

        With a neighbour on each side (t - gap and t + gap) a pixel needs the disagreement
        towards both: pixels hidden in one neighbour (disoccluded behind a mover) have
        meaningless flow towards it, but not towards the other.
        """
        s = self.settings
        others = [o for o in (t - s.flow_gap_frames, t + s.flow_gap_frames) if 0 <= o < len(video)]
        evidence = np.ones(depth_m.shape[1:], bool) if others else np.zeros(depth_m.shape[1:], bool)
        for other in others:
            flow = self._flow(video[t], video[other])
            rigid, ok = rigid_flow(depth_m[t], cameras, t, other)
            residual = np.linalg.norm(flow - rigid, axis=-1)
            limit = s.residual_min_px + s.residual_relative * np.linalg.norm(rigid, axis=-1)
            evidence &= ok & (residual > limit)
        return evidence & (texture > s.motion_texture_min)

    def segment(self, video_rgb: np.ndarray, depth_m: np.ndarray | None = None,
                cameras: PinholeCamera | None = None) -> np.ndarray:
        """uint8 [T, H, W, 3] (+ depth [T, H, W] m, 0 = invalid; cameras) -> int32 [T, H, W]."""
        s = self.settings
        video_rgb = np.asarray(video_rgb)
        num_frames, imh, imw = video_rgb.shape[:3]
        if depth_m is None:
            depth_m = np.zeros((num_frames, imh, imw), np.float32)
        labels = np.full((num_frames, imh, imw), ade20k.BUILDING, np.int32)
        use_motion = cameras is not None and num_frames > s.flow_gap_frames
        for t in range(num_frames):
            texture = texture_energy(video_rgb[t], s.texture_window_px)
            has_near_depth = (depth_m[t] > 0) & (depth_m[t] < s.sky_min_depth_m)
            if cameras is not None:
                labels[t][ground_mask(depth_m[t], cameras, s)] = ade20k.ROAD
            if use_motion:
                moving = moving_mask(self.motion_evidence(video_rgb, depth_m, cameras, t, texture), s)
                labels[t][moving] = ade20k.OTHER
            labels[t][sky_mask(video_rgb[t], has_near_depth, texture, s)] = ade20k.SKY
        return labels


def build_classical_segmenter(**_: object) -> ClassicalSegmenter:
    """The weight-free segmenter with default settings (backend options are ignored)."""
    return ClassicalSegmenter()
