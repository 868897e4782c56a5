"""See a clip in 3D: log it to Rerun (recording, desktop or web viewer) and/or export PLY clouds.

Examples:
  python view.py --vid=synthvr180demo_66667 --save=demo.rrd
  python view.py --npz=stereo4d_dataset/npz/<vid>.npz --video=<vid>-left_rectified.mp4 --spawn
  python view.py --vid=synthvr180demo_66667 --serve          # web viewer, loopback
  python view.py --vid=synthvr180demo_66667 --ply_folder=ply/
"""

import argparse
import sys

from stereo4d.cli import CommandParser, hfov_deg, int_in_range, run_cli, vid_arg
from stereo4d.viz.trails import TRAIL_FRAMES
from stereo4d.viz.viewer import DEFAULT_MAX_TRACKS, ViewerConfig, run

#: Largest TCP port number.
MAX_PORT = 65535


def main(argv=None):
    parser = CommandParser(description=__doc__.splitlines()[0], epilog=__doc__.split(
        "\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_argument_group("input (either --vid, or --npz and --video)")
    source.add_argument("--vid", default=None, type=vid_arg,
                        help="clip id <video_id>_<timestamp_us> of this project's outputs")
    source.add_argument("--output_folder", default="stereo4d_dataset/processed",
                        help="outputs of --vid are read from <output_folder>/<vid>/")
    source.add_argument("--npz", default=None, help="a released-format npz (published dataset)")
    source.add_argument("--video", default=None, help="its left rectified video")
    source.add_argument("--hfov", type=hfov_deg, default=60.0,
                        help="horizontal fov of the rectified views, degrees (default 60)")
    out = parser.add_argument_group("outputs (at least one)")
    out.add_argument("--save", default=None, help="write the recording to this .rrd file")
    out.add_argument("--spawn", action="store_true", help="open the desktop viewer")
    out.add_argument("--serve", action="store_true",
                     help="serve the web viewer (and the data over gRPC); runs until Ctrl-C")
    out.add_argument("--bind", default="127.0.0.1",
                     help="address the web page and data servers of --serve listen on "
                          "(default loopback; use an SSH tunnel from another machine)")
    out.add_argument("--grpc_port", type=int_in_range(1, MAX_PORT), default=9876, help="gRPC port (--serve, --spawn)")
    out.add_argument("--web_port", type=int_in_range(1, MAX_PORT), default=9090, help="web viewer port (--serve)")
    out.add_argument("--ply_folder", default=None,
                     help="write frame_<t>.ply per frame and static_scene.ply here (all tracks)")
    out.add_argument("--preview", default=None,
                     help="write a still of one frame, laid out as the viewer, to this .png "
                          "(drawn without a display)")
    out.add_argument("--preview_frame", type=int_in_range(0), default=None,
                     help="frame of --preview (default: the middle one)")
    size = parser.add_argument_group("what is logged (recording size)")
    size.add_argument("--max_tracks", "--subsample_tracks", type=int_in_range(0), default=DEFAULT_MAX_TRACKS,
                      help=f"log at most this many tracks, chosen at random; 0 = all "
                           f"(default {DEFAULT_MAX_TRACKS})")
    size.add_argument("--frame_stride", type=int_in_range(1), default=1, help="log every k-th frame")
    size.add_argument("--trails", default="moving", choices=["moving", "all", "none"],
                      help="which tracks get trails (default moving)")
    size.add_argument("--trail_frames", type=int_in_range(1), default=TRAIL_FRAMES,
                      help=f"trail length in frames (default {TRAIL_FRAMES})")
    size.add_argument("--no_depth", action="store_true", help="leave out the depth images")
    size.add_argument("--no_removed", action="store_true",
                      help="leave out the tracks the filter removed")
    size.add_argument("--seed", type=int_in_range(0), default=0, help="seed of the track subset")
    args = parser.parse_args(argv)
    run(ViewerConfig(
        vid=args.vid, npz=args.npz, video=args.video, output_folder=args.output_folder,
        hfov_deg=args.hfov, save=args.save, spawn=args.spawn, serve=args.serve,
        bind_ip=args.bind, grpc_port=args.grpc_port, web_port=args.web_port,
        max_tracks=args.max_tracks, frame_stride=args.frame_stride, trails=args.trails,
        trail_frames=args.trail_frames, depth=not args.no_depth, removed=not args.no_removed,
        ply_folder=args.ply_folder, preview=args.preview, preview_frame=args.preview_frame,
        seed=args.seed))


def cli() -> None:
    """Console entry point: exits with ``run_cli``'s status (2 on bad input)."""
    sys.exit(run_cli(main))


if __name__ == "__main__":
    cli()
