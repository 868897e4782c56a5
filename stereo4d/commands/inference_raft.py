"""Step 3/6: stereo flows of the rectified views -> <vid>-stereo.npz (SEA-RAFT, or SGBM offline).

Example: python inference_raft.py --vid=9876543210b_66957
"""

import sys

from stereo4d.backends.classical_stereo import SgbmSettings
from stereo4d.backends.sgbm_matching import SGBM_MODES
from stereo4d.backends.stereo import STEREO_BACKENDS
from stereo4d.cli import add_backend_args, float_in_range, int_in_range, run_cli, stage_parser
from stereo4d.stages import stereo


def main(argv=None):
    parser = stage_parser(__doc__.splitlines()[0])
    add_backend_args(parser, STEREO_BACKENDS)
    parser.add_argument("--url", default=stereo.StereoConfig.url,
                        help="Hugging Face Hub repo of the SEA-RAFT checkpoint (when no --path)")
    defaults = SgbmSettings()
    parser.add_argument("--max_disparity", type=int_in_range(1), default=defaults.max_disparity_px,
                        help="sgbm: largest disparity searched, px")
    parser.add_argument("--block_size", type=int_in_range(1), default=defaults.block_size_px,
                        help="sgbm: matching window side, px (odd)")
    parser.add_argument("--sgbm_mode", default=defaults.mode, choices=list(SGBM_MODES),
                        help="sgbm: OpenCV variant (hh/hh4: more paths, slower)")
    parser.add_argument("--refine_iterations", type=int_in_range(0), default=defaults.refine_iterations,
                        help="sgbm: sub-pixel refinement steps (0: off)")
    parser.add_argument("--refine_window", type=int_in_range(1), default=defaults.refine_window_px,
                        help="sgbm: refinement window side, px (odd)")
    parser.add_argument("--max_relative_noise", type=float_in_range(0.0), default=defaults.max_relative_noise,
                        help="sgbm: reject pixels whose predicted disparity noise exceeds this "
                             "fraction of their disparity (0: keep all)")
    parser.add_argument("--noise_threshold_exponent", type=float_in_range(0.0),
                        default=defaults.noise_threshold_exponent,
                        help="sgbm: on a clip whose median left-right disagreement exceeds "
                             "clean video's (compressed video), multiply --max_relative_noise "
                             "by (clean / measured) ** this (0: off; 0.25 trades density for "
                             "AbsRel)")
    parser.add_argument("--fusion_radius", type=int_in_range(0),
                        default=defaults.fusion_radius_frames,
                        help="sgbm: fuse each frame's disparities with those of the frames up to "
                             "this far before and after it, using the clip's cameras "
                             "(camera2world of <vid>.npz; static surfaces gain, moving objects "
                             "fail the consistency test); 0: off, every frame on its own")
    parser.add_argument("--temporal_refine", default="true", choices=["true", "false"],
                        help="sgbm: after the fusion, refine each frame's disparities with the "
                             "frames 6 and 12 before and after it (the camera's own motion as "
                             "a wider baseline; static surfaces, needs the clip's cameras)")
    parser.add_argument("--noisy_smooth_base", type=int_in_range(0),
                        default=defaults.noisy_smooth_base_px,
                        help="sgbm: on a clip whose median left-right disagreement exceeds "
                             "clean video's (low-bitrate video), centre the temporal sweep on "
                             "the stereo disparity averaged over this window, px (odd; 0: off)")
    parser.add_argument("--stereo_format", default=stereo.StereoConfig.stereo_format,
                        choices=list(stereo.STEREO_FORMATS),
                        help="compact: <vid>-stereo.npz (forward flow to 1/1024 px and the "
                             "match checks' validity, compressed); pickle: the reference's "
                             "<vid>-flows_stereo.pkl (float32 fwd and bwd flows, ~14x larger)")
    parser.add_argument("--fill", action="store_true",
                        help="sgbm: fill rejected pixels with the row's background disparity")
    args = parser.parse_args(argv)
    try:
        sgbm = SgbmSettings(max_disparity_px=args.max_disparity, block_size_px=args.block_size,
                            mode=args.sgbm_mode, refine_iterations=args.refine_iterations,
                            refine_window_px=args.refine_window,
                            max_relative_noise=args.max_relative_noise, fill=args.fill,
                            noise_threshold_exponent=args.noise_threshold_exponent,
                            fusion_radius_frames=args.fusion_radius,
                            temporal_refine=args.temporal_refine == "true",
                            noisy_smooth_base_px=args.noisy_smooth_base)
    except ValueError as exc:
        parser.error(str(exc))
    stereo.run(stereo.StereoConfig(
        vid=args.vid, npz_folder=args.npz_folder, output_folder=args.output_folder,
        backend=args.backend, path=args.path, url=args.url, device=args.device, sgbm=sgbm,
        stereo_format=args.stereo_format))


def cli() -> None:
    """Console entry point: exits with ``run_cli``'s status (2 on bad input)."""
    sys.exit(run_cli(main))
