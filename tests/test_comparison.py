"""Comparing two runs: a run against itself differs by exactly nothing, a changed stage differs
where it changed and nowhere else, and the errors are clear."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from coreaffect.comparison import compare_runs, format_comparison
from coreaffect.demo import tiny_run
from coreaffect.errors import CoreAffectError


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_run(tmp_path_factory.mktemp("tiny"))


def _copy(tiny, folder):
    run = folder / "run_b"
    shutil.copytree(tiny.run, run, ignore=shutil.ignore_patterns("crops"))
    return run


def test_a_run_against_itself_differs_by_nothing(tiny, tmp_path):
    comparison = compare_runs(tiny.run, _copy(tiny, tmp_path), tiny.corpus, subset="all",
                              cache=tiny.run / "crops", n_resamples=400)
    assert len(comparison.videos) == 3
    assert list(comparison.differences) == ["raw", "prior", "smoothed", "filtered", "lagged"]
    for stage, difference in comparison.differences.items():
        for name in ("rmse", "ccc", "nll", "coverage_90"):
            np.testing.assert_array_equal(difference.mean[name], 0, err_msg=stage)
            np.testing.assert_array_equal(difference.pooled_interval[name], 0, err_msg=stage)
            np.testing.assert_array_equal(comparison.a[stage].pooled[name],
                                          comparison.b[stage].pooled[name])
    assert format_comparison(comparison).startswith("3 videos; B - A")
    assert comparison.people is None and "people" not in comparison.to_dict()


def test_wider_bands_in_b_show_in_its_coverage_only(tiny, tmp_path):
    run_b = _copy(tiny, tmp_path)
    bands = json.loads((run_b / "bands.json").read_text())
    bands["band_scale"]["smoothed"] = [3 * k for k in bands["band_scale"]["smoothed"]]
    (run_b / "bands.json").write_text(json.dumps(bands))
    out = tmp_path / "comparison.json"
    result = subprocess.run([sys.executable, "-m", "coreaffect", "compare", str(tiny.run),
                             str(run_b), str(tiny.corpus), "--subset", "all", "--cache",
                             str(tiny.run / "crops"), "--resamples", "400", "--json", str(out),
                             "--quiet"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "B - A" in result.stdout and "smoothed cov90" in result.stdout
    saved = json.loads(out.read_text())
    assert len(saved["videos"]) == 3
    smoothed = saved["smoothed"]["b_minus_a"]
    for dim in ("valence", "arousal"):
        assert smoothed[dim]["coverage_90"]["pooled"] >= 0  # three times wider covers more
        assert smoothed[dim]["rmse"]["mean"] == 0  # the means did not move
        assert saved["raw"]["b_minus_a"][dim]["coverage_90"]["pooled"] == 0
    assert sum(smoothed[d]["coverage_90"]["pooled"] for d in ("valence", "arousal")) > 0
    assert set(saved["smoothed"]) == {"a", "b", "b_minus_a"}


def test_runs_without_a_shared_test_video_are_refused(tiny, tmp_path):
    run_b = _copy(tiny, tmp_path)
    split = json.loads((run_b / "split.json").read_text())
    split["test"] = ["no-such-video"]
    (run_b / "split.json").write_text(json.dumps(split))
    with pytest.raises(CoreAffectError, match="held out by both runs"):
        compare_runs(tiny.run, run_b, tiny.corpus, cache=tiny.run / "crops")
    with pytest.raises(CoreAffectError, match="resamples must be at least 400, got 399"):
        compare_runs(tiny.run, run_b, tiny.corpus, n_resamples=399)


def test_people_are_resampled_and_written_with_the_comparison(tiny, tmp_path, caplog):
    from coreaffect.cli import main

    run_b = _copy(tiny, tmp_path)
    people = tmp_path / "people.csv"
    videos = sorted(json.loads((tiny.run / "split.json").read_text())["train"]
                    + json.loads((tiny.run / "split.json").read_text())["val"])  # 2 of 3
    people.write_text("video,person\n" + "".join(f"{v},P\n" for v in videos))
    out = tmp_path / "comparison.json"
    for _ in range(2):  # the second replaces the first: it is a comparison file
        assert main(["compare", str(tiny.run), str(run_b), str(tiny.corpus), "--subset", "all",
                     "--cache", str(tiny.run / "crops"), "--resamples", "400", "--json",
                     str(out), "--people", str(people), "--quiet"]) == 0
    saved = json.loads(out.read_text())
    assert saved["people"] == {v: "P" for v in videos}
    assert saved["raw"]["a"]["valence"]["rmse"]["mean_ci"] == [None, None]  # 2 people of 3 videos
    caplog.clear()
    grouped = compare_runs(tiny.run, run_b, tiny.corpus, subset="all", cache=tiny.run / "crops",
                           n_resamples=400, people=people)
    too_few = [r for r in caplog.records if "too few to resample" in r.getMessage()]
    assert len(too_few) == 1, caplog.text  # once for the comparison, not once per stage
    assert format_comparison(grouped).startswith(
        "3 videos of 2 people; B - A with its 95% interval over resampled people (none: "
        "fewer than 3 people with a scored frame)")
    assert "[+nan" not in format_comparison(grouped)
    assert format_comparison(grouped).splitlines()[2].endswith("  none")


def test_shared_test_videos_missing_from_the_data_are_named(tiny, tmp_path, caplog,
                                                            monkeypatch):
    from coreaffect import comparison

    runs = [_copy(tiny, tmp_path / side) for side in "ab"]
    for run in runs:
        split = json.loads((run / "split.json").read_text())
        split["test"] = [*split["test"], "ghost"]
        (run / "split.json").write_text(json.dumps(split))
    checked = []
    monkeypatch.setattr(comparison, "check_numbering",
                        lambda recordings, config: checked.append([r.id for r in recordings]))
    with caplog.at_level("WARNING", logger="coreaffect.experiment"):
        result = compare_runs(*runs, tiny.corpus, cache=tiny.run / "crops", n_resamples=400)
    assert "1 of the 2 test videos both runs held out are here" in caplog.text
    assert "missing: ghost" in caplog.text
    assert checked == [result.videos]  # frame folders numbered from 1 are warned about


def test_the_table_says_why_it_has_no_interval_when_too_few_videos_are_scored():
    from coreaffect.bootstrap import bootstrap_stages
    from coreaffect.comparison import Comparison

    rng = np.random.default_rng(0)
    truths = [rng.uniform(-1, 1, (20, 2)) for _ in range(3)]
    truths[2][:] = np.nan  # a video without a scored frame: two of three are scored
    means = [t + 0.1 for t in truths]
    own, differences = bootstrap_stages(truths, {"a": (means, None), "b": (means, None)},
                                        reference={"b": "a"}, n_resamples=400)
    comparison = Comparison(["v0", "v1", "v2"], {"raw": own["a"]}, {"raw": own["b"]},
                            {"raw": differences["b"]})
    text = format_comparison(comparison, metrics=("rmse",))
    assert text.startswith("3 videos; B - A with its 95% interval over resampled videos (none: "
                           "fewer than 3 videos with a scored frame)"), text
    assert text.splitlines()[2].endswith("  none")
