"""The compiled JSON walk reads the body's text in its own width (one walk for each of 1-, 2-
and 4-byte text) and keeps keys and paths one byte a character until a key is not Latin-1, and
the JSON scan narrows a wider path as it copies it when it can: both give what the readable
reference gives, for a character of every width at every position of a body, of a key and of
a value."""

from __future__ import annotations

import json
from functools import cache

from hypothesis import given, settings
from hypothesis import strategies as st

from failsmall.engine.body import JsonWalk, flatten_json_reference
from failsmall.engine.native import Memo, json_fields
from failsmall.engine.signatures.scanner import MEMO_BYTES
from tests.waf.test_native_json_scan import scan
from tests.waf.test_native_scanner import scanners

#: Both value scanners of the managed matches, compiled once for the module.
scanner_pair = cache(scanners)

#: A character of each width a str holds: ASCII, Latin-1, two bytes (the first past one byte
#: and the last), four bytes, and a lone surrogate (two bytes, written as an escape).
WIDE = ["a", "\xe9", "\xff", "\u0100", "\uffff", "\U0001f600", "\U0010ffff", "\ud800"]
#: Bodies holding every kind of token: escapes, numbers of every form, constants, nesting,
#: empty containers, whitespace of every kind.
DOCUMENTS = [
    '{"a": [1, -0, 2.5e3, "x\\n\\u00e9"], "b": {"c": null, "d": true}, "e": false}',
    '[ {"k":"v"} ,\t[\r\n[]], {}, "\\ud83d\\ude00", NaN, -Infinity, 1E-2]',
    '"\\"\\\\\\/\\b\\f\\n\\r\\t"',
]
LIMITS = (40, 8, 400)


def expected_walk(body: bytes) -> tuple[list[tuple[str, str]], JsonWalk]:
    """What `json_fields` gives of `body`, from `json.loads` and the reference flattening (the
    documents here repeat no key)."""
    try:
        document = json.loads(body)
    except ValueError:
        return [], JsonWalk.INVALID
    fields, status = flatten_json_reference(document, *LIMITS)
    return fields, JsonWalk(int(status))


def walked(body: bytes) -> tuple[list[tuple[str, str]], JsonWalk]:
    fields, status = json_fields(body, *LIMITS)
    return fields, JsonWalk(status)


def test_a_character_of_any_width_anywhere_in_a_body_walks_as_the_reference_reads_it() -> None:
    """Every position of each body, with a character of each width put there (which makes
    the text that wide, and the body valid or not) or standing for the character there."""
    for document in DOCUMENTS:
        for wide in WIDE:
            for at in range(len(document) + 1):
                for text in (document[:at] + wide + document[at:], document[:at] + wide):
                    body = text.encode("utf-8", "surrogatepass")
                    assert walked(body) == expected_walk(body), (text, at)


def test_a_character_of_any_width_in_any_string_walks_as_the_reference_reads_it() -> None:
    """A wide character at every position of a key and of a value, raw and escaped, in a body
    whose other strings are narrow: the walk reads all of it in that width."""
    for wide in WIDE:
        for at in range(6):
            string = "abcde"[:at] + wide + "abcde"[at:]
            for ascii_only in (False, True):
                body = json.dumps(
                    {string: [string, {"k": string}], "n": 1}, ensure_ascii=ascii_only
                ).encode("utf-8", "surrogatepass")
                assert walked(body) == expected_walk(body), (string, ascii_only)


def test_a_path_of_any_width_is_scanned_and_remembered_as_the_reference_does() -> None:
    """Paths are narrowed as they are copied: a key with a character of each width at each
    position is the same value, looked up and remembered under the same characters and hash,
    as the reference's str of it."""
    native, reference = scanner_pair()
    for wide in WIDE:
        for at in range(6):
            key = "abcde"[:at] + wide + "abcde"[at:]
            for ascii_only in (False, True):
                document = {key: {key: "v", "x": [key]}, "k": key}
                body = json.dumps(document, ensure_ascii=ascii_only).encode(
                    "utf-8", "surrogatepass"
                )
                native_memo, reference_memo = Memo(MEMO_BYTES), Memo(MEMO_BYTES)
                for _ in range(2):  # fresh, then remembered
                    found = scan(native, native_memo, body, (0, 64, 128), LIMITS, (99, 10**9))
                    expected = scan(
                        reference, reference_memo, body, (0, 64, 128), LIMITS, (99, 10**9)
                    )
                    assert found == expected, (key, ascii_only)
                    assert native_memo.items() == reference_memo.items(), (key, ascii_only)


#: Strings of one width each: a key or value drawn from one alphabet.
ALPHABETS = [
    st.characters(max_codepoint=0x7F),
    st.characters(max_codepoint=0xFF),
    st.characters(max_codepoint=0xFFFF),
    st.characters(),
]
STRINGS = st.one_of(*(st.text(alphabet, max_size=8) for alphabet in ALPHABETS))
DOCUMENT_TREES = st.recursive(
    st.one_of(STRINGS, st.integers(), st.floats(allow_nan=False), st.booleans(), st.none()),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(STRINGS, children, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(document=DOCUMENT_TREES, ascii_only=st.booleans(), repeats=st.integers(1, 3))
def test_documents_of_every_width_walk_and_scan_as_the_reference(
    document: object, ascii_only: bool, repeats: int
) -> None:
    """Random documents, deep and with values repeated, their strings of each width, raw or
    escaped: the same fields as the reference, and the same hits, work and memo entries."""
    body = json.dumps([document] * repeats, ensure_ascii=ascii_only).encode(
        "utf-8", "surrogatepass"
    )
    assert walked(body) == expected_walk(body)
    native, reference = scanner_pair()
    native_memo, reference_memo = Memo(MEMO_BYTES), Memo(MEMO_BYTES)
    for _ in range(2):
        found = scan(native, native_memo, body, (32, 64, 128), LIMITS, (99, 10**9))
        assert found == scan(reference, reference_memo, body, (32, 64, 128), LIMITS, (99, 10**9))
        assert native_memo.items() == reference_memo.items()


def test_a_key_repeated_after_the_first_wide_key_is_found() -> None:
    """The walk keeps keys and paths one byte a character until a key is not Latin-1, then
    makes them four: objects past their first 16 keys (which have a table of their keys'
    hashes) still find a key repeated after that, their own or the object's around them."""
    limits = (1000, 8, 100_000)
    outer = ", ".join(f'"o{i}": {i}' for i in range(20))
    inner = ", ".join(f'"k{i}": {i}' for i in range(40))
    for wide in WIDE[3:]:  # none of them Latin-1
        for ascii_only in (False, True):
            key = json.dumps(f"x{wide}", ensure_ascii=ascii_only)
            cases = {
                "": JsonWalk.COMPLETE,
                ', "k7": 0}': JsonWalk.UNDECIDED,  # repeats a key of the inner object
                '}, "o5": 0': JsonWalk.UNDECIDED,  # repeats a key of the outer object
            }
            for tail, status in cases.items():
                text = "{" + outer + ', "in": {' + inner + f", {key}: 1" + (tail or "}") + "}"
                body = text.encode("utf-8", "surrogatepass")
                fields, found = json_fields(body, *limits)
                assert JsonWalk(found) == status, (wide, ascii_only, tail)
                if status == JsonWalk.COMPLETE:
                    expected = flatten_json_reference(json.loads(body), *limits)[0]
                    assert fields == expected
