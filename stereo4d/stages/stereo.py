"""Stage 2 (README step 3/6): stereo flows of the rectified views.

Reads ``<vid>-left_rectified.mp4`` and ``<vid>-right_rectified.mp4``; writes, by
``stereo_format``, either ``<vid>-stereo.npz`` (``compact``, the default: the forward
flow quantised to 1/1024 px, coarser for flows beyond 32 px, and the per-pixel validity
of the left-right and vertical-flow checks, ``io.save_stereo_compact``; about 14x
smaller) or the reference's
``<vid>-flows_stereo.pkl`` (``pickle``: a list with one ``{'fwd': [H, W, 2], 'bwd':
[H, W, 2]}`` float32 dict per frame: flow left->right and right->left in pixels; for
rectified views ``fwd_x`` is minus the left disparity), and ``<vid>-stereo.json``
(backend, settings, timings, fraction of pixels with valid depth). Writing one format
removes the other, so the later stages (``io.load_stereo_flows``) never read a stale one.

The output is written atomically after every frame is done: a failed run leaves
none. Depth is derived from the flows later, by ``stereo4d.depth``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stereo4d.backends.classical_stereo import SgbmSettings
from stereo4d.backends.stereo import STEREO_BACKENDS
from stereo4d.depth import depth_maps_from_flows, stereo_valid_mask
from stereo4d.geometry import focal_length_px
from stereo4d.io import ClipPaths, InputError, load_dataset_npz, save_pickle, save_stereo_compact
from stereo4d.stages.common import (
    Timer,
    check_frame_counts,
    stage_output_paths,
    start_stage,
    write_provenance,
)
from stereo4d.stages.health import stereo_health
from stereo4d.videoio import read_video

__all__ = ["PROVENANCE_STAGE", "STEREO_FORMATS", "StereoConfig", "output_paths",
           "read_stereo_pair", "run",
           "validate_flows"]

PROVENANCE_STAGE = "stereo"
"""Name of the provenance JSON: ``<vid>-stereo.json``."""
STEREO_FORMATS = ("compact", "pickle")
"""Output formats: ``<vid>-stereo.npz`` (compact) or the reference's ``<vid>-flows_stereo.pkl``."""


@dataclass(frozen=True)
class StereoConfig:
    """Settings of ``inference_raft.py``.

    Attributes:
      vid: ``<video_id>_<timestamp_us>``.
      npz_folder, output_folder: as in ``ClipPaths`` (inputs and output in ``<output_folder>/<vid>/``).
      backend: ``auto``, ``sea-raft`` or ``sgbm`` (see ``stereo4d.backends.stereo``).
      path: SEA-RAFT checkpoint file or Hub-style folder; None = the Hub repo ``url``.
      url: Hugging Face Hub repo id of the SEA-RAFT checkpoint.
      device: ``auto``, ``cpu`` or ``cuda`` (neural backend only).
      sgbm: settings of the classical backend.
      hfov_deg: horizontal FoV of the rectified views (only for the valid-depth figure).
      stereo_format: one of ``STEREO_FORMATS``.
    """

    vid: str
    npz_folder: str = "stereo4d_dataset/npz"
    output_folder: str = "stereo4d_dataset/processed"
    backend: str = "auto"
    path: str | None = None
    url: str = "MemorySlices/Tartan-C-T-TSKH-spring540x960-M"
    device: str = "auto"
    sgbm: SgbmSettings = field(default_factory=SgbmSettings)
    hfov_deg: float = 60.0
    stereo_format: str = "compact"

    def __post_init__(self):
        if self.stereo_format not in STEREO_FORMATS:
            raise InputError(f"--stereo_format must be one of {', '.join(STEREO_FORMATS)}, "
                             f"got {self.stereo_format!r}")

    @property
    def paths(self) -> ClipPaths:
        return ClipPaths(self.vid, npz_folder=self.npz_folder, output_folder=self.output_folder)


def read_stereo_pair(paths: ClipPaths) -> tuple[np.ndarray, np.ndarray]:
    """Both rectified videos, uint8 [T, H, W, 3] each; InputError if missing or mismatched."""
    missing = [str(p) for p in (paths.left_video, paths.right_video) if not p.is_file()]
    if missing:
        raise InputError(f"missing rectified video(s): {', '.join(missing)} (run rectify.py first)")
    left, right = read_video(paths.left_video), read_video(paths.right_video)
    if len(left) != len(right):
        raise InputError(f"{paths.left_video.name} has {len(left)} frames but "
                         f"{paths.right_video.name} has {len(right)}")
    if left.shape[1:] != right.shape[1:]:
        raise InputError(f"left frames are {left.shape[2]}x{left.shape[1]} but right frames are "
                         f"{right.shape[2]}x{right.shape[1]}")
    return left, right


def validate_flows(flows: list[dict], num_frames: int, height: int, width: int) -> None:
    """Checks a backend's output before it is written (a bug guard, not user input)."""
    if len(flows) != num_frames:
        raise RuntimeError(f"backend returned {len(flows)} flows for {num_frames} frames")
    for t, flow in enumerate(flows):
        for key in ("fwd", "bwd"):
            value = flow[key]
            if value.shape != (height, width, 2) or value.dtype != np.float32:
                raise RuntimeError(f"frame {t} {key}: {value.dtype} {value.shape}, "
                                   f"expected float32 ({height}, {width}, 2)")
            if not np.all(np.isfinite(value)):
                raise RuntimeError(f"frame {t} {key}: non-finite flow")


def _write_flows(paths: ClipPaths, stereo_format: str, flows: list[dict],
                 checked: list[dict]):
    """Writes the chosen format, then removes the other one. Returns the written path."""
    if stereo_format == "pickle":
        output, stale = save_pickle(flows, paths.flows_stereo), paths.stereo_compact
    else:
        output = save_stereo_compact(paths.stereo_compact, np.stack([f["fwd"] for f in checked]),
                                     np.stack([f["valid"] for f in checked]))
        stale = paths.flows_stereo
    stale.unlink(missing_ok=True)
    return output


def output_paths(paths: ClipPaths) -> list[Path]:
    """Every file this stage may write (its stale temporaries are removed when it starts)."""
    return stage_output_paths(paths, PROVENANCE_STAGE)


def _fusion_inputs(paths: ClipPaths, config: StereoConfig, backend: str, num_frames: int,
                   width: int) -> dict:
    """Keyword arguments of the ``sgbm`` backend's multi-frame fusion: the clip's rectified
    left cameras (``camera2world`` of ``<vid>.npz``) and the focal length; {} when the fusion
    is off or not applicable (other backends). Without cameras the fusion is switched off
    with one warning line (recorded in the provenance as ``fusion: off``)."""
    if backend != "sgbm" or not (config.sgbm.fusion_radius_frames or config.sgbm.temporal_refine):
        return {}
    if not paths.npz.is_file():
        print(f"warning: {paths.npz} not found: no cameras, so the multi-frame stereo fusion is "
              f"off (run estimate_cameras.py first, or pass --fusion_radius=0)")
        return {}
    meta = load_dataset_npz(paths.npz, required=())  # an unreadable or inconsistent npz: error
    if "camera2world" not in meta:
        print(f"warning: {paths.npz} has no camera2world: the multi-frame stereo fusion is off")
        return {}
    camera2world = meta["camera2world"]
    check_frame_counts(paths.vid, {paths.left_video.name: num_frames,
                                   f"{paths.npz.name} camera2world": len(camera2world)})
    return {"camera2world": np.asarray(camera2world, np.float64)[:, :3, :4],
            "focal_px": focal_length_px(config.hfov_deg, width)}


def run(config: StereoConfig) -> dict:
    """Runs the stage. Returns a summary dict (frames, backend, timings, output path)."""
    paths = config.paths
    start_stage(paths, PROVENANCE_STAGE)
    timer = Timer()
    with timer("decode"):
        left, right = read_stereo_pair(paths)
    num_frames, height, width = left.shape[:3]
    with timer("load_backend"):
        entry, backend = STEREO_BACKENDS.build(config.backend, path=config.path, url=config.url,
                                               device=config.device, sgbm=config.sgbm)
    fusion = _fusion_inputs(paths, config, entry.name, num_frames, width)
    with timer("stereo"):
        flows = backend.compute_flows(left, right, **fusion)
    flows = [{"fwd": np.asarray(f["fwd"], np.float32), "bwd": np.asarray(f["bwd"], np.float32)}
             for f in flows]
    validate_flows(flows, num_frames, height, width)
    with timer("depth_check"):
        checked = [{"fwd": f["fwd"], "valid": stereo_valid_mask(f["fwd"], f["bwd"])}
                   for f in flows]
        health = stereo_health(depth_maps_from_flows(checked, config.hfov_deg, False) > 0)
    valid_fraction = health.figures["valid_depth_fraction"]
    health.enforce(f"{paths.left_video.name} and {paths.right_video.name}")
    paths.provenance(PROVENANCE_STAGE).unlink(missing_ok=True)  # outputs change from here on
    with timer("write"):
        output = _write_flows(paths, config.stereo_format, flows, checked)
    timings = {**timer.seconds, "total": timer.total_s}
    summary = {
        "frames": num_frames,
        "frame_size": [width, height],
        "backend": entry.name,
        "valid_depth_fraction": valid_fraction,
        "output": str(output),
        "stereo_format": config.stereo_format,
        "output_mb": output.stat().st_size / 1e6,
        "timings_s": timings,
        "fusion": bool(fusion),
    }
    write_provenance(paths.provenance(PROVENANCE_STAGE), stage=PROVENANCE_STAGE,
                     backend=entry.name, settings=backend.settings(), timings_s=timings,
                     frames=num_frames, frame_size=[width, height],
                     valid_depth_fraction=valid_fraction, stereo_format=config.stereo_format,
                     output_mb=summary["output_mb"], fusion="on" if fusion else "off",
                     **health.record())
    fps = num_frames / max(timings["stereo"], 1e-9)
    print(f"stereo ({entry.name}): {num_frames} frames {width}x{height} in {timings['total']:.1f} s "
          f"({fps:.2f} frames/s matching), valid depth {valid_fraction:.1%} -> {output} "
          f"({summary['output_mb']:.1f} MB)")
    return summary
