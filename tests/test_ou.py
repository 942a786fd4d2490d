"""The OU process: its exact discretisation against closed forms and simulation, and the
parameterisation that keeps it mean-reverting."""

from __future__ import annotations

import math

import pytest
import torch

from coreaffect.ou import ou_discretize, ou_matrices, ou_stationary_cov

pytestmark = pytest.mark.usefixtures("float64")  # the references are computed in float64


def test_stationary_cov_solves_lyapunov():
    theta = torch.tensor([[0.8, 0.2], [-0.1, 0.5]])
    diffusion = torch.tensor([[0.6, 0.0], [0.2, 0.5]])
    p = ou_stationary_cov(theta, diffusion)
    torch.testing.assert_close(theta @ p + p @ theta.T, diffusion @ diffusion.T)


def test_one_dimensional_closed_form():
    theta, sigma, dt = 0.7, 0.4, torch.tensor([0.05, 0.5, 3.0])
    f, b, q = ou_discretize(torch.tensor([[theta]]), torch.tensor([0.2]),
                            torch.tensor([[sigma]]), dt)
    torch.testing.assert_close(f[:, 0, 0], torch.exp(-theta * dt))
    torch.testing.assert_close(b[:, 0], 0.2 * (1 - torch.exp(-theta * dt)))
    expected = sigma**2 / (2 * theta) * (1 - torch.exp(-2 * theta * dt))
    torch.testing.assert_close(q[:, 0, 0], expected)


def test_discretisation_matches_euler_maruyama_statistics():
    theta = torch.tensor([[0.8, 0.2], [-0.1, 0.5]])
    mu = torch.tensor([0.3, -0.2])
    diffusion = torch.tensor([[0.6, 0.0], [0.2, 0.5]])
    dt, substeps, n = 0.5, 500, 20000
    g = torch.Generator().manual_seed(1)
    z0 = torch.tensor([1.0, -1.0])
    z = z0.expand(n, 2).clone()
    h = dt / substeps
    for _ in range(substeps):
        z = z - (z - mu) @ theta.T * h + torch.randn(n, 2, generator=g) @ diffusion.T * math.sqrt(h)
    f, b, q = ou_discretize(theta, mu, diffusion, dt)
    torch.testing.assert_close(z.mean(0), f @ z0 + b, atol=0.015, rtol=0)
    torch.testing.assert_close(torch.cov(z.T), q, atol=0.01, rtol=0.05)


def test_batched_stationary_cov_equals_one_by_one():
    g = torch.Generator().manual_seed(3)
    theta = torch.eye(3) + 0.3 * torch.randn(4, 3, 3, generator=g)
    diffusion = torch.randn(4, 3, 3, generator=g)
    batched = ou_stationary_cov(theta, diffusion)
    for i in range(4):
        torch.testing.assert_close(batched[i], ou_stationary_cov(theta[i], diffusion[i]))
    shared = ou_stationary_cov(theta, diffusion[0])  # one diffusion for every Theta
    assert shared.shape == (4, 3, 3)
    for i in range(4):
        torch.testing.assert_close(shared[i], ou_stationary_cov(theta[i], diffusion[0]))


def test_float32_process_noise_of_a_slow_process_at_a_short_step_is_positive():
    theta = torch.tensor([[0.02, 0.01], [-0.01, 0.03]])
    diffusion = torch.tensor([[0.5, 0.0], [0.499, 0.01]])
    exact = ou_discretize(theta, torch.zeros(2), diffusion, 1e-3)[2]  # float64 (the fixture)
    f, b, q = ou_discretize(theta.float(), torch.zeros(2).float(), diffusion.float(), 1e-3)
    assert q.dtype == f.dtype == b.dtype == torch.float32
    assert torch.linalg.eigvalsh(q.double()).min() > 0  # the smaller eigenvalue is ~5e-8
    torch.testing.assert_close(q.double(), exact, rtol=1e-5, atol=1e-12)


def test_matrices_are_mean_reverting_with_a_triangular_diffusion():
    g = torch.Generator().manual_seed(2)
    k, batch = 3, 50
    free = k * (k - 1) // 2
    diag = torch.rand(batch, k, generator=g) + 0.01
    theta, diffusion = ou_matrices(diag, 3 * torch.randn(batch, free, generator=g),
                                   3 * torch.randn(batch, free, generator=g),
                                   torch.rand(batch, k, generator=g) + 0.01,
                                   torch.randn(batch, free, generator=g))
    assert theta.shape == diffusion.shape == (batch, k, k)
    assert bool((torch.linalg.eigvals(theta).real > 0).all())
    assert bool((torch.linalg.eigvalsh(0.5 * (theta + theta.mT)) > 0).all())
    torch.testing.assert_close(diffusion, torch.tril(diffusion))
    assert bool((torch.diagonal(diffusion, dim1=-2, dim2=-1) > 0).all())
    # the stationary law exists: P solves the Lyapunov equation and is positive definite
    p = ou_stationary_cov(theta, diffusion)
    assert bool((torch.linalg.eigvalsh(p) > 0).all())


def test_discretisation_takes_one_model_over_a_batch_of_steps():
    theta, mu, diffusion = torch.eye(2), torch.zeros(2), torch.eye(2)
    f, _, _ = ou_discretize(theta, mu, diffusion, torch.full((3, 4), 0.1))  # (videos, steps)
    assert f.shape == (3, 4, 2, 2)
    with pytest.raises(ValueError, match="takes one model"):
        ou_discretize(theta.expand(3, 2, 2), mu, diffusion, torch.full((3, 4), 0.1))
