"""The dynamics' observations: per-frame Gaussian estimates of the latent z, as pseudo-observations.

Each frame t of a video brings a Gaussian estimate N(m_t, S_t) of the latent core affect z_t
(an :class:`AffectObservations` row: the hidden-route prior's moments, or the hidden route's own
valence-arousal mean and variance). :class:`~coreaffect.dynamics.CoreAffectDynamics` reads it as
a pseudo-observation y_t = z_t + v_t, v_t ~ N(0, R_t), with (:func:`pseudo_observations`):

* without division: y_t = m_t and R_t = S_t (raw estimates, which carry no prior of their own);
* with division: N(m_t, S_t) is read as a posterior under the manifold's prior p(z) = N(0, I)
  (what the hidden-route prior is fitted as), and p(z) is divided out, so that the dynamics'
  Ornstein-Uhlenbeck process is the only prior over z_t::

      N(z; m_t, S_t) / N(z; 0, I)  is proportional to  N(z; y_t, R_t),
      R_t^-1 = S_t^-1 - I,   y_t = R_t S_t^-1 m_t.

  This is well-defined only where S_t^-1 - I is positive definite, i.e. every eigenvalue s of
  S_t is below 1 (the estimate is more certain than p(z)). Then R_t = (I - S_t)^-1 S_t and
  y_t = (I - S_t)^-1 m_t. In the eigenbasis of S_t = U diag(s) U^T each direction has
  precision lambda = 1/s - 1 and pseudo-mean (U^T m_t) / (1 - s); a direction with lambda
  below ``min_precision`` (s near or above 1) is treated as nearly uninformative instead:
  precision ``min_precision`` and pseudo-mean U^T m_t, the estimate's own mean. Frames whose
  every direction is informative use the closed form, whose gradient stays defined where S_t
  has a repeated eigenvalue (equal variances), which an eigendecomposition's does not.

  The dynamics scale R_t by a learned noise scale c, but not its uninformative part
  (``fixed``, variance 1/``min_precision`` along those directions): scaled, each such direction
  would add about -log(c / min_precision) / 2 to the likelihood, a reward for a small c that,
  over enough frames, drove c to 0 and made every estimate exact.

Frames without a face are masked: their values are ignored (NaN allowed) and replaced by
placeholders that the filter never reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from coreaffect.errors import InputError
from coreaffect.state_space import _sym

__all__ = ["AffectObservations", "ObservationBatch", "batch_observations", "check_observations",
           "pseudo_observations"]

_DTYPE = torch.float64  # affect models are tiny; float64 keeps the likelihood surface smooth
_CPU = torch.device("cpu")  # where they compute, whatever device the estimates come from


class AffectObservations(NamedTuple):
    """One video's per-frame Gaussian estimates of the latent z, the dynamics' input.

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


class ObservationBatch(NamedTuple):
    """Equal-length videos stacked for one batched filter call (:func:`batch_observations`).

    Attributes:
        dt: (B, T-1) time steps in seconds.
        y: (B, T, K) pseudo-observations.
        r: (B, T, K, K) their covariances, before any scaling.
        fixed: (B, T, K, K) the part of ``r`` along uninformative directions, never scaled.
        mask: (B, T) bool, True where observed.
    """

    dt: Tensor
    y: Tensor
    r: Tensor
    fixed: Tensor
    mask: Tensor


def pseudo_observations(means: Tensor, covs: Tensor, mask: Tensor, *, divide: bool,
                        min_precision: float = 1e-3) -> tuple[Tensor, Tensor, Tensor]:
    """Pseudo-observations y (..., K) and covariances R (..., K, K) of Gaussian estimates.

    Args:
        means: (..., K) m_t.
        covs: (..., K, K) S_t, positive definite where ``mask`` is True.
        mask: (...) bool; False rows get the placeholders y = 0, R = I / 2 (before division).
        divide: Divide out p(z) = N(0, I) (see the module docs), or use (m_t, S_t) as they are.
        min_precision: Smallest precision of a divided direction.

    Returns:
        ``(y, r, fixed)``: ``fixed`` (..., K, K) is the part of R along the directions that
        keep ``min_precision`` (U diag(1/min_precision or 0) U^T; zero without division and at
        masked frames), which the dynamics leave unscaled.

    Gradients: defined for rows where every direction, or none, is informative. A row with
    some directions informative goes through an eigendecomposition of S, whose gradient with
    respect to S is undefined (NaN) where S has a repeated eigenvalue, which K = 2 never has
    there but K >= 3 can; the gradient with respect to m stays defined.
    """
    k = means.shape[-1]
    eye = torch.eye(k, dtype=means.dtype, device=means.device)
    means = torch.where(mask[..., None], means, torch.zeros_like(means))
    covs = _sym(torch.where(mask[..., None, None], covs, 0.5 * eye))
    none = torch.zeros_like(covs)
    if not divide:
        return means, covs, none
    with torch.no_grad():  # which directions are informative: a choice, not differentiated
        clamped = 1 / torch.linalg.eigvalsh(covs) - 1 < min_precision  # (..., K)
    regular, flat = ~clamped.any(-1), clamped.all(-1)  # (...)
    # Every direction informative: R = (S^-1 - I)^-1 = (I - S)^-1 S and y = R S^-1 m =
    # (I - S)^-1 m, without an eigendecomposition, whose gradient is undefined where S has a
    # repeated eigenvalue (S = s I, common). Other rows get a harmless S here.
    safe = torch.where(regular[..., None, None], covs, 0.5 * eye)
    y = torch.linalg.solve(eye - safe, means[..., None])[..., 0]
    r = _sym(torch.linalg.solve(eye - safe, safe))
    # No direction informative: the estimate's own mean, with precision min_precision.
    y = torch.where(flat[..., None], means, y)
    r = torch.where(flat[..., None, None], eye / min_precision, r)
    fixed = torch.where(flat[..., None, None], eye / min_precision, none)
    mixed = ~(regular | flat)
    if not bool(mixed.any()):
        return y, r, fixed
    # Some directions informative: in the eigenbasis of S = U diag(s) U^T (rows without mixed
    # directions get a matrix of distinct eigenvalues, so that their zero gradient stays finite).
    spread = torch.diag_embed(torch.linspace(0.25, 0.5, k, dtype=covs.dtype, device=covs.device))
    s_mixed, u = torch.linalg.eigh(torch.where(mixed[..., None, None], covs, spread))
    proj = (u.transpose(-1, -2) @ means[..., None])[..., 0]  # U^T m
    precision = 1 / s_mixed - 1
    defined = precision >= min_precision
    precision = torch.where(defined, precision, torch.full_like(s_mixed, min_precision))
    # y = R S^-1 m: in the eigenbasis (U^T m) / s / (1/s - 1) = (U^T m) / (1 - s)
    pseudo = torch.where(defined, proj / (1 - s_mixed).clamp_min(1e-12), proj)
    y_mixed = (u @ pseudo[..., None])[..., 0]
    r_mixed = _sym(u @ torch.diag_embed(1 / precision) @ u.transpose(-1, -2))
    kept = torch.where(defined, torch.zeros_like(precision), 1 / precision)
    fixed_mixed = _sym(u @ torch.diag_embed(kept) @ u.transpose(-1, -2))
    return (torch.where(mixed[..., None], y_mixed, y),
            torch.where(mixed[..., None, None], r_mixed, r),
            torch.where(mixed[..., None, None], fixed_mixed, fixed))


def check_observations(sequence: AffectObservations, n_latent: int
                       ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One video's ``(times (T,), means (T, K), covs (T, K, K), mask (T,))``, in float64 on the
    CPU (estimates from a CUDA device are copied).

    Raises:
        ValueError: Shapes that do not fit K = ``n_latent``, an empty video, times that are not
            finite or do not increase strictly, or non-finite or non-positive-definite values at
            an unmasked frame.
    """
    times = torch.as_tensor(sequence.times, dtype=_DTYPE, device=_CPU)
    if times.ndim != 1:
        raise InputError(f"times must be (T,), one a frame; got {tuple(times.shape)}")
    means = torch.as_tensor(sequence.means, dtype=_DTYPE, device=_CPU)
    covs = torch.as_tensor(sequence.covs, dtype=_DTYPE, device=_CPU)
    steps, k = times.shape[0], n_latent
    if means.shape != (steps, k) or covs.shape != (steps, k, k):
        raise InputError(f"expected times (T,), means (T, {k}), covs (T, {k}, {k}); got "
                         f"{tuple(times.shape)}, {tuple(means.shape)}, {tuple(covs.shape)}")
    if steps == 0:
        raise InputError("an empty sequence")
    if not bool(torch.isfinite(times).all()):
        raise InputError("times must be finite")
    if steps > 1 and not bool((times.diff() > 0).all()):
        raise InputError("times must be strictly increasing")
    mask = (torch.ones(steps, dtype=torch.bool) if sequence.mask is None
            else torch.as_tensor(sequence.mask, device=_CPU))
    if mask.dtype != torch.bool:
        if not bool(((mask == 0) | (mask == 1)).all()):  # NaN and 0.5 say nothing
            raise InputError("mask must hold booleans (or 0 and 1), True where observed")
        mask = mask.to(torch.bool)
    if mask.shape != (steps,):
        raise InputError(f"mask must be (T,) = ({steps},), one flag a frame; got "
                         f"{tuple(mask.shape)}")
    finite = torch.isfinite(means).all(-1) & torch.isfinite(covs).flatten(-2).all(-1)
    if bool((mask & ~finite).any()):
        raise InputError("non-finite means or covs at an unmasked frame")
    if bool(mask.any()) and not bool(
            (torch.linalg.eigvalsh(_sym(covs[mask])) > 0).all()):
        raise InputError("covs must be positive definite at unmasked frames")
    return times, means, covs, mask


def batch_observations(prepared: Sequence[tuple[Tensor, ...]]) -> list[ObservationBatch]:
    """Videos ``(times (T,), y (T, K), R (T, K, K), fixed (T, K, K), mask (T,))`` grouped by
    length T, each group stacked into one :class:`ObservationBatch`, shortest first (in input
    order within a group)."""
    groups: dict[int, list[tuple[Tensor, ...]]] = {}
    for video in prepared:
        groups.setdefault(video[0].shape[0], []).append(video)
    return [ObservationBatch(torch.stack([v[0].diff() for v in group]),
                             *(torch.stack([v[i] for v in group]) for i in range(1, 5)))
            for _, group in sorted(groups.items())]
