"""One call from a video to a valence-arousal trajectory with credible bands.

:class:`CoreAffect` chains what a run directory holds::

    video -> FaceCropper -> HiddenRouteNet     -> HiddenRoutePrior -> CoreAffectDynamics
             (the run's     .predict_dense:       N(m_t, S_t) over    smoother (offline)
              DataConfig)   mean (T, 2), var,     the latent z_t      or filter (causal)
                            embedding (T, D)

and returns an :class:`~coreaffect.trajectory.AffectTrajectory`: one row per decoded frame (with
or without a face) with time, valence, arousal, the central credible band of each at ``level``,
the ``face_found`` flag and the latent posterior mean. Five *stages* can be read off the same pass
(:meth:`CoreAffect.stages_of`, what ``coreaffect evaluate`` compares):

* ``raw``: the hidden route's own Gaussian, mean +- z sqrt(var); NaN on frames without a face;
* ``prior``: the calibrated prior decoded to valence-arousal (moment-matched,
  :meth:`~coreaffect.prior.HiddenRoutePrior.predict`); NaN on frames without a face;
* ``smoothed``: the dynamics' smoother p(z_t | all frames), decoded; defined on every frame;
* ``filtered``: the causal output p(z_t | estimates of frames <= t) (below), decoded;
* ``lagged``: the fixed-lag smoother p(z_t | estimates of frames <= t + L), decoded, for a run
  fitted with a look-ahead of L frames (``CoreAffect.lag``; ``coreaffect train`` uses 8):
  the online output of a system that may answer L frames later than the filter.

Decoding a latent Gaussian N(m, P) through the manifold is quasi-Monte Carlo over the latent: the
same S = ``n_decode_samples`` standard-normal points eps serve every frame, z_i = m + P^(1/2)
eps_i, so a frame's output never depends on the other frames (a scrambled Sobol sequence mapped
through the normal quantile function, in antithetic pairs: it covers the normal more evenly than
random draws). Given these points, y = g(z) + s eta is an equal mixture of the Gaussians
N(g(z_i), diag(s^2)), whose moments and quantiles are computed exactly
(:func:`~coreaffect.decoding.mixture_quantiles`) rather than from draws of eta: the band is the
pair of quantiles (1 -+ level) / 2 of that mixture, and ``var`` its variance (what the metrics'
NLL and coverage use). Where the latent is confident (a face in view) the mixture is nearly one
Gaussian and the band nearly exact; through frames without a face the latent spreads and the
band keeps only the error of S latent points.

Causality and latency. The hidden-route estimate of frame c is final (later frames cannot change
it) only once the windows around it are complete: a 16-frame window starting at frame S k needs
frames up to S k + 15 + a, where a is the trunk's temporal context after a step
(:attr:`~coreaffect.hidden_route.HiddenRouteNet.temporal_context`; ``lite``: 4, ``paper``: 8), and
frame c interpolates the windows either side of it. So the estimate of frame c is final at
frame c + D, with D = clip_length - 1 + a for the presets (:attr:`CoreAffect.latency_frames`,
which also covers strides longer than half a clip; ``lite``: 19 frames, 0.76 s at 25 fps;
``paper``: 23 frames). The causal row of frame c is the filter's
posterior p(z_c | estimates of frames <= c): what a live system knows about frame c once frame
c + D has arrived, the same moment the raw estimate of frame c becomes final, so the causal
output has the hidden route's own fixed latency and nothing more. :meth:`CoreAffect.stream`
yields it then; when the source ends, the rows of the last D frames follow, from the estimates
the video's end allows (computed as :meth:`~coreaffect.hidden_route.HiddenRouteNet.predict_dense`
does at a video's end). Appending frames never changes the causal row of a frame c with
c + D before the old end (up to floating-point rounding of the convolutions, ~1e-6). The lagged
row of frame c comes L frames later, at frame c + D + L, from the estimates of frames up to
c + L (:meth:`~coreaffect.dynamics.CoreAffectDynamics.lag_step`).

Frame rate. The hidden route counts frames, not seconds: its 16-frame clip spans 0.64 s of a
25 fps video and 0.27 s of a 60 fps one, and the ``lagged`` stage's L frames are a look-ahead of
L / fps seconds (the dynamics themselves step in seconds and take any rate). A run keeps the
frame rate of the videos its network was trained on (``CoreAffect.frame_rate``), and
:meth:`CoreAffect.predict`, :meth:`CoreAffect.stream` (from its first 32 frames) and
``coreaffect evaluate`` warn, naming the video, when a video's rate differs from it by more than
a factor of 1.25 either way (against 25 fps, 20 to 31.25 pass): its estimates may then be off,
and resampling the video to the training rate gives the network what it learned from. A frame
folder has no rate of its own: it is read at the rate given (``--fps``, the format's), which is
what is checked.

Memory. :meth:`CoreAffect.predict` holds a bounded amount of video at any time, whatever its
length. It decodes and crops the video chunk by chunk (``DataConfig.video.chunk_size`` frames at
a time) and spools the small face crops (T, s, s, 3) uint8 to a temporary file that is
memory-mapped (s = the run's crop side: 24 for ``lite``, 1.7 kB a frame; 64: 12 kB). The hidden
route then reads the crops ``segment_frames`` at a time (:meth:`CoreAffect.stages_of`), each
segment with a margin of a clip and a step plus the trunk's context on either side, so that its
estimates equal those of one pass over the whole video; the trunk itself runs ``chunk_frames``
frames at a time. The pages of the crop file a segment read are released once it is done
(resident file pages count as the process's memory until then), and the segment's estimates,
with their (D,) embeddings, are turned into the prior's moments at once and dropped. Decoding
latents to valence-arousal decodes ``decode_chunk`` latent points at a time into outputs
allocated up front. What grows with T is a few dozen numbers per frame: the frames' metadata,
the hidden route's and the prior's moments, the dynamics' posterior moments with the
intermediates of their parallel scans, and the trajectory itself: under 1 kB a frame, about
12 MB for a 10-minute video at 25 fps. :meth:`CoreAffect.stream` keeps bounded state: the last
few dozen crops and the filter state (with ``lagged``, the fixed-lag smoother's buffer of L + 1
frames).
"""

from __future__ import annotations

import logging
import math
import mmap
import numbers
import os
import shutil
import tempfile
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.distributions import MultivariateNormal

from coreaffect.annotations import FORMATS
from coreaffect.calibration import (  # noqa: F401 - write_bands was here
    BANDED_STAGES,
    band_factors,
    check_lag,
    check_level,
    read_bands,
    widen_bands,
    write_bands,
)
from coreaffect.checkpoint import (
    load_data_config,
    load_frame_rate,
    load_model,
    locate_detector,
)
from coreaffect.config import DataConfig, _is_integer, _is_real
from coreaffect.decoding import mixture_quantiles
from coreaffect.devices import check_device, torch_seed
from coreaffect.dynamics import (
    AffectObservations,
    CoreAffectDynamics,
)
from coreaffect.errors import CoreAffectError, InputError, listing, warn
from coreaffect.faces import FaceCropper, FaceCrops, _with_missing_frames, spool_crops
from coreaffect.hidden_route import AffectEstimate, HiddenRouteNet, _chunk_plan, frame_windows
from coreaffect.prior import HiddenRoutePrior, latent_moments
from coreaffect.streaming import _StreamState
from coreaffect.trajectory import AffectRow, AffectTrajectory
from coreaffect.video import Frame, VideoSource, frame_rate, rates_agree

__all__ = ["STAGES", "CoreAffect", "load_run"]

logger = logging.getLogger(__name__)

#: The stages of a trajectory, in the order a run adds them.
STAGES = ("raw", "prior", "smoothed", "filtered", "lagged")
_DYNAMIC = BANDED_STAGES  # the stages the dynamics produce, each with its band factors
_MAX_RATE = 1000  # frames a second: a stream's numbering that skips faster is an error
_RATE_FRAMES = 32  # a stream's first frames, whose rate is checked
_DTYPE = torch.float64


def _sqrt_psd(cov: torch.Tensor) -> torch.Tensor:
    """(..., K, K) symmetric square roots of covariances, robust to near-singular ones.

    Raises:
        CoreAffectError: A matrix that is not symmetric positive semi-definite beyond
            rounding (by more than 1e-6 times its largest entry, or eigenvalue, plus 1e-12).
    """
    asymmetry = (cov - cov.transpose(-1, -2)).abs().amax((-2, -1))
    if bool((asymmetry > 1e-6 * cov.abs().amax((-2, -1))).any()):
        raise CoreAffectError("latent covariances must be symmetric")
    values, vectors = torch.linalg.eigh(0.5 * (cov + cov.transpose(-1, -2)))
    scale = values.abs().amax(-1, keepdim=True)
    if bool((values < -1e-6 * scale - 1e-12).any()):
        raise CoreAffectError("latent covariances must be positive semi-definite; one has an "
                              f"eigenvalue of {float(values.min()):.3g}")
    return vectors * values.clamp_min(0).sqrt()[..., None, :]


def _release_pages(array: np.ndarray) -> None:
    """Let go of the resident pages of a read-only memory-mapped array; its data stay on disk.

    The pages of a file mapping that were read count towards the process's resident memory
    until the mapping is closed, so reading a whole video's memory-mapped crops segment by
    segment would end with all of them resident. Released pages are read again from the file
    when touched. Arrays not backed by a read-only mapping (whose pages may hold changes), and
    systems without ``madvise``, are left alone.
    """
    base = array
    while isinstance(base, np.ndarray):  # a view's base chain ends at the mapping, if any
        base = base.base
    if not isinstance(base, mmap.mmap) or not hasattr(mmap, "MADV_DONTNEED") or base.closed:
        return
    with memoryview(base) as view:
        if not view.readonly:
            return
    base.madvise(mmap.MADV_DONTNEED)


def _check_complete(run: Path) -> None:
    """Refuse a run whose training stopped while it wrote the later stages (``stages.json``,
    written last, is missing beside some of them); warn of one whose network is the best of a
    training that did not finish."""
    if not (run / "split.json").exists():  # not written by coreaffect train: as it is
        return
    later = [name for name in ("manifold.json", "prior.json", "dynamics.json", "bands.json")
             if (run / name).exists()]
    if later and not (run / "stages.json").exists():
        raise CoreAffectError(f"{run}: its training stopped while it wrote the later stages "
                              f"({', '.join(later)} are there, stages.json is not); fit them "
                              "again with 'coreaffect train --resume' (the same data and "
                              "options)")
    from coreaffect.stages import STAGE_FILES

    missing = [name for name in STAGE_FILES if not (run / name).exists()]
    if (run / "stages.json").exists() and missing:  # lost or moved since they were written
        raise CoreAffectError(f"{run}: stages.json says the later stages were fitted, but "
                              f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
                              "missing; put them back, or fit them again into a new run "
                              "directory with 'coreaffect refit'")
    if (run / "training" / "last.json").exists() and not (
            run / "training" / "train_config.json").exists():
        logger.warning("%s: its training did not finish; the network is the best of the epochs "
                       "it ran ('coreaffect train --resume' goes on)", run)


class CoreAffect:
    """A trained run as one object: video in, :class:`~coreaffect.trajectory.AffectTrajectory` out.

    Build it with :meth:`load` (or :func:`load_run`). A run that holds only the hidden route (no
    ``prior`` and ``dynamics`` files) still predicts: the ``raw`` stage, the hidden route's own
    Gaussian.

    Args:
        model: The hidden route.
        data_config: How it was trained to see faces (crop side, margin, ...).
        prior: The calibrated prior with its manifold, or ``None``.
        dynamics: The fitted dynamics (latent space), or ``None``.
        device: Where the hidden route computes.
        n_decode_samples: S, latent points per frame when decoding latents, an even number
            (antithetic pairs of a scrambled Sobol sequence; see the module notes).
        chunk_frames: Frames per hidden-route trunk call (bounds its memory).
        segment_frames: Frames whose hidden-route estimates are computed per pass over the crops
            (plus a margin of a few dozen frames either side); bounds the crops read into memory
            at a time (2048 frames of 64 x 64 crops: 25 MB).
        decode_chunk: Latent points (frames x ``n_decode_samples``, whole frames, at least
            one) decoded per call of the manifold; bounds the decoder's memory (about 0.5 kB a
            point).
        band_scale: ``{"smoothed": (k_v, k_a), "filtered": (k_v, k_a), "lagged": (k_v, k_a)}``
            (or one number for both dimensions), factors on the half-widths of the decoded
            valence and arousal bands (their variances by k^2; the means are untouched), chosen
            on validation videos by :func:`~coreaffect.stages.fit_core_affect` so that the
            bands cover at their level (the dynamics treats the estimates' errors as independent
            from frame to frame, while the hidden route's errors are slow, so its own bands are
            too narrow); missing stages use 1. The ``lagged`` factors hold for the lag they
            were chosen at.
        lag: L, the look-ahead in frames of the ``lagged`` stage (an integer >= 1), or ``None``
            for a run without one (the stage is then not available).
        random_state: Seed of the scrambling of the decoding's Sobol points (an integer in
            [0, 2^63)).
        folder_format: The dataset format of the frame folders this run reads, as it was
            trained on them (:meth:`load` takes it from ``RUN/split.json``): a frame folder is
            read at that format's rate, unless ``data_config.video.fps`` sets one, and with its
            numbering (:func:`~coreaffect.corpus.folder_numbering`; Aff-Wild2's folders are
            30 Hz from ``00001``). ``None``: 25 Hz from ``00000``. Video files keep their own
            rate.
        frame_rate: The frame rate (Hz) of the videos the hidden route was trained on
            (:meth:`load` takes it from ``RUN/hidden_route.json``), against which videos are
            checked (:meth:`check_frame_rates`); ``None``: unknown, nothing is checked.

    Example::

        affect = CoreAffect.load("run/")
        trajectory = affect.predict("interview.mp4")      # offline: the smoother
        trajectory.to_csv("interview.csv")
        for row in affect.stream(0):                        # a camera, causal
            show(row.time, row.valence, row.arousal)        # your own display
        for row in affect.stream(0, lagged=True):          # L frames later, closer to the truth
            show(row.time, row.valence, row.arousal)
    """

    def __init__(self, model: HiddenRouteNet, data_config: DataConfig,
                 prior: HiddenRoutePrior | None = None,
                 dynamics: CoreAffectDynamics | None = None, *, device: str = "cpu",
                 n_decode_samples: int = 500, chunk_frames: int = 128,
                 segment_frames: int = 2048, decode_chunk: int = 1 << 14,
                 band_scale: dict[str, float] | None = None, lag: int | None = None,
                 random_state: int = 0, folder_format: str | None = None,
                 frame_rate: float | None = None) -> None:
        check_device(device)
        if dynamics is not None and prior is None:
            raise CoreAffectError("dynamics need the prior that feeds them")
        if (isinstance(n_decode_samples, bool)
                or not isinstance(n_decode_samples, numbers.Integral)
                or n_decode_samples < 2 or n_decode_samples % 2):
            raise CoreAffectError("n_decode_samples must be an even number >= 2 (antithetic "
                                  f"pairs), got {n_decode_samples!r}")
        check_lag(lag)
        if not _is_integer(random_state) or not 0 <= random_state < 2**63:
            raise CoreAffectError(f"random_state must be an integer seed in [0, 2^63) of the "
                                  f"decoding's points, got {random_state!r}")
        if not all(_is_integer(n) and n >= 1
                   for n in (chunk_frames, segment_frames, decode_chunk)):
            raise CoreAffectError(f"chunk_frames, segment_frames and decode_chunk must be "
                                  f"integers >= 1, got {chunk_frames!r}, {segment_frames!r} and "
                                  f"{decode_chunk!r}")
        if band_scale is not None and not isinstance(band_scale, Mapping):
            raise CoreAffectError(f"band_scale must map stages ({', '.join(_DYNAMIC)}) to "
                                  f"their band factors, got {band_scale!r}")
        _chunk_plan(0, model.config, chunk_frames)  # one the network cannot take: said now
        if folder_format is not None and folder_format not in FORMATS:
            raise CoreAffectError(f"folder_format must be one of {', '.join(FORMATS)}, got "
                                  f"{folder_format!r}")
        if frame_rate is not None and not (_is_real(frame_rate) and frame_rate > 0):
            raise CoreAffectError(f"frame_rate must be a number of frames per second > 0, or "
                                  f"None, got {frame_rate!r}")
        unknown = sorted(set(band_scale or {}) - set(_DYNAMIC))
        if unknown:
            raise CoreAffectError(f"band_scale has factors of the stages {', '.join(_DYNAMIC)}, "
                                  f"not of {', '.join(map(repr, unknown))}")
        self.model = model.eval()
        self.data_config = data_config
        self.prior = prior
        self.dynamics = dynamics
        self.device = device
        self.n_decode_samples = int(n_decode_samples)
        self.chunk_frames = chunk_frames
        self.segment_frames = segment_frames
        self.decode_chunk = decode_chunk
        self.random_state = int(random_state)
        self._points: tuple[tuple[int, int, int], torch.Tensor] | None = None  # _decode_noise's
        self.folder_format = folder_format
        self.frame_rate = None if frame_rate is None else float(frame_rate)
        self.lag = None if lag is None else int(lag)
        self.band_scale = {stage: band_factors(k) for stage, k in
                           {**dict.fromkeys(_DYNAMIC, 1.0), **(band_scale or {})}.items()}

    @property
    def _latent_dynamics(self) -> CoreAffectDynamics | None:
        """The dynamics as they are now, in latent space only: decoding is done here."""
        return None if self.dynamics is None else self.dynamics.without_decoder()

    def _decode_noise(self) -> torch.Tensor:
        """Standard normal points of the latent (S, K): a scrambled Sobol sequence seeded with
        ``random_state``, through the normal quantile function, in antithetic pairs (the mean of
        a linear decoder is exact); the same at every call (made again only when the seed, S or
        the prior's K changed: a streamed frame would otherwise spend half a millisecond on it)."""
        key = (int(self.random_state), self.n_decode_samples, self.prior.manifold.n_latent)
        if self._points is None or self._points[0] != key:
            half = self.n_decode_samples // 2
            sobol = torch.quasirandom.SobolEngine(key[2], scramble=True, seed=torch_seed(key[0]))
            first = sobol.quasi.to(_DTYPE) / 2**sobol.MAXBIT  # (K,) the sequence's first point
            points = sobol.draw(half, dtype=_DTYPE)  # (S/2, K)
            points[0] = first  # the engine makes it in the default dtype, which may be float32
            eps = torch.special.ndtri(points.clamp(1e-12, 1 - 1e-12))
            self._points = key, torch.cat([eps, -eps])
        return self._points[1]

    def __repr__(self) -> str:
        stages = ", ".join(s for s, here in (("raw", True), ("prior", self.prior is not None),
                                             ("dynamics", self.dynamics is not None)) if here)
        return (f"CoreAffect({self.model.config.name!r}, stages: {stages}, lag={self.lag}, "
                f"device={str(self.device)!r})")

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def load(cls, run: str | Path, device: str = "cpu", **kwargs: Any) -> CoreAffect:
        """Load a run directory written by ``coreaffect train``.

        Args:
            run: The run directory.
            device: Where the hidden route computes.
            **kwargs: Passed to the constructor (``n_decode_samples``, ...); ``band_scale`` and
                ``lag`` given here replace the run's (``bands.json``). A ``lag`` other than the
                run's drops the run's ``lagged`` band factors, calibrated for its own lag (the
                band is then the dynamics' own, too narrow), with a warning.

        Raises:
            CoreAffectError: The directory is missing, incomplete, corrupt, or written by an
                incompatible version.
        """
        run = Path(run)
        model = load_model(run, device)
        config = locate_detector(load_data_config(run), run)
        _check_complete(run)
        prior = dynamics = None
        bands = read_bands(run)
        if bands is not None:
            scales, lag = bands
            if "lag" in kwargs:
                check_lag(kwargs["lag"])  # before a warning that would name a bad lag
            if kwargs.get("lag", lag) != lag and "band_scale" not in kwargs:
                if kwargs["lag"] is not None:  # None: no lagged stage, nothing to calibrate
                    logger.warning("%s: lag %s instead of the run's %s; the lagged bands are "
                                   "not calibrated for it", run, kwargs["lag"], lag)
                scales = {k: v for k, v in scales.items() if k != "lagged"}
            kwargs.setdefault("band_scale", scales)
            kwargs.setdefault("lag", lag)
        if (run / "prior.json").exists():
            prior = HiddenRoutePrior.load(run, device="cpu")
        if (run / "dynamics.json").exists():
            if prior is None:
                raise CoreAffectError(f"{run}: has dynamics but no prior")
            try:
                dynamics = CoreAffectDynamics.load(run, decoder=prior.manifold)
            except (KeyError, TypeError, ValueError) as err:
                raise CoreAffectError(f"{run / 'dynamics.json'}: does not describe a "
                                      f"CoreAffectDynamics ({err})") from None
        if "folder_format" not in kwargs:  # frame folders are read as in training
            from coreaffect.experiment import run_format

            kwargs["folder_format"] = run_format(run)
        kwargs.setdefault("frame_rate", load_frame_rate(run))
        return cls(model, config, prior, dynamics, device=device, **kwargs)

    def open_video(self, source: str | Path | int, fps: float | None = None,
                   first_index: int | None = None) -> VideoSource:
        """Open a video file, frame folder or camera as this run reads its data.

        Args:
            source: A file, a folder of numbered images, or a camera index.
            fps: Rate of a frame folder; ``None``: ``data_config.video.fps``, else the rate of
                ``folder_format``'s folders. For a file, a rate that replaces its own (a raw
                stream's, which FFmpeg guesses); ``None``: its own. A camera keeps its own.
            first_index: Number of a folder's first image; ``None``: that of
                ``folder_format``.

        Returns:
            The opened :class:`~coreaffect.video.VideoSource`.
        """
        from coreaffect.corpus import open_source

        return open_source(source, self.data_config.video, self.folder_format, fps=fps,
                           first_index=first_index)

    @property
    def stages(self) -> tuple[str, ...]:
        """The stages this run can produce (:data:`STAGES` or a prefix of it): ``lagged`` with
        dynamics and a lag, the dynamics' stages with dynamics, ``prior`` with a prior."""
        if self.dynamics is not None:
            return STAGES if self.lag is not None else STAGES[:4]
        return STAGES[:2] if self.prior is not None else STAGES[:1]

    @property
    def latency_frames(self) -> int:
        """The frames D between a frame and the first frame at which its estimate, and its
        causal row, are final.

        Frame c's estimate interpolates the windows centred either side of it
        (:func:`~coreaffect.hidden_route.frame_windows`); a window ends ``clip_length - 1``
        frames after it starts and is final once the trunk's temporal context after its end is
        in. D is the largest such wait over the frames of one stride (the pattern repeats every
        S frames), and at least ``clip_length - 1`` (frames before the first centre take window
        0, which ends at frame ``clip_length - 1``).
        """
        config = self.model.config
        clip, stride = config.clip_length, config.temporal_stride
        _, after = self.model.temporal_context
        first = math.ceil(config.window_centre) + stride  # a frame past the first centre
        wait = max(stride * frame_windows(c, config)[1] + clip - 1 - c
                   for c in range(first, first + stride))
        return max(clip - 1, wait) + after

    # -- the pieces -----------------------------------------------------------------------------

    def _estimates(self, crops: np.ndarray) -> Iterator[tuple[int, int, AffectEstimate]]:
        """Hidden-route estimates of (T, s, s, 3) crops, ``segment_frames`` frames at a time.

        Each segment runs :meth:`~coreaffect.hidden_route.HiddenRouteNet.predict_dense` over its
        frames and a margin either side that holds all their estimates depend on: the two
        windows around a frame reach at most a clip and a step beyond it, and the trunk's
        temporal context beyond those. The margin before starts on the feature grid (a multiple
        of S), so the estimates equal those of one pass over the whole video, to floating-point
        rounding; a video of at most ``segment_frames`` frames is that one pass. The pages of
        memory-mapped crops are released after each segment.

        Yields:
            ``(start, stop, estimate)`` in frame order, covering frames 0 ... T - 1: the
            estimate of frames start ... stop - 1 (mean and variance (stop - start, 2),
            embedding (stop - start, D)). Nothing if T is shorter than a clip.
        """
        count = len(crops)
        clip, stride = self.model.config.clip_length, self.model.config.temporal_stride
        if count < clip:
            return
        before, after = self.model.temporal_context
        lead, trail = clip + stride + before, clip + stride + after  # margins, in frames
        for start in range(0, count, self.segment_frames):
            stop = min(start + self.segment_frames, count)
            first = max(0, start - lead) // stride * stride
            last = min(count, stop + trail)
            estimate = self.model.predict_dense(crops[first:last], chunk_frames=self.chunk_frames,
                                                device=self.device)
            _release_pages(crops)
            yield start, stop, AffectEstimate(*(x[start - first:stop - first] for x in estimate))

    def _latent_prior(self, estimate: AffectEstimate) -> tuple[torch.Tensor, torch.Tensor]:
        """Prior means (T, K) and covariances (T, K, K) in float64."""
        return latent_moments(self.prior(AffectEstimate(*(x.float() for x in estimate))))

    def decode(self, latent_mean: torch.Tensor, latent_cov: torch.Tensor, level: float
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Latent Gaussians to valence-arousal through the manifold (see the module notes).

        Args:
            latent_mean: (T, K).
            latent_cov: (T, K, K).
            level: Probability of the central band.

        Returns:
            ``(mean, var, lower, upper)``, each (T, 2) float64 (:meth:`decode_bands` at one
            level).
        """
        mean, var, bands = self.decode_bands(latent_mean, latent_cov, [level])
        return mean, var, *bands[0]

    def decode_bands(self, latent_mean: torch.Tensor, latent_cov: torch.Tensor,
                     levels: Sequence[float]
                     ) -> tuple[np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
        """Latent Gaussians to valence-arousal, with central bands at several levels.

        Args:
            latent_mean: (T, K).
            latent_cov: (T, K, K).
            levels: Probabilities of the central bands.

        Returns:
            ``(mean, var, bands)``: mean and var (T, 2) float64, and per level ``(lower,
            upper)``, each (T, 2), the (1 -/+ level) / 2 quantiles of the same decoded mixture.

        The frames are decoded ``decode_chunk`` latent points at a time, each frame on its own,
        so the result does not depend on ``decode_chunk``; the outputs are allocated up front
        (results kept per chunk between the decoder's large temporaries fragment the heap).
        """
        levels = [check_level(level) for level in levels]
        manifold = self.prior.manifold
        m = torch.as_tensor(latent_mean, dtype=_DTYPE)
        cov = torch.as_tensor(latent_cov, dtype=_DTYPE)
        k = manifold.n_latent
        if m.ndim != 2 or m.shape[1] != k or cov.shape != (len(m), k, k):
            raise CoreAffectError(f"decoding needs latent means (T, {k}) and covariances "
                                  f"(T, {k}, {k}), got {tuple(m.shape)} and {tuple(cov.shape)}")
        if not bool(torch.isfinite(m).all() & torch.isfinite(cov).all()):
            raise CoreAffectError("decoding needs finite latent means and covariances")
        root = _sqrt_psd(cov)  # (T, K, K); raises on a covariance that is not one
        noise = manifold.noise_scale_.to("cpu", _DTYPE)  # (2,)
        eps = self._decode_noise()
        probs = torch.tensor([p for level in levels for p in (0.5 - level / 2, 0.5 + level / 2)],
                             dtype=_DTYPE)  # (2L,): lower and upper of each level
        out = torch.empty(2 + len(probs), len(m), 2, dtype=_DTYPE)  # mean, var, the quantiles
        step = max(1, self.decode_chunk // len(eps))  # frames per decoder call
        for start in range(0, len(m), step):
            part = slice(start, start + step)
            z = m[part, None, :] + (root[part, None] @ eps[None, :, :, None])[..., 0]
            g = manifold.decode(z.float()).mean.to("cpu", _DTYPE)  # (t, S, 2)
            out[0, part] = g.mean(1)
            out[1, part] = g.var(1, unbiased=False) + noise**2
            out[2:, part] = mixture_quantiles(g, noise, probs)  # (2L, t, 2)
        values = out.numpy()
        return values[0], values[1], [(values[2 + 2 * i], values[3 + 2 * i])
                                      for i in range(len(levels))]

    def _widen(self, stage: str, mean: np.ndarray, var: np.ndarray, lower: np.ndarray,
              upper: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Apply a stage's band factors (k_v, k_a) to decoded moments (:func:`widen_bands`)."""
        return widen_bands(self.band_scale[stage], mean, var, lower, upper)

    def _gaussian(self, times, indices, face_found, mean, var, level, stage, latent=None,
                  band_levels=()) -> AffectTrajectory:
        from scipy.special import ndtri

        lower, upper = ({}, {})
        for p in (level, *band_levels):
            half = ndtri(0.5 + p / 2) * np.sqrt(var)
            lower[p], upper[p] = mean - half, mean + half
        latent = np.zeros((len(times), 0)) if latent is None else latent
        return AffectTrajectory(times, indices, mean, var, lower[level], upper[level], face_found,
                                latent, level, stage,
                                {p: (lower[p], upper[p]) for p in band_levels if p != level})

    # -- batch ------------------------------------------------------------------------------------

    def stages_of(self, crops: FaceCrops, level: float = 0.9,
                  stages: Iterable[str] | None = None, *,
                  band_levels: Sequence[float] = ()) -> dict[str, AffectTrajectory]:
        """Every stage of one video's face crops, from one hidden-route pass.

        The pass runs over the crops segment by segment (``segment_frames`` frames with their
        margins, equal to one pass over the whole video to floating-point rounding); each
        segment's estimates are reduced at once to the few numbers per frame the stages are
        made of (the hidden route's and the prior's moments), so memory is bounded whatever
        the video's length but for those.

        Args:
            crops: The video's :class:`~coreaffect.faces.FaceCrops` (crops (T, s, s, 3), e.g.
                memory-mapped as :meth:`crop` returns them).
            level: Probability of the bands.
            stages: Which of :attr:`stages` to compute (default: all this run has).
            band_levels: Levels of more central bands to give each trajectory
                (``AffectTrajectory.bands``), from the same latent points as its own.

        Returns:
            ``{stage: AffectTrajectory}`` in :data:`STAGES` order.
        """
        level = check_level(level)
        band_levels = [check_level(p) for p in band_levels]
        wanted = list(self.stages if stages is None else stages)
        unknown = [s for s in wanted if s not in self.stages]
        if unknown:
            raise CoreAffectError(f"this run cannot produce {unknown}: it has {self.stages} "
                                  "(train with coreaffect train to fit the prior and dynamics)")
        times = np.asarray(crops.times, dtype=np.float64)
        indices = np.asarray(crops.indices, dtype=np.int64)
        found = np.asarray(crops.face_found, dtype=bool)
        count = len(times)
        # frames with an estimate and a face: none if the video is shorter than a clip
        observed = found if count >= self.model.config.clip_length else np.zeros(count, bool)
        k = self.prior.manifold.n_latent if self.prior is not None else 0
        need_prior = self.prior is not None and bool(set(wanted) - {"raw"})
        # the per-frame results, filled in segment by segment; NaN where there is no estimate
        raw_mean, raw_var = np.full((count, 2), np.nan), np.full((count, 2), np.nan)  # (T, 2)
        loc = torch.zeros(count, k, dtype=_DTYPE)  # (T, K) prior means
        cov = torch.eye(k, dtype=_DTYPE).expand(count, k, k).clone()  # (T, K, K) covariances
        prior_mean, prior_var = np.full((count, 2), np.nan), np.full((count, 2), np.nan)
        prior_latent = np.full((count, k), np.nan)  # (T, K) the prior stage's latent means
        for start, stop, estimate in self._estimates(crops.crops):
            part, seen = slice(start, stop), observed[start:stop]
            raw_mean[part][seen] = estimate.mean.double().numpy()[seen]
            raw_var[part][seen] = estimate.var.double().numpy()[seen]
            if need_prior:  # the priors once: the prior stage decodes the same ones
                latent = self.prior(AffectEstimate(*(x.float() for x in estimate)))
                loc[part], cov[part] = latent_moments(latent)
            if "prior" in wanted and seen.any():
                rows = torch.as_tensor(np.flatnonzero(seen))
                decoded = self.prior.decode(MultivariateNormal(latent.loc[rows],
                                                               scale_tril=latent.scale_tril[rows]))
                prior_mean[part][seen] = decoded.mean.to("cpu", _DTYPE).numpy()
                prior_var[part][seen] = torch.diagonal(decoded.cov, dim1=-2,
                                                       dim2=-1).to("cpu", _DTYPE).numpy()
                prior_latent[part][seen] = loc[part][rows].numpy()
        out: dict[str, AffectTrajectory] = {}
        if "raw" in wanted:
            out["raw"] = self._gaussian(times, indices, found, raw_mean, raw_var, level, "raw",
                                        band_levels=band_levels)
        if "prior" in wanted:
            out["prior"] = self._gaussian(times, indices, found, prior_mean, prior_var, level,
                                          "prior", prior_latent, band_levels)
        if self.dynamics is None or not set(_DYNAMIC) & set(wanted):
            return out
        moments = self.latent_moments(times, loc, cov, observed,
                                      [s for s in _DYNAMIC if s in wanted])
        extra = [p for p in band_levels if p != level]
        for stage, (means, covs) in moments.items():
            decoded, var, bands = self.decode_bands(means, covs, [level, *extra])
            widened = [self._widen(stage, decoded, var, *band) for band in bands]
            mean, var, lower, upper = widened[0]
            out[stage] = AffectTrajectory(times, indices, mean, var, lower, upper, found,
                                          means.numpy(), level, stage,
                                          {p: w[2:] for p, w in zip(extra, widened[1:],
                                                                    strict=True)})
        return {stage: out[stage] for stage in STAGES if stage in out}

    def latent_moments(self, times: np.ndarray, loc: torch.Tensor, cov: torch.Tensor,
                       observed: np.ndarray, stages: Iterable[str] = ("smoothed", "filtered")
                       ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """The dynamics' latent posterior moments of one video, before band scaling.

        Args:
            times: (T,) frame times.
            loc: (T, K) prior means (any value where not observed).
            cov: (T, K, K) prior covariances.
            observed: (T,) bool, frames with a (final) hidden-route estimate and a face.
            stages: Any of ``"smoothed"``, ``"filtered"`` (causal) and ``"lagged"`` (the
                fixed-lag smoother at ``lag`` frames).

        Returns:
            ``{stage: (means (T, K), covs (T, K, K))}``.
        """
        sequence = AffectObservations(torch.as_tensor(times, dtype=_DTYPE), loc, cov,
                                      torch.as_tensor(observed))
        out = {}
        for stage in stages:
            if stage == "smoothed":
                post = self._latent_dynamics.smooth(sequence)
            elif stage == "filtered":
                post = self._latent_dynamics.filter(sequence)
            elif stage == "lagged" and self.lag is not None:
                post = self._latent_dynamics.smooth(sequence, lag=self.lag)
            else:
                raise CoreAffectError(f"no latent moments for stage {stage!r}")
            out[stage] = (post.latent_mean, post.latent_cov)
        return out

    def _online_stage(self, causal: bool, lagged: bool) -> str | None:
        """The stage of ``causal`` or ``lagged`` prediction (``None``: offline), checked."""
        if causal and lagged:
            raise CoreAffectError("causal and lagged exclude each other: the filter answers at "
                                  "each frame, the fixed-lag smoother L frames later")
        if not (causal or lagged):
            return None
        if self.dynamics is None:
            raise CoreAffectError(f"{'causal' if causal else 'lagged'} prediction needs a run "
                                  "with fitted dynamics")
        if lagged and self.lag is None:
            raise CoreAffectError("lagged prediction needs a run fitted with a lag (its "
                                  "bands.json has none); use causal or offline prediction")
        return "filtered" if causal else "lagged"

    def predict_crops(self, crops: FaceCrops, causal: bool = False, level: float = 0.9, *,
                      lagged: bool = False) -> AffectTrajectory:
        """The trajectory of already cropped faces: smoothed, filtered when ``causal``, the
        fixed-lag smoother when ``lagged``.

        Runs without dynamics give their last stage (``prior`` or ``raw``) when offline.
        """
        stage = self._online_stage(causal, lagged)
        if stage is None:
            stage = "smoothed" if self.dynamics is not None else self.stages[-1]
        return self.stages_of(crops, level, [stage])[stage]

    def crop(self, video: str | Path | int | VideoSource, progress: bool = False,
             spool: str | Path | None = None) -> FaceCrops:
        """Decode and crop a video chunk by chunk, the crops spooled to a memory-mapped file.

        Args:
            video: A video file, frame folder, camera index or open source.
            progress: Show a progress bar over chunks.
            spool: Folder for the crop file, a new ``crops-*.u8`` that the caller removes
                (crops of several videos spooled into one folder never share a file);
                ``None``: a temporary folder, removed once the returned crops are no longer
                referenced.

        Returns:
            The :class:`~coreaffect.faces.FaceCrops` of every decoded frame.
        """
        source = video if isinstance(video, VideoSource) else self.open_video(video)
        cropper = FaceCropper(self.data_config.faces)
        size = self.data_config.faces.crop_size
        folder = Path(spool if spool is not None else tempfile.mkdtemp(prefix="coreaffect-"))
        own = spool is None
        handle, name = tempfile.mkstemp(prefix="crops-", suffix=".u8", dir=folder)
        os.close(handle)
        path = Path(name)
        chunks: Iterable = cropper.crop_video(source)
        if progress:
            from tqdm import tqdm

            bar = tqdm(desc=f"cropping {source.name}", unit="frame",
                       total=None if source.kind == "folder" else source.frame_count)

            def counted(parts: Iterable[FaceCrops]) -> Iterator[FaceCrops]:
                for part in parts:  # a folder's missing frames add rows: count rows
                    bar.update(len(part.times))
                    yield part
                bar.close()

            chunks = counted(chunks)
        try:
            meta = spool_crops(chunks, path)
            if len(meta.times) == 0:
                raise CoreAffectError(f"{video}: no frame could be decoded")
        except BaseException:  # nothing of a failed crop stays behind
            if own:
                shutil.rmtree(folder, True)
            else:
                path.unlink(missing_ok=True)
            raise
        frames = len(meta.times)
        data = np.memmap(path, dtype=np.uint8, mode="r", shape=(frames, size, size, 3))
        if own:  # the temporary folder goes when the last view of the crops does
            weakref.finalize(data, shutil.rmtree, folder, True)
        return meta._replace(crops=data)

    def predict(self, video: str | Path | int | VideoSource, causal: bool = False,
                level: float = 0.9, progress: bool = False, *, lagged: bool = False
                ) -> AffectTrajectory:
        """One row per decoded frame of a video (frames without a face included).

        Args:
            video: A video file, frame folder, camera index or open
                :class:`~coreaffect.video.VideoSource`.
            causal: Use for each frame only the estimates up to it (the filter; a live system
                has its row after the fixed latency of the module docstring) instead of the
                whole video (the smoother).
            level: Probability of the credible bands, in (0, 1).
            progress: Show a progress bar while cropping.
            lagged: Use for each frame the estimates up to ``lag`` frames after it (the
                fixed-lag smoother: a live system has its row L frames after the filter's).

        Returns:
            The :class:`~coreaffect.trajectory.AffectTrajectory`.

        Raises:
            CoreAffectError: The video cannot be opened or decoded, ``causal`` or ``lagged``
                without dynamics, ``lagged`` without a lag, or both.
        """
        level = check_level(level)
        self._online_stage(causal, lagged)  # fail before cropping
        with tempfile.TemporaryDirectory(prefix="coreaffect-") as spool:
            crops = self.crop(video, progress=progress, spool=spool)
            try:
                name = str(video.source if isinstance(video, VideoSource) else video)
                self.check_frame_rates({name: (crops.times, crops.indices)})
                self._warn_if_uninformed(name, len(crops.times),
                                         bool(np.asarray(crops.face_found).any()))
                return self.predict_crops(crops, causal=causal, level=level, lagged=lagged)
            finally:
                del crops

    def check_frame_rates(self, videos: Mapping[str, tuple[np.ndarray, np.ndarray]]
                          ) -> dict[str, float | None]:
        """Warn once, naming each video whose frame rate differs from ``frame_rate`` (the
        training videos') by more than a factor of 1.25 either way: 20 to 31.25 fps pass
        against 25 (see the module notes). Nothing is checked when ``frame_rate`` is ``None``.

        Args:
            videos: ``{name: (times (T,), indices (T,))}``, frame times in seconds and frame
                indices of each video.

        Returns:
            ``{name: rate}``, each video's rate (:func:`~coreaffect.video.frame_rate`), ``None``
            for a video without one (a single frame).
        """
        rates = {name: frame_rate([times], [indices]) for name, (times, indices) in videos.items()}
        trained = self.frame_rate
        off = {name: rate for name, rate in rates.items()
               if trained is not None and rate is not None and not rates_agree(rate, trained)}
        if not off:
            return rates
        clip, hz = self.model.config.clip_length, _hertz(trained)
        if len(off) == 1:
            (name, rate), = off.items()
            warn(logger, f"{name}: {_hertz(rate)} frames per second, while the run's network "
                 f"was trained on videos at {hz}: its {clip}-frame clips span "
                 f"{clip / rate:.2f} s here, not the {clip / trained:.2f} s it learned from, so "
                 f"its estimates may be off; resample to {hz} fps (a file: ffmpeg -i IN -vf "
                 f"fps={hz} OUT)")
        else:
            warn(logger, f"{len(off)} of {len(rates)} videos run at another frame rate than the "
                 f"{hz} frames per second of the run's training videos, so the network's "
                 f"{clip}-frame clips span another time than the {clip / trained:.2f} s it "
                 f"learned from, and its estimates may be off: "
                 f"{listing(f'{name} ({_hertz(rate)})' for name, rate in off.items())}; "
                 f"resample them to {hz} fps")
        return rates

    def _warn_if_uninformed(self, name: str, frames: int, any_face: bool) -> None:
        """A warning naming the video when no frame of its ``frames`` gets a hidden-route
        estimate: its rows are then the dynamics' prior (or NaN without dynamics), whatever the
        face did. Blames the caller of the caller (``predict``'s or the stream's consumer)."""
        clip = self.model.config.clip_length
        if frames < clip:
            problem = (f"{frames} frames, fewer than one {clip}-frame clip: no frame has an "
                       "estimate")
        elif not any_face:
            problem = f"no face found in any of its {frames} frames"
        else:
            return
        warn(logger, f"{name}: {problem}, so no row says anything of the face (each is the "
             "dynamics' prior, or empty)")

    # -- streaming ------------------------------------------------------------------------------

    def stream(self, source: str | Path | int | VideoSource | Iterable[Any],
               level: float = 0.9, *, lagged: bool = False, stop: Any = None
               ) -> Iterator[AffectRow]:
        """Online rows as frames arrive: a camera, a file, or an iterable of frames.

        Each frame is cropped on arrival. The row of frame c is yielded when frame c + D arrives
        (D = :attr:`latency_frames`, when its estimate becomes final), and when the source ends
        the rows of its last frames follow: one row per frame in all, in frame order, equal to
        the rows of ``predict(..., causal=True)``. With ``lagged``, the row of frame c comes
        when frame c + D + L arrives (L = ``lag``), equal to the rows of
        ``predict(..., lagged=True)``. The hidden-route features are computed incrementally, S
        frames at a time, and only the last few dozen crops are kept, so memory and cost per
        frame are constant.

        A camera does not end by itself. To end a stream and still have the rows of its last
        frames, set ``stop`` (a :class:`threading.Event`, from another thread or a signal
        handler): the stream ends before the next frame is read, as if the source had ended.
        A ``KeyboardInterrupt`` (Ctrl-C) or a :class:`~coreaffect.errors.CoreAffectError` (an
        unreadable image, a time out of order) that comes while a frame is read, checked or
        cropped also ends it so: the rows of the frames taken before follow, then the exception
        is raised again. (An exception raised in the loop that consumes the rows does not reach
        the stream; breaking out of that loop discards the rows not yet yielded. Most of a stream's
        time goes into computing rows, so a Ctrl-C mostly lands there: to end on Ctrl-C with the
        last rows, let a SIGINT handler set ``stop``, as ``coreaffect stream`` does.)

        Args:
            source: A video file, frame folder, camera index, open source, or an iterable of
                :class:`~coreaffect.video.Frame` (or ``(image, time)`` pairs with an
                (H, W, 3) uint8 RGB image, or an (H, W) uint8 grey one).
            level: Probability of the credible bands.
            lagged: The fixed-lag smoother's rows instead of the filter's.
            stop: ``None``, or an object whose ``is_set()`` says when to end the stream.

        Yields:
            One :class:`~coreaffect.trajectory.AffectRow` per frame.

        Raises:
            CoreAffectError: No fitted dynamics, a bad frame (after the rows before it), or
                ``stop`` without an ``is_set`` method.
        """
        if self.dynamics is None:
            raise CoreAffectError("streaming needs a run with fitted prior and dynamics")
        level = check_level(level)
        self._online_stage(not lagged, lagged)
        if stop is not None and not callable(getattr(stop, "is_set", None)):
            raise InputError(f"stop must have an is_set() method, like threading.Event; got "
                             f"{type(stop).__name__}")
        frames = self._frames(source)
        name = (source.name if isinstance(source, VideoSource)
                else str(source) if isinstance(source, (str, Path, numbers.Integral))
                else "the stream")
        cropper = FaceCropper(self.data_config.faces)
        state = _StreamState(self, lagged)
        from coreaffect.video import FrameChunk

        last: tuple[int, float] | None = None  # index and time of the previous frame
        count, any_face = 0, False
        opening: list[tuple[int, float]] = []  # the first frames' indices and times
        try:
            while stop is None or not stop.is_set():
                try:
                    item = next(frames, None)
                    if item is None:
                        break
                    image, time, index = item
                    index = count if index is None else index
                    if last is not None and index <= last[0]:
                        raise CoreAffectError(f"frame {index}: frame indices must increase, "
                                              f"and it follows frame {last[0]}")
                    time = _frame_time(index, time, None if last is None else last[1])
                    if last is not None:
                        _check_hole(index, time, *last)
                    image = np.asarray(image)
                    if image.dtype == np.uint8 and (image.ndim == 2 or (
                            image.ndim == 3 and image.shape[2] == 1)):  # grey: as RGB
                        image = np.repeat(image.reshape(*image.shape[:2], 1), 3, axis=2)
                    if (image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3
                            or 0 in image.shape):
                        raise CoreAffectError(f"frame {index}: images must be non-empty "
                                              f"(H, W, 3) uint8 RGB or (H, W) grey, got "
                                              f"{image.dtype} {image.shape}")
                    part = cropper.crop(FrameChunk(image[None], np.array([time]),
                                                   np.array([index], dtype=np.int64)))
                except (CoreAffectError, KeyboardInterrupt):
                    yield from state.finish(level)  # the rows of the frames taken before it
                    raise
                count += 1
                # a folder's missing frames get rows without a face first, as in predict
                for piece in _with_missing_frames(part, last,
                                                  self.data_config.video.chunk_size, name):
                    for k in range(len(piece.times)):
                        row = state.push(piece.crops[k], float(piece.times[k]),
                                         int(piece.indices[k]), bool(piece.face_found[k]),
                                         level)
                        if row is not None:
                            yield row
                last = index, time
                any_face = any_face or bool(part.face_found[0])
                if len(opening) < _RATE_FRAMES:
                    opening.append(last)
                    if len(opening) == _RATE_FRAMES:
                        self._check_opening_rate(name, opening)
            yield from state.finish(level)
            # a shorter stream, checked at its end if it had an estimate (a clip's frames)
            if self.model.config.clip_length <= len(opening) < _RATE_FRAMES:
                self._check_opening_rate(name, opening)
            self._warn_if_uninformed(name, state.count, any_face)
        finally:
            frames.close()  # a camera or file opened here is released now, not when collected

    def _check_opening_rate(self, name: str, frames: Sequence[tuple[int, float]]) -> None:
        """:meth:`check_frame_rates` of a stream's first frames, (index, time) pairs."""
        self.check_frame_rates({name: (np.array([t for _, t in frames]),
                                       np.array([i for i, _ in frames]))})

    def _frames(self, source: Any) -> Iterator[tuple[np.ndarray, float, int | None]]:
        """(image, time, index) of each frame; the index of an iterable's frame is its count,
        unless it is a :class:`~coreaffect.video.Frame`."""
        if isinstance(source, VideoSource):  # the caller's to close
            for frame in source:
                yield frame.image, frame.time, frame.index
            return
        if isinstance(source, (str, Path, numbers.Integral)):  # a numpy camera index too
            with self.open_video(source) as video:  # closed when the stream ends or is closed
                for frame in video:
                    yield frame.image, frame.time, frame.index
            return
        for count, item in enumerate(source):
            if not isinstance(item, Frame) and (isinstance(item, np.ndarray) or not isinstance(
                    item, (tuple, list)) or len(item) != 2):
                raise CoreAffectError(
                    f"frame {count}: a stream's frames must be (image, time) pairs or "
                    f"coreaffect.video.Frame, got {type(item).__name__}"
                    + (f" of shape {item.shape}" if isinstance(item, np.ndarray) else ""))
            yield item[0], item[1], item.index if isinstance(item, Frame) else None


def _hertz(rate: float) -> str:
    """A frame rate for a message: ``25``, ``29.97``, ``1000``, ``0.004``."""
    return f"{rate:.2f}".rstrip("0").rstrip(".") if rate >= 0.1 else f"{rate:.2g}"


def _frame_time(index: int, time: Any, previous: float | None) -> float:
    """A streamed frame's time in seconds, checked on arrival: a finite number after the
    previous frame's (``None`` for the first frame).

    Raises:
        CoreAffectError: Naming the frame, before any row that depends on it is yielded.
    """
    try:
        value = float(time)
    except (TypeError, ValueError):
        raise CoreAffectError(f"frame {index}: its time must be a number of seconds, got "
                              f"{time!r}") from None
    if not math.isfinite(value):
        raise CoreAffectError(f"frame {index}: its time must be finite, got {value}")
    if previous is not None and not value > previous:
        raise CoreAffectError(f"frame {index}: time {value:g} s does not follow the previous "
                              f"frame's {previous:g} s (times must increase)")
    return value


def _check_hole(index: int, time: float, last_index: int, last_time: float) -> None:
    """Refuse frame numbers that skip more frames than their times allow: a stream gives each
    skipped frame a row (without a face) at the hidden route's cost per frame, so a numbering
    that jumps (a recorder's counter reset or wrapped) would keep it busy for hours.

    Raises:
        CoreAffectError: More than ``_MAX_RATE`` skipped frames per second between the two
            frames' times.
    """
    skipped = index - last_index - 1
    if skipped > _MAX_RATE * (time - last_time):
        raise CoreAffectError(
            f"frame {index}: {skipped} frames are missing after frame {last_index}, in "
            f"{time - last_time:.3g} s: more than {_MAX_RATE} frames a second, which no camera "
            "takes; a stream gives each missing frame a row, so number its frames as they were "
            "taken (or leave their indices out, and they are counted)")


def load_run(run: str | Path, device: str = "cpu", **kwargs: Any) -> CoreAffect:
    """Load a run directory as a :class:`~coreaffect.pipeline.CoreAffect` (the same as
    :meth:`CoreAffect.load() <coreaffect.pipeline.CoreAffect.load>`)."""
    return CoreAffect.load(run, device=device, **kwargs)
