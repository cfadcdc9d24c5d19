"""The compiled head walk (`scan_head`) gives what the readable reference walk gives on random
request heads: the same hits, the same work counted, the same limit reached at the same place,
and the same entries remembered in the same order; and it stays bounded on hostile heads."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from failsmall.engine.native import (
    MEMO_COOKIE_PART,
    MEMO_HEADER,
    MEMO_MAX_VALUE,
    Memo,
    extension,
    has_header,
    index_headers,
)
from failsmall.engine.request import Request, RequestView
from failsmall.engine.signatures.scanner import MEMO_BYTES
from failsmall.engine.signatures.targets import HEAD_TARGETS, TARGET_BIT
from failsmall.engine.work import Stop
from failsmall.model.rules import Target
from failsmall.model.traffic import Limits
from tests.waf.test_native_scanner import request_scanners, scanners, values

HEAD_MASK = sum(TARGET_BIT[t] for t in HEAD_TARGETS)
head_masks = st.one_of(
    st.just(HEAD_MASK),
    st.sets(st.sampled_from(sorted(HEAD_TARGETS))).map(
        lambda targets: sum(TARGET_BIT[t] for t in targets)
    ),
)
query_parts = st.one_of(
    st.tuples(values, values).map("=".join),
    values,
    st.sampled_from(["", "a+b=c+d", "x=%3Cscript%3E", "%ff=%", "id=1%27+or+1=1", "theme=dark"]),
)
header_names = st.sampled_from(
    ["User-Agent", "Cookie", "COOKIE", "Referer", "X-A", "Accept", "cooKie", "", "Ｃookie"]
)
cookie_headers = st.lists(
    st.one_of(st.tuples(values, values).map("=".join), values, st.just(" =x"), st.just("a= ")),
    max_size=6,
).map(";".join)
heads = st.tuples(
    st.sampled_from(["GET", "POST", "get", "PUT\x00", "ＧＥＴ"]),
    values.map(lambda v: "/" + v),
    st.lists(query_parts, max_size=6).map("&".join),
    st.lists(
        st.one_of(
            st.tuples(header_names, values),
            st.tuples(st.just("Cookie"), cookie_headers),
        ),
        max_size=8,
    ).map(tuple),
)
rooms = st.tuples(
    st.one_of(st.integers(0, 12), st.just(10_000)),
    st.one_of(st.integers(0, 400), st.just(16 * 1024 * 1024)),
)


def walk(
    scanner: object,
    memo: Memo,
    mask: int,
    head: tuple[str, str, str, tuple[tuple[str, str], ...]],
    room: tuple[int, int],
) -> tuple[set[str], int, int, Stop]:
    method, path, query, headers = head
    hits: set[str] = set()
    values, chars, stop = scanner.scan_head(  # type: ignore[attr-defined]
        hits, memo, mask, method, path, query, headers, *room
    )
    return hits, values, chars, Stop(stop)


@settings(max_examples=400, deadline=None)
@given(
    mask=head_masks,
    head=heads,
    room=rooms,
    again=st.booleans(),
    tiny_memo=st.booleans(),
)
def test_the_head_walk_is_the_references(
    mask: int,
    head: tuple[str, str, str, tuple[tuple[str, str], ...]],
    room: tuple[int, int],
    again: bool,
    tiny_memo: bool,
) -> None:
    native, reference = scanners()
    budget = 3 * 128 + 200 if tiny_memo else MEMO_BYTES
    native_memo, reference_memo = Memo(budget), Memo(budget)
    for _ in range(3 if again else 1):  # stored on the second walk, found on the third
        found = walk(native, native_memo, mask, head, room)
        assert found == walk(reference, reference_memo, mask, head, room)
        assert native_memo.items() == reference_memo.items()
        _, values, chars, _ = found
        assert values <= room[0] and chars <= room[1]


@settings(max_examples=150, deadline=None)
@given(head=heads, max_values=st.integers(16, 30), max_chars=st.just(64 * 1024))
def test_a_request_under_tight_limits_is_answered_as_the_reference_answers_it(
    head: tuple[str, str, str, tuple[tuple[str, str], ...]], max_values: int, max_chars: int
) -> None:
    """(The bundle's smallest limits; `scan_head` is held to the reference with tighter
    ones above.)"""
    method, path, query, headers = head
    request = Request(method, path, query, headers, b"")
    limits = Limits(waf_max_values=max_values, waf_max_transformed_chars=max_chars)
    native, reference = request_scanners()
    native._clear_memos()
    reference._clear_memos()
    expected = reference.inspect(RequestView(request, limits=limits))
    assert native.inspect(RequestView(request, limits=limits)) == expected
    # and again from the memo
    assert native.inspect(RequestView(request, limits=limits)) == expected


def test_the_walk_is_built_with_the_targets_bits() -> None:
    bits = {t.name: TARGET_BIT[t] for t in Target if t.name in extension.HEAD_TARGET_BITS}
    assert bits == extension.HEAD_TARGET_BITS
    assert {Target[name] for name in extension.HEAD_TARGET_BITS} == set(HEAD_TARGETS)


def test_thousands_of_headers_stop_at_the_values_limit_in_header_order() -> None:
    native, reference = scanners()
    headers = tuple((f"X-H{i}", f"value {i}") for i in range(20_000))
    for room in ((50_000, 10**9), (1_000, 10**9), (10**6, 20_000)):
        memo_a, memo_b = Memo(MEMO_BYTES), Memo(MEMO_BYTES)
        head = ("GET", "/", "", headers)
        found = walk(native, memo_a, HEAD_MASK, head, room)
        assert found == walk(reference, memo_b, HEAD_MASK, head, room)
        assert memo_a.size <= MEMO_BYTES
    _, values, _, stop = found
    assert stop is Stop.MAX_CHARS and values < 20_000 * 2


def test_a_hundred_thousand_distinct_cookies_stay_within_the_memo() -> None:
    native, _ = scanners()
    cookie = "; ".join(f"c{i}=v{i}x" for i in range(100_000))
    memo = Memo(1024 * 1024)
    for _ in range(3):
        _, values, _, stop = walk(
            native, memo, HEAD_MASK, ("GET", "/", "", (("Cookie", cookie),)), (10**6, 10**9)
        )
        # path, URI, method, the header's name, and every cookie's name and value: the header
        # is one part of the head, counted whole
        assert (values, stop) == (4 + 2 * 100_000, Stop.NONE)
        assert memo.size <= memo.max_bytes
    # offered once a walk, far apart (the filter of sightings is emptied many times a walk),
    # the cookies are one-off keys to the memo: few are stored (those whose bits others set)
    assert len(memo) < 0.05 * 2 * 100_000


def test_lone_surrogates_and_values_past_the_memo_size_are_walked_like_the_reference() -> None:
    native, reference = scanners()
    long_value = "' or 1=1 -- " + "a" * (2 * MEMO_MAX_VALUE)
    head = (
        "GET",
        "/\ud800/<script>",
        "q=\udfff&x=" + long_value,
        (("User-Agent", "\ud83d sqlmap"), ("Cookie", "s=\udc80; t=" + long_value)),
    )
    memo_a, memo_b = Memo(MEMO_BYTES), Memo(MEMO_BYTES)
    found = walk(native, memo_a, HEAD_MASK, head, (10_000, 10**9))
    assert found == walk(reference, memo_b, HEAD_MASK, head, (10_000, 10**9))
    assert found[0]  # the payloads hit
    assert memo_a.items() == memo_b.items()
    assert all(len(str(key)) <= 4 * MEMO_MAX_VALUE for key, _, _, _ in memo_a.items())
    # and a second walk, with the long values scanned again (not remembered), counts the same
    assert walk(native, memo_a, HEAD_MASK, head, (10_000, 10**9)) == found


def test_a_head_that_is_not_pairs_of_str_is_refused_with_what_it_must_be() -> None:
    native, _ = scanners()
    for headers in ((("Host",),), (("Host", b"bytes"),), (["Host", "a"],)):
        with pytest.raises(TypeError, match=r"\(name, value\) of str"):
            index_headers(headers)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"\(name, value\) of str"):
            walk(native, Memo(4096), HEAD_MASK, ("GET", "/", "", headers), (10, 10**6))  # type: ignore[arg-type]


def indexed_in_python(
    headers: tuple[tuple[str, str], ...],
) -> tuple[dict[str, list[str]], list[str]]:
    by_name: dict[str, list[str]] = {}
    for name, value in headers:
        by_name.setdefault(name.lower(), []).append(value)
    return by_name, [name.lower() for name, _ in headers]


@given(
    headers=st.lists(
        st.tuples(st.one_of(header_names, st.sampled_from(["İ", "\u212a", "X-É"]), values), values)
    ).map(tuple)
)
def test_headers_are_indexed_by_their_lowercase_names_in_order(
    headers: tuple[tuple[str, str], ...],
) -> None:
    assert index_headers(headers) == indexed_in_python(headers)


@given(
    headers=st.lists(
        st.tuples(st.one_of(header_names, st.sampled_from(["İ", "\u212a", "X-É"]), values), values)
    ).map(tuple),
    name=st.one_of(
        st.sampled_from(["authorization", "cookie", "i̇", "k", "x-é", "Authorization", ""]),
        header_names.map(str.lower),
    ),
)
def test_a_header_is_found_by_its_lowercase_name_as_in_the_index(
    headers: tuple[tuple[str, str], ...], name: str
) -> None:
    assert has_header(headers, name) == (name in indexed_in_python(headers)[0])
    view = RequestView(Request("GET", "/", headers=headers))
    assert view.has_header(name) == (name in view.headers)  # and once indexed
    assert view.has_header(name) == (name in indexed_in_python(headers)[0])


def test_has_header_refuses_what_is_not_pairs_of_str_with_what_they_must_be() -> None:
    for headers in ((("Host",),), (("Host", b"bytes"),), (["Host", "a"],)):
        with pytest.raises(TypeError, match=r"\(name, value\) of str"):
            has_header(headers, "host")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="has_header"):
        has_header([("Host", "a")], "host")  # type: ignore[arg-type]


def test_a_cookie_header_past_the_values_limit_is_walked_only_as_far_as_the_limit() -> None:
    native, reference = scanners()
    cookie = "; ".join(f"c{i}=v{i}x" for i in range(100_000))
    head = ("GET", "/", "", (("Cookie", cookie), ("User-Agent", "sqlmap/1.7")))
    memo_a, memo_b = Memo(MEMO_BYTES), Memo(MEMO_BYTES)
    for _ in range(2):  # what a walk offers the memo is stored the second time
        found = walk(native, memo_a, HEAD_MASK, head, (1_000, 10**9))
        assert found == walk(reference, memo_b, HEAD_MASK, head, (1_000, 10**9))
        assert found == (set(), 3, 2, Stop.MAX_VALUES)  # path, URI, method; then the cookies
        assert memo_a.items() == memo_b.items()
    # the walks went as far as the limit, not further: 997 values were left for the header,
    # its name and 498 cookies fit, the 499th passed them; and the header, walked in part, is
    # not remembered
    parts = [key for key, kind, _, _ in memo_a.items() if kind == MEMO_COOKIE_PART]
    assert len(parts) == 499
    assert memo_a.get(head[3][0], MEMO_HEADER) is None


@pytest.mark.parametrize("count", [1, 7, 48, 49, 120])
def test_the_headers_the_walk_remembers_are_found_by_the_memos_own_lookup(count: int) -> None:
    """Headers are hashed once per walk (the first 48 before it, any further one on the way) and
    remembered under that hash (on the second walk that offers them): the memo's own lookup
    finds each, and a third walk finds them all remembered."""
    native, _ = scanners()
    headers = (
        *((f"X-H{i}", f"value {i}") for i in range(count - 1)),
        ("Cookie", "session=4f9a1c0e; theme=dark"),
    )
    memo = Memo(MEMO_BYTES)
    head = ("GET", "/", "", headers)
    first = walk(native, memo, HEAD_MASK, head, (10_000, 10**9))
    assert walk(native, memo, HEAD_MASK, head, (10_000, 10**9)) == first
    for pair in headers:
        assert memo.get(pair, MEMO_HEADER) is not None, pair
    size = len(memo)
    assert walk(native, memo, HEAD_MASK, head, (10_000, 10**9)) == first
    assert len(memo) == size  # nothing remembered twice


@settings(max_examples=200, deadline=None)
@given(
    sources=st.dictionaries(values, st.sampled_from([64, 128, 192, 32768]), max_size=30),
    room=rooms,
    tiny_memo=st.booleans(),
)
def test_a_bodys_values_are_walked_and_remembered_as_the_reference_does(
    sources: dict[str, int], room: tuple[int, int], tiny_memo: bool
) -> None:
    native, reference = scanners()
    budget = 4 * 128 + 200 if tiny_memo else MEMO_BYTES
    native_memo, reference_memo = Memo(budget), Memo(budget)
    for _ in range(2):
        found = native.scan_sources(sources, native_memo, *room)
        assert found == reference.scan_sources(sources, reference_memo, *room)
        assert native_memo.items() == reference_memo.items()


def test_a_body_with_more_values_than_the_memo_holds_finds_most_of_them_the_next_time() -> None:
    native, reference = scanners()
    sources = {f"Customer {i}": 128 for i in range(1_200)}
    budget = 1_000 * (len("Customer 1000") + 128)
    native_memo, reference_memo = Memo(budget), Memo(budget)
    for _ in range(3):
        found = native.scan_sources(sources, native_memo, 10**6, 10**9)
        assert found == reference.scan_sources(sources, reference_memo, 10**6, 10**9)
        assert native_memo.items() == reference_memo.items()
    # values are remembered after the walk, so each walk finds what the last one remembered
    # (about 1,000 of 1,200) instead of pushing out each value just before reading it
    assert native_memo.get("Customer 0", 128) is not None
    assert native_memo.get("Customer 1199", 128) is not None
