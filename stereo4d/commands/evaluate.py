"""Scores every stage of a synthetic clip against its ground truth: one table, one JSON.

Example: python evaluate.py --vid=synthvr180demo_66667 --json=report.json
"""

import sys

from stereo4d.cli import command_parser, hfov_deg, run_cli, vid_arg
from stereo4d.evaluation import EvaluationConfig, evaluate_clip, format_table
from stereo4d.io import save_json


def main(argv=None):
    parser = command_parser(__doc__.splitlines()[0])
    parser.add_argument("--vid", required=True, type=vid_arg,
                        help="clip id <video_id>_<timestamp_us>")
    parser.add_argument("--npz_folder", default="stereo4d_dataset/npz")
    parser.add_argument("--output_folder", default="stereo4d_dataset/processed")
    parser.add_argument("--gt_folder", default="stereo4d_dataset/gt")
    parser.add_argument("--hfov", type=hfov_deg, default=60.0, help="hfov of the rectified views")
    parser.add_argument("--json", default=None, help="write the flat report here")
    args = parser.parse_args(argv)
    report = evaluate_clip(EvaluationConfig(args.vid, args.npz_folder, args.output_folder,
                                            args.gt_folder, args.hfov))
    print(format_table(report))
    if args.json:
        save_json(report, args.json)
        print(f"\nreport written to {args.json}")


def cli() -> None:
    """Console entry point: exits with ``run_cli``'s status (2 on bad input)."""
    sys.exit(run_cli(main))
