"""Why the synthetic corpus needs a spatiotemporal model: per-frame versus motion baselines.

On a synthetic corpus (default: the paper's 23 videos, 13 for training and 10 for test, by the
corpus's own split), face crops come from the data path (``coreaffect.corpus.load_recording`` with
the default Haar ``FaceCropper``), and 16-frame windows every 8 frames get the mean of their
per-frame labels as target (``coreaffect.clips.window_targets``), the labels read with the
corpus's mean annotator delay compensated (``AnnotationConfig(delay=rater_delay)``; ``--delay``
overrides it). Two ridge regressions
(scikit-learn ``Ridge`` on standardised features, its penalty chosen by
leave-videos-out cross-validation on the training videos) predict (valence, arousal) per window:

* **single frame**: the window's middle crop, grey, 24x24, each image standardised;
* **motion**: the mean absolute difference of consecutive 24x24 grey crops over the window, plus
  the window's mean image (both divided by the mean image's brightness).

It prints the concordance correlation coefficient (population statistics) on the held-out videos,
per video (mean over videos) and pooled, for both. Valence lives in the face's configuration, so
the single frame learns it; arousal lives mostly in motion (blinks, head jitter, talking), so only
the motion features learn it. Run::

    python benchmarks/synthetic_baselines.py              # 23 videos of 40 s
    python benchmarks/synthetic_baselines.py --quick      # 23 videos of 10 s
    python benchmarks/synthetic_baselines.py --root DIR   # an existing synthetic corpus
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from coreaffect.clips import window_targets
from coreaffect.config import AnnotationConfig, ClipConfig, DataConfig
from coreaffect.corpus import discover, load_recording
from coreaffect.crop_cache import CropCache
from coreaffect.metrics import ccc
from coreaffect.synthetic import MANIFEST, SynthConfig, read_truth, write_corpus

SIDE = 24  # features are SIDE x SIDE grey images
CLIPS = ClipConfig()  # 16-frame windows every 8 frames, as the hidden route's training uses


def _grey(crops: np.ndarray) -> np.ndarray:
    """(T, S, S, 3) uint8 RGB crops -> (T, SIDE, SIDE) float32 grey."""
    out = np.empty((len(crops), SIDE, SIDE), dtype=np.float32)
    for t, crop in enumerate(crops):
        grey = cv2.cvtColor(np.asarray(crop), cv2.COLOR_RGB2GRAY)
        out[t] = cv2.resize(grey, (SIDE, SIDE), interpolation=cv2.INTER_AREA)
    return out


def _features(args: tuple) -> tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame features, motion features and targets of one recording's windows, and the
    detector's hits: (found & visible, visible, found & not visible, not visible) frame counts."""
    recording, cache_dir, delay = args
    cache = CropCache(cache_dir) if cache_dir else None
    config = DataConfig(annotations=AnnotationConfig(delay=delay))
    video = load_recording(recording, config, cache)
    starts, targets = window_targets(video.labels, video.crops.face_found, CLIPS)
    grey = _grey(video.crops.crops)  # (T, SIDE, SIDE)
    windows = grey[starts[:, None] + np.arange(CLIPS.length)]  # (N, 16, SIDE, SIDE)
    middle = windows[:, CLIPS.length // 2].reshape(len(starts), -1)  # (N, SIDE * SIDE)
    middle = (middle - middle.mean(1, keepdims=True)) / (middle.std(1, keepdims=True) + 1e-6)
    mean = windows.mean(axis=1)  # (N, SIDE, SIDE)
    brightness = mean.mean(axis=(1, 2), keepdims=True) + 1e-6
    motion = np.abs(np.diff(windows, axis=1)).mean(axis=1) / brightness  # (N, SIDE, SIDE)
    both = np.concatenate([motion.reshape(len(starts), -1),
                           (mean / brightness).reshape(len(starts), -1)], axis=1)
    truth = read_truth(recording.video.parent.parent, recording.id)
    found = np.asarray(video.crops.face_found, dtype=bool)
    counts = np.array([(found & truth.face_visible).sum(), truth.face_visible.sum(),
                       (found & ~truth.face_visible).sum(), (~truth.face_visible).sum()])
    return recording.id, middle, both, targets, counts


def _fit_predict(train: list, test: list, column: int) -> list[np.ndarray]:
    """Fit one ridge per VA dimension, its penalty chosen by leave-videos-out CV; predict test."""
    x = np.concatenate([item[column] for item in train])
    y = np.concatenate([item[3] for item in train])
    groups = np.concatenate([np.full(len(item[3]), k) for k, item in enumerate(train)])
    predictions = [np.empty((len(item[3]), 2)) for item in test]
    for d in range(2):
        search = GridSearchCV(make_pipeline(StandardScaler(), Ridge()),
                              {"ridge__alpha": np.logspace(0, 6, 13)},
                              cv=GroupKFold(n_splits=min(5, len(train))),
                              scoring="neg_mean_squared_error")
        search.fit(x, y[:, d], groups=groups)
        for item, out in zip(test, predictions, strict=True):
            out[:, d] = np.clip(search.predict(item[column]), -1, 1)
    return predictions


def _scores(test: list, predictions: list[np.ndarray]) -> dict[str, float]:
    out = {}
    for d, dim in enumerate(("valence", "arousal")):
        per_video = [float(ccc(item[3][:, d], p[:, d]))
                     for item, p in zip(test, predictions, strict=True)]
        pooled = ccc(np.concatenate([item[3][:, d] for item in test]),
                     np.concatenate([p[:, d] for p in predictions]))
        out[f"{dim}_per_video"] = float(np.mean(per_video))
        out[f"{dim}_pooled"] = float(pooled)
    return out


def main() -> None:
    """Parse the arguments, build or read the corpus, fit both baselines, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, help="an existing synthetic corpus (else generated)")
    parser.add_argument("--videos", type=int, default=23)
    parser.add_argument("--seconds", type=float, default=None, help="video length (40, or 10 "
                        "with --quick)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--framing", choices=("tight", "wide"), default="tight")
    parser.add_argument("--quick", action="store_true", help="videos of 10 s")
    parser.add_argument("--cache", type=Path, help="face-crop cache folder (kept between runs)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--delay", type=float,
                        help="annotator delay to compensate, s (default: the corpus's mean)")
    parser.add_argument("--json", type=Path, help="also write the scores here")
    args = parser.parse_args()
    cv2.setNumThreads(1)  # before the workers fork: they inherit it (set after a fork, it hangs)
    if args.seconds is None:
        args.seconds = 10.0 if args.quick else 40.0
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        if args.root is None:
            config = SynthConfig(videos=args.videos, seconds=args.seconds, seed=args.seed,
                                 framing=args.framing)
            corpus = write_corpus(Path(tmp) / "corpus", config, workers=args.workers)
            root, (train_ids, test_ids) = corpus.root, corpus.split
            delay = config.rater_delay
            print(f"generated {len(corpus.ids)} videos of {args.seconds:g} s "
                  f"in {time.perf_counter() - started:.1f} s")
        else:
            root = args.root
            manifest = json.loads((root / MANIFEST).read_text())
            train_ids, test_ids = manifest["train"], manifest["test"]
            delay = manifest["config"]["rater_delay"]
        delay = delay if args.delay is None else args.delay
        recordings = {r.id: r for r in discover(root)}
        started = time.perf_counter()
        cache = str(args.cache) if args.cache else None
        jobs = [(recordings[i], cache, delay) for i in (*train_ids, *test_ids)]
        with ProcessPoolExecutor(args.workers) as pool:
            items = {item[0]: item for item in pool.map(_features, jobs)}
        print(f"cropped faces and built features in {time.perf_counter() - started:.1f} s")
    train = [items[i] for i in train_ids]
    test = [items[i] for i in test_ids]
    results = {}
    for name, column in (("single frame", 1), ("motion (16 frames)", 2)):
        results[name] = _scores(test, _fit_predict(train, test, column))
    hits = sum(item[4] for item in items.values())
    print(f"default Haar FaceCropper: face found in {hits[0] / hits[1]:.1%} of the {hits[1]} "
          f"frames where the face is visible, in {hits[2] / max(hits[3], 1):.1%} of the "
          f"{hits[3]} frames where it left the frame")
    print(f"\n{len(train)} training and {len(test)} test videos, "
          f"{sum(len(item[3]) for item in test)} test windows, labels shifted by {delay:g} s; "
          f"CCC on held-out videos\n")
    print(f"{'features':20s} {'valence/video':>14s} {'valence pooled':>15s} "
          f"{'arousal/video':>14s} {'arousal pooled':>15s}")
    for name, s in results.items():
        print(f"{name:20s} {s['valence_per_video']:14.3f} {s['valence_pooled']:15.3f} "
              f"{s['arousal_per_video']:14.3f} {s['arousal_pooled']:15.3f}")
    if args.json:
        results["face_found"] = {"visible": hits[0] / hits[1], "left": hits[2] / max(hits[3], 1)}
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
