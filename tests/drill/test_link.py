"""The fault-injecting link slows, cuts, black-holes and mends a real TCP connection."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from failsmall.drill.link import FaultyLink


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
