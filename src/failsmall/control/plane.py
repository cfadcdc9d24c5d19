"""The control plane assembled: store, tokens, audit log, transport, rollout driver, pushes,
killswitches and the HTTP API, started and stopped as one unit.
"""

from __future__ import annotations

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
from failsmall.control.audit import AuditLog
from failsmall.control.auth import Role, TokenBook, server_log
from failsmall.control.driver import RolloutDriver
from failsmall.control.fleet import FleetRegistry
from failsmall.control.killswitch import KillswitchService
from failsmall.control.pushes import PushService
from failsmall.control.store import ControlStore
from failsmall.model.envelope import key_id, load_public_key
from failsmall.rollout import NAMED_POLICIES, Policy
from failsmall.transport.board import PointerBoard
from failsmall.transport.control import ControlChannel
from failsmall.transport.http import HttpControlChannel
from failsmall.transport.nats import NatsControlChannel

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
    policies: dict[str, Policy] = field(default_factory=lambda: dict(NAMED_POLICIES))


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
        self.audit = AuditLog(store)
        self.fleet = FleetRegistry(store, settings.dead_after_s)
        self.driver = RolloutDriver(
            store=store,
            audit=self.audit,
            channel=channel,
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
            clock=clock,
            policies=settings.policies,
        )
        self.killswitches = KillswitchService(pushes=self.pushes, key=settings.key, clock=clock)
        self.api = ControlApi(
            store=store,
            tokens=self.tokens,
            audit=self.audit,
            driver=self.driver,
            pushes=self.pushes,
            killswitches=self.killswitches,
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
        match settings.transport:
            case "http":
                node_access = TokenBook(store).node_access
                channel = HttpControlChannel(node_access, PointerBoard(store.assignments()))
            case "nats":
                channel = await NatsControlChannel.connect(
                    settings.nats_servers, replicas=settings.nats_replicas
                )
        return cls(settings, store, channel, clock)

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
        await self.driver.start()
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

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.port}"

    async def stop(self) -> None:
        await self.driver.stop()
        await self.channel.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.store.close()
