"""Speed of the hidden-route network: inference, dense against per-window video, training.

Times, on random inputs and freshly initialised weights:

1. this machine's fp32 matmul rate (2048 x 2048 by 2048 x 2048), the yardstick;
2. the ``paper`` preset in eval mode, batch 8, at 64 x 64 and 112 x 112: clips per second and
   achieved GFLOP/s (FLOPs counted by ``torch.utils.flop_counter.FlopCounterMode``: 2 per
   multiply-add of the convolutions and linear layers), and their ratio to the matmul rate;
3. per-frame estimates per second of ``predict_dense`` against ``predict_windows`` (stride 1) on a
   300-frame sequence;
4. training clips per second of the ``lite`` preset (forward, backward and AdamW step, batch 16).

Each figure is the best of several repeats (and the median beside it): on a shared machine other
processes steal cores now and then, and the best repeat is the one that had them all. On the CPU
the network runs its trunk channels-last by itself, the faster layout there (measured gains in the
docstring of :mod:`coreaffect.hidden_route`). Run::

    python benchmarks/bench_hidden_route.py            # about 7 minutes on 2 cores
    python benchmarks/bench_hidden_route.py --quick    # smaller and fewer, a smoke test
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from coreaffect.hidden_route import MODELS, create_model


def _time(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Best and median wall time of ``fn`` over ``repeats`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def matmul_gflops(repeats: int, side: int = 2048) -> tuple[float, float]:
    """Best and median fp32 GFLOP/s of a square matmul."""
    a, b = torch.randn(side, side), torch.randn(side, side)
    best, median = _time(lambda: a @ b, repeats)
    flops = 2 * side**3 / 1e9
    return flops / best, flops / median


def paper_inference(size: int, batch: int, repeats: int) -> tuple[float, float, float]:
    """GFLOP per clip and best / median clips per second of ``paper`` in eval mode."""
    torch.manual_seed(0)
    model = create_model("paper", input_size=size).eval()
    video = torch.rand(batch, 3, model.config.clip_length, size, size)  # (B, C, T, H, W)
    with torch.no_grad():
        with FlopCounterMode(display=False) as counter:
            model(video[:1])
        gflop = counter.get_total_flops() / 1e9
        best, median = _time(lambda: model(video), repeats)
    return gflop, batch / best, batch / median


def dense_against_windows(name: str, size: int, frames: int, repeats: int
                          ) -> tuple[float, float]:
    """Per-frame estimates per second of ``predict_dense`` and ``predict_windows`` (stride 1)."""
    torch.manual_seed(0)
    model = create_model(name, input_size=size).eval()
    video = torch.rand(3, frames, size, size)  # (C, T, H, W)
    dense, _ = _time(lambda: model.predict_dense(video), repeats)
    windows, _ = _time(lambda: model.predict_windows(video, stride=1), 1)
    return frames / dense, frames / windows


def lite_training(batch: int, repeats: int) -> tuple[float, float]:
    """Best / median training clips per second of ``lite``."""
    torch.manual_seed(0)
    model = create_model("lite")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    side = model.config.input_size
    video = torch.rand(batch, 3, model.config.clip_length, side, side)  # (B, C, T, H, W)
    target = torch.rand(batch, 2) * 2 - 1  # (B, 2)

    def step() -> None:
        estimate = model(video)
        loss = torch.nn.functional.gaussian_nll_loss(estimate.mean, target, estimate.var)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    best, median = _time(step, repeats)
    return batch / best, batch / median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller and fewer runs")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="torch threads (default: every core)")
    parser.add_argument("--frames", type=int, default=300, help="frames of the dense sequence")
    parser.add_argument("--dense-size", type=int, default=112,
                        help="input side of the paper preset in the dense comparison")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeats = 2 if args.quick else 5
    sizes = (64,) if args.quick else (64, 112)
    batch = 2 if args.quick else 8

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"mkldnn {torch.backends.mkldnn.is_available()}; best (median) of {repeats} repeats\n")
    peak, peak_median = matmul_gflops(repeats * 4)
    rows = [("fp32 matmul 2048^3", "", f"{peak:.0f} ({peak_median:.0f}) GFLOP/s", "1.00")]
    for size in sizes:
        gflop, best, median = paper_inference(size, batch, repeats)
        rows.append((f"paper eval {size}x{size}, batch {batch}", f"{gflop:.1f} GFLOP/clip",
                     f"{best:.2f} ({median:.2f}) clips/s = {best * gflop:.0f} GFLOP/s",
                     f"{best * gflop / peak:.2f}"))
    if args.quick:
        name, size, frames = "lite", 24, 80
    else:
        name, size, frames = "paper", args.dense_size, args.frames
    dense, windows = dense_against_windows(name, size, frames, repeats)
    rows.append((f"{name} {size}x{size}: predict_dense", f"{frames} frames",
                 f"{dense:.1f} frames/s", f"{dense / windows:.1f}x windows"))
    rows.append((f"{name} {size}x{size}: predict_windows", "stride 1", f"{windows:.2f} frames/s",
                 ""))
    best, median = lite_training(16, repeats * 3)
    side = MODELS["lite"].input_size
    rows.append((f"lite train {side}x{side}, batch 16", "AdamW",
                 f"{best:.1f} ({median:.1f}) clips/s", ""))

    header = ("what", "work", "rate: best (median)", "ratio")
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(4)]
    for row in (header, tuple("-" * w for w in widths), *rows):
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
