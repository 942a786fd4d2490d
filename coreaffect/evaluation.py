"""Evaluating estimates against per-frame labels, as the paper's Table 2 does.

:func:`predict_video` runs the hidden route densely over every frame of a
:class:`~coreaffect.corpus.LabelledVideo`; :func:`evaluate_hidden_route` scores a set of videos
with :func:`~coreaffect.metrics.evaluate_videos` (per video and pooled, valence and arousal).
:func:`evaluate_stages` scores every stage of a :class:`~coreaffect.pipeline.CoreAffect` (``raw``
hidden route, decoded ``prior``, dynamics ``smoothed``, causal ``filtered`` and fixed-lag
``lagged``) on the same frames with the same metrics; :func:`format_stages` prints them side by
side.
:func:`bootstrap_trajectories` adds how sure each number is: 95% intervals over resampled videos,
of every stage and of every stage's difference from the hidden route
(:mod:`coreaffect.bootstrap`); :func:`format_intervals` prints them and
:func:`metrics_json` writes everything as the ``--json`` file of ``coreaffect evaluate``.

Coverage: each stage's coverage is that of its own bands, the ``lower`` and ``upper`` its
trajectories carry (at 50%, 90% and 95%, :data:`~coreaffect.metrics.COVERAGE_LEVELS`):
Gaussian intervals for ``raw`` and ``prior``, quantiles of decoded draws (widened by the run's
band factors) for the dynamics' stages. NLL and CRPS score the moment-matched Gaussian of every
stage.

Which frames count: a frame is scored when it has a label and a face was found in it. Frames
without a face carry no evidence for the hidden route (the later stages bridge them through the
dynamics), so scoring the crop at a held box would measure the tracker, not the model. Every stage
is scored on these same frames, so that their numbers compare; a frame where a stage has no
estimate (a video shorter than a clip has none from the hidden route) counts for none.
:func:`format_table` prints the per-video table like the paper's Table 2.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch

from coreaffect.bootstrap import MIN_VIDEOS, MetricIntervals, any_interval, bootstrap_stages
from coreaffect.corpus import LabelledVideo
from coreaffect.errors import CoreAffectError
from coreaffect.hidden_route import AffectEstimate, HiddenRouteNet
from coreaffect.metrics import COVERAGE_LEVELS, DIMENSIONS, MetricTable, evaluate_videos
from coreaffect.people import People, video_groups

if TYPE_CHECKING:
    from coreaffect.pipeline import CoreAffect

__all__ = ["Evaluation", "bootstrap_trajectories", "evaluate_hidden_route", "evaluate_stages",
           "evaluate_trajectories", "format_intervals", "format_stages", "format_table",
           "long_enough", "metrics_json", "predict_video", "scored_labels", "stage_inputs",
           "stage_trajectories"]

logger = logging.getLogger(__name__)


class Evaluation(NamedTuple):
    """Every stage's metrics on a set of videos, and how sure they are.

    Attributes:
        tables: ``{stage: MetricTable}``, per video and pooled.
        intervals: ``{stage: MetricIntervals}``, 95% intervals over resampled videos (empty when
            not computed).
        differences: ``{stage: MetricIntervals}`` of each stage minus ``raw``, paired over the
            same resamples (empty when not computed).
        people: ``{video id: person}`` of the videos scored, when the intervals resampled people
            rather than videos; ``None``: each video was a person of its own, or no interval was
            computed.
    """

    tables: dict[str, MetricTable]
    intervals: dict[str, MetricIntervals]
    differences: dict[str, MetricIntervals]
    people: dict[str, str] | None = None


def long_enough(videos: Sequence[LabelledVideo], model: HiddenRouteNet, purpose: str
                ) -> list[LabelledVideo]:
    """The videos with at least one clip of frames (the hidden route's estimates need one); the
    others are named in a warning that says what they are left out of (``purpose``)."""
    clip = model.config.clip_length
    short = [v.id for v in videos if len(v.crops.crops) < clip]
    if short:
        logger.warning("%d video(s) shorter than a clip (%d frames) are left out of %s: %s",
                       len(short), clip, purpose, ", ".join(short))
    return [v for v in videos if len(v.crops.crops) >= clip]


def predict_video(model: HiddenRouteNet, video: LabelledVideo,
                  device: str | torch.device | None = None, chunk_frames: int = 128
                  ) -> AffectEstimate:
    """Per-frame estimates of one video: mean (T, 2), var (T, 2), embedding (T, D), on the CPU."""
    return model.predict_dense(video.crops.crops, chunk_frames=chunk_frames, device=device)


def scored_labels(video: LabelledVideo) -> np.ndarray:
    """(T, 2) labels with NaN where no face was found: the frames that count."""
    labels = np.array(video.labels, dtype=np.float64)
    labels[~np.asarray(video.crops.face_found, bool)] = np.nan
    return labels


def _where_estimated(truth: np.ndarray, trajectories: Iterable) -> np.ndarray:
    """(T, 2) labels, NaN too where any of the trajectories has no estimate (changed in place)."""
    for trajectory in trajectories:
        truth[~np.isfinite(np.asarray(trajectory.mean)).all(-1)] = np.nan
    return truth


def _common_frames(videos: Sequence[LabelledVideo], trajectories: Sequence[dict]
                   ) -> list[np.ndarray]:
    """:func:`scored_labels` of each video, NaN too where any stage has no estimate."""
    return [_where_estimated(scored_labels(video), stages.values())
            for video, stages in zip(videos, trajectories, strict=True)]


def evaluate_hidden_route(model: HiddenRouteNet, videos: Sequence[LabelledVideo],
                          device: str | torch.device | None = None) -> MetricTable:
    """Per-video and pooled metrics of the hidden route's per-frame estimates (videos shorter
    than a clip left out, with a warning)."""
    truths, means, variances = [], [], []
    videos = long_enough(videos, model, "the hidden route's evaluation")
    for video in videos:
        estimate = predict_video(model, video, device)
        truths.append(scored_labels(video))
        means.append(estimate.mean.double().numpy())
        variances.append(estimate.var.double().numpy())
    return evaluate_videos([v.id for v in videos], truths, means, variances)


def format_table(table: MetricTable, metrics: Sequence[str] = ("rmse", "ccc", "pcc"),
                 title: str = "") -> str:
    """A plain-text table: one row per video, then the mean over videos and the pooled value."""
    columns = [f"{m}_{d[0]}" for m in metrics for d in DIMENSIONS]  # e.g. rmse_v, rmse_a
    width = max(8, *(len(v) for v in table.videos), len("pooled"))
    lines = [title] if title else []
    lines.append(f"{'video':<{width}}" + "".join(f"{c:>9}" for c in columns))

    def row(name: str, values: list[float]) -> str:
        return f"{name:<{width}}" + "".join(f"{x:>9.3f}" for x in values)

    for i, video in enumerate(table.videos):
        lines.append(row(video, [table.per_video[m][i, d] for m in metrics for d in range(2)]))
    lines.append(row("mean", [table.mean[m][d] for m in metrics for d in range(2)]))
    lines.append(row("pooled", [table.pooled[m][d] for m in metrics for d in range(2)]))
    return "\n".join(lines)


def evaluate_stages(affect: CoreAffect, videos: Sequence[LabelledVideo], level: float = 0.9,
                    progress: bool = False) -> dict[str, MetricTable]:
    """Per-video and pooled metrics of every stage a run has, on the same frames.

    Args:
        affect: The loaded run (:class:`~coreaffect.pipeline.CoreAffect`).
        videos: Labelled videos (face crops and per-frame labels).
        level: Band level of the trajectories (coverage scores their bands at every level of
            :data:`~coreaffect.metrics.COVERAGE_LEVELS`; NLL and CRPS their moment-matched
            variances).
        progress: Show a progress bar over videos.

    Returns:
        ``{stage: MetricTable}`` in the order of :data:`coreaffect.pipeline.STAGES`.
    """
    return evaluate_trajectories(videos, stage_trajectories(affect, videos, level, progress))


def stage_trajectories(affect: CoreAffect, videos: Sequence[LabelledVideo], level: float = 0.9,
                       progress: bool = False, band_levels: Sequence[float] = ()) -> list[dict]:
    """``affect.stages_of`` of each video: N dicts ``{stage: AffectTrajectory}``, each with its
    bands at the levels of :data:`~coreaffect.metrics.COVERAGE_LEVELS` too, and at
    ``band_levels`` (e.g. the levels of a reliability curve)."""
    items = videos
    if progress:
        from tqdm import tqdm

        items = tqdm(videos, desc="evaluating", unit="video")
    levels = list(COVERAGE_LEVELS.values())
    levels += [p for p in band_levels if not any(math.isclose(p, q) for q in levels)]
    return [affect.stages_of(video.crops, level, band_levels=levels) for video in items]


def stage_inputs(trajectories: Sequence[dict], stage: str
                 ) -> tuple[list[np.ndarray], list[np.ndarray],
                            dict[float, tuple[list[np.ndarray], list[np.ndarray]]]]:
    """What the metrics of one stage are computed from, over N videos' trajectories.

    Returns:
        ``(means, variances, bands)``: N arrays (T_i, 2) each, and the stage's own bands
        ``{level: (lowers, uppers)}`` at each level of
        :data:`~coreaffect.metrics.COVERAGE_LEVELS` that every trajectory has.
    """
    own = [t[stage] for t in trajectories]
    bands = {}
    for level in COVERAGE_LEVELS.values():
        try:
            pairs = [t.band(level) for t in own]
        except CoreAffectError:  # some trajectory lacks it: the Gaussian interval is scored
            continue
        bands[level] = ([lower for lower, _ in pairs], [upper for _, upper in pairs])
    return [t.mean for t in own], [t.var for t in own], bands


def evaluate_trajectories(videos: Sequence[LabelledVideo], trajectories: Sequence[dict]
                          ) -> dict[str, MetricTable]:
    """Metrics of precomputed stage trajectories (``CoreAffect.stages_of`` of each video).

    Args:
        videos: N labelled videos.
        trajectories: N dicts ``{stage: AffectTrajectory}`` with the same stages.

    Returns:
        ``{stage: MetricTable}``, scored on the frames of :func:`scored_labels` where every
        stage has an estimate.
    """
    truths = _common_frames(videos, trajectories)
    if videos and all(np.isnan(truth).all() for truth in truths):
        logger.warning("no frame of the %d video(s) has a face and a label (and an estimate of "
                       "every stage): every metric is NaN", len(videos))
    ids = [v.id for v in videos]
    stages = list(trajectories[0]) if trajectories else []
    return {stage: evaluate_videos(ids, truths, *stage_inputs(trajectories, stage))
            for stage in stages}


def format_stages(tables: dict[str, MetricTable], metrics: Sequence[str] = ("rmse", "ccc"),
                  coverage: str = "coverage_90") -> str:
    """A compact text table: per stage, the per-video mean and the pooled value of each metric
    (valence v, arousal a) and of ``coverage``."""
    names = [f"{m}_{d[0]}" for m in metrics for d in DIMENSIONS]
    lines = [f"{'stage':<9}{'':<7}" + "".join(f"{c:>9}" for c in names)
             + f"{coverage.replace('coverage_', 'cov') + '_v':>9}"
             + f"{coverage.replace('coverage_', 'cov') + '_a':>9}"]
    for stage, table in tables.items():
        for kind in ("mean", "pooled"):
            values = getattr(table, kind)
            cells = [values[m][d] for m in metrics for d in range(2)]
            cells += [values[coverage][d] for d in range(2)] if coverage in values else []
            lines.append(f"{stage:<9}{kind:<7}" + "".join(f"{x:>9.3f}" for x in cells))
    return "\n".join(lines)


def bootstrap_trajectories(videos: Sequence[LabelledVideo], trajectories: Sequence[dict], *,
                           n_resamples: int = 2000, level: float = 0.95,
                           random_state: int | None = 0, people: People | None = None
                           ) -> tuple[dict[str, MetricIntervals], dict[str, MetricIntervals]]:
    """Intervals of every stage's metrics and of each stage's difference from ``raw``.

    The videos are resampled (:func:`coreaffect.bootstrap.bootstrap_stages`), each scored on the
    frames of :func:`scored_labels` where every stage has an estimate.

    Args:
        videos: N labelled videos.
        trajectories: N dicts ``{stage: AffectTrajectory}`` with the same stages.
        n_resamples: Resamples of the videos, at least
            :func:`~coreaffect.bootstrap.min_resamples` of ``level`` (400 at 95%).
        level: Nominal level of the intervals.
        random_state: Seed of the resampling.
        people: ``{video id: person}`` (:mod:`coreaffect.people`): people are resampled, each
            with all their videos; ``None``: each video is a person of its own.

    Returns:
        ``({stage: MetricIntervals}, {stage: MetricIntervals of stage minus raw})``.
    """
    truths = _common_frames(videos, trajectories)
    stages = list(trajectories[0]) if trajectories else []
    return bootstrap_stages(truths, {stage: stage_inputs(trajectories, stage)
                                     for stage in stages},
                            reference="raw", n_resamples=n_resamples, level=level,
                            random_state=random_state,
                            groups=None if people is None else video_groups(
                                [v.id for v in videos], people),
                            ids=[v.id for v in videos])


def metrics_json(evaluation: Evaluation) -> dict:
    """The evaluation as plain JSON: ``{stage: {dimension: {metric: {"per_video": {video:
    value}, "mean", "pooled"}}}}``, and with intervals ``"mean_ci"`` and ``"pooled_ci"`` ([low,
    high]) beside ``"mean"`` and ``"pooled"``, and for every stage but ``raw`` a ``"vs_raw"``
    entry holding the difference from ``raw`` the same way. When the intervals resampled
    people, ``"people"`` beside the stages holds ``{video id: person}``, as in ``compare
    --json``."""
    out: dict = {}
    for stage, table in evaluation.tables.items():
        out[stage] = table.to_dict()
        extra = {}
        if stage in evaluation.intervals:
            extra = evaluation.intervals[stage].to_dict()
        difference = (evaluation.differences[stage].to_dict()
                      if stage in evaluation.differences else {})
        for dim, metrics in out[stage].items():
            for name, entry in metrics.items():
                if name in extra.get(dim, {}):
                    entry["mean_ci"] = extra[dim][name]["mean_ci"]
                    entry["pooled_ci"] = extra[dim][name]["pooled_ci"]
                if name in difference.get(dim, {}):
                    entry["vs_raw"] = difference[dim][name]
    if evaluation.people is not None:
        out["people"] = dict(evaluation.people)
    return out


def format_intervals(intervals: dict[str, MetricIntervals],
                     differences: dict[str, MetricIntervals],
                     metrics: Sequence[str] = ("rmse", "ccc"),
                     coverages: Sequence[str] = ("coverage_50", "coverage_90")) -> str:
    """A text table of intervals: for every stage but ``raw``, its difference from ``raw`` in
    each of ``metrics`` (means over videos), then every stage's own pooled ``coverages``."""
    if not intervals:
        return ""
    level = next(iter(intervals.values())).level
    resampled = next(iter(intervals.values())).resampled
    if not any_interval(intervals):
        return (f"no {level:.0%} intervals: too few {resampled} with a scored frame to "
                f"resample (at least {MIN_VIDEOS} are needed)")
    lines = [f"{level:.0%} intervals over resampled {resampled}: diff = the stage minus raw (mean "
             "over videos), and coverage (pooled)",
             f"{'stage':<9}{'metric':<11}" + "".join(f"{d:>27}" for d in DIMENSIONS)]

    def row(stage: str, label: str, point: np.ndarray, interval: np.ndarray, digits: int
            ) -> str:
        sign = "+" if label.endswith(" diff") else ""
        cells = [f"{point[k]:{sign}.{digits}f} [{interval[k, 0]:{sign}.{digits}f}, "
                 f"{interval[k, 1]:{sign}.{digits}f}]" for k in range(2)]
        return f"{stage:<9}{label:<11}" + "".join(f"{c:>27}" for c in cells)

    for stage, own in intervals.items():
        difference = differences.get(stage)
        for name in metrics if difference is not None else ():
            if name in difference.mean:
                lines.append(row(stage, f"{name} diff", difference.mean[name],
                                 difference.mean_interval[name], 4))
        for name in coverages:
            if name in own.pooled:
                lines.append(row(stage, name.replace("coverage_", "cov"), own.pooled[name],
                                 own.pooled_interval[name], 3))
    return "\n".join(lines)
