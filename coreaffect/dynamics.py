"""Core-affect dynamics: an Ornstein-Uhlenbeck state-space model, its filter and smoother.

Core affect z_t in R^K drifts back to a baseline, as Oravecz, Tuerlinckx & Vandekerckhove (2009)
model it::

    dz = -Theta (z - mu) dt + L dW,

with Theta (K, K) the mean-reversion matrix (eigenvalues with positive real part), mu (K,) the
baseline and L (K, K) the diffusion. Over a step dt the process is exactly linear-Gaussian::

    z_{t+1} = F z_t + b + w_t,   w_t ~ N(0, Q),
    F = expm(-Theta dt),   b = (I - F) mu,   Q = P_inf - F P_inf F^T,

where P_inf, the stationary covariance, solves the Lyapunov equation
Theta P_inf + P_inf Theta^T = L L^T. Steps may differ (dropped frames, irregular annotation
times): dt has a leading time axis.

The pure functions live beside this module and are re-exported here, so that
``from coreaffect.dynamics import kalman_filter, ou_discretize`` works: the discretisation
(:func:`~coreaffect.ou.ou_discretize`, :func:`~coreaffect.ou.ou_stationary_cov`) in
:mod:`coreaffect.ou`; the Kalman filter, the RTS and fixed-lag smoothers and posterior draws over
any linear-Gaussian state-space model in :mod:`coreaffect.state_space`. The estimator's input,
:class:`~coreaffect.observations.AffectObservations`, and its reading as pseudo-observations with
p(z) divided out are in :mod:`coreaffect.observations` (the class is re-exported here). The NUTS
fit of the parameters runs through :mod:`coreaffect.mcmc`.

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

import copy
import logging
import math
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from coreaffect.calibration import check_level
from coreaffect.config import _is_integer, _is_real
from coreaffect.decoding import decode_draws, decode_gaussian
from coreaffect.errors import CoreAffectError, InputError, warn
from coreaffect.mcmc import (
    convergence_problems,
    diagnostics,
    inference_data,
    named_nuts,
    normal_log_prior,
    posterior_values,
    sample_stat,
)
from coreaffect.observations import (
    AffectObservations,
    ObservationBatch,
    batch_observations,
    check_observations,
    pseudo_observations,
)
from coreaffect.ou import ou_discretize, ou_matrices, ou_stationary_cov
from coreaffect.state_space import (
    LGSSM,
    Filtered,
    Smoothed,
    _generator,
    _smooth_backward,
    _sym,
    _update,
    fixed_lag_smoother,
    kalman_filter,
    rts_smoother,
    sample_posterior,
)

logger = logging.getLogger(__name__)

__all__ = [
    "LGSSM",
    "AffectObservations",
    "AffectPosterior",
    "AffectSamples",
    "CoreAffectDynamics",
    "FilterState",
    "Filtered",
    "LagState",
    "Smoothed",
    "fixed_lag_smoother",
    "kalman_filter",
    "ou_discretize",
    "ou_stationary_cov",
    "rts_smoother",
    "sample_posterior",
]


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


class LagState(NamedTuple):
    """State of the streaming fixed-lag smoother (:meth:`CoreAffectDynamics.lag_step`).

    The last ``lag + 1`` frames are buffered with their filtered moments (under the smoother's
    observation-noise scales); each new frame re-runs the RTS recursion over the buffer only.

    Attributes:
        filter: The filter after the newest frame.
        times: (n,) times of the buffered frames, oldest first, n <= lag + 1.
        filtered_means: (n, K) their filtered means.
        filtered_covs: (n, K, K) their filtered covariances.
        means: (n, K) E[z_s | frames so far] for each buffered frame s: the smoother of the
            frames so far, on the buffered ones. Once n = lag + 1, row 0 is final: the
            fixed-lag posterior of frame ``times[0]``, ``lag`` frames after it.
        covs: (n, K, K) their covariances.
        lag: The look-ahead in frames.
    """

    filter: FilterState
    times: Tensor
    filtered_means: Tensor
    filtered_covs: Tensor
    means: Tensor
    covs: Tensor
    lag: int


_DTYPE = torch.float64  # affect models are tiny; float64 keeps the likelihood surface smooth


def _noise_scale(scale: Any, k: int, name: str) -> Tensor:
    """A noise scale set by hand (``noise_scale_``, ``filter_noise_scale_``), as the model takes
    it: () or (K,) float64, finite and > 0; anything else is an error naming the attribute."""
    try:
        value = scale if isinstance(scale, Tensor) else torch.as_tensor(scale, dtype=_DTYPE)
    except (TypeError, ValueError, RuntimeError):
        value = torch.full((0,), math.nan)  # not numbers: refused below
    if value.shape not in ((), (k,)) or not bool(torch.isfinite(value).all()) or not bool(
            (value > 0).all()):
        raise InputError(f"{name} must be one scale > 0 or one per latent axis ({k}), got "
                         f"{scale!r}")
    return value


class CoreAffectDynamics:
    r"""Ornstein-Uhlenbeck core-affect dynamics over per-frame Gaussian estimates.

    Model. The latent core affect z_t in R^K follows the OU process
    dz = -Theta (z - mu) dt + L dW, started in its stationary law z_{t_0} ~ N(mu, P_inf) and
    discretised exactly between the frame times (:func:`~coreaffect.ou.ou_discretize`). Each
    frame brings a Gaussian estimate N(m_t, S_t) of z_t (an
    :class:`~coreaffect.observations.AffectObservations` row); it enters as a
    pseudo-observation y_t = z_t + v_t, v_t ~ N(0, c R_t + epsilon I)
    (:func:`~coreaffect.observations.pseudo_observations`), where

    * ``divide_prior`` False: y_t = m_t and R_t = S_t (use with raw estimates, e.g. the hidden
      route's valence-arousal means and variances with K = 2);
    * ``divide_prior`` True: N(m_t, S_t) is read as a posterior under the manifold's prior
      p(z) = N(0, I) (what the hidden-route prior is fitted as), and p(z) is divided out so that
      the OU process is the only prior: R_t^-1 = S_t^-1 - I and y_t = R_t S_t^-1 m_t, where
      S_t^-1 - I is positive definite; a direction where it is not (an eigenvalue of S_t near or
      above 1) keeps the precision ``min_precision`` and the estimate's own mean there, and
      c does not scale it (:mod:`coreaffect.observations` gives the details).

    Symbols: Theta (K, K) mean-reversion rates in 1/s, parameterised as Theta = C C^T + W with C
    lower-triangular with a positive diagonal and W skew-symmetric, so its symmetric part is
    positive definite, which makes every eigenvalue's real part positive (the process is
    mean-reverting, and without noise ``|z - mu|`` decreases monotonically; oscillating, rotational
    dynamics are allowed through W); mu (K,) the baseline; L (K, K) the diffusion, lower-triangular
    with a positive diagonal (only L L^T is identified); c > 0 a learned scale of the observation
    covariances (c < 1: the estimates are over-dispersed, c > 1: over-confident), which may also
    be set to one scale per latent axis, c (K,), entering as C^(1/2) R_t C^(1/2) with
    C = diag(c) (what :func:`coreaffect.stages.fit_core_affect` chooses on held-out videos;
    :meth:`fit` learns the single scale); epsilon a fixed ``noise_floor`` keeping R_t positive
    definite. Frames without a face are masked steps: only
    the OU prediction runs there and the credible band widens. The causal filter may be given
    scales of its own, ``filter_noise_scale_`` (used by :meth:`filter` and :meth:`filter_step`;
    ``None``: the smoother's): a filter cannot look ahead, so the weight on each new
    observation that tracks the truth best is not the smoother's.

    Learning. ``fit(method="mle")`` maximises the exact marginal log-likelihood (Kalman filter)
    summed over videos with L-BFGS (or Adam) on unconstrained parameters (logs of the positive
    diagonals); equal-length videos are batched in one filter call. ``fit(method="nuts")``
    samples the posterior with Pyro's NUTS under these priors (independent across entries)::

        diag(C) ~ LogNormal(0, 1)        (Theta's diagonal ~ rates of about 0.02 - 50 per s)
        strict lower part of C ~ Normal(0, 0.5),   W's free entries ~ Normal(0, 0.5)
        mu ~ Normal(0, 1)                (the latent and valence-arousal have unit scale)
        diag(L) ~ LogNormal(log 0.5, 1),  strict lower part of L ~ Normal(0, 0.5)
        c ~ LogNormal(0, 1)

    (each a Normal on the unconstrained parameter: on the log of a positive one). NUTS runs in
    coordinates whitened by the Laplace approximation at the maximum-likelihood estimate (fitted
    first; :func:`~coreaffect.mcmc.whitened_nuts`): x = x_hat + A w with A A^T the inverse
    Hessian of the negative log-posterior there, which makes the posterior of w near-isotropic,
    so that one step size suits every direction (the documentation's dynamics page gives what
    NUTS costs on the demo's data). Each chain starts at w drawn from N(0, 4 I), overdispersed
    against the posterior, so that r_hat can see chains that did not mix. The draws are kept in
    ``inference_data_`` (ArviZ); :meth:`nuts_diagnostics` gives their worst r_hat, bulk and
    tail ESS and divergences, and :meth:`fit` warns when these miss the usual thresholds. The
    posterior means become the point parameters (for the diffusion, the Cholesky factor of the
    mean of L L^T).

    Decoding. Latent moments are mapped to (valence, arousal) by ``decoder``:

    * ``None``: the latent is valence-arousal itself (identity emission; K = 2; for another K
      the "decoded" outputs are the latent itself); bands are exact;
    * a (2, K) tensor A: y = A z, exact Gaussian bands;
    * an object with a ``decode`` method (e.g. an ``AffectManifold``) or a callable, taking
      z (..., K) and returning either a tensor (..., 2) or a distribution whose ``mean`` and
      ``variance`` are (..., 2) (the manifold's Gaussian decoder p(y | z) = N(g(z), diag(s^2)));
      moments and bands are then Monte Carlo estimates from ``n_decode_samples`` draws of z_t
      (and of y given z_t, so that the bands are predictive of the labels).

    Device. The estimator computes on the CPU in float64 (its models are tiny): estimates
    from another device (a prior on CUDA) are copied to the CPU, and a decoder on another device
    is given CPU latents and its answers are brought back.

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
        optimizer: ``"lbfgs"`` or ``"adam"`` for the maximum-likelihood fit. On videos timed
            in seconds at video rates both reach the same optimum, and L-BFGS needs far fewer
            likelihood evaluations on these few smooth parameters (measured: 19 against 104 for
            6 videos x 400 frames). Adam keeps the most likely parameters it saw; with times on
            another scale (steps of minutes) it may stop short of the optimum, where L-BFGS,
            which searches along its steps, still reaches it.
        max_iter: Most iterations of the optimizer.
        learning_rate: Adam's step size (the parameters are O(1) on their unconstrained scale).
        tol: Convergence: Adam stops when the mean negative log-likelihood per frame fell, but
            by less than ``tol`` per iteration, over the last 20 (not when it rose); L-BFGS when
            it changes less than ``tol``.
        num_samples: NUTS draws kept per chain.
        num_warmup: NUTS adaptation steps per chain.
        num_chains: NUTS chains, run one after the other (2: enough for the split r_hat).
        n_decode_samples: Monte Carlo draws per frame for a nonlinear decoder.
        random_state: Seed of NUTS and of Monte Carlo decoding; ``None``: fresh randomness at
            every call (results then differ from call to call).

    Attributes:
        theta_: (K, K) fitted Theta.
        mu_: (K,) fitted mu.
        diffusion_: (K, K) fitted L.
        noise_scale_: () fitted c, or (K,) one scale per latent axis when set so.
        filter_noise_scale_: () or (K,) c of the causal filter alone, or ``None`` (the default
            after :meth:`fit`): the same as ``noise_scale_``.
        log_likelihood_: Log-likelihood of the training videos at the point parameters.
        n_iter_: Optimizer iterations run.
        inference_data_: ArviZ data of the NUTS draws (posterior group: theta, mu, diffusion,
            noise_scale; sample_stats: diverging), ``None`` after a maximum-likelihood fit.
            ``diffusion`` holds the K(K+1)/2 free entries of L, its lower triangle row by row
            (``numpy.tril_indices`` order): the zeros above the diagonal are constants, whose
            r_hat is undefined.

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
                 optimizer: str = "lbfgs", max_iter: int = 300, learning_rate: float = 0.05,
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

    def without_decoder(self) -> CoreAffectDynamics:
        """The same fitted model in latent space only: a shallow copy with the same parameters
        and the same treatment of p(z), whose outputs are the latent moments (no decoding)."""
        latent = copy.copy(self)
        latent.divide_prior, latent.decoder = self._divides(), None
        return latent

    def _divides(self) -> bool:
        return self.decoder is not None if self.divide_prior is None else bool(self.divide_prior)

    def _check_fitted(self) -> None:
        if not hasattr(self, "theta_"):
            raise CoreAffectError("CoreAffectDynamics is not fitted: call fit() or load() first")

    def _point(self, causal: bool = False) -> dict[str, Tensor]:
        """The point parameters; ``causal``: with the filter's own noise scale, if it has one."""
        scale, name = self.noise_scale_, "noise_scale_"
        if causal and getattr(self, "filter_noise_scale_", None) is not None:
            scale, name = self.filter_noise_scale_, "filter_noise_scale_"
        return {"theta": self.theta_, "mu": self.mu_, "diffusion": self.diffusion_,
                "noise_scale": _noise_scale(scale, self.theta_.shape[-1], name)}

    @staticmethod
    def _constrain(raw: dict[str, Tensor]) -> dict[str, Tensor]:
        """Model parameters from the unconstrained ones (log-diagonals, free entries, log c)."""
        theta, diffusion = ou_matrices(raw["theta_log_diag"].exp(), raw["theta_lower"],
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

    def _check_settings(self) -> None:
        """Every hyperparameter of the right type and range (a model loaded from a hand-edited
        JSON, or changed after construction, fails here and not deep inside a computation).
        Checked once per video, or at a stream's first frame."""
        for name, (valid, wanted) in _SETTING_RULES.items():
            value = getattr(self, name)
            if not valid(value):
                raise InputError(f"{name} must be {wanted}, not {value!r}")
        if self.optimizer not in ("adam", "lbfgs"):
            raise InputError(f"optimizer must be 'adam' or 'lbfgs', not {self.optimizer!r}")
        check_level(self.level)

    def _pseudo(self, means: Tensor, covs: Tensor, mask: Tensor
                ) -> tuple[Tensor, Tensor, Tensor]:
        """Pseudo-observations y (..., K), covariances R (..., K, K) before scaling by c, and
        R's part that is not scaled (see :func:`pseudo_observations`)."""
        return pseudo_observations(means, covs, mask, divide=self._divides(),
                                   min_precision=self.min_precision)

    def _prepare(self, sequence: AffectObservations) -> tuple[Tensor, ...]:
        """(times (T,), y (T, K), R (T, K, K), fixed (T, K, K), mask (T,)) of one video,
        validated."""
        self._check_settings()
        times, means, covs, mask = check_observations(sequence, self.n_latent)
        y, r, fixed = self._pseudo(means, covs, mask)
        return times, y, r, fixed, mask

    def _batches(self, sequences: Sequence[AffectObservations]) -> list[ObservationBatch]:
        """Videos grouped by length, each group stacked: (B, T-1), (B, T, K), ..."""
        return batch_observations([self._prepare(sequence) for sequence in sequences])

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

    def _obs_cov(self, p: dict[str, Tensor], r: Tensor, fixed: Tensor) -> Tensor:
        """c R' + R_fixed + epsilon I, or C^(1/2) R' C^(1/2) + R_fixed + epsilon I for one scale
        per axis, c (K,), where R' = R - R_fixed is R's informative part."""
        eye = torch.eye(r.shape[-1], dtype=_DTYPE)
        scale, informative = p["noise_scale"], r - fixed
        if scale.ndim:
            root = scale.sqrt()
            informative = root[:, None] * informative * root[None, :]
        else:
            informative = scale * informative
        return informative + fixed + self.noise_floor * eye

    def _log_likelihood(self, p: dict[str, Tensor], batches: list[ObservationBatch]) -> Tensor:
        total = torch.zeros((), dtype=_DTYPE)
        for batch in batches:
            params = self._lgssm(p, batch.dt)
            parallel = self._use_parallel(batch.y.shape[-2])
            filtered = kalman_filter(params, batch.y, self._obs_cov(p, batch.r, batch.fixed),
                                     batch.mask, parallel=parallel)
            total = total + filtered.log_likelihood.sum()
        return total

    @staticmethod
    def _as_list(sequences: AffectObservations | Sequence[AffectObservations]
                 ) -> list[AffectObservations]:
        if isinstance(sequences, AffectObservations):
            return [sequences]
        return list(sequences)

    # -- fitting --------------------------------------------------------------------------------

    def _initial_guess(self, batches: list[ObservationBatch]) -> dict[str, Tensor]:
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

        Raises:
            InputError: An unknown method or optimizer, invalid observations, no video, no
                observed frame, or no video with two or more observed frames (one frame per
                video tells nothing of how affect moves).

        Warns:
            CoreAffectWarning: Fewer steps between observed frames within a video than the
                model has parameters (K^2 + K + K(K+1)/2 + 1, 10 for K = 2): the fit runs, but
                theta and the diffusion are barely identified.
        """
        if method not in ("mle", "nuts"):
            raise InputError(f"method must be 'mle' or 'nuts', not {method!r}")
        batches = self._batches(self._as_list(sequences))
        if not batches:
            raise InputError("no video to fit to")
        n_frames = sum(int(b.mask.sum()) for b in batches)
        if n_frames == 0:
            raise InputError("no observed frame to fit to: every frame of every video is masked")
        if not any(bool((b.mask.sum(-1) >= 2).any()) for b in batches):
            raise InputError("no video with two or more observed frames to fit to: from one "
                             "frame per video, the rate of reversion (theta) and the diffusion "
                             "are not told apart")
        steps = sum(int((b.mask.sum(-1) - 1).clamp(min=0).sum()) for b in batches)
        k = self.n_latent
        n_params = k * k + k + k * (k + 1) // 2 + 1  # Theta, mu, L and c
        if steps < n_params:
            message = (f"the dynamics are fitted to {steps} step(s) between observed frames "
                       f"within a video, fewer than their {n_params} parameters: the rate of "
                       "reversion (theta) and the diffusion are barely identified; fit them to "
                       "more frames")
            warn(logger, message)
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
            raise InputError(f"optimizer must be 'adam' or 'lbfgs', not {self.optimizer!r}")
        with torch.no_grad():
            point = self._constrain(raw)
        if not all(bool(torch.isfinite(v).all()) for v in point.values()):
            advice = ("lower learning_rate" if self.optimizer == "adam"
                      else "try optimizer='adam' with a small learning_rate")
            raise FloatingPointError(f"the maximum-likelihood fit diverged; {advice}")
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
        self.filter_noise_scale_ = None

    # NUTS priors, each a Normal on an unconstrained parameter (location, scale): a Normal on a
    # log is the LogNormal on the positive value, so no Jacobian enters the potential
    _PRIORS = {"theta_log_diag": (0.0, 1.0), "theta_lower": (0.0, 0.5),
               "theta_skew": (0.0, 0.5), "mu": (0.0, 1.0),
               "diffusion_log_diag": (math.log(0.5), 1.0), "diffusion_lower": (0.0, 0.5),
               "log_noise_scale": (0.0, 1.0)}

    def _fit_nuts(self, batches: list[ObservationBatch], raw: dict[str, Tensor]) -> None:
        """NUTS around the maximum-likelihood point ``raw`` (see :mod:`coreaffect.mcmc`)."""
        def energy(params: dict[str, Tensor]) -> Tensor:  # the negative log-posterior
            return -(normal_log_prior(params, self._PRIORS)
                     + self._log_likelihood(self._constrain(params), batches))

        draws, diverging = named_nuts(
            energy, raw, num_samples=self.num_samples, num_warmup=self.num_warmup,
            num_chains=self.num_chains,
            seed=(secrets.randbelow(2 ** 31) if self.random_state is None
                  else int(self.random_state)))
        chains = [self._constrain(chain) for chain in draws]
        arrays = {name: torch.stack([c[name] for c in chains]).numpy()
                  for name in ("theta", "mu", "diffusion", "noise_scale")}  # (chain, draw, ...)
        self.inference_data_ = inference_data(
            {**arrays, "diffusion": _lower_entries(arrays["diffusion"])}, diverging.numpy())
        point = {name: torch.as_tensor(value.mean(axis=(0, 1)), dtype=_DTYPE)
                 for name, value in arrays.items()}
        # only L L^T enters the model: the point L is the factor of its posterior mean (the mean
        # of L would give mean(L) mean(L)^T, smaller than mean(L L^T))
        factors = torch.as_tensor(arrays["diffusion"], dtype=_DTYPE)  # (C, S, K, K)
        point["diffusion"] = torch.linalg.cholesky(
            (factors @ factors.transpose(-1, -2)).mean(dim=(0, 1)))
        self._set_point(point)
        found = self.nuts_diagnostics()
        logger.info("NUTS: %d chains x %d draws, split r_hat up to %.3f, bulk and tail ESS down "
                    "to %.0f and %.0f, %d divergent transitions", found["chains"],
                    found["draws"], found["r_hat"], found["ess_bulk"], found["ess_tail"],
                    found["divergences"])
        problems = convergence_problems(found)
        if problems:
            warn(logger, f"NUTS may not have converged: {'; '.join(problems)}. The point "
                 "parameters are means of these draws; run more (num_warmup, num_samples, "
                 "num_chains) before trusting them")

    def nuts_diagnostics(self) -> dict[str, float]:
        """The worst convergence diagnostics of the NUTS draws
        (:func:`coreaffect.mcmc.diagnostics`): ``{"r_hat", "ess_bulk", "ess_tail",
        "divergences", "chains", "draws"}``. :meth:`fit` warns when r_hat is not below 1.01,
        the bulk or tail ESS not above 100 per chain, or a transition diverged.

        Raises:
            CoreAffectError: The model was not fitted with ``method="nuts"``.
        """
        draws = getattr(self, "inference_data_", None)
        if draws is None:
            raise CoreAffectError("no NUTS draws: fit with method='nuts' first")
        return diagnostics(draws)

    def score(self, sequences: AffectObservations | Sequence[AffectObservations]) -> float:
        """Log-likelihood of videos under the fitted point parameters."""
        self._check_fitted()
        with torch.no_grad():
            return float(self._log_likelihood(self._point(),
                                              self._batches(self._as_list(sequences))))

    # -- inference ------------------------------------------------------------------------------

    def _single(self, sequence: AffectObservations, causal: bool = False
                ) -> tuple[Tensor, LGSSM, Tensor, Tensor, Tensor, bool]:
        self._check_fitted()
        times, y, r, fixed, mask = self._prepare(sequence)
        p = self._point(causal)
        return (times, self._lgssm(p, times.diff()), y, self._obs_cov(p, r, fixed), mask,
                self._use_parallel(times.shape[0]))

    def filter(self, sequence: AffectObservations) -> AffectPosterior:
        """Causal posterior p(z_t | frames up to t) of one video, and its decoding (with the
        filter's own noise scale if it has one)."""
        times, params, y, r, mask, parallel = self._single(sequence, causal=True)
        with torch.no_grad():
            out = kalman_filter(params, y, r, mask, parallel=parallel)
        return self._posterior(times, out.means, out.covs, out.log_likelihood)

    def smooth(self, sequence: AffectObservations, lag: int | None = None) -> AffectPosterior:
        """Posterior p(z_t | all frames) of one video (or up to t + ``lag``), and its decoding.

        Args:
            sequence: The video.
            lag: ``None``: every frame of the video. An integer L >= 0: the fixed-lag posterior
                p(z_t | frames up to t + L) (:func:`~coreaffect.state_space.fixed_lag_smoother`),
                what an online system knows L frames after frame t; it takes the smoother's
                observation-noise scales, and tends to the offline result as L grows. A negative
                or non-integer lag raises ValueError.
        """
        times, params, y, r, mask, parallel = self._single(sequence)
        with torch.no_grad():
            if lag is None:
                out = rts_smoother(params, y, r, mask, parallel=parallel)
            else:
                out = fixed_lag_smoother(params, y, r, mask, lag=lag, parallel=parallel)
        return self._posterior(times, out.means, out.covs, out.log_likelihood)

    def sample(self, sequence: AffectObservations, n: int = 100,
               random_state: int | torch.Generator | None = None) -> AffectSamples:
        """Joint posterior draws of one video's trajectory, latent and decoded.

        Args:
            sequence: The video.
            n: Number of draws S.
            random_state: Seed or generator (``None``: the estimator's ``random_state``).
        """
        if not _is_integer(n) or n < 1:
            raise InputError(f"n, the number of draws, must be an integer >= 1, got {n!r}")
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
        return self._step(state, time, mean, cov, causal=True)

    def _step(self, state: FilterState | None, time: float, mean: Tensor | None,
              cov: Tensor | None, causal: bool) -> FilterState:
        self._check_fitted()
        p = self._point(causal=causal)
        k = self.n_latent
        observed = mean is not None
        m, s = _one_frame(time, mean, cov, k)
        if state is None:
            self._check_settings()
            pred_mean, pred_cov = p["mu"], ou_stationary_cov(p["theta"], p["diffusion"])
            log_likelihood = torch.zeros((), dtype=_DTYPE)
        else:
            dt = float(time) - float(state.time)
            if not dt > 0:
                raise InputError(f"time {time} does not follow the last frame's {state.time}")
            if (not isinstance(state.mean, Tensor) or not isinstance(state.cov, Tensor)
                    or state.mean.shape != (k,) or state.cov.shape != (k, k)):
                raise InputError(f"state must be the FilterState of this model's last step, a "
                                 f"mean ({k},) and a covariance ({k}, {k}); got "
                                 f"{getattr(state.mean, 'shape', state.mean)} and "
                                 f"{getattr(state.cov, 'shape', state.cov)}")
            f, b, q = ou_discretize(p["theta"], p["mu"], p["diffusion"], dt)
            pred_mean = f @ state.mean.to(_DTYPE) + b
            pred_cov = _sym(f @ state.cov.to(_DTYPE) @ f.T + q)
            log_likelihood = state.log_likelihood
        flag = torch.tensor([observed])
        y, r, fixed = self._pseudo(m, s, flag)
        new_mean, new_cov, log_prob = _update(pred_mean, pred_cov, y[0],
                                              self._obs_cov(p, r[0], fixed[0]),
                                              torch.eye(k, dtype=_DTYPE), flag[0])
        return FilterState(float(time), new_mean, new_cov, log_likelihood + log_prob)

    def lag_step(self, state: LagState | None, time: float, mean: Tensor | None = None,
                 cov: Tensor | None = None, *, lag: int) -> LagState:
        """One frame of the fixed-lag smoother, at a cost per frame that grows with ``lag`` only.

        From frame t = lag on, row 0 of the returned state is p(z_{t-lag} | frames up to t),
        equal to ``smooth(video, lag=lag)`` at frame t - lag (before, the buffer holds every
        frame so far, and no row is final yet); when the stream ends, the buffered rows are the
        final posteriors of its last frames.

        Args:
            state: The state after the previous frame; ``None`` before the first frame.
            time: This frame's time in seconds, later than the previous frame's.
            mean: (K,) m_t, or ``None`` when the frame has no face.
            cov: (K, K) S_t (ignored when ``mean`` is ``None``).
            lag: Frames of look-ahead, >= 0, the same at every call.

        Returns:
            The :class:`LagState` after this frame.
        """
        if not _is_integer(lag) or lag < 0:
            raise InputError(f"lag must be an integer >= 0 (frames), got {lag!r}")
        if state is not None and state.lag != lag:
            raise InputError(f"lag {lag} differs from the stream's lag {state.lag}")
        filtered = self._step(None if state is None else state.filter, time, mean, cov,
                              causal=False)
        times = torch.tensor([float(time)], dtype=_DTYPE)
        means, covs = filtered.mean[None], filtered.cov[None]
        if state is not None:
            times = torch.cat([state.times, times])[-(lag + 1):]
            means = torch.cat([state.filtered_means, means])[-(lag + 1):]
            covs = torch.cat([state.filtered_covs, covs])[-(lag + 1):]
        # the RTS backward pass over the buffer, from its newest filtered frame
        buffer = Filtered(means, covs, filtered.log_likelihood)
        smoothed = _smooth_backward(self._lgssm(self._point(), times.diff()), buffer)
        return LagState(filtered, times, means, covs, smoothed.means, smoothed.covs, lag)

    # -- decoding -------------------------------------------------------------------------------

    def _decode_draws(self, latent: Tensor, generator: torch.Generator) -> Tensor:
        """Latent draws (..., K) to valence-arousal draws (..., 2)."""
        return decode_draws(self.decoder, latent, generator)

    def decode(self, latent_mean: Tensor, latent_cov: Tensor, level: float | None = None
               ) -> tuple[Tensor, Tensor, Tensor]:
        """Valence-arousal mean and central credible bands from latent Gaussian moments.

        Args:
            latent_mean: (..., K).
            latent_cov: (..., K, K).
            level: Band probability (default ``self.level``).

        Returns:
            ``(mean, lower, upper)``, each (..., 2), in float64 on the CPU: exact for no or a
            linear decoder, else Monte Carlo (:func:`~coreaffect.decoding.decode_gaussian`,
            ``n_decode_samples`` draws, seeded by ``random_state``).
        """
        level = check_level(self.level if level is None else level)
        latent_mean = torch.as_tensor(latent_mean, dtype=_DTYPE, device="cpu")
        latent_cov = torch.as_tensor(latent_cov, dtype=_DTYPE, device="cpu")
        return decode_gaussian(self.decoder, latent_mean, latent_cov, level,
                               self.n_decode_samples,
                               _generator(self.random_state, latent_mean.device))

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
        if getattr(self, "filter_noise_scale_", None) is not None:
            tensors["filter_noise_scale"] = torch.as_tensor(self.filter_noise_scale_,
                                                            dtype=_DTYPE)
        draws = getattr(self, "inference_data_", None)
        if draws is not None:
            for key in ("theta", "mu", "diffusion", "noise_scale"):
                tensors[f"posterior.{key}"] = torch.as_tensor(
                    posterior_values(draws, key))
            tensors["sample_stats.diverging"] = torch.as_tensor(
                sample_stat(draws, "diverging"))
        config = {key: getattr(self, key) for key in self._CONFIG}
        config["divide_prior"] = self._divides()  # what was fitted, with or without a decoder
        config["decoder"] = None if self.decoder is None else type(self.decoder).__name__
        config["log_likelihood"] = getattr(self, "log_likelihood_", None)
        config["n_iter"] = getattr(self, "n_iter_", None)
        config["uninformative_unscaled"] = True  # see load: earlier fits scaled those directions
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
        n_iter = settings.pop("n_iter", None)
        where = f"{Path(directory) / name}.json"
        if not settings.pop("uninformative_unscaled", False) and settings.get("divide_prior"):
            logger.warning("%s: fitted when the noise scale also scaled the directions no surer "
                           "than p(z), which could drive it towards 0; refit the later stages "
                           "(coreaffect refit)", where)
        try:
            model = cls(**settings, decoder=decoder)
            model._check_settings()
            k = model.n_latent
            shapes = {"theta": (k, k), "mu": (k,), "diffusion": (k, k)}
            for key, shape in shapes.items():
                if tuple(tensors[key].shape) != shape:
                    raise InputError(f"{key} has shape {tuple(tensors[key].shape)}, not {shape}"
                                     f" for n_latent {k}")
        except (TypeError, ValueError, KeyError) as err:
            raise CoreAffectError(f"{where}: does not describe a usable model ({err})"
                                  ) from None
        model._set_point({key: tensors[key].to(_DTYPE)
                          for key in ("theta", "mu", "diffusion", "noise_scale")})
        if "filter_noise_scale" in tensors:
            model.filter_noise_scale_ = tensors["filter_noise_scale"].to(_DTYPE)
        model.log_likelihood_ = log_likelihood
        model.n_iter_ = n_iter
        model.inference_data_ = None
        if "posterior.theta" in tensors:
            arrays = {key: tensors[f"posterior.{key}"].numpy()
                      for key in ("theta", "mu", "diffusion", "noise_scale")}
            if arrays["diffusion"].ndim == 4:  # the whole matrix, zeros included: an older file
                arrays["diffusion"] = _lower_entries(arrays["diffusion"])
            model.inference_data_ = inference_data(
                arrays, tensors["sample_stats.diverging"].numpy())
        return model


# CoreAffectDynamics' settings: {name: (test, what it must be)}
_SETTING_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "n_latent": (lambda v: _is_integer(v) and v >= 1, "an integer >= 1"),
    "max_iter": (lambda v: _is_integer(v) and v >= 1, "an integer >= 1"),
    "num_samples": (lambda v: _is_integer(v) and v >= 1, "an integer >= 1"),
    "num_warmup": (lambda v: _is_integer(v) and v >= 0, "an integer >= 0"),
    "num_chains": (lambda v: _is_integer(v) and v >= 1, "an integer >= 1"),
    "n_decode_samples": (lambda v: _is_integer(v) and v >= 2, "an integer >= 2"),
    "min_precision": (lambda v: _is_real(v) and v > 0, "a finite positive number"),
    "noise_floor": (lambda v: _is_real(v) and v >= 0, "a finite non-negative number"),
    "learning_rate": (lambda v: _is_real(v) and v > 0, "a finite positive number"),
    "tol": (lambda v: _is_real(v) and v >= 0, "a finite non-negative number"),
    "divide_prior": (lambda v: v is None or isinstance(v, bool), "True, False or None"),
    "parallel": (lambda v: v is None or isinstance(v, bool), "True, False or None"),
    "random_state": (lambda v: v is None or _is_integer(v), "an integer seed or None"),
}


def _lower_entries(matrices: Any) -> Any:
    """(..., K, K) lower-triangular arrays to their (..., K(K+1)/2) free entries, row by row
    (the order of ``numpy.tril_indices``)."""
    rows, cols = np.tril_indices(matrices.shape[-1])
    return matrices[..., rows, cols]


def _one_frame(time: float, mean: Any, cov: Any, k: int) -> tuple[Tensor, Tensor]:
    """A streamed frame's (1, K) mean and (1, K, K) covariance in float64 on the CPU, checked as
    a video's frames are (:func:`~coreaffect.observations.check_observations`), at a few
    microseconds' cost; for a frame without a face (``mean`` None), zeros and the identity."""
    try:
        finite = math.isfinite(float(time))
    except (TypeError, ValueError):
        finite = False
    if not finite:
        raise InputError(f"frame at time {time!r}: times must be finite numbers (seconds)")
    if mean is None:
        return torch.zeros(1, k, dtype=_DTYPE), torch.eye(k, dtype=_DTYPE)[None]
    if cov is None:
        raise InputError(f"frame at time {time}: a mean needs its covariance (cov); give mean "
                         "None for a frame without a face")
    m = torch.as_tensor(mean, dtype=_DTYPE, device="cpu")
    s = torch.as_tensor(cov, dtype=_DTYPE, device="cpu")
    if m.shape not in ((k,), (1, k)) or s.shape not in ((k, k), (1, k, k)):
        raise InputError(f"frame at time {time}: expected mean ({k},) and cov ({k}, {k}); got "
                         f"{tuple(m.shape)} and {tuple(s.shape)}")
    m, s = m.reshape(1, k), s.reshape(1, k, k)
    if not bool(torch.isfinite(m).all() & torch.isfinite(s).all()):
        raise InputError(f"frame at time {time}: non-finite means or covs at an unmasked frame")
    if int(torch.linalg.cholesky_ex(_sym(s)).info) != 0:
        raise InputError(f"frame at time {time}: covs must be positive definite at unmasked "
                         "frames")
    return m, s


def _adam(loss_fn: Callable[[], Tensor], params: list[Tensor], lr: float, max_iter: int,
          tol: float, window: int = 20) -> int:
    """Adam until ``max_iter`` or until the loss fell by less than ``tol`` per iteration, but
    did not rise, over the last ``window`` iterations; the parameters are left at the lowest
    loss seen (Adam's steps may overshoot it). Returns the iterations run."""
    optimiser = torch.optim.Adam(params, lr=lr)
    history: list[float] = []
    best, best_values = math.inf, [p.detach().clone() for p in params]
    iterations = 0
    while iterations < max_iter:
        iterations += 1
        optimiser.zero_grad()
        loss = loss_fn()
        value = float(loss.detach())
        if value < best:  # the loss of the parameters before this step
            best, best_values = value, [p.detach().clone() for p in params]
        loss.backward()
        optimiser.step()
        history.append(value)
        if len(history) > window and 0 <= history[-window - 1] - history[-1] < tol * window:
            break
    with torch.no_grad():
        if not float(loss_fn()) < best:  # the last step did not improve on the best seen
            for param, kept in zip(params, best_values, strict=True):
                param.copy_(kept)
    return iterations


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
