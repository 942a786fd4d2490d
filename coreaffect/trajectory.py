"""A valence-arousal trajectory: per-frame means with credible bands, as the pipeline returns it.

:class:`AffectTrajectory` holds one video's output of one stage of
:class:`~coreaffect.pipeline.CoreAffect` (``raw``, ``prior``, ``smoothed``, ``filtered`` or
``lagged``): per frame, the time, valence and arousal with their central credible bands and
variances, the ``face_found`` flag and the latent posterior mean. It writes and reads CSV (one
row per frame, see :attr:`AffectTrajectory.columns`), converts to a pandas ``DataFrame`` and
plots itself. :class:`AffectRow` is one of its frames, as
:meth:`~coreaffect.pipeline.CoreAffect.stream` yields them.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from coreaffect.checkpoint import atomic_write
from coreaffect.errors import CoreAffectError

__all__ = ["AffectRow", "AffectTrajectory", "csv_cells", "csv_columns"]


class AffectRow(NamedTuple):
    """One frame of a trajectory, as :meth:`~coreaffect.pipeline.CoreAffect.stream` yields it.

    Attributes:
        index: Frame index in the source.
        time: Frame time in seconds.
        valence: Posterior mean of valence.
        arousal: Posterior mean of arousal.
        valence_lower: Lower end of valence's central credible band at the trajectory's level.
        valence_upper: Its upper end.
        arousal_lower: Lower end of arousal's band.
        arousal_upper: Its upper end.
        valence_var: Posterior variance of valence (moment-matched).
        arousal_var: Posterior variance of arousal.
        face_found: Whether the face was found in this frame.
        latent_mean: (K,) posterior mean of the latent z.

    The fields are the columns of :meth:`AffectTrajectory.to_csv` in their order, but for the
    stage and level, which a row shares with its trajectory or stream (:func:`csv_cells`).
    """

    index: int
    time: float
    valence: float
    arousal: float
    valence_lower: float
    valence_upper: float
    arousal_lower: float
    arousal_upper: float
    valence_var: float
    arousal_var: float
    face_found: bool
    latent_mean: np.ndarray


def csv_columns(n_latent: int) -> list[str]:
    """The header of a trajectory CSV (:meth:`AffectTrajectory.to_csv`) with K latent columns."""
    return [*AffectTrajectory._fields_csv(), "stage", "level",
            *[f"z{k + 1}" for k in range(n_latent)]]


def csv_cells(row: AffectRow, stage: str, level: float) -> list[str]:
    """One line of a trajectory CSV, cell by cell: times to the microsecond, the level exactly,
    other numbers to 6 significant digits, missing values empty."""
    return [_cell(row.index), _time_cell(row.time),
            *(_cell(value) for value in row[2:10]), _cell(row.face_found), stage,
            repr(float(level)), *(_cell(value) for value in row.latent_mean)]


@dataclasses.dataclass(frozen=True, eq=False)
class AffectTrajectory:
    """Per-frame valence-arousal of one video with credible bands: one row per frame.

    A frozen dataclass rather than a NamedTuple so that ``len(trajectory)`` counts its frames.

    Attributes:
        times: (T,) frame times in seconds.
        indices: (T,) frame indices in the source.
        mean: (T, 2) posterior mean of (valence, arousal); NaN where the stage has no estimate.
        var: (T, 2) posterior variances (moment-matched).
        lower: (T, 2) lower end of the central credible band at ``level``.
        upper: (T, 2) upper end.
        face_found: (T,) bool.
        latent_mean: (T, K) posterior mean of the latent z (K = 0 for the ``raw`` stage).
        level: Probability of the bands.
        stage: Which estimate: one of :data:`coreaffect.pipeline.STAGES`.
        bands: Central bands at other levels from the same posterior, ``{level: (lower (T, 2),
            upper (T, 2))}``, what :meth:`~coreaffect.pipeline.CoreAffect.stages_of` adds for
            ``band_levels`` (the evaluation's coverages are theirs); not written to CSV.
    """

    times: np.ndarray
    indices: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    face_found: np.ndarray
    latent_mean: np.ndarray
    level: float
    stage: str
    bands: Mapping[float, tuple[np.ndarray, np.ndarray]] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        """The number of frames T."""
        return len(self.times)

    def __repr__(self) -> str:
        span = (f", {self.times[0]:g} s to {self.times[-1]:g} s, face in "
                f"{np.mean(self.face_found):.0%}" if len(self) else "")
        return (f"AffectTrajectory(stage={self.stage!r}, level={self.level:g}, "
                f"{len(self)} frames{span})")

    @property
    def columns(self) -> list[str]:
        """Column names of :meth:`to_csv` and :meth:`to_dataframe`, in order."""
        return csv_columns(self.latent_mean.shape[1])

    def _table(self) -> list[np.ndarray]:
        frames = len(self)
        return [self.indices, self.times, self.mean[:, 0], self.mean[:, 1], self.lower[:, 0],
                self.upper[:, 0], self.lower[:, 1], self.upper[:, 1], self.var[:, 0],
                self.var[:, 1], self.face_found.astype(np.int64),
                np.full(frames, self.stage, dtype=object), np.full(frames, self.level),
                *self.latent_mean.T]

    def band(self, level: float) -> tuple[np.ndarray, np.ndarray]:
        """``(lower, upper)``, each (T, 2), of the central band at ``level``: the trajectory's
        own (``lower``, ``upper``) or one of ``bands``.

        Raises:
            CoreAffectError: The trajectory has no band at that level.
        """
        if math.isclose(level, self.level):
            return self.lower, self.upper
        for known, pair in self.bands.items():
            if math.isclose(level, known):
                return pair
        have = ", ".join(f"{x:g}" for x in sorted({self.level, *self.bands}))
        raise CoreAffectError(f"this {self.stage} trajectory has no band at level {level:g} "
                              f"(it has {have})")

    def rows(self) -> Iterator[AffectRow]:
        """The frames as :class:`AffectRow` tuples, in order."""
        for t in range(len(self)):
            yield AffectRow(int(self.indices[t]), float(self.times[t]), float(self.mean[t, 0]),
                            float(self.mean[t, 1]), float(self.lower[t, 0]),
                            float(self.upper[t, 0]), float(self.lower[t, 1]),
                            float(self.upper[t, 1]), float(self.var[t, 0]),
                            float(self.var[t, 1]), bool(self.face_found[t]),
                            self.latent_mean[t].copy())

    def to_csv(self, path: str | Path) -> Path:
        """Write one row per frame (see :attr:`columns`); atomic: readers never see half a file.

        Times are written to the microsecond (whatever the length of the video), the other
        values with 6 significant digits; missing values are empty fields. Every row names the
        stage and the level of the bands, so that the file says what it holds.

        Returns:
            The path written.

        Raises:
            CoreAffectError: The trajectory has no frame: a file of no row could not say its
                stage and level.
        """
        if not len(self):
            raise CoreAffectError(f"{path}: not written, the {self.stage} trajectory has no "
                                  "frame")
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self.columns)
        writer.writerows(csv_cells(row, self.stage, self.level) for row in self.rows())
        atomic_write(path, buffer.getvalue())
        return Path(path)

    @classmethod
    def read_csv(cls, path: str | Path, level: float | None = None, stage: str | None = None
                 ) -> AffectTrajectory:
        """Read a file written by :meth:`to_csv`.

        Args:
            path: The file.
            level: The level of its bands; ``None``: the file's. A file written before files
                named their stage and level (without those columns) is taken to hold the
                ``smoothed`` stage at 0.9 unless told otherwise.
            stage: Its stage; ``None``: the file's.

        Raises:
            CoreAffectError: The file is not such a file: not UTF-8 text, its header, or the
                line of a row that is not as wide as the header, holds a cell that is not a
                number, or lacks its frame or a ``face_found`` of 0 or 1; a stage or level that
                differs between rows, or from the one given. Blank lines are passed over.
        """
        try:
            with open(path, newline="", encoding="utf-8-sig") as handle:
                header, rows, stages, named = cls._read_rows(path, csv.reader(handle))
        except UnicodeDecodeError:
            raise CoreAffectError(f"{path}: not a coreaffect trajectory (not UTF-8 text)"
                                  ) from None
        width = len(header) - named
        data = np.array(rows, dtype=np.float64).reshape(len(rows), width)
        if named:
            levels = set(data[:, 11].tolist())
            if len(stages) > 1 or len(levels) > 1 or (levels and not 0 < min(levels) < 1):
                raise CoreAffectError(f"{path}: its rows name stages {sorted(stages)} at levels "
                                      f"{sorted(levels)}: one stage at one level in (0, 1) is "
                                      "a trajectory")
            for given, held, what in ((stage, stages, "stage"), (level, levels, "level")):
                same = (lambda a, b: a == b) if what == "stage" else math.isclose
                if given is not None and held and not same(given, next(iter(held))):
                    raise CoreAffectError(f"{path}: holds the {what} {next(iter(held))!r}, not "
                                          f"{given!r}")
            stage = next(iter(stages)) if stages else stage
            level = next(iter(levels)) if levels else level
            data = np.delete(data, 11, axis=1)
        pair = lambda a, b: data[:, [a, b]]  # noqa: E731 - (T, 2) from two columns
        return cls(data[:, 1], data[:, 0].astype(np.int64), pair(2, 3), pair(8, 9), pair(4, 6),
                   pair(5, 7), data[:, 10].astype(bool), data[:, 11:],
                   0.9 if level is None else float(level),
                   "smoothed" if stage is None else stage)

    @classmethod
    def _read_rows(cls, path: str | Path, reader: Any
                   ) -> tuple[list[str], list[list[float]], set[str], bool]:
        """``(header, rows of numbers, stages named, whether the file names them)`` of a CSV
        reader; blank lines are passed over."""
        header = next(reader, None)
        if header is None or header[:11] != cls._fields_csv():
            shown = "none" if header is None else repr(",".join(header)[:80])
            raise CoreAffectError(f"{path}: not a coreaffect trajectory (its header is "
                                  f"{shown}, not {','.join(cls._fields_csv())},...)")
        named = header[11:13] == ["stage", "level"]  # files before did not say
        rows, stages = [], set()
        for row in reader:
            if not row:  # a blank line, as an editor may leave at the end
                continue
            where = f"{path}: line {reader.line_num}"
            if len(row) != len(header):
                raise CoreAffectError(f"{where}: {len(row)} cells, the header names "
                                      f"{len(header)}")
            if row[10] not in ("0", "1") or not _is_frame(row[0]):
                raise CoreAffectError(f"{where}: frame must be a whole number >= 0 and "
                                      f"face_found 0 or 1 (got {row[0]!r} and {row[10]!r})")
            if named:
                stages.add(row.pop(11))
            try:
                rows.append([float(x) if x != "" else math.nan for x in row])
            except ValueError as err:
                raise CoreAffectError(f"{where}: {err}") from None
        return header, rows, stages, named

    @staticmethod
    def _fields_csv() -> list[str]:
        return ["frame", "time", "valence", "arousal", "valence_lower", "valence_upper",
                "arousal_lower", "arousal_upper", "valence_var", "arousal_var", "face_found"]

    def to_dataframe(self) -> Any:
        """A ``pandas.DataFrame`` with :attr:`columns` (pandas is an optional dependency).

        Raises:
            CoreAffectError: pandas is not installed.
        """
        try:
            import pandas as pd
        except ImportError:
            raise CoreAffectError("to_dataframe needs pandas: pip install pandas (or use "
                                  "to_csv)") from None
        table = self._table()
        frame = pd.DataFrame({name: column for name, column in zip(self.columns, table,
                                                                    strict=True)})
        frame["face_found"] = frame["face_found"].astype(bool)
        return frame

    def plot(self, truth: np.ndarray | None = None, axes: Any = None, *,
             title: str | None = None) -> Any:
        """The trajectory over time with its bands, ``lower`` to ``upper`` as in the CSV
        (:func:`coreaffect.plots.plot_trajectory`).

        Args:
            truth: (T, 2) labels to draw beside it, NaN where unlabelled.
            axes: A pair of axes (valence, arousal); ``None`` makes a figure.
            title: Optional title.

        Returns:
            The two axes.

        Raises:
            InputError: ``truth`` does not have one row per frame.
        """
        from coreaffect.plots import plot_trajectory

        return plot_trajectory(self.times, self.mean, truth, self.var, self.face_found, axes,
                               level=self.level, label=self.stage, title=title,
                               band=(self.lower, self.upper))


def _cell(value: Any) -> str:
    value = float(value)
    if math.isnan(value):
        return ""
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.6g}"


def _is_frame(cell: str) -> bool:
    """Whether a CSV cell is a frame index: a whole number >= 0 (``12``, or ``12.0`` as a
    spreadsheet may save it), below 2^53, where floats stop holding every whole number."""
    try:
        value = float(cell)
    except ValueError:
        return False
    return math.isfinite(value) and 0 <= value < 2 ** 53 and value == int(value)  # exact


def _time_cell(value: Any) -> str:
    """A time in seconds to the microsecond, without trailing zeros: 10000.04, not 10000."""
    value = float(value)
    if math.isnan(value):
        return ""
    return f"{value:.6f}".rstrip("0").rstrip(".")
