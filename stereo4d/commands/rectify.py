"""Step 2/6: extract frames at the npz timestamps, rectify each eye, crop 512x512 60-degree views.

Example: python rectify.py --vid=9876543210b_66957
"""

import sys

from stereo4d.cli import MAX_IMAGE_SIDE_PX, hfov_deg, int_in_range, run_cli, stage_parser
from stereo4d.stages import rectify


def main(argv=None):
    parser = stage_parser(__doc__.splitlines()[0], raw_video=True)
    parser.add_argument("--output_hfov", type=hfov_deg, default=60.0, help="perspective hfov, degrees, in (0, 180)")
    parser.add_argument("--output_height", type=int_in_range(1, MAX_IMAGE_SIDE_PX), default=512, help="perspective height, px")
    parser.add_argument("--output_width", type=int_in_range(1, MAX_IMAGE_SIDE_PX), default=512, help="perspective width, px")
    parser.add_argument("--min_equirect_height", type=int_in_range(0), default=rectify.VR180_MIN_HEIGHT_PX,
                        help="refuse lower equirect videos (VR180 check); 0 turns it off")
    parser.add_argument("--skip_equirect_videos", action="store_true",
                        help="do not write the raw/rectified equirect videos")
    parser.add_argument("--equirect_preset", default=rectify.EQUIRECT_PRESET,
                        choices=["ultrafast", "superfast", "veryfast", "faster", "fast", "medium"],
                        help="x264 preset of the two equirect videos (the perspective views keep "
                             "'veryfast'); faster = larger files at the same crf")
    args = parser.parse_args(argv)
    rectify.run(rectify.RectifyConfig(
        vid=args.vid, npz_folder=args.npz_folder, raw_video_folder=args.raw_video_folder,
        output_folder=args.output_folder, output_hfov_deg=args.output_hfov,
        output_height=args.output_height, output_width=args.output_width,
        min_equirect_height=args.min_equirect_height,
        write_equirect=not args.skip_equirect_videos, equirect_preset=args.equirect_preset))


def cli() -> None:
    """Console entry point: exits with ``run_cli``'s status (2 on bad input)."""
    sys.exit(run_cli(main))
