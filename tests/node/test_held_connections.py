"""Connections an attacker opens and abandons, or holds open with a trickle of body bytes, and
one client address opening many: the node lets go of them and keeps serving everyone else."""

from __future__ import annotations

import asyncio
import time

import httpx

from failsmall.model import Limits
from failsmall.node.server import EdgeNode
from tests.node.conftest import (
    Keys,
    OriginServer,
    StartNode,
    WatchDir,
    eventually,
    make_bundle,
    serving,
)

ABANDONED_HEAD = b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n"


async def node_with(
    start_node: StartNode,
    watch: WatchDir,
    keys: Keys,
    origin: OriginServer,
    limits: Limits,
    **bundle: object,
) -> EdgeNode:
    node = await start_node()
    signed = keys.sign(make_bundle(origin.url, limits=limits, **bundle))
    await serving(node, watch.publish(signed))
    return node


async def get_hello(node: EdgeNode, source: str = "127.0.0.1") -> httpx.Response:
    transport = httpx.AsyncHTTPTransport(local_address=source)
    async with httpx.AsyncClient(transport=transport, timeout=5) as client:
        return await client.get(f"http://127.0.0.1:{node.port}/hello")


async def test_10000_abandoned_uploads_are_let_go_and_a_normal_client_is_served_within_a_second(
    start_node: StartNode, watch: WatchDir, keys: Keys, origin: OriginServer
) -> None:
    node = await node_with(start_node, watch, keys, origin, Limits())
    opened = 0

    async def abandon(count: int) -> None:
        nonlocal opened
        for _ in range(count):
            _, writer = await asyncio.open_connection("127.0.0.1", node.port)
            writer.write(ABANDONED_HEAD)
            writer.close()
            opened += 1

    await asyncio.gather(*(abandon(100) for _ in range(100)))
    assert opened == 10_000
    started = time.monotonic()
    got = await get_hello(node)
    took = time.monotonic() - started
    assert got.status_code == 200 and got.text == "hello"
    assert took < 1.0, f"a normal client waited {took:.2f}s"
    # Nothing is held for the abandoned uploads (with a body timeout of 30 s they were kept).
    await eventually(lambda: len(node.ctx.connections) == 0, 5, "every connection to close")
    assert not node.ctx.clients
    assert node.ctx.stats.abandoned > 0


async def test_trickling_bodies_are_closed_at_the_minimum_rate_and_others_are_served(
    start_node: StartNode, watch: WatchDir, keys: Keys, origin: OriginServer
) -> None:
    limits = Limits(min_body_rate_bytes_s=100, body_rate_grace_s=1.0, body_timeout_s=30)
    node = await node_with(start_node, watch, keys, origin, limits)

    async def trickle() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
        writer.write(ABANDONED_HEAD)
        answer = asyncio.ensure_future(reader.read())
        try:
            for _ in range(20):  # a byte every 2 s, far below 100 bytes/s
                done, _ = await asyncio.wait({answer}, timeout=2.0)
                if done:
                    break
                writer.write(b"x")
            return await asyncio.wait_for(answer, 5)
        finally:
            writer.close()

    async def upload_slowly_but_fast_enough() -> httpx.Response:
        async def parts() -> object:
            for _ in range(10):
                await asyncio.sleep(0.3)
                yield b"y" * 300  # 1,000 bytes/s

        async with httpx.AsyncClient(timeout=30) as client:
            return await client.post(f"http://127.0.0.1:{node.port}/echo", content=parts())

    trickles = [asyncio.ensure_future(trickle()) for _ in range(20)]
    honest = asyncio.ensure_future(upload_slowly_but_fast_enough())
    await asyncio.sleep(0.5)
    got = await get_hello(node)
    assert got.status_code == 200
    answers = await asyncio.gather(*trickles)
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert b"slower than 100 bytes/s" in answer
    assert node.ctx.stats.slow_bodies == 20
    uploaded = await honest
    assert uploaded.status_code == 200 and uploaded.json()["body_len"] == 3000
    await eventually(lambda: not node.ctx.clients, 5, "the trickling connections to close")
    assert (await get_hello(node)).status_code == 200


async def test_one_client_past_its_connection_cap_is_refused_and_others_are_not(
    start_node: StartNode, watch: WatchDir, keys: Keys, origin: OriginServer
) -> None:
    limits = Limits(max_connections_per_client=5, header_timeout_s=30)
    node = await node_with(start_node, watch, keys, origin, limits)
    held = [await asyncio.open_connection("127.0.0.1", node.port) for _ in range(5)]
    await eventually(lambda: node.ctx.clients["127.0.0.1"] == 5, 5, "five counted connections")
    refused = await get_hello(node)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1"
    assert "too many connections from 127.0.0.1" in refused.text
    other = await get_hello(node, source="127.0.0.2")
    assert other.status_code == 200 and other.text == "hello"
    reader, writer = held[0]
    writer.write(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
    assert (await asyncio.wait_for(reader.readuntil(b"hello"), 5)).startswith(b"HTTP/1.1 200 ")
    async with httpx.AsyncClient() as client:
        metrics = (await client.get(f"http://127.0.0.1:{node.admin_port}/metrics")).text
    assert 'failsmall_connections_refused_total{limit="client_limit"} 1.0' in metrics
    for _, writer in held:
        writer.close()
    await eventually(lambda: not node.ctx.clients, 5, "the held connections to close")
    assert (await get_hello(node)).status_code == 200


async def test_a_trusted_proxy_is_not_capped_as_one_client(
    start_node: StartNode, watch: WatchDir, keys: Keys, origin: OriginServer
) -> None:
    limits = Limits(max_connections_per_client=2, header_timeout_s=30)
    node = await node_with(
        start_node, watch, keys, origin, limits, trusted_proxies=["127.0.0.1/32"]
    )
    held = [await asyncio.open_connection("127.0.0.1", node.port) for _ in range(4)]
    await eventually(lambda: len(node.ctx.connections) == 4, 5, "four open connections")
    assert (await get_hello(node)).status_code == 200
    assert not node.ctx.clients
    for _, writer in held:
        writer.close()
