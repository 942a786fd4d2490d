"""Run directories: round trip, atomic writes, and clear errors for damaged or foreign files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from coreaffect.checkpoint import (
    atomic_write,
    load_data_config,
    load_frame_rate,
    load_model,
    load_state,
    locate_detector,
    save_model,
    save_state,
)
from coreaffect.config import DataConfig, FaceConfig
from coreaffect.errors import CoreAffectError
from coreaffect.hidden_route import create_model


@pytest.fixture
def run(tmp_path):
    torch.manual_seed(0)
    model = create_model("lite", input_size=16).eval()
    data = DataConfig(faces=FaceConfig(margin=0.8))
    save_model(model, tmp_path / "run", data)
    return tmp_path / "run", model, data


def test_round_trip_gives_identical_outputs(run):
    path, model, data = run
    loaded = load_model(path)
    assert not loaded.training
    assert loaded.config == model.config
    video = torch.rand(2, 3, 16, 16, 16)
    with torch.no_grad():
        a, b = model(video), loaded(video)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)
    assert load_data_config(path) == data


def test_loading_leaves_the_global_random_stream_alone(run):
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    load_model(run[0])
    assert torch.equal(torch.rand(3), expected)


def test_files_are_safetensors_and_json(run):
    path, _, _ = run
    assert {p.name for p in path.iterdir()} == {"hidden_route.safetensors", "hidden_route.json"}
    meta = json.loads((path / "hidden_route.json").read_text())
    assert meta["format"] == 1 and meta["config"]["model"]["name"] == "lite"


def test_truncated_weights_are_refused(run):
    path, _, _ = run
    weights = path / "hidden_route.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(CoreAffectError, match="does not match"):
        load_model(path)


def test_tampered_weights_are_refused(run):
    path, _, _ = run
    weights = path / "hidden_route.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.raises(CoreAffectError, match="does not match"):
        load_model(path)


def test_garbage_with_matching_hash_is_refused(tmp_path):
    save_state(tmp_path, "thing", {"a": torch.zeros(2)}, {})
    (tmp_path / "thing.safetensors").write_bytes(b"not safetensors at all")
    meta = json.loads((tmp_path / "thing.json").read_text())
    import hashlib

    meta["weights_sha256"] = hashlib.sha256(b"not safetensors at all").hexdigest()
    (tmp_path / "thing.json").write_text(json.dumps(meta))
    with pytest.raises(CoreAffectError, match="not a readable safetensors"):
        load_state(tmp_path, "thing")


def test_other_format_version_is_refused(run):
    path, _, _ = run
    meta = json.loads((path / "hidden_route.json").read_text())
    meta["format"] = 99
    (path / "hidden_route.json").write_text(json.dumps(meta))
    with pytest.raises(CoreAffectError, match="format 99"):
        load_model(path)
    meta["format"] = 1
    del meta["config"]
    (path / "hidden_route.json").write_text(json.dumps(meta))
    with pytest.raises(CoreAffectError, match=r"hidden_route.json: not a .* \(no 'config'\)"):
        load_model(path)


def test_missing_pieces_are_named(tmp_path, run):
    path, _, _ = run
    with pytest.raises(CoreAffectError, match="no such run directory"):
        load_model(tmp_path / "absent")
    (path / "hidden_route.safetensors").unlink()
    with pytest.raises(CoreAffectError, match="missing"):
        load_model(path)
    (path / "hidden_route.json").write_text("{not json")
    with pytest.raises(CoreAffectError, match="unreadable"):
        load_model(path)


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    atomic_write(tmp_path / "a.txt", "one")
    atomic_write(tmp_path / "a.txt", b"two")
    assert (tmp_path / "a.txt").read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_a_write_removes_what_killed_writers_of_its_file_left(tmp_path):
    """A writer killed mid-write (SIGKILL: no clean-up runs) leaves its temporary file; the
    next write of the same file removes it once it is old, and nothing else."""
    import os
    import time

    killed = tmp_path / "..thing.safetensors.pending.0123456789abcdef"  # save_state's, killed
    running = tmp_path / ".a.txt.fedcba9876543210"  # another process's write, in progress
    others = [tmp_path / ".a.txt.not-ours", tmp_path / ".b.txt.0123456789abcdef"]
    for path in [killed, running, *others]:
        path.write_bytes(b"x" * 100)
    hours_ago = time.time() - 2 * 3600
    for path in [killed, *others]:
        os.utime(path, (hours_ago, hours_ago))
    save_state(tmp_path, "thing", {"w": torch.ones(3)}, {"n": 1})
    atomic_write(tmp_path / "a.txt", "new")
    assert not killed.exists()
    assert running.exists() and all(path.exists() for path in others)
    assert load_state(tmp_path, "thing")[1] == {"n": 1}


def test_remove_abandoned_takes_old_files_and_folders_of_the_pattern_only(tmp_path):
    """Files and folders named by the pattern go once nothing in them was written for an
    hour; a folder with a recent file, a link, and other names stay."""
    import os
    import time

    from coreaffect.checkpoint import STALE_SECONDS, remove_abandoned

    old = time.time() - STALE_SECONDS - 60
    (tmp_path / ".t-1").write_bytes(b"x")
    for name in (".t-2", ".t-3"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "part").write_bytes(b"x")
    (tmp_path / "target").mkdir()
    (tmp_path / ".t-4").symlink_to(tmp_path / "target")
    (tmp_path / ".u-5").write_bytes(b"x")
    for path in [tmp_path / ".t-1", tmp_path / ".t-2" / "part", tmp_path / ".t-2",
                 tmp_path / ".t-3", tmp_path / "target", tmp_path / ".u-5"]:
        os.utime(path, (old, old))  # .t-3's part is being written
    os.utime(tmp_path / ".t-4", (old, old), follow_symlinks=False)
    removed = remove_abandoned(tmp_path, r"\.t-[0-9]")
    assert sorted(p.name for p in removed) == [".t-1", ".t-2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".t-3", ".t-4", ".u-5", "target"]
    assert remove_abandoned(tmp_path / "missing", r".*") == []


@pytest.mark.parametrize("stop", ["json", "rename"])
def test_an_interrupted_save_leaves_a_loadable_component(tmp_path, monkeypatch, stop):
    """Interrupted before its JSON is written, a save leaves the old state; after, the new one,
    whose weights the next load puts in place."""
    import coreaffect.checkpoint as checkpoint

    old, new = {"w": torch.zeros(3)}, {"w": torch.ones(3)}
    save_state(tmp_path, "thing", old, {"n": 1})
    real_replace = checkpoint.os.replace

    def interrupted(src, dst):
        done = Path(dst).name == ("thing.json" if stop == "json" else "thing.safetensors")
        if done:
            raise KeyboardInterrupt
        return real_replace(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_state(tmp_path, "thing", new, {"n": 2})
    monkeypatch.undo()
    if stop == "rename":  # a run that cannot be written to is read where the weights are
        def refused(src, dst):
            raise PermissionError(13, "read-only", str(dst))

        monkeypatch.setattr(checkpoint.os, "replace", refused)
        assert torch.equal(load_state(tmp_path, "thing")[0]["w"], new["w"])
        monkeypatch.undo()
    tensors, config = load_state(tmp_path, "thing")
    expected, n = (old, 1) if stop == "json" else (new, 2)
    assert torch.equal(tensors["w"], expected["w"]) and config == {"n": n}
    if stop == "rename":  # the load finished the save
        assert sorted(p.name for p in tmp_path.iterdir()) == ["thing.json", "thing.safetensors"]
    save_state(tmp_path, "thing", new, {"n": 3})  # a later save cleans up after either
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thing.json", "thing.safetensors"]
    assert load_state(tmp_path, "thing")[1] == {"n": 3}


def test_files_and_folders_get_the_umask_permissions(tmp_path):
    import os
    import stat

    from coreaffect.checkpoint import temporary_folder

    old = os.umask(0o022)
    try:
        save_state(tmp_path, "thing", {"w": torch.zeros(1)}, {})
        atomic_write(tmp_path / "a.txt", "x")
        folder = temporary_folder(tmp_path, ".partial-")
    finally:
        os.umask(old)
    for name in ("thing.json", "thing.safetensors", "a.txt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755 and not any(folder.iterdir())


def test_a_replaced_file_keeps_its_permissions(tmp_path):
    import os
    import stat

    path = tmp_path / "trajectory.csv"
    for mode in (0o600, 0o444, 0o640):
        path.write_text("old")
        os.chmod(path, mode)
        atomic_write(path, "new")
        assert path.read_text() == "new"
        assert stat.S_IMODE(path.stat().st_mode) == mode, oct(mode)
        os.chmod(path, 0o644)


def test_atomic_write_goes_through_links_and_into_pipes(tmp_path):
    import os
    import threading

    target = tmp_path / "target.csv"
    target.write_text("old")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    atomic_write(link, "new")
    assert link.is_symlink() and target.read_text() == "new"
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    atomic_write(fifo, "through the pipe")
    reader.join(timeout=10)
    assert got == ["through the pipe"] and not fifo.is_file()
    read, write = os.pipe()  # /dev/fd/N, as /dev/stdout is when stdout is a pipe
    try:
        atomic_write(f"/dev/fd/{write}", "to stdout")
        assert os.read(read, 100) == b"to stdout"
    finally:
        os.close(read)
        os.close(write)


def test_a_file_given_as_a_run_is_named_so(tmp_path):
    path = tmp_path / "video.avi"
    path.write_bytes(b"not a run")
    with pytest.raises(CoreAffectError, match="video.avi: a file, not a run directory"):
        load_model(path)
    with pytest.raises(CoreAffectError, match="no such run directory"):
        load_model(tmp_path / "absent")


def test_a_config_edited_after_saving_is_refused_naming_the_setting(run, saved_without_config):
    path, model, _ = run
    meta = json.loads((path / "hidden_route.json").read_text())
    meta["config"]["model"]["kernel"] = 5  # compared before any layer is rebuilt
    meta["config"]["data"]["faces"].pop("margin")
    (path / "hidden_route.json").write_text(json.dumps(meta))
    with pytest.raises(CoreAffectError, match=r"hidden_route\.json: its config was edited after "
                       r"the weights were saved \(config\.data\.faces\.margin was removed "
                       r"\(saved: 0\.8\)\)"):
        load_model(path)
    meta["config"]["data"]["faces"]["margin"] = 0.8
    (path / "hidden_route.json").write_text(json.dumps(meta, indent=4))  # layout is not content
    with pytest.raises(CoreAffectError, match=r"config\.model\.kernel is 5, saved as 3"):
        load_model(path)
    meta["config"]["model"]["kernel"] = 3
    (path / "hidden_route.json").write_text(json.dumps(meta, indent=4))
    assert load_model(path).config == model.config
    saved_without_config(path, "hidden_route")  # saved before the check: config not compared
    assert load_model(path).config == model.config


def test_a_hand_edited_description_is_refused_naming_its_file(run, saved_without_config):
    path, _, _ = run
    saved_without_config(path, "hidden_route")  # the rebuild's own checks, behind that one
    original = json.loads((path / "hidden_route.json").read_text())
    for key, value, message in [("format", "1", r"'format' must be an integer, got '1'"),
                                ("kernel", 4, "kernel must be odd"),
                                ("clip_length", 16.0, "clip_length must be an integer"),
                                ("foo", 1, r"unknown key\(s\) \['foo'\]")]:
        meta = json.loads(json.dumps(original))
        if key == "format":
            meta["format"] = value
        else:
            meta["config"]["model"][key] = value
        (path / "hidden_route.json").write_text(json.dumps(meta))
        with pytest.raises(CoreAffectError, match=rf"hidden_route\.json: .*{message}"):
            load_model(path)
    (path / "hidden_route.json").write_bytes(b"\xff\xfe{}")
    with pytest.raises(CoreAffectError, match=r"hidden_route\.json: no readable data config"):
        load_data_config(path)


def test_the_frame_rate_of_the_training_videos_is_kept_with_the_weights(run, tmp_path):
    path, model, data = run
    assert load_frame_rate(path) is None  # saved without one, as runs were before they kept it
    save_model(model, tmp_path / "rated", data, frame_rate=29.97)
    assert load_frame_rate(tmp_path / "rated") == 29.97
    assert load_model(tmp_path / "rated").config == model.config
    meta_path = tmp_path / "rated" / "hidden_route.json"
    for bad in (0, -1, "25", True, float("inf")):
        meta = json.loads(meta_path.read_text())
        meta["config"]["frame_rate"] = bad
        meta_path.write_text(json.dumps(meta))
        with pytest.raises(CoreAffectError, match="hidden_route.json: frame_rate must be"):
            load_frame_rate(tmp_path / "rated")
    with pytest.raises(CoreAffectError, match="hidden_route.json: no readable configuration"):
        load_frame_rate(tmp_path)
    for bad in (0, -25, float("nan"), "25", True):  # never saved, to be refused at every load
        with pytest.raises(CoreAffectError, match="frame_rate must be .* got"):
            save_model(model, tmp_path / "bad", data, frame_rate=bad)
        assert not (tmp_path / "bad" / "hidden_route.json").exists()


def test_a_yunet_model_kept_at_a_path_not_here_is_looked_for_in_the_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = Path("run")  # given relative, found absolute (what a resume compares)
    run.mkdir()
    haar = DataConfig()
    assert locate_detector(haar, run) is haar
    for kept in (str(tmp_path / "gone" / "yunet.onnx"), r"C:\Users\me\models\yunet.onnx",
                 "~/nowhere/yunet.onnx"):
        config = DataConfig(faces=FaceConfig(detector="yunet", yunet_model=kept))
        assert locate_detector(config, run) is config  # no copy in the run either
        (run / "yunet.onnx").write_bytes(b"model")
        assert locate_detector(config, run).faces.yunet_model == str(tmp_path / "run" /
                                                                      "yunet.onnx")
        (run / "yunet.onnx").unlink()
    here = tmp_path / "yunet.onnx"  # where the run keeps it: that one, not the run's copy
    here.write_bytes(b"model")
    (run / "yunet.onnx").write_bytes(b"another")
    config = DataConfig(faces=FaceConfig(detector="yunet", yunet_model=str(here)))
    assert locate_detector(config, run) is config
