"""`up`'s synthetic traffic comes from a loopback address of its own, so that a node does not
count it as the rate of a person sending requests from 127.0.0.1 (the example bundle's bot
features score a client over 20 requests a second as fast, and the probe sends about 20)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import web

from failsmall.children import busy_ports
from failsmall.cli import up_cmd
from failsmall.cli.up_cmd import PROBE_ADDRESS, admin_port, probe
from failsmall.transport.natsd import free_port


def _free_pair() -> int:
    """A port free on 127.0.0.1 whose admin port (`admin_port(port, 0)`) is free too."""
    while True:
        port = free_port()
        if not busy_ports({admin_port(port, 0): "admin"}):
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


async def test_up_starts_nothing_when_its_probe_cannot_send_from_its_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 192.0.2.1 (TEST-NET-1) is no address of this machine: nothing can be sent from it.
    monkeypatch.setattr(up_cmd, "PROBE_ADDRESS", "192.0.2.1")
    fleet = up_cmd.Fleet(up_cmd.StateDir(tmp_path / "up"))
    with pytest.raises(up_cmd.UpError, match=r"192\.0\.2\.1.*--no-probe"):
        await up_cmd.start_fleet(fleet, 1, free_port(), free_port(), up_cmd.example_dir())
    assert fleet.origin is None and fleet.plane is None and not fleet.nodes
