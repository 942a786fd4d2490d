"""Metrics of valence-arousal estimates: pure, NaN-aware functions on arrays or tensors.

Every function takes the truth ``y`` and the estimate's ``mean`` (and, for the probabilistic
scores, its variance ``var``) of the same shape ``(..., T)`` and reduces the last axis; frames where
any input is NaN are left out, so unlabelled frames and frames without a face never count.

Conventions, and why:

* **CCC** (Lin's concordance correlation coefficient) uses *population* statistics (divide by
  N, not N - 1), as audmetric and EmoNet do: truth [0, 1, 2] against estimate [0, 1, 1] gives
  2/3. With population statistics CCC is exactly ``1 - MSE / (MSE of the mean-shifted, uncorrelated
  estimate)``, and it does not depend on the sequence length through a Bessel factor.
* **PCC** is Pearson's correlation; **RMSE** the root mean squared error (the paper's Table 2);
  **SAGR** the sign agreement ratio, the fraction of frames whose estimate has the truth's sign.
* **NLL** is the mean Gaussian negative log-likelihood ``0.5 log(2 pi var) + (y - mean)^2 /
  (2 var)`` in nats; **CRPS** the continuous ranked probability score of the Gaussian (closed form
  of Gneiting & Raftery 2007); **coverage** the fraction of frames inside the central interval
  of nominal level ``p``, ``|y - mean| <= z_{(1+p)/2} sqrt(var)`` (:func:`coverage`), or inside
  the estimate's own bands when they are given (:func:`band_coverage`: the pipeline's smoothed,
  filtered and lagged bands are quantiles of decoded draws, not Gaussian intervals, and the
  evaluation scores those).
* A *per-video* value is computed on each video and then averaged over videos (each video weighs
  the same, as in the paper's Table 2); a *pooled* value is computed once on all frames of all
  videos concatenated. Both are reported, since they can differ a lot: CCC per video punishes a
  model that only gets the between-video offsets right.

References:
    Lin, L. I. (1989). A concordance correlation coefficient to evaluate reproducibility.
    Biometrics 45(1).
    Gneiting, T. & Raftery, A. E. (2007). Strictly proper scoring rules, prediction, and
    estimation. JASA 102(477).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
from scipy.special import erf, ndtri

from coreaffect.errors import InputError

__all__ = [
    "COVERAGE_LEVELS",
    "DIMENSIONS",
    "MetricTable",
    "band_coverage",
    "ccc",
    "coverage",
    "crps_gaussian",
    "evaluate_videos",
    "gaussian_nll",
    "pcc",
    "rmse",
    "sagr",
]

DIMENSIONS = ("valence", "arousal")


def _as_numpy(*arrays) -> list[np.ndarray]:
    out = []
    for a in arrays:
        if hasattr(a, "detach"):  # a torch tensor
            a = a.detach().cpu().numpy()
        if isinstance(a, np.ma.MaskedArray):  # masked frames are missing ones
            a = np.ma.filled(a.astype(np.float64), np.nan)
        out.append(np.asarray(a, dtype=np.float64))
    return out


def _valid(*arrays: np.ndarray) -> np.ndarray:
    mask = np.ones(np.broadcast_shapes(*(a.shape for a in arrays)), dtype=bool)
    for a in arrays:
        mask &= ~np.isnan(a)
    return mask


def _masked_mean(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    count = mask.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mask, x, 0.0).sum(axis=-1) / np.where(count > 0, count, np.nan)


def rmse(y, mean) -> np.ndarray:
    """Root mean squared error over the last axis, shape ``(...)``."""
    y, mean = _as_numpy(y, mean)
    mask = _valid(y, mean)
    return np.sqrt(_masked_mean((y - mean) ** 2, mask))


def _constant(a: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Whether ``a`` takes one value on the frames of ``mask`` (reduces the last axis)."""
    high = np.where(mask, a, -np.inf).max(-1, initial=-np.inf)
    return high == np.where(mask, a, np.inf).min(-1, initial=np.inf)


def _moments(y: np.ndarray, x: np.ndarray):
    """Means, variances and covariance over the valid frames; a constant series has variance
    and covariance exactly 0 (its mean is not exact in binary, so the computed ones are not)."""
    mask = _valid(y, x)
    my, mx = _masked_mean(y, mask), _masked_mean(x, mask)
    dy, dx = y - my[..., None], x - mx[..., None]
    flat_y, flat_x = _constant(y, mask), _constant(x, mask)
    vy = np.where(flat_y, 0.0, _masked_mean(dy**2, mask))
    vx = np.where(flat_x, 0.0, _masked_mean(dx**2, mask))
    cov = np.where(flat_y | flat_x, 0.0, _masked_mean(dy * dx, mask))
    return my, mx, vy, vx, cov


def ccc(y, mean) -> np.ndarray:
    """Concordance correlation coefficient (population statistics) over the last axis.

    ``2 cov(y, x) / (var(y) + var(x) + (mean(y) - mean(x))^2)``; NaN when both are constant and
    equal, or when fewer than two valid frames remain (one frame has no spread to agree on: the
    formula would give 0 or NaN by whether its two values happen to be equal).
    """
    y, mean = _as_numpy(y, mean)
    my, mx, vy, vx, cov = _moments(y, mean)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = 2 * cov / (vy + vx + (my - mx) ** 2)
    return np.where(_valid(y, mean).sum(axis=-1) < 2, np.nan, value)[()]  # a scalar for 1-D


def pcc(y, mean) -> np.ndarray:
    """Pearson correlation over the last axis; NaN when either side is constant."""
    y, mean = _as_numpy(y, mean)
    _, _, vy, vx, cov = _moments(y, mean)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.clip(cov / np.sqrt(vy * vx), -1.0, 1.0)  # rounding may pass 1 by an ulp


def sagr(y, mean) -> np.ndarray:
    """Sign agreement ratio over the last axis (zero counts as its own sign)."""
    y, mean = _as_numpy(y, mean)
    mask = _valid(y, mean)
    return _masked_mean((np.sign(y) == np.sign(mean)).astype(np.float64), mask)


def gaussian_nll(y, mean, var) -> np.ndarray:
    """Mean Gaussian negative log-likelihood (nats) of ``y`` under N(mean, var); a variance of 0
    is a point mass (+inf off its point, -inf on it)."""
    y, mean, var = _as_numpy(y, mean, var)
    mask = _valid(y, mean, var)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        nll = 0.5 * (np.log(2 * math.pi * var) + (y - mean) ** 2 / var)
        nll = np.where(var == 0, np.where(y == mean, -np.inf, np.inf), nll)
    return _masked_mean(nll, mask)


def crps_gaussian(y, mean, var) -> np.ndarray:
    """Mean continuous ranked probability score of N(mean, var) at ``y`` (lower is better); a
    variance of 0 is a point forecast, whose score is ``|y - mean|``."""
    y, mean, var = _as_numpy(y, mean, var)
    mask = _valid(y, mean, var)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        sd = np.sqrt(var)
        z = (y - mean) / sd
        pdf = np.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
        cdf = 0.5 * (1 + erf(z / math.sqrt(2)))
        score = sd * (z * (2 * cdf - 1) + 2 * pdf - 1 / math.sqrt(math.pi))
        score = np.where(var == 0, np.abs(y - mean), score)
    return _masked_mean(score, mask)


def band_coverage(y, lower, upper) -> np.ndarray:
    """Fraction of frames with ``lower <= y <= upper``: the coverage of given bands (a
    trajectory's, whatever their shape), over frames where all three are defined."""
    y, lower, upper = _as_numpy(y, lower, upper)
    mask = _valid(y, lower, upper)
    with np.errstate(invalid="ignore"):
        inside = ((lower <= y) & (y <= upper)).astype(np.float64)
    return _masked_mean(inside, mask)


def coverage(y, mean, var, level: float) -> np.ndarray:
    """Fraction of frames inside the Gaussian central interval of nominal ``level`` (e.g. 0.9),
    ``|y - mean| <= z_{(1+level)/2} sqrt(var)``; NaN with a negative variance, as
    :func:`gaussian_nll`."""
    if not 0 < level < 1:
        raise InputError(f"level must be in (0, 1), got {level}")
    y, mean, var = _as_numpy(y, mean, var)
    mask = _valid(y, mean, var)
    with np.errstate(invalid="ignore"):
        half = ndtri(0.5 + level / 2) * np.sqrt(var)
        inside = np.where(var < 0, np.nan, (np.abs(y - mean) <= half).astype(np.float64))
    return _masked_mean(inside, mask)


class MetricTable(NamedTuple):
    """Metrics of several videos.

    Attributes:
        videos: The video ids, in row order.
        per_video: ``{metric: (N, 2) array}``, one row a video, columns (valence, arousal).
        mean: ``{metric: (2,)}``, the per-video values averaged over videos (NaN-aware).
        pooled: ``{metric: (2,)}``, each metric on all frames of all videos concatenated.
    """

    videos: list[str]
    per_video: dict[str, np.ndarray]
    mean: dict[str, np.ndarray]
    pooled: dict[str, np.ndarray]

    def to_dict(self) -> dict:
        """Plain nested dict for JSON, ``{dim: {metric: {"per_video": {video: value}, "mean":
        value, "pooled": value}}}``; undefined values (NaN) and infinite ones become ``None``."""
        return {
            dim: {name: {"per_video": {v: json_number(table[i, d])
                                       for i, v in enumerate(self.videos)},
                         "mean": json_number(self.mean[name][d]),
                         "pooled": json_number(self.pooled[name][d])}
                  for name, table in self.per_video.items()}
            for d, dim in enumerate(DIMENSIONS)}


def json_number(x: float) -> float | None:
    """A metric as JSON has it: a float, or ``None`` where it is undefined (NaN) or infinite."""
    x = float(x)
    return x if math.isfinite(x) else None


COVERAGE_LEVELS = {"coverage_50": 0.5, "coverage_90": 0.9, "coverage_95": 0.95}
"""The coverage metrics :func:`evaluate_videos` reports, and their nominal levels."""

_POINT: dict[str, Callable] = {"rmse": rmse, "ccc": ccc, "pcc": pcc, "sagr": sagr}
_PROB: dict[str, Callable] = {
    "nll": gaussian_nll,
    "crps": crps_gaussian,
    **{name: (lambda p: lambda y, m, v: coverage(y, m, v, p))(level)
       for name, level in COVERAGE_LEVELS.items()},
}


def _own_bands(videos: Sequence[str], means: list[np.ndarray], variances: list[np.ndarray] | None,
               bands: Mapping[float, tuple[Sequence, Sequence]]
               ) -> dict[str, tuple[list[np.ndarray], list[np.ndarray]]]:
    """``{coverage metric: (lowers, uppers)}`` from ``{level: (lowers, uppers)}``, checked, NaN
    where the variance is (every probabilistic metric is scored on the same frames, so a band
    must be defined wherever the estimate and its variance are)."""
    if variances is None:
        raise InputError("bands need variances: coverage is scored where they are defined")
    out = {}
    for name, level in COVERAGE_LEVELS.items():
        pair = next((b for p, b in bands.items() if math.isclose(p, level)), None)
        if pair is None:
            continue
        lowers, uppers = ([_as_numpy(x)[0] for x in side] for side in pair)
        if not len(lowers) == len(uppers) == len(means):
            raise InputError(f"bands at {level:g} need one array per video")
        for i, (low, up) in enumerate(zip(lowers, uppers, strict=True)):
            if low.shape != means[i].shape or up.shape != means[i].shape:
                raise InputError(f"video {videos[i]}: bands {low.shape} and {up.shape} must "
                                 f"have the estimate's shape {means[i].shape}")
            gone = np.isnan(variances[i]) | np.isnan(means[i])
            missing = int((~gone & (np.isnan(low) | np.isnan(up))).sum())
            if missing:
                raise InputError(f"video {videos[i]}: the band at {level:g} is NaN at {missing} "
                                 "value(s) where the estimate and its variance are defined")
            lowers[i], uppers[i] = np.where(gone, np.nan, low), np.where(gone, np.nan, up)
        out[name] = (lowers, uppers)
    return out


def evaluate_videos(videos: Sequence[str], truths: Sequence, means: Sequence,
                    variances: Sequence | None = None,
                    bands: Mapping[float, tuple[Sequence, Sequence]] | None = None
                    ) -> MetricTable:
    """Per-video and pooled metrics for valence and arousal.

    Args:
        videos: N video ids.
        truths: N arrays (T_i, 2) of true labels, NaN where unlabelled.
        means: N arrays (T_i, 2) of estimates.
        variances: N arrays (T_i, 2) of predictive variances, or ``None`` for point metrics only.
        bands: The estimates' own central bands, ``{level: (lowers, uppers)}`` with N arrays
            (T_i, 2) each: the coverage at such a level (of :data:`COVERAGE_LEVELS`) is theirs
            (:func:`band_coverage`), not the Gaussian interval's, on the same frames (those
            with a variance). Needs ``variances``; a band that is NaN where the estimate and
            its variance are defined is refused.

    Returns:
        The :class:`MetricTable`.
    """
    if not (len(videos) == len(truths) == len(means)):
        raise InputError("videos, truths and means must have the same length")
    if variances is not None and len(variances) != len(means):
        raise InputError(f"{len(variances)} variances for {len(means)} videos")
    if not len(videos):
        raise InputError("no video to evaluate")
    ys = [_as_numpy(t)[0] for t in truths]
    ms = [_as_numpy(m)[0] for m in means]
    vs = [_as_numpy(v)[0] for v in variances] if variances is not None else None
    for i, (y, m) in enumerate(zip(ys, ms, strict=True)):
        if y.shape != m.shape or y.ndim != 2 or y.shape[-1] != 2:
            raise InputError(f"video {videos[i]}: truth {y.shape} and estimate {m.shape} "
                             "must both be (T, 2)")
        if vs is not None and vs[i].shape != m.shape:
            raise InputError(f"video {videos[i]}: variance {vs[i].shape} and estimate "
                             f"{m.shape} must both be (T, 2)")
        if vs is not None and (vs[i] < 0).any():
            raise InputError(f"video {videos[i]}: negative variances")
    metrics = dict(_POINT)
    if vs is not None:
        metrics.update(_PROB)
    own = _own_bands(videos, ms, vs, bands) if bands else {}  # {metric: (lowers, uppers)}
    per_video, mean, pooled = {}, {}, {}
    y_all, m_all = np.concatenate(ys).T, np.concatenate(ms).T  # (2, sum T)
    v_all = np.concatenate(vs).T if vs is not None else None
    for name, fn in metrics.items():
        if name in own:  # the estimates' own bands
            lowers, uppers = own[name]
            rows = [band_coverage(ys[i].T, lowers[i].T, uppers[i].T) for i in range(len(videos))]
            pooled[name] = band_coverage(y_all, np.concatenate(lowers).T,
                                         np.concatenate(uppers).T)
        else:
            rows = [fn(ys[i].T, ms[i].T, *((vs[i].T,) if name in _PROB else ()))
                    for i in range(len(videos))]
            pooled[name] = fn(y_all, m_all, *((v_all,) if name in _PROB else ()))
        table = np.array(rows, dtype=np.float64).reshape(len(videos), 2)
        per_video[name] = table
        with np.errstate(invalid="ignore"):
            mean[name] = np.array([np.nanmean(table[:, d]) if (~np.isnan(table[:, d])).any()
                                   else np.nan for d in range(2)])
    return MetricTable(list(videos), per_video, mean, pooled)
