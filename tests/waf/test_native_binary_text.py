"""The compiled transforms, UTF-8 encoding and value scans hold to the readable reference on the
text that costs them most: bodies of binary bytes decoded as Latin-1 or as UTF-8 with
replacement characters, and text dense in combining marks and compatibility characters."""

from __future__ import annotations

import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from failsmall.engine import _native
from failsmall.engine.signatures.transforms import TRANSFORMS
from failsmall.model.rules import Transform
from tests.waf.test_native_scanner import scanners, target_masks

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
]
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
@given(value=binary_text, transform=st.sampled_from(list(Transform)))
def test_each_transform_on_binary_text_is_the_references(value: str, transform: Transform) -> None:
    reference = TRANSFORMS[transform]
    assert _native.transform(transform.value, value, reference) == reference(value)


@settings(max_examples=1500, deadline=None)
@given(value=binary_text)
def test_the_utf8_form_is_encode_with_replacement(value: str) -> None:
    assert _native.utf8(value) == value.encode("utf-8", "replace")


@settings(max_examples=400, deadline=None)
@given(value=binary_text, targets=target_masks)
def test_binary_text_scans_to_the_references_hits_and_characters(value: str, targets: int) -> None:
    native, reference = scanners()
    assert native.scan_value(value, targets) == reference.scan_value(value, targets)
    folded = unicodedata.normalize("NFKC", value)
    assert native.scan_value(folded, targets) == reference.scan_value(folded, targets)
