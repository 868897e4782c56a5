"""See a clip in 3D: log it to Rerun (recording, desktop or web viewer) and/or export PLY clouds.

Example: python view.py --vid=synthvr180demo_66667 --save=demo.rrd
"""

import sys

from stereo4d.cli import run_cli
from stereo4d.commands.view import main

__all__ = ["main", "run_cli"]

if __name__ == "__main__":
    sys.exit(run_cli(main))
