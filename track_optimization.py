"""Step 6/6: optimise the 3D tracks along their camera rays (paper Eq. 5), export the clip's npz.

Example: python track_optimization.py --vid=9876543210b_66957
"""

import sys

from stereo4d.cli import run_cli
from stereo4d.commands.track_optimization import main

__all__ = ["main", "run_cli"]

if __name__ == "__main__":
    sys.exit(run_cli(main))
