"""The clip noise level of the classical stereo (``stereo_noise``): left-right disagreement,
the scaled confidence threshold, and its effect on a JPEG-compressed pair against the truth."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from stereo4d.backends.classical_stereo import SgbmSettings, SgbmStereo
from stereo4d.backends.stereo_noise import (
    CLEAN_DISAGREEMENT_PX,
    clip_disagreement_px,
    left_right_disagreement_px,
    noise_sample_frames,
    scaled_noise_threshold,
)
from tests.test_classical_stereo import evaluate_pair, render_layered_pair

JPEG_QUALITY = 10
"""Low-quality JPEG (4:2:0 chroma, 8 x 8 blocks): a stand-in for a low-bitrate video frame."""
EXPONENT = 0.25
"""``noise_threshold_exponent`` tried on the tuning clip t4 (off by default)."""


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    ok, buffer = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return np.ascontiguousarray(cv2.imdecode(buffer, cv2.IMREAD_COLOR)[..., ::-1])


def test_sample_frames_spread_over_the_clip():
    assert noise_sample_frames(24) == [0, 8, 15, 23]
    assert noise_sample_frames(2) == [0, 1]
    assert noise_sample_frames(0) == []


def test_disagreement_of_exact_and_offset_disparities():
    _, _, disp_left, disp_right = render_layered_pair(64, 96)
    noise = np.full(disp_left.shape, 0.01, np.float32)
    exact = left_right_disagreement_px(disp_left, disp_right, noise, 0.4)
    # Away from the box's edges the true maps agree to interpolation error (the background
    # is a plane, so bilinear sampling is exact there).
    assert exact.size > 0.8 * disp_left.size and np.median(exact) < 1e-4
    shifted = left_right_disagreement_px(disp_left + 0.1, disp_right, noise, 0.4)
    assert np.median(shifted) == pytest.approx(0.1, abs=0.01)
    # Pixels failing the confidence test do not count; none left: NaN for the clip.
    rejected = left_right_disagreement_px(disp_left, disp_right, noise + 1.0, 0.4)
    assert rejected.size == 0 and np.isnan(clip_disagreement_px([rejected]))
    assert clip_disagreement_px([np.array([0.1, 0.3]), np.array([0.2])]) == pytest.approx(0.2)


def test_threshold_scaling():
    assert scaled_noise_threshold(0.4, 0.9 * CLEAN_DISAGREEMENT_PX, 0.25) == 0.4
    assert scaled_noise_threshold(0.4, float("nan"), 0.25) == 0.4
    assert scaled_noise_threshold(0.4, 4 * CLEAN_DISAGREEMENT_PX, 0.0) == 0.4
    assert scaled_noise_threshold(0.0, 4 * CLEAN_DISAGREEMENT_PX, 0.25) == 0.0
    assert scaled_noise_threshold(0.4, 16 * CLEAN_DISAGREEMENT_PX, 0.25) == pytest.approx(0.2)


def test_compressed_pair_rejects_what_it_cannot_measure():
    """On a JPEG-compressed pair the left-right disagreement rises above clean video's and
    the lowered threshold keeps more precise pixels (depth AbsRel against the truth) than
    the fixed one; on the exact pair nothing changes."""
    left, right, disp_left, disp_right = render_layered_pair(128, 160)
    fixed, scaled = (SgbmStereo(SgbmSettings(block_size_px=3, noise_threshold_exponent=e))
                     for e in (0.0, EXPONENT))
    clean = [evaluate_pair(s.compute_flows(left[None], right[None]), disp_left, disp_right)
             for s in (fixed, scaled)]
    assert scaled.noise_px < CLEAN_DISAGREEMENT_PX  # measured 0.008 px
    assert clean[0] == clean[1]
    left_c, right_c = _jpeg(left, JPEG_QUALITY), _jpeg(right, JPEG_QUALITY)
    compressed = [evaluate_pair(s.compute_flows(left_c[None], right_c[None]), disp_left,
                                disp_right) for s in (fixed, scaled)]
    assert scaled.noise_px > 2 * CLEAN_DISAGREEMENT_PX  # measured 0.037 px
    # measured: AbsRel 5.7 % -> 5.0 %, density 0.38 -> 0.20
    assert compressed[1]["abs_rel"] < 0.9 * compressed[0]["abs_rel"]
    assert compressed[1]["density"] < compressed[0]["density"]


def test_sample_frames_are_measured_once():
    left, right = render_layered_pair(48, 64)[:2]
    stereo = SgbmStereo()
    calls = []
    measure = stereo.measure
    stereo.measure = lambda lf, rf: calls.append(1) or measure(lf, rf)
    frames = 5
    flows = stereo.compute_flows(np.stack([left] * frames), np.stack([right] * frames))
    assert len(flows) == frames and len(calls) == frames
