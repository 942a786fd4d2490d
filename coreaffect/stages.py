"""The later stages of a run: manifold, prior, calibration, dynamics and bands, fitted after the
hidden route.

:func:`fit_core_affect` fits them on a trained hidden route's estimates of labelled videos and
writes them into the run directory, with ``stages.json`` (what each stage was fitted on, with which
:class:`FitSettings`, and how long it took); :func:`run_fit_settings` reads those settings back.
``coreaffect train`` calls it after training the hidden route, ``coreaffect refit`` on a trained
run (:mod:`coreaffect.experiment`).

Which videos fit what, and why:

* **Manifold** (:class:`~coreaffect.manifold.AffectManifold`): the labels of the training *and*
  validation videos (every ``label_step``-th labelled frame; neighbouring frames at 25 Hz carry
  nearly the same label). It models where labels lie, not the network, so any labelled video that
  is not a test video may inform it.
* **Prior** (:class:`~coreaffect.prior.HiddenRoutePrior`): pairs of the hidden route's per-frame
  estimates on the *training* videos and their labels (frames with a label and a face). These are
  the videos the network was fitted on, so its estimates there are better than on new videos;
  fitting the prior on the validation videos instead would leave nothing held out for the next two
  steps. The prior's mean is therefore not learned from these pairs (the default
  ``location="regression"``: its decoded mean is the estimate); only its covariance is, and the
  calibration corrects the resulting over-confidence.
* **Calibration** (:meth:`~coreaffect.prior.HiddenRoutePrior.calibrate`): the *validation* videos,
  unseen by the network and by the prior's fit, so the factors on the decoded valence and arousal
  variances are chosen on estimates as good (or as bad) as those on test videos.
* **Dynamics** (:class:`~coreaffect.dynamics.CoreAffectDynamics`): the priors of the *validation*
  videos as pseudo-observations (times, prior means and covariances over z, mask = face found),
  decoder = the manifold, fitted by maximum marginal likelihood with L-BFGS (it converges in a few
  dozen likelihood evaluations, where Adam needs over a hundred steps for the same optimum), on
  every ``dynamics_step``-th frame. The dynamics' observation-noise scale must describe estimates
  on unseen videos; on training videos it would learn that the priors are more accurate than they
  are on test videos. The priors enter as they are with the default ``location="regression"``
  (``divide_prior=False``): N(m, S) is the estimate with the truth's scatter around it, not a
  measurement pulled towards p(z). With ``location="measurement"`` p(z) is divided out
  (``divide_prior=True``): N(m, S) / p(z) is exactly the estimate's own latent observation N(a, R)
  (see :mod:`coreaffect.prior`), so the OU process is the only prior over the trajectory and the
  shrinkage towards p(z) is not counted twice. The likelihood drives the observation-noise scale
  towards 0 (the hidden route's errors are slow, so the fit reads them as affect), which would make
  the smoother follow every estimate; so the scales are then chosen again on the same videos, one
  per latent axis, as those that give the smoothed trajectory the highest CCC against the labels (a
  coordinate search over ``noise_grid``; on the synthetic corpus the axes follow valence and
  arousal, whose errors differ: arousal's are faster, and smoothing removes part of them). The
  causal filter's own scales (``filter_noise_scale_``) are chosen the same way for the filtered
  trajectory: it cannot look ahead, so a weight that suits the smoother makes it lag. The
  fixed-lag smoother (the ``lagged`` stage, ``FitSettings.lag`` frames of look-ahead) takes the
  smoother's scales: with a few frames of look-ahead it already beats the hidden route's
  estimate, which the filter does not (:doc:`/dynamics`).
* **Bands** (``RUN/bands.json``, :class:`~coreaffect.pipeline.CoreAffect`'s ``band_scale``): the
  dynamics treats the errors of consecutive estimates as independent, but the hidden route's errors
  are slow (a whole video can be off by a similar amount), so averaging hundreds of frames makes
  the smoothed, filtered and lagged bands far too narrow. Per stage, one factor per dimension on
  the decoded bands' half-widths is chosen on the *validation* videos so that they cover at the
  calibration levels (``calibration_levels``, 50% and 90%), as the prior's own calibration does
  and as nearly as one factor for both can; the decoded means are not changed by it.

Without a validation video (``val_videos=0``, or a corpus too small for one) the calibration and
the dynamics fall back to the training videos, with a logged warning: their bands are then too
narrow on new videos. With fewer than 10 validation videos it warns too: the calibration rests on
how the network does on those few people, and its coverage on new ones moves by several points with
which people they are (:doc:`/reproducing` measures it). Fitting is on the CPU in one thread (the
models are tiny, and two threads only add synchronisation), and subsampled so that it takes about a
minute for 13 videos of 1000 frames.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from coreaffect.calibration import BANDED_STAGES, check_level, halfwidth_factors, write_bands
from coreaffect.checkpoint import atomic_write
from coreaffect.config import DataConfig, _check_choice, _check_float, _check_int
from coreaffect.corpus import LabelledVideo
from coreaffect.dynamics import AffectObservations, CoreAffectDynamics
from coreaffect.errors import CoreAffectError
from coreaffect.evaluation import long_enough, predict_video
from coreaffect.hidden_route import AffectEstimate, HiddenRouteNet
from coreaffect.manifold import BACKENDS as MANIFOLD_BACKENDS
from coreaffect.manifold import AffectManifold
from coreaffect.metrics import ccc
from coreaffect.prior import HiddenRoutePrior, latent_moments

__all__ = ["STAGE_FILES", "FitSettings", "StageFit", "calibrate_bands", "check_settings",
           "fit_core_affect", "paired_frames", "paired_videos", "run_fit_settings"]

# the files fit_core_affect writes into a run directory, in that order: stages.json last
STAGE_FILES = ("manifold.json", "manifold.safetensors", "prior.json", "prior.safetensors",
               "dynamics.json", "dynamics.safetensors", "bands.json", "stages.json")

logger = logging.getLogger(__name__)


_FEW_VALIDATION = 10  # fewer validation videos than this: the calibration is largely luck


@dataclasses.dataclass(frozen=True)
class FitSettings:
    """How :func:`fit_core_affect` fits the manifold, the prior and the dynamics.

    Attributes:
        label_step: Every n-th labelled frame feeds the manifold.
        pair_step: Every n-th (estimate, label) pair of a training video feeds the prior.
        max_calibration_pairs: Most validation pairs for the calibration (evenly subsampled).
        manifold_steps: SVI steps of the manifold.
        manifold_backend: The manifold's decoder, ``"vae"`` or ``"gplvm"``
            (:class:`~coreaffect.manifold.AffectManifold`).
        prior_steps: SVI steps of the prior.
        batch_size: SVI minibatch of both.
        dynamics_step: Every n-th frame of a video feeds the dynamics' fit (the OU model is
            exact for any step, so a decimated video has the same likelihood structure).
        dynamics_iter: Most L-BFGS iterations.
        band_step: Every n-th validation frame feeds the band scales.
        level: Level of the dynamics' bands that the evaluation reports.
        calibration_levels: The levels at which the calibration aims to cover: the prior's
            (:meth:`~coreaffect.prior.HiddenRoutePrior.calibrate`) and the dynamics' band
            factors (:func:`~coreaffect.calibration.halfwidth_factors`), one factor per
            dimension for every level.
        noise_grid: The observation-noise scales tried on each latent axis when choosing them
            on the validation videos (empty: keep the maximum-likelihood scale).
        lag: Look-ahead in frames of the ``lagged`` stage (the fixed-lag smoother), whose band
            factors are calibrated with the others; 0: no such stage.
    """

    label_step: int = 3  # at 25 Hz labels barely change in 3 frames; ~4k labels for 13 videos
    pair_step: int = 2  # ~5k pairs for 10 training videos of 1000 frames
    max_calibration_pairs: int = 4000  # coverage to about +-0.5% at 90%
    manifold_steps: int = 1000  # the loss flattens after a few hundred steps of 1024 labels
    manifold_backend: str = "vae"
    prior_steps: int = 1000  # likewise for the prior
    batch_size: int = 1024  # large batches: per step, Pyro's overhead dominates the maths
    dynamics_step: int = 2  # 12.5 Hz: the OU time scales of affect are seconds
    dynamics_iter: int = 100  # L-BFGS converges in a few dozen iterations
    band_step: int = 4  # every 4th validation frame sets the band scales: ~750 for 3 videos
    level: float = 0.9  # the band the evaluation reports
    calibration_levels: tuple[float, ...] = (0.5, 0.9)  # the calibrations target both
    noise_grid: tuple[float, ...] = (1e-4, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)  # none to strong
    lag: int = 8  # 0.32 s at 25 fps: on the demo, most of the smoother's gain over the estimate


class StageFit(NamedTuple):
    """What :func:`fit_core_affect` fitted.

    Attributes:
        manifold: The latent manifold.
        prior: The calibrated prior (holding the manifold).
        dynamics: The dynamics, with the manifold as decoder.
        seconds: Wall-clock seconds of each step.
        videos: Which video ids fed each step.
    """

    manifold: AffectManifold
    prior: HiddenRoutePrior
    dynamics: CoreAffectDynamics
    seconds: dict[str, float]
    videos: dict[str, list[str]]


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run tiny models in one thread (restored afterwards): two threads only add overhead."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def paired_frames(video: LabelledVideo) -> np.ndarray:
    """(T,) the frames of a video with a face and both labels: those that fit and score."""
    return np.isfinite(video.labels).all(1) & np.asarray(video.crops.face_found, bool)


def paired_videos(videos: Sequence[LabelledVideo], purpose: str) -> list[LabelledVideo]:
    """The videos with at least one frame that has a face and both labels; the others are
    named in a warning that says what they are left out of (``purpose``)."""
    usable = [bool(paired_frames(video).any()) for video in videos]
    kept = [video for video, ok in zip(videos, usable, strict=True) if ok]
    left = [video.id for video, ok in zip(videos, usable, strict=True) if not ok]
    if left:
        logger.warning("%d video(s) without a frame that has a face and both labels are left out "
                       "of %s: %s", len(left), purpose, ", ".join(left))
    return kept


def _pairs(videos: Sequence[LabelledVideo], estimates: dict[str, AffectEstimate], step: int,
           limit: int | None = None) -> tuple[AffectEstimate, np.ndarray]:
    """Pairs of frames with a label and a face: an AffectEstimate (N, ...) and labels (N, 2)."""
    rows, labels = [], []
    for video in videos:
        index = np.flatnonzero(paired_frames(video))[::step]
        rows.append((video.id, index))
        labels.append(video.labels[index])
    total = sum(len(i) for _, i in rows)
    if limit is not None and total > limit:  # evenly thin every video alike
        thin = math.ceil(total / limit)
        rows = [(v, i[::thin]) for v, i in rows]
        labels = [y[::thin] for y in labels]
    parts = [AffectEstimate(*(x[torch.as_tensor(i)] for x in estimates[v])) for v, i in rows]
    joined = AffectEstimate(*(torch.cat([p[f] for p in parts]) for f in range(3)))
    return joined, np.concatenate(labels).astype(np.float32)


def _observations(prior: HiddenRoutePrior, video: LabelledVideo, estimate: AffectEstimate,
                  step: int = 1) -> AffectObservations:
    """The prior's latent Gaussians of every ``step``-th frame as dynamics observations."""
    index = torch.arange(0, len(video.crops.times), step)
    means, covs = latent_moments(prior(AffectEstimate(*(x[index] for x in estimate))))
    found = torch.as_tensor(np.asarray(video.crops.face_found, bool))[index]
    return AffectObservations(torch.as_tensor(video.crops.times, dtype=torch.float64)[index],
                              means, covs, found)


def _choose_noise_scales(dynamics: CoreAffectDynamics, manifold: AffectManifold,
                         sequences: Sequence[AffectObservations],
                         videos: Sequence[LabelledVideo], grid: Sequence[float],
                         causal: bool = False) -> tuple[float, ...] | None:
    """One observation-noise scale per latent axis, chosen on labelled held-out videos.

    The score of scales c (K,) is the smoother's (``causal``: the filter's) per-video CCC
    against the labels, averaged over
    videos and over valence and arousal (the decoded point g(posterior mean) of every frame with
    a label and a face). Coordinate search over ``grid``: first one scale shared by every axis,
    then each axis in turn with the others held, twice over. Returns ``None`` (keep the
    maximum-likelihood scale) when no frame is scored or ``grid`` is empty.
    """
    keeps = [paired_frames(v) for v in videos]
    if not grid or not any(k.any() for k in keeps):
        return None
    latent = dynamics.without_decoder()  # only the latent means matter here

    def score(scales: tuple[float, ...]) -> float:
        if causal:
            latent.filter_noise_scale_ = torch.tensor(scales, dtype=torch.float64)
        else:
            latent.noise_scale_ = torch.tensor(scales, dtype=torch.float64)
        values = []
        for sequence, video, keep in zip(sequences, videos, keeps, strict=True):
            if keep.sum() < 2:
                continue
            posterior = latent.filter(sequence) if causal else latent.smooth(sequence)
            point = manifold.decode(posterior.latent_mean.float()).mean  # on the manifold's device
            point = point.to("cpu", torch.float64).numpy()[keep]
            values += [float(ccc(video.labels[keep, d], point[:, d])) for d in range(2)]
        return float(np.mean(values)) if values else -math.inf

    k = dynamics.n_latent
    seen: dict[tuple[float, ...], float] = {}

    def cached(scales: tuple[float, ...]) -> float:
        if scales not in seen:
            seen[scales] = score(scales)
        return seen[scales]

    best = max(((c,) * k for c in grid), key=cached)
    for _ in range(2):
        for axis in range(k):
            best = max((best[:axis] + (c,) + best[axis + 1:] for c in grid), key=cached)
    return best


def calibrate_bands(model: HiddenRouteNet, prior: HiddenRoutePrior,
                     dynamics: CoreAffectDynamics, videos: Sequence[LabelledVideo],
                     estimates: dict[str, AffectEstimate], settings: FitSettings
                     ) -> dict[str, tuple[float, float]]:
    """Factors (k_v, k_a) on the smoothed, filtered (and lagged, with ``settings.lag``) bands'
    half-widths that make the decoded central bands at ``settings.calibration_levels`` cover
    those fractions of each dimension's labels of ``videos``, pooled over their frames, as
    nearly as one factor can (:func:`~coreaffect.calibration.halfwidth_factors`)."""
    from coreaffect.pipeline import CoreAffect

    affect = CoreAffect(model, DataConfig(), prior, dynamics, lag=settings.lag or None)
    names = [stage for stage in affect.stages if stage in BANDED_STAGES]
    levels = list(settings.calibration_levels)
    bands: dict[str, list[tuple[np.ndarray, ...]]] = {stage: [] for stage in names}
    for video in videos:
        means, covs = latent_moments(prior(estimates[video.id]))
        found = np.asarray(video.crops.face_found, bool)
        stages = affect.latent_moments(video.crops.times, means, covs, found, names)
        keep = np.flatnonzero(paired_frames(video))[::settings.band_step]
        truth = video.labels[keep].astype(np.float64)  # (N, 2)
        for stage, (m, c) in stages.items():
            mean, _, ends = affect.decode_bands(m[keep], c[keep], levels)
            lower, upper = (np.stack([band[side] for band in ends]) for side in (0, 1))
            bands[stage].append((truth, mean, lower, upper))  # ends (L, N, 2)
    scales = {}
    for stage, parts in bands.items():
        if not parts:
            scales[stage] = (1.0, 1.0)
            continue
        truth, mean, lower, upper = zip(*parts, strict=True)
        scales[stage] = halfwidth_factors(np.concatenate(truth), np.concatenate(mean),
                                          np.concatenate(lower, 1), np.concatenate(upper, 1),
                                          levels)
        logger.info("%s bands: half-width factors %.3g (valence), %.3g (arousal)", stage,
                    *scales[stage])
    return scales


def check_settings(settings: FitSettings) -> None:
    """Fail early, before any training, on settings the fit would reject late."""
    section = "FitSettings"
    for name in ("label_step", "pair_step", "max_calibration_pairs", "manifold_steps",
                 "prior_steps", "batch_size", "dynamics_step", "dynamics_iter", "band_step"):
        _check_int(settings, section, name, 1)
    _check_int(settings, section, "lag", 0)
    _check_choice(settings, section, "manifold_backend", MANIFOLD_BACKENDS)
    _check_float(settings, section, "level", "a probability in (0, 1)", lambda v: 0 < v < 1)
    levels, grid = settings.calibration_levels, settings.noise_grid
    try:
        if not isinstance(levels, tuple) or not levels:
            raise CoreAffectError("no level")
        for level in levels:
            check_level(level)
    except CoreAffectError:
        raise CoreAffectError(f"{section}.calibration_levels must be a tuple of at least one "
                              f"probability in (0, 1), got {levels!r}") from None
    if not isinstance(grid, tuple) or not all(
            not isinstance(s, bool) and isinstance(s, (int, float)) and math.isfinite(s) and s > 0
            for s in grid):
        raise CoreAffectError(f"{section}.noise_grid must be a tuple of positive numbers, got "
                              f"{grid!r}")


def fit_core_affect(run: str | Path, model: HiddenRouteNet, train: Sequence[LabelledVideo],
                    val: Sequence[LabelledVideo], *, device: str = "cpu", seed: int = 0,
                    settings: FitSettings = FitSettings(),  # noqa: B008 - frozen
                    progress: bool = False) -> StageFit:
    """Fit manifold, prior, calibration and dynamics after the hidden route; save them in RUN.

    The module docstring says which videos feed which step, and why. Writes
    ``RUN/{manifold,prior,dynamics}.{safetensors,json}``, ``RUN/bands.json`` and
    ``RUN/stages.json``.

    Args:
        run: The run directory (holding the hidden route).
        model: The trained hidden route.
        train: The videos the hidden route was trained on.
        val: Held-out validation videos (may be empty: see the module docstring).
        device: Where the hidden route computes its estimates.
        seed: Seed of every fit.
        settings: Subsampling and step counts.
        progress: Show a progress bar over the steps.

    Returns:
        The :class:`StageFit`.
    """
    purpose = "the prior and the dynamics"
    long_train = long_enough(train, model, purpose)
    labelled = [*long_train, *val]  # the manifold's labels need no face
    train = paired_videos(long_train, purpose)
    if not train:
        raise CoreAffectError("fitting the prior needs at least one training video with a frame "
                              "that has a face and both labels")
    check_settings(settings)
    held_out = paired_videos(long_enough(val, model, purpose), purpose)
    if not held_out:
        logger.warning("no validation video: the prior is calibrated and the dynamics fitted on "
                       "the training videos, whose estimates are better than on new videos; "
                       "expect too narrow bands")
        held_out = list(train)
    elif len(held_out) < _FEW_VALIDATION:
        logger.warning("the bands are calibrated and the dynamics fitted on %d validation "
                       "video(s): with few people, the bands' coverage on new ones depends on "
                       "which people they are, by several points; validate on %d or more if the "
                       "corpus allows (--val-videos)", len(held_out), _FEW_VALIDATION)
    seconds: dict[str, float] = {}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=6, desc="fitting prior and dynamics", unit="step")

    def done(name: str, start: float) -> None:
        seconds[name] = round(time.monotonic() - start, 2)
        logger.info("%s: %.1f s", name, seconds[name])
        if bar is not None:
            bar.set_postfix_str(name)
            bar.update()

    start = time.monotonic()
    estimates = {v.id: predict_video(model, v, device) for v in {**{v.id: v for v in train},
                                                                 **{v.id: v for v in held_out}
                                                                 }.values()}
    done("estimates", start)
    with _one_thread():
        start = time.monotonic()
        labels = np.concatenate([v.labels[::settings.label_step] for v in labelled])
        labels = labels[np.isfinite(labels).all(1)]
        if len(labels) < 2:
            raise CoreAffectError("too few labelled frames to fit the affect manifold")
        manifold = AffectManifold(backend=settings.manifold_backend,
                                  num_steps=settings.manifold_steps,
                                  batch_size=settings.batch_size, random_state=seed)
        manifold.fit(np.clip(labels, -1, 1))
        done("manifold", start)

        start = time.monotonic()
        pairs, targets = _pairs(train, estimates, settings.pair_step)
        prior = HiddenRoutePrior(manifold, num_steps=settings.prior_steps,
                                 batch_size=settings.batch_size, random_state=seed)
        prior.fit(pairs, np.clip(targets, -1, 1))
        done("prior", start)

        start = time.monotonic()
        pairs, targets = _pairs(held_out, estimates, 1, settings.max_calibration_pairs)
        prior.calibrate(pairs, np.clip(targets, -1, 1), level=settings.calibration_levels)
        done("calibration", start)

        start = time.monotonic()
        sequences = [_observations(prior, v, estimates[v.id], settings.dynamics_step)
                     for v in held_out]
        if not any(int(seq.mask.sum()) >= 2 for seq in sequences):
            raise CoreAffectError(
                "fitting the dynamics needs a held-out video (without one, a training video) "
                "with a face in two or more of the frames it is fitted on (every "
                f"{settings.dynamics_step}-th frame); none has: "
                f"{', '.join(v.id for v in held_out)}; validate on videos where faces are found "
                "(--val-videos), or lower the dynamics_step of FitSettings")
        dynamics = CoreAffectDynamics(prior.manifold.n_latent, decoder=manifold,
                                      divide_prior=prior.location != "regression",
                                      optimizer="lbfgs",
                                      max_iter=settings.dynamics_iter, level=settings.level,
                                      random_state=seed)
        dynamics.fit(sequences)
        full_rate = [_observations(prior, v, estimates[v.id]) for v in held_out]
        scales = _choose_noise_scales(dynamics, manifold, full_rate, held_out,
                                      settings.noise_grid)
        if scales is not None:
            dynamics.noise_scale_ = torch.tensor(scales, dtype=torch.float64)
            scales = _choose_noise_scales(dynamics, manifold, full_rate, held_out,
                                          settings.noise_grid, causal=True)
            dynamics.filter_noise_scale_ = torch.tensor(scales, dtype=torch.float64)
        done("dynamics", start)
        start = time.monotonic()
        bands = calibrate_bands(model, prior, dynamics, held_out, estimates, settings)
        done("bands", start)
    if bar is not None:
        bar.close()
    prior.save(run)
    dynamics.save(run)
    write_bands(run, bands, settings.calibration_levels, settings.lag or None)
    videos = {"manifold": [v.id for v in labelled], "prior": [v.id for v in train],
              "calibration": [v.id for v in held_out], "dynamics": [v.id for v in held_out]}
    info = {"seconds": seconds, "videos": videos, "settings": dataclasses.asdict(settings),
            "calibration_scale": prior.calibration_scale_, "band_scale": bands,
            "lag": settings.lag or None,
            "dynamics": {"iterations": getattr(dynamics, "n_iter_", None),
                         "log_likelihood": dynamics.log_likelihood_,
                         "theta": dynamics.theta_.tolist(), "mu": dynamics.mu_.tolist(),
                         "noise_scale": dynamics.noise_scale_.tolist(),
                         "filter_noise_scale": None if dynamics.filter_noise_scale_ is None
                         else dynamics.filter_noise_scale_.tolist()}}
    atomic_write(Path(run) / "stages.json", json.dumps(info, indent=2) + "\n")
    return StageFit(manifold, prior, dynamics, seconds, videos)


def run_fit_settings(run: str | Path, check: bool = True) -> FitSettings:
    """The settings a run's later stages were fitted with (``RUN/stages.json``); the defaults
    for a run without them, and for settings that a run predates. ``check``: refuse settings
    the fit would reject, naming the file (``False``: for a caller that changes some first,
    and checks them with :func:`check_settings`)."""
    path = Path(run) / "stages.json"
    if not path.exists():
        return FitSettings()
    try:
        saved = json.loads(path.read_text())["settings"]
        known = {f.name for f in dataclasses.fields(FitSettings)}
        settings = FitSettings(**{k: tuple(v) if isinstance(v, list) else v
                                  for k, v in saved.items() if k in known})
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError,
            AttributeError) as err:
        raise CoreAffectError(f"{path}: unreadable settings ({err!r})") from None
    if check:
        try:
            check_settings(settings)
        except CoreAffectError as err:  # a hand-edited file: named before any fit
            raise CoreAffectError(f"{path}: {err}") from None
    return settings
