"""Evaluating estimates against per-frame labels, as the paper's Table 2 does.

:func:`predict_video` runs the hidden route densely over every frame of a
:class:`~coreaffect.corpus.LabelledVideo`; :func:`evaluate_hidden_route` scores a set of videos
with :func:`~coreaffect.metrics.evaluate_videos` (per video and pooled, valence and arousal).

Which frames count: a frame is scored when it has a label and a face was found in it. Frames
without a face carry no evidence for the hidden route (the later stages bridge them through the
dynamics), so scoring the crop at a held box would measure the tracker, not the model.
:func:`format_table` prints the per-video table like the paper's Table 2.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from coreaffect.corpus import LabelledVideo
from coreaffect.hidden_route import AffectEstimate, HiddenRouteNet
from coreaffect.metrics import DIMENSIONS, MetricTable, evaluate_videos

__all__ = ["evaluate_hidden_route", "format_table", "predict_video", "scored_labels"]


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
