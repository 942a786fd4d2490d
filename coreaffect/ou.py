"""The Ornstein-Uhlenbeck process of core affect: exact discretisation and parameterisation.

Core affect z in R^K drifts back to a baseline mu (Oravecz, Tuerlinckx & Vandekerckhove, 2009)::

    dz = -Theta (z - mu) dt + L dW,

with Theta (K, K) the mean-reversion matrix (eigenvalues with positive real part) and L (K, K) the
diffusion. Over a step dt the process is exactly linear-Gaussian (:func:`ou_discretize`)::

    z_{t+1} = F z_t + b + w_t,   w_t ~ N(0, Q),
    F = expm(-Theta dt),   b = (I - F) mu,   Q = P_inf - F P_inf F^T,

where P_inf, the stationary covariance (:func:`ou_stationary_cov`), solves the Lyapunov equation
Theta P_inf + P_inf Theta^T = L L^T. Steps may differ (dropped frames, irregular annotation times):
dt may have any leading axes (time, videos). Both functions are differentiable;
:func:`ou_discretize` takes one model (Theta, mu and L unbatched) over a batch of steps, and
:func:`ou_stationary_cov` is batched over Theta's and L's leading axes.

:func:`ou_matrices` builds Theta and L from unconstrained numbers, as the dynamics' fit and its
NUTS priors use them: Theta = C C^T + W with C lower-triangular with a positive diagonal and W
skew-symmetric (so Theta's symmetric part is positive definite and every eigenvalue has a
positive real part), and L lower-triangular with a positive diagonal.

References:
    Oravecz, Z., Tuerlinckx, F., & Vandekerckhove, J. (2009). A hierarchical Ornstein-Uhlenbeck
    model for continuous repeated measurement data. Psychometrika 74(3), 395-418.
"""

from __future__ import annotations

import torch
from torch import Tensor

from coreaffect.errors import InputError
from coreaffect.state_space import _sym

__all__ = ["ou_discretize", "ou_matrices", "ou_stationary_cov"]


def ou_stationary_cov(theta: Tensor, diffusion: Tensor) -> Tensor:
    """P_inf solving Theta P + P Theta^T = L L^T, for (K, K) inputs (batched over leading axes).

    Solved as a linear system in vec(P) (Kronecker form), which is exact and differentiable for
    the small K of affect models.

    Raises:
        InputError: Shapes that do not share K, values that are not finite floating-point
            numbers, or a Theta that is not mean-reverting (an eigenvalue whose real part is
            not positive: no stationary law).
    """
    k = theta.shape[-1]
    if theta.shape[-2:] != (k, k) or diffusion.shape[-2] != k:
        raise InputError(f"theta must be (..., K, K) and diffusion (..., K, M); got shapes "
                         f"{tuple(theta.shape)} and {tuple(diffusion.shape)}")
    _check_values(theta=theta, diffusion=diffusion)
    if theta.dtype != diffusion.dtype:
        raise InputError(f"theta and diffusion must share a dtype, got {theta.dtype} and "
                         f"{diffusion.dtype}")
    return _stationary_cov(theta, diffusion)


def _stationary_cov(theta: Tensor, diffusion: Tensor) -> Tensor:
    """:func:`ou_stationary_cov` of inputs whose shapes, dtypes and values are checked: only
    mean reversion is (every call costs it, as a streamed frame's step does)."""
    k = theta.shape[-1]
    with torch.no_grad():
        unstable = torch.linalg.eigvals(theta.detach().cpu()).real <= 0  # mps has none
    if bool(unstable.any()):
        raise InputError("theta has no stationary covariance: it has an eigenvalue whose real "
                         "part is not positive (a mean-reverting theta has only positive ones)")
    eye = torch.eye(k, dtype=theta.dtype, device=theta.device)
    # row-major vec: vec(Theta P) = (Theta kron I) vec(P), vec(P Theta^T) = (I kron Theta) vec(P)
    system = torch.kron(theta, eye) + torch.kron(eye, theta) if theta.ndim == 2 else (
        _batched_kron(theta, eye) + _batched_kron(eye.expand_as(theta), theta))
    rhs = diffusion @ diffusion.transpose(-1, -2)
    vec, info = torch.linalg.solve_ex(system, rhs.reshape(*rhs.shape[:-2], k * k, 1))
    if bool((info != 0).any()):  # two eigenvalues of Theta sum to 0: no stationary law
        raise InputError("theta has no stationary covariance: two of its eigenvalues sum to 0 "
                         "(a mean-reverting theta has eigenvalues with positive real parts)")
    return _sym(vec.reshape(*vec.shape[:-2], k, k))


def _check_values(**tensors: Tensor) -> None:
    """Each of ``tensors`` must be floating-point and finite (an integer theta would be
    computed, then cast back, to zeros)."""
    for name, value in tensors.items():
        if not isinstance(value, Tensor) or not value.is_floating_point():
            kind = value.dtype if isinstance(value, Tensor) else type(value).__name__
            raise InputError(f"{name} must be a floating-point tensor, got {kind}")
    with torch.no_grad():  # one test of them all; which one, only when one fails
        if bool(torch.stack([torch.isfinite(v).all() for v in tensors.values()]).all()):
            return
    name, value = next((n, v) for n, v in tensors.items() if not bool(torch.isfinite(v).all()))
    raise InputError(f"{name} must be finite, got {value.detach().cpu().tolist()}")


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
        b = (I - F) mu, Q = P_inf - F P_inf F^T, in the dtype of ``theta``. They are computed in
        float64 whatever that dtype (except on Apple's mps, which has none): for a slow process
        and a short step, Q is a small difference of two large matrices, which float32 would
        leave with negative eigenvalues.

    Raises:
        InputError: Shapes that do not share K, values that are not finite floating-point
            numbers, a negative or non-finite step, or a theta without a stationary law
            (:func:`ou_stationary_cov`).
    """
    if theta.ndim != 2 or mu.ndim != 1 or diffusion.ndim != 2:
        raise InputError(f"ou_discretize takes one model, theta (K, K), mu (K,) and diffusion "
                         f"(K, K), over a batch of steps dt; got shapes {tuple(theta.shape)}, "
                         f"{tuple(mu.shape)} and {tuple(diffusion.shape)}")
    k = theta.shape[-1]
    if theta.shape != (k, k) or mu.shape != (k,) or diffusion.shape[0] != k:
        raise InputError(f"theta (K, K), mu (K,) and diffusion (K, K) must share K; got shapes "
                         f"{tuple(theta.shape)}, {tuple(mu.shape)} and "
                         f"{tuple(diffusion.shape)}")
    _check_values(theta=theta, mu=mu, diffusion=diffusion)
    dtype = theta.dtype
    work = torch.float64 if theta.device.type != "mps" else dtype
    theta, mu, diffusion = theta.to(work), mu.to(work), diffusion.to(work)
    dt = torch.as_tensor(dt, dtype=work, device=theta.device)
    with torch.no_grad():
        bad = dt[~(torch.isfinite(dt) & (dt >= 0))]
        if bad.numel():
            raise InputError(f"dt must be finite and >= 0 (times must not go back); got "
                             f"{float(bad[0]):g}")
    eye = torch.eye(k, dtype=work, device=theta.device)
    transition = torch.linalg.matrix_exp(-theta * dt[..., None, None])  # (..., K, K)
    offset = ((eye - transition) @ mu[..., None])[..., 0]
    stationary = _stationary_cov(theta, diffusion)  # its inputs checked above
    process = _sym(stationary - transition @ stationary @ transition.transpose(-1, -2))
    return transition.to(dtype), offset.to(dtype), process.to(dtype)


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


def ou_matrices(theta_diag: Tensor, theta_lower: Tensor, theta_skew: Tensor,
                diffusion_diag: Tensor, diffusion_lower: Tensor) -> tuple[Tensor, Tensor]:
    """Theta = C C^T + W and the diffusion L from their free entries (batched over leading axes).

    Args:
        theta_diag: (..., K) the diagonal of C, positive.
        theta_lower: (..., K(K-1)/2) C's strict lower part, row by row.
        theta_skew: (..., K(K-1)/2) the strict lower part of the skew-symmetric W.
        diffusion_diag: (..., K) the diagonal of L, positive.
        diffusion_lower: (..., K(K-1)/2) L's strict lower part.

    Returns:
        ``(Theta, L)``, each (..., K, K).
    """
    k = theta_diag.shape[-1]
    chol = _lower(theta_diag, theta_lower)
    theta = chol @ chol.transpose(-1, -2) + _skew(theta_skew, k)
    return theta, _lower(diffusion_diag, diffusion_lower)
