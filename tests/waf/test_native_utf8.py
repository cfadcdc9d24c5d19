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
