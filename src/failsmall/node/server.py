"""One edge node process: the proxy listener, the admin listener and the config agent."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass, field

import uvloop

from failsmall.node.access_log import AccessLog, AccessLogError
from failsmall.node.admin import AdminServer
from failsmall.node.agent import ConfigAgent
from failsmall.node.config import NodeConfig, load_trusted_keys, parse_address
from failsmall.node.deadline import Sweeper
from failsmall.node.dir_channel import NullChannel
from failsmall.node.guard import CrashGuard
from failsmall.node.lkg import LastKnownGood
from failsmall.node.metrics import NodeCollector, node_registry
from failsmall.node.proxy import ClientConnection, ProxyContext
from failsmall.node.serving import ServingSlot
from failsmall.node.statefiles import StateDirError, ensure_dir
from failsmall.transport.base import NodeChannel
from failsmall.transport.connect import connect_node_channel

log = logging.getLogger("failsmall.node")

DRAIN_GRACE_S = 5.0
"""How long a stopping node lets requests in flight finish (the supervisor waits 10 s)."""


class ListenError(Exception):
    """A listener could not bind its address; the message names it and what to do."""

    def __init__(self, what: str, host: str, port: int, cause: OSError) -> None:
        reason = os.strerror(cause.errno) if cause.errno else str(cause)
        super().__init__(
            f"cannot listen on {host}:{port} for {what}: {reason}. If another process holds "
            "the port, stop it or choose another address."
        )


@dataclass(eq=False)
class EdgeNode:
    """A running node. `start()` binds both listeners and boots from the LKG; `stop()` ends it.

    Usable as a library: tests, `failsmall up` and drills start nodes in-process with it.
    """

    config: NodeConfig
    channel: NodeChannel | None = None
    slot: ServingSlot = field(default_factory=ServingSlot)
    port: int = 0
    admin_port: int = 0

    def __post_init__(self) -> None:
        self.config.validate()
        self.ctx = ProxyContext(self.slot)
        if self.config.access_log:
            self.ctx.access_log = AccessLog(self.config.access_log, self.ctx.stats)
        state_dir = ensure_dir(self.config.state_dir)
        self.lkg = LastKnownGood(state_dir)
        self.guard = CrashGuard(state_dir, self.config.crash_window_s)
        host, port = parse_address(self.config.listen, "--listen")
        self.agent = ConfigAgent(
            node_id=self.config.node_id,
            channel=self.channel or self.config.channel() or NullChannel(),
            slot=self.slot,
            lkg=self.lkg,
            guard=self.guard,
            trusted=load_trusted_keys(self.config.trust),
            capacities=self.config.capacities,
            stats=self.ctx.stats,
            report_interval_s=self.config.report_interval_s,
            address=f"{host}:{port}",
        )
        self.registry = node_registry(NodeCollector(self.ctx.stats, self.slot, self.agent))
        self.admin = AdminServer(self.slot, self.agent, self.registry)
        self.sweeper = Sweeper(self.ctx.connections)
        self.agent.loops.append(self.sweeper.loop)
        self._server: asyncio.base_events.Server | None = None
        self.stopped = asyncio.Event()

    async def start(self) -> None:
        """Start the admin listener, boot from the last-known-good bundle, then bind the proxy
        port: a worker restarted beside others on a shared port takes connections only once it
        serves its bundle, so none of them meet a 503 while it boots."""
        loop = asyncio.get_running_loop()
        admin_host, admin_port = parse_address(self.config.admin, "--admin")
        try:
            await self.admin.start(admin_host, admin_port)
        except OSError as exc:
            raise ListenError("the admin API", admin_host, admin_port, exc) from exc
        self.admin_port = self.admin.port
        await self.agent.boot()
        host, port = parse_address(self.config.listen, "--listen")
        try:
            self._server = await loop.create_server(
                lambda: ClientConnection(self.ctx),
                host,
                port,
                reuse_port=self.config.reuse_port or None,
                backlog=2048,
            )
        except OSError as exc:
            await self.admin.stop()
            raise ListenError("the proxy", host, port, exc) from exc
        self.port = self._server.sockets[0].getsockname()[1]
        self.agent.address = f"{host}:{self.port}"
        self.sweeper.start()
        self.agent.start()
        log.info(
            "node %s listening on %s:%d (admin %s:%d)",
            self.config.node_id,
            host,
            self.port,
            admin_host,
            self.admin_port,
        )

    async def stop(self, grace_s: float = DRAIN_GRACE_S) -> None:
        """Stop accepting connections, let the requests in flight finish for up to `grace_s`
        (idle keep-alive connections close at once), then stop everything."""
        loop = asyncio.get_running_loop()
        if self._server is not None:
            self._server.close()
        self.ctx.draining = True
        for conn in list(self.ctx.connections):
            conn.drain()
        self.ctx.writes.flush()
        deadline = loop.time() + grace_s
        while self.ctx.connections and loop.time() < deadline:
            await asyncio.sleep(0.02)
        if self.ctx.connections:
            log.warning(
                "%d connections still busy after %.1fs of draining; closing them",
                len(self.ctx.connections),
                grace_s,
            )
        await self.agent.stop()
        await self.sweeper.stop()
        await self.admin.stop()
        for conn in list(self.ctx.connections):
            conn.close()
        self.ctx.pools.close()
        if self.ctx.access_log is not None:
            self.ctx.access_log.close()
        if self._server is not None:
            await self._server.wait_closed()
        self.stopped.set()


async def serve(config: NodeConfig) -> None:
    """Run one node until SIGTERM or SIGINT."""
    channel = None
    if config.control.startswith(("nats://", "tls://")):
        channel = await connect_node_channel(
            config.control, node_id=config.node_id, jetstream_domain=config.jetstream_domain
        )
    node = EdgeNode(config, channel=channel)
    node.guard.record_faults()
    try:
        await node.start()
    except (ListenError, StateDirError, AccessLogError):
        raise  # the operator's to fix, with an exit code that says so; no bundle's fault
    except Exception as exc:
        node.guard.record_exception(exc)
        raise
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    await done.wait()
    await node.stop()


def run(config: NodeConfig) -> None:
    """The entry point of a node worker process."""
    uvloop.run(serve(config))
