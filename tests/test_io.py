"""Dataset npz round trip, safe pickles, atomic writes, paths, video I/O."""

import os
import pickle

import numpy as np
import pytest

from stereo4d import io as sio
from stereo4d import videoio


def _clip_arrays(rng, n=7, t=5):
    track3d = rng.normal(size=(n, t, 3)).astype(np.float32).astype(np.float64)
    visible = rng.random((n, t)) > 0.3
    track3d[~visible] = np.nan
    c2w = np.tile(np.hstack([np.eye(3), [[0.0], [0.0], [0.0]]]), (t, 1, 1))
    c2w[:, 2, 3] = np.arange(t) * 0.1
    return track3d, visible, c2w


def test_dataset_npz_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(1)
    track3d, visible, c2w = _clip_arrays(rng)
    path = tmp_path / "abc_123.npz"
    kwargs = {"name": "abc_123", "video_id": "abc", "timestamps_us": np.arange(5) * 33333 + 123,
                  "camera2world": c2w, "rectified2rig": np.stack([np.eye(3)] * 2),
                  "fov_bounds_deg": np.array([-90.0, 90.0, -90.0, 90.0])}
    sio.save_dataset_npz(path, track3d=track3d, **kwargs)
    with np.load(path) as z:
        assert sorted(z.files) == sorted(sio.DATASET_KEYS)
        assert z["track_coordinates"].shape == (visible.sum(), 3)
    data = sio.load_dataset_npz(path)
    np.testing.assert_array_equal(np.isnan(data["track3d"][..., 0]), ~visible)
    np.testing.assert_array_equal(data["track3d"][visible], track3d[visible])
    assert data["meta_fov"]["end_yaw_in_degrees"] == 90.0
    # extrs_rectified is the inverse of camera2world.
    w2c = data["extrs_rectified"]
    assert np.allclose(w2c[:, 2, 3], -np.arange(5) * 0.1)
    # Save what we loaded: byte-identical arrays.
    path2 = tmp_path / "again.npz"
    sio.save_dataset_npz(path2, track3d=data["track3d"], **kwargs)
    with np.load(path) as a, np.load(path2) as b:
        for k in sio.DATASET_KEYS:
            np.testing.assert_array_equal(a[k], b[k])


def test_load_dataset_npz_errors(tmp_path):
    with pytest.raises(sio.InputError, match="missing npz"):
        sio.load_dataset_npz(tmp_path / "nope.npz")
    np.savez(tmp_path / "partial.npz", name="x", timestamps=np.arange(3))
    with pytest.raises(sio.InputError, match="camera2world"):
        sio.load_dataset_npz(tmp_path / "partial.npz")
    (tmp_path / "garbage.npz").write_bytes(b"not a zip")
    with pytest.raises(sio.InputError, match="cannot read"):
        sio.load_dataset_npz(tmp_path / "garbage.npz")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_restricted_pickle_refuses_code_and_reads_arrays(tmp_path):
    obj = [{"fwd": np.ones((2, 3, 2), np.float32), "bwd": np.zeros((2, 3, 2))}, {"k": (1, 2.5, "s")}]
    sio.save_pickle(obj, tmp_path / "ok.pkl")
    back = sio.load_pickle(tmp_path / "ok.pkl")
    np.testing.assert_array_equal(back[0]["fwd"], obj[0]["fwd"])
    assert back[1]["k"] == (1, 2.5, "s")
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(sio.InputError, match="refusing"):
        sio.load_pickle(tmp_path / "evil.pkl")


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.pkl"
    with pytest.raises(RuntimeError), sio.atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_clip_paths_and_vid_parsing():
    paths = sio.ClipPaths("my_video_id_66957")
    assert paths.video_id == "my_video_id"
    assert str(paths.raw_video) == "stereo4d_dataset/raw/my_video_id.mp4"
    assert str(paths.left_video) == (
        "stereo4d_dataset/processed/my_video_id_66957/my_video_id_66957-left_rectified.mp4")
    with pytest.raises(sio.InputError):
        sio.ClipPaths("no-timestamp")


def test_video_round_trip_and_seek(tmp_path):
    frames = np.zeros((12, 48, 64, 3), np.uint8)
    frames[:] = (np.arange(12) * 20)[:, None, None, None]
    path = tmp_path / "v.mp4"
    videoio.write_video(path, frames)
    info = videoio.probe_video(path)
    assert (info.width, info.height, info.num_frames) == (64, 48, 12)
    back = videoio.read_video(path)
    assert back.shape == frames.shape and np.abs(back.astype(int) - frames).max() <= 3
    first = next(videoio.iter_video_frames(path, start_frame=7))
    assert abs(float(first.mean()) - 140) <= 3
    with pytest.raises(sio.InputError):
        videoio.probe_video(tmp_path / "missing.mp4")
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(sio.InputError):
        videoio.read_video(tmp_path / "bad.mp4")


def test_stereo_flows_are_checked_for_their_layout(tmp_path):
    """A flows pickle of the wrong layout is an InputError (not a KeyError in a later stage)."""
    flows = [{"fwd": np.full((2, 3, 2), t, np.float32), "bwd": np.zeros((2, 3, 2))} for t in range(2)]
    sio.save_pickle(flows, tmp_path / "ok.pkl")
    back = sio.load_stereo_flows(tmp_path / "ok.pkl")
    assert len(back) == 2 and back[1]["fwd"][0, 0, 0] == 1.0
    bad = {
        "no_bwd": [{"fwd": np.zeros((2, 3, 2))}],
        "not_a_list": {"fwd": np.zeros((2, 3, 2)), "bwd": np.zeros((2, 3, 2))},
        "sizes_differ": [{"fwd": np.zeros((2, 3, 2)), "bwd": np.zeros((2, 4, 2))}],
        "not_two_channels": [{"fwd": np.zeros((2, 3)), "bwd": np.zeros((2, 3))}],
    }
    for name, obj in bad.items():
        sio.save_pickle(obj, tmp_path / f"{name}.pkl")
        with pytest.raises(sio.InputError, match=name + ".pkl"):
            sio.load_stereo_flows(tmp_path / f"{name}.pkl")


def test_malformed_json_and_segmentation_are_input_errors(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(sio.InputError, match="bad.json"):
        sio.load_json(tmp_path / "bad.json")
    np.savez(tmp_path / "seg.npz", labels=np.zeros((1, 2, 2), np.uint8))  # no 'kept'
    with pytest.raises(sio.InputError, match="seg.npz"):
        sio.load_segmentation(tmp_path / "seg.npz")
    sio.save_segmentation(tmp_path / "ok.npz", np.full((1, 2, 2), 3), np.array([True, False]))
    labels, kept = sio.load_segmentation(tmp_path / "ok.npz")
    assert labels.dtype == np.uint8 and labels.sum() == 12 and kept.tolist() == [True, False]


def test_compact_stereo_round_trip_error_bounds(tmp_path):
    """<vid>-stereo.npz: flows within half their frame's step, validity exact."""
    rng = np.random.default_rng(3)
    fwd = np.stack([rng.uniform(-30.0, 0.0, (3, 6, 9)), rng.normal(0.0, 0.5, (3, 6, 9))], -1)
    fwd = fwd.astype(np.float32)
    fwd[1, 0, 0, 0] = -300.0  # frame 1 needs a coarser step: 1/64 px holds 300 px in int16
    fwd[2, 0, 0, 0] = -2000.0  # frame 2: 1/16 px
    valid = rng.random((3, 6, 9)) > 0.2
    path = sio.save_stereo_compact(tmp_path / "c-stereo.npz", fwd, valid)
    with np.load(path) as z:
        np.testing.assert_array_equal(z["step_px"], [1 / 1024, 1 / 64, 1 / 16])
    back = sio.load_stereo_flows(path)
    assert len(back) == 3 and set(back[0]) == {"fwd", "valid"}
    assert back[0]["fwd"].dtype == np.float32
    for frame, (step, original) in enumerate(zip([1 / 1024, 1 / 64, 1 / 16], fwd, strict=True)):
        error = np.abs(back[frame]["fwd"] - original)
        assert 0 < error.max() <= step / 2  # never a wrapped int16
    assert back[2]["fwd"][0, 0, 0] == -2000.0
    np.testing.assert_array_equal(np.stack([f["valid"] for f in back]), valid)
    # Unreadable or foreign files are input errors naming the file.
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    np.savez(tmp_path / "other.npz", fwd_delta_x=np.zeros((1, 2, 3, 2)), step_px=[0.5],
             valid=np.ones((1, 2, 3), bool), version=sio.STEREO_COMPACT_VERSION)
    for name in ("junk", "other", "missing"):
        with pytest.raises(sio.InputError, match=f"{name}.npz"):
            sio.load_stereo_flows(tmp_path / f"{name}.npz")


def test_stereo_output_prefers_the_compact_file(tmp_path):
    paths = sio.ClipPaths("abc_123", output_folder=tmp_path)
    assert paths.stereo_output == paths.stereo_compact  # neither: the default format's name
    sio.save_pickle([], paths.flows_stereo)
    assert paths.stereo_output == paths.flows_stereo
    sio.save_stereo_compact(paths.stereo_compact, np.zeros((1, 2, 3, 2)), np.ones((1, 2, 3), bool))
    assert paths.stereo_output == paths.stereo_compact
