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
from dataclasses import dataclass

import numpy as np

from stereo4d.synthetic.primitives import (
    PIXEL_FOOTPRINT_RAD,
    CameraPath,
    Motion,
    Primitive,
    Scene,
    Texture,
    rotations_xyz_deg,
)

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
