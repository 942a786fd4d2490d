"""Tests of coreaffect.labels: fusing raters (mean, EWE by hand) and resampling to frame times."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from coreaffect.annotations import Annotations
from coreaffect.labels import fuse_raters, resample_labels

# --- fusion -------------------------------------------------------------------------------------


def test_fuse_mean_ignores_missing_raters():
    ratings = np.array([[[0.2, 0.4], [np.nan, 0.0], [np.nan, np.nan]],
                        [[0.4, 0.0], [0.6, np.nan], [np.nan, np.nan]]])  # (R=2, T=3, 2)
    np.testing.assert_allclose(fuse_raters(ratings), [[0.3, 0.2], [0.6, 0.0], [np.nan] * 2])


def test_fuse_ewe_against_hand_computed_weights():
    # x1 = x2 = (0, .2, .4), x3 = (.4, .2, .6). Leave-one-out correlations: x1 and x2 with
    # (x_other + x3) / 2 = (.2, .2, .5) give sqrt(3)/2; x3 with (0, .2, .4) gives 1/2.
    x = np.array([[0.0, 0.2, 0.4], [0.0, 0.2, 0.4], [0.4, 0.2, 0.6]])
    ratings = np.stack([x, x], axis=-1)  # same series in both dimensions, (3, 3, 2)
    w = np.array([math.sqrt(3) / 2, math.sqrt(3) / 2, 0.5])
    expected = (w @ x) / w.sum()
    np.testing.assert_allclose(fuse_raters(ratings, "ewe"), np.stack([expected] * 2, -1))


def test_fuse_ewe_zero_weight_for_anticorrelated_rater_and_fallbacks(caplog):
    s = np.array([0.0, 0.1, 0.2, 0.3])
    ratings = np.stack([s, s, s, -s])[:, :, None].repeat(2, axis=2)  # (4, 4, 2)
    np.testing.assert_allclose(fuse_raters(ratings, "ewe")[:, 0], s, atol=1e-12)
    np.testing.assert_allclose(fuse_raters(ratings[:1], "ewe"), ratings[0])  # a single rater
    opposed = np.stack([s, -s])[:, :, None].repeat(2, axis=2)  # no positive weight: the mean
    np.testing.assert_allclose(fuse_raters(opposed, "ewe"), np.zeros((4, 2)), atol=1e-12)
    opposed[:, :, 1] = np.stack([s, s])  # arousal agrees
    with caplog.at_level("WARNING", logger="coreaffect.labels"):
        fuse_raters(opposed, "ewe", source="ratings/a.csv")
    assert ("ratings/a.csv: EWE: no rater correlates positively with the others in valence; "
            "using the mean of the raters there") in caplog.text
    with pytest.raises(ValueError):
        fuse_raters(ratings, "median")


def test_fuse_ewe_of_one_rater_per_dimension_keeps_each_without_a_warning(caplog):
    s = np.array([0.0, 0.1, 0.3, 0.2])
    ratings = np.full((2, 4, 2), np.nan)
    ratings[0, :, 0], ratings[1, :, 1] = s, -s  # DANTE: one rater did valence, one arousal
    with caplog.at_level("WARNING", logger="coreaffect.labels"):
        fused = fuse_raters(ratings, "ewe", source="v")
    np.testing.assert_array_equal(fused, np.stack([s, -s], axis=1))
    assert caplog.text == ""


def test_fuse_ewe_over_the_raters_labelled_at_each_time():
    # x1 = x2 = (0, .1, .2, .3); x3 = -x1 but labelled at the first two times only: its
    # reference there is (0, .1), so rho_3 = -1 and w_3 = 0; x1's reference is the mean of the
    # others labelled at each time, (0, 0, .2, .3), so rho_1 = rho_2 > 0. The last time, which
    # only x3 would label in the second dimension, has no fused value there.
    s = np.array([0.0, 0.1, 0.2, 0.3])
    x3 = np.array([0.0, -0.1, np.nan, np.nan])
    ratings = np.stack([np.stack([s, s], -1), np.stack([s, s], -1), np.stack([x3, x3], -1)])
    ratings[:2, 3, 1] = np.nan
    ratings[2, 3, 1] = -0.3
    fused = fuse_raters(ratings, "ewe")
    np.testing.assert_allclose(fused[:, 0], s, atol=1e-12)
    np.testing.assert_allclose(fused[:, 1], [0.0, 0.1, 0.2, np.nan], atol=1e-12)
    np.testing.assert_allclose(fuse_raters(ratings)[:, 1], [0.0, 1 / 30, 0.2, -0.3], atol=1e-12)


# --- resampling ---------------------------------------------------------------------------------


TIMES = np.array([0.0, 1.0, 2.0, 3.0])
VALUES = np.array([[0.0, 0.0], [0.2, -0.2], [np.nan, -0.4], [0.6, -0.6]])


def test_resample_interpolates_inside_and_is_nan_outside():
    new = np.array([-0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5])
    expected = np.array([
        [np.nan, np.nan], [0.0, 0.0], [0.1, -0.1], [0.2, -0.2],  # exact hit despite NaN on right
        [np.nan, -0.3], [np.nan, -0.4], [np.nan, -0.5], [0.6, -0.6], [np.nan, np.nan],
    ])
    np.testing.assert_allclose(resample_labels(TIMES, VALUES, new), expected)
    np.testing.assert_allclose(resample_labels(TIMES, VALUES, new[::-1]), expected[::-1])


def test_resample_delay_looks_labels_up_later():
    np.testing.assert_allclose(resample_labels(TIMES, VALUES, [0.5, 2.75], delay=0.5),
                               [[0.2, -0.2], [np.nan, np.nan]])
    ann = Annotations(TIMES, VALUES, "v", Path("v.csv"), None)
    np.testing.assert_allclose(ann.resample(np.array([0.25]), delay=0.25), [[0.1, -0.1]])


def test_a_delay_of_whole_frames_keeps_the_labels_beside_invalid_ones():
    # Aff-Wild2: a label per frame at 30 fps, some invalid (-5 in the file)
    times = np.arange(8) / 30
    values = np.array([0.1, np.nan, 0.2, np.nan, np.nan, 0.5, np.nan, 0.4])[:, None]
    # 0.1 s is 3 frames: 2 / 30 + 0.1 misses 5 / 30 by rounding, yet is its frame
    np.testing.assert_array_equal(resample_labels(times, values, times, delay=0.1)[:, 0],
                                  [np.nan, np.nan, 0.5, np.nan, 0.4, np.nan, np.nan, np.nan])
    # the last sample, from a time that rounding puts just past it (-2 / 30 + 0.1 > 1 / 30)
    np.testing.assert_array_equal(resample_labels(times[:2], values[:2], [-2 / 30],
                                                  delay=0.1)[:, 0], [np.nan])
    np.testing.assert_array_equal(resample_labels(times[:2], [[0.1], [0.4]], [-2 / 30],
                                                  delay=0.1)[:, 0], [0.4])
    far = resample_labels(times, values, [5 / 30 + 1e-6])  # a microsecond off: interpolated
    assert np.isnan(far).all()


def test_resample_edge_cases():
    one = resample_labels([1.0], [[0.5, 0.5]], [0.0, 1.0, np.nan, np.inf])
    np.testing.assert_allclose(one, [[np.nan] * 2, [0.5, 0.5], [np.nan] * 2, [np.nan] * 2])
    assert resample_labels(np.empty(0), np.empty((0, 2)), [0.0]).shape == (1, 2)
    with pytest.raises(ValueError):
        resample_labels([1.0, 0.0], [[0, 0], [0, 0]], [0.5])


def test_resample_leaves_a_hole_in_the_annotation_unlabelled():
    # 25 Hz samples at 0-0.2 s and 10.2-10.3 s: rows missing in between
    times = np.concatenate([np.arange(6) * 0.04, 10.2 + np.arange(3) * 0.04])
    values = np.concatenate([np.full((6, 2), 0.9), np.full((3, 2), -0.9)])
    out = resample_labels(times, values, [0.1, 0.2, 2.0, 5.2, 8.0, 10.2, 10.25])
    np.testing.assert_allclose(out[:, 0], [0.9, 0.9, np.nan, np.nan, np.nan, -0.9, -0.9])
    # a short hole (two missing rows, 0.12 s) is bridged; a given max_gap decides otherwise
    short = np.delete(np.arange(10) * 0.04, [4, 5])
    line = np.stack([short, short], -1)
    np.testing.assert_allclose(resample_labels(short, line, [0.18])[:, 0], [0.18])
    assert np.isnan(resample_labels(short, line, [0.18], max_gap=0.1)).all()
