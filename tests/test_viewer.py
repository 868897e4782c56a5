"""view.py: Rerun recordings read back with Rerun's own reader, PLY exports, bad inputs."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from stereo4d.depth import BASELINE_M
from stereo4d.geometry import focal_length_px, rotation_xyz_deg
from stereo4d.io import ClipPaths, save_dataset_npz, save_pickle, save_segmentation
from stereo4d.videoio import write_video
from stereo4d.viz.clip_view import MOVING_EXTENT_M, motion_extent_m
from stereo4d.viz.rerun_log import DEPTH_UNITS_PER_M, ENTITY, trail_strips
from tests.conftest import REPO_ROOT

T, H, W = 6, 32, 48  # non-square on purpose
N_STATIC, N_MOVING = 30, 10
HFOV_DEG = 60.0
DISPARITY_PX = 4.0
VID = "viewclip_123"
TIMESTAMPS_US = 1_000_000 + np.arange(T) * 33_367


def _clip(seed: int = 0):
    """Cameras moving along x, static points at rest, moving points travelling 1 m; gaps."""
    rng = np.random.default_rng(seed)
    camera2world = np.stack([np.concatenate([rotation_xyz_deg(0, 2.0 * t, 0),
                                             [[0.05 * t], [0.0], [0.0]]], axis=1)
                             for t in range(T)])
    static = rng.uniform([-1, -0.5, 3], [1, 0.5, 5], size=(N_STATIC, 1, 3)).repeat(T, axis=1)
    start = rng.uniform([-1, -0.5, 3], [1, 0.5, 5], size=(N_MOVING, 1, 3))
    moving = start + np.linspace(0, 1.0, T)[None, :, None] * np.array([1.0, 0.0, 0.0])
    track3d = np.concatenate([static, moving]).astype(np.float32)
    visible = rng.uniform(size=track3d.shape[:2]) < 0.8
    visible[0] = False  # a track with no point
    track3d[~visible] = np.nan
    return camera2world, track3d, visible


def _frames():
    yy, xx = np.mgrid[0:H, 0:W]
    return np.stack([np.stack([xx * 5 % 256, yy * 7 % 256, np.full_like(xx, 40 * t)], -1)
                     for t in range(T)]).astype(np.uint8)


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    root = tmp_path_factory.mktemp("view")
    camera2world, track3d, visible = _clip()
    npz = save_dataset_npz(root / f"{VID}.npz", name=VID, video_id="viewclip",
                           timestamps_us=TIMESTAMPS_US, camera2world=camera2world,
                           track3d=track3d, rectified2rig=np.stack([np.eye(3)] * 2),
                           fov_bounds_deg=np.array([-90.0, 90.0, -90.0, 90.0]), visible=visible)
    video = write_video(root / "left.mp4", _frames())
    return root, npz, video, track3d, visible


def _run_view(*args, cwd=REPO_ROOT, drop_env=()):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "JAX_PLATFORMS": "cpu"}
    for name in drop_env:
        env.pop(name, None)
    return subprocess.run([sys.executable, str(REPO_ROOT / "view.py"), *map(str, args)],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=300,
                          check=False)


def _read_rrd(path):
    """entity -> {frame: row} of everything logged on the frame timeline (Rerun's reader)."""
    from rerun.chunk import RrdReader

    by_entity: dict[str, dict[int, dict]] = {}
    static: dict[str, dict] = {}
    for chunk in RrdReader(str(path)).stream():
        rows = chunk.to_record_batch().to_pylist()
        for row in rows:
            if chunk.is_static:
                static.setdefault(chunk.entity_path, {}).update(row)
            else:
                by_entity.setdefault(chunk.entity_path, {}).setdefault(row["frame"], {}).update(
                    {k: v for k, v in row.items() if v is not None})
    return by_entity, static


def _points(rows: dict, frame: int) -> np.ndarray:
    return np.asarray(rows.get(frame, {}).get("Points3D:positions") or np.zeros((0, 3)), float)


def test_recording_of_a_released_npz_reads_back(released, tmp_path):
    _, npz, video, track3d, visible = released
    rrd, ply = tmp_path / "out.rrd", tmp_path / "ply"
    result = _run_view(f"--npz={npz}", f"--video={video}", f"--save={rrd}", f"--ply_folder={ply}")
    assert result.returncode == 0, result.stderr
    by_entity, static = _read_rrd(rrd)
    for key in ("camera", "moving", "static", "image"):
        assert f"/{ENTITY[key]}" in by_entity, sorted(by_entity)
    assert f"/{ENTITY['trajectory']}" in static and f"/{ENTITY['world']}" in static
    assert f"/{ENTITY['moving']}/trails" in by_entity
    # Every frame on the timeline, with its timestamp; every visible point, where it belongs.
    camera = by_entity[f"/{ENTITY['camera']}"]
    assert sorted(camera) == list(range(T))
    stamps = [camera[t]["timestamp"] for t in range(T)]
    np.testing.assert_array_equal([s.value // 1000 for s in stamps], TIMESTAMPS_US)
    moving = motion_extent_m(track3d.astype(float), visible) > MOVING_EXTENT_M
    np.testing.assert_array_equal(moving, np.arange(len(track3d)) >= N_STATIC)
    for t in range(T):
        got_moving = _points(by_entity[f"/{ENTITY['moving']}"], t)
        got_static = _points(by_entity[f"/{ENTITY['static']}"], t)
        assert len(got_moving) + len(got_static) == visible[:, t].sum()
        np.testing.assert_allclose(got_moving, track3d[visible[:, t] & moving, t], atol=1e-6)
        np.testing.assert_allclose(got_static, track3d[visible[:, t] & ~moving, t], atol=1e-6)
        np.testing.assert_allclose(camera[t]["Transform3D:translation"][0],
                                   [0.05 * t, 0.0, 0.0], atol=1e-6)
    # PLY files: one per frame with that frame's points, and the static scene.
    from plyfile import PlyData

    for t in range(T):
        vertex = PlyData.read(str(ply / f"frame_{t:05d}.ply"))["vertex"]
        xyz = np.stack([vertex["x"], vertex["y"], vertex["z"]], axis=-1)
        np.testing.assert_array_equal(vertex["track"], np.flatnonzero(visible[:, t]))
        np.testing.assert_allclose(xyz, track3d[visible[:, t], t], atol=1e-6)
        np.testing.assert_array_equal(vertex["moving"], moving[visible[:, t]])
    scene = PlyData.read(str(ply / "static_scene.ply"))["vertex"]
    static_rows = np.flatnonzero(~moving & visible.any(axis=1))
    np.testing.assert_array_equal(scene["track"], static_rows)
    np.testing.assert_allclose(np.stack([scene["x"], scene["y"], scene["z"]], -1),
                               np.nanmedian(track3d[static_rows], axis=1), atol=1e-6)


def test_subsampling_limits_tracks_and_frames(released, tmp_path):
    _, npz, video, _, _ = released
    rrd = tmp_path / "small.rrd"
    result = _run_view(f"--npz={npz}", f"--video={video}", f"--save={rrd}",
                       "--max_tracks=7", "--frame_stride=2", "--trails=none")
    assert result.returncode == 0, result.stderr
    by_entity, _ = _read_rrd(rrd)
    assert sorted(by_entity[f"/{ENTITY['camera']}"]) == [0, 2, 4]
    assert f"/{ENTITY['moving']}/trails" not in by_entity
    logged = [len(_points(by_entity[f"/{ENTITY[g]}"], t)) for g in ("moving", "static")
              for t in (0, 2, 4)]
    assert 0 < max(logged) <= 7


def _write_outputs(root, npz_src):
    """This project's outputs for a clip, by hand: export, video, pickle, flows, filter record."""
    paths = ClipPaths(VID, output_folder=root / "processed")
    paths.clip_dir.mkdir(parents=True)
    paths.export_npz.write_bytes(npz_src.read_bytes())
    write_video(paths.left_video, _frames())
    num_tracks = N_STATIC + N_MOVING
    colors = np.linspace(0, 1, num_tracks * 3).reshape(num_tracks, 3)
    save_pickle({"color_values": colors}, paths.optimized_tracks)
    flow = np.zeros((H, W, 2), np.float32)
    save_pickle([{"fwd": flow - [DISPARITY_PX, 0], "bwd": flow + [DISPARITY_PX, 0]}] * T,
                paths.flows_stereo)
    rng = np.random.default_rng(5)
    n2d = 12
    xy = rng.uniform([8, 4], [W - 4, H - 4], size=(n2d, 1, 2)).repeat(T, axis=1)
    save_pickle({"tracks": xy.astype(np.float32), "visibles": np.ones((n2d, T), bool),
                 "query_points": np.zeros((n2d, 3))}, paths.tracks_2d)
    reasons = {"sky": np.arange(n2d) < 3, "boundary": np.arange(n2d) == 5,
               "drift": np.zeros(n2d, bool)}
    save_segmentation(paths.segmentation, np.zeros((T, H, W), np.uint8),
                      ~(reasons["sky"] | reasons["boundary"]), removed=reasons)
    return paths, colors, reasons


def test_project_outputs_show_depth_colours_and_removed_tracks(released, tmp_path):
    from stereo4d.viz.viewer import ViewerConfig, run

    _, npz, _, _, visible = released
    paths, colors, reasons = _write_outputs(tmp_path, npz)
    rrd = tmp_path / "clip.rrd"
    summary = run(ViewerConfig(vid=VID, output_folder=str(paths.output_folder), save=str(rrd),
                               progress=False))
    assert summary["logged"]["frames"] == list(range(T))
    by_entity, static = _read_rrd(rrd)
    for key in ("depth_raw", "depth_optimized"):
        assert f"/{ENTITY[key]}" in by_entity
    # Stereo depth as the optimisation reads it: fx * baseline / disparity, in millimetres.
    depth = by_entity[f"/{ENTITY['depth_raw']}"][0]
    raw = np.frombuffer(bytes(depth["DepthImage:buffer"][0]), np.uint16).reshape(H, W)
    expected_mm = focal_length_px(HFOV_DEG, W) * BASELINE_M / DISPARITY_PX * DEPTH_UNITS_PER_M
    assert np.all(np.abs(raw[4:-4, 8:-4].astype(float) - expected_mm) <= 0.5)
    # Removed tracks by reason, every frame; none logged for a reason with no track.
    for reason, mask in reasons.items():
        counts = summary["logged"]["points"][f"{ENTITY['removed']}/{reason}"]
        assert counts == [int(mask.sum())] * T
    assert f"/{ENTITY['removed']}" in static  # the reasons' labels and colours
    # Track colours from the optimisation's record.
    moving_rows = by_entity[f"/{ENTITY['moving']}"][1]
    got = np.asarray(moving_rows["Points3D:colors"], np.uint64)
    rows = np.flatnonzero(visible[:, 1] & (np.arange(len(visible)) >= N_STATIC))
    want = np.round(colors[rows] * 255).astype(np.uint64)
    np.testing.assert_array_equal(got >> 8, (want[:, 0] << 16) | (want[:, 1] << 8) | want[:, 2])
    # Without depth images the removed tracks are still there (and vice versa).
    summary = run(ViewerConfig(vid=VID, output_folder=str(paths.output_folder), save=str(rrd),
                               depth=False, progress=False))
    by_entity, _ = _read_rrd(rrd)
    assert f"/{ENTITY['depth_raw']}" not in by_entity
    assert f"/{ENTITY['depth_optimized']}" not in by_entity
    assert summary["logged"]["points"][f"{ENTITY['removed']}/sky"] == [3] * T
    run(ViewerConfig(vid=VID, output_folder=str(paths.output_folder), save=str(rrd),
                     removed=False, progress=False))
    by_entity, _ = _read_rrd(rrd)
    assert f"/{ENTITY['depth_raw']}" in by_entity
    assert not [e for e in by_entity if e.startswith(f"/{ENTITY['removed']}")]
    # A filter record from before the reasons were stored: said, not silently skipped.
    save_segmentation(paths.segmentation, np.zeros((T, H, W), np.uint8), np.ones(12, bool))
    summary = run(ViewerConfig(vid=VID, output_folder=str(paths.output_folder), save=str(rrd),
                               progress=False))
    assert summary["sources"]["removed"].startswith("not shown")
    assert not [e for e in _read_rrd(rrd)[0] if e.startswith(f"/{ENTITY['removed']}")]


@pytest.mark.parametrize("case", ["missing_npz", "malformed_npz", "frame_count", "no_output",
                                  "spawn_without_display"])
def test_bad_input_exits_2_and_leaves_no_recording(released, tmp_path, case):
    _, npz, video, _, _ = released
    args = [f"--npz={npz}", f"--video={video}", f"--save={tmp_path / 'out.rrd'}"]
    if case == "missing_npz":
        args[0] = f"--npz={tmp_path / 'absent.npz'}"
    elif case == "malformed_npz":
        bad = tmp_path / "bad.npz"
        bad.write_bytes(npz.read_bytes()[:200])
        args[0] = f"--npz={bad}"
    elif case == "frame_count":
        short = write_video(tmp_path / "short.mp4", _frames()[:-1])
        args[1] = f"--video={short}"
    elif case == "no_output":
        args = args[:2]
    else:
        args.append("--spawn")
    result = _run_view(*args, drop_env=("DISPLAY", "WAYLAND_DISPLAY"))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error:"), result.stderr
    assert not [p for p in tmp_path.iterdir() if ".rrd" in p.name]


def test_trail_strips_hold_nearest_present_position():
    track = np.arange(5 * 3, dtype=float).reshape(1, 5, 3)
    visible = np.array([[False, True, False, True, True]])
    strips = trail_strips(track, visible, t=4, trail_frames=4)  # frames 1..4
    np.testing.assert_array_equal(strips[0], track[0, [1, 1, 3, 4]])
    strips = trail_strips(track, np.array([[False, False, True, True, True]]), t=3, trail_frames=4)
    np.testing.assert_array_equal(strips[0], track[0, [2, 2, 2, 3]])  # before the first: next
    assert trail_strips(track, visible, t=0).shape == (1, 1, 3)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_listens_on_loopback_and_stops_with_sigterm(released):
    import signal
    import socket

    _, npz, video, _, _ = released
    grpc_port, web_port = _free_port(), _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen([sys.executable, str(REPO_ROOT / "view.py"), f"--npz={npz}",
                             f"--video={video}", "--serve", f"--grpc_port={grpc_port}",
                             f"--web_port={web_port}"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        lines = iter(proc.stdout.readline, "")  # the summary lines, then the serving line
        line = next((line for line in lines if line.startswith("view: serving")), "")
        assert f"http://localhost:{web_port}/" in line
        for port in (grpc_port, web_port):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        # Bound to loopback only: the machine's other addresses refuse the connection.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: picks the outward address
            outside = probe.getsockname()[0]
        if not outside.startswith("127."):
            with pytest.raises(OSError):
                socket.create_connection((outside, grpc_port), timeout=2).close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        with pytest.raises(OSError):  # the web server stopped with it
            socket.create_connection(("127.0.0.1", web_port), timeout=2).close()
    finally:
        if proc.poll() is None:  # SIGTERM first: the viewer then stops its web server child
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_preview_draws_the_tracks_where_the_3d_view_sees_them(released, tmp_path):
    from stereo4d.viz.clip_view import load_released
    from stereo4d.viz.preview import (
        PANEL_PX,
        VIEW_AZIMUTH_DEG,
        VIEW_ELEVATION_DEG,
        render_preview,
        save_preview,
    )
    from stereo4d.viz.scene3d import SceneView

    _, npz, video, _, _ = released
    view = load_released(npz, video, HFOV_DEG)
    view.colors_rgb[:] = (255, 0, 255)  # a colour nothing else in the drawing has
    t = 3
    image = render_preview(view, t, HFOV_DEG)
    assert image.shape == (2 * PANEL_PX, 3 * PANEL_PX, 3)
    present = view.visible & np.all(np.isfinite(view.track3d_world), axis=-1)
    points = view.track3d_world[present[:, t], t]
    fit = SceneView.fit(points, 2 * PANEL_PX, 2 * PANEL_PX, VIEW_ELEVATION_DEG, VIEW_AZIMUTH_DEG)
    xy, _, ok = fit.project(points)
    col, row = np.floor(xy[ok]).astype(int).T
    hits = np.all(image[row, col] == (255, 0, 255), axis=-1)
    assert ok.all() and hits.mean() > 0.9
    from PIL import Image

    saved = np.asarray(Image.open(save_preview(tmp_path / "p.png", image)).convert("RGB"))
    assert saved.shape == image.shape and np.all(saved[row[hits], col[hits]] == (255, 0, 255))


def test_video_colors_read_the_pixel_under_each_first_visible_point():
    from stereo4d.geometry import PinholeCamera
    from stereo4d.viz.clip_view import video_colors

    camera2world, _, _ = _clip()
    world_to_camera = np.stack([np.concatenate([c[:, :3].T, -c[:, :3].T @ c[:, 3:]], axis=1)
                                for c in camera2world])
    camera = PinholeCamera.from_hfov(world_to_camera, HFOV_DEG, aspect_hw=H / W)
    frames = _frames()
    pixels = np.array([[3, 5], [40, 20], [10, 30]])  # (x, y) pixel indices
    first = np.array([0, 2, 5])
    track3d = np.full((4, T, 3), np.nan)
    visible = np.zeros((4, T), bool)
    for i, ((x, y), t) in enumerate(zip(pixels, first)):
        track3d[i, t:] = camera.at(t).unproject(np.array([x + 0.5, y + 0.5]), 2.0 + i, H, W)
        visible[i, t:] = True
    colors = video_colors(frames, track3d, visible, camera)
    np.testing.assert_array_equal(colors[:3], frames[first, pixels[:, 1], pixels[:, 0]])
    np.testing.assert_array_equal(colors[3], [128, 128, 128])  # never visible: grey
