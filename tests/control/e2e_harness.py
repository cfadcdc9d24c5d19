"""A real fleet on loopback: the control plane, edge node processes (`failsmall node` over the
HTTP transport), a demo origin and steady traffic to every node."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx
from aiohttp import web
from control_harness import EXAMPLE, wait_for
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from failsmall.build import generate_keypair, read_private_key
from failsmall.cli.demo_origin import start_demo_origin
from failsmall.cli.up_cmd import (
    NODE_TOKEN_ENV,
    PROBE_HEADERS,
    demo_bundle,
    failsmall_argv,
    node_argv,
)
from failsmall.control.auth import Role
from failsmall.control.plane import ControlPlane, ControlSettings
from failsmall.model import Bundle, SignedBundle, sign_bundle
from failsmall.model.envelope import bundle_data
from failsmall.rollout import GLOBAL, NAMED_POLICIES
from failsmall.transport.natsd import free_port

# The default policies, except `global` (used only to seed the fleet) bakes 8 s so that every
# node has built the example's engine (managed ruleset) and reported before its gate judges.
E2E_POLICIES = {
    **NAMED_POLICIES,
    "global": dataclasses.replace(
        GLOBAL, waves=(dataclasses.replace(GLOBAL.waves[0], bake_s=8.0),)
    ),
}


@dataclass
class EdgeProcess:
    """One `failsmall node` process and where it listens and logs."""

    node_id: str
    port: int
    admin_port: int
    log: Path
    process: subprocess.Popen[bytes]

    def served(self) -> list[str]:
        """Digests this node swapped to, in order, from its own log."""
        marker = "now serving bundle "
        return [
            line.split(marker, 1)[1].split()[0]
            for line in self.log.read_text(errors="replace").splitlines()
            if marker in line
        ]


@dataclass
class RealFleet:
    """Everything one end-to-end test runs against. Every node writes its access log to
    `access_log(node)`."""

    tmp: Path
    plane: ControlPlane
    admin: httpx.AsyncClient
    admin_token: str
    key_file: Path
    key: Ed25519PrivateKey
    origin_port: int
    nodes: list[EdgeProcess]
    sent: dict[str, int] = field(default_factory=dict)

    def access_log(self, node: EdgeProcess) -> Path:
        return self.tmp / f"{node.node_id}.access.log"

    async def cli(self, *args: str) -> tuple[int, str, str]:
        """Run `failsmall ARGS` as its own process against this fleet's control plane."""
        env = {
            **os.environ,
            "FAILSMALL_CONTROL": self.plane.url,
            "FAILSMALL_TOKEN": self.admin_token,
            "FAILSMALL_HOME": str(self.tmp / "home"),
            "COLUMNS": "200",
        }
        process = await asyncio.create_subprocess_exec(
            *failsmall_argv(),
            *args,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 240)
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    async def last_good(self) -> str:
        return str((await self.admin.get("/v1/status")).json()["last_good"])

    async def audit(self, limit: int = 5000) -> list[dict[str, object]]:
        return list((await self.admin.get("/v1/audit", params={"limit": limit})).json())

    def bundle(self) -> Bundle:
        return demo_bundle(EXAMPLE, self.origin_port)

    def sign(self, bundle: Bundle) -> SignedBundle:
        return sign_bundle(bundle, self.key)

    async def push(self, bundle: Bundle, **params: str) -> tuple[str, str]:
        signed = self.sign(bundle)
        response = await self.admin.post("/v1/bundles", content=signed.to_bytes(), params=params)
        assert response.status_code == 202, response.text
        return signed.digest, str(response.json()["rollout_id"])

    async def wait_done(self, rollout_id: str, timeout_s: float = 90) -> str:
        """The state a rollout ends in (completed, rolled_back or aborted)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state = str((await self.admin.get(f"/v1/rollouts/{rollout_id}")).json()["state"])
            if state in ("completed", "rolled_back", "aborted"):
                return state
            await asyncio.sleep(0.1)
        row = (await self.admin.get(f"/v1/rollouts/{rollout_id}")).json()
        raise AssertionError(
            f"rollout {rollout_id} did not finish in {timeout_s}s: {row['state']}, "
            f"events {row['events'][-5:]}\n{await self.audit_trail()}\n"
            + _fleet_state(self.plane, self.nodes)
        )

    async def audit_trail(self, limit: int = 30) -> str:
        """The latest audit entries, one per line, for assertion messages."""
        audit = await self.audit(limit)
        return "\n".join(f"{e['actor']} {e['action']}: {e['reason']}" for e in audit)

    async def seed(self) -> str:
        """Roll the example bundle out to every node (`global`); its digest."""
        digest, rollout_id = await self.push(self.bundle(), policy="global")
        # On a loaded machine the nodes may build the first engine after the wave's bake
        # and its extensions: the gate then pauses as inconclusive, and once every node
        # serves the bundle it is resumed, as an operator would.
        await wait_for(lambda: all(digest in n.served() for n in self.nodes), timeout_s=120)
        row = (await self.admin.get(f"/v1/rollouts/{rollout_id}")).json()
        if row["state"] == "paused":
            await self.admin.post("/v1/rollout/resume", json={})
        state = await self.wait_done(rollout_id)
        assert state == "completed", f"seeding ended {state}:\n{await self.audit_trail()}"
        return digest

    def reported_digests(self) -> dict[str, str]:
        return {n["node_id"]: n["digest"] for n in self.plane.store.nodes()}


def with_changes(bundle: Bundle, **changes: object) -> Bundle:
    data = bundle_data(bundle)
    data.update(changes)
    return Bundle.model_validate(data)


def blocking_everyone(bundle: Bundle) -> Bundle:
    data = bundle_data(bundle)
    data["name"] = "blocks-everyone"
    for ruleset in data["rulesets"]:
        if ruleset["id"] == "site-custom":
            ruleset["rules"].insert(
                0,
                {"id": "block-everything", "expression": "true", "action": {"type": "block"}},
            )
    return Bundle.model_validate(data)


async def _serving(session: aiohttp.ClientSession, node: EdgeProcess) -> bool:
    """Whether the node serves a bundle yet (its admin /config says so)."""
    try:
        async with session.get(f"http://127.0.0.1:{node.admin_port}/config") as response:
            return bool((await response.json()).get("serving"))
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return False


async def steady_traffic(
    nodes: list[EdgeProcess], sent: dict[str, int], stop: asyncio.Event
) -> None:
    """About 40 requests per second to every node that serves a bundle, until `stop`."""
    timeout = aiohttp.ClientTimeout(total=2)
    ready: set[str] = set()
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while not stop.is_set():
            for node in nodes:
                if node.node_id not in ready:
                    if not await _serving(session, node):
                        continue
                    ready.add(node.node_id)
                try:
                    async with session.get(
                        f"http://127.0.0.1:{node.port}/", headers=PROBE_HEADERS
                    ) as response:
                        await response.read()
                        sent[node.node_id] = sent.get(node.node_id, 0) + 1
                except (aiohttp.ClientError, TimeoutError):
                    sent["errors"] = sent.get("errors", 0) + 1
            await asyncio.sleep(0.025)


def _fleet_state(plane: ControlPlane, processes: list[EdgeProcess]) -> str:
    """Which nodes the plane hears, and each process's exit code and last log lines."""
    lines = [f"live: {sorted(plane.fleet.live_nodes())}"]
    for edge in processes:
        tail = edge.log.read_text(errors="replace").splitlines()[-15:]
        lines.append(f"--- {edge.node_id} (exit code {edge.process.poll()}):")
        lines.extend(tail)
    return "\n".join(lines)


@contextlib.asynccontextmanager
async def real_fleet(tmp_path: Path, nodes: int = 4) -> AsyncIterator[RealFleet]:
    public, _ = generate_keypair(tmp_path / "signing.key")
    key = read_private_key(tmp_path / "signing.key")
    origin: web.AppRunner
    origin, origin_port = await start_demo_origin()
    settings = ControlSettings(
        db=tmp_path / "control.db",
        key=key,
        port=0,
        admin_token_file=tmp_path / "admin.token",
        policies=E2E_POLICIES,
    )
    plane = await ControlPlane.open(settings)
    await plane.start()
    node_token = plane.tokens.issue("edge-*", Role.NODE, time.time()).token
    admin_token = (tmp_path / "admin.token").read_text().strip()
    processes: list[EdgeProcess] = []
    stop = asyncio.Event()
    traffic: asyncio.Task[None] | None = None
    try:
        for i in range(nodes):
            node_id = f"edge-{i + 1}"
            port, admin_port = free_port(), free_port()
            log = tmp_path / f"{node_id}.log"
            argv = node_argv(node_id, tmp_path / node_id, public, port, admin_port, plane.url)
            argv += ["--access-log", str(tmp_path / f"{node_id}.access.log")]
            with log.open("ab") as out:
                process = subprocess.Popen(
                    argv,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, NODE_TOKEN_ENV: node_token},
                )
            processes.append(EdgeProcess(node_id, port, admin_port, log, process))
        await wait_for(
            lambda: len(plane.fleet.live_nodes()) == nodes,
            timeout_s=60,
            explain=lambda: _fleet_state(plane, processes),
        )
        sent: dict[str, int] = {}
        traffic = asyncio.create_task(steady_traffic(processes, sent, stop))
        async with httpx.AsyncClient(
            base_url=plane.url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=60
        ) as admin:
            yield RealFleet(
                tmp_path,
                plane,
                admin,
                admin_token,
                tmp_path / "signing.key",
                key,
                origin_port,
                processes,
                sent,
            )
    finally:
        stop.set()
        if traffic is not None:
            await traffic
        for edge in processes:
            if edge.process.poll() is None:
                edge.process.send_signal(signal.SIGTERM)
        for edge in processes:
            try:
                await asyncio.to_thread(edge.process.wait, 10)
            except subprocess.TimeoutExpired:
                edge.process.kill()
                await asyncio.to_thread(edge.process.wait, 5)
        await plane.stop()
        await origin.cleanup()
