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

Each of the three takes ``parallel=True`` for the temporal parallelisation of Sarkka &
Garcia-Fernandez (2021): the filter and the smoother are prefix "sums" under associative
operators, so an associative scan computes all T of them in O(log T) sequential depth, each level
a handful of batched (T/2^l, K, K) tensor operations, instead of a Python loop of T steps. Same
results up to rounding (float64: about 1e-14), differentiable, batched as above. A masked step
is an observation with zero information (zero gain, zero likelihood terms), so the scan elements
need no special case. The loop costs tens of microseconds a step whatever the batch; the scan's
cost grows with T x batch. Measured on a CPU, one thread, float64, K = 2, filter and smoother:
T = 20,000: 4.3 s sequential, 0.06 s parallel; the log-likelihood and its gradient over
16 videos x 16 steps: 12 ms parallel, 14 ms sequential (``benchmarks/bench_dynamics.py``
compares both with pykalman).

:class:`CoreAffectDynamics` puts a scikit-learn-style estimator on top: the OU model of the
hidden route's per-frame priors, fitted by maximum marginal likelihood or NUTS, with causal
(batch and streaming, :meth:`~CoreAffectDynamics.filter_step`) and offline outputs decoded to
valence-arousal with credible bands.

References:
    Oravecz, Z., Tuerlinckx, F., & Vandekerckhove, J. (2009). A hierarchical Ornstein-Uhlenbeck
    model for continuous repeated measurement data. Psychometrika 74(3), 395-418.

    Sarkka, S. (2013). Bayesian Filtering and Smoothing. Cambridge University Press.

    Sarkka, S., & Garcia-Fernandez, A. F. (2021). Temporal parallelization of Bayesian
    smoothers. IEEE Transactions on Automatic Control 66(1), 299-306.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

logger = logging.getLogger(__name__)

__all__ = [
    "LGSSM",
    "AffectObservations",
    "AffectPosterior",
    "AffectSamples",
    "CoreAffectDynamics",
    "FilterState",
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


def _clean(observations: Tensor, obs_cov: Tensor, mask: Tensor | None
           ) -> tuple[Tensor, Tensor, Tensor]:
    """The mask as bool, and harmless values (0, I) at masked steps, which may hold NaN."""
    mask = _mask(observations, mask)
    observations = torch.where(mask[..., None], observations, torch.zeros_like(observations))
    eye = torch.eye(obs_cov.shape[-1], dtype=obs_cov.dtype, device=obs_cov.device)
    obs_cov = torch.where(mask[..., None, None], obs_cov, eye)
    return observations, obs_cov, mask


def kalman_filter(params: LGSSM, observations: Tensor, obs_cov: Tensor,
                  mask: Tensor | None = None, *, parallel: bool = False) -> Filtered:
    """Filtered moments p(z_t | y_{0:t}) and the marginal log-likelihood.

    Args:
        params: The model.
        observations: (..., T, D) y_t; values at masked steps are ignored (NaN allowed).
        obs_cov: (..., T, D, D) R_t.
        mask: (..., T) bool, True where y_t is observed; ``None`` observes every step.
        parallel: Use the associative-scan filter: O(log T) depth instead of a loop over T,
            the faster choice from a few tens of steps on (see the module docstring). Same
            results up to rounding.

    Returns:
        The :class:`Filtered` moments.
    """
    observations, obs_cov, mask = _clean(observations, obs_cov, mask)
    if parallel:
        return _filter_parallel(params, observations, obs_cov, mask)
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
                 mask: Tensor | None = None, *, parallel: bool = False) -> Smoothed:
    """Smoothed moments p(z_t | y_{0:T-1}) by the Rauch-Tung-Striebel recursion.

    Args:
        params: The model.
        observations: (..., T, D).
        obs_cov: (..., T, D, D).
        mask: (..., T) bool, True where observed.
        parallel: Run the filter and the backward pass as associative scans (O(log T) depth).

    Returns:
        The :class:`Smoothed` moments, with the lag-one cross covariances.
    """
    filtered = kalman_filter(params, observations, obs_cov, mask, parallel=parallel)
    if parallel:
        return _smooth_parallel(params, filtered)
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


def _generator(random_state: int | torch.Generator | None, device: torch.device
               ) -> torch.Generator:
    if isinstance(random_state, torch.Generator):
        return random_state
    generator = torch.Generator(device=device)
    if random_state is not None:
        generator.manual_seed(int(random_state))
    return generator


def _draw(mean: Tensor, cov: Tensor, generator: torch.Generator) -> Tensor:
    """One draw of N(mean, cov) per leading index; a jitter keeps singular covariances valid."""
    jitter = 1e-9 if cov.dtype == torch.float64 else 1e-6
    eye = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
    chol = torch.linalg.cholesky(_sym(cov) + jitter * eye)
    noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
    return mean + (chol @ noise[..., None])[..., 0]


def sample_posterior(params: LGSSM, observations: Tensor, obs_cov: Tensor,
                     mask: Tensor | None = None, n: int = 1,
                     random_state: int | torch.Generator | None = None, *,
                     parallel: bool = False) -> Tensor:
    """Draws of whole trajectories from p(z_{0:T-1} | y) by forward-filter backward-sample.

    Args:
        params: The model.
        observations: (..., T, D).
        obs_cov: (..., T, D, D).
        mask: (..., T) bool, True where observed.
        n: Number of draws S.
        random_state: Seed or generator.
        parallel: Filter and sample backwards by associative scans (O(log T) depth). Draws for
            a given seed differ from the sequential ones (the noise is used in another order)
            but have the same distribution.

    Returns:
        (S, ..., T, K) samples.
    """
    generator = _generator(random_state, observations.device)
    filtered = kalman_filter(params, observations, obs_cov, mask, parallel=parallel)
    if parallel:
        return _sample_parallel(params, filtered, n, generator)
    steps = observations.shape[-2]

    def draw(mean: Tensor, cov: Tensor) -> Tensor:
        return _draw(mean, cov, generator)

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


# --- temporal parallelisation -------------------------------------------------------------------
#
# Sarkka & Garcia-Fernandez (2021) write the filter and the smoother as prefix "sums" under an
# associative operator, so that all T prefixes come out of an associative scan in O(log T)
# sequential depth, each level a few batched (T/2^l, K, K) tensor operations.


Elements = tuple[Tensor, ...]


def _associative_scan(combine: Callable[[Elements, Elements], Elements], elems: Elements,
                      reverse: bool = False) -> Elements:
    """All prefixes e_0 * e_1 * ... * e_t of an associative ``combine``, time on axis 0.

    The odd-even recursion (Blelloch's scan without the down-sweep buffer): combine neighbouring
    pairs, scan the half-length sequence of pairs, then fill in the even positions. Depth
    2 log2(T), work O(T). With ``reverse`` the suffixes e_t * ... * e_{T-1} are returned.

    Args:
        combine: ``combine(earlier, later)`` on tuples of tensors batched over axis 0.
        elems: Tensors with the time axis first, (T, ...).
        reverse: Scan from the end.
    """
    if reverse:
        flipped = tuple(x.flip(0) for x in elems)
        out = _associative_scan(lambda a, b: combine(b, a), flipped)
        return tuple(x.flip(0) for x in out)
    steps = elems[0].shape[0]
    if steps < 2:
        return elems
    pairs = combine(tuple(x[0:-1:2] for x in elems), tuple(x[1::2] for x in elems))
    odd = _associative_scan(combine, pairs)  # prefixes ending at t = 1, 3, 5, ...
    if steps % 2 == 0:
        even = combine(tuple(x[:-1] for x in odd), tuple(x[2::2] for x in elems))
    else:
        even = combine(odd, tuple(x[2::2] for x in elems))
    out = []
    for first, e, o in zip(elems, even, odd, strict=True):
        full = first.new_empty(first.shape)
        full[0:1] = first[0:1]
        full[2::2] = e
        full[1::2] = o
        out.append(full)
    return tuple(out)


def _steps(params: LGSSM, batch: torch.Size, steps: int, dtype: torch.dtype,
           device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """F_t, b_t, Q_t broadcast to (..., T-1, K, K), (..., T-1, K), (..., T-1, K, K)."""
    k = params.init_mean.shape[-1]
    n = steps - 1

    def full(x: Tensor, event: tuple[int, ...]) -> Tensor:
        x = x.to(dtype=dtype, device=device)
        if x.ndim == len(event):
            x = x.unsqueeze(0)  # shared: a time axis of size 1
        return torch.broadcast_to(x, (*batch, n, *event))

    return (full(params.transition, (k, k)), full(params.offset, (k,)),
            full(params.process_cov, (k, k)))


def _batch_shape(params: LGSSM, observations: Tensor, obs_cov: Tensor) -> torch.Size:
    shapes = [observations.shape[:-2], obs_cov.shape[:-3], params.init_mean.shape[:-1],
              params.init_cov.shape[:-2]]
    for x, event in ((params.transition, 2), (params.offset, 1), (params.process_cov, 2)):
        if x.ndim > event:
            shapes.append(x.shape[:-event - 1])
    return torch.broadcast_shapes(*shapes)


def _filter_combine(earlier: Elements, later: Elements) -> Elements:
    """The filtering operator of Sarkka & Garcia-Fernandez (2021).

    An element (A, b, C, eta, J) stands for p(z_t | z_s, y_{s+1:t}) = N(A z_s + b, C) together
    with the likelihood of y_{s+1:t} as a function of z_s, proportional to
    exp(-z_s^T J z_s / 2 + eta^T z_s). With M = I + C_1 J_2 (note M^T = I + J_2 C_1)::

        A = A_2 M^-1 A_1,             b = A_2 M^-1 (b_1 + C_1 eta_2) + b_2,
        C = A_2 M^-1 C_1 A_2^T + C_2, eta = A_1^T M^-T (eta_2 - J_2 b_1) + eta_1,
        J = A_1^T M^-T J_2 A_1 + J_1.
    """
    a1, b1, c1, e1, j1 = earlier
    a2, b2, c2, e2, j2 = later
    k = a1.shape[-1]
    eye = torch.eye(k, dtype=a1.dtype, device=a1.device)
    lu, pivots = torch.linalg.lu_factor(eye + c1 @ j2)
    right = torch.cat([a1, (b1 + (c1 @ e2[..., None])[..., 0])[..., None], c1], -1)
    solved = torch.linalg.lu_solve(lu, pivots, right)  # M^-1 [A_1 | b_1 + C_1 eta_2 | C_1]
    a = a2 @ solved[..., :k]
    b = (a2 @ solved[..., k:k + 1])[..., 0] + b2
    c = _sym(a2 @ solved[..., k + 1:] @ a2.transpose(-1, -2) + c2)
    right = torch.cat([(e2 - (j2 @ b1[..., None])[..., 0])[..., None], j2 @ a1], -1)
    solved = torch.linalg.lu_solve(lu, pivots, right, adjoint=True)  # M^-T [...]
    a1t = a1.transpose(-1, -2)
    e = (a1t @ solved[..., :1])[..., 0] + e1
    j = _sym(a1t @ solved[..., 1:]) + j1
    return a, b, c, e, j


def _filter_parallel(params: LGSSM, observations: Tensor, obs_cov: Tensor, mask: Tensor
                     ) -> Filtered:
    """The filter as an associative scan; inputs already cleaned by :func:`_clean`.

    Step t's element conditions the transition z_{t-1} -> z_t on y_t alone: with
    S = H Q H^T + R and gain G = Q H^T S^-1, A = (I - G H) F, b = u + G (y - H u),
    C = (I - G H) Q, eta = F^T H^T S^-1 (y - H u), J = F^T H^T S^-1 H F. Step 0 uses F = 0,
    u = m_0, Q = P_0, so that its element is the first filtered distribution itself. A masked
    step carries zero information: G, eta and J are zero and the element is the plain
    transition (A = F, b = u, C = Q).
    """
    dtype, device = observations.dtype, observations.device
    steps, k = observations.shape[-2], params.init_mean.shape[-1]
    batch = _batch_shape(params, observations, obs_cov)
    f, u, q = _steps(params, batch, steps, dtype, device)
    init_mean = torch.broadcast_to(params.init_mean, (*batch, k))
    init_cov = torch.broadcast_to(params.init_cov, (*batch, k, k))
    f = torch.cat([f.new_zeros(*batch, 1, k, k), f], -3)  # (..., T, K, K): into step t
    u = torch.cat([init_mean[..., None, :], u], -2)  # (..., T, K)
    q = torch.cat([init_cov[..., None, :, :], q], -3)  # (..., T, K, K)
    y = torch.broadcast_to(observations, (*batch, steps, observations.shape[-1]))
    r = torch.broadcast_to(obs_cov, (*batch, *obs_cov.shape[-3:]))
    observed = torch.broadcast_to(mask, (*batch, steps)).to(dtype)[..., None, None]
    h = params.emission.to(dtype)
    ht = h.transpose(-1, -2)
    chol = torch.linalg.cholesky(_sym(h @ q @ ht + r))  # S_t = H Q H^T + R, (..., T, D, D)
    gain = torch.cholesky_solve(h @ q, chol).transpose(-1, -2) * observed  # (..., T, K, D)
    residual = y - (h @ u[..., None])[..., 0]  # (..., T, D)
    eye = torch.eye(k, dtype=dtype, device=device)
    keep = eye - gain @ h
    a = keep @ f
    b = u + (gain @ residual[..., None])[..., 0]
    c = _sym(keep @ q @ keep.transpose(-1, -2) + gain @ r @ gain.transpose(-1, -2))
    hf = h @ f  # (..., T, D, K)
    hft = hf.transpose(-1, -2)
    eta = (hft @ torch.cholesky_solve(residual[..., None], chol))[..., 0] * observed[..., 0]
    j = _sym(hft @ torch.cholesky_solve(hf, chol)) * observed
    # the scan runs over the leading axis: time first, (T, ..., ...)
    elems = tuple(x.movedim(time, 0) for x, time in
                  ((a, -3), (b, -2), (c, -3), (eta, -2), (j, -3)))
    _, means, covs, _, _ = _associative_scan(_filter_combine, elems)
    means, covs = means.movedim(0, -2), covs.movedim(0, -3)  # (..., T, K), (..., T, K, K)
    # one-step predictions, all at once, for the log-likelihood
    pred_mean = torch.cat([init_mean[..., None, :],
                           (f[..., 1:, :, :] @ means[..., :-1, :, None])[..., 0]
                           + u[..., 1:, :]], -2)
    pred_cov = torch.cat([init_cov[..., None, :, :],
                          f[..., 1:, :, :] @ covs[..., :-1, :, :] @ f[..., 1:, :, :]
                          .transpose(-1, -2) + q[..., 1:, :, :]], -3)
    chol = torch.linalg.cholesky(_sym(h @ pred_cov @ ht + r))
    z = torch.linalg.solve_triangular(
        chol, (y - (h @ pred_mean[..., None])[..., 0])[..., None], upper=False)[..., 0]
    log_det = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    log_prob = -0.5 * ((z**2).sum(-1) + log_det + y.shape[-1] * _log_2pi(y))
    log_prob = torch.where(observed[..., 0, 0] > 0, log_prob, torch.zeros_like(log_prob))
    return Filtered(means, covs, log_prob.sum(-1))


def _backward_elements(params: LGSSM, filtered: Filtered) -> tuple[Tensor, Tensor, Tensor]:
    """Smoothing elements (E_t, g_t, L_t), (..., T, K, K), (..., T, K), (..., T, K, K).

    For t < T-1: E_t = P_t F_t^T P_{t+1|t}^-1, g_t = m_t - E_t m_{t+1|t},
    L_t = P_t - E_t P_{t+1|t} E_t^T, so that z_t | z_{t+1}, y ~ N(E_t z_{t+1} + g_t, L_t);
    the last element is (0, m_{T-1}, P_{T-1}).
    """
    means, covs = filtered.means, filtered.covs
    batch, steps, k = means.shape[:-2], means.shape[-2], means.shape[-1]
    f, u, q = _steps(params, batch, steps, means.dtype, means.device)
    fp = f @ covs[..., :-1, :, :]  # F_t P_t, (..., T-1, K, K)
    pred_mean = (f @ means[..., :-1, :, None])[..., 0] + u
    pred_cov = _sym(fp @ f.transpose(-1, -2) + q)
    gain = torch.linalg.solve(pred_cov, fp).transpose(-1, -2)  # E_t
    g = means[..., :-1, :] - (gain @ pred_mean[..., None])[..., 0]
    cond = _sym(covs[..., :-1, :, :] - gain @ pred_cov @ gain.transpose(-1, -2))
    gain = torch.cat([gain, gain.new_zeros(*batch, 1, k, k)], -3)
    g = torch.cat([g, means[..., -1:, :]], -2)
    cond = torch.cat([cond, covs[..., -1:, :, :]], -3)
    return gain, g, cond


def _smooth_combine(earlier: Elements, later: Elements) -> Elements:
    """The smoothing operator of Sarkka & Garcia-Fernandez (2021)::

        E = E_1 E_2,   g = E_1 g_2 + g_1,   L = E_1 L_2 E_1^T + L_1.
    """
    e1, g1, l1 = earlier
    e2, g2, l2 = later
    return (e1 @ e2, (e1 @ g2[..., None])[..., 0] + g1,
            _sym(e1 @ l2 @ e1.transpose(-1, -2) + l1))


def _smooth_parallel(params: LGSSM, filtered: Filtered) -> Smoothed:
    """The RTS smoother as a reverse associative scan over the filtered moments."""
    gain, g, cond = _backward_elements(params, filtered)
    elems = (gain.movedim(-3, 0), g.movedim(-2, 0), cond.movedim(-3, 0))
    _, means, covs = _associative_scan(_smooth_combine, elems, reverse=True)
    means, covs = means.movedim(0, -2), covs.movedim(0, -3)
    cross = gain[..., :-1, :, :] @ covs[..., 1:, :, :]  # Cov(z_t, z_{t+1} | y) = E_t P^s_{t+1}
    return Smoothed(means, covs, cross, filtered.log_likelihood)


def _affine_combine(earlier: Elements, later: Elements) -> Elements:
    e1, g1 = earlier
    e2, g2 = later
    return e1 @ e2, (e1 @ g2[..., None])[..., 0] + g1


def _sample_parallel(params: LGSSM, filtered: Filtered, n: int, generator: torch.Generator
                     ) -> Tensor:
    """Backward sampling as a reverse scan of z_t = E_t z_{t+1} + g_t + L_t^{1/2} eps_t."""
    gain, g, cond = _backward_elements(params, filtered)
    shape = (n, *g.shape)
    noisy = _draw(g.expand(shape), cond.expand(*shape, g.shape[-1]), generator)  # (S, ..., T, K)
    elems = (gain.expand(*shape, g.shape[-1]).movedim(-3, 0), noisy.movedim(-2, 0))
    _, samples = _associative_scan(_affine_combine, elems, reverse=True)
    return samples.movedim(0, -2)


# --- the estimator ------------------------------------------------------------------------------


class AffectObservations(NamedTuple):
    """One video's per-frame Gaussian estimates of the latent z, the estimator's input.

    Attributes:
        times: (T,) frame times in seconds, strictly increasing (irregular steps allowed).
        means: (T, K) m_t, e.g. the hidden-route prior's means (or raw valence-arousal for K=2).
        covs: (T, K, K) S_t, their covariances (``torch.diag_embed(variances)`` for diagonal).
        mask: (T,) bool, True where a face was found; ``None`` when every frame has one. Values
            at masked frames are ignored (NaN allowed).
    """

    times: Tensor
    means: Tensor
    covs: Tensor
    mask: Tensor | None = None


class AffectPosterior(NamedTuple):
    """Per-frame posterior moments of one video, latent and decoded.

    Attributes:
        times: (T,) frame times in seconds.
        latent_mean: (T, K) E[z_t | data] (filtered: data up to t; smoothed: all data).
        latent_cov: (T, K, K) Cov[z_t | data].
        mean: (T, 2) posterior mean of (valence, arousal).
        lower: (T, 2) lower end of the central credible interval at ``level``.
        upper: (T, 2) upper end.
        level: Probability of the credible intervals.
        log_likelihood: () log p(observations) under the fitted model.
    """

    times: Tensor
    latent_mean: Tensor
    latent_cov: Tensor
    mean: Tensor
    lower: Tensor
    upper: Tensor
    level: float
    log_likelihood: Tensor


class AffectSamples(NamedTuple):
    """Joint posterior draws of whole trajectories.

    Attributes:
        times: (T,) frame times in seconds.
        latent: (S, T, K) draws of z_{0:T-1}.
        va: (S, T, 2) the draws decoded to (valence, arousal).
    """

    times: Tensor
    latent: Tensor
    va: Tensor


class FilterState(NamedTuple):
    """State of the streaming filter after a frame (:meth:`CoreAffectDynamics.filter_step`).

    Attributes:
        time: Time of the last frame, in seconds.
        mean: (K,) E[z_t | frames so far].
        cov: (K, K) Cov[z_t | frames so far].
        log_likelihood: () log p(frames so far).
    """

    time: float
    mean: Tensor
    cov: Tensor
    log_likelihood: Tensor


class _Batch(NamedTuple):
    """Equal-length videos stacked for one batched filter call."""

    dt: Tensor  # (B, T-1)
    y: Tensor  # (B, T, K) pseudo-observations
    r: Tensor  # (B, T, K, K) their covariances before scaling
    mask: Tensor  # (B, T) bool


_DTYPE = torch.float64  # affect models are tiny; float64 keeps the likelihood surface smooth


def _n_lower(k: int) -> int:
    return k * (k - 1) // 2


def _lower(diag: Tensor, lower: Tensor) -> Tensor:
    """(..., K, K) lower-triangular matrices from their diagonals (..., K) and strict lower parts
    (..., K(K-1)/2), filled row by row."""
    k = diag.shape[-1]
    rows, cols = torch.tril_indices(k, k, -1)
    out = torch.diag_embed(diag)
    if rows.numel():
        out[..., rows, cols] = lower
    return out


def _skew(values: Tensor, k: int) -> Tensor:
    """(..., K, K) skew-symmetric matrices from their strict lower parts (..., K(K-1)/2)."""
    rows, cols = torch.tril_indices(k, k, -1)
    out = values.new_zeros(*values.shape[:-1], k, k)
    if rows.numel():
        out[..., rows, cols] = values
    return out - out.transpose(-1, -2)


def _build(theta_diag: Tensor, theta_lower: Tensor, theta_skew: Tensor, diffusion_diag: Tensor,
           diffusion_lower: Tensor) -> tuple[Tensor, Tensor]:
    """Theta = C C^T + W (C lower-triangular, positive diagonal; W skew) and L lower-triangular.

    Batched over leading axes: diagonals (..., K), free entries (..., K(K-1)/2).
    """
    k = theta_diag.shape[-1]
    chol = _lower(theta_diag, theta_lower)
    theta = chol @ chol.transpose(-1, -2) + _skew(theta_skew, k)
    return theta, _lower(diffusion_diag, diffusion_lower)


class CoreAffectDynamics:
    r"""Ornstein-Uhlenbeck core-affect dynamics over per-frame Gaussian estimates.

    Model. The latent core affect z_t in R^K follows the OU process
    dz = -Theta (z - mu) dt + L dW, started in its stationary law z_{t_0} ~ N(mu, P_inf) and
    discretised exactly between the frame times (:func:`ou_discretize`). Each frame brings a
    Gaussian estimate N(m_t, S_t) of z_t (an :class:`AffectObservations` row); it enters as a
    pseudo-observation y_t = z_t + v_t, v_t ~ N(0, c R_t + epsilon I), where

    * ``divide_prior`` False: y_t = m_t and R_t = S_t (use with raw estimates, e.g. the hidden
      route's valence-arousal means and variances with K = 2);
    * ``divide_prior`` True: N(m_t, S_t) is read as a posterior under the manifold's prior
      p(z) = N(0, I) (what the hidden-route prior is fitted as), and p(z) is divided out so that
      the OU process is the only prior: N(z; m_t, S_t) / N(z; 0, I) is proportional to
      N(z; y_t, R_t) with precision R_t^-1 = S_t^-1 - I and y_t = R_t S_t^-1 m_t. This is
      well-defined only where S_t^-1 - I is positive definite, i.e. every eigenvalue s of S_t is
      below 1 (the estimate is more certain than p(z)). It is computed in the eigenbasis of S_t,
      S_t = U diag(s) U^T: each direction gets precision lambda = 1/s - 1 and pseudo-mean
      (U^T m_t) / (1 - s); a direction with lambda below ``min_precision`` (s near or above 1)
      is treated as nearly uninformative instead: precision ``min_precision`` and pseudo-mean
      U^T m_t, the estimate's own mean.

    Symbols: Theta (K, K) mean-reversion rates in 1/s, parameterised as Theta = C C^T + W with C
    lower-triangular with a positive diagonal and W skew-symmetric, so its symmetric part is
    positive definite, which makes every eigenvalue's real part positive (the process is
    mean-reverting, and without noise ``|z - mu|`` decreases monotonically; oscillating, rotational
    dynamics are allowed through W); mu (K,) the baseline; L (K, K) the diffusion, lower-triangular
    with a positive diagonal (only L L^T is identified); c > 0 a learned scale of the observation
    covariances (c < 1: the estimates are over-dispersed, c > 1: over-confident); epsilon a fixed
    ``noise_floor`` keeping R_t positive definite. Frames without a face are masked steps: only
    the OU prediction runs there and the credible band widens.

    Learning. ``fit(method="mle")`` maximises the exact marginal log-likelihood (Kalman filter)
    summed over videos with Adam (or L-BFGS) on unconstrained parameters (logs of the positive
    diagonals); equal-length videos are batched in one filter call. ``fit(method="nuts")``
    samples the posterior with Pyro's NUTS under these priors (independent across entries)::

        diag(C) ~ LogNormal(0, 1)        (Theta's diagonal ~ rates of about 0.02 - 50 per s)
        strict lower part of C ~ Normal(0, 0.5),   W's free entries ~ Normal(0, 0.5)
        mu ~ Normal(0, 1)                (the latent and valence-arousal have unit scale)
        diag(L) ~ LogNormal(log 0.5, 1),  strict lower part of L ~ Normal(0, 0.5)
        c ~ LogNormal(0, 1)

    (each a Normal on the unconstrained parameter: on the log of a positive one). NUTS runs in
    coordinates whitened by the Laplace approximation at the maximum-likelihood estimate (fitted
    first): x = x_hat + A w with A A^T the inverse Hessian of the negative log-posterior there
    (by central differences of its gradient), which makes the posterior of w near-isotropic, so
    that short warm-ups suffice. Each chain starts at a standard-normal w, about one posterior
    standard deviation from the mode, so that r_hat can see chains that did not mix. The draws
    are kept in ``inference_data_`` (ArviZ, with r_hat and ESS at hand) and their posterior means
    become the point parameters.

    Decoding. Latent moments are mapped to (valence, arousal) by ``decoder``:

    * ``None``: the latent is valence-arousal itself (identity emission; K = 2; for another K
      the "decoded" outputs are the latent itself); bands are exact;
    * a (2, K) tensor A: y = A z, exact Gaussian bands;
    * an object with a ``decode`` method (e.g. an ``AffectManifold``) or a callable, taking
      z (..., K) and returning either a tensor (..., 2) or a distribution whose ``mean`` and
      ``variance`` are (..., 2) (the manifold's Gaussian decoder p(y | z) = N(g(z), diag(s^2)));
      moments and bands are then Monte Carlo estimates from ``n_decode_samples`` draws of z_t
      (and of y given z_t, so that the bands are predictive of the labels).

    Args:
        n_latent: K, the latent dimension.
        decoder: See Decoding; not saved with the model (pass it again to :meth:`load`).
        divide_prior: Divide out p(z) = N(0, I) (see Model). ``None``: only when a decoder is
            given, since without one the latent is valence-arousal and has no such prior.
        noise_floor: epsilon, added to every observation covariance (default: a 0.01 standard
            deviation on the unit scale of valence-arousal, far below real uncertainty).
        min_precision: Smallest per-direction precision of a divided pseudo-observation.
        level: Probability of the credible bands (0.9: the interval the evaluation reports).
        parallel: Use the associative-scan filter and smoother; ``None`` decides by length
            (parallel from 16 frames on, where it starts to pay off on a CPU).
        optimizer: ``"adam"`` or ``"lbfgs"`` for the maximum-likelihood fit. Both reach the same
            optimum; L-BFGS needs far fewer likelihood evaluations on these few smooth parameters
            (measured: 24 against about 125 for 6 videos x 400 frames).
        max_iter: Most iterations of the optimizer.
        learning_rate: Adam's step size (the parameters are O(1) on their unconstrained scale).
        tol: Convergence: Adam stops when the mean negative log-likelihood per frame fell by less
            than ``tol`` per iteration over the last 20; L-BFGS when it changes less than ``tol``.
        num_samples: NUTS draws kept per chain.
        num_warmup: NUTS adaptation steps per chain.
        num_chains: NUTS chains, run one after the other (2: enough for the split r_hat).
        n_decode_samples: Monte Carlo draws per frame for a nonlinear decoder.
        random_state: Seed of NUTS and of Monte Carlo decoding.

    Attributes:
        theta_: (K, K) fitted Theta.
        mu_: (K,) fitted mu.
        diffusion_: (K, K) fitted L.
        noise_scale_: () fitted c.
        log_likelihood_: Log-likelihood of the training videos at the point parameters.
        n_iter_: Optimizer iterations run.
        inference_data_: ArviZ data of the NUTS draws (posterior group: theta, mu, diffusion,
            noise_scale; sample_stats: diverging), ``None`` after a maximum-likelihood fit.

    References:
        Oravecz, Z., Tuerlinckx, F., & Vandekerckhove, J. (2009). A hierarchical
        Ornstein-Uhlenbeck model for continuous repeated measurement data. Psychometrika 74(3).

        Sarkka, S., & Garcia-Fernandez, A. F. (2021). Temporal parallelization of Bayesian
        smoothers. IEEE Transactions on Automatic Control 66(1), 299-306.

        Hoffman, M. D., & Gelman, A. (2014). The No-U-Turn sampler. JMLR 15, 1593-1623.
    """

    _PARALLEL_FROM = 16  # frames; measured crossover of the two filters on a CPU

    def __init__(self, n_latent: int = 2, *, decoder: Any = None,
                 divide_prior: bool | None = None, noise_floor: float = 1e-4,
                 min_precision: float = 1e-3, level: float = 0.9, parallel: bool | None = None,
                 optimizer: str = "adam", max_iter: int = 300, learning_rate: float = 0.05,
                 tol: float = 1e-6, num_samples: int = 500,
                 num_warmup: int = 500, num_chains: int = 2, n_decode_samples: int = 1000,
                 random_state: int | None = 0) -> None:
        self.n_latent = n_latent
        self.decoder = decoder
        self.divide_prior = divide_prior
        self.noise_floor = noise_floor
        self.min_precision = min_precision
        self.level = level
        self.parallel = parallel
        self.optimizer = optimizer
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.tol = tol
        self.num_samples = num_samples
        self.num_warmup = num_warmup
        self.num_chains = num_chains
        self.n_decode_samples = n_decode_samples
        self.random_state = random_state

    # -- parameters ---------------------------------------------------------------------------

    def _divides(self) -> bool:
        return self.decoder is not None if self.divide_prior is None else bool(self.divide_prior)

    def _check_fitted(self) -> None:
        if not hasattr(self, "theta_"):
            raise RuntimeError("CoreAffectDynamics is not fitted: call fit() or load() first")

    def _point(self) -> dict[str, Tensor]:
        return {"theta": self.theta_, "mu": self.mu_, "diffusion": self.diffusion_,
                "noise_scale": self.noise_scale_}

    @staticmethod
    def _constrain(raw: dict[str, Tensor]) -> dict[str, Tensor]:
        """Model parameters from the unconstrained ones (log-diagonals, free entries, log c)."""
        theta, diffusion = _build(raw["theta_log_diag"].exp(), raw["theta_lower"],
                                  raw["theta_skew"], raw["diffusion_log_diag"].exp(),
                                  raw["diffusion_lower"])
        return {"theta": theta, "mu": raw["mu"], "diffusion": diffusion,
                "noise_scale": raw["log_noise_scale"].exp()}

    @staticmethod
    def _unconstrain(theta: Tensor, mu: Tensor, diffusion: Tensor, noise_scale: Tensor
                     ) -> dict[str, Tensor]:
        """Inverse of :meth:`_constrain`; theta's symmetric part must be positive definite."""
        k = theta.shape[-1]
        rows, cols = torch.tril_indices(k, k, -1)
        chol = torch.linalg.cholesky(_sym(theta))
        skew = 0.5 * (theta - theta.T)
        return {"theta_log_diag": torch.diagonal(chol).log(), "theta_lower": chol[rows, cols],
                "theta_skew": skew[rows, cols], "mu": mu.clone(),
                "diffusion_log_diag": torch.diagonal(diffusion).abs().log(),
                "diffusion_lower": diffusion[rows, cols],
                "log_noise_scale": torch.as_tensor(noise_scale, dtype=_DTYPE).log()}

    # -- data -----------------------------------------------------------------------------------

    def _pseudo(self, means: Tensor, covs: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Pseudo-observations y (..., K) and covariances R (..., K, K) before scaling by c."""
        k = means.shape[-1]
        eye = torch.eye(k, dtype=_DTYPE)
        means = torch.where(mask[..., None], means, torch.zeros_like(means))
        covs = _sym(torch.where(mask[..., None, None], covs, 0.5 * eye))
        if not self._divides():
            return means, covs
        s, u = torch.linalg.eigh(covs)  # S = U diag(s) U^T
        proj = (u.transpose(-1, -2) @ means[..., None])[..., 0]  # U^T m
        precision = 1 / s - 1
        defined = precision >= self.min_precision
        precision = torch.where(defined, precision, torch.full_like(s, self.min_precision))
        # y = R S^-1 m: in the eigenbasis (U^T m) / s / (1/s - 1) = (U^T m) / (1 - s)
        pseudo = torch.where(defined, proj / (1 - s).clamp_min(1e-12), proj)
        y = (u @ pseudo[..., None])[..., 0]
        r = _sym(u @ torch.diag_embed(1 / precision) @ u.transpose(-1, -2))
        return y, r

    def _prepare(self, sequence: AffectObservations) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(times (T,), y (T, K), R (T, K, K), mask (T,)) of one video, validated."""
        times = torch.as_tensor(sequence.times, dtype=_DTYPE).reshape(-1)
        means = torch.as_tensor(sequence.means, dtype=_DTYPE)
        covs = torch.as_tensor(sequence.covs, dtype=_DTYPE)
        steps, k = times.shape[0], self.n_latent
        if means.shape != (steps, k) or covs.shape != (steps, k, k):
            raise ValueError(f"expected times (T,), means (T, {k}), covs (T, {k}, {k}); got "
                             f"{tuple(times.shape)}, {tuple(means.shape)}, {tuple(covs.shape)}")
        if steps == 0:
            raise ValueError("an empty sequence")
        if steps > 1 and not bool((times.diff() > 0).all()):
            raise ValueError("times must be strictly increasing")
        mask = (torch.ones(steps, dtype=torch.bool) if sequence.mask is None
                else torch.as_tensor(sequence.mask).to(torch.bool).reshape(steps))
        finite = torch.isfinite(means).all(-1) & torch.isfinite(covs).flatten(-2).all(-1)
        if bool((mask & ~finite).any()):
            raise ValueError("non-finite means or covs at an unmasked frame")
        if bool(mask.any()) and not bool(
                (torch.linalg.eigvalsh(_sym(covs[mask])) > 0).all()):
            raise ValueError("covs must be positive definite at unmasked frames")
        y, r = self._pseudo(means, covs, mask)
        return times, y, r, mask

    def _batches(self, sequences: Sequence[AffectObservations]) -> list[_Batch]:
        """Videos grouped by length, each group stacked: (B, T-1), (B, T, K), ..."""
        groups: dict[int, list[tuple[Tensor, Tensor, Tensor, Tensor]]] = {}
        for sequence in sequences:
            prepared = self._prepare(sequence)
            groups.setdefault(prepared[0].shape[0], []).append(prepared)
        return [_Batch(torch.stack([p[0].diff() for p in group]),
                       torch.stack([p[1] for p in group]), torch.stack([p[2] for p in group]),
                       torch.stack([p[3] for p in group]))
                for _, group in sorted(groups.items())]

    def _use_parallel(self, steps: int) -> bool:
        return steps >= self._PARALLEL_FROM if self.parallel is None else bool(self.parallel)

    def _lgssm(self, p: dict[str, Tensor], dt: Tensor) -> LGSSM:
        """The discretised model over steps dt (..., T-1); distinct steps discretised once."""
        unique, inverse = torch.unique(dt, return_inverse=True)
        f, b, q = ou_discretize(p["theta"], p["mu"], p["diffusion"], unique)
        k = p["mu"].shape[-1]
        return LGSSM(init_mean=p["mu"], init_cov=ou_stationary_cov(p["theta"], p["diffusion"]),
                     transition=f[inverse], offset=b[inverse], process_cov=q[inverse],
                     emission=torch.eye(k, dtype=_DTYPE))

    def _obs_cov(self, p: dict[str, Tensor], r: Tensor) -> Tensor:
        eye = torch.eye(r.shape[-1], dtype=_DTYPE)
        return p["noise_scale"] * r + self.noise_floor * eye

    def _log_likelihood(self, p: dict[str, Tensor], batches: list[_Batch]) -> Tensor:
        total = torch.zeros((), dtype=_DTYPE)
        for batch in batches:
            params = self._lgssm(p, batch.dt)
            parallel = self._use_parallel(batch.y.shape[-2])
            filtered = kalman_filter(params, batch.y, self._obs_cov(p, batch.r), batch.mask,
                                     parallel=parallel)
            total = total + filtered.log_likelihood.sum()
        return total

    @staticmethod
    def _as_list(sequences: AffectObservations | Sequence[AffectObservations]
                 ) -> list[AffectObservations]:
        if isinstance(sequences, AffectObservations):
            return [sequences]
        return list(sequences)

    # -- fitting --------------------------------------------------------------------------------

    def _initial_guess(self, batches: list[_Batch]) -> dict[str, Tensor]:
        """Moment-based start: mu and variance from the observed means, rate from lag-1 decay."""
        k = self.n_latent
        ys = torch.cat([b.y[b.mask] for b in batches])  # (N, K)
        mu = ys.mean(0) if ys.shape[0] else torch.zeros(k, dtype=_DTYPE)
        var = ys.var(0).clamp_min(1e-4) if ys.shape[0] > 1 else torch.ones(k, dtype=_DTYPE)
        pairs = [(b.y[:, :-1][b.mask[:, :-1] & b.mask[:, 1:]],
                  b.y[:, 1:][b.mask[:, :-1] & b.mask[:, 1:]],
                  b.dt[b.mask[:, :-1] & b.mask[:, 1:]]) for b in batches if b.y.shape[1] > 1]
        rate = torch.ones(k, dtype=_DTYPE)
        if pairs and sum(p[2].numel() for p in pairs) > 2:
            a, b, dt = (torch.cat([p[i] for p in pairs]) for i in range(3))
            rho = (((a - mu) * (b - mu)).mean(0) / var).clamp(0.05, 0.999)
            rate = (-torch.log(rho) / dt.median()).clamp(0.01, 100.0)
        theta = torch.diag(rate)
        diffusion = torch.diag(torch.sqrt(2 * rate * var))
        return self._unconstrain(theta, mu, diffusion, torch.ones((), dtype=_DTYPE))

    def fit(self, sequences: AffectObservations | Sequence[AffectObservations],
            method: str = "mle") -> CoreAffectDynamics:
        """Learn Theta, mu, L and c from videos.

        Args:
            sequences: One video or several.
            method: ``"mle"`` (maximum marginal likelihood) or ``"nuts"`` (posterior draws,
                started at the maximum-likelihood estimate; see the class docstring).

        Returns:
            self.
        """
        if method not in ("mle", "nuts"):
            raise ValueError(f"method must be 'mle' or 'nuts', not {method!r}")
        batches = self._batches(self._as_list(sequences))
        n_frames = max(1, sum(int(b.mask.sum()) for b in batches))
        raw = {name: value.clone().requires_grad_()
               for name, value in self._initial_guess(batches).items()}

        def loss_fn() -> Tensor:
            return -self._log_likelihood(self._constrain(raw), batches) / n_frames

        if self.optimizer == "adam":
            self.n_iter_ = _adam(loss_fn, list(raw.values()), self.learning_rate,
                                 self.max_iter, self.tol)
        elif self.optimizer == "lbfgs":
            self.n_iter_ = _lbfgs(loss_fn, list(raw.values()), self.max_iter, self.tol)
        else:
            raise ValueError(f"optimizer must be 'adam' or 'lbfgs', not {self.optimizer!r}")
        with torch.no_grad():
            point = self._constrain(raw)
        if not all(bool(torch.isfinite(v).all()) for v in point.values()):
            raise FloatingPointError("the maximum-likelihood fit diverged; lower learning_rate")
        self._set_point(point)
        self.inference_data_ = None
        if method == "nuts":
            self._fit_nuts(batches, {k: v.detach() for k, v in raw.items()})
        with torch.no_grad():
            self.log_likelihood_ = float(self._log_likelihood(self._point(), batches))
        logger.info("dynamics fitted (%s): log-likelihood %.2f over %d frames", method,
                    self.log_likelihood_, n_frames)
        return self

    def _set_point(self, point: dict[str, Tensor]) -> None:
        self.theta_ = point["theta"].detach().clone()
        self.mu_ = point["mu"].detach().clone()
        self.diffusion_ = point["diffusion"].detach().clone()
        self.noise_scale_ = point["noise_scale"].detach().clone()

    # NUTS priors, each a Normal on an unconstrained parameter (location, scale): a Normal on a
    # log is the LogNormal on the positive value, so no Jacobian enters the potential
    _PRIORS = {"theta_log_diag": (0.0, 1.0), "theta_lower": (0.0, 0.5),
               "theta_skew": (0.0, 0.5), "mu": (0.0, 1.0),
               "diffusion_log_diag": (math.log(0.5), 1.0), "diffusion_lower": (0.0, 0.5),
               "log_noise_scale": (0.0, 1.0)}

    def _log_prior(self, raw: dict[str, Tensor]) -> Tensor:
        total = torch.zeros((), dtype=_DTYPE)
        for name, (loc, scale) in self._PRIORS.items():
            value = raw[name]
            total = total + (-0.5 * ((value - loc) / scale) ** 2
                             - math.log(scale * math.sqrt(2 * math.pi))).sum()
        return total

    def _fit_nuts(self, batches: list[_Batch], raw: dict[str, Tensor]) -> None:
        """NUTS in whitened coordinates w, with x = x_hat + A w (see :meth:`_laplace`)."""
        from pyro.infer import MCMC, NUTS

        names = [name for name, value in raw.items() if value.numel()]
        sizes = [raw[name].numel() for name in names]
        fixed = {name: value for name, value in raw.items() if not value.numel()}

        def unflatten(x: Tensor) -> dict[str, Tensor]:
            """(..., P) flat unconstrained vectors to named parameters."""
            parts = torch.split(x, sizes, -1)
            out = {name: part.reshape((*x.shape[:-1], *raw[name].shape))
                   for name, part in zip(names, parts, strict=True)}
            return {**{name: value.expand(*x.shape[:-1], *value.shape)
                       for name, value in fixed.items()}, **out}

        def negative_log_posterior(x: Tensor) -> Tensor:
            full = unflatten(x)
            return -(self._log_prior(full) + self._log_likelihood(self._constrain(full), batches))

        centre = torch.cat([raw[name].reshape(-1) for name in names])
        scale = _laplace(negative_log_posterior, centre)  # (P, P), x = centre + scale @ w

        def potential(free: dict[str, Tensor]) -> Tensor:
            return negative_log_posterior(centre + scale @ free["w"])

        chains, diverging = [], []
        seed = 0 if self.random_state is None else int(self.random_state)
        # Pyro draws from torch's global generator: fork it, so the caller's stream is untouched
        with torch.random.fork_rng(devices=[]):
            for chain in range(self.num_chains):
                torch.manual_seed(seed * 1000 + chain)
                kernel = NUTS(potential_fn=potential, target_accept_prob=0.8)
                # overdispersed starts, one posterior sd around the mode, for a meaningful r_hat
                start = torch.randn(centre.shape, dtype=_DTYPE)
                mcmc = MCMC(kernel, num_samples=self.num_samples, warmup_steps=self.num_warmup,
                            initial_params={"w": start}, disable_progbar=True)
                mcmc.run()
                w = mcmc.get_samples()["w"]  # (S, P)
                chains.append(self._constrain(unflatten(centre + w @ scale.T)))
                flags = torch.zeros(self.num_samples, dtype=torch.bool)
                for index in mcmc.diagnostics().get("divergences", {}).get("chain 0", []):
                    if 0 <= index < self.num_samples:
                        flags[index] = True
                diverging.append(flags)
        arrays = {name: torch.stack([c[name] for c in chains]).numpy()
                  for name in ("theta", "mu", "diffusion", "noise_scale")}  # (chain, draw, ...)
        self.inference_data_ = _inference_data(arrays, torch.stack(diverging).numpy())
        self._set_point({name: torch.as_tensor(value.mean(axis=(0, 1)), dtype=_DTYPE)
                         for name, value in arrays.items()})

    def score(self, sequences: AffectObservations | Sequence[AffectObservations]) -> float:
        """Log-likelihood of videos under the fitted point parameters."""
        self._check_fitted()
        with torch.no_grad():
            return float(self._log_likelihood(self._point(),
                                              self._batches(self._as_list(sequences))))

    # -- inference ------------------------------------------------------------------------------

    def _single(self, sequence: AffectObservations) -> tuple[Tensor, LGSSM, Tensor, Tensor,
                                                           Tensor, bool]:
        self._check_fitted()
        times, y, r, mask = self._prepare(sequence)
        p = self._point()
        return (times, self._lgssm(p, times.diff()), y, self._obs_cov(p, r), mask,
                self._use_parallel(times.shape[0]))

    def filter(self, sequence: AffectObservations) -> AffectPosterior:
        """Causal posterior p(z_t | frames up to t) of one video, and its decoding."""
        times, params, y, r, mask, parallel = self._single(sequence)
        with torch.no_grad():
            out = kalman_filter(params, y, r, mask, parallel=parallel)
        return self._posterior(times, out.means, out.covs, out.log_likelihood)

    def smooth(self, sequence: AffectObservations) -> AffectPosterior:
        """Offline posterior p(z_t | all frames) of one video, and its decoding."""
        times, params, y, r, mask, parallel = self._single(sequence)
        with torch.no_grad():
            out = rts_smoother(params, y, r, mask, parallel=parallel)
        return self._posterior(times, out.means, out.covs, out.log_likelihood)

    def sample(self, sequence: AffectObservations, n: int = 100,
               random_state: int | torch.Generator | None = None) -> AffectSamples:
        """Joint posterior draws of one video's trajectory, latent and decoded.

        Args:
            sequence: The video.
            n: Number of draws S.
            random_state: Seed or generator (``None``: the estimator's ``random_state``).
        """
        times, params, y, r, mask, parallel = self._single(sequence)
        generator = _generator(self.random_state if random_state is None else random_state,
                               y.device)
        with torch.no_grad():
            latent = sample_posterior(params, y, r, mask, n=n, random_state=generator,
                                      parallel=parallel)  # (S, T, K)
            va = self._decode_draws(latent, generator)
        return AffectSamples(times, latent, va)

    def _posterior(self, times: Tensor, means: Tensor, covs: Tensor, log_likelihood: Tensor
                   ) -> AffectPosterior:
        mean, lower, upper = self.decode(means, covs)
        return AffectPosterior(times, means, covs, mean, lower, upper, self.level,
                               log_likelihood)

    def filter_step(self, state: FilterState | None, time: float, mean: Tensor | None = None,
                    cov: Tensor | None = None) -> FilterState:
        """One frame of the causal filter, at constant cost per frame (streaming).

        Args:
            state: The state after the previous frame; ``None`` before the first frame.
            time: This frame's time in seconds, later than ``state.time``.
            mean: (K,) m_t, or ``None`` when the frame has no face (prediction only).
            cov: (K, K) S_t (ignored when ``mean`` is ``None``).

        Returns:
            The state after this frame; :meth:`decode` maps its moments to valence-arousal.
        """
        self._check_fitted()
        p = self._point()
        k = self.n_latent
        if state is None:
            pred_mean, pred_cov = p["mu"], ou_stationary_cov(p["theta"], p["diffusion"])
            log_likelihood = torch.zeros((), dtype=_DTYPE)
        else:
            dt = float(time) - float(state.time)
            if dt <= 0:
                raise ValueError(f"time {time} does not follow the last frame's {state.time}")
            f, b, q = ou_discretize(p["theta"], p["mu"], p["diffusion"], dt)
            pred_mean = f @ state.mean + b
            pred_cov = _sym(f @ state.cov @ f.T + q)
            log_likelihood = state.log_likelihood
        observed = mean is not None
        m = (torch.as_tensor(mean, dtype=_DTYPE).reshape(1, k) if observed
             else torch.zeros(1, k, dtype=_DTYPE))
        s = (torch.as_tensor(cov, dtype=_DTYPE).reshape(1, k, k) if observed
             else torch.eye(k, dtype=_DTYPE)[None])
        flag = torch.tensor([observed])
        y, r = self._pseudo(m, s, flag)
        new_mean, new_cov, log_prob = _update(pred_mean, pred_cov, y[0], self._obs_cov(p, r[0]),
                                              torch.eye(k, dtype=_DTYPE), flag[0])
        return FilterState(float(time), new_mean, new_cov, log_likelihood + log_prob)

    # -- decoding -------------------------------------------------------------------------------

    def _decode_fn(self) -> Callable[[Tensor], Any]:
        decoder = self.decoder
        return decoder.decode if hasattr(decoder, "decode") else decoder

    def _decode_draws(self, latent: Tensor, generator: torch.Generator) -> Tensor:
        """Latent draws (..., K) to valence-arousal draws (..., 2)."""
        if self.decoder is None:
            return latent
        if isinstance(self.decoder, Tensor):
            return latent @ self.decoder.to(latent.dtype).T
        out = self._decode_fn()(latent)
        if isinstance(out, Tensor):
            return out.to(latent.dtype)
        mean = out.mean.to(latent.dtype)
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
        return mean + out.variance.to(latent.dtype).sqrt() * noise

    def decode(self, latent_mean: Tensor, latent_cov: Tensor, level: float | None = None
               ) -> tuple[Tensor, Tensor, Tensor]:
        """Valence-arousal mean and central credible bands from latent Gaussian moments.

        Args:
            latent_mean: (..., K).
            latent_cov: (..., K, K).
            level: Band probability (default ``self.level``).

        Returns:
            ``(mean, lower, upper)``, each (..., 2): exact for no or a linear decoder, else
            Monte Carlo (``n_decode_samples`` draws, seeded by ``random_state``).
        """
        level = self.level if level is None else level
        latent_mean = torch.as_tensor(latent_mean, dtype=_DTYPE)
        latent_cov = torch.as_tensor(latent_cov, dtype=_DTYPE)
        if self.decoder is None or isinstance(self.decoder, Tensor):
            a = (torch.eye(latent_mean.shape[-1], dtype=_DTYPE) if self.decoder is None
                 else self.decoder.to(_DTYPE))
            mean = (a @ latent_mean[..., None])[..., 0]
            var = torch.diagonal(a @ latent_cov @ a.T, dim1=-2, dim2=-1)
            half = torch.distributions.Normal(0.0, 1.0).icdf(
                torch.tensor(0.5 + level / 2, dtype=_DTYPE)) * var.clamp_min(0).sqrt()
            return mean, mean - half, mean + half
        generator = _generator(self.random_state, latent_mean.device)
        shape = (self.n_decode_samples, *latent_mean.shape)
        draws = _draw(latent_mean.expand(shape), latent_cov.expand(*shape, shape[-1]), generator)
        va = self._decode_draws(draws, generator)  # (S, ..., 2)
        probs = torch.tensor([0.5 - level / 2, 0.5 + level / 2], dtype=va.dtype)
        lower, upper = torch.quantile(va, probs, dim=0)
        return va.mean(0), lower, upper

    # -- persistence ----------------------------------------------------------------------------

    _CONFIG = ("n_latent", "divide_prior", "noise_floor", "min_precision", "level", "parallel",
               "optimizer", "max_iter", "learning_rate", "tol", "num_samples", "num_warmup",
               "num_chains", "n_decode_samples", "random_state")

    def save(self, directory: str | Path, name: str = "dynamics") -> None:
        """Write ``name.safetensors`` (parameters, NUTS draws) and ``name.json`` (settings).

        The decoder is not saved: it belongs to the manifold, saved with it.
        """
        from coreaffect.checkpoint import save_state

        self._check_fitted()
        tensors = dict(self._point())
        draws = getattr(self, "inference_data_", None)
        if draws is not None:
            for key in ("theta", "mu", "diffusion", "noise_scale"):
                tensors[f"posterior.{key}"] = torch.as_tensor(
                    _posterior_values(draws, key))
            tensors["sample_stats.diverging"] = torch.as_tensor(
                _sample_stat(draws, "diverging"))
        config = {key: getattr(self, key) for key in self._CONFIG}
        config["decoder"] = None if self.decoder is None else type(self.decoder).__name__
        config["log_likelihood"] = getattr(self, "log_likelihood_", None)
        save_state(directory, name, tensors, {"estimator": config})

    @classmethod
    def load(cls, directory: str | Path, name: str = "dynamics", decoder: Any = None
             ) -> CoreAffectDynamics:
        """Rebuild an estimator written by :meth:`save`; give the decoder again if it had one."""
        from coreaffect.checkpoint import load_state

        tensors, config = load_state(directory, name)
        settings = dict(config["estimator"])
        settings.pop("decoder", None)
        log_likelihood = settings.pop("log_likelihood", None)
        model = cls(**settings, decoder=decoder)
        model._set_point({key: tensors[key].to(_DTYPE)
                          for key in ("theta", "mu", "diffusion", "noise_scale")})
        model.log_likelihood_ = log_likelihood
        model.inference_data_ = None
        if "posterior.theta" in tensors:
            arrays = {key: tensors[f"posterior.{key}"].numpy()
                      for key in ("theta", "mu", "diffusion", "noise_scale")}
            model.inference_data_ = _inference_data(
                arrays, tensors["sample_stats.diverging"].numpy())
        return model


def _adam(loss_fn: Callable[[], Tensor], params: list[Tensor], lr: float, max_iter: int,
          tol: float, window: int = 20) -> int:
    """Adam until ``max_iter`` or until the loss fell by less than ``tol`` per iteration over the
    last ``window`` iterations; returns the iterations run."""
    optimiser = torch.optim.Adam(params, lr=lr)
    history: list[float] = []
    for iteration in range(1, max_iter + 1):
        optimiser.zero_grad()
        loss = loss_fn()
        loss.backward()
        optimiser.step()
        history.append(float(loss.detach()))
        if len(history) > window and history[-window - 1] - history[-1] < tol * window:
            return iteration
    return max_iter


def _lbfgs(loss_fn: Callable[[], Tensor], params: list[Tensor], max_iter: int, tol: float
           ) -> int:
    """L-BFGS with a strong-Wolfe line search; returns the iterations run."""
    optimiser = torch.optim.LBFGS(params, lr=1.0, max_iter=max_iter, tolerance_grad=1e-9,
                                  tolerance_change=tol, history_size=20,
                                  line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimiser.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    optimiser.step(closure)
    return int(optimiser.state[params[0]].get("n_iter", max_iter))


def _laplace(energy: Callable[[Tensor], Tensor], centre: Tensor, step: float = 1e-4,
             min_curvature: float = 1e-2) -> Tensor:
    """A square root of the Laplace covariance of exp(-energy) at ``centre``.

    The Hessian of ``energy`` (P,) -> () is taken by central differences of its gradient,
    symmetrised, and its eigenvalues floored at ``min_curvature`` (a flat or non-convex direction
    gets a wide but finite scale). Returns A (P, P) with A A^T = H^-1: NUTS then samples
    w = A^-1 (x - centre), near N(0, I) when the posterior is near Gaussian.
    """
    def grad(x: Tensor) -> Tensor:
        x = x.detach().requires_grad_()
        (g,) = torch.autograd.grad(energy(x), x)
        return g

    size = centre.shape[0]
    eye = torch.eye(size, dtype=centre.dtype)
    columns = [(grad(centre + step * eye[i]) - grad(centre - step * eye[i])) / (2 * step)
               for i in range(size)]
    values, vectors = torch.linalg.eigh(_sym(torch.stack(columns, -1)))
    return vectors * values.clamp_min(min_curvature).rsqrt()


def _inference_data(posterior: dict[str, Any], diverging: Any) -> Any:
    """ArviZ data from (chain, draw, ...) arrays; ``from_dict`` of arviz 0.x and 1.x alike."""
    import inspect

    import arviz as az

    if "posterior" in inspect.signature(az.from_dict).parameters:  # arviz < 1
        return az.from_dict(posterior=posterior, sample_stats={"diverging": diverging})
    return az.from_dict({"posterior": posterior, "sample_stats": {"diverging": diverging}})


def _posterior_values(data: Any, name: str) -> Any:
    return data["posterior"][name].values


def _sample_stat(data: Any, name: str) -> Any:
    return data["sample_stats"][name].values
