"""Wiring of the run directory: later stages fitted after the hidden route, stage-wise evaluation,
raw-only runs, and the fallback without validation videos."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import re
import shutil

import pytest

from coreaffect.checkpoint import (
    load_data_config,
    load_model,
    load_state,
    save_model,
    save_state,
)
from coreaffect.cli import main
from coreaffect.config import AnnotationConfig, DataConfig, FaceConfig
from coreaffect.corpus import LabelledVideo, discover
from coreaffect.crop_cache import CropCache
from coreaffect.demo import tiny_run
from coreaffect.errors import CoreAffectError, CoreAffectWarning
from coreaffect.evaluation import metrics_json
from coreaffect.experiment import (
    data_settings,
    evaluate_run,
    held_out_videos,
    labels_delay,
    load_videos,
    read_split,
    refit_run,
    run_format,
    split_videos,
    train_run,
)
from coreaffect.pipeline import CoreAffect
from coreaffect.stages import FitSettings, fit_core_affect, run_fit_settings

FAST = FitSettings(manifold_steps=50, prior_steps=50, dynamics_iter=10)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_run(tmp_path_factory.mktemp("tiny"))


def test_train_run_writes_every_stage(tiny):
    for name in ("hidden_route", "manifold", "prior", "dynamics"):
        assert (tiny.run / f"{name}.json").exists() and (tiny.run / f"{name}.safetensors").exists()
    stages = json.loads((tiny.run / "stages.json").read_text())
    split = json.loads((tiny.run / "split.json").read_text())
    assert stages["videos"]["prior"] == split["train"]
    assert stages["videos"]["calibration"] == split["val"] == stages["videos"]["dynamics"]
    assert sorted(stages["videos"]["manifold"]) == sorted(split["train"] + split["val"])
    assert not set(split["test"]) & set(stages["videos"]["manifold"])
    assert set(stages["seconds"]) == {"estimates", "manifold", "prior", "calibration",
                                      "dynamics", "bands"}
    assert set(stages["band_scale"]) == {"smoothed", "filtered", "lagged"}
    assert stages["lag"] == FitSettings().lag
    bands = json.loads((tiny.run / "bands.json").read_text())
    assert bands["calibration_levels"] == list(FitSettings().calibration_levels) == [0.5, 0.9]


def test_a_settings_file_changes_only_what_it_sets(tiny, tmp_path):
    delay = json.loads((tiny.corpus / "synthetic_corpus.json").read_text())["config"]["rater_delay"]
    assert delay > 0
    default = data_settings(tiny.corpus, 24)
    assert default.faces.crop_size == 24 and default.annotations.delay == delay
    toml = tmp_path / "settings.toml"
    toml.write_text("[faces]\nmargin = 0.5\n")
    changed = data_settings(tiny.corpus, 24, toml)
    assert changed.faces.margin == 0.5 and changed.faces.crop_size == 24
    assert changed.annotations.delay == delay
    toml.write_text("[annotations]\ndelay = 0.0\n[faces]\ncrop_size = 32\n")
    assert data_settings(tiny.corpus, 24, toml).annotations.delay == 0.0
    assert data_settings(tiny.corpus, 24, toml).faces.crop_size == 32
    given = DataConfig(faces=FaceConfig(crop_size=48))
    assert data_settings(tiny.corpus, 24, given) is given
    assert data_settings(tmp_path, 24).annotations.delay == DataConfig().annotations.delay


def test_evaluate_reports_every_stage(tiny, tmp_path):
    evaluation = evaluate_run(tiny.run, tiny.corpus, json_path=tmp_path / "m.json",
                              n_resamples=400)
    tables = evaluation.tables
    assert list(tables) == ["raw", "prior", "smoothed", "filtered", "lagged"]
    assert list(evaluation.intervals) == list(tables)
    assert list(evaluation.differences) == list(tables)[1:]
    saved = json.loads((tmp_path / "m.json").read_text())
    assert list(saved) == list(tables)
    entry = saved["smoothed"]["valence"]["coverage_90"]
    assert entry["per_video"].keys() == set(tiny.test_ids)
    assert entry["pooled"] == pytest.approx(tables["smoothed"].pooled["coverage_90"][0])
    assert set(entry) == {"per_video", "mean", "pooled", "mean_ci", "pooled_ci", "vs_raw"}
    assert "vs_raw" not in saved["raw"]["valence"]["ccc"]
    assert entry["mean_ci"] == [None, None]  # one test video: too few to resample
    # on all three videos, 95% intervals over them: they hold the estimate itself
    entry = metrics_json(evaluate_run(tiny.run, tiny.corpus, subset="all", n_resamples=400)
                         )["smoothed"]["valence"]["coverage_90"]
    low, high = entry["mean_ci"]
    assert low <= entry["mean"] <= high


def test_evaluate_says_when_test_videos_are_missing(tiny, tmp_path, caplog):
    run = tmp_path / "run"
    shutil.copytree(tiny.run, run)
    split = json.loads((run / "split.json").read_text())
    split["test"] = [*split["test"], "ghost"]
    (run / "split.json").write_text(json.dumps(split))
    with caplog.at_level(logging.WARNING, logger="coreaffect.experiment"):
        evaluate_run(run, tiny.corpus, n_resamples=0)
    assert "1 of the 2 test videos of the run are here" in caplog.text and "ghost" in caplog.text


def test_evaluating_on_a_missing_dataset_says_only_that(tiny, tmp_path, caplog):
    with caplog.at_level(logging.INFO), pytest.raises(CoreAffectError, match="nope"):
        evaluate_run(tiny.run, tmp_path / "nope", n_resamples=0)
    assert "earlier" not in caplog.text  # no word of the labels' delay of a dataset not there


def test_evaluate_without_intervals(tiny):
    evaluation = evaluate_run(tiny.run, tiny.corpus, n_resamples=0)
    assert evaluation.intervals == {} and evaluation.differences == {}
    for few in (-1, 399):
        with pytest.raises(CoreAffectError, match="0 .no intervals. or at least 400, got"):
            evaluate_run(tiny.run, tiny.corpus, n_resamples=few)


def test_evaluate_warns_of_a_dataset_at_another_rate_than_training(tiny, tmp_path):
    from coreaffect.synthetic import SynthConfig, write_corpus

    faster = tmp_path / "at50"
    write_corpus(faster, SynthConfig(videos=1, seconds=3.0, fps=50.0, seed=3), workers=1)
    with pytest.warns(CoreAffectWarning, match="synth000: 50 frames per second, while the "
                      "run's network was trained on videos at 25"):  # the video, not the data
        evaluate_run(tiny.run, faster, subset="all", n_resamples=0, cache=tmp_path / "crops")


def test_raw_only_run_still_evaluates(tiny, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny.run, run, ignore=shutil.ignore_patterns(
        "crops", "prior.*", "manifold.*", "dynamics.*", "bands.json", "stages.json"))
    evaluation = evaluate_run(run, tiny.corpus, cache=tiny.run / "crops")
    assert list(evaluation.tables) == ["raw"] and list(evaluation.intervals) == ["raw"]
    assert evaluation.differences == {}


def _copy_of_run(tiny, tmp_path):
    """A copy of the tiny run (sharing its crops), and its training and validation videos."""
    run = tmp_path / "run"
    shutil.copytree(tiny.run, run, ignore=shutil.ignore_patterns("crops"))
    config = load_data_config(run)
    split = json.loads((run / "split.json").read_text())
    cache = CropCache(tiny.run / "crops", config.faces, config.video.chunk_size)
    videos = {r.id: r for r in discover(tiny.corpus)}
    train, val = (load_videos([videos[i] for i in split[part]], config, cache)
                  for part in ("train", "val"))
    return run, split, train, val


def test_few_validation_videos_are_warned_about(tiny, tmp_path, caplog):
    run, _, train, val = _copy_of_run(tiny, tmp_path)
    assert 0 < len(val) < 10
    with caplog.at_level(logging.WARNING, logger="coreaffect.stages"):
        fit_core_affect(run, load_model(run), train, val, settings=FAST)
    assert f"fitted on {len(val)} validation video(s)" in caplog.text


def test_videos_shorter_than_a_clip_are_left_out_of_the_fit_by_name(tiny, tmp_path, caplog):
    run, split, train, val = _copy_of_run(tiny, tmp_path)
    crops = train[0].crops
    short = LabelledVideo("short", crops._replace(**{f: getattr(crops, f)[:10]
                                                     for f in crops._fields}),
                          train[0].labels[:10])
    with caplog.at_level(logging.WARNING, logger="coreaffect.evaluation"):
        fit = fit_core_affect(run, load_model(run), [*train, short], [*val, short],
                              settings=FAST)
    assert "shorter than a clip (16 frames)" in caplog.text and "short" in caplog.text
    assert fit.videos["prior"] == split["train"] and "short" not in fit.videos["dynamics"]


def test_videos_without_a_face_and_both_labels_are_left_out_of_the_fit_by_name(tiny, tmp_path,
                                                                                caplog):
    import numpy as np

    run, split, train, val = _copy_of_run(tiny, tmp_path)
    labels = val[0].labels.copy()
    labels[:, 1] = np.nan  # a video annotated for valence only
    one_sided = val[0]._replace(id="valence_only", labels=labels)
    with caplog.at_level(logging.WARNING, logger="coreaffect.stages"):
        fit = fit_core_affect(run, load_model(run), train, [one_sided], settings=FAST)
    assert ("1 video(s) without a frame that has a face and both labels are left out of the "
            "prior and the dynamics: valence_only") in caplog.text
    assert "no validation video" in caplog.text  # so the training videos stand in
    assert fit.videos["dynamics"] == split["train"]
    assert "valence_only" in fit.videos["manifold"]  # its labels need no face, nor arousal
    with pytest.raises(CoreAffectError, match="at least one training video with a frame that "
                                              "has a face and both labels"):
        fit_core_affect(run, load_model(run), [one_sided], val, settings=FAST)
    # train_run says so before training the network
    with pytest.raises(CoreAffectError, match="has a frame with a face and both labels"), \
            pytest.warns(CoreAffectWarning, match="labels fall from -10000 s to -9996.04 s, and "
                                                  "the video runs from 0 s to 3.96 s"):
        train_run(tiny.corpus, tmp_path / "blind", epochs=1, test_videos=1, val_videos=0,
                  cache=tiny.run / "crops",
                  data_config=DataConfig(annotations=AnnotationConfig(delay=1e4)))


def test_train_run_refuses_a_prior_whose_only_paired_frames_are_in_a_video_shorter_than_a_clip(
        tiny, tmp_path):
    from coreaffect.synthetic import SynthConfig, write_corpus

    corpus = tmp_path / "corpus"
    shutil.copytree(tiny.corpus, corpus)
    for arousal in (corpus / "annotation").glob("*/*/arousal.csv"):
        arousal.unlink()  # the long videos are annotated for valence only
    short = tmp_path / "short"
    write_corpus(short, SynthConfig(videos=1, seconds=0.5, seed=5, rater_delay=0.0), workers=1)
    shutil.copy(short / "videos" / "synth000.avi", corpus / "videos" / "short000.avi")
    for rater in (short / "annotation").iterdir():
        folder = corpus / "annotation" / rater.name / "short000"
        shutil.copytree(rater / "synth000", folder)
        for path in folder.glob("*.csv"):  # named as the video it now is (NameVideo)
            path.write_text(path.read_text().replace(";synth000.avi;", ";short000.avi;"))
    run = tmp_path / "run"
    with pytest.raises(CoreAffectError, match=r"no training video of at least one clip \(16 "
                                              r"frames\) has a frame with a face and both"):
        train_run(corpus, run, epochs=1, test_videos=1, val_videos=0,
                  data_config=DataConfig(annotations=AnnotationConfig(delay=0.0)))
    assert "short000" in json.loads((run / "split.json").read_text())["train"]
    assert not (run / "hidden_route.safetensors").exists()  # refused before training


def test_fewer_validation_videos_than_asked_are_warned_about(tiny, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="coreaffect.experiment"):
        train_run(tiny.corpus, tmp_path / "run", epochs=1, test_videos=1, val_videos=5,
                  cache=tiny.run / "crops", fit_prior=False)
    assert "1 validation videos, not 5: of the 2 videos left after the test ones" in caplog.text
    assert len(json.loads((tmp_path / "run" / "split.json").read_text())["val"]) == 1


def test_held_out_videos_with_a_face_in_one_frame_are_refused_for_the_dynamics(tiny, tmp_path):
    import numpy as np

    from coreaffect.stages import paired_frames

    run, _, train, val = _copy_of_run(tiny, tmp_path)
    first = int(np.flatnonzero(paired_frames(val[0]))[0])
    found = np.zeros(len(val[0].crops.face_found), bool)
    found[first] = True  # paired there, so it is held out, yet one frame cannot show motion
    glimpse = val[0]._replace(id="glimpse", crops=val[0].crops._replace(face_found=found))
    with pytest.raises(CoreAffectError, match="fitting the dynamics needs a held-out video .* "
                                              "a face in two or more .* none has: glimpse"):
        fit_core_affect(run, load_model(run), train, [glimpse], settings=FAST)


def test_without_validation_videos_the_training_videos_are_used(tiny, tmp_path, caplog):
    run, split, train, _ = _copy_of_run(tiny, tmp_path)
    with caplog.at_level(logging.WARNING, logger="coreaffect.stages"):
        fit = fit_core_affect(run, load_model(run), train, [], settings=FAST)
    assert "no validation video" in caplog.text
    assert fit.videos["dynamics"] == split["train"]
    assert CoreAffect.load(run).stages[-1] == "lagged"


def test_a_run_fitted_without_a_lag_has_no_lagged_stage(tiny, tmp_path):
    run, _, train, val = _copy_of_run(tiny, tmp_path)
    with pytest.raises(CoreAffectError, match="lag"):
        fit_core_affect(run, load_model(run), train, val,
                        settings=dataclasses.replace(FAST, lag=-1))
    fit_core_affect(run, load_model(run), train, val, settings=dataclasses.replace(FAST, lag=0))
    bands = json.loads((run / "bands.json").read_text())
    assert bands["lag"] is None and set(bands["band_scale"]) == {"smoothed", "filtered"}
    affect = CoreAffect.load(run)
    assert affect.lag is None and affect.stages[-1] == "filtered"


def test_held_out_videos_name_the_split_file_when_it_is_wrong(tiny, tmp_path):
    assert held_out_videos(tiny.run) == set(tiny.test_ids)
    with pytest.raises(CoreAffectError, match="split.json: missing"):
        held_out_videos(tmp_path)
    for text, problem in [("{not json", "not a split"), ('{"train": []}', "not a split"),
                          ('{"test": "v1"}', "list of video ids")]:
        (tmp_path / "split.json").write_text(text)
        with pytest.raises(CoreAffectError, match=problem):
            held_out_videos(tmp_path)


def test_run_format_is_the_splits_or_none_without_one(tiny, tmp_path):
    assert run_format(tiny.run) == json.loads((tiny.run / "split.json").read_text())["format"]
    assert run_format(tmp_path) is None  # a network trained outside train_run
    (tmp_path / "split.json").write_text('{"train": []}')
    with pytest.raises(CoreAffectError, match="split.json: not a split .*no format"):
        run_format(tmp_path)


def test_split_videos_are_the_runs_own_in_its_order(tiny, tmp_path):
    split = json.loads((tiny.run / "split.json").read_text())
    videos = split_videos(tiny.run, tiny.corpus, ("val", "test"))
    assert [v.id for v in videos] == split["val"] + split["test"]
    config = load_data_config(tiny.run)
    assert videos[0].crops.crops.shape[1] == config.faces.crop_size
    assert [v.id for v in split_videos(tiny.run, parts="test")] == split["test"]  # split's data
    with pytest.raises(CoreAffectError, match="parts must be"):
        split_videos(tiny.run, tiny.corpus, ("validation",))
    partial = tmp_path / "corpus"
    shutil.copytree(tiny.corpus, partial)
    gone = split["test"][0]
    for path in list(partial.rglob(f"{gone}*")):  # its video, its labels, its raters' folders
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    with pytest.raises(CoreAffectError, match=f"1 of the 1 videos .* not here .*{gone}"):
        split_videos(tiny.run, partial, ("test",))


def _files(run) -> dict[str, bytes]:
    """Every file under a folder, by relative path."""
    return {str(p.relative_to(run)): p.read_bytes() for p in run.rglob("*") if p.is_file()}


def test_refit_with_the_runs_settings_reproduces_its_stages(tiny, tmp_path):
    before = _files(tiny.run)
    settings = run_fit_settings(tiny.run)
    assert settings.manifold_steps == 150  # tiny_run's, not the default
    refit_run(tiny.run, tmp_path / "again")  # with the run's own settings
    assert _files(tiny.run) == before  # the run is not touched
    out = tmp_path / "again"
    for name in ("hidden_route.safetensors", "hidden_route.json", "split.json"):
        assert (out / name).read_bytes() == before[name]
    assert (out / "training" / "log.json").exists()
    assert not (out / "training" / "optimizer.pt").exists()  # logs, not the state for resuming
    assert [p.name for p in tmp_path.iterdir()] == ["again"]  # no partial folder left
    for name in ("manifold", "prior", "dynamics"):
        new, old = load_state(out, name)[0], load_state(tiny.run, name)[0]
        assert new.keys() == old.keys()
        for key in new:
            assert new[key].equal(old[key]), (name, key)
    assert json.loads((out / "bands.json").read_text()) == json.loads(
        (tiny.run / "bands.json").read_text())


def test_refit_with_the_gplvm_manifold_gives_a_run_that_evaluates(tiny, tmp_path):
    settings = dataclasses.replace(FAST, manifold_backend="gplvm")
    fit = refit_run(tiny.run, tmp_path / "gp", data=tiny.corpus, settings=settings)
    assert fit.manifold.backend == "gplvm"
    assert json.loads((tmp_path / "gp" / "manifold.json").read_text())["config"][
        "backend"] == "gplvm"
    affect = CoreAffect.load(tmp_path / "gp")
    assert affect.prior.manifold.backend == "gplvm"
    evaluation = evaluate_run(tmp_path / "gp", tiny.corpus, n_resamples=0,
                              cache=tiny.run / "crops")
    assert list(evaluation.tables) == ["raw", "prior", "smoothed", "filtered", "lagged"]


def test_a_moved_yunet_run_finds_its_model_in_its_own_folder(tiny, tmp_path, monkeypatch):
    import coreaffect.experiment as experiment

    run, _, train, val = _copy_of_run(tiny, tmp_path)
    config = load_data_config(run)
    kept = tmp_path / "elsewhere" / "face_detection_yunet_2023mar.onnx"  # the training machine's
    yunet = dataclasses.replace(config, faces=dataclasses.replace(
        config.faces, detector="yunet", yunet_model=str(kept)))
    save_model(load_model(run), run, yunet, frame_rate=25.0)
    assert CoreAffect.load(run).data_config.faces.yunet_model == str(kept)  # none here either
    (run / kept.name).write_bytes(b"the model")
    assert CoreAffect.load(run).data_config.faces.yunet_model == str(run / kept.name)
    assert load_data_config(run).faces.yunet_model == str(kept)  # what the run keeps: unchanged
    video = tiny.corpus / "videos" / f"{tiny.test_ids[0]}.avi"
    with pytest.raises(CoreAffectError, match=f"{re.escape(str(run / kept.name))}: not a valid "
                                              "YuNet ONNX model"):  # the copy is the one tried
        CoreAffect.load(run).predict(video)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["saliency", str(run), str(video), "--out", str(tmp_path / "maps")]) == 1
    assert f"{run / kept.name}: not a valid YuNet ONNX model" in err.getvalue()
    seen = []

    def videos(recordings, config, cache, progress, what):  # crops as the model found gives
        seen.append(config.faces.yunet_model)
        return {"training": train, "validation": val}[what]

    monkeypatch.setattr(experiment, "load_videos", videos)
    refit_run(run, tmp_path / "out", data=tiny.corpus, settings=FAST)
    assert seen == [str(run / kept.name)] * 2
    assert (tmp_path / "out" / kept.name).read_bytes() == b"the model"  # moves with the new run
    # a moved run resumes its training (its resume state names the model where it was)
    tensors, state = load_state(run / "training", "last")
    save_state(run / "training", "last", tensors, {**state, "data": yunet.to_dict()})
    seen.clear()
    train_run(tiny.corpus, run, epochs=3, resume=True, fit_prior=False)
    assert seen == [str(run / kept.name)] * 2
    assert len(json.loads((run / "training" / "log.json").read_text())) == 3  # one epoch more


def test_refit_never_overwrites_and_names_what_is_wrong(tiny, tmp_path):
    before = _files(tiny.run)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "results.csv").write_text("precious")
    with pytest.raises(CoreAffectError, match="not empty"):
        refit_run(tiny.run, tmp_path / "full", settings=FAST)
    assert (tmp_path / "full" / "results.csv").read_text() == "precious"
    assert _files(tiny.run) == before
    with pytest.raises(CoreAffectError, match="no hidden route"):
        refit_run(tmp_path / "full", tmp_path / "new")
    corpus = tmp_path / "corpus"
    shutil.copytree(tiny.corpus, corpus)
    split = json.loads((tiny.run / "split.json").read_text())
    for path in list(corpus.rglob(f"{split['train'][0]}*")):  # its video and annotations
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    with pytest.raises(CoreAffectError, match="videos are missing"):
        refit_run(tiny.run, tmp_path / "new", data=corpus, settings=FAST)
    assert not (tmp_path / "new").exists()
    moved = tmp_path / "moved_run"
    shutil.copytree(tiny.run, moved, ignore=shutil.ignore_patterns("crops"))
    split["data"] = str(tmp_path / "gone")
    (moved / "split.json").write_text(json.dumps(split))
    with pytest.raises(CoreAffectError, match=r"gone: the dataset .*moved_run was trained on is "
                                              r"not there \(moved\?\); give its folder \(--data\)"):
        refit_run(moved, tmp_path / "new", settings=FAST)
    assert not (tmp_path / "new").exists()
    (tmp_path / "full" / "stages.json").write_text('{"settings": [1]}')
    with pytest.raises(CoreAffectError, match="stages.json: unreadable settings"):
        run_fit_settings(tmp_path / "full")
    (tmp_path / "full" / "stages.json").write_text('{"settings": {"lag": -4}}')
    with pytest.raises(CoreAffectError, match=r"full/stages.json: FitSettings.lag must be"):
        run_fit_settings(tmp_path / "full")  # a hand-edited file is named
    assert run_fit_settings(tmp_path / "nothing") == FitSettings()
    with pytest.raises(CoreAffectError, match="manifold_backend"):
        refit_run(tiny.run, tmp_path / "new", settings=FitSettings(manifold_backend="gp"))


def test_refit_leaves_nothing_when_it_fails(tiny, tmp_path, monkeypatch):
    import coreaffect.experiment as experiment

    before = _files(tiny.run)
    bad = tmp_path / "bad_run"
    shutil.copytree(tiny.run, bad, ignore=shutil.ignore_patterns("crops"))
    (bad / "stages.json").write_text(json.dumps({"settings": {"manifold_backend": "gp"}}))
    with pytest.raises(CoreAffectError, match="manifold_backend"):
        refit_run(bad, tmp_path / "out", cache=tiny.run / "crops")

    def crash(*args, **kwargs):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(experiment, "fit_core_affect", crash)
    with pytest.raises(RuntimeError, match="interrupted"):
        refit_run(tiny.run, tmp_path / "out", settings=FAST)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad_run"]
    assert _files(tiny.run) == before


def test_refit_refuses_outs_that_are_the_run_inside_it_or_not_folders(tiny, tmp_path):
    before = _files(tiny.run)
    afile = tmp_path / "afile"
    afile.write_text("keep")
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    for out, problem in [(tiny.run, "is the run"), (tiny.run / "x" / "..", "is the run"),
                         (tiny.run / "again", "inside it"),
                         (afile, "not a plain directory"), (tmp_path / "link", "not a plain")]:
        with pytest.raises(CoreAffectError, match=problem):
            refit_run(tiny.run, out, settings=FAST)
    assert afile.read_text() == "keep"
    assert not (tiny.run / "x").exists() and not (tiny.run / "again").exists()
    assert _files(tiny.run) == before


def test_a_broken_test_annotation_stops_training_before_any_work(tiny, tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(tiny.corpus, corpus)
    for broken in corpus.glob(f"annotation/*/{tiny.test_ids[0]}/valence.csv"):
        broken.write_text(broken.read_text().replace(";", ",", 2))
    run = tmp_path / "run"
    with pytest.raises(CoreAffectError, match=rf"{tiny.test_ids[0]}.*valence\.csv.*"):
        train_run(corpus, run, epochs=1, test_videos=1, val_videos=1, seed=0)
    assert not run.exists()  # no split, no crop cache, no network


def test_training_never_replaces_a_run_unasked(tiny, tmp_path):
    from coreaffect.experiment import _prepare_run, _set_aside

    run = tmp_path / "run"
    shutil.copytree(tiny.run, run, ignore=shutil.ignore_patterns("crops"))
    (run / "crops").mkdir()  # a crop cache is kept whatever happens
    before = sorted(p.name for p in run.iterdir())
    with pytest.raises(CoreAffectError, match="already holds a run; resume it"):
        train_run(tiny.corpus, run, epochs=1, test_videos=1, val_videos=1)
    with pytest.raises(CoreAffectError, match="no such dataset folder"):
        train_run(tmp_path / "typo", run, epochs=1, overwrite=True)  # checked before anything
    with pytest.raises(CoreAffectError, match=r"split differently \(train, val, test differ\)"):
        train_run(tiny.corpus, run, epochs=1, test_videos=2, val_videos=0, resume=True)
    assert sorted(p.name for p in run.iterdir()) == before  # untouched by all three
    with pytest.raises(CoreAffectError, match="choose one"):
        _prepare_run(run, resume=True, overwrite=True)
    later = _prepare_run(run, resume=True, overwrite=False)
    assert sorted(later) == ["bands.json", "dynamics.json", "dynamics.safetensors",
                             "manifold.json", "manifold.safetensors", "prior.json",
                             "prior.safetensors", "stages.json"]
    everything = _prepare_run(run, resume=False, overwrite=True)
    assert "crops" not in everything and "split.json" in everything and "training" in everything

    prior = (run / "prior.json").read_text()
    with pytest.raises(RuntimeError), _set_aside(run, later, "a test", replacing=False):
        (run / "prior.json").write_text("half-written by a failed training")
        raise RuntimeError("training failed")
    assert sorted(p.name for p in run.iterdir()) == before  # all back, and nothing else
    assert (run / "prior.json").read_text() == prior
    with _set_aside(run, everything, "a test", replacing=True):
        (run / "split.json").write_text("{}")
    assert sorted(p.name for p in run.iterdir()) == ["crops", "split.json"]

    (run / "notes.txt").write_text("mine")
    for resume, overwrite in ((False, False), (True, False), (False, True)):
        with pytest.raises(CoreAffectError, match=r"not part of a run \(notes.txt\)"):
            _prepare_run(run, resume=resume, overwrite=overwrite)
    assert (run / "notes.txt").read_text() == "mine"


def test_a_training_that_failed_before_any_network_does_not_block_the_next(tiny, tmp_path):
    from coreaffect.experiment import _prepare_run

    run = tmp_path / "run"
    (run / "training").mkdir(parents=True)  # what a failed start leaves: no network, no state
    (run / "split.json").write_text('{"data": "elsewhere", "seed": 5}\n')
    for resume in (False, True):  # nothing to set aside: the next training writes over them
        assert _prepare_run(run, resume=resume, overwrite=False) == []
    (run / "training" / "log.csv").write_text("epoch\n")  # a training got further: a run
    with pytest.raises(CoreAffectError, match="already holds a run"):
        _prepare_run(run, resume=False, overwrite=False)
    (run / "training" / "log.csv").unlink()
    for resume in (False, True):  # a split that differs is nothing to resume: no error
        result = train_run(tiny.corpus, run, epochs=1, test_videos=1, val_videos=0,
                           fit_prior=False, resume=resume)
        assert result.history and (run / "hidden_route.safetensors").exists()
        assert json.loads((run / "split.json").read_text())["data"] != "elsewhere"
        if not resume:  # now a run: the rules of a run apply again
            with pytest.raises(CoreAffectError, match="already holds a run"):
                _prepare_run(run, resume=False, overwrite=False)
            for name in ("hidden_route.json", "hidden_route.safetensors"):
                (run / name).unlink()
            shutil.rmtree(run / "training")
            (run / "training").mkdir()


def _copy_run(tiny, run):
    shutil.copytree(tiny.run, run, ignore=shutil.ignore_patterns("crops"))
    return run


def _crash_after(effect):
    def fit(run, *args, **kwargs):
        effect(run)
        raise KeyboardInterrupt

    return fit


def test_a_second_training_of_one_folder_is_refused_while_the_first_runs(tiny, tmp_path):
    from coreaffect.checkpoint import exclusive

    run = tmp_path / "run"
    with exclusive(run, "training"):
        with pytest.raises(CoreAffectError, match="another training is writing this folder"):
            train_run(tiny.corpus, run, epochs=1, test_videos=1, val_videos=0, fit_prior=False)
        assert [p.name for p in run.iterdir()] == [".lock"]
    assert not run.exists()  # made for the lock, left empty: gone again
    with pytest.raises(CoreAffectError, match="no such dataset folder"):
        train_run(tmp_path / "typo", run, epochs=1)
    assert not run.exists()
    train_run(tiny.corpus, run, epochs=1, test_videos=1, val_videos=0, fit_prior=False)
    assert not (run / ".lock").exists()


def test_a_failed_resume_keeps_no_later_stage_of_another_network(tiny, tmp_path, monkeypatch):
    import coreaffect.experiment as experiment

    def new_network(run):  # the resumed training saved a better network
        from coreaffect.checkpoint import save_model

        model = load_model(run)
        model.head.bias.data += 0.1
        save_model(model, run, load_data_config(run))

    args = dict(epochs=3, test_videos=1, val_videos=1, resume=True)
    for changed, kept in ((False, True), (True, False)):
        run = _copy_run(tiny, tmp_path / f"run{changed}")
        before = _files(run)
        monkeypatch.setattr(experiment, "fit_core_affect", _crash_after(
            lambda run, changed=changed: (new_network(run) if changed else None,
                                          (run / "manifold.json").write_text("half written"))))
        with pytest.raises(KeyboardInterrupt):
            train_run(tiny.corpus, run, **args)
        later = {name for name in before if name.split(".")[0] in
                 ("manifold", "prior", "dynamics", "bands", "stages")}
        assert later and (later <= set(_files(run))) == kept
        if kept:
            assert all(_files(run)[name] == before[name] for name in later)
        else:
            assert not later & set(_files(run))
            assert CoreAffect.load(run).stages == ("raw",)  # the network alone, no stale stage


def test_resuming_the_hidden_route_alone_keeps_the_later_stages_of_an_unchanged_network(
        tiny, tmp_path, monkeypatch, caplog):
    import coreaffect.experiment as experiment

    args = dict(epochs=2, test_videos=1, val_videos=1, resume=True, fit_prior=False,
                cache=tiny.run / "crops")
    run = _copy_run(tiny, tmp_path / "run")
    before = _files(run)
    train_run(tiny.corpus, run, **args)  # trained as far as asked: no epoch, the same network
    later = {name: data for name, data in before.items() if name.split(".")[0] in
             ("manifold", "prior", "dynamics", "bands", "stages")}
    assert len(later) == 8 and all(_files(run).get(name) == data for name, data in later.items())
    assert CoreAffect.load(run).stages == CoreAffect.load(tiny.run).stages

    train = experiment.train_hidden_route

    def better(*positional, **keywords):  # the resumed training saved a better network
        from coreaffect.checkpoint import save_model

        result = train(*positional, **keywords)
        result.model.head.bias.data += 0.1
        save_model(result.model, run, load_data_config(run))
        return result

    monkeypatch.setattr(experiment, "train_hidden_route", better)
    with caplog.at_level(logging.WARNING, logger="coreaffect.experiment"):
        train_run(tiny.corpus, run, **args)
    assert "training changed the network, so the later stages" in caplog.text
    assert not set(later) & set(_files(run))
    assert CoreAffect.load(run).stages == ("raw",)  # no stage of the earlier network is left


def test_a_failed_overwrite_leaves_the_run_it_found_and_nothing_new(tiny, tmp_path,
                                                                   monkeypatch):
    import coreaffect.experiment as experiment

    run = _copy_run(tiny, tmp_path / "run")
    for name in ("manifold", "prior", "dynamics"):  # a run of the hidden route only
        for suffix in (".json", ".safetensors"):
            (run / f"{name}{suffix}").unlink()
    (run / "bands.json").unlink()
    (run / "stages.json").unlink()
    before = _files(run)
    monkeypatch.setattr(experiment, "fit_core_affect", _crash_after(
        lambda run: (run / "manifold.json").write_text("{}")))
    with pytest.raises(KeyboardInterrupt):
        train_run(tiny.corpus, run, epochs=1, test_videos=1, val_videos=1, seed=3,
                  overwrite=True)
    assert {k: v for k, v in _files(run).items() if not k.startswith("crops")} == before
    # a fresh training that fails in the later stages keeps its network, to resume
    fresh = tmp_path / "fresh"
    with pytest.raises(KeyboardInterrupt):
        train_run(tiny.corpus, fresh, epochs=1, test_videos=1, val_videos=1)
    assert (fresh / "hidden_route.safetensors").exists()
    assert not (fresh / "manifold.json").exists() and not list(fresh.glob(".*"))


def test_what_a_run_cannot_resume_from_is_named(tiny, tmp_path):
    run = _copy_run(tiny, tmp_path / "run")
    shutil.rmtree(run / "training")  # a run copied without its training state
    before = _files(run)
    with pytest.raises(CoreAffectError, match=r"training/last.json: missing, so there is no "):
        train_run(tiny.corpus, run, epochs=3, test_videos=1, val_videos=1, resume=True)
    assert _files(run) == before
    aside = run / ".replaced-0123"  # a training killed while it held files aside
    aside.mkdir()
    (aside / "prior.json").write_text("{}")  # a resume's: its later stages
    for overwrite in (False, True):
        with pytest.raises(CoreAffectError, match=r"\.replaced-0123: holds the later stages"):
            train_run(tiny.corpus, run, epochs=1, overwrite=overwrite)
    (aside / "hidden_route.json").write_text("{}")  # an overwrite's: the earlier run
    with pytest.raises(CoreAffectError, match=r"\.replaced-0123: holds the run .* move its"):
        train_run(tiny.corpus, run, epochs=1, resume=True)
    (aside / "hidden_route.json").unlink()
    with pytest.raises(CoreAffectError, match="last.json: missing"):  # its aside is gone
        train_run(tiny.corpus, run, epochs=3, test_videos=1, val_videos=1, resume=True)
    assert not aside.exists()
    cut = _copy_run(tiny, tmp_path / "cut")
    (cut / "split.json").write_text('{"data": "')  # cut short
    with pytest.raises(CoreAffectError, match=r"split.json: not a split written by"):
        train_run(tiny.corpus, cut, epochs=3, test_videos=1, val_videos=1, resume=True)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "split.json").write_text('{"my": "hand-made split"}')
    with pytest.raises(CoreAffectError, match=r"split.json: not a split written by"):
        train_run(tiny.corpus, mine, epochs=1)
    assert (mine / "split.json").read_text() == '{"my": "hand-made split"}'


@pytest.mark.parametrize(("key", "value", "message"), [
    ("data", 123, "'data' must be a folder path, not 123"),
    ("data", None, "'data' must be a folder path, not None"),
    ("format", ["dante"], "'format' must be a format name"),
    ("seed", "x", "'seed' must be an integer, not 'x'"),
])
def test_a_hand_edited_split_is_named_before_any_work(tiny, tmp_path, key, value, message):
    run = _copy_run(tiny, tmp_path / "run")
    split = json.loads((run / "split.json").read_text())
    (run / "split.json").write_text(json.dumps({**split, key: value}))
    with pytest.raises(CoreAffectError, match=rf"split.json: {re.escape(message)}"):
        evaluate_run(run, tiny.corpus)
    with pytest.raises(CoreAffectError, match=rf"split.json: {re.escape(message)}"):
        refit_run(run, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    (run / "split.json").write_text("[1, 2]")
    with pytest.raises(CoreAffectError, match="split.json: not a split written by"):
        read_split(run)


@pytest.mark.parametrize("field, value", [
    ("label_step", 0), ("pair_step", 1.5), ("max_calibration_pairs", 0), ("band_step", 0),
    ("dynamics_step", 0), ("manifold_steps", 0), ("batch_size", True), ("level", 1.5),
    ("level", 0), ("calibration_levels", (1.5,)), ("calibration_levels", ()),
    ("noise_grid", (-1.0,)), ("noise_grid", (float("nan"),)), ("lag", -1),
    ("manifold_backend", "gp")])
def test_fit_settings_that_would_fail_after_training_are_refused_before(tiny, tmp_path, field,
                                                                        value):
    settings = dataclasses.replace(FitSettings(), **{field: value})
    with pytest.raises(CoreAffectError, match=field.split("_")[0]):
        train_run(tiny.corpus, tmp_path / "run", epochs=1, fit_settings=settings)
    assert not (tmp_path / "run").exists()


def test_a_run_whose_training_stopped_early_is_named_when_loaded(tiny, tmp_path, caplog):
    run = _copy_run(tiny, tmp_path / "run")
    (run / "training" / "train_config.json").unlink()  # stopped in an epoch, as a kill does
    assert CoreAffect.load(run).stages == CoreAffect.load(tiny.run).stages
    assert "its training did not finish" in caplog.text
    (run / "stages.json").unlink()  # killed while it wrote the later stages
    with pytest.raises(CoreAffectError, match=r"stopped while it wrote the later stages \("
                                              r"manifold.json, prior.json, dynamics.json"):
        CoreAffect.load(run)
    train_run(tiny.corpus, run, epochs=2, test_videos=1, val_videos=1, resume=True,
              fit_settings=FAST)  # what the message says to do
    CoreAffect.load(run)


def test_a_run_holding_a_users_outputs_can_still_be_resumed(tiny, tmp_path):
    from coreaffect.experiment import _prepare_run

    run = _copy_run(tiny, tmp_path / "run")
    (run / "predictions.csv").write_text("mine")  # e.g. predict --out RUN/predictions.csv
    assert "prior.json" in _prepare_run(run, resume=True, overwrite=False)
    for overwrite in (False, True):  # replacing the run would mix it with them: refused
        with pytest.raises(CoreAffectError, match=r"not part of a run \(predictions.csv\)"):
            _prepare_run(run, resume=False, overwrite=overwrite)
    assert (run / "predictions.csv").read_text() == "mine"


def test_labels_are_read_with_their_own_dataset_s_delay(tmp_path, caplog):
    from coreaffect.config import AnnotationConfig
    from coreaffect.synthetic import MANIFEST

    own, plain, synthetic, run = (tmp_path / name for name in ("own", "plain", "synth", "run"))
    for folder in (own, plain, synthetic, run):
        folder.mkdir()
    (run / "split.json").write_text(json.dumps({"data": str(own.resolve())}))
    (synthetic / MANIFEST).write_text(json.dumps({"config": {"rater_delay": 0.5}}))
    config = DataConfig(annotations=AnnotationConfig(delay=2.0))  # set for the run's dataset
    with caplog.at_level(logging.WARNING):
        assert labels_delay(run, config, own) is config  # its own dataset: its own delay
    assert not caplog.text
    assert labels_delay(run, config, plain).annotations.delay == 0.0
    assert "read 0 s earlier" in caplog.text and "--delay" in caplog.text
    assert labels_delay(run, config, synthetic).annotations.delay == 0.5
    assert labels_delay(run, config, plain, 1.5).annotations.delay == 1.5
    assert labels_delay(run, config, own, 0.0).annotations.delay == 0.0
    assert labels_delay(tmp_path / "no_split", config, plain).annotations.delay == 0.0


def test_a_resume_before_any_validated_epoch_keeps_the_run_s_data_settings(tiny, tmp_path,
                                                                          monkeypatch):
    import coreaffect.training as training
    from coreaffect.config import AnnotationConfig

    run = tmp_path / "run"
    settings = data_settings(tiny.corpus, 16)
    settings = dataclasses.replace(settings, annotations=AnnotationConfig(delay=0.2))  # its own
    write_log = training._write_log

    def interrupted(directory, history):
        write_log(directory, history)
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "_write_log", interrupted)
    with pytest.raises(KeyboardInterrupt):  # after epoch 1, which is not validated
        train_run(tiny.corpus, run, epochs=2, test_videos=1, val_videos=1, validate_every=2,
                  data_config=settings, fit_prior=False)
    monkeypatch.setattr(training, "_write_log", write_log)
    assert not (run / "hidden_route.json").exists()
    result = train_run(tiny.corpus, run, epochs=2, test_videos=1, val_videos=1,
                       validate_every=2, fit_prior=False, resume=True)  # no settings given
    assert len(result.history) == 2
    assert load_data_config(run).annotations.delay == 0.2


def test_a_split_by_person_is_kept_and_its_people_resampled(tiny, tmp_path, caplog, capsys):
    import numpy as np

    from coreaffect.cli import _foreign, main

    ids = sorted(r.id for r in discover(tiny.corpus))
    with pytest.raises(CoreAffectError, match=r"nowhere\.csv: cannot read"):
        train_run(tiny.corpus, tmp_path / "typo", people=tmp_path / "nowhere.csv")
    assert not (tmp_path / "typo").exists()  # nothing written
    with pytest.raises(CoreAffectError, match="no test video can be held out by person"):
        train_run(tiny.corpus, tmp_path / "one", people={v: "P" for v in ids}, epochs=1,
                  test_videos=1)
    people = tmp_path / "people.csv"
    people.write_text(f"video,person\n{ids[0]},P\n{ids[2]},P\nnot_a_video,Q\n")
    run = tmp_path / "run"
    args = dict(epochs=1, test_videos=1, val_videos=0, fit_prior=False, cache=tiny.run / "crops")
    with caplog.at_level(logging.INFO):
        train_run(tiny.corpus, run, people=people, **args)
    assert "1 video(s) given a person are not in" in caplog.text and "not_a_video" in caplog.text
    split = json.loads((run / "split.json").read_text())
    assert split["people"] == {ids[0]: "P", ids[2]: "P"}
    sides = [{split["people"].get(v, v) for v in split[part]} for part in ("train", "test")]
    assert not sides[0] & sides[1]
    # evaluate resamples the run's people on its own dataset: 3 videos of 2 people, too few
    evaluation = evaluate_run(run, tiny.corpus, subset="all", n_resamples=400)
    assert evaluation.intervals["raw"].resampled == "people"
    assert np.isnan(evaluation.intervals["raw"].mean_interval["rmse"]).all()
    assert evaluation.people == split["people"]
    written = tmp_path / "people.json"
    one_each = evaluate_run(run, tiny.corpus, subset="all", n_resamples=400,
                            people={v: v for v in ids}, json_path=written)
    assert np.isfinite(one_each.intervals["raw"].mean_interval["rmse"]).all()
    # the JSON says that people were resampled, and is still a metrics file to replace
    saved = json.loads(written.read_text())
    assert saved["people"] == {v: v for v in ids} and list(saved)[:-1] == list(one_each.tables)
    assert _foreign("--json", written) == ""
    saved["people"] = ["not", "a", "mapping"]
    written.write_text(json.dumps(saved))
    assert _foreign("--json", written) == "is not a metrics file of coreaffect"
    assert evaluate_run(run, tiny.corpus, subset="all", n_resamples=0).people is None
    assert main(["evaluate", str(run), str(tiny.corpus), "--subset", "all", "--resamples", "400",
                 "--quiet"]) == 0
    assert "no 95% intervals: too few people" in capsys.readouterr().out
    # a resume goes on with the run's people; other people are another split
    with pytest.raises(CoreAffectError, match=r"split differently \(.*people.*\)"):
        train_run(tiny.corpus, run, people={ids[0]: "P"}, resume=True, **args)
    train_run(tiny.corpus, run, resume=True, **args)
    assert json.loads((run / "split.json").read_text())["people"] == split["people"]


def test_a_run_s_people_serve_its_own_dataset_only(tmp_path, caplog):
    from coreaffect.experiment import run_people

    run, data = tmp_path / "run", tmp_path / "data"
    run.mkdir()
    data.mkdir()
    assert run_people(run, data) is None  # no split: a network trained elsewhere
    split = {"data": str(data.resolve()), "format": "csv", "seed": 0, "train": ["a"],
             "val": [], "test": ["b"], "people": {"a": "P", "b": "Q"}}
    (run / "split.json").write_text(json.dumps(split))
    assert run_people(run, data) == {"a": "P", "b": "Q"}
    assert run_people(run, data, {"b": "R"}) == {"b": "R"}  # given: used as it is
    assert run_people(run, tmp_path / "moved") is None
    assert "was split by person on" in caplog.text
    split["people"] = {"a": 3}
    (run / "split.json").write_text(json.dumps(split))
    with pytest.raises(CoreAffectError, match=r"split\.json: 'people' must map video ids"):
        run_people(run, data)


def test_a_split_of_ids_written_in_nfd_is_read_in_nfc(tmp_path):
    # earlier versions kept an annotation's name as the file system gave it (NFD on macOS);
    # discovery now gives ids in NFC, and the run's own split must still name its videos
    nfc, nfd = "caf\u00e9", "cafe\u0301"
    split = {"data": "corpus", "format": "csv", "seed": 0, "train": ["a"], "val": ["b"],
             "test": [nfd], "people": {nfd: "P1", "a": "P2"}}
    (tmp_path / "split.json").write_text(json.dumps(split))
    read = read_split(tmp_path)
    assert read["test"] == [nfc] and read["people"] == {nfc: "P1", "a": "P2"}
    assert held_out_videos(tmp_path) == {nfc}
