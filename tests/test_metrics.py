"""Metrics against hand-computed values and independent references (scipy, numerical integrals)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from coreaffect import metrics


def test_ccc_uses_population_statistics():
    # the value audmetric and EmoNet give
    assert metrics.ccc([0, 1, 2], [0, 1, 1]) == pytest.approx(2 / 3)


def test_ccc_and_pcc_known_cases():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    assert metrics.ccc(y, y) == pytest.approx(1.0)
    assert metrics.pcc(y, 2 * y + 5) == pytest.approx(1.0)
    assert metrics.ccc(y, 2 * y + 5) < 0.5  # correlated but not concordant
    assert metrics.ccc(y - y.mean(), y.mean() - y) == pytest.approx(-1.0)
    assert metrics.pcc(y, -y) == pytest.approx(-1.0)
    np.testing.assert_allclose(metrics.pcc(y, [1.0, 3.0, 2.0, 4.0]),
                               stats.pearsonr(y, [1.0, 3.0, 2.0, 4.0])[0])


def test_constant_series_have_no_correlation_whatever_the_rounding():
    # 0.1 and 1/3 are not exact in binary: their computed variances are ~1e-34, not 0
    varying = np.linspace(-0.5, 0.5, 25)
    for value in (0.1, 1 / 3, 0.7, -0.25, 0.0):
        constant = np.full(25, value)
        assert np.isnan(metrics.pcc(constant, varying))
        assert np.isnan(metrics.pcc(varying, constant))
        assert np.isnan(metrics.ccc(constant, constant))  # both constant and equal: 0 / 0
        assert metrics.ccc(constant, varying) == 0.0
        assert metrics.ccc(constant, constant + 0.5) == 0.0
    with_nan = np.array([0.1, np.nan, 0.1, 0.1])  # constant on the frames that count
    assert np.isnan(metrics.pcc(with_nan, [0.3, 0.9, -0.2, 0.5]))
    batch = np.stack([np.full(25, 0.1), varying])  # one constant row among others
    assert np.isnan(metrics.pcc(batch, varying)[0]) and metrics.pcc(batch, varying)[1] == 1.0


def test_the_ccc_of_one_frame_is_undefined_whether_or_not_its_values_agree():
    # the formula gives 0 when the two values differ and 0 / 0 when they are equal: a one-frame
    # video would pull a per-video mean down by chance (audmetric gives NaN below two frames)
    assert np.isnan(metrics.ccc([0.3], [0.1])) and np.isnan(metrics.ccc([0.3], [0.3]))
    assert isinstance(metrics.ccc([0, 1, 2], [0, 1, 1]), float)  # a number, as JSON takes
    assert np.isnan(metrics.ccc([0.3, np.nan, 0.5], [0.1, 0.2, np.nan]))  # one frame valid
    truth = np.linspace(-0.5, 0.5, 50)
    long = np.stack([truth, truth], -1)
    table = metrics.evaluate_videos(["a", "b"], [long, np.array([[0.3, 0.3]])],
                                    [long + 0.01, np.array([[0.1, 0.3]])])
    assert np.isnan(table.per_video["ccc"][1]).all()
    np.testing.assert_allclose(table.mean["ccc"], table.per_video["ccc"][0])


def test_rmse_sagr_and_nan_frames_left_out():
    y = np.array([0.5, -0.5, np.nan, 0.2])
    x = np.array([0.5, 0.5, 100.0, -0.2])
    assert metrics.rmse(y, x) == pytest.approx(np.sqrt((0 + 1 + 0.16) / 3))
    assert metrics.sagr(y, x) == pytest.approx(1 / 3)


def test_batched_over_leading_axes_and_tensors():
    rng = np.random.default_rng(0)
    y, x = rng.normal(size=(3, 50)), rng.normal(size=(3, 50))
    batched = metrics.ccc(torch.tensor(y), torch.tensor(x))
    assert batched.shape == (3,)
    for i in range(3):
        assert batched[i] == pytest.approx(float(metrics.ccc(y[i], x[i])))


def test_gaussian_nll_matches_scipy():
    y, m, v = np.array([0.1, -0.3]), np.array([0.0, 0.2]), np.array([0.04, 0.5])
    expected = -stats.norm.logpdf(y, m, np.sqrt(v)).mean()
    assert metrics.gaussian_nll(y, m, v) == pytest.approx(expected)


def test_empty_series_and_point_forecasts():
    for fn in (metrics.ccc, metrics.pcc, metrics.rmse, metrics.sagr):
        assert np.isnan(fn([], []))  # no frame: undefined, not an error
    assert np.isnan(metrics.ccc([np.nan, 0.2], [0.1, np.nan]))
    # var = 0 is the limit of N(mean, var) as var -> 0: a point mass
    y, m, v = np.array([1.0, 0.5, -0.2]), np.array([0.0, 0.5, 0.3]), np.zeros(3)
    np.testing.assert_array_equal(metrics.crps_gaussian(y[:, None], m[:, None], v[:, None]),
                                  [1.0, 0.0, 0.5])
    for small in (1e-8, 1e-12):  # continuous at 0
        np.testing.assert_allclose(metrics.crps_gaussian(y, m, np.full(3, small)),
                                   np.abs(y - m).mean(), atol=np.sqrt(small))
    assert metrics.gaussian_nll(y[:1], m[:1], v[:1]) == np.inf
    assert metrics.gaussian_nll(y[1:2], m[1:2], v[1:2]) == -np.inf


def test_crps_matches_numerical_integral():
    y, m, v = 0.3, -0.1, 0.09
    sd = np.sqrt(v)

    def integrand(x):
        return (stats.norm.cdf(x, m, sd) - (x >= y)) ** 2

    expected = integrate.quad(integrand, -10, y)[0] + integrate.quad(integrand, y, 10)[0]
    assert metrics.crps_gaussian([y], [m], [v]) == pytest.approx(expected, rel=1e-6)


def test_coverage_hand_values_and_calibration():
    # 1.6449 sd is the 90% half-width
    y = np.array([0.0, 1.0, 1.7, -3.0])
    assert metrics.coverage(y, np.zeros(4), np.ones(4), 0.9) == pytest.approx(0.5)
    rng = np.random.default_rng(1)
    z = rng.normal(size=200_000)
    assert metrics.coverage(z, 0 * z, 1 + 0 * z, 0.5) == pytest.approx(0.5, abs=0.005)
    with pytest.raises(ValueError):
        metrics.coverage(y, y, y, 1.5)
    # a negative variance describes no interval: NaN, as the NLL, not a frame outside
    assert np.isnan(metrics.coverage(y, np.zeros(4), [1, 1, -1, 1], 0.9))
    assert np.isnan(metrics.gaussian_nll(y, np.zeros(4), [1, 1, -1, 1]))


def test_evaluate_videos_per_video_mean_and_pooled():
    t1 = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])
    e1 = np.array([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    t2 = np.array([[1.0, -1.0], [2.0, -2.0]])
    e2 = np.array([[1.0, -1.0], [2.0, np.nan]])
    table = metrics.evaluate_videos(["a", "b"], [t1, t2], [e1, e2])
    assert table.per_video["ccc"].shape == (2, 2)
    assert table.per_video["ccc"][0, 0] == pytest.approx(2 / 3)
    assert table.per_video["ccc"][1, 0] == pytest.approx(1.0)
    assert table.mean["ccc"][0] == pytest.approx((2 / 3 + 1) / 2)
    pooled_y = np.array([0, 1, 2, 1, 2.0])
    pooled_x = np.array([0, 1, 1, 1, 2.0])
    assert table.pooled["ccc"][0] == pytest.approx(float(metrics.ccc(pooled_y, pooled_x)))
    assert table.pooled["rmse"][1] == pytest.approx(np.sqrt(1 / 4))
    assert "nll" not in table.per_video
    as_dict = table.to_dict()
    assert as_dict["valence"]["ccc"]["per_video"]["b"] == pytest.approx(1.0)
    # a single valid frame has zero variance on both sides: CCC is undefined, reported as None
    assert as_dict["arousal"]["ccc"]["per_video"]["b"] is None


def test_evaluate_videos_probabilistic_and_shape_errors():
    rng = np.random.default_rng(2)
    t = rng.normal(size=(40, 2))
    table = metrics.evaluate_videos(["a"], [t], [t * 0], [np.ones_like(t)])
    for name in ("nll", "crps", "coverage_50", "coverage_90", "coverage_95"):
        assert table.pooled[name].shape == (2,)
    with pytest.raises(ValueError, match="must both be"):
        metrics.evaluate_videos(["a"], [t], [t[:-1]])
    with pytest.raises(ValueError, match="video a: variance"):
        metrics.evaluate_videos(["a"], [t], [t], [np.ones((40, 1))])
    with pytest.raises(ValueError, match="video a: variance"):
        metrics.evaluate_videos(["a"], [t], [t], [np.ones((41, 2))])
    with pytest.raises(ValueError, match="1 variances for 2 videos"):
        metrics.evaluate_videos(["a", "b"], [t, t], [t, t], [np.ones_like(t)])
    with pytest.raises(ValueError, match="video a: negative variances"):
        metrics.evaluate_videos(["a"], [t], [t], [-np.ones_like(t)])
    with pytest.raises(ValueError, match="no video"):
        metrics.evaluate_videos([], [], [])


def test_masked_frames_of_a_masked_array_are_left_out():
    truth = np.ma.masked_array([0.0, 1.0, 100.0, 0.5], mask=[0, 0, 1, 0])
    estimate = np.array([0.0, 1.0, 2.0, 0.4])
    assert metrics.rmse(truth, estimate) == pytest.approx(metrics.rmse(truth.compressed(),
                                                                       estimate[[0, 1, 3]]))
    assert metrics.ccc(truth, estimate) == pytest.approx(metrics.ccc(truth.compressed(),
                                                                     estimate[[0, 1, 3]]))


def test_pcc_of_exactly_linear_series_is_at_most_one():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 7))
    r = metrics.pcc(3.0 * x + 1.0, x)
    assert (r <= 1.0).all() and r == pytest.approx(1.0)


def test_band_coverage_counts_the_frames_inside_the_bands():
    y = np.array([0.0, 0.5, -0.2, np.nan, 0.9])
    lower = np.array([-0.1, 0.6, -0.2, 0.0, np.nan])
    upper = np.array([0.1, 0.8, 0.3, 1.0, 1.0])
    # inside, below, on the edge (counts); unlabelled and undefined frames left out
    assert metrics.band_coverage(y, lower, upper) == pytest.approx(2 / 3)


def test_evaluate_videos_scores_coverage_on_the_estimates_own_bands():
    rng = np.random.default_rng(3)
    truths = [rng.normal(size=(40, 2)), rng.normal(size=(25, 2))]
    means = [t + 0.5 * rng.normal(size=t.shape) for t in truths]
    variances = [np.full(t.shape, 0.3) for t in truths]
    means[1][:5, 0] = np.nan  # no estimate: no band there either
    gaussian = metrics.evaluate_videos(["a", "b"], truths, means, variances)
    # Gaussian intervals given as bands score as the Gaussian coverage does
    half = {p: [stats.norm.ppf(0.5 + p / 2) * np.sqrt(v) for v in variances]
            for p in (0.5, 0.9)}
    as_bands = {p: ([m - h for m, h in zip(means, half[p], strict=True)],
                    [m + h for m, h in zip(means, half[p], strict=True)]) for p in half}
    same = metrics.evaluate_videos(["a", "b"], truths, means, variances, as_bands)
    for name in ("coverage_50", "coverage_90"):
        np.testing.assert_allclose(same.per_video[name], gaussian.per_video[name])
        np.testing.assert_allclose(same.pooled[name], gaussian.pooled[name])
    # skewed bands: their own coverage, counted by hand; other levels keep the Gaussian one
    lowers = [m - 0.2 for m in means]
    uppers = [m + 2.0 for m in means]
    own = metrics.evaluate_videos(["a", "b"], truths, means, variances,
                                  {0.9: (lowers, uppers)})
    inside = [(lo <= t) & (t <= up) for t, lo, up in zip(truths, lowers, uppers, strict=True)]
    scored = [~np.isnan(m) for m in means]
    by_hand = [np.array([i[s[:, d], d].mean() for d in range(2)])
               for i, s in zip(inside, scored, strict=True)]
    np.testing.assert_allclose(own.per_video["coverage_90"], np.stack(by_hand))
    pooled = np.array([np.concatenate([i[s[:, d], d] for i, s in zip(inside, scored,
                                                                     strict=True)]).mean()
                       for d in range(2)])
    np.testing.assert_allclose(own.pooled["coverage_90"], pooled)
    assert not np.allclose(own.pooled["coverage_90"], gaussian.pooled["coverage_90"])
    np.testing.assert_allclose(own.pooled["coverage_50"], gaussian.pooled["coverage_50"])
    with pytest.raises(ValueError, match="need variances"):
        metrics.evaluate_videos(["a", "b"], truths, means, None, {0.9: (lowers, uppers)})
    with pytest.raises(ValueError, match="shape"):
        metrics.evaluate_videos(["a", "b"], truths, means, variances,
                                {0.9: ([x[:3] for x in lowers], uppers)})
    lowers[0][7, 1] = np.nan  # a band missing where the variance is not: other frames
    with pytest.raises(ValueError, match="video a: the band at 0.9 is NaN at 1 value"):
        metrics.evaluate_videos(["a", "b"], truths, means, variances, {0.9: (lowers, uppers)})
