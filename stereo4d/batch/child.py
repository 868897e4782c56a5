"""``python -m stereo4d.batch.child <command module> [flags]``: a stage command under the runner.

Arranges to die with its launcher (``die_with_parent``), then runs the command's ``cli()``
exactly as ``python -m <command module> [flags]`` would (same flags, exit status, messages).
"""

from __future__ import annotations

import importlib
import sys

from stereo4d.batch.task import die_with_parent


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: python -m stereo4d.batch.child <command module> [flags]")
    die_with_parent()
    module = sys.argv[1]
    if not module.startswith("stereo4d.commands."):
        sys.exit(f"error: not a stereo4d command module: {module}")
    sys.argv = [module, *sys.argv[2:]]
    importlib.import_module(module).cli()


if __name__ == "__main__":
    main()
