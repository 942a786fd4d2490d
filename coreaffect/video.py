"""Frames and timestamps from a video file, a folder of numbered images, or a camera, streamed.

A :class:`VideoSource` never holds a whole video in memory: iterating it yields one
:class:`Frame` at a time, and :meth:`VideoSource.chunks` yields :class:`FrameChunk` s of at most
``chunk_size`` frames, so memory is bounded by one chunk whatever the video's length. Images are
always ``uint8`` RGB of shape ``(H, W, 3)`` (OpenCV decodes BGR; the conversion is done once per
frame).

Sources:

* **Video file**: anything OpenCV's FFmpeg backend decodes (mp4, avi, mkv, ...). Frames are decoded
  sequentially from the start, never by seeking; ``index`` is 0 for the first (see Timestamps).
* **Folder of numbered images** (png, jpg, jpeg, bmp): frames are ordered by the integer in the file
  name (the last run of digits, so ``frame_2.png`` comes before ``frame_10.png``), and
  ``index = number - first_index``. Gaps in the numbering stay gaps in ``index`` (Aff-Wild2's
  cropped_aligned folders omit frames without a face and number from 1, so use
  ``first_index=1``; AFEW-VA numbers from ``00000.png``, the default ``first_index=0``; the
  images ffmpeg extracts, ``%05d.png``, count from 1: ``first_index = 1`` in the ``[video]``
  section of a data configuration, or ``predict --first-index 1``, and datasets warn of a
  folder read from 0 whose first image is 1).
  Hidden files, whose name starts with ``.`` (macOS's ``._00001.jpg`` resource forks,
  ``.DS_Store``), are never frames and are ignored, as are files of other types. A gap that is
  longer than a minute at the folder's rate, holds more missing frames than the folder has
  images *and* has at most five images on one side is an error naming them: they are stray
  images (say ``IMG_20240101.jpg`` beside ``00001.jpg`` to ``00075.jpg``) or numbers that are
  not frame numbers, and reading them would mean millions of missing frames. Other gaps are
  read as gaps (a long absence of the face between two stretches of frames, say).
* **Camera**: an integer device index, read until the device stops delivering frames.

Timestamps (seconds):

* Files: ``time = index / fps`` with ``fps`` from the container, and ``index`` the frame's own
  timestamp on that rate's grid, counted from the first frame (from the decoded count where the
  container gives no timestamp). A frame the container dropped, or one that cannot be decoded,
  is thus a gap in ``index``, as in a folder, and the frames after it keep their times (a
  warning names the gaps); undecodable first frames are no gap: the video starts at the first
  frame that decodes (a warning says where). A variable-frame-rate file (a phone's) gets its
  frames' times rounded to the nominal rate, the grid's empty slots are gaps, and a warning
  says so and by how much the times moved: convert such a file to a constant rate for exact
  times. When the container carries no usable rate (none, or the 1000 Hz of a Matroska or WebM
  time base), the rate its first frames' timestamps give is used, else the ``fps`` argument
  (else 25 Hz), and a warning says which.
* Folders: ``time = index / fps``, with ``fps`` from the argument, 25 Hz by default (the rate of
  AFEW-VA and the DANTE annotations; the corpus reader gives Aff-Wild2's frame folders 30 Hz,
  the rate of most of its videos).
* Cameras: seconds since the first frame of the iteration, from a monotonic clock. A read that
  gives no frame (a dropped frame) is tried again, 25 times in a row at most (about half a
  second when reads fail at once); one more ends the stream with a warning naming the camera.

Every iteration starts again from the first frame (files are re-opened), so a source can be
iterated any number of times and gives the same frames each time.

Damaged input: a truncated or partly corrupt file yields every frame that decodes (up to
25 undecodable frames in a row are passed over as gaps; more end the file), then emits a
:class:`UserWarning` (and a log record) naming the file, the index where decoding stopped and the
frame count the container announced. A path that does not exist, a file no frame can be decoded
from (for instance a text file renamed ``.mp4``), an empty folder, a folder whose numbering has a
gap too long for its images (see above), or an unreadable image in a folder raise
:class:`~coreaffect.errors.VideoError` naming the culprit.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from coreaffect.config import VideoConfig
from coreaffect.errors import InputError, VideoError, listing, warn

__all__ = ["DEFAULT_FPS", "IMAGE_SUFFIXES", "RATE_TOLERANCE", "RATE_WINDOW", "Frame", "FrameChunk",
           "VideoSource", "frame_rate", "is_frame_image", "numbered_images", "rates_agree"]

logger = logging.getLogger(__name__)

DEFAULT_FPS = 25.0  # the rate of AFEW-VA, MAHNOB and DANTE annotations
#: The image formats of frame folders, in any case.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
_DIGITS = re.compile(r"\d+")
# a camera read that gives no frame (a dropped frame) is tried again after a pause (seconds),
# this many times in a row at most; one more failed read ends the camera's stream
_CAMERA_RETRIES = 25
_CAMERA_PAUSE = 0.02
_LONG_GAP = 60.0  # seconds, faces' limit for a gap worth a warning; a longer one with more
# missing frames than the folder has images, beyond which or before which lie at most
_FEW_STRAYS = 5  # images, is refused (see VideoSource._check_gaps)
_LARGEST_NUMBER = 2**62  # frame numbers of images, and a first index, stay below: int64 holds them
_BAD_FRAMES = 25  # undecodable frames in a row after which a file is taken to have ended
#: Steps between decoded frames over which :func:`frame_rate` measures a rate.
RATE_WINDOW = 8
#: The factor by which a video's frame rate may differ from a run's training videos' (either
#: way) before the run warns that its clips span another time than it learned from.
RATE_TOLERANCE = 1.25


def frame_rate(times: Iterable[np.ndarray], indices: Iterable[np.ndarray]) -> float | None:
    """The frame rate of one or more videos in Hz, to 6 significant digits: the median (the
    lower of the two middle values, so a rate some window has), over every run of
    :data:`RATE_WINDOW` steps from one decoded frame to the next (fewer in a shorter video), of
    the frames it advances by the seconds it takes.

    A file's frames, at ``index / fps``, give ``fps`` whatever their gaps (a gap of missing
    frames advances the index as much as the time). Over runs of several steps, a camera's
    frames that reach the reader in small bursts (up to about four, a buffer read at once after
    a slow frame) count at the rate they were taken at, and over a few dozen frames one slow
    first read does not move the median.

    Args:
        times: Per video, ``(T_i,)`` frame times in seconds.
        indices: Per video, ``(T_i,)`` frame indices, increasing.

    Returns:
        The rate, or ``None`` when no video has two frames a positive time apart.

    Raises:
        InputError: A video's times and indices differ in length.
    """
    times, indices, rates = list(times), list(indices), []
    if len(times) != len(indices):
        raise InputError(f"times and indices must be given for as many videos, got "
                         f"{len(times)} and {len(indices)}")
    for t, i in zip(times, indices, strict=True):
        t, i = np.asarray(t, np.float64), np.asarray(i, np.float64)
        if t.shape != i.shape or t.ndim != 1:
            raise InputError(f"times and indices must be (T,) each, got {t.shape} and {i.shape}")
        steps = min(RATE_WINDOW, len(t) - 1)
        if steps < 1:
            continue
        seconds, frames = t[steps:] - t[:-steps], i[steps:] - i[:-steps]
        kept = seconds > 0
        rates.append(frames[kept] / seconds[kept])
    rates = np.concatenate(rates) if rates else np.zeros(0)
    # to 6 significant digits: times i / fps give fps back, not fps times 1 - 1e-15
    return float(f"{np.quantile(rates, 0.5, method='lower'):.6g}") if len(rates) else None


def rates_agree(a: float, b: float) -> bool:
    """Whether two frame rates lie within :data:`RATE_TOLERANCE` of each other, either way."""
    return 1 / RATE_TOLERANCE <= a / b <= RATE_TOLERANCE


def is_frame_image(path: Path) -> bool:
    """Whether a frame folder reads the file ``path`` as a frame: an image by its suffix
    (:data:`IMAGE_SUFFIXES`, any case), not hidden (macOS's ``._00001.jpg``, ``.DS_Store``)."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def numbered_images(folder: Path) -> dict[int, Path]:
    """A frame folder's images by their frame number (the last run of digits of the name).

    Raises:
        VideoError: An image without a number, with one too large, or with another's number.
    """
    numbered: dict[int, Path] = {}
    for path in Path(folder).iterdir():
        if not is_frame_image(path) or not path.is_file():
            continue
        digits = _DIGITS.findall(path.stem)
        if not digits:
            raise VideoError(path, "image in a frame folder has no frame number in its name")
        number = int(digits[-1])
        if number >= _LARGEST_NUMBER:
            raise VideoError(path, f"frame number {number} is too large (at most "
                             f"{_LARGEST_NUMBER - 1}); rename the images")
        if number in numbered:
            raise VideoError(path, f"frame number {number} also used by "
                             f"{numbered[number].name}")
        numbered[number] = path
    return numbered


class Frame(NamedTuple):
    """One decoded frame.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB image.
        time: Timestamp in seconds (see the module notes).
        index: Frame index in the source.
    """

    image: np.ndarray
    time: float
    index: int


class FrameChunk(NamedTuple):
    """Consecutive frames of a source, stacked.

    Attributes:
        images: ``(T, H, W, 3)`` uint8 RGB images.
        times: ``(T,)`` float64 timestamps in seconds.
        indices: ``(T,)`` int64 frame indices in the source (increasing; gaps possible for
            folders).
    """

    images: np.ndarray
    times: np.ndarray
    indices: np.ndarray


def _timestamp_rate(capture: cv2.VideoCapture, frames: int = 120) -> float | None:
    """The frame rate that the timestamps of a file's first ``frames`` frames give, from the
    opened ``capture`` past its first frame (which it reads on); ``None`` when they give none."""
    times = [capture.get(cv2.CAP_PROP_POS_MSEC)]
    for _ in range(frames - 1):
        ok, image = capture.read()
        if not ok or image is None:
            break
        times.append(capture.get(cv2.CAP_PROP_POS_MSEC))
    times = [t for t in times if math.isfinite(t)]
    if len(times) < 2 or not times[-1] > times[0]:
        return None
    return 1000.0 * (len(times) - 1) / (times[-1] - times[0])


class VideoSource:
    """A streamed source of RGB frames with timestamps.

    Args:
        source: A video file, a folder of numbered images, or a camera's integer device index.
        fps: Frame rate for sources that carry none: folders (default 25 Hz), and files whose
            container has no usable rate and whose timestamps give none (where they do, the
            rate of the first 120 frames' timestamps is used, with a warning). A file's own
            rate wins when it has one, unless ``file_fps`` is set.
        file_fps: For files, a rate that replaces the container's, with a warning where they
            differ: a raw ``.h264`` or ``.mjpeg`` stream has no rate, and FFmpeg guesses one.
            Frames keep their order and gaps; their times are ``index / file_fps``.
        chunk_size: Default number of frames per :meth:`chunks` chunk.
        first_index: For folders, the number of the first frame (0 for ``00000.png``, 1 for
            1-based numbering); ``index = number - first_index``. Ignored for files and cameras.

    Raises:
        VideoError: The path does not exist, the file is not a decodable video, the folder has
            no images, its images cannot be ordered or read, its numbering has a gap of more
            than a minute with more missing frames than images and a few images beyond it
            (stray images), or the camera cannot be opened.
        ValueError: ``fps`` is not positive or ``chunk_size`` is below 1.

    Example::

        with VideoSource("interview.mp4") as video:
            for chunk in video.chunks(64):
                process(chunk.images, chunk.times)  # (T, H, W, 3) uint8 RGB, (T,) seconds
    """

    def __init__(
        self,
        source: str | Path | int,
        *,
        fps: float | None = None,
        chunk_size: int = 64,
        first_index: int = 0,
        file_fps: float | None = None,
    ) -> None:
        for name, rate in (("fps", fps), ("file_fps", file_fps)):
            if rate is not None and not 0 < rate < math.inf:
                raise InputError(f"{name} must be a positive number, got {rate}")
        if chunk_size < 1:
            raise InputError(f"chunk_size must be >= 1, got {chunk_size}")
        if not 0 <= first_index < _LARGEST_NUMBER:
            raise InputError(f"first_index must be in [0, 2**62), got {first_index}")
        self.chunk_size = int(chunk_size)
        self.first_index = int(first_index)
        self._closed = False
        self._captures: list[cv2.VideoCapture] = []  # captures of iterations in progress
        self._files: list[tuple[int, Path]] = []  # (index, path) of a folder's images
        self._frame_count: int | None = None
        self._grid: float | None = None  # a file's own rate, on which its timestamps fall
        if isinstance(source, (int, np.integer)) and not isinstance(source, bool):
            self._source: Path | int = int(source)
            self._kind = "camera"
            self._name = f"camera{int(source)}"
            self._open_camera(fps)
            return
        path = Path(source)
        self._source = path
        if not path.exists():
            raise VideoError(path, "no such file or folder")
        if path.is_dir():
            self._kind = "folder"
            self._name = path.name
            self._open_folder(fps)
        else:
            self._kind = "file"
            self._name = path.stem
            self._open_file(fps, file_fps)

    @classmethod
    def from_config(
        cls, source: str | Path | int, config: VideoConfig, *, first_index: int = 0
    ) -> VideoSource:
        """Open ``source`` with the frame rate and chunk size of a
        :class:`~coreaffect.config.VideoConfig`.

        Args:
            source: A video file, a folder of numbered images, or a camera index.
            config: ``config.fps`` is the rate for sources without one, ``config.chunk_size``
                the default chunk size.
            first_index: Number of a folder's first frame (see the class).

        Returns:
            The opened source.
        """
        return cls(source, fps=config.fps, chunk_size=config.chunk_size, first_index=first_index)

    # -- properties ---------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The file's stem, the folder's name, or ``"camera<N>"``."""
        return self._name

    @property
    def kind(self) -> str:
        """``"file"``, ``"folder"`` or ``"camera"``."""
        return self._kind

    @property
    def source(self) -> Path | int:
        """The path or camera index this source reads."""
        return self._source

    @property
    def fps(self) -> float:
        """Frame rate in Hz used for timestamps."""
        return self._fps

    @property
    def frame_count(self) -> int | None:
        """Frames announced by the container (files) or images present (folders); ``None`` for
        cameras and containers that do not say. For folders with gaps, indices go beyond it."""
        return self._frame_count

    @property
    def size(self) -> tuple[int, int]:
        """Frame size as ``(width, height)`` in pixels."""
        return self._size

    def __repr__(self) -> str:
        width, height = self._size
        return (f"VideoSource({self._source!r}, kind={self._kind!r}, fps={self._fps:g}, "
                f"frame_count={self._frame_count}, size={width}x{height})")

    # -- opening ------------------------------------------------------------------------------

    def _open_file(self, fps: float | None, file_fps: float | None) -> None:
        path = self._source
        capture = cv2.VideoCapture(str(path))
        try:
            if not capture.isOpened():
                raise VideoError(path, "cannot be opened as a video (not a video file, an "
                                 "unsupported codec, or a file cut short before its index)")
            for _ in range(_BAD_FRAMES + 1):  # the first frames may be undecodable
                ok, image = capture.read()
                if ok and image is not None:
                    break
            else:
                raise VideoError(path, "no frame could be decoded (not a video, or empty)")
            count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
            rate = capture.get(cv2.CAP_PROP_FPS)
            # 1000 Hz is what Matroska and WebM files without a rate report (their time base)
            usable = math.isfinite(rate) and 0 < rate < 1000
            timed = None if usable or file_fps is not None else _timestamp_rate(capture)
        finally:
            capture.release()
        self._size = (int(image.shape[1]), int(image.shape[0]))
        self._frame_count = int(count) if math.isfinite(count) and count > 0 else None
        self._grid = float(rate) if usable else timed
        if file_fps is not None:
            self._fps = float(file_fps)
            if usable and not math.isclose(rate, file_fps, rel_tol=1e-3):
                message = (f"{path}: its container says {rate:g} Hz; timestamps use the "
                           f"{self._fps:g} Hz given")
                warn(logger, message)
        elif usable:
            self._fps = float(rate)
        elif timed is not None:
            self._fps = timed
            message = (f"{path}: its container's frame rate ({rate:g}) is not usable; its "
                       f"frames' timestamps give {timed:.6g} Hz, which is used")
            warn(logger, message)
        else:
            self._fps = float(fps) if fps is not None else DEFAULT_FPS
            message = (f"{path}: the container carries no usable frame rate ({rate}); "
                       f"timestamps use {self._fps:g} Hz")
            warn(logger, message)

    def _open_folder(self, fps: float | None) -> None:
        folder = self._source
        self._fps = float(fps) if fps is not None else DEFAULT_FPS
        numbered = numbered_images(folder)
        if not numbered:
            raise VideoError(folder, f"folder has no images ({', '.join(IMAGE_SUFFIXES)})")
        self._files = [(number - self.first_index, numbered[number]) for number in sorted(numbered)]
        self._check_gaps()
        steps = np.diff([number for number, _ in self._files])
        if len(steps) >= 2 and np.median(steps) > 1:
            message = (f"{folder}: its frame numbers step by {int(np.median(steps))} (median), "
                       "so each image stands for that many frames, the ones between without a "
                       "face. If the images are consecutive frames (their numbers timestamps, "
                       "or every Nth frame kept), number them 0, 1, 2, ... and give their rate "
                       "(--fps)")
            warn(logger, message)
        first_index, first_path = self._files[0]
        if first_index < 0:
            raise VideoError(first_path, f"frame number {first_index + self.first_index} is below "
                             f"first_index={self.first_index}")
        image = self._read_image(first_path)
        self._size = (int(image.shape[1]), int(image.shape[0]))
        self._frame_count = len(self._files)

    def _check_gaps(self) -> None:
        """Refuse a folder whose numbering has a gap no real video has, before any frame is read.

        A gap is refused when it is longer than ``_LONG_GAP`` seconds at the folder's rate,
        holds more missing frames than the folder has images, and has at most ``_FEW_STRAYS``
        images on one side (more are real frames, around a long absence of the face): readers
        of the folder (the face cropper, label alignment) give every missing frame a row, so one
        stray image numbered ``20240101`` beside ``00001.jpg`` to ``00075.jpg`` would make 20
        million rows. The widest gap is checked, and reported with the images on its side that
        has fewer of them.

        Raises:
            VideoError: Such a gap exists; the message names the folder, the images on both
                edges of the gap and the likely strays.
        """
        numbers = np.array([index for index, _ in self._files], dtype=np.int64)  # (N,)
        if len(numbers) < 2:
            return
        missing = np.diff(numbers) - 1  # (N-1,) frames missing between consecutive images
        cut = int(np.argmax(missing))  # the widest gap is between images cut and cut + 1
        widest = int(missing[cut])
        if widest <= _LONG_GAP * self._fps or widest <= len(numbers):
            return
        before, after = self._files[: cut + 1], self._files[cut + 1:]
        side, strays = ("before", before) if len(before) < len(after) else ("after", after)
        if len(strays) > _FEW_STRAYS:  # real stretches on both sides (a long absence of the
            return  # face, as Aff-Wild2's folders leave out): a gap, which faces warn about
        names = listing((path.name for _, path in strays), 3)
        if len(strays) == 1:
            culprits = (f"{names}, the only image {side} the gap, is probably not a frame of this "
                        "video (a stray image, or a number in its name that is not its frame "
                        "number): move it out of the folder or rename it to its frame number")
        else:
            culprits = (f"the {len(strays)} images {side} the gap ({names}) are probably not "
                        "frames of this video (stray images, or numbers in their names that are "
                        "not frame numbers): move them out of the folder or rename them to their "
                        "frame numbers")
        low_path, high_path = before[-1][1], after[0][1]
        offset = self.first_index
        raise VideoError(
            self._source,
            f"its frame numbers jump from {numbers[cut] + offset} ({low_path.name}) to "
            f"{numbers[cut + 1] + offset} ({high_path.name}): the {widest} frames between "
            f"({widest / self._fps:.0f} s at {self._fps:g} Hz) would be read as missing, more "
            f"than the {len(numbers)} images in the folder and longer than {_LONG_GAP:g} s; "
            f"{culprits}")

    def _open_camera(self, fps: float | None) -> None:
        capture = self._camera_capture()
        try:
            width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
            height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
            rate = capture.get(cv2.CAP_PROP_FPS)
        finally:
            capture.release()
        self._size = (width, height)
        if math.isfinite(rate) and rate > 0:
            self._fps = float(rate)
        else:
            self._fps = float(fps) if fps is not None else DEFAULT_FPS

    def _camera_capture(self) -> cv2.VideoCapture:
        capture = cv2.VideoCapture(self._source)
        if not capture.isOpened():
            capture.release()
            raise VideoError(self._source, "camera cannot be opened")
        return capture

    def _read_image(self, path: Path) -> np.ndarray:
        """Read one folder image as BGR ``(H, W, 3)`` uint8."""
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise VideoError(path, "image cannot be read (corrupt or not an image)")
        return image

    # -- reading ------------------------------------------------------------------------------

    def _bgr_frames(self) -> Iterator[tuple[np.ndarray, float, int]]:
        """Yield ``(bgr_image, time, index)``; ``bgr_image`` is ``(H, W, 3)`` uint8 BGR."""
        if self._closed:
            raise VideoError(self._source, "source is closed")
        if self._kind == "folder":
            yield from self._folder_frames()
        elif self._kind == "file":
            yield from self._file_frames()
        else:
            yield from self._camera_frames()

    def _folder_frames(self) -> Iterator[tuple[np.ndarray, float, int]]:
        width, height = self._size
        for index, path in self._files:
            image = self._read_image(path)
            if image.shape[:2] != (height, width):
                raise VideoError(path, f"image is {image.shape[1]}x{image.shape[0]}, but the "
                                 f"folder's first image is {width}x{height}")
            yield image, index / self._fps, index

    def _file_frames(self) -> Iterator[tuple[np.ndarray, float, int]]:
        capture = cv2.VideoCapture(str(self._source))
        if not capture.isOpened():
            raise VideoError(self._source, "cannot be opened as a video any more")
        self._captures.append(capture)
        previous, failures, origin, missing = -1, 0, None, []
        early, off, start = 0, 0.0, 0  # frames faster than the grid, the largest rounding (s)
        # reads before the current run of failures: the container's frames gone through, which
        # its frame count bounds (indices on the timestamps' grid run ahead of it after a gap)
        consumed = 0
        try:
            while True:
                ok, image = capture.read()
                if not ok or image is None:  # the end, or a frame that cannot be decoded
                    failures += 1
                    if failures > _BAD_FRAMES or (self._frame_count is not None
                                                  and consumed + failures > self._frame_count):
                        break
                    continue
                consumed += failures + 1
                index = previous + 1 + failures  # by count: each failed read was a frame
                milliseconds = capture.get(cv2.CAP_PROP_POS_MSEC)  # the frame's own timestamp
                if math.isfinite(milliseconds):
                    grid = self._grid or self._fps  # the rate the timestamps fall on
                    if origin is None:  # the first frame's time is 0, whatever the container's
                        origin = milliseconds - index * 1000.0 / grid
                    timed = round((milliseconds - origin) * grid / 1000.0)
                    if timed > previous:  # a frame the container dropped is a gap
                        index = timed
                    elif previous >= 0:  # faster than the grid: a variable frame rate
                        early += 1
                    off = max(off, abs(index / grid - (milliseconds - origin) / 1000.0))
                if previous >= 0:
                    missing += range(previous + 1, index)
                else:  # undecodable first frames are not rows: the video starts later
                    start = index
                yield image, index / self._fps, index
                previous, failures = index, 0
        finally:
            capture.release()
            if capture in self._captures:
                self._captures.remove(capture)
        if self._closed:  # closed while iterating: the stop is not the file's fault
            return
        if previous < 0:
            raise VideoError(self._source, "no frame could be decoded")
        if start:
            message = (f"{self._source}: its first {start} frame(s) could not be decoded; the "
                       f"video starts at frame index {start}, {start / self._fps:g} s")
            warn(logger, message)
        shown = listing(missing)
        if early:
            grid = self._grid or self._fps
            message = (f"{self._source}: a variable frame rate: {early} frame(s) came faster "
                       f"than its nominal {grid:g} Hz, and {len(missing)} slot(s) of that grid "
                       f"had no frame (index {shown}); times are rounded to the grid (by up to "
                       f"{off:.3g} s) and the empty slots are read as frames without a face. "
                       f"For exact times, convert it to a constant rate first (for example "
                       f"ffmpeg -i IN -vsync cfr -r {grid:g} OUT)")
            warn(logger, message)
        elif missing:
            message = (f"{self._source}: {len(missing)} frame(s) could not be decoded or were "
                       f"dropped by the container (index {shown}); they are read as frames "
                       "without a face")
            warn(logger, message)
        # short of the count by index and by reads alike: a container may count the slots of
        # frames it dropped or only the frames it holds, so a file that both has a gap and is
        # cut short may pass unnoticed; warning on either would be wrong for the other kind
        if self._frame_count is not None and max(previous + 1, consumed) < self._frame_count:
            message = (f"{self._source}: decoding stopped at frame index {previous + 1}, but "
                       f"the container announces {self._frame_count} frames (truncated or "
                       f"corrupt file); {previous + 1 - start - len(missing)} frames were read")
            warn(logger, message)

    def _camera_frames(self) -> Iterator[tuple[np.ndarray, float, int]]:
        capture = self._camera_capture()
        self._captures.append(capture)
        index = 0
        start = None
        try:
            failed = 0  # reads in a row that gave no frame
            while not self._closed:
                ok, image = capture.read()
                now = time.monotonic()
                if not ok or image is None:
                    failed += 1
                    if failed <= _CAMERA_RETRIES:  # a dropped frame (USB, a busy driver)
                        time.sleep(_CAMERA_PAUSE)
                        continue
                    if self._closed:  # closed meanwhile: the stop is not the camera's fault
                        break
                    message = (f"{self._name}: no frame in {failed} reads in a row (unplugged, "
                               f"or taken by another program); the stream ends after {index} "
                               "frames")
                    warn(logger, message)
                    break
                failed = 0
                start = now if start is None else start
                yield image, now - start, index
                index += 1
        finally:
            capture.release()
            if capture in self._captures:
                self._captures.remove(capture)

    def __iter__(self) -> Iterator[Frame]:
        """Yield every frame from the start, as :class:`Frame` with an ``(H, W, 3)`` RGB image."""
        for image, when, index in self._bgr_frames():
            yield Frame(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), when, index)

    def chunks(self, size: int | None = None) -> Iterator[FrameChunk]:
        """Yield the frames from the start in chunks of ``size`` (the last may be shorter).

        A chunk also ends early where the frame size changes (a camera or a stream may switch
        resolution): the frames after it start a new chunk at their own size.

        Args:
            size: Frames per chunk; defaults to the source's ``chunk_size``.

        Yields:
            :class:`FrameChunk` with ``images`` ``(T, H, W, 3)`` uint8 RGB, ``T <= size``. Each
            chunk is a new array, so a consumer may keep it.
        """
        size = self.chunk_size if size is None else int(size)
        if size < 1:
            raise InputError(f"chunk size must be >= 1, got {size}")
        width, height = self._size
        images = times = indices = None
        filled = 0
        for image, when, index in self._bgr_frames():
            if images is not None and image.shape[:2] != (height, width):  # the size changed
                yield FrameChunk(images[:filled], times[:filled], indices[:filled])
                images = times = indices = None
                filled = 0
            if images is None:
                if image.shape[:2] != (height, width):  # cameras may deliver another size
                    height, width = image.shape[:2]
                images = np.empty((size, height, width, 3), dtype=np.uint8)  # (T, H, W, 3)
                times = np.empty(size, dtype=np.float64)
                indices = np.empty(size, dtype=np.int64)
            cv2.cvtColor(image, cv2.COLOR_BGR2RGB, dst=images[filled])
            times[filled] = when
            indices[filled] = index
            filled += 1
            if filled == size:
                yield FrameChunk(images, times, indices)
                images = times = indices = None
                filled = 0
        if filled:
            yield FrameChunk(images[:filled], times[:filled], indices[:filled])

    # -- resources ----------------------------------------------------------------------------

    def close(self) -> None:
        """Release open decoders; iterating afterwards raises
        :class:`~coreaffect.errors.VideoError`."""
        self._closed = True
        for capture in self._captures:
            capture.release()
        self._captures.clear()

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
