"""Point tracks drawn as fading trails, vectorised with numpy (no per-frame matplotlib figure).

What the reference's ``plot_2d_tracks_plt`` shows, drawn directly into the
frame: for frame t, every segment between consecutive frames s, s+1 in
``[t - trail_frames, t]`` where the track is visible at both ends, with opacity
``(k + 1) / (number of segments)`` (older = fainter, k counts from the oldest),
then a dot at each visible current position. All segments of a frame are
rasterised together: each is sampled at one point per pixel of its length and
the samples are alpha-blended into the frame with one fancy-indexed write,
oldest first so newer trails end on top.

Coordinates: continuous pixels (``stereo4d.geometry``); a sample at (x, y)
colours the pixel ``(floor(y), floor(x))``.
"""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np

from stereo4d.tracks import sample_tracks_for_display

__all__ = [
    "DOT_RADIUS_PX",
    "MAX_SEGMENT_SAMPLES",
    "TRAIL_FRAMES",
    "draw_trails_frame",
    "rainbow_colors",
    "render_trails",
    "sample_tracks_for_display",
]

#: Frames of history drawn behind each point (the reference's ``tracks_leave_trace``).
TRAIL_FRAMES = 16
#: Radius of the dot at the current position (pixels).
DOT_RADIUS_PX = 1
#: Longest segment drawn, in samples (pixels); longer jumps are clipped to this many samples.
MAX_SEGMENT_SAMPLES = 256
_HUE_MAX_OPENCV = 180


def rainbow_colors(num: int) -> np.ndarray:
    """``num`` colours around the hue circle (like matplotlib's ``hsv`` map). [num, 3] uint8 RGB."""
    if num == 0:
        return np.zeros((0, 3), np.uint8)
    hue = (np.arange(num) * _HUE_MAX_OPENCV / max(num, 1)).astype(np.uint8)
    hsv = np.stack([hue, np.full_like(hue, 255), np.full_like(hue, 255)], axis=-1)[None]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0]


def _segment_samples(p0: np.ndarray, p1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points along segments p0 -> p1 [M, 2], one per pixel of length. Returns (xy [S, 2], owner [S])."""
    length = np.max(np.abs(p1 - p0), axis=-1)
    counts = np.clip(np.ceil(length).astype(np.int64) + 1, 2, MAX_SEGMENT_SAMPLES)
    owner = np.repeat(np.arange(len(p0)), counts)
    starts = np.cumsum(counts) - counts
    step = np.arange(len(owner)) - starts[owner]
    u = (step / (counts[owner] - 1))[:, None]
    return p0[owner] * (1 - u) + p1[owner] * u, owner


def _blend(image: np.ndarray, xy: np.ndarray, colors: np.ndarray, alpha: np.ndarray) -> None:
    """Alpha-blends ``colors`` [S, 3] at points ``xy`` [S, 2] into ``image`` (in place)."""
    height, width = image.shape[:2]
    col = np.floor(xy[:, 0]).astype(np.int64)
    row = np.floor(xy[:, 1]).astype(np.int64)
    inside = (col >= 0) & (col < width) & (row >= 0) & (row < height)
    row, col, colors, alpha = row[inside], col[inside], colors[inside], alpha[inside, None]
    blended = image[row, col] * (1 - alpha) + colors * alpha
    image[row, col] = np.round(blended).astype(np.uint8)


def draw_trails_frame(frame: np.ndarray, t: int, tracks_xy: np.ndarray, visibles: np.ndarray,
                      colors: np.ndarray, trail_frames: int = TRAIL_FRAMES,
                      dot_radius_px: int = DOT_RADIUS_PX) -> np.ndarray:
    """Draws the trails ending at frame ``t`` on a copy of ``frame``.

    Args:
      frame: [H, W, 3] uint8 RGB (frame t of the video).
      t: frame index.
      tracks_xy: [N, T, 2] (x, y) px; visibles: [N, T] bool.
      colors: [N, 3] uint8 RGB, one per track.
      trail_frames: history length in frames.
      dot_radius_px: radius of the current-position dot (0: a single pixel; <0: no dot).
    Returns:
      [H, W, 3] uint8.
    """
    out = frame.copy()
    first = max(0, t - trail_frames)
    num_segments = t - first
    colors = np.asarray(colors, np.float64)
    if num_segments > 0:
        seg_tracks = tracks_xy[:, first:t + 1].astype(np.float64)  # [N, S+1, 2]
        seg_vis = visibles[:, first:t] & visibles[:, first + 1:t + 1]  # [N, S]
        track_id, seg_id = np.nonzero(seg_vis.T)[::-1]  # ordered by segment (oldest first)
        p0 = seg_tracks[track_id, seg_id]
        p1 = seg_tracks[track_id, seg_id + 1]
        xy, owner = _segment_samples(p0, p1)
        alpha = (seg_id[owner] + 1) / num_segments
        _blend(out, xy, colors[track_id[owner]], alpha)
    if dot_radius_px >= 0:
        current = np.flatnonzero(visibles[:, t])
        r = dot_radius_px
        dy, dx = np.mgrid[-r:r + 1, -r:r + 1]
        disc = np.stack([dx, dy], axis=-1)[dx**2 + dy**2 <= r * r].astype(np.float64)  # [K, 2]
        centres = tracks_xy[current, t].astype(np.float64)
        xy = (centres[:, None, :] + disc[None]).reshape(-1, 2)
        owner = np.repeat(current, len(disc))
        _blend(out, xy, colors[owner], np.ones(len(xy)))
    return out


def render_trails(frames: np.ndarray, tracks_xy: np.ndarray, visibles: np.ndarray,
                  colors: np.ndarray | None = None, trail_frames: int = TRAIL_FRAMES,
                  dot_radius_px: int = DOT_RADIUS_PX) -> Iterator[np.ndarray]:
    """Yields every frame of ``frames`` [T, H, W, 3] with trails drawn (see ``draw_trails_frame``).

    ``colors`` defaults to ``rainbow_colors(N)`` in track order.
    """
    tracks_xy = np.asarray(tracks_xy)
    visibles = np.asarray(visibles, dtype=bool)
    if colors is None:
        colors = rainbow_colors(len(tracks_xy))
    for t, frame in enumerate(frames):
        yield draw_trails_frame(frame, t, tracks_xy, visibles, colors, trail_frames, dot_radius_px)
