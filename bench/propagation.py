"""Propagation: publish -> applied on 50 local nodes with the `global` policy, over HTTP and
NATS; and the time from a bad canary to the whole fleet back on its last good bundle with the
default policies.

Usage: .venv/bin/python bench/propagation.py [--nodes 50] [--rounds 5]

Nodes are lightweight in-process agents (50 full node processes with their proxies do not fit
two cores next to the control plane): each has its own transport connection, long-polls or
watches its pointer, fetches the envelope, verifies signature and digest with the real
`verify_envelope`, ACKs, and reports health every second. A real control plane (SQLite store,
rollout driver, HTTP API) and a real nats-server (JetStream, sync_interval always) run them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from rich.console import Console
from rich.table import Table

from failsmall.control.plane import ControlPlane, ControlSettings
from failsmall.model import Bundle, Origin, Route, sign_bundle, verify_envelope
from failsmall.model.envelope import key_id
from failsmall.rollout import GLOBAL, NAMED_POLICIES, Policy
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
from failsmall.transport.nats import NatsNodeChannel
from failsmall.transport.natsd import NatsServer

console = Console()

# The shipped `global` policy bakes 0 s, so its gate judges before any node has reported and
# pauses; a 1 s bake lets the fleet report. Waves and gate thresholds are unchanged.
BENCH_POLICIES = {
    **NAMED_POLICIES,
    "global": dataclasses.replace(
        GLOBAL, waves=(dataclasses.replace(GLOBAL.waves[0], bake_s=1.0),)
    ),
}


def small_bundle(name: str, block_all: bool = False) -> Bundle:
    rules = []
    if block_all:
        rules = [{"id": "block-all", "expression": "true", "action": {"type": "block"}}]
    return Bundle.model_validate(
        {
            "name": name,
            "origins": [Origin(id="web", url="http://127.0.0.1:8001").model_dump()],
            "routes": [Route(host="*", path_prefix="/", origin="web").model_dump()],
            "rulesets": [{"id": "custom", "kind": "custom", "rules": rules}],
            "phases": {"http_request_firewall_custom": "custom"},
        }
    )


@dataclass
class Agent:
    """A lightweight node: follow, fetch, verify, ACK, report."""

    node_id: str
    channel: NodeChannel
    trusted: dict[str, Ed25519PublicKey]
    blocks: Callable[[str], bool] = lambda digest: False
    current: str = ""
    applied_at: dict[str, float] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self._follow()), asyncio.create_task(self._report())]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.channel.close()

    async def _follow(self) -> None:
        revision = 0
        while True:
            try:
                result = await self.channel.watch(self.node_id, revision, 10.0)
                match result:
                    case NoChange():
                        continue
                    case Assignment(digest=digest, revision=rev):
                        revision = rev
                        raw = await self.channel.fetch(digest)
                        verify_envelope(raw, self.trusted)
                        self.current = digest
                        self.applied_at.setdefault(digest, time.time())
                        await self.channel.send_apply(
                            ApplyReport(self.node_id, digest, ApplyResult.ACK, at=time.time())
                        )
            except TransportError:
                await asyncio.sleep(0.2)

    async def _report(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            requests = 50 if self.current else 0
            blocked = requests if self.blocks(self.current) else 0
            report = HealthReport(
                self.node_id, self.current, self.current, time.time(), 1.0,
                requests=requests, blocked=blocked, p99_ms=2.0,
            )  # fmt: skip
            with contextlib.suppress(TransportError):
                await self.channel.send_health(report)


@dataclass
class Rig:
    """A control plane, its admin client and the agents."""

    plane: ControlPlane
    admin: httpx.AsyncClient
    agents: list[Agent]
    key: Ed25519PrivateKey

    async def push(self, bundle: Bundle, policy: str = "") -> tuple[str, str, float]:
        signed = sign_bundle(bundle, self.key)
        started = time.time()
        params = {"policy": policy} if policy else {}
        response = await self.admin.post("/v1/bundles", content=signed.to_bytes(), params=params)
        response.raise_for_status()
        return signed.digest, response.json()["rollout_id"], started

    async def wait_done(self, rollout_id: str, timeout_s: float = 120) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            row = (await self.admin.get(f"/v1/rollouts/{rollout_id}")).json()
            if row["state"] in ("completed", "rolled_back", "aborted"):
                return str(row["state"])
            await asyncio.sleep(0.05)
        audit = (await self.admin.get("/v1/audit", params={"limit": 10})).json()
        trail = "; ".join(f"{e['actor']} {e['action']}: {e['reason']}" for e in audit)
        raise TimeoutError(
            f"rollout {rollout_id} still {row['state']} after {timeout_s:g} s "
            f"(a loaded machine starves the agents' health reports); last audit entries: {trail}"
        )


@contextlib.asynccontextmanager
async def rig(
    transport: str, nodes: int, workdir: Path, policies: dict[str, Policy]
) -> AsyncIterator[Rig]:
    key = Ed25519PrivateKey.generate()
    trusted = {key_id(key.public_key()): key.public_key()}
    server = None
    settings = ControlSettings(
        db=workdir / f"{transport}.db",
        key=key,
        port=0,
        admin_token_file=workdir / f"{transport}.admin",
        policies=policies,
    )
    if transport == "nats":
        server = NatsServer(name="bench", workdir=workdir)
        server.start()
        settings.transport = "nats"
        settings.nats_servers = [server.url]
    plane = await ControlPlane.open(settings)
    await plane.start()
    admin_token = (workdir / f"{transport}.admin").read_text().strip()
    admin = httpx.AsyncClient(
        base_url=plane.url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=60
    )
    node_token = (
        await admin.post("/v1/tokens", json={"principal": "edge-*", "role": "node"})
    ).json()["token"]
    agents = []
    for i in range(nodes):
        channel: NodeChannel
        if server is not None:
            channel = await NatsNodeChannel.connect([server.url], name=f"edge-{i}")
        else:
            channel = HttpNodeChannel(plane.url, node_token)
        agents.append(Agent(f"edge-{i:03d}", channel, trusted))
    try:
        for agent in agents:
            agent.start()
        await ready(plane, agents)
        yield Rig(plane, admin, agents, key)
    finally:
        for agent in agents:
            await agent.stop()
        await admin.aclose()
        await plane.stop()
        if server is not None:
            server.stop()


async def ready(plane: ControlPlane, agents: list[Agent], timeout_s: float = 180) -> None:
    """Until the control plane has heard every agent: a push before that is refused (409, no
    live node) or rolls out to part of the fleet. Fails naming the agents it has not heard."""
    started = time.monotonic()
    wanted = {agent.node_id for agent in agents}
    while missing := wanted - plane.fleet.live_nodes():
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(
                f"{len(missing)} of {len(wanted)} agents not heard from in {timeout_s:g} s: "
                + ", ".join(sorted(missing)[:10])
            )
        await asyncio.sleep(0.1)
    console.print(f"  {len(wanted)} agents reported in {time.monotonic() - started:.1f} s")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def propagation(transport: str, nodes: int, rounds: int, workdir: Path) -> list[float]:
    latencies: list[float] = []
    async with rig(transport, nodes, workdir, BENCH_POLICIES) as r:
        for i in range(rounds):
            digest, rollout_id, started = await r.push(small_bundle(f"round-{i}"), policy="global")
            deadline = time.monotonic() + 30
            while any(digest not in a.applied_at for a in r.agents):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{transport}: not every node applied round {i}")
                await asyncio.sleep(0.01)
            latencies += [a.applied_at[digest] - started for a in r.agents]
            await r.wait_done(rollout_id)
    return latencies


async def bad_canary(transport: str, nodes: int, workdir: Path) -> tuple[float, int, str]:
    """Seconds from pushing a bundle that blocks everyone to every node back on the last good,
    with the default (logic) policy; and how many nodes ever received the bad bundle."""
    async with rig(transport, nodes, workdir, BENCH_POLICIES) as r:
        good, first, _ = await r.push(small_bundle("good"), policy="global")
        if await r.wait_done(first) != "completed" or r.plane.driver.last_good != good:
            raise RuntimeError("the seed rollout did not complete")
        bad_bundle = small_bundle("blocks-everyone", block_all=True)
        bad = sign_bundle(bad_bundle, r.key).digest
        for agent in r.agents:
            agent.blocks = lambda digest: digest == bad
        _, rollout_id, started = await r.push(bad_bundle)
        state = await r.wait_done(rollout_id)
        deadline = time.monotonic() + 60
        while away := [a.node_id for a in r.agents if a.current != good]:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{transport}: {len(away)} of {len(r.agents)} nodes not back on the last good "
                    f"bundle 60 s after the rollout ended {state}: {', '.join(away[:5])}"
                )
            await asyncio.sleep(0.01)
        elapsed = time.time() - started
        exposed = sum(1 for a in r.agents if bad in a.applied_at)
        return elapsed, exposed, state


async def main(nodes: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        results = {}
        for transport in ("http", "nats"):
            console.print(f"propagation over {transport}: {nodes} nodes x {rounds} rounds ...")
            results[transport] = await propagation(transport, nodes, rounds, workdir / transport)
        table = Table(title=f"publish -> applied, {nodes} nodes, policy global (ms)")
        for column in ("transport", "samples", "p50", "p90", "p99", "max", "p99 vs http"):
            table.add_column(column, justify="right")
        base_p99 = percentile(results["http"], 0.99)
        for transport, values in results.items():
            p99 = percentile(values, 0.99)
            table.add_row(
                transport,
                str(len(values)),
                f"{statistics.median(values) * 1000:.0f}",
                f"{percentile(values, 0.90) * 1000:.0f}",
                f"{p99 * 1000:.0f}",
                f"{max(values) * 1000:.0f}",
                f"{p99 / base_p99:.2f}x",
            )
        console.print(table)
        rollback = Table(title="bad canary -> fleet back on last good, default policy")
        for column in ("transport", "nodes", "seconds", "nodes exposed", "end state", "vs 15 s"):
            rollback.add_column(column, justify="right")
        for transport in ("http", "nats"):
            console.print(f"bad canary over {transport} ...")
            seconds, exposed, state = await bad_canary(transport, 10, workdir / f"bad-{transport}")
            rollback.add_row(
                transport, "10", f"{seconds:.2f}", str(exposed), state, f"{seconds / 15:.2f}x"
            )
        console.print(rollback)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.nodes, args.rounds))
