"""The demo runner's freshness rule and stage table."""

import os
import time

from stereo4d.demo import pipeline_stages
from stereo4d.io import ClipPaths
from stereo4d.stages.common import outputs_fresh


def test_outputs_fresh_requires_all_outputs_newer_than_inputs(tmp_path):
    inp, out1, out2 = (tmp_path / n for n in ("in.mp4", "a.pkl", "b.mp4"))
    inp.write_text("x")
    assert not outputs_fresh([out1, out2], [inp])  # nothing written yet
    out1.write_text("y")
    assert not outputs_fresh([out1, out2], [inp])  # one output missing (a stage killed halfway)
    out2.write_text("z")
    now = time.time()
    os.utime(inp, (now - 10, now - 10))
    assert outputs_fresh([out1, out2], [inp])
    os.utime(inp, (now + 10, now + 10))  # input changed after the outputs were made
    assert not outputs_fresh([out1, out2], [inp])


def test_stage_table_chains_outputs_to_inputs():
    paths = ClipPaths("abc_1")
    stages = pipeline_stages()
    assert [s.script for s in stages] == ["rectify.py", "inference_raft.py", "tracking.py",
                                          "segmentation.py", "track_optimization.py"]
    produced = {paths.npz, paths.raw_video}
    for stage in stages:
        assert set(stage.inputs(paths)) <= produced, stage.name
        produced |= set(stage.outputs(paths))


def test_estimate_cameras_sets_the_npz_aside_and_scores_against_it(tmp_path, monkeypatch):
    """demo --estimate_cameras: the clip's npz is set aside, the estimate (here the truth moved
    rigidly and turned about the baseline, both unobservable) replaces it after alignment."""
    import numpy as np

    from stereo4d import demo, geometry
    from stereo4d.io import load_dataset_npz, save_dataset_npz

    paths = ClipPaths("abc_1", tmp_path / "npz", tmp_path / "raw", tmp_path / "out", tmp_path / "gt")
    rng = np.random.default_rng(0)
    rots = np.stack([geometry.rotation_xyz_deg(*rng.uniform(-10, 10, 3)) for _ in range(6)])
    truth = np.concatenate([rots, np.cumsum(rng.normal(size=(6, 3, 1)), axis=0)], axis=-1)
    rig = np.stack([geometry.rotation_xyz_deg(2, -3, 1), geometry.rotation_xyz_deg(-1, 2, -2)])
    fields = {"name": "abc_1", "video_id": "abc", "timestamps_us": np.arange(6) * 33333,
              "track3d": np.zeros((0, 6, 3)), "fov_bounds_deg": np.array([-50.0, 50, -50, 50])}
    save_dataset_npz(paths.npz, camera2world=truth, rectified2rig=rig, **fields)
    paths.gt.parent.mkdir(parents=True)
    paths.gt.write_bytes(b"synthetic")
    gauge = geometry.rotation_xyz_deg(0.7, 0, 0)  # about the baseline: not observable
    moved = geometry.reanchor_camera2world(truth)
    moved[..., :3] = moved[..., :3] @ gauge

    def fake_run(cmd, label):
        assert label == "estimate_cameras" and "--fov_bounds=-50,50,-50,50" in cmd
        folder = next(a.split("=", 1)[1] for a in cmd if a.startswith("--npz_folder="))
        save_dataset_npz(f"{folder}/abc_1.npz", camera2world=moved, rectified2rig=rig @ gauge,
                         **fields)

    monkeypatch.setattr(demo, "_run", fake_run)
    demo._estimate_cameras(paths, "python", 6, force=False)
    assert demo.set_aside_npz(paths).is_file()
    aligned = load_dataset_npz(paths.npz)
    np.testing.assert_allclose(aligned["camera2world"], truth, atol=1e-6)
    np.testing.assert_allclose(aligned["rectified2rig"], rig, atol=1e-9)


def test_a_plain_run_restores_the_set_aside_npz(tmp_path):
    """After --estimate_cameras, a run without it puts the clip's own npz back, marked new so
    the stages that read the estimated cameras run again."""
    import os

    from stereo4d.demo import restore_set_aside_npz, set_aside_npz
    from stereo4d.io import ClipPaths

    paths = ClipPaths("clip_5", npz_folder=tmp_path / "npz")
    assert not restore_set_aside_npz(paths)  # nothing set aside: nothing to do
    aside = set_aside_npz(paths)
    aside.parent.mkdir(parents=True)
    aside.write_bytes(b"own")
    paths.npz.write_bytes(b"estimated")
    os.utime(aside, (1.0, 1.0))
    assert restore_set_aside_npz(paths)
    assert paths.npz.read_bytes() == b"own" and not aside.exists()
    assert paths.npz.stat().st_mtime > 1.0


def test_one_file_list_per_stage_serves_stages_and_runners(tmp_path):
    """The runners' view of a stage's files and the stage's own cleanup list are the same
    entry of ``io.stage_files``: every always-written output is also in the stage's list."""
    from stereo4d.io.stage_files import STAGE_FILES
    from stereo4d.pipeline import ALL_STAGE_NAMES, pipeline_stages
    from stereo4d.stages import filtering, optimization, rectify, stereo, tracking

    paths = ClipPaths("abc_1", output_folder=tmp_path)
    assert tuple(STAGE_FILES) == ALL_STAGE_NAMES
    modules = dict(zip(["rectify", "stereo", "tracking", "filtering", "optimization"],
                       [rectify, stereo, tracking, filtering, optimization]))
    for stage in pipeline_stages(cameras=True)[1:]:
        written = modules[stage.name].output_paths(paths)
        assert written[-1] == paths.provenance(stage.name)
        assert set(stage.outputs(paths)) | set(stage.previews(paths)) == set(written[:-1])
        assert len(set(written)) == len(written)
    assert paths.flows_stereo in stereo.output_paths(paths)  # either format is cleaned up
    assert paths.stereo_compact in stereo.output_paths(paths)
    assert len(optimization.output_paths(paths)) == 2 + 2 + 6 + 1
