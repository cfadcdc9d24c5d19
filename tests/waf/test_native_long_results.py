"""Long values and results (a binary body's text, a big text/plain body) take the scanner's paths
for long text, which must find exactly what the readable reference finds: a long result made by
several chains is scanned with each chain's database rather than once with every pattern, and
the features of wide text are found in one pass over it. Each property draws long text of every
string kind, with the characters those paths key on and attack fragments at random places."""

from __future__ import annotations

import functools

from hypothesis import given, settings
from hypothesis import strategies as st

from failsmall.engine import _native
from failsmall.engine.signatures.compiled import compile_matches
from failsmall.engine.signatures.native import _subsets, native_value_scanner
from failsmall.engine.signatures.reference import ReferenceValueScanner
from failsmall.engine.signatures.transforms import ALL_FEATURES, TRANSFORMS, features
from failsmall.model.rules import Transform
from tests.waf.test_native_scanner import MORE_FRAGMENTS, target_masks
from tests.waf.test_scanner_fast_paths import MANAGED_MATCHES


@functools.cache
def scanners() -> tuple[_native.ValueScanner, ReferenceValueScanner, list[int]]:
    chains, patterns = compile_matches(MANAGED_MATCHES)
    chain_bits = [chain.bit for chain in chains]
    return (
        native_value_scanner(chains, patterns),
        ReferenceValueScanner(chains, patterns),
        chain_bits,
    )


#: Filler of each string kind: ASCII, Latin-1, two bytes (replacement characters, CJK), four
#: bytes, and the whitespace, NUL and punctuation the transforms and features look for.
FILLER = [
    "a",
    "Z",
    " ",
    "  ",
    "\t",
    "\x00",
    "\xe9",
    "\xa0",
    "\ufffd",
    "\u4e2d",
    "\u3000",
    "\u2028",
    "\U0001f600",
    "\ud800",
    "#",
    "--",
    "/*",
    "*/",
    ",",
    "'",
    '"',
    "^",
    "&",
    ";",
    "%",
    "\\",
    "/",
    ".",
]
pieces = st.lists(st.sampled_from(FILLER + MORE_FRAGMENTS), min_size=1, max_size=40).map("".join)
#: Text of the characters the features and the searches key on, with one wide character so the
#: text is not Latin-1: each feature present or absent by a single character or pair.
EDGE = " /*-#%&;\\\x00\"'^,.(=aZ1\t\n\xe9\ufffd\u4e2d\u3000\U0001f600"
edge_text = st.tuples(
    st.text(alphabet=st.sampled_from(EDGE), max_size=200),
    st.sampled_from(["\ufffd", "\u4e2d", "\U0001f600", "\u3000"]),
    st.integers(min_value=0, max_value=200),
).map(lambda p: p[0][: p[2]] + p[1] + p[0][p[2] :])
#: A run of one character of two or four bytes with one edge character (or a pair of them) at
#: any place: a search that skips some places in a block misses it.
one_in_a_run = st.tuples(
    st.sampled_from(["\ufffd", "\u4e2d", "\U0001f600", "\xe9"]),
    st.integers(min_value=0, max_value=300),
    st.text(alphabet=st.sampled_from(EDGE), min_size=1, max_size=2),
    st.integers(min_value=0, max_value=300),
).map(lambda p: p[0] * p[1] + p[2] + p[0] * p[3])


@st.composite
def long_text(draw: st.DrawFn) -> str:
    """Filler repeated past 1,024 characters, with a few pieces put in at random places."""
    filler = draw(pieces)
    text = filler * (1100 // len(filler) + 1)
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        at = draw(st.integers(min_value=0, max_value=len(text)))
        text = text[:at] + draw(pieces) + text[at:]
    return text


@settings(max_examples=300, deadline=None)
@given(text=long_text(), targets=target_masks, data=st.data())
def test_a_long_result_of_several_chains_scans_to_the_references_hits(
    text: str, targets: int, data: st.DataObject
) -> None:
    native, reference, chain_bits = scanners()
    bits = data.draw(st.sets(st.sampled_from(chain_bits), min_size=1))
    chains = sum(bits)
    assert native.scan(text, targets, chains) == reference.scan(text, targets, chains)


@settings(max_examples=200, deadline=None)
@given(text=long_text(), targets=target_masks)
def test_a_long_value_scans_to_the_references_hits_and_characters(text: str, targets: int) -> None:
    native, reference, _ = scanners()
    assert native.scan_value(text, targets) == reference.scan_value(text, targets)


@settings(max_examples=1500, deadline=None)
@given(
    text=st.one_of(long_text(), edge_text, one_in_a_run),
    wanted=st.one_of(st.just(ALL_FEATURES), st.integers(min_value=0, max_value=ALL_FEATURES)),
)
def test_the_features_of_wide_text_are_the_references(text: str, wanted: int) -> None:
    assert _native.features(text, wanted, features) == features(text, wanted)


@settings(max_examples=1500, deadline=None)
@given(
    text=st.one_of(long_text(), edge_text, edge_text.map(lambda t: t * 9), one_in_a_run),
    transform=st.sampled_from(list(Transform)),
)
def test_each_transform_of_wide_text_is_the_references(text: str, transform: Transform) -> None:
    reference = TRANSFORMS[transform]
    assert _native.transform(transform.value, text, reference) == reference(text)


def test_several_chains_of_the_managed_ruleset_have_a_database_of_their_own() -> None:
    """Several chains of the managed ruleset have a subset of their own, so a long result of
    those chains is scanned with theirs and the properties above run that path as well as the
    scan with every pattern."""
    chains, patterns = compile_matches(MANAGED_MATCHES)
    chain_subsets = {chain_mask for targets, chain_mask, _ in _subsets(patterns)}
    own = {chain.bit for chain in chains} & chain_subsets
    assert len(own) >= 2
    assert len(own) < len(chains)


#: The transforms that first look for one character (`%`, `\`, NUL, a space, `#`) and leave
#: text without it as it is.
SEARCHED = {
    "%": [Transform.URL_DECODE, Transform.URL_DECODE_UNI],
    "\\": [Transform.JS_DECODE],
    "\x00": [Transform.REMOVE_NULLS],
    " ": [Transform.REMOVE_WHITESPACE, Transform.COMPRESS_WHITESPACE],
    "#": [Transform.REMOVE_COMMENTS],
}


def test_a_searched_character_is_found_at_every_place_of_a_run_of_each_kind() -> None:
    for run in ("a", "\xe9", "\ufffd", "\U0001f600"):
        for char, transforms in SEARCHED.items():
            for at in range(140):
                text = run * at + char + "41" + run * (139 - at)
                for transform in transforms:
                    reference = TRANSFORMS[transform]
                    expected = reference(text)
                    assert _native.transform(transform.value, text, reference) == expected, (
                        run,
                        char,
                        at,
                        transform,
                    )
