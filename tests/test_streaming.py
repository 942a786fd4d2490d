"""The incremental trunk of live streams against the trunk run on the whole sequence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from coreaffect.hidden_route import create_model
from coreaffect.streaming import IncrementalTrunk


def _frames(count: int, side: int, seed: int = 0) -> np.ndarray:
    """(T, H, W, 3) uint8 frames of smooth random video, as face crops are stored."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, count // 4 + 2, 6, 6, generator=generator)
    video = F.interpolate(coarse, size=(count, side, side), mode="trilinear")[0]  # (3, T, H, W)
    return (video.permute(1, 2, 3, 0) * 255).round().to(torch.uint8).numpy()


@pytest.fixture(scope="module", params=[("paper", 32), ("lite", 24)], ids=["paper32", "lite"])
def model(request):
    name, side = request.param
    torch.manual_seed(0)
    return create_model(name, input_size=side).eval()


@pytest.mark.parametrize("split", ["one by one", "uneven"])
def test_every_step_equals_the_whole_trunk_as_soon_as_its_frames_are_in(model, split):
    frames = _frames(57, model.config.input_size)
    with torch.no_grad():
        whole = model.forward_features(
            torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 255)[0]  # (D, T', ...)
    stride = model.config.temporal_stride
    after = model.temporal_context[1]
    sizes = [1] * len(frames) if split == "one by one" else [3, 1, 9, 2, 17, 5, 20]
    trunk, got, start = IncrementalTrunk(model), [], 0
    for size in sizes:
        out = trunk.push(frames[start:start + size])
        start += size
        for step in range(trunk.steps - out.shape[1], trunk.steps):
            # step j needs frames up to S j + S - 1 + after: it comes with the push of that frame
            assert stride * step + stride - 1 + after < start
            assert stride * step + stride - 1 + after >= start - size
        got.append(out)
    assert start == len(frames)
    steps = torch.cat(got, dim=1)  # empty pushes are of the same spatial size
    assert trunk.steps == steps.shape[1] == (len(frames) - after - stride) // stride + 1
    # the whole-sequence trunk pads the end with zeros: only the steps before that compare
    torch.testing.assert_close(steps, whole[:, :steps.shape[1]], atol=1e-4, rtol=1e-4)


def test_frames_of_another_size_and_tensors(model):
    side = model.config.input_size
    frames = _frames(40, side + 8, seed=1)  # resized to the model's side, as in dense inference
    reference = model.dense_features(frames)
    trunk = IncrementalTrunk(model)
    as_tensor = torch.from_numpy(frames).permute(3, 0, 1, 2)  # (3, T, H, W) uint8
    steps = torch.cat([trunk.push(as_tensor[:, :25]), trunk.push(as_tensor[:, 25:])], dim=1)
    torch.testing.assert_close(steps, reference[:, :steps.shape[1]], atol=1e-4, rtol=1e-4)


def test_too_few_frames_give_no_step_yet(model):
    trunk = IncrementalTrunk(model)
    out = trunk.push(_frames(model.temporal_context[1] + 2, model.config.input_size))
    assert out.shape[:2] == (model.embedding_dim, 0) and trunk.steps == 0
    side = model.config.input_size
    with torch.no_grad():  # the empty output is shaped as the steps it will be joined to
        real = model.forward_features(torch.zeros(1, 3, model.config.clip_length, side, side))
    assert out.shape[2:] == real.shape[3:]
