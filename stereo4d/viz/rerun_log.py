"""Logs a ``ClipView`` to a Rerun recording (entity paths, timelines, blueprint).

Entity paths (one hierarchy; 3D under ``world``, images under ``camera``):

* ``world``: view coordinates RDF (x right, y down, z forward: the rectified camera's axes);
* ``world/camera``: the left camera's pose (``Transform3D``, camera to world) and its pinhole
  frustum; ``world/camera/image``: the frame inside the frustum;
* ``world/camera_trajectory``: the path of the camera centre (static);
* ``world/tracks/moving``, ``world/tracks/static``: the visible points of each frame
  (``Points3D`` in their track colours); ``world/tracks/moving/trails``: the last
  ``TRAIL_FRAMES`` frames of each moving track (``LineStrips3D``);
  ``world/tracks/static/trails`` too when ``trails="all"``;
* ``world/tracks/removed/{sky,boundary,drift}``: tracks the filter removed, by reason
  (lifted with the stereo depth; present only when the clip's outputs record the reasons);
* ``camera/image``: the left rectified frame; ``camera/depth/raw``: stereo depth;
  ``camera/depth/optimized``: depth of the optimised tracks.

Timelines: ``frame`` (sequence, the frame index in the clip) and ``timestamp`` (duration from
the start of the video, from the npz ``timestamps`` in microseconds).
"""

from __future__ import annotations

import numpy as np

from stereo4d.viz.clip_view import REMOVAL_REASONS, ClipView
from stereo4d.viz.trails import TRAIL_FRAMES

__all__ = [
    "DEPTH_UNITS_PER_M",
    "ENTITY",
    "FRUSTUM_DEPTH_M",
    "POINT_RADIUS_UI",
    "TRAIL_FRAMES",
    "TRAIL_RADIUS_UI",
    "default_blueprint",
    "log_clip",
    "trail_strips",
]

ENTITY = {
    "world": "world",
    "camera": "world/camera",
    "frustum_image": "world/camera/image",
    "trajectory": "world/camera_trajectory",
    "moving": "world/tracks/moving",
    "static": "world/tracks/static",
    "removed": "world/tracks/removed",
    "image": "camera/image",
    "depth_raw": "camera/depth/raw",
    "depth_optimized": "camera/depth/optimized",
}
"""Entity path of everything the viewer logs."""
TIMELINE_FRAME = "frame"
TIMELINE_TIMESTAMP = "timestamp"
POINT_RADIUS_UI = 2.0
"""Track points' radius in screen points (independent of the scene's scale)."""
TRAIL_RADIUS_UI = 0.75
"""Trail lines' radius in screen points."""
FRUSTUM_DEPTH_M = 0.5
"""Distance of the frustum's image plane from the camera (metres)."""
DEPTH_UNITS_PER_M = 1000.0
"""Depth images are logged as uint16 millimetres (0 = unknown; 65 m max > the 20 m range)."""
JPEG_QUALITY = 85
"""Quality of the JPEG-compressed frames (keeps recordings small)."""
REMOVED_RGB = {"sky": (80, 160, 255), "boundary": (255, 160, 0), "drift": (230, 30, 30)}
"""Colour of the removed tracks of each reason."""
TRAJECTORY_RGB = (0, 0, 178)
"""Colour of the camera trajectory (the 3D-view videos' path colour)."""


def trail_strips(track3d_world: np.ndarray, visible: np.ndarray, t: int,
                 trail_frames: int = TRAIL_FRAMES) -> np.ndarray:
    """Trails ending at frame ``t``: the last ``trail_frames`` positions of each track.

    Frames where a track is absent take its nearest present position inside the window (the
    previous one, else the next), so every strip has the same length and no gap jumps.

    Args:
      track3d_world: [K, T, 3] metres, NaN where absent; visible: [K, T] bool.
      t: current frame; trail_frames: window length (frames ``max(0, t - L + 1) .. t``).
    Returns:
      [K, L', 3] float32 strips, L' = min(L, t + 1); rows of tracks absent from the whole
      window are NaN (callers keep only tracks visible at ``t``).
    """
    start = max(0, t - trail_frames + 1)
    win = np.asarray(track3d_world[:, start:t + 1], dtype=np.float32)
    present = np.asarray(visible[:, start:t + 1], bool) & np.all(np.isfinite(win), axis=-1)
    length = win.shape[1]
    idx = np.where(present, np.arange(length), -1)
    last = np.maximum.accumulate(idx, axis=1)  # previous present frame, -1 if none yet
    nxt = np.where(present, np.arange(length), length)
    nxt = np.minimum.accumulate(nxt[:, ::-1], axis=1)[:, ::-1]  # next present frame
    source = np.where(last >= 0, last, np.minimum(nxt, length - 1))
    strips = np.take_along_axis(win, source[..., None], axis=1)
    strips[~present.any(axis=1)] = np.nan
    return strips


def _depth_mm(depth_m: np.ndarray) -> np.ndarray:
    depth = np.nan_to_num(np.asarray(depth_m, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    return np.clip(np.round(depth * DEPTH_UNITS_PER_M), 0, np.iinfo(np.uint16).max).astype(
        np.uint16)


def default_blueprint(view: ClipView):
    """3D scene on the left; image and depth views on the right."""
    import rerun.blueprint as rrb

    panels = [rrb.Spatial2DView(origin=ENTITY["image"], name="left rectified")]
    if view.depth_raw_m is not None:
        panels.append(rrb.Spatial2DView(origin=ENTITY["depth_raw"], name="stereo depth"))
    if view.depth_optimized_m is not None:
        panels.append(rrb.Spatial2DView(origin=ENTITY["depth_optimized"],
                                        name="optimised depth"))
    return rrb.Blueprint(
        rrb.Horizontal(rrb.Spatial3DView(origin=ENTITY["world"], name="3D tracks"),
                       rrb.Vertical(*panels), column_shares=[3, 1]),
        collapse_panels=True,
    )


def _log_static(rec, view: ClipView) -> None:
    import rerun as rr

    imh, imw = view.image_hw
    fx, fy, cx, cy = view.intrinsics_px()
    rec.log(ENTITY["world"], rr.ViewCoordinates.RDF, static=True)
    rec.log(ENTITY["camera"], rr.Pinhole(focal_length=[fx, fy], principal_point=[cx, cy],
                                         width=imw, height=imh, camera_xyz=rr.ViewCoordinates.RDF,
                                         image_plane_distance=FRUSTUM_DEPTH_M), static=True)
    centres = view.camera_to_world[:, :, 3].astype(np.float32)
    rec.log(ENTITY["trajectory"], rr.LineStrips3D([centres], colors=[TRAJECTORY_RGB],
                                                  radii=rr.Radius.ui_points(TRAIL_RADIUS_UI)),
            static=True)


def _log_points(rec, entity: str, track3d: np.ndarray, visible: np.ndarray, colors: np.ndarray,
                t: int, trails: bool, trail_frames: int) -> int:
    """Points of the tracks visible at ``t`` (and their trails). Returns the number of points."""
    import rerun as rr

    rows = np.flatnonzero(visible[:, t] & np.all(np.isfinite(track3d[:, t]), axis=-1))
    rec.log(entity, rr.Points3D(track3d[rows, t].astype(np.float32), colors=colors[rows],
                                radii=rr.Radius.ui_points(POINT_RADIUS_UI)))
    if trails:
        strips = trail_strips(track3d[rows], visible[rows], t, trail_frames)
        rec.log(f"{entity}/trails", rr.LineStrips3D(strips, colors=colors[rows],
                                                    radii=rr.Radius.ui_points(TRAIL_RADIUS_UI)))
    return len(rows)


def log_clip(rec, view: ClipView, frame_stride: int = 1, trails: str = "moving",
             trail_frames: int = TRAIL_FRAMES, jpeg_quality: int = JPEG_QUALITY,
             progress: bool = True) -> dict:
    """Logs ``view`` to the recording stream ``rec`` (sinks set by the caller).

    Args:
      rec: ``rerun.RecordingStream``.
      view: the clip (tracks already subsampled if wanted).
      frame_stride: log every ``frame_stride``-th frame (trails still use every frame).
      trails: ``moving`` (trails on moving tracks), ``all`` or ``none``.
      trail_frames: trail length in frames.
      jpeg_quality: JPEG quality of the logged frames.
    Returns:
      {'frames': [logged frame indices], 'points': {entity: [points per logged frame]}}.
    """
    import rerun as rr
    from tqdm import tqdm

    if trails not in ("moving", "all", "none"):
        raise ValueError(f"trails must be moving, all or none, got {trails!r}")
    _log_static(rec, view)
    if view.removed:
        rec.log(ENTITY["removed"], rr.AnnotationContext(
            [(i, reason, REMOVED_RGB[reason]) for i, reason in enumerate(REMOVAL_REASONS)]),
            static=True)
    groups = {"moving": view.moving, "static": ~view.moving}
    logged = {"frames": [], "points": {ENTITY[g]: [] for g in groups}}
    for reason in view.removed:
        logged["points"][f"{ENTITY['removed']}/{reason}"] = []
    frame_ids = range(0, view.num_frames, max(1, int(frame_stride)))
    for t in tqdm(frame_ids, desc="rerun", unit="frame", disable=not progress):
        rec.set_time(TIMELINE_FRAME, sequence=int(t))
        rec.set_time(TIMELINE_TIMESTAMP, duration=np.timedelta64(int(view.timestamps_us[t]), "us"))
        c2w = view.camera_to_world[t]
        rec.log(ENTITY["camera"], rr.Transform3D(translation=c2w[:, 3], mat3x3=c2w[:, :3]))
        image = rr.Image(view.frames[t]).compress(jpeg_quality=jpeg_quality)
        rec.log(ENTITY["frustum_image"], image)
        rec.log(ENTITY["image"], image)
        if view.depth_raw_m is not None:
            rec.log(ENTITY["depth_raw"], rr.DepthImage(_depth_mm(view.depth_raw_m[t]),
                                                       meter=DEPTH_UNITS_PER_M))
        if view.depth_optimized_m is not None:
            rec.log(ENTITY["depth_optimized"], rr.DepthImage(
                _depth_mm(view.depth_optimized_m[t]), meter=DEPTH_UNITS_PER_M))
        for group, mask in groups.items():
            with_trails = trails == "all" or (trails == "moving" and group == "moving")
            n = _log_points(rec, ENTITY[group], view.track3d_world[mask], view.visible[mask],
                            view.colors_rgb[mask], t, with_trails, trail_frames)
            logged["points"][ENTITY[group]].append(n)
        for reason in view.removed:
            track3d, valid = view.removed[reason]
            rows = np.flatnonzero(valid[:, t])
            entity = f"{ENTITY['removed']}/{reason}"
            rec.log(entity, rr.Points3D(track3d[rows, t].astype(np.float32),
                                        class_ids=[REMOVAL_REASONS.index(reason)],  # all
                                        radii=rr.Radius.ui_points(POINT_RADIUS_UI)))
            logged["points"][entity].append(len(rows))
        logged["frames"].append(int(t))
    return logged
