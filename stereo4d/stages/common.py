"""Helpers every stage shares: provenance records, timing, output freshness."""

from __future__ import annotations

import datetime
import os
import platform
from collections.abc import Iterable
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import stereo4d
from stereo4d.io import ClipPaths, InputError, remove_stale_temporaries, save_json
from stereo4d.io.stage_files import STAGE_FILES
from stereo4d.timing import Timer

__all__ = [
    "Timer",
    "check_frame_counts",
    "outputs_fresh",
    "require_inputs",
    "stage_output_paths",
    "start_stage",
    "write_provenance",
]


def write_provenance(path: Path, *, stage: str, backend: str, settings: Any = None,
                     timings_s: dict | None = None, **extra: Any) -> Path:
    """Writes the small JSON that says which backend and settings produced a stage's output."""
    if is_dataclass(settings):
        settings = asdict(settings)
    record = {
        "stage": stage,
        "backend": backend,
        "settings": settings or {},
        "timings_s": timings_s or {},
        "stereo4d_version": stereo4d.__version__,
        "python": platform.python_version(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }
    return save_json(record, path)


def stage_output_paths(paths: ClipPaths, stage: str) -> list[Path]:
    """Every file ``stage`` may write for a clip (``io.stage_files``), its provenance JSON last."""
    return [*STAGE_FILES[stage].written(paths), paths.provenance(stage)]


def start_stage(paths: ClipPaths, stage: str) -> list[Path]:
    """What every stage does first, before reading anything.

    Removes the temporaries a killed run of it left for its outputs and for its completion
    marker (the provenance JSON): its own files only, never another stage's (see
    ``io.remove_stale_temporaries``). The marker itself stays until the stage is about to
    change its outputs, so a refused run leaves a complete earlier run complete.

    Returns:
      the stale temporaries removed.
    """
    return remove_stale_temporaries(stage_output_paths(paths, stage))


def require_inputs(inputs: Iterable[os.PathLike]) -> None:
    """InputError naming every file of ``inputs`` that does not exist."""
    missing = [str(p) for p in inputs if not Path(p).is_file()]
    if missing:
        raise InputError("missing input(s): " + ", ".join(missing))


def check_frame_counts(vid: str, counts: dict[str, int]) -> None:
    """InputError listing ``counts`` (input name -> frames) unless they are all equal."""
    if len(set(counts.values())) > 1:
        raise InputError(f"{vid}: frame counts differ: "
                         + ", ".join(f"{k} {v}" for k, v in counts.items()))


def outputs_fresh(outputs: Iterable[os.PathLike], inputs: Iterable[os.PathLike]) -> bool:
    """True when every output exists and is newer than every existing input."""
    outputs = [Path(p) for p in outputs]
    if not outputs or not all(p.is_file() for p in outputs):
        return False
    newest_input = max((Path(p).stat().st_mtime for p in inputs if Path(p).exists()), default=0.0)
    return min(p.stat().st_mtime for p in outputs) >= newest_input
