"""Shared command-line plumbing for the top-level scripts (flags in, one call out)."""

from __future__ import annotations

import argparse
import math
import sys
import traceback
from collections.abc import Callable, Sequence

from stereo4d.io import InputError, split_vid

__all__ = [
    "MAX_FOV_DEG",
    "MAX_IMAGE_SIDE_PX",
    "CommandParser",
    "add_backend_args",
    "command_parser",
    "float_in_range",
    "hfov_deg",
    "int_in_range",
    "run_cli",
    "stage_parser",
    "vid_arg",
]

#: Largest side (px) of an image a flag may ask for (perspective views, synthetic eyes).
MAX_IMAGE_SIDE_PX = 8192
#: Field-of-view flags are angles of a pinhole view: open interval (0, MAX_FOV_DEG) degrees.
MAX_FOV_DEG = 180.0


class CommandParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one ``error: ...`` line on stderr, exit 2.

    The same shape as ``run_cli``'s errors, so every refusal of every command looks alike.
    """

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def int_in_range(low: int, high: int | None = None) -> Callable[[str], int]:
    """argparse ``type``: an integer in [low, high] (``high`` None: no upper bound)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bound = f">= {low}" if high is None else f"in [{low}, {high}]"
            raise argparse.ArgumentTypeError(f"must be an integer {bound}, got {value}")
        return value
    parse.__name__ = "int"
    return parse


def float_in_range(low: float | None = None, high: float | None = None, *,
                   low_open: bool = False, high_open: bool = False) -> Callable[[str], float]:
    """argparse ``type``: a finite float within the bounds (``None``: unbounded on that side;
    ``low_open`` / ``high_open`` exclude the bound itself)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and (value >= high if high_open else value > high)
        if not math.isfinite(value) or too_low or too_high:
            lo = "(-inf" if low is None else f"{'(' if low_open else '['}{low:g}"
            hi = "inf)" if high is None else f"{high:g}{')' if high_open else ']'}"
            raise argparse.ArgumentTypeError(f"must be a finite number in {lo}, {hi}, got {text}")
        return value
    parse.__name__ = "float"
    return parse


#: argparse ``type`` of every horizontal field-of-view flag: degrees in (0, 180).
hfov_deg = float_in_range(0.0, MAX_FOV_DEG, low_open=True, high_open=True)


def vid_arg(text: str) -> str:
    """argparse ``type`` of ``--vid``: checked by ``io.split_vid`` (the one vid check)."""
    try:
        split_vid(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--vid ")) from None
    return text


def command_parser(description: str) -> CommandParser:
    """The parser every command starts from (``CommandParser``, defaults shown in --help)."""
    return CommandParser(description=description,
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)


def stage_parser(description: str, *, raw_video: bool = False, gt: bool = False) -> CommandParser:
    """A parser with the reference's common flags (``--vid``, folders)."""
    parser = command_parser(description)
    parser.add_argument("--vid", required=True, type=vid_arg,
                        help="clip id <video_id>_<timestamp_us>")
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
    except SystemExit as exc:  # argparse refusing a flag (exit 2) or --help (exit 0)
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; no partial outputs were kept", file=sys.stderr)
        return 130
    except Exception:  # noqa: BLE001 - anything unexpected: full traceback, exit 1
        traceback.print_exc()
        return 1
    return 0
