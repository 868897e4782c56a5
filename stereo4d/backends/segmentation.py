"""Segmentation backends of the filtering stage (``segmentation.py --backend``).

Every backend is an object with
``segment(video_rgb [T, H, W, 3] uint8, depth_m [T, H, W] | None, cameras | None)
-> labels [T, H, W] int32`` holding ADE20K ids (``stereo4d.ade20k``).

``auto`` picks ``deeplab`` when TensorFlow imports and the frozen-graph tarball is found
locally (``--path`` or the weights cache), else the weight-free ``classical`` segmenter.
"""

from __future__ import annotations

from stereo4d.backends.registry import BackendEntry, Registry

__all__ = ["SEGMENTATION_BACKENDS"]


def _deeplab_unavailable(**options: object) -> str | None:
    from stereo4d.backends.deeplab import deeplab_unavailable_reason

    return deeplab_unavailable_reason(**options)


SEGMENTATION_BACKENDS = Registry("segmentation")
SEGMENTATION_BACKENDS.register(BackendEntry(
    name="deeplab",
    target="stereo4d.backends.deeplab:build_deeplab_segmenter",
    description="DeepLabv3-Xception ADE20K frozen graph (TensorFlow, weights)",
    needs_weights=True,
    availability=_deeplab_unavailable,
))
SEGMENTATION_BACKENDS.register(BackendEntry(
    name="classical",
    target="stereo4d.backends.classical_segmenter:build_classical_segmenter",
    description="weight-free sky / static-surface labels from stereo depth, texture, "
                "position and multi-view depth consistency",
))
