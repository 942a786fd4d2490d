"""Discovery of recordings per format, video-level splits, the crop cache and labelled videos."""

from __future__ import annotations

import json
import logging
import re
import warnings

import cv2
import numpy as np
import pytest

from coreaffect import corpus
from coreaffect.annotations import read_annotations
from coreaffect.config import AnnotationConfig, DataConfig, FaceConfig
from coreaffect.corpus import discover, load_recording
from coreaffect.crop_cache import CropCache
from coreaffect.errors import AnnotationError, CoreAffectError, CoreAffectWarning
from coreaffect.people import read_people, resolve_people
from coreaffect.splits import split_recordings

FPS = 25.0
NONE = FaceConfig(detector="none", crop_size=16)


def _write_video(path, n=30, size=(48, 32), seed=0):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, size)
    assert writer.isOpened()
    rng = np.random.default_rng(seed)
    for _ in range(n):
        writer.write(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    writer.release()


def _write_frames(folder, n=20, start=0, suffix=".png"):
    folder.mkdir(parents=True)
    for i in range(start, start + n):
        cv2.imwrite(str(folder / f"{i:05d}{suffix}"), np.full((24, 24, 3), i * 5 % 255, np.uint8))


def _csv_corpus(root, ids=("a", "b", "c")):
    root.mkdir(exist_ok=True)
    for k, vid in enumerate(ids):
        _write_video(root / f"{vid}.avi", seed=k)
        times = np.arange(0, 30) / FPS
        rows = "\n".join(f"{t:.2f},{0.5 * np.sin(t):.4f},{-0.25:.2f}" for t in times)
        (root / f"{vid}.csv").write_text("time,valence,arousal\n" + rows + "\n")
    return root


def test_discover_csv_pairs_videos_and_annotations(tmp_path):
    root = _csv_corpus(tmp_path / "data")
    recordings = discover(root)
    assert [r.id for r in recordings] == ["a", "b", "c"]
    assert all(r.format == "csv" and r.video.suffix == ".avi" for r in recordings)
    assert discover(root, "csv") == recordings


def test_a_video_named_in_nfd_matches_its_annotation_named_in_nfc(tmp_path):
    """macOS may store "café" as "cafe" and a combining accent; a label file spells it as one
    character. Names are matched in NFC, and the recording keeps its annotation's name."""
    nfc, nfd = "caf\u00e9", "cafe\u0301"
    root = _csv_corpus(tmp_path / "data", ids=(nfc,))
    (root / f"{nfc}.avi").rename(root / f"{nfd}.avi")
    [recording] = discover(root)
    assert recording.id == nfc and recording.video == root / f"{nfd}.avi"
    assert read_annotations(root, "csv", video=nfd).video == nfc
    people = tmp_path / "people.csv"
    people.write_text(f"video,person\n{nfd},P1\n", encoding="utf-8")
    assert read_people(people) == resolve_people({nfd: "P1"}) == {nfc: "P1"}


def test_discover_follows_linked_folders_once(tmp_path):
    data = _csv_corpus(tmp_path / "data")
    root = tmp_path / "linked"
    (root / "annotation").mkdir(parents=True)
    (root / "videos").symlink_to(data, target_is_directory=True)  # a dataset kept elsewhere
    for video in data.glob("*.avi"):
        (root / "annotation" / f"{video.stem}.csv").write_bytes(
            (data / f"{video.stem}.csv").read_bytes())
        (data / f"{video.stem}.csv").unlink()
    (root / "videos" / "loop").symlink_to(root, target_is_directory=True)  # a link back up
    recordings = discover(root)
    assert [r.id for r in recordings] == ["a", "b", "c"]
    assert all(r.video.parent == root / "videos" for r in recordings)


def test_annotation_without_video_is_an_error(tmp_path):
    root = _csv_corpus(tmp_path / "data")
    (root / "b.avi").unlink()
    with pytest.raises(CoreAffectError, match="no video file or frame folder named 'b'"):
        discover(root)


def test_a_folder_of_hidden_images_only_is_not_a_frame_folder(tmp_path):
    root = _csv_corpus(tmp_path / "data")
    (root / "b.avi").unlink()
    (root / "b").mkdir()  # what a copy from a Mac leaves of a frame folder: resource forks only
    (root / "b" / "._00001.png").write_bytes(b"\x00\x05\x16\x07")
    with pytest.raises(CoreAffectError, match="no video file or frame folder named 'b'"):
        discover(root)


def test_hidden_folders_below_the_root_are_not_read(tmp_path):
    """A corpus being built in .partial-* inside the root (as `coreaffect synth` does) holds a
    second copy of every video and annotation: it is not seen, at any depth."""
    root = _csv_corpus(tmp_path / "data")
    expected = discover(root)
    _csv_corpus(root / ".partial-xyz")
    (root / "sub" / ".ipynb_checkpoints").mkdir(parents=True)
    _csv_corpus(root / "sub" / ".ipynb_checkpoints", ids=("a",))
    assert discover(root) == expected


def test_a_root_inside_or_named_as_a_hidden_folder_is_read(tmp_path):
    (tmp_path / ".data").mkdir()
    for root in (tmp_path / ".data" / "affwild", tmp_path / ".affwild"):
        _csv_corpus(root, ids=("a", "b"))
        _csv_corpus(root / ".partial-xyz", ids=("a",))
        assert [r.id for r in discover(root)] == ["a", "b"]


def _recola_corpus(root, dimensions):
    """RECOLA's layout for one video ``a``: ``<dimension>/a.csv`` (value 0.1) and ``a.avi``."""
    for dim in dimensions:
        (root / dim).mkdir(parents=True)
        (root / dim / "a.csv").write_text(
            "time;FM1\n" + "".join(f"{i * 0.04:.2f};0.1\n" for i in range(30)))
    _write_video(root / "a.avi")
    return root


def test_hidden_files_are_not_read(tmp_path):
    """What a copy from a Mac leaves beside each file (._<name>, resource forks) and .DS_Store
    are neither videos nor annotations, in a flat corpus or in RECOLA's folders."""
    fork = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        "
    root = _csv_corpus(tmp_path / "data", ids=("a", "b"))
    for name in ("._a.avi", "._a.csv", "._b.avi", "._b.csv", ".DS_Store"):
        (root / name).write_bytes(fork)
    assert [r.id for r in discover(root)] == ["a", "b"]
    recola = _recola_corpus(tmp_path / "recola", ("arousal", "valence"))
    for path in ("arousal/._a.csv", "valence/._a.csv", "._a.avi"):
        (recola / path).write_bytes(fork)
    assert [(r.id, r.format) for r in discover(recola)] == [("a", "recola")]


def test_a_broken_annotation_of_a_video_is_an_error_not_a_dropped_video(tmp_path):
    root = _csv_corpus(tmp_path / "data")
    text = (root / "b.csv").read_text()
    (root / "b.csv").write_text(text.replace("time,", "tme,", 1))
    (root / "notes.txt").write_text("recorded in 2024\n")  # named like no video: not read
    (root / "features").mkdir()  # beside a's annotation, a's feature file is passed over
    (root / "features" / "a.csv").write_text("frame,AU01\n0,0.5\n")
    for format in ("auto", "csv"):  # the format's own error, not advice to give a format
        with pytest.raises(AnnotationError, match=r"b\.csv.*missing header: need columns time"):
            discover(root, format)
    (root / "b.csv").rename(root / "b.txt")  # another task's labels of b, in a folder of their own
    (root / "expr").mkdir()
    (root / "b.txt").rename(root / "expr" / "b.txt")
    assert [r.id for r in discover(root)] == ["a", "c"]


def test_a_video_left_out_by_its_broken_annotation_beside_it_is_warned_about(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    for vid in ("a", "b", "c"):  # one folder per recording: no folder holds two annotations
        _csv_corpus(root / vid, ids=(vid,))
    text = (root / "c" / "c.csv").read_text()
    (root / "c" / "c.csv").write_text(text.replace("time,", "tme,", 1))
    for format in ("auto", "csv"):
        with pytest.warns(CoreAffectWarning, match=r"1 video\(s\) left out.*c\.csv.*time"):
            assert [r.id for r in discover(root, format)] == ["a", "b"]


def test_a_file_of_another_format_among_the_given_formats_files_is_an_error(tmp_path):
    root = _csv_corpus(tmp_path / "data")
    (root / "c.csv").write_text("valence,arousal\n" + "0.1,0.2\n" * 30)  # time forgotten
    with pytest.raises(CoreAffectError, match="several formats"):
        discover(root)
    with pytest.raises(AnnotationError, match=r"c\.csv.*aff-wild2 file; as csv: missing header"):
        discover(root, "csv")


def test_annotations_are_read_before_any_video_is_cropped(tmp_path):
    root = _csv_corpus(tmp_path / "data")
    recordings = discover(root)
    for vid in ("b", "c"):
        (root / f"{vid}.avi").write_bytes(b"not a video")  # cropping it would fail
        (root / f"{vid}.csv").write_text("time,valence,arousal\n0,0.1,2.0\n")  # out of range
    config = DataConfig(faces=NONE)
    with pytest.raises(AnnotationError, match=r"b\.csv.*\[-1, 1\]"):
        load_recording(recordings[1], config)
    with pytest.raises(CoreAffectError, match=r"2 annotations cannot be read:\n.*b\.csv"
                                              r".*\n.*c\.csv"):
        corpus.check_annotations(recordings, config)
    corpus.check_annotations(recordings[:1], config)  # a's is fine


def test_a_corpus_mixing_formats_is_an_error_naming_them(tmp_path):
    root = _csv_corpus(tmp_path / "data", ids=("a", "b"))
    for vid in ("a", "b"):  # SEWA files, and a prediction CSV of video a saved inside
        (root / f"{vid}.csv").write_text("".join(f"{vid};{i * 0.1:.1f};0.1;0.2;0\n"
                                                 for i in range(10)))
    (root / "out").mkdir()
    (root / "out" / "a.csv").write_text("time,valence,arousal\n0,0.1,0.1\n")
    with pytest.raises(CoreAffectError, match=r"several formats.*csv: 1 file.*out/a\.csv.*sewa"):
        discover(root)
    (root / "out" / "a.csv").unlink()
    assert [r.format for r in discover(root)] == ["sewa", "sewa"]


def test_side_files_beside_annotations_and_files_named_like_no_video(tmp_path):
    root = tmp_path / "affwild"
    root.mkdir()
    _write_video(root / "v3.avi")
    _write_video(root / "v4.avi")
    rows = "valence,arousal\n" + "0.1,0.2\n" * 30
    for name in ("v3_left", "v3_right", "v4"):
        (root / f"{name}.txt").write_text(rows)
    (root / "openface").mkdir()  # feature files of the shared video: not annotations
    (root / "openface" / "v3.csv").write_text("frame,AU01\n0,0.5\n")
    (root / "scores.csv").write_text("time,valence,arousal,ccc\n")  # named like no video
    assert [r.id for r in discover(root)] == ["v3_left", "v3_right", "v4"]
    (root / "v4.txt").write_text("valence;arousal\n")  # v4's broken annotation
    (root / "preds").mkdir()  # a prediction of v4 does not stand in for it
    (root / "preds" / "v4.csv").write_text("time,valence,arousal\n0,0.1,0.1\n")
    with pytest.raises(AnnotationError, match=r"v4\.txt.*missing header.*semicolons"):
        discover(root, "aff-wild2")


def test_quoted_header_cells_and_a_delimiter_ending_each_line_are_found(tmp_path):
    """R's write.csv quotes the header cells; some tools end every line with the delimiter."""
    root = _csv_corpus(tmp_path / "data", ids=("a",))
    rows = (root / "a.csv").read_text().split("\n", 1)[1]
    (root / "a.csv").write_text('"time","valence","arousal"\n' + rows)
    for format in ("auto", "csv"):
        recording, = discover(root, format)
        assert recording.format == "csv"
    video = load_recording(recording, DataConfig(faces=NONE))
    np.testing.assert_allclose(video.labels[:, 0], 0.5 * np.sin(np.arange(30) / FPS), atol=1e-3)
    aff = tmp_path / "aff"
    aff.mkdir()
    _write_video(aff / "v.avi")
    (aff / "v.txt").write_text("valence,arousal,\n" + "0.1,0.2,\n" * 30)
    recording, = discover(aff)
    assert recording.format == "aff-wild2"
    np.testing.assert_allclose(recording.read_annotations().values, [[0.1, 0.2]] * 30)


def test_a_given_format_does_not_need_format_detection(tmp_path, monkeypatch):
    root = _csv_corpus(tmp_path / "data", ids=("a", "b"))

    def cannot_tell(path):
        raise AnnotationError(path, "cannot tell the annotation format")

    monkeypatch.setattr(corpus, "detect_format", cannot_tell)
    assert [r.id for r in discover(root, "csv")] == ["a", "b"]
    with pytest.raises(AnnotationError, match="cannot tell"):
        discover(root)


def test_a_semicolon_separated_csv_corpus_is_named_as_such(tmp_path):
    root = _csv_corpus(tmp_path / "data", ids=("a",))
    (root / "a.csv").write_text((root / "a.csv").read_text().replace(",", ";"))
    for format in ("auto", "csv"):
        with pytest.raises(AnnotationError, match=r"a\.csv.*semicolons: the csv format is "
                                                  "comma-separated"):
            discover(root, format)


def test_files_of_another_format_or_outside_their_layout_are_named(tmp_path):
    root = _csv_corpus(tmp_path / "data", ids=("a",))
    (root / "a.csv").write_text("time;FM1 ;FM2 \n"
                                + "".join(f"{i * 0.04:.2f};0.1;0.2\n" for i in range(30)))
    with pytest.raises(CoreAffectError, match=r"a\.csv: a recola annotation outside the recola "
                                              r"layout; .* arousal/<video>\.csv"):
        discover(root)
    (root / "a.csv").write_text("".join(f"a;{i * 0.1:.1f};0.1;0.2;0\n" for i in range(10)))
    with pytest.raises(CoreAffectError, match=r"a\.csv: an annotation in the sewa format, not csv"):
        discover(root, "csv")


def test_upper_case_suffixes_and_dimension_folders_are_found(tmp_path):
    root = _csv_corpus(tmp_path / "data", ids=("a", "b"))
    (root / "b.csv").rename(root / "b.CSV")
    assert [r.id for r in discover(root)] == ["a", "b"]
    recording, = discover(_recola_corpus(tmp_path / "recola", ("Arousal", "Valence")))
    assert (recording.id, recording.format) == ("a", "recola")
    np.testing.assert_allclose(recording.read_annotations().values, 0.1)


def _assert_read_error(root, match):
    """Video a.avi is added under ``root``: its recording is found, and reading its
    annotation raises an AnnotationError matching ``match``."""
    _write_video(root / "a.avi")
    recording, = discover(root)
    with pytest.raises(AnnotationError, match=match):
        recording.read_annotations()


def test_a_recola_video_with_one_dimension_file_is_named(tmp_path):
    root = tmp_path / "recola"
    for dim in ("arousal", "valence"):
        (root / dim).mkdir(parents=True)
    (root / "valence" / "a.csv").write_text(
        "time;FM1\n" + "".join(f"{i * 0.04:.2f};0.1\n" for i in range(30)))
    _assert_read_error(root, "arousal")


def test_dante_raters_of_one_dimension_and_a_missing_video_named_by_its_folder(tmp_path):
    root = tmp_path / "dante"
    root.mkdir()
    _write_video(root / "plain.avi")
    for video in ("plain", "gone"):
        folder = root / "annotation" / "1234" / video
        folder.mkdir(parents=True)
        (folder / "arousal.csv").write_text(
            "TimeStamp;UserId;NameVideo;AnnoType;Value\n"
            + "".join(f"{i * 0.04:.2f};1234;{video};arousal;0.1\n" for i in range(30)))
    with pytest.raises(CoreAffectError, match=r"annotation/\*/gone: no video"):
        discover(root)
    (root / "annotation" / "1234" / "gone" / "arousal.csv").unlink()
    (root / "annotation" / "1234" / "gone").rmdir()
    recording, = discover(root)
    assert recording.id == "plain"
    assert np.isnan(recording.read_annotations().values[:, 0]).all()  # no valence rater
    (root / "annotation" / "1234" / "plain" / "Valence.csv").write_text("")
    with pytest.raises(AnnotationError, match="Valence.csv.*in lower case"):
        recording.read_annotations()


def test_capitalised_dante_files_are_found_and_named(tmp_path):
    """On a case-sensitive file system, Valence.csv alone is found, then asked to be renamed."""
    root = tmp_path / "dante"
    root.mkdir()
    _write_video(root / "plain.avi")
    folder = root / "annotation" / "1234" / "plain"
    folder.mkdir(parents=True)
    (folder / "Valence.csv").write_text("TimeStamp;UserId;NameVideo;AnnoType;Value\n"
                                        "0.00;1234;plain;valence;0.1\n")
    recording, = discover(root)
    assert recording.format == "dante"
    for read in (recording.read_annotations, lambda: read_annotations(root / "annotation"),
                 lambda: read_annotations(folder / "Valence.csv")):
        with pytest.raises(AnnotationError, match="Valence.csv: DANTE files .* in lower case: "
                                                  "rename it"):
            read()


def test_recola_folders_named_in_any_case_are_read(tmp_path):
    folder = tmp_path / "emotional_behaviour"
    for dim in ("Arousal", "Valence"):
        (folder / dim).mkdir(parents=True)
        (folder / dim / "P16.csv").write_text(
            "time;FM1 ;FM2 \n" + "".join(f"{i * 0.04:.2f};0.1;0.3\n" for i in range(5)))
    for path in (folder, folder / "Arousal" / "P16.csv"):
        annotations = read_annotations(path, video="P16")
        np.testing.assert_allclose(annotations.values, 0.2)


def test_a_sewa_file_naming_another_video_is_an_error(tmp_path):
    root = tmp_path / "sewa"
    root.mkdir()
    (root / "a.csv").write_text("".join(f"b;{i * 0.1:.1f};0.1;0.2;0\n" for i in range(10)))
    _assert_read_error(root, "holds video 'b', not the requested 'a'")


def test_recordings_are_sorted_by_id_and_a_second_annotation_names_the_first(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    _csv_corpus(root / "x", ids=("c",))
    _csv_corpus(root / "y", ids=("a", "b"))
    assert [r.id for r in discover(root)] == ["a", "b", "c"]
    (root / "x" / "a.csv").write_text((root / "y" / "a.csv").read_text())
    with pytest.raises(CoreAffectError, match=r"second annotation for video 'a' \(the first: "):
        discover(root)


@pytest.mark.parametrize("scale, problem", [(1000.0, "its labels run to"),
                                            (0.25, "its labels cover 0-0.29 s, under half"),
                                            (None, "it holds no label")])
def test_labels_far_from_the_videos_length_are_warned_about(tmp_path, scale, problem):
    root = _csv_corpus(tmp_path / "data", ids=("a",))
    times = np.arange(0, 30) / FPS * (scale or 1)  # milliseconds, or a quarter of the video
    value = "0.1,0.2" if scale else "nan,nan"
    (root / "a.csv").write_text("time,valence,arousal\n"
                                + "".join(f"{t:.4f},{value}\n" for t in times))
    with pytest.warns(CoreAffectWarning, match=f"a.csv: annotation of video 'a': {problem}"):
        load_recording(discover(root)[0], DataConfig(faces=NONE))


def test_a_delay_that_leaves_every_frame_unlabelled_is_warned_about(tmp_path):
    root = _csv_corpus(tmp_path / "data", ids=("a",))
    times = np.arange(0, 30) / FPS
    (root / "a.csv").write_text("time,valence,arousal\n"
                                + "".join(f"{t:.4f},0.1,0.2\n" for t in times))
    delayed = DataConfig(faces=NONE, annotations=AnnotationConfig(delay=2000.0))  # ms meant
    with pytest.warns(CoreAffectWarning, match="no frame gets a label: with the annotation "
                                               "delay of 2000 s"):
        video = load_recording(discover(root)[0], delayed)
    assert np.isnan(video.labels).all()


def test_two_videos_with_one_stem_is_an_error(tmp_path):
    root = _csv_corpus(tmp_path / "data")
    (root / "more").mkdir()
    _write_video(root / "more" / "a.mp4")
    with pytest.raises(CoreAffectError, match="several videos") as error:
        discover(root)
    assert "frame folder" not in str(error.value)
    (root / "more" / "a.mp4").unlink()
    (root / "more" / "a").mkdir()  # a frame folder of the same video beside its file
    cv2.imwrite(str(root / "more" / "a" / "00001.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(CoreAffectError, match="a video file and a frame folder of it .*only one"):
        discover(root)


def test_missing_root_and_unknown_format(tmp_path):
    with pytest.raises(CoreAffectError, match="no such dataset folder"):
        discover(tmp_path / "absent")
    with pytest.raises(CoreAffectError, match="unknown format"):
        discover(tmp_path, "mahnob")


def test_discover_dante_folders_named_as_the_tool_names_them(tmp_path):
    """DANTE saves 30_3.mp4's annotations under annotation/<UserId>/30_3_mp4/."""
    root = tmp_path / "dante"
    (root / "videos").mkdir(parents=True)
    _write_video(root / "videos" / "30_3.avi")
    _write_video(root / "videos" / "plain.avi")
    for video in ("30_3_avi", "plain"):
        folder = root / "annotation" / "1234" / video
        folder.mkdir(parents=True)
        for dim in ("valence", "arousal"):
            (folder / f"{dim}.csv").write_text(
                "TimeStamp;UserId;NameVideo;AnnoType;Value\n"
                + "".join(f"{i * 0.04:.2f};1234;{video};{dim};0.1\n" for i in range(30)))
    (root / "dante.json").write_text("{}")  # metadata named like its folder: not an AFEW-VA clip
    (root / "videos" / "videos.json").write_text("{}")
    recordings = {r.id: r for r in discover(root)}
    assert [r.format for r in recordings.values()] == ["dante", "dante"]
    assert recordings["30_3_avi"].video == root / "videos" / "30_3.avi"
    assert recordings["plain"].video == root / "videos" / "plain.avi"
    video = load_recording(recordings["30_3_avi"], DataConfig(faces=NONE))
    np.testing.assert_allclose(video.labels, 0.1, atol=1e-6)


def test_discover_afew_va_frame_folders(tmp_path):
    root = tmp_path / "afew"
    for clip in ("001", "002"):
        _write_frames(root / clip, n=10)
        frames = {f"{i:05d}": {"valence": i - 5, "arousal": 2, "landmarks": []} for i in range(10)}
        suffix = ".json" if clip == "001" else ".JSON"  # suffixes match in any case
        (root / clip / f"{clip}{suffix}").write_text(json.dumps({"video_id": clip,
                                                                 "frames": frames}))
    recordings = discover(root)
    assert [r.id for r in recordings] == ["001", "002"]
    assert recordings[0].format == "afew-va" and recordings[0].fps == 25.0
    for recording in recordings:
        video = load_recording(recording, DataConfig(faces=NONE))
        assert len(video.labels) == 10
        np.testing.assert_allclose(video.labels[:, 0], (np.arange(10) - 5) / 10, atol=1e-6)
        np.testing.assert_allclose(video.labels[:, 1], 0.2, atol=1e-6)


def test_discover_aff_wild2_left_right_and_cropped_frames(tmp_path):
    root = tmp_path / "affwild"
    (root / "annotations").mkdir(parents=True)
    _write_video(root / "v.avi")
    (root / "annotations" / "v_left.txt").write_text("valence,arousal\n" + "0.1,0.2\n" * 30)
    _write_frames(root / "cropped_aligned" / "w", n=12, start=1, suffix=".jpg")
    (root / "annotations" / "w.txt").write_text("valence,arousal\n" + "0.3,-5\n" * 12)
    (root / "annotations" / "v_right.txt").write_text("valence,arousal\n" + "0.5,0.2\n" * 30)
    for side in ("x_left", "x_right"):  # the two people of video x, in frame folders of their own
        _write_frames(root / "cropped_aligned" / side, n=12, start=1, suffix=".jpg")
        (root / "annotations" / f"{side}.txt").write_text("valence,arousal\n" + "0.1,0.1\n" * 12)
    recordings = {r.id: r for r in discover(root)}
    assert recordings["v_left"].video == recordings["v_right"].video == root / "v.avi"
    assert (recordings["v_left"].side, recordings["v_right"].side) == ("left", "right")
    assert recordings["w"].video.is_dir() and recordings["w"].first_index == 1
    assert recordings["w"].side is None
    cache = CropCache(tmp_path / "cache", FaceConfig(crop_size=16))
    assert cache.key(recordings["v_left"]) != cache.key(recordings["v_right"])
    with pytest.raises(CoreAffectError, match=r"v\.avi: recording 'v_left' .* face detector"):
        recordings["v_left"].faces(NONE)
    assert recordings["x_left"].side is None and recordings["x_left"].video.is_dir()
    for seed in range(6):  # the two people of a video are never split, nor a side emptied
        for n_test in (1, 2, 3):
            train, test = split_recordings(list(recordings.values()), n_test=n_test, seed=seed)
            assert train and test
            for pair in ({"v_left", "v_right"}, {"x_left", "x_right"}):
                assert pair in [{r.id for r in part} & pair for part in (train, test)]
                rest, val = split_recordings(train, n_test=len(train) - 1, seed=seed)
                assert rest and (pair <= {r.id for r in rest} or not pair & {r.id for r in rest})
    video = load_recording(recordings["w"], DataConfig(faces=NONE))
    assert video.crops.indices[0] == 0 and len(video.labels) == 12
    assert np.isnan(video.labels[:, 1]).all() and np.allclose(video.labels[:, 0], 0.3)


def test_split_is_deterministic_and_video_level(tmp_path):
    root = _csv_corpus(tmp_path / "data", ids=[f"v{i:02d}" for i in range(23)])
    recordings = discover(root)
    train, test = split_recordings(recordings, seed=1)
    assert len(train) == 13 and len(test) == 10
    assert not {r.id for r in train} & {r.id for r in test}
    again = split_recordings(list(reversed(recordings)), seed=1)
    assert again == (train, test)
    assert split_recordings(recordings, seed=2) != (train, test)
    with pytest.raises(CoreAffectError):
        split_recordings(recordings, n_test=30)


def test_load_recording_resamples_labels_to_frames(tmp_path):
    root = _csv_corpus(tmp_path / "data", ids=["a"])
    video = load_recording(discover(root)[0], DataConfig(faces=NONE))
    assert video.crops.crops.shape == (30, 16, 16, 3)
    times = np.arange(30) / FPS
    np.testing.assert_allclose(video.labels[:, 0], 0.5 * np.sin(times), atol=1e-3)
    assert video.labels.dtype == np.float32


def test_the_configured_rate_of_a_frame_folder_is_used(tmp_path):
    """Frames extracted at 10 fps beside a time-based csv: VideoConfig.fps says so."""
    import dataclasses

    root = tmp_path / "data"
    _write_frames(root / "a", n=20)
    times = np.arange(0, 200) / 100
    rows = "\n".join(f"{t:.2f},{t / 2:.4f},0" for t in times)
    (root / "a.csv").write_text("time,valence,arousal\n" + rows + "\n")
    recording = discover(root)[0]
    assert recording.fps == 25.0  # what a csv corpus implies for folders
    config = DataConfig(faces=NONE)
    config = dataclasses.replace(config, video=dataclasses.replace(config.video, fps=10.0))
    for cache in (None, CropCache(tmp_path / "cache", NONE)):
        video = load_recording(recording, config, cache)
        np.testing.assert_allclose(video.crops.times, np.arange(20) / 10)
        np.testing.assert_allclose(video.labels[:, 0], np.arange(20) / 20, atol=1e-6)


def test_a_frame_folder_numbered_from_one_is_warned_about_and_configured(tmp_path):
    """Frames extracted by ffmpeg (00001.png, ...) beside a time-based csv."""
    import dataclasses

    from coreaffect.config import VideoConfig
    from coreaffect.corpus import check_numbering, open_source

    root = tmp_path / "data"
    _write_frames(root / "a", n=20, start=1)
    rows = "\n".join(f"{i / 25:.2f},{i / 40:.4f},0" for i in range(20))
    (root / "a.csv").write_text("time,valence,arousal\n" + rows + "\n")
    recording = discover(root)[0]
    with pytest.warns(CoreAffectWarning, match=r"1 frame folder\(s\) number their first image 1"):
        check_numbering([recording])
    with pytest.warns(CoreAffectWarning, match="first image 1"):
        open_source(root / "a", VideoConfig(), "csv").close()
    config = DataConfig(faces=NONE, video=VideoConfig(first_index=1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_numbering([recording], config)  # set: nothing to say
    assert open_source(root / "a", config.video, "csv").first_index == 1
    for cache in (None, CropCache(tmp_path / "cache", NONE)):
        video = load_recording(recording, config, cache)
        np.testing.assert_array_equal(video.crops.indices, np.arange(20))
        np.testing.assert_allclose(video.labels[:, 0], np.arange(20) / 40, atol=1e-6)
    late = load_recording(recording, dataclasses.replace(config, video=VideoConfig()))
    np.testing.assert_allclose(late.labels[:-1, 0], np.arange(1, 20) / 40, atol=1e-6)
    with pytest.raises(CoreAffectError, match="video.first_index"):
        VideoConfig(first_index=-1)


def test_cache_hit_miss_and_rebuild(tmp_path, caplog):
    root = _csv_corpus(tmp_path / "data", ids=["a"])
    recording = discover(root)[0]
    cache = CropCache(tmp_path / "cache", NONE)
    first = cache.get(recording)
    first_crops = np.array(first.crops)  # a copy: the entry's file is truncated below
    entries = list((tmp_path / "cache").iterdir())
    assert len(entries) == 1
    stamp = (entries[0] / "crops.u8").stat().st_mtime_ns
    second = cache.get(recording)
    assert (entries[0] / "crops.u8").stat().st_mtime_ns == stamp  # read, not rebuilt
    np.testing.assert_array_equal(first_crops, np.asarray(second.crops))
    np.testing.assert_array_equal(first.face_found, second.face_found)

    # a truncated entry is rebuilt, never trusted
    with (entries[0] / "crops.u8").open("r+b") as handle:
        handle.truncate(100)
    third = cache.get(recording)
    np.testing.assert_array_equal(np.asarray(third.crops), first_crops)
    assert "stale or corrupt" in caplog.text
    for damage in (b"", b"PK\x03\x04 not a zip"):  # an emptied, then a garbled meta.npz
        entry = next((tmp_path / "cache").iterdir())
        (entry / "meta.npz").write_bytes(damage)
        np.testing.assert_array_equal(np.asarray(cache.get(recording).crops), first_crops)

    # other crop settings, or other video bytes, give another entry
    other = CropCache(tmp_path / "cache", FaceConfig(detector="none", crop_size=8))
    assert other.key(recording) != cache.key(recording)
    before = cache.key(recording)
    _write_video(recording.video, seed=9)
    assert cache.key(recording) != before
    # another YuNet model at the same path detects other faces: another entry
    model = tmp_path / "yunet.onnx"
    model.write_bytes(b"one model")
    yunet = CropCache(tmp_path / "cache", FaceConfig(detector="yunet", yunet_model=str(model)))
    before = yunet.key(recording)
    model.write_bytes(b"another model")
    assert yunet.key(recording) != before
    moved = tmp_path / "run" / "yunet.onnx"  # the same model, moved with its run: the same key
    moved.parent.mkdir()
    moved.write_bytes(b"another model")
    assert CropCache(tmp_path / "cache", FaceConfig(detector="yunet", yunet_model=str(moved))
                     ).key(recording) == yunet.key(recording)


def test_cache_entry_built_twice_at_once_keeps_the_first(tmp_path, caplog):
    root = _csv_corpus(tmp_path / "data", ids=["a"])
    recording = discover(root)[0]
    cache = CropCache(tmp_path / "cache", NONE)
    key = cache.key(recording)
    entry = cache._entry(recording, key)
    cache._write(recording, entry, key)  # one process finished first
    with caplog.at_level("INFO", logger="coreaffect.crop_cache"):
        cache._write(recording, entry, key)  # another, which found no entry either, finishes
    assert "built by another process" in caplog.text
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [entry.name]  # no leftovers
    assert cache.get(recording).crops.shape[0] == 30


def test_a_cache_that_cannot_be_written_is_named_and_abandoned_writes_are_removed(
        tmp_path, monkeypatch):
    import os
    import time

    from coreaffect import crop_cache
    from coreaffect.checkpoint import STALE_SECONDS

    root = _csv_corpus(tmp_path / "data", ids=["a"])
    recording = discover(root)[0]
    cache = CropCache(tmp_path / "cache", NONE)

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(crop_cache.np, "savez", full)
    with pytest.raises(CoreAffectError, match=r"cache: cannot write the face crops of a into "
                                              r"this crop cache \(No space left on device\); "
                                              r"free some space there, or give the cache another "
                                              r"folder \(--cache\)"):
        cache.get(recording)
    assert list((tmp_path / "cache").iterdir()) == []  # its temporary folder went with it
    monkeypatch.undo()
    broken = _csv_corpus(tmp_path / "broken", ids=["b"])
    (broken / "b.avi").write_bytes(b"not a video")
    with pytest.raises(CoreAffectError, match=r"b\.avi: ") as err:  # the video's fault
        CropCache(tmp_path / "other", NONE).get(discover(broken)[0])
    assert "crop cache" not in str(err.value)
    # writers killed mid-write (no clean-up runs) leave their folders; an hour on, the next
    # write of the recording removes them, not a writer's at work nor another recording's
    left = {name: tmp_path / "cache" / name for name in
            (".a-0123456789abcdef-0123456789abcdef", ".a-fedcba9876543210-00000000000000ff",
             ".b-0123456789abcdef-0123456789abcdef")}
    for name, path in left.items():
        path.mkdir()
        (path / "crops.u8").write_bytes(b"\0" * 64)
        if name != ".a-fedcba9876543210-00000000000000ff":  # that one: a writer at work
            old = time.time() - STALE_SECONDS - 60
            for p in (path / "crops.u8", path):
                os.utime(p, (old, old))
    cache.get(recording)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(
        [cache._entry(recording, cache.key(recording)).name,
         ".a-fedcba9876543210-00000000000000ff", ".b-0123456789abcdef-0123456789abcdef"])


def test_a_cache_folder_that_cannot_be_listed_still_caches(tmp_path, monkeypatch):
    """A folder one may write and enter but not list (mode 0o300) holds entries, which are
    found by name: the clean-ups that list it pass over it."""
    import os
    from pathlib import Path

    root = _csv_corpus(tmp_path / "data", ids=["a"])
    recording = discover(root)[0]
    cache = CropCache(tmp_path / "cache", NONE)
    hidden = str(tmp_path / "cache")
    real_scandir, real_iterdir = os.scandir, Path.iterdir

    def scandir(path="."):
        if os.fspath(path) == hidden:
            raise PermissionError(13, "Permission denied", hidden)
        return real_scandir(path)

    def iterdir(self):
        if str(self) == hidden:
            raise PermissionError(13, "Permission denied", hidden)
        return real_iterdir(self)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(Path, "iterdir", iterdir)
    first = cache.get(recording)
    assert first.crops.shape[0] == 30
    again = cache.get(recording)  # read from the entry written, not built again
    assert np.array_equal(np.asarray(again.crops), np.asarray(first.crops))


def test_building_an_entry_drops_the_recordings_entries_of_earlier_versions(tmp_path):
    import shutil

    root = _csv_corpus(tmp_path / "data", ids=["a"])
    recording = discover(root)[0]
    cache = CropCache(tmp_path / "cache", NONE)
    entry = cache._entry(recording, cache.key(recording))
    cache.get(recording)
    other = CropCache(tmp_path / "cache", FaceConfig(detector="none", crop_size=8))
    other.get(recording)  # the same version, other settings: kept
    for name in ("a-0123456789abcdef", "ab-0123456789abcdef"):  # an old entry of a, and of ab
        shutil.copytree(entry, tmp_path / "cache" / name)
        info = json.loads((tmp_path / "cache" / name / "entry.json").read_text())
        del info["version"]  # entries of version 1 did not say
        (tmp_path / "cache" / name / "entry.json").write_text(json.dumps(info))
    shutil.rmtree(entry)
    cache.get(recording)  # rebuilt
    names = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert "a-0123456789abcdef" not in names and "ab-0123456789abcdef" in names
    assert entry.name in names and other._entry(recording, other.key(recording)).name in names


def test_cache_matches_uncached_load(tmp_path):
    root = _csv_corpus(tmp_path / "data", ids=["a"])
    recording = discover(root)[0]
    config = DataConfig(faces=NONE)
    cached = load_recording(recording, config, CropCache(tmp_path / "cache", NONE))
    fresh = load_recording(recording, config)
    np.testing.assert_array_equal(np.asarray(cached.crops.crops), fresh.crops.crops)
    np.testing.assert_array_equal(cached.labels, fresh.labels)
    np.testing.assert_array_equal(cached.crops.times, fresh.crops.times)
    other = CropCache(tmp_path / "cache", FaceConfig(detector="none", crop_size=8))
    with pytest.raises(CoreAffectError, match="crops with other face settings"):
        load_recording(recording, config, other)  # it would give 8-pixel crops silently
    (tmp_path / "a-file").write_text("mine")
    with pytest.raises(CoreAffectError, match="a-file: a file, but a crop cache is a folder"):
        load_recording(recording, config, CropCache(tmp_path / "a-file", NONE))
    assert (tmp_path / "a-file").read_text() == "mine"


def test_a_split_by_person_keeps_each_person_on_one_side(tmp_path):
    ids = [f"v{i:02d}" for i in range(23)]
    root = _csv_corpus(tmp_path / "data", ids=ids)
    recordings = discover(root)
    people = {video: f"P{i % 7}" for i, video in enumerate(ids[:21])}  # v21, v22: unnamed
    for seed in range(8):
        train, test = split_recordings(recordings, seed=seed, people=people)
        assert train and test and len(train) + len(test) == 23
        sides = [{people.get(r.id, r.id) for r in part} for part in (train, test)]
        assert not sides[0] & sides[1], seed  # no person on both sides
        assert len(test) >= 10  # a person of three videos may pass the count
        assert split_recordings(list(reversed(recordings)), seed=seed, people=people) == (
            train, test)
    # every video its own person: the video-level split, unchanged
    assert split_recordings(recordings, seed=1, people={v: v for v in ids}) == split_recordings(
        recordings, seed=1)
    assert split_recordings(recordings, seed=1, people={}) == split_recordings(recordings, seed=1)


def test_people_and_videos_of_two_people_join_into_one_unit(tmp_path):
    root = tmp_path / "data"
    (root / "annotations").mkdir(parents=True)
    for stem in ("v", "w", "x"):
        _write_video(root / f"{stem}.avi", n=12)
    for name in ("v_left", "v_right", "w", "x"):
        (root / "annotations" / f"{name}.txt").write_text("valence,arousal\n" + "0.1,0.1\n" * 12)
    recordings = discover(root)
    # v_left's person is also w's: v_right (same video) and w must go with v_left
    people = {"v_left": "A", "w": "A", "v_right": "B"}
    for seed in range(6):
        for n_test in (1, 2, 3):
            train, test = split_recordings(recordings, n_test=n_test, seed=seed, people=people)
            assert {r.id for r in train} in ({"x"}, {"v_left", "v_right", "w"}), (seed, n_test)


def test_a_split_by_person_comes_as_near_the_count_as_the_people_allow(tmp_path):
    ids = [f"v{i:02d}" for i in range(23)]
    recordings = discover(_csv_corpus(tmp_path / "data", ids=ids))
    big = {v: ("A" if i < 20 else "B") for i, v in enumerate(ids)}  # 20 videos of A, 3 of B
    for seed in range(5):
        train, test = split_recordings(recordings, 10, seed=seed, people=big)
        assert {r.id for r in test} == set(ids[20:])  # B fits; A would leave nothing to train
    sizes = {v: f"P{i // 4}" for i, v in enumerate(ids)}  # 5 people of 4 videos, one of 3
    for seed in range(5):
        _, test = split_recordings(recordings, 10, seed=seed, people=sizes)
        assert 10 <= len(test) <= 11  # two of 4, then the smallest that completes the count
    one = {v: "A" for v in ids}
    assert split_recordings(recordings, 10, people=one) == (sorted(recordings,
                                                                   key=lambda r: r.id), [])


def test_dante_raters_spelling_a_video_folder_in_nfc_and_nfd_annotate_one_video(tmp_path):
    """One rater's folder copied from a Mac (NFD), another's not: the same video."""
    root = tmp_path / "dante"
    root.mkdir()
    _write_video(root / "caf\u00e9.avi")
    for rater, folder, value in (("1", "caf\u00e9_avi", 0.1), ("2", "cafe\u0301_avi", 0.5)):
        path = root / "annotation" / rater / folder / "valence.csv"
        path.parent.mkdir(parents=True)
        path.write_text("TimeStamp;UserId;NameVideo;AnnoType;Value\n"
                        + "".join(f"{i * 0.04:.2f};{rater};caf\u00e9.avi;valence;{value}\n"
                                  for i in range(30)), encoding="utf-8")
    recording, = discover(root)
    assert recording.id == "caf\u00e9_avi" and recording.video == root / "caf\u00e9.avi"
    np.testing.assert_allclose(recording.read_annotations().values[:, 0], 0.3)  # both raters


def test_afew_va_clips_left_out_by_the_layout_are_named(tmp_path, caplog):
    root = tmp_path / "afew"
    frames = {"frames": {f"{i:05d}": {"valence": 1, "arousal": 2} for i in range(10)}}
    for clip in ("001", "002", "003", "004"):
        _write_frames(root / clip, n=10)
    for where in ("001/001.json", "003/3.json", "005/005.json"):  # 003: misnamed; 005: no frames
        (root / where).parent.mkdir(exist_ok=True)
        (root / where).write_text(json.dumps(frames))
    with caplog.at_level(logging.WARNING, logger="coreaffect.corpus"):
        assert [r.id for r in discover(root)] == ["001"]
    assert re.search(r"3 folder\(s\) of frames .* left out: .*002.*003.*004", caplog.text)
    assert re.search(r"1 AFEW-VA annotation\(s\) .* no frames .* left out: .*005.json",
                     caplog.text)


def test_a_valence_csv_of_results_near_the_root_is_no_dante_rating(tmp_path):
    root = _csv_corpus(tmp_path / "data")
    (root / "results").mkdir()
    (root / "results" / "valence.csv").write_text("epoch,ccc\n1,0.5\n")  # a user's results
    assert [r.format for r in discover(root)] == ["csv"] * 3
