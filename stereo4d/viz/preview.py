"""A still of what the Rerun viewer shows, drawn without a display (``view.py --preview``).

Where no screen (or GPU) is available the viewer cannot be screenshotted; this draws one frame
of the same ``ClipView`` with the project's own renderers, laid out as the viewer's default
blueprint: the 3D scene (tracks in their colours, moving ones with trails, the camera path and
frustum) beside the left frame with the tracks projected into it and the depth image.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from stereo4d.io import atomic_path
from stereo4d.viz.clip_view import ClipView
from stereo4d.viz.depth import colorize_depth, inverse_depth_range
from stereo4d.viz.scene3d import SceneView, render_scene3d
from stereo4d.viz.trails import TRAIL_FRAMES, draw_trails_frame

__all__ = ["PANEL_PX", "render_preview", "save_preview"]

PANEL_PX = 360
"""Height of the side panels (image, depth); the 3D panel is twice as high and wide."""
VIEW_ELEVATION_DEG = 25.0
"""Elevation of the 3D panel's virtual camera (degrees above the horizontal)."""
VIEW_AZIMUTH_DEG = -110.0
"""Azimuth of the 3D panel's virtual camera (-90: straight behind the clip's first camera, which
looks along +z; a little to the side shows depth)."""
LABEL_SCALE = 0.5
"""Font scale of the panel titles."""
LABEL_RGB = (40, 40, 40)
PALETTE_COLORS = 256
"""Colours of the palette PNG ``save_preview`` writes (None / 0: full RGB)."""


def _label(image: np.ndarray, text: str) -> np.ndarray:
    out = image.copy()
    cv2.putText(out, text, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, LABEL_SCALE, (255, 255, 255), 3,
                cv2.LINE_AA)
    cv2.putText(out, text, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, LABEL_SCALE, LABEL_RGB, 1,
                cv2.LINE_AA)
    return out


def _fit(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Letterboxes ``image`` into ``height`` x ``width`` on white."""
    scale = min(height / image.shape[0], width / image.shape[1])
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    out = np.full((height, width, 3), 255, np.uint8)
    top, left = (height - size[1]) // 2, (width - size[0]) // 2
    out[top:top + size[1], left:left + size[0]] = resized
    return out


def render_preview(view: ClipView, t: int, hfov_deg: float, panel_px: int = PANEL_PX,
                   trail_frames: int = TRAIL_FRAMES) -> np.ndarray:
    """Frame ``t`` of ``view`` as the viewer lays it out. Returns uint8 [2P, 3P, 3] RGB."""
    imh, imw = view.image_hw
    present = view.visible & np.all(np.isfinite(view.track3d_world), axis=-1)
    scene_px = 2 * panel_px
    fit = SceneView.fit(view.track3d_world[present[:, t], t], scene_px, scene_px,
                        VIEW_ELEVATION_DEG, VIEW_AZIMUTH_DEG)
    trails = np.where(view.moving[:, None], present, False)
    trails[:, t] = present[:, t]  # every track shows its current point; only movers trail
    frames = render_scene3d(view.track3d_world, trails, view.colors_rgb, view.camera, None, None,
                            hfov_deg, fit, trail_frames)
    for _ in range(t):
        next(frames)
    scene = _label(next(frames), f"world (frame {t})")
    scale = panel_px / max(imh, imw)
    small = _fit(view.frames[t], round(imh * scale), round(imw * scale))
    xy, _, in_view = view.camera.project(np.nan_to_num(view.track3d_world), imh, imw)
    shown = trails & in_view
    image = draw_trails_frame(small, t, np.where(shown[..., None], xy * scale, 0.0), shown,
                              view.colors_rgb, trail_frames)
    depth = view.depth_raw_m if view.depth_raw_m is not None else view.depth_optimized_m
    side = [_label(_fit(image, panel_px, panel_px), "camera/image")]
    if depth is not None:
        rgb = colorize_depth(depth[t], inverse_depth_range(depth))
        name = "camera/depth/raw" if view.depth_raw_m is not None else "camera/depth/optimized"
        side.append(_label(_fit(rgb, panel_px, panel_px), name))
    else:
        side.append(np.full((panel_px, panel_px, 3), 255, np.uint8))
    return np.concatenate([scene, np.concatenate(side, axis=0)], axis=1)


def save_preview(path: str | os.PathLike, image: np.ndarray,
                 palette_colors: int | None = PALETTE_COLORS) -> Path:
    """Writes ``image`` (RGB) as PNG, atomically; with ``palette_colors``, as a palette PNG of
    that many colours (median cut), a third of the size for pictures in documentation."""
    from PIL import Image

    picture = Image.fromarray(np.ascontiguousarray(image, np.uint8), "RGB")
    if palette_colors:
        picture = picture.quantize(palette_colors, method=Image.Quantize.MEDIANCUT)
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG", optimize=True)
    return Path(path)
