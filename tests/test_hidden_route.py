"""Architecture, heads, presets and dense inference of the hidden-route network."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from coreaffect.errors import CoreAffectError
from coreaffect.hidden_route import (
    MODELS,
    AffectEstimate,
    HiddenRouteNet,
    ModelConfig,
    create_model,
)

# Largest |dense - per-window| mean on the grid-aligned windows of a 64-frame smooth random video
# (below), measured over 10 weight seeds of each test model: 0.19 for paper at 32 x 32 (0.14 for
# the fixture's seed) and 0.14 for lite at 24 x 24 (0.08). It is the zero padding that the
# per-window trunk sees at both ends of a window; with real context the two agree to 1e-7.
# Bound: ~1.5x the worst.
BORDER_EFFECT = 0.3


def _video(frames: int, side: int, seed: int = 0) -> torch.Tensor:
    """(C, T, H, W) smooth random video in [0, 1]: coarse noise interpolated in time and space."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, frames // 4 + 2, 6, 6, generator=generator)
    return F.interpolate(coarse, size=(frames, side, side), mode="trilinear")[0].clamp(0, 1)


@pytest.fixture(scope="module")
def paper32() -> HiddenRouteNet:
    torch.manual_seed(0)
    return create_model("paper", input_size=32).eval()


@pytest.fixture(scope="module")
def lite() -> HiddenRouteNet:
    torch.manual_seed(1)
    return create_model("lite").eval()


def test_paper_block_shapes_follow_table_1():
    model = create_model("paper").to("meta")  # shapes without computing anything
    x = torch.empty(2, 3, 16, 112, 112, device="meta")
    expected = [(2, 64, 16, 56, 56), (2, 128, 8, 28, 28), (2, 128, 4, 14, 14)]
    for block, shape in zip(model.blocks, expected, strict=True):
        x = block(x)
        assert tuple(x.shape) == shape
    conv_shapes = [tuple(block[0].weight.shape) for block in model.blocks]
    assert conv_shapes == [(64, 3, 5, 5, 5), (128, 64, 5, 5, 5), (128, 128, 5, 5, 5)]
    assert [block[2].kernel_size for block in model.blocks] == [(1, 2, 2), (2, 2, 2), (2, 2, 2)]
    assert model.embedding_dim == 128


def test_paper_parameter_count():
    convs = (5 * 5 * 5 * 3 * 64 + 64) + (5 * 5 * 5 * 64 * 128 + 128) + (5 * 5 * 5 * 128 * 128 + 128)
    norms = 2 * (64 + 128 + 128)  # per-channel scale and shift of the three LayerNorms
    heads = 2 * (128 * 2 + 2)  # the paper's tanh head and the variance head
    assert convs + norms + heads == 3_097_476
    model = create_model("paper")
    assert model.num_parameters() == 3_097_476
    assert sum(p.numel() for p in model.state_dict().values()) == 3_097_476  # no stray buffers


def test_a_seeded_network_is_reproducible_and_leaves_the_global_generator():
    torch.manual_seed(5)
    state = torch.get_rng_state()
    a, b = create_model("lite", random_state=3), create_model("lite", random_state=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    c = create_model("lite", random_state=4)
    assert not all(torch.equal(a.state_dict()[k], c.state_dict()[k]) for k in a.state_dict())
    d = create_model("lite", random_state=np.int64(3))  # a numpy seed, as the estimators take
    assert all(torch.equal(a.state_dict()[k], d.state_dict()[k]) for k in a.state_dict())
    with pytest.raises(CoreAffectError, match="random_state"):
        create_model("lite", random_state=1.5)


@pytest.mark.parametrize("name, overrides", [("lite", {}), ("paper", {"input_size": 32})])
def test_forward_backward(name, overrides):
    torch.manual_seed(0)
    model = create_model(name, **overrides)
    side = model.config.input_size
    video = torch.rand(2, 3, 16, side, side)
    estimate = model(video)
    assert isinstance(estimate, AffectEstimate)
    assert estimate.mean.shape == estimate.var.shape == (2, 2)
    assert estimate.embedding.shape == (2, model.embedding_dim)
    loss = F.gaussian_nll_loss(estimate.mean, torch.zeros(2, 2), estimate.var)
    loss.backward()
    for name_, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name_


def test_outputs_in_range(lite):
    video = torch.rand(4, 3, 16, 48, 48)
    with torch.no_grad():
        estimate = lite(video)
        assert (estimate.mean.abs() < 1).all()
        assert (estimate.var >= lite.config.min_var).all()
        features = lite.forward_features(video)
        shifted = lite.forward_head(features * 0 - 1e4)  # the variance head is pushed to 0
    assert features.shape == (4, 16, 4, 6, 6)  # any input side runs: 48 -> 6 x 6
    assert (shifted.var >= lite.config.min_var).all()
    assert torch.isfinite(shifted.var).all()


def test_forward_is_features_then_head(lite):
    video = torch.rand(2, 3, 16, 48, 48)
    with torch.no_grad():
        split = lite.forward_head(lite.forward_features(video))
        whole = lite(video)
    for a, b in zip(split, whole, strict=True):
        torch.testing.assert_close(a, b)


def test_create_model_overrides_and_errors():
    model = create_model("lite", input_size=64, widths=[8, 16, 16])
    assert model.config.input_size == 64 and model.config.widths == (8, 16, 16)
    assert model.config.name == "lite" and model.training
    assert sorted(MODELS) == ["lite", "paper"]
    assert MODELS["paper"] == ModelConfig()
    with pytest.raises(CoreAffectError, match="lite.*paper"):
        create_model("resnet")
    with pytest.raises(CoreAffectError, match="input_size"):
        create_model("paper", depth=4)
    with pytest.raises(CoreAffectError, match="odd"):
        create_model("paper", kernel=4)
    with pytest.raises(CoreAffectError, match="temporal stride"):
        create_model("paper", clip_length=18)


def test_config_round_trips_through_json():
    config = MODELS["lite"]
    assert ModelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(CoreAffectError, match="unknown"):
        ModelConfig.from_dict({**config.to_dict(), "dropout": 0.5})
    # settings of the wrong type, as a hand-edited file may hold them, are named
    for key, value in [("clip_length", 16.0), ("kernel", True), ("widths", [8, 16.0, 16]),
                       ("mean", 0.5), ("std", None), ("norm_eps", 0)]:
        with pytest.raises(CoreAffectError, match=f"model config 'lite': .*{key}"):
            ModelConfig.from_dict({**config.to_dict(), key: value})


@pytest.mark.parametrize("name", ["paper32", "lite"])
@pytest.mark.parametrize("frames", [16, 61])
def test_chunked_trunk_equals_whole_trunk(name, frames, request):
    model = request.getfixturevalue(name)
    video = _video(frames, model.config.input_size)
    with torch.no_grad():
        whole = model.forward_features(video[None])[0]  # (D, T', H', W')
    for chunk_frames in (20, 28, 64):
        chunked = model.dense_features(video, chunk_frames=chunk_frames)
        assert chunked.shape == whole.shape
        torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=0)


def test_dense_batches_and_input_formats_agree(lite):
    video = _video(70, 48)
    reference = lite.predict_dense(video, chunk_frames=24)
    as_uint8 = (video * 255).round().to(torch.uint8)
    variants = [
        lite.predict_dense(video, chunk_frames=24, batch_size=3),
        lite.predict_dense(video, chunk_frames=200, device="cpu"),
    ]
    for other in variants:
        for a, b in zip(reference, other, strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    from_tensor = lite.predict_dense(as_uint8)
    from_array = lite.predict_dense(as_uint8.permute(1, 2, 3, 0).numpy())  # (T, H, W, C)
    for a, b in zip(from_tensor, from_array, strict=True):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(from_tensor.mean, reference.mean, atol=0.02, rtol=0)


def test_dense_resizes_frames_like_the_clip_dataset(lite):
    big = _video(20, 64)
    small = F.interpolate(big, size=(24, 24), mode="bilinear", antialias=True,  # lite's side
                          align_corners=False).clamp(0, 1)
    torch.testing.assert_close(lite.predict_dense(big).mean, lite.predict_dense(small).mean)


@pytest.mark.parametrize("frames", [16, 37])
def test_dense_has_one_row_per_frame(lite, frames):
    estimate = lite.predict_dense(_video(frames, 48))
    assert estimate.mean.shape == estimate.var.shape == (frames, 2)
    assert estimate.embedding.shape == (frames, lite.embedding_dim)
    assert torch.isfinite(estimate.mean).all() and (estimate.var >= lite.config.min_var).all()


def test_dense_equals_windows_with_real_context(paper32):
    video = _video(64, 32)
    dense = paper32.predict_dense(video)
    def window(k):  # window k with 8 real frames of context each side, on its own
        start = 4 * k
        context = video[None, :, start - 8:start + 24]
        with torch.no_grad():
            features = paper32.forward_features(context)[:, :, 2:6]  # the window's own 4 steps
            return paper32.forward_head(features)

    for k in (2, 5, 9):  # windows starting at frames 8, 20, 36; centres 15.5, 27.5, 43.5
        # frame 4 k + 8 is 1/8 of a stride past window k's centre, towards window k + 1's
        for a, b, c in zip(window(k), window(k + 1), dense, strict=True):
            torch.testing.assert_close(0.875 * a[0] + 0.125 * b[0], c[4 * k + 8], atol=1e-5,
                                       rtol=0)


@pytest.mark.parametrize("name", ["paper32", "lite"])
def test_dense_and_aligned_windows_differ_only_by_border_padding(name, request):
    model = request.getfixturevalue(name)
    video = _video(64, model.config.input_size)
    dense = model.predict_dense(video)
    windows = model.predict_windows(video, stride=4)  # every grid-aligned window
    inside = torch.arange(8, 64 - 8)  # frames between the first and the last centre
    difference = (dense.mean - windows.mean)[inside].abs()
    assert 1e-4 < difference.max() < BORDER_EFFECT  # the padding effect is real and bounded


def test_windows_alignment_at_stride_one(lite):
    video = _video(30, 24)
    estimate = lite.predict_windows(video, stride=1, batch_size=5)
    with torch.no_grad():
        windows = lite(video.unfold(1, 16, 1).permute(1, 0, 4, 2, 3))  # (15, C, T, H, W)
    # window s is centred at s + 7.5: frame t is midway between windows t - 8 and t - 7
    middle = (windows.mean[:-1] + windows.mean[1:]) / 2
    torch.testing.assert_close(estimate.mean[8:22], middle, atol=1e-5, rtol=0)
    torch.testing.assert_close(estimate.mean[:8], windows.mean[:1].expand(8, 2))
    torch.testing.assert_close(estimate.mean[22:], windows.mean[-1:].expand(8, 2))


def test_dense_interpolates_between_window_centres(lite):
    video = _video(41, 24)
    dense = lite.predict_dense(video)
    # T' = 10 steps: windows 0 .. 6 centred at frames 7.5, 11.5, ..., 31.5
    first, last = dense.mean[0], dense.mean[-1]  # windows 0 and 6 (edge padding)
    torch.testing.assert_close(dense.mean[:8], first.expand(8, 2))
    torch.testing.assert_close(dense.mean[32:], last.expand(9, 2))  # 8 + 41 % 4 frames
    step = dense.mean[9] - dense.mean[8]  # a quarter of window 1 minus window 0
    torch.testing.assert_close(dense.mean[8], first + step / 2)  # 1/8 of the way
    torch.testing.assert_close(dense.mean[11] - dense.mean[10], step)
    torch.testing.assert_close(dense.mean[10] - dense.mean[9], step)
    second = first + 4 * step  # window 1; frames 12 ... 15 lead from it towards window 2
    torch.testing.assert_close(dense.mean[13] - dense.mean[12], 2 * (dense.mean[12] - second))


def test_trunk_is_equivariant_to_shifts_of_the_stride(paper32):
    video = _video(48, 32)
    with torch.no_grad():
        features = paper32.forward_features(video[None])  # (1, D, 12, H', W')
        shifted = paper32.forward_features(video[None, :, 4:])  # (1, D, 11, H', W')
    # steps 2 .. 8 of the shifted run lie 2 steps (8 frames) from both borders
    torch.testing.assert_close(shifted[:, :, 2:9], features[:, :, 3:10], atol=1e-5, rtol=0)


def test_mode_and_grad_state_are_restored(lite):
    lite.train()
    try:
        with torch.no_grad():
            estimate = lite.predict_dense(_video(20, 48), device="cpu")
        assert lite.training and not estimate.mean.requires_grad
        lite.predict_windows(_video(20, 48), stride=2)
        assert lite.training and torch.is_grad_enabled()
    finally:
        lite.eval()


def test_bad_inputs_are_clear_errors(lite):
    with pytest.raises(CoreAffectError, match="at least 16 frames"):
        lite.predict_dense(_video(12, 48))
    with pytest.raises(CoreAffectError, match=r"\(3, T, H, W\)"):
        lite.predict_dense(torch.rand(20, 3, 48, 48))
    with pytest.raises(CoreAffectError, match=r"\(T, H, W, 3\)"):
        lite.predict_windows(np.zeros((3, 20, 48, 48), np.uint8))
    with pytest.raises(CoreAffectError, match="chunk_frames must be at least 12"):
        lite.predict_dense(_video(20, 48), chunk_frames=8)
    with pytest.raises(CoreAffectError, match=r"\(B, 3, T, H, W\)"):
        lite(torch.rand(3, 16, 48, 48))
    # integer frames other than uint8 would be read as if in [0, 1]; the network takes floats
    with pytest.raises(CoreAffectError, match="uint8 in \\[0, 255\\] or floating.*int64"):
        lite.predict_dense(np.zeros((20, 48, 48, 3), np.int64))
    with pytest.raises(CoreAffectError, match="uint8 in \\[0, 255\\] or floating.*int32"):
        lite.predict_dense(torch.zeros(3, 20, 48, 48, dtype=torch.int32))
    for bad in (torch.zeros(1, 3, 16, 48, 48, dtype=torch.uint8), np.zeros((1, 3, 16, 48, 48))):
        with pytest.raises(CoreAffectError, match="floating-point torch tensor"):
            lite(bad)
    clip = torch.rand(1, 3, 16, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(lite(clip.double()).mean, lite(clip).mean)


def test_layer_norm_normalises_each_time_step_over_channels_and_space():
    torch.manual_seed(0)
    norm = create_model("lite").blocks[1][3]  # the second block's LayerNorm, C = 16
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-1, 1)
        x = torch.randn(2, 16, 3, 5, 7) * 3 + 1  # (B, C, T, H, W)
        steps = [F.layer_norm(x[:, :, t], (16, 5, 7), eps=1e-5) for t in range(3)]
        expected = torch.stack(steps, dim=2) * norm.weight.view(1, -1, 1, 1, 1) \
            + norm.bias.view(1, -1, 1, 1, 1)
        torch.testing.assert_close(norm(x), expected, atol=1e-5, rtol=1e-5)


def test_a_bare_cuda_device_resolves_to_the_current_one(monkeypatch):
    # a model on cuda:0 asked for "cuda" must not be copied: the two must compare equal
    import torch

    from coreaffect.hidden_route import resolve_device

    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a machine with 2 GPUs
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda", torch.device("cpu")) == torch.device("cuda", 1)
    assert resolve_device("cuda:0", torch.device("cpu")) == torch.device("cuda", 0)
    assert resolve_device(None, torch.device("cuda", 1)) == torch.device("cuda", 1)
    assert resolve_device("cpu", torch.device("cuda", 1)) == torch.device("cpu")
    with pytest.raises(CoreAffectError, match="2 CUDA device"):
        resolve_device("cuda:2", torch.device("cpu"))


def test_a_frame_interpolates_the_windows_centred_either_side_of_it():
    from coreaffect.hidden_route import ModelConfig, frame_windows

    config = ModelConfig()  # 16-frame windows every 4 frames, centred 7.5 frames in
    assert config.window_centre == 7.5
    assert frame_windows(0, config) == frame_windows(7, config) == (0, 0, 0.0)
    assert frame_windows(8, config) == (0, 1, 0.125)
    assert frame_windows(11, config) == (0, 1, 0.875)
    assert frame_windows(12, config) == (1, 2, 0.125)
    odd = ModelConfig(clip_length=9, temporal_pool=(1, 1, 3))  # centres on frames 4, 7, 10, ...
    assert odd.window_centre == 4
    assert frame_windows(7, odd) == (1, 1, 0.0)
    assert frame_windows(8, odd) == (1, 2, pytest.approx(1 / 3))


def test_check_device_names_what_is_missing():
    from coreaffect.errors import CoreAffectError
    from coreaffect.hidden_route import check_device

    assert check_device("cpu") == torch.device("cpu")
    assert check_device("cpu:1") == torch.device("cpu")  # torch's one CPU, as files load onto it
    with pytest.raises(CoreAffectError, match="CUDA device"):
        check_device("cuda:99")
    with pytest.raises(CoreAffectError, match="not a device torch knows"):
        check_device("abacus")
    with pytest.raises(CoreAffectError, match="device 'meta' holds no data"):
        check_device("meta")


def test_a_saved_network_loads_onto_a_cpu_named_with_an_index(tmp_path):
    from coreaffect.checkpoint import load_model, save_model
    from coreaffect.config import DataConfig

    model = create_model("lite")
    save_model(model, tmp_path, DataConfig())
    loaded = load_model(tmp_path, "cpu:0")
    assert next(loaded.parameters()).device == torch.device("cpu")
