"""The project's exception types.

Every error that bad user input can cause is a :class:`CoreAffectError`, so that a script (and the
command line) can tell "your file is wrong" apart from a bug. Each names the file and the problem.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Iterable
from pathlib import Path

__all__ = ["AnnotationError", "CoreAffectError", "CoreAffectWarning", "InputError",
           "VideoError", "warn"]


class CoreAffectError(Exception):
    """Base class of the errors that coreaffect raises on bad input."""


class CoreAffectWarning(UserWarning):
    """A warning about the user's data (a truncated video, an odd frame numbering); coreaffect
    also logs it, so the command line shows it once, as a log line."""


def warn(logger: logging.Logger, message: str, stacklevel: int | None = None) -> None:
    """Log ``message`` as a warning and issue it as a :class:`CoreAffectWarning`: a script can
    catch or filter it, and the command line (which ignores the warning) shows the log line.

    The warning points at the first line outside coreaffect that led to it (the user's call,
    however deep in the library the problem was found, unless a wrapper such as a progress bar
    iterates for them); ``stacklevel`` (as in
    :func:`warnings.warn`, counted from the caller of this function) points elsewhere.
    """
    logger.warning(message)
    if stacklevel is None:
        stacklevel = _outside_package()
    warnings.warn(message, CoreAffectWarning, stacklevel=stacklevel + 1)


def _outside_package() -> int:
    """The stack level, counted from the caller of :func:`warn`, of the first frame of a module
    outside the package (told by the module's name, which holds however the package's path
    was spelled on ``sys.path``); 2 (the caller's caller) when every frame lies inside."""
    frame, level = sys._getframe(2), 1  # the caller of warn
    while frame is not None and _in_package(frame.f_globals.get("__name__")):
        frame, level = frame.f_back, level + 1
    return 2 if frame is None else level


def _in_package(module: object) -> bool:
    return isinstance(module, str) and module.partition(".")[0] == __name__.partition(".")[0]


class InputError(CoreAffectError, ValueError):
    """An argument that a function cannot take: a wrong shape, a value out of range, an unknown
    option. Also a ``ValueError``, as Python has it for a bad argument value."""


class AnnotationError(CoreAffectError, ValueError):
    """An annotation file is missing, malformed or out of range.

    Args:
        path: The offending file.
        problem: What is wrong, in words.
        line: 1-based line number in the file, when the problem is on one line.
    """

    def __init__(self, path: str | Path, problem: str, line: int | None = None) -> None:
        self.path = Path(path)
        self.problem = problem
        self.line = line
        where = f"{self.path}, line {line}" if line is not None else str(self.path)
        super().__init__(f"{where}: {problem}")


class VideoError(CoreAffectError, OSError):
    """A video file, frame folder or camera cannot be opened or decoded.

    Args:
        source: The file, folder or camera index.
        problem: What is wrong, in words.
    """

    def __init__(self, source: str | Path | int, problem: str) -> None:
        self.source = source
        self.problem = problem
        super().__init__(f"{source}: {problem}")


def listing(items: Iterable[object], shown: int = 5, sep: str = ", ") -> str:
    """The first ``shown`` of ``items`` for a message, and how many more there are:
    ``"a, b, c and 4 more"``."""
    items = [str(item) for item in items]
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return sep.join(items[:shown]) + more
