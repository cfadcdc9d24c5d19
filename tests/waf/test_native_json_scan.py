"""A JSON body walked and scanned in one call (`scan_json`, `_jsonscan.c`) gives what the
readable way gives (`json.loads`, the reference flattening, the reference `scan_sources`): the
same hits, values, characters and stop, and the same memo entries in the same order, at any
limits; values remembered are found by their characters, whatever their width; and a request
scanned this way gets the verdict, work and body fields it gets when its fields are parsed
first."""

from __future__ import annotations

import json
import random

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from failsmall.engine.body import BodyFormat, JsonWalk, parse_body
from failsmall.engine.native import MEMO_MAX_VALUE, Memo
from failsmall.engine.request import Request, RequestView
from failsmall.engine.signatures.compiled import compile_matches
from failsmall.engine.signatures.native import native_value_scanner
from failsmall.engine.signatures.scanner import MEMO_BYTES
from failsmall.engine.work import Stop
from failsmall.model.traffic import Limits
from tests.waf.test_head_walk import rooms
from tests.waf.test_memo import store
from tests.waf.test_native_json_walk import json_bodies
from tests.waf.test_native_scanner import (
    MANAGED_MATCHES,
    json_documents,
    request_scanners,
    scanners,
)

#: JSON texts: damaged and odd ones (encodings, escapes, repeated keys), and documents of
#: attack fragments written with and without ASCII escapes.
bodies = st.one_of(
    json_bodies(),
    st.tuples(json_documents, st.booleans()).map(
        lambda d: json.dumps(d[0], ensure_ascii=d[1]).encode("utf-8", "surrogatepass")
    ),
)
limits = st.tuples(st.integers(0, 40), st.integers(0, 8), st.integers(0, 400))
bits = st.tuples(st.sampled_from([0, 32]), st.sampled_from([0, 64]), st.sampled_from([0, 128]))
Scan = tuple[set[str], int, int, int, Stop]


def scan(
    scanner: object,
    memo: Memo,
    body: bytes,
    bits: tuple[int, int, int],
    limits: tuple[int, int, int],
    room: tuple[int, int],
) -> Scan:
    hits: set[str] = set()
    text = body.decode("utf-8", errors="replace")
    status, values, chars, stop = scanner.scan_json(  # type: ignore[attr-defined]
        hits, memo, body, text, *bits, *limits, *room
    )
    return hits, JsonWalk(status), values, chars, Stop(stop)


@settings(max_examples=800, deadline=None)
@given(
    body=bodies,
    bits=bits,
    limits=limits,
    room=rooms,
    tiny_memo=st.booleans(),
)
def test_a_json_body_is_scanned_as_the_reference_scans_its_fields(
    body: bytes,
    bits: tuple[int, int, int],
    limits: tuple[int, int, int],
    room: tuple[int, int],
    tiny_memo: bool,
) -> None:
    native, reference = scanners()
    budget = 4 * 128 + 200 if tiny_memo else MEMO_BYTES
    native_memo, reference_memo = Memo(budget), Memo(budget)
    for _ in range(2):  # the second time from the memo
        found = scan(native, native_memo, body, bits, limits, room)
        expected = scan(reference, reference_memo, body, bits, limits, room)
        if found[1] in (JsonWalk.INVALID, JsonWalk.UNDECIDED):
            # nothing scanned: the caller scans the fields json.loads makes, if any
            assert found == (set(), found[1], 0, 0, Stop.NONE)
            assert len(native_memo) == 0
            return
        assert found == expected
        assert native_memo.items() == reference_memo.items()
        assert found[2] <= room[0] and found[3] <= room[1]


@settings(max_examples=300, deadline=None)
@given(value=st.text(max_size=12), escaped=st.booleans())
def test_a_remembered_value_is_found_by_its_characters_whatever_their_width(
    value: str, escaped: bool
) -> None:
    """A value is looked up by its characters and the hash a str of them has, without the str:
    an entry planted under the value is found, in a body of any width and escaping."""
    assume(value not in ("k", "wide", "\U0001f600"))  # else one value of both targets
    native, _ = scanners()
    memo = Memo(MEMO_BYTES)
    store(memo, value, 128, frozenset({"planted"}), 1, 7, len(value))
    store(memo, "k", 64, frozenset({"name"}), 1, 1, 1)
    # a wide character elsewhere in the body makes the walk read the value in a wider kind
    document = {"k": value, "wide": "\U0001f600"}
    body = json.dumps(document, ensure_ascii=escaped).encode("utf-8", "surrogatepass")
    hits, status, *_ = scan(native, memo, body, (0, 64, 128), (40, 8, 400), (99, 10**9))
    assert status == JsonWalk.COMPLETE
    expected = {"name"} | ({"planted"} if value else set())
    assert expected <= hits
    assert "planted" not in scan(native, Memo(MEMO_BYTES), body, (0, 64, 128), (40, 8, 400),
                                 (99, 10**9))[0]  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(
    body=bodies,
    max_values=st.integers(min_value=16, max_value=80),
    max_chars=st.sampled_from([64 * 1024, 16 * 1024 * 1024]),
    depth=st.integers(min_value=1, max_value=8),
)
def test_a_json_request_is_answered_as_when_its_fields_are_parsed_first(
    body: bytes, max_values: int, max_chars: int, depth: int
) -> None:
    request = Request(
        "POST", "/api", "", (("Content-Type", "application/json"), ("User-Agent", "t")), body
    )
    limits = Limits(
        waf_max_values=max_values, waf_max_transformed_chars=max_chars, waf_max_body_depth=depth
    )
    native, reference = request_scanners()
    native._clear_memos()
    reference._clear_memos()
    expected = reference.inspect(RequestView(request, limits=limits))
    fused = RequestView(request, limits=limits)
    assert native.inspect(fused) == expected
    fused_memo = native.memo.items()
    native._clear_memos()
    parsed_first = RequestView(request, limits=limits)
    parsed = parsed_first.body
    assert native.inspect(parsed_first) == expected
    assert native.memo.items() == fused_memo
    # the body the walk left for others to read is the body parsing gives
    assert fused.body == parsed == parse_body("application/json", body, False, limits)
    assert fused.body_limits == parsed_first.body_limits


def test_a_json_body_scanned_in_one_call_makes_its_fields_only_when_read() -> None:
    native, _ = request_scanners()
    body = json.dumps({"q": "1' OR '1'='1", "items": [{"sku": "A-1"}] * 3}).encode()
    request = Request("POST", "/api", "", (("Content-Type", "application/json"),), body)
    view = RequestView(request, limits=Limits())
    result = native.inspect(view)
    assert result.hits and result.reached is None
    assert view.body._make_fields is not None  # not made yet
    assert view.body_args["q"] == ["1' OR '1'='1"]
    assert view.body.fields[0] == ("q", "1' OR '1'='1")


def test_a_payload_past_the_values_limit_of_a_json_body_is_an_over_limit_never_a_pass() -> None:
    native, reference = request_scanners()
    limits = Limits(waf_max_values=64)
    for at, hit in ((10, True), (5_000, False)):
        values = [f"item {i}" for i in range(10_000)]
        values[at] = "1' OR '1'='1' --"
        body = json.dumps({"rows": values}).encode()
        request = Request("POST", "/api", "", (("Content-Type", "application/json"),), body)
        view = RequestView(request, limits=limits)
        result = native.inspect(view)
        assert result == reference.inspect(RequestView(request, limits=limits))
        assert bool(result.hits) is hit
        assert result.values <= 64
        # the scan stopped at the values limit, and the walk says it stopped adding fields
        assert result.reached is not None and result.reached.limit == "waf_max_values"
        assert [r.limit for r in view.body_limits] == ["waf_max_values"]
        assert len(view.body.fields) == 64


def test_a_body_sent_as_json_that_is_not_json_is_scanned_as_text() -> None:
    native, reference = request_scanners()
    body = b'{"q": "1\' OR \'1\'=\'1\' --", "cut": ['
    request = Request("POST", "/api", "", (("Content-Type", "application/json"),), body)
    view = RequestView(request, limits=Limits())
    result = native.inspect(view)
    assert result == reference.inspect(RequestView(request, limits=Limits()))
    assert result.hits  # the payload in its text is found
    assert view.body == parse_body("application/json", body, False, Limits())
    assert view.body.format is BodyFormat.MALFORMED


#: Values around the memo's bounds: short ones of every width (escaped or not in the body),
#: repeated ones, and ones just under, at and over the longest value remembered.
#: Attack fragments, as values and as names (one text of two targets is two memo keys).
attacks = st.sampled_from(["1' OR '1'='1", "<script>alert(1)</script>", "../../etc/passwd"])
memo_values = st.one_of(
    st.text(max_size=8),
    attacks,
    st.sampled_from(["a", "é", "😀"]),
    st.integers(MEMO_MAX_VALUE - 2, MEMO_MAX_VALUE + 2).map(lambda n: "a" * (n - 1) + "é"),
    st.integers(MEMO_MAX_VALUE - 1, MEMO_MAX_VALUE + 1).map(lambda n: "x" * n),
)
memo_documents = st.dictionaries(
    st.one_of(attacks, st.sampled_from(["a", "é", "k😀"])),
    st.lists(memo_values, max_size=6),
    max_size=4,
)


@settings(max_examples=150, deadline=None)
@given(
    documents=st.lists(st.tuples(memo_documents, st.booleans()), min_size=1, max_size=4),
    budget=st.sampled_from([0, 3 * 128 + 40, 12 * 128 + 300, MEMO_BYTES]),
    order=st.randoms(use_true_random=False),
)
def test_a_value_remembered_gives_what_a_fresh_scan_gives_whatever_the_memo_holds(
    documents: list[tuple[dict[str, list[str]], bool]], budget: int, order: random.Random
) -> None:
    """Bodies scanned one after another through one memo (small enough that they push each
    other's values out, or large enough that the second round finds them all) give, each time,
    what the reference gives the same body with nothing remembered: fresh, remembered and
    reference scans find the same hits at the same cost."""
    native, reference = scanners()
    memo = Memo(budget)
    body_bits, limits, room = (32, 64, 128), (10_000, 8, 10_000), (10_000, 16 * 1024 * 1024)
    bodies = [
        json.dumps(d, ensure_ascii=escaped).encode("utf-8", "surrogatepass")
        for d, escaped in documents
    ]
    rounds = bodies + order.sample(bodies, len(bodies))
    for body in rounds:
        found = scan(native, memo, body, body_bits, limits, room)
        assert found == scan(reference, Memo(MEMO_BYTES), body, body_bits, limits, room)
        assert memo.size <= budget


#: A few texts that come back again and again as names and as values: short ones of every
#: width, longer ones with a wide character, an attack, numbers and constants as written in
#: a document, and values just under and over the longest one remembered.
pool = st.sampled_from(
    [
        "a", "0", "1.5", "true", "null", "é", "ß\u0130", "k😀", "\u2028",
        "sixteen-wide-\u0130", "an-8-char😀name",
        "1' OR '1'='1", "<script>alert(1)</script>",
        "x" * MEMO_MAX_VALUE, "x" * (MEMO_MAX_VALUE + 1), "é" * (MEMO_MAX_VALUE + 1),
    ]
)  # fmt: skip
leaves = st.one_of(
    pool, st.integers(-3, 3), st.sampled_from([1.5, True, None]), st.text(max_size=4)
)
crowded_documents = st.dictionaries(
    pool, st.one_of(leaves, st.lists(leaves, max_size=30)), min_size=1, max_size=12
)


@settings(max_examples=150, deadline=None)
@given(
    documents=st.lists(st.tuples(crowded_documents, st.booleans()), min_size=1, max_size=3),
    budget=st.sampled_from([0, 5 * 128 + 60, 40 * 128 + 600, MEMO_BYTES]),
    bits=st.sampled_from([(32, 64, 128), (0, 64, 128), (0, 64, 0), (0, 0, 128)]),
)
def test_a_body_of_values_repeated_as_names_and_values_scans_as_the_reference(
    documents: list[tuple[dict[str, object], bool]],
    budget: int,
    bits: tuple[int, int, int],
) -> None:
    """Many fields whose values repeat near and far apart, names that are also values (one
    text of both targets), escaped or not, of any width, short and too long to remember:
    each body scanned fresh, then again from what the memo kept (through a memo small enough
    that bodies push each other's values out, or one that holds them all), gives what the
    reference gives it, with the same memo entries in the same order."""
    native, reference = scanners()
    native_memo, reference_memo = Memo(budget), Memo(budget)
    limits, room = (10_000, 8, 1_000_000), (10_000, 16 * 1024 * 1024)
    bodies = [
        json.dumps(d, ensure_ascii=escaped).encode("utf-8", "surrogatepass")
        for d, escaped in documents
    ]
    for body in bodies + bodies:
        found = scan(native, native_memo, body, bits, limits, room)
        assert found == scan(reference, reference_memo, body, bits, limits, room)
        assert found == scan(reference, Memo(MEMO_BYTES), body, bits, limits, room)
        assert native_memo.items() == reference_memo.items()
        assert native_memo.size <= budget


def test_bodies_merged_in_the_table_the_scanner_keeps_scan_as_the_reference_across_its_wrap() -> (
    None
):
    """The table a scanner merges bodies' repeated values in is kept from one body to the next,
    its slots in use by one body at a time (a generation of 16 bits, the table cleared when it
    wraps). Small bodies whose values repeat, each a value from the one before, sent past two
    wraps, and a body too large for the kept table in between (it has one of its own): every
    body scanned from a fresh native scanner gives what the reference gives it."""
    _, reference = scanners()
    native = native_value_scanner(*compile_matches(MANAGED_MATCHES))  # its table from the start
    limits, room = (20_000, 8, 1_000_000), (20_000, 16 * 1024 * 1024)
    bits = (32, 64, 128)

    def body(i: int) -> bytes:
        return json.dumps(
            {"a": [f"v{i}", f"v{i - 1}", f"v{i}", "union select"], f"k{i}": f"v{i - 1}"}
        ).encode()

    large = json.dumps({"items": [f"x{j % 9000}" for j in range(18_000)]}).encode()
    checked = {*range(0, 4), *range(65_530, 65_542), *range(131_066, 131_078)}
    memo = Memo(0)  # nothing remembered: every value is merged and scanned each time
    for i in range(131_080):
        sent = large if i == 65_535 else body(i)
        if i in checked or sent is large:
            found = scan(native, memo, sent, bits, limits, room)
            assert found == scan(reference, Memo(0), sent, bits, limits, room), i
        else:
            scan(native, memo, sent, bits, limits, room)
