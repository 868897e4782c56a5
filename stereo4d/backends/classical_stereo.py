"""Classical stereo (no weights): OpenCV semi-global matching both ways, checks, refinement.

Per rectified frame pair:

1. ``cv2.StereoSGBM`` disparity of the left view, and of the right view by
   matching the horizontally flipped pair (the right view becomes a "left" one);
   uniqueness and speckle filters on, 1/16 px parabola sub-pixel estimate.
2. Left-right check: a left pixel keeps its disparity ``d`` only if the right
   view's disparity at ``x - d`` agrees within ``lr_tolerance_px`` (and likewise
   for the right view).
3. Sub-pixel refinement of the kept disparities (``stereo_refine``): a few
   Gauss-Newton steps of a slanted-window 1-D Lucas-Kanade match along the
   epipolar line, each window pixel linearised at its own disparity. This removes
   the parabola fit's "pixel locking" bias and averages image noise over the
   window; steps are bounded to stay near the SGBM answer. Both views are refined
   the same way, so the pipeline's left-right check still holds.
4. Confidence: pixels whose predicted single-pixel disparity noise exceeds
   ``max_relative_noise`` times their disparity (texture-less walls, mismatches,
   far surfaces with weak texture) are rejected in both views. The clip's median left-right
   disagreement (px, measured on a few frames: ``stereo_noise``) is recorded; with
   ``noise_threshold_exponent`` > 0 the threshold is lowered on a clip where it is larger
   than clean video's, as in low-bitrate compressed video.
   With the clip's cameras (``compute_flows(..., camera2world, focal_px)``, as the stage
   passes them) and ``fusion_radius_frames`` > 0, the test applies to the disparities
   and noise fused over the neighbouring frames (``stereo_fusion``): static surfaces
   are averaged over up to ``2 radius + 1`` views, so more of them pass the test.
   With ``temporal_refine`` the fused disparities are then refined against the same view
   6 and 12 frames before and after (``temporal_stereo``: the camera's own motion as a
   wider baseline) and the test applies to the combined noise.
5. Fill-in (``fill``): each rejected pixel takes the smaller (background) of the
   nearest kept disparities to its left and right on its row. Rejected pixels
   are then recognisable only by the pipeline's own checks: a filled occluded
   pixel points into the other view's foreground, whose disparity disagrees, so
   ``stereo4d.depth`` drops it; with ``fill=False`` rejected pixels get
   disparity 0 (infinite depth, also dropped).

Output per frame: ``fwd`` = (-disparity_left, 0) and ``bwd`` = (+disparity_right, 0),
float32 [H, W, 2], the format of ``<vid>-flows_stereo.pkl``.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, replace

import numpy as np

from stereo4d.backends.imageops import to_gray
from stereo4d.backends.sgbm_matching import (
    SGBM_DISPARITY_STEP,
    SGBM_MODES,
    fill_from_background,
    left_right_consistent,
    sgbm_disparities,
)
from stereo4d.backends.stereo_fusion import fuse_sequence, right_camera2world
from stereo4d.backends.stereo_noise import (
    CLEAN_DISAGREEMENT_PX,
    clip_disagreement_px,
    left_right_disagreement_px,
    noise_sample_frames,
    scaled_noise_threshold,
)
from stereo4d.backends.stereo_refine import (
    refine_disparity,
    refine_disparity_two_scale,
    relative_disparity_noise,
    remove_local_mean,
)
from stereo4d.backends.temporal_stereo import TemporalSettings, refine_sequence
from stereo4d.depth import BASELINE_M

__all__ = ["NOISY_SMOOTH_BASE_PX", "NOISY_STEREO_WEIGHT_SCALE", "SgbmSettings", "SgbmStereo"]

NOISY_SMOOTH_BASE_PX = 11
"""Default ``SgbmSettings.noisy_smooth_base_px``: chosen on t4, x40, x41 (see README)."""
NOISY_STEREO_WEIGHT_SCALE = 0.4
"""Default ``SgbmSettings.noisy_stereo_weight_scale``: chosen on t4, x40, x41 (see README)."""


@dataclass(frozen=True)
class SgbmSettings:
    """Settings of the classical backend (all sizes in pixels of the input views).

    Attributes:
      max_disparity_px: largest disparity searched (rounded up to a multiple of 16
        by OpenCV's rule). 64 px at 512 px / 60 deg hfov covers depths >= 0.44 m.
      block_size_px: SGBM matching window side (odd). 5 (was 3) on the tuning clips t1-t5:
        fewer wrong integer matches on low-bitrate video (t4: density 0.825 -> 0.838, AbsRel
        4.54 % -> 4.32 %), the clean clips unchanged or slightly better.
      smoothness_p1, smoothness_p2: SGBM penalties for a 1 px / larger disparity
        change between neighbours, per pixel of the block (multiplied by block area).
      mode: one of ``SGBM_MODES``.
      uniqueness_percent: the best cost must beat the second best by this margin.
      speckle_window_px: connected regions smaller than this are removed (0: off).
      speckle_range_px: disparity variation allowed inside one region.
      lr_tolerance_px: left-right check tolerance.
      refine_iterations: Gauss-Newton steps of the sub-pixel refinement (0: off).
      refine_window_px: side of the refinement's (box) window (odd). 15 px averages
        the noise of compressed video; the plane model keeps slanted surfaces unbiased.
      refine_highpass_sigma_px: the refinement and the confidence compare the views
        minus their local mean (Gaussian of this sigma; 0: raw grey levels), so that
        a brightness difference between the cameras does not bias the disparities
        (Middlebury motorcycle: median error 0.26 px raw, 0.15 px high-passed).
      refine_edge_window_px: window used instead near depth edges (odd).
      refine_edge_spread_px: a pixel is near a depth edge when the SGBM disparities
        in its ``refine_window_px`` window span more than this (0: one window only).
      refine_max_step_px: the refinement moves a disparity by at most this in total.
      refine_damping: pull towards the current estimate in squared grey levels
        (per pixel of window-mean squared x-gradient): weaker texture moves less.
      refine_slope_damping: pull of the window plane's slopes towards 0 (same units).
      max_relative_noise: reject pixels whose predicted single-pixel disparity
        noise (residual rms / gradient rms over the refinement window, px) exceeds
        this fraction of their disparity (0: off). First tuned on the synthetic demo clip
        (0.4 kept ~92 % of its evaluation pixels, AbsRel 4.2 % -> 2.9 %, and dropped the
        texture-less wall); with the fusion, the temporal refinement and block 5, chosen on
        the tuning clips t1-t5 as the tightest of 0.40 / 0.34 / 0.30 that keeps their mean
        density >= 0.885 (the aim of 0.88 plus a margin): 0.34 (density 0.896 -> 0.887,
        AbsRel 2.98 % -> 2.88 %; 0.30: 0.877 / 2.79 %).
      noise_threshold_exponent: on a clip whose median left-right disagreement (px,
        ``stereo_noise``) exceeds ``noise_clean_px``, the confidence threshold is multiplied by
        ``(noise_clean_px / disagreement) ** noise_threshold_exponent`` (0: off, the
        default). A poor trade on compressed video: with 0.25, t4 (0.035 px) gets 0.32
        (density 0.838 -> 0.817, AbsRel 4.32 -> 4.10 %), but two scratch crf-30 clips (0.054,
        0.071 px) lose 0.12 / 0.16 of density for 0.6 / 0.8 points of AbsRel.
      noise_clean_px: the disagreement up to which a clip counts as clean video; above it the
        temporal refinement uses the two ``noisy_`` settings below (clean clips never do).
      fill: fill rejected pixels with the background disparity of their row.
      fusion_radius_frames: fuse each frame's disparities with those of the frames up to
        this far before and after it, using the clip's cameras (``stereo_fusion``; 0: off,
        and off when no cameras are given); the confidence test then applies to the fused
        noise.
      fusion_consistency_sigmas: a neighbour's reprojected disparity counts where it is
        within this many combined predicted sigmas of the frame's own.
      fusion_fill_holes: pixels without a disparity of their own take the neighbours'
        when at least two of them agree.
      temporal_refine: after the fusion, refine each frame's disparities with the same
        view of the frames ``temporal_offsets_frames`` before and after it
        (``temporal_stereo``: the camera's motion as a wider baseline; needs the cameras,
        as the fusion); the confidence test then applies to the combined noise.
      temporal_offsets_frames: frame distances of the temporal neighbours (each side).
      temporal_window_px: ZNCC window of the temporal match (odd).
      temporal_min_zncc: a temporal neighbour counts where its best ZNCC reaches this.
      noisy_smooth_base_px: on a clip noisier than ``noise_clean_px`` (low-bitrate video), the
        temporal sweep is centred on the stereo disparity averaged over this window
        (``TemporalSettings.smooth_base_px``; 0: off): the sweep corrects the stereo at the
        window's scale only, and on compressed video the stereo's pixel-scale noise is what
        remains (README, "Compressed video: the floor").
      noisy_stereo_weight_scale: on such a clip the stereo's weight against the temporal
        estimate is multiplied by this (``TemporalSettings.stereo_weight_scale``).
    """

    max_disparity_px: int = 64
    block_size_px: int = 5
    smoothness_p1: int = 8
    smoothness_p2: int = 32
    mode: str = "sgbm_3way"
    uniqueness_percent: int = 10
    speckle_window_px: int = 100
    speckle_range_px: int = 2
    lr_tolerance_px: float = 1.0
    refine_iterations: int = 3
    refine_window_px: int = 15
    refine_highpass_sigma_px: float = 3.0
    refine_edge_window_px: int = 5
    refine_edge_spread_px: float = 3.0
    refine_max_step_px: float = 1.0
    refine_damping: float = 1.0
    refine_slope_damping: float = 1.0
    max_relative_noise: float = 0.34
    noise_threshold_exponent: float = 0.0
    noise_clean_px: float = CLEAN_DISAGREEMENT_PX
    fill: bool = False
    fusion_radius_frames: int = 6
    fusion_consistency_sigmas: float = 2.0
    fusion_fill_holes: bool = False
    temporal_refine: bool = True
    temporal_offsets_frames: tuple[int, ...] = TemporalSettings.offsets
    temporal_window_px: int = TemporalSettings.window_px
    temporal_min_zncc: float = TemporalSettings.min_zncc
    noisy_smooth_base_px: int = NOISY_SMOOTH_BASE_PX
    noisy_stereo_weight_scale: float = NOISY_STEREO_WEIGHT_SCALE

    def __post_init__(self):
        if self.mode not in SGBM_MODES:
            raise ValueError(f"unknown SGBM mode {self.mode!r}; choose from {list(SGBM_MODES)}")
        if any(size % 2 == 0 for size in (self.block_size_px, self.refine_window_px,
                                          self.refine_edge_window_px)):
            raise ValueError("block_size_px, refine_window_px and refine_edge_window_px must be odd")
        if self.max_disparity_px < 1:
            raise ValueError("max_disparity_px must be positive")
        if self.refine_iterations < 0:
            raise ValueError("refine_iterations must be >= 0")
        if self.max_relative_noise < 0:
            raise ValueError("max_relative_noise must be >= 0 (0: off)")
        if self.noise_threshold_exponent < 0 or self.noise_clean_px <= 0:
            raise ValueError("noise_threshold_exponent must be >= 0 and noise_clean_px > 0")
        if self.fusion_radius_frames < 0:
            raise ValueError("fusion_radius_frames must be >= 0 (0: off)")
        if self.fusion_consistency_sigmas <= 0:
            raise ValueError("fusion_consistency_sigmas must be positive")
        _ = self.temporal_for(np.inf)  # constructing them validates the temporal settings

    @property
    def temporal(self) -> TemporalSettings:
        """The temporal refinement's settings."""
        return TemporalSettings(offsets=tuple(self.temporal_offsets_frames),
                                window_px=self.temporal_window_px,
                                min_zncc=self.temporal_min_zncc)

    def temporal_for(self, disparity_noise_px: float) -> TemporalSettings:
        """The temporal refinement's settings for a clip of this median left-right
        disagreement (px; NaN: unknown, taken as clean)."""
        if not disparity_noise_px > self.noise_clean_px:
            return self.temporal
        return replace(self.temporal, smooth_base_px=self.noisy_smooth_base_px,
                       stereo_weight_scale=self.noisy_stereo_weight_scale)

    @property
    def num_disparities(self) -> int:
        """``max_disparity_px`` rounded up to SGBM's step."""
        return -(-self.max_disparity_px // SGBM_DISPARITY_STEP) * SGBM_DISPARITY_STEP


class SgbmStereo:
    """The ``sgbm`` stereo backend: ``compute_flows(left, right)`` -> list of fwd/bwd dicts."""

    name = "sgbm"

    def __init__(self, settings: SgbmSettings = SgbmSettings()):
        self.config = settings
        self.noise_px = float("nan")
        """The last clip's median left-right disagreement (px, ``clip_threshold``; NaN: none)."""

    @property
    def uses_cameras(self) -> bool:
        """True when the multi-frame fusion or the temporal refinement is on."""
        return bool(self.config.fusion_radius_frames) or self.config.temporal_refine

    def settings(self) -> dict:
        """The settings, and the last clip's noise level and confidence threshold if measured."""
        clip = {} if np.isnan(self.noise_px) else {
            "clip_disagreement_px": self.noise_px,
            "clip_noisy": bool(self.noise_px > self.config.noise_clean_px),
            "clip_max_relative_noise": scaled_noise_threshold(
                self.config.max_relative_noise, self.noise_px,
                self.config.noise_threshold_exponent, self.config.noise_clean_px)}
        return {"backend": self.name, **asdict(self.config), **clip}

    def measure(self, left_uint8: np.ndarray, right_uint8: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One frame pair [H, W, 3] uint8 -> refined disparities of both views and their
        predicted relative noise (``relative_disparity_noise``), float32 [H, W] each, before
        the confidence test: (disparity_left, disparity_right, noise_left, noise_right).

        Pixels without a match or failing the left-right check are NaN (noise inf).
        """
        s = self.config
        left_gray, right_gray = to_gray(left_uint8), to_gray(right_uint8)
        disp_left, disp_right = sgbm_disparities(left_gray, right_gray, s)
        keep_left, keep_right = left_right_consistent(disp_left, disp_right, s.lr_tolerance_px)
        disp_left[~keep_left] = np.nan
        disp_right[~keep_right] = np.nan
        lf, rf = (remove_local_mean(gray, s.refine_highpass_sigma_px)
                  for gray in (left_gray, right_gray))
        if s.refine_iterations:
            refine = {"iterations": s.refine_iterations, "window_px": s.refine_window_px,
                      "damping": s.refine_damping, "slope_damping": s.refine_slope_damping,
                      "max_step_px": s.refine_max_step_px}
            if s.refine_edge_spread_px:
                refine.update(edge_window_px=s.refine_edge_window_px,
                              edge_spread_px=s.refine_edge_spread_px)
            refiner = refine_disparity_two_scale if s.refine_edge_spread_px else refine_disparity
            disp_left = refiner(lf, rf, disp_left, -1.0, **refine)
            disp_right = refiner(rf, lf, disp_right, +1.0, **refine)
        noise_left = relative_disparity_noise(lf, rf, disp_left, -1.0, s.refine_window_px)
        noise_right = relative_disparity_noise(rf, lf, disp_right, +1.0, s.refine_window_px)
        return disp_left, disp_right, noise_left, noise_right

    def finish(self, disparity: np.ndarray, relative_noise: np.ndarray,
               max_relative_noise: float | None = None) -> np.ndarray:
        """Confidence test (and fill-in) of one view: float32 [H, W] -> float32 [H, W].
        ``max_relative_noise``: the clip's threshold (None: the settings')."""
        disparity = np.array(disparity, np.float32)
        threshold = self.config.max_relative_noise if max_relative_noise is None \
            else max_relative_noise
        if threshold:
            disparity[~(relative_noise <= threshold)] = np.nan
        return fill_from_background(disparity) if self.config.fill else disparity

    def disparities(self, left_uint8: np.ndarray, right_uint8: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
        """One frame pair [H, W, 3] uint8 -> (disparity_left, disparity_right) float32 [H, W].

        Rejected pixels are NaN (before fill-in) when ``fill`` is False, else filled.
        """
        disp_left, disp_right, noise_left, noise_right = self.measure(left_uint8, right_uint8)
        return self.finish(disp_left, noise_left), self.finish(disp_right, noise_right)

    def compute_flows(self, left: np.ndarray, right: np.ndarray,
                      camera2world: np.ndarray | None = None, focal_px: float | None = None
                      ) -> list[dict[str, np.ndarray]]:
        """Stereo flows of a rectified video.

        Args:
          left, right: uint8 [T, H, W, 3] RGB rectified views.
          camera2world: [T, 3, 4] rectified left cameras, for the multi-frame fusion and the
            temporal refinement (None: every frame on its own).
          focal_px: focal length of the rectified views (needed with ``camera2world``).
        Returns:
          per frame ``{'fwd': [H, W, 2], 'bwd': [H, W, 2]}`` float32 pixels.
        """
        samples, threshold = self.clip_threshold(left, right)
        measured = (samples.pop(t) if t in samples else self.measure(lf, rf)
                    for t, (lf, rf) in enumerate(zip(left, right)))
        if camera2world is None or not self.uses_cameras:
            pairs = ((self.finish(dl, nl, threshold), self.finish(dr, nr, threshold))
                     for dl, dr, nl, nr in measured)
        else:
            pairs = self._fused_disparities(measured, left, right, camera2world, focal_px,
                                            threshold)
        flows = []
        for disp_left, disp_right in pairs:
            zeros = np.zeros_like(disp_left)
            flows.append({
                "fwd": np.stack([-np.nan_to_num(disp_left, nan=0.0), zeros], axis=-1),
                "bwd": np.stack([np.nan_to_num(disp_right, nan=0.0), zeros], axis=-1),
            })
        return flows

    def clip_threshold(self, left: np.ndarray, right: np.ndarray) -> tuple[dict, float]:
        """The clip's confidence threshold (``stereo_noise``), measured on a few frames.

        Args:
          left, right: uint8 [T, H, W, 3] rectified views.
        Returns:
          ({frame: ``measure`` result} of the sample frames, to be reused; threshold).
        """
        s = self.config
        if not s.max_relative_noise:
            return {}, s.max_relative_noise
        samples = {t: self.measure(left[t], right[t]) for t in noise_sample_frames(len(left))}
        self.noise_px = clip_disagreement_px([
            left_right_disagreement_px(dl, dr, nl, s.max_relative_noise)
            for dl, dr, nl, _ in samples.values()])
        return samples, scaled_noise_threshold(s.max_relative_noise, self.noise_px,
                                               s.noise_threshold_exponent, s.noise_clean_px)

    def _fused_disparities(self, measured, left, right, camera2world, focal_px, threshold):
        """Yields per frame (disparity_left, disparity_right) [H, W] after ``stereo_fusion``
        of both views' ``measured`` results and the confidence test on the fused noise with
        the clip's ``threshold`` (see ``compute_flows``)."""
        if len(camera2world) != len(left) or focal_px is None:
            raise ValueError(f"fusion needs one camera per frame ({len(camera2world)} for "
                             f"{len(left)} frames) and the focal length")
        s = self.config
        measured = itertools.tee(measured, 2)
        cameras = (camera2world, right_camera2world(camera2world, BASELINE_M))
        fb_px_m = focal_px * BASELINE_M
        views = []
        for view, (stream, c2w, images) in enumerate(zip(measured, cameras, (left, right))):
            match_sigma: dict[int, np.ndarray] = {}  # single-frame noise, until refined
            frames = _view_frames(stream, view, match_sigma)
            fused = fuse_sequence(frames, c2w, s.fusion_radius_frames, focal_px, fb_px_m,
                                  s.fusion_consistency_sigmas, s.fusion_fill_holes)
            if s.temporal_refine:
                gray = np.stack([to_gray(image) for image in images])
                fused = refine_sequence(_with_match_sigma(fused, match_sigma), gray, c2w,
                                        focal_px, fb_px_m, s.temporal_for(self.noise_px))
            views.append(fused)
        for (d_left, sig_left, *_), (d_right, sig_right, *_) in zip(*views):
            with np.errstate(divide="ignore", invalid="ignore"):
                yield (self.finish(d_left, sig_left / d_left, threshold),
                       self.finish(d_right, sig_right / d_right, threshold))


def _with_match_sigma(fused, sigma_by_frame: dict):
    """(disparity, sigma, single-frame sigma) per frame from ``fuse_sequence``'s results and
    the single-frame sigmas stored by ``_view_frames`` (each dropped once used)."""
    for t, (disparity, sigma, _) in enumerate(fused):
        yield disparity, sigma, sigma_by_frame.pop(t)


def _view_frames(measured, view: int, sigma_by_frame: dict | None = None):
    """(disparity, sigma_px) of one view (0 left, 1 right) from ``measure`` results; each
    frame's sigma is also stored in ``sigma_by_frame`` under its index (when given)."""
    for t, m in enumerate(measured):
        sigma_px = _sigma_px(m[view], m[view + 2])
        if sigma_by_frame is not None:
            sigma_by_frame[t] = sigma_px
        yield m[view], sigma_px


def _sigma_px(disparity: np.ndarray, relative_noise: np.ndarray) -> np.ndarray:
    """Predicted disparity noise in px from the relative noise ([H, W]; NaN where none)."""
    with np.errstate(invalid="ignore", over="ignore"):  # NaN / inf pixels become NaN below
        sigma_px = relative_noise * disparity
    sigma_px[~(np.isfinite(disparity) & np.isfinite(relative_noise))] = np.nan
    return sigma_px
