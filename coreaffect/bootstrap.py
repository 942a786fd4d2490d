"""How sure a metric is: confidence intervals by resampling videos (the cluster bootstrap).

The frames of one video are far from independent (an estimate's error persists for seconds, and a
person's offset lasts the whole video), so intervals that resample frames are much too narrow. The
unit of replication is the video, the person in it: a resample draws N videos with replacement
from the N scored ones, and every metric is recomputed on it, both the per-video mean and the
pooled value (:mod:`coreaffect.metrics`). The interval of level ``p`` is the percentile interval,
the central ``p`` of the resampled values (Efron & Tibshirani 1993, ch. 13).

Stages are compared *paired*: each resample scores every stage on the same videos, and the
interval of a difference (a stage minus the reference stage) comes from the resampled
differences, so that the between-video spread, which every stage shares, cancels out. An interval
that excludes zero says that the difference is not an accident of which videos were scored; one
that includes zero says that these videos cannot tell.

Caveats. A value that fewer than :data:`MIN_VIDEOS` videos define has no interval (NaN,
``None`` in JSON, with a warning): one video resamples to itself, and an interval of width 0
would claim certainty; two give three distinct resamples. Videos without a scored frame (no
face, no label) do not count, nor, for a per-video mean, videos where the metric is undefined
(a correlation on constant labels). With few videos (the synthetic corpus tests on 10)
the percentile interval is somewhat too narrow: its spread is that of the plug-in estimate,
smaller than the sampling spread by a factor of about sqrt((N - 1) / N) (G people for N, when
people are resampled), and an interval of 95% nominal covers closer to 90%. The intervals speak
of new videos *like these*: people drawn from the same population, filmed and annotated the same
way. A video without a scored frame is never drawn (a person, when none of their videos has one).
A video is drawn for both dimensions together: one labelled in valence only is drawn for arousal
too and counts nothing there, so where many videos are, the arousal interval runs a little wide.

People. Where a corpus films some people in several videos (MAHNOB-HCI's sessions), those
videos are not independent, and resampling them one by one gives intervals that run too narrow.
Given the people in the videos (``groups``; :mod:`coreaffect.people`), a resample draws G people
with replacement from the G scored ones, each with all their videos (the cluster bootstrap with
the person as cluster, Field & Welsh 2007), and :data:`MIN_VIDEOS` counts people. Without it,
each video counts as one person.

Computation. Every metric is a function of a few per-video sums (frame counts, sums of errors,
of squares and of products), so a resample's pooled value is a weighted sum of the per-video
sums, weighted by how often each video was drawn: thousands of resamples cost milliseconds.

References:
    Efron, B., & Tibshirani, R. J. (1993). An Introduction to the Bootstrap. Chapman & Hall.

    Field, C. A., & Welsh, A. H. (2007). Bootstrapping clustered data. Journal of the Royal
    Statistical Society B 69(3), 369-390.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable, Mapping, Sequence
from typing import NamedTuple

import numpy as np

from coreaffect.errors import InputError
from coreaffect.metrics import DIMENSIONS, _as_numpy, evaluate_videos, json_number

__all__ = ["MIN_VIDEOS", "MetricIntervals", "any_interval", "bootstrap_stages",
           "min_resamples", "resample_counts", "resampled_metrics"]

logger = logging.getLogger(__name__)

#: The fewest videos (or people) resampled, as fewer have too few distinct resamples for a
#: percentile interval.
MIN_VIDEOS = 3

_TAIL_DRAWS = 10  # draws beyond each end of an interval, at the least


def min_resamples(level: float = 0.95) -> int:
    """The fewest resamples that put ``_TAIL_DRAWS`` (10) draws beyond each end of a
    central ``level`` percentile interval: 400 at 95%. Fewer give an interval set by a handful
    of draws (one resample: a zero-width interval that may exclude its own point value); the
    default, 2000, is what Efron and Tibshirani (1993) advise for percentile intervals."""
    if not 0 < level < 1:
        raise InputError(f"level must be in (0, 1), got {level}")
    return math.ceil(round(2 * _TAIL_DRAWS / (1 - level), 6))


_MOMENT_METRICS = ("ccc", "pcc")  # pooled from per-video means and centred second moments


class MetricIntervals(NamedTuple):
    """Point values and percentile intervals of the metrics of one stage, or of a difference.

    Attributes:
        mean: ``{metric: (2,)}``, the per-video mean (valence, arousal) on the videos scored.
        mean_interval: ``{metric: (2, 2)}``, rows (valence, arousal), columns (low, high).
        pooled: ``{metric: (2,)}``, the value on all frames pooled.
        pooled_interval: ``{metric: (2, 2)}``, as ``mean_interval``.
        level: The intervals' nominal level.
        n_resamples: Resamples drawn.
        resampled: What was resampled: ``"videos"``, or ``"people"`` when the videos were
            grouped by the person in them.
    """

    mean: dict[str, np.ndarray]
    mean_interval: dict[str, np.ndarray]
    pooled: dict[str, np.ndarray]
    pooled_interval: dict[str, np.ndarray]
    level: float
    n_resamples: int
    resampled: str = "videos"

    def to_dict(self) -> dict:
        """``{dimension: {metric: {"mean", "mean_ci": [low, high], "pooled", "pooled_ci"}}}``;
        undefined values (NaN) and infinite ones become ``None``."""
        num = json_number  # short, for the nested dict below
        return {dim: {name: {"mean": num(self.mean[name][d]),
                             "mean_ci": [num(x) for x in self.mean_interval[name][d]],
                             "pooled": num(self.pooled[name][d]),
                             "pooled_ci": [num(x) for x in self.pooled_interval[name][d]]}
                      for name in self.mean}
                for d, dim in enumerate(DIMENSIONS)}


def any_interval(intervals: Mapping[str, MetricIntervals]) -> bool:
    """Whether any of these intervals is defined (none is with fewer than :data:`MIN_VIDEOS`
    videos)."""
    return any(not np.isnan(v).all() for own in intervals.values()
               for v in own.mean_interval.values())


def resample_counts(n_videos: int, n_resamples: int, random_state: int | None = 0,
                    groups: Sequence[Hashable] | None = None) -> np.ndarray:
    """How often each video is drawn in each resample: (R, N) integers.

    Without ``groups`` each resample draws N videos with replacement (each row sums to N). With
    ``groups`` it draws G people with replacement from the G distinct ones, and each video
    counts as often as its person was drawn (each row, summed over one video of each person,
    is G).

    Args:
        n_videos: N, the videos to resample (at least 1).
        n_resamples: R.
        random_state: Seed; the same seed draws the same resamples. Each video its own group
            draws the same resamples as no ``groups``.
        groups: N keys, equal for the videos of one person
            (:func:`~coreaffect.people.video_groups`); ``None``: each video is a person of its own.
    """
    if n_videos < 1 or n_resamples < 1:
        raise InputError(f"need at least one video and one resample, got {n_videos} and "
                         f"{n_resamples}")
    index, n_groups = _group_index(n_videos, groups)
    rng = np.random.default_rng(random_state)
    drawn = rng.multinomial(n_groups, np.full(n_groups, 1 / n_groups), size=n_resamples)
    return drawn[:, index]  # (R, N)


def _group_index(n_videos: int, groups: Sequence[Hashable] | None) -> tuple[np.ndarray, int]:
    """Each video's group as 0..G-1, numbered in order of first appearance, and G."""
    if groups is None:
        return np.arange(n_videos), n_videos
    if len(groups) != n_videos:
        raise InputError(f"groups must give one key per video: {len(groups)} keys for "
                         f"{n_videos} videos")
    numbers: dict[Hashable, int] = {}
    index = np.array([numbers.setdefault(g, len(numbers)) for g in groups], dtype=np.intp)
    return index, len(numbers)


def _support(videos: np.ndarray, index: np.ndarray) -> np.ndarray:
    """(2,) how many groups (people) have a video in ``videos`` (N, 2) bool."""
    return np.array([len(np.unique(index[videos[:, d]])) for d in range(videos.shape[1])])


def _video_sums(truth: np.ndarray, mean: np.ndarray, per_video: Mapping[str, np.ndarray],
                variance: np.ndarray | None) -> dict[str, np.ndarray]:
    """Per-video statistics from which every pooled metric follows, each (2, S) for one video.

    For a metric that is a mean over frames (RMSE's square, SAGR, NLL, CRPS, coverage) they are
    the sums (count, count x per-video value); for CCC and PCC the frame count n, the means of
    the truth and of the estimate, the centred sums of squares and of products, and the smallest
    and largest truth and estimate (which tell a constant series), over frames where both are
    defined (zeros, and infinite bounds, where none is). Centred moments keep the pooled
    correlation exact for series far from zero or nearly constant, where raw sums of squares
    cancel.
    """
    y, x = truth.T, mean.T  # (2, T)
    both = ~(np.isnan(y) | np.isnan(x))
    full = both if variance is None else both & ~np.isnan(variance.T)
    n = both.sum(-1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        my = np.where(n > 0, np.where(both, y, 0.0).sum(-1) / n, 0.0)
        mx = np.where(n > 0, np.where(both, x, 0.0).sum(-1) / n, 0.0)
    dy, dx = np.where(both, y - my[:, None], 0.0), np.where(both, x - mx[:, None], 0.0)
    bounds = []  # smallest and largest y, then x
    for a in (y, x):
        bounds += [np.where(both, a, np.inf).min(-1, initial=np.inf),
                   np.where(both, a, -np.inf).max(-1, initial=-np.inf)]  # 0 frames: no bound
    moments = np.stack([n, my, mx, (dy ** 2).sum(-1), (dx ** 2).sum(-1), (dx * dy).sum(-1),
                        *bounds], axis=-1)
    sums = {}
    for name, value in per_video.items():
        if name in _MOMENT_METRICS:
            sums[name] = moments
            continue
        count = (full if name in ("nll", "crps") or name.startswith("coverage_") else both
                 ).sum(-1).astype(np.float64)
        value = value ** 2 if name == "rmse" else value
        sums[name] = np.stack([count, np.where(count > 0, count * value, 0.0)], axis=-1)
    return sums


def _weighted_sum(weights: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``weights @ values`` over the first axis of ``values`` (N, ...), where a value of weight
    zero never counts, even an infinite or NaN one (a plain product would give NaN)."""
    flat = values.reshape(len(values), -1)
    total = weights @ np.where(np.isfinite(flat), flat, 0.0)
    up, down, nan = (weights @ (flat == np.inf) > 0, weights @ (flat == -np.inf) > 0,
                     weights @ np.isnan(flat) > 0)
    total = np.where(up, np.inf, np.where(down, -np.inf, total))
    total = np.where(nan | (up & down), np.nan, total)
    return total.reshape(weights.shape[:1] + values.shape[1:])


def _pooled(name: str, weights: np.ndarray, stats: np.ndarray) -> np.ndarray:
    """A metric on each resample's frames pooled, from per-video statistics.

    Args:
        name: The metric.
        weights: (R, N) how often each video is drawn.
        stats: (N, 2, S) per-video statistics (:func:`_video_sums`).

    Returns:
        (R, 2).
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        if name not in _MOMENT_METRICS:
            sums = _weighted_sum(weights, stats)
            value = sums[..., 1] / sums[..., 0]
            return np.sqrt(value) if name == "rmse" else value
        # Combine centred moments exactly (Chan, Golub & LeVeque 1983): a video's sum of
        # squares about the pooled mean is its own plus n times its mean's squared offset.
        n, my, mx, syy, sxx, sxy, low_y, high_y, low_x, high_x = np.moveaxis(stats, -1, 0)
        wn = weights[:, :, None] * n  # (R, N, 2)
        total = wn.sum(1)  # (R, 2)
        pooled_y, pooled_x = (wn * my).sum(1) / total, (wn * mx).sum(1) / total
        oy, ox = my - pooled_y[:, None], mx - pooled_x[:, None]  # (R, N, 2)
        vy = (weights @ syy + (wn * oy ** 2).sum(1)) / total
        vx = (weights @ sxx + (wn * ox ** 2).sum(1)) / total
        cov = (weights @ sxy + (wn * ox * oy).sum(1)) / total
        # a series constant over the drawn videos' frames has variance exactly 0, as in
        # coreaffect.metrics (its computed moments are rounding noise)
        drawn = weights[:, :, None] > 0  # (R, N, 1)
        flat_y = (np.where(drawn, low_y, np.inf).min(1)
                  == np.where(drawn, high_y, -np.inf).max(1))  # (R, 2)
        flat_x = (np.where(drawn, low_x, np.inf).min(1)
                  == np.where(drawn, high_x, -np.inf).max(1))
        vy, vx = np.where(flat_y, 0.0, vy), np.where(flat_x, 0.0, vx)
        cov = np.where(flat_y | flat_x, 0.0, cov)
        if name == "pcc":  # clipped as coreaffect.metrics.pcc: rounding may pass 1 by an ulp
            return np.clip(cov / np.sqrt(vy * vx), -1.0, 1.0)
        value = 2 * cov / (vy + vx + (pooled_y - pooled_x) ** 2)
        return np.where(total < 2, np.nan, value)  # as coreaffect.metrics.ccc on one frame


class _Draws(NamedTuple):
    """Point values, resampled values and support of every metric of one stage.

    Attributes:
        mean, pooled: ``{metric: (2,)}`` on the videos as they are.
        mean_draws, pooled_draws: ``{metric: (R, 2)}``, NaN where a resample leaves a metric
            undefined.
        mean_support, pooled_support: ``{metric: (N, 2)}`` bool, the videos the value rests
            on: those with a defined per-video value, those with a scored frame.
        per_video: ``{metric: (N, 2)}``, NaN where undefined.
        weights: (R, N) how often each video is drawn.
    """

    mean: dict[str, np.ndarray]
    pooled: dict[str, np.ndarray]
    mean_draws: dict[str, np.ndarray]
    pooled_draws: dict[str, np.ndarray]
    mean_support: dict[str, np.ndarray]
    pooled_support: dict[str, np.ndarray]
    per_video: dict[str, np.ndarray]
    weights: np.ndarray


def _video_mean(weights: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(R, 2) mean of the (N, 2) per-video ``values`` that are defined, each video counted as
    often as (R, N) ``weights`` draw it; NaN where no drawn video defines one."""
    defined = ~np.isnan(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _weighted_sum(weights, np.where(defined, values, 0.0)) / (weights @ defined)


def _draws(truths: Sequence[np.ndarray], means: Sequence[np.ndarray],
           variances: Sequence[np.ndarray] | None, counts: np.ndarray,
           bands: Mapping[float, tuple[Sequence[np.ndarray], Sequence[np.ndarray]]] | None = None,
           ids: Sequence[str] | None = None) -> _Draws:
    """Every metric of one stage on the videos and on each resample (``bands``: as for
    :func:`~coreaffect.metrics.evaluate_videos`; ``ids``: the videos' names)."""
    ids = [str(i) for i in range(len(truths))] if ids is None else list(ids)
    table = evaluate_videos(ids, truths, means, variances, bands)
    truths, means = _as_numpy(*truths), _as_numpy(*means)  # masked entries: NaN
    variances = None if variances is None else _as_numpy(*variances)
    per_video_sums = [_video_sums(t, m, {k: v[i] for k, v in table.per_video.items()},
                                  None if variances is None else variances[i])
                      for i, (t, m) in enumerate(zip(truths, means, strict=True))]
    weights = counts.astype(np.float64)  # (R, N)
    out = _Draws(table.mean, table.pooled, {}, {}, {}, {}, table.per_video, weights)
    for name, values in table.per_video.items():  # values (N, 2)
        out.mean_draws[name] = _video_mean(weights, values)
        stacked = np.stack([s[name] for s in per_video_sums])  # (N, 2, S), S[0]: frame count
        out.pooled_draws[name] = _pooled(name, weights, stacked)
        out.mean_support[name] = ~np.isnan(values)
        out.pooled_support[name] = stacked[..., 0] > 0
    return out


def _difference(stage: _Draws, reference: _Draws) -> _Draws:
    """A stage minus the reference, on the metrics both have, resting on the videos that define
    both: the per-video mean of the difference is the mean of the per-video differences, over
    the videos where both stages' values are defined (paired), in each resample as well. A
    value infinite in both with one sign (an NLL of +inf, from a variance of 0 off its point)
    has no defined difference: such a video counts as undefined."""
    names = [k for k in stage.mean if k in reference.mean]

    def minus(a: dict, b: dict) -> dict:
        with np.errstate(invalid="ignore"):  # inf - inf: NaN, undefined
            return {k: a[k] - b[k] for k in names}

    def both(a: dict, b: dict) -> dict:
        return {k: a[k] & b[k] for k in names}

    paired = minus(stage.per_video, reference.per_video)  # NaN where either is undefined
    every = np.ones((1, len(stage.weights[0])))
    return _Draws({k: _video_mean(every, v)[0] for k, v in paired.items()},
                  minus(stage.pooled, reference.pooled),
                  {k: _video_mean(stage.weights, v) for k, v in paired.items()},
                  minus(stage.pooled_draws, reference.pooled_draws),
                  both(stage.mean_support, reference.mean_support),
                  both(stage.pooled_support, reference.pooled_support), paired, stage.weights)


def resampled_metrics(truths: Sequence[np.ndarray], means: Sequence[np.ndarray],
                      variances: Sequence[np.ndarray] | None, counts: np.ndarray,
                      bands: Mapping[float, tuple[Sequence[np.ndarray],
                                                  Sequence[np.ndarray]]] | None = None
                      ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Every metric on each resample of the videos, as if the drawn videos were concatenated.

    Args:
        truths: N arrays (T_i, 2) of labels, NaN where a frame does not count.
        means: N arrays (T_i, 2) of estimates.
        variances: N arrays (T_i, 2) of predictive variances, or ``None``.
        counts: (R, N) how often each video is in each resample (:func:`resample_counts`).
        bands: The estimates' own bands, scored for coverage as
            :func:`~coreaffect.metrics.evaluate_videos` does.

    Returns:
        ``({metric: (R, 2)}, {metric: (R, 2)})``: the per-video mean and the pooled value of
        each resample, equal to :func:`~coreaffect.metrics.evaluate_videos` on its videos.
    """
    drawn = _draws(truths, means, variances, counts, bands)
    return drawn.mean_draws, drawn.pooled_draws


def _interval(draws: np.ndarray, level: float, support: np.ndarray | None = None
              ) -> np.ndarray:
    """(2, 2) percentile interval of (R, 2) draws; NaN where fewer than half are defined, and
    where ``support`` (2,), how many videos (people) a value rests on, is below
    :data:`MIN_VIDEOS`."""
    tail = 50 * (1 - level)
    out = np.full((draws.shape[1], 2), np.nan)
    for d in range(draws.shape[1]):
        if support is not None and support[d] < MIN_VIDEOS:
            continue
        column = draws[:, d][~np.isnan(draws[:, d])]
        if 2 * len(column) >= len(draws):
            with np.errstate(invalid="ignore"):  # inf - inf between two infinite draws
                out[d] = np.percentile(column, [tail, 100 - tail])
            if np.isnan(out[d]).any():  # there, the draws either side are infinite
                out[d] = np.where(np.isnan(out[d]), np.percentile(
                    column, [tail, 100 - tail], method="nearest"), out[d])
    return out


def bootstrap_stages(truths: Sequence[np.ndarray],
                     stages: Mapping[str, tuple[Sequence[np.ndarray], Sequence[np.ndarray] | None]],
                     *, reference: str | Mapping[str, str] | None = "raw",
                     n_resamples: int = 2000,
                     level: float = 0.95, random_state: int | None = 0,
                     groups: Sequence[Hashable] | None = None,
                     ids: Sequence[str] | None = None
                     ) -> tuple[dict[str, MetricIntervals], dict[str, MetricIntervals]]:
    """Intervals of every stage's metrics, and of each stage's difference from a reference.

    Args:
        truths: N arrays (T_i, 2) of labels, NaN where a frame does not count.
        stages: ``{stage: (means, variances)}`` or ``{stage: (means, variances, bands)}``, N
            arrays (T_i, 2) each; ``variances`` may be ``None`` (point metrics only), ``bands``
            are the stage's own (:func:`~coreaffect.metrics.evaluate_videos`). Every stage is
            scored on the same resamples.
        reference: The stage the others are compared with (``None`` or absent: no comparison),
            or ``{stage: its reference}`` for stages each compared with a stage of their own.
        n_resamples: Resamples of the videos, at least :func:`min_resamples` (400 at 95%).
        level: Nominal level of the intervals.
        random_state: Seed of the resampling.
        groups: N keys, equal for the videos of one person
            (:func:`~coreaffect.people.video_groups`): people are resampled, each with all
            their videos. ``None``: each video is a person of its own.
        ids: N names of the videos, which errors about a video's inputs give; ``None``: their
            positions.

    Returns:
        ``({stage: MetricIntervals}, {stage: MetricIntervals of stage minus reference})``; the
        second holds every stage but the reference (with a mapping, its keys), and only the
        metrics both stages have.
        An interval is NaN (a warning says so) where fewer than :data:`MIN_VIDEOS` videos (of
        as many people, with ``groups``) define its value: videos with a defined per-video
        value for the mean, with a scored frame for the pooled value (for a difference, videos
        that define both stages' values).
    """
    if n_resamples < min_resamples(level):
        raise InputError(f"{n_resamples} resamples are too few for {level:.0%} intervals: at "
                         f"least {min_resamples(level)} put 10 draws beyond each end")
    if isinstance(reference, Mapping):
        unknown = sorted({*reference, *reference.values()} - set(stages), key=repr)
        if unknown:
            raise InputError("reference names stages that are not scored: "
                             f"{', '.join(map(repr, unknown))}")
        itself = sorted(stage for stage, ref in reference.items() if stage == ref)
        if itself:
            raise InputError(f"reference compares stages with themselves: {', '.join(itself)}")
    index, _ = _group_index(len(truths), groups)
    unit = "videos" if groups is None else "people"
    # the videos (people) with a scored frame are drawn; the others never count
    scored = np.array([bool(np.isfinite(t).any()) for t in _as_numpy(*truths)], dtype=bool)
    n_scored = len(np.unique(index[scored]))
    if n_scored < MIN_VIDEOS:
        one = "video" if groups is None else "person"
        logger.warning("%d %s scored: too few to resample, so no interval is given (at least "
                       "%d are needed)", n_scored, one if n_scored == 1 else unit, MIN_VIDEOS)
    counts = np.zeros((n_resamples, len(truths)), dtype=np.int64)
    if n_scored:
        counts[:, scored] = resample_counts(
            int(scored.sum()), n_resamples, random_state,
            None if groups is None else [g for g, s in zip(groups, scored, strict=True) if s])
    drawn = {stage: _draws(truths, *inputs[:2], counts, *inputs[2:], ids=ids)
             for stage, inputs in stages.items()}

    def intervals(d: _Draws) -> MetricIntervals:
        return MetricIntervals(
            d.mean, {k: _interval(v, level, _support(d.mean_support[k], index))
                     for k, v in d.mean_draws.items()},
            d.pooled, {k: _interval(v, level, _support(d.pooled_support[k], index))
                       for k, v in d.pooled_draws.items()},
            level, n_resamples, unit)

    each = {stage: intervals(d) for stage, d in drawn.items()}
    if n_scored >= MIN_VIDEOS:
        thin = sorted({f"{stage} {name}" for stage, d in drawn.items()
                       for support in (d.mean_support, d.pooled_support)
                       for name, n in support.items()
                       if (_support(n, index) < MIN_VIDEOS).any()})
        if thin:
            logger.warning("fewer than %d %s define %s, so these have no interval",
                           MIN_VIDEOS, unit, ", ".join(thin))
    if isinstance(reference, Mapping):
        pairs = dict(reference)
    else:
        pairs = {stage: reference for stage in drawn if reference in drawn and stage != reference}
    return each, {stage: intervals(_difference(drawn[stage], drawn[base]))
                  for stage, base in pairs.items()}
