"""track_visualization.ipynb runs headless, top to bottom, on a small synthetic clip."""


import nbformat
import pytest
from nbclient import NotebookClient

import rectify as rectify_script
from stereo4d import io as sio
from stereo4d.synthetic import SyntheticClipConfig, make_synthetic_clip
from tests.conftest import REPO_ROOT

VID = "notebookclip_0"


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    root = tmp_path_factory.mktemp("nb")
    paths = sio.ClipPaths(VID, root / "npz", root / "raw", root / "processed", root / "gt")
    make_synthetic_clip(paths, SyntheticClipConfig(num_frames=6, eye_size_px=320, gt_size_px=128,
                                                   num_tracks=300))
    assert rectify_script.main([f"--vid={VID}", f"--npz_folder={paths.npz_folder}",
                                f"--raw_video_folder={paths.raw_video_folder}",
                                f"--output_folder={paths.output_folder}", "--output_height=128",
                                "--output_width=128", "--min_equirect_height=0",
                                "--skip_equirect_videos"]) is None
    return paths


def test_notebook_runs_and_draws_tracks(clip, monkeypatch):
    monkeypatch.setenv("STEREO4D_VID", VID)
    monkeypatch.setenv("STEREO4D_NPZ", str(clip.npz))
    monkeypatch.setenv("STEREO4D_OUTPUT_FOLDER", str(clip.output_folder))
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    nb = nbformat.read(REPO_ROOT / "track_visualization.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(REPO_ROOT)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    n_tracks = len(sio.load_dataset_npz(clip.npz)["track3d"])
    assert f"tracks: ({n_tracks}, 6, 3)" in text
    low, high = (int(v) for v in text.split("points drawn per frame:")[1].split()[::2][:2])
    assert 0 < low <= high <= 300  # tracks really land in the frames
    videos = [o for o in outputs if o.get("output_type") == "display_data"
              and "<video" in o.get("data", {}).get("text/html", "")]
    assert len(videos) == 2
    # The Rerun cell shows the inline viewer when rerun_notebook is installed (the ``viewer``
    # extra, which the tests install), else says so.
    import importlib.util

    if importlib.util.find_spec("rerun_notebook") is None:
        assert "rerun inline viewer: not available" in text
        return
    assert "rerun inline viewer: 6 frames" in text
    widgets = [o for o in outputs if o.get("output_type") == "display_data"
               and "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert any("Viewer" in w["data"].get("text/plain", "") for w in widgets), widgets
