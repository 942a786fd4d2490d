"""
The paper's experiment on the synthetic corpus
==============================================

Generate a synthetic corpus of 23 facial videos with known valence-arousal (the paper used 23
MAHNOB videos), train the hidden route (the ``lite`` preset, on the CPU, within a time budget)
on 13 of them, and score its per-frame estimates on the other 10, as in the paper's Table 2.

Run it as a script::

    python examples/plot_hidden_route.py --out demo_output           # about 12 minutes
    python examples/plot_hidden_route.py --out demo_output --quick   # under a minute, smaller

It writes ``corpus/`` (the videos and annotations), ``run/`` (the trained network, usable with
``coreaffect evaluate``), ``metrics.json``, ``report.md`` and two figures into the output folder.
"""

# %%
# Settings. ``--quick`` shrinks the corpus and the training budget, for a smoke test.
import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from coreaffect.checkpoint import load_data_config, load_model  # noqa: E402
from coreaffect.corpus import CropCache, discover, load_recording  # noqa: E402
from coreaffect.evaluation import format_table, predict_video  # noqa: E402
from coreaffect.experiment import evaluate_run, train_run  # noqa: E402
from coreaffect.plots import plot_synthetic_samples  # noqa: E402
from coreaffect.synthetic import SynthConfig, read_truth, write_corpus  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
parser.add_argument("--out", type=Path, default=Path("demo_output"))
parser.add_argument("--quick", action="store_true", help="small corpus, short training")
parser.add_argument("--minutes", type=float, default=None, help="training budget")
args, _ = parser.parse_known_args(sys.argv[1:] if __name__ == "__main__" else [])
quick = args.quick or "sphinx_gallery" in sys.modules
out = args.out
videos, seconds = (6, 12.0) if quick else (23, 40.0)
minutes = args.minutes or (0.4 if quick else 9.0)

# %%
# The corpus: real video files of rendered faces, DANTE annotations from three simulated
# raters, and the per-frame truth.
corpus = write_corpus(out / "corpus", SynthConfig(videos=videos, seconds=seconds, seed=0))
print(f"corpus: {len(corpus.ids)} videos of {seconds:.0f} s in {corpus.root}")

# %%
# Train the hidden route on the training videos (a fifth of them steer early stopping) and
# hold out the test videos: 10 of 23, the paper's protocol.
result = train_run(corpus.root, out / "run", epochs=40, max_minutes=minutes,
                   test_videos=round(videos * 10 / 23), seed=0, progress=not quick)
print(f"trained for {len(result.history)} epochs; best epoch {result.best_epoch} "
      f"(stopped by {result.stopped})")

# %%
# Per-video RMSE, CCC and PCC on the held-out videos, like the paper's Table 2.
table = evaluate_run(out / "run", corpus.root, json_path=out / "metrics.json")
text = format_table(table, title="hidden route on the held-out videos")
print(text)
(out / "report.md").write_text(
    "# The hidden route on the synthetic corpus\n\n"
    f"{len(corpus.ids)} videos of {seconds:.0f} s; trained {len(result.history)} epochs "
    f"within {minutes:g} minutes (lite preset, CPU).\n\n```\n{text}\n```\n")

# %%
# Figure 1 of the paper: the annotation and the estimate over time, for one test video.
model = load_model(out / "run")
config = load_data_config(out / "run")
test_id = table.videos[0]
recording = next(r for r in discover(corpus.root) if r.id == test_id)
video = load_recording(recording, config, CropCache(out / "run" / "crops", config.faces))
estimate = predict_video(model, video)
fig, axes = plt.subplots(2, 1, figsize=(9, 5), sharex=True)
times = video.crops.times
for d, (ax, name) in enumerate(zip(axes, ("valence", "arousal"), strict=True)):
    sd = np.sqrt(estimate.var[:, d].numpy())
    mean = estimate.mean[:, d].numpy()
    ax.fill_between(times, mean - 1.645 * sd, mean + 1.645 * sd, color="C1", alpha=0.25,
                    label="90% band")
    ax.plot(times, video.labels[:, d], color="k", lw=1.2, label="annotation")
    ax.plot(times, mean, color="C1", lw=1.0, label="hidden route")
    ax.set_ylabel(name)
    ax.set_ylim(-1.05, 1.05)
axes[0].legend(loc="upper right", ncol=3, fontsize=8)
axes[1].set_xlabel("time (s)")
fig.suptitle(f"test video {test_id}")
fig.savefig(out / "fig1_trajectory.png", dpi=110, bbox_inches="tight")

# %%
# Sample frames of the corpus placed at their true valence and arousal.
truth = read_truth(corpus.root, test_id)
picks = np.linspace(0, len(times) - 1, 12).astype(int)
ax = plot_synthetic_samples(np.asarray(video.crops.crops)[picks], truth.values[picks])
ax.figure.savefig(out / "samples.png", dpi=110, bbox_inches="tight")
print(f"report: {out / 'report.md'}")
