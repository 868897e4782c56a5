"""Both networks keep every tensor on the input's device (checked on PyTorch's 'meta' device).

A tensor created on the CPU inside a forward pass would break CUDA runs; mixing it with
'meta' tensors raises here, so this runs everywhere (the CUDA golden test needs a GPU).
"""

import torch

from stereo4d.models.sea_raft import SeaRaft, SeaRaftConfig
from stereo4d.models.tapir import TAPIR, TapirConfig


def test_sea_raft_forward_stays_on_the_input_device():
    model = SeaRaft(SeaRaftConfig()).eval().to("meta")
    image = torch.empty(1, 3, 128, 176, device="meta")  # non-square
    with torch.no_grad():
        out = model(image, image, iters=2)
    assert out.flow_px.device.type == "meta"
    assert tuple(out.flow_px.shape) == (1, 2, 128, 176)


def test_tapir_forward_stays_on_the_input_device():
    model = TAPIR(TapirConfig()).eval().to("meta")
    video = torch.empty(1, 3, 96, 160, 3, device="meta")  # [B, T, H, W, C], non-square
    queries = torch.zeros(1, 5, 3, device="meta")
    with torch.no_grad():
        out = model(video, queries)
    tracks = out["tracks"]  # [B, N, T, 2]
    assert tracks.device.type == "meta"
    assert tuple(tracks.shape[-3:]) == (5, 3, 2)
