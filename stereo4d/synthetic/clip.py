"""The synthetic clip: raw side-by-side VR180 video, released-format npz, ground truth, and oracle.

Files (paths from ``ClipPaths``):
* ``raw/<video_id>.mp4``: side-by-side equirectangular stereo (left eye left), ``fps``; the clip's
  first frame is video frame ``round(timestamp_us * fps / 1e6)``; ``trailing_frames`` follow it.
  Each raw eye is rendered through its rig mis-rotation: raw-eye ray ``d_rig`` -> rectified ray
  ``R_e^T d_rig`` (``R_e = rectified2rig[e]``) -> world through the rectified camera's rotation.
  The right rectified camera sits at ``+baseline_m`` on the left camera's x axis.
* ``npz/<vid>.npz``: timestamps, ``camera2world`` [T, 3, 4] (rectified left camera),
  ``rectified2rig`` [2, 3, 3] (left, right), ``fov_bounds`` and the ground-truth tracks.
* ``gt/<vid>.npz``: ground truth of the rectified perspective LEFT view (``gt_size_px``
  square, ``gt_hfov_deg``): see ``make_synthetic_clip``.
This module holds the clip's settings, its cameras, the perspective renderer and the oracle;
``stereo4d.synthetic.writer`` writes the files.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from stereo4d import geometry
from stereo4d.io import (
    InputError,
)
from stereo4d.synthetic.render import NO_HIT, render_rays, single_tile, tile_rays
from stereo4d.synthetic.scene import Scene, SceneVariation, build_scene

__all__ = [
    "SyntheticClipConfig",
    "SyntheticOracle",
    "clip_times_s",
    "rectified_cameras",
    "render_view",
]

#: Relative distance tolerance of the oracle's occlusion test (ray-cast hit vs the point).
OCCLUSION_REL_TOL = 1e-4


@dataclass(frozen=True)
class SyntheticClipConfig:
    """Settings of the synthetic clip (all stored in the gt file; the oracle rebuilds from them).

    Attributes:
      num_frames: clip frames T. seed: scene colours, heights, sway phases, query points.
      eye_height_m: camera height above the ground.
      eye_size_px: side of each square equirectangular eye in the raw video.
      fov_bounds_deg: (start_yaw, end_yaw, start_tilt, end_tilt) of each raw eye.
      baseline_m: stereo baseline (right eye at +x of the left rectified camera).
      rig_rotation_deg: per eye (left, right) x, y, z angles of ``rectified2rig`` (Rz Ry Rx).
      fps: video frame rate. crf: x264 quality of the raw video (4:4:4 chroma).
      trailing_frames: video frames after the clip. rendered_lead_frames: lead frames just
        before the clip that show the scene (earlier lead frames are flat grey).
      gt_size_px, gt_hfov_deg: the rectified perspective view the ground truth describes.
      num_tracks: ground-truth query points; dynamic_track_fraction: share on moving objects.
      scene: what varies between clips of the accuracy suite (``SceneVariation``; the default
        is the demo street).
      exposure_change: relative amplitude of an exposure (gain) change over time, applied to
        both eyes and the ground-truth view: ``gain = 1 + exposure_change * sin(2 pi t /
        exposure_period_s)``; 0 = constant exposure.
      exposure_period_s: period of that change (seconds).
      right_eye_gain_rgb: per-channel gain of the right eye relative to the left (the gain and
        colour difference between the two cameras of a real VR180 rig); (1, 1, 1) = none.
      chroma_444: keep full colour resolution in the raw video (False: 4:2:0, as real
        footage; with a high ``crf`` it makes a low-bitrate raw video).
      tile_px: ray tile side for culling (speed only).
      render_threads: torch threads while rendering (1 is fastest on shared cores: ffmpeg
        encodes on another core, and oversubscribed torch threads spin).
    """

    num_frames: int = 48
    seed: int = 0
    eye_height_m: float = 1.6
    eye_size_px: int = 1024
    fov_bounds_deg: tuple[float, float, float, float] = (-50.0, 50.0, -50.0, 50.0)
    baseline_m: float = 0.063
    rig_rotation_deg: tuple[tuple[float, float, float], ...] = ((2.0, -3.0, 1.5), (-1.5, 2.0, -2.5))
    fps: float = 30.0
    crf: int = 10
    trailing_frames: int = 2
    rendered_lead_frames: int = 2
    gt_size_px: int = 512
    gt_hfov_deg: float = 60.0
    num_tracks: int = 3000
    dynamic_track_fraction: float = 0.25
    scene: SceneVariation = field(default_factory=SceneVariation)
    exposure_change: float = 0.0
    exposure_period_s: float = 2.0
    right_eye_gain_rgb: tuple[float, float, float] = (1.0, 1.0, 1.0)
    chroma_444: bool = True
    tile_px: int = 16
    render_threads: int = 1

    @property
    def rectified2rig(self) -> np.ndarray:
        """[2, 3, 3] left then right; rectified rays -> raw (rig) rays."""
        return np.stack([geometry.rotation_xyz_deg(*a) for a in self.rig_rotation_deg])

    @property
    def focal_px(self) -> float:
        return geometry.focal_length_px(self.gt_hfov_deg, self.gt_size_px)

    @property
    def pixel_footprint_rad(self) -> float:
        """Coarsest pixel angle of the rendered images (equirect eye or the GT view's centre),
        with a 5 % margin: the scene's textures are band-limited for it."""
        eye = np.radians(self.fov_bounds_deg[1] - self.fov_bounds_deg[0]) / (self.eye_size_px - 1)
        return 1.05 * max(eye, 1.0 / self.focal_px)

    def build_scene(self):
        """The scene this configuration renders."""
        return build_scene(self.seed, self.eye_height_m, self.pixel_footprint_rad, self.scene)

    def eye_gains_rgb(self, time_s: float) -> tuple[np.ndarray | None, np.ndarray | None]:
        """[3] gains of the left and right eye at a scene time (None = exactly 1)."""
        exposure = 1.0 + self.exposure_change * np.sin(2 * np.pi * time_s / self.exposure_period_s)
        left = None if self.exposure_change == 0 else np.full(3, exposure)
        if tuple(self.right_eye_gain_rgb) == (1.0, 1.0, 1.0):
            return left, left
        return left, exposure * np.asarray(self.right_eye_gain_rgb, np.float64)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> SyntheticClipConfig:
        raw = json.loads(text)
        raw["fov_bounds_deg"] = tuple(raw["fov_bounds_deg"])
        raw["rig_rotation_deg"] = tuple(tuple(a) for a in raw["rig_rotation_deg"])
        if "scene" in raw:
            raw["scene"] = SceneVariation(**raw["scene"])
        if "right_eye_gain_rgb" in raw:
            raw["right_eye_gain_rgb"] = tuple(raw["right_eye_gain_rgb"])
        return cls(**raw)


def clip_times_s(timestamps_us: np.ndarray) -> np.ndarray:
    """Scene time [T] seconds of each clip frame (0 at the first frame)."""
    ts = np.asarray(timestamps_us, dtype=np.int64)
    return (ts - ts[0]) / 1e6


def rectified_cameras(scene: Scene, times_s: np.ndarray, baseline_m: float) -> np.ndarray:
    """[2, T, 3, 4] camera-to-world of the rectified left and right cameras."""
    left = scene.camera.camera_to_world(times_s)
    right = left.copy()
    right[..., 3] += left[..., :3, 0] * baseline_m
    return np.stack([left, right])


def render_view(
    scene: Scene, time_s: float, camera_to_world: np.ndarray, rays, dtype=torch.float32,
    gain_rgb: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Renders an image. ``rays``: [H, W, 3] camera-frame rays or a ``TiledRays``;
    ``gain_rgb``: [3] camera gain applied to the colours before quantisation (None = 1).

    Returns: rgb [H, W, 3] uint8; dist_m [H, W] float32 ray length (inf on sky);
    depth_m [H, W] float32 camera z (inf on sky); labels [H, W] uint8; obj [H, W] int8.
    """
    tiled = rays if not isinstance(rays, np.ndarray) else tile_rays(rays, dtype=dtype)
    out = render_rays(scene, time_s, camera_to_world, tiled)
    if gain_rgb is not None:
        out["rgb"] = (out["rgb"] * torch.from_numpy(np.asarray(gain_rgb)).to(dtype)).clamp(0, 1)
    rgb = tiled.untile(torch.round(out["rgb"] * 255).to(torch.uint8))
    dist = tiled.untile(out["dist_m"]).astype(np.float32)
    cam_z = tiled.untile(tiled.dirs.reshape(-1, 3)[:, 2])
    return {
        "rgb": rgb,
        "dist_m": dist,
        "depth_m": (dist * cam_z).astype(np.float32),
        "labels": tiled.untile(out["labels"]),
        "obj": tiled.untile(out["obj"]).astype(np.int8),
    }


class SyntheticOracle:
    """Exact tracks of arbitrary query points in the rectified left perspective view.

    A query (t, y, x) casts the pixel's ray at frame t; the hit's object-local point is moved
    with its object through time, projected into every frame's left camera, and is visible
    where it is in view (``PinholeCamera.project``'s rule) and the ray cast towards it first
    hits it (within ``OCCLUSION_REL_TOL`` of its distance). Sky queries give NaN and False.
    """

    def __init__(self, config: SyntheticClipConfig, timestamps_us: np.ndarray):
        self.config = config
        self.scene = config.build_scene()
        self.times_s = clip_times_s(timestamps_us)
        self.camera_to_world = rectified_cameras(self.scene, self.times_s, config.baseline_m)[0]
        self.camera = geometry.PinholeCamera.from_hfov(
            geometry.invert_rigid(self.camera_to_world), config.gt_hfov_deg
        )
        self.rots, self.centres = self.scene.poses(self.times_s)  # [P, T, 3, 3], [P, T, 3]

    @classmethod
    def from_gt_file(cls, path: str | Path) -> SyntheticOracle:
        """The oracle of the clip whose ground-truth npz (``make_synthetic_clip``) is ``path``.

        Raises:
          InputError: missing file, not an npz, or no ``config_json`` / ``timestamps`` in it
            (not written by ``make_synthetic_clip``).
        """
        path = Path(path)
        if not path.is_file():
            raise InputError(f"missing ground-truth file: {path}")
        try:
            with np.load(path, allow_pickle=False) as z:
                config = SyntheticClipConfig.from_json(str(z["config_json"]))
                timestamps_us = z["timestamps"]
        except (OSError, ValueError, KeyError, TypeError, EOFError) as exc:
            raise InputError(
                f"{path}: not a synthetic ground-truth file made by make_synthetic_clip.py "
                f"({exc.__class__.__name__}: {exc})"
            ) from exc
        return cls(config, timestamps_us)

    def _cast(self, frame: int, origin: np.ndarray, dirs_w: np.ndarray):
        out = render_rays(
            self.scene,
            self.times_s[frame],
            np.concatenate([np.eye(3), origin[:, None]], 1),
            single_tile(dirs_w),
            shade=False,
        )
        return out["dist_m"].numpy(), out["obj"].numpy(), out["p_local"].numpy()

    def surface_points(self, query_points_tyx: np.ndarray):
        """Object id [N] (``NO_HIT`` on sky) and object-local point [N, 3] of each query."""
        q = np.asarray(query_points_tyx, dtype=np.float64).reshape(-1, 3)
        frames = np.round(q[:, 0]).astype(int)
        if len(q) and (frames.min() < 0 or frames.max() >= len(self.times_s)):
            raise InputError("query frame outside the clip")
        size, f_px = self.config.gt_size_px, self.config.focal_px
        rays = np.stack(
            [(q[:, 2] - size / 2) / f_px, (q[:, 1] - size / 2) / f_px, np.ones(len(q))], axis=-1
        )
        rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
        obj = np.full(len(q), NO_HIT, np.int64)
        p_local = np.full((len(q), 3), np.nan)
        for t in np.unique(frames):
            sel = frames == t
            c2w = self.camera_to_world[t]
            _, obj[sel], p_local[sel] = self._cast(t, c2w[:, 3], rays[sel] @ c2w[:, :3].T)
        return obj, p_local

    def tracks_for_queries(self, query_points_tyx: np.ndarray) -> dict[str, np.ndarray]:
        """Ground truth of query points [N, 3] (t, y, x; continuous pixel coordinates).

        Returns: tracks_xy [N, T, 2], visibles [N, T] bool, tracks3d_world [N, T, 3] metres,
        is_dynamic [N] bool, depth_m [N, T] camera z; plus object_id [N] (-1 = sky).
        """
        obj, p_local = self.surface_points(query_points_tyx)
        hit = obj != NO_HIT
        safe = np.where(hit, obj, 0)
        xyz = np.einsum("ntij,nj->nti", self.rots[safe], p_local) + self.centres[safe]
        xyz[~hit] = np.nan
        size = self.config.gt_size_px
        xy, depth, in_view = self.camera.project(xyz, size, size)
        visible = in_view & hit[:, None]
        for t in range(len(self.times_s)):
            sel = np.nonzero(visible[:, t])[0]
            if not len(sel):
                continue
            offset = xyz[sel, t] - self.camera_to_world[t, :, 3]
            dist = np.linalg.norm(offset, axis=-1)
            hit_dist, _, _ = self._cast(t, self.camera_to_world[t, :, 3], offset / dist[:, None])
            visible[sel, t] = hit_dist >= dist * (1 - OCCLUSION_REL_TOL)
        return {
            "tracks_xy": xy,
            "visibles": visible,
            "tracks3d_world": xyz,
            "depth_m": depth,
            "is_dynamic": hit & self.scene.is_dynamic[safe],
            "object_id": obj,
        }


