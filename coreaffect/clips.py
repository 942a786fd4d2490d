"""Labelled clips: 16-frame windows (the paper) or long dense sequences, as a torch Dataset.

A :class:`ClipDataset` cuts each :class:`~coreaffect.corpus.LabelledVideo` into windows of
``config.length`` frames every ``config.stride`` frames. A window's target is the mean of its
per-frame labels (the paper's choice), taken over the frames that carry a label. A window is
kept only when at least ``min_labelled`` of its frames carry a label and a face was found in at
least ``min_face`` of them; the others are skipped (their count is logged).

Items are :class:`Clip` tuples::

    video   (C, T, H, W) float32 in [0, 1], RGB, C = 3, T = config.length
    target  (2,) float32, (valence, arousal)
    mask    (T,) bool, frames with a face found and a label
    video_id, start, end (seconds of the first frame and of the last)

In dense mode (``dense_length=N``) items are :class:`Sequence` tuples of N consecutive frames with
per-frame labels, consecutive sequences overlapping by at least ``length - 1`` frames so that
every ``length``-frame window of the video lies whole inside one of them; all have N frames (the
last one ends flush with the video), except for a video shorter than N, which gives one sequence
of its own length. They feed dense training, where the network's trunk runs once over a long
sequence and scores every window in it.

Training augmentation (``augment=True``; off by default and for evaluation) is drawn once per
item and applied alike to every frame of it, so the motion inside a clip is untouched:
a horizontal flip (probability 1/2: valence and arousal do not depend on the side of the face),
brightness and contrast jitter (factors in [0.8, 1.2]), and a crop jitter (a random shift of up
to 1/16 of the side, the border repeated). In dense mode it also draws each sequence's start
anew, uniformly over the video, so that an epoch does not always cut the video at the same
frames (the number of sequences per video stays what the fixed cutting gives). Its randomness
is a function of ``random_state``, the item's index and the epoch set by
:meth:`ClipDataset.set_epoch`, so it is reproducible and does not repeat across epochs or
data-loader workers.
"""

from __future__ import annotations

import collections.abc
import logging
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch.utils.data import Dataset

from coreaffect.config import ClipConfig, DataConfig
from coreaffect.corpus import LabelledVideo, Recording, load_recording
from coreaffect.crop_cache import CropCache
from coreaffect.errors import CoreAffectError

__all__ = ["Clip", "ClipDataset", "Sequence", "window_targets"]

logger = logging.getLogger(__name__)


class Clip(NamedTuple):
    """One labelled window; shapes in the module docstring."""

    video: torch.Tensor
    target: torch.Tensor
    mask: torch.Tensor
    video_id: str
    start: float
    end: float


class Sequence(NamedTuple):
    """A long run of frames with per-frame labels (dense mode).

    Attributes:
        video: (C, T, H, W) float32 in [0, 1].
        labels: (T, 2) float32 per-frame labels; NaN = no label.
        mask: (T,) bool, frames with a face found and a label.
        face_found: (T,) bool, frames with a face found.
        times: (T,) float64 frame times in seconds.
        video_id: The video's id.
    """

    video: torch.Tensor
    labels: torch.Tensor
    mask: torch.Tensor
    face_found: torch.Tensor
    times: torch.Tensor
    video_id: str


def window_targets(labels: np.ndarray, face_found: np.ndarray, config: ClipConfig
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Start frames and targets of the windows of one video that pass the thresholds.

    Args:
        labels: (T, 2) per-frame labels, NaN = no label.
        face_found: (T,) bool.
        config: Window length, stride and thresholds.

    Returns:
        ``(starts, targets)``: (N,) int64 start frames and (N, 2) float32 window means of the
        labelled frames.
    """
    n = len(labels)
    if n < config.length:
        return np.zeros(0, np.int64), np.zeros((0, 2), np.float32)
    starts = np.arange(0, n - config.length + 1, config.stride)
    offsets = starts[:, None] + np.arange(config.length)  # (N, T) frame indices per window
    window = labels[offsets]  # (N, T, 2)
    labelled = ~np.isnan(window).any(axis=-1)  # (N, T)
    count = labelled.sum(axis=1)
    # shares compared as shares, as for faces: 7 of 25 frames reach a min_labelled of 0.28
    keep = (count / config.length >= config.min_labelled) & (count > 0)
    keep &= face_found[offsets].mean(axis=1) >= config.min_face
    sums = np.where(labelled[..., None], window, 0.0).sum(axis=1)  # (N, 2)
    targets = sums[keep] / count[keep, None]
    return starts[keep].astype(np.int64), targets.astype(np.float32)


def _dense_starts(frames: int, dense_length: int, length: int) -> np.ndarray:
    """Starts of full-length sequences overlapping by ``length - 1`` frames, the last one flush
    with the video's end; one shorter sequence for a video shorter than ``dense_length``."""
    if frames < length:
        return np.zeros(0, np.int64)
    if frames <= dense_length:
        return np.zeros(1, np.int64)
    starts = np.arange(0, frames - dense_length + 1, dense_length - length + 1)
    if starts[-1] != frames - dense_length:
        starts = np.append(starts, frames - dense_length)
    return starts


class ClipDataset(Dataset):
    """Labelled windows (or dense sequences) of face crops; see the module docstring.

    Args:
        videos: Loaded recordings (see :func:`~coreaffect.corpus.load_recording`).
        config: Window length, stride and thresholds.
        size: Side the crops are resized to (``None`` keeps the crop size).
        augment: Apply the training augmentation.
        dense_length: Frames per item in dense mode; ``None`` gives windows.
        random_state: Seed of the augmentation.

    Attributes:
        lengths: (N,) frames of each item: the clip length, or in dense mode ``dense_length``
            (shorter for a video shorter than that, whose one sequence is the whole video).
    """

    def __init__(self, videos: collections.abc.Sequence[LabelledVideo],
                 config: ClipConfig = ClipConfig(), *, size: int | None = None,
                 augment: bool = False, dense_length: int | None = None,
                 random_state: int = 0) -> None:
        if dense_length is not None and dense_length < config.length:
            raise CoreAffectError(f"dense_length ({dense_length}) must be at least the clip "
                                  f"length ({config.length})")
        self.videos = list(videos)
        self.config = config
        self.size = size
        self.augment = augment
        self.dense_length = dense_length
        self.random_state = random_state
        self.epoch = 0
        items, targets = [], []
        skipped = 0
        for v, video in enumerate(self.videos):
            if dense_length is None:
                starts, t = window_targets(video.labels, video.crops.face_found, config)
                total = max(0, (len(video.labels) - config.length) // config.stride + 1)
                skipped += total - len(starts)
                targets.append(t)
            else:
                starts = _dense_starts(len(video.labels), dense_length, config.length)
            items += [(v, int(s)) for s in starts]
        self._items = items
        self.targets = (np.concatenate(targets) if targets else np.zeros((0, 2), np.float32))
        item_length = config.length if dense_length is None else dense_length
        self.lengths = np.array([min(item_length, len(self.videos[v].labels)) for v, _ in items],
                                dtype=np.int64)
        if skipped:
            logger.info("skipped %d windows with too few labels or faces", skipped)

    @classmethod
    def from_recordings(cls, recordings: collections.abc.Sequence[Recording],
                        config: DataConfig = DataConfig(), *, cache: CropCache | None = None,
                        **kwargs) -> ClipDataset:
        """Load recordings (through ``cache`` when given) and cut them into clips."""
        videos = [load_recording(r, config, cache) for r in recordings]
        return cls(videos, config.clips, **kwargs)

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation drawn for every item (call once per training epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> Clip | Sequence:
        v, start = self._items[index]
        video = self.videos[v]
        length = self.config.length if self.dense_length is None else self.dense_length
        if self.augment and self.dense_length is not None and len(video.labels) > length:
            rng = np.random.default_rng((self.random_state, self.epoch, index, 1))
            start = int(rng.integers(0, len(video.labels) - length + 1))
        stop = min(start + length, len(video.labels))
        frames = torch.from_numpy(np.array(video.crops.crops[start:stop]))  # (T, H, W, C) uint8
        clip = frames.permute(3, 0, 1, 2).float().div_(255)  # (C, T, H, W)
        if self.size is not None and clip.shape[-1] != self.size:
            clip = F.interpolate(clip, size=(self.size, self.size), mode="bilinear",
                                 antialias=True, align_corners=False).clamp_(0, 1)
        if self.augment:
            clip = self._augment(clip, index)
        labels = torch.from_numpy(np.array(video.labels[start:stop], dtype=np.float32))
        face = torch.from_numpy(np.asarray(video.crops.face_found[start:stop], dtype=bool))
        mask = face & ~torch.isnan(labels).any(dim=-1)
        times = np.asarray(video.crops.times[start:stop], dtype=np.float64)
        if self.dense_length is not None:
            return Sequence(clip, labels, mask, face, torch.from_numpy(times), video.id)
        target = torch.from_numpy(self.targets[index])  # targets are stored in item order
        return Clip(clip, target, mask, video.id, float(times[0]), float(times[-1]))

    def _augment(self, clip: torch.Tensor, index: int) -> torch.Tensor:
        """Flip, brightness/contrast and shift, drawn once for the whole clip (C, T, H, W)."""
        rng = np.random.default_rng((self.random_state, self.epoch, index))
        if rng.random() < 0.5:
            clip = clip.flip(-1)
        contrast, brightness = rng.uniform(0.8, 1.2, size=2)
        mean = clip.mean()
        clip = ((clip - mean) * contrast + mean * brightness).clamp_(0, 1)
        side = clip.shape[-1]
        shift = max(1, side // 16)
        dy, dx = rng.integers(-shift, shift + 1, size=2)
        if dy or dx:
            padded = F.pad(clip, (shift, shift, shift, shift), mode="replicate")
            clip = padded[..., shift + dy: shift + dy + side, shift + dx: shift + dx + side]
        return clip.contiguous()
