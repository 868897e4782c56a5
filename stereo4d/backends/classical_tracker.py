"""A dense point tracker from classical parts: chained optical flow with occlusion reasoning.

No weights: the offline default of the tracking stage. Same call as the neural
backend: ``track(frames [T, H, W, 3] uint8, query_points_tyx [N, 3]) ->
(tracks_xy [N, T, 2] float32, visibles [N, T] bool)``.

How it works
------------
1. Dense optical flow (OpenCV DIS, or Farneback) is computed once per frame
   pair, forward ``t -> t+1`` and backward ``t+1 -> t``: ``2 (T - 1)`` flow
   fields whatever the number of queries.
2. Every point is chained from its query frame forward and backward in time:
   its position moves by the flow sampled bilinearly at its current position
   (``cv2.remap`` over all active points at once), so a sweep costs O(N) per
   frame and O(N T) in total.
3. Occlusion by forward-backward consistency: a step ``p -> p + f(p)`` is
   trusted when the flow of the other direction at ``p + f(p)`` brings it back,
   ``|f + b|^2 < fb_rel_tol (|f|^2 + |b|^2) + fb_abs_tol_px^2`` (Sundaram et
   al. 2010). A point that fails becomes occluded at the next frame.
4. Through an occlusion the position keeps moving with the last trusted
   velocity (the flow at the point now describes the occluder). It is
   re-admitted when, at its predicted position, the flow of the reverse
   direction is self-consistent and agrees with that velocity within
   ``readmit_tol_px`` (+ ``readmit_rel_tol`` of the speed).
5. Points outside the frame are invisible (and keep moving with their velocity,
   so they can come back).
6. Optional (``anchor_every``, on in the ``flow-anchor`` backend): each chained
   position is refined by pyramidal Lucas-Kanade from the point's query-frame
   patch, and kept when the match is close and good, which removes drift.
7. Optional (``skip_frames``, 4 in ``flow-anchor``): flow is also computed between keyframes
   k frames apart, and at each keyframe a point comes straight from its position k frames
   earlier by that flow (when consistent), so drift builds up over fewer steps.
8. Optional (``redetect_every``): at keyframes each point's query-frame patch is searched for
   by normalised cross-correlation over a wider window (``redetect_radius_px`` each way) and the
   point moves to the best match when that match is good, distinctive and clearly better than
   the chained position, so drift that Lucas-Kanade re-anchoring refused (a correction above
   ``anchor_max_shift_px``) does not stay in place for ever.
9. A query point without texture (``imageops.texture_map`` below ``min_query_texture``)
   has nothing to follow: on a blank patch both flows are zero and every test above
   passes trivially, so such a track is visible at its query frame only.

Coordinates: continuous pixels (``stereo4d.geometry``); the flow value of
array element ``[i, j]`` is the motion of the pixel centre ``(j + 0.5, i + 0.5)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from stereo4d.backends.dense_flow import DIS_PRESETS, FLOW_METHODS, compute_flow
from stereo4d.backends.flow_sampling import forward_backward_consistent, sample_field
from stereo4d.backends.imageops import MIN_TEXTURE_LEVELS_PER_PX, texture_at_points, to_gray
from stereo4d.backends.track_drift import anchor_to_query, keyframe_step, redetect_query
from stereo4d.backends.track_rigidity import rigidity_step

__all__ = [
    "REAL_FOOTAGE_SETTINGS",
    "ClassicalTracker",
    "ClassicalTrackerConfig",
    "build_classical_tracker",
    "build_flow_anchor_tracker",
    "sample_field",
]

@dataclass(frozen=True)
class ClassicalTrackerConfig:
    """Settings of the classical tracker.

    Attributes:
      flow_method: ``dis`` (OpenCV DIS optical flow) or ``farneback``.
      dis_preset: DIS preset, ``ultrafast`` / ``fast`` / ``medium``.
      dis_finest_scale: finest pyramid level DIS refines (0 = full resolution;
        the presets stop at 1 or 2, which blurs small motions).
      dis_patch_size, dis_patch_stride: DIS patch size and spacing (px).
      dis_refinement_iters: variational refinement iterations of DIS.
      fb_rel_tol, fb_abs_tol_px: forward-backward consistency test (see module doc).
      readmit_tol_px, readmit_rel_tol: how close the flow at an occluded point's
        predicted position must be to its last trusted velocity to re-admit it.
      accel_check: apply the velocity-change test below.
      accel_tol_px, accel_rel_tol: a visible point whose flow changes from its last
        velocity by more than ``accel_tol_px + accel_rel_tol |v|`` in one frame is
        taken as caught by an occluder (dragged along) and marked occluded.
      color_tol: a step is trusted only when the (blurred) RGB colour at the new
        position differs from the one at the old position by less than this (L2,
        0-255 levels).
      color_blur_px: Gaussian sigma of the blur applied before the colour test.
      lost_follow_flow: while a point is occluded, move it with the flow at its position when
        that flow passes the forward-backward test (else with its last velocity).
      anchor_every: every this many frames of a sweep (0 = never), each point's position is
        refined by pyramidal Lucas-Kanade from its query-frame patch (the template), starting
        at the chained position: removes the drift that chaining accumulates.
      anchor_window_px, anchor_levels: Lucas-Kanade window side and pyramid levels.
      anchor_max_error: a refinement is kept only when the mean absolute grey difference
        between template and match (0-255 levels) is below this ...
      anchor_max_shift_px: ... and it moves the point by less than this.
      skip_frames: keyframe spacings k (each >= 2; empty = off): flows between frames jk and
        (j+1)k are computed too, and at each keyframe a point's position comes from its position
        k frames earlier by that flow when it was visible there and the step passes the
        forward-backward and colour tests (the longest such k wins).
      redetect_every: every this many frames of a sweep (0 = never), each point is searched for
        by normalised cross-correlation of its query-frame patch (``redetect_patch_px`` side) over
        ``redetect_radius_px`` each way around its chained position, and moved to the best match
        when its correlation is at least ``redetect_min_ncc``, exceeds that of every match
        farther than ``redetect_exclusion_px`` by ``redetect_min_margin`` and that at the chained
        position by ``redetect_min_gain`` (``track_drift.redetect_query``).
      redetect_readmit: a re-detected point that was occluded becomes visible again.
      rigidity_neighbours: local rigidity prior (0 = off, ``track_rigidity``): each point's step is
        compared with the median step of this many nearest visible points within
        ``rigidity_radius_px``; a visible point off by more than ``rigidity_tol_px +
        rigidity_rel_tol |median|`` for ``rigidity_patience`` frames in a row moves by the median,
        and with ``rigidity_occluded`` an occluded point always does. Neighbours must have moved
        within ``rigidity_similar_px`` of the point's own previous step (the same mover).
      min_query_texture: local texture (grey levels per px, ``imageops.texture_map``) a query
        point needs to be tracked at all; below it the track is visible at its query only.
      progress: show a tqdm bar over frames.
    """

    flow_method: str = "dis"
    dis_preset: str = "medium"
    dis_finest_scale: int = 0
    dis_patch_size: int = 16
    dis_patch_stride: int = 8
    dis_refinement_iters: int = 5
    fb_rel_tol: float = 0.01
    fb_abs_tol_px: float = 0.75
    readmit_tol_px: float = 2.0
    readmit_rel_tol: float = 0.5
    accel_check: bool = True
    accel_tol_px: float = 2.0
    accel_rel_tol: float = 0.5
    color_tol: float = 30.0
    color_blur_px: float = 1.0
    lost_follow_flow: bool = False
    anchor_every: int = 0
    anchor_window_px: int = 11
    anchor_levels: int = 2
    anchor_max_error: float = 12.0
    anchor_max_shift_px: float = 8.0
    skip_frames: tuple[int, ...] = ()
    redetect_every: int = 0
    redetect_patch_px: int = 15
    redetect_radius_px: int = 16
    redetect_min_ncc: float = 0.8
    redetect_min_margin: float = 0.1
    redetect_exclusion_px: int = 3
    redetect_min_gain: float = 0.0
    redetect_readmit: bool = False
    rigidity_neighbours: int = 0
    rigidity_radius_px: float = 32.0
    rigidity_tol_px: float = 2.0
    rigidity_rel_tol: float = 0.5
    rigidity_patience: int = 2
    rigidity_similar_px: float = float("inf")
    rigidity_occluded: bool = False
    min_query_texture: float = MIN_TEXTURE_LEVELS_PER_PX
    progress: bool = True

    def __post_init__(self):
        if self.flow_method not in FLOW_METHODS:
            raise ValueError(f"flow_method must be one of {FLOW_METHODS}, got {self.flow_method!r}")
        if any(int(k) != k or k < 2 for k in self.skip_frames):
            raise ValueError(f"skip_frames must be integers >= 2, got {self.skip_frames!r}")
        if self.dis_preset not in DIS_PRESETS:
            raise ValueError(f"dis_preset must be one of {tuple(DIS_PRESETS)}, got {self.dis_preset!r}")

    def consistent(self, f: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Forward-backward test of flow steps f, b [M, 2] -> [M] bool with these tolerances."""
        return forward_backward_consistent(f, b, self.fb_rel_tol, self.fb_abs_tol_px)


def _inside(xy: np.ndarray, height: int, width: int) -> np.ndarray:
    return (xy[:, 0] >= 0) & (xy[:, 0] < width) & (xy[:, 1] >= 0) & (xy[:, 1] < height)


def _sweep(query_t: np.ndarray, query_xy: np.ndarray, step_flows: np.ndarray, check_flows: np.ndarray,
           images: np.ndarray, gray: np.ndarray, forward: bool, config: ClassicalTrackerConfig,
           tracks_xy: np.ndarray, visibles: np.ndarray, skip_flows: dict | None = None) -> None:
    """Chains all points away from their query frames in one time direction, in place.

    ``step_flows[k]`` / ``check_flows[k]`` move between frames k and k+1 in the
    direction of the sweep (forward: fwd/bwd; backward: bwd/fwd of pair k).
    ``images`` [T, H, W, 3] uint8 are the blurred frames of the colour test, ``gray``
    [T, H, W] uint8 the frames of the re-anchoring.
    """
    num_frames, height, width = tracks_xy.shape[1], *step_flows.shape[1:3]
    frames = range(num_frames - 1) if forward else range(num_frames - 1, 0, -1)
    position = query_xy.astype(np.float32).copy()
    velocity = np.zeros_like(position)
    color = np.zeros((len(query_t), 3), np.float32)  # colour when last seen
    tracked = np.ones(len(query_t), dtype=bool)  # visible at the current frame
    streak = np.zeros(len(query_t), np.int64)  # frames in a row off the neighbours' motion
    for t in frames:
        nxt = t + 1 if forward else t - 1
        pair = t if forward else t - 1
        active = np.flatnonzero(query_t <= t) if forward else np.flatnonzero(query_t >= t)
        if active.size == 0:
            continue
        fresh = query_t[active] == t
        p, v, seen, c = position[active], velocity[active], tracked[active], color[active]
        c[fresh] = sample_field(images[t], p[fresh])
        f = sample_field(step_flows[pair], p)
        b = sample_field(check_flows[pair], p + f)
        # A sudden change of velocity means the flow at p belongs to something else.
        speed = np.linalg.norm(v, axis=-1)
        steady = fresh | (not config.accel_check) | (
            np.linalg.norm(f - v, axis=-1) < config.accel_tol_px + config.accel_rel_tol * speed)
        follow = seen & steady
        if config.lost_follow_flow:
            follow |= ~seen & config.consistent(f, b)
        moved = np.where(follow[:, None], p + f, p + v)
        v = np.where(follow[:, None], f, v)
        new_color = sample_field(images[nxt], moved)
        same_color = np.linalg.norm(new_color - c, axis=-1) < config.color_tol
        ok = follow & config.consistent(f, b) & same_color
        # Re-admission of occluded points: at the predicted position the reverse flow must be
        # consistent and bring the point back along its own velocity, and the colour match.
        lost = np.flatnonzero(~seen)
        if lost.size:
            q = moved[lost]
            back = sample_field(check_flows[pair], q)
            again = sample_field(step_flows[pair], q + back)
            agree = np.linalg.norm(back + v[lost], axis=-1) < (
                config.readmit_tol_px + config.readmit_rel_tol * speed[lost])
            readmit = agree & config.consistent(back, again) & same_color[lost]
            ok[lost[readmit]] = True
            v[lost[readmit]] = -back[readmit]
        if skip_flows:
            moved = keyframe_step(skip_flows, forward, nxt, active, query_t, tracks_xy, visibles, images,
                               c, moved, config)
        if config.rigidity_neighbours:
            moved, streak[active], pulled = rigidity_step(p, moved, seen, streak[active], config,
                                                          velocity[active])
            v = np.where(pulled[:, None], moved - p, v)
        if config.redetect_every and (nxt % config.redetect_every == 0):
            moved, found = redetect_query(gray, nxt, query_t[active], query_xy[active], moved, config)
            ok |= found & (ok | config.redetect_readmit)
        if config.anchor_every and (nxt % config.anchor_every == 0):
            moved, anchored = anchor_to_query(gray, nxt, query_t[active], query_xy[active], moved, config)
            ok |= anchored
        ok &= _inside(moved, height, width)
        c = np.where(ok[:, None], new_color, c)
        position[active], velocity[active], tracked[active], color[active] = moved, v, ok, c
        tracks_xy[active, nxt] = moved
        visibles[active, nxt] = ok


def _tracks_at_queries(queries_tyx: np.ndarray, num_frames: int):
    """Tracks holding only their query points.

    Args:
      queries_tyx: [N, 3] (t, y, x) float.
    Returns:
      query_t [N] int, query_xy [N, 2] float32, tracks_xy [N, T, 2] float32 (zeros but at the
      query frames), visibles [N, T] bool (True only at the query frames).
    """
    query_t = np.round(queries_tyx[:, 0]).astype(np.int64)
    query_xy = queries_tyx[:, [2, 1]].astype(np.float32)
    tracks_xy = np.zeros((len(queries_tyx), num_frames, 2), np.float32)
    visibles = np.zeros((len(queries_tyx), num_frames), bool)
    rows = np.arange(len(queries_tyx))
    tracks_xy[rows, query_t] = query_xy
    visibles[rows, query_t] = True
    return query_t, query_xy, tracks_xy, visibles


class ClassicalTracker:
    """Dense point tracking by chained optical flow (see the module docstring)."""

    def __init__(self, config: ClassicalTrackerConfig = ClassicalTrackerConfig(), name: str = "dis-flow"):
        self.config, self.name = config, name

    def settings(self) -> dict:
        return {"backend": self.name, **self.config.__dict__}

    def track(self, frames_uint8: np.ndarray, query_points_tyx: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
        """Tracks queries through a video.

        Args:
          frames_uint8: [T, H, W, 3] uint8 RGB.
          query_points_tyx: [N, 3] (t, y, x), continuous pixel coordinates, integer t.
        Returns:
          tracks_xy [N, T, 2] float32 (x, y) px, visibles [N, T] bool.
        """
        frames = np.asarray(frames_uint8)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"expected uint8 frames [T, H, W, 3], got {frames.dtype} {frames.shape}")
        queries = np.asarray(query_points_tyx, dtype=np.float64).reshape(-1, 3)
        query_t = np.round(queries[:, 0]).astype(np.int64)
        if queries.size and (query_t.min() < 0 or query_t.max() >= frames.shape[0]):
            raise ValueError(f"query frame indices must lie in [0, {frames.shape[0] - 1}]")
        if frames.shape[0] < 2 or len(queries) == 0:
            return _tracks_at_queries(queries, frames.shape[0])[2:]
        forward, backward = compute_flow(frames, self.config)
        skip_flows = {k: compute_flow(frames, self.config, k) for k in self.config.skip_frames
                      if k < frames.shape[0]}
        return self.track_with_flows(frames, queries, forward, backward, skip_flows)

    def track_with_flows(self, frames_uint8: np.ndarray, query_points_tyx: np.ndarray,
                         forward: np.ndarray, backward: np.ndarray, skip_flows: dict | None = None
                         ) -> tuple[np.ndarray, np.ndarray]:
        """``track`` with precomputed flows (forward/backward [T-1, H, W, 2], see ``compute_flow``)."""
        frames = np.asarray(frames_uint8)
        queries = np.asarray(query_points_tyx, dtype=np.float64).reshape(-1, 3)
        query_t, query_xy, tracks_xy, visibles = _tracks_at_queries(queries, frames.shape[0])
        if frames.shape[0] < 2 or len(queries) == 0:
            return tracks_xy, visibles
        sigma = self.config.color_blur_px
        images = np.stack([cv2.GaussianBlur(f, (0, 0), sigma) if sigma > 0 else f for f in frames])
        gray = (np.stack([to_gray(f) for f in frames])
                if self.config.anchor_every or self.config.redetect_every else None)
        _sweep(query_t, query_xy, forward, backward, images, gray, True, self.config, tracks_xy, visibles,
               skip_flows)
        _sweep(query_t, query_xy, backward, forward, images, gray, False, self.config, tracks_xy,
               visibles, skip_flows)
        blank = texture_at_points(frames, queries) < self.config.min_query_texture
        visibles[blank] = False
        visibles[np.flatnonzero(blank), query_t[blank]] = True
        return tracks_xy, visibles


def build_classical_tracker(progress: bool = True, **options) -> ClassicalTracker:
    """Factory for the tracking registry (ignores neural-only options such as ``path``)."""
    fields = ClassicalTrackerConfig.__dataclass_fields__
    settings = {k: v for k, v in options.items() if k in fields and v is not None}
    return ClassicalTracker(ClassicalTrackerConfig(progress=progress, **settings))


#: Settings of the ``flow-anchor`` backend, chosen on train clips of real footage
#: (``benchmarks/bench_real_tracking.py``): occluded points follow forward-backward consistent
#: flow instead of coasting, no velocity-change test (people and animals accelerate), looser
#: forward-backward tolerances, and Lucas-Kanade re-anchoring to the query patch every frame
#: over a 15 px window, kept only when it moves the point by less than 2 px. Re-anchoring runs
#: every frame, so a true correction is small; a larger one is mostly the window (half
#: background on a thin limb or a small person) locking onto the background or a neighbour.
#: On 4 full-length train clips of people (drift builds up over 100-200 frames): <delta_avg
#: 0.738 (worst 0.665) with 2 px, against 0.724 (worst 0.577) with the former 8 px limit.
#: Keyframe chaining over 4 frames (``skip_frames``) cuts the drift far from the query: on 3
#: other full-length train clips (two crowds, water) 0.551 (worst 0.379) against 0.498 (0.290);
#: skips of 8, 16, 4+8 or 4+8+16 frames measured lower (0.519, 0.483, 0.538, 0.501).
#: Re-detection at every 4th frame (query patch searched 8 px each way; kept at NCC >= 0.8, 0.03
#: above any match 4+ px away and 0.05 above the chained position), on a fixed set of 8
#: full-length train clips (crowds, a runner, fish, costumes): 0.594 (worst 0.308) against
#: 0.557 (0.260) without; every 2nd frame with stricter thresholds (0.85 / 0.05 / 0.1) 0.581.
#: The local rigidity prior (``rigidity_neighbours``, ``track_rigidity``) is off: on 6 full-length
#: train clips of runners and crowds (README, "Real footage") its best setting (6 neighbours, a
#: point off their median step by 0.5 px + 0.1 of it moves by the median) scored 0.718 (worst
#: 0.425) against 0.714 (0.412) without, but lowered the synthetic test clip (0.899 against 0.911);
#: with neighbours that moved alike (1 px) and 2 frames of patience it keeps the synthetic figures
#: (0.911) and gains nothing on train (0.713, worst 0.410).
REAL_FOOTAGE_SETTINGS = {"lost_follow_flow": True, "accel_check": False, "fb_rel_tol": 0.03,
                         "fb_abs_tol_px": 1.5, "anchor_every": 1, "anchor_window_px": 15,
                         "anchor_max_shift_px": 2.0, "skip_frames": (4,), "redetect_every": 4,
                         "redetect_radius_px": 8, "redetect_min_ncc": 0.8, "redetect_min_margin": 0.03,
                         "redetect_min_gain": 0.05}


def build_flow_anchor_tracker(progress: bool = True, **options) -> ClassicalTracker:
    """Factory of the ``flow-anchor`` backend: the classical tracker with REAL_FOOTAGE_SETTINGS."""
    fields = ClassicalTrackerConfig.__dataclass_fields__
    settings = {**REAL_FOOTAGE_SETTINGS,
                **{k: v for k, v in options.items() if k in fields and v is not None}}
    return ClassicalTracker(ClassicalTrackerConfig(progress=progress, **settings), name="flow-anchor")
