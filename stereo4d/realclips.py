"""Real Stereo4D clips with released 2D tracks: loading, queries, and agreement scoring.

A local copy of the public ``jianingnz/stereo4d-viz`` sample (never part of this
repository) holds ``manifest.json`` (``clips``: ``id``, ``split`` train/test),
``videos/<id>.mp4`` (left rectified 512 x 512) and ``clips/<id>.npz`` with the
released dataset's tracks of moving objects: ``tracks2d`` [T, N, 2] (x, y) px
float16 and ``vis2d`` [T, N] bool (from the reference pipeline's BootsTAPIR run).

Queries are the first visible point of each released track, as (t, y, x). The
agreement of a tracker with the released tracks is scored with the TAP-Vid
metrics of ``stereo4d.metrics.tapvid`` (query-first mode: frames after the query;
distances measured after scaling the frame to 256 x 256, so the thresholds
1..16 px are 2..32 px of a 512 x 512 frame), plus the median error in pixels
of the full-size frame over the released visible points.

Pixel convention: the released tracks use the same continuous pixel coordinates
as this project (pixel ``(i, j)`` spans ``[j, j+1) x [i, i+1)``); measured on
train clips by ``convention_shift_px`` (see ``benchmarks/bench_real_tracking.py
--check_convention`` and the README).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stereo4d.io import InputError
from stereo4d.metrics.tapvid import compute_tapvid_metrics, evaluation_mask

__all__ = ["SPLITS", "RealClip", "list_clips", "load_clip", "score_tracks", "summarise"]

#: Splits of the manifest.
SPLITS = ("train", "test")


@dataclass(frozen=True)
class RealClip:
    """One clip of the local copy.

    Attributes:
      clip_id: manifest id (``<video_id>_<timestamp_us>``).
      split: ``train`` or ``test``.
      video: path of the left rectified video.
      data: path of the per-clip npz.
    """

    clip_id: str
    split: str
    video: Path
    data: Path


def list_clips(clips_dir: str | Path, split: str) -> tuple[list[RealClip], list[str]]:
    """Clips of one split, in manifest order.

    Returns:
      (clips whose video and npz are both present, ids skipped for a missing file).
    """
    root = Path(clips_dir)
    if split not in SPLITS:
        raise InputError(f"split must be one of {SPLITS}, got {split!r}")
    manifest = root / "manifest.json"
    if not manifest.is_file():
        raise InputError(f"{manifest}: not found (expected a local copy of stereo4d-viz)")
    try:
        entries = json.loads(manifest.read_text())["clips"]
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{manifest}: not a stereo4d-viz manifest ({exc})") from exc
    clips, missing = [], []
    for entry in entries:
        if entry.get("split") != split:
            continue
        clip_id = str(entry["id"])
        clip = RealClip(clip_id, split, root / "videos" / f"{clip_id}.mp4", root / "clips" / f"{clip_id}.npz")
        if clip.video.is_file() and clip.data.is_file():
            clips.append(clip)
        else:
            missing.append(clip_id)
    return clips, missing


def load_clip(clip: RealClip, max_frames: int | None = None) -> dict[str, np.ndarray]:
    """Frames, released tracks and queries of one clip.

    Tracks that are never visible within the first ``max_frames`` frames are dropped.

    Returns:
      dict with ``frames`` [T, H, W, 3] uint8, ``tracks_xy`` [N, T, 2] float32 (x, y) px,
      ``visibles`` [N, T] bool, ``query_points_tyx`` [N, 3] float32 (t, y, x): the first
      visible point of each track.
    """
    from stereo4d.videoio import read_video

    frames = read_video(clip.video)
    with np.load(clip.data, allow_pickle=False) as z:
        tracks_xy = np.asarray(z["tracks2d"], np.float32).transpose(1, 0, 2)
        visibles = np.asarray(z["vis2d"], bool).T
    num_frames = min(len(frames), tracks_xy.shape[1], max_frames or len(frames))
    if len(frames) != tracks_xy.shape[1]:
        print(f"{clip.clip_id}: video has {len(frames)} frames, tracks {tracks_xy.shape[1]}; "
              f"using the first {num_frames}")
    frames, tracks_xy, visibles = frames[:num_frames], tracks_xy[:, :num_frames], visibles[:, :num_frames]
    visibles = visibles & np.all(np.isfinite(tracks_xy), axis=-1)
    seen = visibles.any(axis=1)
    tracks_xy, visibles = tracks_xy[seen], visibles[seen]
    first_t = np.argmax(visibles, axis=1)
    rows = np.arange(len(first_t))
    query_xy = tracks_xy[rows, first_t]
    query_points_tyx = np.stack([first_t, query_xy[:, 1], query_xy[:, 0]], axis=1).astype(np.float32)
    return {"frames": frames, "tracks_xy": np.nan_to_num(tracks_xy), "visibles": visibles,
            "query_points_tyx": query_points_tyx}


def score_tracks(clip_data: dict, pred_xy: np.ndarray, pred_visibles: np.ndarray) -> dict[str, float]:
    """Agreement of predicted tracks with the released ones (query-first TAP-Vid + median error).

    Args:
      clip_data: from ``load_clip``.
      pred_xy: [N, T, 2] (x, y) px; pred_visibles: [N, T] bool.
    Returns:
      ``delta_avg`` (<delta^x_avg), ``occlusion_accuracy``, ``average_jaccard``,
      ``median_error_px`` (full-size pixels, released visible points after the query),
      ``pts_within_{d}`` and ``num_tracks``, ``num_points``.
    """
    hw = clip_data["frames"].shape[1:3]
    queries, gt_xy, gt_vis = clip_data["query_points_tyx"], clip_data["tracks_xy"], clip_data["visibles"]
    m = compute_tapvid_metrics(queries, gt_xy, gt_vis, pred_xy, pred_visibles, hw, "first")
    counted = gt_vis & evaluation_mask(queries[:, 0], gt_vis.shape[1], "first")
    error_px = np.linalg.norm(np.asarray(pred_xy, np.float64) - gt_xy, axis=-1)[counted]
    return {"delta_avg": m["average_pts_within_thresh"], "occlusion_accuracy": m["occlusion_accuracy"],
            "average_jaccard": m["average_jaccard"],
            "median_error_px": float(np.median(error_px)) if error_px.size else float("nan"),
            **{k: v for k, v in m.items() if k.startswith("pts_within_")},
            "num_tracks": len(queries), "num_points": int(counted.sum())}


def summarise(per_clip: dict[str, dict[str, float]]) -> dict[str, float]:
    """Mean of each figure over clips (and the worst clip's <delta_avg)."""
    keys = ("delta_avg", "occlusion_accuracy", "average_jaccard", "median_error_px")
    if not per_clip:
        return {}
    table = {k: np.array([m[k] for m in per_clip.values()], np.float64) for k in keys}
    out = {k: float(np.nanmean(v)) for k, v in table.items()}
    out["min_delta_avg"] = float(np.nanmin(table["delta_avg"]))
    out["num_clips"] = len(per_clip)
    return out
