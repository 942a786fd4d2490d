"""The messages errors are built from."""

from __future__ import annotations

from coreaffect.errors import listing


def test_listing_shows_the_first_items_and_counts_the_rest():
    assert listing([]) == ""
    assert listing(["a"]) == "a"
    assert listing("abcde") == "a, b, c, d, e"
    assert listing("abcdefg") == "a, b, c, d, e and 2 more"
    assert listing(range(4), 3, "; ") == "0; 1; 2 and 1 more"
