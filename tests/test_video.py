"""Tests of coreaffect.video: files in two codecs, frame folders, damaged and invalid input."""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coreaffect.config import VideoConfig
from coreaffect.errors import InputError, VideoError
from coreaffect.video import Frame, FrameChunk, VideoSource, frame_rate

WIDTH, HEIGHT, BLOCK = 96, 64, 16  # frames are a 6 x 4 grid of flat 16 px blocks
BITS = 8  # blocks 0..7 carry the frame number in binary (white = 1)
RED, GREEN, BLUE = 8, 9, 10  # blocks with a pure colour, to check the channel order


def _block(k: int) -> tuple[slice, slice]:
    row, col = divmod(k, WIDTH // BLOCK)
    return slice(row * BLOCK, (row + 1) * BLOCK), slice(col * BLOCK, (col + 1) * BLOCK)


def coded_frame(number: int) -> np.ndarray:
    """An ``(H, W, 3)`` RGB frame whose flat blocks encode ``number``; survives lossy codecs."""
    image = np.full((HEIGHT, WIDTH, 3), 128, dtype=np.uint8)
    for bit in range(BITS):
        image[_block(bit)] = 255 if (number >> bit) & 1 else 0
    image[_block(RED)] = (255, 0, 0)
    image[_block(GREEN)] = (0, 255, 0)
    image[_block(BLUE)] = (0, 0, 255)
    return image


def block_mean(image: np.ndarray, k: int) -> np.ndarray:
    """Mean RGB of the centre of block ``k`` (away from compression ringing at the edges)."""
    rows, cols = _block(k)
    return image[rows, cols][4:-4, 4:-4].reshape(-1, 3).mean(axis=0)


def decode_number(image: np.ndarray) -> int:
    return sum(1 << bit for bit in range(BITS) if block_mean(image, bit).mean() > 128)


def write_video(path: Path, count: int, fourcc: str, fps: float = 20.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (WIDTH, HEIGHT))
    assert writer.isOpened(), f"cannot write {fourcc} video"
    for k in range(count):
        writer.write(cv2.cvtColor(coded_frame(k), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def write_png(path: Path, image: np.ndarray) -> None:
    assert cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


CODECS = [("mp4v", ".mp4"), ("MJPG", ".avi")]


@pytest.fixture(params=CODECS, ids=[codec for codec, _ in CODECS])
def video_file(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    fourcc, suffix = request.param
    return write_video(tmp_path / f"clip{suffix}", 30, fourcc)


def test_file_properties(video_file: Path) -> None:
    video = VideoSource(video_file)
    assert video.kind == "file"
    assert video.name == "clip"
    assert video.fps == pytest.approx(20.0)
    assert video.frame_count == 30
    assert video.size == (WIDTH, HEIGHT)


def test_file_frames_are_exact_and_rgb(video_file: Path) -> None:
    frames = list(VideoSource(video_file))
    assert len(frames) == 30
    for k, frame in enumerate(frames):
        assert isinstance(frame, Frame)
        assert frame.image.shape == (HEIGHT, WIDTH, 3)
        assert frame.image.dtype == np.uint8
        assert frame.index == k
        assert frame.time == pytest.approx(k / 20.0)
        assert decode_number(frame.image) == k
        np.testing.assert_allclose(block_mean(frame.image, RED), (255, 0, 0), atol=40)
        np.testing.assert_allclose(block_mean(frame.image, BLUE), (0, 0, 255), atol=40)


def test_chunks_agree_with_frames(video_file: Path) -> None:
    video = VideoSource(video_file, chunk_size=7)
    chunks = list(video.chunks())
    assert [len(chunk.indices) for chunk in chunks] == [7, 7, 7, 7, 2]
    assert all(isinstance(chunk, FrameChunk) for chunk in chunks)
    assert chunks[0].images.shape == (7, HEIGHT, WIDTH, 3)
    assert chunks[0].times.dtype == np.float64 and chunks[0].indices.dtype == np.int64
    frames = list(video)
    np.testing.assert_array_equal(np.concatenate([c.images for c in chunks]),
                                  np.stack([f.image for f in frames]))
    np.testing.assert_array_equal(np.concatenate([c.times for c in chunks]),
                                  [f.time for f in frames])
    np.testing.assert_array_equal(np.concatenate([c.indices for c in chunks]), np.arange(30))
    assert [len(c.indices) for c in video.chunks(64)] == [30]


def test_iterating_twice_gives_the_same_frames(video_file: Path) -> None:
    video = VideoSource(video_file)
    first = np.concatenate([chunk.images for chunk in video.chunks(8)])
    second = np.concatenate([chunk.images for chunk in video.chunks(8)])
    np.testing.assert_array_equal(first, second)


def test_truncated_file_yields_prefix_and_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_video(tmp_path / "cut.avi", 40, "MJPG")
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])
    video = VideoSource(path)
    assert video.frame_count == 40
    with caplog.at_level(logging.WARNING, logger="coreaffect.video"), \
            pytest.warns(UserWarning, match=r"cut\.avi.*stopped at frame index (\d+).*40 frames"):
        frames = list(video)
    assert 0 < len(frames) < 40
    assert [decode_number(f.image) for f in frames] == list(range(len(frames)))
    assert f"index {len(frames)}" in caplog.text


def _avi_chunks(data: bytes) -> tuple[int, int, list[tuple[bytes, bytes]]]:
    """An AVI's ``movi`` list start, ``idx1`` start and (tag, payload) of its stream chunks."""
    movi, index = data.find(b"movi"), data.find(b"idx1")
    chunks, at = [], movi + 4
    while at < index - 8:
        size = int.from_bytes(data[at + 4:at + 8], "little")
        chunks.append((data[at:at + 4], data[at + 8:at + 8 + size]))
        at += 8 + size + (size & 1)
    return movi, index, chunks


def _drop_frames(path: Path, dropped: set[int]) -> None:
    """Rewrite an MJPG AVI with the chunks of frames ``dropped`` empty, as a capture program
    writes the frames it dropped: the container keeps their places, with no picture."""
    data = path.read_bytes()
    movi, _, chunks = _avi_chunks(data)
    body, entries = bytearray(b"movi"), bytearray()
    for k, (tag, payload) in enumerate(chunks):
        payload = b"" if k in dropped else payload
        entries += tag + (16 if payload else 0).to_bytes(4, "little")
        entries += len(body).to_bytes(4, "little") + len(payload).to_bytes(4, "little")
        body += tag + len(payload).to_bytes(4, "little") + payload + b"\0" * (len(payload) & 1)
    out = bytearray(data[:movi - 8]) + b"LIST" + len(body).to_bytes(4, "little") + body
    out += b"idx1" + len(entries).to_bytes(4, "little") + entries
    out[4:8] = (len(out) - 8).to_bytes(4, "little")
    path.write_bytes(bytes(out))


def test_undecodable_frames_are_gaps_and_the_rest_is_read(tmp_path: Path) -> None:
    path = write_video(tmp_path / "bad.avi", 30, "MJPG")
    data = bytearray(path.read_bytes())
    starts = [k for k in range(len(data) - 1) if data[k:k + 2] == b"\xff\xd8"]  # JPEG starts
    for frame in (0, 12):
        data[starts[frame]:starts[frame] + 300] = bytes(300)  # its picture cannot be decoded
    path.write_bytes(bytes(data))
    video = VideoSource(path)
    assert video.size == (WIDTH, HEIGHT)  # from the first frame that decodes
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frames = list(video)
    # the first frame is no row at all: the video starts at the first frame that decodes
    assert [str(w.message) for w in caught] == [
        f"{path}: its first 1 frame(s) could not be decoded; the video starts at frame index 1, "
        "0.05 s",
        f"{path}: 1 frame(s) could not be decoded or were dropped by the container (index 12); "
        "they are read as frames without a face"]
    expected = [k for k in range(30) if k not in (0, 12)]
    assert [f.index for f in frames] == expected
    assert [decode_number(f.image) for f in frames] == expected
    np.testing.assert_allclose([f.time for f in frames], np.array(expected) / 20.0)


def test_a_file_cut_short_counts_the_frames_it_gave(tmp_path: Path) -> None:
    path = write_video(tmp_path / "cut.avi", 30, "MJPG")
    data = bytearray(path.read_bytes())
    starts = [k for k in range(len(data) - 1) if data[k:k + 2] == b"\xff\xd8"]  # JPEG starts
    for frame in (0, *range(20, 30)):  # the first frame, and the last ten, cannot be decoded
        data[starts[frame]:starts[frame] + 300] = bytes(300)
    path.write_bytes(bytes(data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frames = list(VideoSource(path))
    assert [f.index for f in frames] == list(range(1, 20))
    assert [str(w.message) for w in caught if "stopped" in str(w.message)] == [
        f"{path}: decoding stopped at frame index 20, but the container announces 30 frames "
        "(truncated or corrupt file); 19 frames were read"]


def test_an_undecodable_frame_after_a_gap_does_not_end_the_file(tmp_path, monkeypatch):
    """A container that holds 40 frames at 25 Hz, with no frames in the timestamps' slots 10 to
    19 (a phone's variable rate, or frames dropped): after the gap the grid's indices run ahead
    of the container's count, and a frame that cannot be decoded there is a gap, not the end."""
    import cv2

    from coreaffect import video as video_module

    held, bad = 40, 35  # frames the container holds; the read that fails (its 36th frame)

    class Capture:  # what OpenCV's capture gives for such a file
        def __init__(self, *args):
            self.reads, self.msec = 0, 0.0

        def isOpened(self):
            return True

        def read(self):
            self.reads += 1
            k = self.reads - 1
            if k >= held or k == bad:
                return False, None
            self.msec = 40.0 * (k if k < 10 else k + 10)
            return True, np.full((48, 64, 3), k, np.uint8)

        def get(self, prop):
            return {cv2.CAP_PROP_FRAME_COUNT: held, cv2.CAP_PROP_FPS: 25.0,
                    cv2.CAP_PROP_POS_MSEC: self.msec}.get(prop, 0.0)

        def release(self):
            pass

    path = tmp_path / "phone.mp4"
    path.write_bytes(b"not read: the capture above stands in for OpenCV's")
    monkeypatch.setattr(video_module.cv2, "VideoCapture", Capture)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frames = list(VideoSource(path))
    shown = [k for k in range(held) if k != bad]
    assert [int(f.image[0, 0, 0]) for f in frames] == shown  # the frames after it too
    assert [f.index for f in frames] == [k if k < 10 else k + 10 for k in shown]
    assert [str(w.message) for w in caught] == [
        f"{path}: 11 frame(s) could not be decoded or were dropped by the container (index "
        "10, 11, 12, 13, 14 and 6 more); they are read as frames without a face"]


def test_frames_a_container_dropped_leave_gaps_and_later_frames_keep_their_times(
        tmp_path: Path) -> None:
    path = write_video(tmp_path / "drop.avi", 30, "MJPG")
    _drop_frames(path, {10, 11, 12})
    with pytest.warns(UserWarning, match=r"3 frame\(s\).*dropped.*index 10, 11, 12\)") as caught:
        frames = list(VideoSource(path))
    assert not [w for w in caught if "stopped" in str(w.message)]  # nothing is cut short
    kept = [k for k in range(30) if k not in (10, 11, 12)]
    assert [decode_number(f.image) for f in frames] == kept  # pictures as they were written
    assert [f.index for f in frames] == kept
    np.testing.assert_allclose([f.time for f in frames], np.array(kept) / 20.0)


def _retimed_mp4(path: Path, steps: list[tuple[int, float]]) -> Path:
    """An mp4 of ``sum(counts)`` frames whose timestamps advance by ``factor`` times the written
    step for each ``(count, factor)``: its ``stts`` box rewritten, as a phone's variable rate."""
    write_video(path, sum(count for count, _ in steps), "mp4v", fps=25.0)
    data = bytearray(path.read_bytes())

    def boxes(start: int, end: int, names: list[str]) -> list[tuple[int, int]]:
        while start < end:
            size, kind = int.from_bytes(data[start:start + 4], "big"), data[start + 4:start + 8]
            if kind.decode() == names[0]:
                return [(start, size)] + (boxes(start + 8, start + size, names[1:])
                                          if names[1:] else [])
            start += size
        raise AssertionError(f"no {names[0]} box")

    chain = boxes(0, len(data), ["moov", "trak", "mdia", "minf", "stbl", "stts"])
    start, size = chain[-1]
    delta = int.from_bytes(data[start + 20:start + 24], "big")  # the written step, one entry
    body = (0).to_bytes(4, "big") + len(steps).to_bytes(4, "big") + b"".join(
        count.to_bytes(4, "big") + round(delta * factor).to_bytes(4, "big")
        for count, factor in steps)
    box = (8 + len(body)).to_bytes(4, "big") + b"stts" + body
    data[start:start + size] = box
    for outer, outer_size in chain[:-1]:  # the boxes around it grow with it
        data[outer:outer + 4] = (outer_size + len(box) - size).to_bytes(4, "big")
    assert data.find(b"mdat") < chain[0][0]  # the frames come first: their offsets stay right
    path.write_bytes(bytes(data))
    return path


def test_a_variable_frame_rate_is_named_with_what_it_does_to_the_frames(tmp_path: Path) -> None:
    path = _retimed_mp4(tmp_path / "phone.mp4", [(20, 1.0), (20, 0.5)])  # 25 fps, then 50
    video = VideoSource(path)
    with pytest.warns(UserWarning, match=r"phone\.mp4: a variable frame rate: \d+ frame\(s\) "
                                         r"came faster .* -vsync cfr") as caught:
        frames = list(video)
    assert not [w for w in caught if "could not be decoded" in str(w.message)]
    assert [decode_number(f.image) for f in frames] == list(range(40))  # every frame, in order
    assert all(np.diff([f.index for f in frames]) > 0)


def test_a_rate_the_container_cannot_give_is_taken_from_the_timestamps(tmp_path: Path) -> None:
    """1000 Hz is what Matroska and WebM report without a rate; a file may really have it."""
    path = write_video(tmp_path / "fast.avi", 40, "MJPG", fps=1000.0)
    said = r"fast\.avi: its container's frame rate \(1000\) is not usable; its frames' "
    with pytest.warns(UserWarning, match=said + "timestamps give 1000 Hz") as caught:
        video = VideoSource(path)
    frames = list(video)
    assert not [w for w in caught if "variable frame rate" in str(w.message)]
    assert video.fps == pytest.approx(1000.0) and [f.index for f in frames] == list(range(40))
    np.testing.assert_allclose([f.time for f in frames], np.arange(40) / 1000.0)
    assert [decode_number(f.image) for f in frames] == list(range(40))


def test_a_given_file_rate_replaces_the_containers(video_file: Path) -> None:
    with pytest.warns(UserWarning, match="container says 20 Hz; timestamps use the 30 Hz"):
        video = VideoSource(video_file, file_fps=30.0)
    frames = list(video)
    assert video.fps == 30.0 and [f.index for f in frames] == list(range(30))
    np.testing.assert_allclose([f.time for f in frames], np.arange(30) / 30.0)
    with pytest.raises(ValueError, match="file_fps"):
        VideoSource(video_file, file_fps=float("nan"))


def test_open_source_gives_a_file_the_rate_asked_for_and_takes_numpy_camera_indices(
        video_file: Path) -> None:
    from coreaffect.corpus import open_source

    assert open_source(video_file, VideoConfig()).fps == pytest.approx(20.0)
    with pytest.warns(UserWarning, match="timestamps use the 30 Hz given"):
        assert open_source(video_file, VideoConfig(), fps=30.0).fps == 30.0
    with pytest.raises(VideoError, match="camera"):
        open_source(np.int64(57), VideoConfig())  # no such device, and not a path


def test_complete_file_does_not_warn(video_file: Path, recwarn: pytest.WarningsRecorder) -> None:
    list(VideoSource(video_file))
    assert not [w for w in recwarn if "stopped" in str(w.message)]


def test_text_file_renamed_mp4_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 50)
    with pytest.raises(VideoError, match="notes.mp4"):
        VideoSource(path)


def test_missing_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="nothing.mp4.*no such file"):
        VideoSource(tmp_path / "nothing.mp4")


@pytest.mark.filterwarnings("ignore:.*frame numbers step by")  # sparse on purpose
def test_folder_natural_sort_gaps_first_index_and_fps(tmp_path: Path) -> None:
    folder = tmp_path / "video7"
    folder.mkdir()
    for number in (10, 2, 1):  # lexical order would put 10 before 2
        write_png(folder / f"{number}.png", coded_frame(number))
    (folder / "notes.txt").write_text("not a frame")
    video = VideoSource(folder, fps=10, first_index=1)
    assert (video.kind, video.name, video.frame_count, video.fps) == ("folder", "video7", 3, 10.0)
    assert video.size == (WIDTH, HEIGHT)
    frames = list(video)
    assert [f.index for f in frames] == [0, 1, 9]
    assert [f.time for f in frames] == pytest.approx([0.0, 0.1, 0.9])
    for frame, number in zip(frames, (1, 2, 10), strict=True):
        np.testing.assert_array_equal(frame.image, coded_frame(number))  # lossless: exact
    (chunk,) = list(video.chunks(5))
    np.testing.assert_array_equal(chunk.indices, [0, 1, 9])


def test_frame_numbers_and_first_indices_too_large_to_count_are_named(tmp_path: Path) -> None:
    write_png(tmp_path / "00001.png", coded_frame(1))
    write_png(tmp_path / "still_99999999999999999999.png", coded_frame(2))
    with pytest.raises(VideoError, match=r"still_9+\.png: frame number 9+ is too large"):
        VideoSource(tmp_path)
    for first in (-1, 2**62):
        with pytest.raises(ValueError, match="first_index must be in"):
            VideoSource(tmp_path, first_index=first)


def test_folder_zero_based_default_fps(tmp_path: Path) -> None:
    for number in range(3):
        write_png(tmp_path / f"{number:05d}.png", coded_frame(number))
    video = VideoSource(tmp_path)
    assert video.fps == 25.0
    assert [(f.index, f.time) for f in video] == [(0, 0.0), (1, 0.04), (2, 0.08)]


@pytest.mark.filterwarnings("ignore:.*frame numbers step by")  # sparse on purpose
@settings(max_examples=15, deadline=None)
@given(numbers=st.sets(st.integers(1, 1500), min_size=1, max_size=8), pad=st.integers(0, 6),
       first=st.integers(0, 1))  # gaps up to 60 s at 25 Hz: longer ones in so few are refused
def test_folder_order_is_numeric(numbers: set[int], pad: int, first: int) -> None:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        for number in numbers:
            cv2.imwrite(str(folder / f"frame_{number:0{pad}d}.jpg"),
                        np.zeros((4, 4, 3), dtype=np.uint8))
        indices = [f.index for f in VideoSource(folder, first_index=first)]
    assert indices == [n - first for n in sorted(numbers)]


def test_empty_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="no images"):
        VideoSource(tmp_path)


def test_unreadable_image_in_folder_is_an_error(tmp_path: Path) -> None:
    write_png(tmp_path / "0.png", coded_frame(0))
    (tmp_path / "1.png").write_bytes(b"\x89PNG but broken")
    video = VideoSource(tmp_path)
    with pytest.raises(VideoError, match="1.png"):
        list(video)


def test_folder_problems_are_errors(tmp_path: Path) -> None:
    write_png(tmp_path / "1.png", coded_frame(1))
    write_png(tmp_path / "01.jpg", coded_frame(1))
    with pytest.raises(VideoError, match="frame number 1"):
        VideoSource(tmp_path)
    (tmp_path / "01.jpg").unlink()
    with pytest.raises(VideoError, match="first_index"):
        VideoSource(tmp_path, first_index=2)
    write_png(tmp_path / "2.png", np.zeros((10, 10, 3), dtype=np.uint8))
    with pytest.raises(VideoError, match="2.png.*10x10"):
        list(VideoSource(tmp_path))


def test_from_config_close_and_context_manager(video_file: Path) -> None:
    with VideoSource.from_config(video_file, VideoConfig(chunk_size=5)) as video:
        assert video.chunk_size == 5
        stream = video.chunks()
        next(stream)
    with pytest.raises(VideoError, match="closed"):
        next(iter(video))


def test_bad_arguments(video_file: Path) -> None:
    with pytest.raises(ValueError):
        VideoSource(video_file, fps=0)
    with pytest.raises(ValueError):
        VideoSource(video_file, chunk_size=0)


def test_camera_that_cannot_be_opened_is_an_error() -> None:
    with pytest.raises(VideoError, match="camera"):
        VideoSource(57)  # no such device


class _FlakyCamera:
    """A capture whose reads give a frame or nothing, in the order of ``reads``, then
    nothing."""

    def __init__(self, reads: str) -> None:
        self.reads = list(reads)

    def read(self):
        if self.reads and self.reads.pop(0) == "+":
            return True, np.full((8, 12, 3), 90, np.uint8)
        return False, None

    def get(self, prop):
        return {cv2.CAP_PROP_FRAME_WIDTH: 12, cv2.CAP_PROP_FRAME_HEIGHT: 8}.get(prop, 0.0)

    def release(self) -> None:
        pass


def test_a_camera_goes_on_past_dropped_frames_and_says_when_it_ends(monkeypatch) -> None:
    from coreaffect import video as video_module

    reads = "+" + "-" * 3 + "++" + "-" * video_module._CAMERA_RETRIES + "+" + "-" * 40 + "+"
    monkeypatch.setattr(video_module, "_CAMERA_PAUSE", 0.0)
    monkeypatch.setattr(VideoSource, "_camera_capture", lambda self: _FlakyCamera(reads))
    camera = VideoSource(0)
    with pytest.warns(UserWarning, match=r"camera0: no frame in 26 reads in a row .*the stream "
                                         r"ends after 4 frames"):
        frames = list(camera)
    assert [f.index for f in frames] == [0, 1, 2, 3]  # 25 failures in a row are dropped frames
    assert all(b.time >= a.time for a, b in zip(frames, frames[1:], strict=False))

    class Closing(_FlakyCamera):  # closed by the user during the read that fails once too often
        def read(self):
            if not self.reads:
                camera.close()
            return super().read()

    retries = "-" * video_module._CAMERA_RETRIES
    monkeypatch.setattr(VideoSource, "_camera_capture", lambda self: Closing("+" + retries))
    camera = VideoSource(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the stop is the user's: nothing to warn about
        assert len(list(camera)) == 1


def test_a_change_of_frame_size_starts_a_new_chunk(video_file: Path) -> None:
    """A camera or stream that switches resolution (frame folders refuse it; see above)."""
    video = VideoSource(video_file, chunk_size=4)

    def switching():  # BGR frames 0-1 at 32 x 32, frames 2-4 at 48 x 40, each its own grey
        for i in range(5):
            side = (32, 32) if i < 2 else (48, 40)
            yield np.full((*side, 3), 40 * i, np.uint8), i / 25, i

    video._bgr_frames = switching
    chunks = list(video.chunks())
    assert [c.images.shape for c in chunks] == [(2, 32, 32, 3), (3, 48, 40, 3)]
    assert [int(image.mean()) for c in chunks for image in c.images] == [0, 40, 80, 120, 160]
    np.testing.assert_array_equal(np.concatenate([c.indices for c in chunks]), np.arange(5))


def test_a_folder_numbered_by_timestamps_is_warned_about(tmp_path: Path) -> None:
    folder = tmp_path / "cam"
    folder.mkdir()
    for k in range(4):  # milliseconds, 40 apart: consecutive frames numbered by their time
        write_png(folder / f"cam_{1732500000000 + 40 * k}.png", coded_frame(k))
    with pytest.warns(UserWarning, match="step by 40"):
        VideoSource(folder, first_index=1732500000000)
    consecutive = tmp_path / "consecutive"
    consecutive.mkdir()
    for k in (0, 1, 2, 5):  # a gap is not a step
        write_png(consecutive / f"{k:05d}.png", coded_frame(k))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        VideoSource(consecutive)


def write_tiny(folder: Path, names: list[str]) -> Path:
    """Write an 8 x 8 grey PNG under each of ``names`` in ``folder`` (made if needed)."""
    folder.mkdir(exist_ok=True)
    for name in names:
        assert cv2.imwrite(str(folder / name), np.full((8, 8, 3), 100, dtype=np.uint8))
    return folder


def test_a_stray_image_far_beyond_the_numbering_is_an_error(tmp_path: Path) -> None:
    """One ``IMG_20240101`` beside frames 1 to 75 would be 20 million missing frames."""
    frames = [f"{n:05d}.png" for n in range(1, 76)]
    folder = write_tiny(tmp_path / "stray", [*frames, "IMG_20240101.png"])
    with pytest.raises(VideoError, match=r"stray.*75 \(00075.png\) to 20240101 "
                       r"\(IMG_20240101.png\).*20240025 frames.*only image after the gap") as error:
        VideoSource(folder, first_index=1)  # refused on opening, before any frame
    assert error.value.source == folder
    # a stray numbered low, before a video numbered high: the images before the gap are named
    numbers = range(5000, 5010)
    folder = write_tiny(tmp_path / "cover", [*(f"{n}.png" for n in numbers), "cover_1.png"])
    with pytest.raises(VideoError, match="4998 frames.*cover_1.png, the only image before"):
        VideoSource(folder)


def test_the_gap_rule_keeps_short_gaps_and_well_filled_folders(tmp_path: Path) -> None:
    """Refused: a gap over a minute (60 frames at 1 Hz) with more missing frames than images
    and at most five images on one side."""
    names = [f"{n}.png" for n in range(10)]
    short = write_tiny(tmp_path / "short", [*names, "70.png"])  # 60 missing: one minute
    assert [f.index for f in VideoSource(short, fps=1)][-2:] == [9, 70]
    long = write_tiny(tmp_path / "long", [*names, "71.png"])  # 61 missing: over a minute
    with pytest.raises(VideoError, match="61 frames"):
        VideoSource(long, fps=1)
    assert VideoSource(long, fps=2).frame_count == 11  # 30.5 s at 2 Hz: a gap, as before
    filled = write_tiny(tmp_path / "filled", [f"{n}.png" for n in (*range(40), *range(101, 141))])
    assert [f.index for f in VideoSource(filled, fps=1)][39:41] == [39, 101]  # 61 < 80 images
    sparse = write_tiny(tmp_path / "sparse", [f"{n}.png" for n in (*range(30), *range(101, 131))])
    assert VideoSource(sparse, fps=1).frame_count == 60  # 71 missing > 60 images, but 30 each
    # side: real stretches around a long absence of the face, read as a gap
    few = write_tiny(tmp_path / "few", [f"{n}.png" for n in (*range(5), *range(101, 106))])
    with pytest.raises(VideoError, match="96 frames.*the 5 images after the gap "
                       r"\(101.png, 102.png, 103.png and 2 more\)"):
        VideoSource(few, fps=1)  # at most five on each side; even sides: the later named


def test_hidden_files_in_a_folder_are_not_frames(tmp_path: Path) -> None:
    """macOS leaves ``._00001.jpg`` resource forks beside the frames on foreign disks."""
    folder = write_tiny(tmp_path / "mac", ["00001.png", "00002.png", "00003.png",
                                           ".hidden_9.png", ".thumbnail.png"])
    (folder / "._00001.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble, not an image")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    video = VideoSource(folder, first_index=1)
    assert video.frame_count == 3
    assert [f.index for f in video] == [0, 1, 2]


def test_frame_rate_is_the_median_rate_over_runs_of_steps_between_decoded_frames():
    indices = np.arange(100)
    assert frame_rate([indices / 29.97], [indices]) == 29.97  # not 29.969999999999995
    kept = np.r_[0:40, 70:100]  # 30 frames missing: one step of 31 frames in 31 / 25 s
    assert frame_rate([kept / 25.0], [kept]) == 25.0
    jitter = np.random.default_rng(0).uniform(-0.004, 0.004, 200)  # a camera's read times
    camera = np.arange(200) / 30.0 + jitter
    assert frame_rate([camera], [np.arange(200)]) == pytest.approx(30.0, rel=0.03)
    # pooled over videos: the median over all their runs of steps (2 at 25 fps, 1 at 50)
    assert frame_rate([np.arange(10) / 25.0, np.arange(5) / 50.0],
                      [np.arange(10), np.arange(5)]) == 25.0
    # a camera's frames read in bursts of 4 (its buffer, after slow frames), 25 a second
    bursts = np.repeat(np.arange(10) * 0.16, 4) + np.tile([0, 1e-4, 2e-4, 3e-4], 10)
    assert frame_rate([bursts], [np.arange(40)]) == pytest.approx(25.0, rel=0.01)
    slow_start = np.r_[0.0, 0.5 + np.arange(31) / 25]  # the first read takes half a second
    assert frame_rate([slow_start], [np.arange(32)]) == 25.0
    with pytest.raises(InputError, match=r"times and indices must be \(T,\) each"):
        frame_rate([np.arange(3) / 25], [np.arange(4)])
    with pytest.raises(InputError, match="for as many videos, got 1 and 0"):
        frame_rate([np.arange(3) / 25], [])
    # as many windows at 25 as at 50: a rate the videos have, not 37.5 between them
    assert frame_rate([np.arange(17) / 25, np.arange(17) / 50], [np.arange(17)] * 2) == 25.0
    assert frame_rate([np.zeros(1)], [np.zeros(1, np.int64)]) is None  # one frame: no step
    assert frame_rate([np.zeros(3)], [np.arange(3)]) is None  # no time passes
    assert frame_rate([], []) is None
