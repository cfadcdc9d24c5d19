"""`compress_whitespace`, `remove_whitespace` and `cmd_line` copy whole blocks of characters
they keep as they are (sixteen of one byte, eight of two) and read the others one at a time:
each holds to the readable reference with every character that may end a block's copy at
every position of the blocks around it, with spaces owed across a block's start, in text of
each kind (one, two and four bytes a character)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from failsmall.engine import _native
from failsmall.engine.signatures.transforms import TRANSFORMS
from failsmall.model.rules import Transform

WHITESPACE_TRANSFORMS = [
    Transform.COMPRESS_WHITESPACE,
    Transform.REMOVE_WHITESPACE,
    Transform.CMD_LINE,
]
#: A character that makes a string of each storage kind, put at the end or the start.
KINDS = ["", "\u0100", "\U00010000"]
#: Beside every Latin-1 character: the edges of the wide whitespace range and the wide spaces.
WIDE = ["\u167f", "\u1680", "\u2000", "\u200b", "\u2028", "\u202f", "\u3000", "\u3001", "\ufffd"]
#: A background of characters every transform keeps, none of them ASCII punctuation it reads.
BACKGROUND = "".join(chr(0x41 + (i * 7) % 26) if i % 3 else chr(0xC0 + i % 0x3F) for i in range(48))

transforms = pytest.mark.parametrize("transform", WHITESPACE_TRANSFORMS, ids=lambda t: t.value)


def assert_reference(transform: Transform, value: str) -> None:
    reference = TRANSFORMS[transform]
    assert _native.transform(transform.value, value, reference) == reference(value), ascii(value)


@transforms
def test_every_character_of_one_byte_at_every_position(transform: Transform) -> None:
    for code in [*range(256), *(ord(c) for c in WIDE)]:
        for position in range(len(BACKGROUND)):
            value = BACKGROUND[:position] + chr(code) + BACKGROUND[position + 1 :]
            for kind in KINDS:
                assert_reference(transform, value + kind)
                assert_reference(transform, kind + value)


@transforms
def test_runs_of_whitespace_across_every_block_start(transform: Transform) -> None:
    # A run of spaces (and a `,` or a deleted character for cmd_line) ending just before,
    # at, or just after a block's start, followed by kept text, `/` or `(`.
    for run in (" ", "  ", "\t\n", " ,", "\\ ", "\xa0", "\u3000 "):
        for after in ("x", "/", "(", "\xe9", '"'):
            for end in range(1, 40):
                start = max(0, end - len(run))
                value = BACKGROUND[:start] + run + after + BACKGROUND[end + 1 :]
                for kind in KINDS:
                    assert_reference(transform, value + kind)
                    assert_reference(transform, kind + value)


@transforms
@settings(max_examples=1500, deadline=None)
@given(
    value=st.lists(
        st.one_of(
            st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0xFF), max_size=20),
            st.sampled_from([" ", "  ", "\t", "\x85", "\xa0", ",", "\\", '"', "'", "^", "/", "("]),
            st.sampled_from(WIDE),
            st.binary(max_size=10).map(lambda raw: raw.decode("latin-1")),
        ),
        max_size=40,
    ).map("".join),
    kind=st.sampled_from(KINDS),
    at_start=st.booleans(),
)
def test_text_of_long_kept_runs_and_whitespace(
    transform: Transform, value: str, kind: str, at_start: bool
) -> None:
    assert_reference(transform, kind + value if at_start else value + kind)
