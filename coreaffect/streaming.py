"""The incremental state behind :meth:`coreaffect.pipeline.CoreAffect.stream`.

A live source gives one frame at a time. The private ``_StreamState`` (use ``CoreAffect.stream``)
keeps the last few dozen face crops and computes the hidden route's pooled features S frames at
a time, as soon as their receptive field is in. The estimate of frame c (the windows around it,
interpolated as :meth:`~coreaffect.hidden_route.HiddenRouteNet.predict_dense` does) is final at
frame c + D (:attr:`~coreaffect.pipeline.CoreAffect.latency_frames`). The frame's prior then
enters the dynamics' streaming filter
(:meth:`~coreaffect.dynamics.CoreAffectDynamics.filter_step`), which gives frame c's row at once,
or the fixed-lag smoother (:meth:`~coreaffect.dynamics.CoreAffectDynamics.lag_step`), which gives
frame c - L's. When the source ends, the frames still waiting get the estimates the video's end
allows, and the fixed-lag smoother's buffer is emptied. Memory and cost per frame are constant;
the rows equal those of ``CoreAffect.predict(..., causal=True)`` (or ``lagged=True``) on the
same frames.
"""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from coreaffect.hidden_route import AffectEstimate
from coreaffect.trajectory import AffectRow

if TYPE_CHECKING:
    from coreaffect.pipeline import CoreAffect

__all__: list[str] = []


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
        self.pooled: dict[int, torch.Tensor] = {}  # feature step -> (D,) pooled features
        self.windows: dict[int, AffectEstimate] = {}  # window -> estimate
        self.filter_state = None
        self.lag_state = None  # the fixed-lag smoother's, when lagged
        self.emitted = 0  # rows yielded so far (the next row is of frame ``emitted``)

    def _frame(self, index: int) -> np.ndarray:
        return self.crops[index - (self.count - len(self.crops))]

    def _at(self, values: deque, index: int) -> Any:
        """The value of frame ``index`` in one of the bounded per-frame queues."""
        return values[index - (self.count - len(values))]

    def _compute_steps(self) -> None:
        """Pool every feature step that just became final (its receptive field is in)."""
        last = self.count - 1  # newest frame
        final = (last - self.after - self.stride + 1) // self.stride  # newest final step
        first = max(self.pooled) + 1 if self.pooled else 0
        if final < first or self.count < self.clip:
            return
        start = max(0, first * self.stride - self.before)
        start = max(0, min(start, (self.count - self.clip) // self.stride * self.stride))
        frames = np.stack([self._frame(i) for i in range(start, self.count)])  # (t, s, s, 3)
        features = self.affect.model.dense_features(frames, device=self.affect.device)
        pooled = features.mean(dim=(2, 3)).T  # (D, t', H', W') -> (t', D)
        for step in range(first, final + 1):
            self.pooled[step] = pooled[step - start // self.stride]
        for step in [s for s in self.pooled if s < final - 2 * self.steps]:
            del self.pooled[step]

    def _window(self, k: int) -> AffectEstimate:
        if k not in self.windows:
            steps = torch.stack([self.pooled[k + i] for i in range(self.steps)], -1)  # (D, steps)
            with torch.no_grad():
                self.windows[k] = self.affect.model.forward_head(steps[None, :, :, None, None])
            for old in [w for w in self.windows if w < k - 4]:
                del self.windows[old]
        return self.windows[k]

    def _estimate(self, c: int) -> AffectEstimate:
        """The hidden-route estimate of frame c, as predict_dense interpolates it."""
        position = max(0.0, (c - self.clip // 2) / self.stride)
        lo = int(math.floor(position))
        weight = position - lo
        low = self._window(lo)
        if weight == 0:
            return low
        high = self._window(lo + 1)
        return AffectEstimate(*(a * (1 - weight) + b * weight for a, b in zip(low, high,
                                                                              strict=True)))

    def _rows(self, c: int, estimate: AffectEstimate | None, level: float) -> list[AffectRow]:
        """Take frame c's estimate (``None``: a masked step) into the filter (or the fixed-lag
        smoother) and decode the rows that became final: frame c's (filter), or frame
        c - L's once L more frames are in (lagged)."""
        affect = self.affect
        mean = cov = None
        if estimate is not None:
            loc, cov = affect._latent_prior(estimate)
            mean, cov = loc[0], cov[0]
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
        mean_y, _, lower, upper = affect._widen(stage, *affect.decode(m[None], p[None], level))
        self.emitted = c + 1
        return AffectRow(self._at(self.indices, c), self._at(self.times, c),
                         float(mean_y[0, 0]), float(mean_y[0, 1]), float(lower[0, 0]),
                         float(upper[0, 0]), float(lower[0, 1]), float(upper[0, 1]),
                         self._at(self.found, c), m.numpy().copy())

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
        rows = self._rows(c, self._estimate(c) if self._at(self.found, c) else None, level)
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
        window = max(0, (first - self.clip // 2) // self.stride)  # the first window they use
        start = max(0, window * self.stride - self.before)
        frames = np.stack([self._frame(i) for i in range(start, self.count)])  # (t, s, s, 3)
        estimate = self.affect.model.predict_dense(frames, chunk_frames=self.affect.chunk_frames,
                                                   device=self.affect.device)
        for c in range(first, self.count):
            own = AffectEstimate(*(x[c - start][None] for x in estimate))
            rows += self._rows(c, own if self._at(self.found, c) else None, level)
        return rows + self._flush(level)
