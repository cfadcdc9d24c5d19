"""A value's characters read from a JSON body are hashed as the memo hashes the str of them
(`memo_text_hash`): a value remembered from a str is found from a body's characters, and one
remembered from a body's characters is found from a str, whatever its kind (1-, 2- or 4-byte
characters) and length (every length of a 16-byte block, of the four lanes past 64 bytes, and
their rest)."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from failsmall.engine.native import Memo
from failsmall.engine.signatures.scanner import MEMO_BYTES
from tests.waf.test_memo import store
from tests.waf.test_native_scanner import scanners

#: Target bits of JSON field values, as the scanner passes them to `scan_json`.
VALUES_BIT = 128
#: A hit no rule gives: found only through the memo entry the test put there.
MARKER = "remembered-marker"
ALPHABETS = {
    "ascii": "abcxyz09 ",
    "latin1": "aé\xff",
    "ucs2": "a€\u0100\uffff",
    "ucs4": "a😀\U0010ffff",
}

NATIVE, _ = scanners()


def _json_hits(memo: Memo, value: str) -> frozenset[str]:
    hits: set[str] = set()
    body = json.dumps([value], ensure_ascii=False).encode()
    NATIVE.scan_json(hits, memo, body, "", 0, 0, VALUES_BIT, 10_000, 8, 10**6, 10_000, 10**6)
    return frozenset(hits)


def _check(value: str) -> None:
    from_str = Memo(MEMO_BYTES)
    store(from_str, value, VALUES_BIT, frozenset({MARKER}), 1, len(value), len(value))
    assert MARKER in _json_hits(from_str, value), value
    from_body = Memo(MEMO_BYTES)
    _json_hits(from_body, value)
    _json_hits(from_body, value)  # stored on its second offer
    assert from_body.get(value, VALUES_BIT) is not None, value


@pytest.mark.parametrize("alphabet", ALPHABETS)
def test_every_length_and_kind_of_value_is_hashed_as_its_str(alphabet: str) -> None:
    rng = random.Random(alphabet)
    letters = ALPHABETS[alphabet]
    for length in range(1, 81):
        for _ in range(3):
            value = "".join(rng.choice(letters) for _ in range(length))
            if alphabet != "ascii":  # at least one character of the alphabet's widest kind
                value = value[:-1] + letters[-1]
            _check(value)


@settings(max_examples=300, deadline=None)
@given(value=st.text(min_size=1, max_size=64))
def test_any_value_is_hashed_as_its_str(value: str) -> None:
    _check(value)
