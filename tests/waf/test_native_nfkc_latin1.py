"""NFKC in C looks each Latin-1 character up in tables of its own (whether NFKC keeps it, and
its NFKC form when it changes it) and reads text of each kind in its kind: every Latin-1
character, at every position of text of each kind (one, two and four bytes a character),
beside characters NFKC keeps, changes or joins, gives what `unicodedata.normalize` gives."""

from __future__ import annotations

import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from failsmall.engine import _native

#: A character that makes a string of each storage kind, put at the end or the start.
KINDS = ["", "\u0100", "\U00010000"]
#: Neighbours: kept, changed alone (`ﬁ`, `½`, no-break space), and joined (combining marks,
#: Hangul jamo) by NFKC.
NEIGHBOURS = ["a", "\xe9", "\xa0", "\xbd", "ﬁ", "\u0301", "\u0327", "\u1161", "\ufffd"]
BACKGROUND = "".join(chr(0x41 + i % 26) if i % 2 else chr(0xC0 + i % 0x20) for i in range(24))


def assert_nfkc(value: str) -> None:
    assert _native.nfkc(value) == unicodedata.normalize("NFKC", value), ascii(value)


def test_every_latin1_character_at_every_position_of_each_kind() -> None:
    for code in range(256):
        for position in range(len(BACKGROUND)):
            value = BACKGROUND[:position] + chr(code) + BACKGROUND[position + 1 :]
            for kind in KINDS:
                assert_nfkc(value + kind)
                assert_nfkc(kind + value)


def test_every_latin1_character_beside_each_neighbour() -> None:
    for code in range(256):
        for neighbour in NEIGHBOURS:
            for kind in KINDS:
                for value in (
                    chr(code) + neighbour,
                    neighbour + chr(code),
                    chr(code) * 2 + neighbour + chr(code),
                ):
                    assert_nfkc(value + kind)
                    assert_nfkc(kind + value)


@settings(max_examples=1500, deadline=None)
@given(
    value=st.lists(
        st.one_of(
            st.characters(max_codepoint=0xFF),
            st.sampled_from(NEIGHBOURS),
            st.binary(max_size=16).map(lambda raw: raw.decode("latin-1")),
        ),
        max_size=60,
    ).map("".join),
    kind=st.sampled_from(KINDS),
    at_start=st.booleans(),
)
def test_latin1_text_of_each_kind(value: str, kind: str, at_start: bool) -> None:
    assert_nfkc(kind + value if at_start else value + kind)
