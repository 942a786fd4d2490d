"""Decoding: latent core affect to valence-arousal, with central credible bands.

A *decoder* maps the latent z (..., K) to valence-arousal; three kinds are accepted:

* ``None``: the latent is valence-arousal itself (identity; for K other than 2 the outputs are
  the latent);
* a (2, K) tensor A: y = A z, so a Gaussian latent decodes exactly to a Gaussian;
* an object with a ``decode`` method (an :class:`~coreaffect.manifold.AffectManifold`) or a
  callable, taking z (..., K) and returning a tensor (..., 2) or a distribution whose ``mean``
  and ``variance`` are (..., 2), such as the manifold's p(y | z) = N(g(z), diag(s^2)).

:func:`decode_gaussian` maps a Gaussian N(m, S) over z to the mean and the central band of y:
exactly for the first two kinds, by Monte Carlo for the third (draws of z, then of y given z,
so that the band is predictive of labels, not only of g(z)). :func:`decode_draws` maps draws.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from coreaffect.state_space import _draw

__all__ = ["decode_draws", "decode_gaussian"]


def _decode_fn(decoder: Any) -> Callable[[Tensor], Any]:
    return decoder.decode if hasattr(decoder, "decode") else decoder


def decode_draws(decoder: Any, latent: Tensor, generator: torch.Generator) -> Tensor:
    """Latent draws to valence-arousal draws.

    Args:
        decoder: See the module docstring.
        latent: (..., K) draws of z.
        generator: Draws y given z when the decoder returns a distribution (on ``latent``'s
            device).

    Returns:
        (..., 2) draws of y, on ``latent``'s device and in its dtype (a decoder on another
        device is given the latent as it is and its answer is brought back).
    """
    if decoder is None:
        return latent
    if isinstance(decoder, Tensor):
        return latent @ decoder.to(latent.device, latent.dtype).T
    out = _decode_fn(decoder)(latent)  # a decoder on another device answers there
    if isinstance(out, Tensor):
        return out.to(latent.device, latent.dtype)
    mean = out.mean.to(latent.device, latent.dtype)
    noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
    return mean + out.variance.to(latent.device, latent.dtype).sqrt() * noise


def decode_gaussian(decoder: Any, latent_mean: Tensor, latent_cov: Tensor, level: float,
                    n_samples: int, generator: torch.Generator
                    ) -> tuple[Tensor, Tensor, Tensor]:
    """Mean and central credible band of y = decoder(z) for z ~ N(latent_mean, latent_cov).

    Args:
        decoder: See the module docstring.
        latent_mean: (..., K).
        latent_cov: (..., K, K).
        level: Probability of the central band, in (0, 1).
        n_samples: Monte Carlo draws per Gaussian (a decoder that is neither ``None`` nor a
            matrix).
        generator: Source of those draws, on the latent's device.

    Returns:
        ``(mean, lower, upper)``, each (..., 2). For ``None`` or a matrix A: A m and
        A m -/+ z_{(1 + level) / 2} sqrt(diag(A S A^T)). Otherwise the draws' mean and their
        (1 - level) / 2 and (1 + level) / 2 quantiles.
    """
    dtype = latent_mean.dtype
    if decoder is None or isinstance(decoder, Tensor):
        a = (torch.eye(latent_mean.shape[-1], dtype=dtype, device=latent_mean.device)
             if decoder is None else decoder.to(latent_mean.device, dtype))
        mean = (a @ latent_mean[..., None])[..., 0]
        var = torch.diagonal(a @ latent_cov @ a.T, dim1=-2, dim2=-1)
        half = torch.distributions.Normal(0.0, 1.0).icdf(
            torch.tensor(0.5 + level / 2, dtype=dtype)) * var.clamp_min(0).sqrt()
        return mean, mean - half, mean + half
    shape = (n_samples, *latent_mean.shape)
    draws = _draw(latent_mean.expand(shape), latent_cov.expand(*shape, shape[-1]), generator)
    va = decode_draws(decoder, draws, generator)  # (S, ..., 2)
    probs = torch.tensor([0.5 - level / 2, 0.5 + level / 2], dtype=va.dtype, device=va.device)
    lower, upper = torch.quantile(va, probs, dim=0)
    return va.mean(0), lower, upper
