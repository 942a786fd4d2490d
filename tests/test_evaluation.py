"""Tests of coreaffect.evaluation: every stage is scored on the same frames."""

from __future__ import annotations

import numpy as np

from coreaffect.corpus import LabelledVideo
from coreaffect.evaluation import bootstrap_trajectories, evaluate_trajectories
from coreaffect.faces import FaceCrops
from coreaffect.metrics import evaluate_videos
from coreaffect.trajectory import AffectTrajectory


def _video(name: str, frames: int, seed: int) -> LabelledVideo:
    rng = np.random.default_rng(seed)
    found = np.ones(frames, bool)
    found[3] = False  # no face: never scored
    crops = FaceCrops(np.zeros((frames, 8, 8, 3), np.uint8), np.zeros((frames, 4), np.float32),
                      found, np.arange(frames) / 25, np.arange(frames))
    return LabelledVideo(name, crops, rng.uniform(-1, 1, (frames, 2)).astype(np.float32))


def _trajectory(video: LabelledVideo, stage: str, seed: int, undefined: slice = slice(0, 0)
                ) -> AffectTrajectory:
    rng = np.random.default_rng(seed)
    frames = len(video.labels)
    mean = rng.uniform(-1, 1, (frames, 2))
    var = np.full((frames, 2), 0.1)
    mean[undefined] = var[undefined] = np.nan
    return AffectTrajectory(video.crops.times, video.crops.indices, mean, var, mean - 0.5,
                            mean + 0.5, video.crops.face_found, np.zeros((frames, 0)), 0.9, stage)


def test_every_stage_is_scored_where_every_stage_has_an_estimate():
    videos = [_video("a", 40, 0), _video("b", 30, 1), _video("c", 20, 2)]
    trajectories = [{"raw": _trajectory(v, "raw", 10 + i, slice(0, 8)),  # raw starts late
                     "smoothed": _trajectory(v, "smoothed", 20 + i)}
                    for i, v in enumerate(videos)]
    tables = evaluate_trajectories(videos, trajectories)
    truths = []
    for video in videos:
        truth = video.labels.astype(np.float64)
        truth[:8] = np.nan  # raw has no estimate there
        truth[3] = np.nan  # no face
        truths.append(truth)
    expected = evaluate_videos([v.id for v in videos], truths,
                               [t["smoothed"].mean for t in trajectories],
                               [t["smoothed"].var for t in trajectories])
    for name in ("rmse", "ccc", "coverage_50"):  # no 50% band: the Gaussian interval's
        np.testing.assert_allclose(tables["smoothed"].pooled[name], expected.pooled[name])
    # the 90% coverage is that of the trajectories' own bands, mean -/+ 0.5, on the same frames
    inside = np.concatenate([np.abs(y - t["smoothed"].mean) <= 0.5
                             for y, t in zip(truths, trajectories, strict=True)])
    scored = ~np.isnan(np.concatenate(truths))
    np.testing.assert_allclose(tables["smoothed"].pooled["coverage_90"],
                               [inside[scored[:, d], d].mean() for d in range(2)])
    assert not np.allclose(tables["smoothed"].pooled["coverage_90"],
                           expected.pooled["coverage_90"])  # z_0.95 sqrt(0.1) = 0.52, not 0.5
    each, _ = bootstrap_trajectories(videos, trajectories, n_resamples=400)
    np.testing.assert_allclose(each["smoothed"].pooled["rmse"], expected.pooled["rmse"])


def test_no_frame_to_score_is_said(caplog):
    videos = [_video("a", 20, 0), _video("b", 20, 1)]
    trajectories = [{"raw": _trajectory(v, "raw", i, slice(None))}  # no estimate anywhere
                    for i, v in enumerate(videos)]
    tables = evaluate_trajectories(videos, trajectories)
    assert np.isnan(tables["raw"].pooled["rmse"]).all()
    assert "no frame of the 2 video(s) has a face and a label" in caplog.text
    caplog.clear()
    evaluate_trajectories(videos, [{"raw": _trajectory(v, "raw", i)}
                                   for i, v in enumerate(videos)])
    assert not caplog.text
