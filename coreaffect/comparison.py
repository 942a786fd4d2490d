"""Comparing two runs on the same videos: is B better than A, or could it be the people?

:func:`compare_runs` is what ``coreaffect compare RUN_A RUN_B DATA`` does. Both runs score the same
videos (by default those that *both* held out for testing), on the same frames (a label, a face
found by both runs' croppers, and an estimate from every stage compared), and every stage the two
runs share is compared: its metrics in each run, and run B's minus run A's, each with a 95%
interval over resampled videos (:mod:`coreaffect.bootstrap`). The resampling is paired: each
resample draws the same videos for both runs, so that what the two share (some people are harder
than others) cancels from the difference, which is what makes a comparison on 10 videos informative
at all. An interval that excludes 0 says that B differs from A on people like these; one that
includes 0, that these videos cannot tell.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np

from coreaffect.bootstrap import (
    MIN_VIDEOS,
    MetricIntervals,
    any_interval,
    bootstrap_stages,
    min_resamples,
)
from coreaffect.checkpoint import atomic_write
from coreaffect.corpus import check_numbering, discover
from coreaffect.crop_cache import CropCache
from coreaffect.errors import CoreAffectError
from coreaffect.evaluation import _where_estimated, stage_inputs, stage_trajectories
from coreaffect.experiment import (
    held_out_here,
    held_out_videos,
    labels_delay,
    load_videos,
    run_people,
)
from coreaffect.metrics import DIMENSIONS
from coreaffect.people import People, people_of, video_groups

__all__ = ["Comparison", "compare_runs", "format_comparison"]


class Comparison(NamedTuple):
    """Two runs on the same videos, stage by stage.

    Attributes:
        videos: The ids of the videos scored.
        a: ``{stage: MetricIntervals}`` of run A.
        b: ``{stage: MetricIntervals}`` of run B.
        differences: ``{stage: MetricIntervals}`` of run B minus run A, paired.
        people: ``{video id: person}`` of the videos scored, when people were resampled rather
            than videos; ``None``: each video was a person of its own.
    """

    videos: list[str]
    a: dict[str, MetricIntervals]
    b: dict[str, MetricIntervals]
    differences: dict[str, MetricIntervals]
    people: dict[str, str] | None = None

    def to_dict(self) -> dict:
        """``{"videos": [...], stage: {"a": ..., "b": ..., "b_minus_a": ...}}``, each as
        :meth:`~coreaffect.bootstrap.MetricIntervals.to_dict`, and ``"people"`` (``{video id:
        person}``) when people were resampled."""
        out: dict = {"videos": list(self.videos)}
        if self.people is not None:
            out["people"] = dict(self.people)
        for stage, difference in self.differences.items():
            out[stage] = {"a": self.a[stage].to_dict(), "b": self.b[stage].to_dict(),
                          "b_minus_a": difference.to_dict()}
        return out


def compare_runs(run_a: str | Path, run_b: str | Path, data: str | Path, *,
                 format: str = "auto", subset: str = "test", device: str = "cpu",
                 cache: str | Path | None = None, n_resamples: int = 2000,
                 json_path: str | Path | None = None, random_state: int | None = 0,
                 delay: float | None = None, people: People | str | Path | None = None,
                 progress: bool = False) -> Comparison:
    """Score two runs on the same videos and compare them stage by stage.

    Args:
        run_a: Run directory A (the reference).
        run_b: Run directory B.
        data: Dataset folder.
        format: Annotation format, or ``"auto"``.
        subset: ``"test"``: the videos both runs held out; ``"all"``: every video of ``data``
            (a video one run trained on favours that run).
        device: Where to compute.
        cache: Face-crop cache folder for both runs (crops are keyed by the crop settings);
            ``None``: each run's own ``RUN/crops``.
        n_resamples: Resamples of the videos, at least
            :func:`~coreaffect.bootstrap.min_resamples` (400).
        json_path: Where to write :meth:`Comparison.to_dict` as JSON.
        random_state: Seed of the resampling.
        delay: The annotators' delay of ``data``'s labels in seconds, for both runs; ``None``:
            run A's on its own dataset, else a synthetic corpus's own, else 0
            (:func:`~coreaffect.experiment.labels_delay`).
        people: The people in ``data``'s videos (a mapping or a CSV file,
            :mod:`coreaffect.people`): people are resampled, each with all their videos.
            ``None``: run A's own on its own dataset
            (:func:`~coreaffect.experiment.run_people`), else each video is a person of its own.
        progress: Show progress bars.

    Returns:
        The :class:`Comparison` of the stages both runs have.
    """
    from coreaffect.pipeline import CoreAffect

    if n_resamples < min_resamples():
        raise CoreAffectError(f"the number of resamples must be at least {min_resamples()}, got "
                              f"{n_resamples}")
    if subset not in ("test", "all"):
        raise CoreAffectError(f"subset must be 'test' or 'all', got {subset!r}")
    runs = [Path(run_a), Path(run_b)]
    people = run_people(runs[0], data, people)
    affects = [CoreAffect.load(run, device) for run in runs]
    recordings = discover(data, format)
    if subset == "test":
        recordings = held_out_here(
            recordings, held_out_videos(runs[0]) & held_out_videos(runs[1]), data,
            "no video here was held out by both runs", "test videos both runs held out")
    first = labels_delay(runs[0], affects[0].data_config, data, delay)  # A's reading, B's too
    configs = [first, labels_delay(runs[1], affects[1].data_config, data,
                                   first.annotations.delay)]
    check_numbering(recordings, first)
    trajectories, found, labels = [], [], []
    for run, affect, config in zip(runs, affects, configs, strict=True):
        crops = CropCache(cache if cache is not None else run / "crops", config.faces,
                          config.video.chunk_size)
        videos = load_videos(recordings, config, crops, progress, run.name)
        trajectories.append(stage_trajectories(affect, videos, progress=progress))
        found.append([np.asarray(v.crops.face_found, bool) for v in videos])
        first_labels, labels = labels, [np.asarray(v.labels, np.float64) for v in videos]
        first_labels = first_labels or labels
    for recording, mine, theirs in zip(recordings, labels, first_labels, strict=True):
        if mine.shape != theirs.shape or not np.allclose(mine, theirs, equal_nan=True):
            raise CoreAffectError(f"{recording.id}: the two runs read its frames or labels "
                                  "differently (their video or annotation settings differ), so "
                                  "they cannot be scored on the same frames")
    people = people_of([r.id for r in recordings], people)
    stages = [s for s in trajectories[0][0] if s in trajectories[1][0]]
    truths = []
    for k, (label, a, b) in enumerate(zip(labels, *found, strict=True)):
        truth = label.copy()
        truth[~(a & b)] = np.nan  # the frames both runs found a face in
        truths.append(_where_estimated(truth, (run_trajectories[k][stage]  # by every stage
                                               for run_trajectories in trajectories
                                               for stage in stages)))
    # one resampling for every stage of both runs, so that its warnings come once
    names = {(side, stage): f"run {side} {stage}" for side in "AB" for stage in stages}
    each, differences = bootstrap_stages(
        truths, {names[side, stage]: stage_inputs(trajectories["AB".index(side)], stage)
                 for side, stage in names},
        reference={names["B", stage]: names["A", stage] for stage in stages},
        n_resamples=n_resamples, random_state=random_state,
        groups=None if people is None else video_groups([r.id for r in recordings], people),
        ids=[r.id for r in recordings])
    comparison = Comparison([r.id for r in recordings],
                            {stage: each[names["A", stage]] for stage in stages},
                            {stage: each[names["B", stage]] for stage in stages},
                            {stage: differences[names["B", stage]] for stage in stages}, people)
    if json_path is not None:
        atomic_write(json_path, json.dumps(comparison.to_dict(), indent=2) + "\n")
    return comparison


def format_comparison(comparison: Comparison,
                      metrics: tuple[str, ...] = ("rmse", "ccc", "coverage_50", "coverage_90")
                      ) -> str:
    """A text table: per stage, metric and dimension, A, B, and B - A with its interval (RMSE
    and CCC: means over videos; coverage: pooled)."""
    if not comparison.differences:
        return "the runs share no stage"
    level = next(iter(comparison.differences.values())).level
    units = len(set(video_groups(comparison.videos, comparison.people)))
    unit = "videos" if comparison.people is None else "people"
    # none with fewer than MIN_VIDEOS people or videos that have a scored frame
    few = ("" if any_interval(comparison.differences)
           else f" (none: fewer than {MIN_VIDEOS} {unit} with a scored frame)")
    of = "" if comparison.people is None else f" of {units} people"
    lines = [f"{len(comparison.videos)} videos{of}; B - A with its {level:.0%} interval over "
             f"resampled {unit}{few} (RMSE and CCC: mean over videos; coverage: pooled)",
             f"{'stage':<9}{'metric':<9}{'':<9}{'A':>8}{'B':>8}{'B - A':>9}  interval"]
    for stage, difference in comparison.differences.items():
        for name in metrics:
            if name not in difference.mean:
                continue
            kind = "pooled" if name.startswith("coverage_") else "mean"
            for d, dim in enumerate(DIMENSIONS):
                low, high = getattr(difference, f"{kind}_interval")[name][d]
                interval = ("none" if math.isnan(low) or math.isnan(high)  # +-inf are shown
                            else f"[{low:+.4f}, {high:+.4f}]")
                lines.append(
                    f"{stage:<9}{name.replace('coverage_', 'cov'):<9}{dim:<9}"
                    f"{getattr(comparison.a[stage], kind)[name][d]:>8.4f}"
                    f"{getattr(comparison.b[stage], kind)[name][d]:>8.4f}"
                    f"{getattr(difference, kind)[name][d]:>+9.4f}  {interval}")
    return "\n".join(lines)
