"""Step 4/6: dense 2D point tracks (BootsTAPIR, or the classical chained-flow tracker offline).

Example: python tracking.py --vid=9876543210b_66957
"""

import sys

from stereo4d.cli import run_cli
from stereo4d.commands.tracking import main

__all__ = ["main", "run_cli"]

if __name__ == "__main__":
    sys.exit(run_cli(main))
