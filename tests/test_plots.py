"""Every figure function returns its axes, draws on given axes, and renders to a PNG."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from coreaffect import plots  # noqa: E402
from coreaffect.errors import InputError  # noqa: E402
from coreaffect.metrics import evaluate_videos  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _trajectory(frames: int = 120, seed: int = 0):
    rng = np.random.default_rng(seed)
    times = np.arange(frames) / 25.0
    truth = np.tanh(np.cumsum(rng.normal(0, 0.1, (frames, 2)), axis=0))
    mean = np.clip(truth + rng.normal(0, 0.1, truth.shape), -1, 1)
    var = np.full_like(mean, 0.02)
    found = np.ones(frames, dtype=bool)
    found[30:45] = False
    found[-3:] = False
    return times, truth, mean, var, found


def _save(ax, path):
    ax.figure.savefig(path, dpi=60)
    assert path.stat().st_size > 1000


def test_plot_trajectory(tmp_path):
    times, truth, mean, var, found = _trajectory()
    axes = plots.plot_trajectory(times, mean, truth, var, found, title="video 1")
    assert len(axes) == 2 and axes[0].get_ylabel() == "valence"
    assert len(axes[0].patches) == 2  # the two spans without a face
    _save(axes[0], tmp_path / "trajectory.png")
    figure = Figure()
    given = figure.subplots(2, 1)
    assert list(plots.plot_trajectory(times, mean, axes=given)) == list(given)
    with pytest.raises(ValueError, match="pair"):
        plots.plot_trajectory(times, mean, axes=[given[0]])


@pytest.mark.parametrize("argument", ["mean", "truth", "var", "face_found", "band"])
def test_plot_trajectory_names_an_argument_of_the_wrong_length(argument):
    times, truth, mean, var, found = _trajectory()
    given = {"mean": mean, "truth": truth, "var": var, "face_found": found,
             "band": (mean - 0.1, mean + 0.1)}
    given[argument] = (given[argument][0][:-1], given[argument][1]) if argument == "band" \
        else given[argument][:-1]
    with pytest.raises(InputError, match=argument.split("_")[0]):
        plots.plot_trajectory(times, **given)
    with pytest.raises(InputError, match="truth"):
        plots.plot_trajectory(times, mean, truth[:, :1])


def test_plot_trajectory_shades_the_band_it_is_given():
    times, truth, mean, var, found = _trajectory()
    lower, upper = mean - 0.3, mean + 0.1  # not symmetric, not Gaussian
    axes = plots.plot_trajectory(times, mean, truth, var, found, band=(lower, upper))
    shaded = axes[1].collections[0].get_paths()[0].vertices[:, 1]  # the fill's outline
    assert np.isclose(shaded.min(), lower[:, 1].min()) and np.isclose(shaded.max(),
                                                                         upper[:, 1].max())
    gaussian = plots.plot_trajectory(times, mean, truth, var, found)
    outline = gaussian[1].collections[0].get_paths()[0].vertices[:, 1]
    assert not np.isclose(outline.min(), lower[:, 1].min())


def test_plot_circumplex(tmp_path):
    _, truth, mean, var, _ = _trajectory()
    cov = np.stack([np.diag(v) for v in var])
    cov[:, 0, 1] = cov[:, 1, 0] = 0.01
    ax = plots.plot_circumplex(mean, cov, truth=truth, ellipses=5)
    assert len(ax.patches) == 1 + 5  # the unit circle and the ellipses
    _save(ax, tmp_path / "circumplex.png")
    given = Figure().subplots()
    assert plots.plot_circumplex(mean, var, given, times=np.arange(len(mean)) / 25) is given


def test_ellipse_holds_the_covariance():
    cov = np.array([[0.04, 0.03], [0.03, 0.09]])
    ellipse = plots._ellipse(np.zeros(2), cov, 2.0)
    values = np.linalg.eigvalsh(cov)
    assert ellipse.width == pytest.approx(4 * np.sqrt(values[1]))
    assert ellipse.height == pytest.approx(4 * np.sqrt(values[0]))


def test_plot_metrics_bars(tmp_path):
    runs = [_trajectory(seed=s) for s in range(3)]
    table = evaluate_videos(["a", "b", "c"], [r[1] for r in runs], [r[2] for r in runs],
                            [r[3] for r in runs])
    ax = plots.plot_metrics_bars(table.to_dict(), metric="rmse")
    assert len(ax.patches) == 6  # 3 videos x (valence, arousal)
    _save(ax, tmp_path / "bars.png")
    given = Figure().subplots()
    assert plots.plot_metrics_bars({"raw": table.to_dict()}, given, metric="ccc") is given
    # the JSON of a run with every stage, as coreaffect evaluate --json writes it
    shifted = evaluate_videos(["a", "b", "c"], [r[1] for r in runs], [r[2] + 0.5 for r in runs],
                              [r[3] for r in runs])
    json_like = {"raw": table.to_dict(), "smoothed": shifted.to_dict()}
    bars = plots.plot_metrics_bars(json_like, Figure().subplots(), stage="smoothed")
    assert [p.get_height() for p in bars.patches[:3]] == pytest.approx(
        shifted.per_video["rmse"][:, 0])
    with pytest.raises(ValueError, match="no stage 'lagged'"):
        plots.plot_metrics_bars(json_like, stage="lagged")
    grouped = {**json_like, "people": {"a": "P", "b": "P", "c": "Q"}}  # intervals over people
    bars = plots.plot_metrics_bars(grouped, Figure().subplots(), stage="smoothed")
    assert [p.get_height() for p in bars.patches[:3]] == pytest.approx(
        shifted.per_video["rmse"][:, 0])
    assert plots.plot_metrics_bars(table, metric="coverage_90") is not None
    simple = plots.plot_metrics_bars({"a": 0.1, "b": None, "c": 0.3}, Figure().subplots())
    assert len(simple.patches) == 3
    with pytest.raises(ValueError, match="metric"):
        plots.plot_metrics_bars(table.to_dict(), metric="accuracy")


def test_plot_calibration(tmp_path):
    rng = np.random.default_rng(1)
    truth = rng.normal(size=(4000, 2))
    ax = plots.plot_calibration(truth, np.zeros_like(truth), np.ones_like(truth))
    observed = ax.lines[1].get_ydata()  # valence, after the diagonal
    assert np.allclose(observed, np.linspace(0.05, 0.95, 19), atol=0.03)  # calibrated
    _save(ax, tmp_path / "calibration.png")
    given = Figure().subplots()
    videos = [truth[:100], truth[100:250]]
    assert plots.plot_calibration(videos, [np.zeros((100, 2)), np.zeros((150, 2))],
                                  [np.ones((100, 2)), np.ones((150, 2))], given,
                                  levels=[0.5, 0.9]) is given


def test_plot_calibration_scores_given_bands_not_the_gaussian_of_their_moments():
    rng = np.random.default_rng(3)
    truth = rng.uniform(size=(20000, 2))  # a flat predictive law: its central bands are exact
    levels = [0.2, 0.5, 0.9]
    mean, var = np.full_like(truth, 0.5), np.full_like(truth, 1 / 12)
    bands = {p: (np.full_like(truth, 0.5 - p / 2), np.full_like(truth, 0.5 + p / 2))
             for p in levels}
    exact = plots.plot_calibration(truth, mean, var, Figure().subplots(), levels=levels,
                                   bands=bands).lines[1].get_ydata()
    assert np.allclose(exact, levels, atol=0.01)
    gaussian = plots.plot_calibration(truth, mean, var, Figure().subplots(),
                                      levels=levels).lines[1].get_ydata()
    # the Gaussian of the same moments: P(|U - 1/2| <= z sqrt(1/12)) with U uniform
    from scipy.stats import norm
    reference = np.minimum(1, 2 * norm.ppf(0.5 + np.array(levels) / 2) * np.sqrt(1 / 12))
    assert np.allclose(gaussian, reference, atol=0.01)
    assert abs(gaussian[-1] - 0.9) > 0.03  # the two measures differ where the laws do
    with pytest.raises(ValueError, match="no band at level 0.95"):
        plots.plot_calibration(truth, mean, var, levels=[0.5, 0.95], bands=bands)


def test_plot_saliency_grid(tmp_path):
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 255, (4, 24, 24, 3), dtype=np.uint8)
    maps = rng.random((2, 4, 6, 6))
    ax = plots.plot_saliency_grid(frames, maps, row_labels=["valence", "arousal"],
                                  column_labels=[f"{t} s" for t in range(4)])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["frame", "valence", "arousal"]
    assert ax.images[0].get_array().shape[0] == 3 * 24 + 2 * 1  # three rows of tiles
    _save(ax, tmp_path / "grid.png")
    given = Figure().subplots()
    assert plots.plot_saliency_grid(frames, maps[0], given, show_frames=False) is given
    with pytest.raises(ValueError):
        plots.plot_saliency_grid(frames, maps[:, :3])
    plt.close("all")
    with pytest.raises(ValueError, match="2 rows of maps but 1 row labels"):
        plots.plot_saliency_grid(frames, maps, row_labels=["valence"])
    assert not plt.get_fignums()  # refused before any figure was made


def test_synthetic_samples_still_draws(tmp_path):
    frames = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    ax = plots.plot_synthetic_samples(frames, np.array([[0.5, 0.5], [-0.5, 0.2]]))
    _save(ax, tmp_path / "samples.png")


def test_exports_are_sorted():
    assert plots.__all__ == sorted(plots.__all__)


def test_plot_trajectory_of_one_frame_or_one_time_draws_without_a_warning():
    import warnings

    for times in ([2.0], [2.0, 2.0]):
        axes = plots.detached_axes(2, 1, (4, 3))[:, 0]
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # matplotlib's identical-xlims warning
            plots.plot_trajectory(np.array(times), np.zeros((len(times), 2)), axes=axes)
        assert axes[0].get_xlim()[0] < 2.0 < axes[0].get_xlim()[1]
