"""Speed of the hidden-route network: inference, dense against per-window video, training.

Times, on random inputs and freshly initialised weights:

1. this machine's fp32 matmul rate (2048 x 2048 by 2048 x 2048), the yardstick;
2. the ``paper`` preset in eval mode, batch 8, at 64 x 64 and 112 x 112: clips per second and
   achieved GFLOP/s (FLOPs counted by ``torch.utils.flop_counter.FlopCounterMode``: 2 per
   multiply-add of the convolutions and linear layers), and their ratio to the matmul rate;
3. per-frame estimates per second of ``predict_dense`` against ``predict_windows`` (stride 1) on a
   300-frame sequence;
4. training clips per second of the ``lite`` preset (forward, backward and AdamW step, batch 16).

Before timing, the counted FLOPs of each preset and input side timed are checked against a count
by hand from the model's configuration (:func:`hand_count`); both are printed, and the script
stops if they differ by more than 0.1%.

Every figure follows one untimed warm-up call. On a shared machine other processes steal cores
now and then, and the best repeat is the one that had them all, so most rows give the best of
several timed repeats with their median beside it: the matmul 4 x ``repeats`` calls, the paper
preset's inference ``repeats`` calls, ``lite`` training 3 x ``repeats`` steps (``repeats`` is 5,
2 with ``--quick``). ``predict_dense`` gives the best of ``repeats`` calls (no median), and
``predict_windows``, the slow reference, one timed call; the table says which is which. On the
CPU the network runs its trunk channels-last by itself, the faster layout there (measured gains
in the docstring of :mod:`coreaffect.hidden_route`). Run::

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

from coreaffect.hidden_route import MODELS, ModelConfig, create_model

FLOP_TOLERANCE = 1e-3  # relative; the two counts follow the same convention and should agree


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


def hand_count(config: ModelConfig) -> int:
    """FLOPs of one clip counted by hand, 2 per multiply-add.

    A convolution does kernel^3 x in-channels multiply-adds for each of its output channels at
    each output voxel; "same" padding keeps the input's T, H and W (at the borders the taps on
    the zero padding are counted too, as ``FlopCounterMode`` does). Each block's max pool then
    divides T by its temporal size and floors H and W by 2. The two linear heads do D x 2
    multiply-adds each.
    Left out, by both counts: the elementwise work (input normalisation, ReLU, max pool,
    LayerNorm, global average pool, tanh, softplus), a few operations per value against
    kernel^3 x in-channels multiply-adds per output value of a convolution.
    """
    t, side, inputs, flops = config.clip_length, config.input_size, 3, 0
    for outputs, pool in zip(config.widths, config.temporal_pool, strict=True):
        flops += 2 * config.kernel**3 * inputs * outputs * t * side * side
        t, side, inputs = t // pool, side // 2, outputs
    return flops + 2 * (2 * inputs * 2)


def checked_gflop(name: str, size: int) -> float:
    """GFLOP of one clip of preset ``name`` at ``size`` counted by ``FlopCounterMode``, after
    checking it against :func:`hand_count`; prints both and exits if they differ by more than
    ``FLOP_TOLERANCE``."""
    model = create_model(name, input_size=size).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.rand(1, 3, model.config.clip_length, size, size))  # (B, C, T, H, W)
    counted, by_hand = counter.get_total_flops(), hand_count(model.config)
    difference = abs(counted - by_hand) / by_hand
    print(f"FLOPs per clip, {name} {size}x{size}: flop_counter {counted / 1e9:.4f} G, "
          f"by hand {by_hand / 1e9:.4f} G, differ by {difference:.2%}")
    if difference > FLOP_TOLERANCE:
        raise SystemExit(f"FLOP counts of {name} {size}x{size} differ by {difference:.2%}, "
                         f"more than {FLOP_TOLERANCE:.1%}")
    return counted / 1e9


def paper_inference(size: int, batch: int, repeats: int) -> tuple[float, float]:
    """Best / median clips per second of ``paper`` in eval mode."""
    torch.manual_seed(0)
    model = create_model("paper", input_size=size).eval()
    video = torch.rand(batch, 3, model.config.clip_length, size, size)  # (B, C, T, H, W)
    with torch.no_grad():
        best, median = _time(lambda: model(video), repeats)
    return batch / best, batch / median


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

    if args.quick:
        name, size, frames = "lite", 24, 80
    else:
        name, size, frames = "paper", args.dense_size, args.frames
    lite_side = MODELS["lite"].input_size

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"mkldnn {torch.backends.mkldnn.is_available()}")
    timed = [("paper", s) for s in sizes] + [(name, size), ("lite", lite_side)]
    gflop = {key: checked_gflop(*key) for key in dict.fromkeys(timed)}
    print("\neach row after one warm-up call; 'best (median) of n': n timed calls\n")
    n = repeats * 4
    peak, peak_median = matmul_gflops(n)
    rows = [("fp32 matmul 2048^3", "", f"{peak:.0f} ({peak_median:.0f}) GFLOP/s", "1.00",
             f"best (median) of {n}")]
    for s in sizes:
        best, median = paper_inference(s, batch, repeats)
        work = gflop["paper", s]
        rows.append((f"paper eval {s}x{s}, batch {batch}", f"{work:.1f} GFLOP/clip",
                     f"{best:.2f} ({median:.2f}) clips/s = {best * work:.0f} GFLOP/s",
                     f"{best * work / peak:.2f}", f"best (median) of {repeats}"))
    dense, windows = dense_against_windows(name, size, frames, repeats)
    rows.append((f"{name} {size}x{size}: predict_dense", f"{frames} frames",
                 f"{dense:.1f} frames/s", f"{dense / windows:.1f}x windows",
                 f"best of {repeats}"))
    rows.append((f"{name} {size}x{size}: predict_windows", "stride 1", f"{windows:.2f} frames/s",
                 "", "1 timed call"))
    n = repeats * 3
    best, median = lite_training(16, n)
    rows.append((f"lite train {lite_side}x{lite_side}, batch 16", "AdamW",
                 f"{best:.1f} ({median:.1f}) clips/s", "", f"best (median) of {n}"))

    header = ("what", "work", "rate: best (median)", "ratio", "timed")
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, tuple("-" * w for w in widths), *rows):
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


if __name__ == "__main__":
    main()
