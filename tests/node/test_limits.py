"""Bad and hostile requests, and failing origins: each gets the right answer, and the node
keeps serving the next request."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from failsmall.node.server import EdgeNode
from failsmall.transport.natsd import free_port
from tests.node.conftest import (
    CannedNode,
    Keys,
    OriginServer,
    StartNode,
    WatchDir,
    eventually,
    fast_limits,
    make_bundle,
    raw_exchange,
    serving,
)


@pytest.fixture
async def node(
    start_node: StartNode, watch: WatchDir, keys: Keys, origin: OriginServer
) -> EdgeNode:
    started = await start_node()
    limits = fast_limits(
        max_headers=20, max_header_bytes=4096, max_uri_bytes=1024, max_body_bytes=100_000
    )
    digest = watch.publish(keys.sign(make_bundle(origin.url, limits=limits)))
    await serving(started, digest)
    return started


async def still_serves(node: EdgeNode) -> None:
    async with httpx.AsyncClient() as client:
        got = await client.get(f"http://127.0.0.1:{node.port}/hello")
    assert got.status_code == 200 and got.text == "hello"


def status_of(raw: bytes) -> int:
    assert raw.startswith(b"HTTP/1.1 "), raw[:200]
    return int(raw[9:12])


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/9.9\r\nHost: a\r\n\r\n", 400),
        (b"GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n", 400),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked"
            b"\r\n\r\n0\r\n\r\n",
            400,
        ),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: nope\r\n\r\n", 400),
        (b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n", 400),
        (b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\n"
            + b"".join(b"X-%d: 1\r\n" % i for i in range(30))
            + b"\r\n",
            431,
        ),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"b" * 5000 + b"\r\n\r\n", 431),
        (b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 200000\r\n\r\n", 413),
        # Framing a front end and an origin could read differently (request smuggling).
        (b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
        (b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", 400),
        (b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello", 400),
        (b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", 400),
        (b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400),
        (
            b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            501,
        ),
        (b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 501),
        (
            b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
            b"Transfer-Encoding: identity\r\n\r\n0\r\n\r\n",
            400,
        ),
        (b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400),
        (b"POST /echo HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\r\n b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\n\r\n", 400),
        (b"GET / HTTP/1.1\nHost: a\n\n", 400),
        (
            b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3;x\nabc\r\n0\r\n\r\n",
            400,
        ),
        (
            b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"FFFFFFFFFFFFFFFFF1\r\nabc\r\n0\r\n\r\n",
            400,
        ),
    ],
    ids=[
        "garbage",
        "bad-version",
        "control-char-in-uri",
        "no-host",
        "two-hosts",
        "bad-header-name",
        "length-and-chunked",
        "bad-length",
        "bad-chunk-size",
        "uri-too-long",
        "too-many-headers",
        "header-too-large",
        "declared-body-too-large",
        "two-lengths",
        "same-length-twice",
        "length-list",
        "signed-length",
        "chunked-not-last",
        "coding-before-chunked",
        "unknown-coding",
        "two-transfer-encodings",
        "space-before-colon",
        "transfer-encoding-in-http-1.0",
        "obs-fold",
        "nul-in-header-value",
        "cr-in-header-value",
        "bare-lf-line-ends",
        "bare-lf-after-chunk-extension",
        "chunk-size-overflow",
    ],
)
async def test_bad_request_is_answered_and_node_keeps_serving(
    node: EdgeNode, request_bytes: bytes, status: int
) -> None:
    raw = await raw_exchange(node.port, request_bytes, timeout_s=3.0)
    assert status_of(raw) == status
    assert b"Connection: close" in raw
    await still_serves(node)


async def test_oversized_header_that_never_ends_is_refused(node: EdgeNode) -> None:
    raw = await raw_exchange(
        node.port, b"GET / HTTP/1.1\r\nHost: a\r\nX-Endless: " + b"e" * 200_000, timeout_s=3.0
    )
    assert status_of(raw) == 431
    await still_serves(node)


async def test_chunked_body_over_the_limit_gets_413(node: EdgeNode) -> None:
    chunk = b"10000\r\n" + b"c" * 0x10000 + b"\r\n"
    raw = await raw_exchange(
        node.port,
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 3,
        timeout_s=3.0,
    )
    assert status_of(raw) == 413
    await still_serves(node)


async def test_slowloris_headers_time_out_with_408(node: EdgeNode) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
    writer.write(b"GET /hello HTTP/1.1\r\nHost: a\r\n")
    await writer.drain()
    for _ in range(4):  # trickle a header line every 0.2 s, past the 0.5 s header timeout
        await asyncio.sleep(0.2)
        try:
            writer.write(b"X-Slow: 1\r\n")
            await writer.drain()
        except ConnectionError:
            break
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert status_of(raw) == 408
    await still_serves(node)


async def test_slow_body_times_out_with_408(node: EdgeNode) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc")
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert status_of(raw) == 408
    await still_serves(node)


async def test_idle_keepalive_connection_is_closed(node: EdgeNode) -> None:
    from failsmall.node.serving import RequestLimits

    assert isinstance(node.slot.limits, RequestLimits)
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
    # Connected but silent: closed without a response after the header timeout.
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert data == b""
    await still_serves(node)


async def test_origin_down_gives_502(
    start_node: StartNode, watch: WatchDir, keys: Keys, origin: OriginServer
) -> None:
    dead_port = free_port()
    node = await start_node()
    bundle = make_bundle(f"http://127.0.0.1:{dead_port}", limits=fast_limits())
    digest = watch.publish(keys.sign(bundle))
    await serving(node, digest)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.port}") as client:
        for _ in range(3):
            got = await client.get("/hello")
            assert got.status_code == 502
            assert "origin unreachable" in got.text
        digest = watch.publish(keys.sign(make_bundle(origin.url, limits=fast_limits())))
        await serving(node, digest)
        assert (await client.get("/hello")).status_code == 200


async def test_slow_origin_gives_504_and_next_request_is_fine(node: EdgeNode) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.port}") as client:
        slow = await client.get("/slow", params={"s": "2"})
        assert slow.status_code == 504
        assert "did not answer" in slow.text
        fast = await client.get("/slow", params={"s": "0.05"})
        assert fast.status_code == 200
    await still_serves(node)


async def test_origin_that_resets_mid_response_closes_the_client(canned_node: CannedNode) -> None:
    async with canned_node(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial") as node:
        raw = await raw_exchange(node.port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", timeout_s=3)
        assert raw.startswith(b"HTTP/1.1 200 ")
        assert raw.endswith(b"partial")  # truncated, and the connection closed
        assert node.ctx.stats.upstream_errors["reset_mid_response"] == 1


CLOSING_GET = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"


@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-A: a\x00b\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    ],
    ids=["two-lengths", "length-and-chunked", "obs-fold", "nul-in-value", "bad-status", "101"],
)
async def test_a_response_with_ambiguous_framing_is_a_502(
    canned_node: CannedNode, response: bytes
) -> None:
    """An origin response the node cannot frame without guessing is never passed on."""
    async with canned_node(response) as node:
        raw = await raw_exchange(node.port, CLOSING_GET, timeout_s=3)
        assert status_of(raw) == 502
        assert b"hello" not in raw
        again = await raw_exchange(node.port, CLOSING_GET, timeout_s=3)
        assert status_of(again) == 502  # and the node keeps answering


@pytest.mark.parametrize(
    "interim",
    [b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"],
    ids=["100", "103"],
)
async def test_interim_responses_from_the_origin_give_way_to_the_final_one(
    canned_node: CannedNode, interim: bytes
) -> None:
    final = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    async with canned_node(interim + final) as node:
        raw = await raw_exchange(node.port, CLOSING_GET, timeout_s=3)
        assert status_of(raw) == 200
        assert raw.endswith(b"\r\n\r\nhello")
        assert raw.count(b"HTTP/1.1 ") == 1


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nX-Huge: " + b"h" * 100_000 + b"\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n"
        + b"".join(b"X-Many-%d: %s\r\n" % (i, b"m" * 40) for i in range(2000))
        + b"Content-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-Never-Ends: " + b"n" * 200_000,
    ],
    ids=["one-huge-header", "many-headers", "unfinished-header"],
)
async def test_an_origin_response_head_past_its_bound_is_a_502(
    canned_node: CannedNode, head: bytes
) -> None:
    async with canned_node(head) as node:
        raw = await raw_exchange(node.port, CLOSING_GET, timeout_s=3)
        assert status_of(raw) == 502
        assert b"response head over" in raw


async def test_connections_past_the_limit_are_shed_with_a_503_and_the_rest_keep_working(
    start_node: StartNode, watch: WatchDir, keys: Keys, origin: OriginServer
) -> None:
    node = await start_node()
    limits = fast_limits(max_connections=3, header_timeout_s=5.0)
    await serving(node, watch.publish(keys.sign(make_bundle(origin.url, limits=limits))))
    held = [await asyncio.open_connection("127.0.0.1", node.port) for _ in range(3)]
    await eventually(lambda: len(node.ctx.connections) == 3, what="three open connections")
    shed = await raw_exchange(node.port, CLOSING_GET, timeout_s=3)
    assert status_of(shed) == 503
    assert b"Retry-After: 1" in shed
    assert b"limit of 3 connections" in shed
    # A connection already open is served as usual.
    reader, writer = held[0]
    writer.write(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
    assert (await asyncio.wait_for(reader.readuntil(b"hello"), 5)).startswith(b"HTTP/1.1 200 ")
    for _, writer in held:
        writer.close()
    await eventually(lambda: not node.ctx.connections, what="the held connections to close")
    await still_serves(node)
    assert node.ctx.stats.rejected["503"] == 1


def test_the_request_paths_limits_are_the_bundles() -> None:
    """Each limit the request path reads from its compiled copy is the bundle's own."""
    from failsmall.model import BodyOverBuffer, Limits
    from failsmall.node.serving import RequestLimits

    bundle_limits = Limits(
        max_connections=7, max_connections_per_client=3, max_uri_bytes=300,
        max_header_bytes=2048, max_headers=9, max_body_bytes=5000, waf_body_buffer=4096,
        body_over_buffer=BodyOverBuffer.REJECT, header_timeout_s=1.5, body_timeout_s=2.5,
        idle_timeout_s=3.5, upstream_connect_timeout_s=4.5, upstream_read_timeout_s=5.5,
        min_body_rate_bytes_s=11, body_rate_grace_s=6.5,
    )  # fmt: skip
    copied = RequestLimits(bundle_limits)
    names = [name for name in dir(copied) if not name.startswith("_")]
    assert len(names) == 15 and set(names) <= set(Limits.model_fields)
    for name in names:
        assert getattr(copied, name) == getattr(bundle_limits, name) != getattr(Limits(), name)
