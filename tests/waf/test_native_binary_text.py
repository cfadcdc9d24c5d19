"""The compiled transforms, NFKC, UTF-8 encoding and value scans hold to the readable reference
on the text that costs them most: bodies of binary bytes decoded as Latin-1 or as UTF-8 with
replacement characters, and text dense in combining marks and compatibility characters."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from failsmall.engine import _native
from failsmall.engine.request import Request, RequestView
from failsmall.engine.signatures.transforms import TRANSFORMS, features
from failsmall.model.rules import Transform
from tests.waf.test_native_scanner import request_scanners, scanners, target_masks, wanted_masks

#: Pieces the transforms and NFKC act on, between runs of binary-looking characters.
PIECES = [
    "%41",
    "%c3%a9",
    "%u0041",
    "%%",
    "&amp;",
    "&lt",
    "&#x41;",
    "&colon;",
    "&",
    "\\u0041",
    "\\x4",
    "\\",
    "/*",
    "*/",
    "--",
    "#",
    "  ",
    "\t",
    "\x00",
    "\x85",
    "\xa0",
    "\xa8",
    "\xb4",
    "\xbd",
    "e\u0301",
    "\u0301",
    "\u0308",
    "\u0327",
    "\u1100\u1161",
    "\uac00\u11a8",
    "ﬁ",
    "ＳＥＬＥＣＴ",
    "\ufffd",
    "\ud800",
    "Σ",
    "İ",
    "select",
    "/etc/./passwd",
    "<script>",
    "QUJDRA==",
    "Q2F0",
    "=",
]
#: Characters NFKC joins, splits, reorders or maps: combining marks of every class, Hangul jamo
#: and syllables, kana voicing marks, compatibility characters whose forms start or end with a
#: mark, and characters whose canonical decomposition starts with a mark.
NFKC_PIECES = [
    *(chr(c) for c in range(0x300, 0x370)),
    *"\u0591\u05b0\u0f71\u0f72\u0f73\u0f75\u0f81\u0344\u0340\u0343",
    *"\u1100\u1161\u11a8\uac00\uac01\u3131\u314f\uffa1",
    *"\u304b\u3099\u309a\u309b\u309c\uff76\uff9e",
    *"ﬁ\xa8\xb4\xbd\u1e9b\u0323\u212b\u2126\u1fed\u1fee\u0385\u00c5\u0041\u0065\u0020",
    *"\ufdfa\u3300\u2474\U0001d400\U0002f800\u0958\u0915\u093c",
]
nfkc_text = st.lists(
    st.one_of(
        st.sampled_from(NFKC_PIECES),
        st.characters(),
        st.binary(max_size=6).map(lambda raw: raw.decode("latin-1")),
    ),
    max_size=40,
).map("".join)

binary_text = st.one_of(
    st.binary(max_size=600).map(lambda raw: raw.decode("latin-1")),
    st.binary(max_size=600).map(lambda raw: raw.decode("utf-8", "replace")),
    st.lists(
        st.one_of(
            st.sampled_from(PIECES),
            st.binary(max_size=12).map(lambda raw: raw.decode("latin-1")),
            st.binary(max_size=12).map(lambda raw: raw.decode("utf-8", "replace")),
        ),
        max_size=60,
    ).map("".join),
)


@settings(max_examples=1500, deadline=None)
@given(value=st.one_of(binary_text, nfkc_text), wanted=wanted_masks)
def test_the_features_of_binary_text_are_the_references(value: str, wanted: int) -> None:
    assert _native.features(value, wanted, features) == features(value, wanted)


@settings(max_examples=1500, deadline=None)
@given(value=binary_text, transform=st.sampled_from(list(Transform)))
def test_each_transform_on_binary_text_is_the_references(value: str, transform: Transform) -> None:
    reference = TRANSFORMS[transform]
    assert _native.transform(transform.value, value, reference) == reference(value)


@settings(max_examples=1500, deadline=None)
@given(value=binary_text)
def test_the_utf8_form_is_encode_with_replacement(value: str) -> None:
    assert _native.utf8(value) == value.encode("utf-8", "replace")


@settings(max_examples=200, deadline=None)
@given(value=binary_text, targets=target_masks)
def test_binary_text_scans_to_the_references_hits_and_characters(value: str, targets: int) -> None:
    native, reference = scanners()
    assert native.scan_value(value, targets) == reference.scan_value(value, targets)
    folded = unicodedata.normalize("NFKC", value)
    assert native.scan_value(folded, targets) == reference.scan_value(folded, targets)


@settings(max_examples=1500, deadline=None)
@given(value=st.one_of(nfkc_text, binary_text))
def test_nfkc_in_c_is_unicodedatas(value: str) -> None:
    assert _native.nfkc(value) == unicodedata.normalize("NFKC", value)


def test_nfkc_in_c_is_unicodedatas_for_every_character_alone_and_after_a_letter() -> None:
    for point in range(0x110000):
        char = chr(point)
        for text in (char, "a" + char + "\u0301"):
            assert _native.nfkc(text) == unicodedata.normalize("NFKC", text), hex(point)


@settings(max_examples=80, deadline=None)
@given(
    body=st.one_of(
        st.binary(max_size=3000),
        st.lists(st.one_of(binary_text, nfkc_text), max_size=8).map(
            lambda parts: "".join(parts).encode("utf-8", "surrogatepass")
        ),
    ),
    content_type=st.sampled_from(["application/json", "text/plain", "application/octet-stream"]),
)
def test_a_binary_body_gets_the_references_hits_and_work(body: bytes, content_type: str) -> None:
    request = Request("POST", "/upload", "", (("Content-Type", content_type),), body)
    native, reference = request_scanners()
    native._clear_memos()
    reference._clear_memos()
    assert native.inspect(RequestView(request)) == reference.inspect(RequestView(request))


@pytest.mark.parametrize(
    "transform",
    [Transform.COMPRESS_WHITESPACE, Transform.REMOVE_WHITESPACE, Transform.CMD_LINE],
    ids=lambda t: t.value,
)
def test_the_whitespace_transforms_on_wide_text_see_every_space_python_sees(
    transform: Transform,
) -> None:
    # Past Latin-1 the compiled transforms ask `str.isspace` only in the range that holds
    # wide whitespace: every code point up to past that range, and a sample of the rest.
    reference = TRANSFORMS[transform]
    for code in [*range(0x100, 0x3100), *range(0x3100, 0x110000, 61)]:
        value = "\u0100" + chr(code) + " a" + chr(code) * 2
        assert _native.transform(transform.value, value, reference) == reference(value), hex(code)
