"""The Gaussian prior that a hidden-route estimate induces on the latent affect manifold.

:class:`HiddenRoutePrior` is the Pyro module that converts the fast estimate of the hidden route,
an :class:`~coreaffect.hidden_route.AffectEstimate` e = (mean, var, embedding), into a Gaussian
over the latent z of an :class:`~coreaffect.manifold.AffectManifold`::

    p_phi(z | e) = N(m(e), S(e)).

An MLP phi of the standardised features [mean (2), log var (2), mu(mean) (K), embedding (D)]
(mu is the manifold's encoder mean; the embedding joins them with ``use_embedding=True``) gives a
lower-triangular L(e) (positive diagonal of at least ``min_scale``) and a vector (K,). Where the
mean and covariance come from depends on ``location``:

* ``"regression"`` (the default): the truth scatters around the estimate. The hidden route is a
  regression network (trained to predict the label), so its errors are close to independent of
  its output, not of the truth: on the demo's videos, the label's regression on the estimate has
  a slope close to 1. S = L L^T, and m is the latent point at which the prior's decoded mean,
  E[g(z)] for z ~ N(m, S), equals the hidden route's mean (the "centre": Gauss-Newton steps
  from the anchor a = g^-1(mean), :func:`~coreaffect.manifold.preimage` with a spread). The
  prior's decoded mean is thus the estimate itself wherever the decoder's range holds it; phi
  learns only how far the truth scatters around it. Conditioning p(z) on the estimate as below
  would instead pull every mean towards p(z)'s centre, which shrinks the trajectory that these
  errors do not call for (on the demo's test videos, the conditioned prior's per-video valence
  CCC fell below the hidden route's; with this location it is the hidden route's).
* ``"measurement"``: the estimate is read as a noisy observation of a latent point, the errors
  independent of the truth (the classical measurement-error model: truth plus noise). The anchor
  a = g^-1(mean) is observed as a = z + v, v ~ N(0, R) with R = L L^T; conditioning the
  manifold's prior p(z) = N(0, I) on it gives::

      S = I - (R + I)^-1,   m = (R + I)^-1 a.

  A confident estimate (small R) gives a narrow prior at the estimate's own latent point, an
  unsure one (large R) the manifold's marginal p(z).
* ``"learned"``: m = the vector, S = L L^T, both from phi.

In the first two, only the spread is learned, so the mean cannot absorb corrections that suit the
fitting pairs only. This matters because those pairs come from the videos the hidden route was
trained on, whose estimates are better than on new videos; a learned mean corrects them for the
training people and carries that correction to new ones (on the demo's test videos, a learned mean
made the decoded valence clearly less concordant with the labels than the estimate itself).

**Fitting** (:meth:`~HiddenRoutePrior.fit`). The generative model of a label y given an estimate
e, with the manifold's decoder g and label noise s frozen, is::

    z | e ~ p_phi(z | e),   y | z ~ N(g(z), diag(s^2)),

and phi is fitted by SVI on pairs (e_i, y_i), maximising

    ELBO_i = E_r[log p(y_i | z)] - KL(r || p_phi(z | e_i)) - beta KL(p_phi(z | e_i) || p(z))

with minibatches, Adam and a cosine-decaying learning rate. The first two terms are the
evidence lower bound of log p(y_i | e_i): decode through g and explain the true label. The
variational posterior r(z | y, e) is the manifold's encoder with p(z) divided out and the prior
multiplied in, r ~ q(z | y) p_phi(z | e) / p(z) (the diagonal Gaussian q(z | y) / p(z) acts as an
observation of z, with which p_phi is conditioned exactly; the encoder is frozen, phi enters
through p_phi). Because r sees both the label and the prior, the bound is close to
log p(y | e), and maximising it fits the predictive p(y | e) of the labels: its decoded spread is
the spread of the labels given e, with the label noise s counted once. (With a guide that sees
only e, as in a plain auto-encoder, the optimum would give every estimate a width of order s,
whatever the hidden route's uncertainty.)

The last term, with weight beta = ``kl_weight``, is the KL to the manifold's marginal
p(z) = N(0, I). With a learned location, latent directions that the labels do not determine (a
direction the decoder ignores, where q(z | y) = p(z)) get no signal from the first two terms, and
the KL holds the prior there at p(z); with a location tied to the estimate, it only adds a
slight pull towards p(z). With ``"regression"`` each pair's centre is moved on by two
Gauss-Newton steps per minibatch from where it was last (32 draws; the centre depends on the
spread being fitted, and carries no gradient).

**Prediction** (:meth:`~HiddenRoutePrior.predict`). The distribution of y implied by the prior,
p(y | e) = E_{p_phi(z | e)}[N(y; g(z), diag(s^2))], is moment-matched to a Gaussian with
S = ``num_samples`` draws z = m + chol(S) eps (antithetic pairs +-eps, whitened so that the
draws' mean is 0 and their second moment I; the same eps for every estimate, so each estimate's
prediction does not depend on the rest of the batch), and its
covariance multiplied by the calibration factors c = (c_v, c_a)::

    mean = (1/S) sum g(z),
    cov = C^(1/2) [(1/S) sum (g(z) - mean)(g(z) - mean)^T + diag(s^2)] C^(1/2),  C = diag(c).

**Calibration** (:meth:`~HiddenRoutePrior.calibrate`). On validation pairs (not those of the fit),
each c_d is set so that the central interval at ``level`` of that dimension's predicted marginal,
``|y_d - mean_d| <= z_{(1 + level)/2} sqrt(cov_dd)``, covers a fraction ``level`` of the labels:
c_d is the squared ``level``-quantile of the standardised errors over z_{(1 + level)/2}. Given
several levels (``coreaffect train`` uses 0.5 and 0.9), c_d is the factor whose largest coverage
error over them is smallest: the hidden route's errors have heavier tails than a Gaussian, so a
width that covers 90% exactly covers more than 50% (in a demo run calibrated at 0.9 alone, 56% of
the test videos' valence labels). The factors act on the decoded covariance only: the means, the
latent prior that the dynamics takes, and the ordering of confident and unconfident estimates stay
as fitted. Valence and arousal get their own factor because the hidden route's over-confidence
differs between them.

Parameters are module-local (see :mod:`coreaffect.manifold`): Pyro's global parameter store is
never used, and the manifold's parameters are not changed.

References:
    Sohn, K., Lee, H., Yan, X. (2015). Learning structured output representation using deep
    conditional generative models. NeurIPS 2015. (a learned conditional prior over latents)

    Kuleshov, V., Fenner, N., Ermon, S. (2018). Accurate uncertainties for deep learning using
    calibrated regression. ICML 2018. (recalibration on held-out data)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.infer import TraceMeanField_ELBO
from torch import Tensor, nn

from coreaffect.calibration import check_level, variance_factor
from coreaffect.checkpoint import load_state, save_state, saved_digest
from coreaffect.config import _is_integer
from coreaffect.devices import NETWORK_DTYPE, check_device, seeded
from coreaffect.errors import CoreAffectError, InputError
from coreaffect.hidden_route import AffectEstimate
from coreaffect.manifold import (
    _MLP,
    AffectManifold,
    _as_tensor,
    _check_labels,
    _generator,
    _positive_int,
    _positive_number,
    preimage,
)
from coreaffect.pyro_modules import LocalPyroModule, local_params

__all__ = ["LOCATIONS", "DecodedPrior", "HiddenRoutePrior", "latent_moments", "preimage"]

logger = logging.getLogger(__name__)

LOCATIONS = ("regression", "measurement", "learned")  # where the prior's mean m(e) comes from
_CENTRE_STEPS = 6  # Gauss-Newton steps from g^-1(mean) to the "regression" centre
_FIT_DRAWS = 32  # latent draws that centre each minibatch's priors during the fit
_FIT_CENTRE_STEPS = 2  # steps per minibatch from each pair's previous centre during the fit
_CENTRE_POINTS = 1 << 17  # rows x draws decoded at once while centring (bounds the memory)


def latent_moments(latent: dist.MultivariateNormal) -> tuple[Tensor, Tensor]:
    """Means (B, K) and covariances (B, K, K) of the prior's latent Gaussians, in float64 on
    the CPU, each covariance L L^T of its Cholesky factor L taken to float64 first: the
    float32 product of an elongated prior's factor (axes of 8.6 and 0.0015) can have a
    negative eigenvalue, which the dynamics rightly refuse."""
    tril = latent.scale_tril.to("cpu", torch.float64)
    return latent.loc.to("cpu", torch.float64), tril @ tril.transpose(-1, -2)


class DecodedPrior(NamedTuple):
    """The prior decoded to valence-arousal space, moment-matched to a Gaussian.

    Attributes:
        mean: (B, 2) E[y | e], (valence, arousal).
        cov: (B, 2, 2) Cov[y | e].
    """

    mean: Tensor
    cov: Tensor


class _PriorNet(LocalPyroModule):
    """features (B, F) -> loc (B, K), scale_tril (B, K, K)."""

    def __init__(self, in_features: int, n_latent: int, hidden: int, min_scale: float) -> None:
        super().__init__()
        self.n_latent = n_latent
        self.min_scale = min_scale
        self.net = _MLP(in_features, hidden, n_latent + n_latent * (n_latent + 1) // 2)
        with torch.no_grad():  # start from N(0, I), the manifold's marginal
            self.net.layer3.bias[n_latent:n_latent * 2] = math.log(math.expm1(1.0))

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        k = self.n_latent
        out = self.net(features)
        loc, diag, lower = out[..., :k], out[..., k:2 * k], out[..., 2 * k:]
        tril = torch.diag_embed(nn.functional.softplus(diag) + self.min_scale)  # (B, K, K)
        rows, cols = torch.tril_indices(k, k, offset=-1, device=features.device)
        tril[..., rows, cols] = lower
        return loc, tril


def _kl_to_standard(loc: Tensor, tril: Tensor) -> Tensor:
    """(B,) KL(N(loc, L L^T) || N(0, I)) for loc (B, K) and L (B, K, K)."""
    log_det = 2 * torch.log(torch.diagonal(tril, dim1=-2, dim2=-1)).sum(-1)
    return 0.5 * (tril.pow(2).sum((-1, -2)) + loc.pow(2).sum(-1) - loc.shape[-1] - log_det)


def _condition(loc: Tensor, tril: Tensor, observed: Tensor, noise: Tensor
               ) -> tuple[Tensor, Tensor]:
    """N(loc, L L^T) conditioned on observed = z + v, v ~ N(0, diag(noise)); Joseph form.

    Args:
        loc: (B, K) prior mean.
        tril: (B, K, K) prior Cholesky factor L.
        observed: (B, K) the observation.
        noise: (B, K) its variances.

    Returns:
        The posterior mean (B, K) and Cholesky factor (B, K, K).
    """
    cov = tril @ tril.transpose(-1, -2)  # (B, K, K)
    noise_cov = torch.diag_embed(noise)
    chol = torch.linalg.cholesky(cov + noise_cov)
    gain = torch.cholesky_solve(cov, chol).transpose(-1, -2)  # S (S + R)^-1
    post_loc = loc + (gain @ (observed - loc)[..., None])[..., 0]
    keep = torch.eye(loc.shape[-1], dtype=loc.dtype, device=loc.device) - gain
    post = keep @ cov @ keep.transpose(-1, -2) + gain @ noise_cov @ gain.transpose(-1, -2)
    return post_loc, torch.linalg.cholesky(0.5 * (post + post.transpose(-1, -2)))


def _measured(anchor: Tensor, tril: Tensor) -> tuple[Tensor, Tensor]:
    """p(z) = N(0, I) conditioned on anchor = z + v, v ~ N(0, L L^T).

    Args:
        anchor: (B, K) the observed point a.
        tril: (B, K, K) L, the Cholesky factor of the observation noise R.

    Returns:
        The mean (R + I)^-1 a (B, K) and the Cholesky factor (B, K, K) of
        S = I - (R + I)^-1 = L (I + L^T L)^-1 L^T, formed without the subtraction.
    """
    eye = torch.eye(anchor.shape[-1], dtype=anchor.dtype, device=anchor.device)
    widened = torch.linalg.cholesky(tril @ tril.transpose(-1, -2) + eye)  # R + I
    loc = torch.cholesky_solve(anchor[..., None], widened)[..., 0]
    inner = torch.cholesky_inverse(torch.linalg.cholesky(
        eye + tril.transpose(-1, -2) @ tril))  # (I + L^T L)^-1, eigenvalues in (0, 1]
    return loc, tril @ torch.linalg.cholesky(0.5 * (inner + inner.transpose(-1, -2)))


class HiddenRoutePrior(LocalPyroModule):
    """Gaussian prior over the manifold's latent z from a hidden-route estimate.

    See the module docstring for the model, the fit, the prediction and the calibration.

    Args:
        manifold: A fitted :class:`~coreaffect.manifold.AffectManifold`, kept frozen.
        location: ``"regression"``: the prior's decoded mean is the estimate's, with a learned
            spread; ``"measurement"``: p(z) conditioned on the estimate's latent point with a
            learned noise; ``"learned"``: mean and covariance both from phi (see the module
            docstring).
        hidden: Width of the two hidden layers of the network phi.
        use_embedding: Feed the estimate's embedding (B, D) to phi, besides its mean and
            variance. Off by default: the prior is fitted on the videos the hidden route was
            trained on, and their embeddings let phi recognise each training person and return
            their mean label, which does not carry over to new people (measured on the
            synthetic corpus's test videos, per-video CCC of the prior's decoded mean: with
            the embedding 0.38 valence / 0.54 arousal, without 0.55 / 0.74, raw hidden route
            0.51 / 0.75).
        kl_weight: beta, the weight of KL(p_phi(z | e) || p(z)) per pair; small, so that it
            decides only the directions the labels leave open.
        num_steps: SVI steps of :meth:`fit`.
        batch_size: Pairs per SVI step, drawn with replacement (as many as there are pairs
            when there are fewer).
        learning_rate: Adam's initial learning rate, decayed to 5% of it on a cosine.
        min_scale: Floor of the diagonal of L, which keeps S positive definite.
        num_samples: S, latent draws per estimate for :meth:`predict` and :meth:`calibrate`
            (even: antithetic pairs).
        random_state: Seed of the initial weights, minibatches and ELBO samples, and the default
            seed of :meth:`predict`.
        device: Where the network lives and computes (float32); the manifold's device should
            match.

    Attributes:
        net_: The network phi, a ``PyroModule``.
        embedding_dim_: D of the embeddings seen in :meth:`fit` (0 without embeddings).
        feature_mean_: (F,) mean of phi's input features, for their standardisation.
        feature_scale_: (F,) their scale.
        calibration_scale_: (c_v, c_a), factors on the decoded variances, (1.0, 1.0) until
            :meth:`calibrate`.
        calibration_level_: The level (or list of levels) c was calibrated at (``None`` before).
        loss_history_: The negative ELBO per pair (nats) after each SVI step.
    """

    def __init__(self, manifold: AffectManifold, *, location: str = "regression", hidden: int = 64,
                 use_embedding: bool = False, kl_weight: float = 0.05, num_steps: int = 2000,
                 batch_size: int = 256, learning_rate: float = 5e-3,
                 min_scale: float = 1e-3, num_samples: int = 256, random_state: int = 0,
                 device: str | torch.device = "cpu") -> None:
        with local_params():  # the module's parameter context must be created local
            super().__init__()
        self.manifold = manifold
        self.location = location
        self.hidden = hidden
        self.use_embedding = use_embedding
        self.kl_weight = kl_weight
        self.num_steps = num_steps
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.min_scale = min_scale
        self.num_samples = num_samples
        self.random_state = random_state
        self.device = device

    # -- checks --------------------------------------------------------------------------------

    def _hyperparameters(self) -> dict[str, Any]:
        return {"location": self.location, "hidden": self.hidden,
                "use_embedding": self.use_embedding,
                "kl_weight": self.kl_weight,
                "num_steps": self.num_steps, "batch_size": self.batch_size,
                "learning_rate": self.learning_rate, "min_scale": self.min_scale,
                "num_samples": self.num_samples, "random_state": self.random_state}

    def _validate_hyperparameters(self) -> None:
        for key in ("hidden", "num_steps", "batch_size", "num_samples"):
            setattr(self, key, _positive_int(getattr(self, key), f"HiddenRoutePrior: {key}"))
        if self.num_samples % 2:
            raise CoreAffectError(f"HiddenRoutePrior: num_samples must be even (antithetic "
                                  f"pairs), got {self.num_samples}")
        if self.location not in LOCATIONS:
            raise CoreAffectError(f"HiddenRoutePrior: location must be one of {LOCATIONS}, got "
                                  f"{self.location!r}")
        _positive_number(self.learning_rate, "HiddenRoutePrior: learning_rate")
        _positive_number(self.min_scale, "HiddenRoutePrior: min_scale")
        _positive_number(self.kl_weight, "HiddenRoutePrior: kl_weight", zero=True)
        if not _is_integer(self.random_state):  # numpy's too
            raise CoreAffectError(f"HiddenRoutePrior: random_state must be an integer seed, got "
                                  f"{self.random_state!r}")
        if not isinstance(self.manifold, AffectManifold):
            raise CoreAffectError("HiddenRoutePrior: manifold must be an AffectManifold, got "
                                  f"{type(self.manifold).__name__}")
        self.manifold._check_fitted()

    @property
    def _device(self) -> torch.device:
        return check_device(self.device)

    def _check_fitted(self) -> None:
        if "net_" not in self._modules:
            raise CoreAffectError("this HiddenRoutePrior is not fitted yet: call "
                                  "fit(estimates, labels) or HiddenRoutePrior.load(directory) "
                                  "first")

    def _check_estimate(self, estimate: Any, name: str = "estimate", *,
                        new_fit: bool = False) -> AffectEstimate:
        """Tensors of a well-formed estimate, float32 on the device; of the fitted embedding
        width unless ``new_fit`` (estimates to fit anew, of any width)."""
        if not isinstance(estimate, tuple) or len(estimate) != 3:
            raise CoreAffectError(f"{name} must be an AffectEstimate (mean, var, embedding), got "
                                  f"{type(estimate).__name__}")
        mean, var, emb = (_as_tensor(x, f"{name}.{key}", self._device)
                          for x, key in zip(estimate, AffectEstimate._fields, strict=True))
        if mean.ndim != 2 or mean.shape[-1] != 2:
            raise CoreAffectError(f"{name}.mean must have shape (B, 2), got {tuple(mean.shape)}")
        if var.shape != mean.shape:
            raise CoreAffectError(f"{name}.var must have the shape of its mean {tuple(mean.shape)}"
                                  f", got {tuple(var.shape)}")
        if emb.ndim != 2 or emb.shape[0] != mean.shape[0]:
            raise CoreAffectError(f"{name}.embedding must have shape (B, D) with B = "
                                  f"{mean.shape[0]}, got {tuple(emb.shape)}")
        if mean.shape[0] == 0:
            raise CoreAffectError(f"{name} is empty")
        for key, x in (("mean", mean), ("var", var), ("embedding", emb)):
            if not torch.isfinite(x).all():
                raise CoreAffectError(f"{name}.{key} holds NaN or infinite values (frames "
                                      "without a face have no estimate: leave them out)")
        if (var <= 0).any():
            raise CoreAffectError(f"{name}.var must be positive")
        if (not new_fit and "net_" in self._modules and self.use_embedding
                and emb.shape[1] != self.embedding_dim_):
            raise CoreAffectError(f"{name}.embedding has D = {emb.shape[1]}, but the prior was "
                                  f"fitted with D = {self.embedding_dim_}")
        return AffectEstimate(mean, var, emb)

    # -- the network ---------------------------------------------------------------------------

    def _raw_features(self, estimate: AffectEstimate) -> Tensor:
        """(B, F) = [mean, log var, encoder mean of the estimate's mean, embedding?]."""
        mean = estimate.mean.clamp(-1.0, 1.0)
        parts = [mean, estimate.var.log(), self.manifold.encode(mean).mean]
        if self.use_embedding:
            parts.append(estimate.embedding)
        return torch.cat(parts, -1)

    def _features(self, estimate: AffectEstimate) -> Tensor:
        return (self._raw_features(estimate) - self.feature_mean_) / self.feature_scale_

    def _build(self, in_features: int) -> None:
        with local_params():
            self.net_ = _PriorNet(in_features, self.manifold.n_latent, self.hidden,
                                  self.min_scale).to(self._device)
            like = {"dtype": NETWORK_DTYPE, "device": self._device}
            self.register_buffer("feature_mean_", torch.zeros(in_features, **like))
            self.register_buffer("feature_scale_", torch.ones(in_features, **like))

    def _anchor(self, estimate: AffectEstimate) -> Tensor | None:
        """(B, K) g^-1(mean), the estimate's latent point (``None`` for a learned location)."""
        if self.location == "learned":
            return None
        return preimage(self.manifold, estimate.mean.clamp(-1.0, 1.0))

    def _centre(self, anchor: Tensor, target: Tensor, tril: Tensor, eps: Tensor,
                steps: int = _CENTRE_STEPS) -> Tensor:
        """(B, K) the m whose N(m, L L^T) decodes (with draws eps) to mean ``target`` (B, 2),
        from ``anchor``."""
        rows = max(1, _CENTRE_POINTS // eps.shape[0])
        return torch.cat([preimage(self.manifold, target[i:i + rows], steps,
                                   start=anchor[i:i + rows], spread=(tril[i:i + rows], eps))
                          for i in range(0, anchor.shape[0], rows)])

    def _latent(self, features: Tensor, anchor: Tensor | None, target: Tensor | None = None,
                eps: Tensor | None = None, steps: int = _CENTRE_STEPS
                ) -> tuple[Tensor, Tensor]:
        """loc (B, K) and scale_tril (B, K, K) of p_phi(z | e).

        ``location="learned"``: both from phi. ``"regression"``: S = L L^T from phi, m the
        centre whose decoded draws eps (S', K) average to ``target`` (B, 2), the estimate's
        mean, ``steps`` Gauss-Newton steps from the anchor a = g^-1(mean) (or a previous
        centre); m carries no gradient.
        ``"measurement"``: p(z) = N(0, I) conditioned on a read as a = z + v, v ~ N(0, R),
        with R's Cholesky factor L from phi: S = I - (R + I)^-1, m = (R + I)^-1 a. S is formed
        without that subtraction, which loses a small eigenvalue of S in float32: by Woodbury,
        S = L (I + L^T L)^-1 L^T, whose Cholesky factor is L C with C C^T = (I + L^T L)^-1 (a
        product of lower-triangular factors with positive diagonals).
        """
        loc, tril = self.net_(features)
        if anchor is None:
            return loc, tril
        if self.location == "regression":
            return self._centre(anchor, target, tril, eps, steps), tril
        return _measured(anchor, tril)

    def forward(self, estimate: AffectEstimate) -> dist.MultivariateNormal:
        """p_phi(z | e): batch shape (B,), event shape (K,); what calling the prior gives."""
        self._check_fitted()
        estimate = self._check_estimate(estimate)
        with torch.no_grad():
            loc, tril = self._latent(self._features(estimate), self._anchor(estimate),
                                     estimate.mean.clamp(-1.0, 1.0), self._eps(None))
        return dist.MultivariateNormal(loc, scale_tril=tril)

    def __call__(self, estimate: AffectEstimate) -> dist.MultivariateNormal:
        """The prior N(m, S) over z for a batch of estimates.

        Args:
            estimate: An :class:`~coreaffect.hidden_route.AffectEstimate` with mean (B, 2),
                var (B, 2) and embedding (B, D).

        Returns:
            A ``MultivariateNormal`` with batch shape (B,) and event shape (K,).
        """
        with local_params():
            return super().__call__(estimate)

    # -- the Pyro program ----------------------------------------------------------------------

    def _model(self, loc: Tensor, tril: Tensor, labels: Tensor, size: int) -> None:
        """p_phi(z | e) p(y | z) for a minibatch: the priors' loc (B, K) and scale_tril
        (B, K, K) (from :meth:`_latent`), (B, 2) labels."""
        batch = labels.shape[0]
        decoder = self.manifold.decoder_
        with pyro.plate("pairs", size, subsample=torch.arange(batch, device=labels.device)):
            if self.kl_weight > 0:
                pyro.factor("kl_to_marginal", -self.kl_weight * _kl_to_standard(loc, tril))
            z = pyro.sample("z", dist.MultivariateNormal(loc, scale_tril=tril))
            pyro.sample("y", dist.Normal(decoder(z), decoder.noise_scale).to_event(1),
                        obs=labels)

    def _guide(self, loc: Tensor, tril: Tensor, labels: Tensor, size: int) -> None:
        """r(z | y, e) ~ q(z | y) p_phi(z | e) / p(z), a full-covariance Gaussian."""
        batch = labels.shape[0]
        enc_loc, enc_scale = self.manifold.encoder_(labels)
        # q(z | y) / p(z) for diagonal q and p(z) = N(0, I): a Gaussian "likelihood" of z with
        # precision 1 / sigma^2 - 1 (floored: where the encoder is as wide as p(z), y says
        # nearly nothing about z)
        precision = (enc_scale.pow(-2) - 1.0).clamp(min=1e-3)  # (B, K)
        observed = enc_loc * enc_scale.pow(-2) / precision  # (B, K)
        post_loc, post_tril = _condition(loc, tril, observed, precision.reciprocal())
        with pyro.plate("pairs", size, subsample=torch.arange(batch, device=labels.device)):
            pyro.sample("z", dist.MultivariateNormal(post_loc, scale_tril=post_tril))

    # -- fitting -------------------------------------------------------------------------------

    def fit(self, estimates: AffectEstimate, labels: Tensor | np.ndarray) -> HiddenRoutePrior:
        """Fit phi by SVI on pairs of estimates and true labels; resets the calibration.

        Args:
            estimates: An AffectEstimate with mean (B, 2), var (B, 2), embedding (B, D).
            labels: (B, 2) the true (valence, arousal) of each estimate.

        Returns:
            self.
        """
        self._validate_hyperparameters()
        estimates = self._check_estimate(estimates, "estimates", new_fit=True)
        y = _check_labels(labels, self._device)
        if y.shape[0] != estimates.mean.shape[0]:
            raise CoreAffectError(f"estimates ({estimates.mean.shape[0]}) and labels "
                                  f"({y.shape[0]}) must have the same length")
        if "net_" in self._modules:  # refitting, on valid data: forget the previous fit
            del self._modules["net_"]
        raw = self._raw_features(estimates)  # (B, F)
        anchors = self._anchor(estimates)  # (B, K) or None
        targets = estimates.mean.clamp(-1.0, 1.0)
        size = raw.shape[0]
        batch = min(self.batch_size, size)
        elbo = TraceMeanField_ELBO()
        with seeded(int(self.random_state), self._device), local_params():
            self._build(raw.shape[1])
            self.feature_mean_.copy_(raw.mean(0))
            scale = raw.std(0, unbiased=False)
            self.feature_scale_.copy_(torch.where(scale > 1e-6, scale, torch.ones_like(scale)))
            features = (raw - self.feature_mean_) / self.feature_scale_
            self.embedding_dim_ = estimates.embedding.shape[1] if self.use_embedding else 0
            self.calibration_scale_ = (1.0, 1.0)
            self.calibration_level_ = None
            optimizer = torch.optim.Adam(self.net_.parameters(), lr=self.learning_rate)
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
                optimizer, self.num_steps, eta_min=0.05 * self.learning_rate)
            eps = self._eps(self.random_state, min(self.num_samples, _FIT_DRAWS))
            history = []
            for _ in range(self.num_steps):
                index = torch.randint(size, (batch,), device=self._device)
                optimizer.zero_grad()
                anchor = None if anchors is None else anchors[index]
                loc, tril = self._latent(features[index], anchor, targets[index], eps,
                                         _FIT_CENTRE_STEPS)
                if self.location == "regression":  # each pair's centre moves on from here
                    anchors[index] = loc
                loss = elbo.differentiable_loss(self._model, self._guide, loc, tril, y[index],
                                                size)
                loss.backward()
                optimizer.step()
                schedule.step()
                history.append(loss.item() / size)
        self.net_.requires_grad_(False)
        self.eval()
        self.loss_history_ = history
        logger.info("HiddenRoutePrior: fitted on %d pairs, final loss %.4f nats per pair",
                    size, history[-1] if history else math.nan)
        return self

    # -- prediction and calibration ------------------------------------------------------------

    def _eps(self, random_state: int | torch.Generator | None, count: int | None = None
             ) -> Tensor:
        """(S, K) standard normal draws in antithetic pairs, S = ``count`` or ``num_samples``.

        The pairs make the draws' mean exactly 0. When there are at least K pairs the draws are
        also whitened, h -> h L^-T with L L^T = (1/h) sum h h^T, so that their second moment is
        exactly I: z = m + chol(S) eps then has exactly the mean m and covariance S, and a
        decoder that is linear over the prior's spread is moment-matched exactly. (At seed 0,
        128 raw pairs have a variance of 0.79 along the first axis.)
        """
        gen = _generator(self.random_state if random_state is None else random_state,
                         self._device)
        half = torch.randn(((count or self.num_samples) // 2, self.manifold.n_latent),
                           generator=gen, dtype=NETWORK_DTYPE, device=gen.device)
        if half.shape[0] >= half.shape[1]:  # in float64 on the CPU (MPS has no float64)
            h = half.to("cpu", torch.float64)
            root = torch.linalg.cholesky(h.T @ h / h.shape[0])  # (K, K)
            half = torch.linalg.solve_triangular(root, h.T, upper=False).T
        half = half.to(self._device, NETWORK_DTYPE)
        return torch.cat([half, -half], 0)

    def _decoded(self, loc: Tensor, tril: Tensor, eps: Tensor) -> DecodedPrior:
        """Moment-matched p(y | e) from N(loc (B, K), tril tril^T) with draws eps (S, K)."""
        noise = self.manifold.noise_scale_.to(loc) ** 2
        chunk = max(1, (1 << 20) // eps.shape[0])  # bound the (B, S, 2) draws in memory
        means, covs = [], []
        for start in range(0, loc.shape[0], chunk):
            m, t = loc[start:start + chunk], tril[start:start + chunk]
            z = m[:, None, :] + (t[:, None] @ eps[None, :, :, None])[..., 0]  # (B, S, K)
            y = self.manifold._g(z)  # (B, S, 2)
            mean = y.mean(1)
            centred = y - mean[:, None, :]
            means.append(mean)
            covs.append(centred.transpose(1, 2) @ centred / eps.shape[0] + torch.diag(noise))
        return DecodedPrior(torch.cat(means), torch.cat(covs))

    def predict(self, estimate: AffectEstimate,
                random_state: int | torch.Generator | None = None) -> DecodedPrior:
        """The prior decoded to valence-arousal space, as a calibrated Gaussian.

        Args:
            estimate: An AffectEstimate with mean (B, 2), var (B, 2), embedding (B, D).
            random_state: Seed or generator of the latent draws (``None``: the estimator's
                seed); equal seeds give equal predictions.

        Returns:
            A :class:`DecodedPrior` with mean (B, 2) and cov (B, 2, 2), the covariance scaled by
            the calibration factors (:meth:`calibrate`).
        """
        return self.decode(self(estimate), random_state)

    def decode(self, latent: dist.MultivariateNormal,
               random_state: int | torch.Generator | None = None) -> DecodedPrior:
        """Priors already computed by calling the prior, decoded as :meth:`predict` does.

        Args:
            latent: The priors, batch shape (B,), event shape (K,).
            random_state: As for :meth:`predict`.

        Returns:
            A :class:`DecodedPrior` with mean (B, 2) and cov (B, 2, 2), calibrated.
        """
        self._check_fitted()
        k = self.manifold.n_latent
        if (not isinstance(latent, torch.distributions.MultivariateNormal)
                or latent.event_shape != (k,)
                or len(latent.batch_shape) != 1):
            raise CoreAffectError(f"latent must be a MultivariateNormal of batch shape (B,) and "
                                  f"event shape (K,) = ({k},), got {latent!r}")
        loc, tril = (t.to(self._device, NETWORK_DTYPE) for t in (latent.loc, latent.scale_tril))
        with torch.no_grad():
            decoded = self._decoded(loc, tril, self._eps(random_state))
            root = torch.tensor(self.calibration_scale_, dtype=decoded.cov.dtype,
                                device=decoded.cov.device).sqrt()  # (2,)
            return DecodedPrior(decoded.mean, decoded.cov * root[:, None] * root[None, :])

    def calibrate(self, estimates: AffectEstimate, labels: Tensor | np.ndarray,
                  level: float | Sequence[float] = 0.9) -> HiddenRoutePrior:
        """Choose the calibration factors (c_v, c_a) on validation pairs (not those of :meth:`fit`).

        For one ``level``, each dimension d gets the factor on its decoded variance that makes
        the central interval at that level, ``|y_d - mean_d| <= z_{(1 + level)/2}
        sqrt(c_d cov_dd)``, cover a fraction ``level`` of the labels, as nearly as the labels
        allow: c_d is the squared ``level``-quantile of the standardised errors
        ``|y_d - mean_d| / sqrt(cov_dd)`` over ``z_{(1 + level)/2}``, moved within its step off
        any error. For several levels (say 0.5 and 0.9), one Gaussian width rarely fits all of
        them when the errors have heavier tails than a Gaussian; c_d is then the factor that
        makes the largest coverage error over the levels smallest, found exactly
        (:func:`~coreaffect.calibration.variance_factor`). The decoded means and the
        correlation of valence and arousal are left as they are.

        Args:
            estimates: An AffectEstimate with mean (B, 2), var (B, 2), embedding (B, D).
            labels: (B, 2) their true labels.
            level: Nominal coverage in (0, 1), or several.

        Returns:
            self, with ``calibration_scale_`` and ``calibration_level_`` (the level, or the
            list of levels) set.
        """
        self._check_fitted()
        single = isinstance(level, (bool, str, bytes)) or np.ndim(level) == 0
        try:
            levels = [check_level(level)] if single else [check_level(x) for x in level]
        except (CoreAffectError, TypeError):
            raise InputError(f"level must be in (0, 1), or a list of such, got {level!r}"
                             ) from None
        if not levels:
            raise InputError("level must be in (0, 1), or a list of such, got none")
        estimates = self._check_estimate(estimates, "estimates")
        y = _check_labels(labels, self._device)
        if y.shape[0] != estimates.mean.shape[0]:
            raise CoreAffectError(f"estimates ({estimates.mean.shape[0]}) and labels "
                                  f"({y.shape[0]}) must have the same length")
        prior = self(estimates)
        with torch.no_grad():
            decoded = self._decoded(prior.loc, prior.scale_tril, self._eps(None))
            sd = torch.diagonal(decoded.cov, dim1=-2, dim2=-1).sqrt()  # (B, 2)
            errors = ((y - decoded.mean).abs() / sd).double().cpu().numpy()  # (B, 2)
        self.calibration_scale_ = tuple(variance_factor(errors[:, d], levels)
                                        for d in range(errors.shape[1]))
        self.calibration_level_ = levels[0] if single else levels
        logger.info("HiddenRoutePrior: calibrated at level %s, variance factors %.4g "
                    "(valence), %.4g (arousal)", self.calibration_level_,
                    *self.calibration_scale_)
        return self

    # -- persistence ---------------------------------------------------------------------------

    def save(self, directory: str | Path, name: str = "prior",
             manifold_name: str | None = None) -> None:
        """Write the prior (``name``) and its manifold (``manifold_name``) to a run directory,
        each as safetensors weights and a JSON description.

        ``manifold_name=None`` names the manifold ``"manifold"`` beside the default ``"prior"``
        and ``name + "_manifold"`` otherwise, so that priors saved under other names keep their
        own manifolds. The prior records its manifold's hash: :meth:`load` refuses a manifold
        saved over it since.
        """
        self._check_fitted()
        if manifold_name is None:
            manifold_name = "manifold" if name == "prior" else f"{name}_manifold"
        self.manifold.save(directory, manifold_name)
        config = {"class": "HiddenRoutePrior", "manifold": manifold_name,
                  "manifold_sha256": saved_digest(directory, manifold_name),
                  "in_features": int(self.feature_mean_.shape[0]),
                  "embedding_dim": self.embedding_dim_,
                  "calibration_scale": list(self.calibration_scale_),
                  "calibration_level": self.calibration_level_,
                  "whitened_draws": True,  # see load: earlier calibrations used raw draws
                  **self._hyperparameters()}
        save_state(directory, name, dict(self.state_dict()), config)

    @classmethod
    def load(cls, directory: str | Path, name: str = "prior",
             device: str | torch.device = "cpu") -> HiddenRoutePrior:
        """Rebuild a prior saved by :meth:`save`, with its manifold, on ``device``."""
        tensors, config = load_state(directory, name, device)
        where = f"{Path(directory) / name}.json"
        if config.get("class") != "HiddenRoutePrior":
            raise CoreAffectError(f"{where}: not a HiddenRoutePrior (class "
                                  f"{config.get('class')!r})")
        manifold_name = config.get("manifold")
        if not config.get("whitened_draws"):
            logger.warning("%s: calibrated with the raw latent draws of earlier versions; its "
                           "decoded variances now differ by several percent (refit the later "
                           "stages, coreaffect refit, to recalibrate)", where)
        recorded = config.get("manifold_sha256")  # runs saved before it was recorded have none
        if recorded is not None and not (Path(directory) / f"{manifold_name}.json").is_file():
            raise CoreAffectError(f"{where}: its manifold "
                                  f"{Path(directory) / str(manifold_name)}.json is missing")
        digest = saved_digest(directory, manifold_name)
        if recorded is not None and digest is None:  # unreadable: loading it says what is wrong
            AffectManifold.load(directory, manifold_name, device)
        if recorded is not None and digest != recorded:
            raise CoreAffectError(
                f"{where}: was fitted with another manifold than "
                f"{Path(directory) / str(manifold_name)}.json now holds (saved over it since); "
                "save a prior and its manifold together, or refit the prior")
        try:
            manifold = AffectManifold.load(directory, manifold_name, device)
            hyper = {k: config[k] for k in ("hidden", "use_embedding", "kl_weight", "num_steps",
                                            "batch_size", "learning_rate", "min_scale",
                                            "num_samples", "random_state")}
            # before it was a choice: learned; "estimate" was the name of "measurement"
            location = config.get("location", "learned")
            hyper["location"] = "measurement" if location == "estimate" else location
            prior = cls(manifold, **hyper, device=device)
            prior._validate_hyperparameters()
            with seeded(0, prior._device):  # the layers' initial draws are overwritten
                prior._build(int(config["in_features"]))
            prior.load_state_dict(tensors)
            prior.embedding_dim_ = int(config["embedding_dim"])
            scale = config["calibration_scale"]
            prior.calibration_scale_ = tuple(float(c) for c in (
                scale if isinstance(scale, list) else [scale, scale]))
            prior.calibration_level_ = config["calibration_level"]
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise CoreAffectError(f"{where}: does not describe the saved weights ({err})"
                                  ) from None
        prior.net_.requires_grad_(False)
        prior.loss_history_ = []
        return prior.eval()
