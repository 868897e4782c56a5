"""Step 5/6: drop sky tracks, static-class boundary tracks and drifting static-class tracks.

Example: python segmentation.py --vid=9876543210b_66957
"""

import sys

from stereo4d.backends.segmentation import SEGMENTATION_BACKENDS
from stereo4d.cli import (
    add_backend_args,
    float_in_range,
    hfov_deg,
    int_in_range,
    run_cli,
    stage_parser,
)
from stereo4d.filtering import STAGE_BOUNDARY_MARGIN, STAGE_DRIFT_THRESHOLD_PX, TRACE_FRAMES
from stereo4d.stages import filtering


def main(argv=None):
    parser = stage_parser(__doc__.splitlines()[0])
    parser.add_argument("--hfov", type=hfov_deg, default=60.0, help="horizontal fov, degrees")
    add_backend_args(parser, SEGMENTATION_BACKENDS)
    parser.add_argument("--drift_threshold_px", type=float_in_range(0.0, low_open=True),
                        default=STAGE_DRIFT_THRESHOLD_PX,
                        help="scene motion (px) above which a static-class track is drifting "
                             "(the reference's: 5)")
    parser.add_argument("--boundary_margin", type=float_in_range(0.0, 0.5),
                        default=STAGE_BOUNDARY_MARGIN,
                        help="a track is a boundary track when its share of static-class frames "
                             "is strictly between this and 1 - this (the reference's: 0)")
    parser.add_argument("--trace_frames", type=int_in_range(1), default=TRACE_FRAMES,
                        help="frames of history of the scene-motion displacement and trails")
    args = parser.parse_args(argv)
    filtering.run(filtering.FilteringConfig(
        vid=args.vid, npz_folder=args.npz_folder, output_folder=args.output_folder,
        hfov_deg=args.hfov, backend=args.backend, path=args.path,
        drift_threshold_px=args.drift_threshold_px, trace_frames=args.trace_frames,
        boundary_margin=args.boundary_margin))


def cli() -> None:
    """Console entry point: exits with ``run_cli``'s status (2 on bad input)."""
    sys.exit(run_cli(main))
