"""TAPIR (BootsTAPIR settings): parity with the reference goldens, and non-square correctness.

Goldens: ``tests/parity/tapir_bootstap_golden.npz`` (see ``tests/parity/README.md`` §2),
produced with the deterministic weights of ``tests/parity/make_weights.py``.
Tolerances from the notes: tracks <= 1e-2 px, logits <= 1e-3, identical visibility
(float32 vs float64 in the reference: 6.5e-5 px, 2.4e-5).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from stereo4d.backends.tapir_tracker import TapirTracker, TapirTrackerConfig, resize_frames_lanczos
from stereo4d.models import tapir_ops
from stereo4d.models.tapir import HIRES_DIM, LOWRES_DIM, MIXER_STATE_DIM, TAPIR, TapirConfig
from tests.conftest import load_make_weights

PARITY = Path(__file__).parent / "parity"
SPEC_PATH = PARITY / "tapir_bootstap_state_dict_spec.json"
TRACKS_TOL_PX = 1e-2
LOGITS_TOL = 1e-3
NUM_PARAMETERS = 54_699_335
# First correlation input of the mixer: after (dx, dy, occlusion, expected_dist) and the features.
MIXER_CORR_START = MIXER_STATE_DIM + HIRES_DIM + LOWRES_DIM


MAKE_WEIGHTS = load_make_weights()


def deterministic_weights(model: TAPIR) -> dict[str, torch.Tensor]:
    """The parity kit's weights for every entry of ``model.state_dict()`` (by name and shape)."""
    return {
        name: torch.from_numpy(MAKE_WEIGHTS.deterministic_array(name, tuple(t.shape)))
        for name, t in model.state_dict().items()
    }


@pytest.fixture(scope="module")
def golden():
    return dict(np.load(PARITY / "tapir_bootstap_golden.npz"))


@pytest.fixture(scope="module")
def state_dict():
    spec = MAKE_WEIGHTS.load_spec(SPEC_PATH)
    return {k: torch.from_numpy(v) for k, v in MAKE_WEIGHTS.deterministic_state_dict(spec).items()}


@pytest.fixture(scope="module")
def pipeline_model(state_dict):
    """BootsTAPIR as the Stereo4D pipeline runs it (antialiased resize, temperature 10)."""
    model = TAPIR(TapirConfig()).eval()
    model.load_state_dict(state_dict, strict=True)
    return model


def test_state_dict_matches_reference_spec():
    entries = json.loads(SPEC_PATH.read_text())["entries"]
    with torch.device("meta"):
        model = TAPIR()
    ours = model.state_dict()
    assert [(k, list(v.shape)) for k, v in ours.items()] == [
        (e["name"], e["shape"]) for e in entries
    ]
    assert sum(p.numel() for p in model.parameters()) == NUM_PARAMETERS
    assert len(list(model.buffers())) == 0


def test_case_256_matches_torch_reference(pipeline_model, golden):
    video = torch.from_numpy(golden["video"])[None]
    queries = torch.from_numpy(golden["query_points"])[None]
    with torch.inference_mode():
        out = pipeline_model(video, queries, query_chunk_size=64)
    tracks = out["tracks"][0].numpy()
    occlusion = out["occlusion"][0].numpy()
    expected_dist = out["expected_dist"][0].numpy()
    visibles = tapir_ops.visibility_from_logits(out["occlusion"], out["expected_dist"])[0].numpy()

    assert np.abs(tracks - golden["tracks"]).max() <= TRACKS_TOL_PX
    assert np.abs(occlusion - golden["occlusion"]).max() <= LOGITS_TOL
    assert np.abs(expected_dist - golden["expected_dist"]).max() <= LOGITS_TOL
    np.testing.assert_array_equal(visibles, golden["visibles"])
    # Every iteration (initialisation, then 4 PIPs steps) follows the reference.
    assert out["tracks_all_iters"].shape[0] == golden["tracks_all_iters"].shape[0] == 5
    assert (
        np.abs(out["tracks_all_iters"][:, 0].numpy() - golden["tracks_all_iters"]).max()
        <= TRACKS_TOL_PX
    )
    assert (
        np.abs(out["occlusion_all_iters"][:, 0].numpy() - golden["occlusion_all_iters"]).max()
        <= LOGITS_TOL
    )
    # And the pipeline's JAX model.
    assert np.abs(tracks - golden["jax_tracks"]).max() <= TRACKS_TOL_PX
    np.testing.assert_array_equal(visibles, golden["jax_visibles"])


def test_case_512_backend_matches_pipeline_jax(pipeline_model, golden):
    """Through the backend (uint8 in, chunks of 5 queries) against the pipeline's JAX model."""
    tracker = TapirTracker(pipeline_model, TapirTrackerConfig(chunk_size=5, progress=False))
    out = tracker.predict(golden["pipeline512_video_uint8"], golden["pipeline512_query_points"])
    assert np.abs(out["tracks_xy"] - golden["pipeline512_jax_tracks"]).max() <= TRACKS_TOL_PX
    assert np.abs(out["occlusion_logits"] - golden["pipeline512_jax_occlusion"]).max() <= LOGITS_TOL
    assert (
        np.abs(out["expected_dist_logits"] - golden["pipeline512_jax_expected_dist"]).max()
        <= LOGITS_TOL
    )
    np.testing.assert_array_equal(out["visibles"], golden["pipeline512_jax_visibles"])
    # The plain-bilinear torch reference differs by up to ~0.5 px (antialiasing of 512 -> 256).
    assert np.abs(out["tracks_xy"] - golden["pipeline512_tracks"]).max() > 10 * TRACKS_TOL_PX


@pytest.mark.parametrize(
    "video_hw, expected",
    [
        ((256, 256), [(256, 256)]),
        ((128, 128), [(256, 256)]),
        ((512, 512), [(256, 256), (512, 512)]),
        ((480, 640), [(256, 256), (344, 400), (480, 640)]),
    ],
)
def test_default_refinement_resolutions(video_hw, expected):
    assert tapir_ops.default_refinement_resolutions(video_hw, (256, 256)) == expected


def test_sampling_scales_x_by_width_and_y_by_height():
    """On a 5x9 grid, sampling at pixel centres returns the cells; between centres, averages.

    tapnet's torch ``map_coordinates_2d`` divides x by the height and would fail here.
    """
    height, width, frames, channels = 5, 9, 2, 3
    grid = torch.arange(frames * height * width * channels, dtype=torch.float64)
    grid = grid.reshape(1, frames, height, width, channels)
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    centres_yx = torch.stack([rows, cols], -1).reshape(-1, 2).double() + 0.5  # [S, 2]
    coords = centres_yx[None, None, None].expand(1, 1, frames, -1, 2)
    sampled = tapir_ops.sample_frames_bilinear(grid, coords)  # [1, 1, T, S, C]
    expected = grid.reshape(1, frames, height * width, channels)
    torch.testing.assert_close(sampled[0, 0], expected[0], rtol=0, atol=1e-9)

    midway = torch.tensor([[[[[2.5, 7.0]]]]], dtype=torch.float64).expand(1, 1, frames, 1, 2)
    torch.testing.assert_close(
        tapir_ops.sample_frames_bilinear(grid, midway)[0, 0, :, 0],
        (grid[0, :, 2, 6] + grid[0, :, 2, 7]) / 2,
    )
    # Outside the map: zero.
    outside = torch.tensor([[[[[2.5, width + 1.0]]]]], dtype=torch.float64).expand(
        1, 1, frames, 1, 2
    )
    assert tapir_ops.sample_frames_bilinear(grid, outside).abs().max() == 0

    points_tyx = torch.tensor([[[1.0, 3.5, 8.5], [0.0, 0.5, 4.0]]], dtype=torch.float64)
    torch.testing.assert_close(
        tapir_ops.sample_video_trilinear(grid, points_tyx)[0],
        torch.stack([grid[0, 1, 3, 8], (grid[0, 0, 0, 3] + grid[0, 0, 0, 4]) / 2]),
    )


def _transposed_weights(
    weights: dict[str, torch.Tensor], patch_radius: int
) -> dict[str, torch.Tensor]:
    """Weights of the network that sees every image transposed (x <-> y).

    Conv kernels are transposed; the mixer's correlation inputs (row-major (dy, dx)
    patches) are permuted and its (dx, dy) position inputs/outputs swapped.
    """
    out = {
        k: (v.transpose(-1, -2).contiguous() if v.ndim == 4 else v.clone())
        for k, v in weights.items()
    }
    side = 2 * patch_radius + 1
    patch_perm = torch.arange(side * side).reshape(side, side).T.reshape(-1)
    w_in = out["torch_pips_mixer.linear.weight"]
    num_levels = (w_in.shape[1] - MIXER_CORR_START) // (side * side)
    perm = torch.arange(w_in.shape[1])
    perm[[0, 1]] = perm[[1, 0]]
    for level in range(num_levels):
        start = MIXER_CORR_START + level * side * side
        perm[start : start + side * side] = start + patch_perm
    out["torch_pips_mixer.linear.weight"] = w_in[:, perm].contiguous()
    for name in ("torch_pips_mixer.linear_1.weight", "torch_pips_mixer.linear_1.bias"):
        rows = torch.arange(out[name].shape[0])
        rows[[0, 1]] = rows[[1, 0]]
        out[name] = out[name][rows].contiguous()
    return out


def _transposition_case(sample_fn=None):
    """Max |difference| (tracks px, logits) between a 96x192 video and its 192x96 transpose.

    ``sample_fn`` replaces ``tapir_ops.sample_frames_bilinear`` (to show the test's power).
    """
    # A reduced network (smaller square initial grid, no extra convs, 2 mixer blocks)
    # keeps this fast; the geometry is the one of the full model.
    config = TapirConfig(
        initial_resolution=(128, 128), extra_convs=False, num_mixer_blocks=2, num_pips_iter=2
    )
    model = TAPIR(config).eval()
    weights = deterministic_weights(model)
    model.load_state_dict(weights)
    model_t = TAPIR(config).eval()
    model_t.load_state_dict(_transposed_weights(weights, config.patch_radius))

    frames, height, width = 3, 96, 192
    assert model.refinement_resolutions((height, width)) == [(128, 128), (96, 192)]
    t, y, x = np.meshgrid(np.arange(frames), np.arange(height), np.arange(width), indexing="ij")
    xs, ys = x - 2.0 * t, y + 1.0 * t  # texture moving by (+2, -1) px per frame
    texture = np.stack(
        [np.sin(xs / 7.0 + ys / 11.0), np.cos(xs / 5.0 - ys / 9.0), np.sin(xs * ys / 400.0)], -1
    )
    video = torch.from_numpy(texture.astype(np.float32))[None]
    queries = torch.tensor(
        [[[0, 40.5, 100.5], [1, 64.0, 150.0], [2, 90.0, 30.0], [0, 10.0, 180.0], [1, 50, 60]]]
    )
    original = tapir_ops.sample_frames_bilinear
    try:
        if sample_fn is not None:
            tapir_ops.sample_frames_bilinear = sample_fn
        with torch.inference_mode():
            out = model(video, queries)
            out_t = model_t(video.transpose(2, 3), queries[..., [0, 2, 1]])
    finally:
        tapir_ops.sample_frames_bilinear = original
    tracks_diff = (out_t["tracks"].flip(-1) - out["tracks"]).abs().max().item()
    logits_diff = max(
        (out_t[k] - out[k]).abs().max().item() for k in ("occlusion", "expected_dist")
    )
    return tracks_diff, logits_diff


def test_transposed_non_square_video_gives_transposed_tracks():
    """A 96x192 video and its transpose, with transposed weights, agree.

    Exercises every place where x and y scale differently: query-feature sampling,
    the resize to the square initial grid, the non-square refinement grid (96x192,
    sampled around each guess) and the mapping back to video pixels. Any x/y mix-up
    breaks the symmetry.
    """
    tracks_diff, logits_diff = _transposition_case()
    assert tracks_diff <= TRACKS_TOL_PX
    assert logits_diff <= LOGITS_TOL


def test_transposition_check_catches_height_normalised_sampling():
    """The check above fails for tapnet torch's sampling (x divided by the height)."""
    ours = tapir_ops.sample_frames_bilinear

    def by_height(grid, coords_yx):
        height, width = grid.shape[2:4]
        return ours(grid, coords_yx * coords_yx.new_tensor([1.0, width / height]))

    tracks_diff, logits_diff = _transposition_case(by_height)
    assert tracks_diff > 10 * TRACKS_TOL_PX or logits_diff > 10 * LOGITS_TOL


class _EchoModel(torch.nn.Module):
    """Stands in for TAPIR: records its inputs, returns the query moving by (+3, -2) px/frame."""

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.videos, self.queries = [], []

    def get_feature_grids(self, video):
        self.videos.append(video.clone())
        return "grids"

    def forward(self, video, query_points_tyx, query_chunk_size, feature_grids):
        assert feature_grids == "grids"
        self.queries.append(query_points_tyx.clone())
        frames = torch.arange(video.shape[1], dtype=torch.float32)
        start_xy = query_points_tyx[..., 1:].flip(-1)[:, :, None]
        motion = torch.stack([3.0 * frames, -2.0 * frames], -1)
        tracks = start_xy + motion
        occlusion = torch.where(frames < 1, -5.0, 5.0).expand(tracks.shape[:-1])
        return {"tracks": tracks, "occlusion": occlusion, "expected_dist": -5 + 0 * occlusion}


def test_backend_maps_coordinates_for_any_aspect_ratio():
    height, width, frames = 60, 200, 4
    video = np.random.default_rng(0).integers(0, 256, (frames, height, width, 3), dtype=np.uint8)
    queries_tyx = np.array([[0, 30.0, 100.0], [3, 10.5, 150.25], [1, 59.0, 0.5]], np.float32)
    model = _EchoModel()
    tracker = TapirTracker(
        model, TapirTrackerConfig(model_hw=(512, 512), chunk_size=2, progress=False)
    )
    tracks_xy, visibles = tracker.track(video, queries_tyx)

    assert len(model.videos) == 1 and model.videos[0].shape == (1, frames, 512, 512, 3)
    assert -1 <= model.videos[0].min() and model.videos[0].max() <= 1
    sent = torch.cat(model.queries, dim=1)[0].numpy()  # two chunks: 2 + 1 queries
    np.testing.assert_allclose(sent, queries_tyx * [1, 512 / height, 512 / width], rtol=1e-6)
    steps = np.arange(frames)[None, :, None] * [3.0 * width / 512, -2.0 * height / 512]
    np.testing.assert_allclose(
        tracks_xy, queries_tyx[:, None, [2, 1]] + steps, rtol=1e-5, atol=1e-4
    )
    np.testing.assert_array_equal(visibles, np.tile([True, False, False, False], (3, 1)))


def test_resize_matches_mediapy_lanczos():
    import mediapy
    video = np.random.default_rng(1).integers(0, 256, (2, 30, 50, 3), dtype=np.uint8)
    np.testing.assert_array_equal(
        resize_frames_lanczos(video, (64, 40)), mediapy.resize_video(video, (64, 40))
    )
    assert resize_frames_lanczos(video, (30, 50)) is video
