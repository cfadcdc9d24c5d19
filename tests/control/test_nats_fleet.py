"""The control plane driving a fleet over NATS JetStream instead of HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from control_harness import (
    HEALTHY,
    QUICK_POLICIES,
    ScriptedNode,
    Traffic,
    block_everything,
    envelope,
    site_bundle,
    wait_for,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from failsmall.cli.up_cmd import node_argv
from failsmall.control.plane import ControlPlane, ControlSettings
from failsmall.model import Bundle
from failsmall.model.envelope import public_key_pem
from failsmall.transport.nats import NatsNodeChannel
from failsmall.transport.natsd import NatsServer, free_port


@dataclass
class NatsFleet:
    """A NATS server, a control plane on it, four scripted nodes following it, an admin client."""

    server: NatsServer
    plane: ControlPlane
    nodes: list[ScriptedNode]
    admin: httpx.AsyncClient


def nats_settings(
    tmp_path: Path, key: Ed25519PrivateKey, server: NatsServer, dead_after_s: float = 5.0
) -> ControlSettings:
    """A control plane on `server` with quick rollout policies."""
    return ControlSettings(
        db=tmp_path / "control.db",
        key=key,
        port=0,
        transport="nats",
        nats_servers=[server.url],
        tick_s=0.2,
        dead_after_s=dead_after_s,
        admin_token_file=tmp_path / "admin.token",
        policies=QUICK_POLICIES,
    )


@contextlib.asynccontextmanager
async def nats_fleet(
    tmp_path: Path,
    key: Ed25519PrivateKey,
    name: str,
    dead_after_s: float,
    traffic: Callable[[str], Traffic] = lambda digest: HEALTHY,
) -> AsyncIterator[NatsFleet]:
    server = NatsServer(name=name, workdir=tmp_path)
    server.start()
    plane = await ControlPlane.open(nats_settings(tmp_path, key, server, dead_after_s))
    await plane.start()
    nodes: list[ScriptedNode] = []
    try:
        for i in range(4):
            channel = await NatsNodeChannel.connect([server.url])
            nodes.append(ScriptedNode(f"edge-{i}", "", "", traffic=traffic, channel=channel))
        for node in nodes:
            node.start()
        await wait_for(lambda: len(plane.fleet.live_nodes()) == 4)
        token = (tmp_path / "admin.token").read_text().strip()
        async with httpx.AsyncClient(
            base_url=plane.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as admin:
            yield NatsFleet(server, plane, nodes, admin)
    finally:
        for node in nodes:
            await node.stop()
        await plane.stop()
        server.stop()


async def test_rollout_and_rollback_over_nats(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    good, good_raw = envelope(site_bundle(), key)
    bad, bad_raw = envelope(block_everything(site_bundle()), key)

    def traffic(digest: str) -> Traffic:
        return Traffic(requests=20, blocked=20) if digest == bad else HEALTHY

    async with nats_fleet(tmp_path, key, "fleet", dead_after_s=3.0, traffic=traffic) as fleet:
        plane, nodes = fleet.plane, fleet.nodes
        seeded = await fleet.admin.post(
            "/v1/bundles", content=good_raw, params={"policy": "global"}
        )
        assert seeded.status_code == 202, seeded.text
        await wait_for(lambda: plane.driver.last_good == good)
        await wait_for(lambda: all(n.current == good for n in nodes))
        pushed = await fleet.admin.post("/v1/bundles", content=bad_raw)
        rollout_id = pushed.json()["rollout_id"]
        await wait_for(lambda: _state(plane, rollout_id) == "rolled_back")
        await wait_for(lambda: all(n.current == good for n in nodes))
        assert sum(1 for n in nodes if bad in n.assigned) == 1


def _state(plane: ControlPlane, rollout_id: str) -> str:
    row = plane.store.rollout(rollout_id)
    return row.state if row is not None else "missing"


async def test_a_rollback_during_a_bus_outage_is_delivered_when_the_bus_returns(
    tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    good, good_raw = envelope(site_bundle(), key)
    data = site_bundle().model_dump(mode="json")
    data["ip_lists"]["known-bad"].append("192.0.2.1")
    new, new_raw = envelope(Bundle.model_validate(data), key)
    async with nats_fleet(tmp_path, key, "outage", dead_after_s=10.0) as fleet:
        plane, nodes, server = fleet.plane, fleet.nodes, fleet.server
        await fleet.admin.post("/v1/bundles", content=good_raw, params={"policy": "global"})
        await wait_for(lambda: plane.driver.last_good == good)
        pushed = await fleet.admin.post("/v1/bundles", content=new_raw)
        rollout_id = pushed.json()["rollout_id"]
        await wait_for(lambda: any(n.current == new for n in nodes))
        server.stop()
        rolled = await fleet.admin.post("/v1/rollout/rollback", json={"reason": "bus drill"})
        assert rolled.status_code == 200, rolled.text
        assert plane.pending_moves(), "the pointer moves wait for the bus"
        await asyncio.sleep(1.0)
        server.start()
        await wait_for(lambda: not plane.pending_moves(), timeout_s=20)
        await wait_for(lambda: all(n.current == good for n in nodes), timeout_s=20)
        await wait_for(lambda: _state(plane, rollout_id) == "rolled_back", timeout_s=40)


async def test_a_node_process_follows_the_control_plane_through_a_leaf_node(
    tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    """The control plane on a hub server with JetStream domain `hub`; a real `failsmall node`
    connected only to a leaf node of it (no JetStream there), as an edge site would be."""
    hub = NatsServer(
        name="hub", workdir=tmp_path, leafnode_port=free_port(), jetstream_domain="hub"
    )
    leaf = NatsServer(name="leaf", workdir=tmp_path, leaf_of=[hub.leafnode_port], jetstream=False)
    hub.start()
    leaf.start()
    trust = tmp_path / "signing.pub"
    trust.write_bytes(public_key_pem(key.public_key()))
    plane = await ControlPlane.open(nats_settings(tmp_path, key, hub))
    await plane.start()
    admin_port = free_port()
    log = tmp_path / "edge-1.log"
    argv = [
        *node_argv("edge-1", tmp_path / "edge-1", trust, free_port(), admin_port, leaf.url),
        "--jetstream-domain",
        "hub",
    ]
    with log.open("ab") as out:
        node = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        await wait_for(
            lambda: "edge-1" in plane.fleet.live_nodes(), 30, explain=lambda: log.read_text()
        )
        digest, raw = envelope(site_bundle(), key)
        token = (tmp_path / "admin.token").read_text().strip()
        async with httpx.AsyncClient(
            base_url=plane.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as admin:
            pushed = await admin.post("/v1/bundles", content=raw, params={"policy": "global"})
            assert pushed.status_code == 202, pushed.text
        # Assignment, fetch and ACK all crossed the leaf connection.
        await wait_for(
            lambda: any(
                n["node_id"] == "edge-1" and n["digest"] == digest for n in plane.store.nodes()
            ),
            30,
            explain=lambda: log.read_text(),
        )
        async with httpx.AsyncClient() as client:
            config = (await client.get(f"http://127.0.0.1:{admin_port}/config")).json()
        assert config["serving"] == digest
    finally:
        node.send_signal(signal.SIGTERM)
        await asyncio.to_thread(node.wait, 15)
        await plane.stop()
        leaf.stop()
        hub.stop()


async def test_the_report_reader_survives_a_locked_store_and_shows_it(
    tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    good, good_raw = envelope(site_bundle(), key)
    async with nats_fleet(tmp_path, key, "reader", dead_after_s=10.0) as fleet:
        plane = fleet.plane

        def reader_state() -> str:
            loops = plane.health()["loops"]
            assert isinstance(loops, list)
            return str(next(x["state"] for x in loops if x["name"] == "NATS report reader"))

        assert reader_state() == "healthy"
        plane.store.db.execute("PRAGMA busy_timeout = 50")
        other = sqlite3.connect(plane.store.path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            await wait_for(lambda: reader_state() == "degraded")
            status = (await fleet.admin.get("/v1/status")).json()
            assert status["control"]["state"] == "degraded"
        finally:
            other.execute("ROLLBACK")
            other.close()
        await wait_for(lambda: reader_state() == "healthy")
        seeded = await fleet.admin.post(
            "/v1/bundles", content=good_raw, params={"policy": "global"}
        )
        assert seeded.status_code == 202, seeded.text
        await wait_for(lambda: plane.driver.last_good == good, timeout_s=30)
        await wait_for(lambda: all(n.current == good for n in fleet.nodes))
