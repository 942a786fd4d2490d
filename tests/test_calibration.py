"""Tests of coreaffect.calibration: band factors against counted coverage, the bands file."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import norm

from coreaffect.calibration import (
    BANDS_FILE,
    band_factors,
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
    for bad in (0, -1, [1, float("nan")], [1, 2, 3], "wide"):
        with pytest.raises((CoreAffectError, ValueError)):
            band_factors(bad)


def test_bands_file_round_trip_and_errors(tmp_path):
    assert read_bands(tmp_path) is None
    scales = {"smoothed": (1.5, 2.0), "filtered": (1.2, 1.1)}
    write_bands(tmp_path, scales, 0.9, lag=8)
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
    path.write_text("{")
    with pytest.raises(CoreAffectError, match=f"{BANDS_FILE}: unreadable"):
        read_bands(tmp_path)
