"""Objects and textures that ``SceneVariation`` adds to the demo street (accuracy-suite clips).

Everything here draws from its own random stream (``EXTRAS_STREAM``), after the demo scene is
built, so the default variation leaves the demo scene bit-identical.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from stereo4d.synthetic.scene import (
    ADE20K,
    Motion,
    Primitive,
    SceneVariation,
    _box,
    _texture,
)

__all__ = ["EXTRAS_STREAM", "add_variation", "photo_texture"]

#: Second entry of the extras' random seed ``[seed, EXTRAS_STREAM]``.
EXTRAS_STREAM = 1013
#: Near clutter: |x| range of box centres (metres; clear of the pedestrian walking ahead at
#: x = -0.55 and of the camera's path), z range ahead of the start, half sizes.
CLUTTER_X_M = (1.0, 2.6)
CLUTTER_Z_M = (1.2, 8.0)
CLUTTER_HALF_M = ((0.15, 0.45), (0.25, 0.6), (0.15, 0.45))
#: Extra movers: |x| and z ranges of their start (metres) and speed range (m/s).
MOVER_X_M = 5.0
MOVER_Z_M = (2.5, 14.0)
MOVER_SPEED_M_S = (0.7, 1.8)
#: Photographs by kind of surface: grey-level ones on the ground and buildings, colour ones
#: on the objects (scikit-image's sample data, bundled with the package).
GROUND_PHOTOS = ("gravel", "grass")
BUILDING_PHOTOS = ("brick", "gravel", "grass")
OBJECT_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
#: Texel size of a photograph on the ground and on buildings (metres); on other objects the
#: photograph spans ``PHOTO_SPAN_PX`` texels across the object's largest side.
GROUND_TEXEL_M = 0.008
BUILDING_TEXEL_M = 0.015
PHOTO_SPAN_PX = 400
#: Contrast of the grey-level photographs on the ground and buildings (relative).
SURFACE_PHOTO_CONTRAST = 0.8


def photo_texture(rng: np.random.Generator, prim: Primitive) -> Primitive:
    """``prim`` with a photograph as texture (its base colour kept as the tint)."""
    if prim.ground:
        name, texel = rng.choice(GROUND_PHOTOS), GROUND_TEXEL_M
        contrast = SURFACE_PHOTO_CONTRAST
    elif prim.label in (ADE20K["building"], ADE20K["wall"]):
        name, texel = rng.choice(BUILDING_PHOTOS), BUILDING_TEXEL_M
        contrast = SURFACE_PHOTO_CONTRAST
    else:
        name, texel = rng.choice(OBJECT_PHOTOS), 2 * float(prim.half_size_m.max()) / PHOTO_SPAN_PX
        contrast = 1.0
    tex = dataclasses.replace(
        prim.texture,
        photo=str(name),
        photo_m_per_px=float(texel),
        photo_offset_px=tuple(float(v) for v in rng.uniform(0, 512, 2)),
        photo_contrast=float(contrast),
    )
    return dataclasses.replace(prim, texture=tex)


def _clutter(rng: np.random.Generator, index: int, h: float) -> Primitive:
    half = [rng.uniform(*r) for r in CLUTTER_HALF_M]
    x = rng.choice([-1.0, 1.0]) * rng.uniform(*CLUTTER_X_M)
    z = rng.uniform(*CLUTTER_Z_M)
    colour = rng.uniform(0.35, 0.8, 3)
    return _box(f"clutter_{index}", half, [x, h - half[1], z], ADE20K["wall"],
                _texture(rng, colour, 0.02, 0.8, 0.5), rotation_deg=[0.0, rng.uniform(-30, 30), 0.0])


def _mover(rng: np.random.Generator, index: int, h: float) -> Primitive:
    heading = rng.uniform(0, 2 * np.pi)
    speed = rng.uniform(*MOVER_SPEED_M_S)
    velocity = speed * np.array([np.cos(heading), 0.0, np.sin(heading)])
    start = [rng.uniform(-MOVER_X_M, MOVER_X_M), 0.0, rng.uniform(*MOVER_Z_M)]
    colour = rng.uniform(0.2, 0.8, 3)
    if index % 3 == 2:  # every third extra mover is a rolling ball
        radius = rng.uniform(0.2, 0.4)
        spin = np.degrees(speed / radius)
        return Primitive(
            f"mover_ball_{index}", "sphere", np.full(3, radius), ADE20K["ball"],
            _texture(rng, colour, 0.02, 0.4, 0.5),
            Motion(np.array([start[0], h - radius, start[2]]), velocity,
                   spin_deg_s=np.array([spin * np.sin(heading), 0.0, -spin * np.cos(heading)])),
        )
    half = [rng.uniform(0.2, 0.28), rng.uniform(0.78, 0.9), rng.uniform(0.12, 0.16)]
    return _box(f"mover_person_{index}", half, [start[0], h - half[1], start[2]],
                ADE20K["person"], _texture(rng, colour, 0.02, 0.5, 0.5),
                velocity_m_s=velocity, rotation_deg=[0.0, 90.0 - np.degrees(heading), 0.0],
                wobble_deg=[0.0, 8.0, 2.0], wobble_hz=rng.uniform(0.8, 1.0), bob_m=0.02)


def add_variation(prims: list[Primitive], variation: SceneVariation, seed: int,
                  eye_height_m: float) -> list[Primitive]:
    """The demo primitives plus ``variation``'s clutter and movers, photographs applied."""
    var = variation
    if not (var.near_clutter or var.extra_movers or var.photo_texture_fraction):
        return prims
    rng = np.random.default_rng([int(seed), EXTRAS_STREAM])
    out = list(prims)
    out += [_clutter(rng, i, eye_height_m) for i in range(int(var.near_clutter))]
    out += [_mover(rng, i, eye_height_m) for i in range(int(var.extra_movers))]
    if var.photo_texture_fraction > 0:
        pick = rng.random(len(out)) < var.photo_texture_fraction
        out = [photo_texture(rng, p) if k else p for p, k in zip(out, pick)]
    return out
