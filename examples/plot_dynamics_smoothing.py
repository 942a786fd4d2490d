"""
Smoothing with the core-affect dynamics, offline and online
===========================================================

The hidden route's per-frame estimates flicker, and frames without a face have none.
:class:`~coreaffect.dynamics.CoreAffectDynamics` treats core affect as an Ornstein-Uhlenbeck
process over the prior's latent space: offline, the smoother uses the whole video; online, the
filter uses for each frame only the estimates up to it, and
:meth:`~coreaffect.pipeline.CoreAffect.stream` yields each causal row as soon as that frame's
estimate is final (the fixed latency of :attr:`coreaffect.pipeline.CoreAffect.latency_frames`), at
constant cost per frame. The run is the tiny one of :func:`coreaffect.demo.tiny_run`.

Run it::

    python examples/plot_dynamics_smoothing.py --out smoothing/
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
from coreaffect.demo import tiny_run  # noqa: E402

parser = argparse.ArgumentParser(description=(__doc__ or "").strip().split("\n")[0])
parser.add_argument("--out", type=Path, default=Path("smoothing_output"))
parser.add_argument("--quick", action="store_true", help="(always quick)")
args = parser.parse_args(sys.argv[1:] if __name__ == "__main__" else [])
tiny = tiny_run(args.out / "tiny")
affect = coreaffect.load_run(tiny.run)

# %%
# Offline: every stage from one pass over the face crops.
crops = affect.crop(tiny.video())
stages = affect.stages_of(crops)
for name, trajectory in stages.items():
    width = np.nanmean(trajectory.upper - trajectory.lower, axis=0)
    print(f"{name:>9}: mean 90% band width (valence, arousal) = {np.round(width, 3)}")

# %%
# Online: rows as frames arrive (here from the file; a camera index works the same way).
online = np.array([[row.time, row.valence, row.arousal] for row in affect.stream(tiny.video())])
causal = stages["filtered"]
print(f"streamed {len(online)} rows; largest difference to the batch causal output: "
      f"{np.abs(online[:, 1:] - causal.mean).max():.1e} (latency {affect.latency_frames} frames)")

# %%
# The raw estimates, the smoother and the streamed filter over time.
fig, axes = plt.subplots(2, 1, figsize=(9, 5), sharex=True)
for d, (ax, name) in enumerate(zip(axes, ("valence", "arousal"), strict=True)):
    ax.plot(stages["raw"].times, stages["raw"].mean[:, d], lw=0.8, label="hidden route")
    smooth = stages["smoothed"]
    ax.fill_between(smooth.times, smooth.lower[:, d], smooth.upper[:, d], alpha=0.2, color="C1")
    ax.plot(smooth.times, smooth.mean[:, d], color="C1", label="smoothed (offline)")
    ax.plot(online[:, 0], online[:, 1 + d], color="C2", ls="--", label="streamed (causal)")
    ax.set_ylabel(name)
axes[0].legend(fontsize="small", ncol=3)
axes[1].set_xlabel("time (s)")
fig.savefig(args.out / "smoothing.png", dpi=100, bbox_inches="tight")
