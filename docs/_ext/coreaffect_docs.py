"""Build helpers of the coreaffect documentation: the examples gallery and offline MathJax.

Kept in an importable module (not in ``conf.py``) so that sphinx-gallery can name the callables
by their qualified names, which keeps Sphinx's configuration picklable.
"""

from __future__ import annotations

import filecmp
import importlib.util
import shutil
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent
EXAMPLES = DOCS.parent / "examples"
GALLERY_SOURCE = DOCS / "_build" / "gallery_source"  # staged copy of examples/; examples run here

HEADER_NAMES = ("GALLERY_HEADER.rst", "GALLERY_HEADER.txt", "README.rst", "README.txt")
HEADER = """\
Examples
========

Each example is a script that runs as it is
(``python examples/<name>.py --out DIR``; ``--quick`` for a short version) and is also rendered
here. For this page the examples run in their quick mode, on small synthetic corpora and short
training budgets, so their numbers show what the code does, not what the method reaches: the
full runs are in :doc:`/reproducing` and :doc:`/benchmarks`.
"""


def stage_examples() -> Path:
    """Copy ``examples/`` into the build tree, with a gallery header if it has none.

    sphinx-gallery needs a header file in the folder it reads; staging keeps ``examples/`` free
    of documentation files. Files are copied only when changed, so sphinx-gallery's checksums
    still skip examples that did not change since the last build.
    """
    GALLERY_SOURCE.mkdir(parents=True, exist_ok=True)
    wanted = set()
    if EXAMPLES.is_dir():
        for path in sorted(EXAMPLES.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                wanted.add(path.name)
                target = GALLERY_SOURCE / path.name
                if not target.exists() or not filecmp.cmp(path, target, shallow=False):
                    shutil.copy2(path, target)
    if not wanted.intersection(HEADER_NAMES):
        header = GALLERY_SOURCE / HEADER_NAMES[0]
        wanted.add(header.name)
        if not header.exists() or header.read_text() != HEADER:
            header.write_text(HEADER)
    for path in GALLERY_SOURCE.iterdir():  # examples removed from examples/
        if path.is_file() and path.name not in wanted:
            path.unlink()
    return GALLERY_SOURCE


def reset_argv(gallery_conf: dict, script_vars: dict) -> list[str]:
    """Command-line arguments of an executed example: its quick mode.

    Examples run with the staged copy's folder as working directory, so their default output
    folders (relative paths) land in the build tree, never in the source tree, and the paths
    they print stay short.
    """
    return ["--quick"]


def mathjax_file() -> Path | None:
    """MathJax 3 as one self-contained script (SVG output, all TeX extensions), if installed.

    The ``django-static-mathjax`` distribution (a plain copy of MathJax, in the ``docs`` extra)
    ships it; without it the pages load MathJax from its CDN when they are viewed.
    """
    spec = importlib.util.find_spec("mathjax")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / "static" / "mathjax" / "es5" / "tex-svg-full.js"
        if path.is_file():
            return path
    return None
