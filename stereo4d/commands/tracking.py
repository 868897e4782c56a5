"""Step 4/6: dense 2D point tracks (BootsTAPIR, or the classical chained-flow tracker offline).

Example: python tracking.py --vid=9876543210b_66957
"""

import sys

from stereo4d.backends.tracking import TRACKING_BACKENDS
from stereo4d.cli import add_backend_args, float_in_range, int_in_range, run_cli, stage_parser
from stereo4d.queries import QueryConfig
from stereo4d.stages import tracking


def main(argv=None):
    parser = stage_parser(__doc__.splitlines()[0])
    add_backend_args(parser, TRACKING_BACKENDS)
    parser.add_argument("--chunk_size", type=int_in_range(1), default=None, help="queries per network call")
    parser.add_argument("--query_stride_frames", type=int_in_range(1), default=10, help="a query grid every N frames")
    parser.add_argument("--grid_stride_px", type=int_in_range(1), default=4, help="query grid spacing, px")
    parser.add_argument("--prune_radius_px", type=float_in_range(0.0), default=1.0,
                        help="drop a query this close to a kept visible track")
    parser.add_argument("--seed", type=int_in_range(0), default=0, help="query jitter / display sample seed")
    parser.add_argument("--query_points", default=None,
                        help=".npy of [N, 3] (t, y, x) px: track exactly these points "
                             "(no query grid, no pruning)")
    parser.add_argument("--viz_tracks", type=int_in_range(0), default=tracking.VIZ_TRACKS, help="tracks drawn")
    parser.add_argument("--skip_video", action="store_true", help="do not write <vid>-tapir_2d.mp4")
    args = parser.parse_args(argv)
    tracking.run(tracking.TrackingConfig(
        vid=args.vid, output_folder=args.output_folder, backend=args.backend, path=args.path,
        device=args.device, chunk_size=args.chunk_size,
        queries=QueryConfig(query_stride_frames=args.query_stride_frames,
                            grid_stride_px=args.grid_stride_px,
                            prune_radius_px=args.prune_radius_px, seed=args.seed),
        query_points=args.query_points, viz_tracks=args.viz_tracks, write_video=not args.skip_video))


def cli() -> None:
    """Console entry point: exits with ``run_cli``'s status (2 on bad input)."""
    sys.exit(run_cli(main))
