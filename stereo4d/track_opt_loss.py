"""The loss of the track optimisation (paper Eq. 5) as per-batch constants and jax terms.

Layout: component-major [3, B, T] for points and rays, [B, T] per frame, [B] per track; masks
float32 0/1. With P' = P + d u, everything that does not involve d is computed once per batch
(`make_problem`), so each Adam step only does [B, T] scalar work plus one [3, B, T] residual.
The terms and their reference parity are described in `stereo4d.track_opt`, which runs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import jax.numpy as jnp

if TYPE_CHECKING:
    from stereo4d.track_opt import TrackOptConfig

RAY_EPS_M = 1e-8
"""Added to ray lengths before dividing (the reference's guard), metres."""

COUNT_EPS = 1e-8
"""Added to the number of valid frames when averaging point norms (the reference's guard)."""

NORM_EPS_M = 1e-5
"""Added to the mean point norm before normalising the static term (the reference's guard)."""


def _shift_edge(x: jnp.ndarray, offset: int) -> jnp.ndarray:
    """y[..., t] = x[..., clip(t + offset, 0, T - 1)] along the last axis."""
    num_frames = x.shape[-1]
    k = min(abs(offset), num_frames)
    if k == 0:
        return x
    if offset > 0:
        edge = jnp.repeat(x[..., -1:], k, axis=-1)
        return jnp.concatenate([x[..., k:], edge], axis=-1)
    edge = jnp.repeat(x[..., :1], k, axis=-1)
    return jnp.concatenate([edge, x[..., : num_frames - k]], axis=-1)


class DynamicStrideTerms(NamedTuple):
    """Along-ray second difference at one stride s as an affine function of the offsets:
    u[t] . (P'[t+s] - 2 P'[t] + P'[t-s]) * valid_s[t]
      = base + ahead * d[t+s] + centre * d[t] + behind * d[t-s]   (indices clamped), all [B, T]."""

    base: jnp.ndarray  # u[t] . (P[t+s] - 2 P[t] + P[t-s]) * valid_s
    ahead: jnp.ndarray  # u[t] . u[t+s] * valid_s
    centre: jnp.ndarray  # -2 |u[t]|^2 * valid_s
    behind: jnp.ndarray  # u[t] . u[t-s] * valid_s


class TrackProblem(NamedTuple):
    """Per-batch constants of Eq. 5 (B tracks, T frames); zero on invalid frames unless noted."""

    ray_unit_cbt: jnp.ndarray  # [3, B, T] u = (P - C) / (|P - C| + eps)
    ray_dist_bt: jnp.ndarray  # [B, T] |P - C| + eps (metres); 1 on invalid frames
    mask_bt: jnp.ndarray  # [B, T] eroded visibility, 0/1
    count_b: jnp.ndarray  # [B] number of valid frames n
    points_sq_bt: jnp.ndarray  # [B, T] |P|^2
    points_dot_ray_bt: jnp.ndarray  # [B, T] P . u
    ray_sq_bt: jnp.ndarray  # [B, T] |u|^2 (1 up to round-off)
    centred_cbt: jnp.ndarray  # [3, B, T] P - mean over valid frames of P
    dynamic: tuple[DynamicStrideTerms, ...]  # one per stride
    dyn_weight_b: jnp.ndarray  # [B] w in [0, 1]


def make_problem(
    points_cbt: jnp.ndarray,
    centres_c1t: jnp.ndarray,
    mask_bt: jnp.ndarray,
    dyn_weight_b: jnp.ndarray,
    strides: tuple[int, ...],
    dynamic_edges: str = "clamp",
) -> TrackProblem:
    """Constants for points P [3, B, T] (metres, any finite value off-mask), camera centres
    [3, 1, T], mask [B, T] 0/1, dynamic weights [B]; ``dynamic_edges`` as in TrackOptConfig."""
    if dynamic_edges not in ("clamp", "inside"):
        raise ValueError(f"dynamic_edges must be 'clamp' or 'inside', got {dynamic_edges!r}")
    num_frames = mask_bt.shape[-1]
    frame = jnp.arange(num_frames)
    valid = mask_bt > 0
    points_cbt = jnp.where(valid[None], points_cbt, 0.0)
    ray = points_cbt - centres_c1t
    ray_len = jnp.sqrt(jnp.sum(ray * ray, axis=0))
    ray_unit = jnp.where(valid[None], ray / (ray_len + RAY_EPS_M), 0.0)
    count = jnp.sum(mask_bt, axis=-1)
    mean_point = jnp.sum(points_cbt, axis=-1, keepdims=True) / jnp.maximum(count, 1.0)[:, None]
    dynamic = []
    for stride in strides:
        valid_s = mask_bt * _shift_edge(mask_bt, stride) * _shift_edge(mask_bt, -stride)
        if dynamic_edges == "inside":
            inside = (frame >= stride) & (frame + stride < num_frames)
            valid_s = valid_s * inside.astype(mask_bt.dtype)
        second_diff = _shift_edge(points_cbt, stride) - 2.0 * points_cbt
        second_diff = second_diff + _shift_edge(points_cbt, -stride)
        dynamic.append(
            DynamicStrideTerms(
                base=jnp.sum(second_diff * ray_unit, axis=0) * valid_s,
                ahead=jnp.sum(_shift_edge(ray_unit, stride) * ray_unit, axis=0) * valid_s,
                centre=-2.0 * jnp.sum(ray_unit * ray_unit, axis=0) * valid_s,
                behind=jnp.sum(_shift_edge(ray_unit, -stride) * ray_unit, axis=0) * valid_s,
            )
        )
    return TrackProblem(
        ray_unit_cbt=ray_unit,
        ray_dist_bt=jnp.where(valid, ray_len + RAY_EPS_M, 1.0),
        mask_bt=mask_bt,
        count_b=count,
        points_sq_bt=jnp.sum(points_cbt * points_cbt, axis=0),
        points_dot_ray_bt=jnp.sum(points_cbt * ray_unit, axis=0),
        ray_sq_bt=jnp.sum(ray_unit * ray_unit, axis=0),
        centred_cbt=(points_cbt - mean_point) * mask_bt,
        dynamic=tuple(dynamic),
        dyn_weight_b=dyn_weight_b,
    )


def static_loss(offset_bt: jnp.ndarray, problem: TrackProblem, w_static: float) -> jnp.ndarray:
    """Static term per track [B] for offsets d [B, T].

    Equals w_static / (2 max(n^2, 1)) * sum over ordered valid pairs (i, j), i == j included, of
    |Q_i - Q_j|^2 with Q = P' / (mean valid |P'| + 1e-5); computed in O(T) as
    w_static / n * sum_valid |Q_i - mean Q|^2 (the pair sum is 2 n times the spread).
    """
    mask = problem.mask_bt
    safe_count = jnp.maximum(problem.count_b, 1.0)
    # |P'|^2 = |P|^2 + 2 d P.u + d^2 |u|^2, with a zero (not NaN) gradient of |P'| at P' = 0.
    sq = problem.points_sq_bt + offset_bt * (
        2.0 * problem.points_dot_ray_bt + offset_bt * problem.ray_sq_bt
    )
    positive = sq > 0
    norm = jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)
    mean_norm = jnp.sum(norm * mask, axis=-1) / (problem.count_b + COUNT_EPS)
    # P' - mean P' = (P - mean P) + d u - mean(d u): centred first, so no large cancellation.
    shift_cbt = problem.ray_unit_cbt * (offset_bt * mask)[None]
    shift_mean = jnp.sum(shift_cbt, axis=-1, keepdims=True) / safe_count[:, None]
    resid = (problem.centred_cbt + shift_cbt - shift_mean) * mask
    spread = jnp.sum(jnp.sum(resid * resid, axis=0), axis=-1)
    return w_static / safe_count * spread / (mean_norm + NORM_EPS_M) ** 2


def dynamic_loss(
    offset_bt: jnp.ndarray, problem: TrackProblem, w_dynamic: float, strides: tuple[int, ...]
) -> jnp.ndarray:
    """Dynamic term per track [B]: squared along-ray second differences at each stride."""
    total = jnp.zeros(offset_bt.shape[:1], dtype=offset_bt.dtype)
    for stride, terms in zip(strides, problem.dynamic):
        accel = (
            terms.base
            + terms.ahead * _shift_edge(offset_bt, stride)
            + terms.centre * offset_bt
            + terms.behind * _shift_edge(offset_bt, -stride)
        )
        total = total + jnp.sum(accel * accel, axis=-1)
    return w_dynamic * total


def regularisation_loss(
    offset_bt: jnp.ndarray, ray_dist_bt: jnp.ndarray, mask_bt: jnp.ndarray, lambda_reg: float
) -> jnp.ndarray:
    """Inverse-depth change penalty per track, [B]. `ray_dist_bt` must be > 0 everywhere."""
    inv_change = 1.0 / (offset_bt + ray_dist_bt + RAY_EPS_M) - 1.0 / (ray_dist_bt + RAY_EPS_M)
    return lambda_reg * jnp.sum(jnp.where(mask_bt > 0, inv_change**2, 0.0), axis=-1)


def track_losses(
    offset_bt: jnp.ndarray, problem: TrackProblem, config: TrackOptConfig
) -> jnp.ndarray:
    """Eq. 5 per track for offsets d [B, T] (metres) -> [B]."""
    static = static_loss(offset_bt, problem, config.w_static)
    dynamic = dynamic_loss(offset_bt, problem, config.w_dynamic, config.dynamic_strides)
    reg = regularisation_loss(offset_bt, problem.ray_dist_bt, problem.mask_bt, config.lambda_reg)
    w = problem.dyn_weight_b
    return (1.0 - w) * static + w * dynamic + reg
