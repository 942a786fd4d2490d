"""Windows, targets, thresholds, dense sequences and augmentation of ClipDataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from coreaffect import ClipDataset
from coreaffect.clips import Clip, Sequence, window_targets
from coreaffect.config import ClipConfig
from coreaffect.corpus import LabelledVideo
from coreaffect.errors import CoreAffectError
from coreaffect.faces import FaceCrops


def _video(n: int, labels: np.ndarray | None = None, face: np.ndarray | None = None,
           side: int = 8, video_id: str = "v") -> LabelledVideo:
    rng = np.random.default_rng(n)
    crops = rng.integers(0, 256, size=(n, side, side, 3), dtype=np.uint8)
    times = np.arange(n) / 25.0
    if labels is None:
        labels = np.stack([np.linspace(-1, 1, n), np.linspace(1, -1, n)], axis=1)
    if face is None:
        face = np.ones(n, bool)
    boxes = np.zeros((n, 4), np.float32)
    fc = FaceCrops(crops=crops, boxes=boxes, face_found=face, times=times,
                   indices=np.arange(n, dtype=np.int64))
    return LabelledVideo(video_id, fc, labels.astype(np.float32))


def test_window_targets_are_means_of_labelled_frames():
    labels = np.arange(20, dtype=float)[:, None].repeat(2, axis=1)
    labels[1] = np.nan  # one unlabelled frame in the first window
    config = ClipConfig(length=4, stride=4, min_labelled=0.75, min_face=0.5)
    starts, targets = window_targets(labels, np.ones(20, bool), config)
    np.testing.assert_array_equal(starts, [0, 4, 8, 12, 16])
    np.testing.assert_allclose(targets[0], [(0 + 2 + 3) / 3] * 2)
    np.testing.assert_allclose(targets[1], [5.5, 5.5])


def test_windows_below_thresholds_are_skipped():
    labels = np.zeros((16, 2))
    labels[0:4] = np.nan  # window 0: half unlabelled
    face = np.ones(16, bool)
    face[12:16] = False  # window 3 (frames 12-15): no face at all
    config = ClipConfig(length=4, stride=2, min_labelled=0.75, min_face=0.5)
    starts, _ = window_targets(labels, face, config)
    # starts 0 (4 NaN) and 2 (2 NaN of 4 -> 0.5 < 0.75) fail on labels; 12 (face 0/4) and
    # 10 (face 2/4 = 0.5 >= 0.5) -> 10 passes, 12 fails
    np.testing.assert_array_equal(starts, [4, 6, 8, 10])


@pytest.mark.parametrize(("length", "count"), [(25, 7), (25, 14), (29, 15)])
def test_a_share_of_labels_or_faces_exactly_at_its_threshold_passes(length, count):
    # count / length as the threshold: the same share of labels and of faces passes, though
    # threshold x length rounds above count (0.28 x 25 = 7.000000000000001)
    share = count / length
    labels, face = np.zeros((length, 2)), np.ones(length, bool)
    labels[count:] = np.nan
    assert len(window_targets(labels, face, ClipConfig(length=length, stride=1,
                                                       min_labelled=share, min_face=0))[0]) == 1
    face[count:] = False
    assert len(window_targets(np.zeros((length, 2)), face, ClipConfig(
        length=length, stride=1, min_labelled=0, min_face=share))[0]) == 1


def test_short_video_gives_no_window():
    starts, targets = window_targets(np.zeros((5, 2)), np.ones(5, bool), ClipConfig())
    assert starts.shape == (0,) and targets.shape == (0, 2)


def test_clip_items_shapes_and_content():
    video = _video(40)
    data = ClipDataset([video], ClipConfig(length=16, stride=8))
    assert len(data) == 4  # starts 0, 8, 16, 24
    clip = data[1]
    assert isinstance(clip, Clip)
    assert clip.video.shape == (3, 16, 8, 8) and clip.video.dtype == torch.float32
    expected = torch.from_numpy(video.crops.crops[8:24]).permute(3, 0, 1, 2).float() / 255
    torch.testing.assert_close(clip.video, expected)
    torch.testing.assert_close(clip.target, torch.from_numpy(video.labels[8:24].mean(axis=0)))
    assert clip.mask.all() and clip.video_id == "v"
    assert clip.start == pytest.approx(8 / 25) and clip.end == pytest.approx(23 / 25)


def test_resize_to_model_input():
    data = ClipDataset([_video(16, side=12)], ClipConfig(length=16), size=6)
    clip = data[0].video
    assert clip.shape == (3, 16, 6, 6)
    assert 0 <= float(clip.min()) and float(clip.max()) <= 1


def test_dense_sequences_hold_every_window():
    n, length, dense = 100, 16, 40
    data = ClipDataset([_video(n)], ClipConfig(length=length), dense_length=dense)
    covered = set()
    for item in data:
        assert isinstance(item, Sequence)
        t = item.video.shape[1]
        first = int(round(float(item.times[0]) * 25))
        assert t == dense  # every sequence is full length, so batches stack
        assert item.labels.shape == (t, 2) and item.mask.shape == (t,)
        assert item.face_found.all()
        covered |= {first + s for s in range(t - length + 1)}
    assert covered == set(range(n - length + 1))


def test_dense_length_shorter_than_clip_is_an_error():
    with pytest.raises(CoreAffectError, match="dense_length"):
        ClipDataset([_video(40)], ClipConfig(length=16), dense_length=8)


def test_augmentation_is_reproducible_and_varies_with_epoch():
    video = _video(32, side=16)
    data = ClipDataset([video], ClipConfig(length=16, stride=16), augment=True, random_state=3)
    first = data[0].video
    torch.testing.assert_close(first, data[0].video)
    epochs = []
    for epoch in range(6):
        data.set_epoch(epoch)
        epochs.append(data[0].video)
    assert any(not torch.equal(epochs[0], e) for e in epochs[1:])
    plain = ClipDataset([video], ClipConfig(length=16, stride=16))[0].video
    assert first.shape == plain.shape


def test_flip_applies_to_every_frame_alike():
    video = _video(16, side=16)
    ramp = (np.arange(16)[None, None, :, None] * 12 + np.arange(16)[:, None, None, None])
    video.crops.crops[:] = np.broadcast_to(ramp, video.crops.crops.shape).astype(np.uint8)
    data = ClipDataset([video], ClipConfig(length=16), augment=True)
    plain = ClipDataset([video], ClipConfig(length=16))[0].video
    found_flip = False
    for epoch in range(20):
        data.set_epoch(epoch)
        clip = data[0].video
        # the per-frame difference to the plain clip has the same sign structure in every frame:
        # either every frame is mirrored or none is
        corr_plain = [torch.corrcoef(torch.stack([clip[:, t].flatten(),
                                                  plain[:, t].flatten()]))[0, 1]
                      for t in range(16)]
        corr_flip = [torch.corrcoef(torch.stack([clip[:, t].flatten(),
                                                 plain[:, t].flip(-1).flatten()]))[0, 1]
                     for t in range(16)]
        flipped = [float(f) > float(p) for f, p in zip(corr_flip, corr_plain, strict=True)]
        assert all(flipped) or not any(flipped)
        found_flip |= all(flipped)
    assert found_flip


def test_augmented_dense_sequences_start_anywhere():
    n, dense = 100, 40
    video = _video(n)
    plain = ClipDataset([video], ClipConfig(length=16), dense_length=dense)
    data = ClipDataset([video], ClipConfig(length=16), dense_length=dense, augment=True,
                       random_state=1)
    assert len(data) == len(plain)
    starts = set()
    for epoch in range(30):
        data.set_epoch(epoch)
        for item in data:
            start = int(round(float(item.times[0]) * 25))
            assert item.video.shape[1] == dense and 0 <= start <= n - dense
            # labels travel with their frames
            torch.testing.assert_close(item.labels, torch.from_numpy(video.labels[start:start
                                                                                  + dense]))
            starts.add(start)
    assert len(starts) > 20  # not the three fixed cuts of the plain dataset
    data.set_epoch(3)
    again = [float(item.times[0]) for item in data]
    assert again == [float(item.times[0]) for item in data]  # reproducible per epoch
