"""The demo writes its report, figures, metrics and a usable run, at a tiny size."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from coreaffect.demo import MARKER, DemoSettings, _check_out, run_demo
from coreaffect.errors import CoreAffectError
from coreaffect.pipeline import CoreAffect

TINY = DemoSettings(videos=5, seconds=4.0, test_videos=1, val_videos=2, minutes=0.05, epochs=2,
                    manifold_steps=100, prior_steps=100, saliency_frames=32)


def test_run_demo_writes_report_and_figures(tmp_path):
    import matplotlib
    import matplotlib.pyplot as plt

    backend = matplotlib.get_backend()
    matplotlib.use("svg")  # a caller's own choice, which the demo must keep
    plt.figure()  # and a figure of the caller's, which stays
    open_figures = plt.get_fignums()
    try:
        result = run_demo(tmp_path, settings=TINY, command="coreaffect demo --quick")
        assert matplotlib.get_backend() == "svg" and plt.get_fignums() == open_figures
    finally:
        matplotlib.use(backend)
    text = result.report.read_text()
    assert "Table 2" in text and "coreaffect demo --quick" in text
    for stage in ("raw", "prior", "smoothed", "filtered", "lagged"):
        assert f"| {stage} |" in text
    assert "**lagged** the fixed-lag smoother (each frame from the frames up to 8 after it" in text
    assert "a fixed latency of 19 frames, 0.76 s at the corpus's 25 fps" in text  # lite's
    for name in ("fig1_trajectory.png", "fig2_saliency_grid.png", "fig3_manifold_prior.png",
                 "fig4_calibration.png"):
        assert (tmp_path / name).stat().st_size > 1000, name
        assert f"({name})" in text
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics) == {"raw", "prior", "smoothed", "filtered", "lagged"}
    assert "vs_raw" in metrics["lagged"]["arousal"]["ccc"]
    assert "## How sure: each stage against the hidden route" in text
    assert set(result.differences) == {"prior", "smoothed", "filtered", "lagged"}
    assert "| smoothed | arousal | " in text and "| raw | valence |  |  | " in text
    assert "None here: too few test videos to resample" in text  # one test video
    assert "nan" not in text.split("## How sure")[1].split("##")[0]
    assert "total" in result.seconds and "fit: dynamics" in result.seconds
    assert CoreAffect.load(tmp_path / "run").stages[-1] == "lagged"
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert [len(split[k]) for k in ("train", "val", "test")] == [2, 2, 1]
    assert "1 held out for testing and 2 for training" in text and "2 more validate" in text
    assert "chosen on the validation videos" in text
    assert json.loads((tmp_path / MARKER).read_text())["settings"]["videos"] == TINY.videos
    assert "trained on the CPU" in text
    _check_out(tmp_path)  # a later demo may replace this one


def test_the_demo_writes_only_into_a_new_empty_or_demo_folder(tmp_path):
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "report.md").write_text("# my thesis notes -- keep me\n")
    with pytest.raises(CoreAffectError, match="thesis: holds files coreaffect demo did not "
                                              r"write \(report.md\)"):
        run_demo(mine, settings=TINY)
    assert (mine / "report.md").read_text() == "# my thesis notes -- keep me\n"
    assert sorted(p.name for p in mine.iterdir()) == ["report.md"]
    with pytest.raises(CoreAffectError, match="is not a folder"):
        run_demo(mine / "report.md", settings=TINY)
    earlier = tmp_path / "earlier"  # a demo's output from before the marker
    earlier.mkdir()
    (earlier / "report.md").write_text(
        "# The hidden route and its core-affect prior on a synthetic corpus\n\nProduced by ...")
    (tmp_path / "empty").mkdir()
    for fine in (earlier, tmp_path / "new", tmp_path / "empty"):
        _check_out(fine)


def test_run_demo_says_when_no_video_validates(tmp_path):
    settings = dataclasses.replace(TINY, videos=3, val_videos=0)
    text = run_demo(tmp_path, settings=settings).report.read_text()
    assert "none validates" in text and "chosen on the training videos" in text


def test_report_quotes_the_command_or_the_function(monkeypatch):
    from coreaffect.demo import _command

    monkeypatch.setattr("sys.argv", ["/usr/bin/coreaffect", "demo", "--out", "my dir"])
    assert _command() == "coreaffect demo --out 'my dir'"
    monkeypatch.setattr("sys.argv", ["scripts/make_demo.py", "--quick"])
    assert _command() == "python scripts/make_demo.py --quick"
    jupyter = ["/opt/conda/lib/python3.11/site-packages/ipykernel_launcher.py", "-f",
               "/home/me/.local/share/jupyter/runtime/kernel-1.json"]
    for argv in (["-c"], [""], [], jupyter, ["/usr/local/bin/ipython"]):  # python -c, REPLs
        monkeypatch.setattr("sys.argv", argv)
        assert _command() == "coreaffect.demo.run_demo"


def _earlier_demo(out):
    """A folder as an earlier demo leaves it, with a file of the user's beside it."""
    files = {MARKER: "{}", "report.md": "old report", "metrics.json": "{}",
             "fig1_trajectory.png": "old figure", "fig2_saliency_grid.png": "old grid",
             "corpus/synthetic_corpus.json": "{}", "corpus/videos/synth000.avi": "old video",
             "run/split.json": "{}", "run/hidden_route.json": "{}",
             "run/crops/synth000-0123/entry.json": "{}", "notes.txt": "mine",
             "fig2_saliency_notes.txt": "mine too"}
    for name, text in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    return files


def _contents(out):
    return {str(p.relative_to(out)): p.read_text() for p in out.rglob("*") if p.is_file()}


def test_a_failed_demo_leaves_the_earlier_one_as_it_was(tmp_path, monkeypatch):
    import coreaffect.experiment as experiment

    out = tmp_path / "demo"
    files = _earlier_demo(out)

    def interrupted(corpus, run, **kwargs):  # after the new corpus is written
        assert (corpus / "videos" / "synth004.avi").exists()
        assert (run / "crops" / "synth000-0123").is_dir()  # the earlier crops, to reuse
        assert not (run / "split.json").exists()
        raise KeyboardInterrupt

    monkeypatch.setattr(experiment, "train_run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_demo(out, settings=TINY)
    assert _contents(out) == files  # not the new corpus beside the old run
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []
    first = tmp_path / "first"  # no earlier demo: what a failed one wrote stays

    def stopped(corpus, run, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(experiment, "train_run", stopped)
    with pytest.raises(KeyboardInterrupt):
        run_demo(first, settings=TINY)
    assert (first / "corpus" / "videos" / "synth004.avi").exists()


def test_replacing_a_demo_keeps_the_users_files_and_refuses_files_inside_it(tmp_path):
    from coreaffect.demo import _replacing

    out = tmp_path / "demo"
    _earlier_demo(out)
    with _replacing(out):
        assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
            "fig2_saliency_notes.txt", "notes.txt", "run"]  # the earlier demo is set aside
        assert [p.name for p in (out / "run").iterdir()] == ["crops"]  # but its crops
        (out / "report.md").write_text("new report")
    assert _contents(out) == {"report.md": "new report", "notes.txt": "mine",
                              "fig2_saliency_notes.txt": "mine too",
                              "run/crops/synth000-0123/entry.json": "{}"}
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
    _earlier_demo(out)
    (out / "run" / "predictions.csv").write_text("mine too")
    (out / "corpus" / "videos" / "myclip.mp4").write_text("mine too")
    (out / "run" / ".git").mkdir()
    (out / "run" / ".git" / "config").write_text("mine too")
    (out / "run" / ".stages.json.0123456789abcdef").write_text("a write cut short")
    before = _contents(out)
    with pytest.raises(CoreAffectError, match=r"holds files it did not write \(corpus/videos/"
                                              r"myclip.mp4, run/predictions.csv, run/.git\)"):
        run_demo(out, settings=TINY)
    assert _contents(out) == before
    (out / ".removing-0123").mkdir()  # an earlier demo whose deletion was cut short
    (out / ".removing-0123" / "report.md").write_text("old")
    (out / ".replaced-4567").mkdir()  # set aside nothing yet
    _check_out(out)
    assert not (out / ".removing-0123").exists() and not (out / ".replaced-4567").exists()
    (out / ".replaced-0123").mkdir()  # the earlier demo, set aside by a demo that was killed
    (out / ".replaced-0123" / "report.md").write_text("old")
    with pytest.raises(CoreAffectError, match=r"\.replaced-0123: holds the demo that a demo "
                                              "killed"):
        run_demo(out, settings=TINY)


@pytest.mark.parametrize("failing", range(1, 9))  # 7 entries to move, then the crops to lend
def test_a_failure_while_setting_the_earlier_demo_aside_loses_nothing(tmp_path, monkeypatch,
                                                                      failing):
    import os

    from coreaffect.demo import _replacing

    out = tmp_path / "demo"
    files = _earlier_demo(out)
    replace, calls = os.replace, []

    def interrupted(source, target):
        calls.append(source)
        if len(calls) == failing:
            raise KeyboardInterrupt
        return replace(source, target)

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt), _replacing(out):
        pass
    monkeypatch.undo()
    assert _contents(out) == files and not list(out.glob(".*"))


def test_crops_are_lent_only_from_a_run_folder_that_had_them(tmp_path):
    from coreaffect.demo import _replacing

    out = tmp_path / "demo"
    files = _earlier_demo(out)
    shutil.rmtree(out / "run" / "crops")
    files = {k: v for k, v in files.items() if "crops" not in k}
    with pytest.raises(RuntimeError), _replacing(out):
        (out / "run" / "crops" / "synth009-0123").mkdir(parents=True)  # the new demo's
        raise RuntimeError("failed")
    assert _contents(out) == files and not (out / "run" / "crops").exists()
    elsewhere = tmp_path / "my_run"  # run/ a link to a folder of the user's: left alone
    shutil.move(out / "run", elsewhere)
    (elsewhere / "crops" / "a").mkdir(parents=True)
    (out / "run").symlink_to(elsewhere)
    with _replacing(out):
        assert not (out / "run").exists()
    assert (elsewhere / "crops" / "a").is_dir()


def test_leftovers_are_cleared_only_in_a_demo_folder(tmp_path):
    mine = tmp_path / "thesis"
    (mine / ".removing-old").mkdir(parents=True)
    (mine / ".removing-old" / "keep.txt").write_text("mine")
    (mine / "thesis.tex").write_text("mine")
    with pytest.raises(CoreAffectError, match="holds files coreaffect demo did not write"):
        _check_out(mine)
    assert (mine / ".removing-old" / "keep.txt").read_text() == "mine"
