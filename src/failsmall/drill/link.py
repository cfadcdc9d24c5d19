"""A fault-injecting TCP proxy, between a node and its control plane or between the nodes and
their origin: the transport can be cut (every open connection closed, new ones refused by
closing them at once), black-holed (nothing passes either way and nothing is closed, as when
packets are dropped: each side waits on its own timeouts), slowed (every reply held back a
while) and mended.

`LinkControl` lets another process (a Chaos Toolkit experiment) cut and mend a fleet's links
over HTTP on loopback, the way Toxiproxy's API does:

    GET  /links               {"edge-1": "mended", "edge-2": "cut", ...}
    POST /links/{node_id}     {"state": "cut" | "blackhole" | "mended"} -> {"node_id", "state"}

An unknown node answers 404 and a body that is not one of those states 400, both with a JSON
`error`; neither changes a link."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from enum import StrEnum
from typing import assert_never

from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from failsmall.transport.natsd import free_port

CHUNK = 64 * 1024


class LinkState(StrEnum):
    """What a link does to the bytes it relays. `slow` is only reported: it is set in-process."""

    MENDED = "mended"
    CUT = "cut"
    BLACKHOLE = "blackhole"
    SLOW = "slow"


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

    @property
    def state(self) -> LinkState:
        if self.cut_off:
            return LinkState.CUT
        if self.black_holed:
            return LinkState.BLACKHOLE
        if self.delay_s > 0:
            return LinkState.SLOW
        return LinkState.MENDED

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


WANTED = 'the body must be {"state": "cut" | "blackhole" | "mended"}'


class LinkChange(BaseModel):
    """The body of `POST /links/{node_id}`."""

    model_config = ConfigDict(extra="forbid")
    state: LinkState


class LinkControl:
    """An HTTP listener on a free loopback port that reports and sets a fleet's links."""

    def __init__(self, links: Mapping[str, FaultyLink]) -> None:
        self.links = links
        self.port = free_port()
        app = web.Application()
        app.router.add_get("/links", self._list)
        app.router.add_post("/links/{node_id}", self._set)
        self._runner = web.AppRunner(app, access_log=None)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def _list(self, request: web.Request) -> web.Response:
        return web.json_response({node_id: link.state for node_id, link in self.links.items()})

    async def _set(self, request: web.Request) -> web.Response:
        node_id = request.match_info["node_id"]
        link = self.links.get(node_id)
        if link is None:
            known = ", ".join(sorted(self.links)) or "none"
            return _refuse(404, f"no link for node {node_id!r}; known nodes: {known}")
        body = await request.read()
        try:
            change = LinkChange.model_validate_json(body)
        except ValidationError:
            shown = body[:100].decode(errors="replace")
            return _refuse(400, f"{WANTED}, not {shown!r}")
        match change.state:
            case LinkState.CUT:
                link.mend()
                link.cut()
            case LinkState.BLACKHOLE:
                link.mend()
                link.blackhole()
            case LinkState.MENDED:
                link.mend()
            case LinkState.SLOW:
                return _refuse(400, f"{WANTED}: slowing a link is not offered here")
            case _ as unreachable:
                assert_never(unreachable)
        return web.json_response({"node_id": node_id, "state": link.state})


def _refuse(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
