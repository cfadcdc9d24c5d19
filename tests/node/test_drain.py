"""Stopping a node: requests in flight finish, idle connections close, no new ones are taken."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.node.conftest import (
    Keys,
    OriginServer,
    StartNode,
    WatchDir,
    eventually,
    ready_node,
)


async def test_a_stopping_node_finishes_requests_in_flight_and_closes_idle_connections(
    start_node: StartNode, watch: WatchDir, keys: Keys, origin: OriginServer
) -> None:
    node = await ready_node(start_node, watch, keys, origin)
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", node.port)
    idle_writer.write(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
    first = await idle_reader.readuntil(b"hello")
    assert first.startswith(b"HTTP/1.1 200 ") and b"Connection: close" not in first
    async with httpx.AsyncClient() as client:
        slow = asyncio.create_task(client.get(f"http://127.0.0.1:{node.port}/slow?s=1.5"))
        await eventually(lambda: origin.requests >= 2, what="the slow request at the origin")
        stopping = asyncio.create_task(node.stop())
        # The idle keep-alive connection is closed at once, not after the slow request.
        assert await asyncio.wait_for(idle_reader.read(), 5) == b""
        assert not slow.done()
        response = await slow
    assert response.status_code == 200
    assert response.text == "slow"
    assert response.headers["connection"] == "close"
    await stopping
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", node.port)
    idle_writer.close()


async def test_a_request_still_running_after_the_grace_period_is_cut(
    start_node: StartNode, watch: WatchDir, keys: Keys, origin: OriginServer
) -> None:
    node = await ready_node(start_node, watch, keys, origin)
    async with httpx.AsyncClient() as client:
        slow = asyncio.create_task(client.get(f"http://127.0.0.1:{node.port}/slow?s=1.5"))
        await eventually(lambda: origin.requests >= 1, what="the slow request at the origin")
        await asyncio.wait_for(node.stop(grace_s=0.2), 2.0)
        with pytest.raises(httpx.HTTPError):
            await slow
