"""The deeplab backend end to end on a tiny frozen TF1 graph with the official tensor names.

The test builds a graph (placeholder ``ImageTensor`` uint8 [1, h, w, 3] -> colour thresholds ->
int64 ``SemanticPredictions`` [1, h, w]), packs it as ``frozen_inference_graph.pb`` into a
tar.gz like the official export, and runs the stage's backend registry on it.
"""

from __future__ import annotations

import io
import os
import tarfile

import numpy as np
import pytest

if os.environ.get("CI"):  # run_tests.sh installs the [tf] extra: CI must run these tests
    import tensorflow as tf
else:
    tf = pytest.importorskip("tensorflow", reason="needs the [tf] extra")

from stereo4d import ade20k
from stereo4d.backends.deeplab import resize_for_deeplab
from stereo4d.backends.segmentation import SEGMENTATION_BACKENDS
from stereo4d.weights import CheckpointError, WeightsNotFoundError
from stereo4d.weights.deeplab import find_deeplab_model, read_frozen_graph_bytes

BLUE_MIN = 150
"""Test graph: blue > BLUE_MIN and red < RED_MAX -> sky; red > RED_MIN -> building; else 0."""
RED_MAX = 100
RED_MIN = 200


def _graph_bytes() -> bytes:
    graph = tf.Graph()
    with graph.as_default():
        image = tf.compat.v1.placeholder(tf.uint8, [1, None, None, 3], name="ImageTensor")
        rgb = tf.cast(image, tf.int32)
        red, blue = rgb[..., 0], rgb[..., 2]
        sky = tf.logical_and(blue > BLUE_MIN, red < RED_MAX)
        building = red > RED_MIN
        zeros = tf.zeros_like(red, dtype=tf.int64)
        inner = tf.where(building, zeros + ade20k.BUILDING, zeros)
        labels = tf.where(sky, zeros + ade20k.SKY, inner)
        tf.identity(labels, name="SemanticPredictions")
    return graph.as_graph_def().SerializeToString()


def _expected(frame: np.ndarray) -> np.ndarray:
    red, blue = frame[..., 0].astype(int), frame[..., 2].astype(int)
    return np.where((blue > BLUE_MIN) & (red < RED_MAX), ade20k.SKY,
                    np.where(red > RED_MIN, ade20k.BUILDING, 0))


@pytest.fixture(scope="module")
def graph_bytes() -> bytes:
    return _graph_bytes()


@pytest.fixture(scope="module")
def tarball(tmp_path_factory, graph_bytes):
    path = tmp_path_factory.mktemp("deeplab") / "deeplabv3_xception_ade20k_train_2018_05_29.tar.gz"
    data = graph_bytes
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("deeplabv3_xception_ade20k_train/frozen_inference_graph.pb")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        readme = b"not a graph"
        info = tarfile.TarInfo("deeplabv3_xception_ade20k_train/model.ckpt.index")
        info.size = len(readme)
        tar.addfile(info, io.BytesIO(readme))
    return path


def _blocky_video(num_frames: int = 2, imh: int = 40, imw: int = 56) -> np.ndarray:
    """Large flat colour blocks (so LANCZOS resizing keeps their colours inside)."""
    video = np.zeros((num_frames, imh, imw, 3), np.uint8)
    video[:, : imh // 2] = (40, 90, 230)  # sky blue
    video[:, imh // 2 :, : imw // 2] = (230, 120, 60)  # red-ish building
    video[:, imh // 2 :, imw // 2 :] = (90, 160, 80)  # green: other
    video[1, :, -8:] = (240, 40, 40)  # frame 1: a red strip
    return video


def test_tarball_member_is_found(tarball, graph_bytes):
    assert read_frozen_graph_bytes(tarball) == graph_bytes
    assert find_deeplab_model(tarball.parent, download=False) == tarball


def test_deeplab_backend_labels_blocks(tarball):
    entry, segmenter = SEGMENTATION_BACKENDS.build("deeplab", path=str(tarball), progress=False)
    assert entry.name == "deeplab"
    video = _blocky_video()
    labels = segmenter.segment(video)
    assert labels.shape == video.shape[:3] and labels.dtype == np.int32
    expected = np.stack([_expected(f) for f in video])
    # Away from block edges (LANCZOS rings a little there) the labels are exact.
    interior = np.ones(video.shape[:3], bool)
    interior[:, 17:23] = False
    interior[:, :, 25:31] = False
    interior[:, :, -11:-5] = False
    np.testing.assert_array_equal(labels[interior], expected[interior])
    sky_share = 0.5 * (1 + 48 / 56) / 2  # top half; frame 1 loses its last 8 columns
    assert (labels == ade20k.SKY).mean() == pytest.approx(sky_share, abs=0.02)
    assert np.all(labels[1, :, -4:] == ade20k.BUILDING)


def test_resize_matches_reference_rule():
    frame = np.zeros((512, 512, 3), np.uint8)
    assert resize_for_deeplab(frame).shape == (513, 513, 3)
    frame = np.zeros((300, 600, 3), np.uint8)  # ratio min(513/300, 513/600) = 0.855
    assert resize_for_deeplab(frame).shape == (256, 513, 3)


def test_auto_uses_deeplab_when_model_found(tarball):
    entry = SEGMENTATION_BACKENDS.resolve("auto", path=str(tarball))
    assert entry.name == "deeplab"


def test_missing_and_bad_model(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        find_deeplab_model(tmp_path / "nope.tar.gz", download=False)
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(bad, "w:gz") as tar:
        info = tarfile.TarInfo("model.ckpt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(CheckpointError, match="frozen_inference_graph"):
        read_frozen_graph_bytes(bad)


def test_garbage_graph_is_a_checkpoint_error(tmp_path):
    from stereo4d.backends.deeplab import DeepLabSegmenter

    with pytest.raises(CheckpointError, match="frozen graph"):
        DeepLabSegmenter(b"\x00not a graph\xff" * 10, progress=False)
    (tmp_path / "dir.pb").mkdir()
    with pytest.raises(CheckpointError, match="cannot read"):
        read_frozen_graph_bytes(tmp_path / "dir.pb")
