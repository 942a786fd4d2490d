"""
The synthetic corpus
====================

Write a small synthetic corpus, read it back through the same path a user's data takes
(discovery, DANTE annotations, face detection and cropping), and show face crops placed at their
true valence and arousal.

Run it as a script::

    python examples/plot_synthetic_corpus.py --out synthetic_output           # ~30 s
    python examples/plot_synthetic_corpus.py --out synthetic_output --quick   # ~10 s

The figure of the documentation is ``synthetic_output/samples.png`` from the first command.
"""

# %%
import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402

from coreaffect.config import DataConfig  # noqa: E402
from coreaffect.corpus import discover, load_recording  # noqa: E402
from coreaffect.plots import plot_synthetic_samples  # noqa: E402
from coreaffect.synthetic import SynthConfig, read_truth, write_corpus  # noqa: E402

parser = argparse.ArgumentParser(description=(__doc__ or "").strip().split("\n")[0])
parser.add_argument("--out", type=Path, default=Path("synthetic_output"))
parser.add_argument("--quick", action="store_true", help="fewer, shorter videos")
args = parser.parse_args(sys.argv[1:] if __name__ == "__main__" else [])
videos, seconds = (4, 4.0) if args.quick else (8, 20.0)

# %%
# Write the corpus: videos, DANTE annotations of three simulated raters, per-frame truth.
corpus = write_corpus(args.out / "corpus", SynthConfig(videos=videos, seconds=seconds, seed=3))
recordings = discover(corpus.root)
print(f"{len(recordings)} recordings in {corpus.root} ({recordings[0].format} annotations)")

# %%
# Read every video back as a user's data would be read, and keep crops with their truth.
crops, truths = [], []
for recording in recordings:
    video = load_recording(recording, DataConfig())
    truth = read_truth(corpus.root, recording.id)
    found = video.crops.face_found & truth.face_visible
    print(f"{recording.id}: face found in {found.sum()} of {truth.face_visible.sum()} "
          "frames where it is visible")
    crops.append(np.asarray(video.crops.crops)[found])
    truths.append(truth.values[found])
crops, truths = np.concatenate(crops), np.concatenate(truths)

# %%
# For each point of a 4 x 4 grid over the valence-arousal plane, the crop whose truth is
# nearest to it.
grid = np.stack(np.meshgrid(np.linspace(-0.75, 0.75, 4), np.linspace(-0.75, 0.75, 4)), -1)
picks = [int(np.argmin(((truths - point) ** 2).sum(-1))) for point in grid.reshape(-1, 2)]
ax = plot_synthetic_samples(crops[picks], truths[picks],
                            title="synthetic corpus: face crops at their true (valence, arousal)")
ax.figure.savefig(args.out / "samples.png", dpi=100, bbox_inches="tight")
print(f"figure: {args.out / 'samples.png'}")
