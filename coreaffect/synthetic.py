"""A synthetic corpus: rendered faces whose expression follows a known valence-arousal trajectory.

:func:`write_corpus` writes real video files of procedurally drawn faces, their annotations in a
supported public format, and the per-frame ground truth, so that the whole toolkit can be run and
checked end to end without any data set. The default corpus mirrors the paper's experiment: 23
videos of 40 s at 25 fps, 13 for training and 10 for test (``coreaffect synth OUT``).

Generative model
~~~~~~~~~~~~~~~~

**Core affect.** A latent ``x_t`` in R^2 follows a two-dimensional Ornstein-Uhlenbeck process::

    dx = -Theta (x - mu) dt + L dW,        Theta = diag(theta_v, theta_a),

with mean-reversion rates ``theta`` (``reversion``, per second), mean ``mu`` (``mean``) and
stationary covariance ``P = [[s_v^2, rho s_v s_a], [rho s_v s_a, s_a^2]]`` (``std`` and
``correlation``); the diffusion is whatever makes P stationary, ``L L^T = Theta P + P Theta^T``,
which is positive semi-definite only for ``rho^2 <= 4 theta_v theta_a / (theta_v + theta_a)^2``
(the configuration asks for ``<``: positive definite, as the Cholesky factors of the sampler
need).
It is sampled with the exact discretisation at the frame step ``dt = 1 / fps``::

    x_{t+1} = mu + F (x_t - mu) + w_t,     F = expm(-Theta dt) = diag(exp(-theta dt)),
    w_t ~ N(0, Q),                         Q = P - F P F^T,

from ``x_0 ~ N(mu, P)``, so every frame is a draw from the stationary law whatever the rate.
The per-frame truth is ``(valence, arousal) = tanh(x_t)``: bounded in (-1, 1), monotone, and
nearly linear for ``|x| < 0.5``, so the OU structure survives where most of the mass lies
(:func:`simulate_affect`). Like any OU path it is rough: its change over a frame has a standard
deviation of about ``s sqrt(2 theta dt)`` (0.1 at the defaults, before the squashing).

**Cues.** With ``(v, a)`` the truth of a frame and ``alpha = (a + 1) / 2`` in [0, 1]:

* *valence is spatial*: the mouth corners rise by ``0.07 v`` face heights (they fall for
  ``v < 0``), and a smile widens the mouth, parts the lips and shows the upper teeth; the brows
  lift with ``v > 0`` and their inner ends rise with ``v < 0`` (sadness); the cheeks rise with
  ``max(v, 0)``, pushing the lower eyelids up and deepening the cheek folds. One frame shows all
  of it.
* *arousal is mostly temporal*: blinks (0.25 s each) start as a Poisson process of rate
  ``lambda = blink_rate[0] * (blink_rate[1] / blink_rate[0]) ** alpha`` per second, less the
  starts that fall inside a blink still running, so that they come at about
  ``lambda / (1 + 0.2 lambda)`` per second at 25 fps (from 0.10 to 0.98 with the default
  rates, measured over 4000 s at arousal -1 and +1); the head jitters
  (position, roll, nod) with an AR(1) process of time constant 0.1 s whose standard deviation
  grows linearly from ``head_jitter[0]`` to ``head_jitter[1]`` face heights; the lips move as in
  speech, ``rest + talk(alpha) sin(phase)`` at a syllable rate near 4 Hz, centred on the
  identity's resting opening so that the *mean* opening does not depend on arousal. A single
  frame cannot tell a fast head from a still one, nor a blink rate; frame differences can. The
  one static arousal cue is weak: the eyes open by a factor ``1 + eye_arousal * a``.
* *body*: in the ``"wide"`` framing the shoulders fidget (sway and shrug, AR(1), 0.25 s) with a
  standard deviation growing from ``body_jitter[0]`` to ``body_jitter[1]`` face heights, as in the
  paper's saliency maps where body motion carries arousal; in the ``"tight"`` framing the head
  fills the frame and the shoulders only follow its slow drift.

**Nuisance factors**, independent of affect: one identity per video (face shape, skin tone, hair
colour, size and placement of eyes, brows, nose and mouth, resting mouth opening, clothes); a
cluttered static background per video (shapes, lines, striped panels, texture); smooth head drift
(Gaussian-filtered noise) in position (2 s), scale (2 s, 5%), roll, yaw and pitch (1 s);
illumination as a per-video gain, a smoothly varying gain (2 s) and a smoothly varying linear
gradient (2.5 s) in a random direction; Gaussian sensor noise of a per-video level drawn from
``noise`` grey levels; the codec's compression (MJPG by default: every frame an independent
JPEG, so no inter-frame artefacts); short occlusions, a bar sweeping across the face or a hand
raised to the mouth (``occlusion_rate`` per minute, 0.6-1.5 s each); and moments where the
person steps out of the frame and back (``exit_rate`` per minute, 0.8-2 s out).

**Detectability.** OpenCV's frontal-face Haar cascade (the data path's default detector) must
find the faces: they are drawn with what it looks for (dark brows and eye sockets above bright
cheeks, a light nose bridge, a dark mouth, hair darker than the skin), the head's drift keeps a
detector's box inside the frame, and each video's identity and background are redrawn until
the cascade finds the face, and nothing else, on a set of probe frames (drift extremes, extreme
expressions, a blink, head turns); the background alone must hold no face either.

**Annotations.** Each of ``raters`` simulated raters reports the truth late and noisily at
``annotation_rate`` Hz: ``y_r(t) = clip(tanh(x)(t - d_r) + e_r(t), -1, 1)`` with a delay
``d_r = rater_delay * U(0.6, 1.4)`` (the value before the video starts is its first frame's) and
a slow error ``e_r``, AR(1) noise of standard deviation ``rater_noise`` and time constant 1 s, like
a wandering joystick. Values are written with 4 decimals. The ``"dante"`` format writes every
rater; ``"csv"`` writes their mean. Reading with ``delay=rater_delay``
(:class:`~coreaffect.config.AnnotationConfig`) compensates the mean delay.

Layout
~~~~~~

::

    <out>/videos/<id>.avi                                  one per video (.mp4 for codec "mp4v")
    <out>/annotation/<UserId>/<id>/{valence,arousal}.csv   format "dante"
    <out>/annotations/<id>.csv                             format "csv" (time,valence,arousal)
    <out>/truth/<id>.csv    frame,time,true_valence,true_arousal,face_visible,occluded
    <out>/synthetic_corpus.json                            the configuration, ids and split
    <out>/README.md

The truth files deliberately carry no ``valence``/``arousal`` columns, so that
:func:`coreaffect.corpus.discover` never takes them for annotations. ``face_visible`` is True when
at least 90% of the face's bounding box lies inside the frame; ``occluded`` marks visible frames
where an occluder covers part of the face: a bar passing near its centre, or a hand raised to
the mouth.

Randomness: ``np.random.SeedSequence(seed)`` spawns one child per video, and each video's child
spawns separate streams for its affect, its look, its motion and events, its camera noise and its
raters. A corpus is thus a function of its :class:`SynthConfig` alone (the same bytes of
annotations and truth, the same decoded frames), whatever the number of worker processes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import multiprocessing
import os
import re
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
from scipy.signal import lfilter

from coreaffect import _render
from coreaffect.checkpoint import temporary_folder
from coreaffect.corpus import discover
from coreaffect.errors import CoreAffectError, listing
from coreaffect.splits import split_recordings

__all__ = ["SynthConfig", "SyntheticCorpus", "Truth", "annotation_delay", "read_truth",
           "simulate_affect", "write_corpus"]

logger = logging.getLogger(__name__)

FRAMINGS = ("tight", "wide")
SYNTH_FORMATS = ("dante", "csv")
CODECS = {"mjpg": ("MJPG", ".avi"), "mp4v": ("mp4v", ".mp4")}  # both write and read back here
MANIFEST = "synthetic_corpus.json"
_MOST_FRAMES = 10_000_000  # per video: each frame's trajectory and events are held in memory
_MOST_VIDEOS = 100_000  # a corpus larger than any affect dataset by two orders of magnitude
TRUTH_HEADER = "frame,time,true_valence,true_arousal,face_visible,occluded"
_DANTE_HEADER = "TimeStamp;UserId;NameVideo;AnnoType;Value"
_BLINK_SECONDS = 0.25  # a blink lasts about a quarter of a second
_JITTER_SECONDS = 0.1  # time constant of the arousal-driven head jitter
_BODY_SECONDS = 0.25  # time constant of the torso fidgeting
_SYLLABLE_HZ = 4.0  # speech moves the lips about four times a second
_VISIBLE = 0.9  # share of the face box inside the frame for face_visible
_NOISE_IMAGES = 8  # sensor-noise images per video, reused in random order


@dataclass(frozen=True)
class SynthConfig:
    """Everything a synthetic corpus is a function of (the model is in the module docstring).

    Pairs ``(low, high)`` of cue parameters are their values at arousal -1 and +1; pairs of OU
    parameters are ``(valence, arousal)``; ``frame_size`` is ``(width, height)``. Invalid values
    raise :class:`~coreaffect.errors.CoreAffectError`.
    """

    videos: int = 23  # the paper's 23 MAHNOB videos
    seconds: float = 40.0  # spans many OU time constants, yet the corpus builds in seconds
    fps: float = 25.0  # MAHNOB's frame rate and DANTE's annotation rate
    frame_size: tuple[int, int] = (320, 240)  # QVGA: small, fast to write and to decode
    face_size: int = 128  # face height in pixels, crown to chin; detector boxes of ~100-130 px
    framing: str = "tight"  # head and neck; "wide" shows shoulders that fidget with arousal
    mean: tuple[float, float] = (0.0, 0.0)  # OU mean of the latent: neutral on average
    reversion: tuple[float, float] = (0.2, 0.3)  # OU rates in 1/s: memories of 5 s and 3.3 s
    std: tuple[float, float] = (0.8, 0.8)  # stationary latent std: tanh(x) covers most of (-1, 1)
    correlation: float = 0.15  # stationary valence-arousal correlation: weak, as in real corpora
    blink_rate: tuple[float, float] = (0.1, 1.2)  # blinks per second; people blink 0.1-1 /s
    head_jitter: tuple[float, float] = (0.002, 0.02)  # fast head motion std, face heights
    talk: tuple[float, float] = (0.0, 0.03)  # lip-movement amplitude, face heights
    eye_arousal: float = 0.08  # the weak static cue: relative eye opening per unit arousal
    body_jitter: tuple[float, float] = (0.003, 0.05)  # torso motion std, face heights (wide)
    noise: tuple[float, float] = (2.0, 6.0)  # range of the per-video noise std, grey levels
    occlusion_rate: float = 1.5  # per minute: some occlusions, most frames clean
    exit_rate: float = 1.0  # per minute: missing faces occur in about half the videos
    format: str = "dante"  # the paper's annotation tool; "csv" writes time,valence,arousal
    raters: int = 3  # several raters, fused by the reader, as DANTE corpora have
    rater_noise: float = 0.05  # std of each rater's slow error, in VA units
    rater_delay: float = 1.0  # mean reaction delay in s; reported annotator delays are 1-3 s
    annotation_rate: float = 25.0  # DANTE samples at 25 Hz
    codec: str = "mjpg"  # MJPG in .avi: intra-frame only, so no inter-frame coding artefacts
    seed: int = 0  # the seed of everything random

    def __post_init__(self) -> None:
        width, height = self.frame_size
        for field in dataclasses.fields(self):  # before the checks: NaN passes comparisons
            value = getattr(self, field.name)
            if not all(math.isfinite(v) for v in np.atleast_1d(value).tolist()
                       if isinstance(v, float)):
                raise CoreAffectError(f"SynthConfig: {field.name} must be finite, got {value}")
        checks = [
            (self.seed >= 0, f"seed must be >= 0, got {self.seed}"),
            (self.videos >= 1, f"videos must be >= 1, got {self.videos}"),
            (self.seconds > 0 and self.fps > 0, "seconds and fps must be positive"),
            (self.fps >= 1, f"fps must be at least 1 (a clip is 16 frames), got {self.fps:g}"),
            (self.frames >= 1, f"seconds * fps must round to one frame or more, got "
                               f"{self.seconds:g} s at {self.fps:g} fps"),
            (self.frames <= _MOST_FRAMES, f"a video may have at most {_MOST_FRAMES:,} frames "
                                          f"(111 hours at 25 fps), got {self.seconds:g} s at "
                                          f"{self.fps:g} fps"),
            (self.videos <= _MOST_VIDEOS, f"videos must be at most {_MOST_VIDEOS:,}, got "
                                          f"{self.videos}"),
            (width >= 320 and height >= 240,
             f"frame_size must be at least (320, 240), got {self.frame_size}"),
            (96 <= self.face_size <= 0.6 * height,
             f"face_size must be in [96, 0.6 * frame height], got {self.face_size}"),
            (self.framing in FRAMINGS, f"framing must be one of {FRAMINGS}"),
            (self.format in SYNTH_FORMATS, f"format must be one of {SYNTH_FORMATS}"),
            (self.codec in CODECS, f"codec must be one of {tuple(CODECS)}"),
            (min(self.reversion) > 0 and min(self.std) > 0, "reversion and std must be > 0"),
            (min(self.blink_rate) > 0, "blink_rate must be > 0"),
            (self.raters >= 1 and self.annotation_rate > 0, "need raters >= 1 and a rate > 0"),
            (min(self.rater_noise, self.rater_delay, self.occlusion_rate, self.exit_rate) >= 0,
             "rater_noise, rater_delay and the event rates must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise CoreAffectError(f"SynthConfig: {message}")
        rates = np.asarray(self.reversion, dtype=np.float64)
        bound = 2 * np.sqrt(rates.prod()) / rates.sum()  # L L^T must be positive definite
        if abs(self.correlation) >= bound:
            raise CoreAffectError(f"SynthConfig: |correlation| must be < {bound:.3f} for these "
                                  f"reversion rates, got {self.correlation}")

    @property
    def frames(self) -> int:
        """T, the number of frames per video."""
        return int(round(self.seconds * self.fps))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, for JSON."""
        return dataclasses.asdict(self)


class Truth(NamedTuple):
    """The per-frame ground truth of one synthetic video.

    Attributes:
        times: (T,) float64 frame times in seconds (frame index / fps).
        values: (T, 2) float64 true (valence, arousal), in (-1, 1).
        face_visible: (T,) bool, at least 90% of the face's box is inside the frame.
        occluded: (T,) bool, an occluder covers part of the (visible) face: a bar passing near
            its centre, or a hand raised to the mouth.
    """

    times: np.ndarray
    values: np.ndarray
    face_visible: np.ndarray
    occluded: np.ndarray


class SyntheticCorpus(NamedTuple):
    """What :func:`write_corpus` wrote.

    Attributes:
        root: The corpus folder (what :func:`coreaffect.corpus.discover` takes).
        ids: The video ids, sorted.
        split: ``(train ids, test ids)``, from :func:`coreaffect.splits.split_recordings` with
            the corpus seed: 13 and 10 for 23 videos.
        format: The annotation format written.
        config: The configuration the corpus was generated with.
    """

    root: Path
    ids: list[str]
    split: tuple[list[str], list[str]]
    format: str
    config: SynthConfig


def simulate_affect(n_frames: int, fps: float, config: SynthConfig,
                    rng: np.random.Generator) -> np.ndarray:
    """Sample a valence-arousal trajectory from the OU model of the module docstring.

    Args:
        n_frames: T, the number of frames.
        fps: Frame rate in Hz; the step is 1 / fps.
        config: Uses ``mean``, ``reversion``, ``std`` and ``correlation``.
        rng: The source of randomness.

    Returns:
        (T, 2) float64 (valence, arousal) = tanh(x_t), in (-1, 1).
    """
    mu = np.asarray(config.mean, dtype=np.float64)
    s = np.asarray(config.std, dtype=np.float64)
    p_inf = np.array([[1.0, config.correlation], [config.correlation, 1.0]]) * np.outer(s, s)
    f = np.exp(-np.asarray(config.reversion, dtype=np.float64) / fps)  # the diagonal of F
    q = p_inf - np.outer(f, f) * p_inf  # Q = P - F P F^T, F diagonal
    start = np.linalg.cholesky(p_inf) @ rng.standard_normal(2)  # x_0 - mu ~ N(0, P)
    noise = rng.standard_normal((max(n_frames - 1, 0), 2)) @ np.linalg.cholesky(q).T  # (T-1, 2)
    x = np.empty((n_frames, 2))
    x[:1] = start
    if n_frames > 1:
        for d in range(2):  # x_{t+1} - mu = f (x_t - mu) + w_t: one AR(1) filter per dimension
            x[1:, d] = lfilter([1.0], [1.0, -f[d]], noise[:, d], zi=[f[d] * start[d]])[0]
    return np.tanh(x + mu)


# ---------------------------------------------------------------------------------------------
# One video: the per-frame plan (vectorised), a scene the detector accepts, then the frames


def _plan(config: SynthConfig, who: _render.Identity, va: np.ndarray,
          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every frame's :class:`~coreaffect._render.FrameState` from the truth, and two flags.

    Returns:
        ``(states (T, F), face_visible (T,), occluded (T,))``, F the number of state fields.
    """
    n, dt = len(va), 1.0 / config.fps
    width, height = config.frame_size
    size0 = float(config.face_size)
    t = np.arange(n) * dt
    v, a = va[:, 0], va[:, 1]
    alpha = (a + 1) / 2  # arousal as activation in [0, 1]
    col = {name: np.zeros(n) for name in _render.FrameState._fields}
    # nuisance: smooth drift of position (softly bounded so a detector's box fits), scale, pose
    size = size0 * np.exp(0.05 * _render.smooth(rng, n, dt, 2.0)[:, 0])
    drift = _render.smooth(rng, n, dt, 2.0, 2)
    base_y = height * (0.4 if config.framing == "wide" else 0.5)
    room_x = max(width / 2 - 0.6 * size0, 1.0)
    room_y = max(min(base_y - 0.6 * size0, height - base_y - 0.45 * size0), 1.0)
    col["cx"] = width / 2 + room_x * np.tanh(0.06 * width * drift[:, 0] / room_x)
    col["cy"] = base_y + room_y * np.tanh(0.025 * height * drift[:, 1] / room_y)
    col["size"] = size
    turn = _render.smooth(rng, n, dt, 1.0, 3)
    col["roll"], col["yaw"], col["pitch"] = 0.05 * turn[:, 0], 0.35 * turn[:, 1], 0.3 * turn[:, 2]
    # arousal: fast head jitter (position, roll, nod)
    jitter = _render.ar1(rng, n, dt, _JITTER_SECONDS, 4)
    amp = config.head_jitter[0] + (config.head_jitter[1] - config.head_jitter[0]) * alpha
    col["cx"] += amp * size * jitter[:, 0]
    col["cy"] += amp * size * jitter[:, 1]
    col["roll"] += 1.5 * amp * jitter[:, 2]
    col["pitch"] = np.clip(col["pitch"] + 8 * amp * jitter[:, 3], -1, 1)
    col["yaw"] = np.clip(col["yaw"], -1, 1)
    # arousal: blinks, a Poisson process whose rate grows geometrically with activation
    low, high = config.blink_rate
    starts = np.flatnonzero(rng.random(n) < low * (high / low) ** alpha * dt)
    length = max(2, int(round(_BLINK_SECONDS * config.fps)))
    shape = np.sin(np.pi * (np.arange(length) + 0.5) / length)
    closure, last = np.zeros(n), -length
    for s in starts:  # a few dozen per video at most
        if s >= last + length:
            closure[s:s + length], last = shape[:n - s], s
    col["eye_open"] = (1 + config.eye_arousal * a) * (1 - closure)
    # arousal: lips moving as in speech, centred on the resting opening
    rate = _SYLLABLE_HZ * np.exp(0.2 * _render.ar1(rng, n, dt, 1.0)[:, 0])
    phase = rng.uniform(0, 2 * np.pi) + 2 * np.pi * np.cumsum(rate) * dt
    talk = config.talk[0] + (config.talk[1] - config.talk[0]) * alpha
    col["mouth_open"] = np.maximum(who.mouth_rest + talk * np.sin(phase), 0.0)
    # valence: the spatial configuration
    col["smile"], col["brow"], col["cheek"] = v, v, np.maximum(v, 0.0)
    # torso: follows the head's slow drift; fidgets with arousal in the wide framing
    body = _render.ar1(rng, n, dt, _BODY_SECONDS, 2)
    col["torso_dx"] = -amp * size * jitter[:, 0] - 0.2 * (col["cx"] - width / 2)
    col["torso_dy"] = -amp * size * jitter[:, 1]
    if config.framing == "wide":
        fidget = (config.body_jitter[0] + (config.body_jitter[1] - config.body_jitter[0])
                  * alpha) * size
        col["torso_dx"] += fidget * body[:, 0]
        col["torso_dy"] += 0.6 * fidget * body[:, 1]
    # nuisance: illumination
    col["gain"] = rng.uniform(0.8, 1.15) * np.exp(0.08 * _render.smooth(rng, n, dt, 2.0)[:, 0])
    col["gradient"] = 0.12 * _render.smooth(rng, n, dt, 2.5)[:, 0]
    # events: exits from the frame (0.4 s out, a hold, 0.4 s back), then occlusions between them
    exits = _render.events(rng, config.exit_rate, config.seconds, 1.6, 2.8, [])
    for start, end in exits:
        s = np.clip(np.minimum(t - start, end - t) / 0.4, 0, 1)
        s = s * s * (3 - 2 * s)  # smoothstep
        target = -0.7 * size if rng.random() < 0.5 else width + 0.7 * size
        col["cx"] += s * (target - col["cx"])
    occluded = np.zeros(n, dtype=bool)
    for start, end in _render.events(rng, config.occlusion_rate, config.seconds, 0.6, 1.5, exits):
        inside = (t >= start) & (t <= end)
        u = (t[inside] - start) / (end - start)  # 0 -> 1 through the event
        if rng.random() < 0.5:  # a bar sweeping across the face
            sweep = -0.8 + 1.6 * u if rng.random() < 0.5 else 0.8 - 1.6 * u
            col["occluder"][inside], col["occ_x"][inside] = 1, sweep
            occluded[inside] = np.abs(sweep) < 0.3
        else:  # a hand raised to the mouth and lowered again
            up = np.clip(np.minimum(u, 1 - u) / 0.2, 0, 1)
            col["occluder"][inside], col["occ_x"][inside] = 2, rng.uniform(-0.08, 0.08)
            col["occ_y"][inside] = 1.2 - up * (1.2 - who.mouth_y - 0.03)
            occluded[inside] = col["occ_y"][inside] < 0.5
    # face_visible: the share of the face's box inside the frame
    half_w = 0.5 * who.width * size
    inside_w = np.minimum(col["cx"] + half_w, width) - np.maximum(col["cx"] - half_w, 0)
    inside_h = np.minimum(col["cy"] + size / 2, height) - np.maximum(col["cy"] - size / 2, 0)
    area = np.clip(inside_w, 0, None) * np.clip(inside_h, 0, None)
    visible = area >= _VISIBLE * 2 * half_w * size
    states = np.stack([col[name] for name in _render.FrameState._fields], axis=1)
    return states, visible, occluded & visible


def _scene(config: SynthConfig, va: np.ndarray, look: np.random.Generator,
           motion: np.random.SeedSequence) -> tuple:
    """Identity, background and plan that pass :func:`~coreaffect._render.accept_scene`.

    Backgrounds are redrawn up to 4 times per identity and identities up to 10 times; should
    none pass, the last is kept (detection is then merely less reliable) with a warning.
    """
    width, height = config.frame_size
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    for attempt in range(40):
        if attempt % 4 == 0:
            who = _render.sample_identity(look)
            plan = _plan(config, who, va, np.random.default_rng(motion))  # same motion each time
            first = _render.FrameState(*plan[0][0].tolist())
            probes = _render.probe_states(first, width, config.face_size)
        background = _render.render_background(look, width, height)
        if _render.accept_scene(cascade, background, who, probes):
            logger.debug("scene accepted at draw %d", attempt + 1)
            break
    else:  # pragma: no cover - not seen with the default settings
        logger.warning("no scene passed the face-detector probes; keeping the last one")
    return (who, background, *plan)


def _rater_traces(config: SynthConfig, va: np.ndarray, rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Annotation times (N,) and every rater's labels (R, N, 2) at the annotation rate."""
    duration = len(va) / config.fps
    times = np.arange(int(np.ceil(duration * config.annotation_rate - 1e-9)))
    times = times / config.annotation_rate
    frame_times = np.arange(len(va)) / config.fps
    traces = np.empty((config.raters, len(times), 2))
    for r in range(config.raters):
        delay = config.rater_delay * rng.uniform(0.6, 1.4)
        error = _render.ar1(rng, len(times), 1 / config.annotation_rate, 1.0, 2)  # (N, 2)
        error *= config.rater_noise
        for d in range(2):
            traces[r, :, d] = np.interp(times - delay, frame_times, va[:, d]) + error[:, d]
    return times, np.clip(traces, -1.0, 1.0)


def _time(seconds: float) -> str:
    """Seconds with up to 6 decimals, trailing zeros dropped."""
    return f"{seconds:.6f}".rstrip("0").rstrip(".")


def _write_annotations(root: Path, video_id: str, name: str, config: SynthConfig,
                       times: np.ndarray, traces: np.ndarray) -> None:
    """Write every rater's labels (DANTE) or their mean (csv)."""
    if config.format == "csv":
        rows = [f"{_time(t)},{x:.4f},{y:.4f}"
                for t, (x, y) in zip(times, traces.mean(axis=0), strict=True)]
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"{video_id}.csv").write_text(
            "time,valence,arousal\n" + "\n".join(rows) + "\n")
        return
    for r in range(config.raters):
        user = f"rater{r + 1:02d}"
        folder = root / "annotation" / user / video_id
        folder.mkdir(parents=True, exist_ok=True)
        for d, dim in enumerate(("valence", "arousal")):
            rows = [f"{_time(t)};{user};{name};{dim};{x:.4f}"
                    for t, x in zip(times, traces[r, :, d], strict=True)]
            (folder / f"{dim}.csv").write_text(_DANTE_HEADER + "\n" + "\n".join(rows) + "\n")


def _make_video(root: Path, video_id: str, seq: np.random.SeedSequence,
                config: SynthConfig) -> int:
    """Simulate, render and write one video with its truth and annotations; returns T."""
    affect, look, motion, sensor, raters = seq.spawn(5)
    va = simulate_affect(config.frames, config.fps, config, np.random.default_rng(affect))
    width, height = config.frame_size
    who, background, states, visible, occluded = _scene(config, va, np.random.default_rng(look),
                                                        motion)
    camera = np.random.default_rng(sensor)
    gradient = _render.gradient_image(camera.uniform(0, 2 * np.pi), width, height)
    positive, negative = _render.noise_bank(camera, camera.uniform(*config.noise),
                                            (height, width, 3), _NOISE_IMAGES)
    order = camera.integers(0, _NOISE_IMAGES, size=len(va))
    fourcc, suffix = CODECS[config.codec]
    path = root / "videos" / f"{video_id}{suffix}"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), config.fps,
                             (width, height))
    if not writer.isOpened():
        raise CoreAffectError(f"{path}: OpenCV cannot write {fourcc} video here")
    occluder = _render.FrameState._fields.index("occluder")
    try:
        for row, k in zip(states.tolist(), order, strict=True):
            row[occluder] = int(row[occluder])
            state = _render.FrameState(*row)
            image = _render.draw_frame(background, who, state)  # (H, W, 3) BGR
            writer.write(_render.expose(image, state, gradient, positive[k], negative[k]))
    finally:
        writer.release()
    lines = [f"{i},{_time(i / config.fps)},{x:.6f},{y:.6f},{int(seen)},{int(hidden)}"
             for i, ((x, y), seen, hidden) in enumerate(zip(va, visible, occluded, strict=True))]
    (root / "truth" / f"{video_id}.csv").write_text(TRUTH_HEADER + "\n" + "\n".join(lines) + "\n")
    times, traces = _rater_traces(config, va, np.random.default_rng(raters))
    _write_annotations(root, video_id, path.name, config, times, traces)
    return len(va)


# ---------------------------------------------------------------------------------------------
# The corpus


_PARTIAL = ".partial-"  # prefix of the folder a corpus is built in, inside its root
CORPUS_PARTS = ("videos", "annotation", "annotations", "truth", "README.md")  # a corpus's files
# the names of the files a synthetic corpus writes there (relative, with "/")
_OWN_FILES = re.compile(r"README\.md|truth/synth\d{3,}\.csv|annotations/synth\d{3,}\.csv"
                        r"|annotation/rater\d{2,}/synth\d{3,}/(valence|arousal)\.csv"
                        r"|videos/synth\d{3,}(" + "|".join(re.escape(suffix) for _, suffix
                                                        in CODECS.values()) + ")")


_CLUTTER = (".DS_Store", "Thumbs.db", "desktop.ini")  # what file browsers leave in folders


def foreign_files(root: Path) -> list[Path]:
    """Files in ``root``'s corpus parts that no synthetic corpus writes (a user's additions)."""
    found = []
    for name in CORPUS_PARTS:
        part = root / name
        for path in ([part] if not part.is_dir() else sorted(part.rglob("*"))):
            if path.is_dir() or not (path.exists() or path.is_symlink()):
                continue
            if (not _OWN_FILES.fullmatch(path.relative_to(root).as_posix())
                    and path.name not in _CLUTTER):
                found.append(path)
    return found


def _prepare(root: Path) -> Path:
    """Create ``root`` unless there, refuse it if it holds anything but an earlier synthetic
    corpus or the leftovers of an interrupted write, and make the folder a new corpus is
    built in (inside ``root``); the earlier corpus is untouched until :func:`_swap_in`."""
    if root.exists() and not root.is_dir():
        raise CoreAffectError(f"{root}: exists and is not a folder")
    root.mkdir(parents=True, exist_ok=True)
    leftovers = list(root.glob(f"{_PARTIAL}*"))  # of a write killed before it could clean up
    others = [p for p in root.iterdir() if p not in leftovers]
    if others and not (root / MANIFEST).is_file():  # decided before anything is deleted
        raise CoreAffectError(f"{root}: folder is not empty and holds no synthetic corpus "
                              f"to replace; choose a new or empty folder")
    foreign = foreign_files(root)
    if foreign:  # the parts are replaced whole: files added to them would be lost
        raise CoreAffectError(f"{root}: holds files that the synthetic corpus there did not "
                              f"write and that replacing it would delete "
                              f"({listing(p.relative_to(root) for p in foreign)}); "
                              "move them out, or choose a new or empty folder")
    for leftover in leftovers:
        shutil.rmtree(leftover, ignore_errors=True)
    building = temporary_folder(root, _PARTIAL)
    for name in ("videos", "truth"):
        (building / name).mkdir()
    return building


def _swap_in(building: Path, root: Path) -> None:
    """Replace the corpus in ``root`` (if any) by the one built in ``building``, by renames only:
    the earlier corpus's parts are moved aside, the new ones in, and the new manifest replaces
    the old one last; an error or an interrupt on the way moves everything back, so ``root``
    holds one whole corpus, the old or the new. The parts set aside are deleted once the new
    corpus is in place. In a folder without a manifest, the new manifest moves first, so that a
    write killed on the way leaves a folder that :func:`_prepare` takes."""
    fresh = not (root / MANIFEST).exists()
    if fresh:
        os.replace(building / MANIFEST, root / MANIFEST)
    aside = temporary_folder(root, _PARTIAL)
    olds, news = [], []  # the parts moved so far
    try:
        for name in CORPUS_PARTS:
            if (root / name).exists():
                (root / name).rename(aside / name)
                olds.append(name)
        for name in CORPUS_PARTS:
            if (building / name).exists():
                (building / name).rename(root / name)
                news.append(name)
        if (building / MANIFEST).exists():
            os.replace(building / MANIFEST, root / MANIFEST)
    except BaseException:
        for name in news:
            (root / name).rename(building / name)
        for name in olds:
            (aside / name).rename(root / name)
        if fresh:  # the folder is left as it was found
            (root / MANIFEST).unlink(missing_ok=True)
        shutil.rmtree(aside, ignore_errors=True)
        raise
    shutil.rmtree(aside, ignore_errors=True)
    building.rmdir()


def _readme(config: SynthConfig, split: tuple[list[str], list[str]]) -> str:
    fourcc, suffix = CODECS[config.codec]
    width, height = config.frame_size
    return (
        "# Synthetic affect corpus\n\n"
        f"Written by `coreaffect.synthetic.write_corpus` (the `coreaffect synth` command), seed "
        f"{config.seed}: {config.videos} videos of {config.seconds:g} s at {config.fps:g} fps, "
        f"{width}x{height} pixels ({fourcc} in {suffix}), of rendered faces whose expression "
        f"follows a known valence-arousal trajectory.\n\n"
        f"* `videos/`: the videos\n"
        f"* `{'annotation/' if config.format == 'dante' else 'annotations/'}`: annotations in the "
        f"{config.format} format ({config.raters} simulated raters, mean delay "
        f"{config.rater_delay:g} s, noise std {config.rater_noise:g})\n"
        f"* `truth/<id>.csv`: the per-frame truth ({TRUTH_HEADER})\n"
        f"* `{MANIFEST}`: the full configuration, the ids and the train/test split "
        f"({len(split[0])}/{len(split[1])} videos)\n"
    )


def _init_worker(forked: bool) -> None:
    """Worker initialiser: one OpenCV thread per process (the processes fill the CPUs).

    A forked worker inherits the setting from its parent; reconfiguring OpenCV's thread pool
    after a fork can hang, so only fresh (spawned) workers set it themselves.
    """
    if not forked:
        cv2.setNumThreads(1)


def write_corpus(out: str | Path, config: SynthConfig = SynthConfig(), *,  # noqa: B008
                 progress: bool = False, workers: int | None = None) -> SyntheticCorpus:
    """Write a synthetic corpus: videos, annotations, truth, manifest and README.

    Args:
        out: The corpus folder, created if missing. An earlier synthetic corpus there is
            replaced, other files beside it kept; any other non-empty folder is refused, and
            so is a corpus whose folders hold files it did not write (they would be lost).
        config: What to generate.
        progress: Show a tqdm progress bar over videos.
        workers: Processes rendering videos in parallel; ``None`` uses every CPU (at most one
            per video), 1 renders in this process. The output does not depend on it.

    Returns:
        The :class:`SyntheticCorpus`.

    Raises:
        CoreAffectError: ``out`` is a non-empty folder without a synthetic corpus, or with
            files of someone else's in the corpus's folders, or OpenCV cannot write the codec.
    """
    root = Path(out)
    building = _prepare(root)
    try:
        corpus = _write(building, config, progress, workers)
    except BaseException:  # an error or an interrupt: the earlier corpus, if any, stays
        shutil.rmtree(building, ignore_errors=True)
        raise
    try:
        _swap_in(building, root)
    finally:  # what a swap that failed or was interrupted moved back
        shutil.rmtree(building, ignore_errors=True)
    logger.info("wrote %d synthetic videos to %s", config.videos, root)
    return corpus._replace(root=root)


def _write(root: Path, config: SynthConfig, progress: bool, workers: int | None
           ) -> SyntheticCorpus:
    """The corpus of :func:`write_corpus`, written into the new folder ``root``."""
    ids = [f"synth{k:03d}" for k in range(config.videos)]
    seeds = np.random.SeedSequence(config.seed).spawn(config.videos)
    workers = min(os.cpu_count() or 1, config.videos) if workers is None else max(1, workers)
    started = time.perf_counter()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.videos, desc="synth", unit="video")
    try:
        if workers == 1:
            for video_id, seq in zip(ids, seeds, strict=True):
                _make_video(root, video_id, seq, config)
                if bar is not None:
                    bar.update()
        else:
            forked = multiprocessing.get_start_method() == "fork"
            threads = cv2.getNumThreads()
            cv2.setNumThreads(1)  # inherited by forked workers; restored below
            try:
                with ProcessPoolExecutor(workers, initializer=_init_worker,
                                         initargs=(forked,)) as pool:
                    futures = [pool.submit(_make_video, root, video_id, seq, config)
                               for video_id, seq in zip(ids, seeds, strict=True)]
                    for future in as_completed(futures):
                        future.result()
                        if bar is not None:
                            bar.update()
            finally:
                cv2.setNumThreads(threads)
    finally:
        if bar is not None:
            bar.close()
    train, test = split_recordings(discover(root), seed=config.seed)
    split = ([r.id for r in train], [r.id for r in test])
    manifest = {"generator": "coreaffect.synthetic", "config": config.to_dict(), "ids": ids,
                "train": split[0], "test": split[1]}
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    (root / "README.md").write_text(_readme(config, split))
    logger.debug("rendered %d synthetic videos in %.1f s", len(ids),
                 time.perf_counter() - started)
    return SyntheticCorpus(root, ids, split, config.format, config)


def annotation_delay(root: str | Path) -> float | None:
    """The simulated annotators' mean delay in seconds, if ``root`` is a synthetic corpus.

    Args:
        root: A dataset folder.

    Returns:
        ``rater_delay`` from the corpus's manifest, or ``None`` when ``root`` has no manifest.

    Raises:
        CoreAffectError: The manifest is there but unreadable.
    """
    path = Path(root) / MANIFEST
    if not path.is_file():
        return None
    try:
        return float(json.loads(path.read_text())["config"]["rater_delay"])
    except (ValueError, KeyError, TypeError) as err:
        raise CoreAffectError(f"{path}: not a synthetic corpus manifest ({err})") from err


def read_truth(root: str | Path, video_id: str) -> Truth:
    """The per-frame ground truth of one video of a synthetic corpus.

    Args:
        root: The corpus folder.
        video_id: The video's id.

    Returns:
        Its :class:`Truth`.

    Raises:
        CoreAffectError: There is no truth file for ``video_id`` under ``root``.
    """
    path = Path(root) / "truth" / f"{video_id}.csv"
    if not path.is_file():
        raise CoreAffectError(f"{path}: no truth file for video {video_id!r}")
    data = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    return Truth(times=data[:, 1], values=data[:, 2:4], face_visible=data[:, 4].astype(bool),
                 occluded=data[:, 5].astype(bool))
