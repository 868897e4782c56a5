"""Smoke test of the accuracy suite: two small varied clips through the suite code (render,
five stages, evaluation, table, cache) and the error budget, with loose figure guards."""

import dataclasses
import math

import numpy as np
import pytest

from stereo4d.error_budget import budget_clip, format_budget_table
from stereo4d.suite import (
    SUITE_CLIPS,
    SUITE_METRICS,
    _clip,
    clip_paths,
    format_suite_table,
    run_suite,
)
from stereo4d.synthetic import SceneVariation, SyntheticClipConfig, build_scene

SMALL = {"frames": 8, "eye_size_px": 512, "gt_size_px": 256, "num_tracks": 300}
CLIPS = (
    _clip("smokea", "tuning", "seed 1", seed=1, **SMALL),
    _clip("smokeb", "heldout", "turn, movers, photos, low bitrate, eye gain", seed=12,
          crf=28, chroma_444=False, right_eye_gain_rgb=(1.08, 1.0, 0.92), exposure_change=0.15,
          scene={"turn_deg_s": -45.0, "extra_movers": 3, "photo_texture_fraction": 0.5},
          **SMALL),
)


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    root = tmp_path_factory.mktemp("suite")
    reports, summary, times = run_suite(root, CLIPS, json_path=root / "suite.json")
    return root, reports, summary, times


def test_suite_list_is_split_and_varied():
    halves = [c.half for c in SUITE_CLIPS]
    assert len(SUITE_CLIPS) >= 8 and halves.count("tuning") == halves.count("heldout")
    assert max(c.config.num_frames for c in SUITE_CLIPS) >= 150
    assert len({c.vid for c in SUITE_CLIPS}) == len(SUITE_CLIPS)
    varied = {f.name for c in SUITE_CLIPS for f in dataclasses.fields(SceneVariation)
              if getattr(c.config.scene, f.name) != getattr(SceneVariation(), f.name)}
    assert varied == {f.name for f in dataclasses.fields(SceneVariation)}
    assert any(not c.config.chroma_444 and c.config.crf >= 28 for c in SUITE_CLIPS)
    assert any(c.config.exposure_change > 0 for c in SUITE_CLIPS)
    assert any(c.config.right_eye_gain_rgb != (1.0, 1.0, 1.0) for c in SUITE_CLIPS)


def test_default_variation_is_the_demo_scene():
    demo = build_scene(0, 1.6)
    varied = build_scene(0, 1.6, variation=SceneVariation(near_clutter=2, extra_movers=3))
    assert len(varied.primitives) == len(demo.primitives) + 5
    for a, b in zip(demo.primitives, varied.primitives):  # the demo's objects are untouched
        assert a.name == b.name
        np.testing.assert_array_equal(a.texture.wave_cycles_per_m, b.texture.wave_cycles_per_m)
    assert varied.is_dynamic.sum() == demo.is_dynamic.sum() + 3
    turned = build_scene(0, 1.6, variation=SceneVariation(turn_deg_s=40.0))
    c2w = turned.camera.camera_to_world(np.array([0.0, 1.0]))
    base = demo.camera.camera_to_world(np.array([0.0, 1.0]))
    yaw = np.degrees(np.arccos(np.clip((np.trace(c2w[1, :, :3] @ base[1, :, :3].T) - 1) / 2,
                                       -1, 1)))
    assert yaw == pytest.approx(40.0, abs=0.5)
    gains = SyntheticClipConfig(exposure_change=0.2, right_eye_gain_rgb=(1.1, 1.0, 0.9))
    left, right = gains.eye_gains_rgb(0.5)  # a quarter of the 2 s period: the peak
    np.testing.assert_allclose(left, 1.2)
    np.testing.assert_allclose(right, [1.32, 1.2, 1.08])
    assert SyntheticClipConfig().eye_gains_rgb(0.5) == (None, None)


def test_suite_runs_scores_and_tabulates(suite):
    root, reports, summary, times = suite
    assert [r["clip"] for r in reports] == ["smokea", "smokeb"]
    for r in reports:
        assert r["missing"] == [], r["missing"]
        assert r["backends"]["stereo"] == "sgbm" and r["backends"]["tracking"] == "dis-flow"
        for key, _, _ in SUITE_METRICS:
            assert not math.isnan(r[key]), (r["clip"], key)
        # Loose guards (256 px views, 8 frames: small disparities, few frames to optimise).
        assert r["stereo.density"] > 0.15 and r["stereo.depth_absrel"] < 0.15
        assert r["tracks2d.delta_avg"] > 0.7 and r["segmentation.static_iou"] > 0.7
        assert r["filter.good_kept"] > 0.7
        assert 0.02 < r["tracks3d.after.coverage"] <= 1
        assert r["tracks3d.after.apd3d_covered"] > 0.2
        assert r["tracks3d.after.apd3d"] <= r["tracks3d.after.apd3d_covered"] + 1e-9
    assert set(summary) == {"tuning", "heldout"}
    assert summary["heldout"]["mean"]["stereo.density"] == reports[1]["stereo.density"]
    table = format_suite_table(reports, summary)
    assert table.count("**mean**") == 2 and "smokeb" in table
    assert (root / "suite.json").is_file() and times["cpu_s"] > 0


def test_suite_cache_skips_fresh_clips(suite):
    root, reports, _, _ = suite
    again, _, _ = run_suite(root, CLIPS[:1])
    assert again[0]["timings_s"]["render"] < 2.0  # not re-rendered
    assert again[0]["timings_s"]["rectify"] < 0.5 and again[0]["timings_s"]["optimization"] < 0.5
    assert again[0]["tracks3d.after.apd3d"] == reports[0]["tracks3d.after.apd3d"]


def test_error_budget_substitutions(suite):
    root, reports, _, _ = suite
    paths = clip_paths(CLIPS[0], root)
    budget = budget_clip(paths, variants=("pipeline", "true_filter", "all_true"))
    base = budget["pipeline"]
    # The budget's baseline re-runs the same code as the pipeline: same figures.
    assert base["coverage"] == pytest.approx(reports[0]["tracks3d.after.coverage"], abs=1e-6)
    assert base["apd3d"] == pytest.approx(reports[0]["tracks3d.after.apd3d"], abs=1e-6)
    assert budget["all_true"]["coverage"] > base["coverage"] + 0.2
    assert budget["all_true"]["apd3d_covered"] > base["apd3d_covered"]
    assert "all_true" in format_budget_table({paths.vid: budget})
