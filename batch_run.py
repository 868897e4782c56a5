"""Runs the pipeline on many clips, resumably, on a local process pool or a Ray cluster.

Example: python batch_run.py --vids=clips.txt --workers=2
"""

import sys

from stereo4d.commands.batch_run import main, run_cli_status

__all__ = ["main", "run_cli_status"]

if __name__ == "__main__":
    sys.exit(run_cli_status(main))
