"""Speed and agreement of the Kalman filter + RTS smoother against pykalman, on the same data.

Two workloads, both K = 2 latent dimensions observed directly (D = 2), an OU model discretised at
irregular frame times (about 25 Hz, so F_t, b_t, Q_t change every step), a per-frame observation
covariance R_t (as the hidden route's estimates bring) and 5% of the frames missing:

1. one sequence of T = 100,000 steps;
2. a batch of 64 videos x 2,000 steps.

For each, filter + smoother (float64) by

* ``parallel``: :func:`coreaffect.state_space.rts_smoother` with ``parallel=True``, the associative
  scan of Sarkka & Garcia-Fernandez (2021), batched over videos;
* ``sequential``: the same function's loop over time (batched over videos);
* ``pykalman``: ``KalmanFilter.smooth`` (numpy, one video at a time, a loop over time), with
  the same per-step F_t, b_t, Q_t, R_t.

and reports the wall time, the speed ratio to pykalman, and the largest absolute difference of the
smoothed means and covariances (and filtered means) from pykalman's; it stops with an error when
a difference exceeds 1e-8 (float64 rounding is far below). Times are the best of a few
repeats for the torch runs, one run for pykalman (tens of seconds). Torch runs on one thread
by default, like pykalman: on a shared machine a second intra-op thread can make the batched
small-matrix operations wait for a busy core (measured here with another job running: the batch
workload took 0.79 s on one thread, 7.8 s on two). ``--quick`` runs pykalman and the
sequential loop on the first 10% of the steps of the long sequence and of the batch only and
scales their times up (the cost of either is linear in the number of steps), saying so; the
parallel scan still runs on all the steps. Run::

    python benchmarks/bench_dynamics.py            # a few minutes on 2 cores
    python benchmarks/bench_dynamics.py --quick    # under half a minute
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
from pykalman import KalmanFilter

from coreaffect.dynamics import LGSSM, kalman_filter, ou_discretize, ou_stationary_cov, rts_smoother

THETA = torch.tensor([[1.0, 0.3], [-0.2, 0.6]], dtype=torch.float64)
MU = torch.tensor([0.2, -0.1], dtype=torch.float64)
DIFFUSION = torch.tensor([[0.5, 0.0], [0.1, 0.4]], dtype=torch.float64)


def make_data(batch: int, steps: int, seed: int) -> tuple[LGSSM, torch.Tensor, torch.Tensor,
                                                         torch.Tensor]:
    """A model with per-step transitions and noisy observations: params, y, R, mask."""
    g = torch.Generator().manual_seed(seed)
    dt = 0.04 * (0.75 + 0.5 * torch.rand(batch, steps - 1, generator=g, dtype=torch.float64))
    f, b, q = ou_discretize(THETA, MU, DIFFUSION, dt)  # (B, T-1, K, K), (B, T-1, K), ...
    params = LGSSM(MU, ou_stationary_cov(THETA, DIFFUSION), f, b, q,
                   torch.eye(2, dtype=torch.float64))
    # observations: a smooth latent path plus noise of a per-frame covariance
    var = 0.02 + 0.1 * torch.rand(batch, steps, 2, generator=g, dtype=torch.float64)
    r = torch.diag_embed(var)
    path = torch.cumsum(0.05 * torch.randn(batch, steps, 2, generator=g, dtype=torch.float64), 1)
    y = path + var.sqrt() * torch.randn(batch, steps, 2, generator=g, dtype=torch.float64)
    mask = torch.rand(batch, steps, generator=g) > 0.05
    return params, y, r, mask


def best_time(fn: Callable[[], object], repeats: int, warm_up: bool = True
              ) -> tuple[float, object]:
    """Best wall time of ``repeats`` calls (after a warm-up call) and the last output."""
    if warm_up:
        fn()
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def ours(params: LGSSM, y: torch.Tensor, r: torch.Tensor, mask: torch.Tensor, parallel: bool):
    with torch.no_grad():
        filtered = kalman_filter(params, y, r, mask, parallel=parallel)
        smoothed = rts_smoother(params, y, r, mask, parallel=parallel)
    return filtered, smoothed


def video_params(params: LGSSM, i: int, steps: int) -> LGSSM:
    return params._replace(transition=params.transition[i, :steps - 1],
                           offset=params.offset[i, :steps - 1],
                           process_cov=params.process_cov[i, :steps - 1])


def pykalman_run(params: LGSSM, y: torch.Tensor, r: torch.Tensor, mask: torch.Tensor,
                 steps: int) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """pykalman's filter and smoother per video, on the first ``steps`` steps."""
    filt, means, covs = [], [], []
    start = time.perf_counter()
    for i in range(y.shape[0]):
        p = video_params(params, i, steps)
        kf = KalmanFilter(transition_matrices=p.transition.numpy(),
                          transition_offsets=p.offset.numpy(),
                          transition_covariance=p.process_cov.numpy(),
                          observation_matrices=p.emission.numpy(),
                          observation_covariance=r[i, :steps].numpy(),
                          initial_state_mean=p.init_mean.numpy(),
                          initial_state_covariance=p.init_cov.numpy())
        missing = np.repeat(~mask[i, :steps].numpy()[:, None], 2, 1)
        data = np.ma.masked_array(y[i, :steps].numpy(), mask=missing)
        filt.append(kf.filter(data)[0])
        smoothed_means, smoothed_covs = kf.smooth(data)
        means.append(smoothed_means)
        covs.append(smoothed_covs)
    seconds = time.perf_counter() - start
    return seconds, np.stack(filt), np.stack(means), np.stack(covs)


def prefix(params: LGSSM, y: torch.Tensor, r: torch.Tensor, mask: torch.Tensor, steps: int
           ) -> tuple[LGSSM, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The first ``steps`` steps of every video of a workload (with or without a batch axis)."""
    params = params._replace(transition=params.transition[..., :steps - 1, :, :],
                             offset=params.offset[..., :steps - 1, :],
                             process_cov=params.process_cov[..., :steps - 1, :, :])
    return params, y[..., :steps, :], r[..., :steps, :, :], mask[..., :steps]


def workload(name: str, batch: int, steps: int, repeats: int, fraction: float,
             sequential: bool) -> None:
    params, y, r, mask = make_data(batch, steps, seed=0)
    if batch == 1:  # one sequence: no batch axis
        y, r, mask = y[0], r[0], mask[0]
        params = video_params(params, 0, steps)
    print(f"\n== {name}: batch {batch} x {steps} steps, K = 2, float64 ==")
    part = max(2, int(round(steps * fraction)))  # steps of the pykalman and sequential runs
    scale = steps / part
    note = "" if part == steps else f" (measured on {part} steps, scaled x{scale:.0f})"
    results = {}  # label: (seconds for all the steps, output, steps run)
    t_par, out_par = best_time(lambda: ours(params, y, r, mask, True), repeats)
    results["parallel"] = (t_par, out_par, steps)
    if sequential:
        cut = prefix(params, y, r, mask, part)
        t_seq, out_seq = best_time(lambda: ours(*cut, False), 1, warm_up=False)
        results["sequential"] = (t_seq * scale, out_seq, part)
    by = y[None] if batch == 1 else y
    br, bm = (r[None], mask[None]) if batch == 1 else (r, mask)
    bp = params if batch > 1 else params._replace(
        transition=params.transition[None], offset=params.offset[None],
        process_cov=params.process_cov[None])
    t_ref, ref_filt, ref_means, ref_covs = pykalman_run(bp, by, br, bm, part)
    t_ref *= scale
    print(f"{'pykalman':>10}: {t_ref:9.3f} s{note}")
    for label, (seconds, (filtered, smoothed), run) in results.items():
        means = smoothed.means.reshape(batch, run, 2)[:, :part].numpy()
        covs = smoothed.covs.reshape(batch, run, 2, 2)[:, :part].numpy()
        filt = filtered.means.reshape(batch, run, 2)[:, :part].numpy()
        # the smoother's values near the cut depend on later steps: compare pykalman's run on
        # a prefix with ours on the whole only for the filter, and in full on the same steps
        diffs = {"filtered means": np.abs(filt - ref_filt).max()}
        if run == part:
            diffs = {"smoothed means": np.abs(means - ref_means).max(),
                     "covs": np.abs(covs - ref_covs).max(), **diffs}
        print(f"{label:>10}: {seconds:9.3f} s{note if run != steps else ''}, "
              f"{t_ref / seconds:8.1f}x pykalman; {described(diffs)}")
        check_agreement(f"{label} against pykalman", diffs)
    if "sequential" in results:
        (t_seq, (f_seq, s_seq), _), (_, (f_par, s_par), _) = (results["sequential"],
                                                              results["parallel"])
        speed = f"speed {t_seq / t_par:.1f}x"
        if part == steps:
            likelihood = f_seq.log_likelihood.abs().clamp(min=1.0)
            diffs = {"smoothed means": float((s_par.means - s_seq.means).abs().max()),
                     "covs": float((s_par.covs - s_seq.covs).abs().max()),
                     "log-likelihood (relative)": float(
                         ((f_par.log_likelihood - f_seq.log_likelihood).abs()
                          / likelihood).max())}
        else:  # only the filter of the first steps is the same on a prefix
            diffs = {f"filtered means on the first {part} steps": float(
                (f_par.means[..., :part, :] - f_seq.means).abs().max())}
        print(f"parallel vs sequential: {described(diffs)}; {speed}")
        check_agreement("parallel against sequential", diffs)


# float64 filters of the same model agree to rounding: a larger difference is a bug, and the
# benchmark stops rather than report the speed of a wrong answer
AGREEMENT = 1e-8


def described(diffs: dict[str, float]) -> str:
    return "max |diff| " + ", ".join(f"{name} {value:.2e}" for name, value in diffs.items())


def check_agreement(what: str, diffs: dict[str, float]) -> None:
    worse = {name: value for name, value in diffs.items() if not value <= AGREEMENT}  # NaN too
    if worse:
        raise SystemExit(f"{what}: {described(worse)}, above {AGREEMENT:g}: the results differ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="pykalman and the sequential loop on 10%% of the steps, "
                        "times scaled up")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the torch runs")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1, as pykalman uses one core)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    fraction = 0.1 if args.quick else 1.0
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    workload("one long sequence", 1, 100_000, args.repeats, fraction, sequential=True)
    workload("a batch of videos", 64, 2_000, args.repeats, fraction, sequential=True)


if __name__ == "__main__":
    main()
