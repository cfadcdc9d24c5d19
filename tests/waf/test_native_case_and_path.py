"""The compiled transforms that keep the kind of their text (`lowercase`, `normalize_path`,
whitespace, NULs, comments, command lines) hold to their references on text of every kind:
ASCII, Latin-1, two bytes and four bytes a character, combining marks, the characters
`str.lower()` treats specially (`İ` lowers to two characters, `Σ` to `ς` at the end of a word),
and paths with dot segments, repeated slashes, backslashes and escapes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from failsmall.engine import _native
from failsmall.engine.signatures.transforms import (
    ALL_FEATURES,
    TRANSFORMS,
    features,
    lowercase,
    normalize_path,
)
from failsmall.model.rules import Transform

#: Pieces of text whose lowercase is not plain: the special ones, letters of every script
#: with a case, marks and the characters around `Σ` that decide its final form.
CASE_PIECES = [
    "Σ",
    "İ",
    "ΑΣ",
    "ΣΑ",
    "Σ.",
    "Α'Σ",
    "Σ\u0301",
    "\u0301",
    "'",
    ".",
    " ",
    "A",
    "É",
    "Ж",
    "Ǆ",
    "ǅ",
    "Ω",
    "K",  # KELVIN SIGN: lowers to ASCII `k`
    "Å",  # ANGSTROM SIGN: lowers to Latin-1 `å`
    "Ａ",
    "\U00010400",  # DESERET CAPITAL LONG I: four bytes both ways
    "\U0001e900",
    "\ud800",
    "ß",
    "ẞ",
    "ﬁ",
    "\x00",
]

case_text = st.lists(
    st.one_of(
        st.sampled_from(CASE_PIECES),
        st.characters(),
        st.characters(max_codepoint=0xFF),
        st.characters(min_codepoint=0x100, max_codepoint=0xFFFF),
        st.characters(min_codepoint=0x10000),
        st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=5),
    ),
    max_size=40,
).map("".join)

PATH_PIECES = [
    "/",
    "//",
    "///",
    "\\",
    "\\\\",
    ".",
    "..",
    "/./",
    "/../",
    "./",
    "../",
    "%2e",
    "%2f",
    "a",
    "etc",
    "passwd",
    "é",
    "ж",
    "\U0001f600",
    "\x00",
    " ",
    "...",
    ".a",
    "a.",
]

path_text = st.lists(st.one_of(st.sampled_from(PATH_PIECES), st.characters()), max_size=30).map(
    "".join
)


@settings(max_examples=1000, deadline=None)
@given(value=case_text)
def test_lowercase_in_c_is_str_lower(value: str) -> None:
    assert _native.transform("lowercase", value, lowercase) == value.lower()


@settings(max_examples=500, deadline=None)
@given(value=case_text, position=st.integers(min_value=0, max_value=40))
def test_lowercase_in_c_is_str_lower_with_sigma_anywhere(value: str, position: int) -> None:
    for sigma in ("Σ", "ΑΣ", "Σ'", "İ"):
        text = value[:position] + sigma + value[position:]
        assert _native.transform("lowercase", text, lowercase) == text.lower()


def test_lowercase_in_c_is_str_lower_for_every_character_alone_and_between_letters() -> None:
    for point in range(0x110000):
        char = chr(point)
        for text in (char, "A" + char + "b", "\u0416" + char, char + "\U00010400"):
            assert _native.transform("lowercase", text, lowercase) == text.lower(), hex(point)


@settings(max_examples=1000, deadline=None)
@given(value=path_text)
def test_normalize_path_in_c_is_the_reference(value: str) -> None:
    assert _native.transform("normalize_path", value, normalize_path) == normalize_path(value)


@settings(max_examples=400, deadline=None)
@given(value=st.one_of(path_text, case_text).map(lambda text: "/" + text))
def test_normalize_path_in_c_is_the_reference_on_rooted_paths(value: str) -> None:
    assert _native.transform("normalize_path", value, normalize_path) == normalize_path(value)


def test_normalize_path_in_c_is_the_reference_for_every_character_in_a_path() -> None:
    for point in range(0x110000):
        char = chr(point)
        for text in ("/a/" + char + "/../b/", "." + char + "\\..//"):
            assert _native.transform("normalize_path", text, normalize_path) == normalize_path(
                text
            ), hex(point)


def test_the_compiled_transforms_return_the_text_itself_when_they_change_nothing() -> None:
    for value in ("/a/b", "жж/é", "\U0001f600/x"):
        assert _native.transform("normalize_path", value, normalize_path) is value
    for value in ("жé", "\U0001f600x", "ǆ"):
        assert _native.transform("lowercase", value, lowercase) is value


#: What the whitespace, NUL, comment and command-line transforms act on.
SYNTAX_PIECES = [
    " ",
    "  ",
    "\t",
    "\n",
    "\x0b",
    "\x1c",
    "\x85",
    "\xa0",
    "\u2028",
    "\u3000",
    "\x00",
    "/*",
    "*/",
    "/*!",
    "/*!50000",
    "--",
    "#",
    "\\",
    '"',
    "'",
    "^",
    ",",
    " /",
    " (",
    "٣",
    "\U0001d7d8",
]
syntax_text = st.lists(
    st.one_of(
        st.sampled_from(SYNTAX_PIECES),
        st.characters(max_codepoint=0xFF),
        st.characters(min_codepoint=0x100, max_codepoint=0xFFFF),
        st.characters(min_codepoint=0x10000),
    ),
    max_size=40,
).map("".join)
KEEPING_KIND = [
    Transform.REMOVE_NULLS,
    Transform.COMPRESS_WHITESPACE,
    Transform.REMOVE_WHITESPACE,
    Transform.REMOVE_COMMENTS,
    Transform.CMD_LINE,
    Transform.LOWERCASE,
    Transform.NORMALIZE_PATH,
]


@settings(max_examples=2000, deadline=None)
@given(value=st.one_of(syntax_text, case_text, path_text), transform=st.sampled_from(KEEPING_KIND))
def test_each_transform_keeping_the_kind_is_the_reference_on_text_of_every_kind(
    value: str, transform: Transform
) -> None:
    reference = TRANSFORMS[transform]
    assert _native.transform(transform.value, value, reference) == reference(value)


@settings(max_examples=2000, deadline=None)
@given(
    value=st.lists(
        st.one_of(
            st.characters(),
            st.characters(min_codepoint=0x80, max_codepoint=0xFF),
            st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
            st.sampled_from(["\x7f", "\x80", "\u07ff", "\u0800", "\uffff", "\U00010000"]),
        ),
        max_size=40,
    ).map("".join)
)
def test_the_utf8_form_of_text_of_every_kind_is_encode_with_replacement(value: str) -> None:
    assert _native.utf8(value) == value.encode("utf-8", "replace")


@settings(max_examples=3000, deadline=None)
@given(
    value=st.one_of(syntax_text, case_text, path_text),
    more=st.sampled_from(["", "&", "&amp", "&#", "&x;", "=", "==", " QUJD ", "\u3000", "٣"]),
    wanted=st.integers(min_value=0, max_value=ALL_FEATURES),
)
def test_the_features_of_text_of_every_kind_are_the_references(
    value: str, more: str, wanted: int
) -> None:
    for text in (value + more, more + value, more):
        assert _native.features(text, wanted, features) == features(text, wanted)


def test_a_result_that_drops_every_wide_character_is_a_narrower_string() -> None:
    cases = [
        ("normalize_path", "/ж/../a", "/a"),
        ("normalize_path", "/\U0001f600/../é", "/é"),
        ("remove_nulls", "a\x00", "a"),
        ("remove_whitespace", "a\u3000b", "ab"),
        ("compress_whitespace", "é\u2028x", "é x"),
        ("cmd_line", "c^at\u3000/etc", "cat/etc"),
        ("remove_comments", "a/*ж*/b", "a b"),
        ("lowercase", "\u212aé", "ké"),
    ]
    for name, value, expected in cases:
        out = _native.transform(name, value, TRANSFORMS[Transform(name)])
        assert out == expected and out.isascii() == expected.isascii(), name
        assert len(out.encode("utf-8")) == len(expected.encode("utf-8")), name
