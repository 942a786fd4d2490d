"""Train/test splits of a dataset's recordings, by video or by person.

:func:`split_recordings` makes deterministic video-level splits (the paper trained on 13 of 23
MAHNOB videos and tested on the other 10): no frame of a test video is ever seen in training.
Given the people in the videos (:mod:`coreaffect.people`), it splits by person: no test person is
seen in training either. A recording comes from :func:`coreaffect.corpus.discover`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from coreaffect.corpus import Recording
from coreaffect.errors import CoreAffectError
from coreaffect.people import People, video_groups

__all__ = ["TEST_FRACTION", "split_recordings"]


def _video_of(recording: Recording) -> str:
    """The video a recording is of: its id, without Aff-Wild2's ``_left`` or ``_right`` (the two
    people of one video, in one file or in two frame folders)."""
    if recording.format == "aff-wild2" and recording.id.endswith(("_left", "_right")):
        return recording.id.rsplit("_", 1)[0]
    return recording.id


TEST_FRACTION = 10 / 23  # the paper's protocol: 10 test videos of 23


def split_recordings(recordings: Sequence[Recording], n_test: int | None = None, *,
                     test_fraction: float = TEST_FRACTION, seed: int = 0,
                     people: People | None = None) -> tuple[list[Recording], list[Recording]]:
    """Deterministic video-level train/test split, person-level when ``people`` is given.

    The recordings are sorted by id and shuffled with ``seed``, so the split depends only on the
    ids, ``people`` and the seed, not on the order of discovery. The default fraction is the
    paper's protocol (10 test videos of 23). Recordings that must stay together are shuffled as
    one unit and land on the same side: those of one video (Aff-Wild2's ``_left`` and ``_right``,
    of one video file or of two frame folders), so that no frame of a test video is seen in
    training, and those of one person in ``people`` (:mod:`coreaffect.people`), so that no test
    person is. Without ``people``, units are taken in shuffled order until the test side holds
    ``n_test`` (one more when a pair completes it). With ``people``, the units that fit within
    ``n_test`` are taken in shuffled order, then, if the count is short, the smallest unit that
    completes it: the test side holds ``n_test`` recordings or somewhat more, or fewer when no
    unit fits (one person filmed in most of the corpus). A unit is never taken where it would
    leave no recording on the other side.

    Args:
        recordings: The corpus.
        n_test: Number of test videos; ``None`` rounds ``test_fraction`` of the corpus.
        test_fraction: Used when ``n_test`` is ``None``.
        seed: Seed of the shuffle.
        people: ``{recording id: person}``; recordings it does not name are people of their
            own. ``None``: every video is a person of its own.

    Returns:
        ``(train, test)``, each sorted by id.
    """
    ordered = sorted(recordings, key=lambda r: r.id)
    if n_test is None:
        n_test = round(test_fraction * len(ordered))
    if not 0 <= n_test <= len(ordered):
        raise CoreAffectError(f"cannot hold out {n_test} of {len(ordered)} recordings")
    shuffled = _units(ordered, people)
    random.Random(seed).shuffle(shuffled)  # one recording per video: the same as shuffling ids
    test_ids: set[str] = set()
    room = len(ordered) - 1 if n_test < len(ordered) else len(ordered)  # leave one to train on
    if people:  # units of any size: those that fit, then the smallest that completes the count
        for unit in shuffled:
            if len(test_ids) + len(unit) <= n_test:
                test_ids |= {r.id for r in unit}
        more = [unit for unit in shuffled if unit[0].id not in test_ids
                and len(test_ids) < n_test and len(test_ids) + len(unit) <= room]
        if more:
            test_ids |= {r.id for r in min(more, key=len)}
    else:  # units of one video, or two (a pair): in shuffled order until the count is reached
        for unit in shuffled:
            if len(test_ids) >= n_test:
                break
            if len(test_ids) + len(unit) <= room:  # a pair that would take the last one waits
                test_ids |= {r.id for r in unit}
    train = [r for r in ordered if r.id not in test_ids]
    test = [r for r in ordered if r.id in test_ids]
    return train, test


def _units(ordered: Sequence[Recording], people: People | None) -> list[list[Recording]]:
    """The recordings that must land on one side of a split, together: those sharing a video
    or a person, joined transitively; each unit in id order, the units in order of their first
    recording."""
    parent = list(range(len(ordered)))  # union-find over the recordings

    def root(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    first: dict[object, int] = {}
    for k, recording in enumerate(ordered):
        for key in (("file", _video_of(recording)),
                    *video_groups([recording.id], people)):
            j = first.setdefault(key, k)
            parent[root(k)] = root(j)
    units: dict[int, list[Recording]] = {}
    for k, recording in enumerate(ordered):
        units.setdefault(root(k), []).append(recording)
    return sorted(units.values(), key=lambda unit: unit[0].id)
