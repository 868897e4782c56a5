"""What the 3D viewer shows of one clip, read from files (it never runs a pipeline stage).

Two sources:

* ``load_released``: a released-format npz (the published dataset, or this project's export)
  plus its left rectified video, as ``track_visualization.ipynb`` reads them. Tracks, cameras
  and timestamps come from the npz; track colours are the video's colour under each track's
  first visible point.
* ``load_outputs``: a clip processed by this project (``ClipPaths``): the same npz export and
  video, plus what the other outputs add when present: the colours the optimisation recorded
  (``<vid>-optimized_tracks.pkl``), the stereo depth (from ``<vid>-stereo.npz`` or
  ``<vid>-flows_stereo.pkl`` through ``stereo4d.depth``, as the optimisation reads it), the
  depth of the optimised tracks (``viz.depth.depth_from_tracks``, as
  ``<vid>-optimized_depth.mp4``) and the tracks the filter
  removed with their reasons (``<vid>-segmentation.npz``), lifted with the stereo depth the
  filter used.

Moving and static tracks are told apart by the 3D motion extent of each track: the largest
distance of its points from their median (``MOVING_EXTENT_M``). The optimisation pulls a static
track's points together (millimetres of jitter), so a decimetre separates the two classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stereo4d.geometry import PinholeCamera
from stereo4d.io import ClipPaths, InputError, load_dataset_npz, load_pickle
from stereo4d.tracks import Tracks2D, lift_tracks_to_3d

__all__ = [
    "MOVING_EXTENT_M",
    "REMOVAL_REASONS",
    "ClipView",
    "load_outputs",
    "load_released",
    "motion_extent_m",
    "video_colors",
]

MOVING_EXTENT_M = 0.10
"""A track is shown as moving when a point of it lies this far (metres) from its median point."""
REMOVAL_REASONS = ("sky", "boundary", "drift")
"""Filters of stage 4 whose removed tracks the viewer can show (``stereo4d.filtering``)."""


@dataclass
class ClipView:
    """One clip as the viewer shows it. T frames of H x W pixels, N tracks.

    Attributes:
      name: clip id.
      timestamps_us: [T] int microseconds into the video.
      camera_to_world: [T, 3, 4] rectified left camera (x right, y down, z forward).
      camera: per-frame pinhole cameras (world-to-camera [T, 3, 4], normalised intrinsics).
      image_hw: (H, W) pixels.
      frames: [T, H, W, 3] uint8 RGB left rectified frames.
      track3d_world: [N, T, 3] metres, NaN where absent; visible: [N, T] bool.
      colors_rgb: [N, 3] uint8 track colours.
      moving: [N] bool, the track moves (``MOVING_EXTENT_M``).
      depth_raw_m: [T, H, W] float32 stereo depth (0 = unknown), or None.
      depth_optimized_m: [T, H, W] float32 depth of the optimised tracks (0 = none), or None.
      removed: reason -> (track3d [K, T, 3], valid [K, T] bool) of the tracks the filter removed.
      sources: what each shown item was read from (for the summary line).
    """

    name: str
    timestamps_us: np.ndarray
    camera_to_world: np.ndarray
    camera: PinholeCamera
    image_hw: tuple[int, int]
    frames: np.ndarray
    track3d_world: np.ndarray
    visible: np.ndarray
    colors_rgb: np.ndarray
    moving: np.ndarray
    depth_raw_m: np.ndarray | None = None
    depth_optimized_m: np.ndarray | None = None
    removed: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return len(self.timestamps_us)

    @property
    def num_tracks(self) -> int:
        return len(self.track3d_world)

    def intrinsics_px(self) -> tuple[float, float, float, float]:
        """(fx, fy, cx, cy) in pixels."""
        imh, imw = self.image_hw
        cam = self.camera
        return cam.fx * imw, cam.fy * imh, cam.cx * imw, cam.cy * imh


def motion_extent_m(track3d_world: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """Largest distance of each track's visible points from their median point.

    Args:
      track3d_world: [N, T, 3] metres; visible: [N, T] bool.
    Returns:
      [N] metres (0 for tracks with no visible point).
    """
    pts = np.where(visible[..., None], track3d_world, np.nan)
    present = visible.any(axis=1)
    median = np.zeros((len(pts), 3))
    if present.any():
        median[present] = np.nanmedian(pts[present], axis=1)
    dist = np.linalg.norm(pts - median[:, None], axis=-1)
    return np.where(present, np.nanmax(np.where(visible, dist, -np.inf), axis=1), 0.0)


def video_colors(frames: np.ndarray, track3d_world: np.ndarray, visible: np.ndarray,
                 camera: PinholeCamera) -> np.ndarray:
    """Colour of the pixel under each track's first visible point, projected with that frame's
    camera (clipped to the image; grey for tracks with no visible point).

    Args:
      frames: [T, H, W, 3] uint8; track3d_world: [N, T, 3]; visible: [N, T] bool;
      camera: T world-to-camera [T, 3, 4].
    Returns:
      [N, 3] uint8.
    """
    imh, imw = frames.shape[1:3]
    colors = np.full((len(track3d_world), 3), 128, np.uint8)
    usable = visible & np.all(np.isfinite(track3d_world), axis=-1)
    rows = np.flatnonzero(usable.any(axis=1))
    if len(rows) == 0:
        return colors
    t = np.argmax(usable[rows], axis=1)
    xy, _, _ = camera.at(t).project(track3d_world[rows, t], imh, imw)  # one camera per point
    ok = np.all(np.isfinite(xy), axis=-1)
    x = np.clip(np.floor(np.where(ok, xy[:, 0], 0)).astype(np.int64), 0, imw - 1)
    y = np.clip(np.floor(np.where(ok, xy[:, 1], 0)).astype(np.int64), 0, imh - 1)
    colors[rows[ok]] = frames[t[ok], y[ok], x[ok]]
    return colors


def _read_tracks(npz_path: Path) -> dict:
    """The released npz, with its arrays checked for the shapes the viewer relies on."""
    try:
        data = load_dataset_npz(npz_path)
    except (ValueError, IndexError, TypeError) as exc:  # inconsistent packed-track arrays
        raise InputError(f"malformed npz {npz_path}: {exc}") from exc
    num_frames = len(np.atleast_1d(data["timestamps"]))
    c2w = np.asarray(data["camera2world"])
    if num_frames == 0 or c2w.shape != (num_frames, 3, 4) or not np.isfinite(c2w).all():
        raise InputError(f"malformed npz {npz_path}: camera2world {list(c2w.shape)} for "
                         f"{num_frames} timestamps (expected [T, 3, 4], finite)")
    return data


def _read_frames(video_path: Path, num_frames: int, npz_path: Path) -> np.ndarray:
    from stereo4d.videoio import read_video

    frames = read_video(video_path)
    if len(frames) != num_frames:
        raise InputError(f"{video_path} has {len(frames)} frames but {npz_path} has "
                         f"{num_frames} timestamps")
    return frames


def load_released(npz_path: str | Path, video_path: str | Path, hfov_deg: float) -> ClipView:
    """A released-format npz and its left rectified video (validated against each other).

    Raises:
      InputError: missing or malformed npz, unreadable video, frame counts that differ.
    """
    npz_path, video_path = Path(npz_path), Path(video_path)
    data = _read_tracks(npz_path)
    timestamps_us = np.asarray(data["timestamps"], dtype=np.int64).reshape(-1)
    frames = _read_frames(video_path, len(timestamps_us), npz_path)
    imh, imw = frames.shape[1:3]
    camera = PinholeCamera.from_hfov(data["extrs_rectified"], hfov_deg, aspect_hw=imh / imw)
    track3d = data["track3d"]
    visible = np.all(np.isfinite(track3d), axis=-1)
    return ClipView(
        name=str(data["name"]), timestamps_us=timestamps_us,
        camera_to_world=np.asarray(data["camera2world"], np.float64), camera=camera,
        image_hw=(imh, imw), frames=frames, track3d_world=track3d, visible=visible,
        colors_rgb=video_colors(frames, track3d, visible, camera),
        moving=motion_extent_m(track3d, visible) > MOVING_EXTENT_M,
        sources={"tracks": str(npz_path), "video": str(video_path),
                 "colours": "video under each track's first point",
                 "depth, removed tracks": "not shown (a released npz + video has neither; "
                                          "--vid shows them from this project's outputs)"})


def _record_colors(paths: ClipPaths, num_tracks: int) -> np.ndarray | None:
    """Track colours the optimisation recorded, when its pickle matches the export."""
    if not paths.optimized_tracks.is_file():
        return None
    record = load_pickle(paths.optimized_tracks)
    values = np.asarray(record.get("color_values", []) if isinstance(record, dict) else [])
    if values.shape != (num_tracks, 3):
        return None
    return np.clip(np.round(values * 255.0), 0, 255).astype(np.uint8)


def _load_depth(paths: ClipPaths, view: ClipView, hfov_deg: float, depth: bool,
                removed: bool) -> None:
    """Stereo depth and optimised-track depth (``depth``) and the removed tracks (``removed``,
    lifted with the stereo depth), in place, when their inputs exist."""
    from stereo4d.depth import depth_maps_from_flows, floater_mask
    from stereo4d.io import load_removal_reasons, load_stereo_flows
    from stereo4d.viz.depth import depth_from_tracks

    imh, imw = view.image_hw
    if depth:
        view.depth_optimized_m = depth_from_tracks(view.track3d_world, view.visible, view.camera,
                                                   imh, imw)
        view.sources["depth_optimized"] = "optimised tracks splatted into each frame"
    stereo = paths.stereo_output  # the compact npz or the reference's pickle, as written
    if not stereo.is_file():
        view.sources["depth_raw"] = view.sources["removed"] = f"not shown: no {stereo}"
        return
    flows = load_stereo_flows(stereo)
    if len(flows) != view.num_frames or np.shape(flows[0]["fwd"])[:2] != (imh, imw):
        raise InputError(f"{stereo}: {len(flows)} flows of size "
                         f"{np.shape(flows[0]['fwd'])[:2]} for {view.num_frames} frames of "
                         f"{(imh, imw)}")
    depth_filter_m = depth_maps_from_flows(flows, hfov_deg, remove_floaters=False)
    del flows
    if depth:
        view.depth_raw_m = np.where(floater_mask(depth_filter_m), 0.0, depth_filter_m)
        view.sources["depth_raw"] = f"{stereo.name} (floaters removed, as the " \
                                    "optimisation)"
    if removed and not (paths.segmentation.is_file() and paths.tracks_2d.is_file()):
        view.sources["removed"] = f"not shown: no {paths.segmentation} or {paths.tracks_2d}"
    elif removed:
        reasons = load_removal_reasons(paths.segmentation)
        if not reasons:
            view.sources["removed"] = (f"not shown: {paths.segmentation.name} predates removal "
                                       f"reasons (re-run segmentation.py)")
        else:
            tracks = Tracks2D.load(paths.tracks_2d)
            if tracks.num_frames != view.num_frames or any(
                    len(mask) != tracks.num_tracks for mask in reasons.values()):
                raise InputError(f"{paths.segmentation}: removal reasons do not match "
                                 f"{paths.tracks_2d}")
            track3d, valid = lift_tracks_to_3d(tracks, depth_filter_m, view.camera)
            for reason in REMOVAL_REASONS:
                rows = reasons.get(reason, np.zeros(tracks.num_tracks, bool))
                view.removed[reason] = (track3d[rows], valid[rows])
            view.sources["removed"] = f"{paths.segmentation.name} + {paths.tracks_2d.name}"


def load_outputs(paths: ClipPaths, hfov_deg: float, depth: bool = True,
                 removed: bool = True) -> ClipView:
    """A clip processed by this project (its ``<vid>.npz`` export and left video at least).

    Args:
      paths: the clip's paths; depth: also show stereo and optimised depth; removed: also show
        the tracks the filter removed (needs the stereo flows and the recorded reasons).
    Raises:
      InputError: a required output is missing, or the outputs disagree with each other.
    """
    for required in (paths.export_npz, paths.left_video):
        if not required.is_file():
            raise InputError(f"missing output: {required} (run the pipeline up to "
                             f"track_optimization.py, or pass --npz and --video)")
    view = load_released(paths.export_npz, paths.left_video, hfov_deg)
    del view.sources["depth, removed tracks"]
    colors = _record_colors(paths, view.num_tracks)
    if colors is not None:
        view.colors_rgb = colors
        view.sources["colours"] = paths.optimized_tracks.name
    if depth or removed:
        _load_depth(paths, view, hfov_deg, depth, removed)
    return view

