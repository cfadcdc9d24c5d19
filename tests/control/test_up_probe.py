"""`up`'s synthetic traffic comes from a loopback address of its own, so that a node does not
count it as the rate of a person sending requests from 127.0.0.1 (the example bundle's bot
features score a client over 20 requests a second as fast, and the probe sends about 20)."""

from __future__ import annotations

import asyncio
import socket

from aiohttp import web

from failsmall.cli.up_cmd import PROBE_ADDRESS, admin_port, probe
from failsmall.transport.natsd import free_port


def _free_pair() -> int:
    """A port free on 127.0.0.1 whose admin port (`admin_port(port, 0)`) is free too."""
    while True:
        port = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", admin_port(port, 0)))
            except OSError:
                continue
        return port


async def _serve(app: web.Application, port: int) -> web.AppRunner:
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def test_the_probe_sends_from_its_own_address_not_127_0_0_1() -> None:
    seen: list[str | None] = []

    async def home(request: web.Request) -> web.Response:
        seen.append(request.remote)
        return web.Response(text="shop.example")

    async def readyz(_request: web.Request) -> web.Response:
        return web.Response(text="ready")

    port = _free_pair()
    proxy = web.Application()
    proxy.router.add_get("/", home)
    admin = web.Application()
    admin.router.add_get("/readyz", readyz)
    runners = [await _serve(proxy, port), await _serve(admin, admin_port(port, 0))]
    stop = asyncio.Event()
    task = asyncio.create_task(probe([port], stop, port))
    try:
        async with asyncio.timeout(20):
            while len(seen) < 5:
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
        for runner in runners:
            await runner.cleanup()
    assert set(seen) == {PROBE_ADDRESS}, seen
