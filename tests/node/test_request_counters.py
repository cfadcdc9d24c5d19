"""A node's request counters, read through its metrics and health reports while traffic of
every kind (answered, blocked, timed out, malformed, abandoned, cut off) goes through it, equal
the requests it answered, counted one by one from what the clients saw."""

from __future__ import annotations

import asyncio
import re
import socket
import struct
from collections import Counter

import httpx

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

REQUESTS_METRIC = re.compile(r'^failsmall_requests_total\{decision="(\w+)",status="(\d+)"\} (\S+)$')


async def metric_counts(admin: httpx.AsyncClient) -> Counter[tuple[int, str]]:
    text = (await admin.get("/metrics")).text
    counts: Counter[tuple[int, str]] = Counter()
    for line in text.splitlines():
        found = REQUESTS_METRIC.match(line)
        if found:
            counts[int(found[2]), found[1]] = int(float(found[3]))
    return counts


async def test_counters_equal_the_answered_requests_whenever_read(
    start_node: StartNode, watch: WatchDir, keys: Keys, origin: OriginServer
) -> None:
    node = await ready_node(
        start_node,
        watch,
        keys,
        origin,
        limits=fast_limits(),
        **blocking("no-admin", 'http.request.uri.path == "/admin"'),
    )
    expected: Counter[tuple[int, str]] = Counter()
    base = f"http://127.0.0.1:{node.port}"
    async with (
        httpx.AsyncClient(base_url=base) as client,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.admin_port}") as admin,
    ):

        async def check() -> None:
            stats = node.ctx.stats
            assert stats.requests == expected
            assert stats.latency.n == expected.total()
            assert await metric_counts(admin) == expected

        for _ in range(3):
            for _ in range(5):
                assert (await client.get("/hello")).status_code == 200
                expected[200, "allow"] += 1
                await check()
            assert (await client.get("/admin")).status_code == 403
            expected[403, "block"] += 1
            await check()
            # The origin answers after the node's upstream timeout: a 504, still "allow".
            assert (await client.get("/slow", params={"s": "2"})).status_code == 504
            expected[504, "allow"] += 1
            await check()
            malformed = b"GET /hello HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n"
            assert (await raw_exchange(node.port, malformed)).startswith(b"HTTP/1.1 400")
            expected[400, "rejected"] += 1
            await check()
            # A client that leaves before its request is whole is not answered, nor counted.
            abandoned = node.ctx.stats.abandoned
            _, writer = await asyncio.open_connection("127.0.0.1", node.port)
            writer.write(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc")
            await writer.drain()
            writer.close()
            await eventually(lambda n=abandoned + 1: node.ctx.stats.abandoned == n, what="abandon")
            await check()
            # Nor is one whose client resets the connection before the origin has answered.
            reached = origin.requests
            _, writer = await asyncio.open_connection("127.0.0.1", node.port)
            writer.write(b"GET /slow?s=0.3 HTTP/1.1\r\nHost: a\r\n\r\n")
            await writer.drain()
            await eventually(lambda n=reached: origin.requests > n, what="the origin")
            sock = writer.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.close()
            await eventually(lambda: len(node.ctx.connections) <= 1, what="the reset")
            await check()
            # One that half-closes after its request is whole is answered, and counted.
            _, writer = await asyncio.open_connection("127.0.0.1", node.port)
            writer.write(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
            writer.write_eof()
            expected[200, "allow"] += 1
            await eventually(lambda: node.ctx.stats.requests == expected, what="the answer")
            writer.close()
            await check()
    # Health reports cover every answered request, each once, over their windows.
    total = expected.total()
    blocked = expected[403, "block"]
    fives = sum(n for (status, _), n in expected.items() if status >= 500)

    def reported() -> tuple[int, int, int]:
        reports = watch.health_reports()
        return (
            sum(r["requests"] for r in reports),
            sum(r["blocked"] for r in reports),
            sum(r["responses_5xx"] for r in reports),
        )

    await eventually(lambda: reported() == (total, blocked, fives), what="health reports")
