"""Figures. Every function takes ``ax=None`` (a new figure is made) and returns the axes.

Matplotlib is imported only here, and only when a function is called, so importing coreaffect
never selects a backend. In scripts without a display, set ``MPLBACKEND=Agg`` or pass axes of a
``matplotlib.figure.Figure``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["plot_synthetic_samples"]


def plot_synthetic_samples(frames: Sequence[np.ndarray] | np.ndarray, values: np.ndarray,
                           ax: Axes | None = None, *, size: float = 0.3,
                           title: str | None = None) -> Axes:
    """Show face images at their (valence, arousal) positions on the valence-arousal plane.

    Args:
        frames: N images, each ``(H, W, 3)`` uint8 RGB (or ``(H, W)`` grey), e.g. face crops.
        values: (N, 2) their (valence, arousal), VA last axis, in [-1, 1].
        ax: Axes to draw on; ``None`` makes a new 7x7 inch figure.
        size: Width of each image in VA units (images keep their aspect ratio).
        title: Optional axes title.

    Returns:
        The axes, limited to [-1, 1] (plus half an image) on both axes, labelled.
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1, 2)
    if len(frames) != len(values):
        raise ValueError(f"{len(frames)} frames but {len(values)} (valence, arousal) pairs")
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(7, 7))
    reach = 1.0 + size / 2
    ax.axhline(0.0, color="0.7", lw=0.8, zorder=0)
    ax.axvline(0.0, color="0.7", lw=0.8, zorder=0)
    ax.add_patch(_circle())
    for image, (v, a) in zip(frames, values, strict=True):
        image = np.asarray(image)
        height = size * image.shape[0] / image.shape[1]
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None, interpolation="antialiased",
                  extent=(v - size / 2, v + size / 2, a - height / 2, a + height / 2), zorder=2)
    ax.set_xlim(-reach, reach)
    ax.set_ylim(-reach, reach)
    ax.set_aspect("equal")
    ax.set_xlabel("valence")
    ax.set_ylabel("arousal")
    ax.set_xticks([-1.0, -0.5, 0.0, 0.5, 1.0])
    ax.set_yticks([-1.0, -0.5, 0.0, 0.5, 1.0])
    if title:
        ax.set_title(title)
    return ax


def _circle():
    from matplotlib.patches import Circle

    return Circle((0.0, 0.0), 1.0, fill=False, color="0.8", lw=0.8, ls="--", zorder=0)
