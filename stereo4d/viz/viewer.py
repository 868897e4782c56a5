"""``view.py``: a clip's outputs (or a released npz + video) to Rerun, and PLY exports.

Reads only (``viz.clip_view``), logs with ``viz.rerun_log``, exports with ``export_ply``.
Outputs: ``save`` writes an ``.rrd`` recording (atomically: a temporary name renamed when
complete, so bad input or an interruption leaves no recording); ``spawn`` streams to a desktop
viewer started on this machine; ``serve`` hosts the recording over gRPC and the web viewer over
HTTP and keeps running until interrupted.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import quote

import numpy as np

from stereo4d.io import ClipPaths, InputError, atomic_path
from stereo4d.viz.clip_view import ClipView, load_outputs, load_released
from stereo4d.viz.trails import TRAIL_FRAMES

__all__ = ["DEFAULT_MAX_TRACKS", "ViewerConfig", "run", "subsample_tracks"]

DEFAULT_MAX_TRACKS = 8192
"""Tracks logged to Rerun by default (random subset); keeps the demo clip's recording small."""
APPLICATION_ID = "stereo4d"
"""Rerun application id of the recordings."""
SERVE_POLL_S = 1.0
"""How often ``serve`` wakes up while waiting for an interrupt (seconds)."""
SERVER_START_S = 30.0
"""How long ``serve`` waits for the Rerun web server to listen (seconds)."""
SERVER_STOP_S = 10.0
"""How long the Rerun web server gets to stop once terminated (seconds)."""


@dataclass(frozen=True)
class ViewerConfig:
    """Settings of ``view.py``.

    Attributes:
      vid: clip id of this project's outputs (``output_folder``), or None with npz + video.
      npz, video: a released-format npz and its left rectified video (instead of ``vid``).
      output_folder: as in ``ClipPaths``.
      hfov_deg: horizontal FoV of the rectified views (degrees).
      save: write the recording to this ``.rrd`` file.
      spawn: stream to a desktop viewer (``rerun`` binary) started on this machine.
      serve: serve the web viewer (HTTP ``web_port``) and the data (gRPC ``grpc_port``), both on
        ``bind_ip`` (loopback by default: reach them from another machine through an SSH tunnel).
      max_tracks: at most this many tracks (random, ``seed``) are logged; 0 = all.
      frame_stride: log every k-th frame.
      trails: ``moving``, ``all`` or ``none``; trail_frames: their length in frames.
      depth: also log the stereo and optimised depth (project outputs only).
      removed: also log the tracks the filter removed, by reason (project outputs only).
      ply_folder: write per-frame PLY clouds and the static scene here (all tracks, all frames).
      preview: write a still of frame ``preview_frame`` (default: the middle one) as the viewer
        lays it out, drawn without a display (``viz.preview``), to this PNG.
      progress: progress bars.
    """

    vid: str | None = None
    npz: str | None = None
    video: str | None = None
    output_folder: str = "stereo4d_dataset/processed"
    hfov_deg: float = 60.0
    save: str | None = None
    spawn: bool = False
    serve: bool = False
    bind_ip: str = "127.0.0.1"
    grpc_port: int = 9876
    web_port: int = 9090
    max_tracks: int = DEFAULT_MAX_TRACKS
    frame_stride: int = 1
    trails: str = "moving"
    trail_frames: int = TRAIL_FRAMES
    depth: bool = True
    removed: bool = True
    ply_folder: str | None = None
    preview: str | None = None
    preview_frame: int | None = None
    seed: int = 0
    progress: bool = True

    def check(self) -> None:
        """Raises InputError for contradictory or out-of-range settings."""
        if (self.npz is None) != (self.video is None):
            raise InputError("--npz and --video go together (a released npz and its left "
                             "rectified video)")
        if (self.vid is None) == (self.npz is None):
            raise InputError("give either --vid (this project's outputs) or --npz and --video")
        if not (self.save or self.spawn or self.serve or self.ply_folder or self.preview):
            raise InputError("nothing to do: give --save, --spawn, --serve, --ply_folder "
                             "and/or --preview")
        if self.save and Path(self.save).suffix != ".rrd":
            raise InputError(f"--save must name an .rrd file, got {self.save}")
        if self.preview and Path(self.preview).suffix.lower() != ".png":
            raise InputError(f"--preview must name a .png file, got {self.preview}")
        if self.max_tracks < 0 or self.frame_stride < 1 or self.trail_frames < 1:
            raise InputError("--max_tracks must be >= 0, --frame_stride and --trail_frames >= 1")
        if not 0.0 < self.hfov_deg < 180.0:
            raise InputError(f"--hfov must be in (0, 180) degrees, got {self.hfov_deg}")


def subsample_tracks(view: ClipView, max_tracks: int, seed: int = 0) -> ClipView:
    """At most ``max_tracks`` tracks of ``view`` (random, in their original order); 0 = all.

    The removed tracks of each reason are capped the same way.
    """
    rng = np.random.default_rng(seed)

    def pick(num: int) -> np.ndarray:
        if max_tracks == 0 or num <= max_tracks:
            return np.arange(num)
        return np.sort(rng.choice(num, size=max_tracks, replace=False))

    rows = pick(view.num_tracks)
    removed = {}
    for reason, (track3d, valid) in view.removed.items():
        keep = pick(len(track3d))
        removed[reason] = (track3d[keep], valid[keep])
    return replace(view, track3d_world=view.track3d_world[rows], visible=view.visible[rows],
                   colors_rgb=view.colors_rgb[rows], moving=view.moving[rows], removed=removed)


def _load(config: ViewerConfig) -> ClipView:
    if config.vid is not None:
        paths = ClipPaths(config.vid, output_folder=config.output_folder)
        return load_outputs(paths, config.hfov_deg, depth=config.depth, removed=config.removed)
    return load_released(config.npz, config.video, config.hfov_deg)


def _export_plys(config: ViewerConfig, view: ClipView) -> None:
    from stereo4d.export_ply import write_frame_plys, write_static_scene_ply

    frames = write_frame_plys(config.ply_folder, view.track3d_world, view.visible,
                              view.colors_rgb, view.moving, progress=config.progress)
    scene = write_static_scene_ply(config.ply_folder, view.track3d_world, view.visible,
                                   view.colors_rgb, view.moving)
    print(f"view: {len(frames)} per-frame PLY files and {scene.name} -> {config.ply_folder}")


def _rerun_binary() -> str:
    """The Rerun CLI binary shipped with rerun-sdk (``python -m rerun`` would wrap it in a
    Python process that does not pass termination on)."""
    import rerun_cli

    binary = Path(rerun_cli.__file__).with_name("rerun.exe" if sys.platform == "win32" else "rerun")
    if not binary.is_file():
        raise InputError(f"the Rerun CLI binary is missing ({binary}); reinstall rerun-sdk")
    return str(binary)


def _start_web_server(config: ViewerConfig, stack: contextlib.ExitStack) -> str:
    """Starts ``rerun --serve-web`` (web viewer over HTTP + gRPC data server) on ``bind_ip``.

    The Rerun CLI binds both servers to ``bind_ip`` (the SDK's own web server would listen on
    every interface). The server is this process's child and stops with it. Returns the gRPC
    URL to log to.
    """
    cmd = [_rerun_binary(), "--serve-web", "--bind", config.bind_ip,
           "--port", str(config.grpc_port), "--web-viewer-port", str(config.web_port)]
    log = stack.enter_context(tempfile.TemporaryFile())  # noqa: SIM115 - a pipe could stall it
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
    stack.callback(server.wait, SERVER_STOP_S)
    stack.callback(server.terminate)
    deadline = time.monotonic() + SERVER_START_S
    while True:
        with contextlib.suppress(OSError), socket.create_connection(
                (config.bind_ip, config.grpc_port), timeout=SERVE_POLL_S):
            break
        if server.poll() is not None or time.monotonic() > deadline:
            log.seek(0)
            message = log.read().decode(errors="replace")
            raise InputError(f"the Rerun web server did not start on {config.bind_ip} (ports "
                             f"{config.grpc_port}, {config.web_port}): {message.strip()[-300:]}")
        time.sleep(SERVE_POLL_S / 10)
    return f"rerun+http://{config.bind_ip}:{config.grpc_port}/proxy"


def _write_preview(config: ViewerConfig, view: ClipView) -> None:
    from stereo4d.viz.preview import render_preview, save_preview

    t = view.num_frames // 2 if config.preview_frame is None else config.preview_frame
    if not 0 <= t < view.num_frames:
        raise InputError(f"--preview_frame {t} is outside the clip's {view.num_frames} frames")
    save_preview(config.preview, render_preview(view, t, config.hfov_deg,
                                                trail_frames=config.trail_frames))
    print(f"view: frame {t} drawn as the viewer lays it out -> {config.preview}")


def _log(config: ViewerConfig, view: ClipView, files: contextlib.ExitStack,
         servers: contextlib.ExitStack) -> dict:
    """Logs ``view`` to every requested sink; the recording file is renamed when ``files``
    closes, the web server stops when ``servers`` closes."""
    import rerun as rr

    from stereo4d.viz.rerun_log import default_blueprint, log_clip

    rec = rr.RecordingStream(APPLICATION_ID, recording_id=view.name)
    rec.send_recording_name(view.name)
    sinks = []
    if config.save:
        sinks.append(rr.FileSink(str(files.enter_context(atomic_path(config.save)))))
    if config.spawn:
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY")
                                                     or os.environ.get("WAYLAND_DISPLAY")):
            raise InputError("--spawn needs a display (DISPLAY or WAYLAND_DISPLAY is not set); "
                             "use --save or --serve on a headless machine")
        rr.spawn(port=config.grpc_port, connect=False, recording=rec,
                 executable_path=_rerun_binary())
        sinks.append(rr.GrpcSink(f"rerun+http://127.0.0.1:{config.grpc_port}/proxy"))
    if config.serve:
        sinks.append(rr.GrpcSink(_start_web_server(config, servers)))
    rec.set_sinks(*sinks, default_blueprint=default_blueprint(view))
    logged = log_clip(rec, view, config.frame_stride, config.trails, config.trail_frames,
                      progress=config.progress)
    try:
        rec.flush()
    except RuntimeError as exc:  # e.g. a spawned viewer that could not open a window
        raise InputError(f"Rerun could not deliver the recording: {exc}") from exc
    finally:
        rec.disconnect()  # closes the file sink (writes its footer) before the rename
    return logged


def _wait_while_serving(config: ViewerConfig, name: str) -> None:
    host = "localhost" if config.bind_ip in ("127.0.0.1", "localhost") else config.bind_ip
    url = quote(f"rerun+http://{host}:{config.grpc_port}/proxy", safe="")
    with contextlib.suppress(KeyboardInterrupt):  # a stop right after the message is clean too
        print(f"view: serving {name}: open http://{host}:{config.web_port}/?url={url}\n"
              f"  from another machine: ssh -L {config.web_port}:localhost:{config.web_port} "
              f"-L {config.grpc_port}:localhost:{config.grpc_port} <this host>; Ctrl-C stops",
              flush=True)
        while True:
            time.sleep(SERVE_POLL_S)


@contextlib.contextmanager
def _signals_interrupt():
    """SIGTERM and SIGHUP raise KeyboardInterrupt inside the block (as Ctrl-C does), so exit
    stacks run and the web server child is stopped whichever way the viewer is stopped."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run(config: ViewerConfig) -> dict:
    """Loads, validates, exports and logs. Returns a summary (counts, outputs).

    Raises:
      InputError: bad settings or inputs (before any file is written).
    """
    config.check()
    view = _load(config)
    summary = {"name": view.name, "num_frames": view.num_frames, "num_tracks": view.num_tracks,
               "num_moving": int(view.moving.sum()), "sources": view.sources}
    for item, source in view.sources.items():
        print(f"view: {item}: {source}")
    if config.ply_folder:
        _export_plys(config, view)
    shown = subsample_tracks(view, config.max_tracks, config.seed)
    if config.preview:
        _write_preview(config, shown)
    if config.save or config.spawn or config.serve:
        with _signals_interrupt() if config.serve else contextlib.nullcontext(), \
                contextlib.ExitStack() as servers:
            with contextlib.ExitStack() as files:
                summary["logged"] = _log(config, shown, files, servers)
            summary["num_tracks_logged"] = shown.num_tracks
            if config.save:
                size_mb = Path(config.save).stat().st_size / 1e6
                summary["rrd_mb"] = size_mb
                print(f"view: {view.name}: {len(summary['logged']['frames'])} frames, "
                      f"{shown.num_tracks} of {view.num_tracks} tracks "
                      f"({int(shown.moving.sum())} moving) -> {config.save} ({size_mb:.1f} MB)")
            if config.serve:
                _wait_while_serving(config, view.name)
    return summary
