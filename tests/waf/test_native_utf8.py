"""The compiled UTF-8 form of a value (what the scanner hands to hyperscan) is exactly
`str.encode("utf-8", "replace")`: a lone surrogate becomes `?`. The encoder copies ASCII in
blocks and writes the other characters one by one, so the text here has ASCII runs of every
length and alignment, with characters of every UTF-8 length at every offset, in strings of each
storage kind (Latin-1, two bytes, four bytes)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from failsmall.engine import _native

#: One character of each UTF-8 length and each edge between them, surrogates among them.
EDGES = [
    "\x00",
    "\x7f",
    "\x80",
    "\xc3",
    "\xff",
    "\u0100",
    "\u07ff",
    "\u0800",
    "\ud7ff",
    "\ud800",
    "\udbff",
    "\udc00",
    "\udfff",
    "\ue000",
    "\ufffd",
    "\uffff",
    "\U00010000",
    "\U0010ffff",
]

#: A character that makes a string of each storage kind, put at the end or the start.
KINDS = ["", "\u0100", "\U00010000"]


def assert_encoded(value: str) -> None:
    assert _native.utf8(value) == value.encode("utf-8", "replace"), ascii(value)


@settings(max_examples=3000, deadline=None)
@given(
    pieces=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=40).map(lambda n: "x" * n),
            st.one_of(st.sampled_from(EDGES), st.characters(), st.just("")),
        ).map("".join),
        max_size=12,
    ).map("".join),
    kind=st.sampled_from(KINDS),
    at_start=st.booleans(),
)
def test_runs_of_ascii_between_characters_of_every_length(
    pieces: str, kind: str, at_start: bool
) -> None:
    assert_encoded(kind + pieces if at_start else pieces + kind)


@settings(max_examples=1000, deadline=None)
@given(
    value=st.text(
        alphabet=st.one_of(
            st.characters(max_codepoint=0x7F),
            st.characters(max_codepoint=0xFF),
            st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
            st.characters(),
        ),
        max_size=200,
    )
)
def test_any_text(value: str) -> None:
    assert_encoded(value)


def test_one_character_at_every_offset_of_every_length() -> None:
    for kind in KINDS:
        for edge in EDGES:
            for length in range(0, 50):
                for offset in range(length):
                    ascii_text = "".join(chr(0x20 + (i * 7) % 95) for i in range(length))
                    value = ascii_text[:offset] + edge + ascii_text[offset + 1 :]
                    assert_encoded(value + kind)
                    assert_encoded(kind + value)
                assert_encoded("q" * length + kind)


def test_long_binary_text_of_each_kind() -> None:
    latin1 = bytes(range(256)).decode("latin-1") * 64
    for kind in KINDS:
        for shift in range(17):
            assert_encoded(latin1[shift:] + kind + latin1[:shift])


#: Characters of one and two UTF-8 bytes at the edges, and three-byte ones beside them (which
#: send eight characters to the one-by-one path).
ONE_OR_TWO = ["\x00", "A", "\x7f", "\x80", "\xbf", "\xc0", "\xff", "\u0100", "\u07ff"]
THREE = ["\u0800", "\ud800", "\ufffd", "\uffff"]


def test_every_mix_of_one_and_two_byte_characters_in_eight() -> None:
    # Each set of ASCII lanes among eight characters (every shuffle of the table), the eight at
    # every offset from a block's start, in text of each kind.
    for mask in range(256):
        for low, high in (("a", "\xe9"), ("\x00", "\x80"), ("\x7f", "\xff"), ("~", "\u07ff")):
            eight = "".join(low if (mask >> j) & 1 else high for j in range(8))
            for offset in range(17):
                value = "x" * offset + eight + "y" * (40 - offset)
                for kind in KINDS:
                    assert_encoded(value + kind)
                    assert_encoded(kind + value)


def test_every_byte_value_at_every_position_of_a_block() -> None:
    background = "".join(chr(0x20 + (i * 11) % 0xE0) for i in range(48))
    for code in range(256):
        for position in range(48):
            value = background[:position] + chr(code) + background[position + 1 :]
            for kind in KINDS:
                assert_encoded(value + kind)
                assert_encoded(kind + value)


def test_a_three_byte_character_in_either_half_of_every_block() -> None:
    latin1 = "".join(chr(0x60 + (i * 37) % 0xA0) for i in range(64))
    for wide in THREE:
        for position in range(64):
            value = latin1[:position] + wide + latin1[position + 1 :]
            assert_encoded(value)
            assert_encoded(value + "\U00010000")
            for other in ONE_OR_TWO:
                assert_encoded(value.replace(latin1[(position + 9) % 64], other))


@settings(max_examples=2000, deadline=None)
@given(
    value=st.text(
        alphabet=st.one_of(
            st.sampled_from(ONE_OR_TWO + THREE),
            st.characters(max_codepoint=0xFF),
            st.characters(max_codepoint=0x7FF),
        ),
        max_size=300,
    ),
    kind=st.sampled_from(KINDS),
)
def test_text_of_one_and_two_byte_characters(value: str, kind: str) -> None:
    assert_encoded(value + kind)
    assert_encoded(kind + value)
