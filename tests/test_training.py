"""The training loop: dense windows equal dense inference, logs, best model, resume, budget."""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace as dataclasses_replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from coreaffect.clips import ClipDataset
from coreaffect.config import ClipConfig
from coreaffect.corpus import LabelledVideo
from coreaffect.errors import CoreAffectError
from coreaffect.faces import FaceCrops
from coreaffect.hidden_route import create_model
from coreaffect.training import TrainConfig, affect_loss, dense_window_estimates, train_hidden_route

SIDE = 16


def _video(n: int, seed: int, video_id: str) -> LabelledVideo:
    """Frames whose brightness follows valence: a learnable toy task."""
    rng = np.random.default_rng(seed)
    valence = np.sin(np.arange(n) / 9 + seed)
    arousal = np.cos(np.arange(n) / 13 + seed)
    level = (valence + 1) / 2 * 200 + 20
    crops = (level[:, None, None, None] + rng.normal(0, 5, (n, SIDE, SIDE, 3)))
    crops = np.clip(crops, 0, 255).astype(np.uint8)
    face = np.ones(n, bool)
    face[5:9] = False
    fc = FaceCrops(crops=crops, boxes=np.zeros((n, 4), np.float32), face_found=face,
                   times=np.arange(n) / 25.0, indices=np.arange(n, dtype=np.int64))
    labels = np.stack([valence, arousal], axis=1).astype(np.float32)
    return LabelledVideo(video_id, fc, labels)


def _config(**kwargs) -> TrainConfig:
    base = dict(preset="lite", epochs=2, batch_size=4, patience=3, seed=0)
    base.update(kwargs)
    return TrainConfig(**base)


OVERRIDES = {"input_size": SIDE}


def test_dense_windows_equal_dense_inference():
    torch.manual_seed(0)
    model = create_model("lite", input_size=SIDE).eval()
    video = _video(64, 0, "a")
    frames = torch.from_numpy(video.crops.crops).permute(3, 0, 1, 2).float() / 255  # (C, T, H, W)
    with torch.no_grad():
        windows, first = dense_window_estimates(model, frames[None])
        dense = model.predict_dense(video.crops.crops)
    stride = model.config.temporal_stride
    for k in range(windows.mean.shape[1] - 1):
        # frame S (first + k) + 8 lies 1/8 of a stride past window k's centre (7.5 frames in)
        frame = stride * (first + k) + 8
        for field in ("mean", "var"):
            ours = getattr(windows, field)[0]
            torch.testing.assert_close(0.875 * ours[k] + 0.125 * ours[k + 1],
                                       getattr(dense, field)[frame], atol=1e-5, rtol=1e-4)


def test_affect_loss_kinds():
    mean = torch.zeros(4, 2, requires_grad=True)
    var = torch.ones(4, 2, requires_grad=True)
    target = torch.full((4, 2), 0.5)
    nll = affect_loss(mean, var, target, "nll")
    assert nll.item() == pytest.approx(0.5 * 0.25)
    for kind in ("beta-nll", "mse", "ccc"):
        loss = affect_loss(mean, var, target + torch.randn(4, 2), kind)
        loss.backward()
        assert torch.isfinite(loss)
    with pytest.raises(CoreAffectError):
        TrainConfig(loss="l1")


def test_ccc_loss_is_within_each_sequence():
    from coreaffect.metrics import ccc

    gen = torch.Generator().manual_seed(0)
    mean = torch.rand(3, 12, 2, generator=gen, dtype=torch.float64) * 2 - 1
    var = torch.rand(3, 12, 2, generator=gen, dtype=torch.float64) + 0.1
    target = torch.rand(3, 12, 2, generator=gen, dtype=torch.float64) * 2 - 1
    valid = torch.rand(3, 12, generator=gen) > 0.3
    valid[2] = False  # a sequence without scored windows does not count, nor one with one
    valid[2, 4] = True  # (its CCC is 0 whatever the estimate: it would only damp the others')
    loss = affect_loss(mean, var, target, "ccc", mse_weight=0.2, valid=valid)
    m, v, y = mean[valid].numpy(), var[valid].numpy(), target[valid].numpy()
    concordance = [ccc(target[b][valid[b]][:, d].numpy(), mean[b][valid[b]][:, d].numpy())
                   for b in range(2) for d in range(2)]
    expected = (1 - np.mean(concordance) + 0.2 * np.mean((y - m) ** 2)
                + 0.5 * np.mean(np.log(v) + (y - m) ** 2 / v))
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    windows = affect_loss(mean[0], var[0], target[0], "ccc", valid=valid[0])  # (K, 2): one batch
    assert windows.item() == pytest.approx(affect_loss(mean[:1], var[:1], target[:1], "ccc",
                                                       valid=valid[:1]).item(), rel=1e-9)
    # sequences of one scored window each: the loss has no concordance term, and is finite
    single = affect_loss(mean[2:], var[2:], target[2:], "ccc", mse_weight=0.2, valid=valid[2:])
    m, v, y = mean[2, 4].numpy(), var[2, 4].numpy(), target[2, 4].numpy()
    expected = 0.2 * np.mean((y - m) ** 2) + 0.5 * np.mean(np.log(v) + (y - m) ** 2 / v)
    assert single.item() == pytest.approx(expected, rel=1e-9)


def test_early_stopping_waits_for_half_the_run():
    from coreaffect.training import _patience_spent

    assert not _patience_spent(9, 5, patience=5)
    assert _patience_spent(10, 5, patience=5)  # 5 epochs without progress, 10 // 2 = 5
    assert not _patience_spent(64, 25, patience=40)
    assert _patience_spent(65, 25, patience=40)  # an early best: patience decides
    assert not _patience_spent(374, 274, patience=100)  # a late best: 100 < 374 // 2, go on
    assert _patience_spent(548, 274, patience=100)


def test_training_writes_run_and_log(tmp_path):
    train = ClipDataset([_video(96, s, f"t{s}") for s in range(3)], ClipConfig(),
                        dense_length=48, augment=True)
    val = [_video(64, 9, "v")]
    result = train_hidden_route(train, val, tmp_path / "run", _config(),
                                model_overrides=OVERRIDES)
    assert len(result.history) == 2 and result.stopped == "epochs"
    assert {"train_loss", "val_ccc_valence", "val_rmse_arousal", "seconds"} <= set(
        result.history[0])
    assert (tmp_path / "run" / "hidden_route.safetensors").exists()
    log = json.loads((tmp_path / "run" / "training" / "log.json").read_text())
    assert log == json.loads(json.dumps(result.history))
    csv_lines = (tmp_path / "run" / "training" / "log.csv").read_text().splitlines()
    assert len(csv_lines) == 3
    best = max(result.history, key=lambda r: r["val_ccc"])
    assert result.best_epoch == best["epoch"]


def test_validating_every_nth_epoch(tmp_path):
    """Only every n-th epoch and the last are validated; the best is chosen among them, and
    early stopping never ends a run before any epoch was validated."""
    train = ClipDataset([_video(96, s, f"t{s}") for s in range(2)], ClipConfig(),
                        dense_length=48)
    val = [_video(64, 9, "v")]
    result = train_hidden_route(train, val, tmp_path / "run",
                                _config(epochs=5, validate_every=2, patience=100),
                                model_overrides=OVERRIDES)
    validated = [row["epoch"] for row in result.history if "val_ccc" in row]
    assert validated == [2, 4, 5] and len(result.history) == 5
    best = max((r for r in result.history if "val_ccc" in r), key=lambda r: r["val_ccc"])
    assert result.best_epoch == best["epoch"]
    assert len((tmp_path / "run" / "training" / "log.csv").read_text().splitlines()) == 6
    # a patience shorter than the validation interval: no stop before the first validation
    early = train_hidden_route(train, val, tmp_path / "early",
                               _config(epochs=6, validate_every=3, patience=1),
                               model_overrides=OVERRIDES)
    assert len(early.history) == 6 and early.best_epoch in (3, 6)
    with pytest.raises(CoreAffectError, match="validate_every"):
        TrainConfig(validate_every=0)


def test_resuming_before_any_validation_with_the_budget_spent(tmp_path, monkeypatch):
    """A run interrupted after an epoch that was not validated, its budget spent meanwhile,
    still ends with a network: one more epoch, validated."""
    import coreaffect.training as training

    train = ClipDataset([_video(96, 0, "t")], ClipConfig(), dense_length=48)
    val = [_video(64, 9, "v")]
    write_log = training._write_log

    def interrupted(directory, history):
        write_log(directory, history)
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "_write_log", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_hidden_route(train, val, tmp_path / "run", _config(epochs=10, validate_every=5),
                           model_overrides=OVERRIDES)
    monkeypatch.setattr(training, "_write_log", write_log)
    assert not (tmp_path / "run" / "hidden_route.json").exists()  # no validated epoch yet
    resumed = train_hidden_route(train, val, tmp_path / "run",
                                 _config(epochs=10, validate_every=5, max_minutes=1e-4),
                                 model_overrides=OVERRIDES, resume=True)
    assert resumed.stopped == "time-budget" and len(resumed.history) == 2
    assert resumed.best_epoch == 2 and "val_ccc" in resumed.history[1]


def test_training_is_seeded_and_leaves_the_callers_random_state(tmp_path):
    train = ClipDataset([_video(64, 1, "t")], ClipConfig(stride=8))
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = train_hidden_route(train, None, tmp_path / "a", _config(epochs=1),
                               model_overrides=OVERRIDES)
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(456)  # another caller state: the same network all the same
    second = train_hidden_route(train, None, tmp_path / "b", _config(epochs=1),
                                model_overrides=OVERRIDES)
    assert first.history[0]["train_loss"] == second.history[0]["train_loss"]
    a = load_file(tmp_path / "a" / "hidden_route.safetensors")
    b = load_file(tmp_path / "b" / "hidden_route.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_window_mode_and_no_validation(tmp_path):
    train = ClipDataset([_video(64, 1, "t")], ClipConfig(stride=8))
    result = train_hidden_route(train, None, tmp_path / "run", _config(epochs=1),
                                model_overrides=OVERRIDES)
    assert result.best_epoch == 1


@pytest.mark.parametrize("stop", ["after the epoch", "while saving it"])
def test_resume_continues_where_it_stopped(tmp_path, monkeypatch, caplog, stop):
    videos = [_video(96, s, f"t{s}") for s in range(2)]
    val = [_video(64, 9, "v")]

    def data():
        return ClipDataset(videos, ClipConfig(), dense_length=48)

    straight = train_hidden_route(data(), val, tmp_path / "a", _config(epochs=3),
                                  model_overrides=OVERRIDES)
    # interrupt the second run (as Ctrl-C would) once its second epoch is saved, or between
    # writing that epoch's optimizer state and the weights and state that name it
    import coreaffect.training as training

    name = "_write_log" if stop == "after the epoch" else "save_state"
    original, calls = getattr(training, name), []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2 and name == "save_state":
            raise KeyboardInterrupt
        original(*args, **kwargs)
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(training, name, interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_hidden_route(data(), val, tmp_path / "b", _config(epochs=3),
                           model_overrides=OVERRIDES)
    monkeypatch.setattr(training, name, original)
    resumed = train_hidden_route(data(), val, tmp_path / "b", _config(epochs=3),
                                 model_overrides=OVERRIDES, resume=True)
    assert len(resumed.history) == 3 and "start afresh" not in caplog.text
    assert len(list((tmp_path / "b" / "training").glob("optimizer*.pt"))) == 1
    for a, b in zip(straight.history, resumed.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["val_ccc"] == pytest.approx(b["val_ccc"], rel=1e-3, abs=1e-4)


def test_time_budget_stops_cleanly(tmp_path):
    train = ClipDataset([_video(96, 0, "t")], ClipConfig(), dense_length=48)
    result = train_hidden_route(train, None, tmp_path / "run",
                                _config(epochs=50, max_minutes=1e-4),
                                model_overrides=OVERRIDES)
    assert result.stopped == "time-budget" and len(result.history) == 1
    assert (tmp_path / "run" / "hidden_route.json").exists()


def test_a_budget_spent_by_validation_ends_the_training(tmp_path, monkeypatch):
    import time

    import coreaffect.training as training

    scores = training._validation_scores

    def slow(*args, **kwargs):  # a validation that outlasts the whole budget
        time.sleep(6)
        return scores(*args, **kwargs)

    monkeypatch.setattr(training, "_validation_scores", slow)
    train = ClipDataset([_video(96, 0, "t")], ClipConfig(), dense_length=48)
    result = train_hidden_route(train, [_video(64, 9, "v")], tmp_path / "run",
                                _config(epochs=50, max_minutes=5 / 60),  # 5 s: one batch
                                model_overrides=OVERRIDES)
    assert result.stopped == "time-budget" and len(result.history) == 1  # no second epoch


def test_a_resumed_run_stops_early_only_where_the_run_itself_would(tmp_path, monkeypatch):
    """Early stopping is judged at validated epochs; a resume after an epoch that was not
    validated goes on as the run would have."""
    import coreaffect.training as training

    scores = iter([0.5, 0.1, 0.2, 0.3, 0.4, 0.45])  # the best at the first validated epoch

    def scripted(*args, **kwargs):
        return {"val_ccc": next(scores)}

    monkeypatch.setattr(training, "_validation_scores", scripted)
    write_log = training._write_log

    def interrupted(directory, history):
        write_log(directory, history)
        if len(history) == 5:  # after epoch 5, which is not validated (every 2nd is)
            raise KeyboardInterrupt

    monkeypatch.setattr(training, "_write_log", interrupted)
    train = ClipDataset([_video(96, 0, "t")], ClipConfig(), dense_length=48)
    config = _config(epochs=8, validate_every=2, patience=3)
    with pytest.raises(KeyboardInterrupt):
        train_hidden_route(train, [_video(64, 9, "v")], tmp_path / "run", config,
                           model_overrides=OVERRIDES)
    monkeypatch.setattr(training, "_write_log", write_log)
    # at epoch 5, three epochs after the best (2), but 5 was not validated: the run goes on to
    # validate epoch 6 (it would have stopped there anyway, but not before)
    resumed = train_hidden_route(train, [_video(64, 9, "v")], tmp_path / "run", config,
                                 model_overrides=OVERRIDES, resume=True)
    assert len(resumed.history) == 6 and "val_ccc" in resumed.history[5]


def test_resuming_a_run_that_stopped_trains_no_further(tmp_path):
    """The budget counts the time spent before the resume; an early stop stays stopped."""
    train = ClipDataset([_video(96, 0, "t")], ClipConfig(), dense_length=48)
    spent = train_hidden_route(train, None, tmp_path / "run", _config(epochs=50, max_minutes=1e-4),
                               model_overrides=OVERRIDES)
    again = train_hidden_route(train, None, tmp_path / "run", _config(epochs=50, max_minutes=1e-4),
                               model_overrides=OVERRIDES, resume=True)
    assert again.stopped == "time-budget" and again.history == spent.history
    state = json.loads((tmp_path / "run" / "training" / "last.json").read_text())
    assert state["config"]["elapsed"] >= spent.history[0]["seconds"] - 0.01  # rounded to 0.01
    more = train_hidden_route(train, None, tmp_path / "run", _config(epochs=2, max_minutes=None),
                              model_overrides=OVERRIDES, resume=True)  # a budget lifted
    assert len(more.history) == 2 and more.history[0] == spent.history[0]


def test_empty_training_set_is_an_error(tmp_path):
    with pytest.raises(CoreAffectError, match="no training clip"):
        train_hidden_route(ClipDataset([_video(8, 0, "t")]), None, tmp_path, _config())


@pytest.mark.parametrize("dense", [True, False])
def test_training_on_clips_without_a_label_is_an_error(tmp_path, dense):
    # labels that no frame reaches (a delay in the wrong unit): nothing may be saved as a run
    video = _video(64, 0, "t")
    unlabelled = video._replace(labels=np.full_like(video.labels, np.nan))
    train = ClipDataset([unlabelled], ClipConfig(stride=8), dense_length=48 if dense else None)
    # window mode drops unlabelled clips before training; dense mode finds out in the epoch
    with pytest.raises(CoreAffectError, match="epoch 1: no training clip has a frame with both"
                       if dense else "no training clip"):
        train_hidden_route(train, None, tmp_path, _config(), model_overrides=OVERRIDES)
    assert not (tmp_path / "hidden_route.safetensors").exists()


def test_a_resume_checks_the_data_settings_and_which_optimizer_state_is_whose(
        tmp_path, caplog, saved_without_config):
    from coreaffect.config import DataConfig, FaceConfig

    videos = [_video(96, s, f"t{s}") for s in range(2)]
    data = ClipDataset(videos, ClipConfig(), dense_length=48)
    train_hidden_route(data, None, tmp_path, _config(epochs=1), model_overrides=OVERRIDES)
    other = DataConfig(faces=FaceConfig(margin=1.0))
    with pytest.raises(CoreAffectError, match="last.json: the run was trained with other data"):
        train_hidden_route(data, None, tmp_path, _config(epochs=2), data_config=other,
                           model_overrides=OVERRIDES, resume=True)
    # an optimizer state that is not the one last.json names (a file of an older version,
    # saved under one name, or altered): not used
    saved, = (tmp_path / "training").glob("optimizer-*.pt")
    saved.write_bytes(saved.read_bytes() + b"\0")
    result = train_hidden_route(data, None, tmp_path, _config(epochs=2),
                                model_overrides=OVERRIDES, resume=True)
    assert len(result.history) == 2 and "moments start afresh" in caplog.text
    saved, = (tmp_path / "training").glob("optimizer-*.pt")
    saved.rename(tmp_path / "training" / "optimizer.pt")  # as runs saved it before
    (tmp_path / "training" / "optimizer.pt").write_bytes(b"not torch")
    saved_without_config(tmp_path / "training", "last")
    meta = json.loads((tmp_path / "training" / "last.json").read_text())
    assert json.loads(json.dumps(DataConfig().to_dict())) == meta["config"]["data"]
    del meta["config"]["optimizer_sha256"]  # saved before the hash was kept: the file is trusted
    (tmp_path / "training" / "last.json").write_text(json.dumps(meta))
    with pytest.raises(CoreAffectError, match=r"optimizer\.pt: not the optimizer state"):
        train_hidden_route(data, None, tmp_path, _config(epochs=3), model_overrides=OVERRIDES,
                           resume=True)


def test_a_resume_refuses_a_state_it_cannot_go_on_from(tmp_path, monkeypatch,
                                                       saved_without_config):
    import coreaffect.training as training

    videos = [_video(96, s, f"t{s}") for s in range(2)]
    data = ClipDataset(videos, ClipConfig(), dense_length=48)
    write_log = training._write_log

    def interrupted(directory, history):  # stopped after epoch 2, before its validation at 5
        write_log(directory, history)
        if len(history) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(training, "_write_log", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_hidden_route(data, [_video(64, 9, "v")], tmp_path, _config(epochs=10,
                                                                         validate_every=5),
                           model_overrides=OVERRIDES)
    monkeypatch.setattr(training, "_write_log", write_log)
    with pytest.raises(CoreAffectError, match=r"last\.json: 2 epoch\(s\) were trained but none "
                                              r"validated yet.*resume with --epochs 3 or more"):
        train_hidden_route(data, [_video(64, 9, "v")], tmp_path, _config(epochs=2),
                           model_overrides=OVERRIDES, resume=True)
    last = tmp_path / "training" / "last.json"
    saved_without_config(tmp_path / "training", "last")  # the resume's own checks, behind that
    meta = json.loads(last.read_text())
    for key, value in (("history", None), ("best_epoch", "2"), ("history", [1, 2])):
        broken = json.loads(json.dumps(meta))
        broken["config"][key] = value
        last.write_text(json.dumps(broken))
        with pytest.raises(CoreAffectError, match=rf"last\.json: its {key} is missing or not of "
                                                  "the kind training writes"):
            train_hidden_route(data, None, tmp_path, _config(epochs=3),
                               model_overrides=OVERRIDES, resume=True)


def test_a_diverging_loss_stops_training_with_an_error(tmp_path, monkeypatch):
    import coreaffect.training as training

    batch_loss = training._batch_loss
    monkeypatch.setattr(training, "_batch_loss",
                        lambda *args: batch_loss(*args) * float("nan"))
    videos = [_video(96, s, f"t{s}") for s in range(2)]
    with pytest.raises(CoreAffectError, match="epoch 1: the training loss is nan"):
        train_hidden_route(ClipDataset(videos, ClipConfig(), dense_length=48), None, tmp_path,
                           _config(), model_overrides=OVERRIDES)
    assert not (tmp_path / "hidden_route.safetensors").exists()  # no NaN network saved
    monkeypatch.setattr(training, "_batch_loss", batch_loss)
    data = ClipDataset(videos, ClipConfig(), dense_length=48)
    step, steps = torch.optim.AdamW.step, []

    def overflowing(self, *args, **kwargs):  # the last step of the epoch overflows: its loss
        out = step(self, *args, **kwargs)  # was finite, and no later loss sees the weights
        steps.append(1)
        if len(steps) == math.ceil(len(data) / 4):
            with torch.no_grad():
                self.param_groups[0]["params"][0].fill_(float("inf"))
        return out

    monkeypatch.setattr(torch.optim.AdamW, "step", overflowing)
    with pytest.raises(CoreAffectError, match="epoch 1: the network's weights are no longer"):
        train_hidden_route(data, None, tmp_path, _config(), model_overrides=OVERRIDES)
    assert not (tmp_path / "hidden_route.safetensors").exists()


@pytest.mark.parametrize("field, value", [
    ("epochs", 2.5), ("epochs", True), ("epochs", 0), ("batch_size", 0), ("patience", 0),
    ("seed", -1), ("seed", 1.5), ("seed", 2**64), ("num_workers", -1), ("lr", 0.0),
    ("lr", float("nan")), ("weight_decay", float("nan")), ("beta", -1.0),
    ("mse_weight", float("nan")), ("max_minutes", float("inf")), ("loss", "l1"),
    ("preset", "huge")])
def test_train_config_refuses_values_that_would_fail_late(field, value):
    with pytest.raises(CoreAffectError, match=f"TrainConfig.{field} must be"):
        TrainConfig(**{field: value})
    assert TrainConfig(seed=2**64 - 1).seed == 2**64 - 1


def test_batches_of_one_length_are_the_plain_shuffle_and_mixed_lengths_never_share_a_batch():
    from torch.utils.data import DataLoader

    from coreaffect.training import _EqualLengthBatches

    items = list(range(11))
    generator = torch.Generator().manual_seed(7)  # shared, as the training loop shares it
    ours = DataLoader(items, batch_sampler=_EqualLengthBatches(
        np.full(11, 400), np.arange(11), 4, generator), generator=generator)
    plain = DataLoader(items, batch_size=4, shuffle=True,
                       generator=torch.Generator().manual_seed(7))
    assert [b.tolist() for b in ours] == [b.tolist() for b in plain]
    lengths = np.array([400, 125, 400, 200, 125, 400, 125, 200, 400])
    keep = np.flatnonzero(lengths != 200)
    sampler = _EqualLengthBatches(lengths, keep, 2, torch.Generator().manual_seed(3))
    batches = list(sampler)
    assert len(batches) == len(sampler) == 4  # 400 x 4 -> 2 batches, 125 x 3 -> 2
    assert sorted(i for b in batches for i in b) == keep.tolist()
    assert all(len({lengths[i] for i in b}) == 1 for b in batches)


def test_videos_of_several_short_lengths_train_and_too_short_ones_are_left_out(tmp_path,
                                                                                caplog):
    # shorter than dense_length, each video is one sequence of its own length; 20 frames hold
    # no lite window with its context (24), so that video is named and left out, as is one of
    # 10 frames, shorter than a clip, which gives no sequence at all
    lengths = (40, 56, 40, 56, 72, 20, 10)
    train = ClipDataset([_video(n, s, f"t{s}") for s, n in enumerate(lengths)], ClipConfig(),
                        dense_length=400, augment=True)
    assert train.lengths.tolist() == list(lengths[:-1])
    with caplog.at_level("WARNING", logger="coreaffect.training"):
        result = train_hidden_route(train, None, tmp_path / "run", _config(batch_size=2),
                                    model_overrides=OVERRIDES)
    assert "2 training video(s) shorter" in caplog.text and "left out: t5, t6" in caplog.text
    assert [row["batches"] for row in result.history] == [3, 3]  # 40 x 2, 56 x 2, 72 x 1
    only_short = ClipDataset([_video(20, 0, "tiny")], ClipConfig(), dense_length=400)
    with pytest.raises(CoreAffectError, match="shorter than 24 frames"):
        train_hidden_route(only_short, None, tmp_path / "short", _config(),
                           model_overrides=OVERRIDES)


def test_a_trained_run_is_not_overwritten_without_resume(tmp_path):
    train = ClipDataset([_video(64, 1, "t")], ClipConfig(stride=8))
    train_hidden_route(train, None, tmp_path / "run", _config(epochs=1),
                       model_overrides=OVERRIDES)
    weights = (tmp_path / "run" / "hidden_route.safetensors").read_bytes()
    with pytest.raises(CoreAffectError, match="holds a trained hidden route"):
        train_hidden_route(train, None, tmp_path / "run", _config(epochs=2),
                           model_overrides=OVERRIDES)
    assert (tmp_path / "run" / "hidden_route.safetensors").read_bytes() == weights
    assert len(json.loads((tmp_path / "run" / "training" / "log.json").read_text())) == 1
    (tmp_path / "run" / "training" / "last.json").unlink()  # a network without a resume state
    with pytest.raises(CoreAffectError, match="no state to resume it from"):
        train_hidden_route(train, None, tmp_path / "run", _config(epochs=2), resume=True,
                           model_overrides=OVERRIDES)
    assert (tmp_path / "run" / "hidden_route.safetensors").read_bytes() == weights


def test_validation_videos_shorter_than_a_clip_are_left_out_by_name(tmp_path, caplog):
    train = ClipDataset([_video(64, 1, "t")], ClipConfig(stride=8))
    val = [_video(64, 9, "v"), _video(10, 8, "tiny")]
    with caplog.at_level("WARNING", logger="coreaffect.evaluation"):
        result = train_hidden_route(train, val, tmp_path / "run", _config(epochs=1),
                                    model_overrides=OVERRIDES)
    assert "tiny" in caplog.text and math.isfinite(result.history[0]["val_ccc"])


def test_the_log_is_strict_json(tmp_path):
    import math

    from coreaffect.training import _write_log

    _write_log(tmp_path, [{"epoch": 1, "train_loss": math.nan, "val_ccc": -math.inf,
                           "batches": 0}])

    def refuse(name):
        raise AssertionError(f"{name} is not JSON")

    log = json.loads((tmp_path / "log.json").read_text(), parse_constant=refuse)
    assert log == [{"epoch": 1, "train_loss": None, "val_ccc": None, "batches": 0}]


def test_a_resume_trains_with_the_weight_decay_it_is_given(tmp_path):
    train = ClipDataset([_video(96, 0, "t")], ClipConfig(), dense_length=48)
    train_hidden_route(train, None, tmp_path / "run", _config(epochs=1, weight_decay=0.0),
                       model_overrides=OVERRIDES)
    train_hidden_route(train, None, tmp_path / "run", _config(epochs=2, weight_decay=0.01),
                       model_overrides=OVERRIDES, resume=True)
    path, = (tmp_path / "run" / "training").glob("optimizer-*.pt")
    saved = torch.load(path, weights_only=True)
    assert [g["weight_decay"] for g in saved["optimizer"]["param_groups"]] == [0.01]


def test_training_keeps_the_windows_that_clips_keep_at_their_thresholds():
    # shares compared alike in float64: 9 labelled frames of 16 are just under 0.5625000001
    from types import SimpleNamespace

    from coreaffect.clips import window_targets
    from coreaffect.training import _window_targets

    model = create_model("lite").config
    labels = np.zeros((32, 2), np.float32)
    labels[9:16] = np.nan  # the first window: 9 of 16 frames labelled
    face = np.ones(32, bool)
    for share in (9 / 16, 0.5625000001, 9 / 16 - 1e-9):
        config = ClipConfig(min_labelled=share, min_face=0.5)
        starts, _ = window_targets(labels, face, dataclasses_replace(config, stride=4))
        batch = SimpleNamespace(labels=torch.as_tensor(labels)[None],
                                face_found=torch.as_tensor(face)[None])
        _, valid = _window_targets(batch, 0, 5, model, config)
        assert (0 in starts.tolist()) == bool(valid[0, 0]), share


def test_a_budget_spent_during_batches_without_a_valid_window_ends_the_epoch(tmp_path,
                                                                             monkeypatch):
    import coreaffect.training as training

    real, calls = training._batch_loss, []

    def first_only(*args, **kwargs):  # the batches after the first have no window to score
        calls.append(1)
        if len(calls) == 2:
            time.sleep(6)  # the budget is spent on a batch that is skipped
        return real(*args, **kwargs) if len(calls) == 1 else None

    monkeypatch.setattr(training, "_batch_loss", first_only)
    train = ClipDataset([_video(96, seed, f"t{seed}") for seed in range(4)], ClipConfig(),
                        dense_length=48)
    result = train_hidden_route(train, None, tmp_path / "run",
                                _config(epochs=1, batch_size=1, max_minutes=5 / 60),
                                model_overrides=OVERRIDES)
    # the epoch ends at the batch that spent the budget, not after every batch left
    assert result.stopped == "time-budget" and len(calls) == 2
    assert result.history[0]["batches"] == 1


def test_a_first_epoch_with_nothing_to_learn_is_an_error_whatever_the_budget(tmp_path,
                                                                            monkeypatch):
    import coreaffect.training as training

    monkeypatch.setattr(training, "_batch_loss", lambda *args, **kwargs: None)  # no window
    train = ClipDataset([_video(96, 0, "t")], ClipConfig(), dense_length=48)
    for minutes in (None, 1e-6):  # a budget spent at the first batch saves no untrained network
        with pytest.raises(CoreAffectError, match="epoch 1: no training clip has a frame"):
            train_hidden_route(train, None, tmp_path / f"run{minutes}",
                               _config(epochs=2, batch_size=1, max_minutes=minutes),
                               model_overrides=OVERRIDES)
        assert not (tmp_path / f"run{minutes}" / "hidden_route.safetensors").exists()


def test_training_videos_at_rates_far_apart_are_warned_of(tmp_path, caplog):
    slow, fast = _video(96, 0, "slow"), _video(96, 1, "fast")
    fast = fast._replace(crops=fast.crops._replace(times=fast.crops.times / 2))  # 50 fps
    train = ClipDataset([slow, fast, _video(96, 2, "also_slow")], ClipConfig(), dense_length=48)
    with caplog.at_level("WARNING", logger="coreaffect.training"):
        train_hidden_route(train, None, tmp_path / "run", _config(epochs=1),
                           model_overrides=OVERRIDES)
    assert ("the training videos run at 25 (slow) to 50 (fast) frames per second, so the "
            "network's 16-frame clips span different times in them; the run keeps 25"
            ) in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="coreaffect.training"):
        train_hidden_route(ClipDataset([slow], ClipConfig(), dense_length=48), None,
                           tmp_path / "one", _config(epochs=1), model_overrides=OVERRIDES)
    assert "frames per second" not in caplog.text
