"""
How much can an online filter gain over the hidden route?
=========================================================

The causal filter reports frame t from the hidden route's estimates of frames up to t. Whether it
can beat the estimate of frame t itself depends on the estimates' errors: if they last longer
than the affect they track moves, the past cannot remove them. This example asks how much a
*linear* causal filter of the estimates gains on a run's held-out videos. For each dimension, the
filter ``sum_j h_j m_(t-j)`` over the current and the last ``--taps`` estimates m, with weights
summing to one (a pure temporal filter: it cannot rescale or shift the estimates), is fitted by
least squares to the labels of the run's training and validation videos, then scored on its test
videos (or on every video of another corpus, ``--new-faces``) beside the run's own filter. The
same with ``--look-ahead`` frames of the future is a reference for the ``lagged`` stage. Every
difference from the hidden route comes with a 95% interval over resampled scored videos
(:mod:`coreaffect.bootstrap`).

The fitted filter is a reference, not a method: it learns from labels, with one free weight per
frame it reaches, and on the training videos the hidden route's estimates are in-sample; the
run's filter has a handful of parameters and weighs each frame's uncertainty, which this one
ignores.

By default it trains the tiny run of :func:`coreaffect.demo.tiny_run`, whose numbers mean
nothing; point it at the demo's run for real ones::

    python examples/plot_causal_limit.py --run demo_output/run --data demo_output/corpus
"""

# %%
import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import coreaffect  # noqa: E402
from coreaffect.bootstrap import bootstrap_stages  # noqa: E402
from coreaffect.corpus import discover  # noqa: E402
from coreaffect.crop_cache import CropCache  # noqa: E402
from coreaffect.demo import tiny_run  # noqa: E402
from coreaffect.evaluation import format_intervals, predict_video, scored_labels  # noqa: E402
from coreaffect.experiment import load_videos, split_videos  # noqa: E402

parser = argparse.ArgumentParser(description=(__doc__ or "").strip().split("\n")[0])
parser.add_argument("--run", type=Path, help="a run directory (default: train a tiny one)")
parser.add_argument("--data", type=Path, help="the corpus the run was trained on")
parser.add_argument("--taps", type=int, default=25, help="past estimates the filter weighs")
parser.add_argument("--look-ahead", type=int, default=8, help="future estimates, for lagged")
parser.add_argument("--resamples", type=int, default=2000, help="resamples of the test videos")
parser.add_argument("--new-faces", type=Path,
                    help="score on every video of this corpus instead of the run's test videos")
parser.add_argument("--cache", type=Path,
                    help="face-crop cache for --new-faces (default: the run's own)")
parser.add_argument("--out", type=Path, default=Path("causal_limit_output"))
parser.add_argument("--quick", action="store_true", help="(the tiny run is always quick)")
args = parser.parse_args(sys.argv[1:] if __name__ == "__main__" else [])
if (args.run is None) != (args.data is None):
    parser.error("--run and --data go together")
if args.run is None:
    tiny = tiny_run(args.out / "tiny")
    args.run, args.data = tiny.run, tiny.corpus
affect = coreaffect.load_run(args.run)
fit_videos = split_videos(args.run, args.data, ("train", "val"))
if args.new_faces is None:
    test_videos = split_videos(args.run, args.data, ("test",))
else:
    config = affect.data_config
    cache = CropCache(args.cache or args.run / "crops", config.faces, config.video.chunk_size)
    test_videos = load_videos(discover(args.new_faces), config, cache)


# %%
# The filter. Row t of the design holds the estimates of frames t - j, j in ``offsets``
# (negative j: the future), minus the estimate of frame t; the target is the label minus that
# estimate. Least squares then gives the weights of the other frames, and frame t's own weight
# is one minus their sum. A video's first and last frames repeat for frames beyond its ends.
# Frames without a face have no estimate (as in the ``raw`` stage): the last estimate carries
# on through them, in fitting as in scoring (before a video's first face, that face's), so the
# filter stays causal on every scored frame and is scored on the same frames as every stage.
def carried(means: np.ndarray) -> np.ndarray:
    """(T,) estimates with each missing one replaced by the last one before it."""
    defined = np.isfinite(means)
    if not defined.any():
        return means
    source = np.maximum.accumulate(np.where(defined, np.arange(len(means)), -1))
    return means[np.where(source < 0, np.argmax(defined), source)]


def estimates(video) -> np.ndarray:
    """(T, 2) hidden-route estimates of a video, NaN where no face was found."""
    means = predict_video(affect.model, video).mean.double().numpy()
    return np.where(np.asarray(video.crops.face_found, bool)[:, None], means, np.nan)


def shifted(means: np.ndarray, offsets: list[int]) -> np.ndarray:
    """(T, J) the estimates of frames t - j of (T,) estimates, clamped at the video's ends."""
    frames = np.arange(len(means))[:, None] - np.asarray(offsets)[None, :]
    return means[np.clip(frames, 0, len(means) - 1)]


def fit_filter(means: list[np.ndarray], labels: list[np.ndarray], offsets: list[int]
               ) -> np.ndarray:
    """Weights (J,) of frames t - j, fitted on videos' (T,) estimates and (T,) labels."""
    means = [carried(m) for m in means]
    rows = [shifted(m, offsets) - m[:, None] for m in means]
    targets = [y - m for m, y in zip(means, labels, strict=True)]
    design, target = np.concatenate(rows), np.concatenate(targets)
    keep = np.isfinite(design).all(1) & np.isfinite(target)
    design, target = design[keep], target[keep]
    ridge = 1e-6 * np.trace(design.T @ design) / max(len(offsets), 1)  # conditioning only
    return np.linalg.solve(design.T @ design + ridge * np.eye(len(offsets)), design.T @ target)


def apply_filter(means: np.ndarray, offsets: list[int], weights: np.ndarray) -> np.ndarray:
    """(T,) filtered (T,) estimates, missing ones carried."""
    means = carried(means)
    return means + (shifted(means, offsets) - means[:, None]) @ weights


offsets_of = {"linear": list(range(1, args.taps + 1)),  # the past only
              f"linear+{args.look_ahead}": [j for j in range(-args.look_ahead, args.taps + 1)
                                            if j != 0]}
fit_means = [estimates(v) for v in fit_videos]
fit_labels = [scored_labels(v) for v in fit_videos]
filters = {name: [fit_filter([m[:, d] for m in fit_means], [y[:, d] for y in fit_labels], offsets)
                  for d in (0, 1)]
           for name, offsets in offsets_of.items()}

# %%
# Scores on the test videos: the hidden route, the run's filter (and its lagged stage, when it
# has one) and the two linear filters, each against the hidden route on the same resamples.
truths = [scored_labels(v) for v in test_videos]
stages = {}
for video in test_videos:
    trajectories = affect.stages_of(video.crops)
    for stage in ("raw", "filtered", "lagged"):
        if stage in trajectories:
            stages.setdefault(stage, []).append(trajectories[stage].mean)
    raw = trajectories["raw"].mean
    for name, weights in filters.items():
        stages.setdefault(name, []).append(np.column_stack(
            [apply_filter(raw[:, d], offsets_of[name], weights[d]) for d in (0, 1)]))
intervals, differences = bootstrap_stages(
    truths, {stage: (means, None) for stage, means in stages.items()},
    n_resamples=args.resamples)
print(f"fitted on {len(fit_videos)} training and validation videos, scored on "
      f"{len(test_videos)} {'new' if args.new_faces else 'test'} videos; {args.taps} past and "
      f"{args.look_ahead} future estimates")
print("mean over videos    rmse_v  rmse_a   ccc_v   ccc_a")
for stage, own in intervals.items():
    print(f"{stage:<18}" + "".join(f"{x:>8.3f}" for m in ("rmse", "ccc") for x in own.mean[m]))
print(format_intervals(intervals, differences, coverages=()))

# %%
# The fitted impulse responses: frame t's own weight and those of the frames before it (and,
# for the look-ahead filter, after it). A smoother's weights would be positive and spread over
# the recent past. A weight above one on the current estimate with a negative one on the
# estimate before it extrapolates the estimate's latest change: it makes up for an estimate that
# trails the labels (``plot_fixed_lag.py`` measures by how much).
fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
for ax, d, dimension in ((axes[0], 0, "valence"), (axes[1], 1, "arousal")):
    for name, weights in filters.items():
        offsets = offsets_of[name]
        lags = np.array([0, *offsets])
        response = np.concatenate([[1 - weights[d].sum()], weights[d]])
        order = np.argsort(lags)
        ax.plot(lags[order], response[order], marker=".", label=name)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_title(dimension)
    ax.set_xlabel("j: weight of the estimate of frame t - j")
axes[0].set_ylabel("weight")
axes[0].legend(fontsize="small")
fig.tight_layout()
args.out.mkdir(parents=True, exist_ok=True)
fig.savefig(args.out / "causal_limit.png", dpi=100)
