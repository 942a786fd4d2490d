"""Every example runs end to end in its fast mode, as a user would run it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.py"))


def test_there_are_examples():
    assert EXAMPLES


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs_quick(script, tmp_path):
    result = subprocess.run([sys.executable, str(script), "--quick", "--out", str(tmp_path)],
                            capture_output=True, text=True, cwd=tmp_path, timeout=600,
                            env={**os.environ, "MPLBACKEND": "Agg"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr


def test_manifold_example_with_the_gaussian_process(tmp_path):
    script = next(p for p in EXAMPLES if p.stem == "plot_manifold_prior")
    result = subprocess.run([sys.executable, str(script), "--quick", "--out", str(tmp_path),
                             "--manifold", "gplvm"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=600, env={**os.environ, "MPLBACKEND": "Agg"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "manifold (gplvm)" in result.stdout
    assert (tmp_path / "prior_unsure.png").stat().st_size > 0
