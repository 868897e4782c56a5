"""Step 0/6: estimate camera poses and rig rectification from a stereo video (no npz needed).

Writes <npz_folder>/<vid>.npz in the released format (timestamps, camera2world, rectified2rig,
fov_bounds, empty tracks) from <raw_video_folder>/<video_id>.mp4 alone, with COLMAP (pycolmap,
the `cameras` extra). Example: python estimate_cameras.py --vid=myvideo_0 --num_frames=48
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from stereo4d.cli import MAX_IMAGE_SIDE_PX, float_in_range, int_in_range, run_cli, stage_parser
from stereo4d.io import InputError


def _fov_bounds(text: str) -> tuple[float, float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4:
        raise InputError(f"--fov_bounds must be START_YAW,END_YAW,START_TILT,END_TILT in degrees, "
                         f"got {text!r}")
    return values


def main(argv: Sequence[str] | None = None) -> dict:
    from stereo4d.stages import cameras

    parser = stage_parser(__doc__.splitlines()[0], raw_video=True)
    parser.add_argument("--num_frames", type=int_in_range(1), default=None,
                        help="frames to take from the vid's timestamp on (default: to the end)")
    parser.add_argument("--frame_stride", type=int_in_range(1), default=1, help="take every N-th frame")
    parser.add_argument("--fov_bounds", default=",".join(f"{v:g}" for v in
                                                         cameras.VR180_FOV_BOUNDS_DEG),
                        help="START_YAW,END_YAW,START_TILT,END_TILT of each equirect eye, "
                             "degrees (synthetic clips: -50,50,-50,50)")
    parser.add_argument("--input_mode", default="vr180", choices=["vr180", "perspective"],
                        help="vr180: side-by-side equirect eyes; perspective: side-by-side "
                             "pinhole eyes (needs --focal_px)")
    parser.add_argument("--baseline", type=float_in_range(0.0, low_open=True), default=cameras.DEFAULT_BASELINE_M,
                        help="distance between the eyes, metres (the metric scale)")
    parser.add_argument("--focal_px", type=float_in_range(0.0, low_open=True), default=None,
                        help="perspective mode: focal length of each eye in pixels")
    parser.add_argument("--crop_hfov", type=float_in_range(0.0, 180.0, high_open=True), default=0.0,
                        help="vr180 mode: FoV of the perspective crop COLMAP sees, degrees "
                             "(0: the largest that fits, at most 90)")
    parser.add_argument("--crop_size", type=int_in_range(16, MAX_IMAGE_SIDE_PX), default=640, help="vr180 mode: crop side, px")
    parser.add_argument("--max_features", type=int_in_range(64), default=cameras.CamerasConfig.max_features,
                        help="SIFT features per crop")
    parser.add_argument("--match_overlap", type=int_in_range(1),
                        default=cameras.CamerasConfig.match_overlap_frames,
                        help="match each frame with this many following frames")
    parser.add_argument("--force", action="store_true", help="overwrite an existing npz")
    args = parser.parse_args(argv)
    config = cameras.CamerasConfig(
        vid=args.vid, npz_folder=args.npz_folder, raw_video_folder=args.raw_video_folder,
        output_folder=args.output_folder, num_frames=args.num_frames,
        frame_stride=args.frame_stride, fov_bounds_deg=_fov_bounds(args.fov_bounds),
        input_mode=args.input_mode, baseline_m=args.baseline, focal_px=args.focal_px,
        crop_hfov_deg=args.crop_hfov, crop_size_px=args.crop_size,
        max_features=args.max_features, match_overlap_frames=args.match_overlap, force=args.force)
    return cameras.run(config)


def cli() -> None:
    """Console entry point: exits with ``run_cli``'s status (2 on bad input)."""
    sys.exit(run_cli(main))


if __name__ == "__main__":
    cli()
