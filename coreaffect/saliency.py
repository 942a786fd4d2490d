"""What the hidden route looks at: 3D Grad-CAM saliency, overlays, and sanity checks.

:class:`GradCAM3D` is the method of the paper's Fig. 2, Grad-CAM (Selvaraju et al., 2017) on a 3D
network. With ``A_k`` (T', H', W') the k-th of the K feature maps of the last convolutional layer
and ``y`` the explained output (valence, arousal, or the predicted variance of either)::

    alpha_k = mean over (t, h, w) of dy / dA_k[t, h, w]        one weight per channel
    L       = ReLU( mean_k alpha_k A_k )                        (T', H', W')
    map     = upsample_trilinear(L, (T, H, W)) / max            (T, H, W) in [0, 1]

The channel *mean* is the paper's wording; Grad-CAM's channel sum differs by the factor K, which
the normalisation removes. Each clip's map is divided by its own maximum, so 1 marks the most
salient voxel of that clip; a clip whose weighted maps are nowhere positive gets a map of zeros.

Choices where the paper is silent:

* **Layer**: the rectified output of the last Conv3d (its ReLU), before the last max pool: of all
  layers it is the deepest whose maps are still convolutional, and it is twice as fine in time and
  space as the trunk's output (``lite`` at 24 x 24: 8 x 6 x 6 cells; ``paper`` at 112 x 112:
  8 x 28 x 28). Any module can be chosen instead (``layer=``).
* **Gradients without side effects**: a forward hook replaces the layer's output by a detached
  copy that requires gradients, and the gradient is taken with :func:`torch.autograd.grad` with
  respect to that copy only. No backward pass runs through the layers before it, no parameter's
  ``.grad`` is touched, and the maps are the same whether or not the parameters require gradients
  (they are switched off during a call and restored afterwards, as is the train/eval mode; the
  model runs in eval mode). The hook lives only inside the ``with`` block.
* **Output nonlinearities**: the gradient of tanh (or softplus) at the head scales every
  channel's weight by the same positive factor, which the normalisation removes; explaining the
  pre-activation would give the same map, unless tanh saturates (a pre-activation beyond about
  9 in float32, far outside what a trained head gives), where its gradient and the map are 0.

:func:`explain_video` writes a frame grid (PNG) and an animation (GIF, or MP4/AVI) of a whole
video with the estimates written on the frames, blending the maps on the face crops with
:mod:`coreaffect.overlays` (whose :func:`~coreaffect.overlays.overlay_heatmaps` and
:func:`~coreaffect.overlays.write_animation` are re-exported here).

Sanity checks (Adebayo et al., 2018): a saliency method that explains the model must depend on
its weights. :func:`randomized_copy` gives the same architecture with freshly initialised weights,
:func:`saliency_rank_correlation` the Spearman rank correlation of two sets of maps (near 1: the
map reflects the input's structure more than what the model learned), and
:func:`randomization_test` both at once. :func:`saliency_mass_fraction` measures how much of a
map falls inside a known region (on the synthetic corpus, the rendered face).

Example::

    model = load_model("run/")
    with GradCAM3D(model) as cam:
        maps = cam(clips, target="valence")       # (B, T, H, W) in [0, 1]
        result = cam.explain(clips)               # maps for valence and arousal, and estimates

References:
    Selvaraju, R. R., Cogswell, M., Das, A., Vedantam, R., Parikh, D., Batra, D. (2017).
    Grad-CAM: visual explanations from deep networks via gradient-based localization. ICCV 2017.

    Adebayo, J., Gilmer, J., Muelly, M., Goodfellow, I., Hardt, M., Kim, B. (2018). Sanity checks
    for saliency maps. NeurIPS 2018.

    Ceruti, C., Cuculo, V., D'Amelio, A., Grossi, G., Lanzarotti, R. (2017). Taking the hidden
    route: deep mapping of affect via 3D neural networks. ICIAP 2017 workshops, LNCS 10590.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import NamedTuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from scipy.stats import rankdata
from torch import Tensor, nn

from coreaffect.devices import torch_seed
from coreaffect.errors import CoreAffectError, InputError
from coreaffect.hidden_route import AffectEstimate, HiddenRouteNet
from coreaffect.overlays import ANIMATIONS, _display, _label, overlay_heatmaps, write_animation

__all__ = [
    "TARGETS",
    "Explanation",
    "GradCAM3D",
    "RandomizationTest",
    "VideoExplanation",
    "explain_video",
    "explanation_files",
    "overlay_heatmaps",
    "randomization_test",
    "randomized_copy",
    "saliency_mass_fraction",
    "saliency_rank_correlation",
    "write_animation",
]

logger = logging.getLogger(__name__)

TARGETS = ("valence", "arousal", "valence_var", "arousal_var")
"""The outputs a map can explain, the mean of either dimension or its predicted variance."""


class Explanation(NamedTuple):
    """Saliency maps of a batch of clips for several targets, with the estimates they explain.

    Attributes:
        maps: (B, K, T, H, W) float32 in [0, 1], one map per clip and target.
        targets: The K targets, in the order of ``maps``' second axis.
        estimate: The model's :class:`~coreaffect.hidden_route.AffectEstimate` of the clips
            (mean (B, 2), var (B, 2), embedding (B, D)), detached.
    """

    maps: Tensor
    targets: tuple[str, ...]
    estimate: AffectEstimate


class RandomizationTest(NamedTuple):
    """The model-parameter randomisation test of Adebayo et al. (2018).

    Attributes:
        correlation: (B,) Spearman rank correlation of each clip's map under the model and under
            the randomised copy; low values pass the test.
        maps: (B, T, H, W) maps of the model.
        random_maps: (B, T, H, W) maps of the randomised copy.
    """

    correlation: np.ndarray
    maps: Tensor
    random_maps: Tensor


class VideoExplanation(NamedTuple):
    """What :func:`explain_video` computed and wrote.

    Attributes:
        targets: The K explained targets.
        maps: (K, T, H, W) float32 maps in [0, 1] at the frames' size, one per frame.
        mean: (T, 2) the estimate of the window each frame belongs to (what its map explains).
        var: (T, 2) the predicted variance of that window.
        files: Paths written: the grid PNG, then the animation.
    """

    targets: tuple[str, ...]
    maps: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    files: list[Path]


def _default_layer(model: nn.Module) -> nn.Module:
    """The rectification right after the last Conv3d, or that Conv3d if none follows it."""
    modules = list(model.modules())
    last = max((i for i, m in enumerate(modules) if isinstance(m, nn.Conv3d)), default=None)
    if last is None:
        raise CoreAffectError(f"{type(model).__name__} has no Conv3d layer; pass layer=")
    following = modules[last + 1] if last + 1 < len(modules) else None
    return following if isinstance(following, nn.ReLU) else modules[last]


def _check_targets(targets: Sequence[str]) -> tuple[str, ...]:
    targets = tuple(targets)
    unknown = [t for t in targets if t not in TARGETS]
    if unknown or not targets:
        raise CoreAffectError(f"unknown saliency target(s) {unknown}; choose from {TARGETS}")
    return targets


class GradCAM3D:
    """3D Grad-CAM saliency of a video network; the method is in the module docstring.

    A context manager: entering registers one forward hook on ``layer``, leaving removes it.
    Inside, each call runs the model in eval mode with its parameters' ``requires_grad`` off, and
    restores both afterwards; parameters, buffers and ``.grad`` are never changed. Computation
    happens on the model's device.

    Args:
        model: A network mapping (B, 3, T, H, W) clips to an
            :class:`~coreaffect.hidden_route.AffectEstimate`, e.g. a
            :class:`~coreaffect.hidden_route.HiddenRouteNet`.
        layer: The module whose output maps are weighted; ``None`` takes the ReLU after the last
            Conv3d (the rectified maps of the last convolutional layer).

    Example::

        with GradCAM3D(model) as cam:
            maps = cam(clips, "arousal")   # (B, T, H, W)
    """

    def __init__(self, model: nn.Module, layer: nn.Module | None = None) -> None:
        self.model = model
        self.layer = layer if layer is not None else _default_layer(model)
        if not any(m is self.layer for m in model.modules()):
            raise CoreAffectError("layer is not a submodule of the model")
        self._handle: torch.utils.hooks.RemovableHandle | None = None
        self._activation: Tensor | None = None

    def __enter__(self) -> GradCAM3D:
        if self._handle is not None:
            raise CoreAffectError("GradCAM3D is already active (nested 'with')")
        self._handle = self.layer.register_forward_hook(self._capture)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._handle is not None:
            self._handle.remove()
        self._handle = None
        self._activation = None

    def _capture(self, module: nn.Module, inputs: tuple, output: Tensor) -> Tensor:
        """Forward hook: the layer's output becomes a leaf we can differentiate with respect to."""
        leaf = output.detach().requires_grad_(True)
        self._activation = leaf
        return leaf.clone()  # later in-place ops (an in-place ReLU) act on the clone, not the leaf

    def __call__(self, video: Tensor, target: str = "valence") -> Tensor:
        """Saliency maps of clips for one target.

        Args:
            video: (B, C, T, H, W) float RGB in [0, 1] (or uint8 in [0, 255]), C = 3.
            target: One of :data:`TARGETS`.

        Returns:
            (B, T, H, W) float32 maps in [0, 1] on the model's device.
        """
        return self.explain(video, (target,)).maps[:, 0]

    def explain(self, video: Tensor, targets: Sequence[str] = ("valence", "arousal")
                ) -> Explanation:
        """Saliency maps of clips for several targets, from one forward pass.

        Args:
            video: (B, C, T, H, W) float RGB in [0, 1] (or uint8 in [0, 255]), C = 3.
            targets: Some of :data:`TARGETS`.

        Returns:
            The :class:`Explanation`: maps (B, K, T, H, W) on the model's device and the estimate.

        Raises:
            CoreAffectError: Outside the ``with`` block, for an unknown target, or for a video
                that is not (B, 3, T, H, W).
        """
        if self._handle is None:
            raise CoreAffectError("use GradCAM3D inside a 'with' block: "
                                  "with GradCAM3D(model) as cam: cam(video)")
        if torch.is_inference_mode_enabled():  # which enable_grad does not lift
            raise CoreAffectError("Grad-CAM needs gradients: call it outside "
                                  "torch.inference_mode() (torch.no_grad() is fine)")
        targets = _check_targets(targets)
        if video.ndim != 5 or video.shape[1] != 3:
            raise CoreAffectError(f"video must be (B, 3, T, H, W), got {tuple(video.shape)}")
        device = next(self.model.parameters()).device
        video = video.to(device)
        video = video.float() / 255 if video.dtype == torch.uint8 else video.float()
        params = list(self.model.parameters())
        flags = [p.requires_grad for p in params]
        was_training = self.model.training
        self.model.eval()
        for p in params:
            p.requires_grad_(False)  # no graph before the layer: its output is our leaf
        try:
            with torch.enable_grad():
                self._activation = None
                estimate = self.model(video.detach())
                activation = self._activation
                if activation is None:
                    raise CoreAffectError("the hooked layer did not run in the forward pass")
                if activation.ndim != 5:
                    raise CoreAffectError(f"the hooked layer's output must be feature maps (B, "
                                          f"K, T, H, W), got {tuple(activation.shape)}")
                outputs = {"valence": estimate.mean[:, 0], "arousal": estimate.mean[:, 1],
                           "valence_var": estimate.var[:, 0], "arousal_var": estimate.var[:, 1]}
                maps = []
                for i, name in enumerate(targets):
                    # clips are independent in eval mode: the gradient of the sum is per clip
                    (grad,) = torch.autograd.grad(outputs[name].sum(), activation,
                                                  retain_graph=i + 1 < len(targets))
                    maps.append(_cam(activation.detach(), grad, video.shape[2:]))
        finally:
            for p, flag in zip(params, flags, strict=True):
                p.requires_grad_(flag)
            self.model.train(was_training)
            self._activation = None
        estimate = AffectEstimate(*(v.detach() for v in estimate))
        return Explanation(torch.stack(maps, dim=1), targets, estimate)


def _cam(activation: Tensor, grad: Tensor, size: torch.Size) -> Tensor:
    """Grad-CAM of (B, K, T', H', W') maps and gradients, upsampled to ``size`` = (T, H, W)."""
    weights = grad.float().mean(dim=(2, 3, 4), keepdim=True)  # (B, K, 1, 1, 1)
    cam = F.relu((weights * activation.float()).mean(dim=1, keepdim=True))  # (B, 1, T', H', W')
    cam = F.interpolate(cam, size=tuple(size), mode="trilinear", align_corners=False)[:, 0]
    peak = cam.amax(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
    return torch.where(peak > 0, cam / peak.clamp_min(torch.finfo(cam.dtype).tiny),
                       torch.zeros_like(cam)).clamp_(0, 1)


# ---------------------------------------------------------------------------------------------
# Sanity checks


def randomized_copy(model: HiddenRouteNet, seed: int = 0) -> HiddenRouteNet:
    """The same architecture with freshly initialised weights (as
    :func:`~coreaffect.hidden_route.create_model` draws them).

    The global random state is left untouched; the copy is on the model's device and in its
    train/eval mode.

    Args:
        model: A :class:`~coreaffect.hidden_route.HiddenRouteNet`.
        seed: Seed of the new weights.

    Returns:
        A new network; ``model`` is not changed.
    """
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(torch_seed(seed))  # the CPU's only: built there
        fresh = type(model)(model.config)
    return fresh.to(device).train(model.training)


def _as_numpy(maps: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(maps, Tensor):
        return maps.detach().float().cpu().numpy()
    return np.asarray(maps, dtype=np.float64)


def saliency_rank_correlation(maps: Tensor | np.ndarray, other: Tensor | np.ndarray
                              ) -> np.ndarray:
    """Spearman rank correlation of two sets of maps, clip by clip.

    Ties get their average rank (Grad-CAM maps have many zeros).

    Args:
        maps: (B, T, H, W) (or any (B, ...)) saliency maps.
        other: Maps of the same shape, e.g. those of a randomised model.

    Returns:
        (B,) float64 correlations in [-1, 1]; NaN for a clip whose maps are constant.
    """
    a, b = _as_numpy(maps), _as_numpy(other)
    if a.shape != b.shape:
        raise InputError(f"maps of shapes {a.shape} and {b.shape} cannot be compared")
    a = rankdata(a.reshape(len(a), -1), axis=1)  # (B, N) ranks
    b = rankdata(b.reshape(len(b), -1), axis=1)
    a -= a.mean(axis=1, keepdims=True)
    b -= b.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))


def saliency_mass_fraction(maps: Tensor | np.ndarray, region: Tensor | np.ndarray
                           ) -> np.ndarray:
    """Fraction of each clip's saliency mass inside a region.

    Args:
        maps: (B, T, H, W) non-negative maps.
        region: Boolean mask broadcastable to ``maps``: (H, W), (T, H, W) or (B, T, H, W).

    Returns:
        (B,) float64 fractions in [0, 1], ``sum(map * region) / sum(map)``; NaN for an all-zero
        map. A map spread uniformly scores the region's share of the area.
    """
    m, r = _as_numpy(maps), _as_numpy(region).astype(bool)
    if (m < 0).any():
        raise InputError("saliency maps must be non-negative")
    r = np.broadcast_to(r, m.shape)
    total = m.reshape(len(m), -1).sum(axis=1)
    inside = np.where(r, m, 0.0).reshape(len(m), -1).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / np.where(total > 0, total, 1.0), np.nan)


def randomization_test(model: HiddenRouteNet, video: Tensor, target: str = "valence", *,
                       seed: int = 0, layer_index: int | None = None) -> RandomizationTest:
    """Compare a model's maps with those of its randomised copy (Adebayo et al., 2018).

    Args:
        model: The trained network.
        video: (B, C, T, H, W) float RGB in [0, 1] clips.
        target: One of :data:`TARGETS`.
        seed: Seed of the randomised weights.
        layer_index: Position in ``model.modules()`` of the layer to explain in both networks;
            ``None`` uses the default layer of :class:`GradCAM3D`.

    Returns:
        The :class:`RandomizationTest`, maps on the model's device.
    """
    random = randomized_copy(model, seed)

    def layer_of(net: nn.Module) -> nn.Module | None:
        return None if layer_index is None else list(net.modules())[layer_index]

    with GradCAM3D(model, layer_of(model)) as cam:
        maps = cam(video, target)
    with GradCAM3D(random, layer_of(random)) as cam:
        random_maps = cam(video, target)
    return RandomizationTest(saliency_rank_correlation(maps, random_maps), maps, random_maps)


def _window_starts(length: int, clip: int) -> list[int]:
    """Starts of back-to-back windows covering ``length`` frames; the last one is flush right."""
    starts = list(range(0, length - clip + 1, clip))
    if starts[-1] + clip < length:
        starts.append(length - clip)
    return starts


def _as_frames(frames: np.ndarray | Tensor) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB from such an array or a (3, T, H, W) tensor (uint8 or [0, 1])."""
    if isinstance(frames, Tensor):
        if frames.ndim != 4 or frames.shape[0] != 3:
            raise CoreAffectError(f"a frame tensor must be (3, T, H, W), got {tuple(frames.shape)}")
        frames = frames.detach().cpu().permute(1, 2, 3, 0)  # (T, H, W, 3)
        frames = frames if frames.dtype == torch.uint8 else (frames.float() * 255).round()
        return frames.clamp(0, 255).to(torch.uint8).numpy()
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise CoreAffectError(f"frames must be (T, H, W, 3), got {frames.shape}")
    if frames.dtype != np.uint8:
        frames = np.clip(np.rint(frames.astype(np.float64) * 255), 0, 255).astype(np.uint8)
    return frames


def explanation_files(out_dir: str | Path, animation: str = "gif", name: str = "saliency"
                      ) -> list[Path]:
    """The files :func:`explain_video` writes in ``out_dir``: the grid, then the animation unless
    ``animation`` is ``""``."""
    out_dir, animation = Path(out_dir), animation.lstrip(".")
    return [out_dir / f"{name}_grid.png", *([out_dir / f"{name}.{animation}"] if animation else [])]


def explain_video(model: HiddenRouteNet, frames: np.ndarray | Tensor, out_dir: str | Path, *,
                  targets: Sequence[str] = ("valence", "arousal"),
                  times: np.ndarray | None = None, face_found: np.ndarray | None = None,
                  fps: float = 25.0, grid_columns: int = 8, animation: str = "gif",
                  display_size: int = 128, alpha: float = 0.5, colormap: str = "jet",
                  batch_size: int = 4, name: str = "saliency",
                  progress: bool = False) -> VideoExplanation:
    """Grad-CAM maps of a whole video of face crops, as a frame grid (PNG) and an animation.

    The video is cut into back-to-back windows of ``clip_length`` frames (the last one flush
    with the end, overlapping its predecessor; the later window wins), each explained on its own
    at the network's input size; every frame gets its window's map (normalised per window, so
    the colour scale may change at window borders) and its window's estimate, which is what the
    map explains. Files written in ``out_dir``:

    * ``{name}_grid.png``: ``grid_columns`` frames evenly spread over the video; a row of crops,
      then one row of overlays per target, each frame labelled with its time and estimate;
    * ``{name}.{animation}``: every frame, the overlays of all targets side by side, with the
      time, the estimate (valence V, arousal A, and their standard deviations) and a note on
      frames without a face.

    Args:
        model: The hidden route (its device is used).
        frames: (T, H, W, 3) uint8 RGB face crops (as :class:`~coreaffect.faces.FaceCrops` holds
            them) or a (3, T, H, W) tensor; T >= ``clip_length``.
        out_dir: Folder to write (created).
        targets: Some of :data:`TARGETS`.
        times: (T,) frame times in seconds; ``None``: frame index / ``fps``.
        face_found: (T,) bool flags; frames without a face are marked ``no face``.
        fps: Frame rate of the animation (and of the default ``times``).
        grid_columns: Frames in the grid.
        animation: ``"gif"``, ``"mp4"`` or ``"avi"``; ``""`` writes none.
        display_size: Side in pixels of each frame in the outputs (crops are upscaled).
        alpha: Weight of the heat maps in the blend.
        colormap: See :func:`~coreaffect.overlays.overlay_heatmaps`.
        batch_size: Windows per forward pass.
        name: Stem of the files.
        progress: Show a tqdm progress bar over windows.

    Returns:
        The :class:`VideoExplanation` (maps at the frames' size, estimates, files).
    """
    targets = _check_targets(targets)
    crops = _as_frames(frames)  # (T, H, W, 3)
    length, height, width = crops.shape[:3]
    clip, size = model.config.clip_length, model.config.input_size
    if length < clip:
        raise CoreAffectError(f"need at least {clip} frames, got {length}")
    if grid_columns < 1 or batch_size < 1 or display_size < 8:
        raise CoreAffectError("grid_columns and batch_size must be >= 1, display_size >= 8")
    if animation and animation.lstrip(".") not in ANIMATIONS:  # said before any map is made
        raise CoreAffectError(f"animation must be one of {', '.join(ANIMATIONS)}, or '' for "
                              f"none; got {animation!r}")
    times = np.arange(length) / fps if times is None else np.asarray(times, dtype=np.float64)
    found = (np.ones(length, bool) if face_found is None
             else np.asarray(face_found, dtype=bool))
    if len(times) != length or len(found) != length:
        raise CoreAffectError(f"times and face_found need {length} entries")
    maps = np.zeros((len(targets), length, height, width), dtype=np.float32)  # (K, T, H, W)
    mean = np.full((length, 2), np.nan)
    var = np.full((length, 2), np.nan)
    starts = _window_starts(length, clip)
    batches = [starts[i:i + batch_size] for i in range(0, len(starts), batch_size)]
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, desc="saliency", unit="batch")
    device = next(model.parameters()).device
    with GradCAM3D(model) as cam:
        for batch in batches:
            video = torch.stack([torch.from_numpy(crops[s:s + clip]) for s in batch])
            video = video.to(device).permute(0, 4, 1, 2, 3).float().div_(255)  # (n, 3, T, H, W)
            if (height, width) != (size, size):  # the network sees what it was trained on
                n = len(batch)
                video = F.interpolate(video.reshape(n, 3 * clip, height, width), size=(size, size),
                                      mode="bilinear", antialias=True, align_corners=False)
                video = video.clamp_(0, 1).reshape(n, 3, clip, size, size)
            result = cam.explain(video, targets)
            window_maps = result.maps  # (n, K, T, size, size)
            if (height, width) != (size, size):
                n, k = window_maps.shape[:2]
                window_maps = F.interpolate(window_maps.reshape(n, k * clip, size, size),
                                            size=(height, width), mode="bilinear",
                                            align_corners=False).reshape(n, k, clip, height, width)
            window_maps = window_maps.clamp(0, 1).cpu().numpy()
            for j, s in enumerate(batch):
                maps[:, s:s + clip] = window_maps[j]
                mean[s:s + clip] = result.estimate.mean[j].cpu().numpy()
                var[s:s + clip] = result.estimate.var[j].cpu().numpy()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shown = [_display(crops, display_size)] + [
        _display(overlay_heatmaps(crops, maps[k], alpha=alpha, colormap=colormap), display_size)
        for k in range(len(targets))]  # K + 1 of (T, S, S, 3)

    def caption(t: int) -> list[str]:
        lines = [f"t={times[t]:.2f}s", f"V{mean[t, 0]:+.2f} A{mean[t, 1]:+.2f}"]
        return lines if found[t] else [*lines, "no face"]

    columns = np.unique(np.linspace(0, length - 1, min(grid_columns, length)).round().astype(int))
    rows = []
    for r, images in enumerate(shown):
        tiles = []
        for t in columns:
            tile = images[t].copy()
            _label(tile, caption(t) if r == 0 else [targets[r - 1]])
            tiles.append(np.pad(tile, ((2, 2), (2, 2), (0, 0)), constant_values=255))
        rows.append(np.concatenate(tiles, axis=1))
    # the new files are written under temporary names and put in place together at the end, so
    # that an earlier explanation in out_dir stays whole until this one is
    grid_path, *animation_path = explanation_files(out_dir, animation, name)
    token = secrets.token_hex(4)  # two runs into one folder do not share temporary files
    written: list[tuple[Path, Path]] = []  # (temporary, final)
    try:
        done, png = cv2.imencode(".png", cv2.cvtColor(np.concatenate(rows, axis=0),
                                                      cv2.COLOR_RGB2BGR))
        if not done:
            raise CoreAffectError(f"{grid_path}: could not be encoded")
        part = out_dir / f".{grid_path.name}.{token}.partial"
        written.append((part, grid_path))
        part.write_bytes(png.tobytes())
        if animation:
            movie = np.concatenate(shown, axis=2)  # (T, S, (K + 1) S, 3), side by side
            for t in range(length):
                _label(movie[t], caption(t) + [f"sd {np.sqrt(var[t, 0]):.2f} "
                                               f"{np.sqrt(var[t, 1]):.2f}"])
                for k, target in enumerate(targets):
                    _label(movie[t, :, (k + 1) * display_size:], [target])
            final = animation_path[0]
            part = out_dir / f".{name}.{token}.partial{final.suffix}"  # the suffix: the format
            written.append((part, final))
            write_animation(movie, part, fps)
        for part, final in written:
            os.replace(part, final)
    except BaseException:
        for part, _ in written:
            part.unlink(missing_ok=True)
        raise
    files = [final for _, final in written]
    earlier = [out_dir / f"{name}.{kind}" for kind in ANIMATIONS]
    earlier = [path for path in earlier if path.exists() and path not in files]
    if earlier:  # never removed: it may be the user's own file of that name
        logger.warning("%s: %s, of an earlier explanation, stays beside this one", out_dir,
                       ", ".join(path.name for path in earlier))
    logger.info("saliency of %d frames written to %s", length, out_dir)
    return VideoExplanation(targets, maps, mean, var, files)
