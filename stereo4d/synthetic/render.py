"""Vectorised ray casting of a ``Scene`` (torch CPU): hit distance, object id, local point, label, colour.

Rays come grouped in tiles ([num_tiles, rays_per_tile, 3]) with a bounding cone per tile
(axis and half-angle), so a primitive is only tested against the tiles whose cone can reach
it (its corner cone, or the half-spaces of its faces). Unstructured rays (the oracle) form a
single tile with a cone of half-angle pi, i.e. no culling. float64 for the oracle, float32 for
images; the culling is conservative, so both give the same first hit.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

from stereo4d.synthetic.photos import sample_photo
from stereo4d.synthetic.scene import (
    ADE20K,
    AMBIENT,
    GROUND_STRIPS,
    LIGHT_DIR_LOCAL,
    SKY_HORIZON_RGB,
    SKY_ZENITH_RGB,
    STRIP_BLEND_M,
    WAVE_FADE_PX,
    Scene,
)

__all__ = [
    "NO_HIT",
    "TiledRays",
    "cast_rays",
    "render_rays",
    "shade_hits",
    "single_tile",
    "tile_rays",
    "trace",
]

#: Object id of rays that hit nothing (sky).
NO_HIT = -1
#: Extra angle (radians) added to every culling test so rounding never drops a real hit.
CULL_MARGIN_RAD = 1e-3
#: Default tile side in pixels for image ray grids.
TILE_PX = 16


@dataclass(frozen=True)
class TiledRays:
    """Rays of an image grouped in square tiles.

    Attributes:
      dirs: [num_tiles, tile_px**2, 3] unit rays (camera frame), torch, dtype of the render.
      axis: [num_tiles, 3] float64 unit cone axes; radius: [num_tiles] cone half-angles (rad).
      hw: image (height, width); tile_px: tile side (image padded to a multiple of it).
    """

    dirs: torch.Tensor
    axis: np.ndarray
    radius: np.ndarray
    hw: tuple[int, int]
    tile_px: int

    def untile(self, values: torch.Tensor | np.ndarray) -> np.ndarray:
        """Flat per-ray values [num_tiles * tile_px**2, ...] -> numpy image [H, W, ...]."""
        v = values.numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
        h, w = self.hw
        s = self.tile_px
        nty, ntx = -(-h // s), -(-w // s)
        v = np.swapaxes(v.reshape(nty, ntx, s, s, *v.shape[1:]), 1, 2)
        return v.reshape(nty * s, ntx * s, *v.shape[4:])[:h, :w]


def tile_rays(rays_hw3: np.ndarray, tile_px: int = TILE_PX, dtype=torch.float32) -> TiledRays:
    """Groups an image's rays [H, W, 3] in tiles (edge-padded to a multiple of ``tile_px``)."""
    h, w = rays_hw3.shape[:2]
    s = int(tile_px)
    pad = ((0, -h % s), (0, -w % s), (0, 0))
    r = np.pad(np.asarray(rays_hw3, np.float64), pad, mode="edge")
    nty, ntx = r.shape[0] // s, r.shape[1] // s
    r = np.swapaxes(r.reshape(nty, s, ntx, s, 3), 1, 2).reshape(nty * ntx, s * s, 3)
    r = r / np.linalg.norm(r, axis=-1, keepdims=True)
    axis = r.mean(axis=1)
    axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
    radius = np.arccos(np.clip(np.einsum("tmi,ti->tm", r, axis), -1, 1)).max(axis=1)
    return TiledRays(torch.from_numpy(r).to(dtype), axis, radius, (h, w), s)


def single_tile(dirs: np.ndarray, dtype=torch.float64) -> TiledRays:
    """Unstructured rays [N, 3] as one tile without culling."""
    d = np.asarray(dirs, np.float64).reshape(1, -1, 3)
    return TiledRays(
        torch.from_numpy(d).to(dtype),
        np.array([[0.0, 0.0, 1.0]]),
        np.array([np.pi]),
        (1, d.shape[1]),
        1,
    )


def _box_corners(half: np.ndarray) -> np.ndarray:
    signs = np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1], indexing="ij")).reshape(3, -1).T
    return signs * half


def _candidate_tiles(prim, rot, centre, origin, axis_w, radius) -> np.ndarray:
    """[num_tiles] bool: tiles whose cone may reach the primitive (conservative)."""
    o_local = rot.T @ (origin - centre)
    half = prim.half_size_m
    keep = np.ones(len(axis_w), bool)
    slack = radius + CULL_MARGIN_RAD
    if prim.shape == "sphere":
        dist = np.linalg.norm(o_local)
        if dist <= half[0]:
            return keep
        to_c = (centre - origin) / dist
        cone = np.arcsin(half[0] / dist)
        return np.arccos(np.clip(axis_w @ to_c, -1, 1)) <= cone + slack
    # Half-spaces of the faces the origin is outside of: rays must move toward that face.
    for k in range(3):
        for sign in (-1.0, 1.0):
            if sign * o_local[k] > half[k]:
                inward_w = rot[:, k] * -sign
                keep &= np.arccos(np.clip(axis_w @ inward_w, -1, 1)) < np.pi / 2 + slack
    # Cone around the directions to the corners (valid when narrower than a half-space).
    corners = (_box_corners(half) - o_local) @ rot.T
    corners /= np.linalg.norm(corners, axis=-1, keepdims=True)
    mean = corners.mean(axis=0)
    if np.linalg.norm(mean) > 1e-6:
        mean /= np.linalg.norm(mean)
        cone = np.arccos(np.clip(corners @ mean, -1, 1)).max()
        if cone < np.pi / 2:
            keep &= np.arccos(np.clip(axis_w @ mean, -1, 1)) <= cone + slack
    return keep


def cast_rays(
    scene: Scene,
    rots: np.ndarray,
    centres: np.ndarray,
    origin: np.ndarray,
    dirs_w: torch.Tensor,
    axis_w: np.ndarray,
    radius: np.ndarray,
):
    """First hit of every ray.

    Args:
      rots, centres: [P, 3, 3], [P, 3] object-to-world poses at the render time.
      origin: [3] ray origin (world); dirs_w: [num_tiles, M, 3] world unit rays;
      axis_w, radius: [num_tiles, 3], [num_tiles] tile cones in the world frame.
    Returns:
      dist_m [num_tiles, M] (inf on sky) and obj [num_tiles, M] int64 (``NO_HIT`` on sky).
    """
    dtype = dirs_w.dtype
    best = torch.full(dirs_w.shape[:2], float("inf"), dtype=dtype)
    obj = torch.full(dirs_w.shape[:2], NO_HIT, dtype=torch.int64)
    for p, prim in enumerate(scene.primitives):
        keep = _candidate_tiles(prim, rots[p], centres[p], origin, axis_w, radius)
        if not keep.any():
            continue
        idx = None if keep.all() else torch.from_numpy(np.nonzero(keep)[0])
        d = dirs_w if idx is None else dirs_w.index_select(0, idx)
        rot = torch.from_numpy(rots[p]).to(dtype)
        o_l = torch.from_numpy(rots[p].T @ (origin - centres[p])).to(dtype)
        d_l = d if np.allclose(rots[p], np.eye(3), atol=0) else d @ rot
        half = torch.from_numpy(prim.half_size_m).to(dtype)
        if prim.shape == "sphere":
            b = d_l @ o_l
            disc = b * b - (o_l @ o_l - half[0] ** 2)
            t = -b - torch.sqrt(disc.clamp(min=0))
            hit = (disc >= 0) & (t > 0)
        else:
            inv = 1.0 / d_l
            t1, t2 = (-half - o_l) * inv, (half - o_l) * inv
            t = torch.minimum(t1, t2).amax(dim=-1)
            hit = (t <= torch.maximum(t1, t2).amin(dim=-1)) & (t > 0)
        sub_best = best if idx is None else best.index_select(0, idx)
        better = hit & (t < sub_best)
        new_best = torch.where(better, t, sub_best)
        sub_obj = obj if idx is None else obj.index_select(0, idx)
        new_obj = torch.where(better, torch.full_like(sub_obj, p), sub_obj)
        if idx is None:
            best, obj = new_best, new_obj
        else:
            best.index_copy_(0, idx, new_best)
            obj.index_copy_(0, idx, new_obj)
    return best, obj


def _smoothstep(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _ground_base(p_local: torch.Tensor):
    """Strip labels [n] and blended base colours [n, 3] from local |x| (the ground)."""
    ax = p_local[:, 0].abs()
    labels = torch.full(ax.shape, GROUND_STRIPS[-1][1], dtype=torch.uint8)
    rgb = torch.tensor(GROUND_STRIPS[0][2], dtype=p_local.dtype).expand(len(ax), 3)
    for (edge, label, _), (_, _, outer_rgb) in itertools.pairwise(GROUND_STRIPS):
        w = _smoothstep((ax - edge) / STRIP_BLEND_M + 0.5)[:, None]
        rgb = rgb * (1 - w) + torch.tensor(outer_rgb, dtype=p_local.dtype) * w
    for edge, label, _ in reversed(GROUND_STRIPS[:-1]):
        labels[ax < edge] = label
    return labels, rgb


def shade_hits(scene: Scene, obj_id: int, p_local: torch.Tensor, dist_m: torch.Tensor,
               dirs_local: torch.Tensor):
    """Label [n] uint8 and colour [n, 3] in [0, 1] of points ``p_local`` [n, 3] on one object.

    ``dist_m`` [n] (ray length) and ``dirs_local`` [n, 3] (unit ray directions in the object's
    frame) band-limit the texture: a wave fades out linearly as its projected wavelength,
    foreshortened by the incidence angle, shrinks from ``WAVE_FADE_PX[1]`` to ``WAVE_FADE_PX[0]`` pixels.
    """
    prim = scene.primitives[obj_id]
    dtype = p_local.dtype
    tex = prim.texture
    if prim.shape == "sphere":
        normal = p_local / prim.half_size_m[0]
        face = normal.abs().argmax(dim=-1, keepdim=True)
    else:
        ratio = p_local.abs() / torch.from_numpy(prim.half_size_m).to(dtype)
        face = ratio.argmax(dim=-1, keepdim=True)
        normal = torch.zeros_like(p_local).scatter_(-1, face, torch.sign(p_local.gather(-1, face)))
    light = torch.from_numpy(LIGHT_DIR_LOCAL).to(dtype)
    shade = AMBIENT + (1 - AMBIENT) * (normal @ light).clamp(min=0)
    incidence = (normal * dirs_local).sum(-1).abs().clamp(min=1e-3)
    px_per_metre = incidence / (dist_m * scene.pixel_footprint_rad)  # [n]
    if tex.photo:
        modulation = _photo_modulation(tex, p_local, face, 1.0 / px_per_metre)
    else:
        phase = 2 * np.pi * (p_local @ torch.from_numpy(tex.wave_cycles_per_m.T).to(dtype))
        waves = torch.sin(phase + torch.from_numpy(tex.wave_phase).to(dtype))
        lo, hi = WAVE_FADE_PX
        wave_px = px_per_metre[:, None] * torch.from_numpy(tex.wavelength_m / (hi - lo)).to(dtype)
        waves.mul_(wave_px.sub_(lo / (hi - lo)).clamp_(0.0, 1.0))  # linear fade, [n, K]
        modulation = 1 + waves @ torch.from_numpy(tex.wave_amp_rgb).to(dtype)
    if prim.ground:
        labels, base = _ground_base(p_local)
    else:
        labels = torch.full((len(p_local),), prim.label, dtype=torch.uint8)
        base = torch.from_numpy(tex.base_rgb).to(dtype).expand(len(p_local), 3)
    return labels, (base * shade[:, None] * modulation).clamp(0.0, 1.0)


def _photo_modulation(tex, p_local: torch.Tensor, face: torch.Tensor, footprint_m: torch.Tensor):
    """[n, 3] relative colour of a photo texture: the two local coordinates across the face
    (``face`` [n, 1] axis of the normal) address the photo; ``footprint_m`` [n] band-limits it."""
    u_axis = (face.squeeze(1) + 1) % 3
    v_axis = (face.squeeze(1) + 2) % 3
    uv_m = torch.stack([p_local.gather(-1, u_axis[:, None]).squeeze(1),
                        p_local.gather(-1, v_axis[:, None]).squeeze(1)], dim=-1)
    photo = sample_photo(tex.photo, uv_m, tex.photo_m_per_px, tex.photo_offset_px, footprint_m)
    return 1 + tex.photo_contrast * (photo - 1)


def sky_rgb(dirs_w: torch.Tensor) -> torch.Tensor:
    """Smooth sky gradient [n, 3] of world directions [n, 3] (up is -y)."""
    up = _smoothstep(-dirs_w[:, 1:2])
    horizon = torch.from_numpy(SKY_HORIZON_RGB).to(dirs_w.dtype)
    return horizon + (torch.from_numpy(SKY_ZENITH_RGB).to(dirs_w.dtype) - horizon) * up


def render_rays(
    scene: Scene, time_s: float, camera_to_world: np.ndarray, rays: TiledRays, shade: bool = True
) -> dict[str, torch.Tensor]:
    """Casts camera-frame rays from a camera at one time.

    Args:
      camera_to_world: [3, 4] ``[R | c]`` of the camera the rays are expressed in.
      rays: tiled camera-frame rays; shade: also compute labels and colours.
    Returns (flat over num_tiles * M rays, tile-major; ``rays.untile`` makes images):
      dist_m [n] (ray length, inf on sky), obj [n] int64, p_local [n, 3] (NaN on sky),
      dirs_w [n, 3]; with ``shade``: labels [n] uint8 (sky = 3), rgb [n, 3] in [0, 1].
    """
    rots, centres = scene.poses(np.array([time_s], dtype=np.float64))
    rots, centres = rots[:, 0], centres[:, 0]
    rot_c = np.asarray(camera_to_world, np.float64)[:3, :3]
    origin = np.asarray(camera_to_world, np.float64)[:3, 3]
    dtype = rays.dirs.dtype
    dirs_w = rays.dirs @ torch.from_numpy(rot_c.T).to(dtype)
    dist, obj = cast_rays(scene, rots, centres, origin, dirs_w, rays.axis @ rot_c.T, rays.radius)
    dist, obj, dirs_w = dist.reshape(-1), obj.reshape(-1), dirs_w.reshape(-1, 3)
    p_local = torch.full(dirs_w.shape, float("nan"), dtype=dtype)
    out = {"dist_m": dist, "obj": obj, "p_local": p_local, "dirs_w": dirs_w}
    if shade:
        out["labels"] = torch.full(dist.shape, ADE20K["sky"], dtype=torch.uint8)
        out["rgb"] = torch.empty(dirs_w.shape, dtype=dtype)
    # Rays grouped by object with one sort (segment 0 = sky).
    order = torch.argsort(obj)
    bounds = [0] + torch.cumsum(torch.bincount(obj + 1, minlength=len(rots) + 1), 0).tolist()
    for p in range(NO_HIT, len(rots)):
        idx = order[bounds[p + 1] : bounds[p + 2]]
        if not len(idx):
            continue
        if p == NO_HIT:
            if shade:
                out["rgb"][idx] = sky_rgb(dirs_w[idx])
            continue
        o_l = torch.from_numpy(rots[p].T @ (origin - centres[p])).to(dtype)
        pts = o_l + dist[idx, None] * (dirs_w[idx] @ torch.from_numpy(rots[p]).to(dtype))
        p_local[idx] = pts
        if shade:
            dirs_l = dirs_w[idx] @ torch.from_numpy(rots[p]).to(dtype)
            labels, rgb = shade_hits(scene, p, pts, dist[idx], dirs_l)
            out["labels"][idx] = labels
            out["rgb"][idx] = rgb
    return out


def trace(
    scene: Scene, time_s: float, origins: np.ndarray, dirs: np.ndarray, shade: bool = True
) -> dict[str, np.ndarray]:
    """First hits of arbitrary world rays (float64, no culling).

    Args:
      origins: [3] or [..., 3] world ray origins (metres); dirs: [..., 3] world directions.
    Returns numpy arrays over the leading axes: dist_m [...] (ray length along the unit
    direction, inf on sky), obj [...] int64 (``NO_HIT`` on sky), p_local [..., 3] (NaN on
    sky); with ``shade``: labels [...] uint8 and rgb [..., 3] in [0, 1].
    """
    dirs = np.asarray(dirs, np.float64)
    lead = dirs.shape[:-1]
    if not np.prod(lead, dtype=int):
        raise ValueError("trace needs at least one ray")
    flat_dirs = dirs.reshape(-1, 3) / np.linalg.norm(dirs, axis=-1).reshape(-1, 1)
    flat_orig = np.broadcast_to(np.asarray(origins, np.float64), dirs.shape).reshape(-1, 3)
    uniq, group = np.unique(flat_orig, axis=0, return_inverse=True)
    group = group.reshape(-1)
    keys = ("dist_m", "obj", "p_local") + (("labels", "rgb") if shade else ())
    out: dict[str, np.ndarray] = {}
    for g, origin in enumerate(uniq):  # one vectorised cast per distinct origin
        sel = np.nonzero(group == g)[0]
        cam = np.concatenate([np.eye(3), origin[:, None]], axis=1)
        res = render_rays(scene, time_s, cam, single_tile(flat_dirs[sel]), shade=shade)
        for k in keys:
            v = res[k].numpy()
            if k not in out:
                out[k] = np.empty((len(flat_dirs), *v.shape[1:]), v.dtype)
            out[k][sel] = v
    return {k: v.reshape(*lead, *v.shape[1:]) for k, v in out.items()}
