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
from tests.conftest import REPO_ROOT

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
    code = f"import pickle, sys; pickle.loads(open(sys.argv[1], 'rb').read())"
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
