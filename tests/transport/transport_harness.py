"""Fixtures that run each transport for real: an aiohttp server, or nats-server with JetStream."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from failsmall.model import Bundle, sign_bundle
from failsmall.transport.base import ApplyReport, HealthReport, NodeChannel
from failsmall.transport.board import PointerBoard
from failsmall.transport.control import ControlChannel
from failsmall.transport.http import HttpControlChannel, HttpNodeChannel, fixed_node_token
from failsmall.transport.nats import NatsControlChannel, NatsNodeChannel
from failsmall.transport.natsd import NatsServer, free_port

NODE_TOKEN = "node-token-for-tests"


@dataclass
class CollectingSink:
    """Keeps every report it receives, and lets a test wait for them."""

    applies: list[ApplyReport] = field(default_factory=list)
    healths: list[HealthReport] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def on_apply(self, report: ApplyReport) -> None:
        self.applies.append(report)
        self.arrived.set()

    async def on_health(self, report: HealthReport) -> None:
        self.healths.append(report)
        self.arrived.set()

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not predicate():
                self.arrived.clear()
                await self.arrived.wait()


def signed_envelope(name: str) -> tuple[str, bytes]:
    signed = sign_bundle(Bundle(name=name), Ed25519PrivateKey.generate())
    return signed.digest, signed.to_bytes()


class TransportHarness:
    """A running transport: its control side, a sink, node channels and a way to restart."""

    kind: str
    control: ControlChannel
    sink: CollectingSink
    published: dict[str, bytes]

    async def publish(self, name: str) -> str:
        """Sign a bundle named `name`, publish it, and return its digest."""
        digest, envelope = signed_envelope(name)
        self.published[digest] = envelope
        await self.control.publish_bundle(digest, envelope)
        return digest

    async def node(self) -> NodeChannel:
        raise NotImplementedError

    async def restart(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class HttpHarness(TransportHarness):
    kind = "http"

    def __init__(self) -> None:
        self.port = free_port()
        self.sink = CollectingSink()
        self._nodes: list[HttpNodeChannel] = []
        self.published = {}
        self._runner: web.AppRunner | None = None

    async def start(self, board: PointerBoard | None = None) -> None:
        channel = HttpControlChannel(fixed_node_token(NODE_TOKEN), board)
        for digest, envelope in self.published.items():
            await channel.publish_bundle(digest, envelope)
        await channel.start(self.sink)
        app = web.Application()
        app.add_routes(channel.routes())
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self.channel = channel
        self.control = channel

    async def node(self) -> NodeChannel:
        node = HttpNodeChannel(f"http://127.0.0.1:{self.port}", NODE_TOKEN)
        self._nodes.append(node)
        return node

    async def restart(self) -> None:
        """Stop serving and come back on the same port with the pointers a store would keep."""
        snapshot = self.channel.board.snapshot()
        await self._stop_server()
        await asyncio.sleep(0.2)
        await self.start(PointerBoard(snapshot))

    async def _stop_server(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def close(self) -> None:
        for node in self._nodes:
            await node.close()
        await self._stop_server()


class NatsHarness(TransportHarness):
    kind = "nats"

    def __init__(self, workdir: Path) -> None:
        self.server = NatsServer(name="solo", workdir=workdir)
        self.sink = CollectingSink()
        self._nodes: list[NatsNodeChannel] = []
        self.published = {}

    async def start(self) -> None:
        await asyncio.to_thread(self.server.start)
        self.control = await NatsControlChannel.connect([self.server.url])
        await self.control.start(self.sink)

    async def node(self) -> NodeChannel:
        node = await NatsNodeChannel.connect([self.server.url])
        self._nodes.append(node)
        return node

    async def restart(self) -> None:
        await asyncio.to_thread(self.server.stop)
        await asyncio.to_thread(self.server.start)

    async def close(self) -> None:
        for node in self._nodes:
            await node.close()
        await self.control.close()
        await asyncio.to_thread(self.server.stop)


class NatsLeafHarness(NatsHarness):
    """JetStream on a hub server; nodes connect to a leaf node of it that has no JetStream, as
    an edge site would. The control side stays on the hub."""

    kind = "nats-leaf"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.server = NatsServer(
            name="hub", workdir=workdir, leafnode_port=free_port(), jetstream_domain="hub"
        )
        self.leaf = NatsServer(
            name="leaf", workdir=workdir, leaf_of=[self.server.leafnode_port], jetstream=False
        )

    async def start(self) -> None:
        await super().start()
        await asyncio.to_thread(self.leaf.start)

    async def node(self) -> NodeChannel:
        node = await NatsNodeChannel.connect([self.leaf.url], jetstream_domain="hub")
        self._nodes.append(node)
        return node

    async def close(self) -> None:
        await super().close()
        await asyncio.to_thread(self.leaf.stop)
