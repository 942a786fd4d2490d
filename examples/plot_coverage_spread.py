"""
How many people does a calibrated band need?
============================================

A band is calibrated on validation videos and judged on test videos. Both groups are small in
affective computing (the paper tests on 10 videos), and people differ: a network's errors on one
person are often mostly a constant offset. So the share of labels a calibrated band covers on
10 new people can land several points from its nominal level, one way or the other, however
well calibrated the method is. This example measures how far, on a run's own held-out people.

It pools the people the hidden route never trained on (the run's validation and test videos,
and every video of ``--new-faces`` if given; the validation people did choose the network's
epoch and, with their labels, helped fit the manifold), standardises each frame's error by the
stage's own variance, and redraws them many times into a calibration group and a test group of
the sizes asked for (:func:`coreaffect.calibration.coverage_spread`): each draw recalibrates
one variance factor per dimension on its calibration group, aiming at the run's calibration
levels (50% and 90% by default) as the run did, and scores those bands on its test group. It
prints, per group size, the mean and spread of the coverage errors and the share of draws in
which all of them (each level, valence and arousal) fall within ``--tolerance`` of nominal; the
figure shows their distributions. Each video counts as one person, as in the synthetic corpus;
on a corpus with several videos per person, pass one video per person.

By default it trains the tiny run of :func:`coreaffect.demo.tiny_run`, whose numbers mean
nothing; point it at the demo's run (and a corpus of new faces) for real ones::

    coreaffect synth fresh/ --videos 40 --seed 1
    python examples/plot_coverage_spread.py --run demo_output/run --data demo_output/corpus \\
        --new-faces fresh/
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
from coreaffect.calibration import coverage_spread  # noqa: E402
from coreaffect.corpus import discover  # noqa: E402
from coreaffect.crop_cache import CropCache  # noqa: E402
from coreaffect.demo import tiny_run  # noqa: E402
from coreaffect.evaluation import scored_labels  # noqa: E402
from coreaffect.experiment import load_videos, split_videos  # noqa: E402
from coreaffect.stages import run_fit_settings  # noqa: E402

parser = argparse.ArgumentParser(description=(__doc__ or "").strip().split("\n")[0])
parser.add_argument("--run", type=Path, help="a run directory (default: train a tiny one)")
parser.add_argument("--data", type=Path, help="the corpus the run was trained on")
parser.add_argument("--new-faces", type=Path,
                    help="a corpus whose every video joins the pool of people")
parser.add_argument("--cache", type=Path,
                    help="face-crop cache for --new-faces (default: the run's own)")
parser.add_argument("--stage", choices=("prior", "raw"), default="prior",
                    help="the Gaussian band to judge: the prior's or the hidden route's own")
parser.add_argument("--groups", nargs="+", default=["10,10", "30,30"],
                    help="calibration,test group sizes (people)")
parser.add_argument("--tolerance", type=float, default=0.05,
                    help="how far from nominal a coverage may land")
parser.add_argument("--resamples", type=int, default=1000, help="draws of the two groups")
parser.add_argument("--out", type=Path, default=Path("coverage_spread_output"))
parser.add_argument("--quick", action="store_true", help="tiny run, groups of one person")
args = parser.parse_args(sys.argv[1:] if __name__ == "__main__" else [])
if (args.run is None) != (args.data is None):
    parser.error("--run and --data go together")
try:
    groups = [tuple(int(n) for n in group.split(",")) for group in args.groups]
except ValueError:
    parser.error(f"--groups takes calibration,test pairs such as 10,10; got {args.groups}")
if any(len(group) != 2 or min(group) < 1 for group in groups):
    parser.error(f"--groups takes pairs of sizes >= 1 such as 10,10; got {args.groups}")
if args.resamples < 1 or args.tolerance < 0:
    parser.error("--resamples must be >= 1 and --tolerance >= 0")
if args.quick:
    groups, args.resamples = [(1, 1)], min(args.resamples, 50)
if args.run is None:
    tiny = tiny_run(args.out / "tiny")
    args.run, args.data = tiny.run, tiny.corpus
affect = coreaffect.load_run(args.run)
if args.stage not in affect.stages:
    parser.error(f"{args.run} has no {args.stage} stage (it has {', '.join(affect.stages)}); "
                 "try --stage raw")
videos = split_videos(args.run, args.data, ("val", "test"))
if args.new_faces is not None:
    config = affect.data_config
    cache = CropCache(args.cache or args.run / "crops", config.faces, config.video.chunk_size)
    videos += load_videos(discover(args.new_faces), config, cache)

# %%
# Each person's standardised errors ``|y - mean| / sd`` (frames with a face and an estimate), and
# the person's mean error (bias) and RMSE, to see how far apart the people are.
errors, bias, rmse = [], [], []
for video in videos:
    trajectory = affect.stages_of(video.crops, stages=[args.stage])[args.stage]
    truth, mean = scored_labels(video), np.asarray(trajectory.mean, np.float64)
    keep = np.isfinite(truth).all(1) & np.isfinite(mean).all(1)
    if not keep.any():
        continue
    residual = mean[keep] - truth[keep]  # (N, 2)
    errors.append(np.abs(residual) / np.sqrt(np.asarray(trajectory.var, np.float64)[keep]))
    bias.append(residual.mean(0))
    rmse.append(np.sqrt((residual ** 2).mean(0)))
bias, rmse = np.array(bias), np.array(rmse)
print(f"{len(errors)} people never trained on, stage {args.stage}; valence / arousal:")
print(f"  per-person bias: sd {bias.std(0)[0]:.3f} / {bias.std(0)[1]:.3f}, "
      f"largest |bias| {np.abs(bias).max(0)[0]:.3f} / {np.abs(bias).max(0)[1]:.3f}")
print(f"  per-person RMSE: mean {rmse.mean(0)[0]:.3f} / {rmse.mean(0)[1]:.3f}, "
      f"sd {rmse.std(0)[0]:.3f} / {rmse.std(0)[1]:.3f}")

# %%
# The draws: the same seed draws the same groups for valence and arousal, so "all within
# the tolerance" is counted draw by draw.
levels = list(run_fit_settings(args.run).calibration_levels)  # as the run calibrated
fitting = [group for group in groups if sum(group) <= len(errors)]
if not fitting:
    sys.exit(f"no group of {args.groups} fits in the {len(errors)} people; ask for smaller ones")
spreads = {}
for n_calibration, n_test in groups:
    if (n_calibration, n_test) not in fitting:
        print(f"  {n_calibration},{n_test}: skipped, only {len(errors)} people")
        continue
    spreads[n_calibration, n_test] = np.stack(
        [coverage_spread([e[:, d] for e in errors], levels, n_calibration, n_test,
                         resamples=args.resamples, random_state=0) for d in (0, 1)],
        axis=1)  # (R, 2 dimensions, L levels)
print(f"coverage minus nominal over {args.resamples} draws (mean, sd), valence / arousal:")
for (n_calibration, n_test), spread in spreads.items():
    cells = [f"{int(100 * level)}% {spread[:, 0, i].mean():+.3f} ({spread[:, 0, i].std():.3f})"
             f" / {spread[:, 1, i].mean():+.3f} ({spread[:, 1, i].std():.3f})"
             for i, level in enumerate(levels)]
    within = (np.abs(spread) <= args.tolerance + 1e-12).all((1, 2)).mean()
    print(f"  calibrated on {n_calibration}, tested on {n_test}: {'; '.join(cells)}; all "
          f"{2 * len(levels)} within {args.tolerance:g} in {within:.0%} of draws")

# %%
# The distributions, one panel per dimension and level, one histogram per group size; the
# shaded band is the tolerance.
fig, axes = plt.subplots(2, len(levels), figsize=(4.5 * len(levels), 5.5), sharex=True,
                         squeeze=False)
for d, dimension in enumerate(("valence", "arousal")):
    for i, level in enumerate(levels):
        ax = axes[d, i]
        ax.axvspan(-args.tolerance, args.tolerance, color="0.9")
        for (n_calibration, n_test), spread in spreads.items():
            ax.hist(spread[:, d, i], bins=30, histtype="step", density=True,
                    label=f"{n_calibration} calibrate, {n_test} test")
        ax.set_title(f"{dimension}, {int(100 * level)}% band")
for ax in axes[1]:
    ax.set_xlabel("test coverage minus nominal")
axes[0, 0].legend(fontsize="small")
fig.tight_layout()
args.out.mkdir(parents=True, exist_ok=True)
fig.savefig(args.out / "coverage_spread.png", dpi=100)
