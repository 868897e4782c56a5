"""Step 6/6: optimise the 3D tracks along their camera rays (paper Eq. 5), export the clip's npz.

Example: python track_optimization.py --vid=9876543210b_66957
"""

import sys

from stereo4d.cli import float_in_range, hfov_deg, int_in_range, run_cli, stage_parser
from stereo4d.stages import optimization
from stereo4d.track_opt import TrackOptConfig


def main(argv=None):
    parser = stage_parser(__doc__.splitlines()[0])
    parser.add_argument("--hfov", type=hfov_deg, default=60.0, help="horizontal fov, degrees")
    parser.add_argument("--gt_folder", default=None,
                        help="synthetic ground truth <vid>.npz: score the tracks before/after")
    parser.add_argument("--skip_videos", action="store_true", help="write only the pkl and npz")
    parser.add_argument("--dynamic_edges", default="inside", choices=["inside", "clamp"],
                        help="second differences past the clip ends: dropped (inside) or edge-"
                             "clamped as in the reference (clamp; biases moving tracks)")
    parser.add_argument("--jax_cache_dir", default=None,
                        help="JAX persistent compilation cache (compile once per machine, not per "
                             "clip); default $STEREO4D_JAX_CACHE or ~/.cache/stereo4d/jax; 'none' "
                             "turns it off")
    parser.add_argument("--fill_gaps", default="true", choices=["true", "false"],
                        help="fill frames where a track is visible in 2D but has no optimised "
                             "3D point from its optimised frames (false: as the reference)")
    parser.add_argument("--fill_min_lifted_frames", type=int_in_range(0),
                        default=optimization.FILL_MIN_LIFTED_FRAMES,
                        help="with --fill_gaps, also fill tracks that have no optimised frame "
                             "but at least this many frames of valid depth, from their lifted "
                             "points (0: leave them empty)")
    parser.add_argument("--fill_max_extrapolation_frames", type=int_in_range(-1),
                        default=optimization.FILL_MAX_EXTRAPOLATION_FRAMES,
                        help="with --fill_gaps, fill a moving track at most this many frames "
                             "before its first / after its last optimised frame (-1: no limit)")
    parser.add_argument("--snap_static", default="true", choices=["true", "false"],
                        help="give a static track its mean optimised point in every frame "
                             "(removes the 2D tracks' sub-pixel noise from static points; "
                             "false: one point per frame on its ray, as the reference)")
    parser.add_argument("--max_static_reprojection_px", type=float_in_range(0.0),
                        default=optimization.MAX_STATIC_REPROJECTION_PX,
                        help="with --snap_static or --fill_gaps, drop a static track's point from "
                             "the frames where it projects farther than this (px) from the 2D "
                             "track: an occlusion or drift the tracker missed (0: keep all)")
    parser.add_argument("--smooth_moving", type=float_in_range(0.0),
                        default=optimization.SMOOTH_MOVING,
                        help="smoothness (1/m^2) of the moving tracks' paths along their rays over "
                             "optimised, seeded and filled frames together, weighted by the "
                             "stereo depth's noise (0: off, as the reference)")
    parser.add_argument("--smooth_lateral", type=float_in_range(0.0),
                        default=optimization.SMOOTH_LATERAL,
                        help="with --smooth_moving, smoothness (1/m^2) of the moving tracks' "
                             "paths across their rays (the 2D tracker's noise; each point's "
                             "distance along its ray kept), weighted by 1/distance^2 (0: off)")
    parser.add_argument("--surface_cut_log_depth", type=float_in_range(0.0),
                        default=optimization.SURFACE_CUT_LOG_DEPTH,
                        help="with --snap_static or --fill_gaps, cut a track (its later frames "
                             "made not visible) where its stereo depth leaves the depth its "
                             "query's surface predicts by more than this log ratio for good: the "
                             "2D track slid onto another surface (0: off)")
    parser.add_argument("--surface_cut_anchor_frames", type=int_in_range(-1),
                        default=optimization.SURFACE_CUT_ANCHOR_FRAMES,
                        help="with --snap_static or --fill_gaps, cut a track's frames on a side "
                             "of its query frame whose first valid depth is more than this many "
                             "frames from it (-1: off)")
    args = parser.parse_args(argv)
    optimization.run(optimization.OptimizationConfig(
        vid=args.vid, npz_folder=args.npz_folder, output_folder=args.output_folder,
        gt_folder=args.gt_folder, hfov_deg=args.hfov, write_videos=not args.skip_videos,
        fill_gaps=args.fill_gaps == "true", snap_static=args.snap_static == "true",
        fill_min_lifted_frames=args.fill_min_lifted_frames,
        max_static_reprojection_px=args.max_static_reprojection_px,
        smooth_moving=args.smooth_moving, smooth_lateral=args.smooth_lateral,
        surface_cut_log_depth=args.surface_cut_log_depth,
        surface_cut_anchor_frames=(None if args.surface_cut_anchor_frames < 0
                                   else args.surface_cut_anchor_frames),
        fill_max_extrapolation_frames=(None if args.fill_max_extrapolation_frames < 0
                                       else args.fill_max_extrapolation_frames),
        track_opt=TrackOptConfig(dynamic_edges=args.dynamic_edges),
        jax_cache_dir=args.jax_cache_dir))


def cli() -> None:
    """Console entry point: exits with ``run_cli``'s status (2 on bad input)."""
    sys.exit(run_cli(main))
