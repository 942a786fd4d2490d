"""The GP-LVM decoder: its kernel and posterior mean against Pyro's own Gaussian-process code, and
what the fit learns from labels of known noise."""

from __future__ import annotations

import pyro
import pytest
import torch
from pyro.contrib import gp

from coreaffect.gplvm import (
    GPDecoder,
    fit_gplvm,
    posterior_weights,
    rbf,
    switch_off_irrelevant,
)


def test_rbf_equals_pyros_kernel():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(7, 3, generator=g), torch.randn(5, 3, generator=g)
    variance, lengthscale = torch.tensor(0.7), torch.tensor([0.5, 1.0, 2.0])
    kernel = gp.kernels.RBF(input_dim=3, variance=variance, lengthscale=lengthscale)
    with torch.no_grad():
        assert torch.allclose(rbf(a, b, variance, lengthscale), kernel(a, b), atol=1e-6)
    batched = rbf(a.expand(4, 7, 3), b, variance, lengthscale)
    assert batched.shape == (4, 7, 5)


def test_decoder_equals_pyros_sparse_gp_posterior_mean():
    """g(z) = ybar + k(z, Z_u) W with W from posterior_weights must be the posterior mean of
    Pyro's SparseGPRegression (VFE) with the same inputs, kernel, inducing inputs and noise."""
    g = torch.Generator().manual_seed(1)
    n, m, k = 200, 12, 2
    latents = torch.randn(n, k, generator=g)
    labels = torch.stack([torch.sin(latents[:, 0]), 0.5 * latents[:, 1] ** 2 - 0.3], 1)
    labels = labels + 0.05 * torch.randn(n, 2, generator=g)
    offset = labels.mean(0)
    inducing = torch.randn(m, k, generator=g)
    variance, lengthscale, noise = torch.tensor(0.8), torch.tensor([0.9, 1.4]), torch.tensor(0.01)
    kernel = gp.kernels.RBF(input_dim=k, variance=variance, lengthscale=lengthscale)
    sparse = gp.models.SparseGPRegression(latents, (labels - offset).T.contiguous(), kernel,
                                          inducing, noise=noise, approx="VFE", jitter=1e-5)
    new = torch.randn(30, k, generator=g) * 1.5
    with torch.no_grad():
        reference, _ = sparse(new, noiseless=True)  # (2, 30)
    decoder = GPDecoder(k, m, min_noise_scale=0.01)
    decoder.inducing.copy_(inducing)
    decoder.weights.copy_(posterior_weights(latents, labels - offset, inducing, variance,
                                            lengthscale, noise))
    decoder.lengthscale.copy_(lengthscale)
    decoder.variance.copy_(variance)
    decoder.offset.copy_(offset)
    with torch.no_grad():
        assert torch.allclose(decoder(new), reference.T + offset, atol=1e-4)
        # far from the data, g returns to the labels' mean
        assert torch.allclose(decoder(torch.full((1, k), 50.0)), offset[None], atol=1e-6)
        wide = decoder(new.double())  # float64 latents decode, in float64
        assert wide.dtype == torch.float64
        torch.testing.assert_close(wide, decoder(new).double())


def test_fit_learns_the_label_noise_and_a_one_dimensional_curve():
    """Labels on a curve with noise 0.04 in both dimensions: the fit finds a noise near it, and
    switches off the latent axis the curve does not need (its lengthscale grows long)."""
    g = torch.Generator().manual_seed(2)
    t = (torch.randn(1200, generator=g) * 0.45).clamp(-0.95, 0.95)
    labels = torch.stack([t, 0.9 * t**2 - 0.35], 1) + 0.04 * torch.randn(1200, 2, generator=g)
    # the ELBO's draws come from torch's global generator, which the manifold seeds
    with torch.random.fork_rng(), pyro.settings.context(module_local_params=True):
        torch.manual_seed(0)
        decoder, history = fit_gplvm(labels, 2, 16, 800, 0.1, 0.01,
                                     torch.Generator().manual_seed(0))
    assert len(history) == 800 and history[-1] < history[0]
    assert decoder.noise_scale.shape == (2,)
    assert float(decoder.noise_scale[0]) == pytest.approx(0.04, rel=0.3)
    # a curve needs one latent axis: the other is switched off, and g is flat along it
    assert torch.isinf(decoder.lengthscale).sum() == 1
    assert torch.isfinite(decoder.lengthscale).sum() == 1
    off = int(torch.isinf(decoder.lengthscale).nonzero())
    z = torch.randn(50, 2, generator=g)
    moved = z.clone()
    moved[:, off] += 3.0
    with torch.no_grad():
        assert torch.equal(decoder(z), decoder(moved))
    assert not any(p.requires_grad for p in decoder.parameters())


def test_switch_off_irrelevant_axes():
    out = switch_off_irrelevant(torch.tensor([2.0, 9.0, 11.0, 0.9e9]))
    assert out[:2].tolist() == [2.0, 9.0] and torch.isinf(out[2:]).all()
    assert torch.equal(switch_off_irrelevant(torch.tensor([3.0])), torch.tensor([3.0]))


def test_fit_keeps_the_start_whose_bound_ends_higher(monkeypatch):
    import coreaffect.gplvm as gplvm

    starts = []
    fit_once = gplvm._fit_once

    def spy(centred, start, inducing, noise, num_steps, learning_rate):
        model, history = fit_once(centred, start, inducing, noise, num_steps, learning_rate)
        starts.append((noise, history, float(model.base_model.noise.detach().sqrt())))
        return model, history

    monkeypatch.setattr(gplvm, "_fit_once", spy)
    g = torch.Generator().manual_seed(3)
    labels = (torch.rand(400, 2, generator=g) * 1.6 - 0.8)  # a cloud that fills a square
    with torch.random.fork_rng(), pyro.settings.context(module_local_params=True):
        torch.manual_seed(0)
        decoder, history = fit_gplvm(labels, 2, 16, 100, 0.1, 0.01,
                                     torch.Generator().manual_seed(0))
    assert [noise for noise, _, _ in starts] == [0.1, 0.03]
    tail = [sum(h[-5:]) / 5 for _, h, _ in starts]
    kept = starts[tail.index(min(tail))]
    assert history is kept[1]
    assert float(decoder.noise_scale[0]) == pytest.approx(kept[2], rel=1e-5)
