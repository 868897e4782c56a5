"""Synthetic VR180 stereo clip with exact ground truth (scene, renderer, clip writer, oracle)."""

from stereo4d.synthetic.clip import SyntheticClipConfig, SyntheticOracle, render_view
from stereo4d.synthetic.render import trace
from stereo4d.synthetic.scene import ADE20K, Scene, SceneVariation, build_scene
from stereo4d.synthetic.writer import make_synthetic_clip

__all__ = [
    "ADE20K",
    "Scene",
    "SceneVariation",
    "SyntheticClipConfig",
    "SyntheticOracle",
    "build_scene",
    "make_synthetic_clip",
    "render_view",
    "trace",
]
