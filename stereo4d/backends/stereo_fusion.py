"""Multi-frame fusion of a rectified view's disparities over the clip's known cameras.

A static surface is seen by the neighbouring frames of a clip from slightly moved
cameras; their disparities, each measured on a different sampling of the texture and
with different image noise, are partly independent estimates of the same 3-D point.
For frame ``t`` and each neighbour ``s`` within ``radius`` frames:

1. Every pixel of ``t`` with a disparity (its own, or for a hole a first guess splatted
   from the neighbours) is lifted to 3-D with it, moved into camera ``s`` (the poses
   ``camera2world``) and projected; ``s``'s disparity map is sampled there (bilinear,
   only where all four samples are valid), lifted in ``s``, moved back into ``t`` and
   turned into a disparity of ``t`` (``reprojected_disparity``).
2. A neighbour counts only where it agrees with ``t``'s own disparity within
   ``consistency_sigmas`` times their combined predicted noise, at most
   ``CONSISTENCY_MAX_RELATIVE`` of the disparity (plus ``CONSISTENCY_FLOOR_PX``): moving
   objects, occlusions and mismatches fail the test.
3. The consistent estimates are averaged with weights 1 / sigma^2 (sigma: each view's
   predicted disparity noise in px, ``stereo_refine.relative_disparity_noise`` times the
   disparity; the relative noise is carried over unchanged by the reprojection). The
   fused noise is ``1 / sqrt(sum of weights)``, inflated by ``NOISE_CORRELATION`` because
   the views' errors are not fully independent.
4. A pixel with no disparity of its own takes the weighted mean of the neighbours that
   agree with their median, when at least ``MIN_FILL_VIEWS`` of them do.

Both views of the rig are fused the same way (the right camera sits at ``+baseline`` on
the left camera's x axis), so the pipeline's left-right check still holds.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator

import cv2
import numpy as np

from stereo4d.geometry import relative_pose

__all__ = [
    "CONSISTENCY_FLOOR_PX",
    "MIN_FILL_VIEWS",
    "NOISE_CORRELATION",
    "forward_splat_disparity",
    "fuse_frame",
    "fuse_sequence",
    "reprojected_disparity",
    "right_camera2world",
]

CONSISTENCY_FLOOR_PX = 0.1
"""Added to the consistency tolerance (px): pose and interpolation errors not in the noise."""
CONSISTENCY_MAX_RELATIVE = 0.06
"""The consistency tolerance never exceeds this fraction of the disparity (plus the floor).
The predicted noise overestimates the error of near surfaces 4-6 times, so without this
cap a person walking 0.1 m per frame 2-3 m ahead of the camera (3-5 % of disparity per
frame) is averaged with its neighbours' positions; the cap rejects it from the second
neighbour on. Tuning clips t1, t3: 0.03 loses density on far surfaces, 0.1 lets the
mover in (bad-1 on t3 2.9 % -> 5.0 %)."""
MIN_FILL_VIEWS = 2
"""A hole of frame t is filled only when at least this many neighbours agree on it."""
NOISE_CORRELATION = 0.2
"""Assumed correlation of the disparity errors of two views of one surface (same texture,
similar viewpoint): the fused variance is ``(1 + NOISE_CORRELATION (n - 1)) / sum(w)`` for
``n`` views (equicorrelated errors), not ``1 / sum(w)``. Chosen on the tuning clips."""
_MIN_DEPTH_M = 1e-3
"""Points closer than this to a camera (or behind it) are not projected."""
_ALL_VALID = 0.999
"""Bilinear weight of valid samples required (all four neighbours valid)."""


def right_camera2world(camera2world: np.ndarray, baseline_m: float) -> np.ndarray:
    """Right rectified cameras [..., 3, 4] from the left ones: moved ``baseline_m`` along x."""
    c2w = np.array(camera2world, dtype=np.float64)[..., :3, :4]
    c2w[..., 3] += c2w[..., :3, 0] * baseline_m
    return c2w


def _pixel_rays(height: int, width: int, focal_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Normalised ray coordinates x/z, y/z [H, W] float64 (principal point at the centre)."""
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    return (cols - cx) / focal_px, (rows - cy) / focal_px


def _transform_points(disparity, ray_x, ray_y, rotation, translation, fb_px_m):
    """Lifts pixels with ``disparity`` [...] at rays (ray_x, ray_y) to 3-D and moves them.
    Returns X, Y, Z [...] float64 in the other camera (NaN where the disparity is not > 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = np.where(disparity > 0, fb_px_m / disparity, np.nan)
    points = np.stack([ray_x * depth, ray_y * depth, depth], axis=-1)
    moved = points @ rotation.T + translation
    return moved[..., 0], moved[..., 1], moved[..., 2]


def reprojected_disparity(guess_px: np.ndarray, other_px: np.ndarray, other_sigma_px: np.ndarray,
                          pose: tuple[np.ndarray, np.ndarray], focal_px: float, fb_px_m: float
                          ) -> tuple[np.ndarray, np.ndarray]:
    """The other frame's disparity of the points that this frame's pixels see, in this frame.

    Args:
      guess_px: [H, W] this frame's disparity used to find the points (NaN = none).
      other_px, other_sigma_px: [H, W] the other frame's disparity and its predicted noise
        (px; NaN = none).
      pose: (R, t), X_other = R X_this + t.
      focal_px, fb_px_m: focal length (px) and focal length x baseline (px m).
    Returns:
      (disparity, sigma) float32 [H, W] in this frame (NaN where not available).
    """
    height, width = guess_px.shape
    rotation, translation = pose
    ray_x, ray_y = _pixel_rays(height, width, focal_px)
    x, y, z = _transform_points(guess_px, ray_x, ray_y, rotation, translation, fb_px_m)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        ahead = z > _MIN_DEPTH_M
        map_x = np.where(ahead, focal_px * x / z + cx, -1e4).astype(np.float32)
        map_y = np.where(ahead, focal_px * y / z + cy, -1e4).astype(np.float32)
    finite = np.isfinite(other_px) & (other_px > 0)
    sample = {}
    for name, image in (("disp", np.where(finite, other_px, 0)), ("sigma", np.where(
            finite, np.nan_to_num(other_sigma_px, nan=0.0, posinf=0.0), 0)),
            ("valid", finite)):
        sample[name] = cv2.remap(image.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    usable = sample["valid"] >= _ALL_VALID
    sampled = np.where(usable, sample["disp"], np.nan)
    # Lift the sampled disparity in the other camera and bring the point back.
    inv_rotation = rotation.T
    back_t = -inv_rotation @ translation
    other_rx = (map_x.astype(np.float64) - cx) / focal_px
    other_ry = (map_y.astype(np.float64) - cy) / focal_px
    _, _, z_back = _transform_points(sampled, other_rx, other_ry, inv_rotation, back_t, fb_px_m)
    with np.errstate(invalid="ignore", divide="ignore"):
        disparity = np.where(z_back > _MIN_DEPTH_M, fb_px_m / z_back, np.nan)
        # relative noise (sigma / disparity) is kept through the reprojection
        sigma = sample["sigma"] / sampled * disparity
    return disparity.astype(np.float32), sigma.astype(np.float32)


def forward_splat_disparity(other_px: np.ndarray, pose: tuple[np.ndarray, np.ndarray],
                            focal_px: float, fb_px_m: float) -> np.ndarray:
    """The other frame's disparities splatted into this frame (nearest pixel, nearest point
    wins). other_px [H, W] (NaN = none); pose (R, t): X_this = R X_other + t.
    Returns float32 [H, W] (NaN where nothing lands)."""
    height, width = other_px.shape
    ray_x, ray_y = _pixel_rays(height, width, focal_px)
    finite = np.isfinite(other_px) & (other_px > 0)
    x, y, z = _transform_points(other_px[finite], ray_x[finite], ray_y[finite], *pose, fb_px_m)
    ahead = z > _MIN_DEPTH_M
    x, y, z = x[ahead], y[ahead], z[ahead]
    cols = np.rint(focal_px * x / z + (width - 1) / 2.0)
    rows = np.rint(focal_px * y / z + (height - 1) / 2.0)
    inside = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    flat = rows[inside].astype(np.intp) * width + cols[inside].astype(np.intp)
    nearest = np.zeros(height * width)
    np.maximum.at(nearest, flat, fb_px_m / z[inside])  # largest disparity = nearest point
    return np.where(nearest > 0, nearest, np.nan).reshape(height, width).astype(np.float32)


def fuse_frame(own_px: np.ndarray, own_sigma_px: np.ndarray, neighbours: list[tuple],
               c2w_own: np.ndarray, focal_px: float, fb_px_m: float,
               consistency_sigmas: float, fill_holes: bool = True,
               noise_correlation: float = NOISE_CORRELATION,
               max_relative: float = CONSISTENCY_MAX_RELATIVE
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fuses one frame's disparity with its neighbours'.

    Args:
      own_px, own_sigma_px: [H, W] float32 disparity and predicted noise (px; NaN = none).
      neighbours: list of (disparity [H, W], sigma [H, W], camera2world [3, 4]).
      c2w_own: [3, 4] this frame's camera.
      focal_px, fb_px_m: focal length (px), focal length x baseline (px m).
      consistency_sigmas: a neighbour agrees when within this many combined sigmas.
      fill_holes: fill pixels without an own disparity from >= ``MIN_FILL_VIEWS`` neighbours.
      noise_correlation: see ``NOISE_CORRELATION``.
      max_relative: see ``CONSISTENCY_MAX_RELATIVE``.
    Returns:
      (disparity, sigma, views) float32 [H, W], [H, W] and int [H, W] (views averaged).
    """
    own = np.where(np.isfinite(own_px) & (own_px > 0), own_px, np.nan).astype(np.float32)
    own_sigma = np.where(np.isfinite(own), own_sigma_px, np.nan)
    has_own = np.isfinite(own) & np.isfinite(own_sigma) & (own_sigma > 0)
    guess = own
    if fill_holes and neighbours:
        splats = np.stack([forward_splat_disparity(d, relative_pose(c2w, c2w_own), focal_px,
                                                   fb_px_m) for d, _, c2w in neighbours])
        holes = ~has_own
        guess = own.copy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels stay NaN
            guess[holes] = np.nanmedian(splats[:, holes], axis=0)
    estimates = [reprojected_disparity(guess, d, s, relative_pose(c2w_own, c2w), focal_px,
                                       fb_px_m) for d, s, c2w in neighbours]
    weight_sum = np.where(has_own, 1.0 / np.where(has_own, own_sigma, 1.0) ** 2, 0.0)
    value_sum = np.where(has_own, own * weight_sum, 0.0)
    views = has_own.astype(np.int32)
    ref_sigma = np.where(has_own, own_sigma, 0.0)
    for disparity, sigma in estimates:
        with np.errstate(invalid="ignore"):
            tolerance = np.minimum(consistency_sigmas * np.sqrt(ref_sigma**2 + sigma**2),
                                   max_relative * guess) + CONSISTENCY_FLOOR_PX
            agree = (np.abs(disparity - guess) <= tolerance) & (sigma > 0)
        weight = np.where(agree, 1.0 / np.where(agree, sigma, 1.0) ** 2, 0.0)
        weight_sum += weight
        value_sum += np.where(agree, disparity, 0.0) * weight
        views += agree
    usable = (views >= 1) & (has_own | (views >= MIN_FILL_VIEWS))
    with np.errstate(divide="ignore", invalid="ignore"):
        fused = np.where(usable, value_sum / weight_sum, np.nan)
        inflation = 1.0 + noise_correlation * (views - 1)
        sigma_fused = np.where(usable, np.sqrt(inflation / weight_sum), np.nan)
    return fused.astype(np.float32), sigma_fused.astype(np.float32), views


def fuse_sequence(frames: Iterable[tuple[np.ndarray, np.ndarray]], camera2world: np.ndarray,
                  radius: int, focal_px: float, fb_px_m: float, consistency_sigmas: float,
                  fill_holes: bool = True, noise_correlation: float = NOISE_CORRELATION,
                  max_relative: float = CONSISTENCY_MAX_RELATIVE) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``fuse_frame`` over a sequence, holding only ``2 radius + 1`` frames at a time.

    frames: per frame (disparity [H, W], sigma [H, W]) px; camera2world [T, 3, 4].
    Yields per frame the result of ``fuse_frame`` (in order).
    """
    window: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    iterator = iter(frames)
    count = len(camera2world)
    next_in = 0
    for t in range(count):
        while next_in < count and next_in <= t + radius:
            window[next_in] = next(iterator)
            next_in += 1
        for old in [k for k in window if k < t - radius]:
            del window[old]
        neighbours = [(*window[s], camera2world[s]) for s in sorted(window) if s != t]
        yield fuse_frame(*window[t], neighbours, camera2world[t], focal_px, fb_px_m,
                         consistency_sigmas, fill_holes, noise_correlation, max_relative)
