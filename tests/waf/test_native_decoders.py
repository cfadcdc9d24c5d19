"""The compiled decoders (`url_decode`, `url_decode_uni`, `html_entity_decode`, `js_decode`),
which write their result in the kind of the text they read, hold to the readable reference on
text of every kind: the same characters, the same kind and ASCII flag as a string built by
Python, and the input itself back when they decode nothing."""

from __future__ import annotations

import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from failsmall.engine import _native
from failsmall.engine.signatures.transforms import TRANSFORMS
from failsmall.model.rules import Transform

DECODERS = [
    Transform.URL_DECODE,
    Transform.URL_DECODE_UNI,
    Transform.HTML_ENTITY_DECODE,
    Transform.JS_DECODE,
]

#: Escapes and near-escapes of each decoder, and characters of each width.
PIECES = [
    # percent escapes: valid UTF-8, invalid bytes, a truncated sequence, `%` at the end
    "%41",
    "%c3%a9",
    "%e4%bd%a0",
    "%f0%9f%98%80",
    "%ff",
    "%c3",
    "%25",
    "%2541",
    "%252541",
    "%4",
    "%",
    "%%",
    "%g1",
    # IIS escapes: BMP, a surrogate, `%U`, too short
    "%u0041",
    "%u00e9",
    "%U4E2D",
    "%ud800",
    "%uDFFF",
    "%u004",
    "%U",
    "%u",
    # HTML references: named (with and without `;`), numeric, out of range, loose, no `;`
    "&amp;",
    "&lt",
    "&notin;",
    "&not",
    "&NotEqualTilde;",
    "&#x41;",
    "&#65",
    "&#x110000;",
    "&#xD800;",
    "&#0;",
    "&#128;",
    "&#99999999999999999999;",
    "&#x;",
    "&colon;",
    "&NewLine;",
    "&TAB;",
    "&",
    "&;",
    "&#",
    "&é;",
    "&amp\u00e9",
    # JavaScript escapes: unicode, hex, octal, single letters, a backslash at the end
    "\\u0041",
    "\\u00e9",
    "\\ud83d",
    "\\u4e2D",
    "\\u004",
    "\\x41",
    "\\xff",
    "\\x4",
    "\\0",
    "\\101",
    "\\777",
    "\\8",
    "\\n",
    "\\t",
    "\\v",
    "\\\\",
    "\\\u00e9",
    "\\\U0001f600",
    "\\",
    # characters of each width
    "a",
    "Z",
    " ",
    "\x00",
    "\x7f",
    "\x80",
    "\u00e9",
    "\u00ff",
    "\u0100",
    "\u4e2d",
    "\ufffd",
    "\ud800",
    "\udfff",
    "\U0001f600",
    "\U0010ffff",
]

latin1 = st.characters(max_codepoint=0xFF)
bmp = st.characters(max_codepoint=0xFFFF)
#: Any code point, lone surrogates included (hypothesis leaves them out unless asked).
anything = st.one_of(st.characters(), st.characters(categories=["Cs"]))


def pieces_of(chars: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.lists(
        st.one_of(st.sampled_from(PIECES), st.text(chars, max_size=6)), max_size=40
    ).map("".join)


#: Text of every kind: ASCII, Latin-1, BMP, astral and surrogates, with escapes in it.
any_kind_text = st.one_of(
    pieces_of(st.characters(max_codepoint=0x7F)),
    pieces_of(latin1),
    pieces_of(bmp),
    pieces_of(anything),
    st.text(anything, max_size=60),
    st.binary(max_size=400).map(lambda raw: raw.decode("latin-1")),
    st.binary(max_size=400).map(lambda raw: raw.decode("utf-8", "replace")),
)


def assert_decodes_as_reference(transform: Transform, value: str) -> None:
    reference = TRANSFORMS[transform]
    expected = reference(value)
    out = _native.transform(transform.value, value, reference)
    assert out == expected, (transform, value)
    # The same string as Python builds: the narrowest kind and the ASCII flag. The kind is
    # compared through a new string holding each one (a concatenation keeps the wider kind):
    # `sys.getsizeof` of the string itself also counts a UTF-8 copy CPython may have cached on
    # it, as it does on its shared one-character strings.
    assert out.isascii() == expected.isascii(), (transform, value)
    assert sys.getsizeof(out + "\x00") == sys.getsizeof(expected + "\x00"), (transform, value)
    # Every decoding shrinks the text or changes it: nothing decoded is the input itself.
    assert (out is value) == (out == value), (transform, value)


@settings(max_examples=3000, deadline=None)
@given(value=any_kind_text, transform=st.sampled_from(DECODERS))
def test_each_decoder_on_text_of_any_kind_is_the_references(
    value: str, transform: Transform
) -> None:
    assert_decodes_as_reference(transform, value)


@settings(max_examples=300, deadline=None)
@given(
    prefix=st.text(anything, max_size=4),
    escapes=st.lists(st.sampled_from(PIECES), min_size=1, max_size=8),
    transform=st.sampled_from(DECODERS),
)
def test_a_long_text_widened_by_a_late_escape_is_the_references(
    prefix: str, escapes: list[str], transform: Transform
) -> None:
    # Thousands of characters copied in the input's kind before an escape that needs a wider
    # one: the written part is widened when the escape is reached.
    value = prefix + "x\u00e9" * 3000 + "".join(escapes) + "y" * 100
    assert_decodes_as_reference(transform, value)


@pytest.mark.parametrize("transform", DECODERS, ids=lambda t: t.value)
def test_each_decoder_on_every_code_point_alone(transform: Transform) -> None:
    reference = TRANSFORMS[transform]
    for code in range(0x110000):
        value = chr(code)
        out = _native.transform(transform.value, value, reference)
        assert out is value, (transform, hex(code))


#: What starts an escape for each decoder, to put before every code point.
ESCAPE_STARTS = {
    Transform.URL_DECODE: ["%", "%4", "%c3%"],
    Transform.URL_DECODE_UNI: ["%", "%u", "%U", "%u00", "%u004"],
    Transform.HTML_ENTITY_DECODE: ["&", "&#", "&#x", "&#x4", "&am", "&amp", "&colon"],
    Transform.JS_DECODE: ["\\", "\\u", "\\u004", "\\x", "\\x4", "\\1", "\\12"],
}


@pytest.mark.parametrize("transform", DECODERS, ids=lambda t: t.value)
def test_each_decoder_on_every_code_point_after_an_escape_start(transform: Transform) -> None:
    # Every code point of the first planes (and every surrogate), and a sample of the rest,
    # after each way an escape begins, and then before a `;`.
    codes = [*range(0x3400), *range(0xD700, 0xE100), *range(0xF000, 0x110000, 97)]
    for start in ESCAPE_STARTS[transform]:
        for code in codes:
            assert_decodes_as_reference(transform, start + chr(code))
            assert_decodes_as_reference(transform, start + chr(code) + ";x")
