"""Renders the synthetic VR180 clip with exact ground truth (raw video, dataset npz, gt npz).

Example: python make_synthetic_clip.py --vid=synthetic_street_1000000 --num_frames=48
"""

import sys

from stereo4d.cli import run_cli
from stereo4d.commands.make_synthetic_clip import main

__all__ = ["main", "run_cli"]

if __name__ == "__main__":
    sys.exit(run_cli(main))
