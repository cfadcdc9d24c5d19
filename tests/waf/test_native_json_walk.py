"""The compiled JSON walk (`json_fields`, `_jsonwalk.c`) gives what `json.loads` (read by
`load_json`, its recursion-free twin) and `flatten_json_reference` give, on random JSON texts
valid and not: whitespace variants, repeated keys, escapes (lone surrogates among them), every
number form, long ints around Python's digit limit, constants, nesting past the depth limit,
other encodings, BOMs, cuts and stray bytes."""

from __future__ import annotations

import json

from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from failsmall.engine.body import (
    NOT_JSON,
    BodyFormat,
    Flattened,
    JsonWalk,
    ParsedBody,
    flatten_json_reference,
    parse_body,
    parse_json_reference,
)
from failsmall.engine.json_document import load_json
from failsmall.engine.native import json_fields
from failsmall.model.traffic import Limits

SPACE = st.text(alphabet=" \t\n\r", max_size=2)
SPECIAL_CHARACTERS = [
    '"', "\\", "/", "\x00", "\x1f", "\x7f", "é", "\ud800", "\udbff", "\udc00", "\udfff",
    "\U0001f600", "\u2028", "\ufeff", "ß", "\u0130",
]  # fmt: skip
STRAYS = [
    b"\xff",
    b"\xc3",
    b"\xed\xa0\x80",
    b",",
    b"]",
    b"}",
    b'"',
    b"\\",
    b"0",
    b"\x00",
    b" ",
    b"e",
    b".",
]
CONSTANTS = ["null", "true", "false", "NaN", "Infinity", "-Infinity"]


@st.composite
def json_strings(draw: st.DrawFn, keys: bool = False) -> str:
    """A JSON string literal whose characters are written raw or escaped, at random."""
    if keys and draw(st.booleans()):
        text = draw(st.sampled_from(["a", "b", "", "é", "\ud800"]))
    else:
        alphabet = st.one_of(st.characters(), st.sampled_from(SPECIAL_CHARACTERS))
        text = "".join(draw(st.lists(alphabet, max_size=6)))
    out = ['"']
    for char in text:
        how = draw(st.sampled_from(["raw", "raw", "u", "U", "short"]))
        short = {'"': '\\"', "\\": "\\\\", "/": "\\/", "\b": "\\b", "\f": "\\f", "\n": "\\n",
                 "\r": "\\r", "\t": "\\t"}.get(char)  # fmt: skip
        if how == "short" and short is not None:
            out.append(short)
        elif how == "raw" and char not in '"\\' and ord(char) > 0x1F:
            out.append(char)
        else:
            code = ord(char)
            units = (
                [code]
                if code < 0x10000
                else [0xD800 + ((code - 0x10000) >> 10), 0xDC00 + ((code - 0x10000) & 0x3FF)]
            )
            for unit in units:
                escape = f"\\u{unit:04x}"
                out.append(escape.upper().replace("\\U", "\\u") if how == "U" else escape)
    out.append('"')
    return "".join(out)


@st.composite
def json_numbers(draw: st.DrawFn) -> str:
    sign = draw(st.sampled_from(["", "-"]))
    whole = draw(
        st.one_of(
            st.just("0"),
            st.from_regex(r"[1-9][0-9]{0,24}", fullmatch=True),
            st.sampled_from([4299, 4300, 4301]).map(lambda n: "9" * n),
        )
    )
    fraction = draw(st.one_of(st.just(""), st.from_regex(r"\.[0-9]{1,20}", fullmatch=True)))
    exponent = draw(st.one_of(st.just(""), st.from_regex(r"[eE][+-]?[0-9]{1,4}", fullmatch=True)))
    return sign + whole + fraction + exponent


LEAVES = st.one_of(json_strings(), json_numbers(), st.sampled_from(CONSTANTS))


@st.composite
def _arrays(draw: st.DrawFn, children: st.SearchStrategy[str]) -> str:
    items = draw(st.lists(children, max_size=5))
    parts = [f"{draw(SPACE)}{item}{draw(SPACE)}" for item in items]
    return "[" + (",".join(parts) if parts else draw(SPACE)) + "]"


@st.composite
def _objects(draw: st.DrawFn, children: st.SearchStrategy[str]) -> str:
    items = draw(st.lists(st.tuples(json_strings(keys=True), children), max_size=5))
    parts = [f"{draw(SPACE)}{key}{draw(SPACE)}:{draw(SPACE)}{value}{draw(SPACE)}"
             for key, value in items]  # fmt: skip
    return "{" + (",".join(parts) if parts else draw(SPACE)) + "}"


DOCUMENTS = st.recursive(
    LEAVES, lambda children: st.one_of(_arrays(children), _objects(children)), max_leaves=40
).map(lambda text: text)


@st.composite
def json_bodies(draw: st.DrawFn) -> bytes:
    """A JSON text in one of the encodings json.loads detects, then perhaps damaged."""
    text = draw(SPACE) + draw(DOCUMENTS) + draw(SPACE)
    encoding = draw(
        st.sampled_from(["utf-8"] * 6 + ["utf-8-sig", "utf-16", "utf-16-le", "utf-32-be"])
    )
    body = text.encode(encoding, "surrogatepass")
    match draw(st.sampled_from(["keep"] * 4 + ["cut", "insert", "delete", "bom", "nested"])):
        case "cut":
            body = body[: draw(st.integers(0, max(len(body) - 1, 0)))]
        case "insert":
            at = draw(st.integers(0, len(body)))
            stray = draw(st.sampled_from(STRAYS))
            body = body[:at] + stray + body[at:]
        case "delete":
            at = draw(st.integers(0, max(len(body) - 1, 0)))
            body = body[:at] + body[at + 1 :]
        case "bom":
            body = b"\xef\xbb\xbf" + body
        case "nested":
            depth = draw(st.integers(1, 40))
            body = b"[" * depth + body + b"]" * draw(st.sampled_from([depth, depth - 1]))
        case _:
            pass
    return body


def _repeats_a_key(body: bytes) -> bool:
    def pairs(items: list[tuple[str, object]]) -> dict[str, object]:
        keys = [key for key, _ in items]
        if len(set(keys)) != len(keys):
            repeated.append(True)
        return dict(items)

    repeated: list[bool] = []
    json.loads(body, object_pairs_hook=pairs)
    return bool(repeated)


@settings(max_examples=3000, deadline=None)
@given(
    body=json_bodies(),
    max_values=st.integers(min_value=0, max_value=40),
    max_depth=st.integers(min_value=0, max_value=8),
    max_name_chars=st.integers(min_value=0, max_value=120),
)
@example(body=b'{"a": 1, "b": [2], "a": {"c": 3}}', max_values=40, max_depth=8, max_name_chars=99)
@example(body=b'"\\ud800\\u0041\\udc00"', max_values=40, max_depth=8, max_name_chars=0)
@example(body=b"[1e400, -0, -0.0, 1E+2, 1e-400]", max_values=40, max_depth=8, max_name_chars=4)
@example(body=b"\xef\xbb\xbf\xef\xbb\xbf[]", max_values=40, max_depth=8, max_name_chars=99)
@example(body=b"[" + b"9" * 4301 + b"]", max_values=0, max_depth=8, max_name_chars=99)
@example(body=b'{"ab": [1, {"c": 2}]}', max_values=40, max_depth=8, max_name_chars=7)
def test_the_walk_gives_what_json_loads_and_the_reference_flattening_give(
    body: bytes, max_values: int, max_depth: int, max_name_chars: int
) -> None:
    """The walk decides every body but a valid one with a repeated key (in an object less than
    `max_depth` deep, where it can change the fields): those, and only those, are UNDECIDED."""
    fields, status = json_fields(body, max_values, max_depth, max_name_chars)
    try:
        document = json.loads(body)  # `load_json`'s document, faster
    except RecursionError:  # pragma: no cover - documents here are at most ~50 levels deep
        raise AssertionError("the property's documents are not that deep") from None
    except ValueError:
        assert (fields, JsonWalk(status)) == ([], JsonWalk.INVALID)
        return
    if JsonWalk(status) is JsonWalk.UNDECIDED:
        assert fields == []
        assert _repeats_a_key(body)
        return
    expected, flattened = flatten_json_reference(document, max_values, max_depth, max_name_chars)
    assert (fields, JsonWalk(status)) == (expected, JsonWalk(int(flattened)))


@settings(max_examples=600, deadline=None)
@given(body=json_bodies())
@example(body=b"[" + b"9" * 4301 + b"]")
@example(body=b"\xef\xbb\xbf\xef\xbb\xbf[]")
@example(body="[1]".encode("utf-16")[:-1])
@example(body=b"[\xd9\xa1]")  # an Arabic-Indic digit: no number to json.loads
def test_the_readable_loader_gives_what_json_loads_gives(body: bytes) -> None:
    """`load_json` (no recursion) and `json.loads` agree on the property's documents, which are
    shallow enough for `json.loads`: the same document, or the same error."""
    try:
        expected: object = repr(json.loads(body))
    except ValueError as exc:
        expected = (type(exc), str(exc))
    try:
        loaded: object = repr(load_json(body))
    except ValueError as exc:
        loaded = (type(exc), str(exc))
    assert loaded == expected


@settings(max_examples=600, deadline=None)
@given(
    body=json_bodies(),
    max_values=st.integers(min_value=16, max_value=40),
    max_depth=st.integers(min_value=1, max_value=8),
)
def test_a_json_body_parses_as_the_reference_parses_it(
    body: bytes, max_values: int, max_depth: int
) -> None:
    assume(body)  # an empty body is no JSON body
    limits = Limits(waf_max_values=max_values, waf_max_body_depth=max_depth)
    assert parse_body("application/json", body, False, limits) == parse_json_reference(body, limits)


def test_a_repeated_key_keeps_its_last_value_at_its_first_place() -> None:
    parsed = parse_body("application/json", b'{"a": 1, "b": 2, "a": [3]}', False, Limits())
    assert parsed.fields == (("a", ""), ("a.0", "3"), ("b", "2"))


def test_a_body_that_is_not_json_is_malformed_from_the_walk_alone() -> None:
    parsed = parse_body("application/json", b'{"a": 1,}', False, Limits())
    assert parsed == ParsedBody(BodyFormat.MALFORMED, problem=NOT_JSON)


def test_flattened_and_walk_statuses_share_their_values() -> None:
    for status in Flattened:
        assert JsonWalk(int(status)).name == status.name
