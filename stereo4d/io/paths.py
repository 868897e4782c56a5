"""Where every file of a clip lives: the one check of a clip id and ``ClipPaths``.

No stage spells a file name itself: ``ClipPaths`` knows where everything lives, and refuses
any path that would leave its folder.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from stereo4d.errors import InputError

__all__ = ["MAX_VID_LENGTH", "ClipPaths", "split_vid"]

#: Longest ``--vid`` accepted (released ids are an 11-character YouTube id, '_', microseconds).
MAX_VID_LENGTH = 128
#: A released clip id: URL-safe characters (YouTube ids may start with '-'), '_', digits.
_VID_PATTERN = re.compile(r"[A-Za-z0-9_-]+_[0-9]+")


def split_vid(vid: str) -> tuple[str, str]:
    """``<video_id>_<timestamp>`` -> (video_id, timestamp). Video ids may contain '_'.

    The one check of a clip id: URL-safe characters only (``[A-Za-z0-9_-]``), at most
    ``MAX_VID_LENGTH`` long, so it can never name a path ('/', '..', absolute).
    """
    if not isinstance(vid, str) or len(vid) > MAX_VID_LENGTH or not _VID_PATTERN.fullmatch(vid):
        shown = vid if not isinstance(vid, str) or len(vid) <= MAX_VID_LENGTH else vid[:40] + "..."
        raise InputError(f"--vid must look like <video_id>_<timestamp> of letters, digits, '_' and "
                         f"'-' (at most {MAX_VID_LENGTH} characters), got {shown!r}")
    video_id, _, stamp = vid.rpartition("_")
    return video_id, stamp


def _inside(folder: Path, name: str) -> Path:
    """``folder / name``, refused unless it stays inside ``folder`` (compared lexically, so a
    symlinked file such as a raw video on another disk is still allowed)."""
    path = folder / name
    base = os.path.abspath(folder)
    if os.path.commonpath([base, os.path.abspath(path)]) != base or os.path.abspath(path) == base:
        raise InputError(f"{path} is outside its folder {folder}")
    return path


@dataclass(frozen=True)
class ClipPaths:
    """Every path the pipeline reads or writes for one clip.

    Attributes:
      vid: ``<video_id>_<timestamp>``.
      npz_folder: released-format metadata (``<vid>.npz``).
      raw_video_folder: side-by-side equirect videos (``<video_id>.mp4``).
      output_folder: processed outputs; files go to ``<output_folder>/<vid>/``.
      gt_folder: synthetic ground truth (``<vid>.npz``).
    """

    vid: str
    npz_folder: Path = Path("stereo4d_dataset/npz")
    raw_video_folder: Path = Path("stereo4d_dataset/raw")
    output_folder: Path = Path("stereo4d_dataset/processed")
    gt_folder: Path = Path("stereo4d_dataset/gt")

    def __post_init__(self):
        split_vid(self.vid)
        for name in ("npz_folder", "raw_video_folder", "output_folder", "gt_folder"):
            object.__setattr__(self, name, Path(getattr(self, name)))

    @property
    def video_id(self) -> str:
        return split_vid(self.vid)[0]

    @property
    def npz(self) -> Path:
        return _inside(self.npz_folder, f"{self.vid}.npz")

    @property
    def raw_video(self) -> Path:
        return _inside(self.raw_video_folder, f"{self.video_id}.mp4")

    @property
    def gt(self) -> Path:
        return _inside(self.gt_folder, f"{self.vid}.npz")

    @property
    def clip_dir(self) -> Path:
        return _inside(self.output_folder, self.vid)

    def out(self, suffix: str) -> Path:
        """``<output_folder>/<vid>/<vid>-<suffix>``."""
        return _inside(self.clip_dir, f"{self.vid}-{suffix}")

    # Stage 1: rectify
    @property
    def raw_equirect_video(self) -> Path:
        return self.out("raw_equirect.mp4")

    @property
    def rectified_equirect_video(self) -> Path:
        return self.out("rectified_equirect.mp4")

    @property
    def left_video(self) -> Path:
        return self.out("left_rectified.mp4")

    @property
    def right_video(self) -> Path:
        return self.out("right_rectified.mp4")

    # Stage 2: stereo
    @property
    def flows_stereo(self) -> Path:
        """Reference format: float32 ``fwd``/``bwd`` flows per frame (``--stereo_format=pickle``)."""
        return self.out("flows_stereo.pkl")

    @property
    def stereo_compact(self) -> Path:
        """Compact format (default): quantised ``fwd`` flow and validity (``save_stereo_compact``)."""
        return self.out("stereo.npz")

    @property
    def stereo_output(self) -> Path:
        """The stereo stage's output as written: the compact npz if present, else the pickle.

        When neither exists, the compact path (the default format), for messages.
        """
        if not self.stereo_compact.is_file() and self.flows_stereo.is_file():
            return self.flows_stereo
        return self.stereo_compact

    # Stage 3: tracking
    @property
    def tracks_2d(self) -> Path:
        return self.out("tapir_2d.pkl")

    @property
    def tracks_2d_video(self) -> Path:
        return self.out("tapir_2d.mp4")

    # Stage 4: filtering
    @property
    def filtered_tracks(self) -> Path:
        return self.out("tapir_remove_drift_tracks.pkl")

    @property
    def filtered_tracks_video(self) -> Path:
        return self.out("tapir_3dtrack_filtered.mp4")

    @property
    def segmentation(self) -> Path:
        """Label maps [T, H, W] uint8 (ADE20K ids) and the filter's ``kept`` [N] mask."""
        return self.out("segmentation.npz")

    # Stage 5: optimisation
    @property
    def optimized_tracks(self) -> Path:
        return self.out("optimized_tracks.pkl")

    @property
    def export_npz(self) -> Path:
        """Optimised tracks in the released dataset format."""
        return _inside(self.clip_dir, f"{self.vid}.npz")

    @property
    def raw_depth_video(self) -> Path:
        """Preview: the stereo depth maps."""
        return self.out("raw_depth.mp4")

    @property
    def optimized_depth_video(self) -> Path:
        """Preview: the depth maps of the optimised static points."""
        return self.out("optimized_depth.mp4")

    def provenance(self, stage: str) -> Path:
        """Small JSON beside a stage's output: backend, settings, timings."""
        return self.out(f"{stage}.json")

    def intermediates(self) -> list[Path]:
        """Files only later stages read (stereo flows, 2D track pickles, label maps).

        ``--keep=final`` deletes them once ``finals()`` are written; the stage markers, the
        rectified views and every preview video stay.
        """
        return [self.flows_stereo, self.stereo_compact, self.tracks_2d, self.filtered_tracks,
                self.segmentation]

    def finals(self) -> list[Path]:
        """What a finished clip keeps: released-format npz, optimised tracks, rectified views."""
        return [self.export_npz, self.optimized_tracks, self.left_video, self.right_video]
