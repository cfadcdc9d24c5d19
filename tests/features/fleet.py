"""A local fleet for the feature pipeline: the control plane, edge node processes that write
access logs, the demo origin and steady probe traffic (the health gates need requests)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "control"))

from control_harness import EXAMPLE, running_fleet, wait_for
from e2e_harness import E2E_POLICIES, EdgeProcess, _fleet_state, steady_traffic

from failsmall.build import generate_keypair, read_private_key, write_bundle_file
from failsmall.cli.demo_origin import start_demo_origin
from failsmall.cli.up_cmd import NODE_TOKEN_ENV, demo_bundle, failsmall_argv, node_argv
from failsmall.control.auth import Role
from failsmall.control.plane import ControlPlane, ControlSettings
from failsmall.model import sign_bundle
from failsmall.transport.natsd import free_port

__all__ = ["EXAMPLE", "FeatureFleet", "feature_fleet", "running_fleet", "wait_for"]


@dataclass
class FeatureFleet:
    tmp: Path
    plane: ControlPlane
    admin: httpx.AsyncClient
    admin_token: str
    key_file: Path
    base_file: Path  # the seeded bundle, signed: what `features publish --base` carries
    nodes: list[EdgeProcess]

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

    async def rollout_end(self, rollout_id: str, timeout_s: float = 90) -> str:
        """The state a rollout ends in (completed, rolled_back or aborted)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            row = (await self.admin.get(f"/v1/rollouts/{rollout_id}")).json()
            if row["state"] in ("completed", "rolled_back", "aborted"):
                return str(row["state"])
            await asyncio.sleep(0.2)
        row = (await self.admin.get(f"/v1/rollouts/{rollout_id}")).json()
        audit = "\n".join(f"{e['actor']} {e['action']}: {e['reason']}" for e in await self.audit())
        raise AssertionError(
            f"rollout {rollout_id} did not end in {timeout_s} s: {row['state']}, "
            f"events {row['events'][-5:]}\n{audit}\n" + _fleet_state(self.plane, self.nodes)
        )

    async def last_good(self) -> str:
        return str((await self.admin.get("/v1/status")).json()["last_good"])

    async def audit(self) -> list[dict[str, object]]:
        return list((await self.admin.get("/v1/audit", params={"limit": 5000})).json())


@contextlib.asynccontextmanager
async def feature_fleet(tmp_path: Path, nodes: int = 2) -> AsyncIterator[FeatureFleet]:
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
        traffic = asyncio.create_task(steady_traffic(processes, {}, stop))
        signed = sign_bundle(demo_bundle(EXAMPLE, origin_port), key)
        base_file = tmp_path / "base.bundle"
        write_bundle_file(signed, base_file)
        async with httpx.AsyncClient(
            base_url=plane.url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=60
        ) as admin:
            pushed = await admin.post(
                "/v1/bundles", content=signed.to_bytes(), params={"policy": "global"}
            )
            assert pushed.status_code == 202, pushed.text
            fleet = FeatureFleet(
                tmp_path, plane, admin, admin_token, tmp_path / "signing.key", base_file, processes
            )
            rollout_id = pushed.json()["rollout_id"]
            # On a loaded machine the nodes may build the first engine after the wave's bake
            # and its extensions: the gate then pauses as inconclusive, and once every node
            # serves the bundle it is resumed, as an operator would.
            await wait_for(
                lambda: all(signed.digest in n.served() for n in processes), timeout_s=120
            )
            row = (await admin.get(f"/v1/rollouts/{rollout_id}")).json()
            if row["state"] == "paused":
                await admin.post("/v1/rollout/resume", json={})
            state = await fleet.rollout_end(rollout_id)
            assert state == "completed", f"seeding ended {state}:\n{await fleet.audit()}"
            yield fleet
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
