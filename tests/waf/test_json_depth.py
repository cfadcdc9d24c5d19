"""JSON nested to any depth gets one outcome, a function of its bytes and the limits alone: the
compiled walk, the readable reference (`load_json` without recursion, then the flattening) and
the walk called from deep inside the Python stack all agree. A body that `json.loads` with
unlimited recursion would reject is malformed at any depth; a JSON body nested deeper than
`waf_max_body_depth` is that limit (with the fields found above it)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TypeVar

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from failsmall.engine.body import (
    NOT_JSON,
    BodyFormat,
    JsonWalk,
    ParsedBody,
    parse_body,
    parse_json_reference,
)
from failsmall.engine.json_document import load_json
from failsmall.engine.native import json_fields, json_pruned
from failsmall.model.traffic import Limits
from tests.waf.test_native_json_walk import DOCUMENTS, STRAYS

T = TypeVar("T")

#: How a level opens and closes: arrays, objects, elements and keys before the nested value,
#: a repeated key (whose fields the walk leaves to the document), an escaped lone surrogate.
LEVELS = [
    ("[", "]"),
    ('{"a": ', "}"),
    ('["x", ', "]"),
    ('{"k": 1, "b": ', "}"),
    ('{"r": 1, "r": ', "}"),
    ('[{"\\ud800": ', "}]"),
    ("[ \n", "\t]"),
]
#: Stack depths to call the parser from: shallow, and close to Python's default limit of 1,000
#: (json.loads would give up there on a document of a hundred levels).
STACK_DEPTHS = (50, 900)


@st.composite
def deep_bodies(draw: st.DrawFn) -> bytes:
    """A document inside up to a few thousand levels, perhaps cut, with a stray byte, a byte
    less, or a closer too many or too few."""
    pattern = draw(st.lists(st.sampled_from(LEVELS), min_size=1, max_size=4))
    depth = draw(st.one_of(st.integers(0, 80), st.integers(0, 3000)))
    levels = [pattern[i % len(pattern)] for i in range(depth)]
    leaf = draw(DOCUMENTS)
    text = "".join(o for o, _ in levels) + leaf + "".join(c for _, c in reversed(levels))
    body = text.encode("utf-8", "surrogatepass")
    match draw(st.sampled_from(["keep"] * 3 + ["cut", "insert", "delete", "more", "fewer"])):
        case "cut":
            body = body[: draw(st.integers(0, max(len(body) - 1, 0)))]
        case "insert":
            at = draw(st.integers(0, len(body)))
            body = body[:at] + draw(st.sampled_from(STRAYS)) + body[at:]
        case "delete":
            at = draw(st.integers(0, max(len(body) - 1, 0)))
            body = body[:at] + body[at + 1 :]
        case "more":
            body += draw(st.sampled_from([b"]", b"}"]))
        case "fewer":
            body = body[:-1]
        case _:
            pass
    return body


def at_stack_depth(depth: int, call: Callable[[], T]) -> T:
    """`call()`, made from `depth` frames deeper than this one."""
    if depth <= 0:
        return call()
    return at_stack_depth(depth - 1, call)


def test_the_deepest_stack_here_leaves_json_loads_little_room() -> None:
    """The property below calls the parser 900 frames down: on top of pytest's frames, close
    enough to the recursion limit that `json.loads` of a 100-level document raises
    RecursionError there, while `load_json` reads it."""
    body = b"[" * 100 + b"1" + b"]" * 100
    assert json.loads(body) is not None
    with pytest.raises(RecursionError):
        at_stack_depth(max(STACK_DEPTHS), lambda: json.loads(body))
    assert at_stack_depth(max(STACK_DEPTHS), lambda: load_json(body)) == json.loads(body)


@settings(max_examples=300, deadline=None)
@given(
    body=deep_bodies(),
    max_values=st.sampled_from([16, 64, 1_000]),
    max_depth=st.sampled_from([1, 2, 8, 63, 64, 65, 256]),
)
@example(body=b"[" * 1_000, max_values=16, max_depth=64)
@example(body=b'["x",' * 513 + b"1" + b"]" * 512, max_values=16, max_depth=64)
@example(body=b'{"r": 1, "r": ' * 2_000 + b"1" + b"}" * 2_000, max_values=16, max_depth=256)
@example(body=b'{"r": 1, "r": ' * 2_000 + b"1" + b"}" * 1_999, max_values=16, max_depth=256)
def test_a_deep_body_gets_one_outcome_from_its_bytes_alone(
    body: bytes, max_values: int, max_depth: int
) -> None:
    assume(body)  # an empty body is no JSON body
    limits = Limits(waf_max_values=max_values, waf_max_body_depth=max_depth)
    expected = parse_json_reference(body, limits)
    assert parse_body("application/json", body, False, limits) == expected
    for depth in STACK_DEPTHS:
        parsed = at_stack_depth(depth, lambda: parse_body("application/json", body, False, limits))
        assert parsed == expected, f"{depth} frames down"


@pytest.mark.parametrize("depth", [64, 65, 511, 512, 513, 600, 5_000, 100_000])
def test_valid_json_deeper_than_the_limit_is_the_depth_limit_and_cut_json_is_malformed(
    depth: int,
) -> None:
    limits = Limits()
    body = b'{"a": ["x", ' * depth + b'"1\' OR 1=1--"' + b"]}" * depth
    parsed = parse_body("application/json", body, False, limits)
    assert parsed.format is BodyFormat.JSON
    assert parsed.reached is not None and parsed.reached.limit == "waf_max_body_depth"
    assert parse_body("application/json", body[:-1], False, limits) == ParsedBody(
        BodyFormat.MALFORMED, problem=NOT_JSON
    )


def test_the_walk_keeps_a_bit_a_level_past_its_frames() -> None:
    """A million levels of alternating objects and arrays: each closer must match its opener
    however deep, so one closer of the wrong kind makes the body not JSON."""
    depth = 1_000_000
    opens = b'{"a":[' * (depth // 2)
    closes = b"]}" * (depth // 2)
    limits = Limits()
    args = (limits.waf_max_values, limits.waf_max_body_depth, limits.waf_max_transformed_chars)
    assert json_fields(opens + b"1" + closes, *args)[1] == JsonWalk.TOO_DEEP
    wrong = opens + b"1" + b"]}" * 1_000 + b"}}" + b"]}" * (depth // 2 - 1_001)
    assert json_fields(wrong, *args)[1] == JsonWalk.INVALID


def test_the_walk_refuses_a_depth_limit_past_its_frames() -> None:
    with pytest.raises(ValueError, match="max_depth is at most 512"):
        json_fields(b"[]", 16, 513, 1_000)


@pytest.mark.parametrize(
    ("body", "max_depth", "pruned"),
    [
        (b'{"a": [1, {"b": 2}], "c": 3}', 2, '{"a": [1, {}], "c": 3}'),
        (b'[[["x"]], "]}[{\\"\\\\", {"k": [1]}]', 1, '[[], "]}[{\\"\\\\", {}]'),
        (b" [1] ", 0, " [] "),
        (b'"[["', 0, '"[["'),
        ('{"é": [[1]]}'.encode("utf-16"), 2, '{"é": [[]]}'),
    ],
)
def test_a_json_text_is_pruned_at_the_depth_limit_outside_its_strings(
    body: bytes, max_depth: int, pruned: str
) -> None:
    """What the fields of a body with a repeated key are read from: the text with every
    container `max_depth` deep or more emptied, brackets inside strings left alone."""
    assert json_pruned(body, max_depth) == pruned


def test_a_repeated_key_over_a_deep_body_is_read_within_the_depth_limit() -> None:
    """A repeated key sends the body to its document; the deep part is read empty, so a
    body the size of the buffer costs json.loads no more than `waf_max_body_depth` levels."""
    limits = Limits()
    body = b'{"a": 1, "a": "1\' OR 1=1--", "b": ' + b"[" * 65_000 + b"]" * 65_000 + b"}"
    parsed = parse_body("application/json", body, False, limits)
    assert parsed.fields == (("a", "1' OR 1=1--"), ("b", ""))
    assert parsed.reached is not None and parsed.reached.limit == "waf_max_body_depth"
    assert parsed == parse_json_reference(body, limits)
