"""The scanner's fast paths agree with their definitions: one-pass target extraction with the
extractors target by target, planned chains with whole chains, and the scanner as a whole with
a rule-by-rule reference on requests made of fresh, attack-like and encoded values."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from failsmall.engine.request import Request, RequestView
from failsmall.engine.signatures import chain
from failsmall.engine.signatures.targets import HEAD_TARGETS, TARGET_BIT, collect, sources_of
from failsmall.engine.signatures.transforms import features
from failsmall.managed import managed_ruleset
from failsmall.model.rules import Target, Transform
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
    return Request(
        method=draw(st.sampled_from(["GET", "POST", "g%27et"])),
        path="/" + draw(any_text),
        query=query,
        headers=headers,
    )


@settings(max_examples=300, deadline=None)
@given(request=requests(), targets=st.sets(st.sampled_from(sorted(HEAD_TARGETS))))
def test_collect_finds_what_the_extractors_find(request: Request, targets: set[Target]) -> None:
    mask = 0
    for target in targets:
        mask |= TARGET_BIT[target]
    assert collect(RequestView(request), mask) == sources_of(RequestView(request), targets)


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
    # and again with every value fresh: no value memo, no request memo
    scanner._memo.clear()
    scanner._requests.clear()
    assert scanner.scan(RequestView(request)) == expected


@settings(max_examples=400, deadline=None)
@given(value=any_text, targets=st.sets(st.sampled_from(list(Target)), min_size=1))
def test_a_plan_runs_each_chain_from_its_first_triggered_step(
    value: str, targets: set[Target]
) -> None:
    """A planned chain, run from its first triggered step with features computed among those
    its targets' chains want, gives what the whole chain gives; an unplanned chain of the
    targets leaves the value unchanged."""
    scanner = managed_scanner()
    mask = 0
    for target in targets:
        mask |= TARGET_BIT[target]
    known = scanner._for_targets(mask)
    unchanged, triggered = scanner._plan(known, mask, features(value, known.wanted))
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


def _chain_bits() -> dict[tuple[str, ...], int]:
    """Each transform chain of the managed matches with its bit, numbered as `compile` does."""
    bits: dict[tuple[str, ...], int] = {}
    for match in MANAGED_MATCHES.values():
        bits.setdefault(tuple(match.transforms), 1 << len(bits))
    return bits
