"""Backends: the interchangeable algorithms behind each neural stage.

Each stage has one registry (``stereo4d.backends.registry.Registry``), defined in
that stage's backend module (e.g. ``stereo4d.backends.stereo.STEREO_BACKENDS``),
listing a neural backend (weights needed) and a classical one (no weights).
"""
