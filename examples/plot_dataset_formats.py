"""
Reading each public dataset's annotation format
===============================================

:func:`coreaffect.annotations.read_annotations` reads valence-arousal annotations as the public
datasets ship them: DANTE (the paper's tool, MAHNOB), Aff-Wild2, AFEW-VA, SEWA, RECOLA, and a plain
CSV. This script writes a tiny file (or folder) of each format under ``OUT/datasets``, reads it
back (``format="auto"`` tells the format from the files), and plots the labels of all six on one
time axis. Every reader returns the same :class:`~coreaffect.annotations.Annotations`: times in
seconds and (valence, arousal) in [-1, 1], NaN where there is no label.

Run it::

    python examples/plot_dataset_formats.py --out formats/
"""

# %%
import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from coreaffect import read_annotations  # noqa: E402
from coreaffect.annotations import FORMATS  # noqa: E402

parser = argparse.ArgumentParser(description=(__doc__ or "").strip().split("\n")[0])
parser.add_argument("--out", type=Path, default=Path("formats_output"))
parser.add_argument("--quick", action="store_true", help="(always quick)")
args = parser.parse_args(sys.argv[1:] if __name__ == "__main__" else [])
args.out.mkdir(parents=True, exist_ok=True)

# %%
# One smooth trajectory of 2 s, written in every format.
t25 = np.arange(50) / 25  # 25 Hz
t10 = np.arange(20) / 10  # SEWA's 10 Hz


def valence(t):
    return 0.6 * np.sin(2 * np.pi * t / 2)


def arousal(t):
    return 0.4 * np.cos(2 * np.pi * t / 2)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


root = args.out / "datasets"
files = {}
# DANTE: annotation/<UserId>/<video>/{valence,arousal}.csv, one folder per rater
for rater in ("rater1", "rater2"):
    for name, fn in (("valence", valence), ("arousal", arousal)):
        rows = "".join(f"{t:.2f};{rater};clip;{name};{fn(t):.4f}\n" for t in t25)
        write(root / "dante" / "annotation" / rater / "clip" / f"{name}.csv",
              "TimeStamp;UserId;NameVideo;AnnoType;Value\n" + rows)
files["dante"] = root / "dante" / "annotation" / "rater1" / "clip"
# Aff-Wild2: <video>.txt, one row per frame (30 fps), -5 = invalid
rows = [f"{valence(t):.4f},{arousal(t):.4f}" for t in np.arange(60) / 30]
rows[10] = "-5,-5"
files["aff-wild2"] = write(root / "affwild2" / "clip.txt", "valence,arousal\n" +
                           "\n".join(rows) + "\n")
# AFEW-VA: NNN/NNN.json with integer labels in [-10, 10] per frame (PNG frames beside it)
frames = {f"{i:05d}": {"valence": int(round(10 * valence(t))),
                       "arousal": int(round(10 * arousal(t)))} for i, t in enumerate(t25)}
files["afew-va"] = write(root / "afewva" / "001" / "001.json",
                         json.dumps({"video_id": "001", "frames": frames}))
# SEWA: name;time;arousal;valence;liking at 10 Hz, no header
files["sewa"] = write(root / "sewa" / "clip.csv", "".join(
    f"clip;{t:.1f};{arousal(t):.4f};{valence(t):.4f};0\n" for t in t10))
# RECOLA: arousal/<video>.csv and valence/<video>.csv, one column per rater
for name, fn in (("valence", valence), ("arousal", arousal)):
    rows = "".join(f"{t:.2f};{fn(t):.4f};{fn(t) + 0.05:.4f}\n" for t in t25)
    write(root / "recola" / name / "clip.csv", "time;FM1 ;FF1 \n" + rows)
files["recola"] = root / "recola" / "valence" / "clip.csv"
# csv: time,valence,arousal
files["csv"] = write(root / "plain" / "clip.csv", "time,valence,arousal\n" + "".join(
    f"{t:.2f},{valence(t):.4f},{arousal(t):.4f}\n" for t in t25))
assert set(files) == set(FORMATS)

# %%
# Read each back, telling the format from the files.
fig, axes = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
for format, path in files.items():
    labels = read_annotations(path, "auto")
    print(f"{format:>9}: {len(labels.times)} samples over {labels.times[-1]:.2f} s, "
          f"{int(np.isnan(labels.values).any(1).sum())} without a label")
    for d, ax in enumerate(axes):
        ax.plot(labels.times, labels.values[:, d], marker=".", ms=3, lw=0.8, label=format)
axes[0].set_ylabel("valence")
axes[1].set_ylabel("arousal")
axes[1].set_xlabel("time (s)")
axes[0].legend(fontsize="small", ncol=3)
fig.savefig(args.out / "formats.png", dpi=90, bbox_inches="tight")
