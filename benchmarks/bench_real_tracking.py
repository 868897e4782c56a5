"""Benchmark of a 2D tracking backend on real Stereo4D clips against the released tracks.

For each clip of a split of a local copy of ``jianingnz/stereo4d-viz`` (not part of
this repository: pass its folder with ``--clips_dir``), the queries are the first
visible point of each released track; the backend tracks them through the left
rectified video and its tracks are scored against the released ones (TAP-Vid
query-first <delta^x_avg and occlusion accuracy at 256 x 256, average Jaccard,
median error in px of the 512 x 512 frame). Prints one line per clip and the
mean; ``--json`` writes every figure. Clips whose video is missing are skipped
and listed.

Usage: .venv/bin/python benchmarks/bench_real_tracking.py --clips_dir /data/stereo4d-viz \\
           [--split test] [--backend dis-flow] [--path bootstapir_checkpoint_v2.pt] \\
           [--max_clips 20] [--max_frames 100] [--json out.json] [--flow_cache DIR]

``--flow_cache DIR`` (classical backends): each clip's optical flows are stored in DIR (float16,
keyed by the flow settings and clip) and read back on later runs, so settings that change only
the chaining are compared without recomputing the flow (2.5-5 min per full clip on 2 cores).
Keep DIR outside the repository: the flows derive from the clips.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

from stereo4d.backends.classical_tracker import ClassicalTracker
from stereo4d.backends.dense_flow import compute_flow
from stereo4d.backends.tracking import TRACKING_BACKENDS
from stereo4d.cli import int_in_range
from stereo4d.io import InputError, atomic_path, save_json
from stereo4d.realclips import SPLITS, list_clips, load_clip, score_tracks, summarise

#: Settings of ``ClassicalTrackerConfig`` that change the optical flow (the cache key).
FLOW_SETTINGS = ("flow_method", "dis_preset", "dis_finest_scale", "dis_patch_size", "dis_patch_stride",
                 "dis_refinement_iters")
#: Storage type of cached flows: half precision (1/2048 px at 1 px, 1/64 px at 100 px of motion).
FLOW_CACHE_DTYPE = np.float16

#: Frames of trail drawn in the ``--figure`` panels.
FIGURE_TRAIL_FRAMES = 24
#: Side of each ``--figure`` panel (px; the 512 px frames are downscaled to keep the PNG small).
FIGURE_PANEL_PX = 320


def comparison_figure(frames, released_xy, released_vis, pred_xy, pred_vis, frame_index: int):
    """Released tracks (left panel) beside the backend's (right), same colour per track.

    Returns [P, 2P + gap, 3] uint8 RGB, P = FIGURE_PANEL_PX.
    """
    import cv2

    from stereo4d.viz.trails import draw_trails_frame, rainbow_colors

    colors = rainbow_colors(len(released_xy))[np.random.default_rng(0).permutation(len(released_xy))]
    panels = []
    for xy, vis in ((released_xy, released_vis), (pred_xy, pred_vis)):
        drawn = draw_trails_frame(frames[frame_index], frame_index, xy, vis, colors,
                                  trail_frames=FIGURE_TRAIL_FRAMES, dot_radius_px=2)
        panels.append(cv2.resize(drawn, (FIGURE_PANEL_PX, FIGURE_PANEL_PX), interpolation=cv2.INTER_AREA))
    gap = np.full((FIGURE_PANEL_PX, 8, 3), 255, np.uint8)
    return np.concatenate([panels[0], gap, panels[1]], axis=1)


def write_figure(path: str, clip, tracker, max_frames: int | None) -> None:
    """Tracks one clip and writes the comparison at 3/4 of its length as a PNG."""
    import cv2

    data = load_clip(clip, max_frames)
    pred_xy, pred_vis = tracker.track(data["frames"], data["query_points_tyx"])
    frame_index = (3 * len(data["frames"])) // 4
    image = comparison_figure(data["frames"], data["tracks_xy"], data["visibles"], pred_xy, pred_vis,
                              frame_index)
    with atomic_path(path, suffix=".png") as tmp:
        cv2.imwrite(str(tmp), image[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"figure: {clip.clip_id} frame {frame_index} (left released, right {tracker.settings()['backend']})"
          f" -> {path}")


def flow_cache_folder(cache_dir: str | Path, tracker: ClassicalTracker, clip_id: str) -> Path:
    """``cache_dir / <16 hex digits of the flow settings> / <clip_id>``."""
    settings = {k: getattr(tracker.config, k) for k in FLOW_SETTINGS}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    return Path(cache_dir) / key / clip_id


def track_with_flow_cache(tracker: ClassicalTracker, frames: np.ndarray, queries_tyx: np.ndarray,
                          folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """``tracker.track`` with the one-frame and keyframe flows read from / written to ``folder``.

    A clip's cached flow covers its first T frames (one file per skip and direction:
    ``{forward,backward}_skip{k}.npy`` [P, H, W, 2] float16); a shorter run uses the pairs it needs,
    a longer one recomputes.
    """
    flows = {}
    for skip in (1, *tracker.config.skip_frames):
        if skip >= len(frames):
            continue
        pairs = (len(frames) - 1) // skip
        paths = [folder / f"{name}_skip{skip}.npy" for name in ("forward", "backward")]
        if all(p.is_file() for p in paths):
            stored = [np.load(p, mmap_mode="r") for p in paths]
            if all(len(a) >= pairs and a.shape[1:3] == frames.shape[1:3] for a in stored):
                flows[skip] = tuple(np.asarray(a[:pairs], np.float32) for a in stored)
                continue
        flows[skip] = compute_flow(frames, tracker.config, skip)
        for path, flow in zip(paths, flows[skip]):
            with atomic_path(path, suffix=".npy") as tmp:
                np.save(tmp, flow.astype(FLOW_CACHE_DTYPE))
    skip_flows = {k: v for k, v in flows.items() if k != 1}
    return tracker.track_with_flows(frames, queries_tyx, *flows[1], skip_flows)


def evaluate_split(clips_dir: str, split: str, tracker, max_clips: int | None = None,
                   max_frames: int | None = None, shift_px: float = 0.0, first_clip: int = 0,
                   verbose: bool = True, flow_cache: str | None = None,
                   clip_ids: list[str] | None = None) -> dict:
    """Tracks and scores the clips of one split. Returns ``{"per_clip", "mean", "skipped", ...}``.

    ``clip_ids``: only these clips of the split (all of them must exist).
    ``flow_cache`` (classical trackers only): folder of cached flows, see ``track_with_flow_cache``.

    ``shift_px`` is added to the released coordinates (queries and tracks) before
    tracking, to test their pixel convention (0 = same convention as ours).
    """
    clips, missing = list_clips(clips_dir, split)
    if clip_ids:
        unknown = set(clip_ids) - {c.clip_id for c in clips}
        if unknown:
            raise InputError(f"no {split} clip(s) {', '.join(sorted(unknown))} in {clips_dir}")
        clips = [c for c in clips if c.clip_id in clip_ids]
    clips = clips[first_clip:][:max_clips] if max_clips else clips[first_clip:]
    if missing and verbose:
        print(f"{split}: skipped {len(missing)} clip(s) without a video or npz: {', '.join(missing)}")
    per_clip, frames_total, track_s = {}, 0, 0.0
    for clip in clips:
        data = load_clip(clip, max_frames)
        if shift_px:
            data["tracks_xy"] = data["tracks_xy"] + np.float32(shift_px)
            data["query_points_tyx"][:, 1:] += np.float32(shift_px)
        t0 = time.perf_counter()
        if flow_cache:
            folder = flow_cache_folder(flow_cache, tracker, clip.clip_id)
            pred_xy, pred_vis = track_with_flow_cache(tracker, data["frames"], data["query_points_tyx"],
                                                      folder)
        else:
            pred_xy, pred_vis = tracker.track(data["frames"], data["query_points_tyx"])
        seconds = time.perf_counter() - t0
        frames_total, track_s = frames_total + len(data["frames"]), track_s + seconds
        m = score_tracks(data, pred_xy, pred_vis)
        m["track_s"] = seconds
        per_clip[clip.clip_id] = m
        if verbose:
            print(f"{split:5s} {clip.clip_id:28s} T {len(data['frames']):3d} N {m['num_tracks']:5d}  "
                  f"<delta_avg {m['delta_avg']:.3f}  OA {m['occlusion_accuracy']:.3f}  "
                  f"AJ {m['average_jaccard']:.3f}  median {m['median_error_px']:6.2f} px  "
                  f"({seconds:.1f} s)", flush=True)
    mean = summarise(per_clip)
    if verbose and mean:
        print(f"{split:5s} MEAN over {mean['num_clips']} clips: <delta_avg {mean['delta_avg']:.3f} "
              f"(worst {mean['min_delta_avg']:.3f})  OA {mean['occlusion_accuracy']:.3f}  "
              f"AJ {mean['average_jaccard']:.3f}  median {mean['median_error_px']:.2f} px  "
              f"[{frames_total / max(track_s, 1e-9):.1f} frames/s]")
    return {"split": split, "per_clip": per_clip, "mean": mean, "skipped": missing,
            "max_frames": max_frames, "shift_px": shift_px}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--clips_dir", required=True,
                        help="local copy of stereo4d-viz (manifest.json, videos/, clips/)")
    parser.add_argument("--split", default="test", choices=[*SPLITS, "both"])
    parser.add_argument("--backend", default="dis-flow", choices=TRACKING_BACKENDS.choices(),
                        help=TRACKING_BACKENDS.help())
    parser.add_argument("--path", default=None, help="BootsTAPIR checkpoint (.pt or .npy)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--max_clips", type=int_in_range(1), default=None, help="first N clips of each split")
    parser.add_argument("--clips", default=None,
                        help="comma-separated clip ids: only these (e.g. a fixed set of train clips)")
    parser.add_argument("--first_clip", type=int_in_range(0), default=0, help="skip the first N clips of each split")
    parser.add_argument("--max_frames", type=int_in_range(2), default=None, help="first N frames of each clip")
    parser.add_argument("--shift_px", type=float, default=0.0,
                        help="add this to the released coordinates (pixel-convention check)")
    parser.add_argument("--json", default=None, help="write all figures to this JSON file")
    parser.add_argument("--flow_cache", default=None,
                        help="classical backends: read/write each clip's optical flow here (float16; "
                             "keep it outside the repository)")
    parser.add_argument("--figure", default=None,
                        help="PNG: released tracks beside the backend's on one clip (no scoring)")
    parser.add_argument("--figure_clip", default=None, help="clip id of --figure (default: first)")
    args = parser.parse_args(argv)
    try:
        if args.flow_cache and TRACKING_BACKENDS.resolve(args.backend).needs_weights:
            raise InputError(f"--flow_cache needs a classical backend (optical flow), not {args.backend}")
        entry, tracker = TRACKING_BACKENDS.build(args.backend, path=args.path, device=args.device,
                                                 progress=False)
        print(f"backend {entry.name}: {tracker.settings()}")
        if args.figure:
            clips = list_clips(args.clips_dir, args.split if args.split != "both" else "test")[0]
            chosen = [c for c in clips if args.figure_clip in (None, c.clip_id)]
            if not chosen:
                raise InputError(f"no clip {args.figure_clip!r} in {args.clips_dir}")
            write_figure(args.figure, chosen[0], tracker, args.max_frames)
            return 0
        splits = SPLITS if args.split == "both" else (args.split,)
        results = {split: evaluate_split(args.clips_dir, split, tracker, args.max_clips,
                                         args.max_frames, args.shift_px, args.first_clip,
                                         flow_cache=args.flow_cache,
                                         clip_ids=args.clips.split(",") if args.clips else None)
                   for split in splits}
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        save_json({"backend": entry.name, "settings": tracker.settings(), "results": results}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
