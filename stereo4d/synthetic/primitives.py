"""The synthetic scene's types: textured rigid primitives, their motion and the camera path.

Conventions as in `stereo4d.synthetic.scene` (which builds the street from them): world frame
x right, y down, z forward; a primitive's pose per time is ``x_world = R(t) @ x_local + c(t)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Angle of one pixel used to band-limit textures (radians): slightly above the coarsest of the
#: equirect eye (100 deg / 1024 px) and the 512 px 60-degree view, so both renders agree.
PIXEL_FOOTPRINT_RAD = 0.0021


def rotations_xyz_deg(angles_deg: np.ndarray) -> np.ndarray:
    """``Rz @ Ry @ Rx`` (as ``geometry.rotation_xyz_deg``) for angles [..., 3] degrees -> [..., 3, 3]."""
    a = np.radians(np.asarray(angles_deg, dtype=np.float64))
    cx, cy, cz = np.cos(a[..., 0]), np.cos(a[..., 1]), np.cos(a[..., 2])
    sx, sy, sz = np.sin(a[..., 0]), np.sin(a[..., 1]), np.sin(a[..., 2])
    rows = [
        [cz * cy, cz * sy * sx - sz * cx, cz * sy * cx + sz * sx],
        [sz * cy, sz * sy * sx + cz * cx, sz * sy * cx - cz * sx],
        [-sy, cy * sx, cy * cx],
    ]
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


@dataclass(frozen=True)
class Texture:
    """Band-limited procedural colour: ``base * shade * (1 + sum_k amp_k sin(2 pi w_k . p + phi_k))``.

    Attributes:
      base_rgb: [3] in [0, 1].
      wave_cycles_per_m: [K, 3] wave vectors in object-local coordinates (cycles per metre);
        the finest wavelength is ``1 / max |w_k|``.
      wave_phase: [K] radians.
      wave_amp_rgb: [K, 3] relative amplitude per wave and channel.
      photo: name of a photograph (``stereo4d.synthetic.photos.PHOTO_NAMES``) replacing the
        waves, "" for none; photo_m_per_px: its texel size on the surface (metres);
      photo_offset_px: [2] texel offset of the local origin; photo_contrast: relative contrast.

    Waves are band-limited at render time by their projected size in pixels (see
    ``PIXEL_FOOTPRINT_RAD``), so fine detail appears on near surfaces without aliasing far away.
    """

    base_rgb: np.ndarray
    wave_cycles_per_m: np.ndarray
    wave_phase: np.ndarray
    wave_amp_rgb: np.ndarray
    photo: str = ""
    photo_m_per_px: float = 0.01
    photo_offset_px: tuple[float, float] = (0.0, 0.0)
    photo_contrast: float = 1.0

    @property
    def wavelength_m(self) -> np.ndarray:
        """[K] wavelength of each wave in metres."""
        return 1.0 / np.linalg.norm(self.wave_cycles_per_m, axis=1)


@dataclass(frozen=True)
class Motion:
    """Rigid motion: ``c(t) = c0 + v t + bob``, rotation angles ``r0 + spin t + wobble sin(2 pi f t)``.

    Attributes (times in seconds, angles ``Rz @ Ry @ Rx`` degrees):
      centre_m: [3]; velocity_m_s: [3]; rotation_deg: [3]; spin_deg_s: [3];
      wobble_deg: [3]; wobble_hz: float; bob_m: vertical bob amplitude at twice ``wobble_hz``.
    """

    centre_m: np.ndarray
    velocity_m_s: np.ndarray = field(default_factory=lambda: np.zeros(3))
    rotation_deg: np.ndarray = field(default_factory=lambda: np.zeros(3))
    spin_deg_s: np.ndarray = field(default_factory=lambda: np.zeros(3))
    wobble_deg: np.ndarray = field(default_factory=lambda: np.zeros(3))
    wobble_hz: float = 0.0
    bob_m: float = 0.0

    def pose(self, times_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Object-to-world rotation [T, 3, 3] and centre [T, 3] at times [T] seconds."""
        t = np.asarray(times_s, dtype=np.float64)[:, None]
        wave = np.sin(2 * np.pi * self.wobble_hz * t)
        angles = self.rotation_deg + self.spin_deg_s * t + self.wobble_deg * wave
        bob = self.bob_m * np.sin(4 * np.pi * self.wobble_hz * t) * np.array([0.0, 1.0, 0.0])
        return rotations_xyz_deg(angles), self.centre_m + self.velocity_m_s * t + bob

    @property
    def is_static(self) -> bool:
        moving = (self.velocity_m_s, self.spin_deg_s, self.wobble_deg * self.wobble_hz)
        return not any(np.any(m != 0) for m in moving) and self.bob_m * self.wobble_hz == 0


@dataclass(frozen=True)
class Primitive:
    """One rigid object.

    Attributes:
      name: for humans; shape: "box" or "sphere"; half_size_m: [3] half extents (sphere:
      radius three times); label: ADE20K id (the ground overrides it per strip);
      texture; motion; ground: True for the street surface (strip labels and colours).
    """

    name: str
    shape: str
    half_size_m: np.ndarray
    label: int
    texture: Texture
    motion: Motion
    ground: bool = False

    @property
    def is_dynamic(self) -> bool:
        return not self.motion.is_static


@dataclass(frozen=True)
class CameraPath:
    """Rectified left camera: walks along +z with a small sway.

    Attributes:
      speed_m_s: forward speed; eye_height_m: height above the ground;
      sway_m: [3] lateral / vertical / forward position sway amplitudes;
      sway_deg: [3] pitch (x), yaw (y), roll (z) amplitudes; sway_hz: [3] per angle;
      phases: [6] radians (position x, y, z, then the three angles).
      turn_deg_s: constant yaw rate added to the sway (a fast turn of the head), deg/s.
    """

    speed_m_s: float
    eye_height_m: float
    sway_m: np.ndarray
    sway_deg: np.ndarray
    sway_hz: np.ndarray
    phases: np.ndarray
    turn_deg_s: float = 0.0

    def camera_to_world(self, times_s: np.ndarray) -> np.ndarray:
        """[T, 3, 4] camera-to-world ``[R | c]`` of the rectified left camera."""
        t = np.asarray(times_s, dtype=np.float64)[:, None]
        pos_hz = np.array([0.9, 1.8, 1.8])  # step frequency: side sway once, bob twice per stride
        pos = self.sway_m * np.sin(2 * np.pi * pos_hz * t + self.phases[:3])
        pos = pos + np.array([0.0, 0.0, self.speed_m_s]) * t
        angles = self.sway_deg * np.sin(2 * np.pi * self.sway_hz * t + self.phases[3:])
        if self.turn_deg_s:
            angles = angles + np.array([0.0, self.turn_deg_s, 0.0]) * t
        return np.concatenate([rotations_xyz_deg(angles), pos[..., None]], axis=-1)


@dataclass(frozen=True)
class Scene:
    """Primitives (index = object id) and the camera path."""

    primitives: tuple[Primitive, ...]
    camera: CameraPath
    seed: int
    #: Pixel angle (radians) that textures are band-limited for (see ``PIXEL_FOOTPRINT_RAD``).
    pixel_footprint_rad: float = PIXEL_FOOTPRINT_RAD

    def poses(self, times_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Object-to-world rotations [P, T, 3, 3] and centres [P, T, 3]."""
        rots, centres = zip(*(p.motion.pose(times_s) for p in self.primitives))
        return np.stack(rots), np.stack(centres)

    @property
    def is_dynamic(self) -> np.ndarray:
        """[P] bool."""
        return np.array([p.is_dynamic for p in self.primitives])

    def describe(self) -> str:
        """One line per primitive (stored in the gt file for humans)."""
        return "\n".join(
            f"{i}: {p.name} {p.shape} half={np.round(p.half_size_m, 3).tolist()} label={p.label} "
            f"dynamic={p.is_dynamic}"
            for i, p in enumerate(self.primitives)
        )
