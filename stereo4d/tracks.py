"""Track containers (2D and 3D) and lifting 2D tracks to 3D with depth maps.

The pickled dict layouts are the reference's, so files interoperate:
``tapir_2d.pkl`` / ``tapir_remove_drift_tracks.pkl`` hold
``{'tracks': [N, T, 2] float32 (x, y) px, 'visibles': [N, T] bool,
'query_points': [N, 3] int (t, y, x)}``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stereo4d.geometry import PinholeCamera, project_frames
from stereo4d.io import InputError, load_tracks_2d

__all__ = [
    "VALID_DEPTH_MAX_M",
    "VALID_DEPTH_MIN_M",
    "Tracks2D",
    "lift_tracks_to_3d",
    "project_tracks",
    "sample_colors",
    "sample_tracks_for_display",
    "select_dynamic_tracks",
]

#: Depth range in which a lifted point counts as valid (the reference's 0 and 20).
VALID_DEPTH_MIN_M = 0.0
VALID_DEPTH_MAX_M = 20.0


def sample_tracks_for_display(num_tracks: int, max_tracks: int, seed: int = 0) -> np.ndarray:
    """Indices of at most ``max_tracks`` tracks chosen at random without replacement (sorted).

    All ``num_tracks`` in order when there are no more than ``max_tracks``; the choice is fixed
    by ``seed``.
    """
    if num_tracks <= max_tracks:
        return np.arange(num_tracks)
    return np.sort(np.random.default_rng(seed).choice(num_tracks, max_tracks, replace=False))


@dataclass
class Tracks2D:
    """Dense 2D tracks of one clip.

    Attributes:
      tracks_xy: [N, T, 2] float32 continuous pixel coordinates (x, y).
      visibles: [N, T] bool.
      query_points_tyx: [N, 3] (t, y, x); t integer.
    """

    tracks_xy: np.ndarray
    visibles: np.ndarray
    query_points_tyx: np.ndarray

    def __post_init__(self):
        self.tracks_xy = np.asarray(self.tracks_xy, dtype=np.float32)
        self.visibles = np.asarray(self.visibles, dtype=bool)
        self.query_points_tyx = np.asarray(self.query_points_tyx)
        n = len(self.tracks_xy)
        if self.tracks_xy.ndim != 3 or self.tracks_xy.shape[-1] != 2:
            raise InputError(f"tracks must be [N, T, 2], got {list(self.tracks_xy.shape)}")
        if self.visibles.shape != self.tracks_xy.shape[:2]:
            raise InputError(f"visibles {list(self.visibles.shape)} do not match tracks "
                             f"{list(self.tracks_xy.shape[:2])}")
        if self.query_points_tyx.shape != (n, 3):
            raise InputError(f"query_points must be [{n}, 3], got {list(self.query_points_tyx.shape)}")

    @property
    def num_tracks(self) -> int:
        return self.tracks_xy.shape[0]

    @property
    def num_frames(self) -> int:
        return self.tracks_xy.shape[1]

    def subset(self, keep: np.ndarray) -> Tracks2D:
        """Tracks selected by a [N] bool mask or index array."""
        return Tracks2D(self.tracks_xy[keep], self.visibles[keep], self.query_points_tyx[keep])

    def to_dict(self) -> dict:
        """The reference's pickle layout."""
        return {
            "tracks": self.tracks_xy.astype(np.float32),
            "visibles": self.visibles.astype(bool),
            "query_points": self.query_points_tyx,
        }

    @classmethod
    def load(cls, path) -> Tracks2D:
        """A 2D-track pickle, checked by ``io.load_tracks_2d`` (InputError naming the file)."""
        return cls.from_dict(load_tracks_2d(path), str(path))

    @classmethod
    def from_dict(cls, data: dict, source: str = "tracks") -> Tracks2D:
        if not isinstance(data, dict):
            raise InputError(f"{source}: expected a dict of tracks, got {type(data).__name__}")
        missing = [k for k in ("tracks", "visibles", "query_points") if k not in data]
        if missing:
            raise InputError(f"{source}: missing key(s) {', '.join(missing)}")
        num_tracks, num_frames = (np.shape(data["tracks"])[:2] if np.ndim(data["tracks"]) == 3
                                  else (0, 0))
        tracks = np.asarray(data["tracks"], dtype=np.float32).reshape(num_tracks, num_frames, 2)
        return cls(tracks, np.asarray(data["visibles"]).reshape(num_tracks, num_frames),
                   np.asarray(data["query_points"]).reshape(num_tracks, 3))


def select_dynamic_tracks(track3d_world: np.ndarray, visible: np.ndarray, motion_px: np.ndarray,
                          threshold_px: float, max_tracks: int, seed: int = 0) -> np.ndarray:
    """Indices of the moving tracks to display, ordered top to bottom (as the reference).

    A track moves when its scene motion exceeds ``threshold_px`` in some frame; the movers are
    sorted by the height (world y) of their first visible point and at most ``max_tracks`` of
    them are kept at random (``seed``), keeping that order so trail colours run by height.

    Args:
      track3d_world: [N, T, 3]; visible: [N, T] bool; motion_px: [N, T] scene motion.
    Returns:
      [K] int indices, K <= max_tracks.
    """
    usable = np.asarray(visible, bool) & np.all(np.isfinite(track3d_world), axis=-1)
    moving = np.flatnonzero((np.asarray(motion_px) > threshold_px).any(axis=1) & usable.any(axis=1))
    first = np.argmax(usable[moving], axis=1)
    height = np.asarray(track3d_world)[moving, first, 1]
    ordered = moving[np.argsort(height, kind="stable")]
    return ordered[sample_tracks_for_display(len(ordered), max_tracks, seed)]


def _pixel_index(coord: np.ndarray, size: int) -> np.ndarray:
    """Continuous coordinate -> index of the pixel containing it, clipped to the image."""
    return np.clip(np.floor(coord).astype(np.int64), 0, size - 1)


def lift_tracks_to_3d(
    tracks: Tracks2D,
    depth_m: np.ndarray,
    cameras: PinholeCamera,
    min_depth_m: float = VALID_DEPTH_MIN_M,
    max_depth_m: float = VALID_DEPTH_MAX_M,
) -> tuple[np.ndarray, np.ndarray]:
    """Unprojects every track point with the depth map of its frame.

    Args:
      tracks: N tracks over T frames.
      depth_m: [T, H, W] z-depth per frame (0 or non-finite where unknown).
      cameras: world-to-camera extrinsics [T, 3, 4] with normalised intrinsics.
      min_depth_m, max_depth_m: a point is valid when min < depth < max (exclusive).

    Returns:
      track3d_world: [N, T, 3] float64 (finite everywhere: invalid points are
        unprojected with whatever depth is there, as the reference does).
      valid: [N, T] bool = visible & inside the image & depth in range.
    """
    num_frames, imh, imw = depth_m.shape
    if tracks.num_frames != num_frames:
        raise InputError(f"tracks have {tracks.num_frames} frames, depth has {num_frames}")
    xy = tracks.tracks_xy.astype(np.float64)
    inside = (xy[..., 0] >= 0) & (xy[..., 1] >= 0) & (xy[..., 0] < imw) & (xy[..., 1] < imh)
    frame = np.broadcast_to(np.arange(num_frames), xy.shape[:2])
    depth = depth_m[frame, _pixel_index(xy[..., 1], imh), _pixel_index(xy[..., 0], imw)]
    depth = np.where(np.isfinite(depth), depth, 0.0)
    valid = tracks.visibles & inside & (depth > min_depth_m) & (depth < max_depth_m)
    per_frame = PinholeCamera(np.asarray(cameras.world_to_camera)[:, None], cameras.fx, cameras.fy,
                              cameras.cx, cameras.cy)  # [T, 1, 3, 4] broadcasts over tracks
    world = per_frame.unproject(xy.transpose(1, 0, 2), depth.T, imh, imw)  # [T, N, 3]
    return world.transpose(1, 0, 2), valid


def sample_colors(video: np.ndarray, query_points_tyx: np.ndarray) -> np.ndarray:
    """Colour of each track at its query pixel. video: [T, H, W, 3] uint8 -> [N, 3] uint8."""
    t = np.asarray(query_points_tyx[:, 0]).astype(np.int64)
    y = _pixel_index(np.asarray(query_points_tyx[:, 1], dtype=np.float64), video.shape[1])
    x = _pixel_index(np.asarray(query_points_tyx[:, 2], dtype=np.float64), video.shape[2])
    return video[t, y, x]


def project_tracks(track3d_world: np.ndarray, cameras: PinholeCamera, imh: int, imw: int):
    """Projects 3D tracks into each frame's camera.

    Args:
      track3d_world: [N, T, 3] metres (NaN where absent); cameras: world-to-camera [T, 3, 4].
    Returns:
      tracks_xy: [N, T, 2] continuous pixels; in_view: [N, T] bool (finite, in front, inside).
    """
    xy, in_view, _ = project_frames(track3d_world, cameras.world_to_camera,
                                    (cameras.fx, cameras.fy, cameras.cx, cameras.cy), imh, imw)
    return xy, in_view & np.all(np.isfinite(xy), axis=-1)
