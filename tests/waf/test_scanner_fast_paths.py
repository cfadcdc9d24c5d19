"""The scanner's fast paths agree with their definitions: feature shortcuts with the full check,
the base64 decoder with `base64.b64decode`, planned chains with whole chains, and the scanner as
a whole (its value, part and body memos included) with a rule-by-rule reference on requests
made of fresh, attack-like, encoded and shared values."""

from __future__ import annotations

import base64
import binascii
import functools
import gzip
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from failsmall.engine.native import MEMO_BODY
from failsmall.engine.request import Request, RequestView
from failsmall.engine.signatures import SignatureScanner, chain
from failsmall.engine.signatures import scanner as scanner_module
from failsmall.engine.signatures.compiled import compile_matches
from failsmall.engine.signatures.reference import ReferenceValueScanner
from failsmall.engine.signatures.scanner import SHORT_BODY
from failsmall.engine.signatures.targets import TARGET_BIT
from failsmall.engine.signatures.transforms import (
    ALL_FEATURES,
    _features,
    base64_decode,
    features,
)
from failsmall.managed import managed_ruleset
from failsmall.model.rules import SignatureMatch, Target, Transform
from tests.waf.test_scanner import Reference, managed_scanner

FRAGMENTS = [
    "a",
    "Z",
    "1234",
    "4f9a1c0e",
    "/",
    "/./",
    "..",
    "//",
    "\\",
    "%",
    "%27",
    "%2527",
    "%u003c",
    "&",
    "&lt;",
    "&#x3c;",
    "&colon;",
    ";",
    "=",
    "+",
    " ",
    "  ",
    "\t",
    "\x00",
    "'",
    '"',
    "^",
    ",",
    "#",
    "--",
    "/*",
    "*/",
    "<script>",
    "alert(1)",
    " OR 1=1",
    "union select",
    "../etc/passwd",
    "${jndi:ldap://x}",
    "PHNjcmlwdD4=",
    "\\x3c",
    "\\u003c",
    "é",
    "cookie",
    "user-agent",
    "referer",
]
text = st.lists(st.sampled_from(FRAGMENTS), max_size=6).map("".join)
any_text = st.one_of(text, st.text(max_size=20))
header_names = st.one_of(
    st.sampled_from(["User-Agent", "Referer", "Cookie", "COOKIE", "Accept", "X-Note"]), any_text
)


@st.composite
def requests(draw: st.DrawFn) -> Request:
    query = "&".join(
        draw(st.lists(st.tuples(any_text, any_text).map("=".join), max_size=4))
        + draw(st.lists(any_text, max_size=2))
    )
    headers = tuple(draw(st.lists(st.tuples(header_names, any_text), max_size=6)))
    body = draw(st.one_of(st.just(b""), bodies()))
    if body:
        kind = "application/json" if body.startswith((b"{", b"[")) else "text/plain"
        headers = (*headers, ("Content-Type", kind))
    return Request(
        method=draw(st.sampled_from(["GET", "POST", "g%27et"])),
        path="/" + draw(any_text),
        query=query,
        headers=headers,
        body=body,
    )


def bodies() -> st.SearchStrategy[bytes]:
    """JSON documents of fragments, and the fragments as plain text."""
    document = st.dictionaries(any_text, st.one_of(any_text, st.lists(any_text, max_size=3)))
    return st.one_of(
        document.map(lambda d: json.dumps(d).encode()), any_text.map(lambda t: t.encode())
    )


MANAGED_MATCHES = {r.id: r.match for r in managed_ruleset().rules if r.match is not None}
_REFERENCE: list[Reference] = []


def reference() -> Reference:
    if not _REFERENCE:
        _REFERENCE.append(Reference(MANAGED_MATCHES))
    return _REFERENCE[0]


@settings(max_examples=150, deadline=None)
@given(request=requests())
def test_the_scanner_agrees_with_the_reference_on_fresh_values(request: Request) -> None:
    expected = reference().hits(request)
    scanner = managed_scanner()
    assert scanner.scan(RequestView(request)) == expected
    # and again from the memos of its values and parts (a body is now remembered whole:
    # nothing in it was new), and again from the body memo
    assert scanner.scan(RequestView(request)) == expected
    assert scanner.scan(RequestView(request)) == expected
    # and again from the memos of its values and parts alone, without the body memo
    forget_bodies(scanner)
    assert scanner.scan(RequestView(request)) == expected
    # and again with every value fresh: no value, part or body memo
    scanner._clear_memos()
    assert scanner.scan(RequestView(request)) == expected


def body_entries(scanner: SignatureScanner) -> list[object]:
    return [key for key, kind, _, _ in scanner.memo.items() if kind == MEMO_BODY]


def test_a_body_is_remembered_whole_once_seen_with_nothing_new() -> None:
    scanner = managed_scanner()
    scanner._clear_memos()
    attack = Request(
        "POST",
        "/search",
        query="page=7",
        headers=(("Cookie", "session=4f9a1c0e"), ("Content-Type", "application/json")),
        body=json.dumps({"q": "1 union select password from users", "n": "note"}).encode(),
    )
    expected = reference().hits(attack)
    assert expected, "the body holds an attack the managed rules find"
    for seen in range(1, 6):
        offered = scanner.memo.offered
        assert scanner.scan(RequestView(attack)) == expected
        match seen:
            case 1 | 2:  # new parts: offered one by one (stored the second time), not the body
                assert scanner.memo.offered > offered + 1
                assert body_entries(scanner) == []
            case 3:  # nothing new: the body is offered whole, and nothing else
                assert scanner.memo.offered == offered + 1
                assert body_entries(scanner) == []
            case 4:  # offered again: stored
                assert scanner.memo.offered == offered + 1
                assert len(body_entries(scanner)) == 1
            case _:  # found whole
                assert scanner.memo.offered == offered
    # the body with another head is found whole: its head is walked (its new parts offered),
    # its body is not read
    moved = attack._replace(
        method="PUT",
        path="/elsewhere",
        query="page=8&q=%3Cscript%3E",
        headers=(("Cookie", "session=0badcafe"), *attack.headers[1:]),
    )
    offered = scanner.memo.offered
    view = RequestView(moved)
    assert scanner.scan(view) == reference().hits(moved) != expected
    assert not view.body_read and len(body_entries(scanner)) == 1
    assert scanner.memo.offered > offered  # the head's new parts
    # with another type or coding, the same bytes are another body: read, and not found whole
    for headers in (
        (("Content-Type", "text/plain"),),
        (("Content-Type", "application/json; charset=utf-8"),),
        (("Content-Type", "application/json"), ("Content-Encoding", "identity")),
    ):
        retyped = attack._replace(headers=headers)
        view = RequestView(retyped)
        assert scanner.scan(view) == reference().hits(retyped)
        assert view.body_read
    # a body with a new value is remembered whole only when it comes again with nothing new,
    # twice
    other = attack._replace(body=b'{"q": "fresh words"}')
    before = len(body_entries(scanner))
    for _ in range(3):
        scanner.scan(RequestView(other))
        assert len(body_entries(scanner)) == before
    scanner.scan(RequestView(other))
    assert len(body_entries(scanner)) == before + 1
    # nor is a request without a body: its head walk is all its scan
    bodiless = Request("GET", "/search", query="page=7", headers=attack.headers[:1])
    for _ in range(3):
        scanner.scan(RequestView(bodiless))
    assert len(body_entries(scanner)) == before + 1


def test_a_body_that_reached_a_limit_is_never_remembered_whole() -> None:
    """Found whole, a body is not read: were one whose decoding reached a limit
    remembered, the limit would go unreported (and a WAF set to block over a limit would let
    it through) the third time it came. It is scanned in full each time instead."""
    scanner = managed_scanner()
    scanner._clear_memos()
    bomb = Request(
        "POST",
        "/upload",
        headers=(("Content-Type", "application/json"), ("Content-Encoding", "gzip")),
        body=gzip.compress(b'{"q": "' + b"x" * 200_000 + b'"}'),
    )
    for _ in range(6):
        view = RequestView(bomb)
        scanner.scan(view)
        assert [r.limit for r in view.body_limits] == ["waf_max_expansion"]
    assert body_entries(scanner) == []


def test_a_long_body_is_looked_up_whole_only_when_its_fingerprint_was_remembered() -> None:
    scanner = managed_scanner()
    scanner._clear_memos()
    sightings = scanner._sightings

    def order(number: int) -> Request:
        lines = [{"sku": f"SKU-{i:03d}", "note": f"item {i} of order {number}"} for i in range(9)]
        body = json.dumps({"order": number, "q": "1 union select password from users",
                           "lines": lines}).encode()  # fmt: skip
        return Request(
            "POST", "/orders", headers=(("Content-Type", "application/json"),), body=body
        )

    first, second = order(1001), order(1002)
    assert len(first.body) > SHORT_BODY and len(first.body) == len(second.body)
    expected = reference().hits(first)
    assert expected, "the body holds an attack the managed rules find"
    mark = sightings.fingerprint(first.body)
    assert mark and not sightings.may_be_remembered(mark)
    for seen in range(1, 6):  # offered whole the third time, stored the fourth
        offered = scanner.memo.offered
        assert scanner.scan(RequestView(first)) == expected
        if seen == 5:  # found whole: nothing offered
            assert scanner.memo.offered == offered
    assert sightings.may_be_remembered(mark) and len(body_entries(scanner)) == 1
    # the same length and other ends: another fingerprint, so not looked up whole; its values
    # are scanned (those it shares, remembered) and give what the reference gives
    other = sightings.fingerprint(second.body)
    assert other != mark and not sightings.may_be_remembered(other)
    assert scanner.scan(RequestView(second)) == reference().hits(second)
    # a short body has no fingerprint: it is always looked up
    assert sightings.fingerprint(b'{"q": 1}') == 0 and sightings.may_be_remembered(0)


@settings(max_examples=400, deadline=None)
@given(value=any_text, targets=st.sets(st.sampled_from(list(Target)), min_size=1))
def test_a_plan_runs_each_chain_from_its_first_triggered_step(
    value: str, targets: set[Target]
) -> None:
    """A planned chain, run from its first triggered step with features computed among those
    its targets' chains want, gives what the whole chain gives; an unplanned chain of the
    targets leaves the value unchanged."""
    planner = reference_values()
    mask = 0
    for target in targets:
        mask |= TARGET_BIT[target]
    known = planner._for_targets(mask)
    unchanged, triggered = planner._plan(known, mask, features(value, known.wanted))
    whole = {
        bit: chain([Transform(t) for t in transforms]) for transforms, bit in _chain_bits().items()
    }
    for bit, steps in triggered:
        result = value
        for _, transform in steps:
            result = transform(result)
        assert result == whole[bit](value)
    for bit, apply in whole.items():
        if bit & unchanged:
            assert apply(value) == value


@functools.cache
def reference_values() -> ReferenceValueScanner:
    """The readable value scanner of the managed matches, whose plans the test looks at."""
    return ReferenceValueScanner(*compile_matches(MANAGED_MATCHES))


def _chain_bits() -> dict[tuple[str, ...], int]:
    """Each transform chain of the managed matches with its bit, numbered as `compile` does."""
    bits: dict[tuple[str, ...], int] = {}
    for match in MANAGED_MATCHES.values():
        bits.setdefault(tuple(match.transforms), 1 << len(bits))
    return bits


ATTACKS = [
    "<script>alert(1)</script>",
    "%3Cscript%3E",
    "' OR 1=1--",
    "../../etc/passwd",
    "${jndi:ldap://x}",
    "PHNjcmlwdD4=",
    "UNION/**/SELECT",
]
#: One match per target, with chains of their own: the managed rules leave some targets out
#: (user agent, referer, method), and every target must be read as its definition says.
EVERY_TARGET = {
    f"t-{target.value}": SignatureMatch(
        targets=[target],
        transforms=[[], [Transform.URL_DECODE_UNI, Transform.LOWERCASE], [Transform.BASE64_DECODE]][
            index % 3
        ],
        patterns=[r"<script", r"etc/passwd", r"jndi:", r"union\s*select", r"^post$"],
    )
    for index, target in enumerate(Target)
}
_EVERY_TARGET: list[tuple[SignatureScanner, Reference]] = []


def every_target() -> tuple[SignatureScanner, Reference]:
    if not _EVERY_TARGET:
        _EVERY_TARGET.append((SignatureScanner.compile(EVERY_TARGET), Reference(EVERY_TARGET)))
    return _EVERY_TARGET[0]


@st.composite
def related_requests(draw: st.DrawFn) -> list[Request]:
    """Requests recombining a few query parts, headers and cookies, so that later ones meet
    parts, pairs and values memoised from earlier ones, in other targets and combinations."""
    pool = draw(st.lists(st.one_of(st.sampled_from(ATTACKS), any_text), min_size=1, max_size=4))
    part = st.sampled_from(pool)
    pair = st.tuples(part, part).map("=".join)
    cookie = st.lists(st.one_of(pair, part), max_size=3).map("; ".join)
    header = st.one_of(
        st.tuples(st.sampled_from(["Cookie", "cookie"]), cookie),
        st.tuples(st.one_of(header_names, part), part),
    )
    request = st.builds(
        Request,
        method=st.sampled_from(["GET", "POST"]),
        path=part.map(lambda p: "/" + p),
        query=st.lists(st.one_of(pair, part), max_size=4).map("&".join),
        headers=st.lists(header, max_size=4).map(tuple),
    )
    return draw(st.lists(request, min_size=2, max_size=4))


@settings(max_examples=150, deadline=None)
@given(batch=related_requests(), managed=st.booleans())
def test_the_scanner_agrees_with_the_reference_on_requests_sharing_parts(
    batch: list[Request], managed: bool
) -> None:
    scanner, rules = (managed_scanner(), reference()) if managed else every_target()
    scanner._clear_memos()
    for request in batch:
        assert scanner.scan(RequestView(request)) == rules.hits(request)


#: Bodies whose bytes a batch sends with several heads: read through a coding, or as another
#: type, some are attacks and some are not.
SHARED_BODIES = [
    json.dumps({"q": "1 union select password from users"}).encode(),
    b"q=%3Cscript%3Ealert(1)%3C/script%3E&n=note",
    gzip.compress(b"q=../../etc/passwd&n=1", mtime=0),
    gzip.compress(json.dumps({"q": "${jndi:ldap://x}"}).encode(), mtime=0),
    b'--b\r\nContent-Disposition: form-data; name="q"\r\n\r\n'
    b"<script>alert(1)</script>\r\n--b--\r\n",
    b'{"note": "plain words", "n": [1, 2]}',
]
BODY_TYPES = [
    "application/json",
    "application/x-www-form-urlencoded",
    "text/plain",
    "multipart/form-data; boundary=b",
    "multipart/form-data; boundary=c",
    "",
]
BODY_CODINGS: list[tuple[tuple[str, str], ...]] = [
    (),
    (("Content-Encoding", "gzip"),),
    (("Content-Encoding", "identity"),),
    (("content-encoding", "GZIP"),),
    (("Content-Encoding", "identity"), ("Content-Encoding", "gzip")),
]


@st.composite
def requests_sharing_bodies(draw: st.DrawFn) -> list[Request]:
    """Related requests (see `related_requests`), each sent twice, with bodies of one or two of
    `SHARED_BODIES` read as one or two of `BODY_TYPES` through any of `BODY_CODINGS`: so the
    same bytes come with other heads, and under the same type with other codings."""
    bodies = draw(st.lists(st.sampled_from(SHARED_BODIES), min_size=1, max_size=2))
    kinds = draw(st.lists(st.sampled_from(BODY_TYPES), min_size=1, max_size=2))
    batch = []
    for request in draw(related_requests()):
        for _ in range(2):
            kind = draw(st.sampled_from(kinds))
            headers = (
                *request.headers,
                *((("Content-Type", kind),) if kind else ()),
                *draw(st.sampled_from(BODY_CODINGS)),
            )
            body = draw(st.sampled_from(bodies))
            batch.append(request._replace(method="POST", headers=headers, body=body))
    return batch


@settings(max_examples=100, deadline=None)
@given(batch=requests_sharing_bodies(), managed=st.booleans())
def test_a_body_found_whole_gives_what_reading_it_under_its_new_head_gives(
    batch: list[Request], managed: bool
) -> None:
    """Bodies come again with other heads, types and codings, and again as they came (past
    their second offer, and their finding): each scan gives what the reference finds."""
    scanner, rules = (managed_scanner(), reference()) if managed else every_target()
    scanner._clear_memos()
    for _ in range(4):
        for request in batch:
            assert scanner.scan(RequestView(request)) == rules.hits(request)


@settings(max_examples=40, deadline=None)
@given(batch=related_requests(), managed=st.booleans())
def test_a_memo_that_forgets_its_oldest_entries_gives_the_same_hits(
    batch: list[Request], managed: bool
) -> None:
    scanner, rules = (managed_scanner(), reference()) if managed else every_target()
    scanner._clear_memos()
    budget = scanner.memo.max_bytes
    scanner.memo.max_bytes = 2 * scanner_module.MEMO_ENTRY_OVERHEAD + 64
    try:
        for request in batch:
            assert scanner.scan(RequestView(request)) == rules.hits(request)
            forget_bodies(scanner)
            assert scanner.scan(RequestView(request)) == rules.hits(request)
            assert scanner.memo.size <= scanner.memo.max_bytes
    finally:
        scanner.memo.max_bytes = budget
        scanner._clear_memos()


def forget_bodies(scanner: SignatureScanner) -> None:
    """Drop the whole-body entries of the scanner's memo, keeping the values and head parts."""
    for key, kind, _, _ in scanner.memo.items():
        if kind == MEMO_BODY:
            scanner.memo.discard(key, kind)


# Mostly plain text (words, separators, slashes), with some of what makes a value not plain.
plainish = st.lists(
    st.sampled_from([*"aZ/ .:?=+_-&%*#\\\t',(é", "09", "item"]),
    max_size=10,
).map("".join)


@settings(max_examples=600, deadline=None)
@given(value=st.one_of(plainish, any_text), wanted=st.integers(0, ALL_FEATURES))
def test_the_feature_shortcuts_find_what_the_full_check_finds(value: str, wanted: int) -> None:
    assert features(value, wanted) == _features(value, wanted) & wanted


def reference_base64_decode(value: str) -> str:
    """`base64_decode` as first written, with `base64.b64decode`."""
    stripped = value.strip()
    core = stripped.rstrip("=")
    shaped = len(stripped) >= 4 and all(c.isascii() and (c.isalnum() or c in "+/_-") for c in core)
    if not shaped or len(stripped) - len(core) > 2:
        return value
    padded = core + "=" * (-len(core) % 4)
    try:
        raw = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        return value
    return raw.decode("utf-8", errors="replace")


base64ish = st.text(alphabet="aZ09+/_-= \t.", max_size=14)


@settings(max_examples=600, deadline=None)
@given(value=st.one_of(base64ish, any_text))
def test_base64_decode_decodes_as_b64decode_does(value: str) -> None:
    assert base64_decode(value) == reference_base64_decode(value)
