"""The JSON walk's shortcuts hold at every edge, against the readable way (`json.loads`, then
`flatten_json_reference`; the reference `scan_sources` for a scan): a string's end or escape
found 16 characters at a time, at every position and every distance from the body's end, in
every width; an ASCII body read as its bytes, and one with a wider character at any place; a
repeated key among few keys and among many, at every pair of places; array indexes counted up
in place across every carry, under every limit of paths; and a body's values remembered
without hits charged together, stopping where they stop one by one."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from failsmall.engine.body import JsonWalk, flatten_json_reference
from failsmall.engine.native import Memo, json_fields
from failsmall.engine.signatures.scanner import MEMO_BYTES
from failsmall.engine.work import Stop
from tests.waf.test_native_json_walk import _repeats_a_key, json_bodies
from tests.waf.test_native_scanner import scanners

Fields = tuple[list[tuple[str, str]], JsonWalk]

#: A character of each width a decoded body's text can have: ASCII (read in place), Latin-1
#: (decoded, one byte), the BMP (two bytes) and beyond (four bytes).
WIDTHS = ["a", "é", "Ā", "\U0001f600"]


def walked(body: bytes, max_values: int = 10_000, max_depth: int = 8,
           max_name_chars: int = 10**6) -> Fields:  # fmt: skip
    fields, status = json_fields(body, max_values, max_depth, max_name_chars)
    return fields, JsonWalk(status)


def same(body: bytes, max_values: int = 10_000, max_depth: int = 8,
         max_name_chars: int = 10**6) -> Fields:  # fmt: skip
    """The walk of `body` is what the readable way makes of it (UNDECIDED only for a valid body
    with a repeated key, left to the caller); returns the walk."""
    found = walked(body, max_values, max_depth, max_name_chars)
    try:
        document = json.loads(body)
    except ValueError:
        assert found == ([], JsonWalk.INVALID), body
        return found
    if found[1] is JsonWalk.UNDECIDED:
        assert found[0] == [] and _repeats_a_key(body), body
        return found
    fields, flattened = flatten_json_reference(document, max_values, max_depth, max_name_chars)
    assert found == (fields, JsonWalk(int(flattened))), body
    return found


#: What may stop a string: its end, an escape of each form, a raw control character, and
#: raw characters the scan reads past (DEL, and the widest and narrowest non-controls).
STOPS = ['"', "\\n", "\\\\", "\\u00e9", "\\ud83d\\ude00", "\x1f", "\x00", "\t", "\x7f", " "]


@pytest.mark.parametrize("width", WIDTHS)
def test_a_string_stops_where_it_stops_at_every_position_and_distance_from_the_end(
    width: str,
) -> None:
    """A string of up to 40 characters with a stop at each place, then 0, 1 or 16 characters
    before the body ends (so the string's end falls at every distance from the body's end,
    where the 16 at a time scan gives way to one at a time), and some such bodies cut at
    every byte."""
    for length in range(41):
        for stop in STOPS:
            for at in range(length + 1):
                text = width * at + stop + "b" * (length - at)
                for tail in (0, 1, 16):
                    body = ('["' + text + '"' + " " * tail + "]").encode("utf-8")
                    same(body)
                if length in (0, 15, 16, 17, 33):
                    for cut in range(len(body)):
                        same(body[:cut])


@pytest.mark.parametrize("wide", ["é", "\U0001f600", "\xff", "\udc80"])
def test_an_ascii_body_and_one_with_a_wider_character_anywhere_walk_alike(wide: str) -> None:
    """An ASCII body is read as its bytes; the same body with one character beyond ASCII
    (or a byte no UTF-8 has, or a lone surrogate's bytes) at any place is decoded first."""
    text = json.dumps({"ab": ["cd", 1, {"e\\f": "g\nh", "i": [None, True, 2.5]}], "j": ""})
    same(text.encode("ascii"))
    for at in range(len(text) + 1):
        if wide == "\xff":
            body = text[:at].encode() + b"\xff" + text[at:].encode()
        else:
            body = (text[:at] + wide + text[at:]).encode("utf-8", "surrogatepass")
        same(body)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("count", [2, 3, 15, 16, 17, 18, 40])
def test_a_repeated_key_is_found_at_every_pair_of_places_among_few_and_many_keys(
    width: str, count: int
) -> None:
    """An object of `count` keys (fewer than 16, compared one by one; more, through a table)
    of one length, each differing from the others in one character, with the key at one
    place written again at a later one, and with none repeated; its keys again in a nested
    object (another object's keys are not repeats)."""
    keys = [f"k{width}{n:02d}" for n in range(count)]
    for first in range(count):
        for second in range(first, count):
            names = list(keys)
            if second > first:
                names[second] = names[first]
            inner = "{" + ", ".join(f'"{k}": {n}' for n, k in enumerate(keys)) + "}"
            pairs = [f'"{k}": {inner if n == 0 else n}' for n, k in enumerate(names)]
            _, status = same(("{" + ", ".join(pairs) + "}").encode("utf-8"))
            assert (status is JsonWalk.UNDECIDED) == (second > first)


@pytest.mark.parametrize("length", [1, 9, 10, 11, 99, 100, 101, 1000, 1001])
def test_array_indexes_are_counted_across_every_carry(length: int) -> None:
    """The paths of arrays' elements past 9, 99 and 999, with fields inside some of them,
    and arrays in arrays (the outer index kept while the inner one counts)."""
    elements = [n if n % 3 else {"a": [n, {"b": n}], "c": [[1] * (n % 12)]} for n in range(length)]
    same(json.dumps(elements).encode())
    same(json.dumps({"x": elements}).encode(), max_depth=4)
    same(json.dumps([[elements]]).encode())


def test_array_indexes_under_every_limit_of_paths_and_values() -> None:
    """Each limit of characters of paths and of values, up to past the whole document, stops
    at the same field and status as the reference."""
    body = json.dumps([n if n % 4 else {"ab": [n] * 3} for n in range(112)]).encode()
    total = sum(len(path) for path, _ in walked(body)[0])
    for max_name_chars in range(total + 2):
        same(body, max_name_chars=max_name_chars)
    for max_values in range(len(walked(body)[0]) + 2):
        same(body, max_values=max_values)


@settings(max_examples=1500, deadline=None)
@given(body=json_bodies(), width=st.sampled_from(WIDTHS), length=st.integers(0, 40))
def test_a_long_string_anywhere_in_any_body_walks_as_json_loads_reads_it(
    body: bytes, width: str, length: int
) -> None:
    """A random body (valid or damaged, any encoding) whose first string is long, of any
    width, and the same body cut at its middle."""
    long_text = (width + "é\\n" + width * 3) * (length // 5 + 1)
    body = body.replace(b'"', b'"' + long_text.encode("utf-8") + b"xyz", 1)
    same(body, 40, 8, 120)
    same(body[: len(body) // 2], 40, 8, 120)


#: Values remembered without hits and with, in one body: the runs charged together are cut
#: by each value with hits and by each fresh one.
CLEAN = ["alpha", "bravo 12", "charlie", "delta@example.com", "echo", "1 Main Street"]
ATTACKS = ["1' OR '1'='1", "<script>alert(1)</script>"]


def _scan(scanner: object, memo: Memo, body: bytes, room: tuple[int, int]) -> tuple[object, ...]:
    hits: set[str] = set()
    status, values, chars, stop = scanner.scan_json(  # type: ignore[attr-defined]
        hits, memo, body, "", 0, 64, 128, 10_000, 8, 10**6, *room
    )
    return frozenset(hits), JsonWalk(status), values, chars, Stop(stop)


def test_values_remembered_without_hits_stop_where_they_stop_one_by_one() -> None:
    """A body scanned once (so its values are remembered, most without hits), then again
    with a few new values among them, at every room of values and of characters: the same
    hits, work and stop as the reference, and the same memo entries."""
    document = {f"r{n}": [CLEAN[n % 6], ATTACKS[n % 2] if n % 5 == 2 else CLEAN[(n + 1) % 6]]
                for n in range(9)}  # fmt: skip
    first = json.dumps(document).encode()
    document["r4"] = ["new one", "1 Main Street"]
    document["r7"] = ["another new one", "<script>alert(2)</script>"]
    second = json.dumps(document).encode()
    native, reference = scanners()
    full = (10_000, 10**6)
    _, _, total_values, total_chars, _ = _scan(reference, Memo(MEMO_BYTES), second, full)
    rooms = [(v, 10**6) for v in range(total_values + 2)]
    rooms += [(10_000, c) for c in range(total_chars + 2)]
    for room in rooms:
        native_memo, reference_memo = Memo(MEMO_BYTES), Memo(MEMO_BYTES)
        for body, body_room in ((first, full), (second, room), (second, room), (first, room)):
            found = _scan(native, native_memo, body, body_room)
            assert found == _scan(reference, reference_memo, body, body_room), (body, room)
            assert native_memo.items() == reference_memo.items()
