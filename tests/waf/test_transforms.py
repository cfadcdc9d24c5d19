"""Signature transforms: what each one does, that none raises, and that the fast path is sound."""

from __future__ import annotations

import re
from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from failsmall.engine.signatures import transforms as transforms_module
from failsmall.engine.signatures.transforms import (
    _CHARREF_START,
    _CHARREF_START_NO_SEMICOLON,
    _LEGACY_NAMES,
    ALL_FEATURES,
    TRANSFORMS,
    TRIGGERS,
    UPPER_OR_WIDE,
    URL_DECODE_ROUNDS,
    _features,
    base64_decode,
    chain,
    cmd_line,
    compress_whitespace,
    features,
    html_entity_decode,
    js_decode,
    lowercase,
    normalize_path,
    percent_decode,
    remove_comments,
    remove_nulls,
    remove_whitespace,
    triggers,
    url_decode,
    url_decode_uni,
)
from failsmall.model.rules import Transform

# Text that looks like what transforms act on: escapes, entities, comments, paths, whitespace.
hostile_text = st.lists(
    st.sampled_from(
        [
            *"%&#;\\/.*-'\"^,()[]{}<>$`! \t\n\r\x00aAbBuUxX0123456789=+_:@éЖ漢",
            *["%2e", "%25", "%u0041", "&lt;", "&#x3C;", "&tab;", "/*", "*/", "--"],
            *["\\x41", "\\u0041"],
        ]
    ),
    max_size=30,
).map("".join)
any_text = st.one_of(
    st.text(max_size=80),
    st.binary(max_size=80).map(lambda raw: raw.decode("utf-8", errors="surrogateescape")),
    hostile_text,
)


@pytest.mark.parametrize(
    ("fn", "value", "expected"),
    [
        (url_decode, "%27%20OR%201%3D1", "' OR 1=1"),
        (url_decode, "%252e%252e%252f", "../"),
        (url_decode, "1+1", "1+1"),
        (url_decode, "100% sure", "100% sure"),
        (url_decode_uni, "%u003cscript%u003e", "<script>"),
        (url_decode_uni, "%uff1cscript", "＜script"),
        (html_entity_decode, "&lt;svg&gt; &#x6a;&#97;", "<svg> ja"),
        (html_entity_decode, "ja&Tab;va&NewLine;script&colon;", "ja\tva\nscript:"),
        (html_entity_decode, "ja&tab;vascript&COLON;", "ja\tvascript:"),
        (html_entity_decode, "rock & roll", "rock & roll"),
        (lowercase, "SeLeCt", "select"),
        (compress_whitespace, "a \t\n b  c", "a b c"),
        (remove_whitespace, "j a\tv\na", "java"),
        (remove_nulls, "a\x00b", "ab"),
        (normalize_path, "/a/./b/../c//d", "/a/c/d"),
        (normalize_path, "..\\..\\windows\\win.ini", "../../windows/win.ini"),
        (normalize_path, "/static/", "/static/"),
        (base64_decode, "X19wcm90b19f", "__proto__"),
        (base64_decode, "d2hpbGUodHJ1ZSk7Cg==", "while(true);\n"),
        (base64_decode, "not base64!", "not base64!"),
        (remove_comments, "UNION/**/SELECT", "UNION SELECT"),
        (remove_comments, "/*!50000select*/ 1", " select  1"),
        (remove_comments, "1' -- comment", "1' "),
        (cmd_line, 'c^at  /e"t"c/pass\\wd', "cat/etc/passwd"),
        (cmd_line, "ls;id,whoami", "ls;id whoami"),
        (js_decode, "\\u0061lert\\x28\\61\\51", "alert(1)"),
        (js_decode, "line\\nbreak", "line\nbreak"),
    ],
)
def test_transform_examples(fn: object, value: str, expected: str) -> None:
    assert callable(fn)
    assert fn(value) == expected


def test_url_decode_stops_after_its_bound() -> None:
    encoded = "<"
    for _ in range(URL_DECODE_ROUNDS + 1):
        encoded = encoded.replace("%", "%25").replace("<", "%3C")
    decoded = url_decode(encoded)
    assert decoded != "<"
    assert decoded.startswith("%")


def test_chain_applies_in_order() -> None:
    decode_then_lower = chain([Transform.URL_DECODE, Transform.LOWERCASE])
    assert decode_then_lower("%55NION") == "union"
    assert chain([])("unchanged") == "unchanged"


def test_every_transform_has_an_implementation_and_a_trigger() -> None:
    assert set(TRANSFORMS) == set(Transform)
    assert set(TRIGGERS) == set(Transform)


@settings(max_examples=300, deadline=None)
@given(value=any_text, transform=st.sampled_from(list(Transform)))
def test_no_transform_raises_on_any_text(value: str, transform: Transform) -> None:
    assert isinstance(TRANSFORMS[transform](value), str)


@settings(max_examples=400, deadline=None)
@given(value=any_text, transform=st.sampled_from(list(Transform)))
def test_a_transform_whose_trigger_is_absent_changes_nothing(
    value: str, transform: Transform
) -> None:
    if not features(value) & TRIGGERS[transform]:
        assert TRANSFORMS[transform](value) == value


@settings(max_examples=200, deadline=None)
@given(value=any_text, transforms=st.lists(st.sampled_from(list(Transform)), max_size=5))
def test_a_chain_whose_triggers_are_absent_changes_nothing(
    value: str, transforms: list[Transform]
) -> None:
    if not features(value) & triggers(transforms):
        assert chain(transforms)(value) == value


IDEMPOTENT = [
    Transform.LOWERCASE,
    Transform.COMPRESS_WHITESPACE,
    Transform.REMOVE_WHITESPACE,
    Transform.REMOVE_NULLS,
    Transform.NORMALIZE_PATH,
    Transform.CMD_LINE,
]


@settings(max_examples=300, deadline=None)
@given(value=any_text, transform=st.sampled_from(IDEMPOTENT))
def test_idempotent_transforms(value: str, transform: Transform) -> None:
    once = TRANSFORMS[transform](value)
    assert TRANSFORMS[transform](once) == once


# Entity-shaped text: an `&` followed by the start of a legacy name, a reference or junk.
entity_text = st.lists(
    st.sampled_from(
        ["&", ";", "#", " ", "a", "A", "p", "para", "not", "notin", "amp", "lt", "GT", "copy", "x"]
    ),
    max_size=12,
).map("".join)


@settings(max_examples=400, deadline=None)
@given(value=st.one_of(entity_text, any_text))
def test_the_grouped_charref_regex_finds_what_the_plain_alternation_finds(value: str) -> None:
    plain = re.compile(
        "&(?:#|[^\t\n\f <&#;]{1,32};|" + "|".join(re.escape(n) for n in _LEGACY_NAMES) + ")"
    )
    assert (_CHARREF_START.search(value) is None) == (plain.search(value) is None)
    if ";" not in value:
        assert (_CHARREF_START_NO_SEMICOLON.search(value) is None) == (plain.search(value) is None)


@settings(max_examples=400, deadline=None)
@given(
    value=st.one_of(
        st.text(st.characters(categories=["L", "N"]), max_size=20),
        st.text(alphabet="aZ09éЖ٣", max_size=12),
    )
)
def test_the_alphanumeric_shortcut_finds_the_same_features(value: str) -> None:
    if value.isalnum():
        assert features(value) == _features(value, ALL_FEATURES)
        assert features(value, UPPER_OR_WIDE) == _features(value, UPPER_OR_WIDE)


@settings(max_examples=500, deadline=None)
@given(
    text=st.lists(
        st.sampled_from(["%", "%4", "%41", "%C3", "%A9", "%e4%bd%a0", "%FF", "a", "é", "%%", "+"]),
        max_size=20,
    ).map("".join)
)
def test_percent_decode_is_unquote_with_replacement(text: str) -> None:
    assert percent_decode(text) == unquote(text, errors="replace")


_REFERENCE_JS_ESCAPE = re.compile(
    r"\\(?:u([0-9a-fA-F]{4})|x([0-9a-fA-F]{2})|([0-7]{1,3})|(.))", re.DOTALL
)
_REFERENCE_JS_SIMPLE = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", "v": "\v"}


def reference_js_decode(value: str) -> str:
    def one(match: re.Match[str]) -> str:
        unicode, hex_byte, octal, other = match.groups()
        if unicode is not None:
            return chr(int(unicode, 16))
        if hex_byte is not None:
            return chr(int(hex_byte, 16))
        if octal is not None:
            return chr(int(octal, 8) & 0xFF)
        return str(_REFERENCE_JS_SIMPLE.get(other, other))

    return _REFERENCE_JS_ESCAPE.sub(one, value)


escapes = st.lists(
    st.sampled_from(["\\", '\\"', "\\\\", "\\n", "\\u0041", "\\x41", "\\101", "a", "é", "\n"]),
    max_size=16,
).map("".join)


@settings(max_examples=600, deadline=None)
@given(text=st.one_of(escapes, st.text(max_size=30)))
def test_js_decode_is_the_escape_by_escape_regex(text: str) -> None:
    assert js_decode(text) == reference_js_decode(text)


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=" ,'\"^\\/(ab\té", max_size=30))
def test_cmd_line_deletes_and_replaces_like_translate(text: str) -> None:
    translated = text.translate(str.maketrans({"\\": "", '"': "", "'": "", "^": "", ",": " "}))
    expected = transforms_module._compress(translated).replace(" /", "/").replace(" (", "(")
    assert cmd_line(text) == expected
