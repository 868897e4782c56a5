"""Renders the synthetic VR180 clip with exact ground truth (raw video, dataset npz, gt npz).

Example: python make_synthetic_clip.py --vid=synthetic_street_1000000 --num_frames=48
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from stereo4d.cli import MAX_IMAGE_SIDE_PX, float_in_range, int_in_range, run_cli, stage_parser
from stereo4d.io import ClipPaths

#: Smallest equirect eye (px) the renderer is asked for: below this the views are meaningless.
MIN_EYE_SIZE_PX = 16


def main(argv: Sequence[str] | None = None) -> dict:
    from stereo4d.synthetic import SyntheticClipConfig, make_synthetic_clip

    parser = stage_parser(__doc__.splitlines()[0], raw_video=True, gt=True)
    defaults = SyntheticClipConfig()
    parser.add_argument("--num_frames", type=int_in_range(1), default=defaults.num_frames)
    parser.add_argument("--seed", type=int_in_range(0), default=defaults.seed)
    parser.add_argument("--eye_height", type=float_in_range(0.0, low_open=True), default=defaults.eye_height_m, help="metres")
    parser.add_argument(
        "--eye_size",
        type=int_in_range(MIN_EYE_SIZE_PX, MAX_IMAGE_SIDE_PX),
        default=defaults.eye_size_px,
        help="pixels per side of each equirect eye",
    )
    args = parser.parse_args(argv)
    paths = ClipPaths(
        args.vid, args.npz_folder, args.raw_video_folder, args.output_folder, args.gt_folder
    )
    config = SyntheticClipConfig(
        num_frames=args.num_frames,
        seed=args.seed,
        eye_height_m=args.eye_height,
        eye_size_px=args.eye_size,
    )
    summary = make_synthetic_clip(paths, config)
    print(json.dumps(summary, indent=2))
    return summary


def cli() -> None:
    """Console entry point: exits with ``run_cli``'s status (2 on bad input)."""
    sys.exit(run_cli(main))
