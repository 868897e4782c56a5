"""3D view of a clip's tracks: a fixed virtual camera looking at the scene, drawn with numpy/OpenCV.

What the reference's ``plot_3d_tracks_with_camera`` shows (one matplotlib 3D figure per frame),
drawn directly instead:
- the view: a cube around the 5th..95th percentiles of the visible track points (edge = the
  largest range x 1.11), seen from elevation 30 deg and azimuth -60 deg (matplotlib's default
  3D view) with world up = -y, through a perspective virtual camera that frames the cube;
- the frame's depth map as a coloured point cloud (every 2nd pixel), blended at 40 % over white;
- the camera path (dashed, up to 20 frames ahead) and the current camera's frustum;
- the trails of the tracks over the last 16 frames and a dot at each current position
  (``stereo4d.viz.trails``; fading trails where the reference draws opaque lines).

The scene-motion 2D view (``dyna_2dtrack``) is here too: frame t's camera sees the recent past
positions of each 3D track, so a static point stays put and a moving point leaves a trail.

Coordinates: world and camera as ``stereo4d.geometry`` (x right, y down, z forward, metres);
pixels are continuous (x, y).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from stereo4d.geometry import PinholeCamera
from stereo4d.viz.trails import DOT_RADIUS_PX, TRAIL_FRAMES, draw_trails_frame

__all__ = ["SceneView", "background_points", "render_scene3d", "render_scene_motion_2d"]

VIEW_ELEVATION_DEG = 30.0
"""Elevation of the virtual camera above the horizontal plane (matplotlib's default)."""
VIEW_AZIMUTH_DEG = -60.0
"""Azimuth of the virtual camera around the up axis, from +x towards +z (matplotlib's default)."""
VIEW_HFOV_DEG = 40.0
"""Horizontal FoV of the virtual camera; its distance is set so the cube's sphere just fits
(in the narrower of the two directions)."""
FIT_PERCENTILES = (5.0, 95.0)
"""Per-axis percentiles of the visible points that the view cube spans."""
CUBE_MARGIN = 1.11
"""Cube edge = largest per-axis percentile range x this (the reference's margin)."""
BACKGROUND_STRIDE = 2
"""Every this-many-th pixel (both axes) of the depth map becomes a background point."""
BACKGROUND_ALPHA = 0.4
"""Opacity of the background point cloud over white (the reference's blend factor)."""
BACKGROUND_SPLAT_PX = 3
"""Side of the square drawn for each background point, pixels."""
PATH_AHEAD_FRAMES = 20
"""The camera path is drawn up to this many frames past the current one."""
FRUSTUM_FRACTION = 0.1
"""Frustum depth as a fraction of the cube edge (the reference's ``far = interval / 10``)."""
DASH_PX = 6.0
"""Length of the dashes (and gaps) of the camera path, pixels."""
WHITE = (255, 255, 255)
PATH_RGB = (0, 0, 178)
"""Camera path and frustum colour (the reference's [0, 0, 0.7])."""
CUBE_RGB = (200, 200, 200)
"""Colour of the view cube's edges (stand-in for matplotlib's axes panes)."""
SUBPIXEL_BITS = 4
"""Fractional bits of the fixed-point coordinates passed to OpenCV's line drawing."""
_CUBE_EDGES = np.array([[0, 1], [1, 3], [3, 2], [2, 0], [4, 5], [5, 7], [7, 6], [6, 4],
                        [0, 4], [1, 5], [2, 6], [3, 7]])


@dataclass(frozen=True)
class SceneView:
    """A fixed virtual camera framing a cube of the world.

    Attributes:
      camera: one world-to-camera [3, 4] with normalised intrinsics.
      height, width: rendered image size, pixels.
      centre_m: [3] cube centre (world, metres); edge_m: cube edge, metres.
    """

    camera: PinholeCamera
    height: int
    width: int
    centre_m: np.ndarray
    edge_m: float

    @classmethod
    def fit(cls, points_world: np.ndarray, height: int = 512, width: int = 512,
            elevation_deg: float = VIEW_ELEVATION_DEG,
            azimuth_deg: float = VIEW_AZIMUTH_DEG) -> SceneView:
        """View of the cube around ``points_world`` [M, 3] (finite rows used; M may be 0)."""
        points = np.asarray(points_world, dtype=np.float64).reshape(-1, 3)
        points = points[np.all(np.isfinite(points), axis=-1)]
        if len(points) == 0:
            points = np.array([[0.0, 0.0, 1.0]])  # one metre in front of the origin
        lo, hi = np.percentile(points, FIT_PERCENTILES, axis=0)
        edge = max(float(np.max(hi - lo)) * CUBE_MARGIN, 1e-3)
        centre = 0.5 * (lo + hi)
        elev, azim = np.radians(elevation_deg), np.radians(azimuth_deg)
        up = np.array([0.0, -1.0, 0.0])
        towards_eye = (np.cos(elev) * np.cos(azim) * np.array([1.0, 0.0, 0.0])
                       + np.cos(elev) * np.sin(azim) * np.array([0.0, 0.0, 1.0]) + np.sin(elev) * up)
        tan_half_h = np.tan(np.radians(VIEW_HFOV_DEG) / 2)
        half_fov = np.arctan(tan_half_h * min(1.0, height / width))  # the narrower direction
        eye = centre + towards_eye * (0.5 * np.sqrt(3.0) * edge / np.sin(half_fov))
        forward = -towards_eye
        right = np.cross(forward, up)
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        rotation = np.stack([right, down, forward])
        world_to_camera = np.concatenate([rotation, -(rotation @ eye)[:, None]], axis=1)
        camera = PinholeCamera.from_hfov(world_to_camera, VIEW_HFOV_DEG, height / width)
        return cls(camera, height, width, centre, edge)

    def project(self, xyz_world: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """[..., 3] world -> (xy [..., 2] px, depth [...] m, ok [...] bool: finite, in front)."""
        xy, depth, _ = self.camera.project(np.asarray(xyz_world, np.float64), self.height, self.width)
        ok = np.isfinite(xy).all(axis=-1) & (depth > 0)
        return xy, depth, ok

    def cube_corners(self) -> np.ndarray:
        """[8, 3] corners of the view cube (bit i of the index selects the high end of axis i)."""
        bits = (np.arange(8)[:, None] >> np.arange(3)) & 1
        return self.centre_m + (bits - 0.5) * self.edge_m


def _polylines(image: np.ndarray, lines_xy: np.ndarray, rgb, thickness: int = 1) -> None:
    """Draws line pieces [K, P, 2] (px, NaN-free) with one colour, anti-aliased, in place."""
    if len(lines_xy) == 0:
        return
    fixed = np.round(lines_xy * (1 << SUBPIXEL_BITS)).astype(np.int32)
    cv2.polylines(image, list(fixed), False, tuple(int(c) for c in rgb), thickness, cv2.LINE_AA,
                  SUBPIXEL_BITS)


def _drawable(xy: np.ndarray, ok: np.ndarray, limit_px: float) -> np.ndarray:
    """Pieces [K, P, 2] whose points are all ok and within ``limit_px`` of the image."""
    keep = ok.all(axis=-1) & (np.abs(xy) < limit_px).all(axis=(-1, -2))
    return xy[keep]


def _dashes(points_xy: np.ndarray, dash_px: float) -> np.ndarray:
    """A polyline [P, 2] cut into dashes: [K, 2, 2] pieces, every other ``dash_px`` of length."""
    if len(points_xy) < 2:
        return np.zeros((0, 2, 2))
    seg = np.diff(points_xy, axis=0)
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(seg, axis=-1))])
    marks = np.arange(0.0, arc[-1], dash_px)
    ends = np.minimum(marks + dash_px, arc[-1])
    pos = np.stack([np.interp(marks, arc, points_xy[:, i]) for i in range(2)], axis=-1)
    end = np.stack([np.interp(ends, arc, points_xy[:, i]) for i in range(2)], axis=-1)
    return np.stack([pos, end], axis=1)[::2]


def _frustum_lines(camera_to_world: np.ndarray, depth_m: float, hfov_deg: float,
                   aspect_hw: float) -> np.ndarray:
    """[8, 2, 3] world segments: 4 rays from the centre and the far rectangle of a frustum."""
    half_w = np.tan(np.radians(hfov_deg) / 2) * depth_m
    half_h = half_w * aspect_hw
    corners_cam = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]]) * [half_w, half_h]
    corners_cam = np.concatenate([corners_cam, np.full((4, 1), depth_m)], axis=1)
    corners = corners_cam @ camera_to_world[:3, :3].T + camera_to_world[:3, 3]
    origin = np.broadcast_to(camera_to_world[:3, 3], (4, 3))
    rays = np.stack([origin, corners], axis=1)
    rim = np.stack([corners, np.roll(corners, -1, axis=0)], axis=1)
    return np.concatenate([rays, rim])


def background_points(depth_m: np.ndarray, rgb: np.ndarray, camera: PinholeCamera,
                      stride: int = BACKGROUND_STRIDE) -> tuple[np.ndarray, np.ndarray]:
    """Coloured point cloud of one frame: every ``stride``-th pixel centre with depth > 0.

    Args:
      depth_m: [H, W] metres (0 = none); rgb: [H, W, 3] uint8; camera: that frame's [3, 4].
    Returns:
      xyz_world [M, 3] float64, rgb [M, 3] uint8.
    """
    height, width = depth_m.shape
    ys, xs = np.mgrid[0:height:stride, 0:width:stride]
    depth = depth_m[ys, xs]
    valid = np.isfinite(depth) & (depth > 0)
    xy = np.stack([xs[valid], ys[valid]], axis=-1) + 0.5
    return camera.unproject(xy, depth[valid], height, width), rgb[ys[valid], xs[valid]]


def _splat_background(image: np.ndarray, view: SceneView, xyz: np.ndarray, rgb: np.ndarray) -> None:
    """Draws points as squares, nearest on top, blended at ``BACKGROUND_ALPHA`` over white.

    Each point's pixel gets its nearness rank (far to near, 1..M; the nearest point wins a
    shared pixel); a max filter of the square's size then spreads every rank over its square
    (the nearest covering point wins), and the ranks index the points' colours.
    """
    xy, depth, ok = view.project(xyz)
    height, width = view.height, view.width
    ok &= (xy[:, 0] >= 0) & (xy[:, 0] < width) & (xy[:, 1] >= 0) & (xy[:, 1] < height)
    order = np.argsort(-depth[ok].astype(np.float32))
    cols = np.floor(xy[ok, 0]).astype(np.int64)[order]
    rows = np.floor(xy[ok, 1]).astype(np.int64)[order]
    colour = rgb[ok][order].astype(np.float32)
    colour = np.round(BACKGROUND_ALPHA * colour + (1 - BACKGROUND_ALPHA) * 255.0).astype(np.uint8)
    rank = np.zeros((height, width), np.float32)  # float32 holds integer ranks exactly to 2^24
    rank[rows, cols] = np.arange(1, len(order) + 1, dtype=np.float32)
    kernel = np.ones((BACKGROUND_SPLAT_PX, BACKGROUND_SPLAT_PX), np.uint8)
    spread = cv2.dilate(rank, kernel).astype(np.int64)
    covered = spread > 0
    image[covered] = colour[spread[covered] - 1]


def render_scene3d(
    track3d_world: np.ndarray,
    visible: np.ndarray,
    colors: np.ndarray,
    cameras: PinholeCamera,
    depth_m: np.ndarray | None,
    video: np.ndarray | None,
    hfov_deg: float,
    view: SceneView | None = None,
    trail_frames: int = TRAIL_FRAMES,
) -> Iterator[np.ndarray]:
    """Yields the 3D view of every frame, uint8 [H, W, 3] (see the module docstring).

    Args:
      track3d_world: [N, T, 3] metres (NaN allowed where not visible); visible: [N, T] bool.
      colors: [N, 3] uint8 trail colours.
      cameras: the clip's T cameras (world-to-camera [T, 3, 4]).
      depth_m: [T, H, W] metres (0 = none) and video [T, H, W, 3] uint8 for the background
        cloud, or None for no background.
      hfov_deg: the clip cameras' horizontal FoV (for the frustum).
      view: virtual camera; default ``SceneView.fit`` on the visible track points.
    """
    track3d_world = np.asarray(track3d_world, dtype=np.float64)
    visible = np.asarray(visible, dtype=bool) & np.all(np.isfinite(track3d_world), axis=-1)
    view = view or SceneView.fit(track3d_world[visible])
    camera_to_world = cameras.camera_to_world
    num_frames = len(camera_to_world)
    track_xy, _, track_ok = view.project(track3d_world)
    track_vis = visible & track_ok
    path_xy, _, path_ok = view.project(camera_to_world[:, :3, 3])
    limit = 4.0 * (view.height + view.width)  # beyond this a point is far off-screen
    cube_xy, _, cube_ok = view.project(view.cube_corners()[_CUBE_EDGES])
    aspect = (depth_m.shape[1] / depth_m.shape[2]) if depth_m is not None else 1.0
    for t in range(num_frames):
        image = np.full((view.height, view.width, 3), WHITE, dtype=np.uint8)
        if depth_m is not None and video is not None:
            _splat_background(image, view, *background_points(depth_m[t], video[t], cameras.at(t)))
        _polylines(image, _drawable(cube_xy, cube_ok, limit), CUBE_RGB)
        stop = min(t + PATH_AHEAD_FRAMES, num_frames)
        if path_ok[:stop].all() and np.abs(path_xy[:stop]).max() < limit:
            _polylines(image, _dashes(path_xy[:stop], DASH_PX), PATH_RGB)
        frustum = _frustum_lines(camera_to_world[t], FRUSTUM_FRACTION * view.edge_m, hfov_deg, aspect)
        _polylines(image, _drawable(*view.project(frustum)[::2], limit), PATH_RGB)
        yield draw_trails_frame(image, t, np.where(track_vis[..., None], track_xy, 0.0), track_vis,
                                colors, trail_frames, DOT_RADIUS_PX)


def render_scene_motion_2d(
    video: np.ndarray,
    track3d_world: np.ndarray,
    visible: np.ndarray,
    colors: np.ndarray,
    cameras: PinholeCamera,
    trail_frames: int = TRAIL_FRAMES,
) -> Iterator[np.ndarray]:
    """Yields each frame with trails of scene motion (camera motion removed), uint8 [H, W, 3].

    For frame t the track positions of frames t - trail_frames .. t are projected with frame
    t's camera; a segment is drawn where the track is visible and in view at both of its ends
    and at t (as the reference's ``plot_3d_tracks_plt``).

    Args:
      video: [T, H, W, 3] uint8; track3d_world: [N, T, 3] metres; visible: [N, T] bool;
      colors: [N, 3] uint8; cameras: T world-to-camera [T, 3, 4].
    """
    track3d_world = np.asarray(track3d_world, dtype=np.float64)
    visible = np.asarray(visible, dtype=bool)
    imh, imw = video.shape[1:3]
    for t, frame in enumerate(video):
        first = max(0, t - trail_frames)
        xy, _, in_view = cameras.at(t).project(track3d_world[:, first:t + 1], imh, imw)
        shown = visible[:, first:t + 1] & in_view
        shown &= shown[:, -1:]
        xy = np.where(shown[..., None], xy, 0.0)
        yield draw_trails_frame(frame, t - first, xy, shown, colors, trail_frames, DOT_RADIUS_PX)
