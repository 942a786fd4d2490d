"""Speed of the data path: video decoding, then decoding plus face cropping.

Writes a 640x480, 25 fps mp4 in a temporary folder, in which a face (the astronaut photograph that
ships with scikit-image) drifts over a cluttered background, then times

* ``VideoSource.chunks`` alone (decode and BGR->RGB), and
* ``VideoSource.chunks`` followed by ``FaceCropper.crop`` with the default ``FaceConfig``,

and prints frames per second for each; then the time to read a 30-minute RECOLA annotation
(two files of 45,000 rows with six raters each, the longest recordings of the public corpora are
of that order). With ``--no-face`` the video has the same size, length and
background but no face in any frame (the background alone, standing still): the slow case of the
cropper, whose detector then searches the whole frame at every size at each detection instead of
the tracked face's neighbourhood. Run::

    python benchmarks/bench_data_path.py            # 500 frames
    python benchmarks/bench_data_path.py --quick    # 100 frames
    python benchmarks/bench_data_path.py --no-face  # 500 frames without a face
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from skimage import data

from coreaffect.config import FaceConfig
from coreaffect.faces import FaceCropper
from coreaffect.video import VideoSource

WIDTH, HEIGHT, FPS = 640, 480, 25.0
FACE_REGION = (slice(20, 230), slice(130, 320))  # rows, columns of the astronaut's head


def _background(rng: np.random.Generator) -> np.ndarray:
    """A cluttered ``(H, W, 3)`` RGB background: tiled photographs plus random boxes and lines."""
    tiles = [data.coffee(), data.chelsea(), data.rocket(), data.hubble_deep_field()]
    canvas = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    half_w, half_h = WIDTH // 2, HEIGHT // 2
    for k, tile in enumerate(tiles):
        row, col = divmod(k, 2)
        canvas[row * half_h:(row + 1) * half_h, col * half_w:(col + 1) * half_w] = cv2.resize(
            tile, (half_w, half_h), interpolation=cv2.INTER_AREA)
    for _ in range(40):
        x, y = rng.integers(0, WIDTH), rng.integers(0, HEIGHT)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            cv2.rectangle(canvas, (int(x), int(y)), (int(x) + 30, int(y) + 20), colour, -1)
        else:
            end = (int(rng.integers(0, WIDTH)), int(rng.integers(0, HEIGHT)))
            cv2.line(canvas, (int(x), int(y)), end, colour, 2)
    return canvas


def write_video(path: Path, frames: int, seed: int = 0, face: bool = True) -> None:
    """Write the benchmark video: the face moves on a slow Lissajous path over the clutter
    (``face=False``: the clutter alone)."""
    rng = np.random.default_rng(seed)
    background = _background(rng)
    head = data.astronaut()[FACE_REGION]
    head = cv2.resize(head, (head.shape[1] * 3 // 4, head.shape[0] * 3 // 4))
    fh, fw = head.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise SystemExit(f"cannot write {path} with the mp4v codec")
    for k in range(frames):
        t = k / FPS
        x = int((WIDTH - fw) / 2 + 150 * np.sin(0.4 * t))
        y = int((HEIGHT - fh) / 2 + 80 * np.sin(0.6 * t + 1.0))
        frame = background.copy()
        if face:
            frame[y:y + fh, x:x + fw] = head
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=500, help="frames in the test video")
    parser.add_argument("--quick", action="store_true", help="100 frames, for a smoke test")
    parser.add_argument("--chunk-size", type=int, default=64, help="frames per chunk")
    parser.add_argument("--no-face", action="store_true",
                        help="a video of the background alone, no face in any frame")
    args = parser.parse_args()
    frames = 100 if args.quick else args.frames

    print(f"OpenCV {cv2.__version__}, {cv2.getNumThreads()} threads, {frames} frames "
          f"{WIDTH}x{HEIGHT} at {FPS:g} fps, {'no face' if args.no_face else 'a moving face'}")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.mp4"
        write_video(path, frames, face=not args.no_face)
        video = VideoSource(path)

        start = time.perf_counter()
        decoded = sum(len(chunk.indices) for chunk in video.chunks(args.chunk_size))
        decode_seconds = time.perf_counter() - start

        config = FaceConfig()
        cropper = FaceCropper(config)
        start = time.perf_counter()
        parts = list(cropper.crop_video(video, chunk_size=args.chunk_size))
        crop_seconds = time.perf_counter() - start
        video.close()

    found = np.concatenate([part.face_found for part in parts])
    print(f"decode:        {decoded / decode_seconds:8.1f} frames/s ({decoded} frames)")
    print(f"decode + crop: {len(found) / crop_seconds:8.1f} frames/s "
          f"(face found in {found.mean():.1%} of frames; detector={config.detector}, "
          f"detect_every={config.detect_every}, detection_width={config.detection_width})")
    rows, seconds = annotation_read()
    print(f"annotations:   {seconds:8.2f} s to read a 30-minute RECOLA recording ({rows} rows "
          "per dimension, 6 raters)")


def annotation_read() -> tuple[int, float]:
    """Write a 30-minute, 25 Hz RECOLA recording (valence and arousal files, six raters) and
    time ``read_annotations`` on it; ``(rows read, seconds)``."""
    from coreaffect.annotations import read_annotations

    rows = 30 * 60 * 25
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        for dimension in ("valence", "arousal"):
            (Path(folder) / dimension).mkdir()
            lines = ["time;" + ";".join(f"FM{k} " for k in range(1, 7))]
            lines += [f"{i * 0.04:.2f};" + ";".join(f"{v:.6f}" for v in row)
                      for i, row in enumerate(rng.uniform(-1, 1, (rows, 6)))]
            (Path(folder) / dimension / "P1.csv").write_text("\n".join(lines) + "\n")
        start = time.perf_counter()
        annotation = read_annotations(Path(folder) / "arousal" / "P1.csv")
        seconds = time.perf_counter() - start
    if annotation.values.shape != (rows, 2):
        raise SystemExit(f"read {annotation.values.shape[0]} rows of {rows}")
    return rows, seconds


if __name__ == "__main__":
    main()
