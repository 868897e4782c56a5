"""Shared geometry: VR180 equirectangular rays, rectification and crop maps, pinhole cameras.

Conventions (used by every stage)
---------------------------------
* Camera frame: x right, y down, z forward (OpenCV). Baseline along +x: the
  right eye sits at ``+baseline_m`` on the x axis of the left (reference) eye.
* Equirectangular eye images are described by ``fov_bounds_deg`` =
  ``(start_yaw, end_yaw, start_tilt, end_tilt)`` in degrees. Column ``u`` of a
  ``W``-wide image has longitude ``start_yaw + u * (end_yaw - start_yaw) / (W - 1)``
  (endpoints included, as ``np.linspace``), row ``v`` latitude likewise, and the
  ray of (lon, lat) is ``(cos(lat) sin(lon), sin(lat), cos(lat) cos(lon))``.
  The maps here are in the pixel-index convention of ``cv2.remap``.
* Perspective images use continuous pixel coordinates: pixel ``(row i, col j)``
  covers ``[j, j+1) x [i, i+1)`` and its centre is ``(j + 0.5, i + 0.5)``. A
  pinhole camera has its principal point at the image centre ``(W/2, H/2)``.
  2D tracks (``tracks_xy``) use the same continuous coordinates.
* ``rectified2rig`` [3, 3] rotates rays of the rectified eye into the raw (rig) eye.
* ``world_to_camera`` [..., 3, 4] is ``[R | t]`` with ``x_cam = R x_world + t``.

Everything is vectorised numpy, float64 unless stated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "IN_VIEW_BORDER_PX",
    "MIN_DEPTH_M",
    "PinholeCamera",
    "equirect_pixel_rays",
    "focal_length_px",
    "invert_rigid",
    "is_rotation",
    "perspective_pixel_rays",
    "perspective_to_equirect_map",
    "project_frames",
    "project_frames_xy",
    "rays_to_equirect_pixels",
    "reanchor_camera2world",
    "rectification_map",
    "rectified_camera2world_from_rig",
    "rectifying_rotations",
    "relative_pose",
    "relative_pose_from_rectified",
    "rig_cam_from_world_from_rectified",
    "rotation_xyz_deg",
]

IntrNormalized = Sequence[float]
"""(fx, fy, cx, cy), normalised by the image width (fx, cx) and height (fy, cy)."""

#: A projected point is in view only if its camera depth exceeds this (metres; the reference's).
MIN_DEPTH_M = 0.01
#: ... and if it lies at least this far inside the image edge, i.e. between the first and last
#: pixel centres (pixels; the reference's test).
IN_VIEW_BORDER_PX = 0.5

#: Default rotation tolerance for ``is_rotation`` (max abs error of R^T R - I and |det - 1|).
ROTATION_TOL = 1e-4


def focal_length_px(hfov_deg: float, width_px: float) -> float:
    """Focal length in pixels of a pinhole camera of horizontal FoV ``hfov_deg``."""
    return 0.5 * float(width_px) / np.tan(0.5 * np.radians(hfov_deg))


def _lon_lat_axes(hw: tuple[int, int], fov_bounds_deg) -> tuple[np.ndarray, np.ndarray]:
    start_yaw, end_yaw, start_tilt, end_tilt = (float(v) for v in fov_bounds_deg)
    lon = np.linspace(np.radians(start_yaw), np.radians(end_yaw), int(hw[1]))
    lat = np.linspace(np.radians(start_tilt), np.radians(end_tilt), int(hw[0]))
    return lon, lat


def equirect_pixel_rays(hw: tuple[int, int], fov_bounds_deg) -> np.ndarray:
    """Unit rays of every pixel of an equirectangular eye image.

    Args:
      hw: (height, width) of one eye in pixels.
      fov_bounds_deg: [4] (start_yaw, end_yaw, start_tilt, end_tilt) degrees.

    Returns:
      rays: [H, W, 3] float64 unit vectors (x right, y down, z forward).
    """
    lon, lat = _lon_lat_axes(hw, fov_bounds_deg)
    lon_g, lat_g = np.meshgrid(lon, lat)
    cos_lat = np.cos(lat_g)
    return np.stack([cos_lat * np.sin(lon_g), np.sin(lat_g), cos_lat * np.cos(lon_g)], axis=-1)


def rays_to_equirect_pixels(
    rays: np.ndarray, hw: tuple[int, int], fov_bounds_deg
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-index coordinates (u, v) in an equirectangular eye image of rays.

    Args:
      rays: [..., 3] rays (need not be unit length).
      hw: (height, width) of the eye image.
      fov_bounds_deg: [4] degrees.

    Returns:
      u, v: [...] float64 column and row (``cv2.remap`` convention).
    """
    start_yaw, end_yaw, start_tilt, end_tilt = (float(v) for v in fov_bounds_deg)
    rays = np.asarray(rays, dtype=np.float64)
    norm = np.linalg.norm(rays, axis=-1)
    lon = np.arctan2(rays[..., 0], rays[..., 2])
    lat = np.arcsin(np.clip(rays[..., 1] / np.maximum(norm, 1e-300), -1.0, 1.0))
    u = (lon - np.radians(start_yaw)) / np.radians(end_yaw - start_yaw) * (hw[1] - 1)
    v = (lat - np.radians(start_tilt)) / np.radians(end_tilt - start_tilt) * (hw[0] - 1)
    return u, v


def rectification_map(
    hw: tuple[int, int], fov_bounds_deg, rectified2rig: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each pixel of the rectified eye, where to sample the raw eye.

    Args:
      hw: (height, width) of one eye.
      fov_bounds_deg: [4] degrees.
      rectified2rig: [3, 3] rotation, rectified rays -> rig rays.

    Returns:
      map_x, map_y: [H, W] float32 for ``cv2.remap``.
    """
    rays = equirect_pixel_rays(hw, fov_bounds_deg)
    rig_rays = rays @ np.asarray(rectified2rig, dtype=np.float64).T
    u, v = rays_to_equirect_pixels(rig_rays, hw, fov_bounds_deg)
    return u.astype(np.float32), v.astype(np.float32)


def perspective_pixel_rays(height: int, width: int, hfov_deg: float) -> np.ndarray:
    """Unit rays through the pixel centres of a centred pinhole camera.

    Returns:
      rays: [height, width, 3] float64 unit vectors in the camera frame.
    """
    f_px = focal_length_px(hfov_deg, width)
    x = (np.arange(width) + 0.5 - 0.5 * width) / f_px
    y = (np.arange(height) + 0.5 - 0.5 * height) / f_px
    xg, yg = np.meshgrid(x, y)
    rays = np.stack([xg, yg, np.ones_like(xg)], axis=-1)
    return rays / np.linalg.norm(rays, axis=-1, keepdims=True)


def perspective_to_equirect_map(
    equirect_hw: tuple[int, int],
    fov_bounds_deg,
    height: int,
    width: int,
    hfov_deg: float,
    rectified2rig: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Map of a perspective crop into an equirectangular eye image.

    With ``rectified2rig`` the perspective camera is the *rectified* eye and the
    map samples the *raw* eye directly: rectification and crop in one remap.

    Returns:
      map_x, map_y: [height, width] float32 for ``cv2.remap``.
    """
    rays = perspective_pixel_rays(height, width, hfov_deg)
    if rectified2rig is not None:
        rays = rays @ np.asarray(rectified2rig, dtype=np.float64).T
    u, v = rays_to_equirect_pixels(rays, equirect_hw, fov_bounds_deg)
    return u.astype(np.float32), v.astype(np.float32)


def is_rotation(matrix: np.ndarray, tol: float = ROTATION_TOL) -> bool:
    """True when ``matrix`` [..., 3, 3] is a proper rotation (orthonormal, det +1)."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape[-2:] != (3, 3) or not np.all(np.isfinite(m)):
        return False
    eye = np.eye(3)
    ortho = np.abs(np.swapaxes(m, -1, -2) @ m - eye).max()
    return bool(ortho <= tol and np.abs(np.linalg.det(m) - 1.0).max() <= tol)


def rotation_xyz_deg(rx_deg: float, ry_deg: float, rz_deg: float) -> np.ndarray:
    """Rotation ``Rz @ Ry @ Rx`` from angles in degrees about the x, y and z axes. [3, 3]."""
    ax, ay, az = np.radians([rx_deg, ry_deg, rz_deg])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def invert_rigid(matrix: np.ndarray) -> np.ndarray:
    """Inverse of rigid transforms ``[R | t]`` [..., 3, 4] (or [..., 4, 4]) -> [..., 3, 4]."""
    m = np.asarray(matrix, dtype=np.float64)
    rot = m[..., :3, :3]
    trans = m[..., :3, 3:]
    rot_inv = np.swapaxes(rot, -1, -2)
    return np.concatenate([rot_inv, -rot_inv @ trans], axis=-1)


def relative_pose(c2w_from: np.ndarray, c2w_to: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(R [3, 3], t [3]) with X_to = R X_from + t (camera coordinates)."""
    w2c_to = invert_rigid(np.asarray(c2w_to, np.float64)[:3, :4])
    rotation = w2c_to[:3, :3] @ c2w_from[:3, :3]
    translation = w2c_to[:3, :3] @ c2w_from[:3, 3] + w2c_to[:3, 3]
    return rotation, translation


@dataclass(frozen=True)
class PinholeCamera:
    """Pinhole cameras (one per frame when the arrays carry a leading T axis).

    Attributes:
      world_to_camera: [..., 3, 4] ``[R | t]``; ``x_cam = R x_world + t``.
      fx, fy, cx, cy: normalised intrinsics (focal length and principal point
        divided by image width / height), as the reference's ``intr_normalized``.
    """

    world_to_camera: np.ndarray
    fx: float
    fy: float
    cx: float = 0.5
    cy: float = 0.5

    @classmethod
    def from_hfov(cls, world_to_camera: np.ndarray, hfov_deg: float, aspect_hw: float = 1.0):
        """Centred camera of horizontal FoV ``hfov_deg``; ``aspect_hw`` = height / width."""
        fx = focal_length_px(hfov_deg, 1.0)
        return cls(np.asarray(world_to_camera, dtype=np.float64), fx, fx / aspect_hw)

    def at(self, index) -> PinholeCamera:
        """The camera(s) ``world_to_camera[index]`` (e.g. frame t of per-frame cameras)."""
        return PinholeCamera(np.asarray(self.world_to_camera)[index], self.fx, self.fy, self.cx,
                             self.cy)

    @property
    def camera_to_world(self) -> np.ndarray:
        """[..., 3, 4] inverse extrinsics; ``[..., :, 3]`` is the camera centre."""
        return invert_rigid(self.world_to_camera)

    def intrinsic_matrix(self, imh: int, imw: int) -> np.ndarray:
        """[3, 3] intrinsics in pixels for an ``imh`` x ``imw`` image."""
        return np.array(
            [[self.fx * imw, 0, self.cx * imw], [0, self.fy * imh, self.cy * imh], [0, 0, 1.0]]
        )

    def to_camera(self, xyz_world: np.ndarray) -> np.ndarray:
        """World points [..., 3] -> camera coordinates [..., 3] (leading axes broadcast against
        the camera's)."""
        ext = self.world_to_camera
        return np.einsum("...ij,...j->...i", ext[..., :3, :3], xyz_world) + ext[..., :3, 3]

    def project(self, xyz_world: np.ndarray, imh: int, imw: int, min_depth_m: float = MIN_DEPTH_M):
        """World points -> pixels.

        Args:
          xyz_world: [..., 3] points; leading axes broadcast against the camera's.
        Returns:
          xy: [..., 2] continuous pixel coordinates; depth_m: [...] camera z;
          in_view: [...] bool, inside ``[0.5, W-0.5) x [0.5, H-0.5)`` with depth > ``min_depth_m``
          (the reference's test).
        """
        xyz_cam = self.to_camera(xyz_world)
        depth = xyz_cam[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            x = self.fx * imw * xyz_cam[..., 0] / depth + self.cx * imw
            y = self.fy * imh * xyz_cam[..., 1] / depth + self.cy * imh
        b = IN_VIEW_BORDER_PX
        in_view = (x >= b) & (y >= b) & (x < imw - b) & (y < imh - b) & (depth > min_depth_m)
        return np.stack([x, y], axis=-1), depth, in_view

    def unproject(self, xy: np.ndarray, depth_m: np.ndarray, imh: int, imw: int) -> np.ndarray:
        """Pixels with z-depth -> world points.

        Args:
          xy: [..., 2] continuous pixel coordinates; depth_m: [...] camera z in metres.
        Returns:
          xyz_world: [..., 3].
        """
        xy = np.asarray(xy, dtype=np.float64)
        x_cam = (xy[..., 0] / imw - self.cx) / self.fx
        y_cam = (xy[..., 1] / imh - self.cy) / self.fy
        xyz_cam = np.stack([x_cam, y_cam, np.ones_like(x_cam)], axis=-1) * np.asarray(depth_m)[..., None]
        ext = self.world_to_camera
        rot_t = np.swapaxes(ext[..., :3, :3], -1, -2)
        return np.einsum("...ij,...j->...i", rot_t, xyz_cam - ext[..., :3, 3])


def project_frames(
    points_world: np.ndarray,
    world_to_camera: np.ndarray,
    intr_normalized: IntrNormalized,
    imh: int,
    imw: int,
    min_depth_m: float = MIN_DEPTH_M,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Project per-frame points with per-frame pinhole cameras.

    Args:
      points_world: [..., T, 3] float, world points in metres (may contain NaN).
      world_to_camera: [T, 3, 4] float, one [R | t] per frame (frame axis matches points).
      intr_normalized: (fx, fy, cx, cy), normalised intrinsics.
      imh, imw: image height and width in pixels.
      min_depth_m: minimum camera depth for a point to be in view.

    Returns:
      xy_px: [..., T, 2] float64 pixel coordinates (x, y); inf/NaN where depth is 0 or the input
        is NaN.
      in_view: [..., T] bool, inside [0.5, imw - 0.5) x [0.5, imh - 0.5) with depth > min_depth_m.
      depth_m: [..., T] float64 camera-frame z.
    """
    x_px, y_px, in_view, depth_m = project_frames_xy(
        np.asarray(points_world, dtype=np.float64),
        world_to_camera,
        intr_normalized,
        imh,
        imw,
        min_depth_m,
    )
    return np.stack([x_px, y_px], axis=-1), in_view, depth_m


def project_frames_xy(
    points: np.ndarray,
    world_to_camera: np.ndarray,
    intr_normalized: IntrNormalized,
    imh: int,
    imw: int,
    min_depth_m: float = MIN_DEPTH_M,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`project_frames` as separate x, y arrays (written out per component: ~3x faster than
    einsum on [N, T, 3] float64)."""
    fx, fy, cx, cy = (float(v) for v in intr_normalized)
    extr = np.asarray(world_to_camera, dtype=np.float64)
    x_w, y_w, z_w = points[..., 0], points[..., 1], points[..., 2]
    x_cam, y_cam, depth_m = (
        extr[:, row, 0] * x_w + extr[:, row, 1] * y_w + extr[:, row, 2] * z_w + extr[:, row, 3]
        for row in range(3)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        x_px = (fx * imw * x_cam + cx * imw * depth_m) / depth_m
        y_px = (fy * imh * y_cam + cy * imh * depth_m) / depth_m
        in_view = (
            (x_px >= IN_VIEW_BORDER_PX)
            & (y_px >= IN_VIEW_BORDER_PX)
            & (x_px < imw - IN_VIEW_BORDER_PX)
            & (y_px < imh - IN_VIEW_BORDER_PX)
            & (depth_m > min_depth_m)
        )
    return x_px, y_px, in_view, depth_m


# --- Conventions between a stereo rig's raw eyes and the rectified cameras -------------------
# Raw eye e sees rig rays ``d_e = R_e d_rect`` (``R_e = rectified2rig[e]``); the right rectified
# camera sits at ``+baseline_m`` on the left rectified camera's x axis with the same orientation.
# So the raw right eye's coordinates follow from the raw left eye's as
# ``x_R = R x_L + t`` with ``R = R_1 R_0^T`` and ``t = -baseline_m R_1 e_x`` (``right_from_left``).


def relative_pose_from_rectified(rectified2rig: np.ndarray, baseline_m: float) -> np.ndarray:
    """Raw right eye from raw left eye, ``[R | t]`` [3, 4], of a rig with ``rectified2rig``
    [2, 3, 3] and the right rectified camera at ``+baseline_m`` on x (metres)."""
    r_left, r_right = np.asarray(rectified2rig, dtype=np.float64)
    t = -float(baseline_m) * r_right[:, 0]
    return np.concatenate([r_right @ r_left.T, t[:, None]], axis=1)


def rectifying_rotations(right_from_left: np.ndarray) -> tuple[np.ndarray, float]:
    """``rectified2rig`` [2, 3, 3] and the baseline (metres) of raw eyes ``x_R = R x_L + t``.

    The rectified x axis points from the left eye's centre to the right eye's. A rotation about
    that axis is not observable from the rig (any such choice rectifies), so the rectified z axis
    is taken as the mean of the two raw eyes' optical axes, made orthogonal to x (the rectified
    views look where the lenses look). ``relative_pose_from_rectified`` inverts it exactly.
    """
    m = np.asarray(right_from_left, dtype=np.float64)
    rot, t = m[:, :3], m[:, 3]
    centre_right = -rot.T @ t  # right eye centre in left-eye coordinates
    baseline_m = float(np.linalg.norm(centre_right))
    x_axis = centre_right / baseline_m
    forward = np.array([0.0, 0.0, 1.0]) + rot.T @ np.array([0.0, 0.0, 1.0])
    z_axis = forward - (forward @ x_axis) * x_axis
    z_axis /= np.linalg.norm(z_axis)
    y_axis = np.cross(z_axis, x_axis)
    r_left = np.stack([x_axis, y_axis, z_axis], axis=1)  # columns: rectified axes in left coords
    return np.stack([r_left, rot @ r_left]), baseline_m


def rectified_camera2world_from_rig(
    left_cam_from_world: np.ndarray, rectified2rig_left: np.ndarray
) -> np.ndarray:
    """camera2world [..., 3, 4] of the rectified left camera from the raw left eye's
    world-to-camera ``[R | t]`` [..., 3, 4] (COLMAP's ``cam_from_world``) and ``rectified2rig[0]``
    [3, 3]: ``x_raw = R_0 x_rect`` so ``rect_from_world = R_0^T [R | t]``."""
    r0 = np.asarray(rectified2rig_left, dtype=np.float64)
    rect_from_world = r0.T @ np.asarray(left_cam_from_world, dtype=np.float64)[..., :3, :4]
    return invert_rigid(rect_from_world)


def rig_cam_from_world_from_rectified(
    camera2world: np.ndarray, rectified2rig_left: np.ndarray
) -> np.ndarray:
    """Inverse of ``rectified_camera2world_from_rig``: the raw left eye's world-to-camera
    [..., 3, 4] from the rectified left camera's camera2world [..., 3, 4]."""
    r0 = np.asarray(rectified2rig_left, dtype=np.float64)
    return r0 @ invert_rigid(camera2world)


def reanchor_camera2world(camera2world: np.ndarray) -> np.ndarray:
    """camera2world [T, 3, 4] re-expressed in the first camera's frame (``[0]`` = ``[I | 0]``)."""
    c2w = np.asarray(camera2world, dtype=np.float64)[..., :3, :4]
    first_inv = invert_rigid(c2w[0])
    return np.concatenate([first_inv[:, :3] @ c2w[..., :3],
                           (first_inv[:, :3] @ c2w[..., 3:]) + first_inv[:, 3:]], axis=-1)
