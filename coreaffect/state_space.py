"""Linear-Gaussian state-space models: the Kalman filter, the RTS smoother and posterior draws.

The model, with parameters an :class:`LGSSM` tuple (dynamax's conventions)::

    z_0 ~ N(m_0, P_0),    z_{t+1} = F_t z_t + b_t + w_t,  w_t ~ N(0, Q_t),
    y_t = H z_t + v_t,    v_t ~ N(0, R_t),

the first observation being of the initial state z_0 (also pykalman's convention), with a
time-varying observation covariance R_t (each hidden-route prior brings its own) and F_t, b_t,
Q_t shared or per step (:func:`coreaffect.ou.ou_discretize` gives them for an
Ornstein-Uhlenbeck process at irregular steps). A masked step has no observation: the filter only
predicts there, and the credible band widens. Everything is batched over leading axes and
differentiable (torch), in float32 or float64.

* :func:`kalman_filter`: causal, for streaming; returns the filtered moments and the exact
  marginal log-likelihood log p(y_{0:T-1}).
* :func:`rts_smoother`: the Rauch-Tung-Striebel smoother, offline, with the lag-one cross
  covariances Cov(z_t, z_{t+1} | y).
* :func:`fixed_lag_smoother`: p(z_t | y_{0:t+L}), what an online system knows L steps after
  step t: between the filter (L = 0) and the smoother (L >= T - 1).
* :func:`sample_posterior`: forward-filter backward-sample draws of whole trajectories.

Covariances are symmetrised after every update and updated in Joseph form, which keeps them
positive semi-definite in float32 for ill-conditioned but valid inputs.

The filter, the smoother and the sampler take ``parallel=True`` for the temporal parallelisation of
Sarkka & Garcia-Fernandez (2021): the filter and the smoother are prefix "sums" under associative
operators, so an associative scan computes all T of them in O(log T) sequential depth, each level a
handful of batched (T/2^l, K, K) tensor operations, instead of a Python loop of T steps. Same
results up to rounding (float64: about 1e-14), differentiable, batched as above. A masked step is
an observation with zero information (zero gain, zero likelihood terms), so the scan elements need
no special case. The loop costs tens of microseconds a step whatever the batch; the scan's cost
grows with T x batch. Measured on a CPU, one thread, float64, K = 2, filter and smoother:
T = 20,000: 4.3 s sequential, 0.06 s parallel; the log-likelihood and its gradient over 16 videos
x 16 steps: 12 ms parallel, 14 ms sequential (``benchmarks/bench_dynamics.py`` compares both with
pykalman). :func:`fixed_lag_smoother` passes it on to its filter.

References:
    Rauch, H. E., Tung, F., & Striebel, C. T. (1965). Maximum likelihood estimates of linear
    dynamic systems. AIAA Journal 3(8), 1445-1450.

    Sarkka, S. (2013). Bayesian Filtering and Smoothing. Cambridge University Press.

    Sarkka, S., & Garcia-Fernandez, A. F. (2021). Temporal parallelization of Bayesian
    smoothers. IEEE Transactions on Automatic Control 66(1), 299-306.
"""

from __future__ import annotations

import numbers
import operator
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from coreaffect.devices import torch_seed
from coreaffect.errors import InputError

__all__ = [
    "LGSSM",
    "Filtered",
    "Smoothed",
    "kalman_filter",
    "rts_smoother",
    "fixed_lag_smoother",
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
    chol = _innovation_cholesky(s)
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


def _smoother_gain(pred_cov: Tensor, cross: Tensor) -> Tensor:
    """The backward gain (P_{t+1|t}^-1 F_t P_t)^T = P_t F_t^T P_{t+1|t}^-1, (..., K, K).

    A model whose process noise leaves a direction without noise (a zero diffusion entry, a
    known initial state followed by a zero step) has a singular P_{t+1|t}; F_t P_t, the
    covariance of z_{t+1} with z_t, has no component in its null space, so the pseudo-inverse
    gives the same conditional law there. It is used only for the matrices a solve rejects.
    """
    gain, info = torch.linalg.solve_ex(pred_cov, cross)
    singular = (info != 0)[..., None, None]
    if not bool(singular.any()):
        return gain.transpose(-1, -2)
    # the solve runs on I where the matrix is singular, so that its gradient stays finite there
    eye = torch.eye(pred_cov.shape[-1], dtype=pred_cov.dtype, device=pred_cov.device)
    gain = torch.linalg.solve(torch.where(singular, eye, pred_cov), cross)
    fallback = torch.linalg.pinv(pred_cov, hermitian=True) @ cross
    return torch.where(singular, fallback, gain).transpose(-1, -2)


def _innovation_cholesky(s: Tensor) -> Tensor:
    """The Cholesky factor of innovation covariances S = H P H^T + R; an :class:`InputError`
    where one is not positive definite (the inputs were checked to be finite, and ``init_cov``
    and ``process_cov`` to be positive semi-definite, so ``obs_cov`` is at fault)."""
    chol, info = torch.linalg.cholesky_ex(s)
    if bool((info != 0).any()):
        raise InputError("the innovation covariance H P H^T + R is not positive definite at "
                         "an observed step: obs_cov is not a covariance there (symmetric "
                         "positive definite)")
    return chol


def _check_covariance(name: str, cov: Tensor) -> None:
    """Refuse a (..., K, K) ``cov`` with an eigenvalue below 0 beyond rounding."""
    with torch.no_grad():
        values = torch.linalg.eigvalsh(_sym(cov.detach()))
        scale = values.abs().amax(-1).clamp(min=1.0)
        slack = 100 * torch.finfo(cov.dtype).eps * scale
        low = values[..., 0] < -slack
        if bool(low.any()):
            worst = float(values[..., 0].min())
            raise InputError(f"LGSSM.{name} is not positive semi-definite: an eigenvalue of "
                             f"{worst:.3g}")


def _check_inputs(params: LGSSM, observations: Tensor, obs_cov: Tensor,
                  mask: Tensor | None) -> None:
    """Shapes, dtypes and values the filter needs, each refused with an :class:`InputError`
    naming the argument, instead of a failure deep in torch or a silent NaN."""
    if observations.ndim < 2 or observations.shape[-2] < 1:
        raise InputError(f"observations must be (..., T, D) with T >= 1 steps; got shape "
                         f"{tuple(observations.shape)}")
    steps, d = observations.shape[-2:]
    k = params.init_mean.shape[-1]
    if params.emission.shape[-2:] != (d, k):
        raise InputError(f"LGSSM.emission is {tuple(params.emission.shape)}; observations of "
                         f"D = {d} and a state of K = {k} (init_mean) need ({d}, {k})")
    if obs_cov.ndim < 3 or obs_cov.shape[-3:] != (steps, d, d):
        raise InputError(f"obs_cov has shape {tuple(obs_cov.shape)}; observations "
                         f"{tuple(observations.shape)} need (..., {steps}, {d}, {d})")
    if mask is not None:
        try:
            torch.broadcast_to(torch.empty(mask.shape, device="meta"), observations.shape[:-1])
        except RuntimeError:
            raise InputError(f"mask has shape {tuple(mask.shape)}; observations "
                             f"{tuple(observations.shape)} need (..., {steps})") from None
    try:
        _batch_shape(params, observations, obs_cov)
    except RuntimeError:
        shapes = ", ".join(f"{name} {tuple(x.shape)}" for name, x in
                           {**params._asdict(), "observations": observations,
                            "obs_cov": obs_cov}.items())
        raise InputError(f"the batch axes (those before each argument's own) do not broadcast "
                         f"together: {shapes}") from None
    named = {**params._asdict(), "observations": observations, "obs_cov": obs_cov}
    dtypes = {name: x.dtype for name, x in named.items()}
    if len(set(dtypes.values())) > 1:
        listed = ", ".join(f"{name} {str(dtype).removeprefix('torch.')}"
                           for name, dtype in dtypes.items())
        raise InputError(f"the model and the observations mix dtypes ({listed}); give them "
                         "one")
    _check_steps(params, steps)
    with torch.no_grad():
        observed = _mask(observations, mask)
        finite = (torch.isfinite(observations).all(-1)
                  & torch.isfinite(obs_cov).flatten(-2).all(-1))
        bad = observed & ~finite
        if bool(bad.any()):
            step = int(torch.nonzero(bad)[0][-1])
            raise InputError(f"observations or obs_cov are not finite at observed step {step}; "
                             "mask the steps without an observation (their values may be NaN)")
        for name in ("init_mean", "init_cov", "transition", "offset", "process_cov",
                     "emission"):
            if not bool(torch.isfinite(named[name]).all()):
                raise InputError(f"LGSSM.{name} is not finite")
    _check_covariance("init_cov", params.init_cov)
    _check_covariance("process_cov", params.process_cov)


def _check_steps(params: LGSSM, steps: int) -> None:
    """Per-step parameters must have a time axis of T-1 steps (or 1, shared)."""
    for name, event in (("transition", 2), ("offset", 1), ("process_cov", 2)):
        x = getattr(params, name)
        if x.ndim > event and x.shape[-event - 1] not in (1, steps - 1):
            raise InputError(f"LGSSM.{name} has {x.shape[-event - 1]} steps on its time axis "
                             f"(shape {tuple(x.shape)}); {steps} observations need "
                             f"{steps - 1} (or 1, shared by all steps)")


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

    Raises:
        InputError: Shapes that do not fit together (the mask's too), mixed dtypes, a value
            that is not finite at an observed step or in the model, an ``init_cov`` or
            ``process_cov`` that is not positive semi-definite, or an ``obs_cov`` that leaves
            an innovation covariance that is not positive definite. The smoothers and the
            sampler, which run this filter first, raise the same.
    """
    _check_inputs(params, observations, obs_cov, mask)
    observations, obs_cov, mask = _clean(observations, obs_cov, mask)
    if parallel:
        return _filter_parallel(params, observations, obs_cov, mask)
    h = params.emission
    steps, k = observations.shape[-2], params.init_mean.shape[-1]
    batch = _batch_shape(params, observations, obs_cov)  # every step's moments have this batch
    mean = torch.broadcast_to(params.init_mean, (*batch, k))
    cov = torch.broadcast_to(params.init_cov, (*batch, k, k))
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
        return _smooth_backward(params, filtered)
    steps = observations.shape[-2]
    mean, cov = filtered.means[..., -1, :], filtered.covs[..., -1, :, :]
    means, covs, crosses = [mean], [cov], []
    for t in range(steps - 2, -1, -1):
        f, pred_mean, pred_cov = _predicted(params, filtered, t)
        filt_cov = filtered.covs[..., t, :, :]
        # G = P_t F^T P_{t+1|t}^-1
        gain = _smoother_gain(pred_cov, f @ filt_cov)
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


def fixed_lag_smoother(params: LGSSM, observations: Tensor, obs_cov: Tensor,
                       mask: Tensor | None = None, *, lag: int, parallel: bool = False
                       ) -> Filtered:
    """Fixed-lag smoothed moments p(z_t | y_{0:min(t+lag, T-1)}) for every step t.

    What an online system can report about step t once ``lag`` more observations have arrived:
    the filter for ``lag=0``, the RTS smoother for ``lag >= T - 1``. Every step's own backward
    pass starts from the filtered moments at its horizon h = min(t + lag, T - 1) and applies the
    RTS recursion z_j | z_{j+1}, y_{0:j} ~ N(E_j z_{j+1} + g_j, L_j) down to j = t; the T passes
    run side by side, so the cost is one filter and ``lag`` batched (..., T, K, K) steps.

    Args:
        params: The model.
        observations: (..., T, D).
        obs_cov: (..., T, D, D).
        mask: (..., T) bool, True where observed.
        lag: Steps of look-ahead, >= 0.
        parallel: Run the filter as an associative scan (see the module docstring).

    Returns:
        A :class:`Filtered` tuple whose means (..., T, K) and covs (..., T, K, K) are the
        fixed-lag moments, with the filter's log-likelihood.
    """
    if isinstance(lag, bool) or not isinstance(lag, numbers.Integral) or lag < 0:
        raise InputError(f"lag must be an integer >= 0, got {lag!r}")
    filtered = kalman_filter(params, observations, obs_cov, mask, parallel=parallel)
    steps = filtered.means.shape[-2]
    if lag == 0 or steps < 2:
        return filtered
    gain, g, cond = _backward_elements(params, filtered)
    t = torch.arange(steps, device=gain.device)
    horizon = torch.clamp(t + lag, max=steps - 1)  # (T,)
    mean = filtered.means[..., horizon, :]  # (..., T, K): each step's pass starts at its horizon
    cov = filtered.covs[..., horizon, :, :]
    for k in range(min(lag, steps - 1) - 1, -1, -1):
        j = torch.clamp(t + k, max=steps - 1)  # the step each pass is at
        active = (t + k) < horizon  # (T,): passes that have not reached step t yet stay put
        e = gain[..., j, :, :]
        step_mean = (e @ mean[..., None])[..., 0] + g[..., j, :]
        step_cov = _sym(e @ cov @ e.transpose(-1, -2) + cond[..., j, :, :])
        mean = torch.where(active[:, None], step_mean, mean)
        cov = torch.where(active[:, None, None], step_cov, cov)
    return Filtered(mean, cov, filtered.log_likelihood)


def _generator(random_state: int | torch.Generator | None, device: torch.device
               ) -> torch.Generator:
    if isinstance(random_state, torch.Generator):
        return random_state
    generator = torch.Generator(device=device)
    if random_state is None:
        generator.seed()  # fresh randomness: an unseeded generator starts from a fixed seed
        return generator
    try:
        seed = operator.index(random_state)  # an integer, numpy's too; 1.5 or "1" not
    except TypeError:
        raise InputError(f"random_state must be an integer seed, a torch.Generator or None, "
                         f"got {random_state!r}") from None
    return generator.manual_seed(torch_seed(seed))


def _draw(mean: Tensor, cov: Tensor, generator: torch.Generator) -> Tensor:
    """One draw of N(mean, cov) per leading index; a jitter keeps singular covariances valid,
    and a covariance that rounding left indefinite beyond it (float32 conditionals, small
    differences of large matrices) is drawn from with its negative eigenvalues set to 0."""
    jitter = 1e-9 if cov.dtype == torch.float64 else 1e-6
    eye = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
    chol, info = torch.linalg.cholesky_ex(_sym(cov) + jitter * eye)
    failed = info > 0
    if bool(failed.any()):
        values, vectors = torch.linalg.eigh(_sym(cov) + jitter * eye)
        root = vectors * values.clamp_min(0).sqrt()[..., None, :]  # root root^T = PSD part
        chol = torch.where(failed[..., None, None], root, chol)
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
        random_state: Seed or generator; ``None``: other draws at every call.
        parallel: Filter and sample backwards by associative scans (O(log T) depth). Draws for
            a given seed differ from the sequential ones (the noise is used in another order)
            but have the same distribution.

    Returns:
        (S, ..., T, K) samples.
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise InputError(f"n, the number of draws, must be an integer >= 1, got {n!r}")
    n = int(n)
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
        gain = _smoother_gain(pred_cov, f @ filt_cov)  # (..., K, K)
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
    chol = _innovation_cholesky(_sym(h @ q @ ht + r))  # S_t = H Q H^T + R, (..., T, D, D)
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
    chol = _innovation_cholesky(_sym(h @ pred_cov @ ht + r))
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
    gain = _smoother_gain(pred_cov, fp)  # E_t
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


def _smooth_backward(params: LGSSM, filtered: Filtered) -> Smoothed:
    """The RTS smoother's backward pass as a reverse associative scan over filtered moments."""
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
