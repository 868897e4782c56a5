"""Track optimisation (paper Eq. 5): slide each 3D track point along its camera ray.

Every track gets one offset d[t] (metres) per frame along the ray from that frame's camera centre
C[t] through its point P[t]: P'[t] = P[t] + d[t] * u[t], u[t] = (P[t] - C[t]) / |P[t] - C[t]|.
The offsets start at 0 and are fitted with Adam to

    loss = (1 - w) * static + w * dynamic + regulariser,            (per track)

  w          = sigmoid(p90(scene motion over valid frames) - 20 px)
  static     = w_static / (2 n^2) * sum_{i, j valid} |Q_i - Q_j|^2, Q = P' / mean_valid |P'|
               (ordered pairs, i == j included, n valid frames; computed exactly in O(T) as
               w_static / n * sum_i |Q_i - mean Q|^2)
  dynamic    = w_dynamic * sum_{s in (1, 3, 5)} sum_t [valid_s(t) * u[t] . D_s P'[t]]^2,
               D_s P'[t] = P'[t+s] - 2 P'[t] + P'[t-s] (indices clamped at the sequence ends,
               valid_s(t) = frames t, t-s, t+s all valid); affine in d, so evaluated from
               per-batch constants
  regulariser= lambda_reg * sum_{t valid} (1 / (r[t] + d[t]) - 1 / r[t])^2, r = |P - C|

"Valid" frames are the visible ones after erosion with a 5-frame window; other frames take no
part in the loss and come out as NaN.

Parity with the reference (stereo4d-code `track_optimization.optimize_tracks`): equal on valid
frames up to float32 round-off (see tests/test_track_opt_parity.py). Differences, on purpose:
- NaN input entries (invisible frames) are ignored; the reference leaks them into valid frames.
- A valid point exactly at the world origin gets a zero (not NaN) gradient from the norm term.
- Invalid frames are NaN in the output, as in the reference (there by accident of a NaN gradient,
  here by design: "no estimate").

Speed: the 100 Adam steps run inside one jitted `lax.fori_loop`; tracks are processed in small,
cache-sized batches of a fixed shape (the last one padded), so each (batch, frames) shape compiles
once per process, and `num_workers` host threads run batches on separate cores. With
``dynamic_edges="inside"`` (the pipeline's) the frame axis is also padded, with hidden frames, to
a bucket (`frame_bucket`: quarter-octave steps), so clips of nearby lengths share one compiled
shape; with JAX's persistent compilation cache (`stereo4d.jax_cache`) a process then loads the
executable from disk instead of compiling it. Hidden frames take no part in the loss, so the
padding changes results by float32 round-off only (the reference's "clamp" edges would see the
padding, so that mode keeps the clip's own length).
"""

from __future__ import annotations

import dataclasses
import functools
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from stereo4d.motion import IntrNormalized, scene_motion_displacement_px
from stereo4d.track_opt_loss import (  # noqa: F401 - re-exported: the loss's public names
    COUNT_EPS,
    NORM_EPS_M,
    RAY_EPS_M,
    DynamicStrideTerms,
    TrackProblem,
    dynamic_loss,
    make_problem,
    regularisation_loss,
    static_loss,
    track_losses,
)

MIN_BATCH = 8
"""Smallest padded batch: fewer tracks than this are padded up to it."""

MIN_FRAME_BUCKET = 16
"""Shortest padded frame axis (``dynamic_edges="inside"``): shorter clips are padded up to it."""
FRAME_BUCKET_STEPS_PER_OCTAVE = 4
"""Frame buckets between successive powers of two (4: at most 25 % padded frames)."""


@dataclasses.dataclass(frozen=True)
class TrackOptConfig:
    """Hyperparameters of the track optimisation (defaults = the reference's)."""

    w_static: float = 100.0
    """Weight of the static term (pairwise spread of the normalised track points)."""
    w_dynamic: float = 100.0
    """Weight of the dynamic term (squared along-ray second differences)."""
    lambda_reg: float = 0.1
    """Weight of the inverse-depth regulariser keeping points near their measured depth."""
    motion_threshold_px: float = 20.0
    """Scene motion (px) at which a track is half static, half dynamic: w = sigmoid(p - this)."""
    motion_percentile: float = 90.0
    """Percentile (0-100, linear interpolation) of a track's per-frame scene motion over its
    valid frames that decides the dynamic weight."""
    erosion_window: int = 5
    """A frame stays valid only if all frames in this window around it (clipped at the sequence
    ends) are visible; centred for odd windows (t - w//2 .. t + (w-1) - w//2)."""
    dynamic_strides: tuple[int, ...] = (1, 3, 5)
    """Frame strides of the second differences in the dynamic term."""
    dynamic_edges: str = "clamp"
    """How the dynamic term treats second differences that reach past the clip's ends:
    ``"clamp"`` (the reference) repeats the first / last frame, so a track moving at constant
    velocity looks like it accelerates there and the optimiser drags it along its rays;
    ``"inside"`` drops those terms (only frames t with t - s >= 0 and t + s < T count). The
    pipeline stage uses ``"inside"`` (see ``stages.optimization``); parity uses ``"clamp"``."""
    num_steps: int = 100
    """Adam steps (from d = 0)."""
    learning_rate: float = 0.05
    """Adam learning rate (metres per step, roughly)."""
    adam_b1: float = 0.9
    """Adam first-moment decay (optax default)."""
    adam_b2: float = 0.999
    """Adam second-moment decay (optax default)."""
    adam_eps: float = 1e-8
    """Adam denominator guard (optax default)."""
    batch_size: int = 128
    """Tracks optimised together in one compiled call. Small batches keep the Adam loop's working
    set (~ batch * frames * 150 bytes) in the CPU cache: 128 is fastest at 64 frames on CPU
    (see benchmarks/bench_track_opt.py); use fewer for much longer clips."""
    trace_frames: int = 16
    """Past frames compared with the current one when measuring scene motion."""
    num_workers: int = 2
    """Host threads dispatching batches concurrently (XLA runs each batch's loop on one core, so
    this is the number of cores used). Results do not depend on it."""


class TrackOptResult(NamedTuple):
    """Output of `optimize_tracks`."""

    track3d: np.ndarray
    """[N, T, 3] float32 optimised world points (metres); NaN where `visible` is False."""
    visible: np.ndarray
    """[N, T] bool, input visibility eroded with `erosion_window` (the frames that were used)."""
    motion_px: np.ndarray
    """[N, T] float32 scene-motion displacement of the input tracks (input visibility)."""


# ----------------------------------------------------------------------------- host-side helpers


def erode_visibility(visible: np.ndarray, window: int) -> np.ndarray:
    """[N, T] bool -> [N, T] bool: True where every frame of the window around t is visible.

    The window covers t - window//2 .. t + window - 1 - window//2, clipped to the sequence (frames
    beyond the ends count as visible, as in the reference's zero-padded max filter).
    """
    visible = np.asarray(visible, dtype=bool)
    num_tracks, num_frames = visible.shape
    before = window // 2
    after = window - before - 1
    hidden_cum = np.zeros((num_tracks, num_frames + 1), dtype=np.int32)
    np.cumsum(~visible, axis=1, out=hidden_cum[:, 1:])
    frames = np.arange(num_frames)
    lo = np.clip(frames - before, 0, num_frames)
    hi = np.clip(frames + after + 1, 0, num_frames)
    return (hidden_cum[:, hi] - hidden_cum[:, lo]) == 0


def masked_percentile(values: np.ndarray, mask: np.ndarray, q: float) -> np.ndarray:
    """Per-row q-th percentile (linear interpolation) of `values` [N, T] over `mask` [N, T].

    Returns [N] float64; NaN for rows with no masked-in entry.
    """
    filled = np.where(mask, np.asarray(values, dtype=np.float64), np.inf)
    ordered = np.sort(filled, axis=1)
    count = mask.sum(axis=1)
    position = q / 100.0 * np.maximum(count - 1, 0)
    lo = np.floor(position).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(count - 1, 0))
    frac = position - lo
    rows = np.arange(len(ordered))
    v_lo = ordered[rows, lo]
    v_hi = ordered[rows, hi]
    with np.errstate(invalid="ignore"):
        out = v_lo + (v_hi - v_lo) * frac
        out = np.where(frac == 0, v_lo, out)
    return np.where(count > 0, out, np.nan)


def camera_centres(world_to_camera: np.ndarray) -> np.ndarray:
    """[T, 3, 4] world-to-camera [R | t] -> [T, 3] float64 camera centres -R^T t (metres)."""
    extr = np.asarray(world_to_camera, dtype=np.float64)
    return -np.einsum("tji,tj->ti", extr[:, :, :3], extr[:, :, 3])


@functools.partial(jax.jit, static_argnames=("config",))
def _optimize_batch(
    points_cbt: jnp.ndarray,
    centres_c1t: jnp.ndarray,
    mask_bt: jnp.ndarray,
    dyn_weight_b: jnp.ndarray,
    config: TrackOptConfig,
) -> jnp.ndarray:
    """All Adam steps for one batch in one compiled call -> [3, B, T] points, NaN off-mask."""
    problem = make_problem(points_cbt, centres_c1t, mask_bt, dyn_weight_b, config.dynamic_strides,
                           config.dynamic_edges)
    optimizer = optax.adam(
        config.learning_rate, b1=config.adam_b1, b2=config.adam_b2, eps=config.adam_eps
    )
    offset0 = jnp.zeros_like(mask_bt)
    # Tracks are independent, so the gradient of the summed loss is each track's own gradient.
    grad_fn = jax.grad(lambda d: jnp.sum(track_losses(d, problem, config)))

    def step(_, carry):
        offset, opt_state = carry
        updates, opt_state = optimizer.update(grad_fn(offset), opt_state)
        return optax.apply_updates(offset, updates), opt_state

    offset, _ = jax.lax.fori_loop(0, config.num_steps, step, (offset0, optimizer.init(offset0)))
    adjusted = points_cbt + problem.ray_unit_cbt * offset[None]
    return jnp.where(mask_bt[None] > 0, adjusted, jnp.nan)


_HOST_ONLY_FIELDS = (
    "motion_threshold_px",
    "motion_percentile",
    "erosion_window",
    "batch_size",
    "trace_frames",
    "num_workers",
)
"""Config fields the compiled loop does not read: reset to defaults in its cache key."""


def _loop_config(config: TrackOptConfig) -> TrackOptConfig:
    """`config` with host-only fields at their defaults, so they do not trigger recompiles."""
    defaults = TrackOptConfig()
    return dataclasses.replace(config, **{f: getattr(defaults, f) for f in _HOST_ONLY_FIELDS})


def frame_bucket(num_frames: int) -> int:
    """Padded length of the frame axis: at least MIN_FRAME_BUCKET, else ``num_frames`` rounded up
    to a multiple of 2^(floor(log2(num_frames - 1)) - log2(FRAME_BUCKET_STEPS_PER_OCTAVE)),
    e.g. 48 -> 48, 49 -> 56, 65 -> 80, 200 -> 224 (at most 25 % more frames)."""
    if num_frames <= MIN_FRAME_BUCKET:
        return MIN_FRAME_BUCKET
    octave = (num_frames - 1).bit_length() - 1  # 2^octave < num_frames <= 2^(octave + 1)
    step = max(1, (1 << octave) // FRAME_BUCKET_STEPS_PER_OCTAVE)
    return -(-num_frames // step) * step


def _padded_batch_size(num_tracks: int, batch_size: int) -> int:
    """Batch shape for `num_tracks` tracks: batch_size, or for fewer tracks the smallest power of
    two (at least MIN_BATCH) that holds them, capped at batch_size."""
    if num_tracks >= batch_size:
        return batch_size
    return min(batch_size, max(MIN_BATCH, 1 << (num_tracks - 1).bit_length()))


# ------------------------------------------------------------------------------------ driver


def optimize_tracks(
    track3d_world: np.ndarray,
    visible: np.ndarray,
    world_to_camera: np.ndarray,
    intr_normalized: IntrNormalized,
    imh: int,
    imw: int,
    config: TrackOptConfig = TrackOptConfig(),
) -> TrackOptResult:
    """Optimise 3D tracks along their camera rays (Eq. 5).

    Args:
      track3d_world: [N, T, 3] float world points in metres; entries on invisible frames are
        ignored (may be NaN).
      visible: [N, T] bool visibility.
      world_to_camera: [T, 3, 4] float world-to-camera [R | t] per frame.
      intr_normalized: (fx, fy, cx, cy), normalised intrinsics (for the scene-motion measure).
      imh, imw: image size in pixels.
      config: hyperparameters.

    Returns:
      TrackOptResult(track3d [N, T, 3] float32 with NaN off the eroded mask, visible [N, T] bool
      eroded, motion_px [N, T] float32).
    """
    track3d_world = np.asarray(track3d_world)
    visible = np.asarray(visible, dtype=bool)
    num_tracks, num_frames = visible.shape
    motion_px = scene_motion_displacement_px(
        track3d_world, visible, world_to_camera, intr_normalized, imh, imw, config.trace_frames
    )
    mask = erode_visibility(visible, config.erosion_window)
    out = np.full((num_tracks, num_frames, 3), np.nan, dtype=np.float32)
    if num_tracks == 0 or not mask.any():
        return TrackOptResult(out, mask, motion_px)

    motion_level = masked_percentile(motion_px, mask, config.motion_percentile)
    motion_level = np.nan_to_num(motion_level, nan=0.0)  # tracks without valid frames: unused
    dyn_weight = (1.0 / (1.0 + np.exp(-(motion_level - config.motion_threshold_px)))).astype(
        np.float32
    )
    centres = camera_centres(world_to_camera).astype(np.float32)
    points = np.where(mask[..., None], track3d_world, 0.0).astype(np.float32)
    frames_padded = frame_bucket(num_frames) if config.dynamic_edges == "inside" else num_frames
    extra_frames = frames_padded - num_frames  # hidden: mask 0, points 0, last camera repeated
    centres_c1t = jnp.asarray(np.pad(centres, ((0, extra_frames), (0, 0)), mode="edge").T[:, None])

    batch = _padded_batch_size(num_tracks, config.batch_size)
    loop_config = _loop_config(config)

    def run_batch(start: int) -> None:
        stop = min(start + batch, num_tracks)
        pad = batch - (stop - start)
        points_cbt = np.pad(points[start:stop].transpose(2, 0, 1),
                            ((0, 0), (0, pad), (0, extra_frames)))
        mask_bt = np.pad(mask[start:stop], ((0, pad), (0, extra_frames))).astype(np.float32)
        weight_b = np.pad(dyn_weight[start:stop], (0, pad))
        result = _optimize_batch(points_cbt, centres_c1t, mask_bt, weight_b, loop_config)
        out[start:stop] = np.asarray(result)[:, : stop - start, :num_frames].transpose(1, 2, 0)

    starts = list(range(0, num_tracks, batch))
    run_batch(starts[0])  # compiles (once per shape and config) before the threads start
    if len(starts) > 1:
        with ThreadPoolExecutor(max_workers=max(1, config.num_workers)) as pool:
            list(pool.map(run_batch, starts[1:]))
    return TrackOptResult(out, mask, motion_px)
