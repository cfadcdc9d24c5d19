"""A fault-injecting TCP proxy, between a node and its control plane or between the nodes and
their origin: the transport can be cut (every open connection closed, new ones refused by
closing them at once), slowed (every reply held back a while) and mended."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from failsmall.transport.natsd import free_port

CHUNK = 64 * 1024


class FaultyLink:
    """Listens on a free loopback port and relays each connection to `target_port`."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.cut_off = False
        self.delay_s = 0.0
        """How long each chunk of a reply is held back."""
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def cut(self) -> None:
        self.cut_off = True
        for writer in list(self._writers):
            writer.close()

    def slow(self, delay_s: float) -> None:
        self.delay_s = delay_s

    def mend(self) -> None:
        self.cut_off = False
        self.delay_s = 0.0

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_off:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        try:
            await asyncio.gather(
                _pipe(reader, up_writer, lambda: 0.0), _pipe(up_reader, writer, self._delay)
            )
        finally:
            self._writers.difference_update((writer, up_writer))
            for w in (writer, up_writer):
                w.close()

    def _delay(self) -> float:
        return self.delay_s


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: Callable[[], float]
) -> None:
    """Copy until either side closes (a cut closes both), holding each chunk `delay()`."""
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(CHUNK):
            if (held := delay()) > 0:
                await asyncio.sleep(held)
            writer.write(data)
            await writer.drain()
    writer.close()
