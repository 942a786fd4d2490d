"""
A trained run on your own video
===============================

``coreaffect train`` (or ``coreaffect demo``) leaves a run directory;
:func:`coreaffect.pipeline.load_run` loads it in one call and
:meth:`~coreaffect.pipeline.CoreAffect.predict` gives one row per decoded frame of any video OpenCV
reads (or a folder of frames), frames without a face included (flagged, with a wider band). Pass
your own::

    python examples/plot_own_video.py --run demo_output/run --video my_video.mp4 --out mine/

Without ``--run`` and ``--video`` the script trains the tiny run of
:func:`coreaffect.demo.tiny_run` and uses one of its synthetic videos.
"""

# %%
import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import coreaffect  # noqa: E402

parser = argparse.ArgumentParser(description=(__doc__ or "").strip().split("\n")[0])
parser.add_argument("--run", type=Path, default=None, help="a run directory")
parser.add_argument("--video", type=Path, default=None, help="a video file or frame folder")
parser.add_argument("--out", type=Path, default=Path("own_video_output"))
parser.add_argument("--quick", action="store_true", help="(the tiny run is always quick)")
args = parser.parse_args(sys.argv[1:] if __name__ == "__main__" else [])
if (args.run is None) != (args.video is None):
    parser.error("--run and --video go together")
args.out.mkdir(parents=True, exist_ok=True)
run, video = args.run, args.video
if run is None:
    from coreaffect.demo import tiny_run

    tiny = tiny_run(args.out / "tiny")
    run, video = tiny.run, tiny.video()

# %%
# Load and predict: offline (the smoother), causal (the filter) and, if the run has a lag, a
# few frames later (the fixed-lag smoother); one CSV each. A run without dynamics
# (``--hidden-route-only``) predicts its last stage offline only.
affect = coreaffect.load_run(run)
print(f"run stages: {affect.stages}; causal latency {affect.latency_frames} frames"
      + (f", lagged {affect.lag} more" if affect.lag is not None else ""))
modes = [{}]
if affect.dynamics is not None:
    modes += [{"causal": True}] + ([{"lagged": True}] if affect.lag is not None else [])
for mode in modes:
    plt.close("all")  # the last mode's figure stays open, for the documentation's gallery
    trajectory = affect.predict(video, progress=not args.quick, **mode)
    path = trajectory.to_csv(args.out / f"{Path(video).stem}_{trajectory.stage}.csv")
    print(f"{trajectory.stage}: {len(trajectory)} rows -> {path}")
    axes = trajectory.plot(title=f"{Path(video).name}: {trajectory.stage}")
    axes[0].figure.savefig(args.out / f"{Path(video).stem}_{trajectory.stage}.png", dpi=90,
                           bbox_inches="tight")
