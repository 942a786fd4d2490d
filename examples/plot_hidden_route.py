"""
The paper's experiment on the synthetic corpus
==============================================

Generate a synthetic corpus of 33 facial videos with known valence-arousal (the paper used 23
MAHNOB videos), train the hidden route (the ``lite`` preset, on the CPU, within a time budget)
on 13 of them as the paper did, validate it and calibrate the prior and the core-affect dynamics
on 10 more, and score every stage on the last 10, as in the paper's Table 2. This is what
``coreaffect demo`` (and ``make demo``) runs; the work is done by
:func:`coreaffect.demo.run_demo`.

Run it as a script::

    python examples/plot_hidden_route.py --out demo_output           # about 12 minutes
    python examples/plot_hidden_route.py --out demo_output --quick   # under a minute, tiny

It writes ``report.md``, four figures, ``metrics.json``, ``corpus/`` and ``run/`` (usable with
``coreaffect predict``, ``evaluate`` and ``saliency``) into the output folder.
"""

# %%
# Settings. ``--quick`` (and building the documentation) shrinks the corpus and the budget.
import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from coreaffect.demo import run_demo  # noqa: E402
from coreaffect.evaluation import format_stages  # noqa: E402

parser = argparse.ArgumentParser(description=(__doc__ or "").strip().split("\n")[0])
parser.add_argument("--out", type=Path, default=Path("demo_output"))
parser.add_argument("--quick", action="store_true", help="small corpus, short training")
parser.add_argument("--minutes", type=float, default=None, help="training budget")
args = parser.parse_args(sys.argv[1:] if __name__ == "__main__" else [])
quick = args.quick or "sphinx_gallery" in sys.modules

# %%
# Synthesise, train, fit, evaluate, and draw the figures.
result = run_demo(args.out, quick=quick, minutes=args.minutes, progress=not quick)

# %%
# Every stage on the held-out videos: the mean over videos and the pooled value.
print(format_stages(result.tables))
print(f"report: {result.report}")

# %%
# The report's first figure: a test video's labels, the hidden route and the smoothed
# trajectory with its band.
fig, ax = plt.subplots(figsize=(10, 5))
ax.imshow(plt.imread(result.figures[0]))
ax.set_axis_off()
