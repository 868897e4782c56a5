"""Writing a synthetic clip: the raw side-by-side VR180 video, the released-format npz and the
ground truth (the files are described in ``stereo4d.synthetic.clip``)."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import numpy as np
import torch
import tqdm

from stereo4d import geometry
from stereo4d.io import (
    ClipPaths,
    atomic_path,
    remove_stale_temporaries,
    save_dataset_npz,
    split_vid,
)
from stereo4d.synthetic.clip import (
    SyntheticClipConfig,
    SyntheticOracle,
    clip_times_s,
    rectified_cameras,
    render_view,
)
from stereo4d.synthetic.render import NO_HIT, tile_rays
from stereo4d.synthetic.scene import ADE20K
from stereo4d.videoio import write_video

__all__ = ["RENDERER_VERSION", "make_synthetic_clip"]

#: Version of the renderer, stored with the ground truth (``renderer_version``; absent: 1) so a
#: cache of rendered clips knows when a change made them stale. 2: photographs mip-mapped with
#: ``photos.LOD_BIAS`` = 0 (was 1).
RENDERER_VERSION = 2
#: float32 mantissa bits kept in the stored depth and disparity maps (relative precision
#: 2**-16 = 1.5e-5, i.e. < 0.3 mm at 20 m): halves the gt file, far below any estimator's error.
STORED_MANTISSA_BITS = 16
#: Grey level of the unrendered lead frames of the raw video (before the rendered ones).
LEAD_FILL_LEVEL = 128


@contextlib.contextmanager
def _torch_threads(num: int):
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, int(num)))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _truncate_mantissa(values: np.ndarray, bits: int = STORED_MANTISSA_BITS) -> np.ndarray:
    """float32 array with the low ``23 - bits`` mantissa bits zeroed (inf and 0 unchanged)."""
    mask = np.uint32((0xFFFFFFFF << (23 - bits)) & 0xFFFFFFFF)
    return (np.ascontiguousarray(values, np.float32).view(np.uint32) & mask).view(np.float32)


def _sample_queries(oracle: SyntheticOracle, config: SyntheticClipConfig) -> np.ndarray:
    """[num_tracks, 3] (t, y, x) on surfaces, a ``dynamic_track_fraction`` share on movers."""
    rng = np.random.default_rng(config.seed + 1)
    n = config.num_tracks
    size = config.gt_size_px
    cand = np.stack(
        [
            rng.integers(0, config.num_frames, 8 * n).astype(float),
            rng.uniform(0.5, size - 0.5, 8 * n),
            rng.uniform(0.5, size - 0.5, 8 * n),
        ],
        1,
    )
    obj, _ = oracle.surface_points(cand)
    dynamic = (obj != NO_HIT) & oracle.scene.is_dynamic[np.where(obj == NO_HIT, 0, obj)]
    static = (obj != NO_HIT) & ~dynamic
    n_dyn = min(round(n * config.dynamic_track_fraction), int(dynamic.sum()))
    picked = np.concatenate([np.nonzero(dynamic)[0][:n_dyn], np.nonzero(static)[0][: n - n_dyn]])
    return cand[np.sort(picked)]


def _raw_video_frames(scene, config, cams, times_s, lead, gt_rays, gt, timings):
    """Yields the raw side-by-side frames; fills ``gt`` with the perspective renders on the way."""
    eye_hw = (config.eye_size_px, config.eye_size_px)
    rig_rays = geometry.equirect_pixel_rays(eye_hw, config.fov_bounds_deg)
    eye_rays = [tile_rays(rig_rays @ rot, config.tile_px) for rot in config.rectified2rig]
    blank = np.full((*eye_hw, 6), LEAD_FILL_LEVEL, np.uint8).reshape(eye_hw[0], -1, 3)
    for _ in range(lead - min(lead, config.rendered_lead_frames)):
        yield blank
    frame_dt = 1.0 / config.fps
    extra_before = min(lead, config.rendered_lead_frames)
    num = len(times_s)
    steps = range(-extra_before, num + config.trailing_frames)
    for i in tqdm.tqdm(steps, desc="render synthetic clip", unit="frame"):
        t0 = time.perf_counter()
        time_s = times_s[i] if 0 <= i < num else i * frame_dt
        cam = (
            cams
            if 0 <= i < num
            else rectified_cameras(scene, np.array([time_s]), config.baseline_m)
        )
        frame_idx = i if 0 <= i < num else 0
        gains = config.eye_gains_rgb(time_s)
        eyes = [render_view(scene, time_s, cam[e, frame_idx], eye_rays[e], gain_rgb=gains[e])["rgb"]
                for e in (0, 1)]
        if 0 <= i < num:
            view = render_view(scene, time_s, cams[0, i], gt_rays, gain_rgb=gains[0])
            for key in ("rgb", "depth_m", "labels", "obj"):
                gt[key].append(view[key])
        timings["render_s"] += time.perf_counter() - t0
        yield np.concatenate(eyes, axis=1)


def make_synthetic_clip(paths: ClipPaths, config: SyntheticClipConfig | None = None) -> dict:
    """Renders the clip and writes the raw video, the released-format npz and the gt npz.

    The gt file holds, for the rectified perspective left view (H = W = ``gt_size_px``):
    depth_m [T, H, W] float32 camera z (inf on sky; ``STORED_MANTISSA_BITS`` kept),
    disparity_px [T, H, W] float32 (``f_px * baseline / depth``, 0 on sky), labels
    [T, H, W] uint8 (ADE20K), object_id [T, H, W] int8 (-1 on sky), rgb_left [T, H, W, 3]
    uint8; for ``num_tracks`` queries: query_points_tyx [N, 3], tracks_xy [N, T, 2],
    visibles [N, T] bool, tracks3d_world [N, T, 3] (every frame, hidden or not),
    depth_track_m [N, T], is_dynamic [N], query_object_id [N]; hfov_deg, focal_px,
    baseline_m, timestamps [T], camera2world [T, 3, 4], seed, num_frames, eye_height_m,
    config_json (rebuilds everything), scene_description and label_names (JSON id -> name).

    ``config``: default ``SyntheticClipConfig()`` (the demo clip).
    Returns a summary: paths, timings, depth range, track counts, file sizes.
    """
    config = config if config is not None else SyntheticClipConfig()
    video_id, stamp = split_vid(paths.vid)
    remove_stale_temporaries([paths.raw_video, paths.npz, paths.gt])  # a killed run's
    ts0 = int(stamp)
    timestamps = ts0 + np.round(np.arange(config.num_frames) * 1e6 / config.fps).astype(np.int64)
    lead = round(ts0 * config.fps / 1e6)
    scene = config.build_scene()
    times_s = clip_times_s(timestamps)
    cams = rectified_cameras(scene, times_s, config.baseline_m)
    size = config.gt_size_px
    gt_rays = tile_rays(
        geometry.perspective_pixel_rays(size, size, config.gt_hfov_deg), config.tile_px
    )
    gt: dict[str, list] = {k: [] for k in ("rgb", "depth_m", "labels", "obj")}
    timings = {"render_s": 0.0}
    t_start = time.perf_counter()
    with _torch_threads(config.render_threads):
        write_video(
            paths.raw_video,
            _raw_video_frames(scene, config, cams, times_s, lead, gt_rays, gt, timings),
            fps=config.fps,
            crf=config.crf,
            chroma_444=config.chroma_444,
        )
        timings["render_and_encode_s"] = time.perf_counter() - t_start
        t0 = time.perf_counter()
        oracle = SyntheticOracle(config, timestamps)
        queries = _sample_queries(oracle, config)
        tracks = oracle.tracks_for_queries(queries)
        timings["tracks_s"] = time.perf_counter() - t0

    save_dataset_npz(
        paths.npz,
        name=paths.vid,
        video_id=video_id,
        timestamps_us=timestamps,
        camera2world=cams[0],
        track3d=tracks["tracks3d_world"],
        visible=tracks["visibles"],
        rectified2rig=config.rectified2rig,
        fov_bounds_deg=np.asarray(config.fov_bounds_deg, np.float64),
    )
    depth = np.stack(gt["depth_m"])
    with np.errstate(divide="ignore"):
        disparity = np.where(np.isfinite(depth), config.focal_px * config.baseline_m / depth, 0.0)
    arrays = {
        "depth_m": _truncate_mantissa(depth),
        "disparity_px": _truncate_mantissa(disparity),
        "labels": np.stack(gt["labels"]),
        "object_id": np.stack(gt["obj"]),
        "rgb_left": np.stack(gt["rgb"]),
        "query_points_tyx": queries,
        "tracks_xy": tracks["tracks_xy"],
        "visibles": tracks["visibles"],
        "tracks3d_world": tracks["tracks3d_world"],
        "depth_track_m": tracks["depth_m"],
        "is_dynamic": tracks["is_dynamic"],
        "query_object_id": tracks["object_id"],
        "hfov_deg": np.float64(config.gt_hfov_deg),
        "focal_px": np.float64(config.focal_px),
        "baseline_m": np.float64(config.baseline_m),
        "timestamps": timestamps,
        "camera2world": cams[0],
        "seed": np.int64(config.seed),
        "num_frames": np.int64(config.num_frames),
        "eye_height_m": np.float64(config.eye_height_m),
        "config_json": np.asarray(config.to_json()),
        "renderer_version": np.int64(RENDERER_VERSION),
        "scene_description": np.asarray(scene.describe()),
        "label_names": np.asarray(json.dumps({v: k for k, v in ADE20K.items()})),
    }
    with atomic_path(paths.gt) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    finite = depth[np.isfinite(depth)]
    summary = {
        "raw_video": str(paths.raw_video),
        "npz": str(paths.npz),
        "gt": str(paths.gt),
        "lead_frames": lead,
        "video_frames": lead + config.num_frames + config.trailing_frames,
        "depth_range_m": (float(finite.min()), float(finite.max())),
        "sky_fraction": float(np.mean(~np.isfinite(depth))),
        "num_tracks": len(queries),
        "dynamic_tracks": int(tracks["is_dynamic"].sum()),
        "visible_fraction": float(tracks["visibles"].mean()),
        "file_sizes_bytes": {
            k: Path(p).stat().st_size
            for k, p in (("raw_video", paths.raw_video), ("npz", paths.npz), ("gt", paths.gt))
        },
        "timings_s": timings,
    }
    return summary
