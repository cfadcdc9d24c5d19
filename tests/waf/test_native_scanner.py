"""The compiled value scanner gives exactly what the readable reference gives: features,
transforms, scans of values of every target mask, and whole requests with their counted work
and the limit they reach, on random inputs (non-ASCII, NFKC forms, escapes, percent and HTML
entities, comments, long values)."""

from __future__ import annotations

import base64
import functools
import html
import json
import unicodedata
from collections.abc import Callable
from html.entities import html5

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from failsmall.engine import _native
from failsmall.engine.body import Flattened, flatten_json_reference
from failsmall.engine.native import add_fields, flatten_json
from failsmall.engine.request import Request, RequestView
from failsmall.engine.signatures import SignatureScanner
from failsmall.engine.signatures.compiled import compile_matches
from failsmall.engine.signatures.entities import LOOSE_ENTITIES
from failsmall.engine.signatures.native import HS_VERSION, native_value_scanner
from failsmall.engine.signatures.reference import ReferenceValueScanner
from failsmall.engine.signatures.targets import TARGET_BIT
from failsmall.engine.signatures.transforms import (
    ALL_FEATURES,
    TRANSFORMS,
    UPPER_OR_WIDE,
    features,
)
from failsmall.model.rules import Target, Transform
from failsmall.model.traffic import Limits
from tests.waf.test_scanner_fast_paths import FRAGMENTS, MANAGED_MATCHES

MORE_FRAGMENTS = [
    *FRAGMENTS,
    "&amp",
    "&para",
    "&#60",
    "&#x;",
    "&TAB;",
    "&newline;",
    "%3c",
    "%e2%80%8b",
    "%ff",
    "%%",
    "%U0041",
    "\\\\",
    "\\'",
    '\\"',
    "\\101",
    "\\x41",
    "\\u00e9",
    "\\uD83D",
    "\\x4",
    "\\8",
    "\\777",
    "%u00e9",
    "%uD83D",
    "%u004",
    "%2",
    "%252541",
    "%C3",
    "%A9",
    "/*!50000",
    "*",
    "!",
    "\n",
    "\r",
    "\x0b",
    "\x1c",
    "\x7f",
    "\x01",
    "ＳＥＬＥＣＴ",
    "ﬁ",
    "①",
    "İ",
    "ß",
    "\u2028",
    "\u00a0",
    "\u3000",
    "\u0660",
    "/*!٣",
    "\ud800",
    "😀",
    "Q2FsbA==",
    "-_",
    "===",
    "(",
    "cat /etc",
    " /",
    " (",
]
fragments = st.lists(st.sampled_from(MORE_FRAGMENTS), max_size=12).map("".join)
#: Values made of fragments, any text, or a long repetition (over the 1,024 characters past
#: which chains share transform results by input).
values = st.one_of(
    fragments,
    st.text(max_size=30),
    st.tuples(fragments, st.integers(min_value=40, max_value=300)).map(lambda p: p[0] * p[1]),
)
wanted_masks = st.one_of(st.just(ALL_FEATURES), st.integers(min_value=0, max_value=ALL_FEATURES))
target_masks = st.sets(st.sampled_from(list(Target)), min_size=1).map(
    lambda targets: functools.reduce(lambda mask, t: mask | TARGET_BIT[t], targets, 0)
)


@functools.cache
def scanners() -> tuple[_native.ValueScanner, ReferenceValueScanner]:
    chains, patterns = compile_matches(MANAGED_MATCHES)
    return native_value_scanner(chains, patterns), ReferenceValueScanner(chains, patterns)


def test_the_extension_links_the_hyperscan_library() -> None:
    assert HS_VERSION.split(".")[0] == "5"


@settings(max_examples=1500, deadline=None)
@given(value=values, wanted=wanted_masks)
def test_features_are_the_references(value: str, wanted: int) -> None:
    assert _native.features(value, wanted, features) == features(value, wanted)


def _reference_not_wanted(value: str, wanted: int) -> int:
    raise AssertionError(f"the reference was asked for the features of ASCII {value!r}")


#: Names `html.unescape` decodes without a `;`, and what a value holds around them.
LEGACY_NAMES = sorted(name for name in html5 if not name.endswith(";"))
ascii_with_ampersands = st.lists(
    st.one_of(
        st.sampled_from(["&", "&#", "=", ";", "a=1", "b", "x", "&a", "&;", "#"]),
        st.sampled_from(LEGACY_NAMES).map(lambda name: "&" + name),
        st.sampled_from(LEGACY_NAMES).map(lambda name: "&" + name[:-1]),
        st.text(st.characters(max_codepoint=127), max_size=6),
    ),
    max_size=10,
).map("".join)


@settings(max_examples=1500, deadline=None)
@given(value=ascii_with_ampersands, wanted=wanted_masks)
def test_the_features_of_ascii_text_are_decided_in_c(value: str, wanted: int) -> None:
    """Query strings and URIs (`a=1&b=2`) are ASCII with `&`: the legacy entity names are
    looked up in C, so no value of a request head calls back into Python for its features."""
    assert _native.features(value, wanted, _reference_not_wanted) == features(value, wanted)


def test_every_legacy_name_after_an_ampersand_is_found_in_c() -> None:
    for name in LEGACY_NAMES:
        for value in (f"a=1&{name}", f"&{name}=2&b", f"x&{name}"):
            assert _native.features(value, ALL_FEATURES, _reference_not_wanted) == features(
                value
            ), value


@settings(max_examples=600, deadline=None)
@given(value=values, transform=st.sampled_from(list(Transform)))
def test_each_transform_is_the_references(value: str, transform: Transform) -> None:
    reference = TRANSFORMS[transform]
    assert _native.transform(transform.value, value, reference) == reference(value)


@settings(max_examples=2500, deadline=None)
@given(
    value=values,
    transform=st.sampled_from(
        [
            Transform.URL_DECODE,
            Transform.URL_DECODE_UNI,
            Transform.JS_DECODE,
            Transform.CMD_LINE,
            Transform.COMPRESS_WHITESPACE,
            Transform.REMOVE_WHITESPACE,
            Transform.REMOVE_COMMENTS,
            Transform.REMOVE_NULLS,
            Transform.LOWERCASE,
            Transform.HTML_ENTITY_DECODE,
            Transform.BASE64_DECODE,
        ]
    ),
)
def test_each_transform_done_in_c_is_the_references(value: str, transform: Transform) -> None:
    reference = TRANSFORMS[transform]
    assert _native.transform(transform.value, value, reference) == reference(value)


def _cased(char: str, how: str) -> str:
    """`char` lower or upper, or the non-ASCII letter `how` a caseless regex takes for it."""
    special = {"ſ": "s", "ı": "i", "İ": "i"}
    if how == "lower":
        return char
    if how in special and special[how] == char:
        return how
    return char.upper()


def _base64_value(
    parts: tuple[bytes, Callable[[bytes], bytes], str, str, int, tuple[int, str] | None],
) -> str:
    raw, encode, padding, space, cut, change = parts
    text = encode(raw).decode().rstrip("=") + padding
    text = text[: len(text) - cut] if cut < len(text) else text
    if change is not None and text:
        at = change[0] % len(text)
        text = text[:at] + change[1] + text[at + 1 :]
    return space + text + space


#: Pieces of character references: every name HTML knows (with and without its `;`, cut short,
#: run on), numbers at the edges of what `html.unescape` replaces, the loose names in mixed case
#: (and with letters a caseless Unicode regex would also take), and what ends a name.
_ENTITY_NAMES = sorted(html5)
_INVALID_NUMBERS = sorted(
    {*html._invalid_charrefs, *html._invalid_codepoints}  # type: ignore[attr-defined]
)
entity_pieces = st.one_of(
    st.sampled_from(_ENTITY_NAMES).map(lambda name: "&" + name),
    st.tuples(st.sampled_from(_ENTITY_NAMES), st.integers(1, 33)).map(lambda p: "&" + p[0][: p[1]]),
    st.sampled_from(list(LOOSE_ENTITIES)).flatmap(
        lambda name: st.lists(
            st.sampled_from(["lower", "upper", "ſ", "ı", "İ"]),
            min_size=len(name),
            max_size=len(name),
        ).map(lambda how: "&" + "".join(_cased(c, h) for c, h in zip(name, how, strict=True)) + ";")
    ),
    st.tuples(
        st.sampled_from(["&#", "&#x", "&#X"]),
        st.one_of(
            st.sampled_from(_INVALID_NUMBERS),
            st.integers(0, 0x110001),
            st.sampled_from([0xD7FF, 0xD800, 0xDFFF, 0xE000, 0x10FFFF, 0x110000, 10**30]),
        ),
        st.sampled_from(["", ";", "0", "g", "x"]),
    ).map(lambda p: p[0] + (format(p[1], "x" if "x" in p[0].lower() else "d")) + p[2]),
    st.tuples(
        st.sampled_from(["&#", "&#x"]),
        st.integers(0, 5000),
        st.sampled_from(["65", "0", "d800", "9" * 5000]),
    ).map(lambda p: p[0] + "0" * p[1] + p[2]),
    st.sampled_from(["&", "&#", "&#x", ";", "\t", "\n", "\f", " ", "<", "#", "\r", "é", "a" * 40]),
    st.text(max_size=3),
)
entity_text = st.lists(entity_pieces, max_size=20).map("".join)


@settings(max_examples=3000, deadline=None)
@given(value=entity_text)
def test_html_entity_decode_in_c_is_the_references_on_entity_dense_text(value: str) -> None:
    reference = TRANSFORMS[Transform.HTML_ENTITY_DECODE]
    assert _native.transform("html_entity_decode", value, reference) == reference(value)


def test_html_entity_decode_in_c_decodes_every_name_and_every_invalid_number() -> None:
    reference = TRANSFORMS[Transform.HTML_ENTITY_DECODE]
    for name in _ENTITY_NAMES:
        for value in (f"&{name}", f"&{name}x;", f"x&{name}&{name};", f"&{name}" + "é;"):
            assert _native.transform("html_entity_decode", value, reference) == reference(value)
    for number in [*_INVALID_NUMBERS, 0xD800, 0xDFFF, 0x10FFFF, 0x110000]:
        for value in (f"&#{number};", f"&#x{number:x}", f"&#X{number:X};x"):
            assert _native.transform("html_entity_decode", value, reference) == reference(value)


#: Base64 of random bytes, standard or URL-safe, with or without its padding, inside
#: whitespace, cut or with a character changed.
base64_text = st.tuples(
    st.binary(max_size=64),
    st.sampled_from([base64.b64encode, base64.urlsafe_b64encode]),
    st.sampled_from(["", "=", "==", "==="]),
    st.sampled_from(["", " ", "\n\t", "\u3000", "\x1c"]),
    st.integers(0, 3),
    st.one_of(
        st.none(), st.tuples(st.integers(0, 100), st.sampled_from(["=", "é", " ", "*", "-"]))
    ),
).map(_base64_value)


@settings(max_examples=3000, deadline=None)
@given(value=st.one_of(base64_text, values))
def test_base64_decode_in_c_is_the_references(value: str) -> None:
    reference = TRANSFORMS[Transform.BASE64_DECODE]
    assert _native.transform("base64_decode", value, reference) == reference(value)


@settings(max_examples=800, deadline=None)
@given(value=values, targets=target_masks)
def test_a_value_scans_to_the_references_hits_and_characters(value: str, targets: int) -> None:
    native, reference = scanners()
    assert native.scan_value(value, targets) == reference.scan_value(value, targets)
    folded = unicodedata.normalize("NFKC", value)
    assert native.scan_value(folded, targets) == reference.scan_value(folded, targets)


#: Values in which a step of a chain has something to do only in what an earlier step made:
#: the compiled scanner skips a later step whose triggers are absent from the text it is given,
#: so each of these would lose a result (and its characters) if it judged that text wrongly.
LATER_STEP_VALUES = [
    "&Amp",  # lowercase makes the legacy reference `&amp`, which html_entity_decode decodes
    "&Eacute &QUOT",
    "x=1&AMP",
    "%2541",  # url_decode_uni makes `%41`, which the second url_decode_uni decodes
    "%26lt%3Bscript%26gt%3B",  # a reference only once decoded
    "%5cx3C%5cu0041",  # JavaScript escapes only once decoded
    "%2500SELECT",  # a NUL only once decoded
    "%2F%2A*%2F",  # a comment only once decoded
    "Please WRAP item 01",  # lowercased, and nothing else to do
    "ÀÉÎ &Ouml",
    "\u0026AMP;",
    "Q2FsbA%3D%3D",  # base64-shaped only once decoded
]


@pytest.mark.parametrize("value", LATER_STEP_VALUES)
def test_a_step_with_work_only_after_an_earlier_one_runs(value: str) -> None:
    native, reference = scanners()
    targets = functools.reduce(lambda mask, bit: mask | bit, TARGET_BIT.values(), 0)
    assert native.scan_value(value, targets) == reference.scan_value(value, targets)


@settings(max_examples=300, deadline=None)
@given(value=values, targets=target_masks, chains=st.integers(min_value=1, max_value=2**12 - 1))
def test_a_result_scans_to_the_references_hits(value: str, targets: int, chains: int) -> None:
    native, reference = scanners()
    assert native.scan(value, targets, chains) == reference.scan(value, targets, chains)


@functools.cache
def request_scanners() -> tuple[SignatureScanner, SignatureScanner]:
    return (
        SignatureScanner.compile(MANAGED_MATCHES),
        SignatureScanner.compile(MANAGED_MATCHES, ReferenceValueScanner),
    )


@st.composite
def bodies(draw: st.DrawFn) -> tuple[str, bytes]:
    fields = draw(st.lists(st.tuples(values, values), max_size=40))
    match draw(st.sampled_from(["json", "form", "text"])):
        case "json":
            return "application/json", json.dumps(dict(fields)).encode()
        case "form":
            body = "&".join(f"{name}={value}" for name, value in fields)
            return "application/x-www-form-urlencoded", body.encode("utf-8", "surrogatepass")
        case _:
            return "text/plain", " ".join(v for _, v in fields).encode("utf-8", "surrogatepass")


@settings(max_examples=200, deadline=None)
@given(
    path=values,
    query=st.lists(st.tuples(values, values).map("=".join), max_size=5).map("&".join),
    headers=st.lists(st.tuples(st.sampled_from(["User-Agent", "Cookie", "X-A"]), values)),
    body=bodies(),
    max_values=st.integers(min_value=16, max_value=80),
    max_chars=st.sampled_from([64 * 1024, 16 * 1024 * 1024]),
)
def test_a_request_gets_the_references_hits_work_and_limit(
    path: str,
    query: str,
    headers: list[tuple[str, str]],
    body: tuple[str, bytes],
    max_values: int,
    max_chars: int,
) -> None:
    content_type, data = body
    request = Request("POST", "/" + path, query, (*headers, ("Content-Type", content_type)), data)
    limits = Limits(waf_max_values=max_values, waf_max_transformed_chars=max_chars)
    native, reference = request_scanners()
    native._clear_memos()
    reference._clear_memos()
    expected = reference.inspect(RequestView(request, limits=limits))
    assert native.inspect(RequestView(request, limits=limits)) == expected


json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    values,
)
json_documents = st.recursive(
    json_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=6), st.dictionaries(values, children, max_size=6)
    ),
    max_leaves=60,
)


@settings(max_examples=700, deadline=None)
@given(
    document=json_documents,
    max_values=st.integers(min_value=0, max_value=80),
    max_depth=st.integers(min_value=1, max_value=8),
    max_name_chars=st.integers(min_value=0, max_value=200),
)
def test_a_json_document_flattens_to_the_references_fields_and_limit(
    document: object, max_values: int, max_depth: int, max_name_chars: int
) -> None:
    fields, status = flatten_json(document, max_values, max_depth, max_name_chars, json.dumps)
    expected = flatten_json_reference(document, max_values, max_depth, max_name_chars)
    assert (fields, Flattened(status)) == expected


def test_a_value_scanner_refuses_a_second_scan_while_one_is_under_way() -> None:
    """Its scratch space belongs to one scan: a scan entering while another runs (here from
    inside a Python transform, as `lowercase` calls for a final sigma; in practice another
    thread) is refused, and the first goes on."""
    holder: list[_native.ValueScanner] = []

    def reentering(value: str) -> str:
        holder[0].scan_value("x", 1)
        return value

    step = (0, Transform.LOWERCASE.value, reentering, UPPER_OR_WIDE)
    scanner = _native.ValueScanner(
        [b"abc"], [8], ["k"], [1], [1], [(1, 1, UPPER_OR_WIDE, [step])], features, []
    )
    holder.append(scanner)
    with pytest.raises(RuntimeError, match="one thing at a time"):
        scanner.scan_value("ΑΣ", 1)
    assert scanner.scan_value("abc", 1) == (frozenset({"k"}), 3)


@settings(max_examples=300, deadline=None)
@given(
    start=st.dictionaries(st.sampled_from(["a", "b", "", "é"]), st.integers(0, 7), max_size=3),
    fields=st.lists(
        st.tuples(st.sampled_from(["a", "b", "c", ""]), st.sampled_from(["a", "x", ""]))
    ),
    names=st.sampled_from([0, 1, 2, 4]),
    values=st.sampled_from([0, 1, 2, 8]),
)
def test_add_fields_ors_each_name_and_value_into_sources_in_order(
    start: dict[str, int], fields: list[tuple[str, str]], names: int, values: int
) -> None:
    expected = dict(start)
    for name, value in fields:
        expected[name] = expected.get(name, 0) | names
        expected[value] = expected.get(value, 0) | values
    sources = dict(start)
    add_fields(sources, fields, names, values)
    assert list(sources.items()) == list(expected.items())
