"""Text dense with what the transforms look for, of every string kind, and values whose chains
share their work, give the readable reference's results.

The compiled search for one character (`\\`, `%`, NUL, `#`, the first of a pair like `/*`) reads
two- and four-byte text a vector at a time and answers every four vectors; `js_decode` copies the
runs between escapes itself when they are short; `cmd_line` writes every character and counts
only those it keeps; the UTF-8 form of a character comes from a table of the BMP. Each is held
here to the reference at every place, spacing and kind, and with characters that share the low
bits of a searched one. The chains of a value are run sharing prefixes and equal inputs, and each
distinct result scanned once: the last property holds that to each chain run on its own.
"""

from __future__ import annotations

import functools
import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from failsmall.engine import _native
from failsmall.engine.signatures.compiled import Chain, compile_matches
from failsmall.engine.signatures.native import native_value_scanner
from failsmall.engine.signatures.reference import ReferenceValueScanner
from failsmall.engine.signatures.transforms import TRANSFORMS
from failsmall.model.rules import Transform
from tests.waf.test_native_scanner import MORE_FRAGMENTS, target_masks
from tests.waf.test_scanner_fast_paths import MANAGED_MATCHES

#: A character that makes a run of each string kind: ASCII, Latin-1, two bytes, four bytes.
RUNS = ["a", "\xe9", "\ufffd", "\U0001f600"]
#: Characters sharing the low byte or the low sixteen bits of `\`, `%`, NUL or `#`: a search
#: comparing the wrong width would take them for the character.
LOOKALIKES = ["\u015c", "\u5c00", "\U0001005c", "\u0125", "\U00010025", "\u0100", "\U00010000"]
#: An escape of each form `js_decode` reads, and a backslash that escapes nothing special.
ESCAPES = ["\\n", "\\x41", "\\u0041", "\\101", '\\"', "\\\\", "\\q"]


def transformed(transform: Transform, text: str) -> tuple[str, str]:
    reference = TRANSFORMS[transform]
    return _native.transform(transform.value, text, reference), reference(text)


def assert_transform(transform: Transform, text: str) -> None:
    native, expected = transformed(transform, text)
    assert native == expected, (transform, ascii(text))


def test_escapes_every_few_characters_decode_as_the_references_in_each_kind() -> None:
    """Runs of every length up to past a short copy between escapes, from every offset, so an
    escape falls at every place of a vector and of a block of four."""
    for run in RUNS:
        for gap in range(0, 20):
            for offset in range(0, 18):
                for escape in ESCAPES:
                    text = run * offset + (escape + run * gap) * 5 + "\\"
                    assert_transform(Transform.JS_DECODE, text)


def test_each_searched_character_is_found_after_another_at_every_spacing() -> None:
    """The search from a place after an earlier find: every spacing between two of them, and
    the pairs (`/*`, `*/`, `--`, `%41`) whose first character is found before the second is read."""
    pieces = {
        Transform.URL_DECODE: ["%41", "%", "%4"],
        Transform.URL_DECODE_UNI: ["%u0041", "%41", "%"],
        Transform.REMOVE_NULLS: ["\x00"],
        Transform.REMOVE_COMMENTS: ["/*x*/", "/", "*/", "--\n", "#\n", "-"],
    }
    for run in RUNS:
        for transform, found in pieces.items():
            for first, second in itertools.product(found, repeat=2):
                for gap in range(0, 40):
                    text = run * 3 + first + run * gap + second + run * (40 - gap)
                    assert_transform(transform, text)


def test_a_character_sharing_low_bits_with_a_searched_one_is_not_taken_for_it() -> None:
    """A lookalike at every place of a run, alone and just before the searched character."""
    searched = {
        "\\": Transform.JS_DECODE,
        "%": Transform.URL_DECODE,
        "\x00": Transform.REMOVE_NULLS,
        "#": Transform.REMOVE_COMMENTS,
    }
    for run in RUNS:
        for lookalike in LOOKALIKES:
            for at in range(0, 70):
                text = run * at + lookalike + "41" + run * (69 - at)
                for char, transform in searched.items():
                    assert_transform(transform, text)
                    assert_transform(transform, text.replace("41", char + "41", 1))


#: What `cmd_line` and the whitespace transforms look at: deleted characters, whitespace of one
#: byte and of more (U+3000, U+2028; U+00A0 and U+0085 are Latin-1), `,`, `/` and `(` (no space
#: before them), NUL, and characters that are none of these in each kind.
CMD_ALPHABET = [
    "a",
    " ",
    ",",
    "\\",
    '"',
    "'",
    "^",
    "/",
    "(",
    "\t",
    "\xa0",
    "\x85",
    "\x00",
    "\u3000",
    "\u2028",
    "\ufffd",
    "\U0001f600",
]
WHITESPACE_TRANSFORMS = [
    Transform.CMD_LINE,
    Transform.COMPRESS_WHITESPACE,
    Transform.REMOVE_WHITESPACE,
    Transform.REMOVE_NULLS,
]


def test_every_short_text_of_the_command_line_characters_is_the_references() -> None:
    """Every text of up to three of those characters, after a prefix of each kind."""
    for length in range(0, 4):
        for letters in itertools.product(CMD_ALPHABET, repeat=length):
            for prefix in ("", "\xe9", "\u4e2d", "\U0001f600"):
                text = prefix + "".join(letters)
                for transform in WHITESPACE_TRANSFORMS:
                    assert_transform(transform, text)


#: The same with runs the transforms treat as a whole.
CMD_PIECES = [*CMD_ALPHABET, "b", "  ", ", ", " /", " ("]


@settings(max_examples=1500, deadline=None)
@given(
    text=st.lists(st.sampled_from(CMD_PIECES), max_size=200).map("".join),
    transform=st.sampled_from(WHITESPACE_TRANSFORMS),
)
def test_the_command_line_and_whitespace_transforms_are_the_references(
    text: str, transform: Transform
) -> None:
    assert_transform(transform, text)


def test_the_utf8_form_of_every_character_of_the_bmp_and_past_it() -> None:
    """Each BMP character (surrogates included) alone in text of its kind, between ASCII, and
    after a character of four bytes; and characters past the BMP."""
    past = [0x10000, 0x1F600, 0x10FFFF]
    for c in [*range(0x10000), *past]:
        for text in (chr(c), "a" + chr(c) + "b", "\U0001f600" + chr(c)):
            assert _native.utf8(text) == text.encode("utf-8", "replace"), hex(c)


@functools.cache
def scanners() -> tuple[_native.ValueScanner, ReferenceValueScanner, tuple[Chain, ...]]:
    chains, patterns = compile_matches(MANAGED_MATCHES)
    return native_value_scanner(chains, patterns), ReferenceValueScanner(chains, patterns), chains


def chain_by_chain(value: str, targets: int) -> tuple[frozenset[str], int]:
    """The hits and characters of `value`: every chain of `targets` run in full on its own, with
    no features, no sharing and no skipping, and each distinct result scanned with its chains."""
    _, reference, chains = scanners()
    results: dict[str, int] = {}
    for chain in chains:
        if chain.targets & targets:
            result = value
            for transform in chain.transforms:
                result = TRANSFORMS[transform](result)
            results[result] = results.get(result, 0) | chain.bit
    hits: frozenset[str] = frozenset()
    for result, bits in results.items():
        hits |= reference.scan(result, targets, bits)
    return hits, sum(map(len, results))


#: Pieces that some transforms change and others leave as they are: escapes of each decoder,
#: whitespace, comments, upper case, NULs, attack fragments; and text none changes.
CHANGING = [
    "\\x3c",
    "%3c",
    "%u003c",
    "&lt;",
    "\\\\",
    "  ",
    "\t",
    "/**/",
    "--",
    "#",
    "\x00",
    "SELECT",
    "\u3000",
    '"',
    ",",
    "/./",
    *MORE_FRAGMENTS,
]
UNCHANGED = ["abc", "select", "x1", "\xe9", "\u4e2d", "\ufffd", "\U0001f600", ".", "="]


@st.composite
def shared_values(draw: st.DrawFn) -> str:
    """Text of unchanged filler of any kind with a few changing pieces (none at all for some),
    short or repeated past the length from which chains share equal inputs."""
    filler = draw(st.lists(st.sampled_from(UNCHANGED), min_size=1, max_size=6).map("".join))
    changing = draw(st.lists(st.sampled_from(CHANGING), max_size=4))
    text = filler
    for piece in changing:
        at = draw(st.integers(min_value=0, max_value=len(text)))
        text = text[:at] + piece + text[at:]
    if draw(st.booleans()):
        text = text * (1100 // len(text) + 1)
    return text


@settings(max_examples=150, deadline=None)
@given(value=shared_values(), targets=target_masks)
def test_shared_chains_and_distinct_results_find_what_each_chain_run_alone_finds(
    value: str, targets: int
) -> None:
    native, _, _ = scanners()
    assert native.scan_value(value, targets) == chain_by_chain(value, targets)


def test_a_value_no_transform_changes_and_one_every_chain_changes_alike() -> None:
    """Exhaustive edge cases: a value every chain leaves as it is (one result), one every chain
    makes the same of, attacks that several chains leave alike (their patterns must all be
    kept), and long forms of each, of each kind."""
    native, _, _ = scanners()
    for run in RUNS:
        for value in (
            "abc" + run,
            "<script>alert(1)</script>" + run,
            "1 union select password from users" + run,
            ";cat /etc/passwd" + run,
            "../etc/passwd" + run,
            ("<script>alert(1)</script>" + run) * 60,
            "\\" + run,
            "abc\x00" + run,
            ("abc" + run) * 400,
            ("a\\\\b" + run) * 400,
            ("x%41 /*y*/" + run) * 300,
        ):
            for targets in (1, 2, 4, 8, 16, 32, 64, 128, (1 << 16) - 1):
                assert native.scan_value(value, targets) == chain_by_chain(value, targets), (
                    ascii(value[:20]),
                    targets,
                )
