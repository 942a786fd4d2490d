"""The people of a corpus's videos: reading the CSV file, and the keys that group videos."""

from __future__ import annotations

import pytest

from coreaffect.errors import InputError
from coreaffect.people import people_of, read_people, resolve_people, video_groups


def test_a_people_file_is_read_whatever_its_column_order_case_and_extras(tmp_path):
    path = tmp_path / "people.csv"
    path.write_text("\ufeffNote, Person ,VIDEO\n"  # a byte-order mark, as Excel writes
                    "first session,P01,s12\n\n"
                    "second, P01 , s13\n"
                    ",P02,s20\n"
                    "again,P01,s12\n", encoding="utf-8")
    assert read_people(path) == {"s12": "P01", "s13": "P01", "s20": "P02"}
    assert resolve_people(str(path)) == read_people(path)


@pytest.mark.parametrize(("text", "message"), [
    ("", r"people\.csv: names no video"),
    ("\n\n", r"people\.csv: names no video"),
    ("video,person\n\n", r"people\.csv: names no video"),
    ("video,who\ns1,P1\n", r"people\.csv:1: the header has no person column"),
    ("clip;person\ns1;P1\n", r"people\.csv:1: the header has no video column"),
    ("video,person\ns1,P1\ns2,\n", r"people\.csv:3: a row needs both a video and a person"),
    ("video,person\ns1\n", r"people\.csv:2: a row needs both"),
    ("video,person\ns1,P1\ns2,P2\n\ns1,P2\n", r"people\.csv:5: video 's1' is given to person "
                                                r"'P2' here and to 'P1' above"),
])
def test_a_broken_people_file_is_named_with_its_line(tmp_path, text, message):
    path = tmp_path / "people.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        read_people(path)


def test_an_unreadable_people_file_is_named(tmp_path):
    with pytest.raises(InputError, match=r"nowhere\.csv: cannot read"):
        read_people(tmp_path / "nowhere.csv")
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00\x81video")
    with pytest.raises(InputError, match=r"binary\.csv: cannot read"):
        read_people(tmp_path / "binary.csv")


def test_a_mapping_is_checked_and_none_stays_none():
    assert resolve_people(None) is None and resolve_people({}) is None
    assert resolve_people({"a": "p"}) == {"a": "p"}
    for bad in ({"a": ""}, {"a": 3}, {"": "p"}):
        with pytest.raises(InputError, match="non-empty strings"):
            resolve_people(bad)
    with pytest.raises(InputError, match="got list"):
        resolve_people([("a", "p")])


def test_videos_share_a_key_exactly_when_they_share_a_person():
    # a person named like a video is still not that video
    keys = video_groups(["a", "b", "c", "d"], {"a": "P", "b": "P", "c": "d"})
    assert keys[0] == keys[1]
    assert len(set(keys)) == 3 and keys[2] != keys[3]
    assert len(set(video_groups(["a", "b"], None))) == 2


def test_a_people_file_separated_by_semicolons_or_tabs_is_read(tmp_path):
    for delimiter in ";\t":
        path = tmp_path / "people.csv"
        path.write_text(delimiter.join(["video", "person"]) + "\n"
                        + delimiter.join(["s1", "P, the first"]) + "\n")
        assert read_people(path) == {"s1": "P, the first"}


def test_the_people_of_the_videos_scored(caplog):
    people = {"a": "P", "b": "P", "z": "Q"}
    assert people_of(["a", "c"], people) == {"a": "P"}
    assert people_of(["a", "c"], None) is None
    assert people_of(["c", "d"], people) is None  # of another corpus: said so
    assert "name none of the 2 videos scored (first: c)" in caplog.text


def test_a_quoted_person_after_a_space_is_the_same_person(tmp_path):
    # "a, "P1"" as a spreadsheet or a hand may write it: the person P1, not '"P1"', which would
    # split one person's videos between training and test
    path = tmp_path / "people.csv"
    path.write_text('video, person\na, "P1"\nb,P1\nc, "P 2"\n')
    assert read_people(path) == {"a": "P1", "b": "P1", "c": "P 2"}
