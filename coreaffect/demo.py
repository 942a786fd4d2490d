"""The paper's experiment end to end on a synthetic corpus: what ``coreaffect demo`` runs.

:func:`run_demo` follows Ceruti et al. (2017) on a freshly generated corpus in place of their 23
MAHNOB videos: synthesise 33 videos of 40 s (:mod:`coreaffect.synthetic`), hold out 10 for
testing and train the hidden route (``lite`` preset, CPU, time-budgeted) on 13, as the paper did;
the other 10, faces the network never trains on, validate: they choose the training epoch,
calibrate the prior and fit the dynamics (:func:`~coreaffect.stages.fit_core_affect`; with
the 3 validation videos a fifth of the paper's 13 would give, the calibration varies with which
3 they are more than the 5 points it aims at). Then evaluate every stage on the test videos, and
write into the output folder:

* ``report.md``: per-video RMSE and CCC of the raw, prior and smoothed estimates (the paper's
  Table 2), the mean over videos and the pooled values of every stage, interval coverage, the
  time of each step and the command that made it;
* ``fig1_trajectory.png``: one test video's ground truth against the raw and the smoothed
  estimates with the smoothed 90% band (the paper's Fig. 1);
* ``fig2_saliency_grid.png``: 3D Grad-CAM maps of that video (the paper's Fig. 2);
* ``fig3_manifold_prior.png``: one clip's prior over the latent manifold beside its face crop
  (the paper's Fig. 3);
* ``fig4_calibration.png``: observed against nominal coverage of the raw, prior and smoothed
  bands on the test videos (each stage's own bands, as the metrics score them);
* ``metrics.json`` (as ``coreaffect evaluate --json``), ``corpus/`` and ``run/`` (usable with
  ``coreaffect predict``, ``evaluate`` and ``saliency``);
* ``demo.json``: the seed and sizes it ran with. It marks the folder as the demo's: a later demo
  replaces the earlier one's files, which are set aside while it runs and put back if it fails
  (a corpus and a run of different demos never end up side by side), and keeps other files
  beside them; a folder holding other files and no demo, or a demo whose ``corpus/`` or
  ``run/`` holds files it did not write, is refused.

``quick=True`` shrinks everything (6 videos of 10 s, a 20-second training budget) for a smoke
test of under a minute (33 s on two CPU cores); its numbers mean nothing.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shlex
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import numpy as np

from coreaffect.bootstrap import MIN_VIDEOS, MetricIntervals, any_interval
from coreaffect.metrics import DIMENSIONS, MetricTable

__all__ = ["MARKER", "DemoResult", "DemoSettings", "TinyRun", "run_demo", "tiny_run"]

logger = logging.getLogger(__name__)

#: What the demo ran with, the file that marks a folder it may write into again.
MARKER = "demo.json"
_ASIDE = ".replaced-"  # prefix of the folder an earlier demo is set aside in while one runs
_WASTE = ".removing-"  # the same folder once the new demo succeeded, while it is deleted
_TITLE = "# The hidden route and its core-affect prior on a synthetic corpus"  # of the report
_RELIABILITY_LEVELS = tuple(np.round(np.linspace(0.05, 0.95, 19), 2).tolist())  # Fig. 4's levels


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """Sizes of the demo.

    Attributes:
        videos: Videos in the corpus.
        seconds: Length of each.
        test_videos: Held out for evaluation.
        val_videos: Validation videos, among the others (the rest train the hidden route).
        validate_every: Validate the hidden route every n-th training epoch.
        minutes: Training budget of the hidden route.
        epochs: Most training epochs.
        manifold_steps: SVI steps of the manifold.
        prior_steps: SVI steps of the prior.
        saliency_frames: Frames of the test video explained for Fig. 2.
    """

    videos: int = 33  # the paper's 23 MAHNOB videos (13 train, 10 test), and 10 to validate
    seconds: float = 40.0  # 1000 frames at 25 fps, many OU time constants
    test_videos: int = 10  # the paper's 10 test videos
    val_videos: int = 10  # faces never trained on (see the module docstring)
    validate_every: int = 1  # every epoch: the network kept is the best of all of them
    minutes: float = 9.0  # the training budget: the whole demo then takes about 12 minutes
    epochs: int = 400  # the budget ends training first
    manifold_steps: int = 1000  # see coreaffect.stages.FitSettings
    prior_steps: int = 1000
    saliency_frames: int = 200  # 8 s: the grid shows 8 frames spread over them

    @classmethod
    def quick(cls) -> DemoSettings:
        """A smoke test: 6 videos of 10 s, 20 s of training, short fits."""
        return cls(videos=6, seconds=10.0, test_videos=2, val_videos=1, minutes=0.33, epochs=20,
                   manifold_steps=300, prior_steps=300, saliency_frames=64)


class DemoResult(NamedTuple):
    """What :func:`run_demo` made.

    Attributes:
        report: Path of ``report.md``.
        figures: Paths of the figures.
        tables: ``{stage: MetricTable}`` on the test videos.
        seconds: Wall-clock seconds of each step.
        differences: ``{stage: MetricIntervals}``: each stage minus ``raw`` with 95% intervals
            over resampled test videos.
    """

    report: Path
    figures: list[Path]
    tables: dict[str, MetricTable]
    seconds: dict[str, float]
    differences: dict[str, MetricIntervals]


def run_demo(out: str | Path = "demo_output", quick: bool = False, *,
             minutes: float | None = None, seed: int = 0, device: str = "cpu",
             settings: DemoSettings | None = None, progress: bool = False,
             command: str | None = None) -> DemoResult:
    """Run the paper's experiment on a synthetic corpus and write the report and figures.

    Args:
        out: Output folder: new, empty, or holding an earlier demo (marked by its
            :data:`MARKER` file), which is replaced once the new one is complete.
        quick: Use :meth:`DemoSettings.quick` (ignored when ``settings`` is given).
        minutes: Training budget, overriding the settings'.
        seed: Seed of the corpus, the split and every fit.
        device: Where the hidden route trains and computes.
        settings: Explicit sizes.
        progress: Show progress bars.
        command: The command line to quote in the report (default: this process's).

    Returns:
        The :class:`DemoResult`.

    Raises:
        CoreAffectError: ``out`` holds files the demo did not write, and no demo, or its
            demo's corpus or run does.
    """
    settings = settings or (DemoSettings.quick() if quick else DemoSettings())
    if minutes is not None:
        settings = dataclasses.replace(settings, minutes=minutes)
    out = Path(out)
    _check_out(out)
    out.mkdir(parents=True, exist_ok=True)
    with _replacing(out):
        return _run_demo(out, settings, seed, device, progress, command, quick)


def _run_demo(out: Path, settings: DemoSettings, seed: int, device: str, progress: bool,
              command: str | None, quick: bool) -> DemoResult:
    """:func:`run_demo` into the folder ``out``, the earlier demo there set aside."""
    from coreaffect.checkpoint import atomic_write
    from coreaffect.corpus import discover
    from coreaffect.crop_cache import CropCache
    from coreaffect.evaluation import (
        Evaluation,
        bootstrap_trajectories,
        evaluate_trajectories,
        metrics_json,
        stage_trajectories,
    )
    from coreaffect.experiment import held_out_videos, load_videos, train_run
    from coreaffect.pipeline import CoreAffect
    from coreaffect.stages import FitSettings
    from coreaffect.synthetic import SynthConfig, write_corpus

    atomic_write(out / MARKER, json.dumps({"generator": "coreaffect.demo", "seed": seed,
                                           "settings": dataclasses.asdict(settings)},
                                          indent=2) + "\n")
    seconds: dict[str, float] = {}
    started = time.monotonic()

    def step(name: str, since: float) -> float:
        seconds[name] = round(time.monotonic() - since, 1)
        logger.info("demo: %s took %.1f s", name, seconds[name])
        return time.monotonic()

    clock = time.monotonic()
    corpus = write_corpus(out / "corpus", SynthConfig(videos=settings.videos,
                                                      seconds=settings.seconds, seed=seed),
                          progress=progress)
    clock = step("synthesise corpus", clock)
    run = out / "run"
    fit = FitSettings(manifold_steps=settings.manifold_steps, prior_steps=settings.prior_steps)
    result = train_run(corpus.root, run, epochs=settings.epochs, max_minutes=settings.minutes,
                       device=device, seed=seed, test_videos=settings.test_videos, overwrite=True,
                       val_videos=settings.val_videos, validate_every=settings.validate_every,
                       fit_settings=fit, progress=progress)
    stages = json.loads((run / "stages.json").read_text())
    total_train = time.monotonic() - clock
    fitted = sum(stages["seconds"].values())
    training = sum(row["seconds"] for row in result.history)
    seconds["crop faces"] = round(max(0.0, total_train - fitted - training), 1)
    seconds["train hidden route"] = round(training, 1)
    for name, value in stages["seconds"].items():
        seconds[f"fit: {name}"] = value
    clock = time.monotonic()
    affect = CoreAffect.load(run, device=device)
    config = affect.data_config
    held_out = held_out_videos(run)
    cache = CropCache(run / "crops", config.faces, config.video.chunk_size)
    videos = load_videos([r for r in discover(corpus.root) if r.id in held_out], config, cache,
                         progress, "test")
    trajectories = stage_trajectories(affect, videos, band_levels=_RELIABILITY_LEVELS)
    tables = evaluate_trajectories(videos, trajectories)
    intervals, differences = bootstrap_trajectories(videos, trajectories, random_state=seed)
    atomic_write(out / "metrics.json", json.dumps(
        metrics_json(Evaluation(tables, intervals, differences)), indent=2) + "\n")
    clock = step("evaluate", clock)

    # the figures, on the first test video
    figures = [_figure_trajectory(out, videos[0], trajectories[0]),
               _figure_saliency(out, affect, videos[0], settings, device),
               _figure_manifold(out, affect, videos[0], trajectories[0]),
               _figure_calibration(out, videos, trajectories)]
    clock = step("figures", clock)
    seconds["total"] = round(time.monotonic() - started, 1)
    report = out / "report.md"
    report.write_text(_report(settings, result, stages, tables, intervals, differences, seconds,
                              figures, out, command or _command(), quick, seed, device,
                              affect.latency_frames))
    logger.info("demo: report in %s", report)
    return DemoResult(report, figures, tables, seconds, differences)


def _intervals(intervals: dict[str, MetricIntervals],
               differences: dict[str, MetricIntervals]) -> list[str]:
    """The report's section on how sure the numbers are: each stage minus the hidden route, and
    each stage's coverage, with their intervals."""
    if not intervals:
        return []
    level = next(iter(intervals.values())).level
    none = not any_interval(intervals)
    lines = ["## How sure: each stage against the hidden route", "",
             f"{level:.0%} intervals over resampled test videos (`coreaffect.bootstrap`): the "
             "difference from **raw** in RMSE and CCC (means over videos; an interval that "
             "includes 0 means that these videos cannot tell the stage from the hidden route), "
             "and the stage's own pooled coverage."
             + (f" None here: too few test videos to resample (at least {MIN_VIDEOS} are "
                "needed)." if none else ""), "",
             "| stage | dim | RMSE - raw | CCC - raw | coverage 50% | coverage 90% |",
             "|---|---|---|---|---|---|"]

    def cell(point: float, interval: np.ndarray, sign: str = "+") -> str:
        if np.isnan(interval).all():
            return f"{point:{sign}.4f}"
        return f"{point:{sign}.4f} [{interval[0]:{sign}.4f}, {interval[1]:{sign}.4f}]"

    for stage, own in intervals.items():
        difference = differences.get(stage)
        for k, dim in enumerate(DIMENSIONS):
            cells = [cell(difference.mean[m][k], difference.mean_interval[m][k])
                     if difference is not None else "" for m in ("rmse", "ccc")]
            cells += [cell(own.pooled[m][k], own.pooled_interval[m][k], "")
                      if m in own.pooled else "" for m in ("coverage_50", "coverage_90")]
            lines.append(f"| {stage} | {dim} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _command() -> str:
    """This process's command line, or the function's name when Python called it (``python -c``,
    an interactive session, IPython or a Jupyter kernel), whose command line does not say what
    ran."""
    if not sys.argv or sys.argv[0] in ("", "-c"):
        return "coreaffect.demo.run_demo"
    program = Path(sys.argv[0]).name
    if program.lower().startswith(("ipykernel", "ipython")):
        return "coreaffect.demo.run_demo"
    if program == "__main__.py":
        program = "python -m coreaffect"
    elif program.endswith(".py"):
        program = f"python {sys.argv[0]}"
    return " ".join([program, *(shlex.quote(a) for a in sys.argv[1:])])


def _figure_trajectory(out: Path, video, trajectories) -> Path:
    from coreaffect.plots import detached_axes

    last = "smoothed" if "smoothed" in trajectories else list(trajectories)[-1]
    smooth, raw = trajectories[last], trajectories["raw"]
    axes = smooth.plot(truth=video.labels, axes=detached_axes(2, 1, (10, 5), sharex=True)[:, 0],
                       title=f"test video {video.id}: ground truth, hidden route and {last} "
                             f"({smooth.level:.0%} band)")
    for d, ax in enumerate(axes):
        ax.plot(raw.times, raw.mean[:, d], color="C0", lw=0.8, alpha=0.8, label="hidden route")
    axes[0].legend(loc="upper right", fontsize="small", ncol=5, frameon=False)
    path = out / "fig1_trajectory.png"
    axes[0].figure.savefig(path, dpi=110, bbox_inches="tight")
    return path


def _figure_saliency(out: Path, affect, video, settings: DemoSettings, device: str) -> Path:
    from coreaffect.saliency import explain_video

    frames = min(len(video.crops.times), settings.saliency_frames)
    start = max(0, (len(video.crops.times) - frames) // 2)
    part = slice(start, start + frames)
    result = explain_video(affect.model.to(device), np.array(video.crops.crops[part]), out,
                           times=video.crops.times[part], face_found=video.crops.face_found[part],
                           animation="", name="fig2_saliency")
    return next(p for p in result.files if str(p).endswith(".png"))


def _figure_manifold(out: Path, affect, video, trajectories) -> Path:
    from coreaffect.plots import detached_axes, plot_manifold_prior

    path = out / "fig3_manifold_prior.png"
    if affect.prior is None:
        return path
    prior = trajectories["prior"]
    labelled = np.flatnonzero(np.isfinite(prior.mean).all(1) & np.isfinite(video.labels).all(1))
    # the clip whose label is farthest from neutral: the prior's shape shows best there
    frame = int(labelled[np.argmax(np.abs(video.labels[labelled]).sum(1))]) if len(
        labelled) else len(prior) // 2
    estimate = affect.model.predict_dense(np.asarray(video.crops.crops), device=affect.device)
    from coreaffect.hidden_route import AffectEstimate

    one = AffectEstimate(*(x[frame:frame + 1] for x in estimate))
    latent = affect.prior(one)
    axes = plot_manifold_prior(affect.prior.manifold, latent.loc[0].numpy(),
                               latent.covariance_matrix[0].numpy(),
                               np.asarray(video.crops.crops[frame]),
                               detached_axes(1, 3, (12.6, 4.2))[0], truth=video.labels[frame],
                               title=f"{video.id}, t = {video.crops.times[frame]:.2f} s: the "
                                     "hidden route's prior over the affect manifold")
    axes[0].figure.savefig(path, dpi=110, bbox_inches="tight")
    return path


def _is_demo_file(name: str) -> bool:
    """Whether ``name``, in a demo's folder, is one the demo writes."""
    return (name in (MARKER, "corpus", "run", "report.md", "metrics.json", "fig1_trajectory.png",
                     "fig3_manifold_prior.png", "fig4_calibration.png")
            or re.fullmatch(r"fig2_saliency(_grid\.png|\.(gif|mp4))", name) is not None)


def _is_own_temporary(name: str) -> bool:
    """Whether ``name``, in a corpus or run folder, is a temporary coreaffect itself makes
    there: a lock, a folder set aside or being built, a file being written atomically."""
    return (name == ".lock" or name.startswith((_ASIDE, ".partial-"))
            or re.fullmatch(r"\..+\.[0-9a-f]{16}", name) is not None)


@contextmanager
def _replacing(out: Path) -> Iterator[None]:
    """Set the earlier demo's files in ``out`` aside while the block writes the new demo:
    deleted when it succeeds; when it fails, what it wrote is removed and they are put back.
    The face crops of the earlier run are lent to the new one (they are keyed by the videos'
    bytes, so a demo of the same seed reuses them). Without an earlier demo, a failed block
    leaves what it wrote. Files of the user's beside them are never touched."""
    from coreaffect.checkpoint import remove_path, temporary_folder

    _check_no_users_files(out)
    earlier = sorted(p.name for p in out.iterdir() if _is_demo_file(p.name))
    if not earlier:
        yield
        return
    aside = temporary_folder(out, _ASIDE)
    moved: list[str] = []
    lent = _lend_crops(out, aside, earlier, moved)
    try:
        yield
    except BaseException:
        if lent:
            os.replace(out / "run" / "crops", aside / "run" / "crops")
        for path in out.iterdir():
            if _is_demo_file(path.name):  # the new demo's
                remove_path(path)
        for name in moved:
            os.replace(aside / name, out / name)
        aside.rmdir()
        logger.warning("%s: the demo failed; the earlier demo there is back", out)
        raise
    # renamed first, so that a demo killed while deleting it leaves a folder known as waste
    waste = out / aside.name.replace(_ASIDE, _WASTE, 1)
    os.replace(aside, waste)
    shutil.rmtree(waste)


def _lend_crops(out: Path, aside: Path, earlier: list[str], moved: list[str]) -> bool:
    """Move ``earlier`` (names in ``out``) into ``aside``, appending each to ``moved``, then
    the earlier run's crop cache back to ``out/run/crops`` (not through a link to a folder of
    the user's); whether it was. Should either fail, what was moved is put back first."""
    crops, lent = out / "run" / "crops", False
    try:
        for name in earlier:
            os.replace(out / name, aside / name)
            moved.append(name)
        run = aside / "run"
        if (run.is_dir() and not run.is_symlink() and (run / "crops").is_dir()
                and not (run / "crops").is_symlink()):
            crops.parent.mkdir()
            os.replace(run / "crops", crops)
            lent = True
    except BaseException:
        if lent:
            os.replace(crops, aside / "run" / "crops")
        if "run" in moved and (out / "run").is_dir() and not any((out / "run").iterdir()):
            (out / "run").rmdir()  # made to lend the crops
        for name in moved:
            os.replace(aside / name, out / name)
        aside.rmdir()
        raise
    return lent


def _check_no_users_files(out: Path) -> None:
    """Refuse an earlier demo whose corpus or run holds files it did not write: replacing the
    demo replaces those folders whole."""
    from coreaffect.errors import CoreAffectError, listing
    from coreaffect.experiment import HIDDEN_ROUTE_FILES
    from coreaffect.stages import STAGE_FILES
    from coreaffect.synthetic import CORPUS_PARTS, MANIFEST, foreign_files

    corpus, run = out / "corpus", out / "run"
    foreign = []
    if corpus.is_dir():
        foreign += [p for p in corpus.iterdir() if p.name not in (*CORPUS_PARTS, MANIFEST)
                    and not _is_own_temporary(p.name)]
        foreign += foreign_files(corpus)
    if run.is_dir():
        foreign += [p for p in run.iterdir() if p.name not in (*HIDDEN_ROUTE_FILES,
                                                              *STAGE_FILES, "crops")
                    and not _is_own_temporary(p.name)]
    if foreign:
        raise CoreAffectError(f"{out}: the earlier demo there holds files it did not write "
                              f"({listing(p.relative_to(out) for p in foreign)}), which "
                              "replacing it would delete; move them out, or choose another "
                              "folder")


def _check_out(out: Path) -> None:
    """Refuse an output folder the demo may not write into: one that is not new, not empty,
    and holds no earlier demo (its :data:`MARKER`, or a report from before the marker). In a
    demo's folder, clear what a demo killed at the wrong moment left: the earlier demo's
    folder while it was being deleted, an empty set-aside folder."""
    from coreaffect.errors import CoreAffectError

    if out.exists() and not out.is_dir():
        raise CoreAffectError(f"{out}: exists and is not a folder")
    if not out.exists():
        return
    folders = [p for p in sorted(out.iterdir()) if p.is_dir() and not p.is_symlink()]
    for kept in folders:
        if kept.name.startswith(_ASIDE) and any(kept.iterdir()):
            raise CoreAffectError(f"{kept}: holds the demo that a demo killed while it replaced "
                                  f"it had set aside; move its files back into {out} (replacing "
                                  "those there) to keep that demo, or delete the folder")
    if not _is_demo_folder(out):
        names = ", ".join(sorted(p.name for p in out.iterdir())[:5])
        raise CoreAffectError(f"{out}: holds files coreaffect demo did not write ({names}); "
                              "choose a new or empty folder")
    for leftover in folders:
        if leftover.name.startswith(_WASTE):  # replaced; its deletion was cut short
            shutil.rmtree(leftover)
        elif leftover.name.startswith(_ASIDE):  # empty: set aside nothing yet
            leftover.rmdir()


def _is_demo_folder(out: Path) -> bool:
    """Whether the folder ``out`` is empty or holds a demo (its :data:`MARKER`, or a report
    from before the marker)."""
    if not any(out.iterdir()) or (out / MARKER).is_file():
        return True
    try:
        with (out / "report.md").open(encoding="utf-8") as report:
            return report.readline().rstrip("\n") == _TITLE
    except (OSError, UnicodeDecodeError):
        return False


def _figure_calibration(out: Path, videos, trajectories) -> Path:
    from coreaffect.evaluation import scored_labels
    from coreaffect.plots import detached_axes, plot_calibration

    shown = [s for s in ("raw", "prior", "smoothed") if s in trajectories[0]]
    truth = [scored_labels(video) for video in videos]
    axes = detached_axes(1, len(shown), (4.2 * len(shown), 4.2))
    for ax, stage in zip(axes[0], shown, strict=True):
        bands = {p: tuple(zip(*(t[stage].band(p) for t in trajectories), strict=True))
                 for p in _RELIABILITY_LEVELS}  # each stage's own bands, as evaluated
        plot_calibration(truth, [t[stage].mean for t in trajectories],
                         [t[stage].var for t in trajectories], ax=ax, title=stage,
                         levels=_RELIABILITY_LEVELS, bands=bands)
    path = out / "fig4_calibration.png"
    axes[0, 0].figure.savefig(path, dpi=110, bbox_inches="tight")
    return path


def _fmt(x: float) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.3f}"


def _report(settings: DemoSettings, result, stages: dict, tables: dict[str, MetricTable],
            intervals: dict[str, MetricIntervals], differences: dict[str, MetricIntervals],
            seconds: dict[str, float],
            figures: list[Path], out: Path, command: str, quick: bool, seed: int,
            device: str = "cpu", latency: int | None = None) -> str:
    shown = [s for s in ("raw", "prior", "smoothed") if s in tables]
    lines = [_TITLE, ""]
    if quick:
        lines += ["**Quick mode**: a smoke test on a tiny corpus with seconds of training; the "
                  "numbers below mean nothing.", ""]
    split = json.loads((out / "run" / "split.json").read_text())
    validating = len(split["val"])
    held_out = ("1 more validates (it chooses the epoch, calibrates the prior and fits the "
                "dynamics)" if validating == 1 else
                f"{validating} more validate (they choose the epoch, calibrate the prior and "
                "fit the dynamics)" if validating else
                "none validates (the prior's calibration and the dynamics fall back to the "
                "training videos, so the bands are too narrow)")
    where = "the CPU" if device == "cpu" else f"`{device}`"
    lines += [
        f"Produced by `{command}` (seed {seed}). The corpus: {settings.videos} synthetic videos "
        f"of {settings.seconds:g} s at 25 fps: {len(split['test'])} held out for testing and "
        f"{len(split['train'])} for training (the paper tested on 10 and trained on 13 of its "
        f"23 MAHNOB videos); {held_out}. The hidden route is the `lite` preset trained on "
        f"{where} for {len(result.history)} epochs on a budget of {settings.minutes:g} minutes "
        f"(the epoch under way when it runs out is cut short there, then validated; best epoch "
        f"{result.best_epoch}, "
        f"stopped by {result.stopped}). Frames are scored when they have "
        "a label and a face.", "",
        "Stages: **raw** is the hidden route's own Gaussian; **prior** the calibrated prior over "
        "the latent manifold, decoded; **smoothed** the Ornstein-Uhlenbeck smoother over the "
        "priors (offline); **filtered** the causal filter (each frame from the frames up to "
        "it: what a live system knows once the frame's estimate is final, a fixed latency "
        + (f"of {latency} frames, {latency / 25:.2f} s at the corpus's 25 fps)" if latency
           else "under a second at the corpus's 25 fps)") + (
            f"; **lagged** the fixed-lag smoother (each frame from the frames up to "
            f"{stages.get('lag')} after it: the same live system, {stages.get('lag')} frames "
            "later)" if "lagged" in tables else "") + ".", "",
        "## Per-video RMSE and CCC on the test videos (the paper's Table 2)", ""]
    header = "| video | " + " | ".join(f"{s} RMSE v | {s} RMSE a" for s in shown) + " | " + \
        " | ".join(f"{s} CCC v | {s} CCC a" for s in shown) + " |"
    lines += [header, "|" + "---|" * (1 + 4 * len(shown))]
    videos = tables["raw"].videos
    for i, video in enumerate(videos):
        cells = [_fmt(tables[s].per_video["rmse"][i, d]) for s in shown for d in range(2)]
        cells += [_fmt(tables[s].per_video["ccc"][i, d]) for s in shown for d in range(2)]
        lines.append(f"| {video} | " + " | ".join(cells) + " |")
    for kind in ("mean", "pooled"):
        values = [getattr(tables[s], kind) for s in shown]
        cells = [_fmt(v["rmse"][d]) for v in values for d in range(2)]
        cells += [_fmt(v["ccc"][d]) for v in values for d in range(2)]
        lines.append(f"| **{kind}** | " + " | ".join(cells) + " |")
    lines += ["", "(v = valence, a = arousal; the paper's Table 2 reports a mean RMSE of 0.08 on "
              "MAHNOB, which this synthetic corpus and a minutes-long budget do not aim at.)",
              "", "## Every stage: mean over videos / pooled over frames", "",
              "| stage | dim | RMSE | CCC | PCC | SAGR | NLL | coverage 50% | coverage 90% |",
              "|---|---|---|---|---|---|---|---|---|"]
    for stage, table in tables.items():
        for d, dim in enumerate(DIMENSIONS):
            cells = [f"{_fmt(table.mean[m][d])} / {_fmt(table.pooled[m][d])}"
                     for m in ("rmse", "ccc", "pcc", "sagr", "nll")]
            cells += [_fmt(table.pooled[m][d]) for m in ("coverage_50", "coverage_90")]
            lines.append(f"| {stage} | {dim} | " + " | ".join(cells) + " |")
    dyn = stages.get("dynamics", {})
    factors = np.round(stages.get("calibration_scale", [np.nan, np.nan]), 3).tolist()
    bands = {k: np.round(v, 3).tolist() for k, v in stages.get("band_scale", {}).items()}
    chosen = "the validation videos" if validating else "the training videos"
    lines += ["", "Coverage is pooled over frames. The prior's variance factors (valence, "
              f"arousal), chosen on {chosen}: {factors}; the factors on the "
              "half-widths of the dynamics' bands (see `coreaffect.stages`): "
              f"{json.dumps(bands)}. Fitted "
              f"dynamics: Theta = {np.round(dyn.get('theta', []), 3).tolist()} per s, mu = "
              f"{np.round(dyn.get('mu', []), 3).tolist()}, observation-noise scales per "
              f"latent axis (chosen on {chosen}) "
              f"{np.round(dyn.get('noise_scale', np.nan), 4).tolist()} for the smoother and "
              f"{np.round(dyn.get('filter_noise_scale') or np.nan, 4).tolist()} for the causal "
              "filter, "
              f"{dyn.get('iterations')} L-BFGS iterations.", ""]
    lines += _intervals(intervals, differences)
    lines += ["## Timings (seconds, this machine)", "",
              "| step | seconds |", "|---|---|"]
    lines += [f"| {name} | {value:.1f} |" for name, value in seconds.items()]
    lines += ["", "## Figures", ""]
    captions = {"fig1": "Fig. 1: ground truth, hidden route and smoothed trajectory of a test "
                        "video, with the smoothed 90% band; grey spans have no face.",
                "fig2": "Fig. 2: 3D Grad-CAM saliency of the hidden route on the same video.",
                "fig3": "Fig. 3: one clip's prior over the latent manifold beside its face "
                        "crop.",
                "fig4": "Calibration: observed coverage of central intervals against their "
                        "level, pooled over the test videos."}
    for path in figures:
        if path.exists():
            rel = path.relative_to(out)
            lines += [f"![{rel.stem}]({rel})", "", captions.get(rel.stem[:4], ""), ""]
    lines += ["The fitted run is in `run/`: try `coreaffect predict run/ "
              f"corpus/videos/{videos[0]}.avi --out {videos[0]}.csv --plot {videos[0]}.png`.",
              ""]
    return "\n".join(lines)


class TinyRun(NamedTuple):
    """A tiny corpus and a run trained on it in seconds (:func:`tiny_run`).

    Attributes:
        corpus: The corpus folder.
        run: The run directory (hidden route, manifold, prior, dynamics).
        test_ids: The held-out video ids.
    """

    corpus: Path
    run: Path
    test_ids: list[str]

    def video(self, video_id: str | None = None) -> Path:
        """The video file of a (by default the first held-out) video."""
        video_id = video_id or self.test_ids[0]
        return next((self.corpus / "videos").glob(f"{video_id}.*"))


def tiny_run(out: str | Path, *, videos: int = 3, seconds: float = 4.0, epochs: int = 2,
             seed: int = 0, progress: bool = False) -> TinyRun:
    """Make a tiny synthetic corpus and train every stage on it in seconds, for examples and
    tests: its estimates mean nothing. An earlier tiny run in ``out`` is reused.

    Args:
        out: Folder for ``corpus/`` and ``run/``.
        videos: Videos in the corpus (one is held out, one validates, the rest train).
        seconds: Length of each video.
        epochs: Training epochs of the hidden route.
        seed: Seed of the corpus, the split and the fits.
        progress: Show progress bars.

    Returns:
        The :class:`TinyRun`.
    """
    from coreaffect.experiment import train_run
    from coreaffect.stages import FitSettings
    from coreaffect.synthetic import SynthConfig, write_corpus

    out = Path(out)
    corpus, run = out / "corpus", out / "run"
    if not (run / "bands.json").exists():
        write_corpus(corpus, SynthConfig(videos=videos, seconds=seconds, seed=seed),
                     progress=progress, workers=1)
        fit = FitSettings(manifold_steps=150, prior_steps=150, dynamics_iter=30)
        train_run(corpus, run, epochs=epochs, seed=seed, test_videos=1, overwrite=True,
                  val_videos=1 if videos > 2 else 0, fit_settings=fit, progress=progress)
    split = json.loads((run / "split.json").read_text())
    return TinyRun(corpus, run, list(split["test"]))
