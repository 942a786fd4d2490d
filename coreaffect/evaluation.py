"""Evaluating estimates against per-frame labels, as the paper's Table 2 does.

:func:`predict_video` runs the hidden route densely over every frame of a
:class:`~coreaffect.corpus.LabelledVideo`; :func:`evaluate_hidden_route` scores a set of videos
with :func:`~coreaffect.metrics.evaluate_videos` (per video and pooled, valence and arousal).
:func:`evaluate_stages` scores every stage of a :class:`~coreaffect.pipeline.CoreAffect` (``raw``
hidden route, decoded ``prior``, dynamics ``smoothed``, causal ``filtered`` and fixed-lag
``lagged``) on the same frames with the same metrics; :func:`format_stages` prints them side by
side.

Which frames count: a frame is scored when it has a label and a face was found in it. Frames
without a face carry no evidence for the hidden route (the later stages bridge them through the
dynamics), so scoring the crop at a held box would measure the tracker, not the model. Every stage
is scored on these same frames, so that their numbers compare.
:func:`format_table` prints the per-video table like the paper's Table 2.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from coreaffect.corpus import LabelledVideo
from coreaffect.hidden_route import AffectEstimate, HiddenRouteNet
from coreaffect.metrics import DIMENSIONS, MetricTable, evaluate_videos

if TYPE_CHECKING:
    from coreaffect.pipeline import CoreAffect

__all__ = ["evaluate_hidden_route", "evaluate_stages", "evaluate_trajectories", "format_stages",
           "format_table", "predict_video", "scored_labels"]


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


def evaluate_hidden_route(model: HiddenRouteNet, videos: Sequence[LabelledVideo],
                          device: str | torch.device | None = None) -> MetricTable:
    """Per-video and pooled metrics of the hidden route's per-frame estimates."""
    truths, means, variances = [], [], []
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
        level: Band level of the trajectories (metrics use their moment-matched variances).
        progress: Show a progress bar over videos.

    Returns:
        ``{stage: MetricTable}`` in the order of :data:`coreaffect.pipeline.STAGES`.
    """
    items = videos
    if progress:
        from tqdm import tqdm

        items = tqdm(videos, desc="evaluating", unit="video")
    trajectories = [affect.stages_of(video.crops, level) for video in items]
    return evaluate_trajectories(videos, trajectories)


def evaluate_trajectories(videos: Sequence[LabelledVideo], trajectories: Sequence[dict]
                          ) -> dict[str, MetricTable]:
    """Metrics of precomputed stage trajectories (``CoreAffect.stages_of`` of each video).

    Args:
        videos: N labelled videos.
        trajectories: N dicts ``{stage: AffectTrajectory}`` with the same stages.

    Returns:
        ``{stage: MetricTable}``, scored on the frames of :func:`scored_labels`.
    """
    truths = [scored_labels(video) for video in videos]
    ids = [v.id for v in videos]
    stages = list(trajectories[0]) if trajectories else []
    return {stage: evaluate_videos(ids, truths, [t[stage].mean for t in trajectories],
                                   [t[stage].var for t in trajectories]) for stage in stages}


def format_stages(tables: dict[str, MetricTable], metrics: Sequence[str] = ("rmse", "ccc"),
                  coverage: str = "coverage_90") -> str:
    """A compact text table: per stage, the per-video mean and the pooled value of each metric
    (valence v, arousal a), and the pooled ``coverage``."""
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
