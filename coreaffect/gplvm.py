"""The Gaussian-process decoder of the affect manifold: a Bayesian GP-LVM, fitted with Pyro.

Vitale et al. (2014) learned the manifold of affect with a Gaussian-process latent variable model
(GP-LVM). :class:`~coreaffect.manifold.AffectManifold` offers it as ``backend="gplvm"``, in place
of the neural decoder; this module fits it and turns it into a decoder g. The model, for labels
y_i = (valence, arousal) and latents z_i in R^K::

    z_i ~ N(0, I_K)
    y_id = ybar_d + f_d(z_i) + e_id,   f_d ~ GP(0, k),   e_id ~ N(0, sigma^2),   d = 1, 2
    k(z, z') = v exp(-1/2 sum_k (z_k - z'_k)^2 / l_k^2)

ybar is the labels' mean, so far from the data the manifold returns to the average label. The fit
is Pyro's :class:`~pyro.contrib.gp.models.GPLVM` around a
:class:`~pyro.contrib.gp.models.SparseGPRegression` with M = ``inducing_points`` inducing inputs
Z_u and the variational free energy of Titsias (2009): q(z_i) = N(a_i, diag(b_i^2)), the kernel's
v and l, Z_u and sigma are fitted together by SVI, drawing the z_i from q (Pyro's estimator of the
Bayesian GP-LVM bound of Titsias & Lawrence, 2010). The latents start at the labels' principal
components, whitened (further axes, when K > 2, at small random values), and the inducing inputs
at M of them. The fit runs from two starting noises, sigma = 0.1 and 0.03, and keeps the one
whose bound ends higher: on labels along a thin curve the first reaches the better optimum, while
on labels that fill a two-dimensional region (as the synthetic corpus's do) the first can settle
where much of the labels' spread is called noise (sigma near 0.2), which the second avoids.

With K larger than the labels need (a thin, curved band of labels and K = 2), the kernel's
lengthscale on the unneeded axis grows long (automatic relevance determination). Such an axis
would leave g almost, but not quite, flat along it, and a point's preimage could then drift far
along it for a tiny change of g. So an axis whose lengthscale exceeds 5 times the shortest (a
relevance 1 / l_k^2 under 1/25 of the most relevant axis's) is switched off: l_k = infinity, g is
exactly flat along it, and the encoder and the prior keep p(z) there. On the synthetic corpus's
labels, which fill a two-dimensional region, both axes stay on.

The decoder is then the GP's posterior mean with the latents at their means a_i, which is a sum
of M kernels::

    g(z) = ybar + k(z, Z_u) W,   W = (sigma^2 K_uu + K_uf K_fu)^(-1) K_uf (Y - ybar)   (M, 2)

with K_uu = k(Z_u, Z_u) and K_uf = k(Z_u, A). p(y | z) = N(g(z), diag(s^2)) with s = sigma on both
dimensions (at least the manifold's ``min_noise_scale``): the GP's own uncertainty about f, small
where labels are dense, is left out, so that the backends share one decoder interface. Unlike the
neural decoder's tanh, g is not bounded by construction; it stays near the labels' range because
it is a smooth interpolation of them that returns to ybar.

References:
    Titsias, M. K. (2009). Variational learning of inducing variables in sparse Gaussian
    processes. AISTATS 2009.

    Titsias, M. K., Lawrence, N. D. (2010). Bayesian Gaussian process latent variable model.
    AISTATS 2010.

    Vitale, J., Williams, M.-A., Johnston, B., Boccignone, G. (2014). Affective facial expression
    processing via simulation: a probabilistic model. arXiv:1411.0582.
"""

from __future__ import annotations

import math

import torch
from pyro.contrib import gp
from pyro.distributions import constraints
from pyro.infer import TraceMeanField_ELBO
from pyro.nn import PyroParam
from torch import Tensor

from coreaffect.devices import NETWORK_DTYPE
from coreaffect.pyro_modules import LocalPyroModule

__all__ = ["RELEVANCE_RATIO", "GPDecoder", "fit_gplvm", "posterior_weights", "rbf",
           "switch_off_irrelevant"]

_JITTER = 1e-5  # on the diagonal of K_uu, as Pyro's sparse GP has it
_START_NOISES = (0.1, 0.03)  # sigma at the two starts of the fit; the better bound is kept
RELEVANCE_RATIO = 5.0  # an axis is switched off when its lengthscale exceeds 5x the shortest


def rbf(a: Tensor, b: Tensor, variance: Tensor, lengthscale: Tensor) -> Tensor:
    """The kernel k between (..., N, K) and (M, K) points: (..., N, M)."""
    scaled = (a[..., :, None, :] - b) / lengthscale
    return variance * torch.exp(-0.5 * scaled.pow(2).sum(-1))


class GPDecoder(LocalPyroModule):
    """g(z) = ybar + k(z, Z_u) W, (..., K) -> (..., 2), and the label noise s (2,).

    Buffers, which :func:`fit_gplvm` sets: ``inducing`` Z_u (M, K), ``weights`` W (M, 2),
    ``lengthscale`` l (K,; infinite on an axis switched off), ``variance`` v () and ``offset``
    ybar (2,).
    """

    def __init__(self, n_latent: int, inducing_points: int, min_noise_scale: float) -> None:
        super().__init__()
        like = {"dtype": NETWORK_DTYPE}
        self.register_buffer("inducing", torch.zeros(inducing_points, n_latent, **like))
        self.register_buffer("weights", torch.zeros(inducing_points, 2, **like))
        self.register_buffer("lengthscale", torch.ones(n_latent, **like))
        self.register_buffer("variance", torch.ones((), **like))
        self.register_buffer("offset", torch.zeros(2, **like))
        self.noise_scale = PyroParam(torch.full((2,), max(_START_NOISES[0], 2 * min_noise_scale),
                                                **like),
                                     constraint=constraints.greater_than(min_noise_scale))

    def forward(self, z: Tensor) -> Tensor:
        """g(z): (..., K) latents to (..., 2) valence-arousal points, in z's dtype."""
        rows = z.reshape(-1, z.shape[-1]).to(self.weights.dtype)  # (B, K): one latent (K,) too
        out = self.offset + rbf(rows, self.inducing, self.variance, self.lengthscale) @ self.weights
        return out.reshape(*z.shape[:-1], out.shape[-1]).to(z.dtype)


def switch_off_irrelevant(lengthscale: Tensor) -> Tensor:
    """(K,) lengthscales, infinite where over ``RELEVANCE_RATIO`` times the shortest."""
    return torch.where(lengthscale > RELEVANCE_RATIO * lengthscale.min(), math.inf, lengthscale)


def _initial_latents(centred: Tensor, n_latent: int, generator: torch.Generator) -> Tensor:
    """(N, K): the whitened principal components of the centred labels (N, 2), then small
    random values on further axes."""
    _, singular, right = torch.linalg.svd(centred, full_matrices=False)
    scores = centred @ right.T / (singular / centred.shape[0] ** 0.5).clamp(min=1e-6)  # (N, 2)
    extra = 0.1 * torch.randn(centred.shape[0], max(0, n_latent - 2), generator=generator,
                              dtype=centred.dtype, device=centred.device)
    return torch.cat([scores[:, :n_latent], extra], 1)


def posterior_weights(latents: Tensor, centred: Tensor, inducing: Tensor, variance: Tensor,
                      lengthscale: Tensor, noise: Tensor) -> Tensor:
    """W (M, 2) of the sparse GP's posterior mean, in float64 via Cholesky factors.

    Args:
        latents: A (N, K), the training inputs.
        centred: Y - ybar (N, 2).
        inducing: Z_u (M, K).
        variance, lengthscale: The kernel's v () and l (K,).
        noise: sigma^2 ().
    """
    a, y, u = latents.double(), centred.double(), inducing.double()
    v, scale, s2 = variance.double(), lengthscale.double(), noise.double()
    k_uu = rbf(u, u, v, scale) + _JITTER * torch.eye(u.shape[0], dtype=u.dtype, device=u.device)
    k_uf = rbf(u, a, v, scale)  # (M, N)
    system = s2 * k_uu + k_uf @ k_uf.T
    chol = torch.linalg.cholesky(0.5 * (system + system.T))
    return torch.cholesky_solve(k_uf @ y, chol).to(latents.dtype)


def fit_gplvm(labels: Tensor, n_latent: int, inducing_points: int, num_steps: int,
              learning_rate: float, min_noise_scale: float, generator: torch.Generator
              ) -> tuple[GPDecoder, list[float]]:
    """Fit the GP-LVM of the module docstring to labels and return its decoder.

    The fit starts from two label noises, sigma = 0.1 and 0.03, and keeps the one whose bound
    ends higher (the mean negative ELBO of its last 5% of steps is lower): which start reaches the
    better optimum depends on the labels (see the module docstring).

    Run it inside ``pyro.settings.context(module_local_params=True)`` so that the GP's
    parameters stay in its modules.

    Args:
        labels: (N, 2) labels, float32, on the device to compute on.
        n_latent: K.
        inducing_points: M (at most N are used).
        num_steps: SVI steps of each start (Adam, full batch, cosine-decaying learning rate).
        learning_rate: Adam's initial learning rate.
        min_noise_scale: Floor of s.
        generator: Source of the initial latents' extra axes and of the inducing inputs' choice.

    Returns:
        The decoder (frozen) and the negative ELBO per label after each step of the start kept.
    """
    offset = labels.mean(0)
    centred = labels - offset
    start = _initial_latents(centred, n_latent, generator)
    count = min(inducing_points, labels.shape[0])
    chosen = torch.randperm(labels.shape[0], generator=generator, device=labels.device)[:count]
    fits = [_fit_once(centred, start, start[chosen], max(noise, 2 * min_noise_scale), num_steps,
                      learning_rate) for noise in _START_NOISES]
    tail = max(1, num_steps // 20)
    model, history = min(fits, key=lambda fit: sum(fit[1][-tail:]) / tail)
    sparse = model.base_model
    with torch.no_grad():
        latents, inducing = model.X_loc.detach(), sparse.Xu.detach()
        variance = sparse.kernel.variance.detach()
        lengthscale = switch_off_irrelevant(sparse.kernel.lengthscale.detach())
        noise = sparse.noise.detach()
        decoder = GPDecoder(n_latent, count, min_noise_scale).to(labels.device)
        decoder.inducing.copy_(inducing)
        decoder.weights.copy_(posterior_weights(latents, centred, inducing, variance,
                                                lengthscale, noise))
        decoder.lengthscale.copy_(lengthscale)
        decoder.variance.copy_(variance)
        decoder.offset.copy_(offset)
        decoder.noise_scale = noise.sqrt().clamp(min=1.001 * min_noise_scale).expand(2).clone()
    decoder.requires_grad_(False)
    return decoder, history


def _fit_once(centred: Tensor, start: Tensor, inducing: Tensor, noise: float, num_steps: int,
              learning_rate: float) -> tuple[gp.models.GPLVM, list[float]]:
    """One SVI fit of the GP-LVM from latents ``start`` (N, K), inducing inputs (M, K) and label
    noise sigma = ``noise``; the model and its negative ELBO per label after each step."""
    n_latent = start.shape[1]
    kernel = gp.kernels.RBF(input_dim=n_latent, variance=centred.var(0).mean(),
                            lengthscale=centred.new_ones(n_latent))
    sparse = gp.models.SparseGPRegression(
        start.clone(), centred.T.contiguous(), kernel, inducing.clone(),
        noise=centred.new_tensor(noise**2), jitter=_JITTER)
    model = gp.models.GPLVM(sparse)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, num_steps,
                                                          eta_min=0.05 * learning_rate)
    loss_fn = TraceMeanField_ELBO().differentiable_loss
    history = []
    for _ in range(num_steps):
        optimizer.zero_grad()
        loss = loss_fn(model.model, model.guide)
        loss.backward()
        optimizer.step()
        schedule.step()
        history.append(loss.item() / centred.shape[0])
    return model, history
