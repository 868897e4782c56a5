"""DeepLabv3 ADE20K segmenter: runs the official TensorFlow 1 frozen graph on each frame.

Pre/post-processing as the reference's ``DeepLabModel.run``: the RGB frame is resized with
PIL LANCZOS so that it fits in 513 x 513 (scale ``min(513 / H, 513 / W)``, sizes truncated to
integers; a 512 x 512 frame becomes 513 x 513), fed as uint8 [1, h, w, 3] to
``ImageTensor:0``; ``SemanticPredictions:0`` [1, h, w] is resized back to H x W with
nearest-neighbour interpolation (OpenCV). The predicted indices are ADE20K ids as they are
(0 = other, 3 = sky; see ``stereo4d.ade20k``).

TensorFlow is an optional dependency (``pip install -e .[tf]``), imported only when a
segmenter is built.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from stereo4d.weights import CheckpointError, WeightsNotFoundError
from stereo4d.weights.deeplab import find_deeplab_model, read_frozen_graph_bytes

__all__ = [
    "INPUT_SIZE_PX",
    "INPUT_TENSOR",
    "OUTPUT_TENSOR",
    "DeepLabSegmenter",
    "build_deeplab_segmenter",
    "deeplab_unavailable_reason",
    "resize_for_deeplab",
]

INPUT_TENSOR = "ImageTensor:0"
OUTPUT_TENSOR = "SemanticPredictions:0"
INPUT_SIZE_PX = 513
"""The frame is scaled to fit in a square of this side before inference."""


def _import_tensorflow():
    """``tensorflow`` (quiet logging), or a clear error naming the extra to install."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise WeightsNotFoundError(
            "the deeplab backend needs TensorFlow: pip install -e .[tf] (tensorflow-cpu)"
        ) from exc
    return tf


def resize_for_deeplab(frame_rgb: np.ndarray, input_size_px: int = INPUT_SIZE_PX) -> np.ndarray:
    """uint8 [H, W, 3] -> uint8 [h, w, 3] fitting in ``input_size_px``², PIL LANCZOS."""
    imh, imw = frame_rgb.shape[:2]
    ratio = min(input_size_px / imh, input_size_px / imw)
    size_wh = (int(ratio * imw), int(ratio * imh))
    return np.asarray(Image.fromarray(frame_rgb).convert("RGB").resize(size_wh, Image.LANCZOS))


class DeepLabSegmenter:
    """Per-frame ADE20K labels from a frozen DeepLab graph.

    Args:
      graph_bytes: serialized ``GraphDef`` (``stereo4d.weights.deeplab.read_frozen_graph_bytes``).
      num_threads: TensorFlow intra/inter-op threads (0 = TensorFlow's default).
      progress: show a progress bar over frames.
    """

    name = "deeplab"

    def __init__(self, graph_bytes: bytes, num_threads: int = 0, progress: bool = True):
        tf = _import_tensorflow()
        self.graph = tf.Graph()
        try:
            graph_def = tf.compat.v1.GraphDef.FromString(graph_bytes)
            with self.graph.as_default():
                tf.compat.v1.import_graph_def(graph_def, name="")
        except Exception as exc:  # protobuf and TensorFlow raise many types for bad graphs
            raise CheckpointError(f"not a usable TensorFlow frozen graph: {exc}") from exc
        config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=num_threads,
                                          inter_op_parallelism_threads=num_threads)
        self.session = tf.compat.v1.Session(graph=self.graph, config=config)
        self.progress = progress

    def segment_frame(self, frame_rgb: np.ndarray) -> np.ndarray:
        """uint8 [H, W, 3] RGB -> int32 [H, W] ADE20K ids."""
        imh, imw = frame_rgb.shape[:2]
        resized = resize_for_deeplab(np.asarray(frame_rgb, dtype=np.uint8))
        predictions = self.session.run(OUTPUT_TENSOR, feed_dict={INPUT_TENSOR: resized[None]})
        labels = np.asarray(predictions[0]).astype(np.int32)
        return cv2.resize(labels, (imw, imh), interpolation=cv2.INTER_NEAREST)

    def segment(self, video_rgb: np.ndarray, depth_m: np.ndarray | None = None,
                cameras: object | None = None) -> np.ndarray:
        """uint8 [T, H, W, 3] -> int32 [T, H, W] ADE20K ids (depth and cameras are unused)."""
        frames = tqdm(video_rgb, desc="deeplab", unit="frame", disable=not self.progress)
        return np.stack([self.segment_frame(frame) for frame in frames]).astype(np.int32)

    def close(self) -> None:
        self.session.close()


def deeplab_unavailable_reason(path: str | Path | None = None, **_: object) -> str | None:
    """None when TensorFlow is installed and a model is found locally, else why not."""
    if importlib.util.find_spec("tensorflow") is None:
        return "TensorFlow is not installed (pip install -e .[tf])"
    try:
        find_deeplab_model(path, download=False)
    except WeightsNotFoundError as exc:
        return str(exc)
    return None


def build_deeplab_segmenter(path: str | Path | None = None, download: bool = True,
                            num_threads: int = 0, progress: bool = True, **_: object
                            ) -> DeepLabSegmenter:
    """Finds (or downloads) the frozen graph and loads it into a TensorFlow session."""
    model_path = find_deeplab_model(path, download=download)
    return DeepLabSegmenter(read_frozen_graph_bytes(model_path), num_threads=num_threads,
                            progress=progress)
