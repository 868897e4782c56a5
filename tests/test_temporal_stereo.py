"""Temporal multi-view refinement (``stereo4d.backends.temporal_stereo``): on a small rendered
sequence with known cameras (a textured wall 8 m away, the camera walking forward and
sideways, a square moving in front of the wall), the refinement of a noisy stereo disparity
against the same view's neighbouring frames is measurably closer to the truth than the stereo
alone, and leaves the moving square's disparity as it was."""

from __future__ import annotations

import numpy as np

from stereo4d import depth as depth_lib
from stereo4d.backends.temporal_stereo import (
    TemporalSettings,
    parallax_ratio,
    temporal_estimate,
    temporal_refine_frame,
)
from stereo4d.geometry import focal_length_px
from tests.test_classical_stereo import _texture

HEIGHT, WIDTH = 80, 112
FOCAL_PX = focal_length_px(60.0, 512)  # the suite's 512 px, 60-degree views, cropped
FB_PX_M = FOCAL_PX * depth_lib.BASELINE_M
WALL_DEPTH_M = 8.0  # disparity 3.5 px
CAMERA_STEP_M = np.array([0.03, 0.0, 0.03])  # per frame: sideways (sway) and forward
MOVER_DEPTH_M, MOVER_STEP_M, MOVER_HALF_M = 3.0, 0.04, 0.08  # a square moving sideways
NUM_FRAMES, FRAME = 13, 6  # refine the middle frame
SETTINGS = TemporalSettings(offsets=(3, 6))
STEREO_NOISE_PX = 0.15  # the simulated stereo disparity's error (std)
STEREO_NOISE_SCALE_PX = 8.0  # ... smooth over about this many px, as a windowed match's
MATCH_SIGMA_PX = 0.3  # single-view matching noise given to the refinement
BORDER_PX = 12  # beyond the ZNCC window and the sweep's reach


def _render():
    """Grey frames uint8 [T, H, W], cameras [T, 3, 4], true disparities [T, H, W] and the
    mover's mask [T, H, W] (the square, on the texture of another seed)."""
    cx, cy = (WIDTH - 1) / 2, (HEIGHT - 1) / 2
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    ray_x, ray_y = (cols - cx) / FOCAL_PX, (rows - cy) / FOCAL_PX
    c2w = np.tile(np.eye(4)[:3], (NUM_FRAMES, 1, 1))
    c2w[:, :, 3] = np.arange(NUM_FRAMES)[:, None] * CAMERA_STEP_M
    scale = FOCAL_PX / WALL_DEPTH_M  # texture px per metre on the wall
    frames, disparities, movers = [], [], []
    for t, cam in enumerate(c2w):
        wall_z = WALL_DEPTH_M - cam[2, 3]
        wall_x, wall_y = cam[0, 3] + ray_x * wall_z, cam[1, 3] + ray_y * wall_z
        image = _texture(wall_x * scale, wall_y * scale, 0)
        mover_z = MOVER_DEPTH_M - cam[2, 3]
        mover_x = cam[0, 3] + ray_x * mover_z - MOVER_STEP_M * t  # in the square's frame
        mover_y = cam[1, 3] + ray_y * mover_z
        on_mover = (np.abs(mover_x) < MOVER_HALF_M) & (np.abs(mover_y) < MOVER_HALF_M)
        image = np.where(on_mover, _texture(mover_x * scale, mover_y * scale, 5), image)
        frames.append(np.clip(np.round(image * 255), 0, 255).astype(np.uint8))
        disparities.append(FB_PX_M / np.where(on_mover, mover_z, wall_z))
        movers.append(on_mover)
    return np.stack(frames), c2w, np.stack(disparities).astype(np.float32), np.stack(movers)


def _noisy_stereo(truth: np.ndarray, seed: int = 0) -> np.ndarray:
    """``truth`` plus a smooth error field of std ``STEREO_NOISE_PX``. float32 [H, W]."""
    import cv2

    white = np.random.default_rng(seed).normal(0, 1, truth.shape).astype(np.float32)
    smooth = cv2.GaussianBlur(white, (0, 0), STEREO_NOISE_SCALE_PX)
    return (truth + smooth * (STEREO_NOISE_PX / smooth.std())).astype(np.float32)


def test_parallax_ratio_matches_a_finite_difference():
    _, c2w, truth, _ = _render()
    from stereo4d.backends.temporal_stereo import _rays, _sample
    from stereo4d.geometry import relative_pose

    rotation, translation = relative_pose(c2w[FRAME], c2w[FRAME + 6])
    rays = np.einsum("ij,jhw->ihw", rotation, _rays(HEIGHT, WIDTH, FOCAL_PX))
    ratio = parallax_ratio(rays, translation, truth[FRAME].astype(np.float64), FOCAL_PX, FB_PX_M)
    # image positions through the sampler: a ramp image samples its own coordinate
    ramp_x = np.tile(np.arange(WIDTH, dtype=np.float32), (HEIGHT, 1))
    ramp_y = np.tile(np.arange(HEIGHT, dtype=np.float32)[:, None], (1, WIDTH))
    delta = 0.01
    moved = []
    for ramp in (ramp_x, ramp_y):
        low, _ = _sample(ramp, rays, translation, truth[FRAME] - delta, FOCAL_PX, FB_PX_M)
        high, _ = _sample(ramp, rays, translation, truth[FRAME] + delta, FOCAL_PX, FB_PX_M)
        moved.append((high - low) / (2 * delta))
    numeric = np.hypot(*moved)[BORDER_PX:-BORDER_PX, BORDER_PX:-BORDER_PX]
    expected = ratio[BORDER_PX:-BORDER_PX, BORDER_PX:-BORDER_PX]
    np.testing.assert_allclose(numeric, expected, rtol=0.02, atol=0.02)
    assert 1.0 < np.median(expected) < 6.0  # 0.18 m sideways, 0.18 m forward: ~2.9 baselines


def test_refinement_beats_stereo_alone_and_leaves_a_mover():
    gray, c2w, truth, mover = _render()
    stereo = _noisy_stereo(truth[FRAME])
    sigma = np.full_like(stereo, STEREO_NOISE_PX)
    match_sigma = np.full_like(stereo, MATCH_SIGMA_PX)
    refined, refined_sigma, views = temporal_refine_frame(
        FRAME, gray, stereo, sigma, match_sigma, c2w, FOCAL_PX, FB_PX_M, SETTINGS)
    inner = np.zeros_like(mover[FRAME])
    inner[BORDER_PX:-BORDER_PX, BORDER_PX:-BORDER_PX] = True
    # the wall, away from the square's outline in any frame used (occlusions)
    wall = inner & ~np.any(mover, axis=0)
    stereo_error = np.abs(stereo - truth[FRAME])[wall].mean()
    refined_error = np.abs(refined - truth[FRAME])[wall].mean()
    assert views[wall].mean() > 3.0  # most of the 4 neighbours count on the wall (3.6)
    assert refined_error < 0.6 * stereo_error, (stereo_error, refined_error)
    # measured: 0.129 -> 0.064 px; the temporal estimate alone 0.027 px:
    temporal, _, _ = temporal_estimate(
        FRAME, gray, stereo, sigma, match_sigma, c2w, FOCAL_PX, FB_PX_M, SETTINGS)
    seen = wall & np.isfinite(temporal)
    assert seen.sum() > 0.9 * wall.sum()
    assert np.abs(temporal - truth[FRAME])[seen].mean() < 0.3 * stereo_error
    assert np.all(refined_sigma[wall] <= sigma[wall])
    # the square moves 0.04 m per frame: mostly no neighbour agrees (measured 70 % of its
    # pixels), and where one does its error is not made worse (measured 0.059 -> 0.061 px)
    square = inner & mover[FRAME]
    square_error = np.abs(refined - truth[FRAME])[square].mean()
    assert square_error <= np.abs(stereo - truth[FRAME])[square].mean() + 0.01
    assert np.mean(views[square] == 0) > 0.6


def test_backend_refines_each_view_with_its_own_frames():
    """The ``sgbm`` backend's flows are exactly: each view's measured disparities, fused, then
    ``refine_sequence`` with that view's images and cameras (the right camera moved by the
    baseline) and the single-frame noise, then the confidence test at the clip's threshold."""
    from stereo4d.backends.classical_stereo import SgbmSettings, SgbmStereo
    from stereo4d.backends.imageops import to_gray
    from stereo4d.backends.stereo_fusion import fuse_sequence, right_camera2world
    from stereo4d.backends.temporal_stereo import refine_sequence
    from tests.test_stereo_fusion import FOCAL_PX as FUSION_FOCAL_PX
    from tests.test_stereo_fusion import NOISY_GREY, _shifted_wall_clip

    left, right, c2w = _shifted_wall_clip(5, 2.5, noise_grey=NOISY_GREY)
    settings = SgbmSettings(max_disparity_px=16, fusion_radius_frames=1,
                            temporal_offsets_frames=(2,))
    backend = SgbmStereo(settings)
    flows = backend.compute_flows(left, right, camera2world=c2w, focal_px=FUSION_FOCAL_PX)
    measured = [backend.measure(lf, rf) for lf, rf in zip(left, right)]
    threshold = backend.settings()["clip_max_relative_noise"]  # the clip's (``stereo_noise``)
    cameras = (c2w, right_camera2world(c2w, depth_lib.BASELINE_M))
    fb_px_m = FUSION_FOCAL_PX * depth_lib.BASELINE_M
    changed = 0
    for view, key, sign, images in ((0, "fwd", -1.0, left), (1, "bwd", 1.0, right)):
        with np.errstate(invalid="ignore"):  # NaN disparity x inf noise: NaN sigma
            frames = [(m[view], m[view + 2] * m[view]) for m in measured]
        for (_, single), m in zip(frames, measured):
            single[~(np.isfinite(m[view]) & np.isfinite(m[view + 2]))] = np.nan
        fused = list(fuse_sequence(frames, cameras[view], 1, FUSION_FOCAL_PX, fb_px_m, 2.0, False))
        refined = refine_sequence(
            ((d, s, single) for (d, s, _), (_, single) in zip(fused, frames)),
            np.stack([to_gray(image) for image in images]), cameras[view], FUSION_FOCAL_PX,
            fb_px_m, settings.temporal_for(backend.noise_px))  # the clip's (noisy or not)
        for flow, (disparity, sigma), (fused_d, _, _) in zip(flows, refined, fused):
            with np.errstate(divide="ignore", invalid="ignore"):
                expected = backend.finish(disparity, sigma / disparity, threshold)
            np.testing.assert_array_equal(flow[key][..., 0], sign * np.nan_to_num(expected))
            changed += np.sum(np.abs(np.nan_to_num(disparity) - np.nan_to_num(fused_d)) > 1e-4)
    assert changed > 0  # the refinement did act on this clip
