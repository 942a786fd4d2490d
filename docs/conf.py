"""Sphinx configuration of the coreaffect documentation."""

from __future__ import annotations

from pathlib import Path

import coreaffect
from coreaffect.cli import build_parser

project = "coreaffect"
author = "coreaffect developers"
copyright = "2026, coreaffect developers"  # noqa: A001
release = coreaffect.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]
autosummary_generate = True
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # NamedTuple fields are documented once, not twice
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_title = f"coreaffect {release}"
nitpicky = False


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


def setup(app) -> None:
    app.connect("builder-inited", _write_cli_reference)

