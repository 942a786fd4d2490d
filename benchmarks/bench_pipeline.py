"""End-to-end speed and memory of ``CoreAffect.predict``: video file -> trajectory.

The workload of a user's own recording: a 640x480, 25 fps mp4 in which a face (the astronaut
photograph that ships with scikit-image) drifts over a cluttered background (the video of
``bench_data_path.py``), one, five and ten minutes long. The run holds every stage: the manifold,
prior and dynamics of a tiny synthetic run (:func:`coreaffect.demo.tiny_run`), and as the hidden
route the ``paper`` preset (Table 1) at 64 x 64 crops, freshly initialised: speed does not depend
on the weights. Each prediction (offline: decode, detect and crop, dense hidden route, prior,
smoother, decoding to valence-arousal with bands) runs in a fresh process, which reports its
wall time and its peak resident memory (``resource.getrusage``), so memory that grew with the
video's length would show as a larger peak for the longer video. Run::

    python benchmarks/bench_pipeline.py          # 1-, 5- and 10-minute videos (about 20 minutes)
    python benchmarks/bench_pipeline.py --quick  # 20- and 60-second videos
    python benchmarks/bench_pipeline.py --minutes 20  # other lengths
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_data_path import FPS, write_video

from coreaffect.checkpoint import load_data_config, save_model
from coreaffect.demo import tiny_run
from coreaffect.hidden_route import create_model

CROP = 64  # the paper preset at 64 x 64 crops: the speed target's setting

CHILD = """
import json, resource, sys, time
import torch
from coreaffect import load_run
torch.set_num_threads({threads})
started = time.perf_counter()
affect = load_run({run!r})
trajectory = affect.predict({video!r})
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"frames": len(trajectory), "seconds": seconds, "peak_mb": peak,
                  "face": float(trajectory.face_found.mean())}}))
"""


def paper_run(folder: Path) -> Path:
    """A run with the tiny run's prior and dynamics and an untrained paper preset at 64 x 64."""
    tiny = tiny_run(folder / "tiny")
    run = folder / "paper64"
    shutil.copytree(tiny.run, run, ignore=shutil.ignore_patterns("crops", "training"))
    config = load_data_config(run)
    config = dataclasses.replace(config, faces=dataclasses.replace(config.faces, crop_size=CROP))
    save_model(create_model("paper", input_size=CROP).eval(), run, config)
    return run


def predict(run: Path, video: Path, threads: int) -> dict:
    """Run one prediction in a fresh process; its frames, seconds and peak memory in MB."""
    code = CHILD.format(run=str(run), video=str(video), threads=threads)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    """Build the run and the videos, time the predictions, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20- and 60-second videos")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--minutes", type=float, nargs="+", metavar="M",
                        help="other video lengths, in minutes (e.g. --minutes 20)")
    args = parser.parse_args()
    lengths = (20.0, 60.0) if args.quick else (60.0, 300.0, 600.0)
    if args.minutes:
        if min(args.minutes) <= 0:
            parser.error("--minutes must be positive")
        lengths = tuple(60.0 * m for m in args.minutes)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        run = paper_run(folder)
        print(f"paper preset at {CROP} x {CROP}, every stage, offline; 640x480 video at "
              f"{FPS:g} fps; torch threads {args.threads}")
        print(f"{'video':>10}{'frames':>9}{'seconds':>10}{'frames/s':>10}{'peak MB':>10}"
              f"{'face':>7}")
        for seconds in lengths:
            video = folder / f"video_{seconds:g}s.mp4"
            started = time.perf_counter()
            write_video(video, int(seconds * FPS))
            written = time.perf_counter() - started
            result = predict(run, video, args.threads)
            if result["frames"] != int(seconds * FPS):  # a row per frame, or no rate to report
                raise SystemExit(f"{video.name}: {result['frames']} rows for "
                                 f"{int(seconds * FPS)} frames")
            rate = result["frames"] / result["seconds"]
            print(f"{seconds / 60:>8.1f} m{result['frames']:>9d}{result['seconds']:>10.1f}"
                  f"{rate:>10.1f}{result['peak_mb']:>10.0f}{result['face']:>7.0%}"
                  f"   (video written in {written:.0f} s)")


if __name__ == "__main__":
    main()
