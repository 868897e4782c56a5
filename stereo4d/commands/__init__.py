"""Command-line entry points: the top-level scripts and the ``stereo4d-*`` console commands."""
