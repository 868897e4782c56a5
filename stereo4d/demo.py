"""The end-to-end demo behind ``demo_run.bash``: every stage, skipping up-to-date ones.

Each stage runs as its top-level script (exactly what a user would type). A
stage counts as complete when its provenance JSON (written last, after all of
its outputs) and all its outputs exist and are newer than its inputs; the JSON
is deleted by each stage when it starts, so a stage killed halfway is re-run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stereo4d.io import ClipPaths, load_json
from stereo4d.stages.common import outputs_fresh

__all__ = ["Stage", "main", "pipeline_stages"]

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Stage:
    """One pipeline step as the demo runs it.

    Attributes:
      name: provenance name (``<vid>-<name>.json``) and label.
      script: top-level script in the repository root.
      inputs, outputs: functions of ``ClipPaths`` giving the files read / written.
      extra_args: flags beyond ``--vid``.
    """

    name: str
    script: str
    inputs: Callable[[ClipPaths], list[Path]]
    outputs: Callable[[ClipPaths], list[Path]]
    extra_args: tuple[str, ...] = ()


#: The synthetic clip's equirect video is 1024 px high: below the VR180 check of rectify.py.
SYNTHETIC_RECTIFY_ARGS = ("--min_equirect_height=0",)


def pipeline_stages(synthetic: bool = False) -> list[Stage]:
    """The five stages in order (name, script, inputs, outputs).

    ``synthetic``: the clip was rendered by make_synthetic_clip.py (lifts rectify's VR180
    height check, which real clips keep).
    """
    return [
        Stage("rectify", "rectify.py",
              lambda p: [p.npz, p.raw_video],
              lambda p: [p.left_video, p.right_video, p.raw_equirect_video, p.rectified_equirect_video],
              SYNTHETIC_RECTIFY_ARGS if synthetic else ()),
        Stage("stereo", "inference_raft.py",
              lambda p: [p.left_video, p.right_video],
              lambda p: [p.flows_stereo]),
        Stage("tracking", "tracking.py",
              lambda p: [p.left_video],
              lambda p: [p.tracks_2d, p.tracks_2d_video]),
        Stage("filtering", "segmentation.py",
              lambda p: [p.left_video, p.flows_stereo, p.tracks_2d, p.npz],
              lambda p: [p.filtered_tracks, p.filtered_tracks_video, p.segmentation]),
        Stage("optimization", "track_optimization.py",
              lambda p: [p.filtered_tracks, p.flows_stereo, p.npz],
              lambda p: [p.optimized_tracks, p.export_npz]),
    ]


def _run(cmd: list[str], label: str) -> None:
    print(f"\n=== {label}: {' '.join(cmd[1:])}", flush=True)
    t0 = time.perf_counter()
    result = subprocess.run(cmd, cwd=REPO_ROOT, check=False)
    if result.returncode != 0:
        print(f"\n[demo] stage '{label}' failed (exit {result.returncode}); see its message above.",
              file=sys.stderr)
        raise SystemExit(result.returncode)
    print(f"=== {label} done in {time.perf_counter() - t0:.1f} s", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Run the whole Stereo4D pipeline on one clip.")
    parser.add_argument("--vid", required=True)
    parser.add_argument("--default_vid", default=None,
                        help="the synthetic demo clip id (rendered when missing)")
    parser.add_argument("--num_frames", type=int, default=48)
    parser.add_argument("--force", action="store_true", help="re-run up-to-date stages")
    args = parser.parse_args(argv)
    paths = ClipPaths(args.vid)
    py = sys.executable
    t0 = time.perf_counter()

    if not (paths.npz.is_file() and paths.raw_video.is_file()):
        if args.vid != args.default_vid:
            print(f"error: clip {args.vid} not found: need {paths.npz} and {paths.raw_video}",
                  file=sys.stderr)
            return 2
        _run([py, "make_synthetic_clip.py", f"--vid={args.vid}", f"--num_frames={args.num_frames}"],
             "synthetic clip")
    else:
        print(f"[demo] using clip {args.vid} ({paths.npz}, {paths.raw_video})")

    backends = {}
    for stage in pipeline_stages(synthetic=paths.gt.is_file()):
        script = REPO_ROOT / stage.script
        if not script.is_file():
            print(f"[demo] skipping {stage.name}: {stage.script} is not part of this checkout yet")
            continue
        marker = paths.provenance(stage.name)
        outputs = [*stage.outputs(paths), marker]
        if not args.force and outputs_fresh(outputs, stage.inputs(paths)):
            print(f"[demo] {stage.name}: outputs are up to date, skipping (--force re-runs)")
        else:
            _run([py, stage.script, f"--vid={args.vid}", *stage.extra_args], stage.name)
        if marker.is_file():
            backends[stage.name] = load_json(marker).get("backend", "?")

    print(f"\n[demo] pipeline finished in {time.perf_counter() - t0:.1f} s; backends: "
          + ", ".join(f"{k}={v}" for k, v in backends.items()))
    if paths.gt.is_file() and (REPO_ROOT / "evaluate.py").is_file():
        _run([py, "evaluate.py", f"--vid={args.vid}",
              f"--json={paths.out('evaluation.json')}"], "evaluation")
    print(f"\n[demo] outputs are in {paths.clip_dir}/:")
    for f in sorted(paths.clip_dir.glob("*")):
        if f.is_file() and not f.name.startswith("."):
            print(f"  {f}  ({f.stat().st_size / 1e6:.1f} MB)")
    if paths.export_npz.is_file():
        print(f"[demo] released-format tracks: {paths.export_npz}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
