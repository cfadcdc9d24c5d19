"""The connection's deadline fires when its phase's timeout has passed, never before, whatever
else arrives on the connection meanwhile: a stalled origin is a 504, a stalled head a 408, an
idle connection is closed. The upper bounds are loose (the machine is shared); the lower bounds
are exact, and each case stalls long enough that a deadline that never fires cannot pass.
A client that expects 100 Continue gets it on either reading path."""

from __future__ import annotations

import asyncio

import pytest

from failsmall.model import Limits
from failsmall.node.server import EdgeNode
from tests.node.conftest import (
    Keys,
    OriginServer,
    StartNode,
    WatchDir,
    fast_limits,
    make_bundle,
    serving,
)
from tests.node.test_one_write import responses

TIMEOUT_S = 1.0
SLACK_S = 3.0
"""How late a deadline may fire on a loaded machine (the sweeper looks every 0.1 s)."""
STALL_S = TIMEOUT_S + SLACK_S + 2.0
"""How long the slow origin takes: longer than any deadline that fires."""
GAP_S = 0.3
"""Between a first request and one pipelined behind it: the first is at its origin by then."""


@pytest.fixture
async def node(
    start_node: StartNode, watch: WatchDir, keys: Keys, origin: OriginServer
) -> EdgeNode:
    started = await start_node()
    limits = fast_limits(
        header_timeout_s=TIMEOUT_S,
        body_timeout_s=TIMEOUT_S,
        upstream_read_timeout_s=TIMEOUT_S,
        idle_timeout_s=TIMEOUT_S,
    )
    assert isinstance(limits, Limits)
    await serving(started, watch.publish(keys.sign(make_bundle(origin.url, limits=limits))))
    return started


async def timed(
    port: int, first: bytes, then: bytes = b"", *, then_after_s: float | None = None
) -> tuple[bytes, float]:
    """Send `first`, then `then`: `then_after_s` later, or once the first response has begun
    to arrive; read until the node closes. What came back, and the seconds from the first
    write to the close."""
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(first)
        await writer.drain()
        sent = loop.time()
        got = b""
        if then:
            if then_after_s is None:
                got = await asyncio.wait_for(reader.read(65536), STALL_S + SLACK_S)
            else:
                await asyncio.sleep(then_after_s)
            writer.write(then)
            await writer.drain()
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), STALL_S + SLACK_S)
            if not chunk:
                return got, loop.time() - sent
            got += chunk
    finally:
        writer.close()


def within_deadline(elapsed_s: float) -> bool:
    return TIMEOUT_S <= elapsed_s < TIMEOUT_S + SLACK_S


SLOW = b"GET /slow?s=%g HTTP/1.1\r\nHost: a\r\n\r\n" % STALL_S
HELLO = b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n"
CLOSE = b"GET /hello HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"


async def test_a_stalled_origin_is_a_504_at_the_read_deadline(node: EdgeNode) -> None:
    got, elapsed = await timed(
        node.port, SLOW.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
    )
    assert [status for status, _ in responses(got)] == [504]
    assert within_deadline(elapsed), elapsed


async def test_a_request_pipelined_behind_a_stalled_one_leaves_its_deadline_alone(
    node: EdgeNode,
) -> None:
    """The second request (whole, no body) is read while the first waits for its origin: the
    first still times out at its deadline, then the second is answered."""
    got, elapsed = await timed(node.port, SLOW, CLOSE, then_after_s=GAP_S)
    assert [status for status, _ in responses(got)] == [504, 200]
    assert within_deadline(elapsed), elapsed


async def test_a_body_pipelined_behind_a_stalled_request_leaves_its_deadline_alone(
    node: EdgeNode,
) -> None:
    post = b"POST /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc"
    got, elapsed = await timed(node.port, SLOW, post, then_after_s=GAP_S)
    statuses = [status for status, _ in responses(got)]
    assert statuses == [504, 200]
    assert within_deadline(elapsed), elapsed


async def test_a_head_left_unfinished_behind_an_answered_request_is_a_408(
    node: EdgeNode,
) -> None:
    """Slowloris behind a first request: the second head never ends; once the first is
    answered, the second's header deadline runs."""
    got, elapsed = await timed(node.port, HELLO + b"GET /hello HTTP/1.1\r\nHost: a\r\n")
    assert [status for status, _ in responses(got)] == [200, 408]
    assert within_deadline(elapsed), elapsed


async def test_a_body_left_unfinished_is_a_408_at_the_body_deadline(node: EdgeNode) -> None:
    head = b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n"
    got, elapsed = await timed(node.port, head + b"abc")
    assert got.startswith(b"HTTP/1.1 408 "), got[:100]
    assert within_deadline(elapsed), elapsed


async def test_an_idle_connection_is_closed_at_the_idle_deadline(node: EdgeNode) -> None:
    got, elapsed = await timed(node.port, HELLO)
    assert got.startswith(b"HTTP/1.1 200 ") and got.endswith(b"hello"), got[-100:]
    assert within_deadline(elapsed), elapsed


async def test_100_continue_is_sent_before_the_body(node: EdgeNode) -> None:
    """A client that waits for 100 Continue before its body gets it, then its answer."""
    head = (
        b"POST /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\nExpect: 100-continue\r\n"
        b"Content-Length: 5\r\n\r\n"
    )
    got, _ = await timed(node.port, head, b"hello")
    assert got.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), got[:100]
    rest = got[len(b"HTTP/1.1 100 Continue\r\n\r\n") :]
    assert rest.startswith(b"HTTP/1.1 200 ") and b'"body_len": 5' in rest


async def test_100_continue_is_sent_when_the_body_came_with_the_head(node: EdgeNode) -> None:
    """Read whole in one piece, the request still gets its 100 Continue, as when read by
    llhttp (a client may send its body without waiting, and still expect one)."""
    request = (
        b"POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello"
    )
    got, _ = await timed(node.port, request)  # kept alive: closed at the idle deadline
    assert got.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 "), got[:100]
