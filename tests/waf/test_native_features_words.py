"""The compiled features of one-byte text read it eight characters at a time where they can
(whether every character is printable, whether one is uppercase or past ASCII, and a pair of
characters once its first one is common): the same features as the reference, for a character
of every kind and a pair of every kind at every position of texts around eight-byte words,
sparse and dense, and for every set of features asked."""

from __future__ import annotations

from collections.abc import Iterator

from hypothesis import given, settings
from hypothesis import strategies as st

from failsmall.engine import _native
from failsmall.engine.signatures.transforms import (
    ALL_FEATURES,
    COMMENT,
    ODD_WHITESPACE,
    PATH_DOTS,
    SHELL_PUNCTUATION,
    UPPER_OR_WIDE,
    features,
)

#: One-byte characters at the edges of what the words test: controls, DEL, the ends of the
#: uppercase letters and their neighbours, Latin-1 (printable or not), and the needles.
CHARACTERS = [
    "\x00", "\t", "\n", "\x1f", " ", "\x7f", "\x80", "\x9f", "\xa0", "\xad", "\xc0", "\xff",
    "@", "A", "M", "Z", "[", "`", "a", "z", "~", "%", "&", ";", "/", ".", "*", "-", "#", '"',
    "(", "\\", "=",
]  # fmt: skip
#: Pairs the features look for, and near misses.
PAIRS = ["  ", "/.", "//", "/*", "*/", "--", " /", " (", "/ ", "- ", " -", "**"]
#: Sets of features asked: all, the body chains' (no uppercase: the walk may stop at the
#: first character that is not printable), each alone.
WANTED = [ALL_FEATURES, 0b101011, ODD_WHITESPACE, UPPER_OR_WIDE, PATH_DOTS, COMMENT,
          SHELL_PUNCTUATION]  # fmt: skip
#: Fillers: no feature at all, and a space every other character (past the first sixteen
#: spaces, pairs starting with a space are searched by words).
FILLERS = ["abcdefgh", "a b c d "]


def assert_reference(value: str) -> None:
    for wanted in WANTED:
        assert _native.features(value, wanted, features) == features(value, wanted), (
            value,
            wanted,
        )


def insertions(inserted: list[str], longest: int) -> Iterator[str]:
    """Each of `inserted` at every position of each filler cut to every length below
    `longest`."""
    for filler in FILLERS:
        base = filler * (longest // len(filler) + 1)
        for length in range(longest):
            for at in range(length + 1):
                for text in inserted:
                    yield base[:at] + text + base[at:length]


def test_a_character_of_every_kind_at_every_position() -> None:
    for value in insertions(CHARACTERS, 42):
        assert_reference(value)


def test_a_pair_at_every_position_of_sparse_and_dense_text() -> None:
    for value in insertions(PAIRS, 60):
        assert_reference(value)


@settings(max_examples=1000, deadline=None)
@given(
    value=st.text(st.sampled_from([*CHARACTERS, "a", "b", " ", " ", " "]), max_size=90),
    wanted=st.sampled_from(WANTED),
)
def test_one_byte_text_has_the_reference_features(value: str, wanted: int) -> None:
    assert _native.features(value, wanted, features) == features(value, wanted)
