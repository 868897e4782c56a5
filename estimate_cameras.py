"""Step 0/6: estimate camera poses and rig rectification from a stereo video (no npz needed).

Example: python estimate_cameras.py --vid=myvideo_0 --num_frames=48
"""

import sys

from stereo4d.cli import run_cli
from stereo4d.commands.estimate_cameras import main

__all__ = ["main", "run_cli"]

if __name__ == "__main__":
    sys.exit(run_cli(main))
