"""The compiled features of one-byte text walk a long value once: four blocks of sixteen bytes
at a time while they hold nothing that may add a feature still open, a block that may is read
character by character, so are values of up to 64 characters and the last 64 of longer ones,
and the walk stops once every wanted feature is found. The same features as the reference for
each needle, each pair and each Latin-1 character at every offset of texts of every length
around the blocks (a pair across two blocks or two groups of four, the last block read by
vectors, the tail), deep in long values, and for every feature asked alone (the walk stops on
what is asked, never on what is not)."""

from __future__ import annotations

from collections.abc import Iterator

from hypothesis import given, settings
from hypothesis import strategies as st

from failsmall.engine import _native
from failsmall.engine.signatures.transforms import ALL_FEATURES, features

#: Every set of features asked below: all, the body chains', and each alone.
WANTED = [ALL_FEATURES, 0b101011, *(1 << bit for bit in range(11))]
#: Lengths: every one up to 70, and some that read one or two groups of four blocks by vectors
#: before the tail.
LENGTHS = [*range(71), 100, 129, 130, 150]
#: Characters the features look for alone, and their neighbours: `&` and `;` (both needed),
#: controls and DEL, the unprintable Latin-1 ones and their printable neighbours, the ends of
#: the uppercase letters, the shell characters.
NEEDLES = [
    "%", "&", ";", "\\", "\x00", " ", "#", '"', "'", "^", ",", ".", "\t", "\x1f", "\x7f",
    "\x80", "\xa0", "\xa1", "\xac", "\xad", "\xae", "\xff", "@", "A", "Z", "[", "$", "~",
]  # fmt: skip
#: The pairs the features look for, and near misses.
PAIRS = ["  ", "/.", "//", "/*", "*/", "--", " /", " (", "/ ", "*-", "-/", "(/", ".."]
#: Fillers: nothing to find; a space every other character (the space is found at once and
#: pairs starting with it are everywhere but the ones looked for); uppercase and `&`-free
#: punctuation found at once, leaving the rarer features open.
FILLERS = ["abcdefghijklmnop", "a b c d ", 'Ab"c,d e']


def assert_reference(value: str, asked: list[int]) -> None:
    for wanted in asked:
        assert _native.features(value, wanted, features) == features(value, wanted), (
            value,
            wanted,
        )


def placed(inserted: list[str], lengths: list[int], offsets: range) -> Iterator[str]:
    """Each of `inserted` written over each filler of each length at each offset that fits."""
    for filler in FILLERS:
        base = filler * (max(lengths) // len(filler) + 1)
        for length in lengths:
            for text in inserted:
                for at in offsets:
                    if at + len(text) > length:
                        break
                    yield base[:at] + text + base[at + len(text) : length]


def test_each_needle_at_every_offset_of_every_length_around_the_blocks() -> None:
    for value in placed(NEEDLES, LENGTHS, range(100)):
        assert_reference(value, WANTED)


def test_each_pair_at_every_offset_and_across_every_block_boundary() -> None:
    for value in placed(PAIRS, LENGTHS, range(100)):
        assert_reference(value, WANTED)


def test_every_latin1_character_at_every_offset() -> None:
    characters = [chr(c) for c in range(256)]
    for value in placed(characters, [17, 70, 130], range(130)):
        assert_reference(value, [ALL_FEATURES, 0b101011])


def test_needles_and_pairs_around_the_groups_of_a_long_value() -> None:
    """Offsets around every group of four blocks of values several groups long, up to the
    tail."""
    for length in (512, 513, 600):
        offsets = sorted(
            {at for edge in range(64, length + 1, 64) for at in range(edge - 2, edge + 2)}
        )
        for filler in FILLERS:
            base = filler * (length // len(filler) + 1)
            for text in NEEDLES + PAIRS:
                for at in offsets:
                    if at + len(text) <= length:
                        value = base[:at] + text + base[at + len(text) : length]
                        assert_reference(value, WANTED)


def test_features_found_one_after_another_in_a_long_value() -> None:
    """Each feature, in turn, found a block or more after the one before: what is looked for
    shrinks as the walk goes, and a needle of a feature found is no longer looked at."""
    pieces = ["A", " ", '"', "&", ";", "%", "\\", "#", "//", "--", "  ", "\x00", "\x85"]
    for step in (15, 16, 17, 100, 300):
        value = "".join(piece + "x" * step for piece in pieces)
        assert_reference(value, WANTED)
        assert_reference(value[::-1], WANTED)


@settings(max_examples=600, deadline=None)
@given(
    value=st.lists(
        st.sampled_from([*NEEDLES, *PAIRS, "a", "b", "a", "b", " ", "\u0100", "\U0001f600"]),
        max_size=300,
    ).map("".join),
    wanted=st.integers(0, ALL_FEATURES),
)
def test_text_of_every_kind_has_the_reference_features(value: str, wanted: int) -> None:
    assert _native.features(value, wanted, features) == features(value, wanted)
