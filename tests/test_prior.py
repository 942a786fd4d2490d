"""HiddenRoutePrior: shapes and densities, confident versus unconfident estimates, calibration on
held-out pairs, ownership of parameters, persistence and errors. The estimates are synthetic:
truth plus Gaussian noise of a known, varying variance, and a random embedding."""

from __future__ import annotations

import math

import numpy as np
import pyro
import pytest
import torch
from test_manifold import boomerang  # the same curved label distribution

from coreaffect.errors import CoreAffectError, InputError
from coreaffect.hidden_route import AffectEstimate
from coreaffect.manifold import AffectManifold, preimage
from coreaffect.metrics import coverage
from coreaffect.prior import DecodedPrior, HiddenRoutePrior, latent_moments

D = 6  # embedding size
SMALL = {"hidden": 32, "num_steps": 400, "batch_size": 256, "num_samples": 64}


def estimates(labels: torch.Tensor, seed: int, sd: float | None = None) -> AffectEstimate:
    """Truth + N(0, sd^2) with sd log-uniform in [0.02, 1] per row (or the given sd), clipped
    to the tanh range; var = sd^2 (an honest hidden route); a random embedding."""
    g = torch.Generator().manual_seed(seed)
    n = labels.shape[0]
    if sd is None:
        log_sd = torch.empty(n, 1).uniform_(math.log(0.02), 0.0, generator=g)
        scale = log_sd.exp().expand(n, 2)
    else:
        scale = torch.full((n, 2), sd)
    mean = (labels + scale * torch.randn(n, 2, generator=g)).clamp(-0.999, 0.999)
    return AffectEstimate(mean, scale**2, torch.randn(n, D, generator=g))


@pytest.fixture(scope="module")
def manifold() -> AffectManifold:
    return AffectManifold(hidden=32, num_steps=600, random_state=0).fit(boomerang(1500, 0))


@pytest.fixture(scope="module")
def gp_manifold() -> AffectManifold:
    """The GP-LVM backend (1000 steps, as in test_manifold.py); on this thin curve it switches
    off one latent axis, so the prior lives on a one-dimensional manifold."""
    return AffectManifold(backend="gplvm", hidden=32, num_steps=1000, random_state=0).fit(
        boomerang(1500, 0))


@pytest.fixture(scope="module")
def prior(manifold) -> HiddenRoutePrior:
    labels = boomerang(2000, 10)
    return HiddenRoutePrior(manifold, **SMALL, use_embedding=True,
                            random_state=0).fit(estimates(labels, 20), labels)


@pytest.fixture(scope="module")
def gp_prior(gp_manifold) -> HiddenRoutePrior:
    labels = boomerang(2000, 10)
    return HiddenRoutePrior(gp_manifold, **SMALL, use_embedding=True,
                            random_state=0).fit(estimates(labels, 20), labels)


# the properties that hold whichever backend the manifold has
BOTH_PRIORS = pytest.mark.parametrize("name", ["prior", "gp_prior"])


@pytest.fixture(scope="module")
def measured(manifold) -> HiddenRoutePrior:
    """The same fit with location="measurement": p(z) conditioned on the estimate."""
    labels = boomerang(2000, 10)
    return HiddenRoutePrior(manifold, **SMALL, location="measurement", use_embedding=True,
                            random_state=0).fit(estimates(labels, 20), labels)


def _interval_coverage(pred: DecodedPrior, labels: torch.Tensor, level: float) -> float:
    var = torch.diagonal(pred.cov, dim1=-2, dim2=-1)
    return float(np.mean([coverage(labels[:, d], pred.mean[:, d], var[:, d], level)
                          for d in range(2)]))


@BOTH_PRIORS
def test_shapes_and_density_integrates_to_one(name, request):
    prior = request.getfixturevalue(name)
    e = estimates(boomerang(5, 1), 2)
    q = prior(e)
    assert isinstance(q, torch.distributions.MultivariateNormal)
    assert q.batch_shape == (5,) and q.event_shape == (2,)
    assert q.loc.shape == (5, 2) and q.scale_tril.shape == (5, 2, 2)
    assert torch.all(torch.linalg.eigvalsh(q.covariance_matrix) > 0)
    side = torch.linspace(-6, 6, 301)
    step = float(side[1] - side[0])
    grid = torch.cartesian_prod(side, side)[:, None, :]  # (G, 1, K) against the batch (5,)
    mass = q.log_prob(grid).exp().sum(0) * step**2  # (5,)
    assert torch.allclose(mass, torch.ones(5), atol=0.02), mass
    pred = prior.predict(e)
    assert isinstance(pred, DecodedPrior)
    assert pred.mean.shape == (5, 2) and pred.cov.shape == (5, 2, 2)
    assert torch.allclose(pred.cov, pred.cov.transpose(-1, -2))
    assert torch.all(torch.linalg.eigvalsh(pred.cov) > 0)
    assert pred.mean.abs().max() < 1


@BOTH_PRIORS
def test_predict_is_deterministic_and_per_estimate(name, request):
    prior = request.getfixturevalue(name)
    e = estimates(boomerang(8, 3), 4)
    a, b = prior.predict(e), prior.predict(e)
    assert torch.equal(a.mean, b.mean) and torch.equal(a.cov, b.cov)
    one = prior.predict(AffectEstimate(e.mean[2:3], e.var[2:3], e.embedding[2:3]))
    # to float32 rounding, which the centre's Gauss-Newton steps carry further where the
    # decoder is nearly flat along the prior's wide axis (here 2e-3 in z, 5e-4 decoded)
    assert torch.allclose(one.mean, a.mean[2:3], atol=1e-3)
    assert torch.allclose(one.cov, a.cov[2:3], atol=1e-3)
    other = prior.predict(e, random_state=123)
    assert not torch.equal(other.mean, a.mean)


def test_moment_matching_is_exact_where_the_decoder_is_linear(prior):
    """Over a narrow prior g is linear to a good approximation, so the decoded covariance must
    be J S J^T + diag(s^2) (J, the Jacobian of g at the prior's mean, by autograd). Raw
    antithetic draws miss S itself by their sampling error (a variance of 0.79 along one axis
    at seed 0 with 128 pairs); whitened ones have exactly the second moment I."""
    eps = prior._eps(None)
    assert torch.allclose(eps.mean(0), torch.zeros(2), atol=1e-6)
    assert torch.allclose(eps.T @ eps / eps.shape[0], torch.eye(2), atol=1e-5)
    loc = torch.tensor([[0.3, -0.2], [-0.5, 0.4]])
    tril = torch.tensor([[[0.02, 0.0], [0.01, 0.015]], [[0.01, 0.0], [-0.005, 0.02]]])
    pred = prior.decode(torch.distributions.MultivariateNormal(loc, scale_tril=tril))
    root = torch.tensor(prior.calibration_scale_).sqrt()
    spread = pred.cov / (root[:, None] * root[None, :]) - torch.diag(
        prior.manifold.noise_scale_ ** 2)
    for b in range(2):
        jac = torch.autograd.functional.jacobian(prior.manifold._g, loc[b])  # (2, K)
        expected = jac @ tril[b] @ tril[b].T @ jac.T
        assert torch.allclose(spread[b], expected, rtol=0.02, atol=1e-6), (spread[b], expected)
        assert torch.allclose(pred.mean[b], prior.manifold._g(loc[b]), atol=1e-4)


def test_measurement_prior_is_narrow_when_confident_and_the_marginal_when_not(measured):
    # the fixture's estimates are truth + noise, the errors this location assumes
    labels = boomerang(500, 5)
    standard = torch.distributions.MultivariateNormal(torch.zeros(2), torch.eye(2))
    prior = measured
    sure, unsure = prior(estimates(labels, 6, sd=0.02)), prior(estimates(labels, 6, sd=1.0))
    kl_sure = torch.distributions.kl_divergence(sure, standard).mean()
    kl_unsure = torch.distributions.kl_divergence(unsure, standard).mean()
    det_sure = sure.covariance_matrix.det().median()
    det_unsure = unsure.covariance_matrix.det().median()
    assert kl_unsure < 0.6, kl_unsure  # close to p(z) = N(0, I)
    assert kl_sure > 2.0, kl_sure
    assert det_sure < 0.05 * det_unsure, (det_sure, det_unsure)
    # in valence-arousal space: narrow around the truth against the spread of all labels
    pred = prior.predict(estimates(labels, 6, sd=0.02))
    rmse = (pred.mean - labels).pow(2).mean().sqrt()
    assert rmse < 0.1
    wide = prior.predict(estimates(labels, 6, sd=1.0))
    assert torch.diagonal(wide.cov, dim1=-2, dim2=-1).mean() > \
        2 * torch.diagonal(pred.cov, dim1=-2, dim2=-1).mean()


def test_conditioning_on_the_anchor_matches_dense_gaussian_algebra_when_ill_conditioned():
    """float32, L with diagonal 1e-3 and a lower entry of 1: R is near singular, and S has an
    eigenvalue near 1e-12, which I - (R + I)^-1 would have lost to rounding."""
    from coreaffect.prior import _measured

    tril = torch.tensor([[[1e-3, 0.0], [1.0, 1e-3]], [[0.5, 0.0], [0.2, 0.8]]])
    anchor = torch.tensor([[0.3, -0.2], [1.0, 0.5]])
    loc, scale = _measured(anchor, tril)
    r = (tril @ tril.transpose(-1, -2)).double()
    eye = torch.eye(2, dtype=torch.float64)
    cov = eye - torch.linalg.inv(r + eye)  # the definition, in float64
    torch.testing.assert_close(loc.double(), (torch.linalg.inv(r + eye) @ anchor.double()[
        ..., None])[..., 0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close((scale @ scale.transpose(-1, -2)).double(), cov, rtol=1e-4,
                               atol=1e-7)
    assert torch.equal(scale, scale.tril()) and (torch.diagonal(scale, dim1=-2, dim2=-1) > 0).all()


def test_regression_prior_is_centred_on_the_estimate_and_as_wide_as_its_errors(prior, measured,
                                                                              manifold):
    # location="regression" (the default): the decoded mean is the estimate's mean, which the
    # conditioned prior pulls towards p(z); the width follows the estimate's errors
    z = 0.7 * torch.randn(300, 2, generator=torch.Generator().manual_seed(18))
    inside = manifold.decode(z).mean  # means that g's range holds
    for sd in (0.02, 0.1):
        e = estimates(inside, 6, sd=sd)
        e = AffectEstimate(inside, e.var, e.embedding)
        pred = prior.predict(e)
        # to a few thousandths: this manifold is a thin curve, and a Gaussian's decoded mean
        # lies on the inner side of the curve, so points on it are reached only nearly
        miss = (pred.mean - inside).abs().amax(-1)
        assert miss.mean() < 3e-3 and miss.max() < 2e-2, sd
        pulled = (measured.predict(e).mean - inside).abs().amax(-1)
        assert pulled.mean() > 5 * miss.mean(), sd
    labels = boomerang(500, 5)
    sure = prior.predict(estimates(labels, 6, sd=0.02))
    unsure = prior.predict(estimates(labels, 6, sd=0.3))
    assert prior(estimates(labels, 6, sd=0.3)).loc.norm(dim=-1).max() <= 4.0 + 1e-4
    assert torch.diagonal(unsure.cov, dim1=-2, dim2=-1).mean() > \
        4 * torch.diagonal(sure.cov, dim1=-2, dim2=-1).mean()
    # the truth scatters around these estimates about as far as the bands say: before any
    # calibration, their 90% intervals cover between 70% and 99% of it
    assert 0.7 < _interval_coverage(unsure, labels, 0.9) < 0.99


@BOTH_PRIORS
def test_calibration_reaches_nominal_coverage_on_held_out_pairs(name, request, tmp_path):
    prior = request.getfixturevalue(name)
    held_in, held_out = boomerang(2000, 11), boomerang(2000, 12)
    e_in, e_out = estimates(held_in, 21), estimates(held_out, 22)
    prior.save(tmp_path)
    calibrated = HiddenRoutePrior.load(tmp_path)  # a copy
    before = _interval_coverage(calibrated.predict(e_out), held_out, 0.9)
    calibrated.calibrate(e_in, held_in, level=0.9)
    assert calibrated.calibration_level_ == 0.9
    after = _interval_coverage(calibrated.predict(e_out), held_out, 0.9)
    assert abs(after - 0.9) < 0.04, (before, after, calibrated.calibration_scale_)
    pred, raw = calibrated.predict(e_out), prior.predict(e_out)
    for d in range(2):  # each dimension on its own, not only pooled
        inside = (held_out[:, d] - pred.mean[:, d]).abs() <= 1.6449 * pred.cov[:, d, d].sqrt()
        assert abs(inside.float().mean().item() - 0.9) < 0.04, d
    assert prior.calibration_scale_ == (1.0, 1.0)  # the original is untouched
    # the factors scale the decoded covariance only: latent prior and means stay
    assert torch.equal(calibrated(e_out).covariance_matrix, prior(e_out).covariance_matrix)
    assert torch.equal(pred.mean, raw.mean)
    root = torch.tensor(calibrated.calibration_scale_).sqrt()
    assert pred.cov == pytest.approx(raw.cov * root[:, None] * root[None, :], rel=1e-5)


def test_a_callers_pyro_program_may_use_the_decoder(manifold):
    """Inside the caller's own SVI, the decoder is an ordinary PyroModule of that program."""
    import copy

    decoder = copy.deepcopy(manifold.decoder_)
    decoder.requires_grad_(True)
    y = torch.tensor([[0.3, 0.2], [-0.4, 0.5]])

    def model():
        z = pyro.sample("z", pyro.distributions.Normal(torch.zeros(2, 2), 1.0).to_event(2))
        pyro.sample("y", pyro.distributions.Normal(decoder(z), 0.1).to_event(2), obs=y)

    def guide():
        loc = pyro.param("loc", torch.zeros(2, 2))
        pyro.sample("z", pyro.distributions.Normal(loc, 0.5).to_event(2))

    pyro.clear_param_store()
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.05}), pyro.infer.Trace_ELBO())
    for _ in range(3):
        svi.step()
    assert "loc" in pyro.get_param_store().keys()
    pyro.clear_param_store()


@pytest.mark.parametrize("name", ["manifold", "gp_manifold"])
def test_parameters_are_owned_not_global(name, request):
    manifold = request.getfixturevalue(name)
    pyro.clear_param_store()
    pyro.param("callers_own", torch.ones(3))
    manifold_state = {k: v.clone() for k, v in manifold.decoder_.state_dict().items()}
    labels = boomerang(200, 13)
    e = estimates(labels, 23)
    a = HiddenRoutePrior(manifold, hidden=8, num_steps=10, num_samples=8).fit(e, labels)
    a_state = {k: v.clone() for k, v in a.state_dict().items()}
    b = HiddenRoutePrior(manifold, hidden=8, num_steps=10, num_samples=8, random_state=1)
    b.fit(e, labels).calibrate(e, labels)
    b.predict(e)
    b.forward(e)  # the modules called directly, and their parameters read, keep to themselves
    manifold.decoder_(torch.zeros(3, 2))
    manifold.encoder_(torch.zeros(3, 2))
    assert (manifold.decoder_.noise_scale > 0).all() and b.net_(b._features(e))[0].shape[0] == 200
    for k, v in a.state_dict().items():
        assert torch.equal(v, a_state[k]), k
    for k, v in manifold.decoder_.state_dict().items():
        assert torch.equal(v, manifold_state[k]), k
    assert list(pyro.get_param_store().keys()) == ["callers_own"]
    assert torch.equal(pyro.get_param_store()["callers_own"], torch.ones(3))
    assert not pyro.settings.get("module_local_params")
    pyro.clear_param_store()


def test_fit_is_deterministic(manifold):
    labels = boomerang(200, 14)
    e = estimates(labels, 24)
    a = HiddenRoutePrior(manifold, hidden=8, num_steps=15).fit(e, labels)
    b = HiddenRoutePrior(manifold, hidden=8, num_steps=15).fit(e, labels)
    assert torch.equal(a(e).loc, b(e).loc)
    assert a.loss_history_ == b.loss_history_
    before = a(e).loc
    for bad in (torch.full((200, 2), math.nan), boomerang(201, 14)):  # NaN labels; a length
        with pytest.raises(CoreAffectError, match="NaN|same length"):
            a.fit(e, bad)
        assert torch.equal(a(e).loc, before)  # a refused refit keeps the fit
    wider = AffectEstimate(e.mean, e.var, torch.randn(200, 3))
    assert a.fit(wider, labels)(wider).loc.shape == (200, 2)  # refitting to a new width


@BOTH_PRIORS
def test_save_load_round_trip(name, request, tmp_path):
    prior = request.getfixturevalue(name)
    e = estimates(boomerang(30, 15), 25)
    prior.calibration_scale_, scale = (0.7, 1.3), prior.calibration_scale_
    try:
        prior.save(tmp_path / "run")
        state = torch.random.get_rng_state()
        loaded = HiddenRoutePrior.load(tmp_path / "run")
        assert torch.equal(torch.random.get_rng_state(), state)  # the caller's stream stays
        assert loaded.calibration_scale_ == (0.7, 1.3)
        assert torch.equal(loaded(e).loc, prior(e).loc)
        assert torch.equal(loaded(e).scale_tril, prior(e).scale_tril)
        a, b = loaded.predict(e), prior.predict(e)
        assert torch.equal(a.mean, b.mean) and torch.equal(a.cov, b.cov)
    finally:
        prior.calibration_scale_ = scale
    assert {p.name for p in (tmp_path / "run").iterdir()} == {
        "prior.json", "prior.safetensors", "manifold.json", "manifold.safetensors"}
    with pytest.raises(CoreAffectError, match="not a HiddenRoutePrior"):
        HiddenRoutePrior.load(tmp_path / "run", name="manifold")


def test_priors_saved_under_other_names_keep_their_own_manifolds(prior, gp_prior, tmp_path):
    e = estimates(boomerang(10, 16), 26)
    prior.save(tmp_path, "prior_a")
    gp_prior.save(tmp_path, "prior_b")  # another manifold, which must not replace prior_a's
    for name, fitted in (("prior_a", prior), ("prior_b", gp_prior)):
        loaded = HiddenRoutePrior.load(tmp_path, name)
        assert torch.equal(loaded.predict(e).mean, fitted.predict(e).mean)
    assert (tmp_path / "prior_a_manifold.json").exists()
    gp_prior.manifold.save(tmp_path, "prior_a_manifold")  # saved over prior_a's manifold
    with pytest.raises(CoreAffectError, match="prior_a.json: was fitted with another manifold"):
        HiddenRoutePrior.load(tmp_path, "prior_a")


def test_runs_saved_by_earlier_versions_load_with_their_own_model(measured, tmp_path,
                                                                  saved_without_config):
    import json

    e = estimates(boomerang(30, 15), 25)
    measured.save(tmp_path)
    saved_without_config(tmp_path, "prior")
    config_path = tmp_path / "prior.json"
    config = json.loads(config_path.read_text())
    config["config"]["location"] = "estimate"  # the former name of "measurement"
    config_path.write_text(json.dumps(config))
    loaded = HiddenRoutePrior.load(tmp_path)
    assert loaded.location == "measurement"
    assert torch.equal(loaded(e).loc, measured(e).loc)
    del config["config"]["location"]  # before the location was a choice: a learned one
    config_path.write_text(json.dumps(config))
    assert HiddenRoutePrior.load(tmp_path).location == "learned"


def test_priors_calibrated_with_raw_draws_or_without_their_manifold_are_named(
        measured, tmp_path, caplog, saved_without_config):
    import json

    measured.save(tmp_path)
    saved_without_config(tmp_path, "prior")
    with caplog.at_level("WARNING", logger="coreaffect.prior"):
        HiddenRoutePrior.load(tmp_path)
    assert "raw latent draws" not in caplog.text
    config_path = tmp_path / "prior.json"
    config = json.loads(config_path.read_text())
    del config["config"]["whitened_draws"]  # saved before the draws were whitened
    config_path.write_text(json.dumps(config))
    with caplog.at_level("WARNING", logger="coreaffect.prior"):
        HiddenRoutePrior.load(tmp_path)
    assert "prior.json: calibrated with the raw latent draws" in caplog.text
    manifold_json = (tmp_path / "manifold.json").read_text()
    (tmp_path / "manifold.json").write_text(manifold_json[:50])  # cut short
    with pytest.raises(CoreAffectError, match=r"manifold.json: unreadable"):
        HiddenRoutePrior.load(tmp_path)  # the file at fault, not "another manifold"
    (tmp_path / "manifold.json").unlink()
    with pytest.raises(CoreAffectError, match=r"its manifold .*manifold.json is missing"):
        HiddenRoutePrior.load(tmp_path)


def test_without_embedding(manifold):
    labels = boomerang(200, 16)
    e = estimates(labels, 26)
    p = HiddenRoutePrior(manifold, use_embedding=False, hidden=8, num_steps=5).fit(e, labels)
    assert p.embedding_dim_ == 0
    other_d = AffectEstimate(e.mean, e.var, torch.zeros(200, 3))  # any D is accepted
    assert p(other_d).batch_shape == (200,)


def test_bad_input(prior, manifold):
    e = estimates(boomerang(4, 17), 27)
    with pytest.raises(CoreAffectError, match="not fitted"):
        HiddenRoutePrior(manifold)(e)
    with pytest.raises(CoreAffectError, match="AffectManifold is not fitted"):
        HiddenRoutePrior(AffectManifold()).fit(e, boomerang(4, 17))
    with pytest.raises(CoreAffectError, match="must be an AffectManifold"):
        HiddenRoutePrior("manifold").fit(e, boomerang(4, 17))
    with pytest.raises(CoreAffectError, match="AffectEstimate"):
        prior(e.mean)
    with pytest.raises(CoreAffectError, match=r"mean must have shape \(B, 2\)"):
        prior(AffectEstimate(e.mean[:, :1], e.var[:, :1], e.embedding))
    with pytest.raises(CoreAffectError, match="var must have the shape"):
        prior(AffectEstimate(e.mean, e.var[:3], e.embedding))
    with pytest.raises(CoreAffectError, match="fitted with D = 6"):
        prior(AffectEstimate(e.mean, e.var, e.embedding[:, :2]))
    with pytest.raises(CoreAffectError, match="NaN"):
        prior(AffectEstimate(e.mean.clone().fill_(math.nan), e.var, e.embedding))
    with pytest.raises(CoreAffectError, match="var must be positive"):
        prior(AffectEstimate(e.mean, -e.var, e.embedding))
    with pytest.raises(CoreAffectError, match="same length"):
        prior.calibrate(e, boomerang(5, 17))
    with pytest.raises(CoreAffectError, match="NaN"):
        prior.calibrate(e, torch.full((4, 2), math.nan))
    with pytest.raises(InputError, match="level"):  # also a ValueError, as levels are anywhere
        prior.calibrate(e, boomerang(4, 17), level=1.5)
    for seed in ("a", 1.5, True):
        with pytest.raises(InputError, match="random_state must be an integer seed"):
            prior.predict(e, random_state=seed)
        with pytest.raises(InputError, match="random_state must be an integer seed"):
            manifold.log_prob(boomerang(4, 17), random_state=seed)
    with pytest.raises(InputError, match="y must hold numbers, got an array of object"):
        manifold.log_prob(np.array([[0.1, "x"]], dtype=object))
    with pytest.raises(CoreAffectError, match="even"):
        HiddenRoutePrior(manifold, num_samples=3).fit(e, boomerang(4, 17))
    for bad in ({"learning_rate": "x"}, {"hidden": True}, {"kl_weight": -1.0},
                {"min_scale": math.inf}):
        with pytest.raises(CoreAffectError, match=next(iter(bad))):
            HiddenRoutePrior(manifold, **bad).fit(e, boomerang(4, 17))
    q = prior(e)
    for bad in (torch.distributions.MultivariateNormal(torch.zeros(4, 3), torch.eye(3)),
                torch.distributions.Normal(q.loc, 1.0), q.expand((2, 4))):
        with pytest.raises(CoreAffectError, match="event shape"):
            prior.decode(bad)
    as64 = torch.distributions.MultivariateNormal(q.loc.double(), scale_tril=q.scale_tril.double())
    assert torch.equal(prior.decode(as64).mean, prior.decode(q).mean)
    with pytest.raises(CoreAffectError, match=r"y must have shape \(B, 2\)"):
        preimage(manifold, torch.zeros(4, 3), start=torch.zeros(4, 2))
    with pytest.raises(CoreAffectError, match="start must have shape"):
        preimage(manifold, torch.zeros(4, 2), start=torch.zeros(3, 2))


def test_preimage_decodes_back_to_points_inside_the_range(manifold):
    z0 = torch.randn(300, 2, generator=torch.Generator().manual_seed(16))
    y = manifold.decode(z0).mean  # inside g's range by construction
    z = preimage(manifold, y)
    assert z.shape == (300, 2)
    error = (manifold.decode(z).mean - y).norm(dim=-1)
    # exact but where g folds (a near-singular Jacobian), which a small fraction of draws hit
    assert error.quantile(0.95) < 1e-4 and error.max() < 0.05
    labels = boomerang(300, 16)  # near, not on, the learned curve: no worse than the encoder
    assert torch.equal(preimage(manifold, labels.double()), preimage(manifold, labels.float()))
    miss = (manifold.decode(preimage(manifold, labels)).mean - labels).norm(dim=-1)
    start = (manifold.decode(manifold.encode(labels).mean).mean - labels).norm(dim=-1)
    assert (miss <= start + 1e-4).all() and miss.mean() < 0.8 * start.mean()
    far = preimage(manifold, torch.tensor([[5.0, -5.0]]))  # beyond g's range: finite, bounded
    assert torch.isfinite(far).all() and far.norm() <= 4.0 + 1e-5
    from coreaffect import prior as prior_module

    assert prior_module.preimage is preimage  # still importable where it was


def test_confident_prior_is_centred_on_the_estimate_and_learned_location_works(
        prior, measured, manifold):
    labels = boomerang(200, 17)
    sure = estimates(labels, 26, sd=0.02)
    for fitted in (prior, measured):
        pred = fitted.predict(sure)
        assert (pred.mean - sure.mean).abs().mean() < 0.05  # the estimate's own point
    learned = HiddenRoutePrior(manifold, location="learned", hidden=8, num_steps=30,
                               num_samples=8).fit(sure, labels)
    assert learned(sure).loc.shape == (200, 2)
    with pytest.raises(CoreAffectError, match="location"):
        HiddenRoutePrior(manifold, location="nowhere", num_steps=1).fit(sure, labels)


def test_calibration_at_several_levels_balances_their_coverage(prior):
    from coreaffect.calibration import variance_factor

    # errors with heavier tails than a Gaussian (Student t, 3 degrees of freedom)
    errors = np.abs(np.random.default_rng(0).standard_t(3, 20000))
    z50, z90 = 0.67449, 1.64485

    def cover(c):
        return (np.mean(errors <= z50 * math.sqrt(c)), np.mean(errors <= z90 * math.sqrt(c)))

    one = variance_factor(errors, [0.9])
    assert cover(one)[1] == pytest.approx(0.9, abs=1e-3)  # exact at its own level
    assert cover(one)[0] > 0.57  # but too wide at 50%
    both = variance_factor(errors, [0.5, 0.9])
    worst_one = max(abs(cover(one)[0] - 0.5), abs(cover(one)[1] - 0.9))
    worst_both = max(abs(cover(both)[0] - 0.5), abs(cover(both)[1] - 0.9))
    assert worst_both < 0.6 * worst_one
    # the two coverage errors are balanced: opposite signs, about equal sizes
    assert cover(both)[0] > 0.5 and cover(both)[1] < 0.9
    assert abs((cover(both)[0] - 0.5) - (0.9 - cover(both)[1])) < 0.01
    # through the estimator, with the levels remembered
    labels = boomerang(1000, 30)
    held = estimates(labels, 31)
    before = prior.calibration_scale_, prior.calibration_level_
    try:
        prior.calibrate(held, labels, level=[0.5, 0.9])
        assert prior.calibration_level_ == [0.5, 0.9]
        pred = prior.predict(held)
        for level in (0.5, 0.9):
            assert abs(_interval_coverage(pred, labels, level) - level) < 0.05
    finally:
        prior.calibration_scale_, prior.calibration_level_ = before
    with pytest.raises(CoreAffectError, match="level"):
        prior.calibrate(held, labels, level=[0.5, 1.2])
    with pytest.raises(CoreAffectError, match="level"):
        prior.calibrate(held, labels, level=True)
    try:  # numpy numbers are numbers
        assert prior.calibrate(held, labels, level=np.float32(0.9)).calibration_level_ == \
            pytest.approx(0.9)
        assert prior.calibrate(held, labels, level=np.array([0.5, 0.9])).calibration_level_ == \
            pytest.approx([0.5, 0.9])
    finally:
        prior.calibration_scale_, prior.calibration_level_ = before


def test_latent_moments_are_taken_in_float64_from_the_cholesky_factor():
    # an elongated prior, as a briefly trained network gives: axes of about 9.4 and 0.0014
    tril = torch.tensor([[[8.570355, 0.0], [-3.905964, 0.0015082]]])
    latent = torch.distributions.MultivariateNormal(torch.ones(1, 2), scale_tril=tril)
    mean, cov = latent_moments(latent)
    assert mean.dtype == cov.dtype == torch.float64
    exact = tril.double() @ tril.double().transpose(-1, -2)
    torch.testing.assert_close(cov, exact, rtol=1e-15, atol=0)
    assert torch.linalg.eigvalsh(cov).min() > 1e-6  # (1.9e-6: 0.0015082 * 8.570355 squared / 88.7)
    assert int(torch.linalg.cholesky_ex(cov).info) == 0  # as the dynamics check their inputs


