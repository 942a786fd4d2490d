"""Sphinx configuration of the coreaffect documentation.

The default build needs no network: maths is rendered by a MathJax copied into the site (when the
``docs`` extra is installed), examples run in their quick mode, and links to other projects'
documentation are off. Environment variables:

* ``COREAFFECT_DOCS_INTERSPHINX=1``: link to the Python, NumPy, PyTorch and Pyro documentation
  (intersphinx fetches their inventories at build time, so this needs internet access);
* ``COREAFFECT_DOCS_GALLERY=0``: build the examples gallery without running the examples.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import coreaffect
from coreaffect.cli import build_parser

sys.path.insert(0, str(Path(__file__).resolve().parent / "_ext"))
import coreaffect_docs  # noqa: E402

project = "coreaffect"
author = "coreaffect developers"
copyright = "2026, coreaffect developers"  # noqa: A001
release = coreaffect.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx_gallery.gen_gallery",
]
autosummary_generate = True
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # NamedTuple fields are documented once, not twice
exclude_patterns = ["_build", "_ext"]
html_theme = "alabaster"
html_title = f"coreaffect {release}"
# every cross-reference must resolve (a -W build fails on one that does not), except those to
# other projects, which resolve only with intersphinx (off by default: it needs internet access)
nitpicky = True
_EXTERNAL = ("torch", "numpy", "np", "scipy", "pyro", "matplotlib", "arviz", "cv2", "pathlib",
             "collections", "typing", "warnings", "threading", "logging", "argparse", "nn")
nitpick_ignore_regex = [(r"py:.*", rf"({'|'.join(_EXTERNAL)})\..*"),
                        (r"py:class", r"Path|Axes")]  # pathlib.Path, matplotlib's, as annotated


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    return value not in ("0", "false", "no", "off")


# -- links to other projects ----------------------------------------------------------------------
# The inventories are fetched at build time, which needs internet access; CI and offline builds
# have none, and a failed fetch is a warning (an error under -W). So the mapping is empty unless
# asked for; references to these projects then render as plain code.
intersphinx_mapping = {}
if _flag("COREAFFECT_DOCS_INTERSPHINX", False):
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "numpy": ("https://numpy.org/doc/stable", None),
        "torch": ("https://docs.pytorch.org/docs/stable", None),
        "pyro": ("https://docs.pyro.ai/en/stable", None),
    }
intersphinx_timeout = 30

# -- maths ----------------------------------------------------------------------------------------
# A local MathJax makes formulas display without internet; without it, the CDN default is used.
_MATHJAX = coreaffect_docs.mathjax_file()
if _MATHJAX is not None:
    mathjax_path = f"mathjax/{_MATHJAX.name}"

# -- examples gallery -----------------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": str(coreaffect_docs.stage_examples()),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",  # run every plot_*.py
    "ignore_pattern": r"__init__\.py",
    "reset_argv": "coreaffect_docs.reset_argv",  # --quick
    "plot_gallery": _flag("COREAFFECT_DOCS_GALLERY", True),
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "write_computation_times": False,
    "show_signature": False,
}


def _write_cli_reference(app) -> None:
    """Write every command's ``--help`` into ``generated/cli_*.txt`` for the CLI page."""
    out = Path(app.srcdir) / "generated"
    out.mkdir(exist_ok=True)
    parser = build_parser()
    texts = {"coreaffect": parser.format_help()}
    for action in parser._subparsers._group_actions:  # the subcommands
        for name, sub in action.choices.items():
            texts[name] = sub.format_help()
    for name, text in texts.items():
        path = out / f"cli_{name}.txt"
        if not path.exists() or path.read_text() != text:
            path.write_text(text)


def _copy_mathjax(app, exception) -> None:
    """Put the local MathJax into the site's ``_static/mathjax/``."""
    if exception is not None or _MATHJAX is None or app.builder.format != "html":
        return
    target = Path(app.outdir) / "_static" / "mathjax"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_MATHJAX, target / _MATHJAX.name)


def setup(app) -> None:
    app.connect("builder-inited", _write_cli_reference)
    app.connect("build-finished", _copy_mathjax)
