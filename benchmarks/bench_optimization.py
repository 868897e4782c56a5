"""Benchmark of the track optimisation stage: 3D accuracy before/after Eq. 5, and video speed.

Accuracy: APD3D (thresholds 1, 2, 4, 8, 16 px at 256 x 256), mean 3D error and jitter of the
lifted tracks and of the optimised tracks against the true tracks of the same query points.
- On a synthetic clip processed up to filtering (``--vid`` with ``--npz_folder``,
  ``--output_folder``, ``--gt_folder``): the stage's own depth, lifting and optimisation, the
  truth from ``SyntheticOracle`` (slow: it ray-casts every query).
- Always: the parity golden scene (tests/parity/track_opt_golden.npz, noisy lifted tracks with
  known truth).
"before" scores the lifted tracks on the frames the optimisation keeps (eroded visibility), so
both rows score the same points; "before (all)" scores them on their own visibility. On the
clip, "(no clamp)" rows are a diagnostic of Eq. 5 without its edge-clamped terms
(``_without_edge_clamping``).

Speed: time per frame of our renderers (3D view with background cloud, frustum, path and 256
trails; scene-motion trails over the video; depth colouring) at 512 x 512, and of one
matplotlib figure per frame with the same content (what the reference does), on a few frames.

Usage: .venv/bin/python benchmarks/bench_optimization.py [--vid V --npz_folder N
       --output_folder O --gt_folder G] [--mpl_frames 2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from stereo4d.geometry import PinholeCamera
from stereo4d.metrics.tracks3d import score_against_truth
from stereo4d.stages.optimization import OptimizationConfig, _load_inputs
from stereo4d.track_opt import TrackOptConfig, optimize_tracks
from stereo4d.viz.depth import colorize_depth, inverse_depth_range
from stereo4d.viz.scene3d import render_scene3d, render_scene_motion_2d
from stereo4d.viz.trails import rainbow_colors

HFOV_DEG = 60.0
GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "parity" / "track_opt_golden.npz"
SIZE_PX = 512
NUM_DISPLAY_TRACKS = 256
ROW = "{:<28} APD3D {:.3f}  mean error {:.3f} m  jitter {:.4f} m  coverage {:.3f}"


def _print_scores(title: str, rows: dict) -> None:
    print(f"\n{title}")
    for name, s in rows.items():
        print(ROW.format(name, s["apd3d"], s["mean_error_m"], s["jitter_m"], s["coverage"]))
    before, after = rows["before"], rows["after"]
    print(f"jitter x{after['jitter_m'] / before['jitter_m']:.3f}, "
          f"APD3D {after['apd3d'] - before['apd3d']:+.3f}, "
          f"mean error {after['mean_error_m'] - before['mean_error_m']:+.3f} m")


def _rows(lifted, lifted_visible, result, truth) -> dict:
    return {
        "before (all)": score_against_truth(lifted, lifted_visible, truth, HFOV_DEG),
        "before": score_against_truth(lifted, result.visible, truth, HFOV_DEG),
        "after": score_against_truth(result.track3d, result.visible, truth, HFOV_DEG),
    }


def golden_accuracy() -> None:
    z = np.load(GOLDEN)
    cameras = PinholeCamera.from_hfov(z["extrs"], HFOV_DEG)
    t0 = time.perf_counter()
    result = optimize_tracks(z["track3d"], z["visible_list"], z["extrs"],
                             (cameras.fx, cameras.fy, cameras.cx, cameras.cy), SIZE_PX, SIZE_PX)
    seconds = time.perf_counter() - t0
    _, gt_depth, _ = cameras.project(z["gt_track3d"], SIZE_PX, SIZE_PX)
    truth = {"tracks3d_world": z["gt_track3d"], "visibles": z["visible_list"], "depth_m": gt_depth}
    _print_scores(f"parity golden scene ({len(z['track3d'])} tracks x {z['track3d'].shape[1]} "
                  f"frames, optimised in {seconds:.1f} s)",
                  _rows(z["track3d"], z["visible_list"], result, truth))


def _without_edge_clamping(lifted, lifted_visible, world_to_camera, cameras, imh, imw):
    """Diagnostic: Eq. 5 with no second difference reaching past the clip's ends.

    ``track_opt`` (as the reference) clamps frame indices at the clip's ends, so near them the
    dynamic term compares a point with copies of the end point: a constant-velocity track then
    has a non-zero "acceleration" and is pulled along its rays. Padding the clip with invisible
    frames makes those terms invalid instead (it also erodes the 2 end frames of the clip).
    """
    pad = max(TrackOptConfig().dynamic_strides)
    result = optimize_tracks(np.pad(lifted, ((0, 0), (pad, pad), (0, 0)), mode="edge"),
                             np.pad(lifted_visible, ((0, 0), (pad, pad))),
                             np.pad(world_to_camera, ((pad, pad), (0, 0), (0, 0)), mode="edge"),
                             (cameras.fx, cameras.fy, cameras.cx, cameras.cy), imh, imw)
    return result._replace(track3d=result.track3d[:, pad:-pad], visible=result.visible[:, pad:-pad])


def clip_accuracy(config: OptimizationConfig) -> None:
    from stereo4d.depth import depth_maps_from_flows
    from stereo4d.synthetic import SyntheticOracle
    from stereo4d.tracks import lift_tracks_to_3d

    paths = config.paths
    meta, tracks, flows, video = _load_inputs(paths)
    imh, imw = video.shape[1:3]
    cameras = PinholeCamera.from_hfov(meta["extrs_rectified"], HFOV_DEG, imh / imw)
    depth_m = depth_maps_from_flows(flows, HFOV_DEG, remove_floaters=True)
    lifted, lifted_visible = lift_tracks_to_3d(tracks, depth_m, cameras)
    t0 = time.perf_counter()
    result = optimize_tracks(lifted, lifted_visible, meta["extrs_rectified"],
                             (cameras.fx, cameras.fy, cameras.cx, cameras.cy), imh, imw)
    seconds = time.perf_counter() - t0
    truth = SyntheticOracle.from_gt_file(paths.gt).tracks_for_queries(tracks.query_points_tyx)
    rows = _rows(lifted, lifted_visible, result, truth)
    unclamped = _without_edge_clamping(lifted, lifted_visible, meta["extrs_rectified"], cameras,
                                       imh, imw)
    rows["before (no clamp)"] = score_against_truth(lifted, unclamped.visible, truth, HFOV_DEG)
    rows["after (no clamp)"] = score_against_truth(unclamped.track3d, unclamped.visible, truth,
                                                   HFOV_DEG)
    for name, keep in (("moving", truth["is_dynamic"]), ("static", ~truth["is_dynamic"])):
        part = {k: v[keep] for k, v in truth.items()}
        rows[f"before ({name})"] = score_against_truth(lifted[keep], result.visible[keep], part,
                                                       HFOV_DEG)
        rows[f"after ({name})"] = score_against_truth(result.track3d[keep], result.visible[keep],
                                                      part, HFOV_DEG)
    _print_scores(f"synthetic clip {paths.vid} ({tracks.num_tracks} tracks x {len(video)} frames, "
                  f"optimised in {seconds:.1f} s)", rows)


# ----------------------------------------------------------------------------------- speed


def _speed_scene(num_frames: int = 24, seed: int = 0):
    """256 tracks, a camera walking forward, a dense depth map and a random video, 512 x 512."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_frames)
    extr = np.zeros((num_frames, 3, 4))
    extr[:, :, :3] = np.eye(3)
    extr[:, 2, 3] = -0.05 * t
    cameras = PinholeCamera.from_hfov(extr, HFOV_DEG)
    start = rng.uniform([-2, -1.5, 3], [2, 1.5, 8], (NUM_DISPLAY_TRACKS, 3))
    velocity = rng.normal(scale=0.05, size=(NUM_DISPLAY_TRACKS, 1, 3))
    track3d = start[:, None] + velocity * t[None, :, None]
    visible = rng.uniform(size=track3d.shape[:2]) < 0.95
    depth = rng.uniform(3, 8, (num_frames, SIZE_PX, SIZE_PX)).astype(np.float32)
    video = rng.integers(0, 255, (num_frames, SIZE_PX, SIZE_PX, 3), dtype=np.uint8)
    return cameras, track3d, visible, depth, video


def _per_frame(frames) -> float:
    t0 = time.perf_counter()
    count = sum(1 for _ in frames)
    return (time.perf_counter() - t0) / count


def _mpl_3d_frame(cameras, track3d, visible, depth, video, t: int) -> np.ndarray:
    """One reference-style matplotlib 3D figure (background drawn, then without it, blended)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from mpl_toolkits.mplot3d.art3d import Line3DCollection

    from stereo4d.viz.scene3d import background_points

    fig = Figure(figsize=(5.12, 5.12), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot(111, projection="3d", computed_zorder=False)
    frame_camera = PinholeCamera(cameras.world_to_camera[t], cameras.fx, cameras.fy)
    xyz, rgb = background_points(depth[t], video[t], frame_camera)
    bg = ax.scatter(xyz[:, 0], xyz[:, 2], xyz[:, 1], c=rgb / 255.0, s=16, depthshade=False,
                    edgecolors="none")
    centres = cameras.camera_to_world[:, :, 3]
    ax.plot(centres[:, 0], centres[:, 2], centres[:, 1], linestyle="dashed")
    lines = track3d[:, max(0, t - 16):t + 1][:, :, [0, 2, 1]]
    colors = rainbow_colors(len(track3d)) / 255.0
    ax.add_collection3d(Line3DCollection(lines, colors=colors, linewidths=1))
    ax.scatter(lines[:, -1, 0], lines[:, -1, 1], lines[:, -1, 2], c=colors, s=3)
    ax.invert_zaxis()
    canvas.draw()
    with_bg = np.asarray(canvas.buffer_rgba(), dtype=np.float32)
    bg.set_visible(False)
    canvas.draw()
    return (0.4 * with_bg + 0.6 * np.asarray(canvas.buffer_rgba(), dtype=np.float32))[..., :3]


def _mpl_2d_frame(video, xy_window, t: int) -> np.ndarray:
    """One reference-style matplotlib 2D figure: the frame, 16 LineCollections, a scatter."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    dpi = 64
    fig = plt.figure(figsize=(SIZE_PX / dpi, SIZE_PX / dpi), dpi=dpi, frameon=False)
    ax = fig.add_subplot()
    ax.axis("off")
    ax.imshow(video[t] / 255.0)
    colors = rainbow_colors(xy_window.shape[0]) / 255.0
    for s in range(xy_window.shape[1] - 1):
        segs = np.stack([xy_window[:, s], xy_window[:, s + 1]], axis=1)
        ax.add_collection(LineCollection(segs, colors=colors, linewidths=1))
    ax.scatter(xy_window[:, -1, 0], xy_window[:, -1, 1], s=10, c=colors)
    fig.canvas.draw()
    img = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return img


def viz_speed(mpl_frames: int) -> None:
    cameras, track3d, visible, depth, video = _speed_scene()
    colors = rainbow_colors(len(track3d))
    ours_3d = _per_frame(render_scene3d(track3d, visible, colors, cameras, depth, video, HFOV_DEG))
    ours_2d = _per_frame(render_scene_motion_2d(video, track3d, visible, colors, cameras))
    inv_range = inverse_depth_range(depth)
    ours_depth = _per_frame(colorize_depth(d, inv_range) for d in depth)
    t_last = len(video) - 1
    mpl_3d = _per_frame(_mpl_3d_frame(cameras, track3d, visible, depth, video, t_last - k)
                        for k in range(mpl_frames))
    xy, _, _ = PinholeCamera(cameras.world_to_camera[t_last], cameras.fx, cameras.fy).project(
        track3d[:, t_last - 16:], SIZE_PX, SIZE_PX)
    mpl_2d = _per_frame(_mpl_2d_frame(video, xy, t_last) for _ in range(mpl_frames))
    print(f"\nvideo frames at {SIZE_PX} x {SIZE_PX}, {len(track3d)} tracks, 16-frame trails "
          f"(matplotlib: {mpl_frames} frames)")
    print(f"3D view (cloud {SIZE_PX // 2}^2 points): ours {1e3 * ours_3d:7.1f} ms/frame, "
          f"matplotlib {1e3 * mpl_3d:7.1f} ms/frame  -> x{mpl_3d / ours_3d:.0f}")
    print(f"scene-motion 2D trails:         ours {1e3 * ours_2d:7.1f} ms/frame, "
          f"matplotlib {1e3 * mpl_2d:7.1f} ms/frame  -> x{mpl_2d / ours_2d:.0f}")
    print(f"depth colouring (LUT):          ours {1e3 * ours_depth:7.1f} ms/frame")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vid", default=None, help="synthetic clip processed up to filtering")
    parser.add_argument("--npz_folder", default="stereo4d_dataset/npz")
    parser.add_argument("--output_folder", default="stereo4d_dataset/processed")
    parser.add_argument("--gt_folder", default="stereo4d_dataset/gt")
    parser.add_argument("--mpl_frames", type=int, default=2, help="matplotlib frames to time")
    args = parser.parse_args()
    golden_accuracy()
    if args.vid:
        clip_accuracy(OptimizationConfig(vid=args.vid, npz_folder=args.npz_folder,
                                         output_folder=args.output_folder, gt_folder=args.gt_folder))
    viz_speed(args.mpl_frames)


if __name__ == "__main__":
    main()
