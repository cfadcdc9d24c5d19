"""The floor for a Python proxy: asyncio protocols + uvloop copying bytes, no HTTP at all.

One origin connection per client connection, bytes forwarded verbatim both ways. Not a
usable proxy (no parsing, no headers, no limits); it shows what the event loop costs.
Usage: python bench/passthrough.py LISTEN_PORT ORIGIN_PORT
"""

from __future__ import annotations

import asyncio
import sys
from typing import cast

import uvloop


class ToClient(asyncio.Protocol):
    """Origin side: copies the origin's bytes to the client."""

    def __init__(self, client: asyncio.Transport) -> None:
        self.client = client

    def data_received(self, data: bytes) -> None:
        self.client.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.close()


class FromClient(asyncio.Protocol):
    """Client side: copies the client's bytes to its origin connection."""

    def __init__(self, origin_port: int) -> None:
        self.origin_port = origin_port
        self.origin: asyncio.Transport | None = None
        self.pending: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.connecting = asyncio.ensure_future(self.connect())

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        origin, _ = await loop.create_connection(
            lambda: ToClient(self.transport), "127.0.0.1", self.origin_port
        )
        self.origin = origin
        for data in self.pending:
            origin.write(data)

    def data_received(self, data: bytes) -> None:
        if self.origin is None:
            self.pending.append(data)
        else:
            self.origin.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.origin is not None:
            self.origin.close()


async def serve(port: int, origin_port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: FromClient(origin_port), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1]), int(sys.argv[2])))
