"""Health of each stage's output: a few figures, and when an output is degenerate or unusable.

Every stage computes its figures on what it is about to write (the ``*_health`` functions),
then calls ``Health.enforce`` before writing anything:

* **unusable** (nothing in it can be used downstream: no valid depth pixel, no trustworthy
  track, no kept track, no finite optimised point): ``DegenerateOutputError`` (an
  ``InputError``: one ``error: ...`` line on stderr, exit 2) and nothing is written, so the
  outputs of an earlier good run stay as they were;
* **degenerate** (a figure past its threshold below): one ``warning: ...`` line on stderr, the
  outputs are written, and the figures and warnings go into the provenance JSON
  (``health``, ``warnings``).

The thresholds are all here. They were chosen so that the synthetic clips never warn (checked
on the 48-frame 512 px demo clip of seed 0 and on the 8-frame 96 px clip of seed 1; the figures
quoted below are from those) while blank and nearly blank clips do (``tests/test_health.py``).
On real footage they flag what deserves a look (a mostly-sky shot can warn); only an output
with nothing usable in it is refused.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import numpy as np

from stereo4d.backends.imageops import MIN_TEXTURE_LEVELS_PER_PX, texture_at_points, texture_map
from stereo4d.io import InputError

__all__ = [
    "FILTER_MAX_DOMINANT_LABEL_FRACTION",
    "FILTER_MIN_KEPT_FRACTION",
    "MIN_TEXTURE_LEVELS_PER_PX",
    "OPT_MIN_FINITE_FRACTION",
    "OPT_MIN_KEPT_POINT_FRACTION",
    "RECTIFY_MIN_TEXTURED_FRACTION",
    "STEREO_MIN_VALID_DEPTH_FRACTION",
    "TRACKING_MIN_TRUSTED_FRACTION",
    "DegenerateOutputError",
    "Health",
    "filtering_health",
    "optimization_health",
    "rectify_health",
    "stereo_health",
    "textured_fraction",
    "tracking_health",
]

#: rectify: share of the left views' pixels with texture (``MIN_TEXTURE_LEVELS_PER_PX``) below
#: which the views are nearly blank (synthetic clips: 0.99; a grey clip with a small patch of
#: scene: 0.08).
RECTIFY_MIN_TEXTURED_FRACTION = 0.2
#: stereo: share of pixels with a valid depth below which the stereo output is degenerate
#: (synthetic clips: about 0.85 in 512 px views, 0.17-0.25 in 96-192 px views, where far depth
#: is lost: sub-pixel disparities fail the noise test; real footage loses sky and occlusions).
STEREO_MIN_VALID_DEPTH_FRACTION = 0.1
#: tracking: share of trustworthy tracks (texture at the query point, visible in at least
#: ``TRACKING_MIN_VISIBLE_FRAMES`` frames) below which the tracks are degenerate (synthetic
#: clips: 0.98).
TRACKING_MIN_TRUSTED_FRACTION = 0.25
#: tracking: a track seen in fewer frames than this (its query frame only) tracks nothing.
TRACKING_MIN_VISIBLE_FRAMES = 2
#: filtering: share of tracks kept below which the filter output is degenerate (synthetic
#: clips: 0.59 to 0.79).
FILTER_MIN_KEPT_FRACTION = 0.05
#: filtering: share of all pixels carrying the most common label above which the label maps
#: are suspicious (one label on everything: a blank or unreadable video; synthetic clips: 0.50
#: to 0.66).
FILTER_MAX_DOMINANT_LABEL_FRACTION = 0.95
#: optimisation: share of the lifted points kept after the optimisation below which it is
#: degenerate (synthetic clips: 0.69 to 0.80).
OPT_MIN_KEPT_POINT_FRACTION = 0.2
#: optimisation: share of finite points among the kept ones below which it is degenerate
#: (every kept point should be finite).
OPT_MIN_FINITE_FRACTION = 0.999


class DegenerateOutputError(InputError):
    """Nothing usable came out of a stage (reported like bad input: ``error:``, exit 2)."""


@dataclass
class Health:
    """Figures of one stage's output, with what is degenerate and what is unusable.

    Attributes:
      stage: stage name (for messages).
      figures: name -> number (shares in [0, 1], counts).
      warnings: degenerate figures, one sentence each.
      unusable: why nothing usable came out (None when something did).
    """

    stage: str
    figures: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    unusable: str | None = None

    def check_below(self, name: str, threshold: float, what: str) -> None:
        """Records a warning when ``figures[name] < threshold``."""
        if self.figures[name] < threshold:
            self.warnings.append(f"{what} {self.figures[name]:.1%} (< {threshold:.1%})")

    def enforce(self, source: str) -> None:
        """Raises ``DegenerateOutputError`` when unusable; else prints one warning line if any.

        Args:
          source: what the figures describe (the input the stage ran on), for the messages.
        """
        if self.unusable:
            raise DegenerateOutputError(f"{self.stage}: nothing usable from {source}: "
                                        f"{self.unusable}; no output written")
        if self.warnings:
            print(f"warning: {self.stage}: degenerate output from {source}: "
                  + "; ".join(self.warnings), file=sys.stderr, flush=True)

    def record(self) -> dict:
        """The provenance fields: ``{"health": figures, "warnings": [...]}``."""
        return {"health": dict(self.figures), "warnings": list(self.warnings)}


def textured_fraction(image: np.ndarray) -> float:
    """Share of the pixels of a uint8 [H, W, 3] image with texture (``MIN_TEXTURE_LEVELS_PER_PX``)."""
    return float(np.mean(texture_map(image) >= MIN_TEXTURE_LEVELS_PER_PX))


def rectify_health(textured_fractions: list[float]) -> Health:
    """Texture of the left perspective views.

    Args:
      textured_fractions: ``textured_fraction`` of each frame's left view.
    """
    health = Health("rectify")
    health.figures.update(
        frames=len(textured_fractions),
        textured_pixel_fraction=float(np.mean(textured_fractions)) if textured_fractions else 0.0)
    health.check_below("textured_pixel_fraction", RECTIFY_MIN_TEXTURED_FRACTION,
                       "textured pixels in the left views (a blank video?):")
    return health


def stereo_health(valid_depth: np.ndarray) -> Health:
    """Valid-depth figures of the stereo output.

    Args:
      valid_depth: [T, H, W] bool, pixels with a valid depth.
    """
    health = Health("stereo")
    count = int(np.count_nonzero(valid_depth))
    health.figures.update(valid_depth_pixels=count,
                          valid_depth_fraction=count / max(valid_depth.size, 1))
    if count == 0:
        health.unusable = "no pixel has a valid disparity (no texture to match?)"
    health.check_below("valid_depth_fraction", STEREO_MIN_VALID_DEPTH_FRACTION, "valid depth on")
    return health


def tracking_health(frames: np.ndarray, tracks_xy: np.ndarray, visibles: np.ndarray,
                    query_points_tyx: np.ndarray) -> Health:
    """Track counts, visibility, and the share of trustworthy tracks.

    A track is trustworthy when its query point has texture (``MIN_TEXTURE_LEVELS_PER_PX``;
    measured here whatever the backend) and it is visible in at least
    ``TRACKING_MIN_VISIBLE_FRAMES`` frames.

    Args:
      frames: [T, H, W, 3] uint8; tracks_xy: [N, T, 2]; visibles: [N, T] bool;
      query_points_tyx: [N, 3].
    """
    health = Health("tracking")
    num_tracks = len(visibles)
    textured = texture_at_points(frames, query_points_tyx) >= MIN_TEXTURE_LEVELS_PER_PX
    seen = np.asarray(visibles, bool).sum(axis=1) >= TRACKING_MIN_VISIBLE_FRAMES
    trusted = int(np.count_nonzero(textured & seen))
    moving = np.nanmax(np.linalg.norm(tracks_xy - tracks_xy[:, :1], axis=-1), axis=1) > 1.0 \
        if num_tracks else np.zeros(0, bool)
    denominator = max(num_tracks, 1)
    health.figures.update(
        num_tracks=num_tracks,
        visible_fraction=float(np.mean(visibles)) if num_tracks else 0.0,
        textured_query_fraction=float(np.count_nonzero(textured)) / denominator,
        moving_fraction=float(np.count_nonzero(moving)) / denominator,
        num_trusted=trusted,
        trusted_fraction=trusted / denominator,
    )
    if num_tracks == 0:
        health.unusable = "no track"
    elif trusted == 0:
        health.unusable = (f"none of the {num_tracks} tracks is trustworthy (no texture at any "
                           f"query point, or none seen beyond its query frame)")
    health.check_below("trusted_fraction", TRACKING_MIN_TRUSTED_FRACTION,
                       "trustworthy tracks (texture at the query, seen twice)")
    return health


def filtering_health(labels: np.ndarray, keep: np.ndarray, has_depth: np.ndarray) -> Health:
    """Share of tracks kept, of kept tracks with a 3D point, and the label distribution.

    Args:
      labels: [T, H, W] uint8 ADE20K ids; keep: [N] bool;
      has_depth: [N, T] bool, visible points with a valid stereo depth.
    """
    health = Health("filtering")
    counts = np.bincount(np.asarray(labels, np.uint8).ravel(), minlength=256)
    total = max(int(counts.sum()), 1)
    dominant = int(np.argmax(counts))
    keep = np.asarray(keep, bool)
    num_in, num_kept = len(keep), int(np.count_nonzero(keep))
    num_lifted = int(np.count_nonzero(keep & np.asarray(has_depth, bool).any(axis=1)))
    health.figures.update(
        num_tracks_in=num_in, num_tracks_kept=num_kept, num_kept_with_depth=num_lifted,
        kept_fraction=num_kept / max(num_in, 1),
        label_fractions={str(i): counts[i] / total for i in np.flatnonzero(counts)},
        dominant_label=dominant, dominant_label_fraction=counts[dominant] / total,
    )
    if num_kept == 0:
        health.unusable = f"no track survived the filters ({num_in} in)"
    elif num_lifted == 0:
        health.unusable = f"none of the {num_kept} kept tracks has a stereo depth in any frame"
    health.check_below("kept_fraction", FILTER_MIN_KEPT_FRACTION, "tracks kept")
    if health.figures["dominant_label_fraction"] > FILTER_MAX_DOMINANT_LABEL_FRACTION:
        health.warnings.append(f"one label (ADE20K id {dominant}) on "
                               f"{health.figures['dominant_label_fraction']:.1%} of the pixels "
                               f"(> {FILTER_MAX_DOMINANT_LABEL_FRACTION:.1%})")
    return health


def optimization_health(lifted_visible: np.ndarray, track3d: np.ndarray,
                        visible: np.ndarray, optimised_finite: np.ndarray | None = None) -> Health:
    """Kept and finite points of the optimised tracks.

    Args:
      lifted_visible: [N, T] bool, points lifted to 3D before the optimisation;
      track3d: [N, T, 3] output world points; visible: [N, T] bool, kept points.
      optimised_finite: [N, T] bool, the finite points the optimisation itself kept, before
        any gap filling (default: the output's). With none the clip is unusable: points
        filled from unoptimised lifted tracks alone are no result.
    """
    health = Health("optimization")
    visible = np.asarray(visible, bool)
    finite = visible & np.all(np.isfinite(track3d), axis=-1)
    num_lifted, num_kept = int(np.count_nonzero(lifted_visible)), int(np.count_nonzero(visible))
    num_finite = int(np.count_nonzero(finite))
    num_optimised = int(np.count_nonzero(finite if optimised_finite is None else optimised_finite))
    health.figures.update(
        num_points_lifted=num_lifted, num_points_kept=num_kept, num_points_finite=num_finite,
        num_points_optimised=num_optimised,
        kept_point_fraction=num_kept / max(num_lifted, 1),
        finite_fraction=num_finite / max(num_kept, 1) if num_kept else 0.0,
    )
    if num_finite == 0 or num_optimised == 0:
        health.unusable = (f"no finite optimised point ({num_lifted} lifted, {num_kept} kept, "
                           f"{num_optimised} optimised)")
    health.check_below("kept_point_fraction", OPT_MIN_KEPT_POINT_FRACTION, "points kept")
    if num_kept:
        health.check_below("finite_fraction", OPT_MIN_FINITE_FRACTION, "finite kept points")
    return health
