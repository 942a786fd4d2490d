"""The people in a corpus's videos: which videos film the same person.

Many corpora film some people more than once (MAHNOB-HCI records each participant in many
sessions; a lab corpus may film each volunteer under several conditions). Two videos of one
person are not independent: the person's face, manner and offset are in both. Two places in
coreaffect need to know this:

* **Splits** (:func:`~coreaffect.splits.split_recordings`): the videos of one person go to the
  same side, so that no test or validation person was seen in training (a *subject-independent*
  evaluation, the usual one in affective computing). Splitting videos alone would let the
  network recognise a test person it trained on, and score better than on new people.
* **Intervals** (:mod:`coreaffect.bootstrap`): the person, not the video, is resampled, so
  that the intervals carry the spread between people.

The mapping is a CSV file (separated by commas, or by semicolons or tabs as spreadsheets save it)
with a header naming the columns ``video`` and ``person`` (in any order, in any case; other
columns are ignored)::

    video,person
    session_0012,P01
    session_0013,P01
    session_0020,P02

``video`` is a recording's id, as ``coreaffect evaluate`` prints it (for Aff-Wild2's videos of
two people, ``<video>_left`` and ``<video>_right``), compared in Unicode NFC as recording ids are.
A video the file does not name is one person of its own.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from coreaffect.annotations import name_key
from coreaffect.errors import InputError

__all__ = ["People", "people_of", "read_people", "resolve_people", "video_groups"]

logger = logging.getLogger(__name__)

People = Mapping[str, str]  # {video id: person}


def read_people(path: str | Path) -> dict[str, str]:
    """The people of a corpus's videos from a CSV file (see the module's description).

    Args:
        path: The file.

    Returns:
        ``{video id: person}``.

    Raises:
        InputError: The file cannot be read, lacks a ``video`` or ``person`` column, has a row
            with an empty or missing cell, or gives one video two people (the message names the
            file and the line).
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            text = handle.read()
        head = next((line for line in text.splitlines() if line.strip()), "")
        delimiter = next((d for d in ",;\t" if d in head), ",")  # as spreadsheets save it
        rows = list(csv.reader(text.splitlines(), delimiter=delimiter,
                               skipinitialspace=True))  # a, "P1": the person P1, unquoted
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise InputError(f"{path}: cannot read the people of the videos ({err})") from None
    rows = [(number, row) for number, row in enumerate(rows, 1)
            if any(cell.strip() for cell in row)]  # blank lines are passed over
    if len(rows) < 2:
        raise InputError(f"{path}: names no video; a people file has a header 'video,person' "
                         "and a row per video")
    number, header = rows[0]
    names = [cell.strip().strip('"').lower() for cell in header]
    missing = [name for name in ("video", "person") if name not in names]
    if missing:
        raise InputError(f"{path}:{number}: the header has no {' or '.join(missing)} column "
                         f"(found {', '.join(map(repr, header))}); a people file's header "
                         "names 'video' and 'person'")
    video_at, person_at = names.index("video"), names.index("person")
    people: dict[str, str] = {}
    for number, row in rows[1:]:
        cells = [row[k].strip() if k < len(row) else "" for k in (video_at, person_at)]
        if not all(cells):
            raise InputError(f"{path}:{number}: a row needs both a video and a person, got "
                             f"{row!r}")
        video, person = name_key(cells[0]), cells[1]
        if people.setdefault(video, person) != person:
            raise InputError(f"{path}:{number}: video {video!r} is given to person {person!r} "
                             f"here and to {people[video]!r} above")
    return people


def resolve_people(people: People | str | Path | None) -> dict[str, str] | None:
    """``people`` as a mapping: a file is read (:func:`read_people`), a mapping is checked
    (every key and value a non-empty string); ``None`` and an empty mapping give ``None``."""
    if people is None:
        return None
    if isinstance(people, (str, Path)):
        return read_people(people)
    if not isinstance(people, Mapping):
        raise InputError(f"people must be a file or a mapping of video ids to people, got "
                         f"{type(people).__name__}")
    bad = [(k, v) for k, v in people.items()
           if not (isinstance(k, str) and isinstance(v, str) and k and v)]
    if bad:
        raise InputError(f"people must map video ids to people, both non-empty strings; got "
                         f"{bad[0]!r}")
    return {name_key(video): person for video, person in people.items()} or None


def people_of(videos: Sequence[str], people: People | None) -> dict[str, str] | None:
    """``people`` on ``videos``, the ones scored: ``None`` (each video a person of its own, with
    a warning) when it names none of them, as when it is of another corpus or misspells ids."""
    if people is None:
        return None
    named = {video: people[video] for video in videos if video in people}
    if not named and videos:
        logger.warning("the people given name none of the %d videos scored (first: %s): each "
                       "video is resampled as a person of its own", len(videos), videos[0])
        return None
    return named


def video_groups(videos: Sequence[str], people: People | None) -> list[tuple[str, str]]:
    """The person of each video, as a key that two videos share exactly when ``people`` gives
    them the same person; a video it does not name is a person of its own.

    Args:
        videos: N video ids.
        people: ``{video id: person}``, or ``None`` (each video its own person).

    Returns:
        N hashable keys, ``("person", name)`` or ``("video", id)``, never equal across kinds.
    """
    people = people or {}
    return [("person", people[v]) if v in people else ("video", v) for v in videos]
