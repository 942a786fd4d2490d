"""NUTS over a few parameters, in coordinates whitened at the mode, with ArviZ output.

The dynamics' full-Bayes fit (``CoreAffectDynamics.fit(..., method="nuts")``) samples a
posterior over a dozen unconstrained parameters x whose scales differ by orders of magnitude.
:func:`whitened_nuts` runs Pyro's NUTS on w, with x = x_hat + A w, where x_hat is a point found
first near the posterior's mode (the dynamics give their maximum-likelihood point, which their
weak priors move little) and A A^T the inverse Hessian of the negative log-posterior there
(:func:`laplace_scale`, by central differences of its gradient). Near a Gaussian posterior, w is
close to N(0, I), so that the sampler's step size suits every direction. Each chain starts at w
drawn from N(0, 4 I), twice as wide as that approximation (Gelman and Rubin's overdispersed
starts), so that the split r_hat can see chains that did not mix; :func:`diagnostics` reads the
r_hat, the bulk ESS and the divergences of the draws.
:func:`named_nuts` does the same over named parameters of any shapes, and
:func:`normal_log_prior` is the independent Normal prior the dynamics put on them.

:func:`inference_data` wraps the draws as ArviZ data with ``az.from_dict``, whose signature
differs between arviz 0.x and 1.x (both work); :func:`posterior_values` and
:func:`sample_stat` read them back.

References:
    Hoffman, M. D., & Gelman, A. (2014). The No-U-Turn sampler. JMLR 15, 1593-1623.
    Gelman, A., & Rubin, D. B. (1992). Inference from iterative simulation using multiple
    sequences. Statistical Science 7, 457-472.
    Vehtari, A., Gelman, A., Simpson, D., Carpenter, B., & Buerkner, P.-C. (2021).
    Rank-normalization, folding, and localization: an improved R-hat for assessing convergence
    of MCMC. Bayesian Analysis 16, 667-718.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from coreaffect.devices import torch_seed
from coreaffect.errors import InputError
from coreaffect.state_space import _sym

__all__ = ["convergence_problems", "diagnostics", "inference_data", "laplace_scale",
           "named_nuts", "normal_log_prior", "posterior_values", "sample_stat", "whitened_nuts"]


_START_SPREAD = 2.0  # chains start at w ~ N(0, spread^2 I): overdispersed, see above


def laplace_scale(energy: Callable[[Tensor], Tensor], centre: Tensor, step: float = 1e-4,
                  min_curvature: float = 1e-2) -> Tensor:
    """A square root of the Laplace covariance of exp(-energy) at ``centre``.

    The Hessian of ``energy`` (P,) -> () is taken by central differences of its gradient,
    symmetrised, and its eigenvalues floored at ``min_curvature`` (a flat or non-convex direction
    gets a wide but finite scale).

    Args:
        energy: The negative log-density, differentiable.
        centre: (P,) the mode.
        step: Finite-difference step on each coordinate.
        min_curvature: Floor of the Hessian's eigenvalues.

    Returns:
        A (P, P) with A A^T = H^-1, so that w = A^-1 (x - centre) is near N(0, I) when the
        density is near Gaussian.
    """
    def grad(x: Tensor) -> Tensor:
        x = x.detach().requires_grad_()
        (g,) = torch.autograd.grad(energy(x), x)
        return g

    size = centre.shape[0]
    eye = torch.eye(size, dtype=centre.dtype, device=centre.device)
    columns = [(grad(centre + step * eye[i]) - grad(centre - step * eye[i])) / (2 * step)
               for i in range(size)]
    values, vectors = torch.linalg.eigh(_sym(torch.stack(columns, -1)))
    return vectors * values.clamp_min(min_curvature).rsqrt()


def whitened_nuts(energy: Callable[[Tensor], Tensor], centre: Tensor, *, num_samples: int,
                  num_warmup: int, num_chains: int, seed: int = 0,
                  target_accept_prob: float = 0.8) -> tuple[Tensor, Tensor]:
    """Draws from exp(-energy) by NUTS in coordinates whitened at ``centre``.

    The chains run one after the other, chain c seeded with ``seed * 1000 + c`` on a fork of
    torch's global generator (Pyro draws from it), so that the caller's random stream is left
    untouched and equal seeds give equal draws.

    Args:
        energy: The negative log-posterior of x (P,), differentiable.
        centre: (P,) its mode.
        num_samples: Draws kept per chain.
        num_warmup: Adaptation steps per chain.
        num_chains: Chains.
        seed: Seed of the chains.
        target_accept_prob: NUTS's target acceptance rate.

    Returns:
        ``(draws, diverging)``: x (C, S, P) and a bool flag per draw (C, S), True for a
        divergent transition.
    """
    from pyro.infer import MCMC, NUTS

    scale = laplace_scale(energy, centre)  # (P, P), x = centre + scale @ w

    def potential(free: dict[str, Tensor]) -> Tensor:
        return energy(centre + scale @ free["w"])

    chains, diverging = [], []
    with torch.random.fork_rng(devices=[]):
        for chain in range(num_chains):
            torch.default_generator.manual_seed(torch_seed(seed * 1000 + chain))  # the CPU's
            kernel = NUTS(potential_fn=potential, target_accept_prob=target_accept_prob)
            start = _START_SPREAD * torch.randn(centre.shape, dtype=centre.dtype
                                                ).to(centre.device)  # on the CPU, seeded
            mcmc = MCMC(kernel, num_samples=num_samples, warmup_steps=num_warmup,
                        initial_params={"w": start}, disable_progbar=True)
            mcmc.run()
            w = mcmc.get_samples()["w"]  # (S, P)
            chains.append(centre + w @ scale.T)
            flags = torch.zeros(num_samples, dtype=torch.bool)
            for index in mcmc.diagnostics().get("divergences", {}).get("chain 0", []):
                if 0 <= index < num_samples:
                    flags[index] = True
            diverging.append(flags)
    return torch.stack(chains), torch.stack(diverging)


def normal_log_prior(values: dict[str, Tensor], priors: dict[str, tuple[float, float]]
                     ) -> Tensor:
    """log prod N(value; loc, scale) over every entry of every named value.

    Args:
        values: ``{name: tensor}``, a tensor of any shape per name in ``priors``.
        priors: ``{name: (loc, scale)}``, the same Normal for every entry of that tensor (a
            Normal on the log of a positive parameter is a LogNormal on the parameter).

    Returns:
        () the log-density.

    Raises:
        InputError: No value, or a prior without its value.
    """
    missing = sorted(set(priors) - set(values))
    if not values or missing:
        raise InputError(f"normal_log_prior needs a value for every prior; got values "
                         f"{sorted(values)} for priors {sorted(priors)}")
    total = torch.zeros((), dtype=next(iter(values.values())).dtype)
    for name, (loc, scale) in priors.items():
        value = values[name]
        total = total + (-0.5 * ((value - loc) / scale) ** 2
                         - math.log(scale * math.sqrt(2 * math.pi))).sum()
    return total


def named_nuts(energy: Callable[[dict[str, Tensor]], Tensor], mode: dict[str, Tensor], *,
               num_samples: int, num_warmup: int, num_chains: int, seed: int = 0
               ) -> tuple[list[dict[str, Tensor]], Tensor]:
    """:func:`whitened_nuts` over named parameters of any shapes.

    The non-empty parameters are flattened into one vector, in the order of ``mode``; empty
    ones (size 0) are kept as they are.

    Args:
        energy: The negative log-posterior of ``{name: tensor}``, differentiable.
        mode: ``{name: tensor}`` at the posterior's mode.
        num_samples: Draws kept per chain.
        num_warmup: Adaptation steps per chain.
        num_chains: Chains.
        seed: Seed of the chains.

    Returns:
        ``(chains, diverging)``: per chain, ``{name: (S, *shape)}`` draws, and (C, S) flags of
        divergent transitions.
    """
    names = [name for name, value in mode.items() if value.numel()]
    if not names:
        raise InputError(f"named_nuts needs a parameter to sample; every one of "
                         f"{sorted(mode)} is empty")
    sizes = [mode[name].numel() for name in names]
    fixed = {name: value for name, value in mode.items() if not value.numel()}

    def unflatten(x: Tensor) -> dict[str, Tensor]:
        """(..., P) flat vectors to named parameters (..., *shape)."""
        parts = torch.split(x, sizes, -1)
        out = {name: part.reshape((*x.shape[:-1], *mode[name].shape))
               for name, part in zip(names, parts, strict=True)}
        return {**{name: value.expand(*x.shape[:-1], *value.shape)
                   for name, value in fixed.items()}, **out}

    centre = torch.cat([mode[name].reshape(-1) for name in names])
    draws, diverging = whitened_nuts(lambda x: energy(unflatten(x)), centre,
                                     num_samples=num_samples, num_warmup=num_warmup,
                                     num_chains=num_chains, seed=seed)  # (C, S, P)
    return [unflatten(chain) for chain in draws], diverging


def _arviz() -> Any:
    """ArviZ, imported when first needed (it takes seconds) and without the announcement of
    its 1.0 refactor that 0.2x prints on its first import of a day: coreaffect works with both.

    0.2x writes the day into a file of the user's cache through one fixed temporary name, so
    two processes importing it at once may see that file vanish: the import is tried again,
    and then finds the day written.
    """
    import importlib
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"\s*ArviZ is undergoing", FutureWarning)
        try:
            return importlib.import_module("arviz")
        except FileNotFoundError:
            return importlib.import_module("arviz")


def inference_data(posterior: dict[str, Any], diverging: Any) -> Any:
    """ArviZ data from (chain, draw, ...) arrays; ``from_dict`` of arviz 0.x and 1.x alike.

    Args:
        posterior: ``{name: array (chain, draw, ...)}``.
        diverging: (chain, draw) bool.

    Returns:
        The ArviZ object (``InferenceData`` in 0.x, a ``DataTree`` in 1.x) with the groups
        ``posterior`` and ``sample_stats``.
    """
    import inspect

    az = _arviz()
    if "posterior" in inspect.signature(az.from_dict).parameters:  # arviz < 1
        return az.from_dict(posterior=posterior, sample_stats={"diverging": diverging})
    return az.from_dict({"posterior": posterior, "sample_stats": {"diverging": diverging}})


# thresholds of Vehtari, Gelman, Simpson, Carpenter & Buerkner (2021): rank-normalised split
# r_hat below 1.01, bulk and tail effective sample sizes above 100 per chain
R_HAT_LIMIT = 1.01
ESS_PER_CHAIN = 100


def diagnostics(data: Any) -> dict[str, float]:
    """The worst convergence diagnostics of :func:`inference_data`'s output, by ArviZ.

    Args:
        data: ArviZ data with ``posterior`` and ``sample_stats.diverging``.

    Returns:
        A dict with the keys ``r_hat``, the largest rank-normalised split r_hat, ``ess_bulk``
        and ``ess_tail``, the smallest bulk and tail effective sample sizes, over every scalar
        of the posterior (NaN when one of them is undefined, as for a parameter whose draws do
        not vary), ``divergences``, the number of divergent transitions, ``chains`` (C) and
        ``draws`` (S per chain). ArviZ gives no r_hat for one chain: its two halves are then
        taken as two chains.
    """
    az = _arviz()
    diverging = sample_stat(data, "diverging")  # (C, S)
    chains, draws = diverging.shape
    scored = data
    if chains == 1 and draws >= 4:  # the halves of one chain, as two
        half = draws // 2

        def halves(values: Any) -> Any:
            return values[:, :2 * half].reshape(2, half, *values.shape[2:])

        scored = inference_data({name: halves(posterior_values(data, name))
                                 for name in data["posterior"].data_vars},
                                halves(diverging))
    with np.errstate(invalid="ignore", divide="ignore"):  # a constant draw: NaN, named below
        summary = az.summary(scored, kind="diagnostics")
    return {"r_hat": float(summary["r_hat"].max(skipna=False)),
            "ess_bulk": float(summary["ess_bulk"].min(skipna=False)),
            "ess_tail": float(summary["ess_tail"].min(skipna=False)),
            "divergences": int(diverging.sum()), "chains": int(chains), "draws": int(draws)}


def convergence_problems(found: dict[str, float]) -> list[str]:
    """What in :func:`diagnostics`'s ``found`` misses its threshold, in words; empty when
    nothing does."""
    problems = []
    if math.isnan(found["r_hat"]):
        problems.append("a split r_hat is undefined (a parameter whose draws do not vary)")
    elif not found["r_hat"] < R_HAT_LIMIT:
        problems.append(f"split r_hat up to {found['r_hat']:.3f} (want < {R_HAT_LIMIT})")
    for kind in ("bulk", "tail"):
        value = found[f"ess_{kind}"]
        if not value > ESS_PER_CHAIN * found["chains"]:  # NaN included
            problems.append(f"{kind} ESS down to {value:.0f} (want > "
                            f"{ESS_PER_CHAIN * found['chains']}: {ESS_PER_CHAIN} per chain)")
    if found["divergences"]:
        problems.append(f"{found['divergences']} divergent transitions")
    return problems


def posterior_values(data: Any, name: str) -> Any:
    """The (chain, draw, ...) array of a posterior variable of :func:`inference_data`'s output."""
    return data["posterior"][name].values


def sample_stat(data: Any, name: str) -> Any:
    """The (chain, draw) array of a sample statistic of :func:`inference_data`'s output."""
    return data["sample_stats"][name].values
