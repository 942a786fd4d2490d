"""Core-affect dynamics: an Ornstein-Uhlenbeck state-space model, its filter and smoother.

Core affect z_t in R^K drifts back to a baseline, as Oravecz, Tuerlinckx & Vandekerckhove (2009)
model it::

    dz = -Theta (z - mu) dt + L dW,

with Theta (K, K) the mean-reversion matrix (eigenvalues with positive real part), mu (K,) the
baseline and L (K, K) the diffusion. Over a step dt the process is exactly linear-Gaussian
(:func:`ou_discretize`)::

    z_{t+1} = F z_t + b + w_t,   w_t ~ N(0, Q),
    F = expm(-Theta dt),   b = (I - F) mu,   Q = P_inf - F P_inf F^T,

where P_inf, the stationary covariance, solves the Lyapunov equation
Theta P_inf + P_inf Theta^T = L L^T. Steps may differ (dropped frames, irregular annotation
times): dt has a leading time axis.

Observations y_t = H z_t + v_t, v_t ~ N(0, R_t), with a time-varying R_t (each hidden-route prior
brings its own covariance). A masked step has no observation: the filter only predicts there,
and the credible band widens.

The pure functions follow dynamax's conventions: parameters are an :class:`LGSSM` tuple; the
first observation is of the initial state z_0 ~ N(m_0, P_0) (also pykalman's convention);
everything is batched over leading axes and differentiable (torch), in float32 or float64.

* :func:`kalman_filter`: causal, for streaming; returns the filtered moments and the exact
  marginal log-likelihood log p(y_{0:T-1}).
* :func:`rts_smoother`: the Rauch-Tung-Striebel smoother, offline, with the lag-one cross
  covariances Cov(z_t, z_{t+1} | y).
* :func:`sample_posterior`: forward-filter backward-sample draws of whole trajectories.

Covariances are symmetrised after every update and updated in Joseph form, which keeps them
positive semi-definite in float32 for ill-conditioned but valid inputs.

References:
    Oravecz, Z., Tuerlinckx, F., & Vandekerckhove, J. (2009). A hierarchical Ornstein-Uhlenbeck
    model for continuous repeated measurement data. Psychometrika 74(3), 395-418.

    Sarkka, S. (2013). Bayesian Filtering and Smoothing. Cambridge University Press.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = [
    "LGSSM",
    "Filtered",
    "Smoothed",
    "kalman_filter",
    "ou_discretize",
    "ou_stationary_cov",
    "rts_smoother",
    "sample_posterior",
]


class LGSSM(NamedTuple):
    """A linear-Gaussian state-space model; shapes with K the state, D the observation size.

    The transition parameters are either shared by all steps, with only their event axes
    ((K, K) or (K,)), or given per step with a time axis just before the event axes
    ((..., T-1, K, K) or (..., T-1, K); a time axis of size 1 is shared). Batch axes, if any,
    come first; to share one parameter across a batch, give it without batch axes.

    Attributes:
        init_mean: (..., K) mean of z_0.
        init_cov: (..., K, K) covariance of z_0.
        transition: (K, K) or (..., T-1, K, K) F_t, from z_t to z_{t+1}.
        offset: (K,) or (..., T-1, K) b_t.
        process_cov: (K, K) or (..., T-1, K, K) Q_t.
        emission: (D, K) H.
    """

    init_mean: Tensor
    init_cov: Tensor
    transition: Tensor
    offset: Tensor
    process_cov: Tensor
    emission: Tensor


class Filtered(NamedTuple):
    """Output of :func:`kalman_filter`.

    Attributes:
        means: (..., T, K) E[z_t | y_{0:t}].
        covs: (..., T, K, K) Cov[z_t | y_{0:t}].
        log_likelihood: (...) log p(y_{0:T-1}), masked steps left out.
    """

    means: Tensor
    covs: Tensor
    log_likelihood: Tensor


class Smoothed(NamedTuple):
    """Output of :func:`rts_smoother`.

    Attributes:
        means: (..., T, K) E[z_t | y].
        covs: (..., T, K, K) Cov[z_t | y].
        cross_covs: (..., T-1, K, K) Cov[z_t, z_{t+1} | y].
        log_likelihood: (...) log p(y).
    """

    means: Tensor
    covs: Tensor
    cross_covs: Tensor
    log_likelihood: Tensor


def _sym(a: Tensor) -> Tensor:
    return 0.5 * (a + a.transpose(-1, -2))


def ou_stationary_cov(theta: Tensor, diffusion: Tensor) -> Tensor:
    """P_inf solving Theta P + P Theta^T = L L^T, for (K, K) inputs (batched over leading axes).

    Solved as a linear system in vec(P) (Kronecker form), which is exact and differentiable for
    the small K of affect models.
    """
    k = theta.shape[-1]
    eye = torch.eye(k, dtype=theta.dtype, device=theta.device)
    # row-major vec: vec(Theta P) = (Theta kron I) vec(P), vec(P Theta^T) = (I kron Theta) vec(P)
    system = torch.kron(theta, eye) + torch.kron(eye, theta) if theta.ndim == 2 else (
        _batched_kron(theta, eye) + _batched_kron(eye.expand_as(theta), theta))
    rhs = diffusion @ diffusion.transpose(-1, -2)
    vec = torch.linalg.solve(system, rhs.reshape(*rhs.shape[:-2], k * k, 1))
    return _sym(vec.reshape(*rhs.shape))


def _batched_kron(a: Tensor, b: Tensor) -> Tensor:
    """Kronecker product over the last two axes of (..., K, K) tensors."""
    k = a.shape[-1]
    out = a[..., :, None, :, None] * b[..., None, :, None, :]  # (..., K, K, K, K)
    return out.reshape(*a.shape[:-2], k * k, k * k)


def ou_discretize(theta: Tensor, mu: Tensor, diffusion: Tensor, dt: Tensor | float
                  ) -> tuple[Tensor, Tensor, Tensor]:
    """Exact discretisation of the OU process over steps ``dt``.

    Args:
        theta: (K, K) mean-reversion matrix Theta.
        mu: (K,) baseline.
        diffusion: (K, K) diffusion L.
        dt: (...) step lengths in seconds (a float for one step).

    Returns:
        ``(F, b, Q)``: (..., K, K), (..., K), (..., K, K) with F = expm(-Theta dt),
        b = (I - F) mu, Q = P_inf - F P_inf F^T.
    """
    dt = torch.as_tensor(dt, dtype=theta.dtype, device=theta.device)
    k = theta.shape[-1]
    eye = torch.eye(k, dtype=theta.dtype, device=theta.device)
    transition = torch.linalg.matrix_exp(-theta * dt[..., None, None])  # (..., K, K)
    offset = ((eye - transition) @ mu[..., None])[..., 0]
    stationary = ou_stationary_cov(theta, diffusion)
    process = _sym(stationary - transition @ stationary @ transition.transpose(-1, -2))
    return transition, offset, process


def _at(x: Tensor, t: int, event_dims: int) -> Tensor:
    """Step t of a parameter that is shared (only event axes) or has a time axis before them."""
    if x.ndim == event_dims:
        return x
    axis = x.ndim - event_dims - 1
    return x.select(axis, t if x.shape[axis] > 1 else 0)


def _update(mean: Tensor, cov: Tensor, y: Tensor, r: Tensor, h: Tensor, observed: Tensor
            ) -> tuple[Tensor, Tensor, Tensor]:
    """Condition N(mean, cov) on y = H z + v, v ~ N(0, r), where ``observed``; Joseph form.

    Returns the new mean, covariance and the log-density of y (0 where not observed).
    """
    s = _sym(h @ cov @ h.transpose(-1, -2) + r)  # (..., D, D)
    chol = torch.linalg.cholesky(s)
    residual = y - (h @ mean[..., None])[..., 0]  # (..., D)
    # K = P H^T S^-1
    gain = torch.cholesky_solve(h @ cov, chol).transpose(-1, -2)  # (..., K, D)
    new_mean = mean + (gain @ residual[..., None])[..., 0]
    eye = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
    a = eye - gain @ h
    new_cov = _sym(a @ cov @ a.transpose(-1, -2) + gain @ r @ gain.transpose(-1, -2))
    z = torch.linalg.solve_triangular(chol, residual[..., None], upper=False)[..., 0]
    d = y.shape[-1]
    log_det = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    log_prob = -0.5 * ((z**2).sum(-1) + log_det + d * _log_2pi(cov))
    keep = observed.to(torch.bool)
    return (torch.where(keep[..., None], new_mean, mean),
            torch.where(keep[..., None, None], new_cov, cov),
            torch.where(keep, log_prob, torch.zeros_like(log_prob)))


def _log_2pi(like: Tensor) -> Tensor:
    return torch.log(torch.tensor(2 * torch.pi, dtype=like.dtype, device=like.device))


def _mask(observations: Tensor, mask: Tensor | None) -> Tensor:
    shape = observations.shape[:-1]
    if mask is None:
        return torch.ones(shape, dtype=torch.bool, device=observations.device)
    return mask.to(torch.bool).expand(shape)


def kalman_filter(params: LGSSM, observations: Tensor, obs_cov: Tensor,
                  mask: Tensor | None = None) -> Filtered:
    """Filtered moments p(z_t | y_{0:t}) and the marginal log-likelihood.

    Args:
        params: The model.
        observations: (..., T, D) y_t; values at masked steps are ignored (NaN allowed).
        obs_cov: (..., T, D, D) R_t.
        mask: (..., T) bool, True where y_t is observed; ``None`` observes every step.

    Returns:
        The :class:`Filtered` moments.
    """
    mask = _mask(observations, mask)
    # masked steps may hold NaN: give them harmless values, which the update then ignores
    observations = torch.where(mask[..., None], observations, torch.zeros_like(observations))
    eye = torch.eye(obs_cov.shape[-1], dtype=obs_cov.dtype, device=obs_cov.device)
    obs_cov = torch.where(mask[..., None, None], obs_cov, eye)
    h = params.emission
    steps = observations.shape[-2]
    mean, cov = params.init_mean, params.init_cov
    means, covs, log_likelihood = [], [], 0.0
    for t in range(steps):
        if t > 0:
            f = _at(params.transition, t - 1, 2)
            mean = (f @ mean[..., None])[..., 0] + _at(params.offset, t - 1, 1)
            cov = _sym(f @ cov @ f.transpose(-1, -2) + _at(params.process_cov, t - 1, 2))
        r = obs_cov[..., t, :, :]
        mean, cov, log_prob = _update(mean, cov, observations[..., t, :], r, h, mask[..., t])
        log_likelihood = log_likelihood + log_prob
        means.append(mean)
        covs.append(cov)
    return Filtered(torch.stack(means, -2), torch.stack(covs, -3),
                    torch.as_tensor(log_likelihood))


def _predicted(params: LGSSM, filtered: Filtered, t: int) -> tuple[Tensor, Tensor, Tensor]:
    """F_t and the one-step prediction N(m_{t+1|t}, P_{t+1|t}) from the filtered step t."""
    f = _at(params.transition, t, 2)
    mean = (f @ filtered.means[..., t, :, None])[..., 0] + _at(params.offset, t, 1)
    cov = _sym(f @ filtered.covs[..., t, :, :] @ f.transpose(-1, -2)
               + _at(params.process_cov, t, 2))
    return f, mean, cov


def rts_smoother(params: LGSSM, observations: Tensor, obs_cov: Tensor,
                 mask: Tensor | None = None) -> Smoothed:
    """Smoothed moments p(z_t | y_{0:T-1}) by the Rauch-Tung-Striebel recursion.

    Args:
        params: The model.
        observations: (..., T, D).
        obs_cov: (..., T, D, D).
        mask: (..., T) bool, True where observed.

    Returns:
        The :class:`Smoothed` moments, with the lag-one cross covariances.
    """
    filtered = kalman_filter(params, observations, obs_cov, mask)
    steps = observations.shape[-2]
    mean, cov = filtered.means[..., -1, :], filtered.covs[..., -1, :, :]
    means, covs, crosses = [mean], [cov], []
    for t in range(steps - 2, -1, -1):
        f, pred_mean, pred_cov = _predicted(params, filtered, t)
        filt_cov = filtered.covs[..., t, :, :]
        # G = P_t F^T P_{t+1|t}^-1
        gain = torch.linalg.solve(pred_cov, f @ filt_cov).transpose(-1, -2)
        next_mean, next_cov = mean, cov
        mean = filtered.means[..., t, :] + (gain @ (next_mean - pred_mean)[..., None])[..., 0]
        cov = _sym(filt_cov + gain @ (next_cov - pred_cov) @ gain.transpose(-1, -2))
        crosses.append(gain @ next_cov)  # Cov(z_t, z_{t+1} | y)
        means.append(mean)
        covs.append(cov)
    means.reverse()
    covs.reverse()
    crosses.reverse()
    k = mean.shape[-1]
    cross = (torch.stack(crosses, -3) if crosses else
             filtered.covs.new_zeros(*filtered.covs.shape[:-3], 0, k, k))
    return Smoothed(torch.stack(means, -2), torch.stack(covs, -3), cross,
                    filtered.log_likelihood)


def sample_posterior(params: LGSSM, observations: Tensor, obs_cov: Tensor,
                     mask: Tensor | None = None, n: int = 1,
                     random_state: int | torch.Generator | None = None) -> Tensor:
    """Draws of whole trajectories from p(z_{0:T-1} | y) by forward-filter backward-sample.

    Args:
        params: The model.
        observations: (..., T, D).
        obs_cov: (..., T, D, D).
        mask: (..., T) bool, True where observed.
        n: Number of draws S.
        random_state: Seed or generator.

    Returns:
        (S, ..., T, K) samples.
    """
    generator = random_state if isinstance(random_state, torch.Generator) else \
        torch.Generator(device=observations.device)
    if isinstance(random_state, int):
        generator.manual_seed(random_state)
    filtered = kalman_filter(params, observations, obs_cov, mask)
    steps = observations.shape[-2]

    def draw(mean: Tensor, cov: Tensor) -> Tensor:
        jitter = 1e-9 if cov.dtype == torch.float64 else 1e-6
        eye = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
        chol = torch.linalg.cholesky(_sym(cov) + jitter * eye)
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype,
                            device=mean.device)
        return mean + (chol @ noise[..., None])[..., 0]

    shape = (n, *filtered.means.shape[:-2])
    z = draw(filtered.means[..., -1, :].expand(*shape, -1),
             filtered.covs[..., -1, :, :].expand(*shape, -1, -1))
    samples = [z]
    for t in range(steps - 2, -1, -1):
        f, pred_mean, pred_cov = _predicted(params, filtered, t)
        filt_cov = filtered.covs[..., t, :, :]
        gain = torch.linalg.solve(pred_cov, f @ filt_cov).transpose(-1, -2)  # (..., K, K)
        mean = filtered.means[..., t, :] + (gain @ (z - pred_mean)[..., None])[..., 0]
        cov = filt_cov - gain @ pred_cov @ gain.transpose(-1, -2)
        z = draw(mean, cov.expand(*mean.shape, mean.shape[-1]))
        samples.append(z)
    samples.reverse()
    return torch.stack(samples, -2)
