"""Labels on a time grid: resampling to frame times, and fusing several raters into one series.

Annotations come at the rate of the tool that recorded them (25 Hz for DANTE and RECOLA, 10 Hz
for SEWA, one per frame for Aff-Wild2) and often from several raters. Both functions here are
pure and NaN-aware, so that a missing label stays missing instead of being invented:
:func:`resample_labels` puts a series on the frame times of a video (with the annotators'
reaction delay), and :func:`fuse_raters` turns (R, T, 2) ratings into one (T, 2) series, by the
mean or by the evaluator-weighted estimator. :mod:`coreaffect.annotations` reads the files and
uses both: it puts the raters of a video on the union of their sample times, so that the raters
need not label the same stretch, and fuses them there, each time over the raters labelled at it.

References:
    Grimm, M., & Kroschel, K. (2005). Evaluation of natural emotions using self assessment
    manikins. IEEE Workshop on Automatic Speech Recognition and Understanding, 381-385.
"""

from __future__ import annotations

import logging

import numpy as np

from coreaffect.config import FUSIONS
from coreaffect.errors import InputError

__all__ = ["GAP_STEPS", "MIN_GAP", "fuse_raters", "resample_labels"]

logger = logging.getLogger(__name__)

#: Holes in a label track up to this many seconds long are bridged (affect moves over seconds).
MIN_GAP = 0.5
#: ... or holes up to this many typical sampling steps, whichever is longer.
GAP_STEPS = 4
_SAME_TIME = 1e-9  # seconds: times this close are one (rounding of i / fps plus a delay)


def resample_labels(times: np.ndarray, values: np.ndarray, new_times: np.ndarray,
                    delay: float = 0.0, max_gap: float | None = None) -> np.ndarray:
    """Labels at new times by linear interpolation between the two bracketing samples.

    A new time t is looked up at t + delay. Inside [times[0], times[-1]] the result interpolates
    the samples on either side; it is NaN outside that span, and NaN when either bracketing
    sample is NaN unless t + delay hits a valid sample (to within a nanosecond, the rounding of
    frame times plus a delay: then it is that sample). It is NaN too inside a hole in the
    annotation, two consecutive samples more than ``max_gap`` apart (rows missing from the
    file): a straight line across it would invent labels.

    Args:
        times: (T,) sample times in seconds, strictly increasing.
        values: (T, ...) samples, typically (T, 2) with VA last axis.
        new_times: (N,) times to label, in any order; non-finite times give NaN.
        delay: Reaction delay in seconds (labels are shifted earlier by this much).
        max_gap: The longest interval between two samples that is interpolated, in seconds.
            ``None``: :data:`MIN_GAP` (half a second) or :data:`GAP_STEPS` times the median
            sampling step, whichever is longer.

    Returns:
        (N, ...) float64 labels.

    Raises:
        ValueError: If the shapes disagree or ``times`` is not strictly increasing.
    """
    times = np.asarray(times, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    query = np.asarray(new_times, dtype=np.float64) + float(delay)
    if times.ndim != 1 or query.ndim != 1 or values.shape[:1] != times.shape:
        raise InputError(f"need times (T,), values (T, ...) and new_times (N,); got "
                         f"{times.shape}, {values.shape}, {query.shape}")
    if not np.all(np.diff(times) > 0):
        raise InputError("times must be strictly increasing")
    out = np.full(query.shape + values.shape[1:], np.nan)
    if times.size == 0:
        return out
    # a time within rounding of a sample is that sample's: i / fps + a delay of whole frames
    # misses (i + k) / fps by an ulp, and may fall just outside the span
    inside = (query >= times[0] - _SAME_TIME) & (query <= times[-1] + _SAME_TIME)  # NaN: False
    q = query[inside]
    left = np.maximum(np.searchsorted(times, q, side="right") - 1, 0)  # last sample at or before q
    if times.size > 1:
        steps = np.diff(times)
        if max_gap is None:
            max_gap = max(MIN_GAP, GAP_STEPS * float(np.median(steps)))
        i0 = np.clip(left, 0, times.size - 2)
        w = (q - times[i0]) / steps[i0]
        w = w.reshape(w.shape + (1,) * (values.ndim - 1))  # broadcast over trailing axes
        inner = values[i0] * (1.0 - w) + values[i0 + 1] * w
        inner[steps[i0] > max_gap] = np.nan  # inside a hole of the annotation
        out[inside] = inner
    right = np.minimum(left + 1, times.size - 1)
    near = np.where(np.abs(times[right] - q) < np.abs(times[left] - q), right, left)
    hit = np.abs(times[near] - q) <= _SAME_TIME  # hits keep their sample, whatever the neighbours
    rows = np.flatnonzero(inside)[hit]
    out[rows] = values[near[hit]]
    return out


def fuse_raters(ratings: np.ndarray, method: str = "mean", *, source: str = "") -> np.ndarray:
    """Fuse several raters' labels into one series, NaN-aware.

    Raters need not label the same times: at each time, only the raters labelled there count.
    ``"mean"`` averages, at each time, the raters that have a label there, so every time some
    rater labelled keeps a label. ``"ewe"`` is the evaluator-weighted estimator (Grimm &
    Kroschel, 2005), for each VA dimension separately: rater r gets weight
    w_r = max(rho_r, 0), rho_r the Pearson correlation between rater r and the reference of the
    *other* raters, at each time the mean of those of them labelled there, over the times where
    rater r and that reference both exist; rho_r is 0 when undefined (fewer than two such times,
    as for a rater who shares no labelled time with the others, or a constant series). Leaving
    rater r out of the reference keeps a rater from correlating with itself, which matters with
    few raters. The fused value at time t is sum_r w_r x_rt / sum_r w_r over the raters labelled
    at t, NaN where those weights sum to 0 (t is labelled only by raters EWE gives no weight;
    :func:`~coreaffect.annotations.read_annotations` warns about such times). If every weight
    of a dimension is 0, that dimension falls back to the mean. A single rater is returned as is,
    and so is a dimension that a single rater labelled.

    Args:
        ratings: (R, T, 2) labels, VA last axis; NaN = no label.
        method: ``"mean"`` or ``"ewe"``.
        source: What the ratings are of (the annotation file), named in the warning about a
            dimension that falls back to the mean.

    Returns:
        (T, 2) fused labels.

    Raises:
        ValueError: For an unknown method or a shape that is not (R, T, D) with R >= 1.
    """
    ratings = np.asarray(ratings, dtype=np.float64)
    if method not in FUSIONS:
        raise InputError(f"fusion must be one of {FUSIONS}, got {method!r}")
    if ratings.ndim != 3 or ratings.shape[0] == 0:
        raise InputError(f"ratings must be (R, T, D) with R >= 1, got {ratings.shape}")
    weights = np.ones((ratings.shape[0], ratings.shape[2]))  # (R, D)
    if method == "ewe" and ratings.shape[0] > 1:
        weights = _ewe_weights(ratings, source)
    return _weighted_mean(ratings, weights)


def _weighted_mean(ratings: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(R, T, D) ratings, (R, D) weights -> (T, D), over the raters present at each time."""
    present = ~np.isnan(ratings)
    w = np.where(present, weights[:, None, :], 0.0)  # (R, T, D)
    total = w.sum(axis=0)
    weighted = (np.where(present, ratings, 0.0) * w).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, weighted / total, np.nan)


def _ewe_weights(ratings: np.ndarray, source: str = "") -> np.ndarray:
    """EWE weights (R, D) of (R, T, D) ratings; see :func:`fuse_raters`."""
    n_raters, _, n_dims = ratings.shape
    weights = np.zeros((n_raters, n_dims))
    for r in range(n_raters):  # loop over raters only, a handful
        others = np.delete(ratings, r, axis=0)
        reference = _weighted_mean(others, np.ones((n_raters - 1, n_dims)))  # (T, D)
        for d in range(n_dims):
            weights[r, d] = max(_correlation(ratings[r, :, d], reference[:, d]), 0.0)
    # a dimension one rater labelled alone (DANTE: one rater per dimension) is that rater's
    alone = (~np.isnan(ratings).all(axis=1)).sum(axis=0) <= 1  # (D,)
    weights[:, alone] = 1.0
    dead = weights.sum(axis=0) == 0
    if dead.any():
        names = ("valence", "arousal") if n_dims == 2 else tuple(map(str, range(n_dims)))
        logger.warning("%sEWE: no rater correlates positively with the others in %s; using the "
                       "mean of the raters there", f"{source}: " if source else "",
                       " and ".join(n for n, d in zip(names, dead, strict=True) if d))
        weights[:, dead] = 1.0
    return weights


def _correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation over the times where both (T,) series exist; 0 when undefined."""
    both = ~(np.isnan(x) | np.isnan(y))
    if both.sum() < 2:
        return 0.0
    xc = x[both] - x[both].mean()
    yc = y[both] - y[both].mean()
    denom = np.sqrt((xc @ xc) * (yc @ yc))
    return float(xc @ yc / denom) if denom > 0 else 0.0
