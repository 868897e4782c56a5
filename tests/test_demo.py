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
