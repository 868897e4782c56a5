"""Step 5/6: drop sky tracks, static-class boundary tracks and drifting static-class tracks.

Example: python segmentation.py --vid=9876543210b_66957
"""

import sys

from stereo4d.cli import run_cli
from stereo4d.commands.segmentation import main

__all__ = ["main", "run_cli"]

if __name__ == "__main__":
    sys.exit(run_cli(main))
