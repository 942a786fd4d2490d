"""The ``coreaffect`` command line.

Each command is a thin layer over the library. Exit codes: 0 on success, 2 on bad usage (argparse's
own convention), 1 on a clear error message (a :class:`~coreaffect.errors.CoreAffectError`, printed
without a traceback), 130 when interrupted (Ctrl-C) and 141 when the program reading the standard
output stops early (``| head``).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import logging
import math
import os
import re
import signal
import stat
import sys
import tempfile
import threading
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from coreaffect.errors import CoreAffectError, CoreAffectWarning

__all__ = ["build_parser", "main"]

_EPILOG_SYNTH = """examples:
  coreaffect synth corpus/                      # the default: 23 videos of 40 s, 13/10 split
  coreaffect synth tiny/ --videos 3 --seconds 4 --seed 1
"""


_EPILOG_TRAIN = """examples:
  coreaffect train corpus/ --out run/ --max-minutes 10
  coreaffect train mahnob/ --out run/ --format dante --preset paper --device cuda
"""

_EPILOG_EVALUATE = """examples:
  coreaffect evaluate run/ corpus/ --json metrics.json
  coreaffect evaluate run/ other_corpus/ --subset all
"""


def _synth(args: argparse.Namespace) -> int:
    from coreaffect.synthetic import SynthConfig, write_corpus

    config = SynthConfig(videos=args.videos, seconds=args.seconds, fps=args.fps, seed=args.seed)
    corpus = write_corpus(args.out, config, progress=not args.quiet)
    print(f"wrote {len(corpus.ids)} videos to {corpus.root}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from coreaffect.experiment import train_run
    from coreaffect.stages import FitSettings

    later = [option for option, value in (("--lag", args.lag), ("--manifold", args.manifold),
                                          ("--calibration-levels", args.calibration_levels))
             if value is not None]
    if args.hidden_route_only and later:
        raise CoreAffectError(f"--hidden-route-only fits no later stage, so {', '.join(later)} "
                              "would be ignored; leave them out, or give them to 'coreaffect "
                              "refit' once the network is trained")
    settings = _fit_settings(args, FitSettings())
    result = train_run(
        args.data, args.out, format=args.format, preset=args.preset, epochs=args.epochs,
        max_minutes=args.max_minutes, device=args.device, seed=args.seed,
        test_videos=args.test_videos, val_videos=args.val_videos,
        validate_every=args.validate_every, data_config=args.config,
        cache=args.cache, resume=args.resume, overwrite=args.overwrite,
        fit_prior=not args.hidden_route_only,
        fit_settings=settings, people=args.people, progress=not args.quiet)
    print(f"trained {result.model.config.name} for {len(result.history)} epochs "
          f"(best epoch {result.best_epoch}, stopped by {result.stopped})"
          + ("" if args.hidden_route_only else ", then fitted manifold, prior and dynamics")
          + f"; run in {args.out}")
    return 0


def _fit_settings(args: argparse.Namespace, settings):
    """The FitSettings with the later stages' options of the command line applied."""
    import dataclasses

    if args.lag is not None and args.lag < 0:
        raise CoreAffectError(f"--lag must be >= 0 (frames), got {args.lag}")
    changes = {"lag": args.lag, "manifold_backend": args.manifold,
               "calibration_levels": None if args.calibration_levels is None
               else tuple(sorted(set(args.calibration_levels)))}
    return dataclasses.replace(settings, **{k: v for k, v in changes.items() if v is not None})


_EPILOG_REFIT = """examples:
  coreaffect refit run/ --out run_gplvm/ --manifold gplvm
  coreaffect refit run/ --out run_lag4/ --lag 4
  coreaffect evaluate run_gplvm/ corpus/
"""


def _refit(args: argparse.Namespace) -> int:
    from coreaffect.experiment import refit_run
    from coreaffect.stages import check_settings, run_fit_settings

    settings = _fit_settings(args, run_fit_settings(args.run, check=False))
    try:  # the options given may mend a hand-edited file
        check_settings(settings)
    except CoreAffectError as err:
        raise CoreAffectError(f"{args.run / 'stages.json'}: {err}") from None
    refit_run(args.run, args.out, data=args.data, settings=settings, device=args.device,
              cache=args.cache, progress=not args.quiet)
    print(f"fitted manifold, prior and dynamics again on the hidden route of {args.run}; "
          f"run in {args.out}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from coreaffect.evaluation import format_intervals, format_stages, format_table
    from coreaffect.experiment import evaluate_run

    evaluation = evaluate_run(args.run, args.data, format=args.format, subset=args.subset,
                              device=args.device, cache=args.cache, json_path=args.json,
                              n_resamples=args.resamples, delay=args.delay,
                              people=args.people, progress=not args.quiet)
    tables = evaluation.tables
    last = list(tables)[-1]
    print(format_table(tables[last], metrics=("rmse", "ccc"),
                       title=f"{last}, per video (v = valence, a = arousal)"))
    print()
    print("per stage: mean over videos and pooled over frames; cov90 = coverage of the 90% "
          "band")
    print(format_stages(tables))
    if evaluation.intervals:
        print()
        print(format_intervals(evaluation.intervals, evaluation.differences))
    if args.json:
        print(f"metrics written to {args.json}")
    return 0


_EPILOG_COMPARE = """examples:
  coreaffect compare run_lite/ run_paper/ corpus/
  coreaffect compare run/ run_lag4/ corpus/ --json comparison.json
"""


def _compare(args: argparse.Namespace) -> int:
    from coreaffect.comparison import compare_runs, format_comparison

    comparison = compare_runs(args.run_a, args.run_b, args.data, format=args.format,
                              subset=args.subset, device=args.device, cache=args.cache,
                              n_resamples=args.resamples, json_path=args.json,
                              delay=args.delay, people=args.people, progress=not args.quiet)
    print(f"A = {args.run_a}, B = {args.run_b}")
    print(format_comparison(comparison))
    if args.json:
        print(f"comparison written to {args.json}")
    return 0


_EPILOG_PREDICT = """examples:
  coreaffect predict run/ interview.mp4 --out interview.csv --plot interview.png
  coreaffect predict run/ frames_folder/ --causal --level 0.5 > trajectory.csv
  coreaffect predict run/ interview.mp4 --lagged --out interview_online.csv
"""


def _warn_if_first_index_unused(args: argparse.Namespace) -> None:
    """--first-index numbers a frame folder's images; say so when it is given for a file."""
    if args.first_index is not None and Path(args.video).is_file():
        logging.getLogger(__name__).warning(
            "--first-index numbers the images of a frame folder; %s is a video file, whose "
            "frames are counted from 0, so it is ignored", args.video)


def _predict(args: argparse.Namespace) -> int:
    from coreaffect.pipeline import CoreAffect

    _warn_if_first_index_unused(args)

    affect = CoreAffect.load(args.run, device=args.device, random_state=args.seed)
    # a frame folder at the rate and numbering of the run's data, unless told; a file keeps its
    # own rate
    with affect.open_video(args.video, fps=args.fps, first_index=args.first_index) as video:
        trajectory = affect.predict(video, causal=args.causal, level=args.level,
                                    progress=not args.quiet, lagged=args.lagged)
    if args.out is not None:  # first: a figure that fails then loses no result
        trajectory.to_csv(args.out)
        print(f"wrote {len(trajectory)} rows ({trajectory.stage}, {args.level:.0%} bands) to "
              f"{args.out}", file=sys.stderr)
    if args.plot is not None:  # before stdout, which a reader may close early
        _write_plot(trajectory, args.plot, f"{Path(args.video).name}: {trajectory.stage}")
        print(f"wrote {args.plot}", file=sys.stderr)
    if args.out is None:
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            path = trajectory.to_csv(Path(folder) / "trajectory.csv")
            sys.stdout.write(path.read_text())
    return 0


_EPILOG_STREAM = """examples:
  coreaffect stream run/ 0 --out live.csv          # the first camera, until Ctrl-C
  coreaffect stream run/ interview.mp4 --lagged    # a file, as a live system sees it
"""


def _camera_or_path(video: Path) -> Path | int:
    """A SOURCE of digits that names no file or folder is a camera index."""
    return int(str(video)) if str(video).isdigit() and not video.exists() else video


def _stream(args: argparse.Namespace) -> int:
    from coreaffect.pipeline import CoreAffect
    from coreaffect.trajectory import csv_cells, csv_columns

    _warn_if_first_index_unused(args)
    affect = CoreAffect.load(args.run, device=args.device, random_state=args.seed)
    stage = "lagged" if args.lagged else "filtered"
    stop = threading.Event()
    rows = 0
    out = None  # opened at the first row: a stream that fails at once leaves no file
    where = "standard output" if args.out is None else args.out
    with affect.open_video(_camera_or_path(args.video), fps=args.fps,
                           first_index=args.first_index) as video, _stopped_by_signal(stop):
        try:
            for row in affect.stream(video, args.level, lagged=args.lagged, stop=stop):
                if out is None:
                    if args.out is not None:
                        args.out.parent.mkdir(parents=True, exist_ok=True)
                    out = (sys.stdout if args.out is None
                           else args.out.open("w", encoding="utf-8", newline=""))
                    writer = csv.writer(out, lineterminator="\n")
                    writer.writerow(csv_columns(len(row.latent_mean)))
                writer.writerow(csv_cells(row, stage, args.level))
                out.flush()  # a row is on disk (or in the pipe) as soon as it is known
                rows += 1
        except BaseException:
            if rows:  # kept: say so before the error
                print(f"wrote {rows} rows to {where} before stopping", file=sys.stderr)
            raise
        finally:
            if out is not None and out is not sys.stdout:
                out.close()
    how = "stopped" if stop.is_set() else "the source ended"
    wrote = (f"wrote {rows} rows ({stage}, {args.level:.0%} bands) to {where}" if rows
             else "no row to write")
    print(f"{how}: {wrote}", file=sys.stderr)
    return 0


@contextmanager
def _stopped_by_signal(stop: threading.Event) -> Iterator[None]:
    """For the block, a first Ctrl-C or SIGTERM (a service being stopped) sets ``stop``: the
    stream then ends with the rows of its last frames. A second one acts as before (Ctrl-C and
    SIGTERM interrupt the command). A signal that is ignored (Ctrl-C in a background job) stays
    ignored, and outside the main thread, where Python takes no signal, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    numbers = [n for n in (signal.SIGINT, signal.SIGTERM)
               if signal.getsignal(n) is not signal.SIG_IGN]
    previous = {}

    def first(number: int, frame: Any) -> None:
        stop.set()
        print("stopping: the last rows follow (Ctrl-C again to quit at once)", file=sys.stderr)
        for n, handler in previous.items():
            signal.signal(n, handler)

    for n in numbers:
        previous[n] = signal.signal(n, first)
    try:
        yield
    finally:
        for n, handler in previous.items():
            signal.signal(n, handler)


def _write_plot(trajectory, path: Path, title: str) -> None:
    """Draw ``trajectory`` into ``path`` (its suffix is the format), whole or not at all, and
    mark it as predict's figure in its metadata if the format has them."""
    from coreaffect.checkpoint import atomic_write
    from coreaffect.plots import detached_axes

    # main may be called from a notebook: no backend chosen, no figure left open there
    axes = trajectory.plot(title=title, axes=detached_axes(2, 1, (10, 5), sharex=True)[:, 0])
    kind = path.suffix[1:].lower() or "png"  # a pipe or a device named without a suffix
    figure = io.BytesIO()
    try:
        axes[0].figure.savefig(figure, format=kind, dpi=110, bbox_inches="tight",
                               metadata={_PLOT_METADATA[kind][0]: PLOT_MARK}
                               if kind in _PLOT_METADATA else None)
    except (RuntimeError, ValueError, OSError) as err:  # pgf without LaTeX, say
        raise CoreAffectError(f"{path}: matplotlib cannot draw a .{kind} figure here ({err}); "
                              "choose another format, such as .png or .pdf") from None
    atomic_write(path, figure.getvalue())


_EPILOG_DEMO = """examples:
  coreaffect demo                        # about 12 minutes on two CPU cores
  coreaffect demo --out quick/ --quick   # a smaller corpus and budget, under a minute
"""


def _demo(args: argparse.Namespace) -> int:
    from coreaffect.demo import run_demo

    result = run_demo(args.out, quick=args.quick, minutes=args.max_minutes, seed=args.seed,
                      device=args.device, progress=not args.quiet)
    print(f"report: {result.report}")
    return 0


# coreaffect.saliency.TARGETS and coreaffect.hidden_route.MODELS, spelled out so that building
# the parser imports neither module (tests check they stay equal)
SALIENCY_TARGETS = ("valence", "arousal", "valence_var", "arousal_var")
PRESETS = ("lite", "paper")

_EPILOG_SALIENCY = """examples:
  coreaffect saliency run/ corpus/videos/synth000.avi --out saliency/
  coreaffect saliency run/ interview.mp4 --out maps/ --targets valence valence_var --animation mp4
"""


def _saliency(args: argparse.Namespace) -> int:
    import numpy as np

    from coreaffect.checkpoint import load_data_config, load_model, locate_detector
    from coreaffect.corpus import open_source
    from coreaffect.experiment import run_format
    from coreaffect.faces import FaceCropper, FaceCrops
    from coreaffect.saliency import explain_video

    _warn_if_first_index_unused(args)
    model = load_model(args.run, args.device)
    # crops as the network was trained on them
    config = locate_detector(load_data_config(args.run), args.run)
    end = math.inf if args.seconds is None else args.start + args.seconds
    kept = []  # the segment's crops only: the explanation holds them all in memory
    # frame folders are read as the run's data were
    with open_source(args.video, config.video, run_format(args.run), fps=args.fps,
                     first_index=args.first_index) as source:
        parts = FaceCropper(config.faces).crop_video(source)
        for part in parts:  # the face is tracked from the start, as for the whole video
            inside = (part.times >= args.start) & (part.times < end)
            if inside.any():
                kept.append(FaceCrops(*(field[inside] for field in part)))
            if part.times[-1] >= end:
                break
        parts.close()  # stops decoding: the rest of the video is not needed
    segment = (f" from {args.start:g} s on" if args.seconds is None
               else f" between {args.start:g} s and {end:g} s")
    if not kept:
        raise CoreAffectError(f"{args.video}: no frame{segment}")
    crops = FaceCrops.concatenate(kept)
    clip = model.config.clip_length
    if len(crops.times) < clip:
        segment = "" if args.seconds is None and args.start == 0 else segment
        raise CoreAffectError(f"{args.video}: {len(crops.times)} frames{segment}, fewer than "
                              f"one {clip}-frame clip to explain")
    if not np.asarray(crops.face_found).any():  # as predict warns: the maps explain backgrounds
        logging.getLogger(__name__).warning(
            "%s: no face found in any of its %d frames%s, so the maps and estimates are those "
            "of the crops the cropper falls back on, not of a face", args.video,
            len(crops.times), segment if args.seconds is not None or args.start else "")
    steps = np.diff(crops.times)
    fps = 1.0 / float(np.median(steps)) if len(steps) and np.median(steps) > 0 else 25.0
    result = explain_video(model, crops.crops, args.out, targets=args.targets, times=crops.times,
                           face_found=crops.face_found, fps=fps,
                           animation=args.animation,
                           progress=not args.quiet)
    print("wrote " + ", ".join(str(path) for path in result.files))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command (also used to document the CLI)."""
    parser = argparse.ArgumentParser(
        prog="coreaffect",
        description="Valence and arousal from facial video: the hidden route, a core-affect "
                    "prior and its dynamics.")
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    synth = commands.add_parser(
        "synth", help="write a synthetic corpus of facial videos with known valence-arousal",
        description="Write a synthetic corpus: videos of procedurally rendered faces whose "
                    "expression follows an Ornstein-Uhlenbeck valence-arousal trajectory, with "
                    "annotations in the DANTE format and the per-frame truth.",
        epilog=_EPILOG_SYNTH, formatter_class=argparse.RawDescriptionHelpFormatter)
    synth.add_argument("out", type=Path, help="folder to write: new, empty or an earlier "
                       "synthetic corpus, which is replaced once the new one is complete "
                       "(refused if its folders hold files it did not write)")
    synth.add_argument("--videos", type=_positive_int, default=23, help="number of videos")
    synth.add_argument("--seconds", type=_positive_float, default=40.0, help="length of each")
    synth.add_argument("--fps", type=_positive_float, default=25.0, help="frame rate")
    synth.add_argument("--seed", type=_seed, default=0, help="seed of everything random")
    synth.add_argument("--quiet", action="store_true", help="no progress bar")
    synth.set_defaults(handler=_synth)

    train = commands.add_parser(
        "train", help="fit the hidden route, prior and dynamics into a run directory",
        description="Fit the hidden route on the training videos of DATA, then the affect "
                    "manifold, the prior (calibrated on the validation videos) and the "
                    "dynamics, and write the run directory RUN (weights, configuration, "
                    "training log, video split, stage timings). The "
                    "videos are split deterministically by --seed: --test-videos are held out "
                    "for 'coreaffect evaluate', --val-videos of the rest steer early stopping.",
        epilog=_EPILOG_TRAIN, formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("data", type=Path, help="dataset folder")
    train.add_argument("--out", type=Path, required=True, metavar="RUN", help="run directory")
    _add_format(train)
    train.add_argument("--preset", choices=PRESETS, default="lite",
                       help="network preset (default: lite)")
    train.add_argument("--epochs", type=_positive_int, default=None,
                       help="most epochs (default 400: a budget or early stopping ends sooner)")
    train.add_argument("--max-minutes", type=_positive_float, default=None,
                       help="training budget (face cropping comes before it); training stops "
                            "cleanly when it is spent")
    train.add_argument("--test-videos", type=_count, default=None,
                       help="videos held out for evaluation (default: 10 of 23, the paper's "
                            "share; 0 trains on all)")
    train.add_argument("--val-videos", type=_count, default=None,
                       help="training videos used for validation (default: a fifth, at least 1)")
    train.add_argument("--people", type=Path, default=None, metavar="CSV",
                       help="the person in each video (columns video,person): a person's "
                            "videos then stay on one side of the test, validation and training "
                            "split (default: each video is a person of its own)")
    train.add_argument("--validate-every", type=_positive_int, default=1, metavar="N",
                       help="validate every N-th epoch (default 1; with many validation videos "
                            "a higher N leaves more of a time budget to training)")
    _add_stage_options(train)
    train.add_argument("--config", type=Path, default=None, metavar="TOML",
                       help="data settings to change (video, faces, annotations, clips) as TOML; "
                            "the others keep their defaults")
    again = train.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue the run in OUT (an interrupted one, or one to train "
                            "on); --epochs and --max-minutes are this command's, not the run's "
                            "(default 400 and none): give those it started with to keep its "
                            "learning-rate schedule (more stretch it, and the rate rises "
                            "again)")
    again.add_argument("--overwrite", action="store_true",
                       help="replace the run in OUT (without this, a run there is refused)")
    train.add_argument("--hidden-route-only", action="store_true",
                       help="skip the manifold, prior and dynamics")
    train.add_argument("--seed", type=_seed, default=0, help="seed of the split and training")
    _add_common(train)
    train.set_defaults(handler=_train)

    refit = commands.add_parser(
        "refit", help="fit a run's manifold, prior and dynamics again, into a new run",
        description="Fit the manifold, the prior and the dynamics of a trained run again, with "
                    "other options, on the same training and validation videos, without "
                    "retraining the hidden route. OUT is a new run directory, written whole "
                    "or not at all; RUN keeps its results (only face crops missing from its "
                    "cache are added). Options not given keep the values RUN was fitted with.",
        epilog=_EPILOG_REFIT, formatter_class=argparse.RawDescriptionHelpFormatter)
    refit.add_argument("run", type=Path, help="run directory written by 'coreaffect train'")
    refit.add_argument("--out", type=Path, required=True, help="new run directory (created)")
    refit.add_argument("--data", type=Path, default=None,
                       help="dataset folder (default: the one RUN was trained on)")
    _add_stage_options(refit, of_run=True)
    _add_common(refit)
    refit.set_defaults(handler=_refit)

    evaluate = commands.add_parser(
        "evaluate", help="per-video and pooled metrics of a run on a dataset",
        description="Score the run's per-frame estimates on the test videos of DATA (those "
                    "held out when RUN was trained), or on all of them with --subset all, for "
                    "each stage the run has: raw (hidden route), prior, smoothed, filtered "
                    "(causal) and lagged (fixed-lag). Frames count when they have a label and "
                    "a face. Each stage's difference from raw comes with a 95% interval over "
                    "resampled videos (people, with --people or a run split by person): one "
                    "that includes zero means these videos cannot tell the two apart.",
        epilog=_EPILOG_EVALUATE, formatter_class=argparse.RawDescriptionHelpFormatter)
    evaluate.add_argument("run", type=Path, help="run directory")
    evaluate.add_argument("data", type=Path, help="dataset folder")
    _add_format(evaluate)
    _add_scoring(evaluate, "the run's held-out videos", "the metrics and their 95%% intervals",
                 intervals_optional=True)
    _add_common(evaluate)
    evaluate.set_defaults(handler=_evaluate)

    compare = commands.add_parser(
        "compare", help="two runs on the same videos, with paired intervals",
        description="Score RUN_A and RUN_B on the same videos of DATA (those both held out, or "
                    "all of them with --subset all), on the frames where both found a face, "
                    "and give every stage they share, in each run and as B minus A, a 95% "
                    "interval over resampled videos. The resampling is paired, so the "
                    "difference's interval says whether B differs from A on people like these.",
        epilog=_EPILOG_COMPARE, formatter_class=argparse.RawDescriptionHelpFormatter)
    compare.add_argument("run_a", type=Path, help="run directory A (the reference)")
    compare.add_argument("run_b", type=Path, help="run directory B")
    compare.add_argument("data", type=Path, help="dataset folder")
    _add_format(compare)
    _add_scoring(compare, "the videos both runs held out", "the comparison",
                 intervals_optional=False, whose="RUN_A", both=True)
    _add_common(compare)
    compare.set_defaults(handler=_compare)

    predict = commands.add_parser(
        "predict", help="valence-arousal trajectory of a video with credible bands",
        description="Crop the faces of VIDEO as RUN was trained and write one CSV row per "
                    "frame of the video from the first that decodes (frames without a face, "
                    "and frames dropped or undecodable, included: face_found = 0): frame, "
                    "time, valence, arousal, their central credible bands at --level, "
                    "variances, and the latent posterior mean. Offline (the default) uses the "
                    "smoother over the whole video; --causal the filter, with what is known at "
                    "each frame; "
                    "--lagged the fixed-lag smoother, with what is known a few frames later "
                    "(the run's lag, 8 frames unless trained otherwise).",
        epilog=_EPILOG_PREDICT, formatter_class=argparse.RawDescriptionHelpFormatter)
    predict.add_argument("run", type=Path, help="run directory")
    predict.add_argument("video", type=Path, help="video file or frame folder")
    predict.add_argument("--out", type=Path, default=None, metavar="CSV",
                         help="CSV file to write (default: standard output)")
    predict.add_argument("--plot", type=Path, default=None, metavar="PNG",
                         help="also draw the trajectory")
    _add_overwrite(predict, "replace existing --out and --plot files whatever they hold; "
                   "without it, only an empty file is replaced, or a trajectory CSV (--out), or a "
                   "PNG, PDF, SVG or PostScript figure whose metadata say coreaffect drew it "
                   "(--plot)")
    online = predict.add_mutually_exclusive_group()
    online.add_argument("--causal", action="store_true",
                        help="filter only: each frame from the frames up to it (a live "
                             "system's view, with a fixed latency: 23 frames with the paper "
                             "preset, 19 with lite, under 1 s at 25 fps)")
    online.add_argument("--lagged", action="store_true",
                        help="fixed-lag smoother: each frame from the frames up to the run's "
                             "lag after it (a live system's view, that many frames later)")
    _add_trajectory_options(predict)
    predict.add_argument("--quiet", action="store_true", help="no progress bars")
    predict.set_defaults(handler=_predict)

    stream = commands.add_parser(
        "stream", help="live valence-arousal of a camera, file or frame folder, row by row",
        description="Crop the faces of SOURCE as RUN was trained and write one CSV row per "
                    "frame as soon as it is known, with the columns of 'predict': with the "
                    "filter (the default), a fixed latency after the frame (23 frames with the "
                    "paper preset, 19 with lite: under a second at 25 fps); "
                    "with --lagged, the run's lag later. SOURCE is a video file, a frame "
                    "folder, or a camera index (0 is the first camera). Each row is flushed as "
                    "it is written. A camera runs until Ctrl-C (or SIGTERM): the first ends "
                    "the stream and writes the rows of its last frames, a second quits at "
                    "once, keeping the rows written.",
        epilog=_EPILOG_STREAM, formatter_class=argparse.RawDescriptionHelpFormatter)
    stream.add_argument("run", type=Path, help="run directory (with its prior and dynamics)")
    stream.add_argument("video", type=Path, metavar="source",
                        help="video file, frame folder or camera index")
    stream.add_argument("--out", type=Path, default=None, metavar="CSV",
                        help="CSV file to write (default: standard output)")
    _add_overwrite(stream, "replace an existing --out file (without it, only an empty one is "
                   "replaced: a stream writes its file as it goes)")
    stream.add_argument("--lagged", action="store_true",
                        help="fixed-lag smoother: each row the run's lag later than the "
                             "filter's, from the frames up to then")
    _add_trajectory_options(stream)
    stream.set_defaults(handler=_stream)

    demo = commands.add_parser(
        "demo", help="the paper's experiment end to end on a synthetic corpus",
        description="Generate a synthetic corpus of 33 facial videos of 40 s, train the hidden "
                    "route (lite preset, time-budgeted) on 13, fit the manifold and the prior, "
                    "validate, calibrate and fit the dynamics on 10 more, evaluate on the "
                    "other 10, and write "
                    "DIR/report.md with the per-video table (the paper's Table 2), figures, "
                    "and the run in DIR/run.",
        epilog=_EPILOG_DEMO, formatter_class=argparse.RawDescriptionHelpFormatter)
    demo.add_argument("--out", type=Path, default=Path("demo_output"), metavar="DIR",
                      help="folder to write: new, empty or an earlier demo's, which is "
                           "replaced once the new one is complete (default: demo_output)")
    demo.add_argument("--quick", action="store_true",
                      help="a small corpus and a short budget (a smoke test, under a minute)")
    demo.add_argument("--max-minutes", type=_positive_float, default=None,
                      help="training budget (default 9, or 0.33 with --quick)")
    demo.add_argument("--seed", type=_seed, default=0, help="seed of corpus, split and training")
    demo.add_argument("--device", type=_device, default="cpu",
                      help="cpu, cuda, cuda:1, ...")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(handler=_demo)

    saliency = commands.add_parser(
        "saliency", help="3D Grad-CAM maps of a run's hidden route on a video",
        description="Crop the faces of VIDEO as RUN was trained, explain every 16-frame window "
                    "with 3D Grad-CAM, and write into DIR a frame grid (PNG) and an animation "
                    "of the maps blended on the crops, with the estimates written on them.",
        epilog=_EPILOG_SALIENCY, formatter_class=argparse.RawDescriptionHelpFormatter)
    saliency.add_argument("run", type=Path, help="run directory")
    saliency.add_argument("video", type=Path, help="video file or frame folder")
    saliency.add_argument("--out", type=Path, required=True, metavar="DIR",
                          help="folder to write (created)")
    _add_overwrite(saliency, "replace the files this writes in DIR whatever they hold "
                   "(saliency_grid.png and saliency.gif or .mp4); without it, DIR may hold none "
                   "of them")
    saliency.add_argument("--targets", nargs="+", choices=SALIENCY_TARGETS,
                          default=["valence", "arousal"], help="outputs to explain")
    saliency.add_argument("--animation", choices=("gif", "mp4", "none"), default="gif",
                          help="animation format (GIF files grow fast: ~40 MB a minute)")
    saliency.add_argument("--start", type=_count_float, default=0.0, metavar="SECONDS",
                          help="explain from this time on (default: the start)")
    saliency.add_argument("--seconds", type=_positive_float, default=None,
                          help="explain this long a segment (default: to the end); the "
                               "segment's crops, maps and animation frames are held in memory, "
                               "so explain a long video a segment at a time")
    _add_source(saliency)
    saliency.add_argument("--device", type=_device, default="cpu",
                          help="cpu, cuda, cuda:1, ...")
    saliency.add_argument("--quiet", action="store_true", help="no progress bars")
    saliency.set_defaults(handler=_saliency)
    return parser


def _add_format(parser: argparse.ArgumentParser) -> None:
    from coreaffect.annotations import FORMATS

    parser.add_argument("--format", default="auto", choices=("auto", *FORMATS),
                        help="annotation format (default: told from the layout)")


def _add_stage_options(parser: argparse.ArgumentParser, *, of_run: bool = False) -> None:
    """Options of the later stages (manifold, prior, dynamics); ``of_run``: their defaults are
    the values the run was fitted with (refit)."""
    parser.add_argument("--lag", type=_count, default=None, metavar="FRAMES",
                        help="look-ahead of the lagged stage (predict --lagged), whose bands are "
                             "calibrated with the others; 0: none (default: "
                             + ("RUN's)" if of_run else "8, 0.32 s at 25 fps)"))
    parser.add_argument("--manifold", choices=("vae", "gplvm"), default=None,
                        help="decoder of the affect manifold: a neural network (vae) or a "
                             "Gaussian process (gplvm) (default: "
                             + ("RUN's)" if of_run else "vae)"))
    parser.add_argument("--calibration-levels", type=_probability, nargs="+", default=None,
                        metavar="P",
                        help="levels at which the prior's and the dynamics' bands are "
                             "calibrated on the validation videos, one factor per dimension "
                             "for all of them (default: "
                             + ("RUN's)" if of_run else "0.5 0.9)"))


def _add_scoring(parser: argparse.ArgumentParser, held_out: str, written: str, *,
                 intervals_optional: bool, whose: str = "the run", both: bool = False) -> None:
    """--subset, --json and --resamples of the commands that score runs on videos; ``whose``
    people and delay are the defaults (``both``: for both runs)."""
    default = "default, for both runs" if both else "default"
    parser.add_argument("--subset", choices=("test", "all"), default="test",
                        help=f"{held_out} (default) or every video of DATA")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE",
                        help=f"write {written} as JSON")
    _add_overwrite(parser, "replace an existing --json file whatever it holds; without it, "
                   "only an empty file or a metrics file of evaluate or compare is replaced")
    parser.add_argument("--resamples", type=_resamples(intervals_optional),
                        default=2000, metavar="N",
                        help="resamples of the videos (or people) for the 95%% intervals "
                             "(default 2000, at least 400"
                             + ("; 0: none)" if intervals_optional else ")"))
    parser.add_argument("--people", type=Path, default=None, metavar="CSV",
                        help="the person in each video (columns video,person): the intervals "
                             f"then resample people, each with all their videos ({default}: "
                             f"the people {whose} was split with, on its own dataset; else each "
                             "video is a person of its own)")
    parser.add_argument("--delay", type=_finite_float, default=None, metavar="SECONDS",
                        help="the annotators' delay of DATA's labels, which are read that much "
                             f"earlier ({default}: {whose}'s own on the dataset it was "
                             "trained on, a synthetic corpus's own, else 0)")


def _add_source(parser: argparse.ArgumentParser) -> None:
    """--fps and --first-index of the commands that read one video."""
    parser.add_argument("--fps", type=_positive_float, default=None,
                        help="frame rate of a frame folder (default: the run's setting, else "
                             "that of the run's dataset format's folders: 30 for Aff-Wild2, "
                             "else 25); for a video file, a rate that replaces its own (a raw "
                             ".h264 or .mjpeg stream, whose rate FFmpeg guesses)")
    parser.add_argument("--first-index", type=_first_index, default=None, metavar="N",
                        help="number of a frame folder's first image (default: that of the "
                             "run's dataset format: 1 for Aff-Wild2, else 0)")


def _add_trajectory_options(parser: argparse.ArgumentParser) -> None:
    """--level, the source's options, --seed and --device of predict and stream."""
    parser.add_argument("--level", type=_probability, default=0.9,
                        help="band probability (0.9)")
    _add_source(parser)
    parser.add_argument("--seed", type=_decoding_seed, default=0,
                        help="seed of the decoding draws")
    parser.add_argument("--device", type=_device, default="cpu", help="cpu, cuda, cuda:1, ...")


def _add_overwrite(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument("--overwrite", action="store_true", help=text)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", type=_device, default="cpu",
                        help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--cache", type=Path, default=None, metavar="DIR",
                        help="face-crop cache (default: RUN/crops)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _version() -> str:
    from coreaffect import __version__

    return f"coreaffect {__version__}"


def _bounded(kind: type, low: float, *, above: bool = False, below: float | None = None
             ) -> Callable[[str], Any]:
    """An argparse type: a finite number of ``kind`` that is at least ``low`` (above it with
    ``above``) and, with ``below``, under that; NaN and infinities are refused."""
    def parse(text: str) -> Any:
        value = kind(text)
        fits = (value > low if above else value >= low) and (below is None or value < below)
        if not fits or (kind is float and not math.isfinite(value)):  # NaN fits nothing
            wanted = f"{'>' if above else '>='} {low:g}"
            if below is not None:  # an integer in full: 2**64 is not 1.84467e+19
                wanted += f" and < {below:g}" if kind is float else f" and < {below}"
            elif kind is float:
                wanted = "finite" if low == -math.inf else f"finite and {wanted}"
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {value}")
        return value

    parse.__name__ = kind.__name__  # argparse names it in "invalid int value: ..."
    return parse


def _resamples(optional: bool) -> Callable[[str], int]:
    """An argparse type: enough resamples for 95% intervals
    (:func:`~coreaffect.bootstrap.min_resamples`), or 0 (none) where they are ``optional``."""
    def parse(text: str) -> int:
        from coreaffect.bootstrap import min_resamples

        value, least = int(text), min_resamples(0.95)
        if value < least and not (optional and value == 0):
            raise argparse.ArgumentTypeError(
                f"must be {'0 (no intervals) or ' if optional else ''}at least {least} (10 "
                f"draws beyond each end of a 95% interval), got {value}")
        return value

    parse.__name__ = "int"  # argparse names it in "invalid int value: ..."
    return parse


_count = _bounded(int, 0)
_positive_int = _bounded(int, 1)
_count_float = _bounded(float, 0)
_positive_float = _bounded(float, 0, above=True)
_probability = _bounded(float, 0, above=True, below=1)
_finite_float = _bounded(float, -math.inf, above=True)
_seed = _bounded(int, 0, below=2**64)  # what torch's generators take
_decoding_seed = _bounded(int, 0, below=2**63)  # CoreAffect's random_state, a signed int64
_first_index = _bounded(int, 0, below=2**62)  # what coreaffect.video.VideoSource takes


def _device(text: str) -> str:
    from coreaffect.devices import check_device

    try:
        check_device(text)
    except CoreAffectError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


# what a run directory holds (coreaffect.checkpoint): never an output of another command
_RUN_FILES = {*(f"{name}.{kind}" for name in ("hidden_route", "manifold", "prior", "dynamics")
                for kind in ("json", "safetensors")), "bands.json", "split.json", "stages.json"}


def _in_run(path: Path, run: Path) -> bool:
    """Whether writing ``path`` would replace a file of the run directory ``run``."""
    target, home = path.resolve(), run.resolve()
    if target == home:
        return True
    if home not in target.parents:
        return False
    inside = target.relative_to(home)
    return inside.parts[0] in ("training", "crops") or str(inside) in _RUN_FILES


def _check_outputs(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Usage errors (exit 2), before any work, for outputs that would replace an input, a run's
    files or each other, or that cannot be written where they are asked for."""
    def refuse(message: str) -> None:
        parser.error(f"{args.command}: {message}")

    if args.command == "predict" and args.plot and not args.plot.suffix and not (
            args.plot.exists() or args.plot.is_symlink()):  # a pipe, a device or a folder: as is
        args.plot = args.plot.with_suffix(".png")  # what matplotlib writes: say it, check it
    if args.command == "saliency" and args.animation == "none":
        args.animation = ""  # as explain_video takes it
    try:
        _check_paths(args, refuse)
    except (OSError, RuntimeError) as err:  # a symbolic-link loop, an unreadable folder
        refuse(f"an output path cannot be used: {err}")


def _same(path: Path, other: Path) -> bool:
    """The same file: one path, or two names of one file (links)."""
    if path.resolve() == other.resolve():
        return True
    return path.exists() and other.exists() and os.path.samefile(path, other)


# predict --plot signs its figures in their metadata: the key of each format that has one, and
# how the file holds it; the marks of a figure are near its start, a PDF's near its end
PLOT_MARK = "coreaffect predict"
_PLOT_METADATA = {"png": ("Software", rb"tEXtSoftware\0%s"),
                  "pdf": ("Creator", rb"/Creator \(%s\)"),
                  "svg": ("Creator", rb"<dc:creator>\s*<cc:Agent>\s*<dc:title>%s</dc:title>"),
                  "ps": ("Creator", rb"%%%%Creator: %s\r?\n")}
_PLOT_METADATA.update(svgz=_PLOT_METADATA["svg"], eps=_PLOT_METADATA["ps"])


def _signed(path: Path, scan: int = 1 << 20) -> bool:
    """Whether the figure ``path`` carries :data:`PLOT_MARK` in its metadata."""
    kind = path.suffix[1:].lower()
    pattern = _PLOT_METADATA[kind][1] % re.escape(PLOT_MARK.encode())
    try:
        with (gzip.open if kind == "svgz" else open)(path, "rb") as handle:
            data = handle.read(scan)
            if kind == "pdf":  # and its end, where the Info dictionary is
                handle.seek(max(scan, handle.seek(0, os.SEEK_END) - scan))
                data += handle.read()
    except (EOFError, gzip.BadGzipFile, zlib.error):  # not an svgz, a cut or a broken one
        return False
    return re.search(pattern, data) is not None


def _foreign(option: str, path: Path) -> str:
    """Why an existing regular file may not be replaced by ``option``'s output (it is not
    one coreaffect wrote, e.g. a video's annotation file), or ``""`` when it may: no file, an
    empty one, a pipe or a device, or a file of the kind the option writes."""
    if not path.is_file() or path.stat().st_size == 0:
        return ""
    if option == "--plot":
        kind = path.suffix[1:].lower()
        if not kind:
            return "has no suffix, so it is not known to be a figure coreaffect drew"
        if kind not in _PLOT_METADATA:
            return f"is not known to be a figure coreaffect drew: a .{kind} file cannot say so"
        return "" if _signed(path) else "is not marked as a figure coreaffect drew"
    if option == "--out":
        from coreaffect.trajectory import AffectTrajectory

        with path.open("rb") as handle:
            first = handle.readline(4096).lstrip(b"\xef\xbb\xbf").decode("utf-8", "replace")
        if first.strip().split(",")[:11] == AffectTrajectory._fields_csv():
            return ""
        return f"is not a trajectory CSV (its first line is {first.strip()[:60]!r})"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:  # not UTF-8, not JSON
        data = None
    return "" if _is_metrics(data) else "is not a metrics file of coreaffect"


def _is_metrics(data: Any) -> bool:
    """Whether ``data`` is what ``evaluate --json`` writes, ``{stage: {dimension: {metric:
    {"per_video", "mean", "pooled", ...}}}}``, or ``compare --json``, ``{"videos": [...], stage:
    {"a", "b", "b_minus_a"}}``, each of these ``{dimension: {metric: {"mean", "mean_ci",
    "pooled", "pooled_ci"}}}``; either with ``"people"`` (``{video: person}``) when it
    resampled people."""
    from coreaffect.metrics import DIMENSIONS
    from coreaffect.pipeline import STAGES

    def table(entry: Any, keys: set[str]) -> bool:
        return (isinstance(entry, dict) and set(entry) == set(DIMENSIONS)
                and all(isinstance(metrics, dict) and metrics
                        and all(isinstance(v, dict) and keys <= set(v) for v in metrics.values())
                        for metrics in entry.values()))

    if not isinstance(data, dict):
        return False
    lists = {"videos", "people"}  # compare --json's besides its stages
    stages = [data[k] for k in data if k not in lists]
    if not stages or not set(data) - lists <= set(STAGES):
        return False
    if not isinstance(data.get("people", {}), dict):
        return False
    if "videos" not in data:
        return all(table(stage, {"per_video", "mean", "pooled"}) for stage in stages)
    return isinstance(data["videos"], list) and all(
        isinstance(stage, dict) and set(stage) == {"a", "b", "b_minus_a"}
        and all(table(side, {"mean", "mean_ci", "pooled", "pooled_ci"}) for side in stage.values())
        for stage in stages)


def _unwritable(folder: Path) -> str:
    """Why no file can be written in ``folder`` (created if missing), or ``""``: the nearest
    of it and its ancestors that exists is not a folder, or not a writable one."""
    for existing in (folder, *folder.parents):
        if os.path.lexists(existing):
            break
    if not existing.is_dir():
        return f"{existing} is not a folder"
    if not os.access(existing, os.W_OK):
        return f"{existing} is not writable"
    try:  # permissions are not all: a read-only mount, /sys or /proc refuse even root
        handle, probe = tempfile.mkstemp(dir=existing, prefix=".coreaffect-probe-")
    except OSError as err:
        return f"{existing} is not writable ({err.strerror or err})"
    os.close(handle)
    os.unlink(probe)
    return ""


def _check_paths(args: argparse.Namespace, refuse: Callable[[str], None]) -> None:
    runs = [getattr(args, key) for key in ("run", "run_a", "run_b") if hasattr(args, key)]
    video = getattr(args, "video", None)
    files = [(f"--{key}", getattr(args, key)) for key in ("out", "plot", "json")
             if args.command in ("predict", "stream", "evaluate", "compare")
             and getattr(args, key, None)]
    for option, path in files:
        if path.is_dir():
            refuse(f"{option} {path} is a folder; give a file name")
        in_place = path.exists() and not path.is_file()  # a pipe or a device, written to as is
        folder = (path.resolve() if path.is_symlink() else path).parent  # of the new file
        if not in_place and (reason := _unwritable(folder)):
            refuse(f"{option} {path} cannot be written: {reason}")
        if any(_in_run(path, run) for run in runs):
            refuse(f"{option} {path} would replace a file of the run directory")
        if video is not None and _same(path, video):
            refuse(f"{option} {path} is the input video")
        if video is not None and video.is_dir() and video.resolve() in path.resolve().parents:
            refuse(f"{option} {path} is inside the input frame folder")
        if option == "--json" and path.exists() and (name := _dataset_file(args, path)):
            refuse(f"{option} {path} is {name}, in the dataset {args.data}")
        if getattr(args, "people", None) is not None and _same(path, args.people):
            refuse(f"{option} {path} is the --people file")
        if getattr(args, "data", None) is not None:
            from coreaffect.synthetic import MANIFEST

            if (args.data / MANIFEST).exists() and _same(path, args.data / MANIFEST):
                refuse(f"{option} {path} is the manifest of the synthetic corpus {args.data}")
        if (args.command == "stream" and not args.overwrite and path.is_file()
                and path.stat().st_size):
            refuse(f"{option} {path} exists, and a stream writes its file as it goes; give "
                   "another name, or --overwrite to replace it")
        if not getattr(args, "overwrite", True):
            foreign = _foreign(option, path)
            if foreign:
                refuse(f"{option} {path} exists and {foreign}; give another name, or --overwrite "
                       "to replace it")
    if args.command == "predict" and args.out and args.plot and _same(args.out, args.plot):
        refuse(f"--out and --plot are the same file, {args.out}")
    if args.command == "predict" and args.plot:
        from matplotlib.backend_bases import FigureCanvasBase

        kinds = FigureCanvasBase.get_supported_filetypes()
        kind = args.plot.suffix[1:].lower() or "png"  # a pipe or a device: as _write_plot
        if kind not in kinds:
            refuse(f"--plot {args.plot}: matplotlib cannot write .{kind} files; use one of "
                   f"{', '.join(sorted(kinds))}")
        if kind == "pgf":
            import shutil

            import matplotlib

            tex = matplotlib.rcParams["pgf.texsystem"]
            if shutil.which(tex) is None:
                refuse(f"--plot {args.plot}: a .pgf figure needs {tex}, which is not "
                       "installed; choose another format, such as .png or .pdf")
    if args.command == "saliency":
        out = args.out
        if out.exists() and not out.is_dir():
            refuse(f"--out {out} is a file; give a folder")
        if reason := _unwritable(out):
            refuse(f"--out {out} cannot be written: {reason}")
        if _in_run(out, args.run):
            refuse(f"--out {out} is inside the run directory's own files")
        if video.is_dir() and (_same(out, video) or video.resolve() in out.resolve().parents):
            refuse(f"--out {out} is the input frame folder, or inside it")
        from coreaffect.saliency import explanation_files

        for path in explanation_files(out, args.animation):
            if _same(path, video):
                refuse(f"--out {out} would write {path.name} over the input video {video}")
            if path.is_dir():
                refuse(f"--out {out} holds a folder {path.name}, where a file is to be written")
            if os.path.lexists(path) and not args.overwrite:
                refuse(f"--out {out} holds {path.name} already; give another folder, or "
                       "--overwrite to replace it")


def _dataset_file(args: argparse.Namespace, path: Path) -> str:
    """What ``path`` is among the videos and annotations of the dataset scored (``""``: none
    of them, or a dataset that cannot be read yet, whose own error comes later)."""
    from coreaffect.corpus import discover

    try:
        recordings = discover(args.data, args.format)
    except CoreAffectError:
        return ""
    target = path.resolve()
    for recording in recordings:
        for what, item in (("video", recording.video), ("annotation", recording.annotation)):
            if _same(path, item):
                return f"the {what} of {recording.id}"
            if item.is_dir() and item.resolve() in target.parents:
                return f"inside the {what} folder of {recording.id}"
    return ""


def _stdout_is_a_pipe() -> bool:
    try:
        return stat.S_ISFIFO(os.fstat(sys.stdout.fileno()).st_mode)
    except (OSError, ValueError, AttributeError):
        return False


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_outputs(parser, args)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        with warnings.catch_warnings(), _terminated_as_interrupt():
            warnings.simplefilter("ignore", CoreAffectWarning)  # logged too: shown once
            return args.handler(args)
    except CoreAffectError as err:
        print(f"coreaffect {args.command}: error: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError as err:
        if not _stdout_is_a_pipe():  # a file or a named pipe of an option broke: an error
            print(f"coreaffect {args.command}: error: {err}", file=sys.stderr)
            return 1
        # the reader of stdout stopped (| head): stop quietly, as command-line tools do, with
        # stdout pointed at nothing so that the interpreter's last flush cannot fail again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 141
    except OSError as err:  # a file that cannot be read or written: the OS names it
        print(f"coreaffect {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"coreaffect {args.command}: interrupted", file=sys.stderr)
        return 130


@contextmanager
def _terminated_as_interrupt() -> Iterator[None]:
    """For the block, SIGTERM (a scheduler's time limit, ``kill``) stops a command as Ctrl-C
    does, so that it puts back what it set aside and removes its partial files; the previous
    handler is restored afterwards (in the main thread only, where Python takes signals)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(number: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
