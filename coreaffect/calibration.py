"""Calibration of credible bands on held-out videos, and the band factors a run directory keeps.

A model's own uncertainty is rarely right on people it has not seen: the hidden route's variance
is too small there, and so are the bands the dynamics decode from it. coreaffect rescales both on
*validation* videos (never the training ones), one factor per dimension, valence and arousal:

* the prior's decoded covariance gets a factor c_d on its variance
  (:meth:`~coreaffect.prior.HiddenRoutePrior.calibrate`, through :func:`variance_factor`);
* the smoothed, filtered and lagged bands, decoded from the dynamics by Monte Carlo and not
  Gaussian in general, get a factor k_d on their half-widths, on either side of the mean
  (:func:`halfwidth_factors`, applied by :func:`widen_bands`). The factors of a run live in
  ``RUN/bands.json`` (:func:`write_bands`, :func:`read_bands`).

Both are chosen so that the central bands at the calibrated levels (``coreaffect train``
calibrates at 50% and 90%) cover those shares of the validation labels, pooled over their frames;
one factor serves every level, the one whose largest coverage error is smallest. How well that
carries to other people depends on how many people were held out: see "Reproducing the paper" in
the docs.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import ndtri

from coreaffect.checkpoint import FORMAT, atomic_write
from coreaffect.errors import CoreAffectError, InputError

__all__ = ["BANDED_STAGES", "BANDS_FILE", "band_factors", "check_lag", "check_level",
           "coverage_spread",
           "halfwidth_factors", "read_bands", "variance_factor", "widen_bands", "write_bands"]

BANDS_FILE = "bands.json"  # the band factors of the dynamics' stages, in a run directory
BANDED_STAGES = ("smoothed", "filtered", "lagged")  # the dynamics' stages, which have factors


def check_level(level: Any) -> float:
    """``level`` as a float in (0, 1), the probability of a central band.

    A Python or numpy number, or a 0-d array or tensor, is taken; anything else (a bool or a
    string too), or a number outside (0, 1), raises :class:`~coreaffect.errors.InputError`.
    """
    value = None
    if not isinstance(level, (bool, str, bytes)) and np.ndim(level) == 0:
        try:
            value = float(level)
        except (TypeError, ValueError):
            pass
    if value is None or not 0 < value < 1:
        raise InputError(f"level must be a probability in (0, 1), got {level!r}")
    return value


def variance_factor(errors: np.ndarray, levels: Sequence[float]) -> float:
    """The factor c on a variance that makes central Gaussian intervals cover ``levels``.

    Args:
        errors: (N,) standardised absolute errors ``|y - mean| / sd``; an infinite one (a label
            off an estimate of zero variance) is never covered.

    Returns:
        The c whose largest coverage error over the levels is smallest (``_least_worst``);
        of equally good ones, the nearest to the levels' own factors, (each level's quantile of
        the errors / z_{(1 + level)/2})^2: for one level, the c of its quantile's step, short
        of any error on which a band's edge would sit. ``inf`` when even the smallest level
        needs an infinite error covered.
    """
    errors = np.asarray(errors, dtype=np.float64)
    levels = np.asarray(levels, dtype=np.float64)
    z = ndtri(0.5 + levels / 2)  # (L,)
    own = (_quantile(errors, levels) / z) ** 2  # (L,) each level's own factor
    if not np.isfinite(own).any():
        return float(own.min())
    finite = own[np.isfinite(own)]
    # a band of sd factor sqrt(c) covers an error e at level l where e / z_l <= sqrt(c)
    root = _least_worst(errors[None, :] / z[:, None], levels, np.sqrt(finite.min()),
                        np.sqrt(finite.max()))
    return root ** 2


_MARGIN = 1e-6  # relative distance of a tried factor from the errors either side of it


def _least_worst(ratios: np.ndarray, levels: np.ndarray, low: float, high: float) -> float:
    """The factor k whose largest coverage error over ``levels`` is smallest, where a band of
    factor k covers the values ``ratios[l] <= k`` at level l.

    Args:
        ratios: (L, N) each value's distance in band units at each level, +inf never covered.
        levels: (L,) the coverages wanted.
        low, high: The levels' own factors, smallest and largest: of factors equally good, the
            one nearest to [low, high] (on a log scale) is returned.

    Found exactly: the coverages change only where k passes a ratio, so one point of every step
    is tried (between two positive ratios, below the smallest and past the largest): the
    geometric middle of the step's part within [low, high] if it has one, else the step's point
    nearest to that range. A factor is never one of the ratios themselves, nor within a relative
    ``_MARGIN`` (1e-6) of one, where rounding in the band's arithmetic (float32 in a predicted
    band) could count a label either way.
    """
    finite = np.unique(ratios[np.isfinite(ratios) & (ratios > 0)])  # sorted
    if not len(finite):  # every finite ratio is 0: any factor covers those alike
        return max(low, 1e-12)
    low, high = max(low, 1e-300), max(high, 1e-300)
    # the steps (a, b) between ratios, and below the smallest and past the largest; each is
    # tried at the middle of its part within [low, high] if it has one, else at its point
    # nearest to that range (a hair inside the step); square roots taken apart, so that no
    # product overflows
    a, b = np.r_[0.0, finite], np.r_[finite, np.inf]  # (C,)
    middle = np.where(a == 0, b / 2, np.where(np.isinf(b), 2 * a, np.sqrt(a) * np.sqrt(b)))
    # just inside either end: far enough for a band computed in float32 to count an error at
    # the end the same way (float32 resolves 1.2e-7); a narrower step is tried at its middle
    below, above = b * (1 - _MARGIN), a * (1 + _MARGIN)
    narrow = ~(above < below)
    start, end = np.maximum(a, low), np.minimum(b, high)
    # the step meets [low, high] (at one point when low == high, as for one level): its middle
    # part there, else the step's point nearest to that range
    inside = np.clip(np.sqrt(start) * np.sqrt(end), above, below)
    tried = np.where(narrow, middle, np.where(start <= end, inside,
                                              np.where(b <= low, below, above)))
    covered = np.stack([np.searchsorted(np.sort(row), tried, side="right") for row in ratios])
    worst = np.abs(covered / ratios.shape[1] - levels[:, None]).max(0)  # (C,)
    worst = np.round(worst, 12)  # errors equal but for rounding are ties
    log = np.log(tried)
    outside = np.maximum(0.0, np.maximum(np.log(low) - log, log - np.log(high)))
    return float(tried[np.lexsort((outside, worst))[0]])


def _quantile(values: np.ndarray, q: Any, axis: int | None = None) -> np.ndarray:
    """``np.quantile(values, q, axis=axis)`` (linear interpolation) where values may be +inf.

    numpy interpolates between a finite value and +inf to NaN; here the answer is +inf when
    the interpolation reaches an infinite value, and exact otherwise.
    """
    values = np.asarray(values, dtype=np.float64)
    infinite = np.isposinf(values)
    if not infinite.any():
        return np.quantile(values, q, axis=axis)
    biggest = np.finfo(np.float64).max
    capped = np.quantile(np.where(infinite, biggest, values), q, axis=axis)
    finite_max = np.max(np.where(infinite, -np.inf, values), axis=axis)
    return np.where(capped > finite_max, np.inf, capped)


def coverage_spread(errors: Sequence[np.ndarray], levels: float | Sequence[float],
                    n_calibration: int, n_test: int, *, resamples: int = 1000,
                    random_state: int | None = 0) -> np.ndarray:
    """How far from nominal a band calibrated on some people covers the labels of others.

    People differ: a network's errors on one person are often mostly a constant offset, so the
    share of labels a band covers depends on whom it is scored on, and the factor chosen on a
    validation group depends on whom that group holds. This measures both at once by resampling
    the people one has: each resample draws ``n_calibration + n_test`` of them without
    replacement, chooses the variance factor on the first ``n_calibration`` people's pooled
    errors as :meth:`~coreaffect.prior.HiddenRoutePrior.calibrate` does
    (:func:`variance_factor`), and scores the central Gaussian bands at ``levels`` on the pooled
    errors of the other ``n_test``. The groups depend on ``random_state`` and P only, so calls
    for valence and for arousal with one seed draw the same groups, draw by draw.

    Args:
        errors: P arrays (N_p,), one per person (or per video), of one dimension's standardised
            absolute errors ``|y - mean| / sd`` before calibration; NaN entries (frames without
            an estimate or a label) are dropped, infinite ones count as misses.
        levels: A nominal coverage in (0, 1), or several calibrated together.
        n_calibration: People the factor is chosen on, >= 1.
        n_test: People the bands are scored on, >= 1; ``n_calibration + n_test <= P``.
        resamples: Draws of the two groups.
        random_state: Seed; the same seed draws the same groups.

    Returns:
        (resamples, L) test coverage minus nominal, per draw and level.

    Raises:
        CoreAffectError: A level outside (0, 1), a person without an error or with a negative
            one (not an absolute error), or group sizes the P people cannot fill.
    """
    single = isinstance(levels, (bool, str, bytes)) or np.ndim(levels) == 0
    levels = [check_level(levels)] if single else [check_level(level) for level in levels]
    people = [np.asarray(e, dtype=np.float64).ravel() for e in errors]
    people = [e[~np.isnan(e)] for e in people]
    if not levels:
        raise CoreAffectError("coverage_spread needs at least one level")
    for index, e in enumerate(people):
        if len(e) == 0:
            raise CoreAffectError(f"coverage_spread: person {index} has no error that is not NaN")
        if (e < 0).any():
            raise CoreAffectError(f"coverage_spread: person {index} has negative errors; pass "
                                  "absolute standardised errors |y - mean| / sd")
    if (isinstance(n_calibration, bool) or isinstance(n_test, bool)
            or not isinstance(n_calibration, numbers.Integral)
            or not isinstance(n_test, numbers.Integral) or n_calibration < 1 or n_test < 1
            or n_calibration + n_test > len(people)):
        raise CoreAffectError(f"coverage_spread: {n_calibration} calibration and {n_test} test "
                              f"people must be >= 1 each and fit in the {len(people)} given")
    if isinstance(resamples, bool) or not isinstance(resamples, numbers.Integral) or resamples < 1:
        raise CoreAffectError(f"resamples must be an integer >= 1, got {resamples!r}")
    z = ndtri(0.5 + np.asarray(levels) / 2)  # (L,)
    rng = np.random.default_rng(random_state)
    out = np.empty((resamples, len(levels)))
    for r in range(resamples):
        order = rng.permutation(len(people))
        calibration = np.concatenate([people[i] for i in order[:n_calibration]])
        test = np.concatenate([people[i] for i in order[n_calibration:n_calibration + n_test]])
        half = z * np.sqrt(variance_factor(calibration, levels))  # (L,) half-widths in sd units
        inside = np.isfinite(test)[:, None] & (test[:, None] <= half[None, :])  # (N, L)
        out[r] = inside.mean(0) - levels
    return out


def halfwidth_factors(truth: np.ndarray, mean: np.ndarray, lower: np.ndarray,
                      upper: np.ndarray, level: float | Sequence[float]) -> tuple[float, float]:
    """Factors (k_v, k_a) on a band's half-widths that make it cover ``level`` of ``truth``.

    Each label's distance from the mean is measured in units of the band's half-width on the
    label's side (``mean - lower`` below the mean, ``upper - mean`` above), and k_d is the
    ``level``-quantile of these ratios in dimension d, moved within its step off any ratio: the
    band ``mean - k_d (mean - lower)`` to ``mean + k_d (upper - mean)`` then holds that share of
    the labels, as nearly as the labels allow, whatever the rounding of the band's ends. A band that
    does not reach its mean (a strongly skewed distribution at a low level) is first extended
    to it, as :func:`widen_bands` does; a label on a side where the band is then empty is never
    covered. With no label, both factors are 1.

    Several levels are calibrated together, as :func:`variance_factor` does: one factor k_d
    widens the band at every level, and it is the one whose largest coverage error over the
    levels is smallest (found exactly; of equally good ones, the nearest to the levels' own
    factors).

    Args:
        truth: (N, 2) labels, VA last axis.
        mean: (N, 2) the band's centres.
        lower: (N, 2) its lower ends; for several levels (L, N, 2), the band at each.
        upper: (N, 2) its upper ends, or (L, N, 2).
        level: The coverage wanted, in (0, 1), or a sequence of L of them.

    Returns:
        ``(k_v, k_a)``.

    Raises:
        CoreAffectError: No finite factor covers a level of a dimension's labels: more than
            ``1 - level`` of them lie on a side of the mean where the band is empty.
    """
    levels = np.atleast_1d(np.asarray(level, np.float64))  # (L,)
    truth, mean = np.asarray(truth, np.float64), np.asarray(mean, np.float64)
    if not len(truth):
        return 1.0, 1.0
    lower, upper = np.asarray(lower, np.float64), np.asarray(upper, np.float64)
    if lower.shape == truth.shape and len(levels) == 1:
        lower, upper = lower[None], upper[None]
    if lower.shape != upper.shape or lower.shape != (len(levels), *truth.shape):
        raise InputError(f"expected bands of {len(levels)} level(s) on {truth.shape} labels, got "
                         f"lower {lower.shape} and upper {upper.shape}")
    ratio = np.empty((len(levels), *truth.shape))  # (L, N, 2) distances in half-widths
    distance = np.abs(truth - mean)
    for band, low, high in zip(ratio, lower, upper, strict=True):
        below, above = _sides(mean, low, high)
        half = np.where(truth < mean, below, above)  # the half-width on the label's side
        with np.errstate(divide="ignore", invalid="ignore"):
            band[:] = np.where(distance == 0, 0.0, distance / half)  # inf where half is 0
    own = np.stack([_quantile(band, p, axis=0) for band, p in zip(ratio, levels, strict=True)])
    if not np.isfinite(own).all():
        worst = levels[~np.isfinite(own).all(1)].min()
        raise CoreAffectError(
            f"no factor on the bands' half-widths covers {worst:g} of the labels: more than "
            f"{1 - worst:g} of them lie on a side of the mean where the band is empty (a "
            "strongly skewed distribution); calibrate at a higher level")
    k_v, k_a = (_least_worst(ratio[..., d], levels, own[:, d].min(), own[:, d].max())
                for d in range(2))
    return k_v, k_a


def widen_bands(factors: tuple[float, float], mean: np.ndarray, var: np.ndarray,
                lower: np.ndarray, upper: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Apply half-width factors (k_v, k_a) to decoded moments; the means stay.

    Each band's distance from the mean is multiplied by k_d on either side, and the variance by
    k_d^2: arrays (T, 2) in, ``(mean, var, lower, upper)`` out. A band that does not reach its
    mean is first extended to it, so that the band always holds the mean and grows with k_d.
    """
    k = np.asarray(factors, dtype=np.float64)  # (2,)
    below, above = _sides(mean, lower, upper)
    return mean, var * k ** 2, mean - k * below, mean + k * above


def _sides(mean: np.ndarray, lower: np.ndarray, upper: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    """The band's half-widths below and above the mean, >= 0 (NaN where an input is NaN)."""
    return np.maximum(mean - lower, 0.0), np.maximum(upper - mean, 0.0)


def band_factors(value: Any) -> tuple[float, float]:
    """(k_v, k_a) from one positive number or a pair; anything else raises CoreAffectError."""
    try:
        pair = np.broadcast_to(np.asarray(value, dtype=np.float64), (2,))
    except (TypeError, ValueError):  # not numbers, or neither one number nor two
        pair = np.full(2, np.nan)
    if isinstance(value, (bool, np.bool_)) or not (np.isfinite(pair).all() and (pair > 0).all()):
        raise CoreAffectError(f"band factors must be one positive number or two, got {value!r}")
    return float(pair[0]), float(pair[1])


def check_lag(lag: Any) -> None:
    """The lag of a run's ``lagged`` stage: an integer >= 1 (frames), or ``None`` for a run
    without that stage; anything else raises CoreAffectError."""
    if lag is not None and (isinstance(lag, bool) or not isinstance(lag, numbers.Integral)
                            or lag < 1):
        raise CoreAffectError(f"lag must be an integer >= 1 (frames) or None, got {lag!r}")


def write_bands(run: str | Path, band_scale: dict[str, tuple[float, float]],
                levels: float | Sequence[float], lag: int | None = None) -> None:
    """Save the band factors of the dynamics' stages, the levels they were calibrated at, and
    the lag of ``lagged`` (an integer >= 1, or ``None`` for a run without that stage), in
    ``RUN/bands.json`` (files written before held ``"level"``, the one level calibrated)."""
    check_lag(lag)
    levels = [check_level(p) for p in np.atleast_1d(np.asarray(levels, np.float64))]

    from coreaffect import __version__

    atomic_write(Path(run) / BANDS_FILE, json.dumps(
        {"format": FORMAT, "coreaffect": __version__, "band_scale": band_scale,
         "calibration_levels": levels, "lag": None if lag is None else int(lag)}, indent=2)
        + "\n")


def read_bands(run: str | Path) -> tuple[dict[str, tuple[float, float]], int | None] | None:
    """``(band factors by stage, lag)`` from ``RUN/bands.json``, or ``None`` without that file.

    Raises:
        CoreAffectError: The file is unreadable, malformed, or of another run-directory format.
    """
    path = Path(run) / BANDS_FILE
    if not path.exists():
        return None
    try:
        info = json.loads(path.read_text())
        written = info.get("format")
        if written == FORMAT:
            lag = info.get("lag")  # runs written before the lagged stage have none
            check_lag(lag)
            scales = {str(k): band_factors(v) for k, v in info["band_scale"].items()}
            unknown = sorted(set(scales) - set(BANDED_STAGES))
            if unknown:
                raise CoreAffectError(f"band factors of the stages {', '.join(BANDED_STAGES)} "
                                      f"only, not of {', '.join(map(repr, unknown))}")
    except (OSError, ValueError, KeyError, TypeError, AttributeError, CoreAffectError) as err:
        raise CoreAffectError(f"{path}: unreadable ({err})") from None
    if written != FORMAT:
        raise CoreAffectError(f"{path}: written in run-directory format {written}; this version "
                              f"reads format {FORMAT}. Retrain, or use the coreaffect version "
                              "that wrote it.")
    return scales, lag
