"""Experiments on a dataset folder: what ``coreaffect train`` and ``coreaffect evaluate`` do.

:func:`train_run` reproduces the paper's protocol on any supported dataset: discover the
recordings, split them by video (held-out test videos, and validation videos among the rest),
crop faces once into a cache, cut dense training sequences, train the hidden route, and write the
run directory, including ``split.json`` (which videos went where, and the seed).
:func:`evaluate_run` scores a run on the test videos it held out (or on all videos of another
dataset) and can write the metrics as JSON.

Face crops are cached in ``RUN/crops`` unless another folder is given; they are stored at the
network's input size (the ``lite`` preset: 24 x 24), unless a data configuration says otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable
from pathlib import Path

from coreaffect.checkpoint import atomic_write, load_data_config, load_model
from coreaffect.clips import ClipDataset
from coreaffect.config import DataConfig
from coreaffect.corpus import (
    CropCache,
    LabelledVideo,
    Recording,
    discover,
    load_recording,
    split_recordings,
)
from coreaffect.errors import CoreAffectError
from coreaffect.evaluation import evaluate_hidden_route
from coreaffect.hidden_route import MODELS
from coreaffect.metrics import MetricTable
from coreaffect.synthetic import annotation_delay
from coreaffect.training import TrainConfig, TrainResult, train_hidden_route

__all__ = ["DENSE_LENGTH", "evaluate_run", "load_videos", "train_run"]

logger = logging.getLogger(__name__)

DENSE_LENGTH = 400  # frames per training sequence (16 s at 25 fps): long enough for the label
# to move within it, which the within-sequence CCC loss needs; ~95 scored windows per trunk pass


def load_videos(recordings: Iterable[Recording], config: DataConfig, cache: CropCache,
                progress: bool = False, what: str = "videos") -> list[LabelledVideo]:
    """Face crops and per-frame labels of recordings, through the cache."""
    recordings = list(recordings)
    if progress:
        from tqdm import tqdm

        recordings = tqdm(recordings, desc=f"cropping faces ({what})", unit="video")
    return [load_recording(r, config, cache) for r in recordings]


def train_run(data: str | Path, run: str | Path, *, format: str = "auto", preset: str = "lite",
              epochs: int | None = None, max_minutes: float | None = None, device: str = "cpu",
              seed: int = 0, test_videos: int | None = None, val_videos: int | None = None,
              data_config: DataConfig | str | Path | None = None,
              cache: str | Path | None = None, resume: bool = False,
              progress: bool = False) -> TrainResult:
    """Split a dataset by video, train the hidden route, and write the run directory.

    Args:
        data: Dataset folder (see :func:`~coreaffect.corpus.discover`).
        run: Run directory to write.
        format: Annotation format, or ``"auto"``.
        preset: Network preset.
        epochs: Most epochs; ``None``: :class:`~coreaffect.training.TrainConfig`'s default.
        max_minutes: Training budget in minutes.
        device: Where to train.
        seed: Seed of the split and of training.
        test_videos: Videos held out for evaluation; ``None``: 10/23 of the corpus.
        val_videos: Training videos used for validation; ``None``: a fifth, at least one.
        data_config: A :class:`~coreaffect.config.DataConfig` or a TOML file; ``None`` uses the
            defaults with crops at the network's input size (and, for a synthetic corpus, the
            labels shifted by its annotators' mean delay, :func:`~coreaffect.synthetic.
            annotation_delay`).
        cache: Face-crop cache folder; ``None`` is ``RUN/crops``.
        resume: Continue an interrupted run.
        progress: Show progress bars.

    Returns:
        The :class:`~coreaffect.training.TrainResult`.
    """
    if preset not in MODELS:
        raise CoreAffectError(f"unknown preset {preset!r}; available: {sorted(MODELS)}")
    run = Path(run)
    size = MODELS[preset].input_size
    if data_config is None:
        config = DataConfig()
        config = dataclasses.replace(config, faces=dataclasses.replace(config.faces,
                                                                       crop_size=size))
        delay = annotation_delay(data)
        if delay is not None:  # a synthetic corpus knows its annotators' mean delay
            config = dataclasses.replace(config, annotations=dataclasses.replace(
                config.annotations, delay=delay))
            logger.info("synthetic corpus: labels shifted by the annotators' delay, %g s", delay)
    elif isinstance(data_config, DataConfig):
        config = data_config
    else:
        config = DataConfig.from_toml(data_config)
    recordings = discover(data, format)
    train, test = split_recordings(recordings, test_videos, seed=seed)
    if not train:
        raise CoreAffectError(f"{data}: no video left for training after holding out "
                              f"{len(test)} for testing")
    n_val = max(1, round(len(train) / 5)) if val_videos is None else val_videos
    n_val = min(n_val, len(train) - 1)  # keep at least one training video
    fit, val = split_recordings(train, n_val, seed=seed)
    split = {"data": str(Path(data).resolve()), "format": recordings[0].format, "seed": seed,
             "train": [r.id for r in fit], "val": [r.id for r in val],
             "test": [r.id for r in test]}
    previous = run / "split.json"
    if resume and previous.exists() and json.loads(previous.read_text()) != split:
        raise CoreAffectError(f"{previous}: the run was split differently; resume with the same "
                              "data, format, seed and video counts")
    atomic_write(previous, json.dumps(split, indent=2) + "\n")
    logger.info("%d training, %d validation, %d test videos", len(fit), len(val), len(test))
    crops = CropCache(cache if cache is not None else run / "crops", config.faces,
                      config.video.chunk_size)
    fit_videos = load_videos(fit, config, crops, progress, "training")
    val_videos_loaded = load_videos(val, config, crops, progress, "validation")
    sequences = ClipDataset(fit_videos, config.clips, size=size, augment=True,
                            dense_length=DENSE_LENGTH, random_state=seed)
    train_config = TrainConfig(preset=preset, max_minutes=max_minutes, seed=seed, device=device,
                               **({} if epochs is None else {"epochs": epochs}))
    return train_hidden_route(sequences, val_videos_loaded or None, run, train_config,
                              data_config=config, resume=resume, progress=progress)


def evaluate_run(run: str | Path, data: str | Path, *, format: str = "auto",
                 subset: str = "test", device: str = "cpu", cache: str | Path | None = None,
                 json_path: str | Path | None = None, progress: bool = False) -> MetricTable:
    """Per-video and pooled metrics of a run's hidden route on a dataset.

    Args:
        run: Run directory.
        data: Dataset folder.
        format: Annotation format, or ``"auto"``.
        subset: ``"test"``: the videos the run held out (from ``RUN/split.json``); ``"all"``:
            every video of ``data``.
        device: Where to compute.
        cache: Face-crop cache folder; ``None`` is ``RUN/crops``.
        json_path: Where to write the metrics as JSON (``{"raw": {dim: {metric: ...}}}``).
        progress: Show progress bars.

    Returns:
        The metrics of the hidden route's per-frame estimates.
    """
    run = Path(run)
    model = load_model(run, device)
    config = load_data_config(run)
    recordings = discover(data, format)
    if subset == "test":
        split_path = run / "split.json"
        if not split_path.exists():
            raise CoreAffectError(f"{split_path}: missing; use --subset all to score every video")
        held_out = set(json.loads(split_path.read_text())["test"])
        recordings = [r for r in recordings if r.id in held_out]
        if not recordings:
            raise CoreAffectError(f"{data}: none of the run's test videos are here; use "
                                  "--subset all to score every video of this dataset")
    elif subset != "all":
        raise CoreAffectError(f"subset must be 'test' or 'all', got {subset!r}")
    crops = CropCache(cache if cache is not None else run / "crops", config.faces,
                      config.video.chunk_size)
    videos = load_videos(recordings, config, crops, progress, subset)
    table = evaluate_hidden_route(model, videos, device)
    if json_path is not None:
        atomic_write(json_path, json.dumps({"raw": table.to_dict()}, indent=2) + "\n")
    return table
