"""Tests of coreaffect.observations: dividing out p(z) against the Gaussian densities themselves,
validation of a video's estimates, and batching by length."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.distributions import MultivariateNormal

from coreaffect.errors import CoreAffectError
from coreaffect.observations import (
    AffectObservations,
    batch_observations,
    check_observations,
    pseudo_observations,
)

F64 = torch.float64


def _random_covs(n: int, k: int, seed: int, top: float) -> torch.Tensor:
    """(n, k, k) covariances with eigenvalues in (0.05, top) and random eigenvectors."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, k, k, generator=g, dtype=F64))
    s = 0.05 + (top - 0.05) * torch.rand(n, k, generator=g, dtype=F64)
    return q @ torch.diag_embed(s) @ q.transpose(-1, -2)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_divided_pseudo_observation_is_the_density_ratio(k):
    """N(z; m, S) / N(z; 0, I) = const * N(z; y, R) for every z, when S < I."""
    n = 5
    covs = _random_covs(n, k, seed=k, top=0.9)
    means = torch.randn(n, k, generator=torch.Generator().manual_seed(10 + k), dtype=F64)
    y, r, _ = pseudo_observations(means, covs, torch.ones(n, dtype=torch.bool), divide=True)
    z = torch.randn(50, n, k, generator=torch.Generator().manual_seed(20 + k), dtype=F64)
    eye = torch.eye(k, dtype=F64)
    log_ratio = (MultivariateNormal(means, covs).log_prob(z)
                 - MultivariateNormal(torch.zeros(k, dtype=F64), eye).log_prob(z)
                 - MultivariateNormal(y, r).log_prob(z))  # (50, n): constant in z
    torch.testing.assert_close(log_ratio - log_ratio[0], torch.zeros_like(log_ratio),
                               atol=1e-9, rtol=0)


def test_an_uninformative_direction_keeps_min_precision_and_its_own_mean():
    m = torch.tensor([[0.3, -0.5], [0.4, 0.2]], dtype=F64)
    s = torch.tensor([[[0.2, 0.05], [0.05, 0.3]], [[0.5, 0.0], [0.0, 1.5]]], dtype=F64)
    y, r, _ = pseudo_observations(m, s, torch.tensor([True, True]), divide=True,
                               min_precision=1e-3)
    precision = torch.linalg.inv(s[0]) - torch.eye(2, dtype=F64)
    torch.testing.assert_close(torch.linalg.inv(r[0]), precision)
    torch.testing.assert_close(y[0], torch.linalg.solve(precision, torch.linalg.solve(s[0], m[0])))
    torch.testing.assert_close(torch.diagonal(r[1]), torch.tensor([1.0, 1e3], dtype=F64))
    torch.testing.assert_close(y[1], torch.tensor([0.8, 0.2], dtype=F64))  # 0.4 / (1 - 0.5); m


def test_the_unscaled_part_is_r_along_the_uninformative_directions_only():
    """R = R' + R_fixed with R' the informative directions' part: R_fixed is R itself where no
    direction is informative, 0 where all are, and its eigen-part along the clamped ones."""
    m = torch.tensor([[0.3, -0.5], [0.4, 0.2], [0.1, 0.1], [0.0, 0.0]], dtype=F64)
    q = torch.tensor([[0.6, -0.8], [0.8, 0.6]], dtype=F64)  # a rotation
    mixed = q @ torch.diag(torch.tensor([0.5, 1.5], dtype=F64)) @ q.T
    s = torch.stack([0.2 * torch.eye(2, dtype=F64), mixed, 2 * torch.eye(2, dtype=F64),
                     torch.eye(2, dtype=F64)])
    mask = torch.tensor([True, True, True, False])
    y, r, fixed = pseudo_observations(m, s, mask, divide=True, min_precision=1e-3)
    torch.testing.assert_close(fixed[0], torch.zeros(2, 2, dtype=F64))
    along = q[:, 1:] @ q[:, 1:].T  # the direction of variance 1.5
    torch.testing.assert_close(fixed[1], 1e3 * along)
    torch.testing.assert_close(r[1] - fixed[1], 1.0 * (torch.eye(2, dtype=F64) - along))
    torch.testing.assert_close(fixed[2], r[2])
    torch.testing.assert_close(fixed[3], torch.zeros(2, 2, dtype=F64))  # masked
    assert not pseudo_observations(m, s, mask, divide=False)[2].any()


def test_no_informative_direction_gives_the_estimate_and_min_precision():
    m = torch.tensor([[0.3, -0.5]], dtype=F64)
    y, r, _ = pseudo_observations(m, 2 * torch.eye(2, dtype=F64)[None], torch.tensor([True]),
                               divide=True, min_precision=1e-3)
    torch.testing.assert_close(y, m)
    torch.testing.assert_close(r, 1e3 * torch.eye(2, dtype=F64)[None])


def test_division_has_finite_gradients_at_repeated_eigenvalues():
    """S = s I (equal variances) is common; an eigendecomposition's gradient is undefined
    there. The gradient must be finite and equal the closed form's, (I - S)^-1 m and
    (I - S)^-1 S, also beside a frame with an uninformative direction."""
    m = torch.tensor([[0.3, -0.5], [0.1, 0.2], [0.4, 0.2]], dtype=F64, requires_grad=True)
    s = torch.stack([0.25 * torch.eye(2, dtype=F64), torch.tensor([[0.3, 0.1], [0.1, 0.2]],
                     dtype=F64), torch.diag(torch.tensor([0.5, 1.5], dtype=F64))])
    s.requires_grad_(True)
    y, r, _ = pseudo_observations(m, s, torch.ones(3, dtype=torch.bool), divide=True)
    (y.sum() + r.sum()).backward()
    assert torch.isfinite(s.grad).all() and torch.isfinite(m.grad).all()
    m2 = m.detach()[:2].clone().requires_grad_(True)
    s2 = s.detach()[:2].clone().requires_grad_(True)
    eye, sym = torch.eye(2, dtype=F64), 0.5 * (s2 + s2.transpose(-1, -2))  # as it reads S
    y2 = torch.linalg.solve(eye - sym, m2[..., None])[..., 0]
    r2 = torch.linalg.solve(eye - sym, sym)
    (y2.sum() + (0.5 * (r2 + r2.transpose(-1, -2))).sum()).backward()
    torch.testing.assert_close(s.grad[:2], s2.grad)
    torch.testing.assert_close(m.grad[:2], m2.grad)


def test_without_division_and_at_masked_frames_the_estimates_pass_or_are_replaced():
    m = torch.tensor([[0.3, -0.5], [float("nan")] * 2], dtype=F64)
    s = torch.stack([torch.eye(2, dtype=F64) * 0.2, torch.full((2, 2), float("nan"), dtype=F64)])
    mask = torch.tensor([True, False])
    for divide in (False, True):
        y, r, _ = pseudo_observations(m, s, mask, divide=divide)
        assert torch.isfinite(y).all() and torch.isfinite(r).all()
    y, r, _ = pseudo_observations(m, s, mask, divide=False)
    torch.testing.assert_close(y[0], m[0])
    torch.testing.assert_close(r[0], s[0])


def test_check_observations_names_what_is_wrong():
    times = torch.arange(3, dtype=F64)
    covs = torch.eye(2, dtype=F64).expand(3, 2, 2)
    out = check_observations(AffectObservations(times, torch.zeros(3, 2), covs), 2)
    assert [x.dtype for x in out] == [F64, F64, F64, torch.bool] and bool(out[3].all())
    bad = {
        "expected times": AffectObservations(times, torch.zeros(3, 3), covs),
        "empty": AffectObservations(times[:0], torch.zeros(0, 2), covs[:0]),
        "increasing": AffectObservations(times.flip(0), torch.zeros(3, 2), covs),
        "non-finite": AffectObservations(times, torch.full((3, 2), float("nan")), covs),
        "positive definite": AffectObservations(times, torch.zeros(3, 2), -covs),
        "mask must be": AffectObservations(times, torch.zeros(3, 2), covs,
                                           torch.tensor([True, False])),
        r"times must be \(T,\), one a frame; got \(3, 1\)": AffectObservations(
            times[:, None], torch.zeros(3, 2), covs),
        "mask must hold booleans": AffectObservations(times, torch.zeros(3, 2), covs,
                                                      torch.tensor([1.0, float("nan"), 0.0])),
    }
    for message, video in bad.items():
        with pytest.raises(CoreAffectError, match=message):
            check_observations(video, 2)
    masked = AffectObservations(times, torch.full((3, 2), float("nan")), covs,
                                torch.tensor([False, False, False]))
    assert not check_observations(masked, 2)[3].any()  # masked frames may hold anything
    flags = AffectObservations(times, torch.zeros(3, 2), covs, np.array([1.0, 0.0, 1.0]))
    assert check_observations(flags, 2)[3].tolist() == [True, False, True]


def test_batches_group_videos_by_length():
    def video(steps: int, value: float):
        times = torch.arange(steps, dtype=F64) * 0.04
        return (times, torch.full((steps, 2), value, dtype=F64),
                torch.eye(2, dtype=F64).expand(steps, 2, 2),
                torch.zeros(steps, 2, 2, dtype=F64), torch.ones(steps, dtype=torch.bool))

    batches = batch_observations([video(5, 0.1), video(3, 0.2), video(5, 0.3)])
    assert [b.y.shape for b in batches] == [(1, 3, 2), (2, 5, 2)]  # shortest first
    torch.testing.assert_close(batches[1].y[:, 0, 0], torch.tensor([0.1, 0.3], dtype=F64))
    torch.testing.assert_close(batches[0].dt, torch.full((1, 2), 0.04, dtype=F64))
