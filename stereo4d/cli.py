"""Shared command-line plumbing for the top-level scripts (flags in, one call out)."""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable, Sequence

from stereo4d.io import InputError

__all__ = ["add_backend_args", "run_cli", "stage_parser"]


def stage_parser(description: str, *, raw_video: bool = False, gt: bool = False) -> argparse.ArgumentParser:
    """A parser with the reference's common flags (``--vid``, folders)."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--vid", required=True, help="clip id <video_id>_<timestamp_us>")
    parser.add_argument("--npz_folder", default="stereo4d_dataset/npz",
                        help="folder of released-format <vid>.npz files")
    if raw_video:
        parser.add_argument("--raw_video_folder", default="stereo4d_dataset/raw",
                            help="folder of side-by-side equirect <video_id>.mp4 files")
    parser.add_argument("--output_folder", default="stereo4d_dataset/processed",
                        help="outputs go to <output_folder>/<vid>/")
    if gt:
        parser.add_argument("--gt_folder", default="stereo4d_dataset/gt",
                            help="synthetic ground truth <vid>.npz (for scoring)")
    return parser


def add_backend_args(parser: argparse.ArgumentParser, registry, *, weights: bool = True) -> None:
    """Adds ``--backend`` (from a registry), and for neural stages ``--path``/``--device``."""
    parser.add_argument("--backend", default="auto", choices=registry.choices(), help=registry.help())
    if weights:
        parser.add_argument("--path", default=None, help="local checkpoint file or folder")
        parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                            help="auto picks CUDA when present")


def _known_errors() -> tuple[type[BaseException], ...]:
    from stereo4d.backends.registry import UnknownBackendError
    from stereo4d.weights import CheckpointError, WeightsNotFoundError

    return (InputError, WeightsNotFoundError, CheckpointError, UnknownBackendError)


def run_cli(main: Callable[[Sequence[str] | None], object], argv: Sequence[str] | None = None) -> int:
    """Runs ``main(argv)``; known input errors print one clear line and exit 2."""
    try:
        main(argv)
    except _known_errors() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; no partial outputs were kept", file=sys.stderr)
        return 130
    except Exception:  # noqa: BLE001 - anything unexpected: full traceback, exit 1
        traceback.print_exc()
        return 1
    return 0
