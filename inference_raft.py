"""Step 3/6: stereo flows of the rectified views -> <vid>-stereo.npz (SEA-RAFT, or SGBM offline).

Example: python inference_raft.py --vid=9876543210b_66957
"""

import sys

from stereo4d.cli import run_cli
from stereo4d.commands.inference_raft import main

__all__ = ["main", "run_cli"]

if __name__ == "__main__":
    sys.exit(run_cli(main))
