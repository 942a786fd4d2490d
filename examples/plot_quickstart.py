"""
Quickstart: a valence-arousal trajectory from a video
=====================================================

Load a trained run directory with :func:`coreaffect.pipeline.load_run` and turn a video into an
:class:`~coreaffect.trajectory.AffectTrajectory`: one row per frame with valence, arousal, their
90% credible bands and whether a face was found. Here the run is trained in seconds on a tiny
synthetic corpus (:func:`coreaffect.demo.tiny_run`), so its estimates mean little; with a run from
``coreaffect train`` (or ``coreaffect demo``) the same three lines apply to your video.

Run it::

    python examples/plot_quickstart.py --out quickstart/
"""

# %%
import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import coreaffect  # noqa: E402
from coreaffect.demo import tiny_run  # noqa: E402

parser = argparse.ArgumentParser(description=(__doc__ or "").strip().split("\n")[0])
parser.add_argument("--out", type=Path, default=Path("quickstart_output"))
parser.add_argument("--quick", action="store_true", help="(always quick)")
args = parser.parse_args(sys.argv[1:] if __name__ == "__main__" else [])

# %%
# A run directory: hidden route, manifold, prior and dynamics, trained in seconds.
tiny = tiny_run(args.out / "tiny")
video = tiny.video()  # a held-out video of the tiny corpus

# %%
# Predict: the offline smoother (``causal=True``: the filter, what a live system knows).
affect = coreaffect.load_run(tiny.run)
trajectory = affect.predict(video)
print(f"{len(trajectory)} rows, stage {trajectory.stage}, face in "
      f"{trajectory.face_found.mean():.0%} of the frames")
trajectory.to_csv(args.out / "trajectory.csv")

# %%
# Plot it against the synthetic ground truth.
from coreaffect.synthetic import read_truth  # noqa: E402

truth = read_truth(tiny.corpus, tiny.test_ids[0])
axes = trajectory.plot(truth=truth.values, title=f"{video.name}: smoothed, 90% band")
axes[0].figure.savefig(args.out / "quickstart.png", dpi=100, bbox_inches="tight")
