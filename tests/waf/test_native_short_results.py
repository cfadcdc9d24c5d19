"""Bytes decoded as UTF-8 with replacement characters (the results of `base64_decode`, the
bytes of percent escapes) are decoded in C (`utf8_replace`): each ill-formed sequence becomes
one U+FFFD exactly as `bytes.decode("utf-8", "replace")` replaces it, in a string of the same
kind. The short values a browser sends (a session id, a page number) look like base64: their
decoded results, of every length and kind, scan to the reference's hits alone, per chain and
scanned together. The URI a head walk joins (path `?` query) is the reference's for text of
every kind."""

from __future__ import annotations

import base64
import functools
import itertools
import sys

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

#: Bytes at the edges of UTF-8's classes: ASCII, continuation bytes (and the narrower ranges
#: allowed after E0, ED, F0 and F4), lead bytes never allowed (C0, C1, F5-FF) and allowed.
EDGE_BYTES = [0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF]
EDGE_BYTES += [0xE0, 0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF]
#: Text of each width around a sequence: nothing, ASCII, two-, three- and four-byte characters.
CONTEXTS = [b"", b"a", "\u00e9".encode(), "\u4e2d".encode(), "\U0001f600".encode()]


def assert_decodes_as_python(data: bytes) -> None:
    out = _native.utf8_replace(data)
    expected = data.decode("utf-8", "replace")
    assert out == expected, data
    # the same kind and ASCII flag as Python's string (compared through a new string: see
    # test_native_decoders)
    assert out.isascii() == expected.isascii(), data
    assert sys.getsizeof(out + "\x00") == sys.getsizeof(expected + "\x00"), data


def test_every_one_and_two_byte_sequence_decodes_as_python() -> None:
    assert_decodes_as_python(b"")
    for first in range(256):
        assert_decodes_as_python(bytes([first]))
        for second in range(256):
            assert_decodes_as_python(bytes([first, second]))


def test_every_lead_and_second_byte_with_each_edge_byte_after_them() -> None:
    for first, second in itertools.product(range(256), range(256)):
        for third in EDGE_BYTES:
            assert_decodes_as_python(bytes([first, second, third]))
            if first >= 0xC0 and 0x80 <= second < 0xC0:
                for fourth in EDGE_BYTES:
                    assert_decodes_as_python(bytes([first, second, third, fourth]))


def test_each_edge_sequence_at_every_position_of_text_of_each_width() -> None:
    sequences = [bytes(p) for n in (1, 2, 3) for p in itertools.product(EDGE_BYTES, repeat=n)]
    for sequence in sequences:
        for before, after in itertools.product(CONTEXTS, repeat=2):
            for count in (0, 1, 3):
                assert_decodes_as_python(before * count + sequence + after * count)


@settings(max_examples=3000, deadline=None)
@given(data=st.one_of(st.binary(max_size=64), st.binary(min_size=200, max_size=600)))
def test_any_bytes_decode_as_python(data: bytes) -> None:
    assert_decodes_as_python(data)


def test_every_length_around_the_stack_buffer_with_a_sequence_at_its_end() -> None:
    # Up to 256 bytes are decoded on the stack, more on the heap: every length across that
    # edge, each filler width, and each edge sequence cut by the end or ending there.
    tails = [b"", b"\xc3\xa9", b"\xe4\xb8", b"\xf0\x9f\x98\x80", b"\xed\xa0\x80", b"\xff"]
    for filler in CONTEXTS[1:]:
        for length in range(240, 270):
            body = (filler * length)[:length]
            for tail in tails:
                assert_decodes_as_python(body + tail)
                assert_decodes_as_python(tail + body)


def test_base64_of_every_two_bytes_and_of_edge_sequences_decodes_as_the_reference() -> None:
    reference = TRANSFORMS[Transform.BASE64_DECODE]
    payloads = [bytes([a, b]) for a in range(256) for b in range(256)]
    payloads += [bytes(p) for p in itertools.product(EDGE_BYTES, repeat=3)]
    payloads += [bytes(p) + b"\xbf" for p in itertools.product(EDGE_BYTES, repeat=3)]
    for payload in payloads:
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(payload).decode()
            for value in (text, text.rstrip("="), "\u3000" + text):
                assert _native.transform("base64_decode", value, reference) == reference(value)


# ---- short base64-shaped values --------------------------------------------------------------

COOKIES = TARGET_BIT[Target.COOKIE_VALUES]
HEADERS = TARGET_BIT[Target.HEADER_VALUES]
ARGS = TARGET_BIT[Target.ARG_VALUES]
#: Patterns of decoded results (replacement characters, Latin-1, NUL) and of values as written,
#: and enough others that the cookie values and the decoded results get databases of their own.
SHORT_MATCHES = {
    "cookie": SignatureMatch(
        targets=[Target.COOKIE_VALUES], patterns=["abc", r"x\d{2}", "é{2}"], caseless=False
    ),
    "decoded": SignatureMatch(
        targets=[Target.HEADER_VALUES, Target.COOKIE_VALUES],
        transforms=[Transform.BASE64_DECODE],
        patterns=["i\xb7i", "\ufffdii", r"\x00\d\d"],
        caseless=False,
    ),
    **{
        f"wide{i}": SignatureMatch(
            targets=[Target.ARG_VALUES, Target.HEADER_VALUES],
            patterns=[f"q{i}", f"{'z' * (i + 1)}\\b", "w" if i == 0 else f"^w{i}$"],
            caseless=False,
        )
        for i in range(16)
    },
}
#: Characters of each width and those the patterns above and base64 are made of.
ALPHABET = ["a", "b", "c", "x", "1", "é", "\ufffd", "\U0001f600", "q", "z", "w", "i", "=", "+"]


@functools.cache
def scanners() -> tuple[_native.ValueScanner, ReferenceValueScanner]:
    chains, patterns = compile_matches(SHORT_MATCHES)
    return native_value_scanner(chains, patterns), ReferenceValueScanner(chains, patterns)


def short_values() -> list[str]:
    """Every string of up to three characters of ALPHABET, and base64 of every payload of up to
    four of the bytes the decoded patterns need (valid and invalid UTF-8)."""
    values = ["".join(p) for n in range(4) for p in itertools.product(ALPHABET, repeat=n)]
    pieces = [b"i", b"\xb7", b"\xc2", b"\xff", b"\x00", b"1", b"a"]
    for n in range(1, 5):
        for payload in itertools.product(pieces, repeat=n):
            values.append(base64.b64encode(b"".join(payload)).decode())
    return values


def test_every_short_value_of_each_target_scans_to_the_references_hits() -> None:
    native, reference = scanners()
    for value in short_values():
        for targets in (COOKIES, HEADERS, ARGS, COOKIES | HEADERS, COOKIES | ARGS):
            assert native.scan_value(value, targets) == reference.scan_value(value, targets), (
                value,
                targets,
            )


def test_every_short_result_of_each_chain_scans_to_the_references_hits() -> None:
    native, reference = scanners()
    chains = [1, 2, 3]
    for value in short_values():
        for targets in (COOKIES, HEADERS, ARGS):
            for chain in chains:
                assert native.scan(value, targets, chain) == reference.scan(value, targets, chain)


def test_short_values_scanned_together_find_what_the_reference_finds() -> None:
    native, reference = scanners()
    values = short_values()
    for start in range(0, len(values), 40):
        sources = {
            value: COOKIES | (HEADERS if i % 2 else 0)
            for i, value in enumerate(values[start : start + 40])
        }
        found = native.scan_sources(sources, Memo(1 << 24), 1 << 30, 1 << 50)
        expected = reference.scan_sources(sources, Memo(1 << 24), 1 << 30, 1 << 50)
        assert found == expected, sources


# ---- the URI of a head walk -----------------------------------------------------------------

URI = TARGET_BIT[Target.URI]


def test_the_uri_joins_a_path_and_a_query_of_every_kind_as_the_reference() -> None:
    # The URI (path `?` query) is built in C: the memo holds it by value, so a string of
    # another kind than Python's (or another text) is another key and other hits.
    from tests.waf.test_native_scanner import scanners as managed_scanners

    native, reference = managed_scanners()
    texts = ["", "a", "é", "\u4e2d", "\U0001f600", "/x?<script>", "é\U0001f600a"]
    for path, query in itertools.product(texts, repeat=2):
        for at in range(len(path) + 1):
            head = ("GET", "/" + path[:at] + "/" + path[at:], query, ())
            native_memo, reference_memo = Memo(1 << 24), Memo(1 << 24)
            found = native.scan_head(set(), native_memo, URI, *head, 100, 1 << 30)
            expected = reference.scan_head(set(), reference_memo, URI, *head, 100, 1 << 30)
            assert found == expected, head
            assert native_memo.items() == reference_memo.items(), head
