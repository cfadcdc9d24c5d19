"""A real control plane on loopback, scripted nodes that speak the real HTTP transport, and
bundles built from the example site."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from failsmall.build import load_config_dir
from failsmall.control.plane import ControlPlane, ControlSettings
from failsmall.model import Bundle, sign_bundle
from failsmall.model.envelope import bundle_data
from failsmall.rollout import NAMED_POLICIES, Policy
from failsmall.transport.base import (
    ApplyReport,
    ApplyResult,
    Assignment,
    HealthReport,
    NoChange,
    NodeChannel,
    TransportError,
)
from failsmall.transport.http import HttpNodeChannel
from failsmall.transport.stopping import cancel_and_wait

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "site"


def quick(policy: Policy, bake_s: float = 0.6) -> Policy:
    """The same waves and gate with short bakes, so a test runs in seconds."""
    waves = tuple(dataclasses.replace(w, bake_s=bake_s) for w in policy.waves)
    return dataclasses.replace(policy, waves=waves, rollback_confirm_s=5.0)


QUICK_POLICIES = {name: quick(policy) for name, policy in NAMED_POLICIES.items()}


def example_bundle(name: str = "example-site") -> Bundle:
    """The example site: the full managed ruleset (slow to compile, about 2 s)."""
    bundle = load_config_dir(EXAMPLE)
    data = bundle_data(bundle)
    data["name"] = name
    return Bundle.model_validate(data)


def site_bundle(name: str = "site") -> Bundle:
    """A small site: custom rules only, so that the engine compiles it in milliseconds."""
    return Bundle.model_validate(
        {
            "name": name,
            "origins": [{"id": "web", "url": "http://127.0.0.1:8001"}],
            "routes": [{"host": "*", "path_prefix": "/", "origin": "web"}],
            "ip_lists": {"known-bad": ["198.51.100.7"]},
            "rulesets": [
                {
                    "id": "site-custom",
                    "kind": "custom",
                    "rules": [
                        {
                            "id": "block-known-bad",
                            "expression": 'ip_in_list(ip.src, "known-bad")',
                            "action": {"type": "block", "status": 403},
                        },
                        {
                            "id": "block-admin",
                            "expression": 'http.request.uri.path.startsWith("/admin")',
                            "action": {"type": "block", "status": 403},
                        },
                    ],
                }
            ],
            "phases": {"http_request_firewall_custom": "site-custom"},
        }
    )


def block_everything(base: Bundle, name: str = "blocks-everyone") -> Bundle:
    """The base bundle plus a custom rule that blocks every request."""
    data = bundle_data(base)
    data["name"] = name
    for ruleset in data["rulesets"]:
        if ruleset["id"] == "site-custom":
            ruleset["rules"].insert(
                0,
                {
                    "id": "block-everything",
                    "expression": "true",
                    "action": {"type": "block", "status": 403},
                },
            )
    return Bundle.model_validate(data)


def envelope(bundle: Bundle, key: Ed25519PrivateKey) -> tuple[str, bytes]:
    signed = sign_bundle(bundle, key)
    return signed.digest, signed.to_bytes()


@dataclass
class Traffic:
    """What a scripted node reports per window for the bundle it serves."""

    requests: int = 20
    blocked: int = 0
    responses_5xx: int = 0


HEALTHY = Traffic()


@dataclass
class ScriptedNode:
    """A node that follows its assignments over real HTTP and reports scripted health.

    It ACKs every bundle except digests in `refuse` (NACK), and reports `traffic(digest)`.
    """

    node_id: str
    url: str
    token: str
    traffic: Callable[[str], Traffic] = lambda digest: HEALTHY
    refuse: set[str] = field(default_factory=set)
    report_every_s: float = 0.2
    channel: NodeChannel | None = None
    current: str = ""
    applied: list[str] = field(default_factory=list)
    assigned: list[str] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        if self.channel is None:
            self.channel = HttpNodeChannel(self.url, self.token)
        self._tasks = [
            asyncio.create_task(self._follow()),
            asyncio.create_task(self._report()),
        ]

    async def stop(self) -> None:
        await cancel_and_wait(*self._tasks)
        await self._channel().close()

    def _channel(self) -> NodeChannel:
        if self.channel is None:
            raise RuntimeError("start the node first")
        return self.channel

    async def _follow(self) -> None:
        channel = self._channel()
        revision = 0
        while True:
            try:
                result = await channel.watch(self.node_id, revision, 2.0)
                match result:
                    case NoChange():
                        continue
                    case Assignment(digest=digest, revision=rev):
                        await channel.fetch(digest)
                        revision = rev
                        self.assigned.append(digest)
                        await self._apply(channel, digest)
            except TransportError:
                await asyncio.sleep(0.1)

    async def _apply(self, channel: NodeChannel, digest: str) -> None:
        if digest in self.refuse:
            report = ApplyReport(
                self.node_id, digest, ApplyResult.NACK, "over capacity", time.time()
            )
        else:
            self.current = digest
            self.applied.append(digest)
            report = ApplyReport(self.node_id, digest, ApplyResult.ACK, at=time.time())
        await self._send(channel.send_apply(report))

    async def _report(self) -> None:
        channel = self._channel()
        while True:
            traffic = self.traffic(self.current)
            report = HealthReport(
                node_id=self.node_id,
                digest=self.current,
                lkg_digest=self.current,
                at=time.time(),
                window_s=self.report_every_s,
                requests=traffic.requests if self.current else 0,
                blocked=traffic.blocked if self.current else 0,
                responses_5xx=traffic.responses_5xx if self.current else 0,
                p99_ms=3.0,
            )
            await self._send(channel.send_health(report))
            await asyncio.sleep(self.report_every_s)

    @staticmethod
    async def _send(sending: Any) -> None:
        with contextlib.suppress(TransportError):
            await sending


@dataclass
class Fleet:
    """A control plane, its admin client and scripted nodes."""

    plane: ControlPlane
    admin: httpx.AsyncClient
    node_token: str
    nodes: list[ScriptedNode]

    async def add_nodes(self, count: int, **kwargs: Any) -> list[ScriptedNode]:
        added = []
        for i in range(len(self.nodes), len(self.nodes) + count):
            node = ScriptedNode(f"edge-{i}", self.plane.url, self.node_token, **kwargs)
            node.start()
            added.append(node)
        self.nodes.extend(added)
        await wait_for(lambda: len(self.plane.fleet.live_nodes()) >= len(self.nodes))
        return added

    async def token(self, role: str, principal: str) -> str:
        response = await self.admin.post("/v1/tokens", json={"principal": principal, "role": role})
        response.raise_for_status()
        return str(response.json()["token"])

    async def push(self, raw: bytes, **params: str) -> httpx.Response:
        return await self.admin.post("/v1/bundles", content=raw, params=params)

    async def status(self) -> dict[str, Any]:
        response = await self.admin.get("/v1/status")
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    async def wait_rollout_done(self, rollout_id: str, timeout_s: float = 30) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            response = await self.admin.get(f"/v1/rollouts/{rollout_id}")
            state = str(response.json()["state"])
            if state in ("completed", "rolled_back", "aborted"):
                return state
            await asyncio.sleep(0.1)
        audit = (await self.admin.get("/v1/audit", params={"limit": 50})).json()
        trail = [f"{e['actor']} {e['action']}: {e['reason']}" for e in audit]
        raise AssertionError(f"rollout {rollout_id} did not finish in {timeout_s}s: {trail}")


async def wait_for(
    predicate: Callable[[], bool],
    timeout_s: float = 15,
    explain: Callable[[], str] = lambda: "",
) -> None:
    """Poll `predicate` until it holds; on timeout fail with what `explain` says of the state."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached in {timeout_s}s\n{explain()}")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running_plane(
    db: Path, key: Ed25519PrivateKey, port: int = 0
) -> AsyncIterator[ControlPlane]:
    settings = ControlSettings(
        db=db,
        key=key,
        port=port,
        tick_s=0.2,
        dead_after_s=3.0,
        admin_token_file=db.parent / "admin.token",
        policies=QUICK_POLICIES,
    )
    plane = await ControlPlane.open(settings)
    await plane.start()
    try:
        yield plane
    finally:
        await plane.stop()


@contextlib.asynccontextmanager
async def running_fleet(tmp_path: Path, key: Ed25519PrivateKey) -> AsyncIterator[Fleet]:
    async with running_plane(tmp_path / "control.db", key) as plane:
        admin_token = (tmp_path / "admin.token").read_text().strip()
        async with httpx.AsyncClient(
            base_url=plane.url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=30
        ) as admin:
            response = await admin.post("/v1/tokens", json={"principal": "edge-*", "role": "node"})
            response.raise_for_status()
            fleet = Fleet(plane, admin, response.json()["token"], [])
            try:
                yield fleet
            finally:
                for node in fleet.nodes:
                    await node.stop()
