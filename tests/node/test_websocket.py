"""WebSocket through the node: the handshake is a request the engine judges, then bytes flow
both ways until one side closes."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.node.conftest import (
    Keys,
    OriginServer,
    StartNode,
    WatchDir,
    blocking,
    eventually,
    fast_limits,
    raw_exchange,
    ready_node,
)

HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
)


async def test_messages_flow_both_ways_through_the_node(
    start_node: StartNode, watch: WatchDir, keys: Keys, origin: OriginServer
) -> None:
    node = await ready_node(start_node, watch, keys, origin)
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"http://127.0.0.1:{node.port}/ws") as ws,
    ):
        assert ws.get_extra_info("peername")[1] == node.port
        for i in range(20):
            await ws.send_str(f"hello {i}")
            assert await ws.receive_str(timeout=5) == f"echo: hello {i}"
        big = bytes(range(256)) * 4096  # 1 MiB, relayed with back-pressure
        await ws.send_bytes(big)
        assert await ws.receive_bytes(timeout=10) == big[::-1]
        await ws.close()
    await eventually(lambda: not node.ctx.connections, what="the tunnel to close")
    assert node.ctx.stats.requests[101, "allow"] == 1


async def test_the_engine_judges_the_handshake(
    start_node: StartNode, watch: WatchDir, keys: Keys, origin: OriginServer
) -> None:
    node = await ready_node(
        start_node, watch, keys, origin, **blocking("no-sockets", 'http.request.uri.path == "/ws"')
    )
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(f"http://127.0.0.1:{node.port}/ws")
    assert refused.value.status == 403
    assert origin.requests == 0


async def test_an_origin_that_declines_the_upgrade_answers_normally_and_the_connection_closes(
    start_node: StartNode, watch: WatchDir, keys: Keys, origin: OriginServer
) -> None:
    node = await ready_node(start_node, watch, keys, origin)
    raw = await raw_exchange(node.port, HANDSHAKE.replace(b"/ws", b"/hello"), timeout_s=3)
    assert raw.startswith(b"HTTP/1.1 200 ")
    assert b"Connection: close" in raw
    assert raw.endswith(b"hello")


async def test_a_tunnel_idle_past_the_idle_timeout_is_closed(
    start_node: StartNode, watch: WatchDir, keys: Keys, origin: OriginServer
) -> None:
    node = await ready_node(start_node, watch, keys, origin, limits=fast_limits(idle_timeout_s=0.3))
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"http://127.0.0.1:{node.port}/ws", autoping=False) as ws,
    ):
        await ws.send_str("still here")
        assert await ws.receive_str(timeout=5) == "echo: still here"
        closed = await ws.receive(timeout=5)
        assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    await eventually(lambda: not node.ctx.connections, what="the idle tunnel to close")


@pytest.mark.parametrize(
    "request_bytes",
    [
        HANDSHAKE.replace(b"websocket", b"h2c"),
        HANDSHAKE.replace(b"GET /ws", b"POST /ws"),
    ],
    ids=["other-protocol", "not-get"],
)
async def test_other_upgrades_are_refused(
    start_node: StartNode,
    watch: WatchDir,
    keys: Keys,
    origin: OriginServer,
    request_bytes: bytes,
) -> None:
    node = await ready_node(start_node, watch, keys, origin)
    raw = await raw_exchange(node.port, request_bytes, timeout_s=3)
    assert raw.startswith(b"HTTP/1.1 400 ")


async def test_bytes_sent_right_after_the_handshake_reach_the_origin(
    start_node: StartNode, watch: WatchDir, keys: Keys, origin: OriginServer
) -> None:
    node = await ready_node(start_node, watch, keys, origin)
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
    # A masked text frame "hi" sent with the handshake, before the 101 arrives.
    mask = b"\x01\x02\x03\x04"
    frame = bytes([0x81, 0x82]) + mask + bytes([ord("h") ^ 1, ord("i") ^ 2])
    writer.write(HANDSHAKE + frame)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101 ")
    assert b"Upgrade: websocket" in head
    reply = await asyncio.wait_for(reader.readexactly(2 + len("echo: hi")), 5)
    assert reply[2:] == b"echo: hi"
    writer.close()
    await eventually(lambda: not node.ctx.connections, what="the tunnel to close")
