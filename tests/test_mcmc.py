"""NUTS in whitened coordinates: the Laplace scale against the exact covariance of a Gaussian,
draws against a known posterior with very different scales, seeding, and the ArviZ round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from coreaffect.mcmc import (
    _arviz,
    convergence_problems,
    diagnostics,
    inference_data,
    laplace_scale,
    posterior_values,
    sample_stat,
    whitened_nuts,
)

MEAN = torch.tensor([3.0, -0.02], dtype=torch.float64)
SD = torch.tensor([50.0, 0.01], dtype=torch.float64)  # scales 5000 apart
CORRELATION = 0.9
COV = torch.outer(SD, SD) * torch.tensor([[1.0, CORRELATION], [CORRELATION, 1.0]],
                                         dtype=torch.float64)


def _energy(x: torch.Tensor) -> torch.Tensor:
    """-log N(x; MEAN, COV) up to a constant."""
    diff = x - MEAN
    return 0.5 * diff @ torch.linalg.solve(COV, diff)


def test_laplace_scale_of_a_gaussian_is_a_root_of_its_covariance():
    scale = laplace_scale(_energy, MEAN.clone(), min_curvature=1e-9)  # H down to 5e-4
    torch.testing.assert_close(scale @ scale.T, COV, rtol=1e-4, atol=1e-9)


def test_laplace_scale_floors_a_flat_direction():
    def energy(x: torch.Tensor) -> torch.Tensor:  # no curvature at all along the second axis
        return 0.5 * 4.0 * x[0] ** 2 + 0.0 * x[1]

    scale = laplace_scale(energy, torch.zeros(2, dtype=torch.float64), min_curvature=0.01)
    torch.testing.assert_close(scale @ scale.T, torch.diag(torch.tensor(
        [0.25, 100.0], dtype=torch.float64)), rtol=1e-4, atol=1e-9)


def test_whitened_nuts_samples_a_badly_scaled_gaussian():
    before = torch.random.get_rng_state()
    draws, diverging = whitened_nuts(_energy, MEAN.clone(), num_samples=300, num_warmup=150,
                                     num_chains=2, seed=4)
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's stream is untouched
    assert draws.shape == (2, 300, 2) and diverging.shape == (2, 300)
    assert not bool(diverging.any())
    flat = draws.reshape(-1, 2)
    # 600 draws of a whitened Gaussian are nearly independent: the mean is within 4 standard
    # errors and the standard deviations and correlation close to the truth
    assert bool(((flat.mean(0) - MEAN).abs() < 4 * SD / 600 ** 0.5).all())
    torch.testing.assert_close(flat.std(0), SD, rtol=0.15, atol=0)
    assert abs(float(torch.corrcoef(flat.T)[0, 1]) - CORRELATION) < 0.05
    again, _ = whitened_nuts(_energy, MEAN.clone(), num_samples=300, num_warmup=150,
                             num_chains=2, seed=4)
    assert torch.equal(draws, again)


def test_inference_data_round_trip():
    rng = np.random.default_rng(0)
    posterior = {"theta": rng.normal(size=(2, 5, 3, 3)), "mu": rng.normal(size=(2, 5, 3))}
    diverging = rng.random((2, 5)) < 0.2
    data = inference_data(posterior, diverging)
    for name, values in posterior.items():
        np.testing.assert_array_equal(posterior_values(data, name), values)
    np.testing.assert_array_equal(sample_stat(data, "diverging"), diverging)


def test_named_nuts_samples_named_parameters_of_several_shapes():
    from coreaffect.mcmc import named_nuts, normal_log_prior

    priors = {"a": (1.0, 0.5), "b": (-2.0, 0.1)}
    mode = {"a": torch.ones(2, 2, dtype=torch.float64), "b": torch.full((1,), -2.0,
                                                                         dtype=torch.float64),
            "empty": torch.zeros(0, dtype=torch.float64)}
    chains, diverging = named_nuts(lambda p: -normal_log_prior(p, priors), mode,
                                   num_samples=300, num_warmup=150, num_chains=2, seed=1)
    assert len(chains) == 2 and diverging.shape == (2, 300)
    assert chains[0]["a"].shape == (300, 2, 2) and chains[0]["b"].shape == (300, 1)
    assert chains[0]["empty"].shape == (300, 0)
    a = torch.cat([c["a"] for c in chains]).reshape(-1)
    b = torch.cat([c["b"] for c in chains]).reshape(-1)
    assert abs(float(b.mean()) + 2.0) < 4 * 0.1 / 600 ** 0.5
    assert abs(float(b.std()) - 0.1) < 0.015 and abs(float(a.std()) - 0.5) < 0.06


def test_normal_log_prior_against_torch():
    from coreaffect.mcmc import normal_log_prior

    values = {"x": torch.tensor([0.3, -1.2], dtype=torch.float64),
              "y": torch.tensor([[2.0]], dtype=torch.float64)}
    priors = {"x": (0.5, 2.0), "y": (1.0, 0.3)}
    expected = (torch.distributions.Normal(0.5, 2.0).log_prob(values["x"]).sum()
                + torch.distributions.Normal(1.0, 0.3).log_prob(values["y"]).sum())
    torch.testing.assert_close(normal_log_prior(values, priors), expected.double())
    for bad in ({}, {"x": values["x"]}):  # nothing, or a prior without its value
        with pytest.raises(ValueError, match="needs a value for every prior"):
            normal_log_prior(bad, priors)


def test_named_nuts_refuses_nothing_to_sample():
    from coreaffect.mcmc import named_nuts

    with pytest.raises(ValueError, match="every one of .* is empty"):
        named_nuts(lambda p: torch.zeros(()), {"a": torch.zeros(0)}, num_samples=2,
                   num_warmup=2, num_chains=1)


def test_diagnostics_score_one_chain_by_its_halves_and_name_an_undefined_r_hat():
    """Independent draws: one chain gets an r_hat from its two halves (ArviZ gives none for
    one chain) and passes; a chain whose second half drifts away fails; a parameter whose
    draws never vary has no r_hat, which is a problem, not a value skipped."""
    az = _arviz()

    rng = np.random.default_rng(0)
    good = {"a": rng.normal(size=(1, 800, 2))}
    found = diagnostics(inference_data(good, np.zeros((1, 800), bool)))
    split = az.summary(inference_data({"a": good["a"].reshape(2, 400, 2)},
                                      np.zeros((2, 400), bool)), kind="diagnostics")
    assert found["r_hat"] == split["r_hat"].max() and np.isfinite(found["r_hat"])
    assert found["chains"] == 1 and found["draws"] == 800
    assert convergence_problems(found) == []
    drifting = good["a"] + np.linspace(0, 3, 800)[None, :, None]
    assert "split r_hat up to" in convergence_problems(
        diagnostics(inference_data({"a": drifting}, np.zeros((1, 800), bool))))[0]
    frozen = {"a": rng.normal(size=(2, 400)), "b": np.ones((2, 400))}
    found = diagnostics(inference_data(frozen, np.zeros((2, 400), bool)))
    assert np.isnan(found["r_hat"])
    assert "r_hat is undefined" in convergence_problems(found)[0]


def test_arviz_is_imported_without_its_daily_refactor_notice(tmp_path):
    """ArviZ 0.2x warns of its refactor on its first import of a day, which a cache folder of
    its own makes this one; as an error, the notice would stop the import."""
    import os
    import subprocess
    import sys

    code = ("import numpy as np\n"
            "from coreaffect.mcmc import inference_data\n"
            "inference_data({'a': np.zeros((2, 4))}, np.zeros((2, 4), bool))\n")
    result = subprocess.run([sys.executable, "-W", "error::FutureWarning", "-c", code],
                            capture_output=True, text=True,
                            env={**os.environ, "XDG_CACHE_HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "ArviZ is undergoing" not in result.stderr
