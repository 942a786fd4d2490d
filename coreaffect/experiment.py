"""Experiments on a dataset folder: what ``coreaffect train``, ``refit`` and ``evaluate`` do.

:func:`train_run` reproduces the paper's protocol on any supported dataset: discover the
recordings, split them by video (held-out test videos, and validation videos among the rest),
crop faces once into a cache, cut dense training sequences, train the hidden route, then fit the
probabilistic stages (:func:`~coreaffect.stages.fit_core_affect`; :mod:`coreaffect.stages` says
which videos fit what, and why) into the same run directory, which also holds ``split.json``
(which videos went where, and the seed) and ``stages.json`` (what each stage was fitted on, with
which settings, and how long it took).
:func:`refit_run` fits those stages again, with other settings, into a new run directory.
:func:`evaluate_run` scores a run on the test videos it held out (or on all videos of another
dataset), stage by stage (``raw``, ``prior``, ``smoothed``, ``filtered``, ``lagged``), and can
write the metrics as JSON.

Face crops are cached in ``RUN/crops`` unless another folder is given; they are stored at the
network's input size (the ``lite`` preset: 24 x 24), unless a data configuration says otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from coreaffect.annotations import name_key
from coreaffect.bootstrap import min_resamples
from coreaffect.checkpoint import (
    atomic_write,
    exclusive,
    load_data_config,
    load_model,
    load_state,
    locate_detector,
    remove_path,
    saved_digest,
    temporary_folder,
)
from coreaffect.clips import ClipDataset
from coreaffect.config import DataConfig
from coreaffect.corpus import (
    LabelledVideo,
    Recording,
    check_annotations,
    check_numbering,
    discover,
    load_recording,
)
from coreaffect.crop_cache import CropCache
from coreaffect.errors import CoreAffectError, listing
from coreaffect.evaluation import (
    Evaluation,
    bootstrap_trajectories,
    evaluate_trajectories,
    metrics_json,
    stage_trajectories,
)
from coreaffect.hidden_route import MODELS
from coreaffect.people import People, people_of, resolve_people, video_groups
from coreaffect.splits import TEST_FRACTION, split_recordings
from coreaffect.stages import (
    STAGE_FILES,
    FitSettings,
    StageFit,
    check_settings,
    fit_core_affect,
    paired_frames,
    run_fit_settings,
)
from coreaffect.synthetic import annotation_delay
from coreaffect.training import TrainConfig, TrainResult, train_hidden_route

__all__ = ["DENSE_LENGTH", "data_settings", "evaluate_run", "held_out_videos", "labels_delay",
           "load_videos", "read_split", "refit_run", "run_format", "run_people", "split_videos",
           "train_run"]

logger = logging.getLogger(__name__)

DENSE_LENGTH = 400  # frames per training sequence (16 s at 25 fps): long enough for the label
# to move within it, which the within-sequence CCC loss needs; ~95 scored windows per trunk pass


def load_videos(recordings: Iterable[Recording], config: DataConfig, cache: CropCache,
                progress: bool = False, what: str = "videos") -> list[LabelledVideo]:
    """Face crops and per-frame labels of recordings, through the cache; every annotation is
    read first (:func:`~coreaffect.corpus.check_annotations`), so that a broken one stops the
    call before any cropping."""
    recordings = list(recordings)
    check_annotations(recordings, config)
    if progress:
        from tqdm import tqdm

        recordings = tqdm(recordings, desc=f"cropping faces ({what})", unit="video")
    return [load_recording(r, config, cache) for r in recordings]


def train_run(data: str | Path, run: str | Path, *, format: str = "auto", preset: str = "lite",
              epochs: int | None = None, max_minutes: float | None = None, device: str = "cpu",
              seed: int = 0, test_videos: int | None = None, val_videos: int | None = None,
              validate_every: int = 1,
              data_config: DataConfig | str | Path | None = None,
              cache: str | Path | None = None, resume: bool = False, overwrite: bool = False,
              fit_prior: bool = True, fit_settings: FitSettings | None = None,
              people: People | str | Path | None = None, progress: bool = False
              ) -> TrainResult:
    """Split a dataset by video (by person, given ``people``), train the hidden route, fit the
    later stages, write the run.

    ``run`` must be new, empty, or hold nothing but a face-crop cache (``crops/``) and what a
    training that failed before its first epoch ended left (``split.json``, an empty
    ``training/``), unless ``resume`` continues the run there or ``overwrite`` replaces it; files
    that are not part of a run are never removed, and a folder holding any is refused. One
    training at a time writes a run directory (it holds ``RUN/.lock``; a second is refused).

    A training that fails (an error, Ctrl-C) leaves no part of the later stages: a fresh run
    keeps its hidden route, to be resumed; ``overwrite`` puts back the run it found; ``resume``
    puts back the run's later stages if the network they were fitted to is unchanged.

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
        validate_every: Validate the hidden route every n-th epoch
            (:class:`~coreaffect.training.TrainConfig`).
        data_config: A :class:`~coreaffect.config.DataConfig`, used as it is, or a TOML file
            of the settings to change; ``None``, and the settings a TOML file leaves out, keep
            the defaults with crops at the network's input size (and, for a synthetic corpus,
            the labels shifted by its annotators' mean delay,
            :func:`~coreaffect.synthetic.annotation_delay`).
        cache: Face-crop cache folder; ``None`` is ``RUN/crops``.
        resume: Continue an interrupted run from its ``training/`` state, with its data
            settings (unless ``data_config`` is given, which must then be the same). The later
            stages of the run there, if any, are replaced: they belong to the network that
            training goes on to change. Without ``fit_prior`` they are kept if the network
            stays the one they were fitted to, and removed if it changes.
        overwrite: Replace the run there (not its crop cache). Replaced files are set aside
            while training runs, removed when it succeeds and put back when it fails.
        fit_prior: Also fit manifold, prior and dynamics
            (:func:`~coreaffect.stages.fit_core_affect`); ``False`` leaves a run with the hidden
            route only (``evaluate`` then reports ``raw`` only).
        fit_settings: Settings of :func:`~coreaffect.stages.fit_core_affect`.
        people: The people in the videos, ``{video id: person}`` or a CSV file of them
            (:mod:`coreaffect.people`): the test, validation and training videos then film
            different people, and ``split.json`` keeps the mapping for ``evaluate``. ``None``:
            every video is a person of its own (on ``resume``: the run's own mapping).
        progress: Show progress bars.

    Returns:
        The hidden route's :class:`~coreaffect.training.TrainResult` (the later stages are in
        the run directory, their timings in ``RUN/stages.json``).
    """
    if preset not in MODELS:
        raise CoreAffectError(f"unknown preset {preset!r}; available: {sorted(MODELS)}")
    if fit_settings is not None:
        check_settings(fit_settings)
    people = resolve_people(people)  # a broken file is named before anything is written
    run = Path(run)
    if run.exists() and not run.is_dir():
        raise CoreAffectError(f"{run}: exists and is not a folder")
    with exclusive(run, "training"):
        return _train_run(data, run, format, preset, epochs, max_minutes, device, seed,
                          test_videos, val_videos, validate_every, data_config, cache, resume,
                          overwrite, fit_prior, fit_settings, people, progress)


def _train_run(data: str | Path, run: Path, format: str, preset: str, epochs: int | None,
               max_minutes: float | None, device: str, seed: int, test_videos: int | None,
               val_videos: int | None, validate_every: int,
               data_config: DataConfig | str | Path | None, cache: str | Path | None,
               resume: bool, overwrite: bool, fit_prior: bool,
               fit_settings: FitSettings | None, people: dict[str, str] | None,
               progress: bool) -> TrainResult:
    """:func:`train_run` in a run directory it holds."""
    replaced = _prepare_run(run, resume=resume, overwrite=overwrite)
    previous = run / "split.json"
    if resume and people is None and _trained(run) and previous.exists():
        people = read_split(run).get("people")  # go on with the run's own people
    size = MODELS[preset].input_size
    if resume and data_config is None and (run / "hidden_route.json").exists():
        config = load_data_config(run)  # go on with the settings the run was trained with
    elif resume and data_config is None and (saved := _resume_data(run)) is not None:
        config = saved  # interrupted before its first validated epoch: no network yet
    else:
        config = data_settings(data, size, data_config)
    if resume:  # a run moved as a whole finds its YuNet model in it
        config = locate_detector(config, run)
    recordings = discover(data, format)
    people = _corpus_people(people, recordings, data)
    train, test = split_recordings(recordings, test_videos, seed=seed, people=people)
    if not train:
        raise CoreAffectError(f"{data}: no video left for training after holding out "
                              f"{len(test)} for testing")
    asked = round(TEST_FRACTION * len(recordings)) if test_videos is None else test_videos
    if people and asked and not test:
        raise CoreAffectError(f"{data}: no test video can be held out by person: the people "
                              "given film one person in too much of the corpus to leave a "
                              "video to train on; check the mapping, or train on every video "
                              "(--test-videos 0)")
    if people and len(test) != asked:
        logger.warning("%d test videos held out, not %d: a person's videos stay together",
                       len(test), asked)
    n_val = max(1, round(len(train) / 5)) if val_videos is None else val_videos
    n_val = min(n_val, len(train) - 1)  # keep at least one training video
    if val_videos is not None and n_val < val_videos:
        logger.warning("%d validation videos, not %d: of the %d videos left after the test "
                       "ones, at least one must train", n_val, val_videos, len(train))
    fit, val = split_recordings(train, n_val, seed=seed, people=people)
    if people and len(val) != n_val:
        logger.warning("%d validation videos held out, not %d: a person's videos stay together",
                       len(val), n_val)
    if not fit:
        raise CoreAffectError(f"{data}: no video left for training after holding out "
                              f"{len(test)} for testing and {len(val)} for validation")
    split = {"data": str(Path(data).resolve()), "format": recordings[0].format, "seed": seed,
             "train": [r.id for r in fit], "val": [r.id for r in val],
             "test": [r.id for r in test], **({"people": people} if people else {})}
    if resume and _trained(run) and previous.exists():
        before = read_split(run)
        changed = [key for key in [*split, *(k for k in before if k not in split)]
                   if key != "data" and before.get(key) != split.get(key)]
        if changed:
            raise CoreAffectError(f"{previous}: the run was split differently "
                                  f"({', '.join(changed)} differ); resume with the same "
                                  "data, format, seed, video counts and people")
        if before["data"] != split["data"]:  # the same videos, split the same way, moved
            logger.warning("resuming on %s, the dataset the run was trained on at %s",
                           split["data"], before["data"])
    logger.info("%d training, %d validation, %d test videos%s", len(fit), len(val), len(test),
                f" of {_count_people(fit, people)}, {_count_people(val, people)} and "
                f"{_count_people(test, people)} people" if people else "")
    check_annotations(recordings, config)  # a broken test annotation too, before the training
    check_numbering(recordings, config)
    why = "replaced" if overwrite else "fitted to the network that training goes on to change"
    with _set_aside(run, replaced, why, replacing=overwrite,
                    keep_unchanged=resume and not fit_prior):
        atomic_write(previous, json.dumps(split, indent=2) + "\n")
        crops = CropCache(cache if cache is not None else run / "crops", config.faces,
                          config.video.chunk_size)
        fit_videos = load_videos(fit, config, crops, progress, "training")
        val_videos_loaded = load_videos(val, config, crops, progress, "validation")
        clip = MODELS[preset].clip_length  # shorter videos have no estimate to fit on
        if fit_prior and not any(len(video.crops.crops) >= clip and paired_frames(video).any()
                                 for video in fit_videos):
            raise CoreAffectError(f"{data}: no training video of at least one clip ({clip} "
                                  "frames) has a frame with a face and both labels (valence and "
                                  "arousal), which the prior is fitted on; train the hidden "
                                  "route only (fit_prior=False; --hidden-route-only on the "
                                  "command line) or add such videos")
        sequences = ClipDataset(fit_videos, config.clips, size=size, augment=True,
                                dense_length=DENSE_LENGTH, random_state=seed)
        train_config = TrainConfig(preset=preset, max_minutes=max_minutes, seed=seed,
                                   device=device, validate_every=validate_every,
                                   **({} if epochs is None else {"epochs": epochs}))
        result = train_hidden_route(sequences, val_videos_loaded or None, run, train_config,
                                    data_config=config, resume=resume, progress=progress)
        if fit_prior:
            fit_core_affect(run, result.model, fit_videos, val_videos_loaded, device=device,
                            seed=seed, settings=fit_settings or FitSettings(),
                            progress=progress)
    return result


# what a run directory holds besides its crop cache: the hidden route and its split and log,
# then the later stages (stages.STAGE_FILES)
HIDDEN_ROUTE_FILES = ("split.json", "hidden_route.json", "hidden_route.safetensors", "training")


def data_settings(data: str | Path, crop_size: int,
                  data_config: DataConfig | str | Path | None = None) -> DataConfig:
    """The data settings :func:`train_run` uses on the dataset ``data``.

    Args:
        data: Dataset folder.
        crop_size: The network's input side, the default size of the cached crops.
        data_config: A :class:`~coreaffect.config.DataConfig`, returned as it is, or a TOML file
            of the settings to change. ``None``, and the settings a file leaves out, keep the
            defaults, with crops of ``crop_size`` and, for a synthetic corpus, the labels
            shifted by its annotators' mean delay
            (:func:`~coreaffect.synthetic.annotation_delay`).
    """
    if isinstance(data_config, DataConfig):
        return data_config
    config = DataConfig()
    config = dataclasses.replace(config, faces=dataclasses.replace(config.faces,
                                                                   crop_size=crop_size))
    delay = annotation_delay(data)
    if delay is not None:  # a synthetic corpus knows its annotators' mean delay
        config = dataclasses.replace(config, annotations=dataclasses.replace(
            config.annotations, delay=delay))
    if data_config is not None:
        config = DataConfig.from_toml(data_config, base=config)
        if config.clips.length > DENSE_LENGTH:  # said before any face is cropped
            raise CoreAffectError(f"{data_config}: [clips] length = {config.clips.length} is "
                                  f"longer than the {DENSE_LENGTH}-frame sequences training "
                                  f"runs on; give at most {DENSE_LENGTH}")
    if delay is not None and config.annotations.delay == delay:
        logger.info("synthetic corpus: labels shifted by the annotators' delay, %g s", delay)
    return config


def _corpus_people(people: dict[str, str] | None, recordings: Sequence[Recording],
                   data: str | Path) -> dict[str, str] | None:
    """``people`` on the videos of the corpus; those it names that the corpus does not have are
    logged (a misspelt id would otherwise pass unseen) and left out."""
    if people is None:
        return None
    ids = {r.id for r in recordings}
    absent = sorted(set(people) - ids)
    if absent:
        logger.warning("%d video(s) given a person are not in %s: %s", len(absent), data,
                       listing(absent))
    unnamed = len(ids - set(people))
    if unnamed:
        logger.info("%d video(s) of %s have no person given: each is a person of its own",
                    unnamed, data)
    return {video: person for video, person in people.items() if video in ids}


def _count_people(recordings: Sequence[Recording], people: dict[str, str] | None) -> int:
    return len(set(video_groups([r.id for r in recordings], people)))


def run_people(run: str | Path, data: str | Path,
               people: People | str | Path | None = None) -> dict[str, str] | None:
    """The people in ``data``'s videos, for resampling people rather than videos: ``people``
    when given (a mapping or a CSV file, :mod:`coreaffect.people`); else, on the dataset the
    run was trained on, the people its split was made with; else ``None``."""
    if people is not None:
        return resolve_people(people)
    if not (Path(run) / "split.json").exists():
        return None
    split = read_split(run, ("data",))  # a malformed file is named
    if not split.get("people"):
        return None
    if Path(split["data"]) != Path(data).resolve():
        logger.warning("%s was split by person on %s; the videos of %s are resampled one by one "
                       "unless --people gives their people", run, split["data"], data)
        return None
    return dict(split["people"])


def _resume_data(run: Path) -> DataConfig | None:
    """The data settings of the resume state ``RUN/training/last.json``, if there is one."""
    if not (run / "training" / "last.json").is_file():
        return None
    _, state = load_state(run / "training", "last")
    return DataConfig.from_dict(state["data"]) if "data" in state else None


def _prepare_run(run: Path, *, resume: bool, overwrite: bool) -> list[str]:
    """Check that ``run`` may be trained into (see :func:`train_run`); the names of the files
    there that the training replaces (all of a run with ``overwrite``, the later stages with
    ``resume``)."""
    if resume and overwrite:
        raise CoreAffectError("resume continues a run and overwrite replaces it: choose one")
    if not run.exists():
        return []
    for kept in sorted(run.glob(".replaced-*")):  # set aside by a training that was killed
        if {p.name for p in kept.iterdir()} <= set(STAGE_FILES):
            if resume:  # a resume's: this one replaces them too
                shutil.rmtree(kept)
                logger.info("%s: removed the later stages a killed resume had set aside", kept)
                continue
            raise CoreAffectError(f"{kept}: holds the later stages that a training killed while "
                                  "it resumed had set aside; they belong to the network before "
                                  "it, which it may have replaced: delete the folder, and fit "
                                  "them again with --resume")
        raise CoreAffectError(f"{kept}: holds the run that a training killed while it replaced "
                              f"it (--overwrite) had set aside; move its files back into {run} "
                              "(replacing those there) to keep that run, or delete the folder")
    resumable = resume and (run / "training" / "last.json").exists()
    if resume and not resumable and (run / "hidden_route.safetensors").exists():
        raise CoreAffectError(f"{run / 'training' / 'last.json'}: missing, so there is no "
                              "training to go on with, and resuming would train the network "
                              "there again from scratch; replace the run (--overwrite) or "
                              "choose a new folder")
    known = {*HIDDEN_ROUTE_FILES, *STAGE_FILES, "crops"}
    other = sorted(p.name for p in run.iterdir()  # dot files: temporaries of interrupted saves
                   if p.name not in known and not p.name.startswith("."))
    if other and resumable:
        logger.info("%s: %s are not part of the run and stay as they are", run, ", ".join(other))
    elif other:
        raise CoreAffectError(f"{run}: holds files that are not part of a run "
                              f"({listing(other, 3)}); "
                              "choose a new or empty folder")
    present = [name for name in (*HIDDEN_ROUTE_FILES, *STAGE_FILES)
               if (run / name).exists()]
    if _failed_start(run, present):  # a training that failed before its first epoch ended
        if "split.json" in present:
            read_split(run, ("data", "seed"))  # coreaffect's own: a file of the user's is kept
        logger.info("%s: holds no network yet, only %s of a training that stopped early; "
                    "starting afresh", run, ", ".join(present))
        return []
    if present and not (resume or overwrite):
        raise CoreAffectError(f"{run}: already holds a run; resume it (--resume), replace it "
                              "(--overwrite), or choose a new folder")
    return present if overwrite else [n for n in present if n in STAGE_FILES]


def _failed_start(run: Path, present: Sequence[str]) -> bool:
    """Whether the run files in ``run`` are only what a training that failed before its first
    epoch ended leaves: ``split.json`` and an empty ``training/``, no network."""
    return (bool(present) and set(present) <= {"split.json", "training"} and not _trained(run)
            and not any((run / "training").iterdir() if (run / "training").is_dir() else ()))


def _trained(run: Path) -> bool:
    """Whether ``run`` holds a network, or the state of a training that can be resumed."""
    return ((run / "hidden_route.safetensors").exists()
            or (run / "training" / "last.json").exists())


@contextmanager
def _set_aside(run: Path, names: Sequence[str], why: str, *, replacing: bool,
               keep_unchanged: bool = False) -> Iterator[None]:
    """Move ``names`` of ``run`` into a hidden folder there for the block: deleted when the
    block succeeds (with ``keep_unchanged``, put back if the network is the one they were
    fitted to: a block that writes no later stages), put back when it fails.

    A failed block leaves the run it found, as far as that still holds together: what it wrote
    of the later stages is removed (a part of them would load as a run without its dynamics),
    and, when ``replacing`` (the whole run was set aside), what it wrote of the hidden route
    too; otherwise the hidden route's training stays, to be resumed, and later stages set aside
    come back only if the network they were fitted to is still there.
    """
    network = _network_stamp(run)
    aside = temporary_folder(run, ".replaced-") if names else None
    for name in names:
        os.replace(run / name, aside / name)
    if names:
        logger.info("%s: %s of the run there are set aside (%s), and removed once training "
                    "succeeds", run, ", ".join(names), why)
    try:
        yield
    except BaseException:
        written = (*HIDDEN_ROUTE_FILES, *STAGE_FILES) if replacing else STAGE_FILES
        for name in written:
            remove_path(run / name)
        back = list(names)
        if not replacing and _network_stamp(run) != network:
            back = [name for name in names if name not in STAGE_FILES]
            if back != list(names):
                logger.warning("%s: training changed the network, so the later stages fitted "
                               "to the earlier one are removed; resume to fit them again", run)
        for name in back:
            os.replace(aside / name, run / name)
        if aside is not None:
            shutil.rmtree(aside)
        if back:
            logger.warning("%s: training failed; the files set aside are back", run)
        raise
    if keep_unchanged and names:
        if _network_stamp(run) == network:
            for name in names:
                os.replace(aside / name, run / name)
            logger.info("%s: the network is unchanged, so the later stages fitted to it are "
                        "kept", run)
        else:
            logger.warning("%s: training changed the network, so the later stages fitted to "
                           "the earlier one are removed; fit them again (coreaffect refit, or "
                           "resume without --hidden-route-only)", run)
    if aside is not None:
        shutil.rmtree(aside)


def _network_stamp(run: Path) -> str | None:
    """Identity of the run's network: the hash of its weights that ``hidden_route.json`` holds
    (written before the weights themselves, so a save cut short between the two counts as
    new); ``None`` without one."""
    return saved_digest(run, "hidden_route")


def read_split(run: str | Path,
               keys: Sequence[str] = ("data", "format", "seed", "train", "val", "test")) -> dict:
    """``RUN/split.json``, as :func:`train_run` wrote it: ``data``, ``format``, ``seed``, the
    video ids of ``train``, ``val`` and ``test``, and ``people`` (``{video id: person}``) when
    the split was made by person.

    Args:
        run: The run directory.
        keys: The entries that must be there.

    Raises:
        CoreAffectError: The file is missing or lacks one of ``keys``.
    """
    path = Path(run) / "split.json"
    if not path.exists():
        raise CoreAffectError(f"{path}: missing; is {run} a run directory?")
    try:
        split = json.loads(path.read_text())
        if not isinstance(split, dict):
            raise TypeError("not a JSON object")
        absent = [key for key in keys if key not in split]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError) as err:
        raise CoreAffectError(f"{path}: not a split written by coreaffect train ({err!r})"
                              ) from None
    if absent:
        raise CoreAffectError(f"{path}: not a split written by coreaffect train (no "
                              f"{', '.join(absent)})")
    for key in [key for key in ("train", "val", "test") if key in keys]:
        if not isinstance(split[key], list) or not all(isinstance(v, str) for v in split[key]):
            raise CoreAffectError(f"{path}: '{key}' must be a list of video ids")
    for key, what, ok in (("data", "a folder path", lambda v: isinstance(v, str) and v),
                          ("format", "a format name", lambda v: isinstance(v, str) and v),
                          ("seed", "an integer", lambda v: isinstance(v, int)
                           and not isinstance(v, bool))):
        if key in split and not ok(split[key]):
            raise CoreAffectError(f"{path}: '{key}' must be {what}, not {split[key]!r}")
    people = split.get("people")
    if people is not None and not (isinstance(people, dict) and all(
            isinstance(k, str) and isinstance(v, str) and k and v for k, v in people.items())):
        raise CoreAffectError(f"{path}: 'people' must map video ids to people")
    for key in ("train", "val", "test"):  # ids in NFC, as discovery gives them since 0.1.0
        if isinstance(split.get(key), list):
            split[key] = [name_key(v) for v in split[key]]
    if people is not None:
        split["people"] = {name_key(video): person for video, person in people.items()}
    return split


def run_format(run: str | Path) -> str | None:
    """The dataset format a run was trained on, from ``RUN/split.json``; ``None`` for a run
    without one (a network trained outside :func:`train_run`). Frame folders are read with
    its rate and numbering (:func:`~coreaffect.corpus.folder_numbering`).

    Raises:
        CoreAffectError: The file is there but is not a split that :func:`train_run` wrote.
    """
    if not (Path(run) / "split.json").exists():
        return None
    return read_split(run, ("format",))["format"]


def held_out_videos(run: str | Path) -> set[str]:
    """The ids of the test videos a run held out, from ``RUN/split.json``.

    Raises:
        CoreAffectError: The file is missing or is not a split that :func:`train_run` wrote.
    """
    if not (Path(run) / "split.json").exists():
        raise CoreAffectError(f"{Path(run) / 'split.json'}: missing; use --subset all to score "
                              "every video")
    return set(read_split(run, ("test",))["test"])


def held_out_here(recordings: Sequence[Recording], held_out: set[str], data: str | Path,
                  none: str, which: str) -> list[Recording]:
    """The ``recordings`` whose ids are ``held_out``, with a warning naming those of
    ``held_out`` that ``data`` lacks (``which`` says what they are: "test videos of the run").

    Raises:
        CoreAffectError: None is here (``none`` says so).
    """
    here = [r for r in recordings if r.id in held_out]
    if not here:
        raise CoreAffectError(f"{data}: {none}; use --subset all to score every video of this "
                              "dataset")
    if len(here) < len(held_out):
        missing = sorted(held_out - {r.id for r in here})
        logger.warning("%s: %d of the %d %s are here; the scores are of those only (missing: "
                       "%s)", data, len(here), len(held_out), which, listing(missing, 10))
    return here


def split_videos(run: str | Path, data: str | Path | None = None,
                 parts: str | Sequence[str] = ("test",), *, format: str | None = None,
                 cache: str | Path | None = None) -> list[LabelledVideo]:
    """The labelled videos of parts of a run's split, seen as the run sees faces.

    Args:
        run: The run directory (its ``split.json`` and data settings).
        data: The corpus the run was trained on; ``None``: the one ``split.json`` names.
        parts: ``"train"``, ``"val"`` or ``"test"``, or several of them.
        format: Annotation format of ``data``; ``None``: the one the run was trained with.
        cache: Face-crop cache folder; ``None`` is ``RUN/crops``.

    Returns:
        The videos of ``parts``, in that order and in the split's order within each.

    Raises:
        CoreAffectError: An unknown part, a run without a split, or a video of the split that
            ``data`` does not have.
    """
    parts = (parts,) if isinstance(parts, str) else tuple(parts)
    unknown = [part for part in parts if part not in ("train", "val", "test")]
    if unknown:
        raise CoreAffectError(f"parts must be 'train', 'val' or 'test', got {unknown}")
    run = Path(run)
    split = read_split(run, ("data", "format", *parts))
    data = split["data"] if data is None else data
    config = locate_detector(load_data_config(run), run)
    recordings = {r.id: r for r in discover(data, split["format"] if format is None else format)}
    ids = [video for part in parts for video in split[part]]
    missing = [video for video in ids if video not in recordings]
    if missing:
        raise CoreAffectError(f"{data}: {len(missing)} of the {len(ids)} videos of {run}'s "
                              f"{'/'.join(parts)} split are not here (first: {missing[0]}); is "
                              "it the corpus the run was trained on?")
    crops = CropCache(run / "crops" if cache is None else cache, config.faces,
                      config.video.chunk_size)
    return load_videos([recordings[video] for video in ids], config, crops)


def refit_run(run: str | Path, out: str | Path, *, data: str | Path | None = None,
              settings: FitSettings | None = None, device: str = "cpu",
              cache: str | Path | None = None, progress: bool = False) -> StageFit:
    """Fit a trained run's manifold, prior and dynamics again, with other settings, into a new
    run directory; the hidden route is not retrained and RUN keeps its results.

    OUT gets copies of RUN's hidden route, split and training log, then the later stages, fitted
    by :func:`~coreaffect.stages.fit_core_affect` on the same training and validation videos with
    the same seed. With the settings RUN was fitted with, on the device RUN computed its estimates
    on, the result equals RUN's. OUT is built in a hidden folder beside it and moved into place
    when complete, so a failure leaves no partial run. Face crops that RUN's crop cache lacks are
    added to it (the default ``cache``), as :func:`evaluate_run` does; nothing else in RUN is
    written.

    Args:
        run: A run directory written by :func:`train_run`.
        out: The new run directory: it must not exist, or be empty.
        data: The dataset folder; ``None``: the one RUN was trained on (``RUN/split.json``).
        settings: Settings of :func:`~coreaffect.stages.fit_core_affect`; ``None``: RUN's own
            (:func:`~coreaffect.stages.run_fit_settings`).
        device: Where the hidden route computes its estimates.
        cache: Face-crop cache folder; ``None`` is ``RUN/crops``.
        progress: Show progress bars.

    Returns:
        The :class:`~coreaffect.stages.StageFit`.
    """
    run, out = Path(run), Path(out)
    if not (run / "hidden_route.safetensors").exists():
        raise CoreAffectError(f"{run}: no hidden route here (hidden_route.safetensors); "
                              "train a run first")
    _check_new_run(run, out)
    settings = settings or run_fit_settings(run)
    check_settings(settings)
    split = read_split(run)
    if data is None and not Path(split["data"]).is_dir():
        raise CoreAffectError(f"{split['data']}: the dataset {run} was trained on is not there "
                              "(moved?); give its folder (--data)")
    data = Path(split["data"] if data is None else data)
    model, config = load_model(run, device), locate_detector(load_data_config(run), run)
    recordings = {r.id: r for r in discover(data, split["format"])}
    missing = [v for v in [*split["train"], *split["val"]] if v not in recordings]
    if missing:
        raise CoreAffectError(f"{data}: {len(missing)} of the run's training and validation "
                              f"videos are missing (first: {missing[0]}); pass the dataset the "
                              "run was trained on")
    crops = CropCache(cache if cache is not None else run / "crops", config.faces,
                      config.video.chunk_size)
    train = load_videos([recordings[v] for v in split["train"]], config, crops, progress,
                        "training")
    val = load_videos([recordings[v] for v in split["val"]], config, crops, progress,
                      "validation")
    out.parent.mkdir(parents=True, exist_ok=True)
    # build the new run beside OUT and move it there whole: a failure leaves no half-run
    partial = temporary_folder(out.parent, f".{out.name}.", ".partial")
    try:
        for name in ("hidden_route.json", "hidden_route.safetensors", "split.json"):
            shutil.copy2(run / name, partial / name)
        detector = Path(config.faces.yunet_model or "")
        if config.faces.detector == "yunet" and detector.parent == run:  # moved with RUN
            shutil.copy2(detector, partial / detector.name)
        logs = [p for p in (run / "training").glob("*") if p.name in _TRAINING_LOGS]
        if logs:
            (partial / "training").mkdir()
            for path in logs:
                shutil.copy2(path, partial / "training" / path.name)
        fit = fit_core_affect(partial, model, train, val, device=device, seed=split["seed"],
                              settings=settings, progress=progress)
        _check_new_run(run, out)  # still free after the fit
        if out.exists():
            out.rmdir()  # empty, as checked
        partial.rename(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return fit


_TRAINING_LOGS = ("log.json", "log.csv", "train_config.json")  # not the state for resuming


def _check_new_run(run: Path, out: Path) -> None:
    """OUT may be written as a new run: not RUN, not inside it, and new or an empty folder."""
    target, source = out.resolve(), run.resolve()
    if target == source or source in target.parents:
        raise CoreAffectError(f"{out}: is the run being refitted, or inside it; choose a new "
                              "directory")
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise CoreAffectError(f"{out}: exists and is not a plain directory (a file or a link); "
                              "choose a new directory")
    if out.exists() and any(out.iterdir()):
        raise CoreAffectError(f"{out}: not empty; refitting writes a new run directory and never "
                              "overwrites one")


def labels_delay(run: str | Path, config: DataConfig, data: str | Path,
                 delay: float | None = None) -> DataConfig:
    """``config``, the run's data settings, with the annotators' delay of ``data``'s labels.

    The delay belongs to a dataset's annotators, not to the run: ``delay`` when given; the
    run's own on the dataset it was trained on; else a synthetic corpus's own, else 0. A delay
    other than the run's is logged.
    """
    if delay is None:
        try:
            own = Path(read_split(run, ("data",))["data"]) == Path(data).resolve()
        except CoreAffectError:
            own = False
        delay = config.annotations.delay if own else (annotation_delay(data) or 0.0)
    if delay != config.annotations.delay:
        logger.warning("%s: its labels are read %g s earlier (the annotators' delay), where %s "
                       "read its own dataset's %g s earlier; --delay sets it", data, delay, run,
                       config.annotations.delay)
        config = dataclasses.replace(config, annotations=dataclasses.replace(
            config.annotations, delay=delay))
    return config


def evaluate_run(run: str | Path, data: str | Path, *, format: str = "auto",
                 subset: str = "test", device: str = "cpu", cache: str | Path | None = None,
                 json_path: str | Path | None = None, n_resamples: int = 2000,
                 delay: float | None = None, people: People | str | Path | None = None,
                 progress: bool = False) -> Evaluation:
    """Per-video and pooled metrics of a run's stages on a dataset, with their intervals.

    Args:
        run: Run directory.
        data: Dataset folder.
        format: Annotation format, or ``"auto"``.
        subset: ``"test"``: the videos the run held out (from ``RUN/split.json``); ``"all"``:
            every video of ``data``.
        device: Where to compute.
        cache: Face-crop cache folder; ``None`` is ``RUN/crops``.
        json_path: Where to write the metrics as JSON
            (:func:`~coreaffect.evaluation.metrics_json`).
        n_resamples: Resamples of the videos for the 95% intervals of every metric and of every
            stage's difference from ``raw`` (:mod:`coreaffect.bootstrap`), at least
            :func:`~coreaffect.bootstrap.min_resamples` (400); 0: no intervals.
        delay: The annotators' delay of ``data``'s labels in seconds; ``None``: the run's on
            its own dataset, else a synthetic corpus's own, else 0 (:func:`labels_delay`).
        people: The people in ``data``'s videos (a mapping or a CSV file,
            :mod:`coreaffect.people`): the intervals resample people, each with all their
            videos. ``None``: the run's own on its own dataset (:func:`run_people`), else each
            video is a person of its own.
        progress: Show progress bars.

    Returns:
        The :class:`~coreaffect.evaluation.Evaluation`, whose ``tables`` hold the stages the
        run has, in the order ``raw``, ``prior``, ``smoothed``, ``filtered``, ``lagged`` (a run
        with the hidden route only: ``raw``; a run fitted without a lag has no ``lagged``).
    """
    if n_resamples < 0 or 0 < n_resamples < min_resamples():
        raise CoreAffectError("the number of resamples must be 0 (no intervals) or at least "
                              f"{min_resamples()}, got {n_resamples}")
    from coreaffect.pipeline import CoreAffect

    if subset not in ("test", "all"):
        raise CoreAffectError(f"subset must be 'test' or 'all', got {subset!r}")
    run = Path(run)
    affect = CoreAffect.load(run, device)
    recordings = discover(data, format)  # a missing dataset is named before anything is read
    config = labels_delay(run, affect.data_config, data, delay)
    people = run_people(run, data, people)
    if subset == "test":
        recordings = held_out_here(recordings, held_out_videos(run), data,
                                   "none of the run's test videos are here",
                                   "test videos of the run")
    check_numbering(recordings, config)
    crops = CropCache(cache if cache is not None else run / "crops", config.faces,
                      config.video.chunk_size)
    videos = load_videos(recordings, config, crops, progress, subset)
    affect.check_frame_rates({r.id: (v.crops.times, v.crops.indices)
                              for r, v in zip(recordings, videos, strict=True)})
    trajectories = stage_trajectories(affect, videos, progress=progress)
    people = people_of([r.id for r in recordings], people)
    intervals, differences = (bootstrap_trajectories(videos, trajectories,
                                                     n_resamples=n_resamples, people=people)
                              if n_resamples else ({}, {}))
    evaluation = Evaluation(evaluate_trajectories(videos, trajectories), intervals, differences,
                            people if intervals else None)
    if json_path is not None:
        atomic_write(json_path, json.dumps(metrics_json(evaluation), indent=2) + "\n")
    return evaluation
