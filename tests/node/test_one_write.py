"""Requests whose head and body arrive in one write, at every size around the limits, and many
requests pipelined in one write: each is answered exactly as when sent piece by piece."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import h11
import pytest

from failsmall.model import BodyOverBuffer, Limits
from failsmall.node.proxy import PARSE_BYTES, PIPELINE_DEPTH
from failsmall.node.server import EdgeNode
from tests.node.conftest import (
    Keys,
    OriginServer,
    StartNode,
    WatchDir,
    make_bundle,
    raw_exchange,
    serving,
)

KIB = 1024
TIGHT = Limits(
    max_header_bytes=4 * KIB,
    max_uri_bytes=1 * KIB,
    waf_body_buffer=16 * KIB,
    max_body_bytes=64 * KIB,
)


async def node_with(
    limits: Limits, start_node: StartNode, watch: WatchDir, keys: Keys, origin: OriginServer
) -> EdgeNode:
    node = await start_node()
    await serving(node, watch.publish(keys.sign(make_bundle(origin.url, limits=limits))))
    return node


def responses(raw: bytes) -> list[tuple[int, bytes]]:
    """Every response in `raw`, in order, parsed by h11 (a strict HTTP/1.1 client)."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "a")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(raw)
    conn.receive_data(b"")
    out: list[tuple[int, bytes]] = []
    status, body = 0, b""
    while True:
        event = conn.next_event()
        match event:
            case h11.Response():
                status, body = event.status_code, b""
            case h11.Data():
                body += event.data
            case h11.EndOfMessage():
                out.append((status, body))
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    return out
                conn.start_next_cycle()
                conn.send(h11.Request(method="GET", target="/", headers=[("Host", "a")]))
                conn.send(h11.EndOfMessage())
            case h11.ConnectionClosed() | h11.NEED_DATA:
                return out
            case _:
                raise AssertionError(f"unexpected event {event!r}")


def upload(body: bytes, pad: int = 0) -> bytes:
    head = b"POST /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
    if pad:
        head += b"X-Pad: " + b"p" * pad + b"\r\n"
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


async def post_in_one_write(node: EdgeNode, body: bytes, pad: int = 0) -> tuple[int, bytes]:
    got = responses(await raw_exchange(node.port, upload(body, pad), timeout_s=10))
    assert len(got) == 1, got
    return got[0]


def around(*bounds: int) -> list[int]:
    return sorted({size for bound in bounds for size in (bound - 1, bound, bound + 1)})


def echoed(answer: bytes) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(answer)
    return data


@pytest.mark.parametrize("mode", list(BodyOverBuffer))
async def test_head_and_body_in_one_write_at_every_size_around_the_limits(
    mode: BodyOverBuffer,
    start_node: StartNode,
    watch: WatchDir,
    keys: Keys,
    origin: OriginServer,
) -> None:
    limits = TIGHT.model_copy(update={"body_over_buffer": mode})
    node = await node_with(limits, start_node, watch, keys, origin)
    sizes = around(
        limits.max_header_bytes,
        limits.max_header_bytes + limits.max_uri_bytes,
        limits.waf_body_buffer,
        limits.max_body_bytes,
    )
    for size in sizes:
        body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        status, answer = await post_in_one_write(node, body)
        refused = size > limits.max_body_bytes or (
            mode is BodyOverBuffer.REJECT and size > limits.waf_body_buffer
        )
        if refused:
            assert status == 413, (size, status, answer)
            continue
        assert status == 200, (size, status, answer)
        seen = echoed(answer)
        assert seen["body_len"] == size
        assert seen["body_sha256"] == hashlib.sha256(body).hexdigest()


async def test_uploads_of_41_to_100_kb_in_one_write_pass_with_the_default_limits(
    start_node: StartNode, watch: WatchDir, keys: Keys, origin: OriginServer
) -> None:
    limits = Limits()
    node = await node_with(limits, start_node, watch, keys, origin)
    head_and_uri = limits.max_header_bytes + limits.max_uri_bytes
    for size in [*around(head_and_uri, limits.waf_body_buffer), 41_000, 50_000, 100_000]:
        body = b"u" * size
        status, answer = await post_in_one_write(node, body)
        assert status == 200, (size, status, answer)
        assert echoed(answer)["body_len"] == size


def head_bytes_of(pad: int, body: bytes) -> int:
    """What the node counts as header bytes for `upload(body, pad)`: name, value and 4 bytes of
    separators per header."""
    headers = [(b"Host", b"a"), (b"Connection", b"close"), (b"X-Pad", b"p" * pad)]
    headers.append((b"Content-Length", b"%d" % len(body)))
    return sum(len(name) + len(value) + 4 for name, value in headers)


async def test_a_head_at_its_limit_with_a_body_in_one_write(
    start_node: StartNode, watch: WatchDir, keys: Keys, origin: OriginServer
) -> None:
    node = await node_with(TIGHT, start_node, watch, keys, origin)
    body = b"b" * (TIGHT.waf_body_buffer + 1)
    pad = TIGHT.max_header_bytes - head_bytes_of(0, body)
    for extra in (-1, 0, 1):
        assert head_bytes_of(pad + extra, body) == TIGHT.max_header_bytes + extra
        status, answer = await post_in_one_write(node, body, pad + extra)
        if extra <= 0:
            assert status == 200, (extra, answer)
            assert echoed(answer)["body_len"] == len(body)
        else:
            assert status == 431, (extra, answer)


@pytest.mark.parametrize("limits", [TIGHT, Limits()], ids=["tight", "default"])
async def test_250_pipelined_gets_in_one_write_are_all_answered_in_order(
    limits: Limits, start_node: StartNode, watch: WatchDir, keys: Keys, origin: OriginServer
) -> None:
    node = await node_with(limits, start_node, watch, keys, origin)
    count = 250
    pipelined = b"".join(
        b"GET /echo?i=%d HTTP/1.1\r\nHost: a\r\nUser-Agent: pipeline-test/1.0\r\n"
        b"Accept: */*\r\nX-Filler: %s\r\n%s\r\n"
        % (i, b"f" * 100, b"Connection: close\r\n" if i == count - 1 else b"")
        for i in range(count)
    )
    assert len(pipelined) > limits.max_header_bytes + limits.max_uri_bytes
    got = responses(await raw_exchange(node.port, pipelined, timeout_s=30))
    assert [status for status, _ in got] == [200] * count
    assert [echoed(body)["path"] for _, body in got] == [f"/echo?i={i}" for i in range(count)]


async def test_an_endless_head_after_a_pipelined_request_is_refused_after_its_answer(
    start_node: StartNode, watch: WatchDir, keys: Keys, origin: OriginServer
) -> None:
    node = await node_with(TIGHT, start_node, watch, keys, origin)
    first = b"GET /echo?i=0 HTTP/1.1\r\nHost: a\r\n\r\n"
    endless = b"GET /echo?i=1 HTTP/1.1\r\nHost: a\r\nX-Endless: " + b"e" * 200_000
    got = responses(await raw_exchange(node.port, first + endless, timeout_s=10))
    assert [status for status, _ in got] == [200, 431]
    assert echoed(got[0][1])["path"] == "/echo?i=0"


async def test_thousands_of_pipelined_requests_are_parsed_a_few_at_a_time_and_all_answered(
    start_node: StartNode, watch: WatchDir, keys: Keys, origin: OriginServer
) -> None:
    node = await node_with(Limits(), start_node, watch, keys, origin)
    count = 3000
    first = b"GET /slow?s=1 HTTP/1.1\r\nHost: a\r\n\r\n"
    rest = [b"GET /echo?i=%d HTTP/1.1\r\nHost: a\r\n\r\n" % i for i in range(1, count)]
    rest[-1] = rest[-1][:-2] + b"Connection: close\r\n\r\n"
    deepest = 0

    async def watch_queues() -> None:
        nonlocal deepest
        while True:
            for conn in list(node.ctx.connections):
                deepest = max(deepest, len(conn.queue))
            await asyncio.sleep(0.01)

    watcher = asyncio.ensure_future(watch_queues())
    try:
        raw = await raw_exchange(node.port, first + b"".join(rest), timeout_s=60)
    finally:
        watcher.cancel()
    got = responses(raw)
    assert [status for status, _ in got] == [200] * count
    paths = [echoed(body)["path"] for _, body in got[1:]]
    assert paths == [f"/echo?i={i}" for i in range(1, count)]
    # While the first was at the origin, the input behind it stayed mostly unparsed.
    assert 0 < deepest <= PIPELINE_DEPTH + PARSE_BYTES // min(map(len, rest)) + 2


async def test_pipelined_requests_then_a_half_close_are_all_answered_and_a_cut_one_dropped(
    start_node: StartNode, watch: WatchDir, keys: Keys, origin: OriginServer
) -> None:
    node = await node_with(Limits(), start_node, watch, keys, origin)
    count = 500
    whole = b"".join(b"GET /echo?i=%d HTTP/1.1\r\nHost: a\r\n\r\n" % i for i in range(count))
    cut = b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\npartial"
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
    writer.write(whole + cut)
    writer.write_eof()
    raw = await asyncio.wait_for(reader.read(), 30)  # the node closes after the last answer
    writer.close()
    got = responses(raw)
    assert [echoed(body)["path"] for _, body in got] == [f"/echo?i={i}" for i in range(count)]
    assert node.ctx.stats.abandoned == 1
