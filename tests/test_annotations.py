"""Tests of coreaffect.annotations: formats as shipped, detection, errors, re-exports."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coreaffect.annotations import (
    FORMATS,
    Annotations,
    detect_format,
    read_annotations,
)
from coreaffect.errors import AnnotationError, CoreAffectWarning, InputError

RECOLA_RATERS = ("FM1", "FM2", "FM3", "FF1", "FF2", "FF3")


# --- writers: files exactly as the datasets ship them -----------------------------------------


def write_dante(root: Path, video: str, raters: dict[str, tuple[list, list]],
                step: float = 0.04) -> None:
    """``root/<UserId>/<video>/{valence,arousal}.csv``; raters maps UserId -> (valence, arousal)."""
    for user, series in raters.items():
        folder = root / user / video
        folder.mkdir(parents=True, exist_ok=True)
        for dim, values in zip(("valence", "arousal"), series, strict=True):
            lines = ["TimeStamp;UserId;NameVideo;AnnoType;Value"]
            lines += [f"{i * step:.2f};{user};{video};{dim};{v}" for i, v in enumerate(values)]
            (folder / f"{dim}.csv").write_text("\n".join(lines) + "\n")


def write_recola(root: Path, video: str, valence: np.ndarray, arousal: np.ndarray,
                 names: tuple[str, ...] = RECOLA_RATERS) -> None:
    """``root/{valence,arousal}/<video>.csv`` with the trailing-space rater header; (T, R) each."""
    for dim, data in (("valence", valence), ("arousal", arousal)):
        (root / dim).mkdir(parents=True, exist_ok=True)
        lines = ["time;" + ";".join(f"{name} " for name in names)]
        lines += [f"{i * 0.04:.2f};" + ";".join(f"{v:.6f}" for v in row)
                  for i, row in enumerate(np.atleast_2d(data))]
        (root / dim / f"{video}.csv").write_text("\n".join(lines) + "\n")


def write_afew(root: Path, clip: str, frames: dict, video_id: str | None = None) -> Path:
    """``root/NNN/`` with a PNG frame and ``NNN.json``."""
    folder = root / clip
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "00000.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    doc = {"actor": "someone", "frames": frames, "video_id": video_id or clip}
    (folder / f"{clip}.json").write_text(json.dumps(doc))
    return folder


def afew_frame(valence: int | None, arousal: int | None) -> dict:
    return {"valence": valence, "arousal": arousal, "landmarks": [[1.0, 2.0]] * 68}


# --- each format --------------------------------------------------------------------------------


def test_dante_root_with_one_video_is_inferred_and_fused(tmp_path):
    write_dante(tmp_path, "vid1", {"u1": ([0.1, 0.2, 0.3], [-0.1, 0.0, 0.1]),
                                   "u2": ([0.3, 0.4, 0.5], [0.1, 0.2, 0.3])})
    ann = read_annotations(tmp_path, "dante")
    assert isinstance(ann, Annotations)
    assert ann.video == "vid1"
    assert ann.path == tmp_path.absolute()
    np.testing.assert_allclose(ann.times, [0.0, 0.04, 0.08])
    np.testing.assert_allclose(ann.values, [[0.2, 0.0], [0.3, 0.1], [0.4, 0.2]])
    assert ann.raters.shape == (2, 3, 2)
    np.testing.assert_allclose(ann.raters[1, :, 0], [0.3, 0.4, 0.5])


def test_dante_file_or_video_folder_reads_every_rater_of_the_video(tmp_path):
    write_dante(tmp_path, "vid1", {"u1": ([0.0, 0.2], [0.0, 0.0]), "u2": ([0.2, 0.4], [0.0, 0.0])})
    write_dante(tmp_path, "vid2", {"u1": ([0.9, 0.9], [0.0, 0.0])})
    for path in (tmp_path / "u2" / "vid1" / "arousal.csv", tmp_path / "u1" / "vid1"):
        ann = read_annotations(path, "dante")
        assert ann.video == "vid1" and ann.raters.shape == (2, 2, 2)
        np.testing.assert_allclose(ann.values[:, 0], [0.1, 0.3])
    ann = read_annotations(tmp_path, "dante", video="vid2")
    np.testing.assert_allclose(ann.values, [[0.9, 0.0], [0.9, 0.0]])


def test_dante_hidden_folders_are_not_raters(tmp_path):
    write_dante(tmp_path, "vid1", {"u1": ([0.0, 0.2], [0.0, 0.0]),
                                   ".ipynb_checkpoints": ([0.9, 0.9], [0.9, 0.9])})
    write_dante(tmp_path, "vid2", {".ipynb_checkpoints": ([0.9], [0.9])})
    for path in (tmp_path, tmp_path / "u1" / "vid1"):
        ann = read_annotations(path, "dante")
        assert ann.video == "vid1" and ann.raters.shape == (1, 2, 2)
        np.testing.assert_allclose(ann.values, [[0.0, 0.0], [0.2, 0.0]])


def test_dante_unknown_or_ambiguous_video_lists_the_available_ones(tmp_path):
    write_dante(tmp_path, "vid1", {"u1": ([0.0], [0.0])})
    write_dante(tmp_path, "vid2", {"u1": ([0.0], [0.0])})
    for video in (None, "nope"):
        with pytest.raises(AnnotationError, match="vid1, vid2"):
            read_annotations(tmp_path, "dante", video=video)


def test_dante_rater_with_one_dimension_labels_that_one_only(tmp_path):
    """DANTE records valence and arousal in sessions of their own."""
    write_dante(tmp_path, "vid1", {"u1": ([0.2, 0.4], [0.6, 0.8]), "u2": ([0.0, 0.2], [0.0, 0.0])})
    (tmp_path / "u2" / "vid1" / "arousal.csv").unlink()
    ann = read_annotations(tmp_path, "dante")
    assert ann.raters.shape == (2, 2, 2) and np.isnan(ann.raters[1, :, 1]).all()
    np.testing.assert_allclose(ann.values, [[0.1, 0.6], [0.3, 0.8]])  # arousal: u1 alone


def test_dante_name_video_column_tells_a_swapped_layout(tmp_path, recwarn):
    """Folders laid out <video>/<UserId> would fuse one rater's labels of different videos."""
    write_dante(tmp_path / "ok", "30_3_mp4", {"u1": ([0.1], [0.2]), "u2": ([0.3], [0.4])})
    for user in ("u1", "u2"):  # DANTE names the video as its file, in the folder with "_"
        for dim in ("valence", "arousal"):
            path = tmp_path / "ok" / user / "30_3_mp4" / f"{dim}.csv"
            path.write_text(path.read_text().replace(";30_3_mp4;", ";30_3.mp4;"))
    assert read_annotations(tmp_path / "ok", "dante").raters.shape == (2, 1, 2)
    assert not [w for w in recwarn if "NameVideo" in str(w.message)]
    swapped = tmp_path / "swapped"
    for video, value in (("clipA", 0.8), ("clipB", -0.8)):
        write_dante(swapped / video, "u1", {"u1": ([value], [value])})
        for path in (swapped / video / "u1" / "u1").glob("*.csv"):  # NameVideo: the video
            path.write_text(path.read_text().replace(";u1;valence", f";{video};valence")
                            .replace(";u1;arousal", f";{video};arousal"))
            path.rename(swapped / video / "u1" / path.name)
        (swapped / video / "u1" / "u1").rmdir()
    with pytest.raises(AnnotationError, match=r"NameVideo column names 'clip[AB]', but that of "
                                              r".*clip[AB].*names 'clip[AB]'.*<UserId>/<video>"):
        read_annotations(swapped / "clipA" / "u1" / "valence.csv", "dante")
    (swapped / "clipB" / "u1" / "valence.csv").unlink()
    (swapped / "clipB" / "u1" / "arousal.csv").unlink()
    with pytest.warns(CoreAffectWarning, match=r"NameVideo column names 'clipA', but the "
                                               r"folder names the video 'u1'"):
        read_annotations(swapped / "clipA" / "u1" / "valence.csv", "dante")


def test_dante_file_naming_two_videos_is_an_error(tmp_path):
    write_dante(tmp_path, "vid1", {"u1": ([0.1, 0.2, 0.3], [0.0, 0.0, 0.0])})
    path = tmp_path / "u1" / "vid1" / "valence.csv"
    lines = path.read_text().splitlines()
    lines[3] = lines[3].replace(";vid1;", ";vid2;")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(AnnotationError, match=r"valence\.csv, line 4: its NameVideo column "
                                              r"names 'vid1' first and 'vid2' here"):
        read_annotations(tmp_path, "dante")


def test_dante_rows_repeating_a_time_are_merged(tmp_path):
    """The tool samples the player's clock, which stands still until playback starts."""
    folder = tmp_path / "u1" / "v"
    folder.mkdir(parents=True)
    rows = [(0.0, 0.0), (0.0, 0.1), (0.0, 0.2), (0.04, 0.3), (0.08, 0.4), (0.08, 0.5)]
    for dim in ("valence", "arousal"):
        (folder / f"{dim}.csv").write_text("TimeStamp;UserId;NameVideo;AnnoType;Value\n" + "".join(
            f"{t};u1;v;{dim};{x}\n" for t, x in rows))
    ann = read_annotations(tmp_path, "dante")
    np.testing.assert_allclose(ann.times, [0.0, 0.04, 0.08])
    np.testing.assert_allclose(ann.values[:, 0], [0.2, 0.3, 0.5])  # the last value at a time
    (folder / "valence.csv").write_text("TimeStamp;UserId;NameVideo;AnnoType;Value\n"
                                        "0.08;u1;v;valence;0\n0.04;u1;v;valence;0\n")
    with pytest.raises(AnnotationError, match="strictly increasing"):
        read_annotations(tmp_path, "dante")  # a time going back is still an error


def test_a_comma_separated_dante_file_is_named_as_such(tmp_path):
    folder = tmp_path / "u1" / "v"
    folder.mkdir(parents=True)
    for dim in ("valence", "arousal"):
        (folder / f"{dim}.csv").write_text("TimeStamp,UserId,NameVideo,AnnoType,Value\n"
                                           f"0.0,u1,v,{dim},0.1\n")
    with pytest.raises(AnnotationError, match="first line has commas"):
        read_annotations(tmp_path, "dante")


def test_dante_raters_of_different_lengths_are_aligned_on_the_union_of_their_times(tmp_path):
    write_dante(tmp_path, "v", {"u1": ([0.1, 0.2], [0.1, 0.2]),
                                "u2": ([0.3, 0.4, 0.5, 0.6], [0.3, 0.4, 0.5, 0.6])})
    ann = read_annotations(tmp_path, "dante")
    np.testing.assert_allclose(ann.times, [0.0, 0.04, 0.08, 0.12])
    np.testing.assert_allclose(ann.raters[0, :, 0], [0.1, 0.2, np.nan, np.nan])
    np.testing.assert_allclose(ann.values[:, 0], [0.2, 0.3, 0.5, 0.6])  # NaN-aware mean


def write_dante_span(root: Path, user: str, video: str, start: float, values: list[float],
                     dims: tuple[str, ...] = ("valence", "arousal")) -> None:
    """One rater's files with 25 Hz rows from ``start`` seconds on, the same values in each."""
    folder = root / user / video
    folder.mkdir(parents=True, exist_ok=True)
    for dim in dims:
        (folder / f"{dim}.csv").write_text("TimeStamp;UserId;NameVideo;AnnoType;Value\n" + "".join(
            f"{start + i * 0.04:.2f};{user};{video};{dim};{v}\n" for i, v in enumerate(values)))


def test_raters_of_disjoint_stretches_keep_their_labels(tmp_path):
    """Rater A labelled 0-0.2 s and B 1-1.4 s: the grid of the longer file lost A's labels."""
    write_dante_span(tmp_path, "A", "v", 0.0, [0.5] * 6)
    write_dante_span(tmp_path, "B", "v", 1.0, [-0.5] * 11)
    for fusion in ("mean", "ewe"):  # EWE: two raters sharing no time both weigh 0: the mean
        ann = read_annotations(tmp_path, "dante", fusion=fusion)
        assert ann.times.size == 17 and ann.raters.shape == (2, 17, 2)
        np.testing.assert_allclose(ann.times[:7], [0.0, 0.04, 0.08, 0.12, 0.16, 0.2, 1.0])
        np.testing.assert_allclose(ann.values[:6], 0.5)
        np.testing.assert_allclose(ann.values[6:], -0.5)
        frames = ann.resample(np.array([0.1, 0.6, 1.2]))  # 0.6 s: between the raters, a hole
        np.testing.assert_allclose(frames, [[0.5, 0.5], [np.nan, np.nan], [-0.5, -0.5]])


def test_raters_out_of_step_keep_their_own_samples(tmp_path):
    """RECOLA-style files whose times differ: each keeps its samples on the union grid, and
    times a rounding apart are one grid time, where a sample next to a gap keeps its value."""
    (tmp_path / "valence").mkdir()
    (tmp_path / "arousal").mkdir()
    (tmp_path / "valence" / "P1.csv").write_text("time;FM1 ;FM2 \n0.00;0.1;0.3\n0.04;0.2;nan\n"
                                                 "0.08;0.3;0.5\n")
    (tmp_path / "arousal" / "P1.csv").write_text("time;FM1 ;FM2 \n0.02;0.6;0.6\n"
                                                 "0.0400000001;0.7;0.9\n0.06;0.8;0.8\n")
    ann = read_annotations(tmp_path / "valence" / "P1.csv")
    np.testing.assert_allclose(ann.times, [0.0, 0.02, 0.04, 0.06, 0.08])
    np.testing.assert_allclose(ann.raters[:, :, 0], [[0.1, 0.15, 0.2, 0.25, 0.3],
                                                      [0.3, np.nan, np.nan, np.nan, 0.5]])
    np.testing.assert_allclose(ann.raters[:, :, 1], [[np.nan, 0.6, 0.7, 0.8, np.nan],
                                                      [np.nan, 0.6, 0.9, 0.8, np.nan]])
    np.testing.assert_allclose(ann.values[:, 1], [np.nan, 0.6, 0.8, 0.8, np.nan])


def test_ewe_warns_about_labels_only_raters_of_weight_zero_gave(tmp_path):
    rising = [0.0, 0.1, 0.2, 0.3]
    write_dante_span(tmp_path, "a", "v", 0.0, rising)
    write_dante_span(tmp_path, "b", "v", 0.0, rising)
    write_dante_span(tmp_path, "c", "v", 1.0, [0.9, 0.8])  # shares no time with a and b
    with pytest.warns(CoreAffectWarning, match=r"ewe fusion .* leaves 2 of valence, 2 of "
                                               r"arousal labelled time\(s\) without a label"):
        ann = read_annotations(tmp_path, "dante", fusion="ewe")
    np.testing.assert_allclose(ann.values[:4, 0], rising, atol=1e-12)
    assert np.isnan(ann.values[4:]).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error", CoreAffectWarning)
        np.testing.assert_allclose(read_annotations(tmp_path, "dante").values[4:, 0], [0.9, 0.8])


def test_dante_ewe_fusion_drops_an_anticorrelated_rater(tmp_path):
    rising = [0.0, 0.1, 0.2, 0.3]
    falling = [-v for v in rising]
    write_dante(tmp_path, "v", {"a": (rising, rising), "b": (rising, rising),
                                "c": (rising, rising), "d": (falling, falling)})
    np.testing.assert_allclose(read_annotations(tmp_path, "dante", fusion="ewe").values[:, 0],
                               rising, atol=1e-12)
    np.testing.assert_allclose(read_annotations(tmp_path, "dante").values[:, 0],
                               [v / 2 for v in rising], atol=1e-12)


@pytest.mark.parametrize(("fmt", "text", "expected"), [
    ("dante", "TimeStamp;UserId;NameVideo;AnnoType;Value;\n0.00;u;vid;valence;0.1;\n"
              "0.04;u;vid;valence;0.2;\n", [[0.1, np.nan], [0.2, np.nan]]),
    ("aff-wild2", "valence,arousal,\n0.1,0.2,\n-5,-5,\n", [[0.1, 0.2], [np.nan, np.nan]]),
    ("recola", "time;FM1 ;FM2 ;\n0.00;0.1;0.3;\n0.04;0.2;0.4;\n", [[0.15, 0.2], [0.35, 0.3]]),
    ("csv", "time,valence,arousal,\n0.00,0.1,0.2,\n0.04,0.3,0.4,\n", [[0.1, 0.2], [0.3, 0.4]]),
    ("sewa", "vid;0.00;0.2;0.1;0;\nvid;0.10;0.4;0.3;;\n", [[0.1, 0.2], [0.3, 0.4]]),
])
def test_a_delimiter_ending_every_line_is_read(tmp_path, fmt, text, expected):
    path = _layout(tmp_path, fmt, text.encode())
    if fmt == "dante":  # valence only: the arousal file _layout writes is another session
        (path.parent / "arousal.csv").unlink()
    assert detect_format(path) == fmt
    for kind in (fmt, "auto"):
        np.testing.assert_allclose(read_annotations(path, kind).values, expected)


@pytest.mark.parametrize(("fmt", "text", "match"), [
    ("aff-wild2", "valence,arousal,\n0.1,0.2\n",
     r"expected 3 ','-separated columns, found 2 \(the header ends with ','; this line does not\)"),
    ("aff-wild2", "valence,arousal,\n0.1,0.2,0.3\n", "column 3: '0.3' where the header ends "
                                                      "with ','"),
    ("dante", "TimeStamp;UserId;NameVideo;AnnoType;Value\n0;u;v;valence;0.1;\n",
     r"expected 5 ';'.*found 6 \(this line ends with ';'\)"),
    ("recola", "time;FM1 ;\n0.00;0.1;2\n", "column 3: '2' where the header ends"),
    ("csv", "time,valence,arousal,\n0,0,0\n", "the header ends with ','; this line does not"),
    ("sewa", "vid;0.00;0.2;0.1;0;\nvid;0.10;0.4;0.3;0;1\n", "column 6: '1' where the first line"),
])
def test_a_delimiter_ending_some_lines_only_is_named(tmp_path, fmt, text, match):
    path = _layout(tmp_path, fmt, text.encode())
    with pytest.raises(AnnotationError, match=match) as err:
        read_annotations(path, fmt)
    assert err.value.line == 2


def test_quoted_header_cells_are_read_as_names(tmp_path):
    """R's write.csv quotes the header cells, and with row names adds an unnamed first column."""
    path = tmp_path / "s1.csv"
    path.write_text('"time","valence","arousal"\n0.00,0.000,0.3\n0.04,0.020,0.3\n')
    named = tmp_path / "s2.csv"
    named.write_text('"","time","valence","arousal"\n"1",0.00,0.000,0.3\n"2",0.04,0.020,0.3\n')
    aff = tmp_path / "s3.txt"
    aff.write_text('"valence","arousal"\n0.0,0.3\n0.02,0.3\n')
    for file, fmt in ((path, "csv"), (named, "csv"), (aff, "aff-wild2")):
        assert detect_format(file) == fmt
        np.testing.assert_allclose(read_annotations(file).values, [[0.0, 0.3], [0.02, 0.3]])


@pytest.mark.parametrize(("name", "text", "match"), [
    ("v.csv", "time;valence;arousal\n0;0.1;0.2\n", "has semicolons: the csv format is comma"),
    ("v.csv", "time\tvalence\tarousal\n0\t0.1\t0.2\n", "has tabs: the csv format is comma"),
    ("v.txt", "valence;arousal\n0.1;0.2\n", "has semicolons: Aff-Wild2 files are comma"),
])
def test_a_file_with_another_delimiter_than_its_format_is_named(tmp_path, name, text, match):
    path = tmp_path / name
    path.write_text(text)
    for fmt in ("auto", "csv" if name.endswith(".csv") else "aff-wild2"):
        with pytest.raises(AnnotationError, match=match) as err:
            read_annotations(path, fmt)
        assert err.value.path == path


def test_affwild2_rows_are_frames_and_minus_five_is_invalid(tmp_path):
    path = tmp_path / "118-30-640x480.txt"
    path.write_text("valence,arousal\n0.1,0.2\n-5,-5\n0.4,-5\n-0.5,-0.6\n")
    ann = read_annotations(path, "aff-wild2")
    assert ann.video == "118-30-640x480" and ann.raters is None and ann.path == path
    np.testing.assert_allclose(ann.times, np.arange(4) / 30)  # the documented default
    np.testing.assert_allclose(ann.values, [[0.1, 0.2], [np.nan] * 2, [0.4, np.nan], [-0.5, -0.6]])
    np.testing.assert_allclose(read_annotations(path, "aff-wild2", fps=25).times, np.arange(4) / 25)
    folder = read_annotations(tmp_path, "aff-wild2", video="118-30-640x480")
    np.testing.assert_array_equal(folder.values, ann.values)


def test_afew_va_scales_by_ten_and_orders_frames(tmp_path):
    folder = write_afew(tmp_path, "001", {"00002": afew_frame(10, -10), "00000": afew_frame(3, 0),
                                          "00001": afew_frame(None, 5)})
    for path in (folder, folder / "001.json", tmp_path):
        ann = read_annotations(path, "afew-va")
        assert ann.video == "001" and ann.path == folder / "001.json"
        np.testing.assert_allclose(ann.times, np.arange(3) / 25)  # the documented default
        np.testing.assert_allclose(ann.values, [[0.3, 0.0], [np.nan, 0.5], [1.0, -1.0]])
    np.testing.assert_allclose(read_annotations(folder, "afew-va", fps=10).times, [0, 0.1, 0.2])


def test_afew_va_labels_that_look_already_scaled_are_warned_about(tmp_path):
    folder = write_afew(tmp_path, "001", {"00000": afew_frame(0.1, 0.4),
                                          "00001": afew_frame(-1, 0)})
    with pytest.warns(CoreAffectWarning, match="already scaled"):
        ann = read_annotations(folder, "afew-va")
    np.testing.assert_allclose(ann.values, [[0.01, 0.04], [-0.1, 0.0]])  # read as documented
    folder = write_afew(tmp_path / "b", "002", {"00000": afew_frame(1, -1),
                                                "00001": afew_frame(0, 2.5)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # integers, or values beyond 1: AFEW-VA's own scale
        read_annotations(folder, "afew-va")
        read_annotations(write_afew(tmp_path / "c", "003", {"00000": afew_frame(1, 0)}),
                         "afew-va")


def test_afew_va_checks_video_id_range_and_clip_choice(tmp_path):
    write_afew(tmp_path, "002", {"00000": afew_frame(1, 1)}, video_id="003")
    with pytest.raises(AnnotationError, match="video_id"):
        read_annotations(tmp_path / "002", "afew-va")
    write_afew(tmp_path, "004", {"00000": afew_frame(1, 1)}, video_id="4")  # same number: fine
    assert read_annotations(tmp_path, "afew-va", video="004").video == "004"
    with pytest.raises(AnnotationError, match="002, 004"):
        read_annotations(tmp_path, "afew-va")
    write_afew(tmp_path, "005", {"00000": afew_frame(11, 1)})
    with pytest.raises(AnnotationError, match=r"frame 00000: valence 11 is outside \[-10, 10\]"):
        read_annotations(tmp_path / "005", "afew-va")
    with pytest.raises(AnnotationError, match="006.json: no such file"):
        read_annotations(tmp_path / "006.json", "afew-va")
    (tmp_path / "007.json").write_bytes(b'{"frames": {"\xff": 1}}')
    with pytest.raises(AnnotationError, match="007.json.*not UTF-8"):
        read_annotations(tmp_path / "007.json", "afew-va")


def test_sewa_reads_arousal_before_valence(tmp_path):
    path = tmp_path / "Train_01.csv"
    path.write_text("Train_01;0.00;0.5;-0.25;0.1\nTrain_01;0.10;0.6;-0.35;0.2\n")
    ann = read_annotations(path, "sewa")
    assert ann.video == "Train_01" and ann.raters is None
    np.testing.assert_allclose(ann.times, [0.0, 0.1])
    np.testing.assert_allclose(ann.values, [[-0.25, 0.5], [-0.35, 0.6]])
    assert read_annotations(tmp_path, "sewa", video="Train_01").video == "Train_01"


def test_a_sewa_file_with_a_header_row_is_told_it_has_one(tmp_path):
    path = tmp_path / "vid.csv"
    path.write_text("name;time;arousal;valence;liking\nvid;0.00;0.2;0.1;0\n")
    with pytest.raises(AnnotationError, match=r"vid\.csv: its first line .* is a header, and "
                                              r"SEWA files have none"):
        read_annotations(path)
    with pytest.raises(AnnotationError, match=r"vid\.csv, line 1: column 2: 'time' is not a "
                                              r"number"):
        read_annotations(path, "sewa")


def test_sewa_name_must_be_constant(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("a;0.0;0;0;0\na;0.1;0;0;0\nb;0.2;0;0;0\n")
    with pytest.raises(AnnotationError, match="one video per file") as err:
        read_annotations(path, "sewa")
    assert err.value.line == 3


def test_recola_strips_rater_names_and_reads_from_either_file_or_root(tmp_path):
    valence = np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0.0, 0.0, 0.0, 0.0, 0.0, 0.6]])
    arousal = -valence
    write_recola(tmp_path, "P16", valence, arousal)
    for path in (tmp_path / "arousal" / "P16.csv", tmp_path / "valence" / "P16.csv", tmp_path):
        ann = read_annotations(path, "recola", video="P16")
        assert ann.video == "P16" and ann.path == tmp_path.absolute()
        assert ann.raters.shape == (6, 2, 2)
        np.testing.assert_allclose(ann.times, [0.0, 0.04])
        np.testing.assert_allclose(ann.values, [[0.35, -0.35], [0.1, -0.1]])
        np.testing.assert_allclose(ann.raters[:, 0, 0], valence[0])


def test_recola_matches_raters_by_name_across_files(tmp_path):
    write_recola(tmp_path, "P1", np.array([[0.1, 0.2]]), np.array([[0.3, 0.4]]), ("FM1", "FF1"))
    (tmp_path / "arousal" / "P1.csv").write_text("time;FF1 ;FM1 \n0.00;0.4;0.3\n")
    ann = read_annotations(tmp_path / "valence" / "P1.csv", "recola")
    np.testing.assert_allclose(ann.raters[:, 0, :], [[0.1, 0.3], [0.2, 0.4]])
    (tmp_path / "arousal" / "P1.csv").write_text("time;FF1 ;FM2 \n0.00;0.4;0.3\n")
    with pytest.raises(AnnotationError, match="raters"):
        read_annotations(tmp_path / "valence" / "P1.csv", "recola")


def test_recola_missing_sibling_is_a_clear_error(tmp_path):
    write_recola(tmp_path, "P1", np.zeros((2, 6)), np.zeros((2, 6)))
    (tmp_path / "valence" / "P1.csv").unlink()
    with pytest.raises(AnnotationError, match="no matching valence file"):
        read_annotations(tmp_path / "arousal" / "P1.csv", "recola")
    write_recola(tmp_path, "P2", np.zeros((2, 6)), np.full((2, 6), 0.5))
    (tmp_path / "arousal" / "P2.csv").rename(tmp_path / "arousal" / "P2.CSV")
    read = read_annotations(tmp_path / "arousal" / "P2.CSV", "recola")  # its partner: P2.csv
    np.testing.assert_allclose(read.values, [[0.0, 0.5]] * 2)
    write_recola(tmp_path, "p2", np.full((2, 6), 0.7), np.full((2, 6), 0.8))  # another video
    np.testing.assert_allclose(read_annotations(tmp_path / "arousal" / "p2.csv", "recola").values,
                               [[0.7, 0.8]] * 2)  # its own valence file, the same name
    (tmp_path / "arousal" / "p2.csv").rename(tmp_path / "arousal" / "x.csv")
    (tmp_path / "arousal" / "P2.CSV").rename(tmp_path / "arousal" / "p2.Csv")
    with pytest.raises(AnnotationError, match=r"p2\.Csv: its valence file is one of P2\.csv, "
                                              r"p2\.csv, which differ only in case"):
        read_annotations(tmp_path / "arousal" / "p2.Csv", "recola")


def test_csv_ignores_extra_columns_and_reads_empty_cells_as_nan(tmp_path):
    path = tmp_path / "clip.csv"
    path.write_text("frame, Arousal ,time,valence\n0,0.5,0.0,0.1\n1,,0.5,-0.2\n")
    ann = read_annotations(path)
    assert ann.video == "clip"
    np.testing.assert_allclose(ann.times, [0.0, 0.5])
    np.testing.assert_allclose(ann.values, [[0.1, 0.5], [-0.2, np.nan]])
    path.write_text('"time","valence","arousal"\n0,0.1,NA\n0.5,NA,0.2\n')  # R's write.csv
    np.testing.assert_allclose(read_annotations(path).values, [[0.1, np.nan], [np.nan, 0.2]])


def test_read_delay_shifts_times_earlier(tmp_path):
    path = tmp_path / "v.csv"
    path.write_text("time,valence,arousal\n0.0,0,0\n0.04,0.1,0.1\n0.08,0.2,0.2\n")
    np.testing.assert_allclose(read_annotations(path, delay=0.04).times, [-0.04, 0.0, 0.04])


def test_detect_format_of_each_layout(tmp_path):
    write_dante(tmp_path / "annotation", "vid", {"u1": ([0.0], [0.0])})
    write_recola(tmp_path / "recola", "P1", np.zeros((1, 6)), np.zeros((1, 6)))
    write_afew(tmp_path / "afew", "001", {"00000": afew_frame(0, 0)})
    (tmp_path / "aff").mkdir()
    (tmp_path / "aff" / "v.txt").write_text("valence,arousal\n0,0\n")
    (tmp_path / "sewa.csv").write_text("Train_01;0.00;0.5;-0.25;0.1\n")
    (tmp_path / "plain.csv").write_text("time,valence,arousal\n0,0,0\n")
    expected = {
        "annotation": "dante", "annotation/u1/vid": "dante", "annotation/u1/vid/valence.csv":
        "dante", "recola": "recola", "recola/arousal/P1.csv": "recola", "afew": "afew-va",
        "afew/001": "afew-va", "afew/001/001.json": "afew-va", "aff": "aff-wild2",
        "aff/v.txt": "aff-wild2", "sewa.csv": "sewa", "plain.csv": "csv",
    }
    for relative, fmt in expected.items():
        assert detect_format(tmp_path / relative) == fmt, relative
    assert read_annotations(tmp_path / "afew").video == "001"
    (tmp_path / "odd.csv").write_text("a;b\n")
    for path in (tmp_path / "odd.csv", tmp_path / "missing.csv"):
        with pytest.raises(AnnotationError):
            detect_format(path)


# --- bad content --------------------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "text", "line", "match"), [
    ("csv", "time,valence,arousal\n0,0,0\n0.1,1.0000001,0\n", 3, "valence 1.0000001 is outside"),
    ("csv", "time,valence,arousal\n0,0,0\n0,0,0\n", 3, "strictly increasing"),
    ("csv", "time,valence,arousal\n0,0,0\n0.1,abc,0\n", 3, "'abc' is not a number"),
    ("csv", "time,valence,arousal\n0,0\n", 2, "expected 3"),
    ("csv", "time,valence,arousal\n0,0,0\n\n0.2,0,0\n", 3, "blank line"),
    ("csv", "0,0,0\n", 1, "missing header"),
    ("csv", "time,valence,arousal\n,0,0\n", 2, "not a finite number"),
    ("sewa", "a;0.0;0;0;0\na;0.1;-1.2;0;0\n", 2, "arousal -1.2 is outside"),
    ("aff-wild2", "valence,arousal\n0,0\n0,2\n", 3, "arousal 2.0 is outside"),
    ("aff-wild2", "arousal,valence\n0,0\n", 1, "missing header"),
    ("dante", "TimeStamp;UserId;NameVideo;AnnoType;Value\n0;u;v;valence;-3\n", 2, "outside"),
    ("recola", "time;FM1 ;FM2 \n0.00;0.1;0.2\n0.04;0.1;7\n", 3, "outside"),
])
def test_bad_content_names_file_and_line(tmp_path, fmt, text, line, match):
    target = _layout(tmp_path, fmt, text.encode())
    with pytest.raises(AnnotationError, match=match) as err:
        read_annotations(target, fmt)
    assert err.value.line == line
    assert err.value.path.name == target.name
    assert f"line {line}" in str(err.value)


def test_empty_undecodable_and_missing_files(tmp_path):
    path = tmp_path / "v.csv"
    path.write_bytes(b"")
    with pytest.raises(AnnotationError, match="empty file"):
        read_annotations(path, "csv")
    path.write_bytes(b"time,valence,arousal\n0,0,0\n\xff\xfe\n")
    with pytest.raises(AnnotationError, match="not UTF-8") as err:
        read_annotations(path, "csv")
    assert err.value.line == 3
    for fmt in FORMATS:
        with pytest.raises(AnnotationError):
            read_annotations(tmp_path / "nothing" / "here.csv", fmt)
    with pytest.raises(ValueError, match="format"):
        read_annotations(path, "bogus")


def test_a_long_recording_is_read_whole(tmp_path):
    """30 minutes at 25 Hz: every row, the raters' mean (the speed of reading is measured by
    benchmarks/bench_data_path.py, not here)."""
    t = 30 * 60 * 25
    rng = np.random.default_rng(0)
    valence, arousal = rng.uniform(-1, 1, (t, 6)), rng.uniform(-1, 1, (t, 6))
    write_recola(tmp_path, "P1", valence, arousal)
    ann = read_annotations(tmp_path / "arousal" / "P1.csv")
    assert ann.values.shape == (t, 2)
    np.testing.assert_allclose(ann.times, np.arange(t) * 0.04, atol=1e-9)
    expected = np.column_stack([np.round(valence, 6).mean(1), np.round(arousal, 6).mean(1)])
    np.testing.assert_allclose(ann.values, expected, atol=1e-9)


# --- random content: an Annotations or an AnnotationError, nothing else -----------------------


VALID = {
    "dante": ("TimeStamp;UserId;NameVideo;AnnoType;Value\n0;u;vid;arousal;0.1\n"
              "0.04;u;vid;arousal;0.2\n"),
    "recola": "time;FM1 ;FM2 \n0.00;0.1;0.2\n0.04;0.3;0.4\n",
}
HEADERS = ["", "time,valence,arousal\n", "valence,arousal\n", "time;FM1 ;FM2 \n",
           "TimeStamp;UserId;NameVideo;AnnoType;Value\n", "v;"]
TOKENS = ["0", "1", "-1", "0.04", "-5", "1e400", "nan", "inf", "", " ", ";", ",", "\n", "\r\n",
          "\r", '"', "time", "valence", "u", "\x00", "é", "\ufeff"]
texts = st.builds(lambda head, body: head + "".join(body), st.sampled_from(HEADERS),
                  st.lists(st.sampled_from(TOKENS), max_size=30))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-12, 12) | st.integers() | st.floats()
    | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=3),
    max_leaves=8)
frame_keys = st.sampled_from(["00000", "00001", "0", "1", "-1", "x", "0" * 30, "١"])
afew_docs = st.fixed_dictionaries(
    {"frames": st.dictionaries(frame_keys, st.dictionaries(
        st.sampled_from(["valence", "arousal", "landmarks"]), json_values, max_size=3)
        | json_values, max_size=4)},
    optional={"video_id": json_values})
contents = st.one_of(
    st.binary(max_size=120),
    st.text(max_size=120).map(str.encode),
    texts.map(str.encode),
    afew_docs.map(lambda doc: json.dumps(doc).encode()),
    json_values.map(lambda doc: json.dumps(doc).encode()),
)
GOOD_CELLS = ["0", "0.5", "-0.5", "1", "-1", "-0", "0.25"]
CELLS = GOOD_CELLS * 4 + ["-5", "1.5", "nan", "", " ", "x", "1e400"]
TABLES = {  # header, delimiter, leading cells of a row ({t} = a time), number of value cells
    "csv": ("time,valence,arousal", ",", ["{t}"], 2),
    "aff-wild2": ("valence,arousal", ",", [], 2),
    "sewa": (None, ";", ["vid", "{t}"], 3),
    "dante": ("TimeStamp;UserId;NameVideo;AnnoType;Value", ";", ["{t}", "u", "vid", "valence"], 1),
    "recola": ("time;FM1 ;FM2 ", ";", ["{t}"], 2),
}


def _table_text(fmt: str, rows: list[tuple[bool, list[str]]]) -> bytes:
    header, delimiter, lead, _ = TABLES[fmt]
    lines = [] if header is None else [header]
    for i, (in_order, cells) in enumerate(rows):
        time_cell = f"{i * 0.04:.2f}" if in_order else cells[0] if cells else ""
        lines.append(delimiter.join([c.format(t=time_cell) for c in lead] + cells))
    return ("\n".join(lines) + "\n").encode()


def _near_valid(fmt: str) -> st.SearchStrategy[bytes]:
    """Rows close to the format: mostly the right columns, times and in-range values."""
    if fmt == "afew-va":
        label = st.one_of(st.integers(-11, 11), st.none())
        frame = st.fixed_dictionaries({"valence": label, "arousal": label})
        keys = st.integers(0, 20).map(lambda i: f"{i:05d}")
        doc = st.fixed_dictionaries({"frames": st.dictionaries(keys, frame, max_size=6)},
                                    optional={"video_id": st.sampled_from(["001", "1", 2, "x"])})
        return doc.map(lambda d: json.dumps(d).encode())
    width = TABLES[fmt][3]
    cells = st.sampled_from(CELLS)
    row = st.tuples(st.integers(0, 19).map(bool),
                    st.lists(cells, min_size=width, max_size=width)
                    | st.lists(cells, min_size=width - 1, max_size=width + 1))
    return st.lists(row, max_size=8).map(lambda rows: _table_text(fmt, rows))


def _layout(root: Path, fmt: str, content: bytes) -> Path:
    """Write ``content`` as the file a format reads, in its layout; returns the file."""
    relative = {"dante": "annotation/u1/vid/valence.csv", "aff-wild2": "vid.txt",
                "afew-va": "001/001.json", "sewa": "vid.csv", "recola": "arousal/vid.csv",
                "csv": "vid.csv"}[fmt]
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    if fmt == "dante":
        (path.parent / "arousal.csv").write_text(VALID["dante"])
    if fmt == "recola":
        (root / "valence").mkdir(exist_ok=True)
        (root / "valence" / "vid.csv").write_text(VALID["recola"])
    return path


def _check_valid(ann: Annotations) -> None:
    assert ann.times.ndim == 1 and ann.values.shape == (ann.times.size, 2)
    assert np.all(np.isfinite(ann.times)) and np.all(np.diff(ann.times) > 0)
    assert np.all(np.isnan(ann.values) | (np.abs(ann.values) <= 1))


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=50, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_content_gives_annotations_or_annotation_error(tmp_path, fmt, data):
    path = _layout(tmp_path, fmt, data.draw(st.one_of(contents, _near_valid(fmt))))
    for target, kind in ((path, fmt), (path, "auto"), (path.parent, fmt)):
        try:
            _check_valid(read_annotations(target, kind))
        except AnnotationError:
            pass
    try:
        assert detect_format(path) in FORMATS
    except AnnotationError:
        pass


def test_label_functions_are_reexported():
    from coreaffect import annotations, labels

    assert annotations.fuse_raters is labels.fuse_raters
    assert annotations.resample_labels is labels.resample_labels


def test_format_detection_reads_the_head_of_a_large_file(tmp_path):
    path = tmp_path / "long.csv"
    rows = "".join(f"{i * 0.04:.2f},0.1,-0.2\n" for i in range(20000))  # over 64 KiB
    path.write_text("\ufefftime,valence,arousal\n" + rows, encoding="utf-8")
    assert path.stat().st_size > 1 << 16
    assert detect_format(path) == "csv"
    assert read_annotations(path).values.shape == (20000, 2)
    broken = tmp_path / "broken.csv"
    broken.write_bytes(b"time,valence,arousal\n" + rows.encode() + b"\xff\n")
    assert detect_format(broken) == "csv"  # the bad byte is past the head
    with pytest.raises(AnnotationError, match="not UTF-8"):
        read_annotations(broken)


@pytest.mark.parametrize("end", ["\r", "\r\n", ""])
def test_format_detection_leaves_out_a_character_cut_by_the_head(tmp_path, end):
    """Old Mac line ends ("\r" alone), or one long line: the head's cut may split a character."""
    rows = [f"{i * 0.04:.2f},0.1,-0.2,caf\u00e9" for i in range(4000)]  # over 64 KiB
    data = next(data for shift in range(40)  # the cut, after byte 65536, inside an "\u00e9"
                if (data := ("time,valence,arousal,note" + "_" * shift + (end or ",").join(
                    ["", *rows]) + end).encode())[(1 << 16) - 1] == 0xC3)
    path = tmp_path / "mac.csv"
    path.write_bytes(data)
    assert detect_format(path) == "csv"


def test_a_frame_labelled_twice_in_an_afew_va_file_is_an_error(tmp_path):
    path = write_afew(tmp_path, "001", {"00000": afew_frame(1, 2)}) / "001.json"
    text = path.read_text()
    twice = text.replace('"00000"', '"00001": {"valence": 3, "arousal": 4}, "00000"', 1)
    path.write_text(twice.replace('"00001"', '"00000": {"valence": -9, "arousal": -9}, "00001"',
                                  1))
    with pytest.raises(AnnotationError, match="001.json: key '00000' appears twice"):
        read_annotations(path, "afew-va")


def test_a_folder_finds_its_video_file_as_discovery_does(tmp_path):
    (tmp_path / "Train_01.txt").write_text("Train_01;0.00;0.5;-0.25;0.1\n")
    (tmp_path / "V2.TXT").write_text("valence,arousal\n0.1,0.2\n")
    (tmp_path / "c.Csv").write_text("time,valence,arousal\n0,0.1,0.2\n")
    (tmp_path / ".c.csv").write_text("not read\n")
    assert read_annotations(tmp_path, "sewa", video="Train_01").video == "Train_01"
    assert read_annotations(tmp_path, "aff-wild2", video="V2", fps=25).video == "V2"
    assert read_annotations(tmp_path, "csv", video="c").video == "c"
    with pytest.raises(AnnotationError, match="no Aff-Wild2 <video>.txt for video 'x'; "
                                              "available: Train_01, V2$"):
        read_annotations(tmp_path, "aff-wild2", video="x", fps=25)


def test_hidden_and_upper_case_files_of_a_folder_are_treated_as_elsewhere(tmp_path):
    # a folder given without a format: macOS's ._a.csv is not the file whose format is read
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "._a.csv").write_bytes(b"\x00\x05\x16\x07 resource fork")
    (plain / "a.csv").write_text("time,valence,arousal\n0,0.1,0.2\n")
    assert read_annotations(plain, video="a").video == "a"
    # a RECOLA root and a video: files in any case, hidden ones passed over
    rng = np.random.default_rng(0)
    write_recola(tmp_path / "rc", "P1", rng.uniform(-1, 1, (5, 6)), rng.uniform(-1, 1, (5, 6)))
    for dim in ("valence", "arousal"):
        (tmp_path / "rc" / dim / "P1.csv").rename(tmp_path / "rc" / dim / "P1.CSV")
    (tmp_path / "rc" / "arousal" / "._P2.csv").write_bytes(b"\x00\x05")
    assert read_annotations(tmp_path / "rc", "recola", video="P1").video == "P1"
    with pytest.raises(AnnotationError, match=r"for video 'P2'; available: P1$"):
        read_annotations(tmp_path / "rc", "recola", video="P2")


def test_names_in_nfd_are_read_and_one_name_in_two_forms_is_named(tmp_path):
    nfc, nfd = "caf\u00e9", "cafe\u0301"
    write_dante(tmp_path / "dante", nfd, {"u1": ([0.1] * 5, [0.2] * 5),
                                          "u2": ([0.3] * 5, [0.4] * 5)})
    for asked in (nfc, nfd, None):
        read = read_annotations(tmp_path / "dante", "dante", video=asked)
        assert read.video == nfc and read.raters.shape == (2, 5, 2)
    assert read_annotations(tmp_path / "dante" / "u1" / nfd / "valence.csv").video == nfc
    both = tmp_path / "both"
    both.mkdir()
    for name in (nfc, nfd):
        (both / f"{name}.csv").write_text("time,valence,arousal\n0,0.1,0.2\n")
    with pytest.raises(AnnotationError, match=r"are one name spelled in two Unicode forms"):
        read_annotations(both, "csv")


def test_blank_lines_before_the_header_are_passed_over_and_lines_still_counted(tmp_path):
    path = tmp_path / "v.csv"
    path.write_text("\n  \ntime,valence,arousal\n0,0.1,0.2\n0.04,0.3,0.4\n")
    assert detect_format(path) == "csv"
    np.testing.assert_allclose(read_annotations(path).values, [[0.1, 0.2], [0.3, 0.4]])
    path.write_text("\ntime,valence,arousal\n0,0.1,0.2\n\n0.04,0.3,0.4\n")
    with pytest.raises(AnnotationError, match="blank line inside the data") as err:
        read_annotations(path)
    assert err.value.line == 4
    path.write_text("\n\nvalence,arousal\n0.1,0.2\n0.3,2\n")
    with pytest.raises(AnnotationError, match="arousal 2.0 is outside") as err:
        read_annotations(path, "aff-wild2", fps=25)
    assert err.value.line == 5


@pytest.mark.parametrize("cell", ["0_04", "0.0\u0664", "\u0661"])
def test_only_decimal_numbers_are_read(tmp_path, cell):
    # Python's float() reads 1_000 and Arabic-Indic digits: "0_04" would be 4 s, not 0.04
    path = tmp_path / "v.csv"
    path.write_text(f"time,valence,arousal\n0,0.1,0.2\n{cell},0.3,0.4\n", encoding="utf-8")
    with pytest.raises(AnnotationError, match=f"column 1: '{cell}' is not a number") as err:
        read_annotations(path)
    assert err.value.line == 3
    path.write_text("time,valence,arousal\n0,0.1,0.2\n0.04\u00a0,\u00a00.3,0.4\n")
    np.testing.assert_allclose(read_annotations(path).times, [0, 0.04])  # no-break spaces


def test_a_predicted_trajectory_is_not_taken_for_an_annotation(tmp_path):
    from coreaffect.trajectory import AffectTrajectory

    frames = 5
    mean = np.zeros((frames, 2))
    trajectory = AffectTrajectory(times=np.arange(frames) / 25.0, indices=np.arange(frames),
                                  mean=mean, var=np.full((frames, 2), 0.01), lower=mean - 0.1,
                                  upper=mean + 0.1, face_found=np.ones(frames, bool),
                                  latent_mean=np.zeros((frames, 2)), level=0.9, stage="smoothed")
    path = trajectory.to_csv(tmp_path / "interview.csv")  # beside interview.mp4, as predicted
    for format in ("auto", "csv"):
        with pytest.raises(AnnotationError, match="interview.csv, line 1: is a trajectory"):
            read_annotations(path, format=format)


def test_a_quote_never_closed_is_an_error_not_the_rest_of_the_file_in_one_cell(tmp_path):
    """A note column (read by nobody) with an opening quote only: loose csv parsing put the
    rest of the file into that cell and returned the rows before it, without a word."""
    path = tmp_path / "v.csv"
    path.write_text('time,valence,arousal,note\n0,0.1,0.2,ok\n0.04,0.1,0.2,"oops\n'
                    "0.08,0.3,0.4,x\n0.12,0.5,0.6,y\n")
    with pytest.raises(AnnotationError, match="v.csv.*malformed line"):
        read_annotations(path, "csv")
    sewa = tmp_path / "s.csv"
    sewa.write_text('v;0.0;0.1;0.2;0.3\nv;0.1;0.1;0.2;"0.3\nv;0.2;0.5;0.6;0.3\n')
    with pytest.raises(AnnotationError, match="s.csv.*malformed line"):
        read_annotations(sewa, "sewa")
    spanning = tmp_path / "w.csv"  # a quoted note over two lines is still one cell
    spanning.write_text('time,valence,arousal,note\n0,0.1,0.2,"two\nlines"\n0.04,0.3,0.4,x\n')
    np.testing.assert_allclose(read_annotations(spanning, "csv").values, [[0.1, 0.2], [0.3, 0.4]])


@pytest.mark.parametrize(("option", "value", "match"), [
    ("fps", "30", "fps must be a positive number, got '30'"),
    ("fps", 0, "fps must be a positive number, got 0"),
    ("fps", True, "fps must be a positive number, got True"),
    ("delay", "1", "delay must be a finite number of seconds, got '1'"),
    ("delay", float("nan"), "delay must be a finite number of seconds, got nan"),
])
def test_read_annotations_names_an_option_of_the_wrong_type(tmp_path, option, value, match):
    path = tmp_path / "v.txt"
    path.write_text("valence,arousal\n0,0\n")
    with pytest.raises(InputError, match=match):
        read_annotations(path, "aff-wild2", **{option: value})
    assert read_annotations(path, "aff-wild2", fps=np.float32(30), delay=np.int64(0)).times[0] == 0


def test_a_folder_tells_its_format_by_the_videos_file_not_a_readme_beside_it(tmp_path):
    folder = tmp_path / "labels"
    folder.mkdir()
    (folder / "README.txt").write_text("notes on the labels\n")  # sorts first
    (folder / "v1.csv").write_text("time,valence,arousal\n0,0.1,0.2\n0.04,0.1,0.2\n")
    assert detect_format(folder, video="v1") == "csv"
    assert detect_format(folder) == "csv"  # the first file whose format can be told
    assert read_annotations(folder, video="v1").values.shape == (2, 2)
    (folder / "v1.csv").unlink()
    with pytest.raises(AnnotationError, match="README.txt"):  # nothing else: its own problem
        detect_format(folder)
