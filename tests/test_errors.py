"""The messages errors are built from."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from coreaffect.errors import listing


def test_listing_shows_the_first_items_and_counts_the_rest():
    assert listing([]) == ""
    assert listing(["a"]) == "a"
    assert listing("abcde") == "a, b, c, d, e"
    assert listing("abcdefg") == "a, b, c, d, e and 2 more"
    assert listing(range(4), 3, "; ") == "0; 1; 2 and 1 more"


def test_a_warning_points_outside_the_package_however_its_path_is_spelled(tmp_path):
    # a notebook's sys.path.insert(0, ".."): the package's files are then named with "..", and
    # a warning found in annotations.py must still point at the user's line, not the library's
    root = Path(__file__).resolve().parents[1]
    script = tmp_path / "user.py"
    script.write_text(
        "import json, pathlib, sys, warnings\n"
        "sys.path.insert(0, '..')\n"
        "from coreaffect.annotations import read_annotations\n"
        f"clip = pathlib.Path({str(tmp_path)!r}) / '001'\n"
        "clip.mkdir()\n"
        "(clip / '00000.png').write_bytes(b'')\n"
        "frame = {'valence': 0.1, 'arousal': 0.4, 'landmarks': []}\n"
        "(clip / '001.json').write_text(json.dumps({'frames': {'00000': frame},"
        " 'video_id': '001'}))\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    read_annotations(clip, 'afew-va')  # line 11\n"
        "print(caught[0].filename, caught[0].lineno, caught[0].category.__name__)\n")
    result = subprocess.run([sys.executable, str(script)], cwd=root / "docs",
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(script), "11", "CoreAffectWarning"]
