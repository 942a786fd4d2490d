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

Unknown keys are an error, so that a typo never silently falls back to a default.

``[clips]`` ``length`` and ``stride`` cut the windows of a window-mode
:class:`~coreaffect.clips.ClipDataset`. ``coreaffect train`` trains densely instead, on every
window of the network's own clip length and temporal stride (:mod:`coreaffect.training`), and
reads only ``min_labelled`` and ``min_face`` from that section.
"""

from __future__ import annotations

import dataclasses
import sys
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


@dataclass(frozen=True)
class VideoConfig:
    """How frames are read.

    Attributes:
        fps: Frame rate for sources that carry none (folders of images). ``None`` takes the
            dataset format's rate, else 25 Hz.
        chunk_size: Frames decoded and cropped per chunk; bounds memory whatever the video length.
    """

    fps: float | None = None  # frame folders have no rate of their own; formats supply one
    chunk_size: int = 64  # 64 frames of 640x480 RGB are ~59 MB: bounded, yet batches well

    def __post_init__(self) -> None:
        if self.fps is not None and not self.fps > 0:
            raise CoreAffectError(f"video.fps must be positive, got {self.fps}")
        if self.chunk_size < 1:
            raise CoreAffectError(f"video.chunk_size must be >= 1, got {self.chunk_size}")


@dataclass(frozen=True)
class FaceConfig:
    """How one face per frame is found, tracked and cropped.

    Attributes:
        detector: ``"haar"`` (OpenCV's shipped frontal-face cascade), ``"yunet"``
            (``cv2.FaceDetectorYN`` with ``yunet_model``), or ``"none"`` (frames already are
            face crops, as Aff-Wild2's cropped_aligned frames).
        yunet_model: Path of the YuNet ONNX file the user supplies (nothing is downloaded).
        detect_every: Run the detector every N frames and track in between.
        crop_size: Side of the square output crop in pixels.
        margin: Extra context around the face box, as a fraction of its side on each side:
            0.25 is a tight face, 1.0 a wide framing with head and shoulder motion.
        smoothing: Weight of the previous box in the exponential smoothing of box centre and
            size (0 = no smoothing).
        hold_frames: Frames the last box is held when the detector loses the face; those frames
            are cropped at the held box but flagged ``face_found=False``.
        min_face: Smallest face side accepted, as a fraction of the frame's shorter side.
        detection_width: Frames wider than this are downscaled before detection (speed).
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
        if self.detector not in DETECTORS:
            raise CoreAffectError(
                f"faces.detector must be one of {DETECTORS}, got {self.detector!r}")
        if self.detector == "yunet" and not self.yunet_model:
            raise CoreAffectError("faces.detector='yunet' needs faces.yunet_model (an ONNX file)")
        if self.detect_every < 1:
            raise CoreAffectError(f"faces.detect_every must be >= 1, got {self.detect_every}")
        if self.crop_size < 8:
            raise CoreAffectError(f"faces.crop_size must be >= 8, got {self.crop_size}")
        if self.margin < 0:
            raise CoreAffectError(f"faces.margin must be >= 0, got {self.margin}")
        if not 0 <= self.smoothing < 1:
            raise CoreAffectError(f"faces.smoothing must be in [0, 1), got {self.smoothing}")
        if self.hold_frames < 0:
            raise CoreAffectError(f"faces.hold_frames must be >= 0, got {self.hold_frames}")
        if self.side not in (None, "left", "right"):
            raise CoreAffectError(f"faces.side must be 'left', 'right' or None, got "
                                  f"{self.side!r}")
        if self.side is not None and self.detector == "none":
            raise CoreAffectError(f"faces.side={self.side!r} needs a face detector; with "
                                  "detector='none' every frame is taken as the face")


@dataclass(frozen=True)
class AnnotationConfig:
    """How annotations are read, fused across raters and aligned to frames.

    Attributes:
        fusion: Rater fusion for multi-rater formats: ``"mean"``, or ``"ewe"`` (the
            evaluator-weighted estimator of Grimm & Kroschel, 2005).
        delay: Annotator reaction delay in seconds; labels are shifted earlier by this much.
    """

    fusion: str = "mean"  # the plain mean is what most papers report
    delay: float = 0.0  # no shift unless the user asks: the right value depends on the corpus

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise CoreAffectError(
                f"annotations.fusion must be one of {FUSIONS}, got {self.fusion!r}")


@dataclass(frozen=True)
class ClipConfig:
    """How labelled clips are cut from a video.

    Attributes:
        length: Frames per clip (the paper: 16).
        stride: Frames between the starts of consecutive clips.
        min_labelled: Smallest fraction of a clip's frames that must carry a label.
        min_face: Smallest fraction of a clip's frames in which a face must be found.
    """

    length: int = 16  # the paper's clip length (C3D)
    stride: int = 8  # half-overlapping windows: twice the clips of disjoint ones at no label cost
    min_labelled: float = 0.75  # the window mean needs most of its 16 labels
    min_face: float = 0.75  # a clip with the face mostly missing teaches nothing about the face

    def __post_init__(self) -> None:
        if self.length < 1 or self.stride < 1:
            raise CoreAffectError("clips.length and clips.stride must be >= 1")
        for name in ("min_labelled", "min_face"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise CoreAffectError(f"clips.{name} must be in [0, 1], got {value}")


@dataclass(frozen=True)
class DataConfig:
    """Everything that decides what a clip looks like; see the section classes."""

    video: VideoConfig = field(default_factory=VideoConfig)
    faces: FaceConfig = field(default_factory=FaceConfig)
    annotations: AnnotationConfig = field(default_factory=AnnotationConfig)
    clips: ClipConfig = field(default_factory=ClipConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain nested dict, for JSON."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config",
                  base: DataConfig | None = None) -> DataConfig:
        """Build from a nested dict; unknown sections or keys raise :class:`CoreAffectError`.

        Settings that ``data`` leaves out take their values from ``base`` (by default, the
        defaults of each section).
        """
        kinds = {"video": VideoConfig, "faces": FaceConfig,
                 "annotations": AnnotationConfig, "clips": ClipConfig}
        unknown = set(data) - set(kinds)
        if unknown:
            raise CoreAffectError(f"{source}: unknown section(s) {sorted(unknown)}; "
                                  f"known: {sorted(kinds)}")
        built = {}
        for name, kind in kinds.items():
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
            with path.open("rb") as handle:
                data = tomllib.load(handle)
        except FileNotFoundError:
            raise CoreAffectError(f"{path}: no such configuration file") from None
        except tomllib.TOMLDecodeError as err:
            raise CoreAffectError(f"{path}: not valid TOML ({err})") from None
        return cls.from_dict(data, source=str(path), base=base)
