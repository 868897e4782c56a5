"""Stereo4D: VR180 stereo video to dynamic 3D point tracks."""

__version__ = "0.1.0"
