"""Live speed of ``CoreAffect.stream``: frames in one at a time, rows out, causal and lagged.

The run and the video are those of ``bench_pipeline.py`` (the ``paper`` preset at 64 x 64 crops
with the tiny run's prior and dynamics; a 640x480, 25 fps mp4 of a drifting face); ``--preset
lite`` streams the tiny run itself, whose hidden route is the ``lite`` preset at 24 x 24 (what
``coreaffect demo`` trains). The frames are
decoded first and handed to ``stream`` from memory, as a camera would hand them, so the timing is
what coreaffect adds per frame: face detection and cropping, the incremental hidden route, the
prior, the filter (or the fixed-lag smoother of the run's lag) and decoding the row with its
bands. It reports the frames per second over the whole stream and the time ``stream`` spends on
each frame (median, 95th and 99th percentile, maximum): a live system keeps up with the camera
while the time per frame stays under its frame interval (40 ms at 25 fps). Run::

    python benchmarks/bench_stream.py            # a 60-second video
    python benchmarks/bench_stream.py --quick    # 10 seconds
    python benchmarks/bench_stream.py --preset lite
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench_data_path import FPS, write_video
from bench_pipeline import paper_run

from coreaffect import load_run
from coreaffect.demo import tiny_run
from coreaffect.video import VideoSource


def timed_stream(affect, frames: list, lagged: bool) -> tuple[float, np.ndarray, int]:
    """Wall seconds of the whole stream, seconds spent on each frame, rows yielded.

    A frame's time runs from the moment ``stream`` takes it to the moment it asks for the next
    one (its row, if one became final, yielded in between); the last frame's includes the rows
    the end of the stream releases.
    """
    asked: list[float] = []

    def source():
        for frame in frames:
            asked.append(time.perf_counter())
            yield frame

    started = time.perf_counter()
    rows = sum(1 for _ in affect.stream(source(), lagged=lagged))
    finished = time.perf_counter()
    return finished - started, np.diff(np.append(asked, finished)), rows


def main() -> None:
    """Build the run and the video, stream it causal and lagged, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 10-second video")
    parser.add_argument("--seconds", type=float, default=60.0, help="video length")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--preset", choices=("paper", "lite"), default="paper",
                        help="the hidden route: paper at 64 x 64 (default) or lite at 24 x 24")
    args = parser.parse_args()
    seconds = 10.0 if args.quick else args.seconds
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        run = paper_run(folder) if args.preset == "paper" else tiny_run(folder / "tiny").run
        video = folder / "video.mp4"
        write_video(video, int(seconds * FPS))
        with VideoSource(video) as source:
            frames = [(frame.image, frame.time) for frame in source]
        affect = load_run(run)
        size = affect.data_config.faces.crop_size
        print(f"{args.preset} preset at {size} x {size}; {len(frames)} frames of 640x480 at "
              f"{FPS:g} fps streamed from memory; torch threads {args.threads}; latency "
              f"{affect.latency_frames} frames (+{affect.lag} lagged)")
        print(f"{'rows':>10}{'frames/s':>10}{'ms per frame: median':>22}{'p95':>7}{'p99':>7}"
              f"{'max':>8}")
        for lagged in (False, True):
            total, spent, rows = timed_stream(affect, frames, lagged)
            ms = 1000 * spent
            assert rows == len(frames), (rows, len(frames))  # one row per frame
            print(f"{'lagged' if lagged else 'causal':>10}{len(frames) / total:>10.1f}"
                  f"{np.median(ms):>22.1f}{np.percentile(ms, 95):>7.1f}"
                  f"{np.percentile(ms, 99):>7.1f}{ms.max():>8.1f}")


if __name__ == "__main__":
    main()
