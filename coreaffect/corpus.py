"""Recordings of a dataset: finding them, checking them and loading their faces and labels.

A *recording* is one video (a file or a folder of frames) with its annotation and an id.
:func:`discover` finds the recordings under a dataset root for each supported format, laid out as
the public datasets ship them:

=============  ==========================================================================
format         layout under ``root`` (videos are matched to annotations by file stem, in NFC)
=============  ==========================================================================
``dante``      ``annotation/<UserId>/<video>/{valence,arousal}.csv`` and ``<video>.<ext>``
               anywhere under ``root`` (``<video>`` may also be the file's whole name with
               its dots as underscores, as the tool writes it: ``30_3_mp4``)
``aff-wild2``  ``<video>.txt`` (header ``valence,arousal``) and a video file or a
               ``cropped_aligned``-style frame folder named ``<video>``; a ``_left`` or
               ``_right`` annotation falls back to the video without the suffix, and its
               faces are then looked for in that half of the frame only
``afew-va``    ``NNN/`` folders holding the PNG frames and ``NNN.json``
``sewa``       headerless ``;``-separated ``<video>.csv`` (or ``.txt``) files and videos
``recola``     ``arousal/<video>.csv`` and ``valence/<video>.csv`` and the videos
``csv``        ``<video>.csv`` with header ``time,valence,arousal`` and the videos
=============  ==========================================================================

Names are compared in Unicode NFC, and recording ids are in NFC: macOS may store ``café.mp4``
with a combining accent (NFD) while a label file spells the name with one character.

Hidden folders and files below ``root`` (names starting with ``.``: ``.git``, a synthetic
corpus still being built in ``.partial-*``, macOS's ``._clip.mp4``) are skipped; ``root``
itself may be hidden.

Video files are those OpenCV decodes (``.mp4 .avi .mkv .mov .webm .mpg .mpeg .m4v .wmv .flv
.ogv .ogg``);
a frame folder is a folder of ``.png``/``.jpg``/``.jpeg``/``.bmp`` images. Suffixes and RECOLA's
folder names match in any case; DANTE's files are ``valence.csv`` and ``arousal.csv`` (a
``Valence.csv`` beside them is an error asking for the lower-case name). An annotation with no
video, a stem matching several videos, or two annotations of one video is an error naming both
sides, never a silent skip. For the one-file formats (``aff-wild2``, ``sewa``, ``csv``), a ``.csv``
or ``.txt`` file named like a video is that video's annotation: one whose format cannot be told
(and, when the format is given, whose first lines do not read as that format either), in a
folder of annotations, is an error naming the file and what is wrong unless its video has another
annotation (elsewhere, or beside an annotation, it is a side file and passed over), and with
``format="auto"`` annotation files of two formats (a prediction CSV saved inside a SEWA corpus,
say) are an error too, as is a DANTE or RECOLA file outside its layout; files of no format named
like no video (notes) are passed over. When no file is of the format, the error names a file
named like a video and the format it is. Videos without an annotation are left out (logged).
Loading a recording warns when its labelled times span far more than the video (times in
milliseconds or frame numbers) or under half of it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from coreaffect.annotations import (
    _ONE_FILE,
    FORMATS,
    Annotations,
    _check_head,
    detect_format,
    name_key,
    read_annotations,
)
from coreaffect.config import DataConfig, FaceConfig, VideoConfig
from coreaffect.errors import (
    AnnotationError,
    CoreAffectError,
    InputError,
    listing,
    warn,
)
from coreaffect.faces import FaceCropper, FaceCrops
from coreaffect.video import VideoSource, is_frame_image, numbered_images

if TYPE_CHECKING:
    from coreaffect.crop_cache import CropCache

__all__ = [
    "LabelledVideo",
    "Recording",
    "check_annotations",
    "check_numbering",
    "discover",
    "folder_numbering",
    "open_source",
    "load_recording",
]

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v", ".wmv", ".flv",
                  ".ogv", ".ogg")
# Frame rates the formats imply for frame folders (AFEW-VA ships 25 fps clips; Aff-Wild2's
# cropped_aligned frames keep the source video's rate, which is mostly 30 fps).
_FOLDER_FPS = {"afew-va": 25.0, "aff-wild2": 30.0}
# Aff-Wild2 numbers its cropped frames from 1 (00001.jpg is the first annotation row).
_FIRST_INDEX = {"aff-wild2": 1}
_LAYOUTS = {  # where the other formats' annotation files live, for the error that finds one
    "dante": "annotation/<UserId>/<video>/valence.csv and arousal.csv",
    "recola": "arousal/<video>.csv and valence/<video>.csv",
}


def folder_numbering(format: str | None) -> tuple[float, int]:
    """``(frame rate, number of the first image)`` of a frame folder of the dataset ``format``:
    Aff-Wild2's cropped_aligned folders are 30 Hz numbered from 1, AFEW-VA's clips 25 Hz from 0,
    and the others (and ``None``) 25 Hz from 0."""
    return _FOLDER_FPS.get(format, 25.0), _FIRST_INDEX.get(format, 0)


def open_source(source: str | Path | int, config: VideoConfig, format: str | None = None, *,
                fps: float | None = None, first_index: int | None = None) -> VideoSource:
    """Open a video file, frame folder or camera as the dataset ``format`` reads its videos.

    Args:
        source: A file, a folder of numbered images, or a camera index.
        config: ``config.chunk_size``, and ``config.fps`` for a folder.
        format: The dataset format (:func:`folder_numbering`); ``None``: none in particular.
        fps: Rate of a frame folder; ``None``: ``config.fps``, else the format's. For a file,
            a rate that replaces its container's (``VideoSource``'s ``file_fps``); ``None``: its
            own, else ``config.fps``. A camera keeps its own.
        first_index: Number of a folder's first image; ``None``: ``config.first_index``, else
            the format's (a warning names a folder whose first image is 1 read from 0).
    """
    rate, first = folder_numbering(format)
    camera = isinstance(source, (int, np.integer)) and not isinstance(source, bool)
    if not camera and not isinstance(source, (str, os.PathLike)):
        raise InputError(f"a video must be a file or folder path, or a camera index, got "
                         f"{type(source).__name__}")
    if not camera and Path(source).is_dir():
        given = next((x for x in (fps, config.fps) if x is not None), rate)  # 0 is refused
        config = dataclasses.replace(config, fps=given)
        if first_index is None and config.first_index is None:
            _check_numbering([Path(source)], first, format)
        first_index = next(x for x in (first_index, config.first_index, first) if x is not None)
        return VideoSource.from_config(source, config, first_index=first_index)
    if not camera and fps is not None:
        return VideoSource(source, fps=config.fps, chunk_size=config.chunk_size, file_fps=fps)
    return VideoSource.from_config(source, config)


class Recording(NamedTuple):
    """One video of a dataset with its annotation.

    Attributes:
        id: The video id (unique within a corpus).
        video: Video file or frame folder.
        annotation: What :func:`~coreaffect.annotations.read_annotations` takes for it.
        format: The annotation format, one of :data:`~coreaffect.annotations.FORMATS`.
        fps: Frame rate for frame folders (``None``: the file's own rate).
        first_index: Number of the first frame in a frame folder's file names.
        side: ``"left"`` or ``"right"`` for one of two people in a shared video (Aff-Wild2's
            ``<video>_left`` and ``<video>_right``): faces are looked for in that half of the
            frame only (``side`` of :class:`~coreaffect.config.FaceConfig`). ``None``: the
            whole frame.
    """

    id: str
    video: Path
    annotation: Path
    format: str
    fps: float | None = None
    first_index: int = 0
    side: str | None = None

    def faces(self, config: FaceConfig) -> FaceConfig:
        """The crop settings for this recording: ``config`` with its :attr:`side`, if any.

        Raises:
            CoreAffectError: The recording shares its video with another person and ``config``
                has no face detector to tell them apart.
        """
        if self.side is None:
            return config
        if config.detector == "none":
            raise CoreAffectError(f"{self.video}: recording {self.id!r} is the {self.side} "
                                  "person of a video of two; finding them needs a face "
                                  "detector, not faces.detector='none'")
        return dataclasses.replace(config, side=self.side)

    def open_video(self, chunk_size: int = 64) -> VideoSource:
        """A :class:`~coreaffect.video.VideoSource` over this recording's frames."""
        return VideoSource(self.video, fps=self.fps, chunk_size=chunk_size,
                           first_index=self.first_index)

    def read_annotations(self, fusion: str = "mean", fps: float | None = None) -> Annotations:
        """The recording's labels at their native rate (``fps`` for frame-indexed formats)."""
        # a folder (a DANTE annotation root) holds several videos: ours is picked by its id; a
        # file must be of this video (a SEWA file names its video on every row)
        return read_annotations(self.annotation, self.format, video=self.id, fusion=fusion,
                                fps=fps if fps is not None else self.fps)


class LabelledVideo(NamedTuple):
    """A recording's face crops with a label per frame.

    Attributes:
        id: The video id.
        crops: Face crops of every decoded frame (``crops.crops`` may be memory-mapped).
        labels: (T, 2) float32 labels at the frame times, (valence, arousal); NaN = no label.
    """

    id: str
    crops: FaceCrops
    labels: np.ndarray


# ---------------------------------------------------------------------------------------------
# Discovery


def _hidden(name: str) -> bool:
    """Whether a file or folder is hidden, its name starting with ``.`` (``.git``, a corpus being
    built in ``.partial-*``, macOS's ``._clip.mp4`` and ``.DS_Store``): never read as data."""
    return name.startswith(".")


def _below(root: Path) -> list[Path]:
    """The files and folders below ``root``, sorted, without the hidden ones and anything in a
    hidden folder (``root`` itself may be hidden). Linked folders are followed (a corpus's
    ``videos/`` linked to where a licensed dataset lies), each real folder once."""
    found, seen = [], set()
    for folder, subfolders, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:  # a link back up the tree, or a second link to the same folder
            subfolders[:] = []
            continue
        seen.add(real)
        subfolders[:] = [name for name in subfolders if not _hidden(name)]  # not walked into
        found += [Path(folder, name) for name in subfolders + files if not _hidden(name)]
    return sorted(found)


def _is_frame_folder(path: Path) -> bool:
    return path.is_dir() and any(is_frame_image(p) for p in path.iterdir())


def _index_videos(root: Path) -> dict[str, list[Path]]:
    """Video files and frame folders under ``root``, by stem (folder name), in NFC."""
    found: dict[str, list[Path]] = {}
    for path in _below(root):
        if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
            found.setdefault(name_key(path.stem), []).append(path)
        elif path.is_dir() and _is_frame_folder(path):
            found.setdefault(name_key(path.name), []).append(path)
    return found


def _underscored(videos: dict[str, list[Path]]) -> dict[str, list[Path]]:
    """The video files by their whole name with dots turned into underscores, as DANTE names
    its annotation folders (``30_3.mp4`` becomes ``30_3_mp4``)."""
    found: dict[str, list[Path]] = {}
    for path in (p for paths in videos.values() for p in paths if p.is_file()):
        found.setdefault(name_key(path.name.replace(".", "_")), []).append(path)
    return found


def _match_video(videos: dict[str, list[Path]], stems: Sequence[str], annotation: Path) -> Path:
    for stem in stems:
        candidates = videos.get(name_key(stem), [])
        if len(candidates) == 1:
            return candidates[0]
        if len(candidates) > 1:
            listing = ", ".join(str(c) for c in candidates)
            both = ("; a video file and a frame folder of it (Aff-Wild2 ships videos/ and "
                    "cropped_aligned/): give a root that holds the annotations and only one of "
                    "them" if {c.is_dir() for c in candidates} == {True, False} else "")
            raise CoreAffectError(f"{annotation}: several videos are named {stem!r}: "
                                  f"{listing}{both}")
    raise CoreAffectError(f"{annotation}: no video file or frame folder named "
                          f"{' or '.join(repr(s) for s in stems)} under the dataset root")


def _flat_files(root: Path) -> list[Path]:
    """The ``.csv`` and ``.txt`` files under ``root`` (any case of the suffix), sorted."""
    return [p for p in _below(root) if p.suffix.lower() in (".csv", ".txt") and p.is_file()]


def _video_stems(stem: str) -> tuple[str, ...]:
    """The video names an annotation file's stem may belong to (Aff-Wild2's ``_left`` and
    ``_right`` annotations belong to the video without the suffix too), in NFC."""
    stem = name_key(stem)
    if stem.endswith(("_left", "_right")):
        return stem, stem.rsplit("_", 1)[0]
    return (stem,)


class _FlatFiles(NamedTuple):
    """The ``.csv``/``.txt`` files under a root: each readable one's format, and the
    :class:`~coreaffect.errors.AnnotationError` of each unreadable one named like a video."""

    kinds: dict[Path, str]
    unreadable: dict[Path, AnnotationError]


def _flat_formats(root: Path, videos: dict[str, list[Path]], format: str | None = None
                  ) -> _FlatFiles:
    """The format of each file, by :func:`~coreaffect.annotations.detect_format`.

    With ``format``, the one the user gave, a file named like a video whose format cannot be
    told is read as ``format`` instead (its head only): it is of ``format`` if that read
    succeeds, else unreadable with that read's error, which says what is wrong for ``format``
    (the advice to pass a format would repeat the one given).
    """
    kinds, unreadable = {}, {}
    for path in _flat_files(root):
        try:
            kinds[path] = detect_format(path)
        except AnnotationError as err:
            if not any(stem in videos for stem in _video_stems(path.stem)):
                continue
            if format is None:
                unreadable[path] = err
                continue
            try:
                _check_head(path, format)
            except AnnotationError as own:
                unreadable[path] = own
            else:
                kinds[path] = format
    return _FlatFiles(kinds, unreadable)


def _one_format(root: Path, files: _FlatFiles, videos: dict[str, list[Path]]) -> str:
    """The one format of the annotation files named like videos; several is an error."""
    by_format: dict[str, list[Path]] = {}
    for path, kind in files.kinds.items():
        if any(stem in videos for stem in _video_stems(path.stem)):
            by_format.setdefault(kind, []).append(path)
    if len(by_format) > 1:
        examples = "; ".join(f"{kind}: {len(paths)} file(s), e.g. {paths[0]}"
                             for kind, paths in sorted(by_format.items()))
        raise CoreAffectError(f"{root}: annotation files of several formats are named like its "
                              f"videos ({examples}); move the files that are not annotations "
                              "(a prediction CSV, say) out of the dataset folder, or give the "
                              "format")
    if not by_format:
        if files.unreadable:
            raise next(iter(files.unreadable.values()))
        raise CoreAffectError(f"{root}: cannot tell the dataset format: no annotation layout "
                              "and no .csv or .txt file named like one of its videos; give one "
                              f"of {', '.join(FORMATS)}")
    kind, paths = next(iter(by_format.items()))
    if kind not in _ONE_FILE:
        raise CoreAffectError(f"{paths[0]}: a {kind} annotation outside the {kind} layout; "
                              f"{kind} annotations are {_LAYOUTS[kind]}")
    return kind


def _flat_entries(files: _FlatFiles, format: str, videos: dict[str, list[Path]]
                  ) -> list[tuple[str, Path]]:
    """(video id, file) of the files of ``format``, after checking the other files.

    A file named like a video that has no annotation of ``format``, and that cannot be read as
    ``format`` (unreadable, or of another format), is that video's broken annotation when it
    lies in a folder that holds annotations of ``format``: its error is raised. Beside the video
    it is named like, the video is left out with a warning naming the file and what is wrong
    with it, never silently. Elsewhere (another task's labels in a folder of their own) it is
    passed over with a log line, as is any such file of a video that has its annotation (a
    feature file beside it).
    """
    entries = [(path.stem, path) for path, kind in files.kinds.items() if kind == format]
    other = next(((path, kind) for path, kind in files.kinds.items() if kind != format
                  and any(stem in videos for stem in _video_stems(path.stem))), None)
    if not entries and files.unreadable:
        raise next(iter(files.unreadable.values()))
    if not entries and other is not None:  # name what is there instead
        raise CoreAffectError(f"{other[0]}: an annotation in the {other[1]} format, not "
                              f"{format}, and no {format} annotation is named like a video")
    annotated = {stem for _, path in entries for stem in _video_stems(path.stem)}
    folders = {path.parent for _, path in entries}
    # file named like a video -> why it is not an annotation of the format
    others = {path: _not_of(path, None, format, err) for path, err in files.unreadable.items()}
    for path, kind in files.kinds.items():
        if kind != format and any(stem in videos for stem in _video_stems(path.stem)):
            others[path] = _not_of(path, kind, format)
    left_out = []
    for path, err in others.items():
        stems = set(_video_stems(path.stem))
        if not annotated & stems and path.parent in folders:
            raise err
        if not annotated & stems and any(video.parent == path.parent for stem in stems
                                         for video in videos.get(stem, ())):
            left_out.append(err)
        else:
            logger.info("%s: not read as a %s annotation (%s)", path, format, err.problem)
    if left_out:
        message = (f"{len(left_out)} video(s) left out: the file named like each, beside it, is "
                   f"not a {format} annotation ({listing(left_out, 3, '; ')})")
        warn(logger, message)
    return entries


def _not_of(path: Path, kind: str | None, format: str, error: AnnotationError | None = None
            ) -> AnnotationError:
    """Why ``path``, a file of format ``kind`` (``None``: unknown, with the ``error`` that said
    so), is not one of ``format``: the error of reading its head as ``format``, else that."""
    try:
        _check_head(path, format)
    except AnnotationError as err:
        if kind is None:
            return err
        return AnnotationError(path, f"a {kind} file; as {format}: {err.problem}", err.line)
    return error or AnnotationError(path, f"a {kind} file, not {format}")


def _dante_files(root: Path) -> list[Path]:
    """DANTE's ``<annotation>/<UserId>/<video>/valence.csv`` or ``arousal.csv`` files, in any
    case (the reader asks for lower case, and says so), with their ``<annotation>`` folder at or
    below ``root``: a ``valence.csv`` of results nearer the root is no rating."""
    return [p for p in _below(root) if p.name.lower() in ("valence.csv", "arousal.csv")
            and len(p.relative_to(root).parts) >= 3 and p.is_file()]


def _dimension_folders(root: Path) -> list[Path]:
    """RECOLA's ``arousal`` folders (any case) that have a ``valence`` sibling."""
    return [p for p in _below(root) if p.name.lower() == "arousal" and p.is_dir()
            and any(q.name.lower() == "valence" and q.is_dir() for q in p.parent.iterdir())]


def _afew_files(root: Path) -> list[Path]:
    """AFEW-VA's ``NNN/NNN.json`` files under ``root``: each beside its clip's frames (a
    metadata file named like its folder, such as a synthetic corpus's, is not one)."""
    return [p for p in _below(root) if p.suffix.lower() == ".json" and p.parent.name == p.stem
            and p.is_file() and any(is_frame_image(q) for q in p.parent.iterdir())]


def _warn_of_afew_leftovers(root: Path, files: list[Path]) -> None:
    """A warning naming the folders of frames that AFEW-VA's layout leaves out (no ``NNN.json``
    named after the folder beside them) and the ``NNN.json`` files without frames beside them:
    a clip is never skipped silently."""
    clips = {p.parent for p in files}
    below = _below(root)
    unlabelled = [str(p) for p in below if p.is_dir() and p not in clips
                  and any(is_frame_image(q) for q in p.iterdir())]
    frameless = [str(p) for p in below if p.suffix.lower() == ".json"
                 and p.parent.name == p.stem and p.parent not in clips and p.is_file()]
    if unlabelled:
        logger.warning("%d folder(s) of frames under %s have no AFEW-VA annotation named after "
                       "the folder (NNN/NNN.json) and are left out: %s", len(unlabelled), root,
                       listing(unlabelled))
    if frameless:
        logger.warning("%d AFEW-VA annotation(s) under %s have no frames beside them and are "
                       "left out: %s", len(frameless), root, listing(frameless))


def _detect_layout(root: Path) -> str | None:
    """The format of a dataset root from its folder layout; ``None``: a one-file format."""
    if _afew_files(root):
        return "afew-va"
    if _dante_files(root):
        return "dante"
    if _dimension_folders(root):
        return "recola"
    return None


def _annotation_entries(root: Path, format: str, videos: dict[str, list[Path]],
                        flat: _FlatFiles | None = None) -> list[tuple[str, Path]]:
    """(video id, annotation path) pairs of a dataset root."""
    if format == "afew-va":
        files = _afew_files(root)
        _warn_of_afew_leftovers(root, files)
        return [(p.stem, p) for p in files]
    if format == "dante":
        files = _dante_files(root)
        ids = sorted({name_key(p.parent.name) for p in files})  # raters may spell it NFC or NFD
        tops = {p.parent.parent.parent for p in files}
        if not tops:
            raise CoreAffectError(f"{root}: no DANTE annotation here (expected "
                                  f"{_LAYOUTS['dante']}); is the format another one?")
        if len(tops) != 1:
            raise CoreAffectError(f"{root}: expected one DANTE 'annotation' folder, found "
                                  f"{len(tops)}: {', '.join(sorted(map(str, tops)))}")
        top = tops.pop()
        return [(video, top) for video in ids]
    if format == "recola":
        entries = {}
        for folder in _dimension_folders(root):
            for dimension in sorted(p for p in folder.parent.iterdir()
                                    if p.is_dir() and p.name.lower() in ("arousal", "valence")):
                for path in sorted(dimension.iterdir()):
                    if path.suffix.lower() == ".csv" and path.is_file() and not _hidden(path.name):
                        # the reader finds the other dimension's file, or names it missing
                        entries.setdefault((path.stem, folder.parent), path)
        return [(video, path) for (video, _), path in sorted(entries.items())]
    return _flat_entries(flat or _flat_formats(root, videos, format), format, videos)


def discover(root: str | Path, format: str = "auto") -> list[Recording]:
    """Find the recordings of a dataset laid out as its public release ships it.

    Args:
        root: The dataset folder; hidden folders and files below it (names starting with ``.``)
            are skipped.
        format: One of :data:`~coreaffect.annotations.FORMATS`, or ``"auto"`` to tell it from
            the layout.

    Returns:
        The recordings, sorted by id.

    Raises:
        CoreAffectError: ``root`` is missing, holds no annotation of the format, an annotation has
            no video or several, or two recordings share an id.
    """
    root = Path(root)
    if not root.is_dir():
        raise CoreAffectError(f"{root}: no such dataset folder")
    videos = _index_videos(root)
    flat = None
    if format == "auto":
        format = _detect_layout(root)
        if format is None:
            flat = _flat_formats(root, videos)
            format = _one_format(root, flat, videos)
    elif format not in FORMATS:
        raise CoreAffectError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    entries = _annotation_entries(root, format, videos, flat)
    if not entries:
        raise CoreAffectError(f"{root}: no {format} annotation found")
    recordings, seen = [], {}
    for video_id, annotation in entries:
        video_id = name_key(video_id)  # ids in NFC, as a people file or a user types them
        if video_id in seen:
            raise CoreAffectError(f"{annotation}: a second annotation for video {video_id!r} "
                                  f"(the first: {seen[video_id]})")
        seen[video_id] = annotation
        if format == "afew-va":
            video = annotation.parent
        else:
            stems = [video_id]
            if format == "aff-wild2" and video_id.endswith(("_left", "_right")):
                stems.append(video_id.rsplit("_", 1)[0])
            index = videos
            if format == "dante" and name_key(video_id) not in videos:  # DANTE's <video> is the
                index = _underscored(videos)  # file's name with its dots as underscores: 30_3_mp4
            where = annotation / "*" / video_id if format == "dante" else annotation
            video = _match_video(index, stems, where)
        folder = video.is_dir()
        name = video.name if folder else video.stem
        shared = (format == "aff-wild2" and video_id.endswith(("_left", "_right"))
                  and name_key(name) != name_key(video_id))  # on <video> itself
        recordings.append(Recording(
            id=video_id, video=video, annotation=annotation, format=format,
            fps=folder_numbering(format)[0] if folder else None,
            first_index=folder_numbering(format)[1] if folder else 0,
            side=video_id.rsplit("_", 1)[1] if shared else None,
        ))
    recordings.sort(key=lambda r: r.id)
    used = {r.video for r in recordings}
    unlabelled = sorted(str(p) for paths in videos.values() for p in paths if p not in used)
    if unlabelled and format != "afew-va":
        logger.warning("%d video(s) under %s have no %s annotation and are left out: %s",
                       len(unlabelled), root, format, listing(unlabelled))
    logger.info("found %d %s recordings under %s", len(recordings), format, root)
    return recordings


def load_recording(recording: Recording, config: DataConfig = DataConfig(),
                   cache: CropCache | None = None) -> LabelledVideo:
    """Face crops of every frame of a recording, with labels resampled to the frame times.

    Args:
        recording: What to load.
        config: Data settings (face cropping, rater fusion, annotator delay; ``video.fps``, when
            set, is the rate of a frame folder, over the one its format implies).
        cache: Where crops are kept between calls, made with ``config.faces``; ``None`` crops
            afresh (streaming, but the crops of the whole video are then held in memory).

    Returns:
        The :class:`LabelledVideo`.

    Raises:
        CoreAffectError: The cache crops with other settings than ``config.faces``.
    """
    if cache is not None and cache.faces != config.faces:
        raise CoreAffectError(f"the crop cache {cache.directory} crops with other face settings "
                              "than the data settings given; make it with "
                              "coreaffect.crop_cache.CropCache(directory, config.faces)")
    recording = _with_rate(recording, config)
    annotations = _read_labels(recording, config)  # before the cropping: its errors come first
    if cache is not None:
        crops = cache.get(recording)
    else:
        cropper = FaceCropper(recording.faces(config.faces))
        crops = FaceCrops.concatenate(list(cropper.crop_video(
            recording.open_video(config.video.chunk_size))))
    _check_span(annotations, np.asarray(crops.times, np.float64), config.annotations.delay)
    labels = annotations.resample(crops.times, delay=config.annotations.delay)
    return LabelledVideo(recording.id, crops, labels.astype(np.float32))


def check_annotations(recordings: Iterable[Recording], config: DataConfig = DataConfig()
                      ) -> None:
    """Read every recording's annotation, so that a broken one is named before any cropping.

    :func:`load_recording` reads one recording's annotation before cropping its video; this
    reads all of them, as a training or an evaluation does before loading its videos (hours of
    cropping and training would otherwise come before the error of a test video's file).

    Raises:
        AnnotationError: One annotation cannot be read (its own error).
        CoreAffectError: Several cannot; each is named, up to ten.
    """
    failures = []
    for recording in recordings:
        try:
            _read_labels(_with_rate(recording, config), config)
        except CoreAffectError as err:
            failures.append(err)
    if len(failures) == 1:
        raise failures[0]
    if failures:
        shown = "\n  ".join(str(err) for err in failures[:10])
        more = f"\n  ... and {len(failures) - 10} more" if len(failures) > 10 else ""
        raise CoreAffectError(f"{len(failures)} annotations cannot be read:\n  {shown}{more}")


def _with_rate(recording: Recording, config: DataConfig) -> Recording:
    """The recording with ``config.video.fps`` and ``first_index``, when set, as the rate and
    the first number of its frame folder (the user's over the format's)."""
    if recording.fps is None:  # a video file
        return recording
    return recording._replace(
        fps=recording.fps if config.video.fps is None else config.video.fps,
        first_index=(recording.first_index if config.video.first_index is None
                     else config.video.first_index))


def check_numbering(recordings: Iterable[Recording], config: DataConfig = DataConfig()
                    ) -> None:
    """Warn, once for all, of frame folders read from 0 whose first image is numbered 1.

    ffmpeg numbers the images it extracts from 1 (``%05d.png``), and a format whose folders
    count from 0 (every one but Aff-Wild2) reads such a folder's frames one frame late against
    their labels. Nothing is said when ``config.video.first_index`` is set.
    """
    if config.video.first_index is not None:
        return
    for format, first in {(r.format, r.first_index) for r in recordings if r.fps is not None}:
        _check_numbering([r.video for r in recordings if r.fps is not None
                          and r.format == format], first, format)


def _check_numbering(folders: Sequence[Path], first: int, format: str | None) -> None:
    """The warning of :func:`check_numbering` for ``folders``, read from ``first``."""
    if first != 0:
        return
    late = []
    for folder in folders:
        try:
            numbers = numbered_images(folder)
        except CoreAffectError:
            continue  # opening the folder names what is wrong with it
        if numbers and min(numbers) == 1:
            late.append(folder)
    if late:
        message = (f"{len(late)} frame folder(s) number their first image 1 (e.g. {late[0]}), "
                   f"but {format or 'these'} frame folders are read from 0: if their images "
                   "count from 1, as ffmpeg's %05d.png does, set first_index = 1 in the [video] "
                   "section of the data configuration (predict: --first-index 1); read from 0, "
                   "every frame is one frame later than its labels")
        warn(logger, message)


def _read_labels(recording: Recording, config: DataConfig) -> Annotations:
    """The recording's annotation, read at its video's frame rate where the format counts
    frames (Aff-Wild2 and AFEW-VA)."""
    fps = recording.fps
    if fps is None and recording.format in ("aff-wild2", "afew-va"):
        with recording.open_video() as source:
            fps = source.fps
    return recording.read_annotations(config.annotations.fusion, fps=fps)


def _check_span(annotations: Annotations, frame_times: np.ndarray, delay: float = 0.0
                ) -> None:
    """Warn when an annotation holds no label, when no frame gets one through the annotation
    ``delay`` (frame t takes the label at t + delay), or when its labelled times and its video's
    length disagree by far.

    Times in another unit (milliseconds, frame numbers) or another video's annotation are read
    without error, as valid labels that no frame or every frame would then get wrongly; a span
    over 1.5 times the video's (plus a second) or under half of it is most often that. The
    labels' times are compared with the frames' after the delay.
    """
    labelled = annotations.times[np.isfinite(annotations.values).any(1)] - float(delay)
    problem = None
    if not len(labelled):
        problem = "it holds no label: the video is left out of every score"
    elif len(frame_times) and (labelled[-1] < frame_times[0] or labelled[0] > frame_times[-1]):
        problem = (f"no frame gets a label: with the annotation delay of {delay:g} s, its "
                   f"labels fall from {labelled[0]:g} s to {labelled[-1]:g} s, and the video "
                   f"runs from {frame_times[0]:g} s to {frame_times[-1]:g} s; is the delay in "
                   "seconds?")
    elif len(frame_times) > 1 and len(labelled) > 1:
        step = float(np.median(np.diff(frame_times)))
        video = float(frame_times[-1] - frame_times[0]) + step
        first, last = float(labelled[0]), float(labelled[-1])
        if last > 1.5 * (frame_times[-1] + step) + 1.0:
            problem = (f"its labels run to {last:g} s but the video lasts {video:.3g} s: are its "
                       "times in seconds (not milliseconds or frame numbers), and is it this "
                       "video's annotation?")
        elif last - first < 0.5 * video:
            problem = (f"its labels cover {first:g}-{last:g} s, under half of the video's "
                       f"{video:.3g} s; frames outside them have no label")
    if problem is not None:
        message = f"{annotations.path}: annotation of video {annotations.video!r}: {problem}"
        warn(logger, message)
