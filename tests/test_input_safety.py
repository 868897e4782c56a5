"""Issue 10: what the pipeline refuses, one validation path per kind of input.

Pickles (an exact allow-list, never code), the dataset npz (finite rigid poses, ordered
timestamps, consistent track counts), clip ids (no paths), flag ranges, rectify's frames per
timestamp, the optimiser's output, and evaluate with nothing to score.
"""

import os
import pickle
import struct
import subprocess
import sys

import numpy as np
import pytest

from stereo4d import io as sio

# ------------------------------------------------------------------------------ pickles

PROTOCOLS = (2, 3, 4, 5)


def _str(text: str) -> bytes:
    """BINUNICODE: a str in any protocol >= 1."""
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def _int(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)  # BININT


def _global(module: str, name: str, proto: int) -> bytes:
    if proto >= 4:
        return _str(module) + _str(name) + b"\x93"  # STACK_GLOBAL
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"  # GLOBAL


def _call(func: bytes, *args) -> bytes:
    """``func(*args)`` (args: str, int or already-encoded bytes) via MARK ... TUPLE REDUCE."""
    encoded = [_str(a) if isinstance(a, str) else _int(a) if isinstance(a, int) else a
               for a in args]
    return func + b"(" + b"".join(encoded) + b"tR"


def _wrap(body: bytes, proto: int, nest: str) -> bytes:
    """A full pickle of ``body``, alone or nested in a dict / list of other values."""
    if nest == "dict":  # {'fwd': <array>, 'bwd': body}
        body = (b"}" + _str("fwd") + pickle.dumps(np.ones(2), protocol=proto)[2:-1]
                + _str("bwd") + body + b"s")
    elif nest == "list":  # [1, [body]]
        body = b"](" + _int(1) + b"](" + body + b"ee"
    return b"\x80" + bytes([proto]) + body + b"."


def _marker_code(marker) -> str:
    return f"open({str(marker)!r}, 'w').close()"


def hostile_payloads(marker):
    """(label, body builder(proto)) of pickles that would run code (touch ``marker``)."""
    code = _marker_code(marker)
    py = f"import pathlib; pathlib.Path({str(marker)!r}).touch()"
    return {
        "os.system": lambda p: _call(_global("os", "system", p), f"touch {marker}"),
        "posix.system": lambda p: _call(_global("posix", "system", p), f"touch {marker}"),
        "subprocess.getoutput": lambda p: _call(_global("subprocess", "getoutput", p),
                                                f"touch {marker}"),
        "builtins.eval": lambda p: _call(_global("builtins", "eval", p), code),
        "builtins.exec": lambda p: _call(_global("builtins", "exec", p), py),
        "__builtin__.eval": lambda p: _call(_global("__builtin__", "eval", p), code),
        "builtins.open": lambda p: _call(_global("builtins", "open", p), str(marker), "w"),
        "builtins.getattr": lambda p: _call(
            _call(_global("builtins", "getattr", p),
                  _call(_global("builtins", "__import__", p), "os"), "system"),
            f"touch {marker}"),
        "numpy.save": lambda p: _call(_global("numpy", "save", p), str(marker), 0),
        "numpy.load": lambda p: _call(_global("numpy", "load", p), str(marker)),
        "numpy.testing": lambda p: _call(_global("numpy.testing", "assert_", p), 1),
        "numpy.core.multiarray.fromfile": lambda p: _call(
            _global("numpy.core.multiarray", "fromfile", p), str(marker)),
        "numpy._core.multiarray.fromfile": lambda p: _call(
            _global("numpy._core.multiarray", "fromfile", p), str(marker)),
        # Dotted names (protocol 4+ walks attributes): the module's builtins dict's ``get``
        # hands out eval. The old allow-list admitted any name under numpy.dtypes.
        "dotted numpy.dtypes.__builtins__": lambda p: _call(
            _call(_global("numpy.dtypes", "__builtins__.get", p), "eval"), code),
        "dotted numpy.ndarray.__reduce__": lambda p: _call(
            _global("numpy", "ndarray.__reduce__.__globals__", p)),
        "dotted collections.OrderedDict": lambda p: _call(
            _call(_global("collections", "OrderedDict.__init__.__globals__.get", p), "eval"),
            code),
        "dotted numpy.core._reconstruct": lambda p: _call(
            _call(_global("numpy.core.multiarray", "_reconstruct.__globals__.get", p), "eval"),
            code),
        "numpy.dtypes wildcard": lambda p: _call(_global("numpy.dtypes", "StringDType", p)),
        "numpy *DType wildcard": lambda p: _call(_global("numpy", "Float32DType", p)),
        "_codecs.decode": lambda p: _call(_global("_codecs", "decode", p), "x", "rot13"),
        "copyreg._reconstructor": lambda p: _call(_global("copyreg", "_reconstructor", p)),
    }


PAYLOAD_LABELS = list(hostile_payloads("m"))


def test_the_dotted_payload_is_live(tmp_path):
    """The payload the old allow-list admitted really runs code under a plain unpickler."""
    marker = tmp_path / "ran"
    data = _wrap(hostile_payloads(marker)["dotted numpy.dtypes.__builtins__"](4), 4, "none")
    code = "import pickle, sys; pickle.loads(open(sys.argv[1], 'rb').read())"
    (tmp_path / "p.pkl").write_bytes(data)
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "p.pkl")], check=False,
                   capture_output=True)
    assert marker.exists()


@pytest.mark.parametrize("proto", PROTOCOLS)
@pytest.mark.parametrize("nest", ["none", "dict", "list"])
def test_no_hostile_pickle_runs_code(tmp_path, proto, nest):
    marker = tmp_path / "ran"
    for label, build in hostile_payloads(marker).items():
        path = tmp_path / f"{label.replace(' ', '_')}.pkl"
        path.write_bytes(_wrap(build(proto), proto, nest))
        for loader in (sio.load_pickle, sio.load_stereo_flows, sio.load_tracks_2d):
            with pytest.raises(sio.InputError) as info:
                loader(path)
            assert str(path) in str(info.value), label
            assert "refusing" in str(info.value), (label, str(info.value))
        assert not marker.exists(), label


def test_hostile_pickle_made_by_pickle_dumps_is_refused(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    for proto in PROTOCOLS:
        path = tmp_path / f"evil{proto}.pkl"
        path.write_bytes(pickle.dumps({"tracks": [Evil()]}, protocol=proto))
        with pytest.raises(sio.InputError, match="refusing"):
            sio.load_pickle(path)
    assert not marker.exists()


def _valid_objects():
    return [
        np.arange(12, dtype=np.float32).reshape(3, 4),
        np.ones((3, 2), order="F"), np.ones((4, 4))[::2, 1:],
        np.array([True, False]), np.array(["ab", "c"]), np.array([b"x", b"yz"]),
        np.array([1 + 2j]), np.ones(3, ">f8"), np.zeros(2, dtype=[("a", "f4"), ("b", "i8", (2,))]),
        np.array(["2020-01-01"], dtype="datetime64[D]"), np.array([1, "a", None], dtype=object),
        np.float32(1.5), np.int64(-3), np.bool_(True), np.dtype("f2"), np.array(2.5),
        {1, 2}, frozenset([3]), complex(1, 2), b"bytes", b"", bytearray(b"ba"), slice(1, 5, 2),
        {"nested": [(1, 2.5, "s", None), {"k": np.zeros((0, 3))}]},
    ]


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_valid_pickles_round_trip(tmp_path, proto):
    import collections

    objects = [*_valid_objects(), collections.OrderedDict(a=np.ones(2))]
    path = tmp_path / "ok.pkl"
    path.write_bytes(pickle.dumps(objects, protocol=proto))
    back = sio.load_pickle(path)
    expected = pickle.loads(path.read_bytes())  # what an unrestricted loader makes of it
    assert len(back) == len(objects)
    for a, b in zip(expected, back):
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b)
        elif isinstance(a, dict):
            assert a.keys() == b.keys()
        else:
            assert a == b and type(a) is type(b)


def test_truncated_pickle_names_the_file(tmp_path):
    path = tmp_path / "cut.pkl"
    path.write_bytes(pickle.dumps([np.ones((4, 4))], protocol=5)[:40])
    with pytest.raises(sio.InputError, match=str(path)):
        sio.load_pickle(path)


@pytest.mark.parametrize("value, expected", [
    (7, "expected a list"), ({"fwd": 1}, "expected a list"), ([], "no frames"),
    ([{"fwd": np.ones((2, 2, 2)), "bwd": "x"}], r"\['bwd'\] must be an array"),
    ([{"fwd": np.ones((2, 2, 2)), "bwd": np.full((2, 2, 2), np.nan)}], "non-finite"),
    ([{"fwd": np.ones((2, 2, 3)), "bwd": np.ones((2, 2, 3))}], r"\[H, W, 2\]"),
])
def test_stereo_flows_of_the_wrong_type_or_shape(tmp_path, value, expected):
    path = tmp_path / "flows.pkl"
    sio.save_pickle(value, path)
    with pytest.raises(sio.InputError, match=expected) as info:
        sio.load_stereo_flows(path)
    assert str(path) in str(info.value)


def _tracks(n=3, t=4):
    return {"tracks": np.ones((n, t, 2), np.float32), "visibles": np.ones((n, t), bool),
            "query_points": np.zeros((n, 3), np.int32)}


@pytest.mark.parametrize("change, expected", [
    (lambda d: 5, "expected a dict"),
    (lambda d: [d], "expected a dict"),
    (lambda d: {k: v for k, v in d.items() if k != "visibles"}, "missing key"),
    (lambda d: {**d, "tracks": "abc"}, "'tracks' must be an array"),
    (lambda d: {**d, "tracks": np.ones((3, 4, 3))}, r"'tracks' must be \[N, T, 2\]"),
    (lambda d: {**d, "visibles": np.ones((3, 5), bool)}, r"'visibles' must be \[3, 4\]"),
    (lambda d: {**d, "query_points": np.zeros((2, 3))}, r"'query_points' must be \[3, 3\]"),
    (lambda d: {**d, "tracks": np.full((3, 4, 2), np.nan, np.float32)}, "non-finite visible"),
    (lambda d: {**d, "query_points": np.full((3, 3), 9)}, r"in \[0, 4\)"),
])
def test_tracks_2d_of_the_wrong_type_or_shape(tmp_path, change, expected):
    from stereo4d.tracks import Tracks2D

    path = tmp_path / "tracks.pkl"
    sio.save_pickle(change(_tracks()), path)
    with pytest.raises(sio.InputError, match=expected) as info:
        Tracks2D.load(path)
    assert str(path) in str(info.value)


def test_tracks_2d_loader_accepts_valid_and_empty(tmp_path):
    from stereo4d.tracks import Tracks2D

    data = _tracks()
    data["tracks"][0, 1] = np.nan
    data["visibles"][0, 1] = False  # hidden points may be anything
    sio.save_pickle(data, tmp_path / "a.pkl")
    assert Tracks2D.load(tmp_path / "a.pkl").num_tracks == 3
    sio.save_pickle({"tracks": np.zeros((0,)), "visibles": np.zeros((0,)),
                     "query_points": np.zeros((0,))}, tmp_path / "b.pkl")
    assert Tracks2D.load(tmp_path / "b.pkl").num_tracks == 0


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_hostile_tapir_npy_checkpoint_is_refused(tmp_path, proto):
    from stereo4d.weights import CheckpointError
    from stereo4d.weights import tapir as tapir_weights

    marker = tmp_path / "ran"
    for label, build in hostile_payloads(marker).items():
        path = tmp_path / "evil.npy"
        with open(path, "wb") as f:
            np.lib.format.write_array_header_1_0(
                f, {"descr": "|O", "fortran_order": False, "shape": ()})
            f.write(_wrap(build(proto), proto, "dict"))
        with pytest.raises(CheckpointError, match="refusing") as info:
            tapir_weights.read_tapir_state_dict(path)
        assert str(path) in str(info.value), label
        assert not marker.exists(), label


# ------------------------------------------------------------------------- dataset npz

T = 5


def _clip_arrays():
    from stereo4d import geometry

    rots = np.stack([geometry.rotation_xyz_deg(3 * t, -2 * t, t) for t in range(T)])
    c2w = np.concatenate([rots, np.arange(T * 3, dtype=float).reshape(T, 3, 1)], axis=-1)
    track3d = np.random.default_rng(0).normal(size=(4, T, 3))
    track3d[1, 2] = np.nan
    return {"name": "c_1", "video_id": "c", "timestamps_us": 1000 + 33333 * np.arange(T),
            "camera2world": c2w, "track3d": track3d,
            "rectified2rig": np.stack([geometry.rotation_xyz_deg(1, 2, 3), np.eye(3)]),
            "fov_bounds_deg": np.array([-90.0, 90.0, -90.0, 90.0])}


def _save_raw(path, **changes):
    """Saves the released layout, then overwrites raw npz fields (``None`` drops one)."""
    sio.save_dataset_npz(path, **_clip_arrays())
    with np.load(path) as z:
        data = {k: z[k] for k in z.files}
    for key, value in changes.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    np.savez(path, **data)
    return path


def _c2w(change):
    c2w = _clip_arrays()["camera2world"].copy()
    change(c2w)
    return c2w


def _set(index, value):
    def change(a):
        a[index] = value
    return change


NPZ_CASES = {
    "nan pose": ({"camera2world": _c2w(_set((3, 0, 3), np.nan))},
                 r"'camera2world' has non-finite values \(frame 3"),
    "inf rotation": ({"camera2world": _c2w(_set((1, 1, 1), np.inf))}, r"non-finite.*frame 1"),
    "scaled pose": ({"camera2world": _c2w(lambda a: a.__setitem__((2, slice(None), slice(0, 3)),
                                                                a[2, :, :3] * 1.01))},
                    "'camera2world' frame 2 is not a rigid pose"),
    "mirrored pose": ({"camera2world": _c2w(lambda a: a.__setitem__((4, 0, slice(0, 3)),
                                                                  -a[4, 0, :3]))},
                      "frame 4 is not a rigid pose"),
    "pose shape": ({"camera2world": np.zeros((T, 3, 3))}, r"'camera2world' must be \[T, 3, 4\]"),
    "pose count": ({"camera2world": _clip_arrays()["camera2world"][:-1]},
                   "'camera2world' has 4 poses but 'timestamps' has 5"),
    "pose strings": ({"camera2world": np.full((T, 3, 4), "a")}, "'camera2world' must be"),
    "rig not rotation": ({"rectified2rig": np.stack([np.eye(3) * 1.2, np.eye(3)])},
                         r"'rectified2rig' \[left\] is not a rotation"),
    "rig shape": ({"rectified2rig": np.eye(3)}, r"'rectified2rig' must be \[2, 3, 3\]"),
    "fov nan": ({"fov_bounds": np.array([-90.0, np.nan, -90, 90])}, "'fov_bounds' must be 4 finite"),
    "fov order": ({"fov_bounds": np.array([90.0, -90, -90, 90])}, "'fov_bounds'.*ordered"),
    "fov range": ({"fov_bounds": np.array([-90.0, 90, -100, 90])}, "'fov_bounds'.*ordered"),
    "fov shape": ({"fov_bounds": np.zeros(3)}, "'fov_bounds' must be 4"),
    "timestamps fractional": ({"timestamps": np.arange(T) * 1.5},
                              r"'timestamps' must be whole numbers \(element 1"),
    "timestamps strings": ({"timestamps": np.array(["0"] * T)}, "'timestamps' must be integers"),
    "timestamps repeated": ({"timestamps": np.array([0, 5, 5, 9, 10])},
                            r"strictly increasing \(frame 2"),
    "timestamps decreasing": ({"timestamps": np.array([0, 5, 4, 9, 10])},
                              r"strictly increasing \(frame 2"),
    "timestamps negative": ({"timestamps": np.arange(T) - 3}, "non-negative"),
    "timestamps 2-D": ({"timestamps": np.zeros((T, 1), int)}, r"non-empty \[T\]"),
    "timestamps empty": ({"timestamps": np.zeros(0, int)}, r"non-empty \[T\]"),
    "track counts": ({"track_lengths": np.array([5, 5, 5, 5])}, "track counts disagree"),
    "negative length": ({"track_lengths": np.array([-1, 5, 9, 6])}, "track counts disagree"),
    "index past end": ({"track_indices": np.full(19, 7)}, r"'track_indices' must be frames in \[0, 5\)"),
    "coords nan": ({"track_coordinates": np.full((19, 3), np.nan, np.float32)},
                   "'track_coordinates' has non-finite"),
    "coords shape": ({"track_coordinates": np.zeros((19, 2), np.float32)},
                     r"'track_coordinates' must be \[M, 3\]"),
    "lengths float": ({"track_lengths": np.array([5.0, 4, 5, 5])}, "'track_lengths' must be integers"),
    "one track key": ({"track_indices": None}, r"missing key\(s\): track_indices"),
}


def test_valid_npz_passes(tmp_path):
    data = sio.load_dataset_npz(_save_raw(tmp_path / "ok.npz"))
    assert data["track3d"].shape == (4, T, 3) and np.isnan(data["track3d"][1, 2]).all()


def test_whole_float_timestamps_pass_as_integers(tmp_path):
    """Microseconds stored as float64 whole numbers are the same stamps: read as int64."""
    stamps = np.arange(T) * 33333.0 + 1e6
    data = sio.load_dataset_npz(_save_raw(tmp_path / "f.npz", timestamps=stamps))
    assert data["timestamps"].dtype == np.int64
    np.testing.assert_array_equal(data["timestamps"], stamps.astype(np.int64))


@pytest.mark.parametrize("case", list(NPZ_CASES))
def test_bad_npz_field_is_named_with_file_and_frame(tmp_path, case):
    changes, expected = NPZ_CASES[case]
    path = _save_raw(tmp_path / "bad.npz", **changes)
    with pytest.raises(sio.InputError, match=expected) as info:
        sio.load_dataset_npz(path)
    assert str(path) in str(info.value)


# ------------------------------------------------------------------------- clip ids

BAD_VIDS = ["../..", "../.._1", "/abs/path_123", "a/b_1", "..", "x_1/../../y_2", "", "_1",
            "abc", "abc_", "abc_12a", "vidé_1", "ab c_1", "a\\b_1", "a.b_1", "~_1", "a" * 130 + "_1",
            "abc_1\n", "abc_１"]


@pytest.mark.parametrize("vid", BAD_VIDS)
def test_path_like_or_malformed_vids_are_refused(vid):
    with pytest.raises(sio.InputError, match="--vid must look like"):
        sio.split_vid(vid)
    with pytest.raises(sio.InputError):
        sio.ClipPaths(vid)


@pytest.mark.parametrize("vid, parts", [
    ("abc_1", ("abc", "1")), ("-dQw4w9WgXc_66957", ("-dQw4w9WgXc", "66957")),
    ("synthetic_street_1000000", ("synthetic_street", "1000000")), ("A-b_c-9_0", ("A-b_c-9", "0")),
])
def test_released_vids_are_accepted(vid, parts):
    assert sio.split_vid(vid) == parts
    paths = sio.ClipPaths(vid, "n", "r", "o", "g")
    assert paths.npz.parent.name == "n" and paths.raw_video.name == f"{parts[0]}.mp4"


def test_every_clip_path_stays_inside_its_folder(tmp_path):
    paths = sio.ClipPaths("abc_1", tmp_path / "n", tmp_path / "r", tmp_path / "o", tmp_path / "g")
    for name in ("npz", "raw_video", "gt", "clip_dir", "left_video", "flows_stereo", "tracks_2d",
                 "filtered_tracks", "optimized_tracks", "export_npz", "segmentation"):
        path = getattr(paths, name)
        assert os.path.commonpath([path, tmp_path]) == str(tmp_path), name
    with pytest.raises(sio.InputError, match="outside its folder"):
        paths.out("x/../../../escape")
    with pytest.raises(sio.InputError, match="outside its folder"):
        paths.provenance("../../../evil")


def test_make_synthetic_clip_refuses_an_absolute_vid(tmp_path, capsys):
    import make_synthetic_clip

    target = tmp_path / "npz" / "victim_1.npz"
    target.parent.mkdir()
    target.write_bytes(b"precious")
    folders = [f"--{k}_folder={tmp_path / k}" for k in ("npz", "gt", "raw_video", "output")]
    with pytest.raises(SystemExit) as info:
        make_synthetic_clip.main([f"--vid={tmp_path / 'npz' / 'victim_1'}", *folders,
                                  "--num_frames=1", "--eye_size=16"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.startswith("error: argument --vid") and err.count("\n") == 1
    assert target.read_bytes() == b"precious" and sorted(tmp_path.rglob("*")) == [
        target.parent, target]


# ------------------------------------------------------------------------------ flags

FLAG_CASES = [
    ("rectify", "--output_height=0"), ("rectify", "--output_width=-3"),
    ("rectify", "--output_height=100000"), ("rectify", "--output_hfov=0"),
    ("rectify", "--output_hfov=200"), ("rectify", "--output_hfov=nan"),
    ("rectify", "--output_hfov=180"), ("rectify", "--min_equirect_height=-1"),
    ("rectify", "--output_height=2.5"),
    ("inference_raft", "--max_disparity=0"), ("inference_raft", "--block_size=0"),
    ("inference_raft", "--block_size=4"), ("inference_raft", "--refine_iterations=-1"),
    ("inference_raft", "--max_relative_noise=-0.1"), ("inference_raft", "--fusion_radius=-1"),
    ("tracking", "--grid_stride_px=0"), ("tracking", "--query_stride_frames=0"),
    ("tracking", "--chunk_size=0"), ("tracking", "--prune_radius_px=-1"),
    ("tracking", "--viz_tracks=-5"), ("tracking", "--seed=-1"),
    ("segmentation", "--hfov=0"), ("segmentation", "--hfov=180"), ("segmentation", "--hfov=inf"),
    ("segmentation", "--drift_threshold_px=0"), ("segmentation", "--trace_frames=0"),
    ("track_optimization", "--hfov=-5"), ("track_optimization", "--hfov=360"),
    ("evaluate", "--hfov=0"), ("make_synthetic_clip", "--num_frames=0"),
    ("make_synthetic_clip", "--eye_size=2"), ("make_synthetic_clip", "--eye_height=-1"),
    ("view", "--hfov=0"), ("view", "--frame_stride=0"), ("view", "--web_port=70000"),
    ("view", "--max_tracks=-1"), ("view", "--vid=../x_1"),
    ("batch_run", "--workers=0"), ("batch_run", "--retries=-1"), ("batch_run", "--num_cpus=0"),
]


@pytest.mark.parametrize("script, flag", FLAG_CASES)
def test_out_of_range_flags_give_one_error_line_and_exit_2(script, flag, capsys, tmp_path):
    import importlib

    main = importlib.import_module(script).main
    folders = [f"--output_folder={tmp_path}"] + ([f"--npz_folder={tmp_path}"] * (script != "view"))
    with pytest.raises(SystemExit) as info:
        main([*(["--vid=abc_1"] * (script != "batch_run" and not flag.startswith("--vid"))),
              *folders, flag])
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert flag.split("=")[0].lstrip("-") in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_in_range_flags_parse():
    from stereo4d.cli import float_in_range, hfov_deg, int_in_range

    assert hfov_deg("179.5") == 179.5 and int_in_range(1, 8)("8") == 8
    assert float_in_range(0.0)("0") == 0.0


# ------------------------------------------------------------------ rectify timestamps


def test_timestamps_closer_than_a_frame_give_one_frame_per_pose(tmp_path):
    """60 fps poses on a 30 fps video: as the reference's per-timestamp seek, each pose gets
    the frame its timestamp falls in (shared frames repeated), never fewer frames than poses."""
    import rectify as rectify_script
    from stereo4d import geometry, videoio
    from stereo4d.stages import rectify
    from tests.test_rectify import FPS, _argv, _make_clip, sky_colour

    num_poses = 10
    ts = 66667 + np.round(np.arange(num_poses) * 1e6 / 60).astype(np.int64)
    c2w = np.tile(np.hstack([np.eye(3), np.zeros((3, 1))]), (num_poses, 1, 1))
    paths = _make_clip(tmp_path, num_video_frames=8, timestamps_us=ts, camera2world=c2w,
                       track3d=np.zeros((0, num_poses, 3)))
    wanted = rectify.frame_indices(ts, FPS)
    assert len(np.unique(wanted)) < num_poses  # some poses share a video frame
    assert rectify_script.main(_argv(paths)) is None
    left = videoio.read_video(paths.left_video)
    assert len(left) == num_poses and len(videoio.read_video(paths.right_video)) == num_poses
    assert len(videoio.read_video(paths.raw_equirect_video)) == num_poses
    shared = num_poses - len(np.unique(wanted))
    assert sio.load_json(paths.provenance("rectify"))["timestamps_sharing_a_frame"] == shared
    rays = geometry.perspective_pixel_rays(64, 80, 60.0)
    for i, frame in enumerate(wanted):
        psnr = 10 * np.log10(255**2 / np.mean((left[i] - sky_colour(rays, frame).astype(float)) ** 2))
        assert psnr >= 30.0, (i, frame, psnr)


@pytest.mark.parametrize("first_frame, expected", [(8, "about 5 frames"), (3, "(5 frames")])
def test_past_the_end_message_gives_the_videos_frame_count(tmp_path, capsys, first_frame, expected):
    import rectify as rectify_script
    from tests.test_rectify import FPS, _argv, _make_clip

    ts = np.round((first_frame + np.arange(4)) * 1e6 / FPS).astype(np.int64)
    paths = _make_clip(tmp_path, num_video_frames=5, timestamps_us=ts)
    assert rectify_script.run_cli(rectify_script.main, _argv(paths)) == 2
    err = capsys.readouterr().err
    assert "past the end" in err and expected in err, err
    assert f"{max(first_frame, 5)} frames" not in err.replace(expected, "")
