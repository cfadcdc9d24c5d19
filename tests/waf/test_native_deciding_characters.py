"""A decoding transform changes only text that holds its character (`%`, `&`, `\\`, NUL), which
the compiled transforms look for before anything else, and a result holding `\\n` is scanned on
its own rather than with others. Each character at every position of text of each width and of
lengths around 64, transforms and scans as the reference does, after transforms that make the
character (a decoded `%26` is an `&`) and from the results chains share."""

from __future__ import annotations

import functools

from hypothesis import given, settings
from hypothesis import strategies as st

from failsmall.engine import _native
from failsmall.engine.native import Memo
from failsmall.engine.signatures.compiled import compile_matches
from failsmall.engine.signatures.native import native_value_scanner
from failsmall.engine.signatures.reference import ReferenceValueScanner
from failsmall.engine.signatures.targets import TARGET_BIT
from failsmall.engine.signatures.transforms import TRANSFORMS
from failsmall.model.rules import SignatureMatch, Target, Transform

DECODERS = [
    Transform.URL_DECODE,
    Transform.URL_DECODE_UNI,
    Transform.HTML_ENTITY_DECODE,
    Transform.JS_DECODE,
    Transform.REMOVE_NULLS,
]
#: Each decoder's character in a piece it decodes, and `\n`.
PIECES = ["%41", "%u0041", "&lt;", "&#65;", "\\x41", "\\u0041", "\x00", "\n", "&", "%", "\\"]
#: Text around the pieces: of each width.
FILLERS = ["k", "é", "\u0100", "\U0001f600"]
#: Short lengths and lengths around 64 characters.
LENGTHS = [0, 1, 7, 8, 62, 63, 64, 65, 66]


def texts() -> list[str]:
    """Every piece at every position of filler text of each width and length."""
    out = []
    for filler in FILLERS:
        for length in LENGTHS:
            for piece in PIECES:
                for at in range(length + 1):
                    out.append(filler * at + piece + filler * (length - at))
    return out


def test_each_decoder_changes_text_with_its_character_anywhere_as_the_reference() -> None:
    for text in texts():
        for transform in DECODERS:
            reference = TRANSFORMS[transform]
            assert _native.transform(transform.value, text, reference) == reference(text), (
                transform,
                text,
            )


ARGS = TARGET_BIT[Target.ARG_VALUES]
#: Chains whose decoders follow a transform that makes their character (`%2526` is `%26`, then
#: `&`), and chains that share their first steps; a pattern that spans a `\n` (no `.` of the
#: candidate form matches one).
MARKED_MATCHES = {
    "made": SignatureMatch(
        targets=[Target.ARG_VALUES],
        transforms=[
            Transform.LOWERCASE,
            Transform.URL_DECODE,
            Transform.URL_DECODE,
            Transform.HTML_ENTITY_DECODE,
            Transform.JS_DECODE,
            Transform.REMOVE_NULLS,
        ],
        patterns=["k[<a]k", "kk"],
        caseless=False,
    ),
    "shared": SignatureMatch(
        targets=[Target.ARG_VALUES],
        transforms=[Transform.URL_DECODE, Transform.JS_DECODE],
        patterns=[r"q[a&<]q"],
        caseless=False,
    ),
    "shared2": SignatureMatch(
        targets=[Target.ARG_VALUES],
        transforms=[Transform.URL_DECODE, Transform.HTML_ENTITY_DECODE],
        patterns=[r"q[a<]q"],
        caseless=False,
    ),
    "newline": SignatureMatch(targets=[Target.ARG_VALUES], patterns=["y.y"], caseless=False),
}
#: Pieces that decode to what the patterns need, through one or two decoders.
MADE = ["%2526lt;", "%26lt;", "%255cx61", "%5cx61", "&lt;", "%00", "\\x00", "\x00", "y\ny", "K"]


@functools.cache
def scanners() -> tuple[_native.ValueScanner, ReferenceValueScanner]:
    chains, patterns = compile_matches(MARKED_MATCHES)
    return native_value_scanner(chains, patterns), ReferenceValueScanner(chains, patterns)


def made_values() -> list[str]:
    out = []
    for filler in ("", "é", "\u0100"):
        for length in (0, 1, 60, 62, 63, 64):
            for piece in MADE:
                for left in ("k", "q", "y"):
                    text = left + piece + left
                    for at in sorted({0, length // 2, length}):
                        out.append(filler * at + text + filler * (length - at))
    return out


def test_values_whose_transforms_make_a_decoders_character_scan_as_the_reference() -> None:
    native, reference = scanners()
    for value in made_values():
        assert native.scan_value(value, ARGS) == reference.scan_value(value, ARGS), value


def test_values_scanned_together_with_a_newline_anywhere_find_what_the_reference_finds() -> None:
    native, reference = scanners()
    values = made_values()
    for start in range(0, len(values), 24):
        sources = dict.fromkeys(values[start : start + 24], ARGS)
        found = native.scan_sources(sources, Memo(1 << 24), 1 << 30, 1 << 50)
        expected = reference.scan_sources(sources, Memo(1 << 24), 1 << 30, 1 << 50)
        assert found == expected, sources


def test_a_newline_at_every_position_of_a_value_scanned_with_others_is_found() -> None:
    native, reference = scanners()
    others = dict.fromkeys((f"o{i}" for i in range(16)), ARGS)
    for filler in FILLERS:
        for length in LENGTHS:
            for at in range(length + 1):
                value = filler * at + "y\ny" + filler * (length - at)
                sources = {value: ARGS, **others}
                found = native.scan_sources(sources, Memo(1 << 24), 1 << 30, 1 << 50)
                expected = reference.scan_sources(sources, Memo(1 << 24), 1 << 30, 1 << 50)
                assert found == expected, value
                assert "newline" in found[0], value


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.lists(st.sampled_from(["k", "q", "y", "K", "é", "\u0100", *PIECES, *MADE])).map("".join),
        min_size=1,
        max_size=30,
    )
)
def test_any_values_scan_alone_and_together_as_the_reference(values: list[str]) -> None:
    native, reference = scanners()
    for value in values:
        assert native.scan_value(value, ARGS) == reference.scan_value(value, ARGS), value
    sources = dict.fromkeys(values, ARGS)
    found = native.scan_sources(sources, Memo(1 << 24), 1 << 30, 1 << 50)
    assert found == reference.scan_sources(sources, Memo(1 << 24), 1 << 30, 1 << 50)
