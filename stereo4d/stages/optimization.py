"""Stage 5: track optimisation (paper Eq. 5), the released-format export and the stage's videos.

Reads (``ClipPaths``): ``<vid>-tapir_remove_drift_tracks.pkl`` (filtered 2D tracks),
``<vid>-stereo.npz`` or ``<vid>-flows_stereo.pkl`` (depth, with floater removal as the
reference's track optimisation),
the left rectified video (track colours, background of the 3D view) and the npz cameras
(``hfov_deg``, principal point at the centre). Writes into ``<output_folder>/<vid>/``:
- ``<vid>-optimized_tracks.pkl``: the reference's dict (``export.optimized_tracks_record``);
- ``<vid>.npz``: the optimised tracks in the released format (``export.export_released_npz``);
- ``<vid>-raw_depth.mp4``, ``<vid>-optimized_depth.mp4``: stereo depth, and the depth of the
  optimised tracks splatted into each frame (``viz.depth``);
- ``<vid>-dyna_{2dtrack,3dtrack,3dtrack_concated}-{original,optimized}.mp4``: the moving tracks
  before and after optimisation, as scene-motion trails over the video, as a 3D view with the
  camera, and both side by side (``viz.scene3d``);
- ``<vid>-optimization.json``: provenance, written last (the completion marker).

With a ground-truth file (synthetic clip, ``gt_folder``) the 3D tracks before and after the
optimisation are also scored against the true tracks of the same query points (APD3D, mean
error, jitter; ``metrics.tracks3d.score_before_after``) and the figures go into the summary and provenance.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stereo4d.export import export_released_npz, optimized_tracks_record
from stereo4d.geometry import PinholeCamera
from stereo4d.io import (
    ClipPaths,
    InputError,
    load_dataset_npz,
    load_stereo_flows,
    save_pickle,
)
from stereo4d.io.stage_files import OPTIMIZATION_TRACK_VIDEO_KINDS, optimization_track_video
from stereo4d.jax_cache import enable_compilation_cache
from stereo4d.metrics.tracks3d import score_before_after
from stereo4d.motion import scene_motion_displacement_px
from stereo4d.stages.common import (
    Timer,
    check_frame_counts,
    require_inputs,
    stage_output_paths,
    start_stage,
    write_provenance,
)
from stereo4d.stages.health import optimization_health
from stereo4d.track_3d import optimize_and_fill
from stereo4d.track_cut import SurfaceCutSettings
from stereo4d.track_fill import FillSettings
from stereo4d.track_opt import TrackOptConfig
from stereo4d.tracks import Tracks2D, lift_tracks_to_3d, sample_colors, select_dynamic_tracks
from stereo4d.videoio import VideoWriter, read_video
from stereo4d.viz.depth import colorize_depth, depth_from_tracks, inverse_depth_range
from stereo4d.viz.scene3d import SceneView, render_scene3d, render_scene_motion_2d
from stereo4d.viz.trails import TRAIL_FRAMES, rainbow_colors

__all__ = ["STAGE_NAME", "OptimizationConfig", "check_finite_output", "optimize_and_fill",
           "output_paths", "run"]

STAGE_NAME = "optimization"
"""Provenance name: ``<vid>-optimization.json``."""
DYNAMIC_THRESHOLD_PX = 16.0
"""A track is shown in the dyna videos when its scene motion exceeds this in some frame."""
MAX_DISPLAY_TRACKS = 256
"""At most this many moving tracks are drawn in the dyna videos (the reference's 256)."""
MAX_STATIC_REPROJECTION_PX = 4.0
"""A static track's snapped or filled point is dropped from the frames where it projects farther
than this from the 2D track (``track_fill.drop_off_track_static_frames``). Chosen on the
suite's tuning clips and a scratch long tuning clip, see README ("What changed")."""
FILL_MAX_EXTRAPOLATION_FRAMES = 8
"""Gap filling extends a moving track's depth at most this many frames before its first or
after its last optimised frame. Chosen on the suite's tuning clips and a scratch long tuning
clip, see README ("What changed")."""
SMOOTH_MOVING = 80.0
"""Smoothness (1 / m^2) of ``track_fill.smooth_moving_tracks``: the moving tracks' distances along
their rays are smoothed over their optimised, seeded and filled frames together. Chosen on the
suite's tuning clips and a scratch long tuning clip, see README ("What changed")."""
SMOOTH_LATERAL = 0.3
"""Smoothness (1 / m^2) of ``track_smooth.smooth_moving_lateral``, run after the along-ray
smoothing: the moving tracks' points are moved across their rays (the 2D tracker's noise) to a
smoother path. Chosen on the suite's tuning clips and two scratch long clips, see README
("What changed")."""
SURFACE_CUT_LOG_DEPTH = 0.3
"""``track_cut``: a track is cut where its stereo depth leaves its query's surface by more than
this log ratio for good. Chosen on the tuning clips and two scratch long clips (README)."""
SURFACE_CUT_ANCHOR_FRAMES = 20
"""``track_cut``: a side of the query frame whose first valid depth is farther than this (frames)
is cut whole. Chosen as ``SURFACE_CUT_LOG_DEPTH``."""
FILL_MIN_LIFTED_FRAMES = 3
"""Gap filling also fills tracks without an optimised frame that have at least this many frames
of valid depth, from their lifted points. Chosen on the suite's tuning clips (on t1: 3D coverage
0.684 -> 0.774, APD3D 0.446 -> 0.489, APD3D on covered points 0.653 -> 0.631; 1 frame covers
more, 0.812, at a larger mean error)."""


@dataclass(frozen=True)
class OptimizationConfig:
    """Settings of ``track_optimization.py``.

    Attributes:
      vid: ``<video_id>_<timestamp_us>``.
      npz_folder, output_folder, gt_folder: as in ``ClipPaths``; ``gt_folder`` None = no scoring.
      hfov_deg: horizontal FoV of the rectified views (degrees).
      track_opt: hyperparameters of Eq. 5. The reference's values, except that the dynamic term
        drops second differences reaching past the clip's ends (``dynamic_edges="inside"``):
        the reference's edge clamping drags moving tracks along their rays (on the synthetic
        clip it lowers APD3D; see README). ``dynamic_edges="clamp"`` reproduces the reference.
      dynamic_threshold_px, max_display_tracks, display_seed, trail_frames: which tracks the
        dyna videos show and how long their trails are.
      write_videos: write the visualisations (the pickle and npz are always written).
      jax_cache_dir: JAX's persistent compilation cache folder; None = ``$STEREO4D_JAX_CACHE``
        or ``~/.cache/stereo4d/jax``; ``"none"`` = off (see ``stereo4d.jax_cache``).
      fill_gaps: fill the frames where a track is visible in 2D but the optimisation had no
        3D point (stereo holes, floaters, erosion) from its optimised frames
        (``stereo4d.track_fill``; not in the reference, False reproduces it).
      fill_min_lifted_frames: with ``fill_gaps``, a track with no optimised frame but at least
        this many frames of valid stereo depth is filled from its lifted points (0: left
        empty, as before; ``track_fill.seed_from_lifted``).
      fill_max_extrapolation_frames: with ``fill_gaps``, a moving track's frames more than this
        many frames before its first or after its last optimised frame stay empty (None: all
        filled; ``track_fill.fill_track_gaps``).
      snap_static: a static track (the optimisation's rule: dynamic weight < 0.5) takes its
        mean optimised point in every frame instead of one point per frame on that frame's
        ray, which keeps the 2D tracks' sub-pixel noise as lateral jitter
        (``track_fill.snap_static_tracks``; not in the reference, False reproduces it).
      max_static_reprojection_px: with ``snap_static`` or ``fill_gaps``, a static track's point
        is dropped from the frames where it projects farther than this (px) from the 2D track
        (an occlusion or drift the tracker missed; ``track_fill.drop_off_track_static_frames``);
        0 = keep every frame.
      smooth_moving: a moving track's points slide along their rays to a smooth path over all
        its frames, optimised, seeded and filled (``track_fill.smooth_moving_tracks``; the
        optimisation smooths each run of optimised frames on its own, gap filling joins them
        with kinks); 0 = off, as the reference.
      smooth_lateral: with ``smooth_moving``, the moving tracks' points then move across their
        rays (their distance along each ray kept) to a smoother path: the 2D tracker's noise
        (``track_smooth.smooth_moving_lateral``); 0 = off.
      surface_cut_log_depth, surface_cut_anchor_frames: with ``snap_static`` or ``fill_gaps``,
        each track is cut, before the optimisation, where its stereo depth jumps off its
        query's surface for good, and on a side of the query with no valid depth within
        ``surface_cut_anchor_frames`` (``stereo4d.track_cut``); 0 / None = that rule off.
    """

    vid: str
    npz_folder: str = "stereo4d_dataset/npz"
    output_folder: str = "stereo4d_dataset/processed"
    gt_folder: str | None = None
    hfov_deg: float = 60.0
    track_opt: TrackOptConfig = field(default_factory=lambda: TrackOptConfig(dynamic_edges="inside"))
    dynamic_threshold_px: float = DYNAMIC_THRESHOLD_PX
    max_display_tracks: int = MAX_DISPLAY_TRACKS
    display_seed: int = 0
    trail_frames: int = TRAIL_FRAMES
    write_videos: bool = True
    jax_cache_dir: str | None = None
    fill_gaps: bool = True
    fill_min_lifted_frames: int = FILL_MIN_LIFTED_FRAMES
    fill_max_extrapolation_frames: int | None = FILL_MAX_EXTRAPOLATION_FRAMES
    snap_static: bool = True
    max_static_reprojection_px: float = MAX_STATIC_REPROJECTION_PX
    smooth_moving: float = SMOOTH_MOVING
    smooth_lateral: float = SMOOTH_LATERAL
    surface_cut_log_depth: float = SURFACE_CUT_LOG_DEPTH
    surface_cut_anchor_frames: int | None = SURFACE_CUT_ANCHOR_FRAMES

    @property
    def fill_settings(self) -> FillSettings:
        cut = None
        if self.surface_cut_log_depth > 0 or self.surface_cut_anchor_frames is not None:
            cut = SurfaceCutSettings(max_log_depth_jump=self.surface_cut_log_depth or np.inf,
                                     max_anchor_frames=self.surface_cut_anchor_frames)
        return FillSettings(fill_gaps=self.fill_gaps, min_lifted_frames=self.fill_min_lifted_frames,
                            max_extrapolation_frames=self.fill_max_extrapolation_frames,
                            snap_static=self.snap_static,
                            max_static_reprojection_px=self.max_static_reprojection_px,
                            smooth_moving=self.smooth_moving,
                            smooth_lateral=self.smooth_lateral, surface_cut=cut)

    @property
    def paths(self) -> ClipPaths:
        gt = {"gt_folder": self.gt_folder} if self.gt_folder else {}
        return ClipPaths(self.vid, npz_folder=self.npz_folder, output_folder=self.output_folder, **gt)


# ------------------------------------------------------------------------------------ pieces


def _load_oracle(paths: ClipPaths, imh: int, imw: int, hfov_deg: float):
    """The synthetic clip's ground-truth oracle, checked to describe the clip's view."""
    from stereo4d.synthetic import SyntheticOracle

    oracle = SyntheticOracle.from_gt_file(paths.gt)
    size, gt_hfov = oracle.config.gt_size_px, oracle.config.gt_hfov_deg
    if (size, size, gt_hfov) != (imh, imw, hfov_deg):
        raise InputError(f"{paths.gt}: ground truth describes a {size}x{size} px, {gt_hfov} deg "
                         f"view; the clip's is {imw}x{imh} px, {hfov_deg} deg")
    return oracle


def _load_inputs(paths: ClipPaths):
    """All inputs, checked for presence and consistency before anything is written."""
    require_inputs([paths.filtered_tracks, paths.stereo_output, paths.npz, paths.left_video])
    meta = load_dataset_npz(paths.npz, required=("name", "video_id", "timestamps", "camera2world",
                                                 "rectified2rig", "fov_bounds"))
    tracks = Tracks2D.load(paths.filtered_tracks)
    flows = load_stereo_flows(paths.stereo_output)
    video = read_video(paths.left_video)
    check_frame_counts(paths.vid, {
        paths.left_video.name: len(video), paths.stereo_output.name: len(flows),
        f"{paths.npz.name} timestamps": len(meta["timestamps"]),
        paths.filtered_tracks.name: tracks.num_frames if tracks.num_tracks else len(video)})
    if tuple(np.shape(flows[0]["fwd"])[:2]) != video.shape[1:3]:
        raise InputError(f"{paths.stereo_output}: flow size {np.shape(flows[0]['fwd'])[:2]} "
                         f"differs from the video's {video.shape[1:3]}")
    if tracks.num_tracks == 0:  # an empty pickle may not know the clip length
        tracks = Tracks2D(np.zeros((0, len(video), 2)), np.zeros((0, len(video)), bool),
                          np.zeros((0, 3)))
    return meta, tracks, flows, video


def check_finite_output(paths: ClipPaths, meta: dict, track3d: np.ndarray,
                        visible: np.ndarray) -> None:
    """Refuses (InputError, nothing written) output that is not finite where it claims to be.

    Args:
      meta: the clip's npz (``camera2world`` [T, 3, 4] is copied into the export).
      track3d: [N, T, 3] optimised points; visible: [N, T] bool, frames the optimisation kept.
    """
    if not np.all(np.isfinite(meta["camera2world"])):
        raise InputError(f"refusing to write {paths.export_npz}: camera2world is not finite")
    bad = np.asarray(visible, bool) & ~np.all(np.isfinite(track3d), axis=-1)
    if bad.any():
        raise InputError(
            f"refusing to write {paths.optimized_tracks.name} and {paths.export_npz.name}: "
            f"{int(bad.sum())} of {int(np.sum(visible))} optimised points marked visible are not "
            f"finite (first: track {int(np.argmax(bad.any(axis=1)))}); check the inputs "
            f"({paths.stereo_output.name}, {paths.filtered_tracks.name}, {paths.npz.name})")


def _write_depth_video(path: Path, depth_m: np.ndarray) -> None:
    inv_range = inverse_depth_range(depth_m)
    with VideoWriter(path) as writer:
        for depth in depth_m:
            writer.append(colorize_depth(depth, inv_range))


def _write_track_videos(paths: ClipPaths, tag: str, config: OptimizationConfig,
                        track3d: np.ndarray, visible: np.ndarray, motion_px: np.ndarray,
                        cameras: PinholeCamera, depth_m: np.ndarray, video: np.ndarray) -> int:
    """The three dyna videos of one version (``original`` / ``optimized``). Returns tracks shown."""
    shown = select_dynamic_tracks(track3d, visible, motion_px, config.dynamic_threshold_px,
                                  config.max_display_tracks, config.display_seed)
    colors = rainbow_colors(len(shown))
    tracks, vis = track3d[shown], visible[shown]
    side = video.shape[1]
    view = SceneView.fit(tracks[vis & np.all(np.isfinite(tracks), axis=-1)], side, side)
    flat = render_scene_motion_2d(video, tracks, vis, colors, cameras, config.trail_frames)
    views = render_scene3d(tracks, vis, colors, cameras, depth_m, video, config.hfov_deg, view,
                           config.trail_frames)
    # One writer per kind, in OPTIMIZATION_TRACK_VIDEO_KINDS order: 2D trails, 3D, both side by side.
    w2d, w3d, wcat = (VideoWriter(optimization_track_video(paths, kind, tag))
                      for kind in OPTIMIZATION_TRACK_VIDEO_KINDS)
    with w2d, w3d, wcat:
        for frame_2d, frame_3d in zip(flat, views):
            w2d.append(frame_2d)
            w3d.append(frame_3d)
            wcat.append(np.concatenate([frame_2d, frame_3d], axis=1))
    return len(shown)


# ------------------------------------------------------------------------------------- run

def output_paths(paths: ClipPaths) -> list[Path]:
    """Every file this stage may write (its stale temporaries are removed when it starts)."""
    return stage_output_paths(paths, STAGE_NAME)


def run(config: OptimizationConfig) -> dict:
    """Runs the stage. Returns a summary (counts, accuracy if scored, timings, outputs)."""
    from stereo4d.depth import depth_maps_from_flows

    paths = config.paths
    start_stage(paths, STAGE_NAME)
    timer = Timer()
    jax_cache = enable_compilation_cache(config.jax_cache_dir)  # before anything compiles
    with timer("load"):
        meta, tracks, flows, video = _load_inputs(paths)
    num_frames, imh, imw = video.shape[:3]
    oracle = _load_oracle(paths, imh, imw, config.hfov_deg) if config.gt_folder else None
    cameras = PinholeCamera.from_hfov(meta["extrs_rectified"], config.hfov_deg, aspect_hw=imh / imw)
    intr = (cameras.fx, cameras.fy, cameras.cx, cameras.cy)

    with timer("depth"):
        depth_m = depth_maps_from_flows(flows, config.hfov_deg, remove_floaters=True)
        del flows
    with timer("lift"):
        lifted, lifted_visible = lift_tracks_to_3d(tracks, depth_m, cameras)
        colors = sample_colors(video, tracks.query_points_tyx)
    with timer("optimize"):
        result, optimized, optimized_visible = optimize_and_fill(
            lifted, lifted_visible, tracks, cameras, imh, imw, config.track_opt,
            config.fill_settings)
    optimised_finite = result.visible & np.all(np.isfinite(result.track3d), axis=-1)
    health = optimization_health(lifted_visible, optimized, optimized_visible, optimised_finite)
    health.enforce(str(paths.filtered_tracks.name))
    check_finite_output(paths, meta, optimized, optimized_visible)
    paths.provenance(STAGE_NAME).unlink(missing_ok=True)  # outputs change from here on
    with timer("write"):
        save_pickle(optimized_tracks_record(cameras, optimized, optimized_visible, colors, imh, imw),
                    paths.optimized_tracks)
        export_released_npz(paths.export_npz, meta, optimized, optimized_visible)

    shown = {}
    if config.write_videos:
        with timer("videos"):
            depth_optimized_m = depth_from_tracks(optimized, optimized_visible, cameras, imh, imw)
            _write_depth_video(paths.raw_depth_video, depth_m)
            _write_depth_video(paths.optimized_depth_video, depth_optimized_m)
            motion_after = scene_motion_displacement_px(
                optimized, optimized_visible, meta["extrs_rectified"], intr, imh, imw,
                config.track_opt.trace_frames)
            shown["original"] = _write_track_videos(paths, "original", config, lifted,
                                                    lifted_visible, result.motion_px, cameras,
                                                    depth_m, video)
            shown["optimized"] = _write_track_videos(
                paths, "optimized", config, optimized, optimized_visible, motion_after, cameras,
                depth_optimized_m, video)

    accuracy = None
    if oracle is not None:
        with timer("score"):
            truth = oracle.tracks_for_queries(tracks.query_points_tyx)
            accuracy = score_before_after(truth, lifted, lifted_visible, optimized, optimized_visible,
                                 config.hfov_deg)
    summary = {
        "num_frames": num_frames,
        "num_tracks": tracks.num_tracks,
        "num_points_lifted": int(lifted_visible.sum()),
        "num_points_optimized": int(optimized_visible.sum()),
        "num_tracks_shown": shown,
        "accuracy": accuracy,
        "jax_cache_dir": str(jax_cache) if jax_cache else None,
        "outputs": {"tracks": str(paths.optimized_tracks), "npz": str(paths.export_npz)},
        "timings_s": {**timer.seconds, "total": timer.total_s},
    }
    write_provenance(paths.provenance(STAGE_NAME), stage=STAGE_NAME, backend="jax-adam",
                     settings=dataclasses.asdict(config), timings_s=summary["timings_s"],
                     num_tracks=tracks.num_tracks, accuracy=accuracy, **health.record())
    _print_summary(summary, paths)
    return summary


def _print_summary(summary: dict, paths: ClipPaths) -> None:
    t = summary["timings_s"]
    print(f"optimization: {summary['num_tracks']} tracks, {summary['num_points_lifted']} points "
          f"lifted, {summary['num_points_optimized']} out (optimise {t['optimize']:.1f} s, videos "
          f"{t.get('videos', 0.0):.1f} s, total {t['total']:.1f} s) -> {paths.clip_dir}")
    if summary["accuracy"]:
        for name, s in summary["accuracy"].items():
            print(f"  {name:>18}: APD3D {s['apd3d']:.3f}  mean error {s['mean_error_m']:.3f} m  "
                  f"jitter {s['jitter_m']:.4f} m  coverage {s['coverage']:.3f}")
