"""
How much look-ahead does online smoothing need?
===============================================

The causal filter reports each frame from the frames up to it; the smoother waits for the whole
video. In between, a fixed-lag smoother reports frame t once ``lag`` more frames have arrived:
``CoreAffectDynamics.smooth(video, lag=L)`` offline, and
:meth:`~coreaffect.dynamics.CoreAffectDynamics.lag_step` frame by frame for a live system. This
example scores the hidden route, the filter, the fixed-lag smoother at several lags and the
smoother on a run's held-out videos (per-video mean CCC and RMSE, frames with a face and a
label), plots them against the lag, and measures how late the hidden route's estimate is. A run
carries one of these lags as its ``lagged`` stage (``coreaffect predict RUN VIDEO --lagged``).

By default it trains the tiny run of :func:`coreaffect.demo.tiny_run`, whose numbers mean
nothing; point it at the demo's run for real ones::

    python examples/plot_fixed_lag.py --run demo_output/run --data demo_output/corpus
"""

# %%
import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import coreaffect  # noqa: E402
from coreaffect.demo import tiny_run  # noqa: E402
from coreaffect.dynamics import AffectObservations  # noqa: E402
from coreaffect.experiment import split_videos  # noqa: E402
from coreaffect.metrics import ccc, rmse  # noqa: E402
from coreaffect.prior import latent_moments  # noqa: E402

parser = argparse.ArgumentParser(description=(__doc__ or "").strip().split("\n")[0])
parser.add_argument("--run", type=Path, help="a run directory (default: train a tiny one)")
parser.add_argument("--data", type=Path, help="the corpus the run held its test videos out of")
parser.add_argument("--lags", type=int, nargs="+", default=[0, 2, 4, 8, 12, 25],
                    help="look-ahead in frames")
parser.add_argument("--out", type=Path, default=Path("fixed_lag_output"))
parser.add_argument("--quick", action="store_true", help="(the tiny run is always quick)")
args = parser.parse_args(sys.argv[1:] if __name__ == "__main__" else [])
if (args.run is None) != (args.data is None):
    parser.error("--run and --data go together")
if args.run is None:
    tiny = tiny_run(args.out / "tiny")
    args.run, args.data = tiny.run, tiny.corpus
affect = coreaffect.load_run(args.run)
if affect.dynamics is None:
    parser.error(f"{args.run} has no dynamics to smooth with (trained with "
                 "--hidden-route-only?)")
if min(args.lags) < 0:
    parser.error(f"--lags are frames of look-ahead, >= 0; got {args.lags}")
args.lags = sorted(set(args.lags))
videos = split_videos(args.run, args.data, ("test",))

# %%
# Each video's priors become one sequence of latent observations; every output is scored on the
# frames with a face and a label.
step = float(np.median(np.diff(videos[0].crops.times)))  # seconds per frame
names = {lag: f"lag {lag} ({lag * step:.2f} s)" for lag in args.lags}
rows = {"hidden route": [], "filter": []}
rows.update({names[lag]: [] for lag in args.lags})
rows["smoother"] = []
shifts = range(-4, 9)  # frames by which the estimate is read ahead of the label
late = {shift: [] for shift in shifts}  # per video: squared errors (valence, arousal)
for video in videos:
    estimate = affect.model.predict_dense(video.crops.crops)
    latent_means, latent_covs = latent_moments(affect.prior(estimate))  # float64, from L
    found = torch.as_tensor(np.asarray(video.crops.face_found, bool))
    sequence = AffectObservations(torch.as_tensor(video.crops.times, dtype=torch.float64),
                                  latent_means, latent_covs, found)
    keep = found.numpy() & np.isfinite(video.labels).all(1)
    means = [estimate.mean, affect.dynamics.filter(sequence).mean,
             *(affect.dynamics.smooth(sequence, lag=lag).mean for lag in args.lags),
             affect.dynamics.smooth(sequence).mean]
    truth = video.labels[keep]
    for values, mean in zip(rows.values(), means, strict=True):
        guess = mean.numpy()[keep]
        values.append([f(truth[:, d], guess[:, d]) for f in (ccc, rmse) for d in (0, 1)])
    for shift, errors in late.items():  # the estimate of frame t + shift against frame t's label
        ahead = np.roll(estimate.mean.numpy(), -shift, axis=0)
        both = keep & np.roll(keep, -shift)
        both[max(0, len(both) - shift):] = both[:max(0, -shift)] = False  # no wrapping round
        errors.append(((ahead[both] - video.labels[both]) ** 2).mean(0))

print(f"{len(videos)} held-out videos (per-video means)")
print(f"{'':>22}  CCC valence / arousal   RMSE valence / arousal")
table = {name: np.mean(values, axis=0) for name, values in rows.items()}
for name, (c_v, c_a, r_v, r_a) in table.items():
    print(f"{name:>22}  {c_v:6.3f} / {c_a:6.3f}         {r_v:6.3f} / {r_a:6.3f}")

# %%
# How late is the hidden route? Read its estimate ``shift`` frames ahead of each label: if the
# error is smallest at a positive shift, the estimate trails the label on these faces, and a
# few frames of look-ahead make up for it, where the filter cannot. RMSE over the held-out
# frames, per-video mean:
curve = {shift: np.sqrt(np.asarray(errors)).mean(0) for shift, errors in late.items()}
print("shift (frames)   RMSE valence / arousal")
for shift, (r_v, r_a) in curve.items():
    print(f"{shift:>14}   {r_v:.4f} / {r_a:.4f}")
best = [min(curve, key=lambda s, d=d: curve[s][d]) for d in (0, 1)]
print(f"smallest error at a shift of {best[0]} (valence) and {best[1]} (arousal) frames")
if {min(curve), max(curve)} & set(best):
    print(f"  (a shift at the end of those tried, {min(curve)} to {max(curve)}: the smallest "
          "error may lie beyond)")

# %%
# CCC and RMSE against the look-ahead, with the hidden route (dotted), the filter with its own
# observation-noise scales (dash-dotted) and the smoother (dashed). The fixed-lag smoother takes
# the smoother's scales: at lag 0 it is a filter that weights the past as the smoother does.
fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
for ax, offset, metric in ((axes[0], 0, "CCC"), (axes[1], 2, "RMSE")):
    for d, name in enumerate(("valence", "arousal")):
        line, = ax.plot(args.lags, [table[names[lag]][offset + d] for lag in args.lags],
                        marker="o", label=name)
        for reference, style in (("hidden route", ":"), ("filter", "-."), ("smoother", "--")):
            ax.axhline(table[reference][offset + d], color=line.get_color(), ls=style, lw=1)
    ax.set_xlabel("look-ahead (frames)")
    ax.set_ylabel(metric)
axes[0].legend(fontsize="small")
fig.tight_layout()
args.out.mkdir(parents=True, exist_ok=True)
fig.savefig(args.out / "fixed_lag.png", dpi=100)
