"""Fixtures shared by several test modules."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes


def pytest_configure(config):
    """Tests run in parallel processes (pytest-xdist, ``make test``): each then computes on one
    thread, and so do the commands and examples it starts, so that the processes share the
    cores instead of each spreading over all of them and waiting on the others."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
        torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    """With pytest-xdist's ``--dist loadgroup`` (``make test``), the tests of a module run in
    one process, where its module-scoped fixtures (a trained tiny run, a fitted manifold) are
    built once; the examples, each a process of its own with no fixture, spread over all."""
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        if item.path.name != "test_examples.py":
            item.add_marker(pytest.mark.xdist_group(item.path.stem))


@pytest.fixture
def float64():
    """Make float64 torch's default dtype for a test whose references are computed in it; the
    previous default comes back afterwards."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


def _resave_without_config(directory, name):
    """Write ``directory/name.safetensors`` again as runs were saved before weights files kept
    their config, so that a test may edit ``name.json``'s config as an earlier version wrote it
    (or a user might); the JSON's hash follows."""
    directory = Path(directory)
    weights, meta_path = directory / f"{name}.safetensors", directory / f"{name}.json"
    raw = safetensors_bytes(load_file(weights), metadata={"format": "1"})
    weights.write_bytes(raw)
    meta = json.loads(meta_path.read_text())
    meta["weights_sha256"] = hashlib.sha256(raw).hexdigest()
    meta_path.write_text(json.dumps(meta))


@pytest.fixture
def saved_without_config():
    """A function ``(directory, name)`` that rewrites a saved component as earlier versions
    saved it: its JSON's config may then be edited without the weights refusing it."""
    return _resave_without_config
