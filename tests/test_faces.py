"""Tests of coreaffect.faces on a real photograph (scikit-image's astronaut) moved around frames."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from coreaffect.config import FaceConfig
from coreaffect.errors import CoreAffectError, CoreAffectWarning
from coreaffect.faces import FaceCropper, FaceCrops
from coreaffect.video import FrameChunk, VideoSource

ASTRONAUT = data.astronaut()  # (512, 512, 3) RGB; the face spans about x 170-280, y 60-170
TRUE_FACE = (170, 60, 280, 170)  # x0, y0, x1, y1
HEAD = ASTRONAUT[0:300, 80:380]  # (300, 300, 3): the head with some background
HEAD_FACE = (225 - 80, 115)  # approximate face centre inside HEAD
FRAME_H, FRAME_W = 360, 640


def as_chunk(images: list[np.ndarray], indices: list[int] | None = None) -> FrameChunk:
    indices = np.arange(len(images)) if indices is None else np.asarray(indices)
    return FrameChunk(np.stack(images), indices / 25.0, indices.astype(np.int64))


def scene(*heads: tuple[int, int, float], shade: int = 110) -> np.ndarray:
    """A ``(H, W, 3)`` frame with the head pasted at ``(x, y)`` with scale ``s`` for each head."""
    frame = np.full((FRAME_H, FRAME_W, 3), shade, dtype=np.uint8)
    for x, y, s in heads:
        head = HEAD if s == 1 else cv2.resize(HEAD, None, fx=s, fy=s,
                                              interpolation=cv2.INTER_AREA)
        frame[y:y + head.shape[0], x:x + head.shape[1]] = head
    return frame


def head_centre(x: int, y: int, s: float = 1.0) -> np.ndarray:
    return np.array([x + HEAD_FACE[0] * s, y + HEAD_FACE[1] * s])


def face_centres(crops: FaceCrops) -> np.ndarray:
    """``(T, 2)`` crop-region centres, which are the tracked face centres."""
    return crops.boxes[:, :2] + crops.boxes[:, 2:] / 2


def blank() -> np.ndarray:
    return np.full((FRAME_H, FRAME_W, 3), 110, dtype=np.uint8)


def noise(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (FRAME_H, FRAME_W, 3), dtype=np.uint8)


def test_haar_finds_the_astronaut() -> None:
    config = FaceConfig()
    result = FaceCropper(config).crop(as_chunk([ASTRONAUT]))
    assert result.face_found.tolist() == [True]
    assert result.crops.shape == (1, 112, 112, 3) and result.crops.dtype == np.uint8
    assert result.boxes.dtype == np.float32
    x, y, side, side2 = result.boxes[0]
    assert side == side2
    face = side / (1 + 2 * config.margin)  # the detected face inside the crop region
    fx0, fy0 = x + (side - face) / 2, y + (side - face) / 2
    ix = max(0.0, min(fx0 + face, TRUE_FACE[2]) - max(fx0, TRUE_FACE[0]))
    iy = max(0.0, min(fy0 + face, TRUE_FACE[3]) - max(fy0, TRUE_FACE[1]))
    union = face * face + 110 * 110 - ix * iy
    assert ix * iy / union > 0.5


def test_crop_shape_dtype_and_passthrough_of_times() -> None:
    result = FaceCropper(FaceConfig(crop_size=64)).crop(as_chunk([ASTRONAUT] * 3, [4, 5, 7]))
    assert result.crops.shape == (3, 64, 64, 3) and result.crops.dtype == np.uint8
    assert result.boxes.shape == (3, 4)
    assert result.face_found.dtype == bool
    assert result.times.dtype == np.float64 and result.indices.dtype == np.int64
    np.testing.assert_array_equal(result.indices, [4, 5, 7])
    np.testing.assert_allclose(result.times, [0.16, 0.2, 0.28])


def test_moving_face_is_followed_without_jitter() -> None:
    steps = np.arange(40)
    dx = np.round(6 * np.sin(2 * np.pi * steps / 20)).astype(int)
    dy = np.round(4 * np.cos(2 * np.pi * steps / 20)).astype(int)
    frames = [scene((170 + a, 30 + b, 1.0)) for a, b in zip(dx, dy, strict=True)]
    result = FaceCropper().crop(as_chunk(frames))
    assert result.face_found.all()
    truth = np.stack([head_centre(170 + a, 30 + b) for a, b in zip(dx, dy, strict=True)])
    error = np.abs(face_centres(result) - truth)
    assert error.max() < 0.1 * result.boxes[:, 2].mean()
    # the crop moves no faster than the face, plus half the change of its side (a detection every
    # few frames re-estimates size and centre together) and a pixel of rounding: no jitter
    crop_speed = np.abs(np.diff(face_centres(result), axis=0)).max()
    resize = np.abs(np.diff(result.boxes[:, 2])).max() / 2
    assert crop_speed <= np.abs(np.diff(truth, axis=0)).max() + resize + 1.5
    assert np.ptp(result.boxes[:, 2]) <= 0.1 * result.boxes[:, 2].mean()


def test_smoothing_is_an_exponential_average_of_detections() -> None:
    frames = [scene((150, 30, 1.0))] * 6 + [scene((190, 30, 1.0))] * 10
    raw = FaceCropper(FaceConfig(detect_every=1, smoothing=0.0, margin=0.5)).crop(as_chunk(frames))
    smooth = FaceCropper(FaceConfig(detect_every=1, smoothing=0.6, margin=0.5)).crop(
        as_chunk(frames))
    assert raw.face_found.all() and smooth.face_found.all()
    detections = face_centres(raw)[:, 0]
    assert detections[6] - detections[5] == pytest.approx(40, abs=4)  # raw crops jump at once
    expected = [detections[0]]
    for value in detections[1:]:
        expected.append(0.6 * expected[-1] + 0.4 * value)
    np.testing.assert_allclose(face_centres(smooth)[:, 0], expected, atol=1.5)  # whole pixels
    assert face_centres(smooth)[6, 0] - face_centres(smooth)[5, 0] < 20  # smoothed: gradual


def test_frames_without_a_face_keep_their_rows() -> None:
    frames = ([scene((170, 30, 1.0))] * 3 + [blank()] * 3 + [noise(k) for k in range(3)]
              + [scene((170, 30, 1.0))] * 3)
    indices = [10, 11, 12, 14, 15, 16, 17, 18, 19, 30, 31, 32]
    result = FaceCropper(FaceConfig(detect_every=1, hold_frames=2)).crop(as_chunk(frames, indices))
    assert result.face_found.tolist() == [True] * 3 + [False] * 6 + [True] * 3
    np.testing.assert_array_equal(result.indices, indices)
    np.testing.assert_allclose(result.times, np.array(indices) / 25.0)
    assert len(result.crops) == 12
    assert np.isfinite(result.boxes).all()  # held, then kept at the last box
    np.testing.assert_allclose(result.boxes[3:9], np.repeat(result.boxes[2:3], 6, axis=0), atol=2)


def test_no_face_ever_gives_centre_crops_and_nan_boxes() -> None:
    frames = [blank(), noise(1), blank()]
    result = FaceCropper(FaceConfig(crop_size=32)).crop(as_chunk(frames))
    assert not result.face_found.any()
    assert np.isnan(result.boxes).all()
    offset = (FRAME_W - FRAME_H) // 2
    expected = cv2.resize(frames[1][:, offset:offset + FRAME_H], (32, 32),
                          interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(result.crops[1], expected)


@pytest.mark.parametrize("hold", [0, 4])
def test_hold_frames_then_a_new_subject(hold: int) -> None:
    gap = 2
    frames = [scene((20, 30, 1.0))] * 3 + [blank()] * gap + [scene((320, 30, 1.0))] * 8
    result = FaceCropper(FaceConfig(detect_every=1, hold_frames=hold)).crop(as_chunk(frames))
    first_new = 3 + max(gap, hold + 1)  # the far face is taken only once the track is dropped
    assert result.face_found.tolist() == ([True] * 3 + [False] * (first_new - 3)
                                          + [True] * (len(frames) - first_new))
    centres = face_centres(result)
    old, new = head_centre(20, 30), head_centre(320, 30)
    assert np.abs(centres[:first_new] - old).max() < 10  # held at the old place
    assert np.abs(centres[first_new] - new).max() < 10  # the new subject is taken at once


def test_two_faces_the_largest_is_the_subject() -> None:
    frames = [scene((10 + k, 30, 1.0), (420, 80, 0.7)) for k in range(6)]
    result = FaceCropper().crop(as_chunk(frames))
    assert result.face_found.all()
    truth = np.stack([head_centre(10 + k, 30) for k in range(6)])
    assert np.abs(face_centres(result) - truth).max() < 12


def test_two_faces_side_picks_the_person_in_that_half() -> None:
    """Two people in one video, each annotated on their own (Aff-Wild2's _left and _right)."""
    frames = [scene((10 + k, 30, 1.0), (420, 80, 0.7)) for k in range(6)]
    right = FaceCropper(FaceConfig(side="right")).crop(as_chunk(frames))
    assert right.face_found.all()
    assert np.abs(face_centres(right) - head_centre(420, 80, 0.7)).max() < 12
    left = FaceCropper(FaceConfig(side="left")).crop(as_chunk(frames))
    truth = np.stack([head_centre(10 + k, 30) for k in range(6)])
    assert np.abs(face_centres(left) - truth).max() < 12
    alone = FaceCropper(FaceConfig(side="right")).crop(as_chunk([scene((10, 30, 1.0))] * 3))
    assert not alone.face_found.any()  # the left person is never taken for the right one
    with pytest.raises(CoreAffectError, match="needs a face detector"):
        FaceConfig(detector="none", side="left")
    with pytest.raises(CoreAffectError, match="side"):
        FaceConfig(side="middle")


def test_two_faces_the_tracked_subject_is_kept() -> None:
    small = (420, 80, 0.7)
    frames = [scene(small)] * 3 + [scene((10, 30, 1.0), small)] * 9
    result = FaceCropper().crop(as_chunk(frames))
    assert result.face_found.all()
    assert np.abs(face_centres(result) - head_centre(*small)).max() < 12


def test_detector_none_takes_the_centred_square() -> None:
    frames = [noise(k)[:80, :100] for k in range(3)]
    result = FaceCropper(FaceConfig(detector="none", crop_size=48)).crop(as_chunk(frames))
    assert result.face_found.all()
    np.testing.assert_array_equal(result.boxes, [[10, 0, 80, 80]] * 3)
    expected = cv2.resize(frames[2][:, 10:90], (48, 48), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(result.crops[2], expected)


def test_yunet_missing_or_invalid_model_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "face_detection_yunet.onnx"
    with pytest.raises(CoreAffectError, match="face_detection_yunet.onnx.*not found"):
        FaceCropper(FaceConfig(detector="yunet", yunet_model=str(missing)))
    missing.write_bytes(b"not an onnx model")
    with pytest.raises(CoreAffectError, match="face_detection_yunet.onnx.*not a valid"):
        FaceCropper(FaceConfig(detector="yunet", yunet_model=str(missing)))
    with pytest.raises(CoreAffectError, match="a folder, not a YuNet model file .*the .onnx"):
        FaceCropper(FaceConfig(detector="yunet", yunet_model=str(tmp_path)))


def test_face_at_the_border_stays_centred_with_black_padding() -> None:
    image = np.ascontiguousarray(ASTRONAUT[:, 150:])  # the face now starts ~20 px from the edge
    result = FaceCropper(FaceConfig(margin=0.6, crop_size=100)).crop(as_chunk([image]))
    assert result.face_found[0]
    x, _, side, _ = result.boxes[0]
    assert x < 0
    outside = int(-x / side * 100)  # crop columns left of the frame
    assert outside >= 2
    assert result.crops[0, :, : outside - 1].max() == 0
    assert result.crops[0, :, outside + 1:].mean() > 20


def test_chunking_does_not_change_the_result() -> None:
    positions = [(150 + 3 * k, 30 + k, 1.0) for k in range(10)]
    frames = ([scene(p) for p in positions] + [blank()] * 4
              + [scene((170, 40, 1.0))] * 6)
    cropper = FaceCropper()
    whole = cropper.crop(as_chunk(frames))
    # detection runs on frames 0, 3, 6, ...: flags change at those frames (blank frames 10-13)
    assert whole.face_found.tolist() == [True] * 12 + [False] * 3 + [True] * 5
    for size in (1, 4, 7):
        cropper.reset()
        parts = []
        for start in range(0, len(frames), size):
            part = frames[start:start + size]
            parts.append(cropper.crop(as_chunk(part, list(range(start, start + len(part))))))
        joined = FaceCrops.concatenate(parts)
        for got, want in zip(joined, whole, strict=True):
            np.testing.assert_array_equal(got, want)


def test_crop_video_streams_a_folder_and_resets(tmp_path: Path) -> None:
    frames = [scene((150 + 4 * k, 30, 1.0)) for k in range(8)] + [blank()] * 2
    for k, frame in enumerate(frames):
        cv2.imwrite(str(tmp_path / f"{k + 1}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    cropper = FaceCropper()
    direct = cropper.crop(as_chunk(frames))
    first = FaceCrops.concatenate(list(cropper.crop_video(tmp_path, chunk_size=3,
                                                          first_index=1)))
    with VideoSource(tmp_path, first_index=1) as video:
        second = FaceCrops.concatenate(list(cropper.crop_video(video, chunk_size=20)))
    for a, b, c in zip(first, second, direct, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("chunk_size", [3, 64])
def test_frames_missing_from_a_folder_get_rows_without_a_face(tmp_path: Path,
                                                              chunk_size: int) -> None:
    """Frames 00001-00040 at 30 fps with 00010-00033 missing (as Aff-Wild2's cropped frames
    leave out faceless ones): one row per frame number, in time."""
    kept = [n for n in range(1, 41) if not 10 <= n <= 33]
    for n in kept:
        cv2.imwrite(str(tmp_path / f"{n:05d}.jpg"), np.full((20, 20, 3), 200, np.uint8))
    crops = FaceCrops.concatenate(list(FaceCropper(FaceConfig(detector="none", crop_size=8))
                                       .crop_video(tmp_path, chunk_size=chunk_size, fps=30.0,
                                                   first_index=1)))
    np.testing.assert_array_equal(crops.indices, np.arange(40))
    np.testing.assert_allclose(crops.times, np.arange(40) / 30.0)
    missing = (crops.indices >= 9) & (crops.indices <= 32)
    np.testing.assert_array_equal(crops.face_found, ~missing)
    assert (crops.crops[missing] == 0).all() and (crops.crops[~missing] > 0).all()
    assert np.isnan(crops.boxes[missing]).all()


def test_a_gap_over_a_minute_is_a_warning_naming_the_folder(tmp_path: Path) -> None:
    """At 1 fps, frames 101-170 missing of 200 (70 s, fewer than the 130 images): read as a
    gap without a face, and a CoreAffectWarning says so, as a log line does."""
    for n in [*range(1, 101), *range(171, 201)]:
        cv2.imwrite(str(tmp_path / f"{n:05d}.png"), np.full((20, 20, 3), 200, np.uint8))
    cropper = FaceCropper(FaceConfig(detector="none", crop_size=8))
    with pytest.warns(CoreAffectWarning, match=rf"{tmp_path.name}: frames 100 to 169 "
                      r"\(99.0 s to 170.0 s\) are missing") as caught:
        crops = FaceCrops.concatenate(list(cropper.crop_video(tmp_path, fps=1.0,
                                                              first_index=1)))
    assert len(caught) == 1
    assert len(crops.times) == 200 and not crops.face_found[100:170].any()


def test_concatenate_needs_parts() -> None:
    with pytest.raises(ValueError):
        FaceCrops.concatenate([])


def test_spool_crops_writes_the_crops_and_keeps_the_metadata(tmp_path) -> None:
    from coreaffect.faces import spool_crops

    chunks = [FaceCropper().crop(as_chunk([ASTRONAUT] * n, list(range(k, k + n))))
              for k, n in ((0, 2), (2, 3))]
    meta = spool_crops(iter(chunks), tmp_path / "crops.u8")
    whole = FaceCrops.concatenate(chunks)
    assert meta.crops.shape[0] == 0 and len(meta.times) == 5
    np.testing.assert_array_equal(meta.indices, whole.indices)
    np.testing.assert_array_equal(meta.boxes, whole.boxes)
    read = np.fromfile(tmp_path / "crops.u8", dtype=np.uint8).reshape(whole.crops.shape)
    np.testing.assert_array_equal(read, whole.crops)
    nothing = spool_crops(iter([]), tmp_path / "none.u8")  # as documented: 0 frames
    assert len(nothing.times) == 0 and (tmp_path / "none.u8").stat().st_size == 0


def test_spool_crops_lets_go_of_each_written_chunk(tmp_path) -> None:
    import gc
    import weakref

    from coreaffect.faces import spool_crops

    written: list[weakref.ref] = []

    def chunks():
        for k in range(4):
            gc.collect()
            # the chunk before the last may still be bound to the consumer's loop variable
            assert all(ref() is None for ref in written[:-1]), "spooled crops are still held"
            crops = np.full((5, 8, 8, 3), k, dtype=np.uint8)  # (T, S, S, 3)
            written.append(weakref.ref(crops))
            yield FaceCrops(crops, np.zeros((5, 4), np.float32), np.ones(5, bool),
                            np.arange(5 * k, 5 * k + 5) / 25.0, np.arange(5 * k, 5 * k + 5))

    meta = spool_crops(chunks(), tmp_path / "crops.u8")
    assert len(meta.times) == 20 and meta.crops.shape == (0, 8, 8, 3)
    read = np.fromfile(tmp_path / "crops.u8", dtype=np.uint8).reshape(20, 8, 8, 3)
    np.testing.assert_array_equal(read[:, 0, 0, 0], np.repeat(np.arange(4), 5))
