"""The latent valence-arousal manifold: a small variational auto-encoder of labels (or a GP-LVM),
in Pyro.

Valence-arousal labels do not fill the square [-1, 1]^2: they lie on a curved, boomerang-shaped
region (arousal rises with the magnitude of valence). :class:`AffectManifold` learns that region
as the image of a latent space (the paper's Fig. 3). The model, with K = ``n_latent`` and
y = (valence, arousal)::

    z ~ p(z) = N(0, I_K)                       latent core affect, z in R^K
    y | z ~ p(y | z) = N(g(z), diag(s^2))      a label, y in R^2

* g: R^K -> (-1, 1)^2 is the decoder, an MLP K -> H -> H -> 2 with tanh hidden units and a tanh
  output, so that the manifold {g(z)} stays in the label range; H = ``hidden``. With
  ``backend="gplvm"``, g is a Gaussian process's posterior mean instead (:mod:`coreaffect.gplvm`).
* s (2,) is the label noise of each dimension, learned, and at least ``min_noise_scale`` (with
  ``"gplvm"``, one noise shared by both dimensions, as Pyro's sparse GP has it).
* q(z | y) = N(mu(y), diag(sigma(y)^2)) is the amortised encoder, an MLP 2 -> H -> H -> 2K
  (softplus on the scales).

:meth:`AffectManifold.fit` maximises the evidence lower bound (ELBO) by stochastic variational
inference (SVI), jointly over g, s and the encoder (with ``"gplvm"``: over the encoder alone,
once the GP-LVM has been fitted)::

    ELBO = sum_i E_{q(z | y_i)}[log p(y_i | z)] - KL(q(z | y_i) || p(z)),

with the KL term in closed form (Pyro's ``TraceMeanField_ELBO``), minibatches scaled to the full
data set by ``pyro.plate`` subsampling, one reparameterised sample per label, and Adam with a
cosine-decaying learning rate.

:func:`preimage` inverts the decoder: the latent point whose decoded label is closest to a given
one (the prior anchors the hidden route's estimates there).

Ownership of parameters: the decoder and encoder are ``PyroModule`` s built and run with Pyro's
``module_local_params`` setting, so each estimator keeps its parameters to itself and Pyro's
global parameter store is never read or written (fitting one manifold cannot change another,
and code of the caller that uses ``pyro.param`` is not disturbed). The setting is switched on
only for the duration of each call, never left on.

Randomness: :meth:`~AffectManifold.fit` seeds the initial weights, the minibatches and the ELBO's
samples from ``random_state`` inside :func:`torch.random.fork_rng`, so the caller's global random
state is left as it was; the sampling methods take their own ``random_state``.

References:
    Kingma, D. P., Welling, M. (2014). Auto-encoding variational Bayes. ICLR 2014.

    Burda, Y., Grosse, R., Salakhutdinov, R. (2016). Importance weighted autoencoders.
    ICLR 2016. (the estimate of :meth:`AffectManifold.log_prob`)

    Vitale, J., Williams, M.-A., Johnston, B., Boccignone, G. (2014). Affective facial expression
    processing via simulation: a probabilistic model. arXiv:1411.0582. (a GP-LVM manifold of
    affect: ``backend="gplvm"``; the default neural decoder has the same role)
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.infer import TraceMeanField_ELBO
from pyro.nn import PyroModule, PyroParam
from torch import Tensor, nn

from coreaffect.checkpoint import load_state, save_state
from coreaffect.config import _is_integer, _is_real
from coreaffect.devices import NETWORK_DTYPE, check_device, seeded, torch_seed
from coreaffect.errors import CoreAffectError, InputError
from coreaffect.gplvm import GPDecoder, fit_gplvm
from coreaffect.pyro_modules import LocalPyroModule, local_params

__all__ = ["AffectManifold", "preimage"]

BACKENDS = ("vae", "gplvm")

logger = logging.getLogger(__name__)

LABEL_TOLERANCE = 1e-3  # labels may exceed [-1, 1] by rounding, not more
_PREIMAGE_STEPS = 20  # Gauss-Newton steps of the preimage g^-1(mean): converged to ~1e-6
_PREIMAGE_DAMPING = 1e-6  # Levenberg-Marquardt damping of those steps (K > 2, flat g)
_LATENT_RADIUS = 4.0  # preimages stay within |z| <= 4, where p(z) is down to e^-8 of its peak


def _generator(random_state: int | torch.Generator, device: torch.device) -> torch.Generator:
    if isinstance(random_state, torch.Generator):
        return random_state
    if not _is_integer(random_state):  # numpy's integers too, a bool or 1.5 not
        raise InputError(f"random_state must be an integer seed or a torch.Generator, got "
                         f"{random_state!r}")
    return torch.Generator(device=device).manual_seed(torch_seed(random_state))


def _positive_int(value: Any, name: str) -> int:
    """``value`` as an int when it is a positive integer (a numpy one will do, a bool will not);
    CoreAffectError naming ``name`` otherwise."""
    if not _is_integer(value) or value < 1:
        raise CoreAffectError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _positive_number(value: Any, name: str, zero: bool = False) -> None:
    """CoreAffectError naming ``name`` unless ``value`` is a finite real number > 0 (>= 0 with
    ``zero``); a bool is not a number here."""
    if not _is_real(value) or value < 0 or (value == 0 and not zero):
        raise CoreAffectError(f"{name} must be a finite number {'>= 0' if zero else '> 0'}, "
                              f"got {value!r}")


def _as_tensor(x: Any, name: str, device: torch.device) -> Tensor:
    """A float32 tensor on ``device`` from a tensor or array; a clear error otherwise."""
    if isinstance(x, Tensor):
        return x.detach().to(device=device, dtype=NETWORK_DTYPE)
    if isinstance(x, np.ndarray):
        try:
            return torch.as_tensor(x, dtype=NETWORK_DTYPE, device=device)
        except (TypeError, ValueError):  # an object or string array
            raise InputError(f"{name} must hold numbers, got an array of {x.dtype}") from None
    raise CoreAffectError(f"{name} must be a torch tensor or numpy array, got {type(x).__name__}")


def _check_labels(labels: Any, device: torch.device, name: str = "labels",
                  bounded: bool = True) -> Tensor:
    """(B, 2) finite labels (in [-1, 1] if ``bounded``) as float32 on ``device``."""
    y = _as_tensor(labels, name, device)
    if y.ndim != 2 or y.shape[-1] != 2:
        raise CoreAffectError(f"{name} must have shape (B, 2), (valence, arousal) on the last "
                              f"axis; got {tuple(y.shape)}")
    if y.shape[0] == 0:
        raise CoreAffectError(f"{name} is empty")
    bad = ~torch.isfinite(y).all(-1)
    if bad.any():
        raise CoreAffectError(f"{name} holds {int(bad.sum())} row(s) with NaN or infinite values "
                              f"(first at row {int(bad.nonzero()[0, 0])}); drop unlabelled frames "
                              "first")
    if bounded and y.abs().max() > 1 + LABEL_TOLERANCE:
        raise CoreAffectError(f"{name} must lie in [-1, 1]; found {float(y.abs().max()):.4g} in "
                              "absolute value (rescale the annotations)")
    return y


class _MLP(LocalPyroModule):
    """in -> H -> H -> out, tanh hidden units; the output is left linear."""

    def __init__(self, in_features: int, hidden: int, out_features: int) -> None:
        super().__init__()
        self.layer1 = PyroModule[nn.Linear](in_features, hidden, dtype=NETWORK_DTYPE)
        self.layer2 = PyroModule[nn.Linear](hidden, hidden, dtype=NETWORK_DTYPE)
        self.layer3 = PyroModule[nn.Linear](hidden, out_features, dtype=NETWORK_DTYPE)

    def forward(self, x: Tensor) -> Tensor:
        return self.layer3(torch.tanh(self.layer2(torch.tanh(self.layer1(x)))))


class _Decoder(LocalPyroModule):
    """g(z) = tanh(MLP(z)), (..., K) -> (..., 2), and the label noise s (2,)."""

    def __init__(self, n_latent: int, hidden: int, min_noise_scale: float) -> None:
        super().__init__()
        self.net = _MLP(n_latent, hidden, 2)
        # start the noise at a tenth of the label range: wide enough for early training
        self.noise_scale = PyroParam(torch.full((2,), 0.1, dtype=NETWORK_DTYPE),
                                     constraint=constraints.greater_than(min_noise_scale))

    def forward(self, z: Tensor) -> Tensor:
        return torch.tanh(self.net(z))


class _Encoder(LocalPyroModule):
    """q(z | y): (..., 2) -> loc (..., K), scale (..., K)."""

    def __init__(self, n_latent: int, hidden: int) -> None:
        super().__init__()
        self.n_latent = n_latent
        self.net = _MLP(2, hidden, 2 * n_latent)

    def forward(self, y: Tensor) -> tuple[Tensor, Tensor]:
        out = self.net(y)
        loc, raw = out[..., :self.n_latent], out[..., self.n_latent:]
        return loc, nn.functional.softplus(raw) + 1e-4


class AffectManifold:
    """A learned latent manifold of valence-arousal labels; see the module docstring for the model.

    Args:
        n_latent: K, the latent dimension.
        backend: The decoder: ``"vae"``, the neural decoder fitted jointly with the encoder, or
            ``"gplvm"``, a Gaussian process (:mod:`coreaffect.gplvm`) fitted first, after which
            the encoder is fitted to it.
        hidden: H, the width of the encoder's hidden layers, and of the decoder's (``"vae"``).
        inducing_points: M, the inducing inputs of the Gaussian process (``"gplvm"``).
        num_steps: SVI steps of :meth:`fit` (``"gplvm"``: of each of the GP-LVM's two starts,
            then of the encoder).
        batch_size: Labels per SVI step, drawn with replacement (as many as there are labels
            when there are fewer).
        learning_rate: Adam's initial learning rate, decayed to 5% of it on a cosine (``None``:
            0.01 for ``"vae"``, 0.1 for ``"gplvm"``, whose latents and kernel need larger steps).
        min_noise_scale: Floor of the label noise s: the annotation noise of real labels is
            larger, and the floor keeps the likelihood bounded when labels repeat exactly.
        random_state: Seed of the initial weights, minibatches and ELBO samples, and the default
            seed of the sampling methods.
        device: Where the networks live and compute (float32).

    Attributes:
        decoder_: The decoder ``PyroModule`` g, with the label noise ``decoder_.noise_scale``
            (a :class:`~coreaffect.gplvm.GPDecoder` for ``"gplvm"``).
        encoder_: The encoder ``PyroModule`` of q(z | y).
        loss_history_: The negative ELBO per label (nats) after each SVI step (``"gplvm"``: the
            steps of the GP-LVM's start that was kept, then the encoder's).
    """

    def __init__(self, n_latent: int = 2, *, backend: str = "vae", hidden: int = 64,
                 inducing_points: int = 32, num_steps: int = 3000, batch_size: int = 256,
                 learning_rate: float | None = None, min_noise_scale: float = 0.01,
                 random_state: int = 0, device: str | torch.device = "cpu") -> None:
        self.n_latent = n_latent
        self.backend = backend
        self.hidden = hidden
        self.inducing_points = inducing_points
        self.num_steps = num_steps
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.min_noise_scale = min_noise_scale
        self.random_state = random_state
        self.device = device

    # -- construction and checks ---------------------------------------------------------------

    def _hyperparameters(self) -> dict[str, Any]:
        return {"n_latent": self.n_latent, "backend": self.backend, "hidden": self.hidden,
                "inducing_points": self.inducing_points, "num_steps": self.num_steps,
                "batch_size": self.batch_size, "learning_rate": self._learning_rate,
                "min_noise_scale": self.min_noise_scale, "random_state": self.random_state}

    def _validate_hyperparameters(self) -> None:
        if self.backend not in BACKENDS:
            raise CoreAffectError(f"AffectManifold: backend must be one of {BACKENDS}, got "
                                  f"{self.backend!r}")
        for key in ("n_latent", "hidden", "inducing_points", "num_steps", "batch_size"):
            setattr(self, key, _positive_int(getattr(self, key), f"AffectManifold: {key}"))
        _positive_number(self._learning_rate, "AffectManifold: learning_rate")
        _positive_number(self.min_noise_scale, "AffectManifold: min_noise_scale")
        if not _is_integer(self.random_state):  # numpy's too
            raise CoreAffectError(f"AffectManifold: random_state must be an integer seed, got "
                                  f"{self.random_state!r}")

    @property
    def _device(self) -> torch.device:
        return check_device(self.device)

    @property
    def _learning_rate(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return 0.1 if self.backend == "gplvm" else 1e-2

    def _build(self, inducing_points: int | None = None) -> None:
        """New networks; the GP decoder with ``inducing_points`` (default: the hyperparameter)."""
        with local_params():
            if self.backend == "gplvm":
                self.decoder_ = GPDecoder(self.n_latent, inducing_points or self.inducing_points,
                                          self.min_noise_scale).to(self._device)
            else:
                self.decoder_ = _Decoder(self.n_latent, self.hidden, self.min_noise_scale).to(
                    self._device)
            self.encoder_ = _Encoder(self.n_latent, self.hidden).to(self._device)

    def _check_fitted(self) -> None:
        if not hasattr(self, "decoder_"):
            raise CoreAffectError("this AffectManifold is not fitted yet: call fit(labels) or "
                                  "AffectManifold.load(directory) first")

    def _check_latent(self, z: Any) -> Tensor:
        z = _as_tensor(z, "z", self._device)
        if z.ndim < 1 or z.shape[-1] != self.n_latent:
            raise CoreAffectError(f"z must have shape (..., K) with K = {self.n_latent}, got "
                                  f"{tuple(z.shape)}")
        if not torch.isfinite(z).all():
            raise CoreAffectError("z holds NaN or infinite values")
        return z

    # -- the Pyro program ----------------------------------------------------------------------

    def _model(self, labels: Tensor, size: int) -> None:
        """p(z) p(y | z) for a minibatch ``labels`` (B, 2) out of ``size`` labels."""
        batch = labels.shape[0]
        zeros = labels.new_zeros(batch, self.n_latent)
        with pyro.plate("labels", size, subsample=torch.arange(batch, device=labels.device)):
            z = pyro.sample("z", dist.Normal(zeros, 1.0).to_event(1))
            pyro.sample("y", dist.Normal(self.decoder_(z), self.decoder_.noise_scale).to_event(1),
                        obs=labels)

    def _guide(self, labels: Tensor, size: int) -> None:
        """q(z | y) for the same minibatch."""
        batch = labels.shape[0]
        loc, scale = self.encoder_(labels)
        with pyro.plate("labels", size, subsample=torch.arange(batch, device=labels.device)):
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    # -- fitting -------------------------------------------------------------------------------

    def fit(self, labels: Tensor | np.ndarray) -> AffectManifold:
        """Fit decoder, label noise and encoder to labels by SVI.

        With ``backend="vae"`` all three are fitted together. With ``"gplvm"`` the GP-LVM
        (decoder and label noise) is fitted first, then the encoder alone, by the same ELBO with
        the decoder held fixed.

        Args:
            labels: (B, 2) valence-arousal labels in [-1, 1], without NaN.

        Returns:
            self.
        """
        self._validate_hyperparameters()
        y = _check_labels(labels, self._device)
        if self.backend == "gplvm" and y.shape[0] < 2:
            raise CoreAffectError(f"AffectManifold: the GP-LVM needs at least 2 labels, got "
                                  f"{y.shape[0]}")
        with seeded(int(self.random_state), self._device), local_params():
            self._build()
            history = []
            if self.backend == "gplvm":
                gen = _generator(self.random_state, self._device)
                self.decoder_, history = fit_gplvm(
                    y, self.n_latent, self.inducing_points, self.num_steps, self._learning_rate,
                    self.min_noise_scale, gen)
                params = list(self.encoder_.parameters())
            else:
                params = [*self.decoder_.parameters(), *self.encoder_.parameters()]
            history += self._svi(params, y)
        self._freeze()
        self.loss_history_ = history
        logger.info("AffectManifold (%s): fitted on %d labels, final loss %.4f nats per label, "
                    "label noise %s", self.backend, y.shape[0],
                    history[-1] if history else math.nan, self.noise_scale_.tolist())
        return self

    def _svi(self, params: list[Tensor], y: Tensor) -> list[float]:
        """Maximise the ELBO over ``params`` with minibatches of ``y`` (N, 2); the negative ELBO
        per label after each step."""
        size = y.shape[0]
        batch = min(self.batch_size, size)
        elbo = TraceMeanField_ELBO()
        optimizer = torch.optim.Adam(params, lr=self._learning_rate)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, self.num_steps, eta_min=0.05 * self._learning_rate)
        history = []
        for _ in range(self.num_steps):
            index = torch.randint(size, (batch,), device=self._device)
            optimizer.zero_grad()
            loss = elbo.differentiable_loss(self._model, self._guide, y[index], size)
            loss.backward()
            optimizer.step()
            schedule.step()
            history.append(loss.item() / size)
        return history

    def _freeze(self) -> None:
        for module in (self.decoder_, self.encoder_):
            module.requires_grad_(False)
            module.eval()

    # -- the fitted distributions --------------------------------------------------------------

    @property
    def noise_scale_(self) -> Tensor:
        """(2,) the learned label noise s of (valence, arousal)."""
        self._check_fitted()
        with torch.no_grad():
            return self.decoder_.noise_scale.detach().clone()

    def _g(self, z: Tensor) -> Tensor:
        """g(z), differentiable: (..., K) -> (..., 2) (in (-1, 1) for ``"vae"``); no checks, for
        composing."""
        with local_params():
            return self.decoder_(z)

    def encode(self, y: Tensor | np.ndarray) -> dist.Independent:
        """The amortised posterior q(z | y).

        Args:
            y: (B, 2) labels (any real values: the encoder is defined on all of R^2).

        Returns:
            A diagonal Normal over z, of batch shape (B,) and event shape (K,); ``.mean``
            and ``.stddev`` are (B, K).
        """
        self._check_fitted()
        y = _check_labels(y, self._device, "y", bounded=False)
        with torch.no_grad(), local_params():
            loc, scale = self.encoder_(y)
        return dist.Normal(loc, scale).to_event(1)

    def decode(self, z: Tensor | np.ndarray) -> dist.Independent:
        """The label distribution p(y | z) = N(g(z), diag(s^2)).

        Args:
            z: (..., K) latents.

        Returns:
            A diagonal Normal over y, of batch shape (...) and event shape (2,); ``.mean`` is
            g(z).
        """
        self._check_fitted()
        z = self._check_latent(z)
        with torch.no_grad(), local_params():
            loc = self.decoder_(z)
        return dist.Normal(loc, self.noise_scale_.expand_as(loc)).to_event(1)

    def log_prob(self, y: Tensor | np.ndarray, num_samples: int = 64,
                 random_state: int | torch.Generator | None = None) -> Tensor:
        """Importance-sampled estimate of the marginal log density log p(y).

        p(y) = E_{z ~ r}[p(y | z) p(z) / r(z)], averaged over S = ``num_samples`` draws; the
        estimate is ``log mean_s w_s`` with the weights w_s in the bracket (Burda et al., 2016).
        The proposal is a defensive mixture (Hesterberg, 1995): ceil(S/2) draws from the encoder
        q(z | y) and the rest from p(z) = N(0, I), each weighed against the mixture
        ``r = (n_q q + n_p p) / S``. The encoder, trained on labels only, can miss the
        posterior of a point far from them (by tens of nats at any S); the prior's draws bound
        every weight there (where that posterior is a sliver, as the GP-LVM's off the label
        band, a few nats of error remain at S = 65,536), at the cost of more variance on the
        labels. exp of it is unbiased for p(y); the log is low in expectation (the ELBO at
        S = 1) and approaches log p(y) as S grows, not monotonically. The draws of
        all rows come from one seeded stream, (S, B, K) at once: the result is reproducible for
        a given seed and batch, and a row's estimate varies (by its Monte Carlo error) with its
        place in the batch. Independent draws per row keep the errors of a grid's rows
        independent, so that they average out when the density is integrated over the grid.

        Args:
            y: (B, 2) points of R^2 (labels, or a grid to integrate over).
            num_samples: S.
            random_state: Seed or generator of the draws (``None``: the estimator's seed).

        Returns:
            (B,) log p(y) in nats.
        """
        self._check_fitted()
        num_samples = _positive_int(num_samples, "num_samples")
        y = _check_labels(y, self._device, "y", bounded=False)
        q = self.encode(y)
        gen = _generator(self.random_state if random_state is None else random_state,
                         self._device)
        loc, scale = q.base_dist.loc, q.base_dist.scale
        eps = torch.randn((num_samples, *loc.shape), generator=gen, dtype=NETWORK_DTYPE,
                          device=gen.device).to(self._device)  # a caller's CPU generator too
        from_q = (num_samples + 1) // 2  # n_q draws from the encoder, then n_p from p(z)
        z = torch.cat([loc + scale * eps[:from_q], eps[from_q:]])  # (S, B, K)
        log_prior = dist.Normal(torch.zeros_like(z), 1.0).to_event(1).log_prob(z)  # (S, B)
        log_r = q.log_prob(z) + math.log(from_q)  # log (n_q q + n_p p), n_p = 0 at S = 1
        if num_samples > from_q:
            log_r = torch.logaddexp(log_r, log_prior + math.log(num_samples - from_q))
        log_w = self.decode(z).log_prob(y) + log_prior - (log_r - math.log(num_samples))
        return torch.logsumexp(log_w, 0) - math.log(num_samples)

    def sample(self, n: int, random_state: int | torch.Generator | None = None,
               noise: bool = True) -> Tensor:
        """Draws of labels from the fitted model, z ~ N(0, I), y ~ p(y | z).

        Args:
            n: Number of draws S.
            random_state: Seed or generator (``None``: the estimator's seed).
            noise: Add the label noise s; ``False`` returns the points g(z) on the manifold.

        Returns:
            (S, 2) valence-arousal draws.
        """
        self._check_fitted()
        n = _positive_int(n, "n")
        gen = _generator(self.random_state if random_state is None else random_state,
                         self._device)
        z = torch.randn((n, self.n_latent), generator=gen, dtype=NETWORK_DTYPE,
                        device=gen.device).to(self._device)  # a caller's CPU generator too
        p = self.decode(z)
        if not noise:
            return p.mean
        return p.mean + p.base_dist.scale * torch.randn(
            (n, 2), generator=gen, dtype=NETWORK_DTYPE, device=gen.device).to(self._device)

    # -- persistence ---------------------------------------------------------------------------

    def save(self, directory: str | Path, name: str = "manifold") -> None:
        """Write ``name.safetensors`` (weights) and ``name.json`` (hyperparameters) to a run
        directory."""
        self._check_fitted()
        tensors = {**{f"decoder.{k}": v for k, v in self.decoder_.state_dict().items()},
                   **{f"encoder.{k}": v for k, v in self.encoder_.state_dict().items()}}
        save_state(directory, name, tensors, {"class": "AffectManifold",
                                              **self._hyperparameters()})

    @classmethod
    def load(cls, directory: str | Path, name: str = "manifold",
             device: str | torch.device = "cpu") -> AffectManifold:
        """Rebuild a manifold saved by :meth:`save`, on ``device``; never unpickles."""
        tensors, config = load_state(directory, name, device)
        where = f"{Path(directory) / name}.json"
        if config.get("class") != "AffectManifold":
            raise CoreAffectError(f"{where}: not an AffectManifold (class "
                                  f"{config.get('class')!r})")
        try:
            hyper = {k: v for k, v in config.items() if k != "class"}
            manifold = cls(**hyper, device=device)
            manifold._validate_hyperparameters()
            inducing = tensors.get("decoder.inducing")
            with seeded(0, manifold._device):  # the layers' initial draws are overwritten
                manifold._build(None if inducing is None else inducing.shape[0])
            manifold.decoder_.load_state_dict(_strip(tensors, "decoder."))
            manifold.encoder_.load_state_dict(_strip(tensors, "encoder."))
        except (TypeError, RuntimeError) as err:
            raise CoreAffectError(f"{where}: does not describe the saved weights ({err})"
                                  ) from None
        manifold._freeze()
        manifold.loss_history_ = []
        return manifold


def preimage(manifold: AffectManifold, y: Tensor, steps: int = _PREIMAGE_STEPS, *,
             start: Tensor | None = None, spread: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """The latent point whose decoded label is closest to y: ``argmin_z |g(z) - y|^2``.

    Damped Gauss-Newton steps from the encoder's mean E_q[z | y] (or ``start``), each row on its
    own, in a trust region (radius 1 at first, the unit scale of p(z); a step that does not lower
    the row's residual is refused and its radius halved). For y inside the decoder's range the
    result decodes to y (to ~1e-6, except where g folds); outside it, to a nearer point than the
    encoder's mean does. With K > 2 the damping picks the solution nearest the start. Every
    iterate is kept within ``|z| <= 4`` (where p(z) = N(0, I) has fallen to e^-8 of its peak): a
    label at the edge of g's range has its preimage far out, where g is flat.

    With ``spread = (L, eps)`` the map is the decoded mean of a Gaussian instead of g itself:
    ``argmin_m |(1/S) sum_s g(m + L eps_s) - y|^2``, the centre m of N(m, L L^T) whose decoded
    draws average to y (the same draws eps for every row). Its steps take the Jacobian of g at
    the centre in place of the Jacobian of the average (exact for a linear g, and close while
    the spread is small against g's curvature); the residual and the acceptance of each step use
    the average itself.

    Args:
        manifold: A fitted :class:`~coreaffect.manifold.AffectManifold`.
        y: (B, 2) valence-arousal points.
        steps: Gauss-Newton steps.
        start: (B, K) starting points; ``None``: the encoder's mean.
        spread: ``None``, or L (B, K, K) and draws eps (S, K).

    Returns:
        (B, K) latents within the radius, no gradient, float32 on the manifold's device.
    """
    def into_ball(z: Tensor) -> Tensor:
        return z * (_LATENT_RADIUS / z.norm(dim=-1, keepdim=True).clamp(min=1e-12)).clamp(max=1)

    def decoded(z: Tensor) -> Tensor:  # (B, K) -> (B, 2), no gradient
        with torch.no_grad():
            if spread is None:
                return manifold._g(z)
            tril, eps = spread
            return manifold._g(z[:, None, :] + (tril[:, None] @ eps[None, :, :, None])[..., 0]
                               ).mean(1)

    y = _as_tensor(y, "y", manifold._device)
    if y.ndim != 2 or y.shape[-1] != 2:
        raise CoreAffectError(f"y must have shape (B, 2), got {tuple(y.shape)}")
    if spread is not None:
        spread = (_as_tensor(spread[0], "L", manifold._device),
                  _as_tensor(spread[1], "eps", manifold._device))
    if start is not None:
        start = _as_tensor(start, "start", manifold._device)
        if start.shape != (y.shape[0], manifold.n_latent):
            raise CoreAffectError(f"start must have shape (B, K) = ({y.shape[0]}, "
                                  f"{manifold.n_latent}), got {tuple(start.shape)}")
    z = into_ball(manifold.encode(y).mean if start is None else start).detach()
    out = decoded(z)  # (B, 2)
    eye = torch.eye(z.shape[-1], dtype=z.dtype, device=z.device)
    radius = torch.ones(z.shape[0], 1, dtype=z.dtype, device=z.device)
    for _ in range(steps):
        # the Jacobian needs autograd, under a caller's no_grad or inference_mode too (a tensor
        # made in inference mode takes part in autograd only as a copy made outside it)
        with torch.inference_mode(False), torch.enable_grad():
            point = z.clone().requires_grad_(True)
            centre = manifold._g(point)  # (B, 2)
            rows = [torch.autograd.grad(centre[:, i].sum(), point, retain_graph=i == 0)[0]
                    for i in range(centre.shape[-1])]
        jac = torch.stack(rows, 1)  # (B, 2, K): each row's output depends on that row only
        residual = out - y
        normal = jac.transpose(1, 2) @ jac + _PREIMAGE_DAMPING * eye
        step = torch.linalg.solve(normal, jac.transpose(1, 2) @ residual[..., None])[..., 0]
        step = step * (radius / step.norm(dim=-1, keepdim=True).clamp(min=1e-12)).clamp(max=1.0)
        trial = into_ball(z - step)
        trial_out = decoded(trial)
        better = ((trial_out - y).norm(dim=-1) < residual.norm(dim=-1))[:, None]
        z = torch.where(better, trial, z)
        out = torch.where(better, trial_out, out)
        radius = torch.where(better, radius, 0.5 * radius)
    return z


def _strip(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
