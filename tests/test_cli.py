"""Command line: help, exit codes 0 / 1 / 2, and errors without a traceback."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from coreaffect.cli import build_parser, main


def _run(*args: str) -> subprocess.CompletedProcess:
    """The command as a user types it, in a new process."""
    return subprocess.run([sys.executable, "-m", "coreaffect", *args],
                          capture_output=True, text=True)


def _main(*args: str) -> subprocess.CompletedProcess:
    """The command run by :func:`main` in this process, which spares a new process's imports:
    for usage errors and the errors main prints (its logged warnings go to pytest's logging
    instead of stderr)."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as done:  # argparse: usage errors and --help
            code = done.code
    return subprocess.CompletedProcess(["coreaffect", *args], code, out.getvalue(),
                                       err.getvalue())


def test_help_lists_commands():
    result = _run("--help")
    assert result.returncode == 0
    assert "synth" in result.stdout


@pytest.mark.parametrize("command", ["synth", "train", "refit", "evaluate", "compare", "saliency",
                                     "predict", "stream", "demo"])
def test_every_command_has_help(command):
    result = _main(command, "--help")
    assert result.returncode == 0 and "usage: coreaffect" in result.stdout


def test_bad_usage_exits_2():
    assert _run().returncode == 2
    assert _main("no-such-command").returncode == 2
    result = _main("synth", "out", "--videos", "0")
    assert result.returncode == 2 and "must be >= 1" in result.stderr
    result = _main("evaluate", "run", "data", "--resamples", "399")  # 0 turns intervals off
    assert result.returncode == 2 and "--resamples: must be 0 (no intervals) or at least 400 " \
        "(10 draws beyond each end of a 95% interval), got 399" in result.stderr
    result = _main("compare", "a", "b", "data", "--resamples", "0")  # compare needs intervals
    assert result.returncode == 2 and "--resamples: must be at least 400" in result.stderr
    result = _main("train", "data", "--out", "run", "--resume", "--overwrite")
    assert result.returncode == 2 and "not allowed with" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["synth", "out", "--seconds", "inf"], "--seconds: must be finite and > 0, got inf"),
    (["synth", "out", "--fps", "nan"], "--fps: must be finite and > 0, got nan"),
    (["synth", "out", "--seed", "-1"], f"--seed: must be >= 0 and < {2**64}, got -1"),
    (["demo", "--seed", "-2"], f"--seed: must be >= 0 and < {2**64}, got -2"),
    (["train", "data", "--out", "run", "--max-minutes", "inf"], "--max-minutes: must be finite"),
    (["train", "data", "--out", "run", "--test-videos", "-1"], "--test-videos: must be >= 0"),
    (["train", "data", "--out", "run", "--val-videos", "-1"], "--val-videos: must be >= 0"),
    (["train", "data", "--out", "run", "--preset", "huge"], "invalid choice: 'huge'"),
    (["predict", "run", "v.mp4", "--seed", str(2**63)],  # the decoding's seed, an int64
     f"--seed: must be >= 0 and < {2**63}, got {2**63}"),
    (["stream", "run", "0", "--seed", str(2**63)], f"--seed: must be >= 0 and < {2**63}"),
    (["train", "data", "--out", "run", "--seed", str(2**64)], "--seed: must be >= 0 and <"),
    (["synth", "out", "--seed", "99999999999999999999"], "--seed: must be >= 0 and <"),
    (["demo", "--seed", str(2**70)], "--seed: must be >= 0 and <"),
    (["predict", "run", "v.mp4", "--first-index", "99999999999999999999"],
     "--first-index: must be >= 0 and <"),
    (["predict", "run", "v.mp4", "--first-index", str(2**62)], "--first-index: must be >= 0"),
])
def test_numbers_the_commands_cannot_use_are_usage_errors(args, message, capsys):
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(args)
    assert done.value.code == 2 and message in capsys.readouterr().err


def test_the_largest_numbers_the_commands_can_use_are_taken(tmp_path):
    import cv2
    import numpy as np

    from coreaffect.video import VideoSource

    args = build_parser().parse_args(["predict", "run", "v.mp4", "--seed", str(2**63 - 1),
                                      "--first-index", str(2**62 - 1)])
    assert (args.seed, args.first_index) == (2**63 - 1, 2**62 - 1)
    assert build_parser().parse_args(["train", "d", "--out", "r", "--seed", str(2**64 - 1)]).seed
    from coreaffect.config import DataConfig
    from coreaffect.hidden_route import create_model
    from coreaffect.pipeline import CoreAffect

    CoreAffect(create_model("lite"), DataConfig(), random_state=args.seed)  # predict takes it
    cv2.imwrite(str(tmp_path / f"{2**62 - 1}.png"), np.zeros((8, 8, 3), np.uint8))
    with VideoSource(tmp_path, first_index=args.first_index) as frames:  # what it takes
        assert [frame.index for frame in frames] == [0]


def test_the_latency_the_help_gives_is_the_presets():
    """The help of --causal and stream gives the causal latency of each preset in frames."""
    from coreaffect.config import DataConfig
    from coreaffect.hidden_route import create_model
    from coreaffect.pipeline import CoreAffect

    frames = {name: CoreAffect(create_model(name), DataConfig()).latency_frames
              for name in ("paper", "lite")}
    wanted = f"{frames['paper']} frames with the paper preset, {frames['lite']} with lite"
    for command in (["predict", "--help"], ["stream", "--help"]):
        assert wanted in " ".join(_main(*command).stdout.split()), command


def test_presets_match_the_library():
    from coreaffect.cli import PRESETS
    from coreaffect.hidden_route import MODELS

    assert sorted(PRESETS) == sorted(MODELS)


def test_clear_error_exits_1_without_traceback(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = _run("synth", str(blocker / "corpus"), "--videos", "1", "--seconds", "1",
                  "--quiet")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "error:" in result.stderr


def test_parser_commands_match_main():
    parser = build_parser()
    assert parser.prog == "coreaffect"
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0


def test_synth_train_evaluate_end_to_end(tmp_path):
    corpus, run = tmp_path / "corpus", tmp_path / "run"
    result = _run("synth", str(corpus), "--videos", "3", "--seconds", "4", "--quiet")
    assert result.returncode == 0, result.stderr
    result = _run("train", str(corpus), "--out", str(run), "--epochs", "1", "--test-videos", "1",
                  "--val-videos", "1", "--quiet")
    assert result.returncode == 0, result.stderr
    split = json.loads((run / "split.json").read_text())
    assert len(split["train"]) == 1 and len(split["val"]) == 1 and len(split["test"]) == 1
    metrics = tmp_path / "metrics.json"
    result = _run("evaluate", str(run), str(corpus), "--json", str(metrics), "--quiet")
    assert result.returncode == 0, result.stderr
    assert split["test"][0] in result.stdout and "pooled" in result.stdout
    assert "smoothed" in result.stdout and "filtered" in result.stdout
    assert "no 95% intervals: too few videos" in result.stdout  # one test video
    result = _run("evaluate", str(run), str(corpus), "--subset", "all", "--quiet")
    assert "95% intervals over resampled videos" in result.stdout  # three videos
    assert "filtered ccc diff" in result.stdout
    stages = json.loads(metrics.read_text())
    assert list(stages) == ["raw", "prior", "smoothed", "filtered", "lagged"]
    from coreaffect.cli import _foreign

    assert _foreign("--json", metrics) == ""  # evaluate may replace it
    for stage in stages.values():
        for dim in ("valence", "arousal"):
            for name in ("rmse", "ccc", "pcc", "sagr", "nll", "coverage_50", "coverage_90"):
                entry = stage[dim][name]
                assert {"per_video", "mean", "pooled", "mean_ci", "pooled_ci"} <= set(entry)
                assert list(entry["per_video"]) == split["test"]
    video = next((corpus / "videos").glob(f"{split['test'][0]}.*"))
    # the rest in this process: the commands above started as a user starts them
    csv_path, png = tmp_path / "t.csv", tmp_path / "t.png"
    result = _main("predict", str(run), str(video), "--out", str(csv_path), "--plot", str(png),
                  "--quiet")
    assert result.returncode == 0, result.stderr
    lines = csv_path.read_text().splitlines()
    assert lines[0].startswith("frame,time,valence,arousal")
    assert len(lines) - 1 == 100  # 4 s at 25 fps: one row per decoded frame
    assert png.stat().st_size > 0
    result = _main("predict", str(run), str(video), "--causal", "--level", "0.5", "--quiet")
    assert result.returncode == 0 and len(result.stdout.splitlines()) == 101
    result = _main("predict", str(run), str(video), "--lagged", "--quiet")
    assert result.returncode == 0 and len(result.stdout.splitlines()) == 101
    result = _main("predict", str(run), str(video), "--lagged", "--causal", "--quiet")
    assert result.returncode == 2 and "not allowed with" in result.stderr
    out = tmp_path / "saliency"
    result = _main("saliency", str(run), str(video), "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    assert (out / "saliency_grid.png").stat().st_size > 0
    assert (out / "saliency.gif").stat().st_size > 0
    result = _main("saliency", str(run), str(video), "--out", str(out), "--quiet",
                  "--seconds", "0.2", "--overwrite")
    assert result.returncode == 1 and "5 frames between 0 s and 0.2 s" in result.stderr


def test_saliency_targets_match_the_library():
    from coreaffect.cli import SALIENCY_TARGETS
    from coreaffect.saliency import TARGETS

    assert SALIENCY_TARGETS == TARGETS


def test_saliency_errors_are_clear(tmp_path):
    result = _main("saliency", str(tmp_path / "no-run"), str(tmp_path / "v.avi"), "--out",
                  str(tmp_path / "out"), "--quiet")
    assert result.returncode == 1 and "Traceback" not in result.stderr


def _frame_folder(video, folder: Path) -> Path:
    """The frames of ``video`` as numbered PNG images in ``folder``, from 00000.png."""
    import cv2

    from coreaffect.video import VideoSource

    folder.mkdir()
    with VideoSource(video) as source:
        for frame in source:
            cv2.imwrite(str(folder / f"{frame.index:05d}.png"),
                        cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR))
    return folder


def test_predict_takes_the_rate_of_a_frame_folder(tiny, tmp_path):
    folder = _frame_folder(tiny.video(), tmp_path / "frames")
    result = _run("predict", str(tiny.run), str(folder), "--fps", "50", "--causal", "--quiet")
    assert result.returncode == 0, result.stderr
    rows = [line.split(",") for line in result.stdout.splitlines()[1:]]
    assert len(rows) == 100 and float(rows[-1][1]) == pytest.approx(99 / 50)


def test_a_first_index_given_for_a_video_file_is_said_to_be_ignored(tiny, tmp_path):
    result = _run("predict", str(tiny.run), str(tiny.video()), "--first-index", "1", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "--first-index numbers the images of a frame folder" in result.stderr
    assert "is a video file" in result.stderr


def test_predict_reads_a_frame_folder_as_the_runs_dataset_format(tiny, tmp_path):
    import shutil

    import cv2

    from coreaffect.pipeline import CoreAffect
    from coreaffect.video import VideoSource

    run = tmp_path / "run"
    shutil.copytree(tiny.run, run, ignore=shutil.ignore_patterns("crops"))
    split = json.loads((run / "split.json").read_text())
    (run / "split.json").write_text(json.dumps({**split, "format": "aff-wild2"}))
    folder = tmp_path / "v1"  # Aff-Wild2's cropped_aligned: 00001.jpg is the first frame
    folder.mkdir()
    with VideoSource(tiny.video()) as video:
        for frame in video:
            cv2.imwrite(str(folder / f"{frame.index + 1:05d}.png"),
                        cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR))
    affect = CoreAffect.load(run)
    assert affect.folder_format == "aff-wild2"
    with affect.open_video(folder) as source:
        assert source.fps == 30.0 and [f.index for f in source][:2] == [0, 1]
    result = _run("predict", str(run), str(folder), "--causal", "--quiet")
    assert result.returncode == 0, result.stderr
    rows = [line.split(",") for line in result.stdout.splitlines()[1:]]
    assert rows[0][:2] == ["0", "0"] and len(rows) == 100
    assert float(rows[-1][1]) == pytest.approx(99 / 30)
    told = _run("predict", str(run), str(folder), "--causal", "--quiet", "--fps", "10",
                "--first-index", "0")  # the user's word wins: 00001.png is then frame 1
    rows = [line.split(",") for line in told.stdout.splitlines()[1:]]
    assert told.returncode == 0 and rows[0][:2] == ["1", "0.1"]


def test_saliency_of_a_segment(tiny, tmp_path):
    from PIL import Image

    result = _run("saliency", str(tiny.run), str(tiny.video()), "--out", str(tmp_path / "s"),
                  "--start", "1", "--seconds", "1", "--quiet")
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / "s" / "saliency.gif") as gif:
        assert gif.n_frames == 25  # one second at 25 fps
    result = _run("saliency", str(tiny.run), str(tiny.video()), "--out", str(tmp_path / "f"),
                  "--start", "1", "--seconds", "1", "--fps", "50", "--quiet")
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / "f" / "saliency.gif") as gif:
        assert gif.n_frames == 50  # the same second, read at the rate given
    result = _run("saliency", str(tiny.run), str(tiny.video()), "--out", str(tmp_path / "t"),
                  "--start", "60", "--quiet")
    assert result.returncode == 1 and "no frame from 60 s on" in result.stderr
    from coreaffect.video import VideoSource

    with VideoSource(tiny.video()) as video:
        last = max(frame.time for frame in video)
    start = round(last - 0.2, 2)  # 6 frames left at 25 fps
    result = _run("saliency", str(tiny.run), str(tiny.video()), "--out", str(tmp_path / "e"),
                  "--start", str(start), "--quiet")
    assert result.returncode == 1 and (f"6 frames from {start:g} s on, fewer than one "
                                       "16-frame clip") in result.stderr


def test_saliency_warns_of_a_video_without_a_face(tiny, tmp_path, caplog):
    import cv2

    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(tmp_path / "noface.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25,
                             (64, 48))
    for _ in range(20):
        writer.write(rng.integers(100, 130, (48, 64, 3), dtype=np.uint8))
    writer.release()
    with caplog.at_level(logging.WARNING):
        result = _main("saliency", str(tiny.run), str(tmp_path / "noface.avi"), "--out",
                       str(tmp_path / "maps"), "--animation", "none", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "noface.avi: no face found in any of its 20 frames, so the maps" in caplog.text


def test_evaluate_errors_are_clear(tmp_path):
    result = _main("evaluate", str(tmp_path / "no-run"), str(tmp_path), "--quiet")
    assert result.returncode == 1 and "no such run directory" in result.stderr
    assert "Traceback" not in result.stderr
    result = _main("train", str(tmp_path / "no-data"), "--out", str(tmp_path / "run"), "--quiet")
    assert result.returncode == 1 and "no such dataset folder" in result.stderr


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from coreaffect.demo import tiny_run

    return tiny_run(tmp_path_factory.mktemp("tiny"))


def _clear_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("coreaffect predict: error:")
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_predict_missing_video(tiny, tmp_path):
    _clear_error(_main("predict", str(tiny.run), str(tmp_path / "none.mp4"), "--quiet"),
                 "no such file")


def test_predict_unreadable_video(tiny, tmp_path):
    bad = tmp_path / "broken.avi"
    bad.write_bytes(b"\x00" * 1000)
    _clear_error(_main("predict", str(tiny.run), str(bad), "--quiet"), "broken.avi")


def test_predict_missing_run(tiny, tmp_path):
    _clear_error(_main("predict", str(tmp_path / "no-run"), str(tiny.video()), "--quiet"),
                 "no such run directory")


@pytest.mark.parametrize("component", ["hidden_route", "prior", "dynamics"])
def test_predict_run_from_an_incompatible_version(tiny, tmp_path, component):
    import shutil

    run = tmp_path / "old-run"
    shutil.copytree(tiny.run, run, ignore=shutil.ignore_patterns("crops"))
    meta = json.loads((run / f"{component}.json").read_text())
    meta["format"], meta["coreaffect"] = 99, "9.9.9"
    (run / f"{component}.json").write_text(json.dumps(meta))
    _clear_error(_main("predict", str(run), str(tiny.video()), "--quiet"),
                 "format 99", "Retrain")


def test_bad_option_values_are_usage_errors(tiny):
    for option in (["--level", "1.5"], ["--device", "cuda:99"], ["--device", "abacus"]):
        result = _main("predict", str(tiny.run), str(tiny.video()), *option, "--quiet")
        assert result.returncode == 2, (option, result.stderr)
        assert f"argument {option[0]}" in result.stderr and "Traceback" not in result.stderr
    assert "CUDA device" in _main("evaluate", "run", "data", "--device", "cuda:99").stderr


def test_predict_lagged_needs_a_run_with_a_lag(tiny, tmp_path):
    import shutil

    run = tmp_path / "no-lag"
    shutil.copytree(tiny.run, run, ignore=shutil.ignore_patterns("crops"))
    bands = json.loads((run / "bands.json").read_text())
    del bands["lag"]  # a run written before the lagged stage
    (run / "bands.json").write_text(json.dumps(bands))
    _clear_error(_main("predict", str(run), str(tiny.video()), "--lagged", "--quiet"),
                 "fitted with a lag")


def test_train_rejects_a_negative_lag(tmp_path):
    result = _main("train", str(tmp_path), "--out", str(tmp_path / "run"), "--lag", "-1",
                  "--quiet")
    assert result.returncode == 2 and "argument --lag: must be >= 0" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()
    result = _main("train", str(tmp_path), "--out", str(tmp_path / "run"), "--calibration-levels",
                  "0.5", "1")
    assert result.returncode == 2 and "argument --calibration-levels" in result.stderr
    assert not (tmp_path / "run").exists()
    result = _main("train", str(tmp_path), "--out", str(tmp_path / "run"), "--hidden-route-only",
                  "--lag", "4", "--manifold", "gplvm")
    assert result.returncode == 1 and ("--hidden-route-only fits no later stage, so --lag, "
                                       "--manifold would be ignored") in result.stderr
    assert not (tmp_path / "run").exists()


def test_refit_options_may_mend_a_hand_edited_setting(tiny, tmp_path, monkeypatch, capsys):
    import coreaffect.experiment as experiment
    from coreaffect.cli import main

    run = tmp_path / "run"
    shutil.copytree(tiny.run, run, ignore=shutil.ignore_patterns("crops"))
    stages = json.loads((run / "stages.json").read_text())
    stages["settings"]["lag"] = -4
    (run / "stages.json").write_text(json.dumps(stages))
    fitted = []
    monkeypatch.setattr(experiment, "refit_run", lambda run, out, settings, **kw: fitted.append(
        settings))
    assert main(["refit", str(run), "--out", str(tmp_path / "a")]) == 1
    assert "stages.json: FitSettings.lag must be an integer >= 0, got -4" in capsys.readouterr().err
    assert main(["refit", str(run), "--out", str(tmp_path / "b"), "--lag", "4", "--quiet"]) == 0
    assert [s.lag for s in fitted] == [4]


def test_refit_applies_the_options_given_and_keeps_the_runs_others(tiny, tmp_path):
    out = tmp_path / "gp"
    result = _run("refit", str(tiny.run), "--out", str(out), "--manifold", "gplvm", "--lag", "4",
                  "--calibration-levels", "0.9", "0.68", "--quiet")
    assert result.returncode == 0, result.stderr
    assert str(out) in result.stdout
    settings = json.loads((out / "stages.json").read_text())["settings"]
    before = json.loads((tiny.run / "stages.json").read_text())["settings"]
    assert settings["manifold_backend"] == "gplvm" and settings["lag"] == 4
    assert settings["calibration_levels"] == [0.68, 0.9]
    assert json.loads((out / "bands.json").read_text())["calibration_levels"] == [0.68, 0.9]
    assert settings["manifold_steps"] == before["manifold_steps"]  # the run's, not the default
    again = _run("refit", str(tiny.run), "--out", str(out), "--quiet")
    assert again.returncode == 1 and "not empty" in again.stderr
    assert "Traceback" not in again.stderr


def test_outputs_that_would_destroy_an_input_are_usage_errors(tiny, tmp_path, capsys):
    from coreaffect.cli import _in_run, main

    video, run = tiny.video(), tiny.run
    folder = tmp_path / "a-folder"
    folder.mkdir()
    frames = tmp_path / "frames"
    frames.mkdir()
    hard = tmp_path / "hard.png"  # another name of the video
    hard.hardlink_to(video)
    loop = tmp_path / "loop1"
    loop.symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(loop)
    manifest_link = tmp_path / "m.json"
    manifest_link.symlink_to(tiny.corpus / "synthetic_corpus.json")
    people = tmp_path / "people.csv"
    people.write_text("video,person\n" + "".join(f"{r.name[:-4]},p{i}\n" for i, r in enumerate(
        sorted((tiny.corpus / "videos").iterdir()))))
    cases = [
        (["predict", str(run), str(video), "--out", str(video)], "is the input video"),
        (["predict", str(run), str(video), "--out", str(run / "prior.json")],
         "run directory"),
        (["predict", str(run), str(video), "--out", str(run / "training" / "log.csv")],
         "run directory"),
        (["predict", str(run), str(video), "--out", str(folder)], "is a folder"),
        (["predict", str(run), str(video), "--plot", str(folder)], "is a folder"),
        (["predict", str(run), str(video), "--out", str(tmp_path / "a.png"), "--plot",
          str(tmp_path / "a.png")], "same file"),
        (["predict", str(run), str(video), "--plot", str(tmp_path / "p.xyz")],
         "cannot write .xyz"),
        (["evaluate", str(run), str(tiny.corpus), "--json", str(run / "split.json")],
         "run directory"),
        (["compare", str(run), str(run), str(tiny.corpus), "--json", str(folder)],
         "is a folder"),
        (["saliency", str(run), str(video), "--out", str(video)], "is a file"),
        (["saliency", str(run), str(video), "--out", str(run / "crops")], "run directory"),
        (["predict", str(run), str(video), "--out", str(tmp_path / "t.png"), "--plot",
          str(tmp_path / "t")], "same file"),  # the plot gets .png: the same file
        (["predict", str(run), str(video), "--plot", str(hard)], "is the input video"),
        (["predict", str(run), str(frames), "--out", str(frames / "t.csv")],
         "inside the input frame folder"),
        (["saliency", str(run), str(frames), "--out", str(frames)], "input frame folder"),
        (["predict", str(run), str(video), "--out", str(loop)], "cannot be used"),
        (["evaluate", str(run), str(tiny.corpus), "--json", str(video), "--overwrite"],
         f"is the video of {video.stem}, in the dataset"),  # a file of the data scored
        (["compare", str(run), str(run), str(tiny.corpus), "--json",
          str(next(tiny.corpus.glob(f"annotation/*/{video.stem}/valence.csv"))), "--overwrite"],
         f"is inside the annotation folder of {video.stem}"),
        (["evaluate", str(run), str(tiny.corpus), "--people", str(people), "--json",
          str(people), "--overwrite"], "is the --people file"),
        (["evaluate", str(run), str(tiny.corpus), "--json",
          str(tiny.corpus / "synthetic_corpus.json"), "--overwrite"],
         "is the manifest of the synthetic corpus"),
        (["evaluate", str(run), str(tiny.corpus), "--json", str(manifest_link), "--overwrite"],
         "is the manifest of the synthetic corpus"),  # another name of it
    ]
    before = {path: path.read_bytes() for path in (video, run / "prior.json", run / "split.json",
                                                   people, tiny.corpus / "synthetic_corpus.json")}
    for argv, message in cases:
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 2, argv
        assert message in capsys.readouterr().err, argv
    assert all(path.read_bytes() == content for path, content in before.items())
    # a file of the user's own inside the run folder is fine to write
    assert not _in_run(run / "my_trajectory.csv", run)


def test_outputs_replace_only_files_coreaffect_wrote(tiny, tmp_path, capsys):
    from coreaffect.cli import _foreign, main

    video, run = tiny.video(), tiny.run
    labels = tmp_path / "interview.csv"  # the video's own annotation, in the csv format
    labels.write_text("time,valence,arousal\n0.0,0.1,0.2\n0.04,0.1,0.2\n")
    notes = tmp_path / "notes.json"
    notes.write_text('{"subject": 7}\n')
    listing = tmp_path / "videos.json"  # keys a comparison has, but not one of its files
    listing.write_text('{"videos": ["a", "b"]}\n')
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n a photograph")
    before = {path: path.read_bytes() for path in (labels, notes, listing, photo)}
    for argv in (["predict", str(run), str(video), "--out", str(labels)],
                 ["predict", str(run), str(video), "--plot", str(photo)],
                 ["evaluate", str(run), str(tiny.corpus), "--json", str(notes)],
                 ["compare", str(run), str(run), str(tiny.corpus), "--json", str(listing)]):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 2
        err = capsys.readouterr().err
        assert "exists and is not" in err and "--overwrite" in err, err
    assert all(path.read_bytes() == content for path, content in before.items())
    # predict writes a trajectory, then replaces its own output when run again
    out = tmp_path / "trajectory.csv"
    assert main(["predict", str(run), str(video), "--out", str(out), "--quiet"]) == 0
    assert _foreign("--out", out) == ""
    figure = tmp_path / "trajectory.png"
    for _ in range(2):  # its own figure too
        assert main(["predict", str(run), str(video), "--out", str(out), "--plot", str(figure),
                     "--causal", "--quiet"]) == 0
    assert _foreign("--plot", figure) == ""
    # --overwrite replaces whatever is there
    assert main(["predict", str(run), str(video), "--out", str(labels), "--overwrite",
                 "--quiet"]) == 0
    assert labels.read_text().startswith("frame,time,valence,arousal,")
    # empty files and devices may be replaced
    empty = tmp_path / "empty.csv"
    empty.touch()
    assert [_foreign("--out", empty), _foreign("--out", Path("/dev/null"))] == ["", ""]


def test_predict_replaces_only_figures_it_marked(tiny, tmp_path, capsys):
    from matplotlib.figure import Figure

    from coreaffect.cli import _check_outputs, _foreign, _write_plot, main
    from coreaffect.trajectory import AffectTrajectory

    video, run = tiny.video(), tiny.run
    own = Figure()  # a figure of the user's own, also drawn by matplotlib
    own.add_subplot().plot([0, 1])
    for kind in ("png", "pdf", "svg"):
        own.savefig(tmp_path / f"mine.{kind}")
        assert _foreign("--plot", tmp_path / f"mine.{kind}") == (
            "is not marked as a figure coreaffect drew")
    before = (tmp_path / "mine.png").read_bytes()
    with pytest.raises(SystemExit) as stop:
        main(["predict", str(run), str(video), "--plot", str(tmp_path / "mine.png")])
    assert stop.value.code == 2 and "is not marked as a figure" in capsys.readouterr().err
    assert (tmp_path / "mine.png").read_bytes() == before
    # a JPEG cannot say who drew it: even predict's own is replaced only with --overwrite
    plots = tmp_path / "plots"
    argv = ["predict", str(run), str(video), "--plot", str(plots / "t.jpg"), "--causal",
            "--quiet"]
    assert main([*argv, "--out", str(plots / "t.csv")]) == 0
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2 and "a .jpg file cannot say so" in capsys.readouterr().err
    parser = build_parser()
    _check_outputs(parser, parser.parse_args([*argv, "--overwrite"]))
    # predict marks its figures in every format with metadata, so it may replace them
    trajectory = AffectTrajectory.read_csv(plots / "t.csv")
    import matplotlib.pyplot as plt

    open_figures = plt.get_fignums()
    for kind in ("png", "pdf", "svgz", "eps"):
        _write_plot(trajectory, plots / f"t.{kind}", "a title")
        assert _foreign("--plot", plots / f"t.{kind}") == "", kind
    assert plt.get_fignums() == open_figures  # none left open in a caller's session
    assert sorted(path.suffix for path in plots.iterdir()) == [  # no temporary file left
        ".csv", ".eps", ".jpg", ".pdf", ".png", ".svgz"]


def test_a_figure_that_cannot_be_drawn_loses_no_trajectory(tiny, tmp_path, monkeypatch, capsys):
    import os

    from matplotlib.figure import Figure

    from coreaffect.cli import _foreign

    def fails(*args, **kwargs):
        raise RuntimeError("'xelatex' not found")

    video, out = tiny.video(), tmp_path / "t.csv"
    monkeypatch.setattr(Figure, "savefig", fails)
    argv = ["predict", str(tiny.run), str(video), "--causal", "--quiet"]
    assert main([*argv, "--out", str(out), "--plot", str(tmp_path / "t.png")]) == 1
    err = capsys.readouterr().err
    assert "t.png: matplotlib cannot draw a .png figure here ('xelatex' not found)" in err
    assert "Traceback" not in err and out.read_text().startswith("frame,time,")  # written first
    assert not (tmp_path / "t.png").exists()
    monkeypatch.undo()
    parser = build_parser()
    if shutil.which("xelatex") is None:  # matplotlib's pgf needs LaTeX: said before any work
        with pytest.raises(SystemExit) as stop:
            main([*argv, "--plot", str(tmp_path / "t.pgf")])
        assert stop.value.code == 2 and "needs xelatex" in capsys.readouterr().err
    fifo = tmp_path / "fifo"  # a pipe named without a suffix takes a PNG, as _write_plot draws
    os.mkfifo(fifo)
    from coreaffect.cli import _check_outputs

    _check_outputs(parser, parser.parse_args([*argv, "--plot", str(fifo)]))
    (tmp_path / "noext").write_text("data\n")
    assert _foreign("--plot", tmp_path / "noext") == (
        "has no suffix, so it is not known to be a figure coreaffect drew")


def test_json_replaces_only_metrics_files_as_evaluate_and_compare_write_them(tiny, tmp_path):
    from coreaffect.cli import _foreign, main

    comparison = tmp_path / "comparison.json"
    assert main(["compare", str(tiny.run), str(tiny.run), str(tiny.corpus), "--json",
                 str(comparison), "--resamples", "400", "--quiet"]) == 0
    assert _foreign("--json", comparison) == ""  # (evaluate's: the end-to-end test)
    written = json.loads(comparison.read_text())
    stage = written["raw"]
    lookalikes = [{"raw": {"note": 1}}, {"raw": {}, "smoothed": {}}, {"videos": ["a"], "raw": {}},
                  {"raw": stage["a"]},  # one run of a comparison: no per-video values
                  {"videos": "a", "raw": stage}, {"videos": [], "raw": {**stage, "c": 1}}]
    for number, data in enumerate(lookalikes):
        path = tmp_path / f"{number}.json"
        path.write_text(json.dumps(data))
        assert _foreign("--json", path) == "is not a metrics file of coreaffect", data


def test_saliency_replaces_files_in_its_folder_only_with_overwrite(tiny, tmp_path, capsys):
    import shutil

    from coreaffect.cli import main

    run, video = tiny.run, tiny.video()
    out = tmp_path / "maps"
    out.mkdir()
    grid = out / "saliency_grid.png"  # the user's own, or an earlier video's
    grid.write_bytes(b"a picture")
    (out / "saliency.mp4").write_bytes(b"a film")
    for animation in ("gif", "mp4", "none"):
        with pytest.raises(SystemExit) as stop:
            main(["saliency", str(run), str(video), "--out", str(out), "--animation", animation])
        err = capsys.readouterr().err
        assert stop.value.code == 2 and "holds saliency_grid.png already" in err, err
        assert "--overwrite" in err
    grid.unlink()
    with pytest.raises(SystemExit) as stop:  # the animation of that name too
        main(["saliency", str(run), str(video), "--out", str(out), "--animation", "mp4"])
    assert stop.value.code == 2 and "holds saliency.mp4 already" in capsys.readouterr().err
    shutil.copy(video, out / "saliency.mp4")  # never over the input video, even if told
    with pytest.raises(SystemExit) as stop:
        main(["saliency", str(run), str(out / "saliency.mp4"), "--out", str(out), "--animation",
              "mp4", "--overwrite"])
    assert stop.value.code == 2 and "over the input video" in capsys.readouterr().err
    assert (out / "saliency.mp4").read_bytes() == video.read_bytes()
    grid.write_bytes(b"a picture")
    assert main(["saliency", str(run), str(video), "--out", str(out), "--seconds", "1",
                 "--overwrite", "--quiet"]) == 0
    assert grid.read_bytes() != b"a picture" and (out / "saliency.gif").stat().st_size > 0


def test_outputs_where_no_file_can_be_written_are_usage_errors(tiny, tmp_path, capsys,
                                                               monkeypatch):
    import errno
    import os
    import tempfile

    from coreaffect.cli import _check_outputs, main

    run, video, corpus = tiny.run, tiny.video(), tiny.corpus
    table = tmp_path / "p1.csv"  # a file where a folder would have to be
    table.write_text("a,b\n")
    locked = tmp_path / "locked"  # a folder nobody may write in
    locked.mkdir()
    link = tmp_path / "link.csv"  # a link is written through: in its target's folder
    link.symlink_to(locked / "t.csv")
    access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: (
        Path(path) not in (locked, Path("/dev")) and access(path, mode, **kw)))
    mounted = tmp_path / "mounted"  # writable by its permissions, on a read-only mount
    mounted.mkdir()
    mkstemp = tempfile.mkstemp

    def read_only(*args, dir=None, **kwargs):
        if Path(dir) == mounted:
            raise OSError(errno.EROFS, "Read-only file system")
        return mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    cases = [
        (["evaluate", str(run), str(corpus), "--json", str(table / "m.json")],
         f"--json {table / 'm.json'} cannot be written: {table} is not a folder"),
        (["compare", str(run), str(run), str(corpus), "--json", str(table / "a" / "c.json")],
         f"{table} is not a folder"),
        (["predict", str(run), str(video), "--out", str(table / "a" / "b" / "t.csv")],
         f"--out {table / 'a' / 'b' / 't.csv'} cannot be written: {table} is not a folder"),
        (["predict", str(run), str(video), "--plot", str(table / "t.png")],
         f"--plot {table / 't.png'} cannot be written"),
        (["saliency", str(run), str(video), "--out", str(table / "maps")],
         f"{table} is not a folder"),
        (["predict", str(run), str(video), "--out", str(locked / "new" / "t.csv")],
         f"{locked} is not writable"),
        (["saliency", str(run), str(video), "--out", str(locked)], f"{locked} is not writable"),
        (["predict", str(run), str(video), "--out", str(link)], f"{locked} is not writable"),
        (["evaluate", str(run), str(corpus), "--json", str(mounted / "m.json")],
         f"{mounted} is not writable (Read-only file system)"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 2, argv
        assert message in capsys.readouterr().err, argv
    assert list(locked.iterdir()) == [] and list(mounted.iterdir()) == []  # nothing made
    parser = build_parser()  # a device is written to as it is, whatever its folder
    _check_outputs(parser, parser.parse_args(["predict", str(run), str(video), "--out",
                                              "/dev/null"]))


def test_sigterm_stops_a_command_as_ctrl_c_does(tmp_path, monkeypatch, capsys):
    import os
    import signal
    import time

    from coreaffect import cli

    def killed(args):  # a scheduler's time limit, mid-command
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)  # the signal arrives first
        return 0

    monkeypatch.setattr(cli, "_synth", killed)
    before = signal.getsignal(signal.SIGTERM)
    assert main(["synth", str(tmp_path / "corpus")]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.parametrize("online", ["--causal", "--lagged"])
def test_stream_writes_the_rows_of_predict_as_they_come(tiny, tmp_path, online, capsys):
    from coreaffect.trajectory import AffectTrajectory

    assert main(["predict", str(tiny.run), str(tiny.video()), online, "--quiet",
                 "--out", str(tmp_path / "batch.csv")]) == 0
    live = tmp_path / "live.csv"
    options = ["--lagged"] if online == "--lagged" else []
    assert main(["stream", str(tiny.run), str(tiny.video()), "--out", str(live), *options]) == 0
    assert "the source ended: wrote 100 rows" in capsys.readouterr().err
    batch = AffectTrajectory.read_csv(tmp_path / "batch.csv")
    streamed = AffectTrajectory.read_csv(live)  # the same columns, stage and level
    assert streamed.stage == batch.stage and streamed.level == batch.level
    np.testing.assert_array_equal(streamed.indices, batch.indices)
    np.testing.assert_array_equal(streamed.face_found, batch.face_found)
    for field in ("mean", "var", "lower", "upper", "latent_mean"):
        np.testing.assert_allclose(getattr(streamed, field), getattr(batch, field), atol=2e-4,
                                   err_msg=field)
    # a stream writes as it goes: an existing file is replaced only when told
    with pytest.raises(SystemExit) as usage:
        main(["stream", str(tiny.run), str(tiny.video()), "--out", str(live)])
    assert usage.value.code == 2
    assert "exists, and a stream writes its file as it goes" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM"])
def test_ctrl_c_ends_a_stream_with_the_rows_of_its_last_frames(tiny, tmp_path, monkeypatch,
                                                               capsys, name):
    """The first Ctrl-C (or SIGTERM), while frame 40 is read, ends the stream as the source's
    end would: 41 rows, then exit 0; the handlers are put back. The file's folder is made."""
    import os
    import signal

    from coreaffect.pipeline import CoreAffect

    frames = CoreAffect._frames

    def camera(self, source):
        for k, frame in enumerate(frames(self, source)):
            if k == 40:
                os.kill(os.getpid(), getattr(signal, name))
            yield frame

    monkeypatch.setattr(CoreAffect, "_frames", camera)
    # a test run started in the background (``make test &``) inherits an ignored SIGINT, which
    # the stream leaves ignored; a terminal's Ctrl-C is what this test is about
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
        out = tmp_path / "new" / "folder" / "live.csv"
        assert main(["stream", str(tiny.run), str(tiny.video()), "--out", str(out)]) == 0
        assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    finally:
        signal.signal(signal.SIGINT, inherited)
    err = capsys.readouterr().err
    assert "stopping: the last rows follow" in err and "stopped: wrote 41 rows" in err
    lines = out.read_text().splitlines()
    assert len(lines) == 42 and lines[-1].startswith("40,")


def test_a_stream_that_fails_says_how_many_rows_it_kept(tiny, tmp_path, capsys):
    folder = _frame_folder(tiny.video(), tmp_path / "frames")
    (folder / "00050.png").write_bytes(b"not an image")
    out = tmp_path / "live.csv"
    assert main(["stream", str(tiny.run), str(folder), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"wrote 50 rows to {out} before stopping" in err and "00050.png" in err
    assert len(out.read_text().splitlines()) == 51


def test_stream_of_a_camera_that_cannot_be_opened_is_a_clear_error(tiny, tmp_path):
    result = _run("stream", str(tiny.run), "57", "--out", str(tmp_path / "live.csv"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "coreaffect stream: error:" in result.stderr and "camera" in result.stderr
    assert not (tmp_path / "live.csv").exists()  # no row, no file
