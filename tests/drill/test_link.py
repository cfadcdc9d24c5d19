"""The fault-injecting link slows, cuts, black-holes and mends a real TCP connection, in-process
and through its HTTP link control."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

import httpx
import pytest

from failsmall.drill.chaosfailsmall import FailsmallActivityError
from failsmall.drill.chaosfailsmall.actions import mend_node, partition_node
from failsmall.drill.link import FaultyLink, LinkControl, LinkState

T = TypeVar("T")


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1024):
        writer.write(data)
        await writer.drain()
    writer.close()


async def _round_trip(port: int) -> tuple[bytes, float]:
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"ping")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(1024), 10)
    writer.close()
    return answer, time.monotonic() - started


@contextlib.asynccontextmanager
async def echo_behind_a_link() -> AsyncIterator[FaultyLink]:
    """An echo server on a free loopback port, with a fault-injecting link in front."""
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    link = FaultyLink(server.sockets[0].getsockname()[1])
    await link.start()
    try:
        yield link
    finally:
        await link.stop()
        server.close()
        await server.wait_closed()


async def test_the_link_holds_replies_back_cuts_and_mends() -> None:
    async with echo_behind_a_link() as link:
        assert (await _round_trip(link.port))[0] == b"ping"
        link.slow(0.5)
        answer, took = await _round_trip(link.port)
        assert answer == b"ping" and took >= 0.5
        link.cut()
        try:
            answer = (await _round_trip(link.port))[0]
        except ConnectionResetError:
            answer = b""
        assert answer == b"", "a cut link closes every connection at once"
        link.mend()
        assert (await _round_trip(link.port))[0] == b"ping"
        assert link.delay_s == 0.0, "mended: no delay left"


async def test_a_black_holed_link_holds_everything_until_mended() -> None:
    """Nothing passes and nothing is closed; once mended, what was held arrives."""
    async with echo_behind_a_link() as link:
        reader, writer = await asyncio.open_connection("127.0.0.1", link.port)
        link.blackhole()
        writer.write(b"ping")
        await writer.drain()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(1024), 1.0)
        link.mend()
        assert await asyncio.wait_for(reader.read(1024), 10) == b"ping"
        writer.close()


@contextlib.asynccontextmanager
async def controlled_link() -> AsyncIterator[tuple[FaultyLink, LinkControl]]:
    """An echo server behind a link, and that link served by a link control as `edge-1`."""
    async with echo_behind_a_link() as link:
        control = LinkControl({"edge-1": link})
        await control.start()
        try:
            yield link, control
        finally:
            await control.stop()


async def _relays(port: int) -> bool:
    try:
        return (await _round_trip(port))[0] == b"ping"
    except ConnectionError:
        return False


async def test_the_link_control_refuses_bad_input_and_changes_nothing() -> None:
    async with controlled_link() as (link, control), httpx.AsyncClient() as client:
        refused = [
            await client.post(f"{control.url}/links/edge-9", json={"state": "cut"}),
            await client.post(f"{control.url}/links/edge-1", json={"state": "sideways"}),
            await client.post(f"{control.url}/links/edge-1", json={"state": "slow"}),
            await client.post(f"{control.url}/links/edge-1", json={"state": "cut", "x": 1}),
            await client.post(f"{control.url}/links/edge-1", content=b"cut"),
        ]
        assert [r.status_code for r in refused] == [404, 400, 400, 400, 400]
        assert "known nodes: edge-1" in refused[0].json()["error"]
        assert all('"state"' in r.json()["error"] for r in refused[1:])
        assert (await client.get(f"{control.url}/links")).json() == {"edge-1": "mended"}
        assert link.state is LinkState.MENDED
        assert await _relays(link.port)
        with pytest.raises(FailsmallActivityError, match="mode must be"):
            await asyncio.to_thread(partition_node, control.url, "edge-1", "sideways")
        with pytest.raises(FailsmallActivityError, match="404 no link for node 'edge-9'"):
            await asyncio.to_thread(partition_node, control.url, "edge-9")
        with pytest.raises(FailsmallActivityError, match="loopback"):
            await asyncio.to_thread(partition_node, "http://192.0.2.1:9", "edge-1")
        assert link.state is LinkState.MENDED
        assert await _relays(link.port)


async def test_partitioning_through_the_link_control_stops_and_restores_relayed_bytes() -> None:
    async with controlled_link() as (link, control), httpx.AsyncClient() as client:
        cut = await asyncio.to_thread(partition_node, control.url, "edge-1")
        assert cut == {"node_id": "edge-1", "state": "cut"}
        assert not await _relays(link.port)
        assert (await client.get(f"{control.url}/links")).json() == {"edge-1": "cut"}
        mended = await asyncio.to_thread(mend_node, control.url, "edge-1")
        assert mended == {"node_id": "edge-1", "state": "mended"}
        assert await _relays(link.port)

        timed = asyncio.create_task(
            asyncio.to_thread(partition_node, control.url, "edge-1", "blackhole", 2.0)
        )
        while link.state is LinkState.MENDED and not timed.done():
            await asyncio.sleep(0.05)
        assert link.state is LinkState.BLACKHOLE
        reader, writer = await asyncio.open_connection("127.0.0.1", link.port)
        writer.write(b"ping")
        await writer.drain()
        assert await timed == {"node_id": "edge-1", "state": "mended"}, "mended after 2 s"
        assert await asyncio.wait_for(reader.read(1024), 10) == b"ping", "held bytes arrive"
        writer.close()
        assert await _relays(link.port)


class Interrupted(Exception):
    """Raised by a signal handler in the middle of a timed partition."""


def _interrupt(signum: int, frame: object) -> None:
    raise Interrupted


def test_an_interrupted_timed_partition_still_mends() -> None:
    """A timed partition whose wait is broken off (as by Ctrl-C) mends the link on the way out."""
    loop = asyncio.new_event_loop()
    serving = threading.Thread(target=loop.run_forever, daemon=True)
    serving.start()

    def on_loop(coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(30)

    controlled = controlled_link()
    link, control = on_loop(controlled.__aenter__())
    previous = signal.signal(signal.SIGUSR1, _interrupt)
    try:
        seen: list[LinkState] = []

        def look_then_interrupt() -> None:
            seen.append(link.state)
            os.kill(os.getpid(), signal.SIGUSR1)

        threading.Timer(1.0, look_then_interrupt).start()
        with pytest.raises(Interrupted):
            partition_node(control.url, "edge-1", seconds=60)
        assert seen == [LinkState.CUT], "cut while the partition lasted"
        assert link.state is LinkState.MENDED
        assert on_loop(_relays(link.port))
    finally:
        signal.signal(signal.SIGUSR1, previous)
        on_loop(controlled.__aexit__(None, None, None))
        loop.call_soon_threadsafe(loop.stop)
        serving.join(10)
        loop.close()
