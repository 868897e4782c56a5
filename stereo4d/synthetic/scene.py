"""Scene description of the synthetic VR180 street clip: primitives, labels, textures, motion.

World frame: the camera convention (x right, y down, z forward); the ground is the plane
``y = eye_height_m`` and the rectified left camera starts near the origin looking down +z,
walking forward along a street. Every primitive is an oriented box or a sphere with a rigid
pose per time, ``x_world = R(t) @ x_local + c(t)``; textures and labels are functions of the
object-local point, so a surface point keeps its colour and label for the whole clip.

Everything here is deterministic from ``(seed, eye_height_m, variation)``: ``build_scene`` is what
the ground-truth oracle calls to rebuild the scene from the values stored in the gt file. The
default ``SceneVariation`` is the demo street; its other settings (walking speed, sway, a turn,
near clutter, open space, more movers, photographs as textures) draw from their own random
stream, so the default scene is unchanged by them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "ADE20K",
    "GROUND_STRIPS",
    "CameraPath",
    "Motion",
    "Primitive",
    "Scene",
    "SceneVariation",
    "Texture",
    "build_scene",
    "rotations_xyz_deg",
]

#: ADE20K (150 classes, 1-based as in the reference segmentation) ids used by the scene.
ADE20K = {
    "wall": 1,
    "building": 2,
    "sky": 3,
    "road": 7,
    "sidewalk": 12,
    "person": 13,
    "earth": 14,
    "car": 21,
    "ball": 120,
}

#: Sinusoids per texture (sum of plane waves in object-local coordinates). Many waves in random
#: directions give isotropic, blob-like texture (few waves look like stripes: aperture problems).
NUM_WAVES = 24
#: Angle of one pixel used to band-limit textures (radians): slightly above the coarsest of the
#: equirect eye (100 deg / 1024 px) and the 512 px 60-degree view, so both renders agree.
PIXEL_FOOTPRINT_RAD = 0.0021
#: A wave fades out as its projected wavelength shrinks from WAVE_FADE_PX[1] to WAVE_FADE_PX[0]
#: pixels (anti-aliasing: prefiltered procedural texture).
WAVE_FADE_PX = (2.0, 4.0)
#: Street layout across x (metres from the street centre line): road, grass/earth strip, sidewalk.
ROAD_HALF_WIDTH_M = 3.0
EARTH_OUTER_M = 3.8
SIDEWALK_OUTER_M = 6.0
#: Width over which ground strip colours blend (band-limits the strip edges), metres.
STRIP_BLEND_M = 0.1
#: World z of the facade closing the street; keeps every non-sky depth under ~20 m.
BACK_FACADE_Z_M = 19.0
#: Light direction (object-local, y down) for the baked, time-constant Lambertian shading.
LIGHT_DIR_LOCAL = np.array([-0.4, -0.8, -0.45]) / np.linalg.norm([-0.4, -0.8, -0.45])
#: Shading = AMBIENT + (1 - AMBIENT) * max(0, n . l).
AMBIENT = 0.7
#: Sky colours (linear RGB in [0, 1]) at the horizon and straight up.
SKY_HORIZON_RGB = np.array([0.78, 0.84, 0.90])
SKY_ZENITH_RGB = np.array([0.42, 0.58, 0.84])
#: Ground strips: (outer |x| in metres, ADE20K id, base colour), from the centre line outwards.
GROUND_STRIPS = (
    (ROAD_HALF_WIDTH_M, ADE20K["road"], (0.38, 0.38, 0.40)),
    (EARTH_OUTER_M, ADE20K["earth"], (0.47, 0.38, 0.27)),
    (np.inf, ADE20K["sidewalk"], (0.66, 0.64, 0.60)),
)


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


def _texture(
    rng: np.random.Generator,
    base_rgb,
    finest_m: float,
    coarsest_m: float,
    contrast: float,
) -> Texture:
    """Random plane waves with wavelengths log-uniform in [finest_m, coarsest_m]."""
    dirs = rng.normal(size=(NUM_WAVES, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    wavelength = np.sort(np.exp(rng.uniform(np.log(finest_m), np.log(coarsest_m), NUM_WAVES)))
    amp = contrast / np.sqrt(NUM_WAVES) * rng.uniform(0.6, 1.4, (NUM_WAVES, 1))
    amp_rgb = amp * rng.uniform(0.75, 1.25, (NUM_WAVES, 3))  # a little chroma variation
    return Texture(
        np.asarray(base_rgb, float),
        dirs / wavelength[:, None],
        rng.uniform(0, 2 * np.pi, NUM_WAVES),
        amp_rgb,
    )


def _box(name, half, centre, label, texture, **motion) -> Primitive:
    return Primitive(
        name,
        "box",
        np.asarray(half, float),
        label,
        texture,
        Motion(
            np.asarray(centre, float),
            **{
                k: np.asarray(v, float) if k not in ("wobble_hz", "bob_m") else v
                for k, v in motion.items()
            },
        ),
    )


@dataclass(frozen=True)
class SceneVariation:
    """What varies between the clips of the accuracy suite; the defaults are the demo street.

    Attributes:
      walk_speed_m_s: forward walking speed of the camera.
      sway_scale: multiplies the camera's position and angle sway (walking gait).
      turn_deg_s: yaw rate of a turn of the head during the whole clip (deg/s; 0 = none).
      back_facade_z_m: world z of the facade closing the street (the farthest surface, metres).
      building_setback_m: extra distance of both building rows from the sidewalk (open space).
      near_clutter: static boxes (planters, crates) 0.7-3 m beside the camera's path.
      extra_movers: pedestrians and balls beyond the demo's car, two pedestrians and ball.
      photo_texture_fraction: share of the objects textured with a photograph (scikit-image's
        sample photos, band-limited like the procedural textures) instead of plane waves.
    """

    walk_speed_m_s: float = 0.94
    sway_scale: float = 1.0
    turn_deg_s: float = 0.0
    back_facade_z_m: float = BACK_FACADE_Z_M
    building_setback_m: float = 0.0
    near_clutter: int = 0
    extra_movers: int = 0
    photo_texture_fraction: float = 0.0


def build_scene(seed: int = 0, eye_height_m: float = 1.6,
                pixel_footprint_rad: float = PIXEL_FOOTPRINT_RAD,
                variation: SceneVariation = SceneVariation()) -> Scene:
    """The street scene: ground strips, two rows of buildings, a back facade, a plain wall,
    a car, two pedestrians and a rolling ball, plus ``variation``'s extras. Deterministic from
    the arguments.

    ``pixel_footprint_rad``: the coarsest pixel angle of the images that will be rendered;
    textures drop detail finer than a few such pixels (see ``WAVE_FADE_PX``)."""
    from stereo4d.synthetic import extras  # extras builds on this module's helpers

    var = variation
    rng = np.random.default_rng(seed)
    h = float(eye_height_m)
    prims: list[Primitive] = []

    # Ground: a thick slab whose top face is the street (local z = world z - 20).
    ground_tex = _texture(rng, [0.5, 0.5, 0.5], 0.03, 1.5, 0.45)
    prims.append(
        Primitive(
            "ground",
            "box",
            np.array([40.0, 0.5, 40.0]),
            ADE20K["road"],
            ground_tex,
            Motion(np.array([0.0, h + 0.5, 20.0])),
            ground=True,
        )
    )

    # Building rows on both sides: segments of random height and colour.
    palette = np.array(
        [
            [0.72, 0.52, 0.42],
            [0.80, 0.74, 0.62],
            [0.62, 0.64, 0.66],
            [0.70, 0.62, 0.50],
            [0.58, 0.50, 0.46],
            [0.76, 0.70, 0.66],
        ]
    )
    back_z = float(var.back_facade_z_m)
    z_edges = np.array([-6.0, 1.0, 6.5, 11.0, 15.5])
    z_edges = np.append(z_edges[z_edges < back_z - 1.0], back_z + 0.5)  # the street's end
    for side in (-1.0, 1.0):
        for z0, z1 in itertools.pairwise(z_edges):
            height = rng.uniform(5.0, 13.0)
            colour = palette[rng.integers(len(palette))] * rng.uniform(0.9, 1.1)
            prims.append(
                _box(
                    f"building_{'LR'[side > 0]}{z0:+.0f}",
                    [4.0, height / 2, (z1 - z0) / 2],
                    [side * (SIDEWALK_OUTER_M + 4.0 + var.building_setback_m), h - height / 2,
                     (z0 + z1) / 2],
                    ADE20K["building"],
                    _texture(rng, colour, 0.06, 2.0, 0.5),
                )
            )
    prims.append(
        _box(
            "back_facade",
            [14.0, 3.5, 2.0],
            [0.0, h - 3.5, back_z + 2.0],
            ADE20K["building"],
            _texture(rng, [0.74, 0.66, 0.58], 0.1, 2.0, 0.5),
        )
    )
    # Low-texture wall on the right sidewalk (where trackers drift).
    prims.append(
        _box(
            "plain_wall",
            [0.1, 1.25, 3.0],
            [4.2, h - 1.25, 9.0],
            ADE20K["wall"],
            _texture(rng, [0.80, 0.78, 0.72], 1.0, 4.0, 0.03),
        )
    )

    # Dynamic objects: velocities in m/s, spins in deg/s; they cross and occlude each other.
    prims.append(
        _box(
            "car",
            [0.9, 0.7, 2.1],
            [1.7, h - 0.7, 13.0],
            ADE20K["car"],
            _texture(rng, [0.62, 0.22, 0.20], 0.04, 1.0, 0.5),
            velocity_m_s=[0.0, 0.0, -3.0],
            rotation_deg=[0.0, 5.0, 0.0],
            spin_deg_s=[0.0, 4.0, 0.0],
        )
    )
    prims.append(
        _box(
            "person_crossing",
            [0.25, 0.85, 0.15],
            [-2.2, h - 0.85, 5.5],
            ADE20K["person"],
            _texture(rng, [0.30, 0.38, 0.62], 0.02, 0.5, 0.5),
            velocity_m_s=[2.0, 0.0, 0.0],
            rotation_deg=[0.0, 55.0, 0.0],
            spin_deg_s=[0.0, 15.0, 0.0],
            wobble_deg=[0.0, 8.0, 3.0],
            wobble_hz=0.9,
            bob_m=0.02,
        )
    )
    prims.append(
        _box(
            "person_ahead",
            [0.22, 0.85, 0.14],
            [-0.55, h - 0.85, 1.2],
            ADE20K["person"],
            _texture(rng, [0.55, 0.48, 0.30], 0.02, 0.5, 0.5),
            velocity_m_s=[0.0, 0.0, 1.3],
            rotation_deg=[0.0, -5.0, 0.0],
            wobble_deg=[0.0, 10.0, 2.0],
            wobble_hz=0.9,
            bob_m=0.02,
        )
    )
    radius, speed = 0.3, -1.5
    prims.append(
        Primitive(
            "ball",
            "sphere",
            np.full(3, radius),
            ADE20K["ball"],
            _texture(rng, [0.85, 0.72, 0.25], 0.02, 0.4, 0.5),
            Motion(
                np.array([2.0, h - radius, 3.2]),
                np.array([speed, 0.0, 0.0]),
                spin_deg_s=np.array([0.0, 0.0, np.degrees(speed / radius)]),
            ),
        )
    )

    camera = CameraPath(
        speed_m_s=float(var.walk_speed_m_s),
        eye_height_m=h,
        sway_m=np.array([0.03, 0.015, 0.0]) * var.sway_scale,
        sway_deg=np.array([2.0, 3.0, 1.5]) * var.sway_scale,
        sway_hz=np.array([0.5, 0.35, 0.6]),
        phases=rng.uniform(0, 2 * np.pi, 6),
        turn_deg_s=float(var.turn_deg_s),
    )
    prims = extras.add_variation(prims, var, seed, h)
    return Scene(tuple(prims), camera, int(seed), float(pixel_footprint_rad))
