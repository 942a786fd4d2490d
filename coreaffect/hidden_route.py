"""The hidden route: a shallow 3D CNN from a 16-frame face clip to valence and arousal.

:class:`HiddenRouteNet` is the network of Ceruti et al. (2017), Table 1: three blocks of
Conv3d 5x5x5 (3->64, 64->128, 128->128) -> ReLU -> MaxPool3d -> LayerNorm, then global average
pooling -> Linear -> tanh -> (valence, arousal). It is trained on 16-frame clips whose target is the
mean of the clip's 16 per-frame labels. Beside the paper's tanh head sits a variance head, so that
every estimate carries its uncertainty. Data flow of the ``paper`` preset (D = 128)::

    video (B, C, T, H, W) = (B, 3, 16, 112, 112), float RGB in [0, 1]
      |  (x - mean) / std             fixed per-channel statistics (config.mean, config.std)
      |  Conv3d 5x5x5, 3 -> 64        padding 2: "same" in T, H and W
      |  ReLU
      |  MaxPool3d (1, 2, 2)          C3D's first pool: space only
      |  LayerNorm                    each time step over (C, H, W), affine per channel
      v
    (B, 64, 16, 56, 56)
      |  Conv3d 5x5x5, 64 -> 128 | ReLU | MaxPool3d (2, 2, 2) | LayerNorm
      v
    (B, 128, 8, 28, 28)
      |  Conv3d 5x5x5, 128 -> 128 | ReLU | MaxPool3d (2, 2, 2) | LayerNorm
      v
    features (B, D, T', H', W') = (B, 128, 4, 14, 14)            <- forward_features
      |  mean over (T', H', W')
      v
    embedding (B, D)
      +--> Linear D -> 2 -> tanh                  mean (B, 2) in (-1, 1)   the paper's head
      +--> Linear D -> 2 -> softplus + min_var    var (B, 2) >= min_var    ours
                                                                       <- forward_head

Choices where the paper is silent:

* **Pooling** follows C3D (Tran et al., 2015): the first MaxPool3d is (1, 2, 2), so the first
  layer's motion features are not merged in time too early; the others are (2, 2, 2). The
  temporal stride of the trunk is S = 1 * 2 * 2 = 4 frames, so a 16-frame clip gives T' = 4.
* **LayerNorm** (Ba et al., 2016) normalises each time step of each clip over (C, H, W), with a
  learned scale and shift per channel (which makes it GroupNorm with one group, applied frame
  by frame). Normalising over time as well would couple all time steps of a clip, so that the
  features of a frame would depend on how long the clip is. Per time step, the trunk is
  equivariant in time: shifting the input by S frames shifts the features by one step (away from
  the zero-padded borders), which is what makes dense inference valid. Not tying the
  normalisation to a fixed (H, W) lets the trunk run at any input size.
* **Input size**: the ``paper`` preset takes 112 x 112 crops, C3D's input side and the default
  face-crop side, so crops need no further resampling and the last feature map (14 x 14) is fine
  enough for Grad-CAM saliency (the paper's Fig. 2). It costs 138 GFLOP per clip (45 at 64 x 64).
  The network is fully convolutional, so any H, W works; the prediction methods resize frames
  of another side to ``input_size`` (bilinear with antialiasing, as the clip dataset does).
* **Input normalisation** happens inside the model: ``(x - mean) / std`` per RGB channel with
  fixed statistics, by default those of Kinetics-400 that torchvision's video models use. The
  network is trained from scratch, so any fixed centring would do; what matters is that the
  statistics travel with the weights (they are part of :class:`ModelConfig`). The zero padding
  of the first convolution therefore pads with the mean colour.
* **Variance head**: Linear -> softplus + ``min_var``, the heteroscedastic regression of Nix &
  Weigend (1994) and Kendall & Gal (2017), trained with the Gaussian negative log-likelihood
  ``0.5 * (log var + (y - mean)^2 / var)``. The floor keeps that loss bounded.
* **Initialisation**: PyTorch's defaults (Kaiming-uniform convolutions and linear layers).
* **Memory layout**: on the CPU the trunk runs channels-last (``torch.channels_last_3d``, time,
  space, then channels in memory), oneDNN's native layout: the per-time-step LayerNorm is then a
  view and a GroupNorm without copies. Measured on two cores, ``lite`` trains 1.5x faster and the
  ``paper`` preset infers ~5% faster. Other devices keep PyTorch's default layout.

Presets (:data:`MODELS`): ``paper`` is Table 1 at 112 x 112. ``lite`` keeps the topology (three
blocks, the same pools and norms, the same heads) but is narrow (8/16/16 channels), uses 3x3x3
kernels (C3D's best kernel; 4.6x fewer multiply-adds per weight tensor than 5x5x5) and takes
24 x 24 crops. It has about 11 k parameters against ~3.1 M and trains at several hundred
windows per second on two CPU cores, for demos, tests and small corpora. Why so small:

* after global average pooling only what the last feature map holds *everywhere* survives. At
  24 x 24 the last map is 3 x 3 and each of its positions sees 22 x 22 pixels, the whole face,
  so "mouth corners up and brows raised" is one pattern wherever it is pooled. At 48 x 48 the
  same network sees a quarter of the face per position, and where a feature is (the mouth, not
  the brow) is lost in the average: measured on the synthetic corpus, a ridge regression on the
  pooled embedding of an untrained 16/32/32 network at 48 x 48 predicted valence with a CCC of
  0.04, on its unpooled feature map 0.51.
* a corpus of a dozen people is easily memorised: a wider network (16/32/32) learned each
  training person's mean label, not their expressions (held-out per-video CCC ~0).
* motion at 24 x 24 is sub-pixel for head jitter, yet it changes the grey levels on every edge,
  which a temporal kernel picks up (a ridge regression on mean absolute frame differences of
  24 x 24 crops predicts the synthetic corpus's arousal with a CCC of 0.80).

Dense inference (:meth:`HiddenRouteNet.predict_dense`) runs the trunk once over a whole frame
sequence instead of once per 16-frame window. Feature step j of the trunk sees frames
[S j - 8, S j + 11] (``paper``; [S j - 4, S j + 7] with 3x3x3 kernels): the frames S j ... S j + 3
plus a context of 8 frames on each side. The sequence is cut into chunks of ``chunk_frames``
frames that start on the feature grid (a multiple of S) and overlap by twice the context; each
chunk keeps only the steps whose receptive field lies inside it (or touches a true end of the
sequence), so the chunked trunk equals the trunk run on the whole sequence, at bounded memory.
Each chunk's feature map is averaged over (H', W') right away, leaving a (T', D) table. A window
of 16 frames starting at frame S k covers feature steps k ... k + 3; averaging them gives exactly
the pooled embedding that :meth:`~HiddenRouteNet.forward_head` computes, and the heads follow.

Alignment: a 16-frame window starting at frame s estimates the mean label of frames s ... s + 15,
so it belongs at their centre, s + 7.5 (:attr:`ModelConfig.window_centre`), between its two
middle frames. Dense windows start every S = 4 frames; every frame between window centres gets
the linear interpolation of the two nearest windows (frame s + 8 gets 7/8 of the window starting
at s and 1/8 of the next), the first 8 frames get the first window's estimate and the last
8 + (T mod 4) frames the last one's (edge padding). The reference
:meth:`~HiddenRouteNet.predict_windows` evaluates every window separately and maps windows to
frames the same way; at stride 1 frame t (8 <= t <= T - 9) gets the mean of the windows starting
at t - 8 and t - 7.

How the two relate: for a window that starts on the feature grid the dense estimate is the
per-window one, except at the window's borders, where the per-window trunk sees zero padding and
the dense trunk the real neighbouring frames. With a real context of 8 frames each side the
per-window estimate equals the dense one to rounding (the tests check both). Every feature step
of a 16-frame window lies within 8 frames of one of its borders, so the padding reaches all of
it. Measured: on random weights and smooth random video the two means differ by 0.3 to 1.3 times
the spread of the estimates over windows (largest difference 0.05 to 0.2); after ~6 minutes of
CPU training of ``lite`` on windows of a synthetic corpus, by about a tenth of that spread.
A network meant for dense use is best trained on dense sequences, where its training inputs look
like the dense trunk's.

References:
    Ceruti, C., Cuculo, V., D'Amelio, A., Grossi, G., Lanzarotti, R. (2017). Taking the hidden
    route: deep mapping of affect via 3D neural networks. ICIAP 2017 workshops, LNCS 10590.

    Tran, D., Bourdev, L., Fergus, R., Torresani, L., Paluri, M. (2015). Learning spatiotemporal
    features with 3D convolutional networks. ICCV 2015. (C3D)

    Ba, J. L., Kiros, J. R., Hinton, G. E. (2016). Layer normalization. arXiv:1607.06450.

    Nix, D. A., Weigend, A. S. (1994). Estimating the mean and variance of the target probability
    distribution. IEEE ICNN 1994.

    Kendall, A., Gal, Y. (2017). What uncertainties do we need in Bayesian deep learning for
    computer vision? NeurIPS 2017.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple, NoReturn

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from coreaffect.config import _is_integer, _is_real
from coreaffect.devices import NETWORK_DTYPE, check_device, resolve_device, seeded
from coreaffect.errors import CoreAffectError

__all__ = ["MODELS", "AffectEstimate", "HiddenRouteNet", "ModelConfig", "check_device",
           "create_model", "frame_windows"]

Frames = Tensor | np.ndarray  # (C, T, H, W) tensor or (T, H, W, C) array; see _frames


class AffectEstimate(NamedTuple):
    """What the hidden route predicts; the last axis of ``mean`` and ``var`` is (valence, arousal).

    Attributes:
        mean: (B, 2) in (-1, 1), the paper's tanh head.
        var: (B, 2) >= ``min_var``, the predictive variance of each dimension.
        embedding: (B, D) globally pooled trunk features.
    """

    mean: Tensor
    var: Tensor
    embedding: Tensor


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a :class:`HiddenRouteNet`, stored as JSON beside its weights.

    Attributes:
        name: Preset the configuration derives from (informative only).
        widths: Output channels of the convolution of each block; D = ``widths[-1]``.
        kernel: Side of the cubic convolution kernels (odd, padded to keep sizes).
        temporal_pool: Temporal size of each block's max pool; spatially every pool halves.
        input_size: Side H = W of the frames the model is trained on.
        clip_length: Frames per clip T; a multiple of the trunk's temporal stride.
        min_var: Floor of the predicted variance, in squared label units.
        mean: Per-channel RGB mean subtracted from inputs in [0, 1].
        std: Per-channel RGB standard deviation inputs are divided by.
        norm_eps: Epsilon of the per-time-step LayerNorm.
    """

    name: str = "paper"
    widths: tuple[int, ...] = (64, 128, 128)  # Table 1 of the paper
    kernel: int = 5  # Table 1: 5x5x5 everywhere
    temporal_pool: tuple[int, ...] = (1, 2, 2)  # C3D: keep time in the first pool, then halve
    input_size: int = 112  # C3D's side and the face-crop default: no resampling of crops
    clip_length: int = 16  # the paper's clips (C3D's 16 frames)
    min_var: float = 1e-3  # std 0.03 on the [-1, 1] scale, below rater noise; NLL stays bounded
    mean: tuple[float, float, float] = (0.43216, 0.394666, 0.37645)  # Kinetics-400 RGB means
    std: tuple[float, float, float] = (0.22803, 0.22145, 0.216989)  # as torchvision video models
    norm_eps: float = 1e-5  # PyTorch's LayerNorm default

    def __post_init__(self) -> None:
        def fail(problem: str) -> NoReturn:
            raise CoreAffectError(f"model config {self.name!r}: {problem}")

        for name in ("widths", "temporal_pool"):
            values = getattr(self, name)
            if not isinstance(values, tuple) or not all(_is_integer(v) for v in values):
                fail(f"{name} must be a tuple of integers, got {values!r}")
        for name in ("kernel", "input_size", "clip_length"):
            if not _is_integer(getattr(self, name)):
                fail(f"{name} must be an integer, got {getattr(self, name)!r}")
        if not (isinstance(self.mean, tuple) and isinstance(self.std, tuple)
                and all(_is_real(v) for v in (self.min_var, self.norm_eps, *self.mean,
                                              *self.std))):
            fail(f"min_var, norm_eps, mean and std must be finite numbers, got {self.min_var!r}, "
                 f"{self.norm_eps!r}, {self.mean!r}, {self.std!r}")
        if not self.widths or min(self.widths) < 1:
            fail(f"widths must be positive, got {self.widths}")
        if self.kernel < 1 or self.kernel % 2 == 0:
            fail(f"kernel must be odd and positive (same padding), got {self.kernel}")
        if len(self.temporal_pool) != len(self.widths) or min(self.temporal_pool) < 1:
            fail(f"temporal_pool needs one positive size per block, got {self.temporal_pool}")
        if self.input_size < 2 ** len(self.widths):
            fail(f"input_size must be at least {2 ** len(self.widths)}, got {self.input_size}")
        stride = math.prod(self.temporal_pool)
        if self.clip_length < stride or self.clip_length % stride:
            fail(f"clip_length ({self.clip_length}) must be a multiple of the temporal "
                 f"stride ({stride})")
        if not self.min_var > 0 or not self.norm_eps > 0:
            fail(f"min_var and norm_eps must be positive, got {self.min_var}, {self.norm_eps}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            fail("mean and std need 3 values (RGB), std positive")

    @property
    def temporal_stride(self) -> int:
        """Frames per feature step of the trunk, S."""
        return math.prod(self.temporal_pool)

    @property
    def window_centre(self) -> float:
        """Offset of a window's centre from its first frame, ``(clip_length - 1) / 2``: a window
        estimates the mean label of its frames, centred there (7.5 for 16 frames)."""
        return (self.clip_length - 1) / 2

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, for JSON."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build from a dict (lists become tuples); unknown keys raise
        :class:`~coreaffect.errors.CoreAffectError`."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - fields
        if unknown:
            raise CoreAffectError(f"model config: unknown key(s) {sorted(unknown)}; "
                                  f"known: {sorted(fields)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


#: The presets by name, ``paper`` (the paper's Table 1) and ``lite``.
MODELS: dict[str, ModelConfig] = {
    "paper": ModelConfig(),
    # narrow and small: the last 3 x 3 map sees the whole face (module docstring)
    "lite": ModelConfig(name="lite", widths=(8, 16, 16), kernel=3, input_size=24),
}


def create_model(name: str = "paper", *, random_state: int | None = None,
                 **overrides: Any) -> HiddenRouteNet:
    """Build a freshly initialised network from a preset of
    :data:`~coreaffect.hidden_route.MODELS`.

    Args:
        name: ``"paper"`` or ``"lite"``.
        random_state: Seed of the initial weights, drawn on the CPU without touching the
            caller's random state; ``None`` draws them from torch's global generator, as torch's
            own layers do.
        **overrides: Fields of :class:`ModelConfig` to change, e.g. ``input_size=64``.

    Returns:
        The network, on the CPU, in training mode.

    Raises:
        CoreAffectError: For an unknown preset or field, or an invalid value.
    """
    if name not in MODELS:
        raise CoreAffectError(f"unknown model {name!r}; available: {sorted(MODELS)}")
    config = ModelConfig.from_dict({**MODELS[name].to_dict(), **overrides})
    if random_state is None:
        return HiddenRouteNet(config)
    if not _is_integer(random_state):
        raise CoreAffectError(f"random_state must be an integer seed or None, got "
                              f"{random_state!r}")
    with seeded(int(random_state), torch.device("cpu")):
        return HiddenRouteNet(config)


def _temporal_context(config: ModelConfig) -> tuple[int, int]:
    """Frames of context a feature step needs before and after its own S frames.

    Walks the receptive field of feature step 0 back to the input: a pool of size p maps the
    interval [lo, hi] to [p lo, p hi + p - 1], a convolution pads it by ``kernel // 2``.
    """
    lo, hi = 0, 0
    for pool in reversed(config.temporal_pool):
        lo, hi = pool * lo - config.kernel // 2, pool * hi + pool - 1 + config.kernel // 2
    return -lo, hi - (config.temporal_stride - 1)


def _chunk_plan(frames: int, config: ModelConfig, chunk_frames: int
                ) -> list[tuple[int, int, int, int]]:
    """Chunks ``(first frame, end frame, first step, end step)`` covering all T // S steps."""
    stride = config.temporal_stride
    before, after = _temporal_context(config)
    before = -(-before // stride) * stride  # chunks start on the feature grid
    per_chunk = (chunk_frames - before - after) // stride
    if per_chunk < 1:
        raise CoreAffectError(f"chunk_frames must be at least {before + after + stride} for "
                              f"this network, got {chunk_frames}")
    steps = frames // stride
    plan = []
    for first in range(0, steps, per_chunk):
        end = min(first + per_chunk, steps)
        stop = frames if end == steps else min(frames, end * stride + after)
        plan.append((max(0, first * stride - before), stop, first, end))
    return plan


def frame_windows(frame: int, config: ModelConfig) -> tuple[int, int, float]:
    """The dense windows whose estimates frame ``frame``'s estimate interpolates.

    Window k starts at frame S k and is centred at ``S k + window_centre``; a frame between two
    centres interpolates them linearly, a frame before the first centre takes window 0.

    Returns:
        ``(low, high, weight)``: the windows and the weight of ``high`` (``high == low`` when the
        weight is 0). The caller clamps ``high`` to the last window at a video's end.
    """
    position = max(0.0, (frame - config.window_centre) / config.temporal_stride)
    low = math.floor(position)
    weight = position - low
    return low, low + 1 if weight > 0 else low, weight


def _to_frames(values: Tensor, first_centre: float, spacing: int, frames: int) -> Tensor:
    """Linear interpolation of window values at frames ``first_centre + spacing k`` to all frames.

    Args:
        values: (K, X) one row per window.
        first_centre: Frame of window 0.
        spacing: Frames between consecutive window centres.
        frames: T.

    Returns:
        (T, X); frames before the first centre or after the last take its value.
    """
    position = (torch.arange(frames, dtype=torch.float64) - first_centre) / spacing
    position = position.clamp(0, len(values) - 1)  # (T,) in window units
    lo = position.floor().long()
    hi = (lo + 1).clamp(max=len(values) - 1)
    weight = (position - lo).to(values.dtype)[:, None]  # (T, 1)
    return values[lo] * (1 - weight) + values[hi] * weight


def _frames(frames: Frames, start: int, stop: int, size: int, device: torch.device) -> Tensor:
    """Frames ``start:stop`` of a sequence as a (C, t, size, size) float32 tensor on ``device``.

    Args:
        frames: (C, T, H, W) tensor, uint8 in [0, 255] or float in [0, 1]; or a (T, H, W, C)
            numpy array (uint8 or float), as decoded frames and face crops are stored.
        start: First frame.
        stop: End frame (exclusive).
        size: Side to resize to, bilinearly with antialiasing, when H or W differ from it.
        device: Where the result lives.
    """
    if isinstance(frames, np.ndarray):
        clip = torch.from_numpy(np.array(frames[start:stop])).to(device)  # a writable copy
        clip = clip.permute(3, 0, 1, 2)  # (t, H, W, C) -> (C, t, H, W)
    else:
        clip = frames[:, start:stop].to(device)
    clip = clip.float().div_(255) if clip.dtype == torch.uint8 else clip.float()
    if clip.shape[-2:] != (size, size):
        # (C, t, H, W) read as a batch of C images with t channels, as the clip dataset does
        clip = F.interpolate(clip, size=(size, size), mode="bilinear", antialias=True,
                             align_corners=False).clamp_(0, 1)
    return clip


def _sequence_length(frames: Frames, clip_length: int) -> int:
    """T of a frame sequence, after checking its layout (see :func:`_frames`)."""
    if isinstance(frames, np.ndarray):
        ok, length, layout = frames.ndim == 4 and frames.shape[-1] == 3, len(frames), "(T, H, W, 3)"
    elif isinstance(frames, Tensor):
        ok, layout = frames.ndim == 4 and frames.shape[0] == 3, "(3, T, H, W)"
        length = frames.shape[1] if frames.ndim == 4 else 0
    else:
        raise CoreAffectError(f"frames must be a torch tensor or numpy array, got {type(frames)}")
    if not ok:
        raise CoreAffectError(f"frames must be {layout}, got shape {tuple(frames.shape)}")
    if isinstance(frames, np.ndarray):
        usable = frames.dtype == np.uint8 or np.issubdtype(frames.dtype, np.floating)
    else:
        usable = frames.dtype == torch.uint8 or frames.is_floating_point()
    if not usable:
        raise CoreAffectError(f"frames must be uint8 in [0, 255] or floating point in [0, 1], "
                              f"got {frames.dtype}")
    if length < clip_length:
        raise CoreAffectError(f"need at least {clip_length} frames, got {length}")
    return length


class _FrameLayerNorm(nn.Module):
    """LayerNorm of each time step over (C, H, W), with a scale and shift per channel.

    Args:
        channels: C.
        eps: Added to the variance.
    """

    def __init__(self, channels: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels, dtype=NETWORK_DTYPE))
        self.bias = nn.Parameter(torch.zeros(channels, dtype=NETWORK_DTYPE))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, T, H, W) -> (B, C, T, H, W)."""
        b, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)  # (B T, C, H, W): a frame per row
        frames = F.group_norm(frames, 1, self.weight, self.bias, self.eps)
        return frames.view(b, t, c, h, w).transpose(1, 2)  # (B, C, T, H, W)


class _Block(nn.Sequential):
    """Conv3d ("same" padding) -> ReLU -> MaxPool3d (time ``pool``, space 2) -> LayerNorm."""

    def __init__(self, inputs: int, outputs: int, kernel: int, pool: int, eps: float) -> None:
        super().__init__(
            nn.Conv3d(inputs, outputs, kernel, padding=kernel // 2, dtype=NETWORK_DTYPE),
            nn.ReLU(inplace=True),
            nn.MaxPool3d((pool, 2, 2)),
            _FrameLayerNorm(outputs, eps),
        )


class HiddenRouteNet(nn.Module):
    """The hidden-route 3D CNN; architecture and choices in the module docstring.

    Args:
        config: Architecture; ``None`` is the ``paper`` preset.

    Attributes:
        config: The architecture, stored with checkpoints.
        blocks: The trunk, one :class:`torch.nn.Sequential` per block.
        head: The paper's Linear D -> 2 before tanh.
        var_head: Linear D -> 2 before softplus.
    """

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else MODELS["paper"]
        cfg = self.config
        for name, value in (("pixel_mean", cfg.mean), ("pixel_std", cfg.std)):
            self.register_buffer(name, torch.tensor(value, dtype=NETWORK_DTYPE).view(1, 3, 1, 1, 1),
                                 persistent=False)
        channels = (3, *cfg.widths)
        self.blocks = nn.Sequential(*[
            _Block(channels[i], channels[i + 1], cfg.kernel, cfg.temporal_pool[i], cfg.norm_eps)
            for i in range(len(cfg.widths))])
        self.head = nn.Linear(cfg.widths[-1], 2, dtype=NETWORK_DTYPE)
        self.var_head = nn.Linear(cfg.widths[-1], 2, dtype=NETWORK_DTYPE)

    @property
    def embedding_dim(self) -> int:
        """D, the width of the embedding."""
        return self.config.widths[-1]

    @property
    def temporal_context(self) -> tuple[int, int]:
        """Frames a feature step sees before and after its own S frames (its receptive field)."""
        return _temporal_context(self.config)

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Number of parameters (all, or only those that require gradients)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def forward_features(self, video: Tensor) -> Tensor:
        """Run the trunk.

        Args:
            video: (B, C, T, H, W) float32 RGB in [0, 1], C = 3, T >= the temporal stride S
                (other floating-point types are converted; integer frames are refused).

        Returns:
            (B, D, T', H', W') with T' = T // S and H', W' halved once per block (floored); on
            the CPU in the channels-last memory layout (see the module docstring).
        """
        if not isinstance(video, Tensor) or not video.is_floating_point():
            raise CoreAffectError("video must be a floating-point torch tensor in [0, 1] (uint8 "
                                  "frames: divide by 255, or use predict_dense), got "
                                  f"{getattr(video, 'dtype', type(video).__name__)}")
        if video.ndim != 5 or video.shape[1] != 3:
            raise CoreAffectError(f"video must be (B, 3, T, H, W), got {tuple(video.shape)}")
        if video.shape[2] < self.config.temporal_stride:
            raise CoreAffectError(f"video needs at least {self.config.temporal_stride} frames, "
                                  f"got {video.shape[2]}")
        video = video.to(self.pixel_mean.dtype)  # float64 frames are computed in float32
        if video.device.type == "cpu":  # oneDNN's native layout: no reorders around the convs
            video = video.contiguous(memory_format=torch.channels_last_3d)
        return self.blocks((video - self.pixel_mean) / self.pixel_std)

    def forward_head(self, features: Tensor) -> AffectEstimate:
        """Pool the trunk's features and apply the heads.

        Args:
            features: (B, D, T', H', W') from :meth:`forward_features`.

        Returns:
            Mean (B, 2), variance (B, 2) and embedding (B, D).
        """
        return self._heads(features.mean(dim=(2, 3, 4)))

    def forward(self, video: Tensor) -> AffectEstimate:
        """Estimate valence and arousal of clips.

        Args:
            video: (B, C, T, H, W) float32 RGB in [0, 1]; trained with T = 16, H = W =
                ``config.input_size``.

        Returns:
            Mean (B, 2), variance (B, 2) and embedding (B, D).
        """
        return self.forward_head(self.forward_features(video))

    def _heads(self, embedding: Tensor) -> AffectEstimate:
        """(B, D) pooled features -> estimate."""
        mean = torch.tanh(self.head(embedding))
        var = F.softplus(self.var_head(embedding)) + self.config.min_var
        return AffectEstimate(mean, var, embedding)

    @contextmanager
    def _inference(self, device: torch.device | str | None) -> Iterator[torch.device]:
        """Eval mode and no gradients on ``device``; mode and device are restored afterwards."""
        home = next(self.parameters()).device
        target = resolve_device(device, home)
        was_training = self.training
        self.eval()
        if target != home:
            self.to(target)
        try:
            with torch.no_grad():
                yield target
        finally:
            if target != home:
                self.to(home)
            self.train(was_training)

    def _trunk_chunks(self, frames: Frames, length: int, chunk_frames: int, batch_size: int,
                      device: torch.device) -> Iterator[tuple[int, Tensor]]:
        """Exact trunk features of a sequence, chunk by chunk, in order.

        Yields:
            ``(first step, features)``, features (D, t, H', W') for steps first ... first + t - 1.
        """
        if batch_size < 1:
            raise CoreAffectError(f"batch_size must be >= 1, got {batch_size}")
        plan = _chunk_plan(length, self.config, chunk_frames)
        stride, size = self.config.temporal_stride, self.config.input_size
        i = 0
        while i < len(plan):
            batch = [plan[i]]  # consecutive chunks of equal length share one trunk call
            i += 1
            while i < len(plan) and len(batch) < batch_size and \
                    plan[i][1] - plan[i][0] == batch[0][1] - batch[0][0]:
                batch.append(plan[i])
                i += 1
            video = torch.stack([_frames(frames, a, b, size, device) for a, b, _, _ in batch])
            features = self.forward_features(video)  # (n, D, t, H', W')
            for (a, _, first, end), feature in zip(batch, features, strict=True):
                offset = first - a // stride  # chunk steps before the kept ones
                yield first, feature[:, offset:offset + end - first]

    def dense_features(self, frames: Frames, *, chunk_frames: int = 128,
                       device: torch.device | str | None = None) -> Tensor:
        """Trunk features of a whole sequence, computed chunk by chunk.

        Equal (to rounding) to ``forward_features`` on the whole sequence at once, with memory
        bounded by the chunk; the result holds all T' steps.

        Args:
            frames: (C, T, H, W) tensor (uint8 or float in [0, 1]) or (T, H, W, C) numpy array.
            chunk_frames: Frames per trunk call, context included.
            device: Where to compute; ``None`` is the model's device.

        Returns:
            (D, T', H', W') on the CPU, T' = T // S.
        """
        length = _sequence_length(frames, self.config.clip_length)
        with self._inference(device) as target:
            pieces = [f.cpu() for _, f in self._trunk_chunks(frames, length, chunk_frames, 1,
                                                              target)]
        return torch.cat(pieces, dim=1).contiguous()

    def predict_dense(self, frames: Frames, *, chunk_frames: int = 128, batch_size: int = 1,
                      device: torch.device | str | None = None) -> AffectEstimate:
        """One estimate per frame of a sequence, running the trunk once over it.

        Windows of ``clip_length`` frames start every S frames; window alignment, edge handling
        and the relation to :meth:`predict_windows` are in the module docstring. The model's
        train/eval mode and device are restored afterwards.

        Args:
            frames: (C, T, H, W) tensor, uint8 in [0, 255] or float in [0, 1], or a (T, H, W, C)
                numpy array as decoded frames are stored (uint8 or float); T >= clip_length. It
                may stay on the CPU: chunks are moved to ``device`` one by one, and resized to
                ``input_size`` when their side differs.
            chunk_frames: Frames per chunk, some of them context (``temporal_context``: 16 for
                ``paper``, 8 for ``lite``); peak memory grows with
                ``chunk_frames * batch_size`` (``paper`` at 112 x 112: ~6 MB a frame, 0.75 GB
                for 128 frames; 12% of the work is context, 6% for 256 frames).
            batch_size: Chunks of equal length per trunk call.
            device: Where to compute; ``None`` is the model's device.

        Returns:
            Mean (T, 2), variance (T, 2) and embedding (T, D), on the CPU.
        """
        length = _sequence_length(frames, self.config.clip_length)
        stride = self.config.temporal_stride
        steps = self.config.clip_length // stride  # feature steps per window
        with self._inference(device) as target:
            # filled in place: the table is allocated once, not assembled from one small tensor
            # per chunk kept alive between the trunk's large temporaries (which fragments the heap)
            pooled = None  # (T', D)
            for first, feature in self._trunk_chunks(frames, length, chunk_frames, batch_size,
                                                     target):
                if pooled is None:
                    pooled = feature.new_empty(length // stride, feature.shape[0])
                pooled[first:first + feature.shape[1]] = feature.mean(dim=(2, 3)).T
            windows = pooled.unfold(0, steps, 1).mean(dim=-1)  # (K, D, steps) -> (K, D)
            estimate = self._heads(windows)
        centre = self.config.window_centre
        return AffectEstimate(*(_to_frames(v.cpu(), centre, stride, length) for v in estimate))

    def predict_windows(self, frames: Frames, *, stride: int = 1, batch_size: int = 8,
                        device: torch.device | str | None = None) -> AffectEstimate:
        """One estimate per frame, evaluating every window separately (the reference).

        Windows of ``clip_length`` frames start at 0, ``stride``, 2 ``stride``, ...; each goes
        through :meth:`forward` on its own, zero-padded at its borders, and is assigned to its
        centre, ``start + (clip_length - 1) / 2``; frames in between are linearly interpolated,
        frames outside the first and last centres edge-padded. The model's train/eval mode and
        device are restored afterwards.

        Args:
            frames: As for :meth:`predict_dense`.
            stride: Frames between window starts.
            batch_size: Windows per forward pass (8 windows: the memory of 128 frames).
            device: Where to compute; ``None`` is the model's device.

        Returns:
            Mean (T, 2), variance (T, 2) and embedding (T, D), on the CPU.
        """
        length = _sequence_length(frames, self.config.clip_length)
        if stride < 1 or batch_size < 1:
            raise CoreAffectError("stride and batch_size must be >= 1")
        clip = self.config.clip_length
        starts = list(range(0, length - clip + 1, stride))
        parts = []
        with self._inference(device) as target:
            for i in range(0, len(starts), batch_size):
                first, last = starts[i], starts[min(i + batch_size, len(starts)) - 1]
                video = _frames(frames, first, last + clip, self.config.input_size, target)
                video = video.unfold(1, clip, stride)  # (C, n, H, W, T)
                video = video.permute(1, 0, 4, 2, 3).contiguous()  # (n, C, T, H, W)
                parts.append(self(video))
        # per field of the estimate: (K, X)
        estimate = [torch.cat(values).cpu() for values in zip(*parts, strict=True)]
        centre = self.config.window_centre
        return AffectEstimate(*(_to_frames(v, centre, stride, length) for v in estimate))
