"""Runs the pipeline on many clips, resumably, on a local pool of processes or a Ray cluster.

Each stage of each clip runs as its own command (exactly the flags of the top-level
scripts); stages whose outputs are fresh are skipped, so rerunning the same command after
an interruption (even kill -9) redoes only what is missing. A failing clip is recorded with
its stage and error message and the others carry on; the exit status is 1 when any clip
failed. Records: <batch_dir>/records.jsonl (one line per clip as it settles),
<batch_dir>/report.json, per-stage logs in <batch_dir>/logs/.

Examples:
  python batch_run.py --workers=2
  python batch_run.py --vids=clips.txt --executor=ray --ray_address=auto --keep=final \\
      --stage_args "stereo:--backend=sgbm" --stage_args "tracking:--backend=dis-flow"
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from stereo4d.batch.executors import LocalExecutor, RayExecutor, local_gpu_count
from stereo4d.batch.plan import (
    ENV_PASSTHROUGH_PREFIXES,
    BatchPlan,
    discover_vids,
    parse_key_values,
    parse_stage_args,
    read_vid_list,
    wants_gpu,
)
from stereo4d.batch.report import Reporter, format_table, summarize, write_report
from stereo4d.batch.runner import KEEP_CHOICES, run_batch
from stereo4d.cli import CommandParser, int_in_range, run_cli
from stereo4d.io import InputError
from stereo4d.pipeline import ALL_STAGE_NAMES, CAMERA_STAGE, STAGE_NAMES

__all__ = ["cli", "main"]

#: Exit status when at least one clip failed (bad flags exit with 2, as every command).
CLIPS_FAILED_EXIT_CODE = 1


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    clips = parser.add_argument_group("clips and folders")
    clips.add_argument("--vids", default=None,
                       help="text file of clip ids, one per line ('#' starts a comment); default: "
                            "every <vid>.npz in --npz_folder whose raw video exists")
    clips.add_argument("--npz_folder", default="stereo4d_dataset/npz",
                       help="released-format <vid>.npz files (default: %(default)s)")
    clips.add_argument("--raw_video_folder", default="stereo4d_dataset/raw",
                       help="side-by-side equirect <video_id>.mp4 files (default: %(default)s)")
    clips.add_argument("--output_folder", default="stereo4d_dataset/processed",
                       help="outputs go to <output_folder>/<vid>/ (default: %(default)s); on a "
                            "cluster every folder must be on a filesystem all nodes share")
    clips.add_argument("--batch_dir", default=None,
                       help="records.jsonl, report.json and logs/ (default: "
                            "<output_folder>/_batch)")
    stages = parser.add_argument_group("stages")
    stages.add_argument("--stages", default=",".join(STAGE_NAMES),
                        help="comma-separated stages to run, of: " + ",".join(ALL_STAGE_NAMES)
                        + f"; with {CAMERA_STAGE} (stage 0: estimate_cameras.py), clips whose npz "
                        "is missing get one estimated from the raw video, released npz files are "
                        "kept, and every raw video without an npz joins the batch as "
                        "<video_id>_0")
    stages.add_argument("--stage_args", action="append", default=[], metavar="STAGE:FLAGS",
                        help="flags passed to one stage's command, e.g. "
                             "\"rectify:--min_equirect_height=0 --output_height=256\" (repeat "
                             "the option for more stages; the runner sets --vid and the folders)")
    stages.add_argument("--force", action="store_true", help="re-run stages whose outputs are fresh")
    stages.add_argument("--retries", type=int_in_range(0), default=1,
                        help="further attempts after a transient failure (a crash, a lost "
                             "worker); bad input (a stage's exit status 2) is never retried")
    stages.add_argument("--keep", default="all", choices=KEEP_CHOICES,
                        help="final: once a clip's released npz and videos are written, delete "
                             "its intermediates (flows, 2D track pickles, label maps)")
    run = parser.add_argument_group("executor and resources")
    run.add_argument("--executor", default="local", choices=["local", "ray"],
                     help="local: a pool of stage processes on this machine; ray: Ray tasks on a "
                          "local instance or a cluster (default: %(default)s)")
    run.add_argument("--workers", type=int_in_range(1), default=1,
                     help="local: stage processes at a time")
    run.add_argument("--ray_address", default=None,
                     help="ray: 'auto' (the running cluster), <head>:6379 or ray://<head>:10001; "
                          "unset: start a local Ray instance with --num_cpus")
    run.add_argument("--num_cpus", type=int_in_range(1), default=None,
                     help="ray without --ray_address: CPUs of the local instance (default: all)")
    run.add_argument("--cpus_per_stage", action="append", default=[], metavar="STAGE=N",
                     help="CPUs a stage asks for (Ray's num_cpus; also its OMP_NUM_THREADS), "
                          "e.g. stereo=2,tracking=2; default 1 each")
    run.add_argument("--gpu", default="auto", choices=["auto", "off"],
                     help="auto: stages whose backend may be neural (stereo, tracking, "
                          "filtering with --backend auto or a weights backend) ask for one GPU "
                          "when the machine or cluster has one")
    run.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                     help="environment of every stage process, e.g. JAX_COMPILATION_CACHE_DIR="
                          "/shared/jax_cache (variables starting with "
                          + ", ".join(ENV_PASSTHROUGH_PREFIXES) + " are passed on already)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no final table")
    return parser


def _executor(args):
    if args.executor == "ray":
        try:
            return RayExecutor(address=args.ray_address, num_cpus=args.num_cpus)
        except ImportError as exc:
            raise InputError("--executor=ray needs Ray: pip install 'stereo4d[batch]'") from exc
    return LocalExecutor(args.workers, gpus=local_gpu_count() if args.gpu == "auto" else 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the batch; returns 0 when every clip is ok, else CLIPS_FAILED_EXIT_CODE."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.workers < 1 or args.retries < 0:
        parser.error("--workers must be >= 1 and --retries >= 0")
    folders = {k: Path(getattr(args, k)).resolve()
               for k in ("npz_folder", "raw_video_folder", "output_folder")}
    batch_dir = Path(args.batch_dir).resolve() if args.batch_dir else folders["output_folder"] / "_batch"
    stages = BatchPlan.select_stages([s.strip() for s in args.stages.split(",") if s.strip()])
    stage_args = parse_stage_args(args.stage_args)
    if args.vids:
        vids = read_vid_list(args.vids)
    else:
        vids, passed_over = discover_vids(
            folders["npz_folder"], folders["raw_video_folder"],
            new_videos=any(s.name == CAMERA_STAGE for s in stages))
        if passed_over:
            print(f"[batch] {len(passed_over)} npz file(s) without a raw video or with a malformed "
                  "name are not part of this batch", file=sys.stderr)
        if not vids:
            raise InputError(f"no clip in {folders['npz_folder']} has its raw video in "
                             f"{folders['raw_video_folder']}")
    cpus = {k: float(v) for k, v in
            parse_key_values(args.cpus_per_stage, "--cpus_per_stage", ALL_STAGE_NAMES).items()}
    if any(v <= 0 for v in cpus.values()):
        parser.error("--cpus_per_stage values must be > 0")
    executor = _executor(args)
    description = executor.describe()
    try:
        gpu_count = 0 if args.gpu == "off" else (
            executor.gpu_count() if isinstance(executor, RayExecutor) else executor.gpus)
        gpus = {s.name: 1.0 for s in stages if gpu_count and wants_gpu(s, stage_args[s.name])}
        plan = BatchPlan(vids=vids, stages=stages, log_dir=batch_dir / "logs",
                         stage_args=stage_args, cpus=cpus, gpus=gpus,
                         env=parse_key_values(args.env, "--env"), cwd=os.getcwd(), **folders)
        run_id = uuid.uuid4().hex[:12]
        print(f"[batch] run {run_id}: {len(vids)} clip(s), stages {','.join(s.name for s in stages)}"
              f" on {description}; records in {batch_dir}", file=sys.stderr)
        reporter = Reporter(batch_dir / "records.jsonl", len(vids), run_id,
                            show_progress=not args.quiet)
        t0 = time.perf_counter()
        try:
            records = run_batch(plan, executor, reporter, force=args.force, retries=args.retries,
                                keep=args.keep)
        finally:
            reporter.close()
        totals = summarize(records, time.perf_counter() - t0)
    finally:
        executor.shutdown()
    settings = {"run_id": run_id, "executor": description, "vids": vids,
                "stages": [s.name for s in stages], "stage_args": stage_args, "cpus": cpus,
                "gpus": gpus, "keep": args.keep, "force": args.force, "retries": args.retries,
                **{k: str(v) for k, v in folders.items()}}
    report = write_report(batch_dir / "report.json", records, totals, settings)
    if not args.quiet:
        print(format_table(records, totals))
    print(f"[batch] report: {report}", file=sys.stderr)
    return CLIPS_FAILED_EXIT_CODE if totals["failed"] else 0


def cli() -> None:
    """Console entry point: 0 when every clip is ok, 1 when one failed, 2 on bad flags."""
    sys.exit(run_cli_status(main))


def run_cli_status(entry, argv: Sequence[str] | None = None) -> int:
    """``run_cli`` (one ``error:`` line, exit 2 on bad input) keeping ``entry``'s own status."""
    status: list[int] = []
    code = run_cli(lambda a: status.append(entry(a)), argv)
    return code if code or not status else status[0]


if __name__ == "__main__":
    cli()
