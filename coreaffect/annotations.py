"""Valence-arousal annotations: read them as public corpora ship them, fuse raters, align to frames.

Every reader returns an :class:`Annotations`: strictly increasing times in seconds and one
(valence, arousal) pair per time in [-1, 1], NaN where there is no label. Labels reach video frames
through :func:`~coreaffect.labels.resample_labels` (or :meth:`Annotations.resample`); raters are
fused by :func:`~coreaffect.labels.fuse_raters`. Both live in :mod:`coreaffect.labels` and are
re-exported here.

Formats (``format=``):

``dante``
    The DANTE web tool's export, ``annotation/<UserId>/<video>/valence.csv`` and ``arousal.csv``,
    one folder per rater and video. Each file is ``;``-separated with the header
    ``TimeStamp;UserId;NameVideo;AnnoType;Value`` and one row per 25 Hz sample, ``TimeStamp`` in
    seconds (integer or float), ``Value`` in [-1, 1]. The video id is the ``<video>`` folder name
    (DANTE writes the video's file name with its dots turned into underscores: ``30_3_mp4`` for
    ``30_3.mp4``). ``NameVideo`` checks it: a file naming two videos, or raters of one video whose
    files name different ones (folders laid out ``<video>/<UserId>``), is an error, and a name that
    is not the folder's (case and punctuation aside, with or without its extension) a warning;
    ``UserId`` and ``AnnoType`` are not read. DANTE records each dimension in a session of its own,
    so a rater may hold one of the two files: the other dimension is then unlabelled for that
    rater. It samples the player's clock, which stands still before playback starts and while the
    video buffers: rows repeating the time of the row before are merged, the last value at a time
    kept (a time going back is still an error). ``path`` may be the ``annotation`` root (``video``
    picks the video, and may be left out when there is one only), a ``<UserId>/<video>`` folder or
    one of its files: all raters of the video under that root are read and fused.
``aff-wild2``
    ``<video>.txt``, comma-separated, header ``valence,arousal``, one row per frame: data row i
    (0-based, after the header) is frame i, at time i / fps. -5 marks an invalid value (the
    dataset writes it in both columns of an invalid frame): each -5 becomes NaN. ``fps``
    defaults to 30, the rate of most Aff-Wild2 videos; pass the video's real rate.
``afew-va``
    One folder per clip, ``NNN/``, holding the PNG frames and ``NNN.json``:
    ``{"video_id": "NNN", "frames": {"00000": {"valence": 3, "arousal": -2, "landmarks": [...]},
    ...}}``. Keys of ``frames`` are frame numbers; frame i is at time i / fps, ``fps`` defaulting
    to 25. Valence and arousal are integers in [-10, 10], divided by 10; ``null`` is no label.
    ``video_id``, when present, must match the file name (``"7"`` matches ``007``). ``path`` may
    be the json file, the clip folder, or the folder of clips with ``video``.
``sewa``
    ``;``-separated, no header, rows ``name;time;arousal;valence;liking`` at 10 Hz (arousal before
    valence); ``time`` is in seconds and ``liking`` is not read. ``name`` is the video id and must
    be the same on every row.
``recola``
    One file per dimension, ``<root>/arousal/<video>.csv`` and ``<root>/valence/<video>.csv``,
    ``;``-separated with the header ``time;FM1 ;FM2 ;FM3 ;FF1 ;FF2 ;FF3``: one column per rater
    (names stripped of spaces; any number of raters), one row per 25 Hz sample, ``time`` in
    seconds. Both files must name the same raters, in any order. ``path`` may be either file (the
    other has the same name in the sibling folder) or ``<root>`` with ``video``.
``csv``
    Comma-separated with a header naming ``time``, ``valence`` and ``arousal`` once each, in any
    order (case, spaces and quotes ignored: R's ``write.csv`` writes ``"time","valence",...``);
    other columns, named or not, are ignored. An empty value cell, or ``NA`` as R writes it, is
    NaN.

For ``aff-wild2``, ``sewa`` and ``csv``, ``path`` is the file, or its folder with ``video`` (the
file ``<video>.txt`` for ``aff-wild2``, ``<video>.csv`` for ``csv``, either for ``sewa``; the
suffix in any case); the video id is the file name without suffix (``sewa``: the name column).
Whenever ``path`` is a file and ``video`` is given, the two must agree.

Rules for every format: text is UTF-8 (a byte-order mark is allowed); blank lines at the start
and at the end are ignored, elsewhere an error; header cells may be quoted (``"time"``); every
row has the header's number of columns; cells are decimal numbers in ASCII digits (``1_000`` is
not one; ``nan`` or an empty value cell is no label); times are finite and strictly increasing
(never re-sorted); values lie in [-1, 1]. A delimiter may end the header line
(``valence,arousal,``): its empty last cell names no column, and the rows then end with a
delimiter too, their last cell empty in every format but ``csv`` (which ignores columns it does
not name), since a value there would be a column shift; for ``sewa``, which has no header, the
first line decides. A violation, or a missing, unreadable or empty file, raises
:class:`~coreaffect.errors.AnnotationError` naming the file and, where it applies, the line; a
file separated by another delimiter than its format's is named as such.

Several raters (``dante``, ``recola``) are put on one time grid, the union of their sample times
(times less than a microsecond apart are one), so that a stretch that only some raters labelled
keeps their labels: each rater keeps its own samples unchanged and is interpolated at the other
raters' times by :func:`~coreaffect.labels.resample_labels` (NaN outside its span and inside its
holes). A regular grid would move the samples of raters out of step with it; on the union,
interpolating the fused series between two grid times is fusing the raters' own interpolations,
as long as the same raters label both. Equal grids, as in well-formed exports, are used as they
are. The (R, T, 2) array is kept in ``raters`` and fused by :func:`~coreaffect.labels.fuse_raters`
over the raters labelled at each time: with ``fusion="mean"`` every labelled time keeps a label;
with ``"ewe"`` a time labelled only by raters of weight 0 has none, and :func:`read_annotations`
then warns (:class:`~coreaffect.errors.CoreAffectWarning`), as for any rater label the fusion
leaves out.

Auto-detection (:func:`detect_format`): a ``.json`` file is ``afew-va``; another file is told by
its first non-blank line, whose cells are read as header names (quotes and a delimiter ending the
line ignored): the DANTE header is ``dante``; the ``csv`` or ``aff-wild2`` header separated by
semicolons or tabs, or the DANTE header by commas, is an error saying so; ``;``-separated with
first cell ``time`` is ``recola``; exactly ``valence,arousal`` is ``aff-wild2``; comma-separated
and naming ``time``, ``valence`` and ``arousal`` is ``csv``; five ``;``-separated cells (and
maybe an empty sixth), the second a number, is ``sewa``. A folder with ``arousal/`` and
``valence/`` subfolders is ``recola``; one holding ``valence.csv`` or ``arousal.csv`` is
``dante``; one holding ``<its name>.json`` beside frame images is ``afew-va``; then ``afew-va``
if a subfolder holds both, ``dante`` if some ``<UserId>/<video>/`` holds ``valence.csv`` or
``arousal.csv``; else its ``.csv`` and ``.txt`` files decide: the video's own first, when one
is named, then the others in sorted order, the first whose format can be told. Anything else
raises ``AnnotationError``.

Reaction delay: annotators respond late, so the label of frame time t is the annotation at
t + delay. ``read_annotations(..., delay=d)`` returns times shifted by -d;
``resample(..., delay=d)`` looks labels up at ``new_times + d``. The two add up: use one.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import logging
import re
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from coreaffect.config import FUSIONS, _is_real
from coreaffect.errors import AnnotationError, InputError, warn
from coreaffect.labels import fuse_raters, resample_labels
from coreaffect.trajectory import AffectTrajectory
from coreaffect.video import is_frame_image

__all__ = ["FORMATS", "Annotations", "detect_format", "fuse_raters", "read_annotations",
           "resample_labels"]

logger = logging.getLogger(__name__)

#: The annotation formats read, the paper's DANTE, Aff-Wild2, AFEW-VA, SEWA, RECOLA and a CSV.
FORMATS = ("dante", "aff-wild2", "afew-va", "sewa", "recola", "csv")
_DEFAULT_FPS = {
    "aff-wild2": 30.0,  # most Aff-Wild2 videos are 30 fps; the corpus passes the real rate
    "afew-va": 25.0,  # AFEW-VA ships frames without a rate; pass the real one when known
}
_DIMS = ("valence", "arousal")
_DANTE_HEADER = ["timestamp", "userid", "namevideo", "annotype", "value"]
_DANTE_FILES = ("valence.csv", "arousal.csv")
_HEAD_BYTES = 1 << 16  # how much of a file format detection reads
_AFFWILD_INVALID = -5.0
_AFEW_SCALE = 10.0
_SEPARATORS = {";": "semicolons", ",": "commas", "\t": "tabs"}  # the delimiters files use
_SAME_TIME = 1e-6  # seconds: raters' times closer than this are one time (rounding in exports)


class Annotations(NamedTuple):
    """The labels of one video.

    Attributes:
        times: (T,) float64 seconds, strictly increasing, already shifted by the read's delay.
        values: (T, 2) float64, VA last axis (valence, arousal), in [-1, 1]; NaN = no label.
        video: The video id (see the module docs for where each format keeps it).
        path: The file read; for ``dante`` the ``annotation`` root and for ``recola`` the folder
            that holds ``arousal/`` and ``valence/``.
        raters: (R, T, 2) per-rater values before fusion, on the ``times`` grid; ``None`` for
            single-rater formats.
    """

    times: np.ndarray
    values: np.ndarray
    video: str
    path: Path
    raters: np.ndarray | None = None

    def resample(self, times: np.ndarray, delay: float = 0.0) -> np.ndarray:
        """Labels at frame times; see :func:`~coreaffect.labels.resample_labels`.

        Args:
            times: (N,) frame times in seconds.
            delay: Reaction delay in seconds: frame time t gets the label at t + delay. Added to
                any delay given to :func:`read_annotations`.

        Returns:
            (N, 2) labels, VA last axis; NaN where there is none.
        """
        return resample_labels(self.times, self.values, times, delay)


def read_annotations(path: str | Path, format: str = "auto", *, video: str | None = None,
                     fusion: str = "mean", delay: float = 0.0, fps: float | None = None
                     ) -> Annotations:
    """Read one video's annotations in any supported format.

    Args:
        path: A file or folder; what each format accepts is in the module docs.
        format: One of :data:`FORMATS`, or ``"auto"`` to detect it (:func:`detect_format`).
        video: The video id, to pick one video from a folder; for a file, a check.
        fusion: Rater fusion for ``dante`` and ``recola``: ``"mean"`` or ``"ewe"``.
        delay: Reaction delay in seconds; the returned times are shifted by -delay.
        fps: Frame rate for the frame-indexed formats (``aff-wild2``: 30 by default,
            ``afew-va``: 25 by default); ignored by the others, which carry times.

    Returns:
        The video's :class:`Annotations`.

    Raises:
        AnnotationError: If the path or its content is missing or malformed.
        ValueError: For an unknown format or fusion, a non-finite delay, or fps <= 0.
    """
    path = Path(path)
    if format not in (*FORMATS, "auto"):
        raise InputError(f"format must be 'auto' or one of {FORMATS}, got {format!r}")
    if fusion not in FUSIONS:
        raise InputError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
    if not _is_real(delay):  # finite
        raise InputError(f"delay must be a finite number of seconds, got {delay!r}")
    if fps is not None and not (_is_real(fps) and fps > 0):
        raise InputError(f"fps must be a positive number, got {fps!r}")
    if format == "auto":
        format = detect_format(path, video=video)
    if format in _DEFAULT_FPS:
        fps = _DEFAULT_FPS[format] if fps is None else float(fps)
    readers: dict[str, Callable[[Path, str | None, float | None], Annotations]] = {
        "dante": _read_dante, "aff-wild2": _read_affwild2, "afew-va": _read_afew,
        "sewa": _read_sewa, "recola": _read_recola, "csv": _read_csv,
    }
    try:
        got = readers[format](path, video, fps)
    except OSError as err:  # a folder that cannot be listed, a file vanishing mid-read
        raise AnnotationError(path, f"cannot read ({err.strerror or err})") from None
    if got.raters is not None:  # multi-rater readers leave the fusion to here
        got = got._replace(values=fuse_raters(got.raters, fusion, source=str(got.path)))
        _warn_unfused(got, fusion)
    logger.debug("%s: %s annotations of %r, %d samples", got.path, format, got.video,
                 got.times.size)
    return got._replace(times=got.times - delay)


def _warn_unfused(got: Annotations, fusion: str) -> None:
    """Warn about rater labels that the fusion leaves out: times some rater labelled that have
    no fused label (under ``"ewe"``, those labelled only by raters of weight 0)."""
    lost = ~np.isnan(got.raters).all(axis=0) & np.isnan(got.values)  # (T, 2)
    if not lost.any():
        return
    counts = ", ".join(f"{n} of {dim}" for n, dim in zip(lost.sum(axis=0), _DIMS, strict=True)
                       if n)
    message = (f"{got.path}: {fusion} fusion of the raters of video {got.video!r} leaves "
               f"{counts} labelled time(s) without a label: only raters of weight 0 labelled "
               "them (raters that correlate with the others negatively, or not at all, as when "
               "they share no labelled time); fusion='mean' keeps them")
    warn(logger, message)


def detect_format(path: str | Path, *, video: str | None = None) -> str:
    """Tell the annotation format of a file or folder, by the rules in the module docs.

    Args:
        path: A file or folder.
        video: For a folder of one-file annotations, the video whose file tells the format
            (by its name, before the folder's other files); ``None``: its files in order, the
            first whose format can be told.

    Returns:
        One of :data:`FORMATS`.

    Raises:
        AnnotationError: If the path is missing or unreadable, or its format cannot be told.
    """
    path = Path(path)
    try:
        if path.is_dir():
            return _detect_folder(path, video)
    except OSError as err:
        raise AnnotationError(path, f"cannot list folder ({err.strerror or err})") from None
    if not path.exists():
        raise AnnotationError(path, "no such file or folder")
    if path.suffix.lower() == ".json":
        return "afew-va"
    text = _read_text(path, limit=_HEAD_BYTES)  # feature files beside videos may be large
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    line = next((ln for ln in lines if ln.strip()), None)
    if line is None:
        raise AnnotationError(path, "empty file")
    cells = {sep: [name.lower() for name in _names(line.split(sep))] for sep in _SEPARATORS}
    semi, comma = cells[";"], cells[","]
    if semi == _DANTE_HEADER:
        return "dante"
    if len(semi) == 5 and {"time", *_DIMS} <= set(semi) and not _is_number(semi[1]):
        raise AnnotationError(path, f"its first line {_short(line)} is a header, and SEWA files "
                                    "have none (their rows are name;time;arousal;valence;"
                                    "liking): remove it, or write the csv format "
                                    "(time,valence,arousal)")
    for sep in (";", "\t"):  # a one-file format's header, split by the wrong delimiter
        what = ("the csv format is" if {"time", *_DIMS} <= set(cells[sep])
                else "Aff-Wild2 files are" if cells[sep] == list(_DIMS) else None)
        if what is not None:
            raise AnnotationError(path, f"its first line {_short(line)} has "
                                        f"{_SEPARATORS[sep]}: {what} comma-separated")
    if comma == _DANTE_HEADER:
        raise AnnotationError(path, f"its first line {_short(line)} has commas: DANTE files "
                                    "are ';'-separated")
    if len(semi) >= 2 and semi[0] == "time":
        return "recola"
    if comma == list(_DIMS):
        return "aff-wild2"
    if {"time", *_DIMS} <= set(comma):
        return "csv"
    raw = line.split(";")  # SEWA has no header: an empty fifth cell is an empty liking
    if len(raw) - (len(raw) == 6 and not raw[5].strip()) == 5 and _is_number(raw[1]):
        return "sewa"
    raise AnnotationError(path, f"cannot tell the annotation format from its first line "
                                f"{_short(line)}; pass format= one of {FORMATS}")


def _is_afew_clip(folder: Path) -> bool:
    """Whether ``folder`` is an AFEW-VA clip: its frames beside ``<its name>.json`` (a metadata
    file named like its folder, such as a synthetic corpus's, does not make one)."""
    return ((folder / f"{folder.name}.json").is_file()
            and any(is_frame_image(p) for p in folder.iterdir()))


def _has_dante_file(folder: Path) -> bool:
    """Whether ``folder`` holds DANTE's ``valence.csv`` or ``arousal.csv``, named in any case
    (the reader then asks for lower case)."""
    return any(p.name.lower() in _DANTE_FILES and p.is_file() for p in folder.iterdir())


def _dimension_folders(path: Path) -> dict[str, Path]:
    """RECOLA's ``arousal`` and ``valence`` folders in ``path``, their names in any case."""
    return {p.name.lower(): p for p in sorted(path.iterdir())
            if p.name.lower() in _DIMS and p.is_dir()}


def _detect_folder(path: Path, video: str | None = None) -> str:
    if len(_dimension_folders(path)) == 2:
        return "recola"
    if _has_dante_file(path):
        return "dante"
    if _is_afew_clip(path):
        return "afew-va"
    subfolders = sorted(p for p in path.iterdir() if p.is_dir())
    if any(_is_afew_clip(p) for p in subfolders):
        return "afew-va"
    if any(_has_dante_file(video) for user in subfolders for video in user.iterdir()
           if video.is_dir()):
        return "dante"
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".csv", ".txt")
                   and p.is_file() and not p.name.startswith("."))  # not macOS's ._a.csv
    if video is not None:  # the video's own file first (a README.txt beside it says nothing)
        files.sort(key=lambda p: name_key(p.stem) != name_key(video))
    first_error = None
    for file in files:
        try:
            return detect_format(file)
        except AnnotationError as err:
            first_error = first_error or err
    if first_error is not None:
        raise first_error
    raise AnnotationError(path, f"cannot tell the annotation format of this folder; "
                                f"pass format= one of {FORMATS}")


def _names(cells: Sequence[str]) -> list[str]:
    """Header cells as names: spaces and a pair of enclosing double quotes stripped (R's
    ``write.csv`` quotes them), and an empty last cell, left by a delimiter that ends the line,
    dropped."""
    names = []
    for cell in cells:
        cell = cell.strip()
        if len(cell) >= 2 and cell[0] == cell[-1] == '"':
            cell = cell[1:-1].strip()
        names.append(cell)
    return names[:-1] if len(names) > 1 and not names[-1] else names


def _short(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_text(path: Path, limit: int | None = None) -> str:
    """The file's text (its first ``limit`` bytes, if given; a character cut there is left
    out); every failure is an :class:`AnnotationError`."""
    try:
        if limit is None:
            data = path.read_bytes()
        else:
            with path.open("rb") as file:
                data = file.read(limit)
    except FileNotFoundError:
        raise AnnotationError(path, "no such file") from None
    except IsADirectoryError:
        raise AnnotationError(path, "is a folder, not a file") from None
    except OSError as err:
        raise AnnotationError(path, f"cannot read ({err.strerror or err})") from None
    data = data.removeprefix(b"\xef\xbb\xbf")  # UTF-8 byte-order mark
    cut = limit is not None and len(data) >= limit - 3
    if cut:  # whole lines only, when there are any (old Mac files end lines with "\r" alone)
        data = data[:max(data.rfind(b"\n"), data.rfind(b"\r")) + 1] or data
    try:  # a character cut at the end is left out
        return codecs.getincrementaldecoder("utf-8")().decode(data, final=not cut)
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise AnnotationError(path, f"not UTF-8 text (byte {err.start}: {err.reason})",
                              line) from None


class _Table(NamedTuple):
    """The non-blank rows of a delimited file, flattened: row i is cells[start[i]:][:width[i]]."""

    cells: list[str]
    start: np.ndarray  # (N,) index of each row's first cell
    width: np.ndarray  # (N,) cells in each row
    line: np.ndarray  # (N,) 1-based line number of each row

    def names(self) -> list[str]:
        """The first row's cells as names (see :func:`_names`)."""
        return _names(self.cells[: self.width[0]])

    def header(self) -> list[str]:
        """The first row's names in lower case."""
        return [name.lower() for name in self.names()]

    @property
    def trailing(self) -> bool:
        """Whether the first row ends with a delimiter: an empty last cell that names nothing."""
        return len(self.names()) < self.width[0]

    def hint(self, delimiter: str, what: str) -> str:
        """`` (its first line has commas: <what> ';'-separated)`` when the first row did not
        split on ``delimiter`` but holds another one; else ``""``."""
        other = _other_separator(self.cells[0], delimiter)
        if self.width[0] > 1 or other is None:
            return ""
        return (f" (its first line has {_SEPARATORS[other]}: {what} "
                f"{'comma' if delimiter == ',' else repr(delimiter)}-separated)")

    def column(self, j: int, first: int, ncols: int) -> list[str]:
        """Cell j of rows first..N-1, all ``ncols`` wide."""
        return self.cells[self.start[first] + j : self.start[-1] + self.width[-1] : ncols]


def _other_separator(cell: str, delimiter: str) -> str | None:
    """The first of :data:`_SEPARATORS` other than ``delimiter`` that ``cell`` holds, if any: a
    line that did not split on ``delimiter`` and was separated by that one."""
    return next((sep for sep in _SEPARATORS if sep != delimiter and sep in cell), None)


def _table(path: Path, delimiter: str, limit: int | None = None) -> _Table:
    """Read a delimited file (its first ``limit`` bytes, if given, in whole lines); trailing
    blank rows are dropped, blank rows elsewhere an error."""
    text = _read_text(path, limit).replace("\r\n", "\n")
    if '"' in text or "\r" in text:  # quoting or old Mac line ends: the csv module's job
        # strict: a quote opened and never closed is an error, not the rest of the file in
        # one cell of a column that may not even be read
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
        try:
            rows = [(reader.line_num, cells) for cells in reader]
        except csv.Error as err:
            raise AnnotationError(path, f"malformed line ({err})", reader.line_num) from None
        lines = [line for line, _ in rows]
        widths = [len(cells) for _, cells in rows]
        blank = [not "".join(cells).strip() for _, cells in rows]
        flat = [cell for _, cells in rows for cell in cells]
    else:  # split plain lines as the csv module would, without a list per row: ~10x faster
        texts = text.split("\n")
        lines = range(1, len(texts) + 1)
        widths = [line.count(delimiter) + 1 for line in texts]
        blank = [not line.replace(delimiter, "").strip() for line in texts]
        flat = delimiter.join(texts).split(delimiter)
    keep = len(blank) - next((i for i, b in enumerate(reversed(blank)) if not b), len(blank))
    if keep == 0:
        raise AnnotationError(path, "empty file")
    skip = blank.index(False)  # blank lines before the first one are passed over too
    if any(blank[skip:keep]):
        raise AnnotationError(path, "blank line inside the data",
                              int(lines[blank.index(True, skip)]))
    if skip:
        flat = flat[sum(widths[:skip]):]
    width = np.array(widths[skip:keep])
    return _Table(flat, np.cumsum(width) - width, width, np.array(lines[skip:keep]))


def _numbers(path: Path, table: _Table, columns: Sequence[int], ncols: int, first: int = 1,
             delimiter: str = ",", blank_last: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Parse some columns of rows first..N-1, which must be ``ncols`` wide.

    With ``blank_last``, the first row ends with a delimiter, and so must every row: their
    last cell must be empty (in a format read by position, a value there is a column shift).

    Returns:
        (N - first, len(columns)) float64 values (an empty cell, or R's ``NA``, is NaN) and
        their 1-based lines.
    """
    lines = table.line[first:]
    if not lines.size:
        raise AnnotationError(path, "no data rows")
    wrong = np.flatnonzero(table.width[first:] != ncols)
    if wrong.size:
        row = first + wrong[0]
        found = int(table.width[row])
        cells = table.cells[table.start[row]:][:found]
        other = _other_separator(cells[0], delimiter)
        hint = ""
        if found == ncols - 1 and (blank_last or first and table.trailing):
            hint = (f" (the {'header' if first else 'first line'} ends with {delimiter!r}; "
                    "this line does not)")
        elif found == ncols + 1 and not cells[-1].strip():
            hint = f" (this line ends with {delimiter!r})"
        elif found == 1 and other is not None:
            hint = f" (this line has {_SEPARATORS[other]})"
        raise AnnotationError(path, f"expected {ncols} {delimiter!r}-separated columns, found "
                                    f"{found}{hint}", int(lines[wrong[0]]))
    if blank_last:
        last = table.column(ncols - 1, first, ncols)
        full = next((i for i, cell in enumerate(last) if cell.strip()), None)
        if full is not None:
            raise AnnotationError(path, f"column {ncols}: {_short(last[full])} where the "
                                        f"{'header' if first else 'first line'} ends with "
                                        f"{delimiter!r}: this cell must be empty",
                                  int(lines[full]))
    out = np.empty((lines.size, len(columns)))
    for k, j in enumerate(columns):
        column = table.column(j, first, ncols)
        joined = "".join(column)  # float() also reads 1_000 and non-ASCII digits: not decimal
        if "_" not in joined and joined.isascii():
            try:
                out[:, k] = np.array(column, dtype=np.float64)  # fast path: every cell a number
                continue
            except ValueError:
                pass
        for i, cell in enumerate(column):  # slow path: empty cells, or find the bad one
            try:
                if "_" in cell or not cell.strip().isascii():  # a no-break space is space
                    raise ValueError(cell)
                out[i, k] = np.nan if cell.strip() in ("", "NA") else float(cell)  # NA: R's
            except ValueError:
                raise AnnotationError(path, f"column {j + 1}: {_short(cell)} is not a number",
                                      int(lines[i])) from None
    return out, lines


def _check(path: Path, times: np.ndarray | None, values: np.ndarray, lines: np.ndarray,
           names: Sequence[str] = _DIMS) -> None:
    """Times (N,) finite and strictly increasing; values (N, K) NaN or in [-1, 1]."""
    if times is not None:
        bad = np.flatnonzero(~np.isfinite(times))
        if bad.size:
            raise AnnotationError(path, f"time {times[bad[0]]} is not a finite number",
                                  int(lines[bad[0]]))
        back = np.flatnonzero(np.diff(times) <= 0) + 1
        if back.size:
            i = back[0]
            raise AnnotationError(path, f"time {float(times[i])!r} does not follow "
                                        f"{float(times[i - 1])!r}: times must be strictly "
                                        "increasing", int(lines[i]))
    bad = np.argwhere(~(np.isnan(values) | (np.abs(values) <= 1.0)))
    if bad.size:
        i, j = bad[0]
        raise AnnotationError(path, f"{names[j]} {float(values[i, j])!r} is outside [-1, 1]",
                              int(lines[i]))


def name_key(name: str) -> str:
    """A file or video name as names are matched: in Unicode NFC, since macOS file systems may
    give a name in NFD (``e`` and a combining accent) that a label file spells as one
    character."""
    return unicodedata.normalize("NFC", name)


def _pick(folder: Path, available: dict[str, Path], video: str | None, what: str
          ) -> tuple[str, Path]:
    """Choose ``video`` among ``available`` (id -> path), or the only one when it is None;
    names are compared in NFC."""
    keyed: dict[str, Path] = {}
    for name, path in available.items():
        other = keyed.setdefault(name_key(name), path)
        if other != path and other.parent == path.parent:
            raise AnnotationError(folder, f"{other.name!r} and {path.name!r} are one name "
                                          "spelled in two Unicode forms (NFC and NFD): keep one")
    available = keyed
    video = None if video is None else name_key(video)
    names = sorted(available)
    listing = ", ".join(names[:20]) + (f", ... ({len(names)} in all)" if len(names) > 20 else "")
    if video is None:
        if len(names) == 1:
            return names[0], available[names[0]]
        if not names:
            raise AnnotationError(folder, f"no {what} here")
        raise AnnotationError(folder, f"holds {len(names)} videos; pass video= one of: {listing}")
    if video not in available:
        raise AnnotationError(folder, f"no {what} for video {video!r}; available: "
                                      f"{listing or 'none'}")
    return video, available[video]


def _one_file(path: Path, video: str | None, suffixes: tuple[str, ...], what: str,
              check: bool = True) -> Path:
    """The file of a single-file format: ``path`` itself, or ``<path>/<video><suffix>`` with
    one of ``suffixes`` in any case (the first that is there, in their order), as dataset
    discovery finds it."""
    if path.is_dir():
        available: dict[str, Path] = {}
        for suffix in suffixes:
            for p in sorted(path.iterdir()):
                if p.suffix.lower() == suffix and p.is_file() and not p.name.startswith("."):
                    available.setdefault(p.stem, p)
        return _pick(path, available, video, what)[1]
    if not path.exists():
        raise AnnotationError(path, "no such file")
    if check:
        _check_video(path, video, path.stem)
    return path


def _check_video(path: Path, video: str | None, found: str) -> None:
    if video is not None and name_key(video) != name_key(found):
        raise AnnotationError(path, f"holds video {found!r}, not the requested {video!r}")


def _read_affwild2(path: Path, video: str | None, fps: float | None) -> Annotations:
    path = _one_file(path, video, (".txt",), "Aff-Wild2 <video>.txt")
    values = _affwild2_values(path, _table(path, ","))
    return Annotations(np.arange(len(values)) / fps, values, path.stem, path)


def _affwild2_values(path: Path, table: _Table) -> np.ndarray:
    """(T, 2) labels of an Aff-Wild2 table, -5 made NaN."""
    if table.header() != list(_DIMS):
        raise AnnotationError(path, "missing header: expected 'valence,arousal'"
                                    + table.hint(",", "Aff-Wild2 files are"), int(table.line[0]))
    values, lines = _numbers(path, table, (0, 1), int(table.width[0]),
                             blank_last=table.trailing)
    values[values == _AFFWILD_INVALID] = np.nan  # -5 marks an invalid value
    _check(path, None, values, lines)
    return values


def _read_csv(path: Path, video: str | None, fps: float | None) -> Annotations:
    path = _one_file(path, video, (".csv",), "<video>.csv")
    times, values = _csv_data(path, _table(path, ","))
    return Annotations(times, values, path.stem, path)


def _csv_data(path: Path, table: _Table) -> tuple[np.ndarray, np.ndarray]:
    """(T,) times and (T, 2) labels of a csv table; columns it does not name are not read."""
    header = table.header()
    if header[:11] == AffectTrajectory._fields_csv():
        raise AnnotationError(path, "is a trajectory that coreaffect predict wrote (its columns "
                                    "are frame, time, valence, arousal, their bands, ...), not "
                                    "an annotation: move it out of the dataset",
                              int(table.line[0]))
    if any(header.count(name) != 1 for name in ("time", *_DIMS)):
        raise AnnotationError(path, f"missing header: need columns time, valence and arousal "
                                    f"once each, found {header}"
                                    + table.hint(",", "the csv format is"), int(table.line[0]))
    columns = [header.index(name) for name in ("time", *_DIMS)]
    data, lines = _numbers(path, table, columns, int(table.width[0]))
    _check(path, data[:, 0], data[:, 1:], lines)
    return data[:, 0].copy(), data[:, 1:].copy()


def _read_sewa(path: Path, video: str | None, fps: float | None) -> Annotations:
    path = _one_file(path, video, (".csv", ".txt"), "SEWA <video>.csv or .txt",
                     check=False)
    name, times, values = _sewa_data(path, _table(path, ";"))
    _check_video(path, video, name)
    return Annotations(times, values, name, path)


def _sewa_data(path: Path, table: _Table) -> tuple[str, np.ndarray, np.ndarray]:
    """The video name, (T,) times and (T, 2) labels of a SEWA table."""
    # a sixth cell, empty on the first line, is a ';' ending every line (an empty fifth cell
    # is an empty liking)
    trailing = table.width[0] == 6 and not table.cells[5].strip()
    ncols = 5 + trailing
    data, lines = _numbers(path, table, (1, 2, 3), ncols, first=0, delimiter=";",
                           blank_last=trailing)
    names = [name.strip() for name in table.column(0, 0, ncols)]
    if not names[0]:
        raise AnnotationError(path, "empty name in the first column", int(lines[0]))
    other = next((i for i, name in enumerate(names) if name != names[0]), None)
    if other is not None:
        raise AnnotationError(path, f"name {_short(names[other])} differs from {names[0]!r}: "
                                    f"one video per file", int(lines[other]))
    values = data[:, [2, 1]]  # the file has arousal before valence
    _check(path, data[:, 0], values, lines)
    return names[0], data[:, 0].copy(), values


_ONE_FILE = {  # the formats with one file per video (found anywhere under a corpus root):
    # their delimiter and the parser of a table
    "aff-wild2": (",", _affwild2_values), "sewa": (";", _sewa_data), "csv": (",", _csv_data),
}


def _check_head(path: Path, format: str) -> None:
    """Read the head of ``path`` (:data:`_HEAD_BYTES`, whole lines) as ``format``, one of the
    one-file formats, raising the :class:`~coreaffect.errors.AnnotationError` that reading the
    file would raise there: a check that the file is of that format when
    :func:`detect_format` cannot tell, without parsing a large file whole."""
    delimiter, parse = _ONE_FILE[format]
    parse(path, _table(path, delimiter, limit=_HEAD_BYTES))


def _read_afew(path: Path, video: str | None, fps: float | None) -> Annotations:
    if path.is_dir():
        own = path / f"{path.name}.json"
        clips = {p.name: p / f"{p.name}.json" for p in path.iterdir()}
        if own.is_file() and video in (None, path.name):
            clips = {path.name: own}
        clips = {name: file for name, file in clips.items() if file.is_file()}
        path = _pick(path, clips, video, "AFEW-VA clip folder NNN/ with NNN.json")[1]
    clip = path.stem
    _check_video(path, video, clip)
    text = _read_text(path)  # its own errors (missing, not UTF-8) name themselves
    try:
        data = json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as err:
        raise AnnotationError(path, f"not valid JSON ({err.msg})", err.lineno) from None
    except _RepeatedKey as err:  # json would keep the last silently
        raise AnnotationError(path, f"key {_short(str(err))} appears twice in one object "
                                    "(a frame labelled twice?)") from None
    except (ValueError, RecursionError) as err:  # huge integers, deep nesting
        raise AnnotationError(path, f"not valid JSON ({type(err).__name__})") from None
    if not isinstance(data, dict) or not isinstance(data.get("frames"), dict):
        raise AnnotationError(path, 'expected an object with a "frames" object')
    if "video_id" in data and not _same_id(data["video_id"], clip):
        raise AnnotationError(path, f"video_id {_short(str(data['video_id']))} does not match "
                                    f"the file name {clip!r}")
    if not data["frames"]:
        raise AnnotationError(path, "no frames")
    index, values = [], []
    for key, frame in data["frames"].items():
        if not (key.isascii() and key.isdigit() and len(key) <= 9):
            raise AnnotationError(path, f"frame key {_short(key)} is not a frame number")
        if not isinstance(frame, dict) or not all(dim in frame for dim in _DIMS):
            raise AnnotationError(path, f"frame {key}: expected an object with valence, arousal")
        index.append(int(key))
        values.append([_afew_value(path, key, dim, frame[dim]) for dim in _DIMS])
    order = np.argsort(index, kind="stable")
    frame_numbers = np.asarray(index)[order]
    twice = np.flatnonzero(np.diff(frame_numbers) == 0)
    if twice.size:
        raise AnnotationError(path, f"frame {frame_numbers[twice[0]]} appears twice")
    labels = np.asarray(values, dtype=np.float64)[order]
    raw = labels[np.isfinite(labels)] * _AFEW_SCALE
    if raw.size and np.abs(raw).max() <= 1 and (np.abs(raw - np.round(raw)) > 1e-6).any():
        message = (f"{path}: every label is within [-1, 1], and not all are integers: already "
                   f"scaled? AFEW-VA labels are integers in [-10, 10], read divided by 10")
        warn(logger, message)
    return Annotations(frame_numbers / fps, labels, clip, path)


class _RepeatedKey(Exception):
    """A JSON object names one key twice; the argument is the key."""


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """A JSON object as a dict, raising :class:`_RepeatedKey` for a key it names twice."""
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise _RepeatedKey(key)
        out[key] = value
    return out


def _afew_value(path: Path, key: str, dim: str, raw: object) -> float:
    """An AFEW-VA label in [-10, 10] scaled to [-1, 1]; null (or NaN) is no label."""
    if raw is None:
        return np.nan
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise AnnotationError(path, f"frame {key}: {dim} {_short(str(raw))} is not a number")
    try:
        scaled = float(raw) / _AFEW_SCALE
    except OverflowError:
        scaled = np.inf
    if not (np.isnan(scaled) or abs(scaled) <= 1.0):
        raise AnnotationError(path, f"frame {key}: {dim} {raw} is outside [-10, 10]")
    return scaled


def _same_id(video_id: object, clip: str) -> bool:
    """Whether a json ``video_id`` names the clip (``7`` and ``"7"`` both match ``007``)."""
    if isinstance(video_id, bool) or not isinstance(video_id, (str, int)):
        return False
    return str(video_id).lstrip("0") == clip.lstrip("0")


def _raters(root: Path) -> list[Path]:
    """DANTE's rater folders ``<root>/<UserId>``, sorted; hidden folders (``.git``) are none."""
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _read_dante(path: Path, video: str | None, fps: float | None) -> Annotations:
    path = path.absolute()
    if path.is_file() or _has_dante_file(path):
        if path.is_file() and path.name not in _DANTE_FILES:
            case = ", in lower case: rename it" if path.name.lower() in _DANTE_FILES else ""
            raise AnnotationError(path, f"DANTE files are named {' or '.join(_DANTE_FILES)}"
                                        f"{case}")
        folder = path.parent if path.is_file() else path  # <root>/<UserId>/<video>
        root, found = folder.parent.parent, name_key(folder.name)
        _check_video(path, video, found)
    elif path.is_dir():
        root = path
        available = {v.name: v for u in _raters(root) for v in u.iterdir()
                     if v.is_dir() and _has_dante_file(v)}
        found = _pick(root, available, video, "DANTE <UserId>/<video>/valence.csv")[0]
    else:
        raise AnnotationError(path, "no such file or folder")
    series, named = [], {}  # named: {a file: the video its NameVideo column names}
    for user in _raters(root):
        folder = next((v for v in user.iterdir() if v.is_dir() and name_key(v.name) == found),
                      user / found)  # its name as the file system spells it (NFC or NFD)
        files = [folder / name for name in _DANTE_FILES]
        if folder.is_dir():
            for other in folder.iterdir():  # Valence.csv would go unread: say so
                if (other.name.lower() in _DANTE_FILES and other.name not in _DANTE_FILES
                        and not (other.parent / other.name.lower()).is_file()):
                    raise AnnotationError(other, f"DANTE files are named "
                                                 f"{' or '.join(_DANTE_FILES)}, in lower case: "
                                                 "rename it")
        read = [_read_dante_file(f) if f.is_file() else None for f in files]
        if read == [None, None]:
            continue
        named.update({f: r[2] for f, r in zip(files, read, strict=True)
                      if r is not None and r[2] is not None})
        read = [None if r is None else r[:2] for r in read]
        for pair in read:  # valence, then arousal; a dimension the rater did not do: NaN
            times = next(r for r in read if r is not None)[0]
            series.append(pair if pair is not None else (times, np.full(len(times), np.nan)))
    if not series:
        raise AnnotationError(root, f"no rater folder <UserId>/{found}/ holds a valence.csv or "
                                    "arousal.csv")
    _check_dante_names(named, found)
    grid, stacked = _align(series)  # (2R, T): rater-major, then (valence, arousal)
    raters = stacked.reshape(-1, 2, grid.size).transpose(0, 2, 1)  # (R, T, 2)
    return Annotations(grid, None, found, root, raters)


def _video_key(name: str) -> str:
    """A video's name as DANTE folders and ``NameVideo`` cells may spell it: lower case, runs
    of other characters than letters and digits as one ``_`` (``30_3.mp4``, ``30_3_mp4``)."""
    return re.sub(r"[^0-9a-z]+", "_", name_key(name).lower()).strip("_")


def _check_dante_names(named: dict[Path, str], folder: str) -> None:
    """Refuse to fuse files whose ``NameVideo`` columns name different videos (folders laid
    out ``<video>/<UserId>`` instead of ``<UserId>/<video>``), and warn where all name one video
    that is not ``folder``, the video id taken from the folders."""
    keys = {_video_key(name): path for path, name in named.items()}
    if len(keys) > 1:
        a, b = list(keys.values())[:2]
        raise AnnotationError(a, f"its NameVideo column names {named[a]!r}, but that of {b}, "
                                 f"read as a rater of the same video {folder!r}, names "
                                 f"{named[b]!r}: DANTE's export is laid out "
                                 "<UserId>/<video>/valence.csv, one folder per rater, then "
                                 "per video")
    if keys:  # one video named by all
        key, path = next(iter(keys.items()))
        if _video_key(folder) not in (key, _video_key(Path(named[path]).stem)):
            message = (f"{path}: its NameVideo column names {named[path]!r}, but the folder "
                       f"names the video {folder!r}; the folder's name is used")
            warn(logger, message)


def _read_dante_file(path: Path) -> tuple[np.ndarray, np.ndarray, str | None]:
    """(T,) times, (T, 1) values and the ``NameVideo`` of one DANTE file (``None`` where its
    cells are empty); a file naming two videos is an error."""
    table = _table(path, ";")
    if table.header() != _DANTE_HEADER:
        raise AnnotationError(path, "missing header: expected "
                                    "'TimeStamp;UserId;NameVideo;AnnoType;Value'"
                                    + table.hint(";", "DANTE files are"), int(table.line[0]))
    data, lines = _numbers(path, table, (0, 4), int(table.width[0]), delimiter=";",
                           blank_last=table.trailing)
    names = [table.cells[start + 2].strip() for start in table.start[1:]]
    given = [(line, name) for line, name in zip(lines, names, strict=True) if name]
    other = next(((line, name) for line, name in given
                  if _video_key(name) != _video_key(given[0][1])), None)
    if other is not None:
        raise AnnotationError(path, f"its NameVideo column names {given[0][1]!r} first and "
                                    f"{other[1]!r} here: one file holds one video", int(other[0]))
    repeated = np.flatnonzero(np.diff(data[:, 0]) == 0)  # row i has the time of row i + 1
    if repeated.size:
        logger.info("%s: %d rows repeat the time of the next one; keeping the last of each",
                    path, repeated.size)
        keep = np.ones(len(data), dtype=bool)
        keep[repeated] = False
        data, lines = data[keep], lines[keep]
    _check(path, data[:, 0], data[:, 1:], lines, names=[path.stem])
    return data[:, 0].copy(), data[:, 1].copy(), given[0][1] if given else None


def _partner(path: Path, folder: Path) -> Path:
    """The file of the other dimension's ``folder`` named as ``path``: the same name, else the
    one name that differs only in case or Unicode form (``P16.CSV`` beside ``P16.csv``).

    Raises:
        AnnotationError: Several names differ from it only so (``p1.csv`` and ``P1.CSV``).
    """
    if (folder / path.name).is_file() or not folder.is_dir():
        return folder / path.name
    same = name_key(path.name).lower()
    found = [p for p in sorted(folder.iterdir())
             if name_key(p.name).lower() == same and p.is_file()]
    if len(found) > 1:
        raise AnnotationError(path, f"its {folder.name} file is one of "
                                    f"{', '.join(p.name for p in found)}, which differ only in "
                                    "case or Unicode form: rename them apart")
    return found[0] if found else folder / path.name


def _read_recola(path: Path, video: str | None, fps: float | None) -> Annotations:
    path = path.absolute()
    if path.is_dir():
        folders = _dimension_folders(path)
        if len(folders) < 2:
            raise AnnotationError(path, "expected RECOLA folders arousal/ and valence/ here")
        available = {p.stem: p for folder in folders.values() for p in sorted(folder.iterdir())
                     if p.suffix.lower() == ".csv" and p.is_file() and not p.name.startswith(".")}
        path = _pick(path, available, video, "RECOLA arousal/<video>.csv")[1]
    elif not path.is_file():
        raise AnnotationError(path, "no such file or folder")
    dim = path.parent.name.lower()
    if dim not in _DIMS:
        raise AnnotationError(path, "RECOLA files live in folders named arousal/ and valence/")
    _check_video(path, video, path.stem)
    other = "valence" if dim == "arousal" else "arousal"
    folder = next((p for p in sorted(path.parent.parent.iterdir())
                   if p.is_dir() and p.name.lower() == other), path.parent.parent / other)
    files = {dim: path, other: _partner(path, folder)}
    if not files[other].is_file():
        raise AnnotationError(path, f"no matching {other} file: expected {files[other]}")
    val_t, val, val_names = _read_recola_file(files["valence"])
    aro_t, aro, aro_names = _read_recola_file(files["arousal"])
    if sorted(val_names) != sorted(aro_names):
        raise AnnotationError(files["arousal"], f"raters {aro_names} differ from {val_names} "
                                                f"in {files['valence']}")
    aro = aro[:, [aro_names.index(name) for name in val_names]]  # valence file's rater order
    grid, stacked = _align([(val_t, val), (aro_t, aro)])  # (2, T, R)
    return Annotations(grid, None, path.stem, path.parent.parent, stacked.transpose(2, 1, 0))


def _read_recola_file(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(T,) times, (T, R) values and the R rater names of one RECOLA file."""
    table = _table(path, ";")
    header = table.names()
    names = header[1:]
    if header[0].lower() != "time" or not names or not all(names) or len(set(names)) < len(names):
        raise AnnotationError(path, f"missing header: expected 'time;FM1 ;FM2 ;...' with distinct "
                                    f"rater names, found {header[:8]}"
                                    + table.hint(";", "RECOLA files are"), int(table.line[0]))
    data, lines = _numbers(path, table, range(len(header)), int(table.width[0]), delimiter=";",
                           blank_last=table.trailing)
    _check(path, data[:, 0], data[:, 1:], lines, [f"{path.parent.name} of {n}" for n in names])
    return data[:, 0].copy(), data[:, 1:].copy(), names


def _align(series: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Put series of (T_i,) times and (T_i, ...) values on the union of their times.

    Times closer than :data:`_SAME_TIME` are one grid time (the earliest); each series keeps its
    own samples there unchanged and is interpolated by :func:`resample_labels` at the others
    (NaN outside its span and inside its holes), so no sample of any series is lost.

    Returns:
        (T,) grid and (S, T, ...) values, S the number of series.
    """
    first = series[0][0]
    if all(np.array_equal(times, first) for times, _ in series):  # well-formed exports
        return first, np.stack([values for _, values in series])
    grid = np.unique(np.concatenate([times for times, _ in series]))
    grid = grid[np.concatenate([[True], np.diff(grid) > _SAME_TIME])]
    aligned = []
    for times, values in series:
        out = resample_labels(times, values, grid)
        right = np.clip(np.searchsorted(grid, times), 0, grid.size - 1)
        left = np.maximum(right - 1, 0)
        nearest = np.where(np.abs(grid[left] - times) < np.abs(grid[right] - times), left, right)
        out[nearest] = values  # each sample is within _SAME_TIME of its grid time
        aligned.append(out)
    logger.info("put %d series of %s samples on the union of their times, %d samples",
                len(series), [len(times) for times, _ in series], grid.size)
    return grid, np.stack(aligned)
