"""CoreAffectDynamics: parameter recovery (maximum likelihood and NUTS), streaming and causal
filtering, smoothing against raw estimates, decoding, and save/load."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch

from coreaffect.dynamics import (
    AffectObservations,
    CoreAffectDynamics,
    ou_discretize,
    ou_stationary_cov,
)
from coreaffect.errors import CoreAffectError, CoreAffectWarning, InputError
from coreaffect.mcmc import _arviz, convergence_problems

THETA = torch.tensor([[1.0, 0.3], [-0.2, 0.6]], dtype=torch.float64)
MU = torch.tensor([0.2, -0.1], dtype=torch.float64)
DIFFUSION = torch.tensor([[0.5, 0.0], [0.1, 0.4]], dtype=torch.float64)
SCALE = 1.5  # the estimates' variances understate their error by this factor


def simulate(n_videos: int, steps: int, seed: int, k: int = 2, dt: float = 0.1,
             missing: float = 0.1, scale: float = SCALE
             ) -> tuple[list[AffectObservations], list[torch.Tensor]]:
    """OU paths at irregular times (exact steps) observed with noise of covariance scale * S_t."""
    theta, mu, diffusion = THETA[:k, :k], MU[:k], DIFFUSION[:k, :k]
    g = torch.Generator().manual_seed(seed)
    videos, paths = [], []
    for _ in range(n_videos):
        times = torch.cumsum(dt * (0.5 + torch.rand(steps, generator=g, dtype=torch.float64)), 0)
        f, b, q = ou_discretize(theta, mu, diffusion, times.diff())
        noise = torch.randn(steps, k, generator=g, dtype=torch.float64)
        z = [mu + torch.linalg.cholesky(ou_stationary_cov(theta, diffusion)) @ noise[0]]
        chol = torch.linalg.cholesky(q)
        for t in range(steps - 1):
            z.append(f[t] @ z[-1] + b[t] + chol[t] @ noise[t + 1])
        z = torch.stack(z)  # (T, K)
        var = 0.02 + 0.08 * torch.rand(steps, k, generator=g, dtype=torch.float64)
        means = z + (scale * var).sqrt() * torch.randn(steps, k, generator=g, dtype=torch.float64)
        mask = torch.rand(steps, generator=g) > missing
        means[~mask] = float("nan")  # no face: nothing to read
        videos.append(AffectObservations(times, means, torch.diag_embed(var), mask))
        paths.append(z)
    return videos, paths


@pytest.fixture(scope="module")
def data():
    return simulate(n_videos=6, steps=400, seed=0)


@pytest.fixture(scope="module")
def fitted(data):
    """Fitted with Adam (the default, L-BFGS, is checked against it below)."""
    videos, _ = data
    return CoreAffectDynamics(optimizer="adam").fit(videos)


def _truth() -> CoreAffectDynamics:
    model = CoreAffectDynamics()
    model._set_point({"theta": THETA, "mu": MU, "diffusion": DIFFUSION,
                      "noise_scale": torch.tensor(SCALE, dtype=torch.float64)})
    return model


def test_mle_recovers_ou_parameters():
    """8 videos x 1000 frames (about 800 s of affect, 500 relaxation times)."""
    videos, _ = simulate(n_videos=8, steps=1000, seed=0)
    fitted = CoreAffectDynamics(optimizer="lbfgs").fit(videos)
    # the optimum is at least as likely as the truth, and not far above it: twice the excess is
    # about chi-square with 10 degrees of freedom (99.9% quantile 29.6)
    truth = _truth().score(videos)
    assert truth <= fitted.log_likelihood_ <= truth + 15
    torch.testing.assert_close(fitted.theta_, THETA, atol=0.2, rtol=0)
    torch.testing.assert_close(fitted.mu_, MU, atol=0.06, rtol=0)
    cov = fitted.diffusion_ @ fitted.diffusion_.T
    torch.testing.assert_close(cov, DIFFUSION @ DIFFUSION.T, atol=0.05, rtol=0)
    assert float(fitted.noise_scale_) == pytest.approx(SCALE, rel=0.06)
    # the symmetric part of theta is positive definite: a mean-reverting process
    assert (torch.linalg.eigvalsh(0.5 * (fitted.theta_ + fitted.theta_.T)) > 0).all()


def test_adam_reaches_the_lbfgs_optimum(data, fitted):
    videos, _ = data
    assert fitted.n_iter_ < fitted.max_iter  # converged, not stopped
    other = CoreAffectDynamics().fit(videos)
    assert other.log_likelihood_ == pytest.approx(fitted.log_likelihood_, abs=0.05)
    # the likelihood is flat near the optimum: here points 0.013 apart in log-likelihood
    # differ by 0.021 in theta
    torch.testing.assert_close(other.theta_, fitted.theta_, atol=0.04, rtol=0)
    assert fitted.log_likelihood_ >= _truth().score(videos)


def test_adam_keeps_the_most_likely_point_it_visited():
    """Times in steps of about 100 s: Adam's first steps lower the likelihood; it once stopped
    there, less likely than its own start."""
    videos, _ = simulate(n_videos=2, steps=100, seed=0)
    videos = [AffectObservations(v.times * 1000, v.means, v.covs, v.mask) for v in videos]
    model = CoreAffectDynamics(optimizer="adam", max_iter=60)
    batches = model._batches(videos)
    with torch.no_grad():
        start = float(model._log_likelihood(model._constrain(model._initial_guess(batches)),
                                            batches))
    assert model.fit(videos).log_likelihood_ >= start
    assert CoreAffectDynamics(optimizer="lbfgs").fit(videos).log_likelihood_ > start


def test_smoothed_and_filtered_beat_raw_estimates(data, fitted):
    videos, paths = data
    raw_err, smooth_err, filter_err, inside = [], [], [], []
    for video, path in zip(videos, paths, strict=True):
        smoothed, filtered = fitted.smooth(video), fitted.filter(video)
        seen = video.mask
        raw_err.append((video.means[seen] - path[seen]) ** 2)
        smooth_err.append((smoothed.mean[seen] - path[seen]) ** 2)
        filter_err.append((filtered.mean[seen] - path[seen]) ** 2)
        inside.append((path >= smoothed.lower) & (path <= smoothed.upper))
    rmse = {name: float(torch.cat(errors).mean().sqrt()) for name, errors in
            (("raw", raw_err), ("smooth", smooth_err), ("filter", filter_err))}
    assert rmse["smooth"] < rmse["filter"] < 0.8 * rmse["raw"]
    coverage = float(torch.cat(inside).double().mean())
    assert 0.85 <= coverage <= 0.95  # the 90% bands


def test_streaming_one_step_at_a_time_equals_the_batch_filter(fitted):
    video = simulate(1, 40, seed=3, missing=0.25)[0][0]
    batch = fitted.filter(video)
    state = None
    for t in range(len(video.times)):
        observed = bool(video.mask[t])
        state = fitted.filter_step(state, float(video.times[t]),
                                   video.means[t] if observed else None,
                                   video.covs[t] if observed else None)
        torch.testing.assert_close(state.mean, batch.latent_mean[t], rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(state.cov, batch.latent_cov[t], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(state.log_likelihood, batch.log_likelihood)
    mean, lower, upper = fitted.decode(state.mean, state.cov)
    torch.testing.assert_close(mean, batch.mean[-1])
    torch.testing.assert_close(upper - lower, batch.upper[-1] - batch.lower[-1])


def test_causal_output_unchanged_when_frames_are_appended(fitted):
    video = simulate(1, 300, seed=4)[0][0]
    cut = 120
    prefix = AffectObservations(*(x[:cut] for x in video))
    short, full = fitted.filter(prefix), fitted.filter(video)  # sequential vs parallel lengths
    torch.testing.assert_close(full.latent_mean[:cut], short.latent_mean, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(full.upper[:cut], short.upper, rtol=1e-9, atol=1e-12)
    # the smoother, by contrast, uses the future
    assert not torch.allclose(fitted.smooth(video).latent_mean[:cut],
                              fitted.smooth(prefix).latent_mean)


def test_fixed_lag_output_is_the_smoother_of_the_frames_until_the_lag(data, fitted):
    video = simulate(1, 80, seed=7, missing=0.2)[0][0]
    lag = 6
    lagged = fitted.smooth(video, lag=lag)
    for t in (0, 13, 40, 73, 79):
        prefix = AffectObservations(*(x[:t + lag + 1] for x in video))
        torch.testing.assert_close(lagged.latent_mean[t], fitted.smooth(prefix).latent_mean[t])
        torch.testing.assert_close(lagged.latent_cov[t], fitted.smooth(prefix).latent_cov[t])
    # between the filter and the smoother: a few frames of look-ahead recover most of the gain
    videos, paths = data
    errors = {key: [] for key in ("filter", "lag", "smooth")}
    for sequence, path in zip(videos, paths, strict=True):
        for key, post in (("filter", fitted.filter(sequence)),
                          ("lag", fitted.smooth(sequence, lag=5)),
                          ("smooth", fitted.smooth(sequence))):
            errors[key].append((post.mean - path) ** 2)
    rmse = {key: float(torch.cat(e).mean().sqrt()) for key, e in errors.items()}
    assert rmse["smooth"] < rmse["lag"] < rmse["filter"]
    with pytest.raises(ValueError, match="lag"):
        fitted.smooth(video, lag=-2)


@pytest.mark.parametrize("lag", [0, 3])
def test_streaming_fixed_lag_equals_the_batch_fixed_lag(fitted, lag):
    model = copy.deepcopy(fitted)
    model.filter_noise_scale_ = 4.0 * fitted.noise_scale_  # the lagged output ignores it
    video = simulate(1, 30, seed=8, missing=0.25)[0][0]
    batch = model.smooth(video, lag=lag)
    assert not torch.allclose(batch.latent_mean, model.filter(video).latent_mean)
    state = None
    for t in range(len(video.times)):
        observed = bool(video.mask[t])
        state = model.lag_step(state, float(video.times[t]),
                               video.means[t] if observed else None,
                               video.covs[t] if observed else None, lag=lag)
        n = min(t + 1, lag + 1)
        assert len(state.times) == n
        # every buffered row is the smoother of the frames so far
        so_far = model.smooth(AffectObservations(*(x[:t + 1] for x in video)))
        torch.testing.assert_close(state.means, so_far.latent_mean[-n:])
        torch.testing.assert_close(state.covs, so_far.latent_cov[-n:])
        if t >= lag:  # row 0 is final: frame t - lag, lag frames on
            torch.testing.assert_close(state.means[0], batch.latent_mean[t - lag])
            torch.testing.assert_close(state.covs[0], batch.latent_cov[t - lag])
    # at the end of the stream the buffer holds the last frames' final posteriors
    torch.testing.assert_close(state.means, batch.latent_mean[-(lag + 1):])
    torch.testing.assert_close(state.covs, batch.latent_cov[-(lag + 1):])
    with pytest.raises(ValueError, match="lag"):
        model.lag_step(None, 0.0, lag=-1)
    with pytest.raises(ValueError, match="lag"):
        model.lag_step(state, float(video.times[-1]) + 1.0, lag=lag + 1)


def test_missing_faces_widen_the_band(fitted):
    video = simulate(1, 60, seed=5, missing=0.0)[0][0]
    mask = torch.ones(60, dtype=torch.bool)
    mask[20:35] = False
    gap = AffectObservations(video.times, video.means, video.covs, mask)
    for method in (fitted.filter, fitted.smooth):
        width, gap_width = (method(v).upper - method(v).lower for v in (video, gap))
        assert (gap_width[20:35] > width[20:35]).all()


def test_samples_are_reproducible_and_match_the_smoother(fitted):
    video = simulate(1, 50, seed=6)[0][0]
    draws = fitted.sample(video, n=4000, random_state=1)
    assert draws.latent.shape == (4000, 50, 2) and draws.va.shape == (4000, 50, 2)
    smoothed = fitted.smooth(video)
    torch.testing.assert_close(draws.latent.mean(0), smoothed.latent_mean, atol=0.02, rtol=0)
    again = fitted.sample(video, n=3, random_state=1)
    torch.testing.assert_close(again.latent, fitted.sample(video, n=3, random_state=1).latent)


def test_decoders_linear_exact_and_nonlinear_by_sampling(fitted):
    video = simulate(1, 30, seed=7)[0][0]
    a = torch.tensor([[0.8, 0.1], [-0.3, 1.2]], dtype=torch.float64)
    linear = CoreAffectDynamics(decoder=a, divide_prior=False)
    linear._set_point(fitted._point())
    exact = linear.smooth(video)
    torch.testing.assert_close(exact.mean, exact.latent_mean @ a.T)

    class Manifold:  # decode(z) -> a distribution over y, like AffectManifold
        def decode(self, z):
            return torch.distributions.Normal(z @ a.T, 1e-3)

    sampled = CoreAffectDynamics(decoder=Manifold(), divide_prior=False,
                                 n_decode_samples=20000)
    sampled._set_point(fitted._point())
    mc = sampled.smooth(video)
    torch.testing.assert_close(mc.latent_mean, exact.latent_mean)
    torch.testing.assert_close(mc.mean, exact.mean, atol=0.01, rtol=0)
    torch.testing.assert_close(mc.lower, exact.lower, atol=0.02, rtol=0)
    torch.testing.assert_close(mc.upper, exact.upper, atol=0.02, rtol=0)


def test_save_load_round_trip(tmp_path, fitted):
    fitted.save(tmp_path / "run")
    loaded = CoreAffectDynamics.load(tmp_path / "run")
    for name in ("theta_", "mu_", "diffusion_", "noise_scale_"):
        torch.testing.assert_close(getattr(loaded, name), getattr(fitted, name))
    assert loaded.n_iter_ == fitted.n_iter_
    assert loaded.log_likelihood_ == fitted.log_likelihood_
    video = simulate(1, 20, seed=8)[0][0]
    for a, b in zip(loaded.smooth(video), fitted.smooth(video), strict=True):
        if isinstance(a, torch.Tensor):
            torch.testing.assert_close(a, b)


def test_a_model_that_divides_out_p_z_still_does_when_loaded_without_its_decoder(tmp_path):
    video = simulate(1, 30, seed=9, scale=0.3)[0][0]
    model = CoreAffectDynamics(decoder=torch.eye(2, dtype=torch.float64))  # divides: a decoder
    model._set_point(_truth()._point())
    model.save(tmp_path / "run")
    loaded = CoreAffectDynamics.load(tmp_path / "run")  # no decoder given back
    torch.testing.assert_close(loaded.smooth(video).latent_mean, model.smooth(video).latent_mean)


def test_a_dividing_model_fitted_before_uninformative_directions_were_unscaled_is_named(
        tmp_path, caplog, saved_without_config):
    import json

    model = CoreAffectDynamics(decoder=torch.eye(2, dtype=torch.float64))  # divides: a decoder
    model._set_point(_truth()._point())
    model.save(tmp_path)
    saved_without_config(tmp_path, "dynamics")
    path = tmp_path / "dynamics.json"
    saved = json.loads(path.read_text())
    del saved["config"]["estimator"]["uninformative_unscaled"]  # an earlier file
    path.write_text(json.dumps(saved))
    with caplog.at_level("WARNING", logger="coreaffect.dynamics"):
        CoreAffectDynamics.load(tmp_path)
    assert "dynamics.json: fitted when the noise scale also scaled" in caplog.text
    caplog.clear()
    saved["config"]["estimator"]["divide_prior"] = False  # nothing divided: nothing to say
    path.write_text(json.dumps(saved))
    with caplog.at_level("WARNING", logger="coreaffect.dynamics"):
        CoreAffectDynamics.load(tmp_path)
    assert "noise scale" not in caplog.text


def test_unfitted_and_bad_input_raise():
    with pytest.raises(CoreAffectError, match="not fitted"):
        CoreAffectDynamics().filter(simulate(1, 5, seed=0)[0][0])
    video = simulate(1, 5, seed=0)[0][0]
    backwards = AffectObservations(video.times.flip(0), video.means, video.covs, video.mask)
    with pytest.raises(ValueError, match="increasing"):
        CoreAffectDynamics().fit(backwards)
    with pytest.raises(ValueError, match="method"):
        CoreAffectDynamics().fit(video, method="em")
    hidden = AffectObservations(video.times, video.means, video.covs, torch.zeros(5, dtype=bool))
    with pytest.raises(ValueError, match="no observed frame"):
        CoreAffectDynamics().fit(hidden)
    glimpses = [AffectObservations(video.times, video.means, video.covs,
                                   torch.arange(5) == i) for i in range(3)]
    with pytest.raises(ValueError, match="no video with two or more observed frames"):
        CoreAffectDynamics().fit(glimpses)  # one frame each: theta and L are not told apart
    same_frame = [AffectObservations(video.times, video.means, video.covs,
                                     torch.arange(5) == 0)] * 3
    with pytest.raises(ValueError, match="no video with two or more observed frames"):
        CoreAffectDynamics().fit(same_frame)  # counted within each video, not across them
    two = AffectObservations(video.times, video.means, video.covs, torch.arange(5) < 2)
    with pytest.warns(UserWarning, match=r"fitted to 1 step\(s\) between observed frames "
                                         r"within a video, fewer than their 10 parameters"):
        assert CoreAffectDynamics(max_iter=5).fit([*glimpses, two]).theta_.shape == (2, 2)
    stopped = video.times.clone()
    stopped[0] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        CoreAffectDynamics().fit(AffectObservations(stopped[:1], video.means[:1], video.covs[:1]))


@pytest.mark.parametrize(("setting", "value"), [
    ("min_precision", 0.0), ("min_precision", -1e-3), ("min_precision", float("nan")),
    ("noise_floor", -1e-4), ("noise_floor", float("inf")), ("noise_floor", True),
])
def test_floors_are_checked_before_any_computation(fitted, setting, value):
    video = simulate(1, 10, seed=0)[0][0]
    with pytest.raises(ValueError, match=setting):
        CoreAffectDynamics(**{setting: value}).fit(video)
    model = copy.copy(fitted)
    setattr(model, setting, value)
    with pytest.raises(ValueError, match=setting):
        model.smooth(video)
    with pytest.raises(ValueError, match=setting):
        model.filter_step(None, 0.0, torch.zeros(2), 0.01 * torch.eye(2))


@pytest.mark.parametrize(("mean", "cov", "message"), [
    (torch.tensor([float("nan"), 0.0]), 0.01 * torch.eye(2), "non-finite"),
    (torch.zeros(2), -torch.eye(2), "positive definite"),
    (torch.zeros(3), torch.eye(3), "expected"),
    (torch.zeros(2), None, "needs its covariance"),
])
def test_streaming_steps_check_each_frame(fitted, mean, cov, message):
    for step in (fitted.filter_step, lambda *a: fitted.lag_step(*a, lag=2)):
        with pytest.raises(ValueError, match=message):
            step(None, 0.0, mean, cov)
    state = fitted.filter_step(None, 0.0, torch.zeros(2), 0.01 * torch.eye(2))
    with pytest.raises(ValueError, match="finite|follow"):
        fitted.filter_step(state, float("nan"), torch.zeros(2), 0.01 * torch.eye(2))
    for time in ("abc", None):  # named, as any frame's problem is
        with pytest.raises(ValueError, match=f"frame at time {time!r}: times must be finite"):
            fitted.filter_step(state, time)
    # a frame without a face needs no values
    assert fitted.filter_step(state, 0.1).mean.isfinite().all()
    # a state of another model (K = 3), or not a state, is named; a float32 one is taken
    for other in (state._replace(mean=torch.zeros(3), cov=torch.eye(3)),
                  state._replace(mean=[0.0, 0.0])):
        with pytest.raises(InputError, match=r"state must be the FilterState of this model's "
                                             r"last step, a mean \(2,\)"):
            fitted.filter_step(other, 0.1)
    single = state._replace(mean=state.mean.float(), cov=state.cov.float())
    torch.testing.assert_close(fitted.filter_step(single, 0.1).mean,
                               fitted.filter_step(state, 0.1).mean, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("n", [0, -1, 2.5, True])
def test_the_number_of_draws_is_checked(data, fitted, n):
    with pytest.raises(ValueError, match="n, the number of draws, must be an integer >= 1"):
        fitted.sample(data[0][0], n=n)


def test_levels_and_lags_are_checked_and_numpy_numbers_accepted(data, fitted):
    video = data[0][0]
    for level in (0.0, 1.0, 90, True):
        with pytest.raises(ValueError, match="level"):
            fitted.decode(torch.zeros(2), torch.eye(2), level=level)
    with pytest.raises(ValueError, match="level"):
        CoreAffectDynamics(level=90).decode(torch.zeros(2), torch.eye(2))
    assert torch.equal(fitted.smooth(video, lag=np.int64(3)).mean, fitted.smooth(video, lag=3).mean)
    low = fitted.decode(torch.zeros(2), torch.eye(2), level=0.5)[1]
    for half in (np.float32(0.5), np.array(0.5), torch.tensor(0.5)):
        assert torch.allclose(fitted.decode(torch.zeros(2), torch.eye(2), level=half)[1], low)
    for bad in ("0.5", np.array([0.5]), None):
        with pytest.raises(ValueError, match="level"):
            CoreAffectDynamics(level=bad).decode(torch.zeros(2), torch.eye(2))


def test_nuts_recovers_parameters_with_good_diagnostics(tmp_path):
    """One latent dimension, 16 short videos, 2 chains of 100 draws: about 20 s on a CPU."""
    az = _arviz()

    videos, _ = simulate(n_videos=16, steps=32, seed=11, k=1, dt=0.25, missing=0.05)
    model = CoreAffectDynamics(n_latent=1, optimizer="lbfgs", num_warmup=50, num_samples=100,
                               num_chains=2, random_state=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CoreAffectWarning)
        model.fit(videos, method="nuts")
    data = model.inference_data_
    summary = az.summary(data, kind="diagnostics")
    assert (summary["r_hat"] < 1.05).all(), summary
    assert (summary["ess_bulk"] > 50).all(), summary
    assert int(np.asarray(data["sample_stats"]["diverging"]).sum()) <= 3
    found = model.nuts_diagnostics()
    assert found == {"r_hat": summary["r_hat"].max(), "ess_bulk": summary["ess_bulk"].min(),
                     "ess_tail": summary["ess_tail"].min(),
                     "divergences": int(np.asarray(data["sample_stats"]["diverging"]).sum()),
                     "chains": 2, "draws": 100}
    # so short a run may miss the strict thresholds: it warns exactly when it does
    ours = [w for w in caught if issubclass(w.category, CoreAffectWarning)]
    assert len(ours) == bool(convergence_problems(found)), [str(w.message) for w in ours]
    truth = {"theta": THETA[:1, :1], "mu": MU[:1], "diffusion": DIFFUSION[:1, :1],
             "noise_scale": torch.tensor(SCALE)}
    for name, value in truth.items():
        draws = np.asarray(data["posterior"][name]).reshape(200, -1)  # (chain x draw, ...)
        low, high = np.quantile(draws, [0.005, 0.995], axis=0)
        assert ((low <= value.numpy().ravel()) & (value.numpy().ravel() <= high)).all(), name
        # the point parameters are the posterior means (of L L^T for the diffusion, 1 x 1)
        square = 2 if name == "diffusion" else 1
        np.testing.assert_allclose(getattr(model, f"{name}_").numpy().ravel() ** square,
                                   (draws ** square).mean(0), rtol=1e-12)
    # the draws travel with the model
    model.save(tmp_path / "run")
    loaded = CoreAffectDynamics.load(tmp_path / "run")
    np.testing.assert_array_equal(np.asarray(loaded.inference_data_["posterior"]["theta"]),
                                  np.asarray(data["posterior"]["theta"]))


def _streamed(model: CoreAffectDynamics, video: AffectObservations):
    """The filter's state after the last frame, fed one frame at a time by filter_step."""
    state = None
    for t in range(len(video.times)):
        observed = bool(video.mask[t])
        state = model.filter_step(state, float(video.times[t]),
                                  video.means[t] if observed else None, video.covs[t])
    return state


def test_per_axis_noise_scales_scale_each_axis_of_the_observation_covariance():
    video = simulate(1, 200, seed=7)[0][0]
    scales = torch.tensor([0.3, 4.0], dtype=torch.float64)
    per_axis, reference = _truth(), _truth()
    per_axis.noise_scale_ = scales
    reference.noise_scale_ = torch.tensor(1.0, dtype=torch.float64)
    # the reference: a single scale of 1 on covariances that carry C^(1/2) S C^(1/2) already
    root = scales.sqrt()
    scaled = AffectObservations(video.times, video.means,
                                root[:, None] * video.covs * root[None, :], video.mask)
    for method in ("filter", "smooth"):
        a, b = getattr(per_axis, method)(video), getattr(reference, method)(scaled)
        torch.testing.assert_close(a.latent_mean, b.latent_mean, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(a.latent_cov, b.latent_cov, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(_streamed(per_axis, video).mean,
                               per_axis.filter(video).latent_mean[-1])
    # equal scales on every axis are the single scale
    equal = _truth()
    equal.noise_scale_ = torch.tensor([SCALE, SCALE], dtype=torch.float64)
    torch.testing.assert_close(equal.smooth(video).latent_mean,
                               _truth().smooth(video).latent_mean, rtol=1e-9, atol=1e-12)


def test_frames_no_surer_than_p_z_do_not_drive_the_noise_scale_to_zero():
    """With p(z) divided out, a frame whose S_t >= I says nothing: fitting with a quarter of
    the frames so must give the fit without them (masked). Scaling their 1/min_precision
    variance by c rewarded a small c, and the fit ended at c ~ 1e-5 with Theta seven times
    too fast."""
    videos = simulate(4, 300, seed=2, missing=0.0)[0]
    included, masked = [], []
    for video in videos:
        flat = torch.zeros(len(video.times), dtype=torch.bool)
        flat[::4] = True
        covs = video.covs.clone()
        covs[flat] = 1.5 * torch.eye(2, dtype=torch.float64)
        included.append(AffectObservations(video.times, video.means, covs, video.mask))
        masked.append(AffectObservations(video.times, video.means, covs, video.mask & ~flat))
    a = CoreAffectDynamics(divide_prior=True).fit(included)
    b = CoreAffectDynamics(divide_prior=True).fit(masked)
    torch.testing.assert_close(a.noise_scale_, b.noise_scale_, rtol=0.02, atol=0)
    torch.testing.assert_close(a.theta_, b.theta_, rtol=0.02, atol=0.01)
    assert float(a.noise_scale_) > 0.5  # SCALE (1.5) generated the data


def test_the_filter_may_have_noise_scales_of_its_own(tmp_path):
    video = simulate(1, 200, seed=9)[0][0]
    own, smoother_scale, filter_scale = _truth(), _truth(), _truth()
    own.filter_noise_scale_ = torch.tensor([0.05, 2.0], dtype=torch.float64)
    filter_scale.noise_scale_ = own.filter_noise_scale_
    # the filter (batch and step by step) takes the filter's scales, the smoother the model's
    torch.testing.assert_close(own.filter(video).latent_mean,
                               filter_scale.filter(video).latent_mean, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(own.smooth(video).latent_mean,
                               smoother_scale.smooth(video).latent_mean, rtol=1e-9, atol=1e-12)
    assert not torch.allclose(own.filter(video).latent_mean,
                              smoother_scale.filter(video).latent_mean)
    torch.testing.assert_close(_streamed(own, video).mean, own.filter(video).latent_mean[-1])
    # the latent-only copy keeps them, and they travel with the saved model
    torch.testing.assert_close(own.without_decoder().filter(video).latent_mean,
                               own.filter(video).latent_mean)
    own.save(tmp_path / "run")
    loaded = CoreAffectDynamics.load(tmp_path / "run")
    torch.testing.assert_close(loaded.filter_noise_scale_, own.filter_noise_scale_)
    assert CoreAffectDynamics.load(tmp_path / "run").noise_scale_.ndim == 0
    smoother_scale.save(tmp_path / "plain")
    assert CoreAffectDynamics.load(tmp_path / "plain").filter_noise_scale_ is None
    # set by hand as plain numbers, they are taken; what is no scale is named
    plain = _truth()
    plain.filter_noise_scale_ = [0.05, 2.0]
    torch.testing.assert_close(plain.filter(video).latent_mean, own.filter(video).latent_mean)
    for bad in (float("nan"), -1.0, [1.0, 2.0, 3.0], "big"):
        plain.filter_noise_scale_ = bad
        with pytest.raises(InputError, match="filter_noise_scale_ must be one scale > 0 or one "
                                             "per latent axis"):
            plain.filter(video)


def test_settings_given_as_numpy_numbers_are_saved(tmp_path, data):
    videos, _ = data
    model = CoreAffectDynamics(random_state=np.int64(0), max_iter=np.int64(3),
                               level=np.float32(0.9), noise_floor=np.float32(1e-4))
    model.fit(videos[:2]).save(tmp_path / "run")  # JSON takes no numpy numbers
    loaded = CoreAffectDynamics.load(tmp_path / "run")
    assert loaded.max_iter == 3 and type(loaded.max_iter) is int
    torch.testing.assert_close(loaded.theta_, model.theta_)


def test_arviz_data_holds_the_free_entries_of_the_diffusion(tmp_path, monkeypatch):
    """Two latent axes: L[0, 1] is a structural zero, left out so that every r_hat is defined;
    a file written with the whole matrix loads as the free entries. The sampler is replaced by
    independent draws around the maximum-likelihood point (NUTS itself is tested above)."""
    az = _arviz()

    from coreaffect import dynamics
    from coreaffect.checkpoint import load_state, save_state

    def draws_around(energy, mode, num_samples, num_warmup, num_chains, seed):
        g = torch.Generator().manual_seed(seed)
        chains = [{name: value + 0.05 * torch.randn((num_samples, *value.shape), generator=g,
                                                     dtype=value.dtype)
                   for name, value in mode.items()} for _ in range(num_chains)]
        return chains, torch.zeros(num_chains, num_samples, dtype=torch.bool)

    monkeypatch.setattr(dynamics, "named_nuts", draws_around)
    videos, _ = simulate(n_videos=4, steps=12, seed=3)
    model = CoreAffectDynamics(optimizer="lbfgs", num_samples=50, num_chains=2, random_state=0)
    with pytest.warns(CoreAffectWarning, match="bulk ESS"):  # 100 draws in all
        model.fit(videos, method="nuts")
    diffusion = np.asarray(model.inference_data_["posterior"]["diffusion"])
    assert diffusion.shape == (2, 50, 3)
    factors = np.zeros((2, 50, 2, 2))
    factors[..., [0, 1, 1], [0, 0, 1]] = diffusion  # the lower triangle, row by row
    point = model.diffusion_.numpy()  # the factor of the posterior mean of L L^T
    np.testing.assert_allclose(point @ point.T,
                               (factors @ factors.swapaxes(-1, -2)).mean(axis=(0, 1)),
                               rtol=1e-12)
    assert point[0, 1] == 0 and (np.diag(point) > 0).all()
    r_hat = az.summary(model.inference_data_, kind="diagnostics")["r_hat"]
    assert len(r_hat) == 4 + 2 + 3 + 1 and np.isfinite(r_hat).all(), r_hat
    model.save(tmp_path / "run")
    tensors, config = load_state(tmp_path / "run", "dynamics")
    whole = torch.zeros(2, 50, 2, 2, dtype=tensors["posterior.diffusion"].dtype)
    rows, cols = torch.tril_indices(2, 2)
    whole[..., rows, cols] = tensors["posterior.diffusion"]
    save_state(tmp_path / "run", "dynamics", {**tensors, "posterior.diffusion": whole}, config)
    loaded = CoreAffectDynamics.load(tmp_path / "run")
    np.testing.assert_array_equal(np.asarray(loaded.inference_data_["posterior"]["diffusion"]),
                                  diffusion)


def test_nuts_warns_when_its_chains_disagree(monkeypatch):
    """Chains drawn around two different points: r_hat far above 1.01, a warning that names
    it, and the diagnostics at hand; without NUTS draws there are none to read."""
    from coreaffect import dynamics
    from coreaffect.errors import CoreAffectWarning

    def apart(energy, mode, num_samples, num_warmup, num_chains, seed):
        g = torch.Generator().manual_seed(seed)
        chains = [{name: value + chain + 0.05 * torch.randn((num_samples, *value.shape),
                                                             generator=g, dtype=value.dtype)
                   for name, value in mode.items()} for chain in range(num_chains)]
        diverging = torch.zeros(num_chains, num_samples, dtype=torch.bool)
        diverging[0, :3] = True
        return chains, diverging

    monkeypatch.setattr(dynamics, "named_nuts", apart)
    videos, _ = simulate(n_videos=4, steps=12, seed=3)
    model = CoreAffectDynamics(optimizer="lbfgs", num_samples=200, num_chains=2, random_state=0)
    with pytest.warns(CoreAffectWarning, match=r"NUTS may not have converged: split r_hat up "
                      r"to \d+\.\d+ \(want < 1.01\); .*; 3 divergent transitions") as caught:
        model.fit(videos, method="nuts")
    assert caught[0].filename == __file__
    found = model.nuts_diagnostics()
    assert found["r_hat"] > 1.5 and found["divergences"] == 3 and found["draws"] == 200
    with pytest.raises(CoreAffectError, match="no NUTS draws"):
        CoreAffectDynamics(optimizer="lbfgs").fit(videos).nuts_diagnostics()


@pytest.mark.parametrize(("key", "value", "message"), [
    ("n_decode_samples", "1000", "n_decode_samples must be an integer"),
    ("max_iter", 2.5, "max_iter must be an integer"),
    ("parallel", "yes", "parallel must be True, False or None"),
    ("optimizer", "sgd", "optimizer must be"),
    ("level", 90, "level must be a probability"),
    ("n_latent", 3, r"theta has shape \(2, 2\), not \(3, 3\)"),
    ("tol", None, "tol must be a finite non-negative number"),
])
def test_a_hand_edited_model_file_is_refused_when_loaded(tmp_path, fitted, key, value, message,
                                                         saved_without_config):
    import json

    from coreaffect.errors import CoreAffectError

    fitted.save(tmp_path / "run")
    saved_without_config(tmp_path / "run", "dynamics")  # the loader's own checks, behind that
    path = tmp_path / "run" / "dynamics.json"
    meta = json.loads(path.read_text())
    meta["config"]["estimator"][key] = value
    path.write_text(json.dumps(meta))
    with pytest.raises(CoreAffectError, match=f"dynamics.json: .*{message}"):
        CoreAffectDynamics.load(tmp_path / "run")


def test_settings_changed_after_fitting_are_checked_before_use(fitted):
    video = simulate(1, 10, seed=0)[0][0]
    for key, value in (("n_decode_samples", 0), ("random_state", 1.5), ("divide_prior", 1)):
        model = copy.copy(fitted)
        setattr(model, key, value)
        with pytest.raises(ValueError, match=key):
            model.smooth(video)
