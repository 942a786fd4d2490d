"""The synthetic corpus: OU statistics, determinism, formats read back, detectability, plots."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from coreaffect import synthetic
from coreaffect.annotations import read_annotations
from coreaffect.config import DataConfig, FaceConfig
from coreaffect.corpus import discover, load_recording
from coreaffect.errors import CoreAffectError
from coreaffect.faces import FaceCropper, FaceCrops
from coreaffect.plots import plot_synthetic_samples
from coreaffect.synthetic import (
    MANIFEST,
    SynthConfig,
    read_truth,
    simulate_affect,
    write_corpus,
)
from coreaffect.video import VideoSource

EXACT = {"rater_noise": 0.0, "rater_delay": 0.0}  # annotations = truth, to file precision
NO_FACES = DataConfig(faces=FaceConfig(detector="none", crop_size=16))  # labels only, fast


def _small(**changes) -> SynthConfig:
    return SynthConfig(**{"videos": 2, "seconds": 2.0, "seed": 5, **changes})


def _frames(path) -> np.ndarray:
    return np.stack([frame.image for frame in VideoSource(path)])  # (T, H, W, 3)


def _files(root) -> dict[str, bytes]:
    """Annotation and truth files by relative path (videos are compared by decoded frames)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.csv"))}


@pytest.fixture(scope="module")
def exact(tmp_path_factory):
    """Two short DANTE videos whose annotations are exactly the truth (to 4 decimals)."""
    return write_corpus(tmp_path_factory.mktemp("exact") / "corpus", _small(**EXACT), workers=2)


# -- the valence-arousal process ------------------------------------------------------------


def test_ou_statistics_match_the_configuration():
    config = SynthConfig(std=(0.5, 0.7), correlation=0.4, reversion=(0.5, 1.0), mean=(0.1, -0.2))
    va = simulate_affect(200_000, 10.0, config, np.random.default_rng(0))
    assert va.shape == (200_000, 2)
    assert np.all(np.abs(va) < 1)
    x = np.arctanh(va)  # the latent OU process
    assert np.allclose(x.mean(axis=0), config.mean, atol=0.03)
    assert np.allclose(x.std(axis=0), config.std, rtol=0.05)
    assert np.corrcoef(x.T)[0, 1] == pytest.approx(0.4, abs=0.03)
    for d, theta in enumerate(config.reversion):  # exact discretisation: lag-1 corr exp(-theta dt)
        c = x[:, d] - x[:, d].mean()
        assert (c[1:] @ c[:-1]) / (c @ c) == pytest.approx(np.exp(-theta / 10.0), abs=0.01)


def test_ou_is_exact_for_a_coarse_step():
    """One sample per 2 s still has the stationary law and the exact autocorrelation."""
    config = SynthConfig(reversion=(0.3, 0.3), correlation=0.0)
    x = np.arctanh(simulate_affect(100_000, 0.5, config, np.random.default_rng(1)))
    assert np.allclose(x.std(axis=0), config.std, rtol=0.05)
    c = x[:, 1] - x[:, 1].mean()
    assert (c[1:] @ c[:-1]) / (c @ c) == pytest.approx(np.exp(-0.6), abs=0.02)


@pytest.mark.parametrize("changes", [
    {"frame_size": (160, 120)}, {"face_size": 64}, {"framing": "medium"}, {"format": "sewa"},
    {"correlation": 0.99, "reversion": (0.05, 2.0)}, {"videos": 0}, {"rater_noise": -0.1},
    {"correlation": 1.0, "reversion": (0.3, 0.3)},  # at the bound: a singular diffusion
    {"correlation": float("nan")}, {"std": (0.8, float("nan"))}, {"seconds": float("inf")},
    {"seconds": 0.01}, {"seed": -1},  # no frame; a seed numpy refuses
    {"fps": 0.5, "seconds": 600},  # a frame every 2 s: no clip, and OpenCV writes none
    {"seconds": 1e10}, {"videos": 10**9},  # numpy's memory error, after an empty folder
])
def test_invalid_configurations_are_refused(changes):
    with pytest.raises(CoreAffectError, match="SynthConfig"):
        SynthConfig(**changes)


# -- determinism ----------------------------------------------------------------------------


def test_same_seed_same_corpus_whatever_the_workers(exact, tmp_path):
    again = write_corpus(tmp_path / "again", exact.config, workers=1)
    assert again.ids == exact.ids and again.split == exact.split
    assert _files(again.root) == _files(exact.root)
    for video_id in exact.ids:
        first = _frames(exact.root / "videos" / f"{video_id}.avi")
        second = _frames(again.root / "videos" / f"{video_id}.avi")
        assert first.shape == (50, 240, 320, 3)
        np.testing.assert_array_equal(first, second)


def test_different_seeds_differ(exact, tmp_path):
    other = write_corpus(tmp_path / "other", dataclasses.replace(exact.config, seed=6), workers=1)
    assert _files(other.root) != _files(exact.root)
    first = _frames(exact.root / "videos" / "synth000.avi")
    assert not np.array_equal(first, _frames(other.root / "videos" / "synth000.avi"))


# -- layout, formats and what the readers make of them --------------------------------------


def test_discover_finds_every_video_and_no_truth_file(exact):
    recordings = discover(exact.root)
    assert [r.id for r in recordings] == exact.ids
    assert {r.format for r in recordings} == {"dante"}
    assert all(r.video.parent.name == "videos" for r in recordings)
    manifest = json.loads((exact.root / MANIFEST).read_text())
    assert manifest["ids"] == exact.ids
    assert (manifest["train"], manifest["test"]) == exact.split
    assert SynthConfig(**{k: tuple(v) if isinstance(v, list) else v
                          for k, v in manifest["config"].items()}) == exact.config
    assert (exact.root / "README.md").is_file()


def test_paper_split_of_23_videos(tmp_path):
    corpus = write_corpus(tmp_path / "c", SynthConfig(seconds=0.2, exit_rate=0, occlusion_rate=0))
    train, test = corpus.split
    assert (len(train), len(test)) == (13, 10)
    assert sorted(train + test) == corpus.ids


def test_dante_annotations_are_the_truth(exact):
    for video_id in exact.ids:
        truth = read_truth(exact.root, video_id)
        assert truth.values.shape == (50, 2) and truth.face_visible.dtype == bool
        np.testing.assert_allclose(truth.times, np.arange(50) / 25.0)
        annotations = read_annotations(exact.root / "annotation", "dante", video=video_id)
        assert annotations.raters.shape == (3, 50, 2)
        np.testing.assert_allclose(annotations.times, truth.times)
        np.testing.assert_allclose(annotations.values, truth.values, atol=5.1e-5)


def test_loaded_recordings_carry_the_truth(exact):
    for recording in discover(exact.root):
        video = load_recording(recording, NO_FACES)
        truth = read_truth(exact.root, recording.id)
        assert len(video.labels) == len(truth.values)
        np.testing.assert_allclose(video.labels, truth.values, atol=1e-4)


def test_csv_format_is_discovered_and_exact(tmp_path):
    corpus = write_corpus(tmp_path / "c", _small(format="csv", **EXACT), workers=1)
    recordings = discover(corpus.root)
    assert [r.id for r in recordings] == corpus.ids
    assert {r.format for r in recordings} == {"csv"}
    for recording in recordings:
        labels = load_recording(recording, NO_FACES).labels
        np.testing.assert_allclose(labels, read_truth(corpus.root, recording.id).values,
                                   atol=1e-4)


def test_another_frame_rate_keeps_25_hz_annotations(tmp_path):
    corpus = write_corpus(tmp_path / "c", _small(videos=1, fps=30.0, **EXACT), workers=1)
    truth = read_truth(corpus.root, "synth000")
    assert len(truth.times) == 60 and truth.times[1] == pytest.approx(1 / 30, abs=1e-6)
    with VideoSource(corpus.root / "videos" / "synth000.avi") as video:
        assert video.fps == pytest.approx(30.0)
    annotations = read_annotations(corpus.root / "annotation", "dante", video="synth000")
    np.testing.assert_allclose(annotations.times, np.arange(50) / 25.0)
    on_frames = np.interp(annotations.times, truth.times, truth.values[:, 0])
    np.testing.assert_allclose(annotations.values[:, 0], on_frames, atol=1e-4)


def test_raters_are_late_and_noisy(tmp_path):
    config = SynthConfig(videos=1, seconds=30.0, rater_delay=1.0, rater_noise=0.05,
                         exit_rate=0, occlusion_rate=0, seed=2)
    corpus = write_corpus(tmp_path / "c", config, workers=1)
    truth = read_truth(corpus.root, "synth000")
    raters = read_annotations(corpus.root / "annotation", "dante", video="synth000").raters
    for rater in raters:  # (T, 2)
        lags = np.arange(0, 60)  # frames
        errors = [np.abs(rater[lag:] - truth.values[:len(truth.values) - lag]).mean()
                  for lag in lags]
        best = lags[int(np.argmin(errors))] / 25.0
        assert 0.5 <= best <= 1.5  # the delay is 1 s * U(0.6, 1.4)
        residual = rater[int(best * 25):] - truth.values[:len(truth.values) - int(best * 25)]
        assert 0.01 < residual.std() < 0.1  # the rater noise, 0.05


def test_a_non_empty_folder_is_refused_and_a_corpus_replaced(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(CoreAffectError, match="not empty"):
        write_corpus(tmp_path / "mine", _small())
    first = write_corpus(tmp_path / "c", _small(videos=3), workers=1)
    second = write_corpus(tmp_path / "c", _small(videos=1), workers=1)
    assert second.ids == ["synth000"] and len(first.ids) == 3
    assert [r.id for r in discover(second.root)] == ["synth000"]
    added = [second.root / "videos" / "myclip.mp4", second.root / "annotation" / "me" / "x.txt"]
    for path in added:  # a user's files inside the corpus's folders, which are replaced whole
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("keep me")
    (second.root / "notes.txt").write_text("beside the corpus: never touched")
    with pytest.raises(CoreAffectError, match=r"did not write .*\(videos/myclip.mp4, "
                                              r"annotation/me/x.txt\)|\(annotation/me/x.txt, "
                                              r"videos/myclip.mp4\)"):
        write_corpus(tmp_path / "c", _small(videos=2), workers=1)
    assert all(path.read_text() == "keep me" for path in added)
    assert [r.id for r in discover(second.root)] == ["synth000"]  # the corpus is untouched
    for path in added:
        path.unlink()
    (second.root / "videos" / ".DS_Store").write_text("a file browser's")  # not refused
    assert write_corpus(tmp_path / "c", _small(videos=2), workers=1).ids == ["synth000",
                                                                             "synth001"]
    assert (second.root / "notes.txt").exists()


def test_a_failed_write_keeps_the_earlier_corpus_and_can_be_retried(tmp_path, monkeypatch):
    def everything(root) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"(folder)"
                for p in sorted(root.rglob("*"))}

    first = write_corpus(tmp_path / "c", _small(videos=2), workers=1)
    before = everything(first.root)
    calls = []

    def fail_on_the_second(*args):
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as Ctrl-C in the middle of the write
        return make_video(*args)

    make_video = synthetic._make_video
    monkeypatch.setattr(synthetic, "_make_video", fail_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        write_corpus(tmp_path / "c", _small(videos=3, seed=9), workers=1)
    assert everything(first.root) == before  # nothing of the failed write is left
    (tmp_path / "c" / ".partial-0123").mkdir()  # the leftover of a killed write
    monkeypatch.undo()
    again = write_corpus(tmp_path / "c", _small(videos=3, seed=9), workers=1)
    assert [r.id for r in discover(again.root)] == again.ids == ["synth000", "synth001",
                                                                 "synth002"]
    assert sorted(p.name for p in again.root.iterdir()) == [
        "README.md", "annotation", "synthetic_corpus.json", "truth", "videos"]
    empty = tmp_path / "empty"
    empty.mkdir()  # an empty folder that a failed first write leaves empty
    monkeypatch.setattr(synthetic, "_make_video", fail_on_the_second)
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        write_corpus(empty, _small(videos=3), workers=1)
    assert not any(empty.iterdir())
    monkeypatch.undo()
    mine = tmp_path / "mine"  # not a corpus: nothing in it is touched, dot-folders neither
    (mine / ".partial-mywork").mkdir(parents=True)
    (mine / ".partial-mywork" / "precious.txt").write_text("keep me")
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(CoreAffectError, match="not empty"):
        write_corpus(mine, _small(videos=1), workers=1)
    assert (mine / ".partial-mywork" / "precious.txt").read_text() == "keep me"


def test_discover_passes_over_the_build_folder_a_killed_write_leaves(exact, tmp_path):
    root = tmp_path / "c"
    shutil.copytree(exact.root, root)
    shutil.copytree(exact.root, root / ".partial-0123")  # killed before it could move in
    assert [r.id for r in discover(root)] == exact.ids


def test_a_first_write_interrupted_while_moving_in_can_be_retried(tmp_path, monkeypatch):
    moves = []

    def interrupted(src, dst):
        moves.append(Path(dst).name)
        raise KeyboardInterrupt  # the first move into a folder without a corpus

    monkeypatch.setattr(synthetic.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_corpus(tmp_path / "c", _small(videos=1), workers=1)
    monkeypatch.undo()
    assert moves == [MANIFEST]  # the manifest moves first: the folder is recognised as ours
    again = write_corpus(tmp_path / "c", _small(videos=1), workers=1)
    assert [r.id for r in discover(again.root)] == ["synth000"]


@pytest.mark.parametrize("error", [KeyboardInterrupt, OSError])
def test_a_replacement_stopped_while_moving_in_leaves_the_earlier_corpus_whole(tmp_path,
                                                                               monkeypatch, error):
    root = tmp_path / "c"
    write_corpus(root, _small(videos=2, seed=0), workers=1)
    before = {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    rename, calls = Path.rename, []

    def stopped(self, target):  # the new truth/ is about to move in, after videos/, annotation/
        if self.name == "truth" and Path(target).parent == root and not calls:
            calls.append(self)
            raise error("stopped")
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", stopped)
    with pytest.raises(error):
        write_corpus(root, _small(videos=1, seed=5), workers=1)
    monkeypatch.undo()
    after = {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert after == before  # not the new videos beside the old truth and manifest
    assert [r.id for r in discover(root)] == ["synth000", "synth001"]


# -- faces ----------------------------------------------------------------------------------


@pytest.mark.parametrize("framing", ["tight", "wide"])
def test_the_default_detector_finds_the_faces(tmp_path, framing):
    config = _small(seconds=8.0, exit_rate=20.0, occlusion_rate=0.0, framing=framing, seed=11)
    corpus = write_corpus(tmp_path / framing, config)
    found, visible = [], []
    for video_id in corpus.ids:
        crops = FaceCrops.concatenate(list(FaceCropper().crop_video(
            VideoSource(corpus.root / "videos" / f"{video_id}.avi"))))
        truth = read_truth(corpus.root, video_id)
        found.append(crops.face_found)
        visible.append(truth.face_visible)
    found, visible = np.concatenate(found), np.concatenate(visible)
    assert found[visible].mean() >= 0.95
    # the person left the frame: the cropper says so, but for the frames a detection is held
    assert (~visible).sum() >= 25
    assert (~found[~visible]).mean() >= 0.7


def test_plot_synthetic_samples(exact, tmp_path):
    frames = [_frames(exact.root / "videos" / f"{i}.avi")[10] for i in exact.ids]
    values = np.stack([read_truth(exact.root, i).values[10] for i in exact.ids])
    figure = Figure(figsize=(4, 4))
    ax = figure.add_subplot()
    assert plot_synthetic_samples(frames, values, ax=ax, title="samples") is ax
    assert ax.get_xlabel() == "valence" and ax.get_ylabel() == "arousal"
    assert ax.get_xlim()[0] < -1 and ax.get_ylim()[1] > 1
    figure.savefig(tmp_path / "samples.png")
    assert (tmp_path / "samples.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="pairs"):
        plot_synthetic_samples(frames, values[:1], ax=ax)
