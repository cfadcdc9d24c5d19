"""The signature memo is sized by the bundle's body buffer: a body at the buffer's limit fits in
it beside other clients' values, so a body sent again finds every one of its values."""

from __future__ import annotations

import json
from functools import cache

from failsmall.engine import Engine, Request
from failsmall.engine.native import MEMO_BODY
from failsmall.engine.signatures import SignatureScanner, memo_bytes
from failsmall.engine.signatures.scanner import (
    MEMO_BYTES,
    MEMO_BYTES_PER_BUFFER_BYTE,
    MEMO_ENTRY_OVERHEAD,
    MEMO_MAX_BYTES,
)
from failsmall.managed.measure import managed_bundle
from failsmall.model import Bundle
from failsmall.model.traffic import KIB, MIB, Limits

MAX_VALUE = 512  # the longest value the memo keeps (MEMO_MAX_VALUE in _memo.h)


@cache
def engine(buffer: int) -> Engine:
    """The managed ruleset with a body buffer of `buffer` bytes (and the value limit scaled with
    it, as for a node that takes large imports)."""
    bundle = managed_bundle()
    limits = Limits(waf_body_buffer=buffer, waf_max_values=16_384 * max(1, buffer // (128 * KIB)))
    return Engine.build(Bundle.model_validate({**bundle.model_dump(), "limits": limits}))


def scanner(e: Engine) -> SignatureScanner:
    assert e.waf.scanner is not None
    return e.waf.scanner


def records(size: int) -> bytes:
    """A JSON import of customer records just under `size` bytes, every value but one distinct."""
    rows: list[dict[str, object]] = []
    total = 2
    while True:
        i = len(rows)
        row = {"id": i, "name": f"Customer {i}", "email": f"user{i}@example.com", "notes": "ok"}
        total += len(json.dumps(row)) + 2
        if total > size:
            return json.dumps(rows).encode()
        rows.append(row)


def post(body: bytes) -> Request:
    headers = (("Host", "shop.example"), ("Content-Type", "application/json"))
    return Request("POST", "/import", headers=headers, body=body)


def test_memo_bytes_follow_the_body_buffer() -> None:
    assert memo_bytes(Limits()) == MEMO_BYTES
    assert memo_bytes(Limits(waf_body_buffer=MIB)) == MEMO_BYTES_PER_BUFFER_BYTE * MIB
    assert memo_bytes(Limits(waf_body_buffer=16 * MIB)) == MEMO_MAX_BYTES
    for buffer in (KIB, 100 * KIB, MIB, 3 * MIB, 16 * MIB):
        assert MEMO_BYTES <= memo_bytes(Limits(waf_body_buffer=buffer)) <= MEMO_MAX_BYTES


def test_a_bundle_sizes_the_memo_of_the_scanner_it_reuses() -> None:
    small = Engine.build(managed_bundle())
    memo = scanner(small).memo
    assert memo.max_bytes == MEMO_BYTES
    large_limits = Limits(waf_body_buffer=2 * MIB)
    large = Engine.build(
        Bundle.model_validate({**managed_bundle().model_dump(), "limits": large_limits}),
        reuse=small,
    )
    assert scanner(large) is scanner(small), "unchanged signatures keep their scanner"
    assert memo.max_bytes == 2 * MIB * MEMO_BYTES_PER_BUFFER_BYTE
    Engine.build(managed_bundle(), reuse=large)
    assert memo.max_bytes == MEMO_BYTES


def test_a_body_at_the_buffer_limit_sent_twice_is_remembered_whole() -> None:
    e = engine(MIB)
    memo = scanner(e).memo
    body = records(MIB - KIB)
    request = post(body)
    first = e.evaluate(request, e.new_state(seed=0))
    assert len(memo) < body.count(b'"id"'), "sent once, its values are one-off keys to the memo"
    assert e.evaluate(request, e.new_state(seed=0)).decision == first.decision
    # Sent twice, its values are stored, and nothing was forgotten to make room: the memo has
    # room for its largest entry still.
    assert memo.size + MAX_VALUE + MEMO_ENTRY_OVERHEAD <= memo.max_bytes
    held, offered = memo.items(), memo.offered
    assert len(held) > 4 * body.count(b'"id"'), "names and values of every record are held"
    again = e.evaluate(request, e.new_state(seed=0))
    # Sent again, every value is found: none is offered again and nothing is forgotten. The body
    # as a whole, offered now for the first time, may be stored at once: when both of its bits
    # in the memo's filter of sightings were already set by other keys, as a Bloom filter allows.
    after = memo.items()
    assert after[: len(held)] == held, "nothing held was forgotten"
    assert all(kind == MEMO_BODY for _, kind, _, _ in after[len(held) :]), "only the body is new"
    assert memo.offered - offered <= 1, "sent again, no value is offered: every one is found"
    assert again.decision == first.decision
