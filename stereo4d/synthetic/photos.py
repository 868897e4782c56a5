"""Photographs as band-limited textures: scikit-image's sample photos in a mip pyramid.

A photograph is tiled with mirrored repeats over a surface (``Texture.photo_m_per_px`` metres
per texel). Like the procedural waves, detail finer than a few screen pixels is removed: each
shaded point samples the pyramid level whose texel spans ``2 ** LOD_BIAS`` screen pixels
(standard trilinear mip-mapping: bilinear in the two nearest levels, blended), so near
surfaces show the photo's fine detail and far ones a blurred version, without aliasing.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np
import torch

__all__ = ["LOD_BIAS", "PHOTO_NAMES", "photo_pyramid", "sample_photo"]

#: scikit-image sample photographs usable as textures (all bundled with the package).
PHOTO_NAMES = ("astronaut", "coffee", "chelsea", "rocket", "brick", "grass", "gravel")
#: Added to ``log2(texels per screen pixel)`` when picking the level: 0 = a level's texel covers
#: one screen pixel (the standard choice). Measured amplitude passed at wavelengths of 4 / 6 / 8
#: screen pixels: 0.48 / 0.67 / 0.68 with 0; 0.07 / 0.30 / 0.43 with the earlier bias of 1,
#: which blurred photographs far more than the procedural textures (full amplitude down to
#: 4 pixels, fading between 4 and 2), so photo-textured clips were harder than they should be.
LOD_BIAS = 0.0
#: Levels of the pyramid (512 px photo -> 8 px).
NUM_LEVELS = 7


@functools.cache
def photo_pyramid(name: str) -> tuple[torch.Tensor, ...]:
    """Levels [2 H_l, 2 W_l, 3] float64 (mirror-tiled once, for wrap-around indexing) of the
    photograph normalised to mean 1 per channel (grey photos give three equal channels)."""
    import skimage.data

    if name not in PHOTO_NAMES:
        raise ValueError(f"unknown photo texture {name!r}; choose from {PHOTO_NAMES}")
    img = np.asarray(getattr(skimage.data, name)(), np.float64)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    img = img[..., :3] / img[..., :3].reshape(-1, 3).mean(axis=0).clip(min=1.0)
    levels = []
    for _ in range(NUM_LEVELS):
        tiled = np.concatenate([img, img[:, ::-1]], axis=1)
        levels.append(torch.from_numpy(np.concatenate([tiled, tiled[::-1]], axis=0)))
        img = cv2.pyrDown(img)
    return tuple(levels)


def _bilinear(level: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Samples a mirror-tiled level [H2, W2, 3] at texel coordinates uv [n, 2] (wraps)."""
    h2, w2 = level.shape[:2]
    x, y = uv[:, 0] - 0.5, uv[:, 1] - 0.5
    x0, y0 = torch.floor(x), torch.floor(y)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    x0, y0 = x0.long(), y0.long()
    xs = (x0 % w2, (x0 + 1) % w2)
    ys = (y0 % h2, (y0 + 1) % h2)
    top = level[ys[0], xs[0]] * (1 - fx) + level[ys[0], xs[1]] * fx
    bottom = level[ys[1], xs[0]] * (1 - fx) + level[ys[1], xs[1]] * fx
    return top * (1 - fy) + bottom * fy


def sample_photo(name: str, uv_m: torch.Tensor, texel_m: float, offset_px, footprint_m):
    """Band-limited photo colour [n, 3] (mean about 1) at surface coordinates uv_m [n, 2] metres.

    ``footprint_m`` [n]: size of one screen pixel on the surface (metres, foreshortening included).
    """
    levels = photo_pyramid(name)
    dtype = uv_m.dtype
    uv0 = uv_m / texel_m + torch.tensor(offset_px, dtype=dtype)
    lod = (torch.log2((footprint_m / texel_m).clamp(min=1e-6)) + LOD_BIAS).clamp(0, NUM_LEVELS - 1)
    lo = torch.floor(lod).clamp(max=NUM_LEVELS - 2).long()
    frac = (lod - lo)[:, None]
    out = torch.empty((len(uv_m), 3), dtype=dtype)
    for lvl in torch.unique(lo).tolist():
        sel = torch.nonzero(lo == lvl).squeeze(1)
        a = _bilinear(levels[lvl].to(dtype), uv0[sel] / 2**lvl)
        b = _bilinear(levels[lvl + 1].to(dtype), uv0[sel] / 2 ** (lvl + 1))
        out[sel] = a * (1 - frac[sel]) + b * frac[sel]
    return out
