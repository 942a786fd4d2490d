"""3D Grad-CAM against a hand-written reference, its hooks and side effects, and sanity checks."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from PIL import Image
from scipy import stats

from coreaffect.errors import CoreAffectError
from coreaffect.hidden_route import HiddenRouteNet, create_model
from coreaffect.saliency import (
    TARGETS,
    GradCAM3D,
    explain_video,
    randomization_test,
    randomized_copy,
    saliency_mass_fraction,
    saliency_rank_correlation,
)


def _clips(batch: int, side: int, frames: int = 16, seed: int = 0) -> torch.Tensor:
    """(B, 3, T, H, W) smooth random clips in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, frames // 4 + 2, 5, 5, generator=generator)
    return F.interpolate(coarse, size=(frames, side, side), mode="trilinear").clamp(0, 1)


@pytest.fixture(scope="module")
def lite() -> HiddenRouteNet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        return create_model("lite").eval()


def _hooks(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(getattr(m, "_backward_pre_hooks", {})) for m in model.modules())


def _reference_cam(model: HiddenRouteNet, video: torch.Tensor, index: int) -> torch.Tensor:
    """Grad-CAM written out from the architecture: rectified last-conv maps, autograd gradients."""
    with torch.no_grad():
        x = (video - model.pixel_mean) / model.pixel_std
        x = model.blocks[:-1](x)
        maps = F.relu(model.blocks[-1][0](x))  # (B, K, T', H', W')
    maps.requires_grad_(True)
    features = model.blocks[-1][3](model.blocks[-1][2](maps))  # pool, norm
    estimate = model.forward_head(features)
    score = (estimate.mean if index < 2 else estimate.var)[:, index % 2].sum()
    (grad,) = torch.autograd.grad(score, maps)
    weights = grad.mean(dim=(2, 3, 4), keepdim=True)
    cam = F.relu((weights * maps).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=video.shape[2:], mode="trilinear", align_corners=False)[:, 0]
    return cam / cam.amax(dim=(1, 2, 3), keepdim=True)


@pytest.mark.parametrize("target", TARGETS)
def test_maps_match_a_hand_written_grad_cam(lite, target):
    video = _clips(2, 48)
    with GradCAM3D(lite) as cam:
        maps = cam(video, target)
    expected = _reference_cam(lite, video, TARGETS.index(target))
    assert maps.shape == (2, 16, 48, 48)
    assert torch.allclose(maps, expected, atol=1e-4)


@pytest.mark.parametrize(("preset", "side"), [("lite", 48), ("lite", 24), ("paper", 24)])
def test_shape_and_range_for_both_presets(preset, side):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = create_model(preset, input_size=side)
    video = (_clips(2, side, seed=1) * 255).to(torch.uint8)  # uint8 input is accepted too
    with GradCAM3D(model) as cam:
        result = cam.explain(video, TARGETS)
    assert result.maps.shape == (2, len(TARGETS), 16, side, side)
    assert result.maps.dtype == torch.float32
    assert result.maps.min() >= 0 and result.maps.max() <= 1
    peaks = result.maps.amax(dim=(2, 3, 4))
    assert torch.all((peaks == 1) | (peaks == 0))  # normalised per clip (or nowhere positive)
    assert result.estimate.mean.shape == (2, 2) and not result.estimate.mean.requires_grad


def test_batch_entries_are_independent(lite):
    video = _clips(3, 48, seed=2)
    with GradCAM3D(lite) as cam:
        together = cam(video, "arousal")
        alone = torch.cat([cam(video[i:i + 1], "arousal") for i in range(3)])
    assert torch.allclose(together, alone, atol=1e-5)


def test_hooks_are_removed_after_the_with_block(lite):
    cam = GradCAM3D(lite)
    assert cam.layer is lite.blocks[-1][1]  # the ReLU of the last convolution
    before = _hooks(lite)
    with cam:
        assert len(cam.layer._forward_hooks) == 1
        cam(_clips(1, 48))
    assert _hooks(lite) == before == 0
    assert not cam.layer._forward_hooks and not cam.layer._backward_hooks
    with pytest.raises(RuntimeError), cam:  # removed on an error as well
        raise RuntimeError("boom")
    assert _hooks(lite) == 0
    with pytest.raises(CoreAffectError, match="with"):
        cam(_clips(1, 48))


def test_model_is_left_unchanged():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        model = create_model("lite").train()
    model.head.weight.requires_grad_(False)  # a partly frozen model
    flags = [p.requires_grad for p in model.parameters()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with GradCAM3D(model) as cam:
        cam(_clips(2, 48), "valence")
        assert model.training  # eval only during a call
    assert model.training
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    after = model.state_dict()
    assert all(torch.equal(state[k], after[k]) for k in state)
    model.eval()
    with GradCAM3D(model) as cam:
        cam(_clips(1, 48))
    assert not model.training


def test_maps_do_not_depend_on_train_mode_or_frozen_weights(lite):
    video = _clips(1, 48, seed=4)
    with GradCAM3D(lite) as cam:
        reference = cam(video)
    frozen = randomized_copy(lite, seed=0)
    frozen.load_state_dict(lite.state_dict())
    frozen.train().requires_grad_(False)
    with GradCAM3D(frozen) as cam:
        assert torch.allclose(cam(video), reference, atol=1e-6)


def test_bad_inputs_are_refused(lite):
    with GradCAM3D(lite) as cam:
        with pytest.raises(CoreAffectError, match="target"):
            cam(_clips(1, 48), "dominance")
        with pytest.raises(CoreAffectError, match="B, 3, T, H, W"):
            cam(_clips(1, 48)[0])
    with pytest.raises(CoreAffectError, match="submodule"):
        GradCAM3D(lite, layer=torch.nn.ReLU())
    with GradCAM3D(lite) as cam, torch.inference_mode():
        with pytest.raises(CoreAffectError, match="outside torch.inference_mode"):
            cam(_clips(1, 48))
    with GradCAM3D(lite, layer=lite.head) as cam:  # not feature maps
        with pytest.raises(CoreAffectError, match=r"feature maps \(B, K, T, H, W\), got \(1, 2\)"):
            cam(_clips(1, 48))


def test_explain_video_refuses_an_unknown_animation_before_any_map(lite, tmp_path):
    frames = np.zeros((16, 48, 48, 3), np.uint8)
    with pytest.raises(CoreAffectError, match="animation must be one of gif, mp4, avi, or ''"):
        explain_video(lite, frames, tmp_path / "out", animation="webm")
    assert not (tmp_path / "out").exists()


def test_randomized_copy_is_a_fresh_network(lite):
    state = torch.random.get_rng_state()
    first, again = randomized_copy(lite, seed=1), randomized_copy(lite, seed=1)
    assert torch.equal(state, torch.random.get_rng_state())  # global random state untouched
    assert first.config == lite.config and first.training == lite.training
    assert torch.equal(first.blocks[0][0].weight, again.blocks[0][0].weight)
    assert not torch.equal(first.blocks[0][0].weight, lite.blocks[0][0].weight)


def test_randomised_weights_give_a_different_map(lite):
    test = randomization_test(lite, _clips(2, 48, seed=6), "valence", seed=11)
    assert test.maps.shape == test.random_maps.shape == (2, 16, 48, 48)
    assert not torch.allclose(test.maps, test.random_maps)
    assert np.all(test.correlation < 0.95)
    same = randomization_test(lite, _clips(1, 48, seed=6), seed=3)  # lite was drawn with seed 3
    assert same.correlation[0] == pytest.approx(1.0)


def test_rank_correlation_against_scipy():
    rng = np.random.default_rng(0)
    a = rng.random((3, 4, 5, 5))
    b = a + rng.normal(0, 0.3, a.shape)
    a[0, :2] = 0.0  # ties, as Grad-CAM's zeros
    expected = [stats.spearmanr(x.ravel(), y.ravel()).statistic for x, y in zip(a, b, strict=True)]
    assert np.allclose(saliency_rank_correlation(a, b), expected)
    assert np.allclose(saliency_rank_correlation(a, a ** 3), 1.0)  # ranks only
    assert np.allclose(saliency_rank_correlation(torch.tensor(a), torch.tensor(-a)), -1.0)
    assert np.isnan(saliency_rank_correlation(np.ones((1, 4)), a[:1, 0, 0, :4]))[0]


def test_mass_fraction_on_a_hand_made_map():
    maps = np.zeros((2, 2, 4, 4))
    maps[0, :, 1:3, 1:3] = 1.0  # all of the mass in the centre
    maps[0, 0, 0, 0] = 4.0  # ... but 4 of 12 units in a corner of frame 0
    maps[1] = 1.0  # uniform
    region = np.zeros((4, 4), dtype=bool)
    region[1:3, 1:3] = True
    assert np.allclose(saliency_mass_fraction(maps, region), [8 / 12, 4 / 16])
    per_frame = np.broadcast_to(region, (2, 4, 4)).copy()
    per_frame[1] = False  # (T, H, W) regions: only frame 0's centre counts
    assert np.allclose(saliency_mass_fraction(torch.tensor(maps), per_frame), [4 / 12, 4 / 32])
    assert np.isnan(saliency_mass_fraction(np.zeros((1, 2, 4, 4)), region)[0])
    with pytest.raises(ValueError):
        saliency_mass_fraction(-maps, region)


def test_explain_video_writes_grid_and_gif(lite, tmp_path, monkeypatch, caplog):
    # 21 frames (a window and a partial one) of 40-pixel crops, resized for the 48-pixel network
    frames = (_clips(1, 40, frames=21, seed=8)[0].permute(1, 2, 3, 0) * 255).to(torch.uint8)
    found = np.ones(21, dtype=bool)
    found[3:6] = False
    state = {k: v.clone() for k, v in lite.state_dict().items()}
    result = explain_video(lite, frames.numpy(), tmp_path / "out", face_found=found,
                           grid_columns=4, display_size=64)
    assert result.maps.shape == (2, 21, 40, 40)
    assert result.maps.min() >= 0 and result.maps.max() <= 1
    assert result.mean.shape == result.var.shape == (21, 2) and np.isfinite(result.mean).all()
    # windows start at 0 and 5 (flush with the end); the later one owns frames 5 to 20
    assert np.allclose(result.mean[:5], result.mean[0])
    assert np.allclose(result.mean[5:], result.mean[20])
    assert not np.allclose(result.mean[4], result.mean[5])
    grid, gif = result.files
    assert grid.name == "saliency_grid.png" and gif.name == "saliency.gif"
    with Image.open(grid) as image:
        assert image.size == (4 * 68, 3 * 68)  # 4 columns; crops, valence, arousal rows
    with Image.open(gif) as image:
        assert image.n_frames == 21 and image.size == (3 * 64, 64)
    assert _hooks(lite) == 0 and not lite.training
    assert all(torch.equal(state[k], v) for k, v in lite.state_dict().items())
    # an explanation that fails leaves the earlier one whole
    out = tmp_path / "out"
    before = grid.read_bytes()
    import coreaffect.saliency as saliency

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(saliency, "write_animation", interrupted)
        with pytest.raises(KeyboardInterrupt):
            explain_video(lite, frames.numpy()[::-1].copy(), out, grid_columns=4,
                          display_size=64)
    assert sorted(f.name for f in out.iterdir()) == ["saliency.gif", "saliency_grid.png"]
    assert grid.read_bytes() == before
    with caplog.at_level(logging.WARNING, logger="coreaffect.saliency"):
        again = explain_video(lite, frames.numpy(), out, animation="", grid_columns=4,
                              display_size=64)
    assert [f.name for f in again.files] == ["saliency_grid.png"]
    # a file of that name is never removed (it may be the user's): it is named in a warning
    assert sorted(f.name for f in out.iterdir()) == ["saliency.gif", "saliency_grid.png"]
    assert "saliency.gif, of an earlier explanation, stays" in caplog.text
