"""Tests of coreaffect.calibration: band factors against counted coverage, the bands file."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import norm

from coreaffect.calibration import (
    BANDS_FILE,
    _least_worst,
    _quantile,
    band_factors,
    coverage_spread,
    halfwidth_factors,
    read_bands,
    variance_factor,
    widen_bands,
    write_bands,
)
from coreaffect.errors import CoreAffectError


def test_variance_factor_recovers_the_scale_of_gaussian_errors():
    errors = np.abs(np.random.default_rng(0).normal(0.0, 2.0, 50000))  # sd 2 against sd 1
    for levels in ([0.5], [0.9], [0.5, 0.9]):
        assert variance_factor(errors, levels) == pytest.approx(4.0, rel=0.03)


def test_coverage_spread_of_alike_people_is_the_spread_of_counting():
    rng = np.random.default_rng(0)
    people = [np.abs(rng.standard_normal(2000)) for _ in range(60)]  # calibrated, all alike
    spread = coverage_spread(people, [0.5, 0.9], 10, 10, resamples=200)
    assert spread.shape == (200, 2)
    assert np.abs(spread.mean(0)).max() < 0.003
    # 20,000 frames on either side: binomial sd about 0.0035 at 50%, 0.0021 at 90% for each, so
    # at most about sqrt(2) times that for the two together; the test group counts on its own
    assert ((spread.std(0) > [0.003, 0.0018]) & (spread.std(0) < [0.0075, 0.0045])).all()
    np.testing.assert_array_equal(spread, coverage_spread(people, [0.5, 0.9], 10, 10,
                                                          resamples=200))


def test_coverage_spread_of_people_with_offsets_matches_sampling_theory():
    # person p's errors are |b_p + e|, e ~ N(0, 1), offsets b_p ~ N(0, 0.5^2). Calibrated on
    # nearly everyone, the band's half-width is the population's; a group of n people then
    # covers the mean of their shares q_p = Phi(t - b_p) - Phi(-t - b_p), plus each person's
    # binomial noise over N frames: sd^2 = (var(q) (P - n) / (P - 1) + mean(q (1 - q)) / N) / n.
    rng = np.random.default_rng(1)
    n_people, frames, n = 1000, 200, 10
    offsets = rng.normal(0.0, 0.5, n_people)
    people = [np.abs(b + rng.standard_normal(frames)) for b in offsets]
    spread = coverage_spread(people, [0.9], n_people - n, n, resamples=1000, random_state=1)
    half = norm.ppf(0.95) * np.sqrt(variance_factor(np.concatenate(people), [0.9]))
    share = norm.cdf(half - offsets) - norm.cdf(-half - offsets)
    sd = np.sqrt((share.var() * (n_people - n) / (n_people - 1)
                  + (share * (1 - share)).mean() / frames) / n)
    assert abs(spread.mean()) < 0.003
    assert spread.std() == pytest.approx(sd, rel=0.1)  # resampling error about 2%


def test_coverage_spread_scores_people_it_did_not_calibrate_on():
    rng = np.random.default_rng(2)
    narrow, wide = np.abs(rng.standard_normal(4000)), 3 * np.abs(rng.standard_normal(4000))
    spread = coverage_spread([narrow, wide], 0.5, 1, 1, resamples=50)  # one level, a number
    # calibrated on one, scored on the other: far over or far under 50%, never near it
    assert (np.abs(spread) > 0.3).all()
    assert (spread > 0).any() and (spread < 0).any()


def test_coverage_spread_rejects_what_cannot_be_drawn():
    people = [np.ones(5), np.ones(5), np.ones(5)]
    for n_calibration, n_test in ((2, 2), (0, 1), (1, 0), (1.5, 1)):
        with pytest.raises(CoreAffectError, match="fit in the 3 given"):
            coverage_spread(people, [0.9], n_calibration, n_test)
    with pytest.raises(CoreAffectError, match="person 1 has no error"):
        coverage_spread([np.ones(5), np.array([np.nan])], [0.9], 1, 1)
    with pytest.raises(CoreAffectError, match="person 0 has negative errors"):
        coverage_spread([-np.ones(5), np.ones(5)], [0.9], 1, 1)
    with pytest.raises(CoreAffectError, match="level"):
        coverage_spread(people, [1.5], 1, 1)
    with pytest.raises(CoreAffectError, match="resamples"):
        coverage_spread(people, [0.9], 1, 1, resamples=0)


def test_halfwidth_factors_make_skewed_bands_cover_the_level():
    rng = np.random.default_rng(1)
    n = 4001
    truth = np.stack([rng.gamma(2.0, 0.2, n) - 0.4, rng.standard_t(4, n) * 0.3], -1)  # (N, 2)
    mean = np.zeros((n, 2))
    lower = mean - rng.uniform(0.05, 0.2, (n, 2))  # bands of uneven, too small half-widths
    upper = mean + rng.uniform(0.05, 0.4, (n, 2))
    for level in (0.5, 0.9):
        k = halfwidth_factors(truth, mean, lower, upper, level)
        assert min(k) > 1  # the bands were too narrow
        _, _, lo, hi = widen_bands(k, mean, np.ones((n, 2)), lower, upper)
        inside = ((truth >= lo) & (truth <= hi)).mean(0)  # counted, per dimension
        np.testing.assert_allclose(inside, level, atol=2 / n)
    assert halfwidth_factors(np.zeros((0, 2)), *(np.zeros((0, 2)),) * 3, 0.9) == (1.0, 1.0)


def test_widening_keeps_means_and_scales_gaussian_moments_alike():
    mean, sd = np.array([[0.1, -0.2]]), np.array([[0.3, 0.1]])
    half = norm.ppf(0.95) * sd
    k = (2.0, 0.5)
    m, var, lo, hi = widen_bands(k, mean, sd ** 2, mean - half, mean + half)
    np.testing.assert_array_equal(m, mean)
    np.testing.assert_allclose(var, (np.array(k) * sd) ** 2)
    np.testing.assert_allclose(hi - m, norm.ppf(0.95) * np.sqrt(var))  # still its 90% band
    np.testing.assert_allclose(m - lo, norm.ppf(0.95) * np.sqrt(var))


def test_band_factors_accept_one_number_or_a_pair_only():
    assert band_factors(2) == (2.0, 2.0)
    assert band_factors([1.5, 3]) == (1.5, 3.0)
    for bad in (0, -1, [1, float("nan")], [1, 2, 3], "wide", {"a": 1}, None, True, [[1, 2]]):
        with pytest.raises(CoreAffectError, match="one positive number or two"):
            band_factors(bad)


def test_bands_file_round_trip_and_errors(tmp_path):
    assert read_bands(tmp_path) is None
    scales = {"smoothed": (1.5, 2.0), "filtered": (1.2, 1.1)}
    write_bands(tmp_path, scales, 0.9, lag=8)
    assert read_bands(tmp_path) == (scales, 8)
    write_bands(tmp_path, scales, (0.5, 0.9), lag=8)
    assert json.loads((tmp_path / BANDS_FILE).read_text())["calibration_levels"] == [0.5, 0.9]
    assert read_bands(tmp_path) == (scales, 8)
    write_bands(tmp_path, scales, 0.9)
    assert read_bands(tmp_path) == (scales, None)
    for lag in (0, 2.5, True):
        with pytest.raises(CoreAffectError, match="lag"):
            write_bands(tmp_path, scales, 0.9, lag=lag)
    path = tmp_path / BANDS_FILE
    info = json.loads(path.read_text())
    path.write_text(json.dumps({**info, "format": -1}))
    with pytest.raises(CoreAffectError, match=f"{BANDS_FILE}.*format"):
        read_bands(tmp_path)
    path.write_text(json.dumps({**info, "band_scale": {"smoothed": [1.0, -2.0]}}))
    with pytest.raises(CoreAffectError, match=f"{BANDS_FILE}: unreadable"):
        read_bands(tmp_path)
    path.write_text(json.dumps({**info, "band_scale": {"smothed": 2.0}}))  # hand-edited
    with pytest.raises(CoreAffectError, match=f"{BANDS_FILE}: unreadable .*not of 'smothed'"):
        read_bands(tmp_path)
    path.write_text("{")
    with pytest.raises(CoreAffectError, match=f"{BANDS_FILE}: unreadable"):
        read_bands(tmp_path)


def test_quantile_with_infinite_values_matches_its_definition():
    values = np.array([3.0, 1.0, np.inf, 2.0])
    # linear interpolation on the sorted values (1, 2, 3, inf) at positions q (N - 1)
    np.testing.assert_array_equal(_quantile(values, [0.0, 0.5, 2 / 3, 0.7, 1.0]),
                                  [1.0, 2.5, 3.0, np.inf, np.inf])
    finite = np.random.default_rng(0).random((7, 2))
    np.testing.assert_array_equal(_quantile(finite, 0.3, axis=0), np.quantile(finite, 0.3, 0))


def _brute_force(ratios, levels):
    """(worst coverage error of the best factor, of the best factor within the levels' own
    factors) over every step of the coverages, by counting at a point inside each step, never
    on a ratio itself: ratios (L, N)."""
    edges = np.r_[0.0, np.unique(ratios[np.isfinite(ratios) & (ratios > 0)]), np.inf]

    def worst(k):
        return np.abs((ratios <= k).mean(1) - levels).max()

    def middle(a, b):
        return b / 2 if a == 0 else 2 * a if np.isinf(b) else (a + b) / 2

    own = [np.quantile(r, p) for r, p in zip(ratios, levels, strict=True)]
    steps = list(zip(edges[:-1], edges[1:], strict=True))
    inside = [middle(max(a, min(own)), min(b, max(own))) for a, b in steps
              if max(a, min(own)) < min(b, max(own))]
    best_inside = min(worst(k) for k in inside) if inside else np.inf
    return worst, min(worst(middle(a, b)) for a, b in steps), best_inside, own


def test_variance_factor_of_several_levels_is_the_exact_minimax():
    levels = np.array([0.5, 0.8, 0.9])
    z = norm.ppf(0.5 + levels / 2)
    for seed in range(100):
        rng = np.random.default_rng(seed)
        errors = np.abs(rng.standard_t(3, rng.integers(8, 60))) * rng.uniform(0.5, 2)
        if seed % 4 == 0:
            errors = np.round(errors, 1)  # ties, as rounded data have
        c = variance_factor(errors, levels)
        worst, best, best_inside, own = _brute_force(errors[None, :] / z[:, None], levels)
        # counted as a band applies it: |e| <= z sqrt(c)
        assert np.abs((errors[:, None] <= z * np.sqrt(c)).mean(0) - levels).max() == (
            pytest.approx(best)), seed
        if np.isclose(best_inside, best):  # of equally good factors, one among the levels' own
            assert min(own) <= np.sqrt(c) * (1 + 1e-12) and np.sqrt(c) <= max(own) * (1 + 1e-12)


def test_variance_factor_counts_infinite_errors_as_misses():
    rng = np.random.default_rng(3)
    errors = np.abs(rng.normal(0.0, 2.0, 20000))
    errors[:1000] = np.inf  # 5% off estimates of zero variance
    c = variance_factor(errors, [0.9])
    # 90% of all covers 90 / 95 of the finite ones: their quantile at 18/19
    assert c == pytest.approx((np.quantile(errors[1000:], 18 / 19) / norm.ppf(0.95)) ** 2,
                              rel=1e-3)
    assert np.isfinite(variance_factor(errors, [0.5, 0.9]))
    errors[:4000] = np.inf  # 20%: no finite width covers 90%
    assert variance_factor(errors, [0.9]) == np.inf
    z = norm.ppf([0.75, 0.95])

    def worst(c):  # the largest coverage error over the two levels, counted
        return np.abs((errors[:, None] <= z * np.sqrt(c)).mean(0) - [0.5, 0.9]).max()

    both = variance_factor(errors, [0.5, 0.9])  # the 50% band is reachable
    assert worst(both) <= min(worst(c) for c in np.geomspace(0.1, 1e4, 2000)) + 1e-3
    spread = coverage_spread([errors[:10000], errors[10000:]], 0.5, 1, 1, resamples=4)
    assert np.isfinite(spread).all()


def test_bands_that_miss_their_mean_are_extended_to_it():
    mean = np.zeros((4, 2))
    lower = np.array([[-1.0, -1.0], [-1.0, 0.5], [-1.0, -1.0], [-1.0, -1.0]])
    upper = np.array([[1.0, 1.0], [1.0, 1.0], [-0.5, 1.0], [1.0, 1.0]])  # row 2 valence below
    _, _, lo, hi = widen_bands((2.0, 2.0), mean, np.ones((4, 2)), lower, upper)
    assert (lo <= mean).all() and (hi >= mean).all()
    np.testing.assert_array_equal(lo[1], [-2.0, 0.0])  # arousal's band started above the mean
    np.testing.assert_array_equal(hi[2], [0.0, 2.0])
    # labels above the mean where the band holds nothing there: never covered
    truth = np.full((4, 2), 0.5)
    k = halfwidth_factors(truth[[0, 1, 3]], mean[[0, 1, 3]], lower[[0, 1, 3]],
                          upper[[0, 1, 3]], 0.5)
    assert k == pytest.approx((0.5, 0.5))  # the labels all sit at 0.5: either side is as good
    with pytest.raises(CoreAffectError, match="calibrate at a higher level"):
        halfwidth_factors(truth, mean, lower, upper, 0.9)  # a quarter lie on an empty side


def test_halfwidth_factors_of_several_levels_are_the_exact_minimax():
    # skewed bands, wider above the mean than below, at each level its own shape: one factor
    # for both levels, whose largest coverage error is the least any factor has
    levels = np.array([0.5, 0.9])
    for seed in range(60):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(10, 80))
        mean = rng.normal(size=(n, 2))
        truth = mean + rng.standard_t(3, (n, 2)) * rng.uniform(0.5, 2)
        if seed % 3 == 0:
            truth = mean + np.round(truth - mean, 1)  # ties
        scale = rng.uniform(0.2, 1.0, (n, 2))
        lower = np.stack([mean - scale * q for q in (0.6, 1.4)])  # (2, n, 2)
        upper = np.stack([mean + scale * q * 1.3 for q in (0.7, 1.8)])
        k = halfwidth_factors(truth, mean, lower, upper, levels)
        for d in range(2):
            widened = [widen_bands(k, mean, np.ones_like(mean), lo, hi)[2:]  # as a run does
                       for lo, hi in zip(lower, upper, strict=True)]
            inside = np.stack([(lo[:, d] <= truth[:, d]) & (truth[:, d] <= hi[:, d])
                               for lo, hi in widened])  # (2, n)
            half = np.where(truth[:, d] < mean[:, d], mean[:, d] - lower[..., d],
                            upper[..., d] - mean[:, d])  # (2, n)
            _, best, _, _ = _brute_force(np.abs(truth[:, d] - mean[:, d]) / half, levels)
            assert np.abs(inside.mean(1) - levels).max() == pytest.approx(best), (seed, d)
    assert halfwidth_factors(truth, mean, lower[1], upper[1], 0.9) == halfwidth_factors(
        truth, mean, lower[1:], upper[1:], [0.9])  # one level, either way
    for bad in (lower[1], np.moveaxis(lower, 0, -1)):  # one level's band, levels last
        with pytest.raises(ValueError, match=r"expected bands of 2 level\(s\)"):
            halfwidth_factors(truth, mean, bad, bad, levels)


def test_one_level_too_is_calibrated_off_the_errors_and_at_any_scale():
    # errors rounded to 0.1: a factor on a tied error's own value would leave the coverage to
    # the rounding of z sqrt(c); counted as a band applies it, the coverage is the best there is
    for seed in range(40):
        rng = np.random.default_rng(seed)
        errors = np.round(np.abs(rng.normal(0, 0.5, int(rng.integers(5, 200)))), 1)
        for level in (0.5, 0.9):
            z = norm.ppf(0.5 + level / 2)
            c = variance_factor(errors, [level])
            _, best, _, _ = _brute_force(errors[None, :] / z, np.array([level]))
            assert abs((errors <= z * np.sqrt(c)).mean() - level) == pytest.approx(best), seed
    # ratios far from 1 neither overflow nor underflow the search
    for scale in (1e-300, 1e200):
        ratios = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]) * scale
        k = _least_worst(ratios, np.array([0.5, 0.9]), 2.0 * scale, 2.8 * scale)
        assert np.isfinite(k) and 1.0 * scale < k < 3.0 * scale
    # equally good factors: the nearest to the levels' own, not the middle of a wide step
    c = variance_factor(np.ones(10), [0.9, 0.95])
    assert np.sqrt(c) == pytest.approx(1 / norm.ppf(0.95), rel=1e-6)


def test_one_level_calibrated_covers_its_level_in_float32_bands_too():
    # the factor lies well inside its step: a band computed in float32 counts the errors at
    # its edge as the calibration did
    for seed in range(20):
        errors = np.abs(np.random.default_rng(seed).normal(0, 0.7, 300))
        for level in (0.5, 0.68, 0.8, 0.9):
            c = variance_factor(errors, [level])
            half = np.float32(norm.ppf(0.5 + level / 2)) * np.sqrt(np.float32(c))
            assert (errors.astype(np.float32) <= half).mean() == pytest.approx(level), seed
