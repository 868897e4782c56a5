"""tracking.py --query_points: exactly the given points are tracked (both backends); bad files exit 2."""

import numpy as np
import pytest
from test_tracking_stage import (  # noqa: F401
    FRAMES,
    HEIGHT,
    VELOCITY_XY,
    VID,
    WIDTH,
    _assert_failed_cleanly,
    _run,
    _tapir_checkpoint,
    _translating_frames,
    clip,
)

from stereo4d.io import ClipPaths, load_json, load_pickle
from stereo4d.queries import load_query_points
from stereo4d.tracks import Tracks2D
from stereo4d.videoio import write_video

#: Sub-pixel queries (t, y, x) spread over the frame and over time, including the last frame.
QUERIES_TYX = np.array([[0, 20.25, 30.5], [3, 31.0, 47.75], [9, 40.5, 60.0], [5, 12.0, 20.0],
                        [0, 20.25, 30.5]], np.float32)  # a duplicate: no pruning either


def test_given_queries_are_tracked_exactly(clip, tmp_path, capsys):  # noqa: F811
    path = tmp_path / "queries.npy"
    np.save(path, QUERIES_TYX)
    argv = ["--vid", VID, "--output_folder", str(clip.output_folder), "--backend", "dis-flow",
            "--query_points", str(path), "--skip_video"]
    assert _run(argv) == 0
    assert "5 given query points (no pruning)" in capsys.readouterr().out
    tracks = Tracks2D.from_dict(load_pickle(clip.tracks_2d))
    np.testing.assert_array_equal(tracks.query_points_tyx, QUERIES_TYX)
    rows, query_t = np.arange(len(QUERIES_TYX)), QUERIES_TYX[:, 0].astype(int)
    np.testing.assert_array_equal(tracks.tracks_xy[rows, query_t], QUERIES_TYX[:, [2, 1]])
    # The texture translates by VELOCITY_XY per frame: every track follows it, both ways in time.
    want = QUERIES_TYX[:, None, [2, 1]] + (np.arange(FRAMES)[None, :, None] - query_t[:, None, None]) * VELOCITY_XY
    inside = (want[..., 0] > 4) & (want[..., 0] < WIDTH - 4) & (want[..., 1] > 4) & (want[..., 1] < HEIGHT - 4)
    err = np.linalg.norm(tracks.tracks_xy - want, axis=-1)[inside]
    assert np.median(err) < 0.25 and err.max() < 1.0
    assert tracks.visibles[inside].mean() > 0.95
    np.testing.assert_array_equal(tracks.tracks_xy[0], tracks.tracks_xy[4])  # duplicate kept
    record = load_json(clip.provenance("tracking"))
    assert record["num_queries"] == record["num_kept"] == 5 and record["pruned_percent"] == 0.0


def test_given_queries_bootstapir(tmp_path, monkeypatch):
    from stereo4d.backends.tapir_tracker import TapirTracker

    calls = []

    def recording_track(self, frames, queries):
        """Records the queries; skips the network (it runs in test_tracking_stage)."""
        calls.append(queries)
        return np.repeat(queries[:, None, [2, 1]], len(frames), axis=1), np.ones((len(queries), len(frames)), bool)

    monkeypatch.setattr(TapirTracker, "track", recording_track)
    monkeypatch.setenv("STEREO4D_CACHE", str(tmp_path / "empty_cache"))
    paths = ClipPaths(VID, output_folder=tmp_path)
    write_video(paths.left_video, _translating_frames()[:2])
    queries = np.array([[0, 10.5, 20.5], [1, 30.0, 40.0]], np.float32)
    np.save(tmp_path / "q.npy", queries)
    argv = ["--vid", VID, "--output_folder", str(tmp_path), "--backend", "bootstapir", "--path",
            str(_tapir_checkpoint(tmp_path / "tapir.pt")), "--device", "cpu",
            "--query_points", str(tmp_path / "q.npy"), "--skip_video"]
    assert _run(argv) == 0
    (seen,) = calls
    np.testing.assert_array_equal(seen, queries)
    tracks = Tracks2D.from_dict(load_pickle(paths.tracks_2d))
    assert tracks.tracks_xy.shape == (2, 2, 2)
    np.testing.assert_array_equal(tracks.query_points_tyx, queries)


BAD_QUERIES = {
    "nan": np.array([[0, np.nan, 3.0]]),
    "inf": np.array([[0, 3.0, np.inf]]),
    "shape": np.zeros((4, 2)),
    "empty": np.zeros((0, 3)),
    "t_out_of_range": np.array([[FRAMES, 3.0, 3.0]]),
    "t_negative": np.array([[-1, 3.0, 3.0]]),
    "t_fractional": np.array([[1.5, 3.0, 3.0]]),
    "y_outside": np.array([[0, HEIGHT, 3.0]]),
    "x_negative": np.array([[0, 3.0, -0.5]]),
    "strings": np.array([["0", "1", "2"]]),
}


@pytest.mark.parametrize("name", sorted(BAD_QUERIES))
def test_bad_query_points_exit_2(clip, tmp_path, capsys, name):  # noqa: F811
    path = tmp_path / f"{name}.npy"
    np.save(path, BAD_QUERIES[name])
    code = _run(["--vid", VID, "--output_folder", str(clip.output_folder), "--backend", "dis-flow",
                 "--query_points", str(path)])
    _assert_failed_cleanly(code, capsys, clip)


def test_unreadable_query_files(tmp_path):
    pickled = tmp_path / "objects.npy"
    np.save(pickled, np.array([{"t": 0}], dtype=object), allow_pickle=True)
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"not an npy file")
    for path in (pickled, garbage, tmp_path / "missing.npy"):
        with pytest.raises(Exception) as info:
            load_query_points(path, FRAMES, HEIGHT, WIDTH)
        assert type(info.value).__name__ == "InputError"
    ok = load_query_points(_save(tmp_path, np.array([[2, 0.0, WIDTH - 0.01]])),
                           FRAMES, HEIGHT, WIDTH)
    assert ok.dtype == np.float32 and ok.tolist() == [[2.0, 0.0, np.float32(WIDTH - 0.01)]]


def _save(folder, array):
    path = folder / "ok.npy"
    np.save(path, array)
    return path
