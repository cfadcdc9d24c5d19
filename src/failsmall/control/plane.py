"""The control plane assembled: store, tokens, audit log, transport, rollout driver, pushes,
killswitches and the HTTP API, started and stopped as one unit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from failsmall.control.api import MAX_BODY, ControlApi, json_errors
from failsmall.control.audit import AuditLog, CheckpointFile
from failsmall.control.auth import Role, TokenBook, UnauthorisedError, server_log
from failsmall.control.driver import RolloutDriver
from failsmall.control.fleet import FleetRegistry
from failsmall.control.killswitch import KillswitchService
from failsmall.control.pushes import PushService
from failsmall.control.reconcile import Reconciler
from failsmall.control.refusals import RefusalAudit
from failsmall.control.store import ControlStore
from failsmall.model.envelope import key_id, load_public_key
from failsmall.rollout import NAMED_POLICIES, Policy
from failsmall.supervise import LoopHealth, LoopState, SupervisedLoop
from failsmall.transport.base import TransportError
from failsmall.transport.board import PointerBoard
from failsmall.transport.control import ControlChannel
from failsmall.transport.http import HttpControlChannel, NodeAccess
from failsmall.transport.nats import NatsControlChannel
from failsmall.transport.stopping import cancel_and_wait

log = logging.getLogger(__name__)

TransportKind = Literal["http", "nats"]


@dataclass
class ControlSettings:
    """How to run a control plane. Listens on loopback unless told otherwise."""

    db: Path
    key: Ed25519PrivateKey
    host: str = "127.0.0.1"
    port: int = 7070
    trusted: dict[str, Ed25519PublicKey] = field(default_factory=dict)
    transport: TransportKind = "http"
    nats_servers: list[str] = field(default_factory=list)
    nats_replicas: int = 1
    tick_s: float = 1.0
    dead_after_s: float = 5.0
    admin_token_file: Path | None = None
    audit_checkpoints: Path | None = None
    """Where signed audit checkpoints are appended; beside the store unless set."""
    policies: dict[str, Policy] = field(default_factory=lambda: dict(NAMED_POLICIES))


class NodeAuth:
    """Decides whether a token may use the node transport routes as a node; each refusal is
    passed to `refused(principal, node_id)` (the audit, once the plane exists)."""

    def __init__(self, tokens: TokenBook) -> None:
        self._tokens = tokens
        self.refused: Callable[[str, str], None] = lambda principal, node_id: None

    def check(self, token: str, node_id: str) -> NodeAccess:
        try:
            principal = self._tokens.authenticate(token)
        except UnauthorisedError:
            self.refused("unknown", node_id)
            return NodeAccess.UNKNOWN_TOKEN
        if principal.may_act_as_node(node_id):
            return NodeAccess.ALLOWED
        self.refused(principal.name, node_id)
        return NodeAccess.FORBIDDEN


class ControlPlane:
    """A running control plane. Build with `open`, then `start`, and `stop` at the end."""

    def __init__(
        self,
        settings: ControlSettings,
        store: ControlStore,
        channel: ControlChannel,
        clock: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.store = store
        self.channel = channel
        self.clock = clock
        self.tokens = TokenBook(store)
        checkpoints = settings.audit_checkpoints or settings.db.with_name(
            settings.db.name + ".audit-checkpoints"
        )
        self.audit = AuditLog(store, settings.key, CheckpointFile(checkpoints))
        self.refusals = RefusalAudit(self.audit, clock)
        self.fleet = FleetRegistry(store, settings.dead_after_s, started_at=clock())
        self.reconciler = Reconciler(store, channel, clock)
        self._reconciling = SupervisedLoop("pointer reconciler", self.reconciler.step, log)
        self._reconciler_task: asyncio.Task[None] | None = None
        self.driver = RolloutDriver(
            store=store,
            audit=self.audit,
            wake=self.reconciler.wake,
            fleet=self.fleet,
            clock=clock,
            tick_s=settings.tick_s,
        )
        trusted = dict(settings.trusted)
        own = settings.key.public_key()
        trusted[key_id(own)] = own
        for kid, pem in json.loads(store.get_value("trusted_keys", "{}")).items():
            trusted[kid] = load_public_key(pem.encode())
        self.pushes = PushService(
            store=store,
            audit=self.audit,
            channel=channel,
            driver=self.driver,
            trusted=trusted,
            refusals=self.refusals,
            clock=clock,
            policies=settings.policies,
        )
        self.killswitches = KillswitchService(
            pushes=self.pushes, audit=self.audit, key=settings.key, clock=clock
        )
        self.api = ControlApi(
            store=store,
            tokens=self.tokens,
            audit=self.audit,
            driver=self.driver,
            pushes=self.pushes,
            killswitches=self.killswitches,
            refusals=self.refusals,
            control_health=self.health,
            pending_moves=self.pending_moves,
            clock=clock,
        )
        self._runner: web.AppRunner | None = None
        self.port = settings.port

    @classmethod
    async def open(
        cls, settings: ControlSettings, clock: Callable[[], float] = time.time
    ) -> ControlPlane:
        store = ControlStore(settings.db)
        channel: ControlChannel
        node_auth = NodeAuth(TokenBook(store))
        match settings.transport:
            case "http":
                board = PointerBoard(store.assignments(), record=store.save_assignment)
                channel = HttpControlChannel(node_auth.check, board)
            case "nats":
                channel = await NatsControlChannel.connect(
                    settings.nats_servers, replicas=settings.nats_replicas
                )
        plane = cls(settings, store, channel, clock)
        node_auth.refused = plane.refusals.node_route
        return plane

    def app(self) -> web.Application:
        app = web.Application(middlewares=[json_errors], client_max_size=MAX_BODY)
        app.add_routes(self.api.routes())
        if isinstance(self.channel, HttpControlChannel):
            app.add_routes(self.channel.routes())
        return app

    def bootstrap_admin_token(self) -> None:
        """On a fresh store, issue an admin token and write it (mode 0600) to the token file."""
        if self.tokens.listing() or self.settings.admin_token_file is None:
            return
        issued = self.tokens.issue("admin", Role.ADMIN, self.clock())
        path = self.settings.admin_token_file
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(issued.token + "\n")
        self.audit.append(
            self.clock(),
            "control",
            "token_create",
            "bootstrap admin token",
            {"id": issued.token_id},
        )

    async def start(self) -> None:
        for bundle in self.store.bundles():
            await self.channel.publish_bundle(bundle.digest, bundle.envelope)
        await self.channel.start(self.driver)
        await self._read_back_pointers()
        await self.driver.start()
        self._reconciler_task = asyncio.create_task(self._reconciling.run())
        self._runner = web.AppRunner(
            self.app(), access_log=None, logger=server_log, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.port)
        await site.start()
        addresses = self._runner.addresses
        if addresses:
            self.port = int(addresses[0][1])
        self.bootstrap_admin_token()
        log.info("control plane listening on http://%s:%d", self.settings.host, self.port)

    async def _read_back_pointers(self) -> None:
        """Record the pointers the transport holds: a move made just before a crash is then
        not made again (and the HTTP board's were recorded before they were made)."""
        try:
            held = await self.channel.assignments()
        except TransportError as exc:
            log.warning("cannot read the pointers back from the transport (%s); the reconciler "
                        "will move every pending node again", exc)  # fmt: skip
            return
        stored = self.store.assignments()
        for node_id, assignment in held.items():
            if stored.get(node_id) != assignment:
                self.reconciler.record(node_id, assignment)

    def pending_moves(self) -> dict[str, str]:
        """Desired pointer moves (node -> digest) the transport has not made yet."""
        return {move.node_id: move.digest for move in self.reconciler.pending()}

    def health(self) -> dict[str, object]:
        """The state of every background loop; `degraded` if any of them is."""
        loops: list[LoopHealth] = [self.driver.health(), self._reconciling.health]
        loops += self.channel.health()
        degraded = any(loop.state is LoopState.DEGRADED for loop in loops)
        return {
            "state": (LoopState.DEGRADED if degraded else LoopState.HEALTHY).value,
            "loops": [loop.to_dict() for loop in loops],
        }

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.port}"

    async def stop(self) -> None:
        await self.driver.stop()
        if self._reconciler_task is not None:
            await cancel_and_wait(self._reconciler_task)
            self._reconciler_task = None
        await self.channel.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.store.close()
