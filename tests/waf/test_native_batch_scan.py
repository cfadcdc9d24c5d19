"""Fresh values scanned together (one candidate scan of all their results, then each result it
flags scanned on its own) give exactly what the reference gives scanning them one by one: the
same hits, values, characters, stop and memo entries, with patterns chosen to break a naive
batch (anchors that would match at a neighbour's edge, matches that run across neighbours,
word boundaries at the separators, classes that would match a separator, caseless and UTF-8
patterns) and with patterns that match
at nearly every byte, which stop the candidate scan and leave every result to its own scan."""

from __future__ import annotations

import functools
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from failsmall.engine import _native
from failsmall.engine.native import Memo
from failsmall.engine.signatures.compiled import compile_matches
from failsmall.engine.signatures.native import native_value_scanner
from failsmall.engine.signatures.reference import ReferenceValueScanner
from failsmall.engine.signatures.targets import TARGET_BIT
from failsmall.engine.work import Stop
from failsmall.model.rules import SignatureMatch, Target, Transform

NAMES = TARGET_BIT[Target.BODY_ARG_NAMES]
VALUES = TARGET_BIT[Target.BODY_ARG_VALUES]
HEADERS = TARGET_BIT[Target.HEADER_VALUES]
COOKIES = TARGET_BIT[Target.COOKIE_VALUES]

#: Patterns a batch of results separated by `\n` would get wrong if it took their matches as
#: they come: each is matched on values of some targets after some transforms.
EDGE_PATTERNS = [
    r"^abc",
    r"abc$",
    r"\Aabc",
    r"abc\z",
    r"abc\Z",
    r"\babc\b",
    r"\Babc",
    r"a.*b",
    r"[^x]+y",
    r"$",
    r"x\z|\Ay",
    r"[\]A]bc",
    r"\\Az",
    r"[[:alpha:]]\z",
    r"\Q\A\Ez",
    r"^é+t$",
    r"\w+ü",
    r"\Aß",
]
EDGE_MATCHES = {
    "plain": SignatureMatch(
        targets=[Target.BODY_ARG_VALUES, Target.HEADER_VALUES],
        patterns=EDGE_PATTERNS[:9],
        caseless=False,
    ),
    "caseless": SignatureMatch(
        targets=[Target.BODY_ARG_NAMES], patterns=EDGE_PATTERNS[3:13], caseless=True
    ),
    "lowered": SignatureMatch(
        targets=[Target.BODY_ARG_VALUES],
        transforms=[Transform.LOWERCASE],
        patterns=EDGE_PATTERNS[9:],
        caseless=False,
    ),
    "squeezed": SignatureMatch(
        targets=[Target.BODY_ARG_NAMES, Target.BODY_ARG_VALUES],
        transforms=[Transform.URL_DECODE, Transform.REMOVE_WHITESPACE],
        patterns=[r"\Aab\z", r"^c.d$", r"\bq\b"],
        caseless=False,
    ),
    # few patterns of a target no other match reads: its values' results have a database of
    # their own, so a batch of their own
    "cookie": SignatureMatch(
        targets=[Target.COOKIE_VALUES], patterns=[r"\Aab", r"b\z", r"^x$"], caseless=False
    ),
    # classes that would match the `\n` between results, which the candidate forms take
    # out of them: a result holds none, so a match inside one is found as before
    "classes": SignatureMatch(
        targets=[Target.BODY_ARG_VALUES, Target.HEADER_VALUES],
        patterns=[
            r"[;&|\n]cat",
            r"\s+z",
            r"[^`]`q",
            r"\Wd\D",
            r"[\r\n]y",
            r"[\n]x$",
            r"[\n-\r]b",
            r"^\s*c",
            r"[^\s]\sq",
        ],
        caseless=False,
    ),
    "unicode": SignatureMatch(
        targets=[Target.HEADER_VALUES, Target.BODY_ARG_NAMES],
        patterns=[r"\AＡ", r"é\z", r"^\w$", r"ü.*é"],
    ),
}
#: Patterns that match at nearly every byte, with one that matches rarely beside them.
STORM_MATCHES = {
    "any": SignatureMatch(targets=[Target.BODY_ARG_VALUES], patterns=[r"\w", r"\S", r"."]),
    "rare": SignatureMatch(
        targets=[Target.BODY_ARG_VALUES, Target.BODY_ARG_NAMES],
        patterns=[r"^abc$", r"x\z"],
        caseless=False,
    ),
}


@functools.cache
def scanners(which: str) -> tuple[_native.ValueScanner, ReferenceValueScanner]:
    matches = EDGE_MATCHES if which == "edge" else STORM_MATCHES
    chains, patterns = compile_matches(matches)
    return native_value_scanner(chains, patterns), ReferenceValueScanner(chains, patterns)


PIECES = ["abc", "ABC", "a", "b", "c", "x", "y", "q", "z", "\\", "A", "]", " ", "\n", ".", "d"]
PIECES += ["é", "É", "t", "ü", "ß", "SS", "Ａ", "%20", "%0a", "\u00a0", "\r", "-", "\ud800"]
PIECES += [";", "`", "|", "\t", "9", "cat"]
values = st.one_of(
    st.lists(st.sampled_from(PIECES), max_size=8).map("".join),
    st.text(max_size=6),
    st.tuples(st.sampled_from(PIECES), st.integers(1, 3000)).map(lambda p: p[0] * p[1]),
)
masks = st.sampled_from(
    [NAMES, VALUES, HEADERS, COOKIES, NAMES | VALUES, VALUES | HEADERS, COOKIES | NAMES, 7 << 20]
)
sources = st.dictionaries(values, masks, max_size=60)
rooms = st.tuples(
    st.one_of(st.just(1 << 30), st.integers(0, 60)),
    st.one_of(st.just(1 << 50), st.integers(0, 4000)),
)


SourcesScan = tuple[set[str], int, int, int]


def scan_both(
    which: str, sources: dict[str, int], room: tuple[int, int], memo_bytes: int
) -> tuple[SourcesScan, SourcesScan, Memo, Memo]:
    native, reference = scanners(which)
    native_memo, reference_memo = Memo(memo_bytes), Memo(memo_bytes)
    found = native.scan_sources(sources, native_memo, *room)
    expected = reference.scan_sources(sources, reference_memo, *room)
    return found, expected, native_memo, reference_memo


@settings(max_examples=1500, deadline=None)
@given(sources=sources, room=rooms, tiny_memo=st.booleans())
def test_values_scanned_together_find_what_each_finds_alone(
    sources: dict[str, int], room: tuple[int, int], tiny_memo: bool
) -> None:
    found, expected, native_memo, reference_memo = scan_both(
        "edge", sources, room, 900 if tiny_memo else 1 << 24
    )
    assert found == expected
    assert native_memo.items() == reference_memo.items()


@settings(max_examples=300, deadline=None)
@given(sources=st.dictionaries(values, masks, min_size=20, max_size=200), room=rooms)
def test_values_scanned_together_past_the_candidate_match_bound_are_each_scanned(
    sources: dict[str, int], room: tuple[int, int]
) -> None:
    found, expected, native_memo, reference_memo = scan_both("storm", sources, room, 1 << 24)
    assert found == expected
    assert native_memo.items() == reference_memo.items()


def test_a_storm_of_candidate_matches_still_finds_the_rare_hit_at_the_end() -> None:
    """Thousands of values, each matched at every byte by `any`: the candidate scan stops at
    its bound, and the value at the end that `rare` matches is still found."""
    many = {f"value {i} of many": VALUES for i in range(3000)}
    many["abc"] = NAMES
    found, expected, _, _ = scan_both("storm", many, (1 << 30, 1 << 50), 1 << 24)
    assert found == expected
    assert found[0] == {"any", "rare"}
    assert found[3] == Stop.NONE


@settings(max_examples=400, deadline=None)
@given(
    document=st.lists(st.dictionaries(values, values, max_size=6), max_size=12),
    room=rooms,
)
def test_a_json_body_of_fresh_values_is_scanned_as_the_reference_scans_it(
    document: list[dict[str, str]], room: tuple[int, int]
) -> None:
    native, reference = scanners("edge")
    body = json.dumps(document).encode("utf-8", "surrogatepass")
    text = body.decode("utf-8", "replace")
    results = []
    for scanner in (native, reference):
        memo, hits = Memo(1 << 24), set[str]()
        out = scanner.scan_json(
            hits, memo, body, text, HEADERS, NAMES, VALUES, 10_000, 32, 1 << 20, *room
        )
        results.append((hits, out, memo.items()))
    assert results[0] == results[1]
