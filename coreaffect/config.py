"""Configuration of the data path: frozen dataclasses, each default commented.

A :class:`DataConfig` gathers everything that decides what a clip looks like: how frames are read,
how faces are found and cropped, how annotations are fused and shifted, and how clips are cut.
It is passed whole, stored in every run directory as JSON, and can be written by hand as TOML,
with the settings to change (``coreaffect train --config``; the others keep their defaults)::

    [faces]
    detector = "yunet"
    yunet_model = "face_detection_yunet_2023mar.onnx"
    margin = 0.8

    [annotations]
    delay = 2.0

A relative ``yunet_model`` in a TOML file is a path from the file's folder (it is stored
absolute in a run directory, so that the run finds it from anywhere on the machine it was
trained on; a run moved to another machine looks for the model file in its own folder too, by
its file name, so copy the file there). Unknown keys are an
error, so that a typo never silently falls back to a default, and so is a
setting of the wrong type or out of its range (``crop_size = 112.5``, ``margin = nan``,
``fps = "30"``): every section checks its fields when it is made, in Python as from a file, and
raises :class:`~coreaffect.errors.CoreAffectError` naming the section, the field, the value and
what is expected (and, from a file, the file). Integer settings take integers only (not
``true``, not ``3.0``); the others take any finite number in their range.

``[clips]`` ``length`` and ``stride`` cut the windows of a window-mode
:class:`~coreaffect.clips.ClipDataset`. ``coreaffect train`` trains densely instead, on every
window of the network's own clip length and temporal stride (:mod:`coreaffect.training`); from
that section it reads ``min_labelled`` and ``min_face``, and ``length``: with the training's
augmentation, which draws each sequence's start at random, it sets only how many 400-frame
sequences a video gives per epoch (as many as cut the video with ``length - 1`` frames of
overlap; at most 400, :class:`~coreaffect.clips.ClipDataset`). Leave it at 16.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coreaffect.errors import CoreAffectError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = ["AnnotationConfig", "ClipConfig", "DataConfig", "FaceConfig", "VideoConfig"]

DETECTORS = ("haar", "yunet", "none")
FUSIONS = ("mean", "ewe")
SIDES = ("left", "right")


def _got(value: Any) -> str:
    """The bad value as an error message shows it, with its type when that is the problem."""
    if isinstance(value, (bool, str)) or not isinstance(value, numbers.Real):
        return f"{value!r} ({type(value).__name__})"
    return repr(value)


def _set(config: Any, name: str, value: Any) -> None:
    """Store a normalised value in a frozen dataclass (numpy scalars become Python numbers, so
    that the configuration stays JSON-serialisable)."""
    object.__setattr__(config, name, value)


def _is_integer(value: Any) -> bool:
    """An integer, numpy's included; not a bool, not a float such as 3.0."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    """A finite real number, numpy's and ints included; not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and _finite(value)


def _check_int(config: Any, section: str, name: str, minimum: int) -> None:
    """``section.name`` must be an integer (not a bool, not a float such as 3.0) >= minimum."""
    value = getattr(config, name)
    if not _is_integer(value) or value < minimum:
        raise CoreAffectError(f"{section}.{name} must be an integer >= {minimum}, "
                              f"got {_got(value)}")
    if type(value) is not int:
        _set(config, name, int(value))


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _check_float(config: Any, section: str, name: str, wanted: str,
                 inside: Callable[[float], bool] = lambda value: True,
                 optional: bool = False) -> None:
    """``section.name`` must be a finite real number (an int will do, a bool will not) for which
    ``inside`` holds; ``wanted`` says in words what is expected. ``optional`` also allows None."""
    value = getattr(config, name)
    if optional and value is None:
        return
    if not _is_real(value) or not inside(value):
        expected = f"{wanted}, or None" if optional else wanted
        raise CoreAffectError(f"{section}.{name} must be {expected}, got {_got(value)}")
    if type(value) not in (int, float):
        _set(config, name, float(value))


def _check_choice(config: Any, section: str, name: str, choices: tuple[str, ...],
                  optional: bool = False) -> None:
    """``section.name`` must be one of the strings ``choices`` (or None when ``optional``)."""
    value = getattr(config, name)
    if optional and value is None:
        return
    if not isinstance(value, str) or value not in choices:
        listed = ", ".join(repr(choice) for choice in choices) + (" or None" if optional else "")
        raise CoreAffectError(f"{section}.{name} must be one of {listed}, got {_got(value)}")


@dataclass(frozen=True)
class VideoConfig:
    """How frames are read.

    Attributes:
        fps: Frame rate (> 0) for sources that carry none (folders of images). ``None`` takes
            the dataset format's rate, else 25 Hz.
        chunk_size: Frames (>= 1) decoded and cropped per chunk; bounds memory whatever the video
            length.
        first_index: The number of a frame folder's first frame (0 for ``00000.png``, 1 for
            images numbered from 1, as ffmpeg's ``%05d.png`` numbers them). ``None`` takes the
            dataset format's: 1 for Aff-Wild2's cropped_aligned folders, else 0.
    """

    fps: float | None = None  # frame folders have no rate of their own; formats supply one
    chunk_size: int = 64  # 64 frames of 640x480 RGB are ~59 MB: bounded, yet batches well
    first_index: int | None = None  # frame folders number from 0 or 1; formats say which

    def __post_init__(self) -> None:
        _check_float(self, "video", "fps", "a finite number > 0 (frames per second)",
                     lambda value: value > 0, optional=True)
        _check_int(self, "video", "chunk_size", 1)
        if self.first_index is not None:
            _check_int(self, "video", "first_index", 0)
            if self.first_index >= 2**62:
                raise CoreAffectError(f"video.first_index must be below 2**62, got "
                                      f"{self.first_index}")


@dataclass(frozen=True)
class FaceConfig:
    """How one face per frame is found, tracked and cropped.

    Attributes:
        detector: ``"haar"`` (OpenCV's shipped frontal-face cascade), ``"yunet"``
            (``cv2.FaceDetectorYN`` with ``yunet_model``), or ``"none"`` (frames already are
            face crops, as Aff-Wild2's cropped_aligned frames).
        yunet_model: Path of the YuNet ONNX file the user supplies (nothing is downloaded).
        detect_every: Run the detector every N frames (N >= 1) and track in between.
        crop_size: Side of the square output crop in pixels (>= 8).
        margin: Extra context around the face box, as a fraction (>= 0) of its side on each
            side: 0.25 is a tight face, 1.0 a wide framing with head and shoulder motion.
        smoothing: Weight in [0, 1) of the previous box in the exponential smoothing of box
            centre and size (0 = no smoothing).
        hold_frames: Frames (>= 0) the last box is held when the detector loses the face; those
            frames are cropped at the held box but flagged ``face_found=False``.
        min_face: Smallest face side accepted, as a fraction in [0, 1] of the frame's shorter
            side.
        detection_width: Frames wider than this many pixels are downscaled before detection
            (speed); 0: never downscaled.
        side: ``"left"`` or ``"right"``: only faces centred in that half of the frame count
            (a video of two people, each annotated on their own, as Aff-Wild2's ``_left`` and
            ``_right`` recordings); ``None``: the whole frame. Needs a detector.
    """

    detector: str = "haar"  # ships with OpenCV 4.x, needs no model file
    yunet_model: str | None = None  # only for detector="yunet"; supplied by the user
    detect_every: int = 3  # at 25 fps a face moves little in 3 frames; detection dominates cost
    crop_size: int = 112  # C3D's input side; models resize further if they want less
    margin: float = 0.25  # whole face with chin and brows; in a small crop its features stay large
    smoothing: float = 0.6  # removes detector jitter yet follows head motion within ~5 frames
    hold_frames: int = 8  # about 1/3 s at 25 fps: bridges blinks of the detector
    min_face: float = 0.1  # rejects tiny false detections in background clutter
    detection_width: int = 400  # 640 px frames shrink 1.6x: Haar still finds ~40 px faces, fast
    side: str | None = None  # one person per frame, as most corpora film

    def __post_init__(self) -> None:
        _check_choice(self, "faces", "detector", DETECTORS)
        if isinstance(self.yunet_model, os.PathLike):
            _set(self, "yunet_model", os.fspath(self.yunet_model))
        if self.yunet_model is not None and not isinstance(self.yunet_model, str):
            raise CoreAffectError("faces.yunet_model must be the path of an ONNX file, or None, "
                                  f"got {_got(self.yunet_model)}")
        if self.detector == "yunet" and not self.yunet_model:
            raise CoreAffectError("faces.detector='yunet' needs faces.yunet_model (an ONNX file)")
        _check_int(self, "faces", "detect_every", 1)
        _check_int(self, "faces", "crop_size", 8)
        _check_float(self, "faces", "margin", "a finite number >= 0", lambda value: value >= 0)
        _check_float(self, "faces", "smoothing", "a number in [0, 1)",
                     lambda value: 0 <= value < 1)
        _check_int(self, "faces", "hold_frames", 0)
        _check_float(self, "faces", "min_face", "a number in [0, 1] (a fraction of the frame's "
                     "shorter side)", lambda value: 0 <= value <= 1)
        _check_int(self, "faces", "detection_width", 0)
        _check_choice(self, "faces", "side", SIDES, optional=True)
        if self.side is not None and self.detector == "none":
            raise CoreAffectError(f"faces.side={self.side!r} needs a face detector; with "
                                  "detector='none' every frame is taken as the face")


@dataclass(frozen=True)
class AnnotationConfig:
    """How annotations are read, fused across raters and aligned to frames.

    Attributes:
        fusion: Rater fusion for multi-rater formats: ``"mean"``, or ``"ewe"`` (the
            evaluator-weighted estimator of Grimm & Kroschel, 2005).
        delay: Annotator reaction delay in seconds (finite); labels are shifted earlier by this
            much.
    """

    fusion: str = "mean"  # the plain mean is what most papers report
    delay: float = 0.0  # no shift unless the user asks: the right value depends on the corpus

    def __post_init__(self) -> None:
        _check_choice(self, "annotations", "fusion", FUSIONS)
        _check_float(self, "annotations", "delay", "a finite number of seconds")


@dataclass(frozen=True)
class ClipConfig:
    """How labelled clips are cut from a video.

    Attributes:
        length: Frames per clip (>= 1; the paper: 16).
        stride: Frames (>= 1) between the starts of consecutive clips.
        min_labelled: Smallest fraction in [0, 1] of a clip's frames that must carry a label.
        min_face: Smallest fraction in [0, 1] of a clip's frames in which a face must be found.
    """

    length: int = 16  # the paper's clip length (C3D)
    stride: int = 8  # half-overlapping windows: twice the clips of disjoint ones at no label cost
    min_labelled: float = 0.75  # the window mean needs most of its 16 labels
    min_face: float = 0.75  # a clip with the face mostly missing teaches nothing about the face

    def __post_init__(self) -> None:
        _check_int(self, "clips", "length", 1)
        _check_int(self, "clips", "stride", 1)
        for name in ("min_labelled", "min_face"):
            _check_float(self, "clips", name, "a number in [0, 1] (a fraction of a clip's frames)",
                         lambda value: 0 <= value <= 1)


_SECTIONS = {"video": VideoConfig, "faces": FaceConfig, "annotations": AnnotationConfig,
             "clips": ClipConfig}


@dataclass(frozen=True)
class DataConfig:
    """Everything that decides what a clip looks like; see the section classes."""

    video: VideoConfig = field(default_factory=VideoConfig)
    faces: FaceConfig = field(default_factory=FaceConfig)
    annotations: AnnotationConfig = field(default_factory=AnnotationConfig)
    clips: ClipConfig = field(default_factory=ClipConfig)

    def __post_init__(self) -> None:
        for name, kind in _SECTIONS.items():
            value = getattr(self, name)
            if not isinstance(value, kind):
                raise CoreAffectError(f"DataConfig.{name} must be a {kind.__name__}, "
                                      f"got {_got(value)}")

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain nested dict, for JSON."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config",
                  base: DataConfig | None = None) -> DataConfig:
        """Build from a nested dict; unknown sections or keys raise
        :class:`~coreaffect.errors.CoreAffectError`.

        Settings that ``data`` leaves out take their values from ``base`` (by default, the
        defaults of each section).
        """
        unknown = set(data) - set(_SECTIONS)
        if unknown:
            raise CoreAffectError(f"{source}: unknown section(s) {sorted(unknown)}; "
                                  f"known: {sorted(_SECTIONS)}")
        built = {}
        for name, kind in _SECTIONS.items():
            values = data.get(name, {})
            if not isinstance(values, dict):
                raise CoreAffectError(f"{source}: [{name}] must be a table of settings")
            known = {f.name for f in dataclasses.fields(kind)}
            bad = set(values) - known
            if bad:
                raise CoreAffectError(f"{source}: unknown key(s) {sorted(bad)} in [{name}]; "
                                      f"known: {sorted(known)}")
            try:
                built[name] = (kind(**values) if base is None
                               else dataclasses.replace(getattr(base, name), **values))
            except CoreAffectError as err:
                raise CoreAffectError(f"{source}: {err}") from None
        return cls(**built)

    @classmethod
    def from_toml(cls, path: str | Path, base: DataConfig | None = None) -> DataConfig:
        """Read a TOML file whose tables are the sections (``[video]``, ``[faces]``, ...);
        settings it leaves out take their values from ``base`` (see :meth:`from_dict`)."""
        path = Path(path)
        try:
            text = path.read_bytes().decode("utf-8-sig")  # a byte-order mark, as Notepad writes
            data = tomllib.loads(text)
        except FileNotFoundError:
            raise CoreAffectError(f"{path}: no such configuration file") from None
        except OSError as err:  # a folder, or a file that may not be read
            raise CoreAffectError(f"{path}: cannot read the configuration file "
                                  f"({err.strerror or err})") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise CoreAffectError(f"{path}: not valid TOML ({err})") from None
        faces = data.get("faces")
        model = faces.get("yunet_model") if isinstance(faces, dict) else None
        if isinstance(model, str) and model and not Path(model).expanduser().is_absolute():
            # beside the file that names it, wherever the command runs; stored absolute in a run
            faces["yunet_model"] = str(path.parent.resolve() / model)
        return cls.from_dict(data, source=str(path), base=base)
