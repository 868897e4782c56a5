"""How far stereo precision lets APD3D go: the expected APD3D of 3D points whose only error is
a disparity error, and the disparity precision a target APD3D needs.

A point at depth ``Z`` seen by a rectified pair of focal ``f`` px and baseline ``B`` m has the
disparity ``D = f B / Z`` px. A disparity error ``e`` px moves the point along its viewing ray
to the depth ``Z' = f B / (D + e)``, a 3D error of ``|Z' - Z| * r`` (``r = |p| / z``: the ray's
length per unit depth, 1 at the image centre). APD3D (``tracks3d.apd3d``) counts the point as
correct at threshold ``d`` px when that error is below ``d Z / f_eval``, that is when
``|e| / (D + e) < t`` with ``t = d / (f_eval r)``:

    -t D / (1 + t) < e < t D / (1 - t)      (no upper limit when t >= 1)

With ``e ~ N(0, sigma^2)`` the probability is ``Phi(hi / sigma) - Phi(lo / sigma)``, averaged
over the points and the thresholds. Every other stage is taken as perfect, so this is an upper
bound on what a stereo of precision ``sigma`` allows.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from stereo4d.metrics.tracks3d import APD_THRESHOLDS_PX

__all__ = [
    "SIGMA_SEARCH_PX",
    "disparity_error_px",
    "expected_apd3d",
    "sigma_for_apd3d",
]

#: Interval of disparity standard deviations (px) searched by ``sigma_for_apd3d``.
SIGMA_SEARCH_PX = (1e-5, 10.0)
#: Bisection steps of ``sigma_for_apd3d`` (in log sigma: the interval shrinks 2^-60-fold).
_BISECTION_STEPS = 60


def expected_apd3d(depth_m: np.ndarray, ray_norm: np.ndarray, sigma_px: float,
                   stereo_focal_px: float, baseline_m: float, eval_focal_px: float,
                   thresholds_px=APD_THRESHOLDS_PX) -> float:
    """Expected APD3D of points whose disparity has a Gaussian error of ``sigma_px``.

    Args:
      depth_m: [P] true camera z-depth of the scored points (metres, > 0).
      ray_norm: [P] length of each point's viewing ray per unit depth (>= 1).
      sigma_px: standard deviation of the disparity error (px at the stereo resolution).
      stereo_focal_px, baseline_m: the rectified pair (``f B`` is disparity x depth).
      eval_focal_px: the focal length of the APD thresholds (``tracks3d.eval_focal_px``).
    Returns:
      mean over thresholds of the expected share of points within each threshold.
    """
    depth_m = np.asarray(depth_m, np.float64).ravel()
    ray_norm = np.asarray(ray_norm, np.float64).ravel()
    if depth_m.size == 0:
        return float("nan")
    disparity_px = stereo_focal_px * baseline_m / depth_m
    shares = []
    for d in thresholds_px:
        t = d / (eval_focal_px * ray_norm)
        lo = -t * disparity_px / (1.0 + t)
        hi = np.where(t < 1.0, t * disparity_px / np.maximum(1.0 - t, 1e-12), np.inf)
        if sigma_px <= 0:
            shares.append(1.0)
            continue
        shares.append(float(np.mean(ndtr(hi / sigma_px) - ndtr(lo / sigma_px))))
    return float(np.mean(shares))


def sigma_for_apd3d(target: float, depth_m: np.ndarray, ray_norm: np.ndarray,
                    stereo_focal_px: float, baseline_m: float, eval_focal_px: float,
                    thresholds_px=APD_THRESHOLDS_PX) -> float:
    """The disparity standard deviation (px) at which ``expected_apd3d`` equals ``target``.

    ``expected_apd3d`` falls as sigma grows, so this is the largest sigma that still reaches
    ``target``. Returns the ends of ``SIGMA_SEARCH_PX`` when the target is reached beyond them.
    """
    def apd(sigma):
        return expected_apd3d(depth_m, ray_norm, sigma, stereo_focal_px, baseline_m,
                              eval_focal_px, thresholds_px)

    lo, hi = np.log(SIGMA_SEARCH_PX[0]), np.log(SIGMA_SEARCH_PX[1])
    if apd(np.exp(hi)) >= target:
        return float(np.exp(hi))
    if apd(np.exp(lo)) < target:
        return float(np.exp(lo))
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        if apd(np.exp(mid)) >= target:
            lo = mid
        else:
            hi = mid
    return float(np.exp(0.5 * (lo + hi)))


def disparity_error_px(pred_depth_m: np.ndarray, true_depth_m: np.ndarray,
                       stereo_focal_px: float, baseline_m: float) -> np.ndarray:
    """A depth error expressed as the disparity error that would cause it.

    Args:
      pred_depth_m, true_depth_m: [...] camera z-depths (metres); a predicted depth <= 0 gives
        NaN.
    Returns:
      [...] ``f B / pred - f B / true`` in px (positive: the prediction is too near).
    """
    pred = np.asarray(pred_depth_m, np.float64)
    true = np.asarray(true_depth_m, np.float64)
    fb = stereo_focal_px * baseline_m
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(pred > 0, fb / pred, np.nan) - fb / true
