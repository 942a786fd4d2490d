"""Figures. Every function takes ``ax=None`` (a new figure is made) and returns the axes.

:func:`plot_trajectory` draws two panels (valence, arousal), so it takes ``axes=None`` (a pair)
and returns the pair; :func:`plot_manifold_prior` takes ``axes=None`` too (two or three
panels). The figures of the paper: Fig. 1 is :func:`plot_trajectory`, Fig. 2
:func:`plot_saliency_grid`, Table 2 :func:`plot_metrics_bars`; :func:`plot_circumplex` and
:func:`plot_calibration` show the uncertainty; Fig. 3, the prior over the latent affect manifold, is
:func:`plot_manifold_prior`.

Matplotlib is imported only here, and only when a function is called, so importing coreaffect
never selects a backend. In scripts without a display, set ``MPLBACKEND=Agg`` or pass axes of a
``matplotlib.figure.Figure``. A figure made for ``ax=None`` is pyplot's, open until closed
(``plt.close(ax.figure)``): in a loop, close each or draw on :func:`detached_axes`, which
pyplot does not keep.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from coreaffect.devices import torch_seed
from coreaffect.errors import InputError

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "detached_axes",
    "plot_calibration",
    "plot_circumplex",
    "plot_manifold_prior",
    "plot_metrics_bars",
    "plot_saliency_grid",
    "plot_synthetic_samples",
    "plot_trajectory",
]


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
        raise InputError(f"{len(frames)} frames but {len(values)} (valence, arousal) pairs")
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


def detached_axes(rows: int, columns: int, figsize: tuple[float, float], **kwargs: Any
                  ) -> np.ndarray:
    """(rows, columns) axes of a new figure made without pyplot, for figures written to files:
    no backend is chosen and no figure is left open, whatever the caller's matplotlib set-up
    (``kwargs`` go to :meth:`matplotlib.figure.Figure.subplots`, e.g. ``sharex=True``)."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize).subplots(rows, columns, squeeze=False, **kwargs)


def _new_axes(figsize: tuple[float, float], ncols: int = 1):
    import matplotlib.pyplot as plt

    _, axes = plt.subplots(1, ncols, figsize=figsize, squeeze=False)
    return axes[0] if ncols > 1 else axes[0, 0]


def _spans(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) index of each run of True in a (T,) bool array."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _per_frame(name: str, value: Any, frames: int, shape: tuple[int, ...]) -> np.ndarray:
    """``value`` as a float array of shape ``(frames, *shape)``, or an InputError naming it."""
    array = np.asarray(value, dtype=np.float64)
    if array.shape != (frames, *shape):
        wanted = ", ".join(str(n) for n in (frames, *shape))
        raise InputError(f"{name} must have shape ({wanted}) like the {frames} times, got "
                         f"{array.shape}")
    return array


def plot_trajectory(times: np.ndarray, mean: np.ndarray, truth: np.ndarray | None = None,
                    var: np.ndarray | None = None, face_found: np.ndarray | None = None,
                    axes: Sequence[Axes] | None = None, *, level: float = 0.9,
                    label: str = "estimate", title: str | None = None,
                    band: tuple[np.ndarray, np.ndarray] | None = None) -> Sequence[Axes]:
    """Ground truth against the estimate over time, valence above arousal: the paper's Fig. 1.

    Unlike the single-axes functions this one draws two panels, so it takes and returns a pair.

    Args:
        times: (T,) frame times in seconds.
        mean: (T, 2) estimated (valence, arousal).
        truth: (T, 2) true labels, NaN where unlabelled; ``None`` draws the estimate only.
        var: (T, 2) predictive variances; when given (and ``band`` is not), the Gaussian central
            band of ``level`` is shaded, ``mean +- z sqrt(var)``.
        face_found: (T,) bool; spans without a face are shaded grey.
        axes: Two axes (valence, arousal); ``None`` makes a new 10x5 inch figure of two rows
            sharing the time axis.
        level: Nominal level of the band, in (0, 1).
        label: Legend label of the estimate.
        title: Optional title above the valence panel.
        band: ``(lower, upper)``, each (T, 2): the band to shade, as it is (for instance the
            Monte Carlo bands of a trajectory, which need not be Gaussian).

    Returns:
        The two axes, y limited to [-1.05, 1.05].

    Raises:
        InputError: An array does not have one row per time, ``level`` is outside (0, 1), or
            ``axes`` is not a pair.
    """
    from scipy.special import ndtri

    times = np.asarray(times, dtype=np.float64).reshape(-1)
    frames = len(times)
    mean = _per_frame("mean", mean, frames, (2,))
    truth = None if truth is None else _per_frame("truth", truth, frames, (2,))
    var = None if var is None else _per_frame("var", var, frames, (2,))
    if band is not None:
        if len(band) != 2:
            raise InputError(f"band must be a pair (lower, upper), got {len(band)} arrays")
        band = (_per_frame("band lower", band[0], frames, (2,)),
                _per_frame("band upper", band[1], frames, (2,)))
    if face_found is not None:
        face_found = np.asarray(face_found, dtype=bool)
        if face_found.shape != (frames,):
            raise InputError(f"face_found must have shape ({frames},) like the times, got "
                             f"{face_found.shape}")
    if not 0 < level < 1:
        raise InputError(f"level must be in (0, 1), got {level}")
    if axes is None:
        import matplotlib.pyplot as plt

        _, axes = plt.subplots(2, 1, figsize=(10, 5), sharex=True)
    if len(axes) != 2:
        raise InputError(f"axes must be a pair (valence, arousal), got {len(axes)}")
    step = float(np.median(np.diff(times))) if len(times) > 1 else 1.0
    missing = _spans(~face_found) if face_found is not None else []
    for d, (ax, name) in enumerate(zip(axes, ("valence", "arousal"), strict=True)):
        for k, (a, b) in enumerate(missing):
            ax.axvspan(times[a] - step / 2, times[b] + step / 2, color="0.85", lw=0, zorder=0,
                       label="no face" if k == 0 else None)
        if band is not None:
            low, high = (x[:, d] for x in band)
        elif var is not None:
            half = ndtri(0.5 + level / 2) * np.sqrt(var[:, d])
            low, high = mean[:, d] - half, mean[:, d] + half
        if band is not None or var is not None:
            ax.fill_between(times, low, high, color="C1", alpha=0.25, lw=0,
                            label=f"{level:.0%} band")
        if truth is not None:
            ax.plot(times, truth[:, d], color="k", lw=1.2,
                    label="ground truth")
        ax.plot(times, mean[:, d], color="C1", lw=1.2, label=label)
        ax.axhline(0.0, color="0.7", lw=0.6, zorder=0)
        ax.set_ylim(-1.05, 1.05)
        ax.set_ylabel(name)
        if len(times):  # one frame (or one time): half a step either side of it
            half = step / 2 if step > 0 else 0.5
            ax.set_xlim(*((times[0], times[-1]) if times[-1] > times[0]
                          else (times[0] - half, times[0] + half)))
    axes[1].set_xlabel("time (s)")
    axes[0].legend(loc="upper right", fontsize="small", ncol=4, frameon=False)
    if title:
        axes[0].set_title(title)
    return axes


def _ellipse(centre: np.ndarray, cov: np.ndarray, radius: float, **style):
    from matplotlib.patches import Ellipse

    values, vectors = np.linalg.eigh(cov)  # ascending
    values = np.clip(values, 0.0, None)
    angle = np.degrees(np.arctan2(vectors[1, 1], vectors[0, 1]))  # of the major axis
    return Ellipse(tuple(centre), 2 * radius * np.sqrt(values[1]), 2 * radius * np.sqrt(values[0]),
                   angle=angle, **style)


def plot_circumplex(mean: np.ndarray, cov: np.ndarray | None = None, ax: Axes | None = None, *,
                    truth: np.ndarray | None = None, level: float = 0.9, ellipses: int = 12,
                    times: np.ndarray | None = None, title: str | None = None) -> Axes:
    """A trajectory on the valence-arousal plane (Russell's circumplex) with uncertainty ellipses.

    Args:
        mean: (T, 2) (valence, arousal) estimates, drawn as a line coloured by time.
        cov: (T, 2, 2) their covariances (a (T, 2) array is read as diagonal variances); when
            given, ``ellipses`` evenly spaced frames get the ellipse holding ``level`` of
            N(mean, cov), radius ``sqrt(chi2_2(level)) = sqrt(-2 log(1 - level))``.
        ax: Axes to draw on; ``None`` makes a new 6x6 inch figure.
        truth: (T, 2) true labels, drawn as a thin black line.
        level: Probability inside each ellipse, in (0, 1).
        ellipses: How many ellipses to draw.
        times: (T,) times for the colour bar; ``None`` colours by frame index.
        title: Optional axes title.

    Returns:
        The axes, [-1, 1] on both axes plus a margin, with the unit circle and quadrant names.
    """
    from matplotlib.collections import LineCollection

    mean = np.asarray(mean, dtype=np.float64).reshape(-1, 2)
    if not 0 < level < 1:
        raise InputError(f"level must be in (0, 1), got {level}")
    if ax is None:
        ax = _new_axes((6, 6))
    ax.axhline(0.0, color="0.7", lw=0.8, zorder=0)
    ax.axvline(0.0, color="0.7", lw=0.8, zorder=0)
    ax.add_patch(_circle())
    for x, y, text in ((0.72, 0.92, "excited"), (-0.72, 0.92, "distressed"),
                       (-0.72, -0.95, "depressed"), (0.72, -0.95, "relaxed")):
        ax.text(x, y, text, ha="center", va="center", color="0.55", fontsize="small")
    if truth is not None:
        ax.plot(*np.asarray(truth, dtype=np.float64).reshape(-1, 2).T, color="k", lw=0.8,
                alpha=0.6, label="ground truth")
    clock = np.arange(len(mean), dtype=np.float64) if times is None else np.asarray(times, float)
    if cov is not None and len(mean):
        cov = np.asarray(cov, dtype=np.float64)
        if cov.shape == mean.shape:
            cov = np.stack([np.diag(v) for v in cov])  # (T, 2) variances -> (T, 2, 2)
        radius = np.sqrt(-2.0 * np.log1p(-level))
        for t in np.unique(np.linspace(0, len(mean) - 1, ellipses).round().astype(int)):
            if np.isfinite(cov[t]).all() and np.isfinite(mean[t]).all():
                ax.add_patch(_ellipse(mean[t], cov[t], radius, fill=False, lw=0.8,
                                      color="C0", alpha=0.7))
    if len(mean) > 1:
        segments = np.stack([mean[:-1], mean[1:]], axis=1)  # (T - 1, 2, 2)
        lines = LineCollection(segments, cmap="viridis", lw=1.5, label="estimate")
        lines.set_array(clock[1:])
        ax.add_collection(lines)
        bar = ax.figure.colorbar(lines, ax=ax, fraction=0.046, pad=0.04)
        bar.set_label("time (s)" if times is not None else "frame")
    elif len(mean):
        ax.plot(*mean.T, "o", color="C0")
    ax.set_xlim(-1.1, 1.1)
    ax.set_ylim(-1.1, 1.1)
    ax.set_aspect("equal")
    ax.set_xlabel("valence")
    ax.set_ylabel("arousal")
    if title:
        ax.set_title(title)
    return ax


def _metric_values(metrics, metric: str, stage: str = "raw"
                   ) -> tuple[list[str], list[str], np.ndarray, np.ndarray | None]:
    """Dimensions, videos, (N, D) values and (D,) means (or None) of a metrics input."""
    from coreaffect.metrics import DIMENSIONS, MetricTable

    if isinstance(metrics, MetricTable):
        metrics = metrics.to_dict()
    if isinstance(metrics, dict) and "raw" in metrics:  # evaluate --json: {stage: table}, with
        stages = {k: t for k, t in metrics.items() if k != "people"}  # the people it resampled
        if all(isinstance(t, dict) and t and set(t) <= set(DIMENSIONS) for t in stages.values()):
            if stage not in stages:
                raise InputError(f"no stage {stage!r}; have {list(stages)}")
            metrics = stages[stage]
    if isinstance(metrics, dict) and metrics and set(metrics) <= set(DIMENSIONS):
        dims = [d for d in DIMENSIONS if d in metrics]
        if metric not in metrics[dims[0]]:
            raise InputError(f"no metric {metric!r}; have {sorted(metrics[dims[0]])}")
        videos = list(metrics[dims[0]][metric]["per_video"])
        values = np.array([[_float(metrics[d][metric]["per_video"][v]) for d in dims]
                           for v in videos]).reshape(len(videos), len(dims))
        means = np.array([_float(metrics[d][metric]["mean"]) for d in dims])
        return dims, videos, values, means
    if isinstance(metrics, dict):  # {video: value}
        videos = list(metrics)
        values = np.array([_float(metrics[v]) for v in videos]).reshape(len(videos), 1)
        return [metric], videos, values, None
    raise InputError("metrics must be a MetricTable, its to_dict(), or a {video: value} mapping")


def _float(value) -> float:
    return np.nan if value is None else float(value)


def plot_metrics_bars(metrics, ax: Axes | None = None, *, metric: str = "rmse",
                      stage: str = "raw", title: str | None = None) -> Axes:
    """Per-video values of one metric as bars: the paper's Table 2 as a figure.

    Args:
        metrics: A :class:`~coreaffect.metrics.MetricTable`, its ``to_dict()`` (``{dimension:
            {metric: {"per_video": {video: value}, "mean": ..., "pooled": ...}}}``), the JSON of
            ``coreaffect evaluate --json`` (``{stage: that}``, ``"raw"`` first), or a plain
            ``{video: value}``.
        ax: Axes to draw on; ``None`` makes a new figure sized to the number of videos.
        metric: Which metric of a table to show (``rmse``, ``ccc``, ``pcc``, ``sagr``, ``nll``,
            ``coverage_90``, ...); the label of a plain mapping.
        stage: Which stage of ``coreaffect evaluate --json`` to show (``raw``, ``prior``,
            ``smoothed``, ``filtered``, ``lagged``).
        title: Optional axes title.

    Returns:
        The axes, with grouped bars for valence and arousal (one bar for a plain mapping) and
        a dashed line at each dimension's mean over videos. Undefined values (None/NaN) leave a gap.
    """
    dims, videos, values, means = _metric_values(metrics, metric, stage)
    if ax is None:
        ax = _new_axes((max(5.0, 0.45 * len(videos) * len(dims) + 1.5), 3.5))
    x = np.arange(len(videos))
    width = 0.8 / len(dims)
    for d, dim in enumerate(dims):
        offset = (d - (len(dims) - 1) / 2) * width
        ax.bar(x + offset, values[:, d], width, color=f"C{d}", label=dim)
        if means is not None and np.isfinite(means[d]):
            ax.axhline(means[d], color=f"C{d}", ls="--", lw=1.0,
                       label=f"{dim} mean {means[d]:.3f}")
    ax.set_xticks(x)
    ax.set_xticklabels(videos, rotation=45 if len(videos) > 6 else 0,
                       ha="right" if len(videos) > 6 else "center")
    ax.set_ylabel(metric)
    ax.axhline(0.0, color="0.5", lw=0.6)
    if len(dims) > 1 or means is not None:
        ax.legend(fontsize="small", frameon=False)
    if title:
        ax.set_title(title)
    return ax


def plot_calibration(truth, mean, var, ax: Axes | None = None, *,
                     levels: Sequence[float] | np.ndarray | None = None,
                     title: str | None = None, bands: Mapping | None = None) -> Axes:
    """Reliability curve: observed coverage of central intervals against their nominal level.

    For each nominal level p, the fraction of frames inside the central band of level p, for
    valence and arousal; a calibrated model follows the diagonal, an overconfident one falls
    below it. The bands are the Gaussian ``|y - mean| <= z_{(1+p)/2} sqrt(var)``
    (:func:`coreaffect.metrics.coverage`), or the ones given in ``bands``
    (:func:`coreaffect.metrics.band_coverage`): a dynamic stage's bands are quantiles of decoded
    draws, which its moments describe only approximately.

    Args:
        truth: (T, 2) true labels, NaN where unlabelled, or a sequence of such arrays (videos,
            pooled).
        mean: Estimates of the same shape(s).
        var: Predictive variances of the same shape(s).
        ax: Axes to draw on; ``None`` makes a new 5x5 inch figure.
        levels: Nominal levels in (0, 1); ``None``: 0.05, 0.10, ..., 0.95.
        title: Optional axes title.
        bands: ``{level: (lower, upper)}``, each of the shape(s) of ``truth``, with a band at
            every one of ``levels`` (e.g. a trajectory's
            :meth:`~coreaffect.trajectory.AffectTrajectory.band`); ``None``: Gaussian bands of
            ``mean`` and ``var``.

    Returns:
        The axes, unit square, with the diagonal.

    Raises:
        ValueError: ``bands`` lacks one of ``levels``.
    """
    from coreaffect.metrics import DIMENSIONS, band_coverage, coverage

    def stack(x) -> np.ndarray:
        if isinstance(x, (list, tuple)):
            x = np.concatenate([np.asarray(v, dtype=np.float64).reshape(-1, 2) for v in x])
        return np.asarray(x, dtype=np.float64).reshape(-1, 2)

    def band(p: float) -> tuple[np.ndarray, np.ndarray]:
        known = next((q for q in bands if np.isclose(q, p)), None)
        if known is None:
            raise InputError(f"bands has no band at level {p:g} (it has "
                             f"{', '.join(f'{q:g}' for q in sorted(bands))})")
        return stack(bands[known][0]), stack(bands[known][1])

    y, m, v = stack(truth), stack(mean), stack(var)
    levels = np.linspace(0.05, 0.95, 19) if levels is None else np.asarray(levels, float)
    given = None if bands is None else [band(p) for p in levels]  # (lower, upper) per level
    if ax is None:
        ax = _new_axes((5, 5))
    ax.plot([0, 1], [0, 1], color="0.6", ls="--", lw=1.0, label="calibrated")
    for d, dim in enumerate(DIMENSIONS):
        if given is None:
            observed = [float(coverage(y[:, d], m[:, d], v[:, d], p)) for p in levels]
        else:
            observed = [float(band_coverage(y[:, d], lower[:, d], upper[:, d]))
                        for lower, upper in given]
        ax.plot(levels, observed, "o-", color=f"C{d}", ms=3, label=dim)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("nominal coverage")
    ax.set_ylabel("observed coverage")
    ax.legend(fontsize="small", frameon=False, loc="upper left")
    if title:
        ax.set_title(title)
    return ax


def plot_saliency_grid(frames: np.ndarray, maps: np.ndarray, ax: Axes | None = None, *,
                       row_labels: Sequence[str] | None = None,
                       column_labels: Sequence[str] | None = None, show_frames: bool = True,
                       alpha: float = 0.5, colormap: str = "jet",
                       title: str | None = None) -> Axes:
    """Frames with their saliency maps blended on: the paper's Fig. 2.

    One mosaic on a single axes: a row of the frames (``show_frames``), then one row of overlays
    per set of maps (e.g. one per target of :class:`~coreaffect.saliency.GradCAM3D`).

    Args:
        frames: (N, H, W, 3) uint8 RGB frames, e.g. face crops.
        maps: (N, h, w) maps in [0, 1], or (K, N, h, w) for K rows; resized to (H, W).
        ax: Axes to draw on; ``None`` makes a new figure sized to the grid.
        row_labels: One label per row of overlays (K), e.g. ``("valence", "arousal")``.
        column_labels: One label per frame (N), e.g. times or estimates.
        show_frames: Start with a row of the frames themselves.
        alpha: Weight of the heat map in the blend.
        colormap: See :func:`coreaffect.overlays.overlay_heatmaps`.
        title: Optional axes title.

    Returns:
        The axes, without frame ticks; labels on the left and at the top.
    """
    from coreaffect.overlays import overlay_heatmaps

    frames = np.asarray(frames)
    maps = np.asarray(maps, dtype=np.float32)
    maps = maps[None] if maps.ndim == 3 else maps  # (K, N, h, w)
    if frames.ndim != 4 or maps.ndim != 4 or maps.shape[1] != len(frames):
        raise InputError(f"frames (N, H, W, 3) {frames.shape} and maps (K, N, h, w) "
                         f"{maps.shape} do not match")
    names = (["frame"] if show_frames else []) + list(
        row_labels if row_labels is not None else [f"map {k}" for k in range(len(maps))])
    if len(names) != len(maps) + show_frames:
        raise InputError(f"{len(maps)} rows of maps but {len(names) - show_frames} row labels")
    rows = ([frames] if show_frames else []) + [
        overlay_heatmaps(frames, m, alpha=alpha, colormap=colormap) for m in maps]
    count, height, width = frames.shape[:3]
    pad = max(1, height // 32)
    mosaic = np.full((len(rows) * (height + pad) - pad, count * (width + pad) - pad, 3), 255,
                     dtype=np.uint8)
    for r, images in enumerate(rows):
        for c, image in enumerate(images):
            y, x = r * (height + pad), c * (width + pad)
            mosaic[y:y + height, x:x + width] = image
    if ax is None:
        scale = 1.3 / max(height, width)
        ax = _new_axes((max(3.0, count * width * scale + 1.0), len(rows) * height * scale + 0.6))
    ax.imshow(mosaic, interpolation="antialiased")
    ax.set_yticks([r * (height + pad) + height / 2 for r in range(len(rows))])
    ax.set_yticklabels(names)
    ax.set_xticks([c * (width + pad) + width / 2 for c in range(count)])
    ax.set_xticklabels(list(column_labels) if column_labels is not None else [""] * count,
                       fontsize="small")
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title)
    return ax


def plot_manifold_prior(manifold, loc: np.ndarray, cov: np.ndarray,
                        frame: np.ndarray | None = None, axes: Sequence[Axes] | None = None, *,
                        truth: np.ndarray | None = None, level: float = 0.9, grid: int = 9,
                        n_samples: int = 3000, random_state: int = 0,
                        title: str | None = None) -> Sequence[Axes]:
    """One clip's prior over the latent affect manifold, beside its frame: the paper's Fig. 3.

    Three panels: the clip's face crop; the latent plane with p(z) = N(0, I) (its ``level``
    circle) and the prior N(loc, cov) (its ``level`` ellipse); the valence-arousal plane with the
    manifold's label density (draws of the fitted model, grey), its coordinate grid g(z) (the
    images of the lines z_1 = const and z_2 = const, thin), the prior's draws decoded through g
    (orange) and their moment-matched ``level`` ellipse, and the true label when given.

    Args:
        manifold: A fitted :class:`~coreaffect.manifold.AffectManifold` with K = 2.
        loc: (K,) prior mean over z.
        cov: (K, K) prior covariance.
        frame: (H, W, 3) uint8 RGB face crop (e.g. the clip's middle frame); ``None`` leaves the
            panel out.
        axes: Three axes (or two without a frame); ``None`` makes a new figure.
        truth: (2,) the clip's true (valence, arousal).
        level: Probability inside the circle and ellipses, in (0, 1).
        grid: Lines per latent coordinate in the decoded grid, spanning z in [-2.5, 2.5].
        n_samples: Draws for the label density and for the decoded prior.
        random_state: Seed of the draws.
        title: Optional title over the figure.

    Returns:
        The axes (frame, latent, valence-arousal), or (latent, valence-arousal).
    """
    import torch

    loc = np.asarray(loc, dtype=np.float64).reshape(-1)
    cov = np.asarray(cov, dtype=np.float64).reshape(len(loc), len(loc))
    if len(loc) != 2 or manifold.n_latent != 2:
        raise InputError(f"plot_manifold_prior draws a 2-D latent, got K = {len(loc)}")
    if not 0 < level < 1:
        raise InputError(f"level must be in (0, 1), got {level}")
    panels = 3 if frame is not None else 2
    if axes is None:
        axes = _new_axes((4.2 * panels, 4.2), ncols=panels)
    if len(axes) != panels:
        raise InputError(f"expected {panels} axes, got {len(axes)}")
    radius = np.sqrt(-2.0 * np.log1p(-level))
    if frame is not None:
        axes[0].imshow(np.asarray(frame), interpolation="nearest")
        axes[0].set_axis_off()
        axes[0].set_title("face crop")
    latent_ax, va_ax = axes[-2], axes[-1]
    # the latent plane: p(z) and the prior
    from matplotlib.patches import Circle

    latent_ax.add_patch(Circle((0, 0), radius, fill=False, color="0.5", ls="--",
                               label=f"p(z), {level:.0%}"))
    latent_ax.add_patch(_ellipse(loc, cov, radius, fill=True, color="C1", alpha=0.35,
                                 label=f"prior, {level:.0%}"))
    latent_ax.plot(*loc, "x", color="C1")
    span = max(3.0, float(np.abs(loc).max() + radius * np.sqrt(np.linalg.eigvalsh(cov).max())))
    latent_ax.set_xlim(-span, span)
    latent_ax.set_ylim(-span, span)
    latent_ax.set_aspect("equal")
    latent_ax.set_xlabel("$z_1$")
    latent_ax.set_ylabel("$z_2$")
    latent_ax.set_title("latent space")
    latent_ax.legend(fontsize="small", frameon=False, loc="upper right")
    # the valence-arousal plane: manifold and decoded prior
    generator = torch.Generator().manual_seed(torch_seed(random_state))
    labels = manifold.sample(n_samples, random_state=generator).cpu().numpy()
    va_ax.hexbin(labels[:, 0], labels[:, 1], gridsize=30, extent=(-1, 1, -1, 1), cmap="Greys",
                 mincnt=1, alpha=0.6, linewidths=0)
    line = np.linspace(-2.5, 2.5, 60)
    for value in np.linspace(-2.5, 2.5, grid):
        for z in (np.stack([np.full_like(line, value), line], 1),
                  np.stack([line, np.full_like(line, value)], 1)):
            decoded = manifold.decode(torch.as_tensor(z, dtype=torch.float32)).mean.cpu().numpy()
            va_ax.plot(decoded[:, 0], decoded[:, 1], color="0.45", lw=0.5, alpha=0.7)
    root = np.linalg.cholesky(cov + 1e-12 * np.eye(2))
    eps = torch.randn(n_samples, 2, generator=generator, dtype=torch.float64).numpy()
    z = loc + eps @ root.T  # (S, 2)
    draws = manifold.decode(torch.as_tensor(z, dtype=torch.float32)).mean.cpu().numpy()
    va_ax.scatter(draws[:, 0], draws[:, 1], s=3, color="C1", alpha=0.25, lw=0,
                  label="prior, decoded")
    noise = manifold.noise_scale_.cpu().numpy().astype(np.float64) ** 2
    va_ax.add_patch(_ellipse(draws.mean(0), np.cov(draws.T) + np.diag(noise), radius,
                             fill=False, color="C1", lw=1.5, label=f"{level:.0%} ellipse"))
    if truth is not None:
        va_ax.plot(*np.asarray(truth, dtype=np.float64).reshape(2), "*", color="k", ms=10,
                   label="true label")
    va_ax.axhline(0.0, color="0.7", lw=0.6, zorder=0)
    va_ax.axvline(0.0, color="0.7", lw=0.6, zorder=0)
    va_ax.set_xlim(-1.05, 1.05)
    va_ax.set_ylim(-1.05, 1.05)
    va_ax.set_aspect("equal")
    va_ax.set_xlabel("valence")
    va_ax.set_ylabel("arousal")
    va_ax.set_title("manifold g(z) and the prior")
    va_ax.legend(fontsize="small", frameon=True, framealpha=0.8, loc="upper left")
    if title:
        va_ax.figure.suptitle(title)
    return axes
