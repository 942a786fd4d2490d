"""Dynamics: Kalman filter, RTS and fixed-lag smoothers and sampler on OU models against
independent references (dense Gaussian conditioning of the joint, Pyro's GaussianHMM, pykalman),
and the associative-scan (parallel) filter and smoother against the sequential ones. The OU
discretisation itself is tested in test_ou.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from coreaffect.dynamics import (
    LGSSM,
    fixed_lag_smoother,
    kalman_filter,
    ou_discretize,
    ou_stationary_cov,
    rts_smoother,
    sample_posterior,
)
from coreaffect.errors import InputError

pytestmark = pytest.mark.usefixtures("float64")  # the references are computed in float64


def _model(steps: int, k: int = 2, d: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    theta = torch.tensor([[0.8, 0.2], [-0.1, 0.5]])[:k, :k]
    mu = torch.tensor([0.3, -0.2])[:k]
    diffusion = torch.tensor([[0.6, 0.0], [0.2, 0.5]])[:k, :k]
    dt = 0.1 + torch.rand(steps - 1, generator=g) * 0.3  # irregular steps
    f, b, q = ou_discretize(theta, mu, diffusion, dt)
    params = LGSSM(init_mean=mu, init_cov=ou_stationary_cov(theta, diffusion), transition=f,
                   offset=b, process_cov=q, emission=torch.randn(d, k, generator=g))
    y = torch.randn(steps, d, generator=g)
    a = torch.randn(steps, d, d, generator=g) * 0.3
    r = a @ a.transpose(-1, -2) + 0.05 * torch.eye(d)  # time-varying noise
    return params, y, r


def _joint(params: LGSSM, steps: int):
    """Mean (T K,) and covariance (T K, T K) of z_{0:T-1}, built densely."""
    k = params.init_mean.shape[-1]
    means, covs = [params.init_mean], [params.init_cov]
    for t in range(1, steps):
        f = params.transition[t - 1]
        means.append(f @ means[-1] + params.offset[t - 1])
        covs.append(f @ covs[-1] @ f.T + params.process_cov[t - 1])
    big = torch.zeros(steps * k, steps * k)
    for i in range(steps):
        big[i * k:(i + 1) * k, i * k:(i + 1) * k] = covs[i]
        prod = torch.eye(k)
        for j in range(i + 1, steps):
            prod = params.transition[j - 1] @ prod
            block = prod @ covs[i]  # Cov(z_j, z_i)
            big[j * k:(j + 1) * k, i * k:(i + 1) * k] = block
            big[i * k:(i + 1) * k, j * k:(j + 1) * k] = block.T
    return torch.cat(means), big


def _dense_posterior(params, y, r, observed):
    steps, d = y.shape
    k = params.init_mean.shape[-1]
    mean, cov = _joint(params, steps)
    rows = [t for t in range(steps) if observed[t]]
    h = torch.zeros(len(rows) * d, steps * k)
    noise = torch.zeros(len(rows) * d, len(rows) * d)
    for i, t in enumerate(rows):
        h[i * d:(i + 1) * d, t * k:(t + 1) * k] = params.emission
        noise[i * d:(i + 1) * d, i * d:(i + 1) * d] = r[t]
    s = h @ cov @ h.T + noise
    gain = cov @ h.T @ torch.linalg.inv(s)
    obs = torch.cat([y[t] for t in rows])
    post_mean = mean + gain @ (obs - h @ mean)
    post_cov = cov - gain @ h @ cov
    log_lik = torch.distributions.MultivariateNormal(h @ mean, s).log_prob(obs)
    return post_mean.reshape(steps, k), post_cov, log_lik


@pytest.mark.parametrize("missing", [[], [2, 3], [0, 5]])
def test_smoother_equals_dense_conditioning(missing):
    steps = 6
    params, y, r = _model(steps)
    observed = torch.ones(steps, dtype=torch.bool)
    observed[missing] = False
    y = y.clone()
    y[~observed] = float("nan")  # masked values are never read
    smoothed = rts_smoother(params, y, r, observed)
    mean, cov, log_lik = _dense_posterior(params, y, r, observed)
    torch.testing.assert_close(smoothed.means, mean)
    k = 2
    for t in range(steps):
        torch.testing.assert_close(smoothed.covs[t], cov[t * k:(t + 1) * k, t * k:(t + 1) * k])
    for t in range(steps - 1):
        torch.testing.assert_close(smoothed.cross_covs[t],
                                   cov[t * k:(t + 1) * k, (t + 1) * k:(t + 2) * k])
    torch.testing.assert_close(smoothed.log_likelihood, log_lik)


def test_filter_last_step_equals_smoother_and_is_causal():
    params, y, r = _model(8)
    filtered = kalman_filter(params, y, r)
    smoothed = rts_smoother(params, y, r)
    torch.testing.assert_close(filtered.means[-1], smoothed.means[-1])
    # the filtered value at step t does not change when later observations change
    y2 = y.clone()
    y2[5:] += 3.0
    torch.testing.assert_close(kalman_filter(params, y2, r).means[:5], filtered.means[:5])


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("lag", [0, 1, 3, 9])
def test_fixed_lag_equals_dense_conditioning_on_the_frames_until_the_lag(lag, parallel):
    steps = 7
    params, y, r = _model(steps, seed=5)
    observed = torch.ones(steps, dtype=torch.bool)
    observed[[2, 5]] = False  # a masked step inside and at the end of some windows
    y = y.clone()
    y[~observed] = float("nan")
    lagged = fixed_lag_smoother(params, y, r, observed, lag=lag, parallel=parallel)
    k = 2
    for t in range(steps):
        end = min(steps, t + lag + 1)  # frames 0 .. t + lag
        cut = params._replace(transition=params.transition[:end - 1],
                              offset=params.offset[:end - 1],
                              process_cov=params.process_cov[:end - 1])
        mean, cov, _ = _dense_posterior(cut, y[:end], r[:end], observed[:end])
        torch.testing.assert_close(lagged.means[t], mean[t])
        torch.testing.assert_close(lagged.covs[t], cov[t * k:(t + 1) * k, t * k:(t + 1) * k])
    filtered = kalman_filter(params, y, r, observed)
    torch.testing.assert_close(lagged.log_likelihood, filtered.log_likelihood)
    if lag == 0:
        torch.testing.assert_close(lagged.means, filtered.means)
    if lag >= steps - 1:
        torch.testing.assert_close(lagged.means, rts_smoother(params, y, r, observed).means)


def test_fixed_lag_with_shared_parameters_and_batch_axes():
    steps = 6
    params, y, r = _model(steps, seed=6)
    # shared transition parameters (no time axis) against the same model given per step
    shared = params._replace(transition=params.transition[0], offset=params.offset[0],
                             process_cov=params.process_cov[0])
    per_step = params._replace(transition=shared.transition.expand(steps - 1, 2, 2),
                               offset=shared.offset.expand(steps - 1, 2),
                               process_cov=shared.process_cov.expand(steps - 1, 2, 2))
    observed = torch.tensor([True, True, False, True, True, False])
    lagged = fixed_lag_smoother(shared, y, r, observed, lag=2)
    for t in range(steps):
        end = min(steps, t + 3)
        cut = per_step._replace(transition=per_step.transition[:end - 1],
                                offset=per_step.offset[:end - 1],
                                process_cov=per_step.process_cov[:end - 1])
        mean, cov, _ = _dense_posterior(cut, y[:end], r[:end], observed[:end])
        torch.testing.assert_close(lagged.means[t], mean[t])
        torch.testing.assert_close(lagged.covs[t], cov[2 * t:2 * t + 2, 2 * t:2 * t + 2])
    # a batch of two videos with their own masks equals each on its own
    ys = torch.stack([y, y + 1.0])  # (2, T, D)
    masks = torch.stack([observed, ~observed | (torch.arange(steps) == 0)])
    both = fixed_lag_smoother(shared, ys, r.expand(2, -1, -1, -1), masks, lag=2)
    for i in range(2):
        alone = fixed_lag_smoother(shared, ys[i], r, masks[i], lag=2)
        torch.testing.assert_close(both.means[i], alone.means)
        torch.testing.assert_close(both.covs[i], alone.covs)
    with pytest.raises(ValueError, match="lag"):
        fixed_lag_smoother(params, y, r, lag=-1)


def test_log_likelihood_matches_pyro_gaussian_hmm():
    from pyro.distributions import GaussianHMM

    steps = 7
    params, y, r = _model(steps, seed=3)
    # shared transition parameters for GaussianHMM (stationary model)
    f, b, q = params.transition[0], params.offset[0], params.process_cov[0]
    shared = params._replace(transition=f, offset=b, process_cov=q)
    r_shared = r[0].expand(steps, 2, 2)
    ours = kalman_filter(shared, y, r_shared).log_likelihood
    # Pyro: z_0 = init + transition from a prior step; it multiplies on the right and starts
    # with a transition. Give it an initial state one step before ours whose push-forward is
    # our N(m_0, P_0): a zero transition matrix then makes z_0 ~ N(offset, Q) exactly.
    mvn = torch.distributions.MultivariateNormal
    hmm = GaussianHMM(
        initial_dist=mvn(torch.zeros(2), torch.eye(2)),
        transition_matrix=torch.stack([torch.zeros(2, 2)] + [f.T] * (steps - 1)),
        transition_dist=mvn(torch.stack([params.init_mean] + [b] * (steps - 1)),
                            torch.stack([params.init_cov] + [q] * (steps - 1))),
        observation_matrix=params.emission.T,
        observation_dist=mvn(torch.zeros(2), r[0]),
        duration=steps)
    torch.testing.assert_close(ours, hmm.log_prob(y))


def test_missing_steps_widen_the_band():
    params, y, r = _model(12)
    full = rts_smoother(params, y, r)
    mask = torch.ones(12, dtype=torch.bool)
    mask[4:8] = False
    gap = rts_smoother(params, y, r, mask)
    width = torch.diagonal(gap.covs, dim1=-2, dim2=-1)
    base = torch.diagonal(full.covs, dim1=-2, dim2=-1)
    assert (width[4:8] > base[4:8]).all()


def test_batched_equals_separate_and_float32_is_finite():
    runs = [_model(6, seed=s) for s in range(3)]
    params = LGSSM(*(torch.stack([p[i] for p, _, _ in runs]) if i < 5 else runs[0][0][i]
                     for i in range(6)))
    params = params._replace(emission=runs[0][0].emission)
    runs = [(p._replace(emission=runs[0][0].emission), y, r) for p, y, r in runs]
    y = torch.stack([y for _, y, _ in runs])
    r = torch.stack([r for _, _, r in runs])
    batched = rts_smoother(params, y, r)
    for i, (p, yi, ri) in enumerate(runs):
        single = rts_smoother(p, yi, ri)
        torch.testing.assert_close(batched.means[i], single.means)
        torch.testing.assert_close(batched.log_likelihood[i], single.log_likelihood)
    p32 = LGSSM(*(x.float() for x in runs[0][0]))
    out = rts_smoother(p32, runs[0][1].float(), runs[0][2].float() * 1e-4)
    assert torch.isfinite(out.covs).all() and torch.isfinite(out.means).all()


def test_gradients_flow_to_ou_parameters():
    theta = torch.tensor([[0.8, 0.0], [0.0, 0.5]], requires_grad=True)
    mu = torch.zeros(2, requires_grad=True)
    diffusion = torch.eye(2).mul(0.5).requires_grad_()
    f, b, q = ou_discretize(theta, mu, diffusion, torch.full((9,), 0.2))
    params = LGSSM(mu, ou_stationary_cov(theta, diffusion), f, b, q, torch.eye(2))
    y = torch.randn(10, 2, generator=torch.Generator().manual_seed(0))
    kalman_filter(params, y, torch.eye(2).expand(10, 2, 2) * 0.1).log_likelihood.backward()
    assert all(torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
               for x in (theta, mu, diffusion))


def _noiseless_direction_model(steps: int = 6):
    """An OU model whose third axis has no diffusion: it sits at its baseline, so every
    predicted covariance P_{t+1|t} is singular (a direction without noise)."""
    g = torch.Generator().manual_seed(3)
    theta, mu = torch.diag(torch.tensor([1.0, 2.0, 0.5])), torch.tensor([0.1, -0.3, 0.4])
    diffusion = torch.diag(torch.tensor([0.5, 0.5, 0.0]))
    f, b, q = ou_discretize(theta, mu, diffusion, torch.full((steps - 1,), 0.2))
    params = LGSSM(init_mean=mu, init_cov=ou_stationary_cov(theta, diffusion), transition=f,
                   offset=b, process_cov=q, emission=torch.randn(2, 3, generator=g))
    y = torch.randn(steps, 2, generator=g)
    return params, y, 0.1 * torch.eye(2).expand(steps, 2, 2)


@pytest.mark.parametrize("parallel", [False, True])
def test_smoothers_and_sampler_handle_a_direction_without_noise(parallel):
    steps, k = 6, 3
    params, y, r = _noiseless_direction_model(steps)
    assert torch.linalg.matrix_rank(params.process_cov[0]) == 2
    observed = torch.tensor([True, True, False, True, True, True])
    mean, cov, _ = _dense_posterior(params, y, r, observed)
    smoothed = rts_smoother(params, y, r, observed, parallel=parallel)
    torch.testing.assert_close(smoothed.means, mean)
    for t in range(steps):
        torch.testing.assert_close(smoothed.covs[t], cov[t * k:(t + 1) * k, t * k:(t + 1) * k])
    for t in range(steps - 1):
        torch.testing.assert_close(smoothed.cross_covs[t],
                                   cov[t * k:(t + 1) * k, (t + 1) * k:(t + 2) * k])
    torch.testing.assert_close(smoothed.means[:, 2], torch.full((steps,), 0.4))  # the baseline
    lagged = fixed_lag_smoother(params, y, r, observed, lag=steps, parallel=parallel)
    torch.testing.assert_close(lagged.means, smoothed.means)
    draws = sample_posterior(params, y, r, observed, n=20000, random_state=0, parallel=parallel)
    assert torch.isfinite(draws).all()
    torch.testing.assert_close(draws.mean(0), smoothed.means, atol=0.02, rtol=0)
    emission = params.emission.clone().requires_grad_(True)
    smoothed = rts_smoother(params._replace(emission=emission), y, r, observed, parallel=parallel)
    (smoothed.means.sum() + smoothed.covs.sum()).backward()
    assert torch.isfinite(emission.grad).all()


def test_per_step_parameters_must_have_one_step_fewer_than_the_observations():
    params, y, r = _model(6)
    with pytest.raises(ValueError, match="LGSSM.transition has 5 steps"):
        kalman_filter(params, y[:5], r[:5])
    with pytest.raises(ValueError, match="LGSSM.offset has 5 steps"):
        kalman_filter(params._replace(transition=params.transition[:1]), y[:4], r[:4],
                      parallel=True)
    shared = params._replace(transition=params.transition[:1], offset=params.offset[:1],
                             process_cov=params.process_cov[:1])
    assert torch.isfinite(kalman_filter(shared, y, r).means).all()  # one step: shared


def test_posterior_samples_match_smoothed_moments():
    params, y, r = _model(5, seed=2)
    smoothed = rts_smoother(params, y, r)
    draws = sample_posterior(params, y, r, n=20000, random_state=0)
    assert draws.shape == (20000, 5, 2)
    torch.testing.assert_close(draws.mean(0), smoothed.means, atol=0.02, rtol=0)
    torch.testing.assert_close(torch.cov(draws[:, 2].T), smoothed.covs[2], atol=0.01, rtol=0.05)
    again = sample_posterior(params, y, r, n=3, random_state=0)
    torch.testing.assert_close(again, sample_posterior(params, y, r, n=3, random_state=0))
    fresh = sample_posterior(params, y, r, n=3)  # no seed: other draws at every call
    assert not torch.equal(fresh, sample_posterior(params, y, r, n=3))


def _pykalman(params: LGSSM, y: torch.Tensor, r: torch.Tensor, observed: torch.Tensor):
    """pykalman's filter and smoother on the same time-varying model (numpy, float64)."""
    from pykalman import KalmanFilter

    kf = KalmanFilter(
        transition_matrices=params.transition.numpy(), transition_offsets=params.offset.numpy(),
        transition_covariance=params.process_cov.numpy(),
        observation_matrices=params.emission.numpy(), observation_covariance=r.numpy(),
        initial_state_mean=params.init_mean.numpy(),
        initial_state_covariance=params.init_cov.numpy())
    data = np.ma.masked_array(y.numpy(), mask=np.repeat(~observed.numpy()[:, None], 2, 1))
    return kf, data


@pytest.mark.parametrize("missing", [[], [3, 4, 5, 11]])
def test_filter_and_smoother_match_pykalman(missing):
    """Irregular steps (time-varying F_t, b_t, Q_t) and a per-step observation noise R_t."""
    steps = 15
    params, y, r = _model(steps, seed=5)
    observed = torch.ones(steps, dtype=torch.bool)
    observed[missing] = False
    kf, data = _pykalman(params, y, r, observed)
    ref_means, ref_covs = kf.filter(data)
    ref_smooth_means, ref_smooth_covs = kf.smooth(data)
    for parallel in (False, True):
        filtered = kalman_filter(params, y, r, observed, parallel=parallel)
        smoothed = rts_smoother(params, y, r, observed, parallel=parallel)
        tight = {"rtol": 1e-9, "atol": 1e-11}
        np.testing.assert_allclose(filtered.means.numpy(), ref_means, **tight)
        np.testing.assert_allclose(filtered.covs.numpy(), ref_covs, **tight)
        np.testing.assert_allclose(smoothed.means.numpy(), ref_smooth_means, **tight)
        np.testing.assert_allclose(smoothed.covs.numpy(), ref_smooth_covs, **tight)


def test_log_likelihood_matches_pykalman_on_whitened_observations():
    """pykalman's loglikelihood takes one R for all steps: whiten y_t by R_t = C_t C_t^T, so that
    y'_t = C_t^-1 y_t has emission C_t^-1 H (time-varying) and noise I; then
    log p(y) = log p(y') - sum_t log |det C_t| over observed steps."""
    from pykalman import KalmanFilter

    steps = 12
    params, y, r = _model(steps, seed=6)
    observed = torch.ones(steps, dtype=torch.bool)
    observed[[2, 7]] = False
    chol = torch.linalg.cholesky(r)
    white = torch.linalg.solve_triangular(chol, y[..., None], upper=False)[..., 0]
    emission = torch.linalg.solve_triangular(chol, params.emission.expand(steps, 2, 2),
                                             upper=False)
    kf = KalmanFilter(
        transition_matrices=params.transition.numpy(), transition_offsets=params.offset.numpy(),
        transition_covariance=params.process_cov.numpy(), observation_matrices=emission.numpy(),
        observation_covariance=np.eye(2), initial_state_mean=params.init_mean.numpy(),
        initial_state_covariance=params.init_cov.numpy())
    data = np.ma.masked_array(white.numpy(), mask=np.repeat(~observed.numpy()[:, None], 2, 1))
    log_det = torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)[observed].sum()
    expected = kf.loglikelihood(data) - float(log_det)
    for parallel in (False, True):
        ours = kalman_filter(params, y, r, observed, parallel=parallel).log_likelihood
        assert float(ours) == pytest.approx(expected, rel=1e-10, abs=1e-10)


def test_streaming_filter_update_matches_pykalman():
    """Step by step with pykalman's filter_update, each step with its own F_t, b_t, Q_t, R_t."""
    from pykalman import KalmanFilter

    steps = 10
    params, y, r = _model(steps, seed=7)
    ours = kalman_filter(params, y, r, parallel=True)
    kf = KalmanFilter(n_dim_state=2, n_dim_obs=2, observation_matrices=params.emission.numpy())
    # step 0 conditions the initial state: a zero transition whose offset and noise are N(m_0, P_0)
    transitions = [(np.zeros((2, 2)), params.init_mean.numpy(), params.init_cov.numpy())]
    transitions += [(params.transition[t].numpy(), params.offset[t].numpy(),
                     params.process_cov[t].numpy()) for t in range(steps - 1)]
    mean, cov = np.zeros(2), np.eye(2)
    for t, (f, b, q) in enumerate(transitions):
        mean, cov = kf.filter_update(mean, cov, y[t].numpy(), transition_matrix=f,
                                     transition_offset=b, transition_covariance=q,
                                     observation_covariance=r[t].numpy())
        np.testing.assert_allclose(ours.means[t].numpy(), mean, rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(ours.covs[t].numpy(), cov, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("parallel", [False, True])
def test_a_gap_widens_the_filtered_and_smoothed_bands(parallel):
    steps = 20
    params, y, r = _model(steps, seed=8)
    r = r * 0.1  # informative observations, so that the gap stands out
    mask = torch.ones(steps, dtype=torch.bool)
    mask[8:14] = False
    full_f = kalman_filter(params, y, r, parallel=parallel)
    gap_f = kalman_filter(params, y, r, mask, parallel=parallel)
    full_s = rts_smoother(params, y, r, parallel=parallel)
    gap_s = rts_smoother(params, y, r, mask, parallel=parallel)

    def var(x):
        return torch.diagonal(x.covs, dim1=-2, dim2=-1)  # (T, K)

    assert (var(gap_f)[8:14] > var(full_f)[8:14]).all()
    assert (var(gap_s)[8:14] > var(full_s)[8:14]).all()
    # inside the gap the filtered band only grows; the smoothed band is widest mid-gap
    assert (var(gap_f)[9:14] > var(gap_f)[8:13]).all()
    assert (var(gap_s)[10:12].sum(-1) > var(gap_s)[[8, 13]].sum(-1)).all()
    torch.testing.assert_close(gap_f.means[:8], full_f.means[:8])  # causal


@pytest.mark.parametrize("steps", [1, 2, 3, 5, 8, 13, 64])
def test_parallel_equals_sequential(steps):
    """Masks, irregular steps, time-varying noise; every output, float64."""
    params, y, r = _model(max(steps, 2), seed=steps)
    if steps == 1:
        y, r = y[:1], r[:1]
        params = params._replace(transition=params.transition[:0], offset=params.offset[:0],
                                 process_cov=params.process_cov[:0])
    mask = torch.rand(steps, generator=torch.Generator().manual_seed(steps)) > 0.3
    y = torch.where(mask[:, None], y, torch.nan)
    for m in (None, mask):
        sequential = rts_smoother(params, y if m is not None else y.nan_to_num(), r, m)
        parallel = rts_smoother(params, y if m is not None else y.nan_to_num(), r, m,
                                parallel=True)
        for a, b in zip(sequential, parallel, strict=True):
            torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)


def test_parallel_batched_with_shared_and_per_step_parameters():
    runs = [_model(9, seed=s) for s in range(3)]
    emission = runs[0][0].emission
    params = LGSSM(*(torch.stack([p[i] for p, _, _ in runs]) for i in range(5)), emission)
    y = torch.stack([y for _, y, _ in runs])
    r = torch.stack([r for _, _, r in runs])
    mask = torch.ones(3, 9, dtype=torch.bool)
    mask[1, 2:5] = False
    batched = rts_smoother(params, y, r, mask, parallel=True)
    for i, (p, yi, ri) in enumerate(runs):
        single = rts_smoother(p._replace(emission=emission), yi, ri, mask[i])
        for a, b in zip(single, batched, strict=True):
            torch.testing.assert_close(b[i], a, rtol=1e-10, atol=1e-12)
    # shared (time-invariant) transition parameters broadcast over batch and time
    shared = params._replace(transition=runs[0][0].transition[0], offset=runs[0][0].offset[0],
                             process_cov=runs[0][0].process_cov[0])
    sequential = kalman_filter(shared, y, r, mask)
    parallel = kalman_filter(shared, y, r, mask, parallel=True)
    torch.testing.assert_close(parallel.means, sequential.means, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(parallel.log_likelihood, sequential.log_likelihood)


def test_batch_axes_of_per_step_parameters_alone_reach_both_filters():
    # the batch comes only from the per-step transitions; initial state and data are shared
    runs = [_model(9, seed=s) for s in range(3)]
    p0, y, r = runs[0]
    transition = torch.stack([p.transition for p, _, _ in runs])  # (3, 8, K, K)
    params = p0._replace(transition=transition)
    for parallel in (False, True):
        batched = rts_smoother(params, y, r, parallel=parallel)
        for i in range(3):
            single = rts_smoother(p0._replace(transition=transition[i]), y, r)
            torch.testing.assert_close(batched.means[i], single.means, rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(batched.log_likelihood[i], single.log_likelihood)


def test_parallel_gradients_equal_sequential_gradients():
    def log_lik(parallel: bool):
        theta = torch.tensor([[0.8, 0.1], [-0.2, 0.5]], requires_grad=True)
        mu = torch.tensor([0.1, -0.3], requires_grad=True)
        diffusion = torch.tensor([[0.5, 0.0], [0.1, 0.4]], requires_grad=True)
        dt = 0.05 + torch.rand(29, generator=torch.Generator().manual_seed(0)) * 0.2
        f, b, q = ou_discretize(theta, mu, diffusion, dt)
        params = LGSSM(mu, ou_stationary_cov(theta, diffusion), f, b, q, torch.eye(2))
        y = torch.randn(30, 2, generator=torch.Generator().manual_seed(1))
        mask = torch.arange(30) % 7 != 3
        out = kalman_filter(params, y, torch.eye(2).expand(30, 2, 2) * 0.2, mask,
                            parallel=parallel).log_likelihood
        return torch.autograd.grad(out, (theta, mu, diffusion))

    for a, b in zip(log_lik(False), log_lik(True), strict=True):
        assert torch.isfinite(b).all()
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-11)


def test_parallel_float32_is_finite_and_close():
    params, y, r = _model(200, seed=9)
    reference = rts_smoother(params, y, r, parallel=True)
    p32 = LGSSM(*(x.float() for x in params))
    out = rts_smoother(p32, y.float(), r.float(), parallel=True)
    assert out.means.dtype == torch.float32
    assert torch.isfinite(out.covs).all() and torch.isfinite(out.log_likelihood)
    torch.testing.assert_close(out.means.double(), reference.means, rtol=0, atol=1e-4)


def test_parallel_posterior_samples_match_smoothed_moments():
    params, y, r = _model(6, seed=2)
    mask = torch.tensor([True, True, False, False, True, True])
    smoothed = rts_smoother(params, y, r, mask)
    draws = sample_posterior(params, y, r, mask, n=20000, random_state=0, parallel=True)
    assert draws.shape == (20000, 6, 2)
    torch.testing.assert_close(draws.mean(0), smoothed.means, atol=0.02, rtol=0)
    torch.testing.assert_close(torch.cov(draws[:, 2].T), smoothed.covs[2], atol=0.01, rtol=0.05)
    # lag-one covariance of the draws: the smoother's cross covariance
    joint = torch.cov(torch.cat([draws[:, 2], draws[:, 3]], -1).T)
    torch.testing.assert_close(joint[:2, 2:], smoothed.cross_covs[2], atol=0.01, rtol=0.05)


def test_float32_sampling_survives_conditionals_that_rounding_leaves_indefinite():
    """A slow process (Theta ~ 1e-4 / s) at short steps, observed at 1% of them: the parallel
    sampler's float32 conditionals P_t - E P_{t+1|t} E^T come out with eigenvalues near -3e-4,
    beyond the jitter, where a Cholesky factor fails; their PSD part is drawn from instead."""
    rng = np.random.default_rng(0)
    theta = torch.tensor([[1e-4, 3e-5], [-3e-5, 2e-4]], dtype=torch.float64)
    diffusion = torch.tensor([[1.0, 0.0], [0.5, 1.0]], dtype=torch.float64)
    f, b, q = ou_discretize(theta, torch.zeros(2, dtype=torch.float64), diffusion,
                            torch.tensor([1e-4], dtype=torch.float64))
    f32 = torch.float32  # the module's fixture makes float64 the default
    params = LGSSM(torch.zeros(2, dtype=f32), ou_stationary_cov(theta, diffusion).float(),
                   f.float(), b.float(), q.float(), torch.eye(2, dtype=f32))
    steps = 500
    y = torch.tensor(rng.normal(size=(steps, 2)), dtype=torch.float32)
    r = torch.eye(2, dtype=f32).expand(steps, 2, 2).clone()
    mask = torch.tensor(rng.uniform(size=steps) > 0.99)
    for parallel in (False, True):
        draws = sample_posterior(params, y, r, mask, n=2, random_state=0, parallel=parallel)
        assert draws.shape == (2, steps, 2) and torch.isfinite(draws).all()
    # the PSD part of an indefinite covariance: no spread along the negative direction
    from coreaffect.state_space import _draw
    cov = torch.diag(torch.tensor([1.0, -1e-3], dtype=f32)).expand(4000, 2, 2)
    out = _draw(torch.ones(4000, 2, dtype=f32), cov, torch.Generator().manual_seed(0))
    assert torch.equal(out[:, 1], torch.ones(4000, dtype=f32))
    assert abs(float(out[:, 0].var()) - 1.0) < 0.06


def test_bad_inputs_are_named_before_the_filter_runs():
    params, y, r = _model(6)
    mask = torch.ones(6, dtype=torch.bool)
    cases = [
        ((params, y[:0], r[:0]), r"T >= 1 steps"),
        ((params._replace(emission=torch.eye(3, 2)), y, r), r"emission is \(3, 2\).*need \(2, 2\)"),
        ((params, y, r[..., 0]), r"obs_cov has shape \(6, 2\).*need \(\.\.\., 6, 2, 2\)"),
        ((params, y, r[:5]), r"obs_cov has shape \(5, 2, 2\)"),
        ((params, y, r, mask[:3]), r"mask has shape \(3,\).*need \(\.\.\., 6\)"),
        ((params, y.expand(3, 6, 2), r.expand(4, 6, 2, 2)),
         r"batch axes .* do not broadcast together: .*observations \(3, 6, 2\), obs_cov "
         r"\(4, 6, 2, 2\)"),
        ((params._replace(init_mean=params.init_mean.expand(5, 2)), y.expand(3, 6, 2), r),
         r"batch axes .* init_mean \(5, 2\)"),
        ((params, y.float(), r), r"mix dtypes \(.*observations float32"),
        ((params._replace(process_cov=-0.05 * torch.eye(2)), y, r),
         r"process_cov is not positive semi-definite: an eigenvalue of -0.05"),
        ((params._replace(init_cov=torch.tensor([[1.0, 2.0], [2.0, 1.0]])), y, r),
         r"init_cov is not positive semi-definite"),
        ((params._replace(offset=params.offset * float("nan")), y, r), r"offset is not finite"),
        ((params, y, r * torch.tensor([1.0, 1, -1, 1, 1, 1])[:, None, None]),
         r"innovation covariance .* not positive definite"),
    ]
    for args, message in cases:
        for parallel in (False, True):
            with pytest.raises(InputError, match=message):
                kalman_filter(*args, parallel=parallel)
    poisoned = y.clone()
    poisoned[2, 1] = float("nan")  # unmasked: it would turn every later step into NaN
    for smoother in (kalman_filter, rts_smoother):
        with pytest.raises(InputError, match="not finite at observed step 2; mask"):
            smoother(params, poisoned, r)
    mask[2] = False  # masked, NaN is allowed
    assert torch.isfinite(rts_smoother(params, poisoned, r, mask).means).all()
    for seed in ("a", 1.5):
        with pytest.raises(InputError, match="random_state must be an integer seed"):
            sample_posterior(params, y, r, n=2, random_state=seed)
    for n in (0, -1, 2.5, True):
        with pytest.raises(InputError, match="n, the number of draws, must be an integer >= 1"):
            sample_posterior(params, y, r, n=n)
    assert sample_posterior(params, y, r, n=np.int64(2), random_state=0).shape == (2, 6, 2)


def test_ou_inputs_that_have_no_discretisation_are_named():
    theta, mu, diffusion = torch.eye(2), torch.zeros(2), torch.eye(2)
    for dt in (-0.1, float("nan"), torch.tensor([0.1, float("inf")])):
        with pytest.raises(InputError, match="dt must be finite and >= 0"):
            ou_discretize(theta, mu, diffusion, dt)
    assert torch.equal(ou_discretize(theta, mu, diffusion, 0.0)[0], torch.eye(2))  # a zero step
    with pytest.raises(InputError, match=r"must share K; got shapes \(2, 2\), \(3,\)"):
        ou_discretize(theta, torch.zeros(3), diffusion, 0.1)
    with pytest.raises(InputError, match=r"diffusion \(\.\.\., K, M\); got shapes \(2, 2\) and "
                                         r"\(3, 3\)"):
        ou_stationary_cov(theta, torch.eye(3))
    for unstable in ([[0.0, 1.0], [0.0, 1.0]], [[2.0, 0.0], [0.0, -1.0]]):  # 0, or -1: no law
        with pytest.raises(InputError, match="an eigenvalue whose real part is not positive"):
            ou_stationary_cov(torch.tensor(unstable), diffusion)
    # an integer theta was computed in float64, then cast back to zeros
    with pytest.raises(InputError, match="theta must be a floating-point tensor, got torch.int64"):
        ou_discretize(torch.tensor([[1, 0], [0, 2]]), mu, diffusion, 0.5)
    with pytest.raises(InputError, match=r"mu must be finite, got \[nan, 0.0\]"):
        ou_discretize(theta, torch.tensor([float("nan"), 0.0]), diffusion, 0.5)
    with pytest.raises(InputError, match="diffusion must be finite"):
        ou_discretize(theta, mu, diffusion * float("inf"), 0.5)
    with pytest.raises(InputError, match="must share a dtype, got torch.float32 and torch.float64"):
        ou_stationary_cov(theta.float(), diffusion.double())
