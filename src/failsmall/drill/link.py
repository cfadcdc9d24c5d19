"""A fault-injecting TCP proxy, between a node and its control plane or between the nodes and
their origin: the transport can be cut (every open connection closed, new ones refused by
closing them at once), black-holed (nothing passes either way and nothing is closed, as when
packets are dropped: each side waits on its own timeouts), slowed (every reply held back a
while) and mended."""

from __future__ import annotations

import asyncio
import contextlib

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
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def stop(self) -> None:
        self.cut()
        self._flowing.set()  # wakes held relays, which find their connections closed
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def cut(self) -> None:
        self.cut_off = True
        for writer in list(self._writers):
            writer.close()

    def blackhole(self) -> None:
        self._flowing.clear()

    def slow(self, delay_s: float) -> None:
        self.delay_s = delay_s

    def mend(self) -> None:
        self.cut_off = False
        self.delay_s = 0.0
        self._flowing.set()

    @property
    def black_holed(self) -> bool:
        return not self._flowing.is_set()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_off:
            writer.close()
            return
        await self._flowing.wait()
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        try:
            await asyncio.gather(
                self._pipe(reader, up_writer, replies=False),
                self._pipe(up_reader, writer, replies=True),
            )
        finally:
            self._writers.difference_update((writer, up_writer))
            for w in (writer, up_writer):
                w.close()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, replies: bool
    ) -> None:
        """Copy until either side closes (a cut closes both); replies wait `delay_s`, and
        nothing passes while the link is black-holed."""
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(CHUNK):
                if replies and self.delay_s > 0:
                    await asyncio.sleep(self.delay_s)
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        writer.close()
