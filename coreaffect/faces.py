"""One face per frame: detect, track and crop, with a ``face_found`` flag instead of exceptions.

A :class:`FaceCropper` turns each :class:`~coreaffect.video.FrameChunk` into :class:`FaceCrops`:
``(T, S, S, 3)`` uint8 RGB crops (``S = FaceConfig.crop_size``), their crop regions, a
``face_found`` flag, and the frames' times and indices. **Every input frame gives exactly one output
row**, in order: no frame is dropped or duplicated, and a frame without a face is a row flagged
``face_found=False``, never an exception.

Detectors (``FaceConfig.detector``):

* ``"haar"`` (default): OpenCV's shipped frontal-face cascade on a grayscale frame downscaled to
  at most ``detection_width`` pixels wide and equalised (contrast-limited histogram equalisation
  over the whole frame). The cascade's smallest window is 24 pixels at detection scale, so faces
  narrower than ``24 * frame_width / detection_width`` pixels are not found: raise
  ``detection_width`` for small faces.
* ``"yunet"``: ``cv2.FaceDetectorYN`` with the ONNX model the user supplies in
  ``FaceConfig.yunet_model`` (nothing is downloaded), on the same downscaled frame.
* ``"none"``: each frame already is a face crop (as Aff-Wild2's cropped_aligned frames); the crop is
  the frame's centred square, resized, and ``face_found`` is always True. ``margin`` is not used.

Tracking. The detector runs on every ``detect_every``-th frame (counted from
:meth:`FaceCropper.reset`); frames in between keep the last detection ("hold" tracking: no
per-frame image search, which keeps the data path fast). The crop follows the detection through
exponential smoothing of the face centre and side,
``state = smoothing * state + (1 - smoothing) * detection`` on every frame, so crops do not jitter
with the detector and converge to a still face within a few frames. A newly acquired subject is
taken at once, without smoothing from an earlier one. Tracking state carries over from one chunk to
the next, so cropping a video in chunks gives exactly the result of one long chunk.

Subject rule (one face per video). With no subject tracked, the largest of the confident
detections becomes the subject; a detection is confident when its confidence (Haar: the number of
raw cascade hits merged into it; YuNet: its score) is at least half the best one's, so that a weak
false hit in background clutter is not taken for a face. While a subject is tracked, only
detections near it count: centre within one face side of the tracked centre and side within a
factor 1.5 of the tracked side; among those, the nearest is taken. Other faces are ignored, so the
subject does not switch to a bystander, even a larger one (and the Haar detector searches only
the subject's neighbourhood, which is what makes re-detection cheap). A subject that is not
re-detected is held for ``hold_frames`` frames; after that the track is dropped and the next
detection anywhere in the frame starts a new subject by the rule above. Detections smaller than
``min_face`` times the frame's shorter side are rejected, and with ``FaceConfig.side`` those
centred in the other half of the frame.

``face_found`` is True on a frame whose latest detection (on that frame or on the last detection
frame before it) found the subject, so a face that vanishes is flagged within ``detect_every - 1``
frames. When it is False:

* within ``hold_frames`` frames of the last detection, the crop is taken at the held box;
* after that, the crop is still taken at the last box (so the crop does not jump), and the track is
  dropped as above;
* before any face was ever found, the crop is the frame's centred square (side = the shorter frame
  side) and ``boxes`` is NaN.

Missing frames. A frame folder whose numbering skips frames (Aff-Wild2's cropped_aligned folders
leave out the frames without a face) gets, from :meth:`FaceCropper.crop_video`, a row for every
number missing between its first frame and its last: a black crop, NaN box, ``face_found=False``,
and a time interpolated between its neighbours (a gap of over a minute is logged as a warning: a
stray file with a far-off number adds as many rows as it skips). The rows then follow the video's
frame grid, so that a 16-frame window or a dense sequence is always 16 consecutive frames, never
two stretches joined across a gap.

Crop geometry. A detected face of side ``f`` centred at ``(cx, cy)`` gives the square crop region
of side ``f * (1 + 2 * margin)`` centred on the same point, rounded to whole pixels; ``boxes`` holds
that region as ``(x, y, side, side)`` in frame pixels. Parts of the region outside the frame are
padded with black, so the face stays centred in the crop even at the frame's border. The region is
resized to ``S x S`` with ``cv2.INTER_AREA``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from coreaffect.config import FaceConfig
from coreaffect.errors import CoreAffectError, InputError, warn
from coreaffect.video import FrameChunk, VideoSource

__all__ = ["FaceCropper", "FaceCrops", "spool_crops"]

logger = logging.getLogger(__name__)

_HAAR_FILE = "haarcascade_frontalface_default.xml"
_HAAR_SCALE_STEP = 1.1  # scale pyramid step: 1.2 is faster but misses faces between its scales
_HAAR_NEIGHBOURS = 5  # overlapping hits needed: fewer gives false faces in background clutter
_HAAR_TRACK_NEIGHBOURS = 3  # near a tracked face a false hit is unlikely: fewer missed faces
_CLAHE_CLIP = 4.0  # contrast limit of the histogram equalisation before Haar detection
_HAAR_MIN_WINDOW = 24  # the cascade's own window size; smaller faces cannot be detected
_YUNET_SCORE = 0.6  # YuNet's usual confidence threshold
_GATE_DISTANCE = 1.0  # a detection continues the subject if its centre is within 1 face side ...
_GATE_SIZE = 1.5  # ... and its side within this factor of the subject's side
_CONFIDENT = 0.5  # a new subject is chosen among detections at least this fraction as confident
#                   as the best one: weak false hits in clutter are not taken for a large face


class FaceCrops(NamedTuple):
    """Face crops of consecutive frames, one row per input frame.

    Attributes:
        crops: ``(T, S, S, 3)`` uint8 RGB crops.
        boxes: ``(T, 4)`` float32 crop regions ``(x, y, side, side)`` in frame pixels; NaN on
            frames before any face was found.
        face_found: ``(T,)`` bool, whether the subject was found (see the module notes).
        times: ``(T,)`` float64 frame times in seconds.
        indices: ``(T,)`` int64 frame indices in the source.
    """

    crops: np.ndarray
    boxes: np.ndarray
    face_found: np.ndarray
    times: np.ndarray
    indices: np.ndarray

    @staticmethod
    def concatenate(parts: Sequence[FaceCrops]) -> FaceCrops:
        """Join consecutive :class:`FaceCrops` along time.

        Args:
            parts: At least one :class:`FaceCrops`, all with the same crop size.

        Returns:
            One :class:`FaceCrops` whose ``T`` is the sum of the parts'.

        Raises:
            InputError: ``parts`` is empty.
        """
        if not parts:
            raise InputError("FaceCrops.concatenate needs at least one part")
        return FaceCrops(*(np.concatenate(field) for field in zip(*parts, strict=True)))


_LONG_GAP = 60.0  # seconds: a longer hole in a frame folder's numbering is worth a warning


def _with_missing_frames(part: FaceCrops, last: tuple[int, float] | None, block: int,
                         name: str = "") -> Iterator[FaceCrops]:
    """``part`` in pieces, with placeholder rows for the frame indices it skips (after ``last``,
    the index and time of the previous row, and between its own rows), at most ``block`` rows
    of placeholders at a time; see the module notes. ``name`` names the video in a warning
    about a gap longer than a minute."""
    indices, times = part.indices, part.times
    before = np.concatenate([[indices[0] - 1 if last is None else last[0]], indices[:-1]])
    start = 0
    for cut in [*np.flatnonzero(indices - before > 1).tolist(), len(indices)]:
        if cut > start:
            yield FaceCrops(*(field[start:cut] for field in part))
        if cut == len(indices):
            return
        low, low_time = (int(indices[cut - 1]), float(times[cut - 1])) if cut else last
        high, high_time = int(indices[cut]), float(times[cut])
        if high_time - low_time > _LONG_GAP:
            warn(logger, f"{name}: frames {low + 1} to {high - 1} ({low_time:.1f} s to "
                 f"{high_time:.1f} s) are missing; their rows have no face")
        for first in range(low + 1, high, block):
            numbers = np.arange(first, min(first + block, high), dtype=np.int64)  # (n,)
            size = part.crops.shape[1:]
            yield FaceCrops(np.zeros((len(numbers), *size), dtype=np.uint8),
                            np.full((len(numbers), 4), np.nan, dtype=np.float32),
                            np.zeros(len(numbers), dtype=bool),
                            low_time + (numbers - low) * (high_time - low_time) / (high - low),
                            numbers)
        start = cut


def _downscale_factor(width: int, detection_width: int) -> float:
    """Factor (<= 1) that brings a frame ``width`` pixels wide down to ``detection_width``."""
    return min(1.0, detection_width / width) if detection_width > 0 else 1.0


def _no_faces() -> tuple[np.ndarray, np.ndarray]:
    """An empty detection: ``(0, 4)`` boxes and ``(0,)`` confidences."""
    return np.empty((0, 4)), np.empty(0)


class _HaarDetector:
    """OpenCV's frontal-face Haar cascade; one instance (and cascade) per cropper.

    The grayscale frame is contrast-normalised by global contrast-limited histogram equalisation
    (CLAHE over a single tile): plain equalisation lets a large flat background take most of the
    grey range and crushes the face's contrast.
    """

    def __init__(self, config: FaceConfig) -> None:
        path = cv2.data.haarcascades + _HAAR_FILE
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise CoreAffectError(f"{path}: OpenCV's Haar face cascade cannot be loaded")
        self._equalise = cv2.createCLAHE(clipLimit=_CLAHE_CLIP, tileGridSize=(1, 1))
        self._width = config.detection_width

    def detect(
        self, image: np.ndarray, min_side: float, near: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Find faces in an ``(H, W, 3)`` RGB frame.

        Args:
            image: ``(H, W, 3)`` uint8 RGB frame.
            min_side: Smallest face side in frame pixels.
            near: Optional tracked face ``(cx, cy, side)``: only its neighbourhood is searched,
                at sizes within the gating factor (other faces would be gated out anyway).

        Returns:
            ``(N, 4)`` float64 boxes ``(x, y, w, h)`` in frame pixels, and ``(N,)`` confidences
            (the number of overlapping raw cascade hits merged into each box).
        """
        height, width = image.shape[:2]
        scale = _downscale_factor(width, self._width)
        x0, y0, x1, y1 = 0, 0, width, height
        low, high = min_side, None
        neighbours = _HAAR_NEIGHBOURS
        if near is not None:
            neighbours = _HAAR_TRACK_NEIGHBOURS
            cx, cy, side = near
            reach = (_GATE_DISTANCE + _GATE_SIZE / 2) * side
            x0, y0 = max(0, int(cx - reach)), max(0, int(cy - reach))
            x1, y1 = min(width, int(cx + reach) + 1), min(height, int(cy + reach) + 1)
            low, high = max(low, side / _GATE_SIZE), side * _GATE_SIZE
        gray = cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY)
        if scale < 1.0:
            size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
            gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        minimum = max(_HAAR_MIN_WINDOW, int(low * scale))
        maximum = int(high * scale) + 1 if high is not None else 0
        if minimum > min(gray.shape) or (maximum and maximum < minimum):
            return _no_faces()
        found, hits = self._cascade.detectMultiScale2(
            self._equalise.apply(gray), scaleFactor=_HAAR_SCALE_STEP, minNeighbors=neighbours,
            minSize=(minimum, minimum), maxSize=(maximum, maximum))
        if len(found) == 0:
            return _no_faces()
        boxes = np.asarray(found, dtype=np.float64) / scale + (x0, y0, 0.0, 0.0)
        return boxes, np.asarray(hits, dtype=np.float64)


class _YuNetDetector:
    """``cv2.FaceDetectorYN`` with a user-supplied YuNet ONNX model."""

    def __init__(self, config: FaceConfig) -> None:
        model = Path(str(config.yunet_model)).expanduser()
        if not model.is_file():
            shown = model if model.is_absolute() else f"{model} (from {Path.cwd()})"
            if model.is_dir():
                raise CoreAffectError(f"{shown}: a folder, not a YuNet model file "
                                      "(faces.yunet_model); give the .onnx file in it")
            raise CoreAffectError(f"{shown}: YuNet model file not found (faces.yunet_model); "
                                  "supply face_detection_yunet_2023mar.onnx from the OpenCV "
                                  "model zoo, or use detector='haar' (a run moved from another "
                                  "machine also finds it in its own folder, by its file name)")
        try:
            self._net = cv2.FaceDetectorYN.create(str(model), "", (320, 320), _YUNET_SCORE)
        except cv2.error as err:
            raise CoreAffectError(f"{model}: not a valid YuNet ONNX model "
                                  f"({str(err).strip().splitlines()[-1]})") from None
        self._width = config.detection_width

    def detect(
        self, image: np.ndarray, min_side: float, near: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Find faces in an ``(H, W, 3)`` RGB frame.

        The whole (downscaled) frame is searched; ``min_side`` and ``near`` are applied by the
        caller.

        Returns:
            ``(N, 4)`` float64 boxes ``(x, y, w, h)`` in frame pixels, and ``(N,)`` scores.
        """
        height, width = image.shape[:2]
        scale = _downscale_factor(width, self._width)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = cv2.resize(image, size, interpolation=cv2.INTER_AREA) if scale < 1.0 else image
        self._net.setInputSize(size)
        _, faces = self._net.detect(cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
        if faces is None or len(faces) == 0:
            return _no_faces()
        faces = np.asarray(faces, dtype=np.float64)  # (N, 15): box, 5 landmarks, score
        return faces[:, :4] / scale, faces[:, -1]


class FaceCropper:
    """Detects, tracks and crops one face per frame (see the module notes for the rules).

    Args:
        config: Detector, tracking and crop settings.

    Raises:
        CoreAffectError: The detector cannot be built (for ``"yunet"``: the model file is missing
            or invalid).

    Example::

        cropper = FaceCropper(FaceConfig(crop_size=112))
        for part in cropper.crop_video("interview.mp4"):
            part.crops       # (T, 112, 112, 3) uint8 RGB
            part.face_found  # (T,) bool
    """

    def __init__(self, config: FaceConfig = FaceConfig()) -> None:  # noqa: B008 - frozen
        self.config = config
        if config.detector == "haar":
            self._detector: _HaarDetector | _YuNetDetector | None = _HaarDetector(config)
        elif config.detector == "yunet":
            self._detector = _YuNetDetector(config)
        else:
            self._detector = None
        self.reset()

    def reset(self) -> None:
        """Forget the tracked subject and the frame count (call between videos)."""
        self._count = 0  # frames seen since reset; detection runs when count % detect_every == 0
        self._frame_shape: tuple[int, ...] | None = None
        self._target: np.ndarray | None = None  # last detection of the subject (cx, cy, side)
        self._state: np.ndarray | None = None  # smoothed (cx, cy, side) the crop is cut at
        self._tracking = False  # a subject is tracked (found, or missed for <= hold_frames)
        self._found = False  # the latest detection found the subject
        self._missed = 0  # frames since the subject was last found

    def crop(self, chunk: FrameChunk) -> FaceCrops:
        """Crop the face in every frame of a chunk, continuing the track from the previous chunk.

        Args:
            chunk: ``images`` ``(T, H, W, 3)`` uint8 RGB, ``times`` ``(T,)``, ``indices`` ``(T,)``.

        Returns:
            :class:`FaceCrops` with one row per frame, ``crops`` ``(T, S, S, 3)``.
        """
        images = np.asarray(chunk.images)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise InputError(f"chunk images must be (T, H, W, 3) uint8 RGB, got {images.shape} "
                             f"{images.dtype}")
        count = images.shape[0]
        size = self.config.crop_size
        crops = np.empty((count, size, size, 3), dtype=np.uint8)  # (T, S, S, 3)
        boxes = np.full((count, 4), np.nan, dtype=np.float32)  # (T, 4)
        found = np.zeros(count, dtype=bool)  # (T,)
        if images.shape[1:] != self._frame_shape:
            if self._frame_shape is not None:
                logger.info("frame size changed from %s to %s: the face is sought afresh",
                            self._frame_shape[:2], images.shape[1:3])
                self.reset()
            self._frame_shape = images.shape[1:]
        for t in range(count):
            image = images[t]  # (H, W, 3)
            if self._detector is None:
                found[t] = True
                box = None
            else:
                found[t] = self._step(image)
                box = self._state
            boxes[t] = self._cut(image, box, crops[t])
        return FaceCrops(crops, boxes, found, np.asarray(chunk.times, dtype=np.float64).copy(),
                         np.asarray(chunk.indices, dtype=np.int64).copy())

    def crop_video(
        self,
        source: VideoSource | str | Path | int,
        *,
        chunk_size: int | None = None,
        fps: float | None = None,
        first_index: int = 0,
    ) -> Iterator[FaceCrops]:
        """Reset the track and crop a whole video, streamed chunk by chunk.

        Args:
            source: An open :class:`~coreaffect.video.VideoSource`, or what opens one (a file,
                frame folder or camera index; it is closed at the end).
            chunk_size: Frames per chunk; defaults to the source's ``chunk_size``.
            fps: Frame rate for a folder opened here (see :class:`~coreaffect.video.VideoSource`).
            first_index: Number of a folder's first frame, for a folder opened here.

        Yields:
            :class:`FaceCrops`, one or more per chunk (a row per frame, missing frames of a
            folder included: see the module notes); :meth:`FaceCrops.concatenate` joins them.
        """
        own = not isinstance(source, VideoSource)
        video = VideoSource(source, fps=fps, first_index=first_index) if own else source
        self.reset()
        frames = with_face = 0
        last: tuple[int, float] | None = None  # index and time of the last row yielded
        block = video.chunk_size if chunk_size is None else chunk_size
        try:
            for chunk in video.chunks(chunk_size):
                for part in _with_missing_frames(self.crop(chunk), last, block, video.name):
                    frames += len(part.face_found)
                    with_face += int(part.face_found.sum())
                    yield part
                last = int(chunk.indices[-1]), float(chunk.times[-1])
        finally:
            if own:
                video.close()
        logger.info("%s: face found in %d of %d frames", video.name, with_face, frames)

    # -- tracking -----------------------------------------------------------------------------

    def _step(self, image: np.ndarray) -> bool:
        """Advance the track by one ``(H, W, 3)`` frame; returns its ``face_found`` flag."""
        config = self.config
        if self._count % config.detect_every == 0:
            self._detect(image)
        self._count += 1
        if self._found:
            self._missed = 0
        else:
            self._missed += 1
            if self._missed > config.hold_frames:
                self._tracking = False
        if self._tracking and self._target is not None:
            a = config.smoothing
            self._state = a * self._state + (1.0 - a) * self._target
        return self._found

    def _detect(self, image: np.ndarray) -> None:
        """Run the detector and update the subject by the subject rule."""
        height, width = image.shape[:2]
        min_side = self.config.min_face * min(height, width)
        near = self._target if self._tracking else None
        boxes, scores = self._detector.detect(image, min_side, near)  # (N, 4) x, y, w, h; (N,)
        faces = np.empty((len(boxes), 3))  # (N, 3) cx, cy, side
        faces[:, 0] = boxes[:, 0] + boxes[:, 2] / 2
        faces[:, 1] = boxes[:, 1] + boxes[:, 3] / 2
        faces[:, 2] = boxes[:, 2:].max(axis=1)
        keep = faces[:, 2] >= min_side
        if self.config.side is not None:  # only the person on that side of the frame
            keep &= (faces[:, 0] < width / 2) == (self.config.side == "left")
        faces, scores = faces[keep], scores[keep]
        if near is not None:
            distance = np.hypot(faces[:, 0] - near[0], faces[:, 1] - near[1])
            ratio = faces[:, 2] / near[2]
            gated = ((distance <= _GATE_DISTANCE * near[2])
                     & (ratio <= _GATE_SIZE) & (ratio >= 1 / _GATE_SIZE))
            choice = np.flatnonzero(gated)
            choice = choice[np.argmin(distance[choice])] if len(choice) else None
        elif len(faces):  # the largest of the confident detections
            sides = np.where(scores >= _CONFIDENT * scores.max(), faces[:, 2], -np.inf)
            choice = int(np.argmax(sides))
        else:
            choice = None
        self._found = choice is not None
        if choice is None:
            return
        self._target = faces[choice].copy()
        if not self._tracking:  # a new subject: take it at once, not smoothed from an old one
            self._state = self._target.copy()
            self._tracking = True

    # -- cropping -----------------------------------------------------------------------------

    def _cut(self, image: np.ndarray, face: np.ndarray | None, out: np.ndarray) -> np.ndarray:
        """Write the crop of an ``(H, W, 3)`` frame into ``out`` ``(S, S, 3)``.

        Args:
            image: ``(H, W, 3)`` uint8 RGB frame.
            face: Face ``(cx, cy, side)`` to crop around, or ``None`` for the frame's centred
                square (no margin; also the ``"none"`` detector's crop).
            out: ``(S, S, 3)`` uint8 destination.

        Returns:
            The crop region ``(x, y, side, side)`` in frame pixels, NaN for ``face=None`` with a
            detector (no box at all).
        """
        height, width = image.shape[:2]
        if face is None:
            side = min(height, width)
            x0, y0 = (width - side) // 2, (height - side) // 2
            region = image[y0:y0 + side, x0:x0 + side]
            cv2.resize(region, out.shape[1::-1], dst=out, interpolation=cv2.INTER_AREA)
            if self._detector is None:
                return np.array([x0, y0, side, side], dtype=np.float32)
            return np.full(4, np.nan, dtype=np.float32)
        cx, cy, face_side = face
        side = max(1, round(face_side * (1.0 + 2.0 * self.config.margin)))
        x0, y0 = round(cx - side / 2), round(cy - side / 2)
        x1, y1 = x0 + side, y0 + side
        if x0 >= 0 and y0 >= 0 and x1 <= width and y1 <= height:
            region = image[y0:y1, x0:x1]
        else:  # pad with black so the face stays centred
            region = np.zeros((side, side, 3), dtype=np.uint8)
            ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
            if ix0 < ix1 and iy0 < iy1:
                region[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] = image[iy0:iy1, ix0:ix1]
        cv2.resize(region, out.shape[1::-1], dst=out, interpolation=cv2.INTER_AREA)
        return np.array([x0, y0, side, side], dtype=np.float32)


def spool_crops(parts: Iterable[FaceCrops], path: str | Path) -> FaceCrops:
    """Write the crops of a stream of chunks to one raw file, keeping only their metadata.

    The crops are appended to ``path`` as raw uint8 bytes in frame order, (T, S, S, 3) once
    read back (e.g. with ``np.memmap``), so a whole video's crops never sit in memory at once:
    each chunk's crops are released once written (the kept metadata holds no view of them).

    Args:
        parts: :class:`FaceCrops` chunks, e.g. from :meth:`FaceCropper.crop_video`.
        path: The file to write (created or overwritten).

    Returns:
        The concatenated metadata (boxes, face_found, times, indices) of every frame, with
        empty crops (0, S, S, 3); its length is the number of frames written (0 for none, with
        crops (0, 0, 0, 3): no chunk gave a crop size).
    """
    kept = []
    with Path(path).open("wb") as raw:
        for part in parts:
            raw.write(np.ascontiguousarray(part.crops).tobytes())
            # a fresh empty array: the slice part.crops[:0] would be a view that keeps the
            # whole chunk of crops alive until the end of the video
            empty = np.empty((0, *part.crops.shape[1:]), dtype=part.crops.dtype)  # (0, S, S, 3)
            kept.append(part._replace(crops=empty))
    if not kept:  # no chunk at all: no frame, no crop size
        return FaceCrops(np.zeros((0, 0, 0, 3), np.uint8), np.zeros((0, 4), np.float32),
                         np.zeros(0, bool), np.zeros(0), np.zeros(0, np.int64))
    return FaceCrops.concatenate(kept)
