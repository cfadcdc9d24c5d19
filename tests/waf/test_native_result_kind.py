"""A transform that drops the only character that made its input wide (or not ASCII) returns a
string of the narrower kind, as Python would make it: the compiled transforms look for such a
character in their result 64 bytes at a time, so here it sits at every position of the blocks
before and after it, of every width, kept or dropped, in text of each kind."""

from __future__ import annotations

import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from failsmall.engine import _native
from failsmall.engine.signatures.transforms import TRANSFORMS
from failsmall.model.rules import Transform

#: The least and the largest character of each width past ASCII.
WIDE = ["\x80", "\xff", "\u0100", "\uffff", "\U00010000", "\U0010ffff"]
ASCII_TEXT = "".join(chr(0x41 + i % 26) for i in range(200))
LATIN1_TEXT = "".join(chr(0xC0 + i % 0x3F) if i % 2 else chr(0x61 + i % 26) for i in range(200))
BMP_TEXT = "".join(chr(0x100 + i * 97) if i % 2 else chr(0x61 + i % 26) for i in range(200))


def assert_same_string(transform: Transform, value: str) -> None:
    reference = TRANSFORMS[transform]
    expected = reference(value)
    got = _native.transform(transform.value, value, reference)
    # Equal text of another kind compares unequal; the ASCII mark shows in isascii and size.
    # The size is taken of a copy: `sys.getsizeof` of the string itself also counts a UTF-8 copy
    # CPython may have cached on it (a one-character string is shared, and may have one).
    assert got == expected, ascii(value)
    assert got.isascii() == expected.isascii(), ascii(value)
    assert sys.getsizeof(got + "\x00") == sys.getsizeof(expected + "\x00"), ascii(value)


def test_a_dropped_or_kept_character_of_every_width_at_every_position() -> None:
    for wide in WIDE:
        for text in (ASCII_TEXT, LATIN1_TEXT, BMP_TEXT):
            for position in range(len(text) + 1):
                before, after = text[:position], text[position:]
                assert_same_string(Transform.NORMALIZE_PATH, f"{before}/{wide}/../{after}")
                assert_same_string(Transform.NORMALIZE_PATH, f"{before}/{wide}/{after}")
                assert_same_string(Transform.REMOVE_COMMENTS, f"{before}/*{wide}*/{after}")
                assert_same_string(Transform.REMOVE_COMMENTS, f"{before}{wide}/*x*/{after}")


def test_a_dropped_space_of_every_width_at_every_position() -> None:
    for space in ("\x85", "\xa0", "\u1680", "\u3000"):
        for text in (ASCII_TEXT, LATIN1_TEXT, BMP_TEXT):
            for position in range(len(text) + 1):
                value = text[:position] + space + text[position:]
                for transform in (Transform.REMOVE_WHITESPACE, Transform.CMD_LINE):
                    assert_same_string(transform, value)
                    assert_same_string(transform, value + "\u0100")


@settings(max_examples=1500, deadline=None)
@given(
    value=st.lists(
        st.one_of(
            st.text(alphabet=st.characters(max_codepoint=0xFF), max_size=80),
            st.sampled_from(["/../", "/./", "/*", "*/", " ", "\u3000", "\xa0", "\x00", "\\"]),
            st.sampled_from(WIDE),
        ),
        max_size=20,
    ).map("".join),
    transform=st.sampled_from(
        [
            Transform.NORMALIZE_PATH,
            Transform.REMOVE_COMMENTS,
            Transform.REMOVE_WHITESPACE,
            Transform.COMPRESS_WHITESPACE,
            Transform.CMD_LINE,
            Transform.REMOVE_NULLS,
        ]
    ),
)
def test_results_have_the_kind_python_gives_them(value: str, transform: Transform) -> None:
    assert_same_string(transform, value)
