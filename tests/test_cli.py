"""Command line: help, exit codes 0 / 1 / 2, and errors without a traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from coreaffect.cli import build_parser, main


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "coreaffect", *args],
                          capture_output=True, text=True)


def test_help_lists_commands():
    result = _run("--help")
    assert result.returncode == 0
    assert "synth" in result.stdout


@pytest.mark.parametrize("command", ["synth", "train", "evaluate", "saliency"])
def test_every_command_has_help(command):
    result = _run(command, "--help")
    assert result.returncode == 0 and "usage: coreaffect" in result.stdout


def test_bad_usage_exits_2():
    assert _run().returncode == 2
    assert _run("no-such-command").returncode == 2
    result = _run("synth", "out", "--videos", "0")
    assert result.returncode == 2 and "must be >= 1" in result.stderr


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
    raw = json.loads(metrics.read_text())["raw"]
    for dim in ("valence", "arousal"):
        for name in ("rmse", "ccc", "pcc", "sagr", "nll", "coverage_50", "coverage_90"):
            entry = raw[dim][name]
            assert set(entry) == {"per_video", "mean", "pooled"}
            assert list(entry["per_video"]) == split["test"]
    video = next((corpus / "videos").glob(f"{split['test'][0]}.*"))
    out = tmp_path / "saliency"
    result = _run("saliency", str(run), str(video), "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    assert (out / "saliency_grid.png").stat().st_size > 0
    assert (out / "saliency.gif").stat().st_size > 0


def test_saliency_targets_match_the_library():
    from coreaffect.cli import SALIENCY_TARGETS
    from coreaffect.saliency import TARGETS

    assert SALIENCY_TARGETS == TARGETS


def test_saliency_errors_are_clear(tmp_path):
    result = _run("saliency", str(tmp_path / "no-run"), str(tmp_path / "v.avi"), "--out",
                  str(tmp_path / "out"), "--quiet")
    assert result.returncode == 1 and "Traceback" not in result.stderr


def test_evaluate_errors_are_clear(tmp_path):
    result = _run("evaluate", str(tmp_path / "no-run"), str(tmp_path), "--quiet")
    assert result.returncode == 1 and "no such run directory" in result.stderr
    assert "Traceback" not in result.stderr
    result = _run("train", str(tmp_path / "no-data"), "--out", str(tmp_path / "run"), "--quiet")
    assert result.returncode == 1 and "no such dataset folder" in result.stderr
