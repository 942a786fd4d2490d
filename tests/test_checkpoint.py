"""Run directories: round trip, atomic writes, and clear errors for damaged or foreign files."""

from __future__ import annotations

import json

import pytest
import torch

from coreaffect.checkpoint import (
    atomic_write,
    load_data_config,
    load_model,
    load_state,
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
