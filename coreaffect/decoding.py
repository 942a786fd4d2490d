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
:func:`mixture_quantiles` gives the quantiles of y = g(z) + s eta from draws of z alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from coreaffect.calibration import check_level
from coreaffect.state_space import _draw

__all__ = ["decode_draws", "decode_gaussian", "mixture_quantiles"]

_CHUNK = 1 << 14  # latent draws per call of a decoder: bounds its temporaries in memory


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
        device is given the latent as it is and its answer is brought back). A decoder that is
        neither ``None`` nor a matrix gets at most 16,384 draws at a time, so that its memory
        does not grow with the number of draws.
    """
    if decoder is None:
        return latent
    if isinstance(decoder, Tensor):
        return latent @ decoder.to(latent.device, latent.dtype).T
    rows = latent.reshape(-1, latent.shape[-1])  # (N, K)
    if len(rows) <= _CHUNK:
        return _decode_rows(decoder, latent, generator)
    out = torch.cat([_decode_rows(decoder, rows[start:start + _CHUNK], generator)
                     for start in range(0, len(rows), _CHUNK)])
    return out.reshape(*latent.shape[:-1], out.shape[-1])


def _decode_rows(decoder: Any, latent: Tensor, generator: torch.Generator) -> Tensor:
    """:func:`decode_draws` in one call of a decoder that is neither ``None`` nor a matrix."""
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
        ``(mean, lower, upper)``, each (..., 2), or (..., K) for ``None``. For ``None`` or a
        matrix A: A m and
        A m -/+ z_{(1 + level) / 2} sqrt(diag(A S A^T)). Otherwise the draws' mean and their
        (1 - level) / 2 and (1 + level) / 2 quantiles, the Gaussians taken a few at a time so
        that memory does not grow with their number (at most 16,384 draws at once, and at
        least one Gaussian's ``n_samples``).
    """
    level = check_level(level)
    dtype = latent_mean.dtype
    if decoder is None or isinstance(decoder, Tensor):
        a = (torch.eye(latent_mean.shape[-1], dtype=dtype, device=latent_mean.device)
             if decoder is None else decoder.to(latent_mean.device, dtype))
        mean = (a @ latent_mean[..., None])[..., 0]
        var = torch.diagonal(a @ latent_cov @ a.T, dim1=-2, dim2=-1)
        half = torch.distributions.Normal(0.0, 1.0).icdf(
            torch.tensor(0.5 + level / 2, dtype=dtype)) * var.clamp_min(0).sqrt()
        return mean, mean - half, mean + half
    batch, k = latent_mean.shape[:-1], latent_mean.shape[-1]
    means, covs = latent_mean.reshape(-1, k), latent_cov.expand(*batch, k, k).reshape(-1, k, k)
    probs = torch.tensor([0.5 - level / 2, 0.5 + level / 2], dtype=dtype,
                         device=latent_mean.device)
    step = max(1, _CHUNK // n_samples)  # Gaussians per decoder call
    parts = []  # (3, n, 2) each: mean, lower, upper
    for start in range(0, len(means), step):
        m, c = means[start:start + step], covs[start:start + step]
        draws = _draw(m.expand(n_samples, *m.shape), c.expand(n_samples, *c.shape), generator)
        va = _decode_rows(decoder, draws, generator)  # (S, n, 2)
        parts.append(torch.cat([va.mean(0, keepdim=True), torch.quantile(va, probs, dim=0)]))
    if not parts:  # no Gaussian at all
        return tuple(latent_mean.new_empty(*batch, 2) for _ in range(3))
    out = torch.cat(parts, 1)
    return tuple(part.reshape(*batch, out.shape[-1]) for part in out)


def mixture_quantiles(centres: Tensor, scale: Tensor, probs: Tensor, iterations: int = 60,
                      tolerance: float = 1e-10) -> Tensor:
    """Quantiles of equal mixtures of Gaussians N(c_i, s^2): y with mean_i Phi((y - c_i) / s) = p.

    The decoded y = g(z) + s eta, given draws z_i of the latent, is such a mixture, so its
    quantiles follow from the draws of z alone, without drawing eta: exact when the draws
    agree (a confident latent), and far less noisy than quantiles of drawn y otherwise.
    Safeguarded Newton steps: each step that would leave the bracket of the root is a bisection
    instead, so the steps converge for any centres and any s > 0 (to the tolerance within the
    ``iterations``, unless the centres spread over more than about 1e11 s).

    Args:
        centres: (T, S, D) c_i, the S centres of each of T x D mixtures.
        scale: (D,) s, their common standard deviation per column, > 0.
        probs: (P,) probabilities in (0, 1).
        iterations: Most steps; 60 bisections alone narrow the bracket by 2^-60.
        tolerance: A quantile is left as it is once its ``|F(y) - p|`` is at most this (or eight
            times the dtype's resolution, if that is larger), so that each is the same whatever
            others are computed with it (within a flat stretch of F, where the quantile is not
            unique, any point of it is returned).

    Returns:
        (P, T, D) the quantiles.
    """
    c = centres[None]  # (1, T, S, D)
    s = scale.to(centres)
    p = probs.to(centres)[:, None, None]  # (P, 1, 1)
    tolerance = max(tolerance, 8 * torch.finfo(centres.dtype).eps)  # float32 reaches 1e-6
    low = (centres.amin(1) - 10 * s).expand(len(probs), -1, -1).clone()  # (P, T, D), F < p
    high = (centres.amax(1) + 10 * s).expand(len(probs), -1, -1).clone()  # F > p
    spread = centres.var(1, unbiased=False) + s**2  # moment-matched start
    y = centres.mean(1) + spread.sqrt() * torch.special.ndtri(p)
    y = torch.minimum(torch.maximum(y, low), high)
    done = torch.zeros_like(y, dtype=torch.bool)  # a root, left alone from then on
    for _ in range(iterations):
        u = (y[:, :, None, :] - c) / s  # (P, T, S, D)
        below = torch.special.ndtr(u).mean(2) - p  # F(y) - p
        done |= below.abs() <= tolerance
        if bool(done.all()):
            break
        slope = torch.exp(-0.5 * u * u).mean(2) / (s * math.sqrt(2 * math.pi))
        low = torch.where(below < 0, y, low)
        high = torch.where(below >= 0, y, high)
        step = y - below / slope.clamp_min(torch.finfo(centres.dtype).tiny)
        step = torch.where((step >= low) & (step <= high), step, 0.5 * (low + high))
        y = torch.where(done, y, step)
    return y
