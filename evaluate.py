"""Scores every stage of a synthetic clip against its ground truth: one table, one JSON.

Example: python evaluate.py --vid=synthvr180demo_66667 --json=report.json
"""

import sys

from stereo4d.cli import run_cli
from stereo4d.commands.evaluate import main

__all__ = ["main", "run_cli"]

if __name__ == "__main__":
    sys.exit(run_cli(main))
