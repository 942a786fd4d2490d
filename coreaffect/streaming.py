"""The incremental state behind :meth:`coreaffect.pipeline.CoreAffect.stream`.

A live source gives one frame at a time. The private ``_StreamState`` (use ``CoreAffect.stream``)
keeps the last few dozen face crops and passes each one through the hidden route's trunk at once
(:class:`IncrementalTrunk`): every layer computes each of its time steps once, as soon as the
step's inputs are in, so a frame costs what it costs in a pass over the whole video. The estimate
of frame c (the windows around it, interpolated as
:meth:`~coreaffect.hidden_route.HiddenRouteNet.predict_dense` does) is final at frame c + D
(:attr:`~coreaffect.pipeline.CoreAffect.latency_frames`). The frame's prior then enters the
dynamics' streaming filter (:meth:`~coreaffect.dynamics.CoreAffectDynamics.filter_step`), which
gives frame c's row at once, or the fixed-lag smoother
(:meth:`~coreaffect.dynamics.CoreAffectDynamics.lag_step`), which gives frame c - L's. When the
source ends, the frames still waiting get the estimates the video's end allows, and the fixed-lag
smoother's buffer is emptied. Memory and cost per frame are constant; the rows equal those of
``CoreAffect.predict(..., causal=True)`` (or ``lagged=True``) on the same frames.
"""

from __future__ import annotations

import copy
import math
from collections import deque
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from coreaffect.devices import NETWORK_DTYPE
from coreaffect.hidden_route import (
    AffectEstimate,
    HiddenRouteNet,
    _frames,
    frame_windows,
    resolve_device,
)
from coreaffect.trajectory import AffectRow

if TYPE_CHECKING:
    from coreaffect.pipeline import CoreAffect

__all__ = ["IncrementalTrunk"]


class IncrementalTrunk:
    """The hidden route's trunk over a sequence that arrives a few frames at a time.

    Each block of the trunk (Conv3d, ReLU, MaxPool3d, per-frame LayerNorm) keeps the last
    ``kernel - 1`` time steps of its input, zeros before the first (the convolution's "same"
    padding), and the convolution's outputs that still wait for the rest of their temporal pool.
    New frames flow through every block as far as they complete a time step, and each time step
    of each layer is computed once. Feature step j is therefore returned as soon as its receptive
    field is in (frame S j + S - 1 + the trunk's temporal context after), and it equals step j of
    :meth:`~coreaffect.hidden_route.HiddenRouteNet.forward_features` on the whole sequence (to
    rounding), except for the steps whose receptive field reaches past the sequence's end, which
    the whole-sequence trunk pads with zeros and which this one returns only when their frames
    arrive. A stream costs the frames' own share of a pass over the whole video, instead of
    recomputing each step's temporal context.

    Args:
        model: The hidden route (its trunk is used without gradients; its blocks hold no state
            that differs between training and evaluation).
        device: Where to compute; a model elsewhere is copied there.

    Attributes:
        steps: Feature steps returned so far.
    """

    def __init__(self, model: HiddenRouteNet, device: torch.device | str = "cpu") -> None:
        self.model = model
        home = next(model.parameters()).device
        self.device = resolve_device(device, home)
        # a trunk elsewhere than on the device is copied there once, for the stream's lifetime
        self._blocks = (model.blocks if home == self.device
                        else copy.deepcopy(model.blocks).to(self.device))
        self._pixel = (model.pixel_mean.to(self.device), model.pixel_std.to(self.device))
        self.steps = 0
        self._inputs: list[Tensor | None] = [None] * len(model.blocks)  # (1, C, 2p, H, W)
        self._waiting: list[Tensor | None] = [None] * len(model.blocks)  # before the pool

    def push(self, frames: np.ndarray | Tensor) -> Tensor:
        """Take the next frames; the feature steps that became final.

        Args:
            frames: (t, H, W, 3) numpy array (uint8 in [0, 255] or float in [0, 1]), or a
                (3, t, H, W) tensor, resized to the model's input size when H or W differ.

        Returns:
            (D, n, H', W') features of steps ``steps - n ... steps - 1`` (n may be 0), on the
            CPU.
        """
        model = self.model
        length = len(frames) if isinstance(frames, np.ndarray) else frames.shape[1]
        with torch.no_grad():
            x = _frames(frames, 0, length, model.config.input_size, self.device)[None]
            x = (x - self._pixel[0]) / self._pixel[1]
            for i, (conv, _, pool, norm) in enumerate(self._blocks):
                x = self._block(i, x, conv, pool, norm)
                if x is None:  # no step yet: empty, of the features' spatial size
                    side = model.config.input_size >> len(self._blocks)  # each pool halves
                    return torch.empty(model.embedding_dim, 0, side, side, dtype=NETWORK_DTYPE)
        out = x[0].cpu()  # (D, n, H', W')
        self.steps += out.shape[1]
        return out

    def _block(self, i: int, x: Tensor, conv: torch.nn.Conv3d, pool: torch.nn.MaxPool3d,
               norm: torch.nn.Module) -> Tensor | None:
        """Block i on its new input time steps x (1, C, t, H, W): its new output steps, or
        ``None`` when none is complete yet."""
        pad = conv.padding[0]
        before = self._inputs[i]
        if before is None:  # the start of the sequence: the convolution's zero padding
            before = x.new_zeros(x.shape[0], x.shape[1], pad, *x.shape[3:])
        x = torch.cat([before, x], dim=2)
        ready = x.shape[2] - 2 * pad  # outputs whose inputs are all in
        self._inputs[i] = x[:, :, max(ready, 0):]  # the last 2p input steps
        y = self._waiting[i]
        if ready > 0:
            if x.device.type == "cpu":
                x = x.contiguous(memory_format=torch.channels_last_3d)
            new = F.relu(F.conv3d(x, conv.weight, conv.bias, padding=(0, *conv.padding[1:])))
            y = new if y is None else torch.cat([y, new], dim=2)
        if y is None:
            return None
        size = pool.kernel_size[0] if isinstance(pool.kernel_size, tuple) else pool.kernel_size
        complete = y.shape[2] // size * size
        self._waiting[i] = y[:, :, complete:]
        if complete == 0:
            return None
        return norm(F.max_pool3d(y[:, :, :complete], pool.kernel_size, pool.stride))


class _StreamState:
    """Incremental hidden route, prior and filter (or fixed-lag smoother) of
    :meth:`~coreaffect.pipeline.CoreAffect.stream`."""

    def __init__(self, affect: CoreAffect, lagged: bool = False) -> None:
        self.affect = affect
        self.look_ahead = affect.lag if lagged else 0  # L: frames the rows wait beyond D
        model = affect.model
        self.stride = model.config.temporal_stride  # S
        self.clip = model.config.clip_length
        self.steps = self.clip // self.stride  # feature steps per window
        before, self.after = model.temporal_context
        self.before = -(-before // self.stride) * self.stride  # on the feature grid
        self.lag = affect.latency_frames
        keep = self.before + self.clip + self.after + 2 * self.stride + self.lag
        self.crops: deque[np.ndarray] = deque(maxlen=keep)
        keep += self.look_ahead  # a row's frame data are needed L frames longer than its crop
        self.times: deque[float] = deque(maxlen=keep)
        self.found: deque[bool] = deque(maxlen=keep)
        self.indices: deque[int] = deque(maxlen=keep)
        self.count = 0  # frames received
        self.trunk = IncrementalTrunk(model, affect.device)
        self.pooled: dict[int, torch.Tensor] = {}  # feature step -> (D,) pooled features
        self.windows: dict[int, AffectEstimate] = {}  # window -> estimate
        self.priors: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # frame -> latent prior
        self.filter_state = None
        self.lag_state = None  # the fixed-lag smoother's, when lagged
        self.emitted = 0  # rows yielded so far (the next row is of frame ``emitted``)

    def _frame(self, index: int) -> np.ndarray:
        return self.crops[index - (self.count - len(self.crops))]

    def _at(self, values: deque, index: int) -> Any:
        """The value of frame ``index`` in one of the bounded per-frame queues."""
        return values[index - (self.count - len(values))]

    def _compute_steps(self) -> None:
        """Pass the newest crop through the trunk; pool the feature steps that became final."""
        features = self.trunk.push(self._frame(self.count - 1)[None])  # (D, n, H', W')
        pooled = features.mean(dim=(2, 3)).T  # (n, D)
        first = self.trunk.steps - len(pooled)
        for i, row in enumerate(pooled):
            self.pooled[first + i] = row
        for step in [s for s in self.pooled if s < self.trunk.steps - 1 - 2 * self.steps]:
            del self.pooled[step]

    def _window(self, k: int) -> AffectEstimate:
        if k not in self.windows:
            steps = torch.stack([self.pooled[k + i] for i in range(self.steps)], -1)  # (D, steps)
            model = self.affect.model
            device = next(model.parameters()).device  # the trunk's steps are kept on the CPU
            with torch.no_grad():
                estimate = model.forward_head(steps[None, :, :, None, None].to(device))
            self.windows[k] = AffectEstimate(*(x.cpu() for x in estimate))
            for old in [w for w in self.windows if w < k - 4]:
                del self.windows[old]
        return self.windows[k]

    def _estimate(self, c: int) -> AffectEstimate:
        """The hidden-route estimate of frame c, as predict_dense interpolates it."""
        lo, hi, weight = frame_windows(c, self.affect.model.config)
        low = self._window(lo)
        if hi == lo:
            return low
        high = self._window(hi)
        return AffectEstimate(*(a * (1 - weight) + b * weight for a, b in zip(low, high,
                                                                              strict=True)))

    def _prior(self, c: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame c's latent prior, mean (K,) and covariance (K, K).

        The prior of every frame whose estimate is already final (up to the newest window's
        centre) is computed in one batch and kept until its row is due: a window brings the
        estimates of S frames at once, and the prior's cost is mostly per call.
        """
        if c not in self.priors:
            newest = self.trunk.steps - self.steps  # the newest window
            centre = self.affect.model.config.window_centre
            last = min(self.count - 1, math.floor(centre + self.stride * newest))
            frames = [i for i in range(c, max(c, last) + 1) if self._at(self.found, i)]
            self.priors.update(zip(frames, zip(*self._priors(
                [self._estimate(i) for i in frames]), strict=True), strict=True))
        return self.priors.pop(c)

    def _priors(self, estimates: list[AffectEstimate]) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent prior means (n, K) and covariances (n, K, K) of n one-frame estimates."""
        batch = AffectEstimate(*(torch.cat(x) for x in zip(*estimates, strict=True)))
        return self.affect._latent_prior(batch)

    def _rows(self, c: int, prior: tuple[torch.Tensor, torch.Tensor] | None, level: float
              ) -> list[AffectRow]:
        """Take frame c's latent prior (mean (K,), covariance (K, K); ``None``: a masked step)
        into the filter (or the fixed-lag smoother) and decode the rows that became final: frame
        c's (filter), or frame c - L's once L more frames are in (lagged)."""
        affect = self.affect
        mean, cov = prior if prior is not None else (None, None)
        time = self._at(self.times, c)
        dynamics = affect._latent_dynamics
        if not self.look_ahead:
            self.filter_state = dynamics.filter_step(self.filter_state, time, mean, cov)
            return [self._decoded(c, self.filter_state.mean, self.filter_state.cov, level)]
        self.lag_state = dynamics.lag_step(self.lag_state, time, mean, cov, lag=self.look_ahead)
        if c < self.look_ahead:
            return []
        return [self._decoded(c - self.look_ahead, self.lag_state.means[0],
                              self.lag_state.covs[0], level)]

    def _decoded(self, c: int, m: torch.Tensor, p: torch.Tensor, level: float) -> AffectRow:
        """The row of frame c from its latent posterior mean (K,) and covariance (K, K)."""
        affect = self.affect
        stage = "lagged" if self.look_ahead else "filtered"
        mean_y, var, lower, upper = affect._widen(stage, *affect.decode(m[None], p[None],
                                                                        level))
        self.emitted = c + 1
        return AffectRow(self._at(self.indices, c), self._at(self.times, c),
                         float(mean_y[0, 0]), float(mean_y[0, 1]), float(lower[0, 0]),
                         float(upper[0, 0]), float(lower[0, 1]), float(upper[0, 1]),
                         float(var[0, 0]), float(var[0, 1]), self._at(self.found, c),
                         m.numpy().copy())

    def _flush(self, level: float) -> list[AffectRow]:
        """At the end: the fixed-lag smoother's rows still in its buffer (their posteriors
        given every frame, as the smoother has them at a video's end)."""
        if not self.look_ahead or self.lag_state is None:
            return []
        first = self.count - len(self.lag_state.times)  # frame of the buffer's row 0
        return [self._decoded(c, self.lag_state.means[c - first], self.lag_state.covs[c - first],
                              level) for c in range(max(self.emitted, first), self.count)]

    def push(self, crop: np.ndarray, time: float, index: int, found: bool, level: float
             ) -> AffectRow | None:
        """Take one frame; the row that just became final, if any."""
        self.crops.append(crop)
        self.times.append(time)
        self.found.append(found)
        self.indices.append(index)
        self.count += 1
        self._compute_steps()
        c = self.count - 1 - self.lag  # the frame whose estimate just became final
        if c < 0:
            return None
        rows = self._rows(c, self._prior(c) if self._at(self.found, c) else None, level)
        return rows[0] if rows else None

    def finish(self, level: float) -> list[AffectRow]:
        """The rows of the frames still waiting when the source ends, from the estimates the
        video's end allows: those of ``predict_dense`` over the kept crops, whose start is on
        the feature grid and early enough that every window these frames use sees the same
        frames as in a pass over the whole video."""
        first = max(0, self.count - self.lag)
        if first >= self.count:
            return []
        rows: list[AffectRow] = []
        if self.count < self.clip:  # too short for any estimate
            for c in range(first, self.count):
                rows += self._rows(c, None, level)
            return rows + self._flush(level)
        window = frame_windows(first, self.affect.model.config)[0]  # the first window they use
        start = max(0, window * self.stride - self.before)
        frames = np.stack([self._frame(i) for i in range(start, self.count)])  # (t, s, s, 3)
        estimate = self.affect.model.predict_dense(frames, chunk_frames=self.affect.chunk_frames,
                                                   device=self.affect.device)
        found = [c for c in range(first, self.count) if self._at(self.found, c)]
        priors = dict(zip(found, zip(*self._priors(
            [AffectEstimate(*(x[c - start][None] for x in estimate)) for c in found]),
            strict=True), strict=True)) if found else {}
        for c in range(first, self.count):
            rows += self._rows(c, priors.get(c), level)
        return rows + self._flush(level)
