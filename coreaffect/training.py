"""Training the hidden route: one loop, read top to bottom.

:func:`train_hidden_route` fits a :class:`~coreaffect.hidden_route.HiddenRouteNet` on labelled
clips (:class:`~coreaffect.clips.ClipDataset`) and writes everything into a run directory:

* ``RUN/hidden_route.{safetensors,json}``: the best network so far (highest validation CCC, or
  the last one when there is no validation set), with its data configuration;
* ``RUN/training/log.csv`` and ``log.json``: one row per epoch (losses, validation RMSE and CCC
  per dimension, learning rate, seconds);
* ``RUN/training/last.{safetensors,json}`` and ``RUN/training/optimizer-<hash>.pt``: the state
  after the last finished epoch, from which ``resume=True`` continues after an interruption; a
  run stopped by Ctrl-C, a crash or the time budget loses at most the epoch it was in.

Dense training. The training items are long :class:`~coreaffect.clips.Sequence` runs of frames
(``ClipDataset(..., dense_length=N)``). The network's trunk runs once over each, and every
16-frame window starting on the trunk's feature grid (every S = 4 frames) is pooled and scored
against the mean of its 16 labels: the paper's clip target, for many windows per forward pass.
Only windows whose whole receptive field lies inside the sequence are scored, so each window is
seen with its real temporal context, exactly as
:meth:`~coreaffect.hidden_route.HiddenRouteNet.predict_dense` sees it at inference (a separately
evaluated 16-frame clip would instead see zero padding at its borders). Windows are kept by the
clip thresholds of :class:`~coreaffect.config.ClipConfig` (``min_labelled``, ``min_face``). Items
of a window-mode :class:`~coreaffect.clips.ClipDataset` (16-frame :class:`~coreaffect.clips.Clip`
tuples) are trained on as they are, one window each.

Validation runs the network densely over every frame of each validation video and scores the
per-frame estimates against the per-frame labels, on frames with a face (as
:func:`~coreaffect.evaluation.evaluate_hidden_route`); early stopping watches the per-video mean
CCC, averaged over valence and arousal. With ``lite`` on two CPU cores, validating 30 videos
takes as long as three to four epochs of training on 13 (measured in a demo with 30 validation
videos); ``TrainConfig.validate_every`` validates every n-th epoch instead, so that many
validation videos do not eat the training budget.

Losses (``TrainConfig.loss``), on the window-mean targets y with the network's mean m and
variance v:

* ``"ccc"`` (the default): ``1 - CCC`` of the mean, plus ``mse_weight`` times the squared error,
  plus the Gaussian NLL of the variance with the mean detached (so the variance head is fitted
  without pulling on the mean). In dense training the CCC is computed *within each sequence*,
  over its windows, and averaged over the sequences of the batch; for window batches it is
  computed over the batch. Within-sequence CCC scores what the per-video CCC of the evaluation
  scores: how the estimate follows the label's changes inside a video. On a corpus of a dozen
  people whose labels wander slowly, most of the label variance is *between* videos, and a
  loss over the pooled batch (NLL, MSE, or a batch CCC) is most cheaply lowered by recognising
  the person (face, clothes, background) and returning that video's mean label. Measured on the
  synthetic corpus with ``lite``: trained that way, the held-out per-video CCC stayed near 0 for
  both dimensions; with within-sequence CCC on sequences of 400 frames (16 s, long enough for
  the label to move), 0.86 valence and 0.85 arousal after 10 minutes of CPU training (the
  table and a second seed are in the documentation's hidden-route page). The small squared
  error term anchors the level, which CCC alone only weakly constrains.
* ``"nll"``: Gaussian negative log-likelihood ``0.5 (log v + (y - m)^2 / v)``;
* ``"beta-nll"``: the same, each term weighted by ``stop_gradient(v) ** beta`` (Seitzer et al.
  2022), which keeps hard examples from starving the mean of gradient; ``beta = 0.5`` by default;
* ``"mse"``: squared error for the mean plus the detached-mean NLL for the variance.

Optimiser: AdamW with a cosine learning-rate decay, set at the start of each epoch from the
fraction of training done: of the planned epochs, or of the time budget when that is larger, so a
budgeted run anneals by the end of its budget. A resumed training reads that fraction of the
epochs and budget it is given: resumed after k epochs with E' epochs instead of E, it goes on
at k / E' of the decay instead of k / E, a higher rate than the one it stopped at when E' is
well above E (a warm restart), and its earlier epochs were not those of a run planned for E'.
The initial weights and the shuffling are a function of ``TrainConfig.seed``; the augmentation, and
where each epoch's dense sequences start, of the dataset's ``random_state`` (``coreaffect
train`` gives both its ``--seed``). A batch holds sequences of one length: a video shorter than
a dense sequence is one sequence of its own length, batched with others of that length; one too
short for a single window with its temporal context (24 frames for ``lite``, 32 for ``paper``)
is left out, with a warning naming it. Early stopping ends training when
the validation CCC (mean of valence and arousal) has not improved for ``patience`` epochs and
for half of the epochs run so far: a network still improving late in a long run gets as long again
to improve further. The default patience is large (about 10 minutes of ``lite`` on two cores)
because the CCC of a handful of validation videos is noisy: a lucky early epoch would otherwise
end training before the slower cue is learned (measured on the synthetic corpus: arousal, which
lives in motion, is learned after valence, after 1,000-3,000 steps).

References:
    Seitzer, M., Tavakoli, A., Antic, D., & Martius, G. (2022). On the pitfalls of heteroscedastic
    uncertainty estimation with probabilistic neural networks. ICLR.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader

from coreaffect.checkpoint import (
    atomic_write,
    load_model,
    load_state,
    locate_detector,
    save_model,
    save_state,
)
from coreaffect.clips import Clip, ClipDataset, Sequence
from coreaffect.config import ClipConfig, DataConfig, _check_choice, _check_float, _check_int
from coreaffect.corpus import LabelledVideo
from coreaffect.devices import check_device, seeded, torch_seed
from coreaffect.errors import CoreAffectError
from coreaffect.evaluation import evaluate_hidden_route, long_enough
from coreaffect.hidden_route import (
    MODELS,
    AffectEstimate,
    HiddenRouteNet,
    ModelConfig,
    create_model,
)
from coreaffect.metrics import json_number
from coreaffect.video import frame_rate, rates_agree

__all__ = ["LOSSES", "TrainConfig", "TrainResult", "affect_loss", "dense_window_estimates",
           "train_hidden_route"]

logger = logging.getLogger(__name__)

#: The training losses of the hidden route (:func:`affect_loss`).
LOSSES = ("ccc", "nll", "beta-nll", "mse")
_SEEDS = 2**64  # torch's generators take seeds below this


@dataclass(frozen=True)
class TrainConfig:
    """Settings of :func:`train_hidden_route`.

    Attributes:
        preset: Network preset of :func:`~coreaffect.hidden_route.create_model`.
        epochs: Most epochs to run.
        batch_size: Clips per optimiser step.
        lr: Peak learning rate of AdamW.
        weight_decay: AdamW's decoupled weight decay.
        loss: One of ``"ccc"``, ``"nll"``, ``"beta-nll"``, ``"mse"`` (module docstring).
        beta: Exponent of ``"beta-nll"``.
        mse_weight: Weight of the squared error added to the ``"ccc"`` loss.
        patience: Epochs without a better validation CCC before stopping (and at least half of
            the epochs run, module docstring).
        validate_every: Validate (and keep the network if it is the best so far) every n-th
            epoch, and at the last one; the others only train.
        max_minutes: Wall-clock budget; training stops cleanly when it is spent.
        seed: Seed of the weights and of the shuffling (the augmentation has the dataset's own
            ``random_state``, module docstring).
        device: Where to train (``"cpu"``, ``"cuda"``, ``"cuda:1"``...).
        num_workers: Data-loader worker processes.
    """

    preset: str = "lite"  # trains on a laptop CPU in minutes
    epochs: int = 400  # a few seconds each for ``lite``: the budget or early stopping ends sooner
    batch_size: int = 2  # long sequences: each holds ~100 scored windows; many small steps
    lr: float = 2e-3  # AdamW with LayerNorm tolerates a high rate; decays by cosine
    weight_decay: float = 0.05  # strong: with a dozen identities the net otherwise memorises them
    loss: str = "ccc"  # within-sequence CCC: follows the label inside a video (module docstring)
    beta: float = 0.5  # Seitzer et al.'s recommended middle ground
    mse_weight: float = 0.2  # anchors the level that CCC leaves loose, without dominating it
    patience: int = 200  # ~10 min of lite: validation CCC of a few videos is noisy, epochs short
    validate_every: int = 1  # lite's epochs are short: with many validation videos, raise it
    max_minutes: float | None = None  # no budget unless asked
    seed: int = 0  # reproducible by default
    device: str = "cpu"  # the portable default; pass "cuda" where available
    num_workers: int = 0  # clips come from a memory-mapped cache: workers rarely pay off

    def __post_init__(self) -> None:
        section = "TrainConfig"
        _check_choice(self, section, "preset", tuple(MODELS))
        _check_choice(self, section, "loss", LOSSES)
        for name, minimum in (("epochs", 1), ("batch_size", 1), ("patience", 1),
                              ("validate_every", 1), ("num_workers", 0), ("seed", 0)):
            _check_int(self, section, name, minimum)
        if self.seed >= _SEEDS:
            raise CoreAffectError(f"{section}.seed must be below 2**64, got {self.seed}")
        _check_float(self, section, "lr", "a positive number", lambda v: v > 0)
        for name in ("weight_decay", "beta", "mse_weight"):
            _check_float(self, section, name, "a number >= 0", lambda v: v >= 0)
        _check_float(self, section, "max_minutes", "a positive number", lambda v: v > 0,
                     optional=True)


class TrainResult(NamedTuple):
    """What :func:`train_hidden_route` returns.

    Attributes:
        model: The best network (eval mode), also saved in the run directory.
        history: One dict per epoch, as in ``training/log.json``.
        best_epoch: Epoch of the saved network (1-based).
        stopped: Why training ended: ``"epochs"``, ``"early-stopping"`` or ``"time-budget"``.
    """

    model: HiddenRouteNet
    history: list[dict[str, Any]]
    best_epoch: int
    stopped: str


def affect_loss(mean: torch.Tensor, var: torch.Tensor, target: torch.Tensor, kind: str = "ccc",
                beta: float = 0.5, *, mse_weight: float = 0.0,
                valid: torch.Tensor | None = None) -> torch.Tensor:
    """Scalar training loss of a batch of windows, or of sequences of windows.

    Args:
        mean: (B, 2) predicted means, or (B, K, 2) for B sequences of K windows.
        var: Predicted variances (> 0), shaped as ``mean``.
        target: Window-mean labels, shaped as ``mean``.
        kind: One of :data:`LOSSES`; see the module docstring.
        beta: Exponent of ``"beta-nll"``.
        mse_weight: Weight of the squared error added to ``"ccc"``.
        valid: (B,) or (B, K) bool, the windows that count; ``None``: all of them.

    Returns:
        The loss; for ``"ccc"`` the concordance is computed within each sequence when the
        inputs are (B, K, 2) (of the sequences with two scored windows or more; without any,
        the loss has no concordance term), over the batch when they are (B, 2).
    """
    if valid is None:
        valid = torch.ones(mean.shape[:-1], dtype=torch.bool, device=mean.device)
    m, v, y = mean[valid], var[valid], target[valid]  # (N, 2) the scored windows
    if kind in ("nll", "beta-nll"):
        nll = 0.5 * (torch.log(v) + (y - m) ** 2 / v)
        if kind == "beta-nll":
            nll = nll * v.detach() ** beta
        return nll.mean()
    variance_fit = 0.5 * (torch.log(v) + (y - m.detach()) ** 2 / v).mean()
    squared = ((y - m) ** 2).mean()
    if kind == "mse":
        return squared + variance_fit
    if mean.dim() == 2:  # windows: CCC over the batch
        concordance = _concordance(mean[None], target[None], valid[None])[0]  # (2,)
    else:  # sequences: CCC within each, averaged over those with two scored windows or more
        # (one window has no spread: its CCC is 0 whatever the estimate, and would only damp
        # the gradient of the others)
        concordance = _concordance(mean, target, valid)[valid.sum(dim=1) >= 2]  # (B', 2)
        if len(concordance) == 0:  # no sequence has a concordance to learn from
            return mse_weight * squared + variance_fit
    return (1 - concordance).mean() + mse_weight * squared + variance_fit


def _concordance(mean: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(B, 2) CCC (population statistics) of (B, K, 2) estimates within each row's valid windows."""
    weight = valid.to(mean.dtype)[..., None]  # (B, K, 1)
    count = weight.sum(dim=1).clamp(min=1)  # (B, 1)
    mean_m = (mean * weight).sum(dim=1) / count  # (B, 2)
    mean_t = (target * weight).sum(dim=1) / count
    dm = (mean - mean_m[:, None]) * weight  # (B, K, 2), zero outside the valid windows
    dt = (target - mean_t[:, None]) * weight
    cov = (dm * dt).sum(dim=1) / count
    spread = dm.pow(2).sum(dim=1) / count + dt.pow(2).sum(dim=1) / count
    return 2 * cov / (spread + (mean_m - mean_t) ** 2 + 1e-8)


def dense_window_estimates(model: HiddenRouteNet, video: torch.Tensor
                           ) -> tuple[AffectEstimate, int]:
    """Estimates of the windows of a batch of sequences whose receptive field lies inside them.

    Args:
        model: The network.
        video: (B, C, T, H, W) sequences, T a multiple of the temporal stride S.

    Returns:
        ``(estimate, first)``: mean and var (B, K, 2) and embedding (B, K, D) of the windows
        starting at frames ``S * (first + k)``, k = 0 ... K - 1.
    """
    config = model.config
    stride, steps = config.temporal_stride, config.clip_length // config.temporal_stride
    before, after = model.temporal_context
    first = -(-before // stride)  # first window with its whole left context
    features = model.forward_features(video)  # (B, D, T', H', W')
    b, d, t, h, w = features.shape
    last = (video.shape[2] - config.clip_length - after) // stride  # last window with right context
    count = last - first + 1
    if count < 1:
        raise CoreAffectError(f"sequences of {video.shape[2]} frames hold no window with its "
                              f"full context; use at least {config.clip_length + before + after}")
    windows = features[:, :, first:first + count - 1 + steps]  # (B, D, count + steps - 1, H', W')
    windows = windows.unfold(2, steps, 1)  # (B, D, count, H', W', steps)
    windows = windows.permute(0, 2, 1, 5, 3, 4).reshape(b * count, d, steps, h, w)
    estimate = model.forward_head(windows)  # (B * count, ...)
    return AffectEstimate(*(v.reshape(b, count, -1) for v in estimate)), first


def _window_targets(batch: Sequence, first: int, count: int, model_config: ModelConfig,
                    clip_config: ClipConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, K, 2) window-mean labels and (B, K) validity of the scored windows of a batch."""
    length, stride = model_config.clip_length, model_config.temporal_stride
    labels = batch.labels[:, first * stride:]  # (B, T, 2)
    labelled = ~torch.isnan(labels).any(dim=-1)  # (B, T)
    # (B, K, L) windows of L frames every S frames
    lab_w = labels.nan_to_num(0.0).unfold(1, length, stride)[:, :count]  # (B, K, 2, L)
    have = labelled.unfold(1, length, stride)[:, :count].float()  # (B, K, L)
    face = batch.face_found[:, first * stride:].unfold(1, length, stride)[:, :count].float()
    n = have.sum(-1)  # (B, K)
    targets = (lab_w * have[:, :, None]).sum(-1) / n.clamp(min=1)[..., None]  # (B, K, 2)
    # shares in float64, compared as clips.window_targets compares them
    valid = (n.double() / length >= clip_config.min_labelled) & (n > 0)
    valid &= face.double().mean(-1) >= clip_config.min_face
    return targets, valid


def _batch_loss(model: HiddenRouteNet, batch: Clip | Sequence, config: TrainConfig,
                clip_config: ClipConfig) -> torch.Tensor | None:
    """Loss of one batch of clips or sequences; ``None`` when it holds no valid window."""
    video = batch.video.to(config.device)
    if isinstance(batch, Clip):
        estimate = model(video)
        return affect_loss(estimate.mean, estimate.var, batch.target.to(config.device),
                           config.loss, config.beta, mse_weight=config.mse_weight)
    estimate, first = dense_window_estimates(model, video)
    targets, valid = _window_targets(batch, first, estimate.mean.shape[1], model.config,
                                     clip_config)
    valid = valid.to(config.device)
    if not bool(valid.any()):
        return None
    return affect_loss(estimate.mean, estimate.var, targets.to(config.device), config.loss,
                       config.beta, mse_weight=config.mse_weight, valid=valid)


class _EqualLengthBatches:
    """Shuffled batches of dataset items of equal length (the default collation stacks them).

    Items are taken in the order of ``torch.randperm(len(lengths))`` and each joins the pending
    batch of its length, which is yielded once full; the partial batches come last. With one
    length these are the batches of ``DataLoader(shuffle=True, batch_size=...)`` with the same
    generator. Only the items in ``keep`` are batched.
    """

    def __init__(self, lengths: np.ndarray, keep: np.ndarray, batch_size: int,
                 generator: torch.Generator) -> None:
        self.lengths, self.keep = lengths, keep
        self.batch_size, self.generator = batch_size, generator

    def __iter__(self):
        pending: dict[int, list[int]] = {}
        for index in self.keep[torch.randperm(len(self.keep), generator=self.generator).numpy()]:
            batch = pending.setdefault(int(self.lengths[index]), [])
            batch.append(int(index))
            if len(batch) == self.batch_size:
                yield batch
                pending[int(self.lengths[index])] = []
        yield from (batch for batch in pending.values() if batch)

    def __len__(self) -> int:
        counts = np.unique(self.lengths[self.keep], return_counts=True)[1]
        return int(np.sum(-(-counts // self.batch_size)))


def _trainable(train: ClipDataset, model: HiddenRouteNet) -> np.ndarray:
    """Indices of the items long enough for one window with its temporal context; the videos
    of the others are named in a warning."""
    if train.dense_length is None:
        return np.arange(len(train))
    before, after = model.temporal_context
    need = model.config.clip_length + before + after
    short = train.lengths < need
    itemless = set(range(len(train.videos))) - {v for v, _ in train._items}  # under one clip
    if short.any() or itemless:
        ids = sorted({train.videos[v].id
                      for (v, _), s in zip(train._items, short, strict=True) if s}
                     | {train.videos[v].id for v in itemless})
        logger.warning("%d training video(s) shorter than the %d frames one window needs with "
                       "its temporal context are left out: %s", len(ids), need, ", ".join(ids))
    if short.all():
        raise CoreAffectError(f"no training video holds a window with its temporal context: "
                              f"all are shorter than {need} frames")
    return np.flatnonzero(~short)


def _patience_spent(epoch: int, best_epoch: int, patience: int) -> bool:
    """Early stopping: no better validation for ``patience`` epochs and half the epochs run."""
    return epoch - best_epoch >= max(patience, epoch // 2)


def _validation_scores(model: HiddenRouteNet, videos: list[LabelledVideo],
                       config: TrainConfig) -> dict[str, float]:
    table = evaluate_hidden_route(model, videos, config.device)
    scores = {}
    for d, dim in enumerate(("valence", "arousal")):
        scores[f"val_ccc_{dim}"] = float(table.mean["ccc"][d])
        scores[f"val_rmse_{dim}"] = float(table.mean["rmse"][d])
        scores[f"val_nll_{dim}"] = float(table.mean["nll"][d])
    scores["val_ccc"] = (scores["val_ccc_valence"] + scores["val_ccc_arousal"]) / 2
    return scores


def _write_log(directory: Path, history: list[dict[str, Any]]) -> None:
    strict = [{k: json_number(v) if isinstance(v, float) else v for k, v in row.items()}
              for row in history]  # NaN and infinities are null: JSON has no such numbers
    atomic_write(directory / "log.json", json.dumps(strict, indent=1) + "\n")
    fields = list(dict.fromkeys(k for row in history for k in row))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=fields)
    writer.writeheader()
    writer.writerows(history)
    atomic_write(directory / "log.csv", text.getvalue())


def _optimizer_file(directory: Path, state: dict) -> Path:
    """The optimizer state that ``last.json``'s ``state`` belongs to: named by its hash, so that
    the new one is written beside the old one (or ``optimizer.pt``, as runs saved it before)."""
    digest = state.get("optimizer_sha256")
    keyed = directory / f"optimizer-{digest[:16]}.pt" if isinstance(digest, str) else None
    return keyed if keyed is not None and keyed.exists() else directory / "optimizer.pt"


def _save_resume_state(directory: Path, model, optimizer, state: dict) -> None:
    """``last.*`` (weights and ``state``) and ``optimizer-<hash>.pt``, the hash kept in
    ``last.json``: the new optimizer file is written beside the one the earlier ``last.*``
    names, which is removed only once the new ``last.*`` is written, so an interruption at any
    moment leaves a pair that belong together."""
    optimizer_bytes = _torch_bytes({"optimizer": optimizer.state_dict()})
    digest = hashlib.sha256(optimizer_bytes).hexdigest()
    keep = directory / f"optimizer-{digest[:16]}.pt"
    atomic_write(keep, optimizer_bytes)
    save_state(directory, "last", model.state_dict(),
               {"model": model.config.to_dict(), **state, "optimizer_sha256": digest})
    for old in directory.glob("optimizer*.pt"):
        if old != keep:
            old.unlink(missing_ok=True)


def _load_optimizer(optimizer: torch.optim.Optimizer, path: Path, state: dict,
                    device: str) -> None:
    """Give ``optimizer`` the saved state that belongs to the saved weights; one saved with
    other weights (an interruption between the two writes) is not used, with a warning."""
    def refuse(err: Exception) -> CoreAffectError:
        return CoreAffectError(f"{path}: not the optimizer state of this training ({err}); "
                               "replace the run (--overwrite) or choose a new folder")

    try:
        data = path.read_bytes()
    except OSError as err:
        raise refuse(err) from None
    digest = hashlib.sha256(data).hexdigest()
    if state.get("optimizer_sha256", digest) != digest:
        logger.warning("%s: saved with other weights than %s (the training was stopped between "
                       "the two); the optimizer's moments start afresh", path,
                       path.with_name("last.safetensors"))
        return
    try:  # weights only: tensors and plain containers, never arbitrary objects
        saved = torch.load(io.BytesIO(data), map_location=device, weights_only=True)
        optimizer.load_state_dict(saved["optimizer"])
    except Exception as err:  # noqa: BLE001 - the weights-only loader raises pickle's errors
        raise refuse(err) from None


def _check_resume_state(path: Path, state: dict) -> None:
    """Refuse a ``last.json`` whose state lacks what resuming reads, or holds it in another
    form, naming the file."""
    kinds = {"model": dict, "history": list, "best": (int, float), "best_epoch": int}
    wrong = [key for key, kind in kinds.items() if not isinstance(state.get(key), kind)
             or isinstance(state.get(key), bool)]
    if not wrong and not all(isinstance(row, dict) and isinstance(row.get("seconds", 0.0),
                                                                  (int, float))
                             for row in state["history"]):
        wrong = ["history"]
    if wrong:
        raise CoreAffectError(f"{path}: its {', '.join(wrong)} is missing or not of the kind "
                              "training writes, so the training cannot go on from it; replace "
                              "the run (--overwrite) or choose a new folder")


def _torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def train_hidden_route(train: ClipDataset, val: list[LabelledVideo] | None, run_dir: str | Path,
                       config: TrainConfig = TrainConfig(), *,
                       data_config: DataConfig = DataConfig(),
                       model_overrides: dict[str, Any] | None = None,
                       resume: bool = False, progress: bool = False) -> TrainResult:
    """Fit the hidden route and save it in ``run_dir``.

    Args:
        train: Training sequences (dense mode) or clips, augmentation on, typically.
        val: Validation videos (not in ``train``), or ``None`` (then the last epoch is kept).
        run_dir: The run directory.
        config: Training settings.
        data_config: The data settings the clips were made with, stored beside the weights.
        model_overrides: Changes to the preset's :class:`~coreaffect.hidden_route.ModelConfig`.
        resume: Continue from ``run_dir/training`` if a resume state is there. Without it, a
            ``run_dir`` that holds a trained hidden route is refused, never overwritten; so is
            one that holds a network but no resume state.
        progress: Show a progress bar per epoch.

    Returns:
        The :class:`TrainResult`.
    """
    if len(train) == 0:
        raise CoreAffectError("no training clip: the videos are shorter than a clip, or too few "
                              "of their frames have a face and a label")
    # the network's initial weights draw from the seeded generators of the CPU and the training
    # device (shuffling and augmentation have seeded generators of their own); the caller's
    # random state is given back afterwards
    with seeded(config.seed, check_device(config.device)):
        return _train(train, val, Path(run_dir), config, data_config, model_overrides, resume,
                      progress)


def _warn_of_mixed_rates(videos: list[LabelledVideo], kept: float | None, clip: int) -> None:
    """A warning when the training videos' frame rates span more than
    :data:`~coreaffect.video.RATE_TOLERANCE`: the network's clips then span different times in
    them, and the rate the run keeps (their median) is not every video's."""
    rates = {v.id: r for v in videos
             if (r := frame_rate([v.crops.times], [v.crops.indices])) is not None}
    if not rates or rates_agree(max(rates.values()), min(rates.values())):
        return
    slowest, fastest = min(rates, key=rates.get), max(rates, key=rates.get)
    logger.warning("the training videos run at %g (%s) to %g (%s) frames per second, so the "
                   "network's %d-frame clips span different times in them; the run keeps %g, "
                   "against which predict and evaluate check videos (resample the corpus to "
                   "one rate for a network of one time scale)", rates[slowest], slowest,
                   rates[fastest], fastest, clip, kept)


def _train(train: ClipDataset, val: list[LabelledVideo] | None, run_dir: Path,
           config: TrainConfig, data_config: DataConfig, model_overrides: dict[str, Any] | None,
           resume: bool, progress: bool) -> TrainResult:
    log_dir = run_dir / "training"
    if not resume and any(path.exists() for path in (log_dir / "last.json",
                                                      run_dir / "hidden_route.safetensors")):
        raise CoreAffectError(f"{run_dir}: holds a trained hidden route; resume it "
                              "(resume=True), or train into a new folder")
    if (resume and not (log_dir / "last.json").exists()
            and (run_dir / "hidden_route.safetensors").exists()):
        raise CoreAffectError(f"{run_dir}: holds a trained hidden route but no state to resume "
                              f"it from ({log_dir / 'last.json'}); train into a new folder")
    log_dir.mkdir(parents=True, exist_ok=True)
    # kept beside the weights: predict warns of videos at another rate, whose clips span
    # another stretch of time than the network learned from
    videos = train.videos
    rate = frame_rate([v.crops.times for v in videos], [v.crops.indices for v in videos])
    started = time.monotonic()
    model = create_model(config.preset, **(model_overrides or {})).to(config.device)
    _warn_of_mixed_rates(videos, rate, model.config.clip_length)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    history: list[dict[str, Any]] = []
    best, best_epoch, first_epoch = -math.inf, 0, 1
    if resume and (log_dir / "last.json").exists():
        tensors, state = load_state(log_dir, "last", config.device)
        _check_resume_state(log_dir / "last.json", state)
        if ModelConfig.from_dict(state["model"]) != model.config:
            raise CoreAffectError(f"{log_dir}: the saved run has another network; "
                                  "start a new run directory")
        if "data" in state and (locate_detector(DataConfig.from_dict(state["data"]), run_dir)
                                != locate_detector(data_config, run_dir)):  # moved as a whole
            raise CoreAffectError(f"{log_dir / 'last.json'}: the run was trained with other data "
                                  "settings (crops, labels or clips); resume with the same ones")
        model.load_state_dict(tensors)
        _load_optimizer(optimizer, _optimizer_file(log_dir, state), state, config.device)
        for group in optimizer.param_groups:  # the settings of this call, not the saved ones
            group["weight_decay"] = config.weight_decay
        history, best, best_epoch = state["history"], state["best"], state["best_epoch"]
        first_epoch = len(history) + 1
        if not best_epoch and first_epoch > config.epochs:  # nothing validated, nothing to run
            raise CoreAffectError(f"{log_dir / 'last.json'}: {len(history)} epoch(s) were "
                                  f"trained but none validated yet, so there is no network, "
                                  f"and {config.epochs} epoch(s) in all leave none to run; "
                                  f"resume with --epochs {first_epoch} or more")
        # the budget and the learning-rate schedule go on from where they were
        started -= state.get("elapsed", sum(row["seconds"] for row in history))
        logger.info("resuming %s at epoch %d", run_dir, first_epoch)
    budget = None if config.max_minutes is None else config.max_minutes * 60
    trainable = _trainable(train, model)
    if val:
        val = long_enough(val, model, "validation")
    stopped = "epochs"
    # a run interrupted before any validated epoch has no network yet: it trains one more
    # epoch, validated since it ends the budget, whatever the budget says
    if history and best_epoch and budget is not None and time.monotonic() - started >= budget:
        stopped, first_epoch = "time-budget", config.epochs + 1  # spent before the resume
    elif (history and val and best_epoch and "val_ccc" in history[-1]  # as the loop tests it
          and _patience_spent(len(history), best_epoch, config.patience)):
        stopped, first_epoch = "early-stopping", config.epochs + 1
    for epoch in range(first_epoch, config.epochs + 1):
        epoch_start = time.monotonic()
        progress_done = (epoch - 1) / config.epochs
        if budget is not None:  # the schedule ends with the budget when that comes first
            progress_done = max(progress_done, (epoch_start - started) / budget)
        for group in optimizer.param_groups:
            group["lr"] = config.lr * 0.5 * (1 + math.cos(math.pi * min(progress_done, 1.0)))
        train.set_epoch(epoch)
        generator = torch.Generator().manual_seed(torch_seed((config.seed * 1000 + epoch) % _SEEDS))
        loader = DataLoader(train, batch_sampler=_EqualLengthBatches(
                                train.lengths, trainable, config.batch_size, generator),
                            num_workers=config.num_workers, generator=generator)
        model.train()
        losses, out_of_time = [], False
        learned_before = any(row["batches"] for row in history)
        batches = loader
        if progress:
            from tqdm import tqdm

            batches = tqdm(loader, desc=f"epoch {epoch}", leave=False, unit="batch")
        for batch in batches:
            loss = _batch_loss(model, batch, config, train.config)
            if loss is not None:  # None: no window of the batch can be scored
                value = loss.detach().item()
                if not math.isfinite(value):
                    raise CoreAffectError(f"epoch {epoch}: the training loss is {value}, so "
                                          "the network has diverged; lower the learning rate "
                                          "(lr)")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(value)
            # checked after a batch passed over too, once a batch has been learned from: a
            # first epoch that learns nothing is the error below, whatever the budget
            if (budget is not None and (losses or learned_before)
                    and time.monotonic() - started > budget):
                out_of_time = True
                break
        if not losses and not learned_before:
            # a first pass over every clip found nothing to learn (later epochs redraw their
            # windows, and one may find none by chance: it is only logged)
            raise CoreAffectError(
                f"epoch {epoch}: no training clip has a frame with both a face and a label, so "
                "the network would learn nothing; are the annotations' times in seconds, and "
                "does the annotation delay ([annotations] delay, seconds) leave the labels "
                "inside the videos?")
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            raise CoreAffectError(f"epoch {epoch}: the network's weights are no longer finite "
                                  "(the gradients overflowed); lower the learning rate (lr)")
        # a budget spent by the epoch's end ends the training too (validated, as a last epoch)
        out_of_time = out_of_time or (budget is not None
                                      and time.monotonic() - started >= budget)
        row: dict[str, Any] = {"epoch": epoch,
                               "train_loss": float(np.mean(losses)) if losses else math.nan,
                               "lr": optimizer.param_groups[0]["lr"], "batches": len(losses)}
        score: float | None = None  # None: not validated, the best so far stays
        if not val:
            score = float(epoch)  # no validation: the latest epoch is the best one
        elif epoch % config.validate_every == 0 or out_of_time or epoch == config.epochs:
            row.update(_validation_scores(model, val, config))
            score = row["val_ccc"]
        row["seconds"] = round(time.monotonic() - epoch_start, 2)
        history.append(row)
        if score is not None and math.isnan(score):  # constant predictions have no CCC
            score = -math.inf
        if score is not None and (best_epoch == 0 or score > best):
            best, best_epoch = score, epoch
            save_model(model, run_dir, data_config, frame_rate=rate)
        _save_resume_state(log_dir, model, optimizer,
                           {"history": history, "best": best, "best_epoch": best_epoch,
                            "elapsed": time.monotonic() - started,
                            "data": data_config.to_dict()})
        _write_log(log_dir, history)
        logger.info("epoch %d: %s", epoch, {k: round(v, 4) if isinstance(v, float) else v
                                             for k, v in row.items()})
        if out_of_time or (budget is not None and best_epoch  # spent by the validation
                           and time.monotonic() - started >= budget):
            stopped = "time-budget"
            break
        if val and score is not None and _patience_spent(epoch, best_epoch, config.patience):
            stopped = "early-stopping"
            break
    atomic_write(log_dir / "train_config.json",
                 json.dumps(dataclasses.asdict(config), indent=2) + "\n")
    best_model = load_model(run_dir, config.device)
    return TrainResult(best_model, history, best_epoch, stopped)
