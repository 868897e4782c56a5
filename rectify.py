"""Step 2/6: extract frames at the npz timestamps, rectify each eye, crop 512x512 60-degree views.

Example: python rectify.py --vid=9876543210b_66957
"""

import sys

from stereo4d.cli import run_cli
from stereo4d.commands.rectify import main

__all__ = ["main", "run_cli"]

if __name__ == "__main__":
    sys.exit(run_cli(main))
