"""Decoding latent Gaussians to valence-arousal: exact for linear decoders, Monte Carlo otherwise,
in pieces whose size does not grow with the video."""

from __future__ import annotations

import pytest
import torch

from coreaffect import decoding
from coreaffect.decoding import decode_draws, decode_gaussian

A = torch.tensor([[0.8, 0.3], [-0.2, 0.5]], dtype=torch.float64)


def _gaussians(shape: tuple[int, ...], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(*shape, 2, generator=g, dtype=torch.float64)
    root = 0.3 * torch.randn(*shape, 2, 2, generator=g, dtype=torch.float64)
    return mean, root @ root.transpose(-1, -2) + 0.01 * torch.eye(2, dtype=torch.float64)


class Recording:
    """A linear decoder given as a callable, so decoded by Monte Carlo; records its calls."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        self.sizes.append(z[..., 0].numel())
        return z @ A.T


def test_monte_carlo_matches_the_exact_linear_decoding_in_pieces(monkeypatch):
    monkeypatch.setattr(decoding, "_CHUNK", 6000)
    mean, cov = _gaussians((3, 5))
    decoder = Recording()
    got = decode_gaussian(decoder, mean, cov, 0.9, 2000, torch.Generator().manual_seed(1))
    exact = decode_gaussian(A, mean, cov, 0.9, 2000, torch.Generator())
    assert max(decoder.sizes) <= 6000 and sum(decoder.sizes) == 15 * 2000  # 3 Gaussians a call
    sd = torch.diagonal(A @ cov @ A.T, dim1=-2, dim2=-1).sqrt()  # (3, 5, 2)
    # Monte Carlo errors of 2,000 draws: about 0.02 sd for the mean, 0.05 sd for a 5% quantile
    for a, b, bound in zip(got, exact, (0.1, 0.25, 0.25), strict=True):
        assert a.shape == (3, 5, 2)
        assert torch.all((a - b).abs() < bound * sd)


def test_one_gaussian_is_never_split_whatever_its_draws():
    mean, cov = _gaussians((2,))
    decoder = Recording()
    decode_gaussian(decoder, mean, cov, 0.5, decoding._CHUNK + 10, torch.Generator())
    assert decoder.sizes == [decoding._CHUNK + 10] * 2


def test_many_draws_are_decoded_in_pieces_to_the_same_values(monkeypatch):
    monkeypatch.setattr(decoding, "_CHUNK", 7)
    latent = torch.randn(4, 6, 2, dtype=torch.float64)  # (S, T, K): 24 draws
    decoder = Recording()
    out = decode_draws(decoder, latent, torch.Generator())
    assert decoder.sizes == [7, 7, 7, 3]
    torch.testing.assert_close(out, latent @ A.T)


def test_no_gaussian_decodes_to_nothing():
    mean, cov = _gaussians((0,))
    for out in decode_gaussian(Recording(), mean, cov, 0.9, 10, torch.Generator()):
        assert out.shape == (0, 2)


@pytest.mark.parametrize("level", [0.5, 0.9])
def test_the_band_of_a_linear_decoder_is_its_gaussian_interval(level):
    mean, cov = _gaussians((4,))
    centre, lower, upper = decode_gaussian(A, mean, cov, level, 10, torch.Generator())
    z = torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(0.5 + level / 2,
                                                               dtype=torch.float64))
    sd = torch.diagonal(A @ cov @ A.T, dim1=-2, dim2=-1).sqrt()
    torch.testing.assert_close(centre, mean @ A.T)
    torch.testing.assert_close(upper - centre, z * sd)
    torch.testing.assert_close(centre - lower, z * sd)


@pytest.mark.parametrize("level", [1.5, 1.0, 0.0, float("nan")])
def test_a_level_outside_0_1_is_refused_by_every_decoder(level):
    mean, cov = _gaussians((2,))
    for decoder in (None, A, Recording()):
        with pytest.raises(ValueError, match="level must be a probability"):
            decode_gaussian(decoder, mean, cov, level, 10, torch.Generator())


def test_mixture_quantiles_solve_the_mixture_cdf_as_scipy_does():
    import numpy as np
    from scipy.optimize import brentq
    from scipy.stats import norm

    from coreaffect.decoding import mixture_quantiles

    g = torch.Generator().manual_seed(0)
    scale = torch.tensor([0.2, 0.003], dtype=torch.float64)
    centres = torch.randn(5, 40, 2, generator=g, dtype=torch.float64) * torch.tensor(
        [0.5, 0.05], dtype=torch.float64)
    centres[1] = 0.7  # one Gaussian: its own quantiles
    centres[2, :, 0] = torch.linspace(-0.9, 0.9, 40, dtype=torch.float64) ** 3  # skewed
    probs = torch.tensor([0.05, 0.25, 0.75, 0.95], dtype=torch.float64)
    got = mixture_quantiles(centres, scale, probs).numpy()  # (4, 5, 2)
    c, s = centres.numpy(), scale.numpy()
    for a, p in enumerate(probs.tolist()):
        for t in range(5):
            for d in range(2):
                centres_td, scale_d = c[t, :, d], s[d]
                want = brentq(lambda y, m=centres_td, w=scale_d, q=p: norm.cdf((y - m) / w).mean()
                              - q, -5, 5, xtol=1e-13)
                assert got[a, t, d] == pytest.approx(want, abs=1e-9)
    np.testing.assert_allclose(got[:, 1], 0.7 + norm.ppf(probs.numpy())[:, None] * s, atol=1e-12)
    # two modes far apart, with a flat CDF between them: a point where F = p all the same
    apart = torch.cat([torch.full((1, 20, 2), -1.0), torch.full((1, 20, 2), 1.0)], 1).double()
    half = mixture_quantiles(apart, scale, torch.tensor([0.5], dtype=torch.float64))
    cdf = norm.cdf((half.numpy()[0, 0][None] - apart.numpy()[0]) / s).mean(0)
    np.testing.assert_allclose(cdf, 0.5, atol=1e-9)
