"""A control plane killed with SIGKILL at random moments of a rollout, and restarted on the
same store, still brings every real node to the bundle the store says it should serve."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from control_harness import ScriptedNode, site_bundle
from e2e_harness import EdgeProcess, steady_traffic

from failsmall.build import generate_keypair, read_private_key
from failsmall.cli.demo_origin import start_demo_origin
from failsmall.cli.up_cmd import NODE_TOKEN_ENV, node_argv
from failsmall.control.store import ControlStore
from failsmall.model import Bundle, sign_bundle
from failsmall.model.envelope import bundle_data
from failsmall.transport.nats import NatsNodeChannel
from failsmall.transport.natsd import NatsServer, free_port

pytestmark = [pytest.mark.slow]

PLANE_SCRIPT = Path(__file__).with_name("plane_process.py")


async def eventually(
    check: Callable[[], bool], timeout_s: float = 15, explain: Callable[[], str] = lambda: ""
) -> None:
    """`wait_for`, with `check` (blocking HTTP calls) run off the event loop, which serves the
    origin the nodes forward the test traffic to."""
    await wait_for_async(lambda: asyncio.to_thread(check), timeout_s, explain)


async def wait_for_async(
    check: Callable[[], Awaitable[bool]], timeout_s: float, explain: Callable[[], str]
) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached in {timeout_s}s\n{explain()}")
        await asyncio.sleep(0.1)


@dataclass
class PlaneProcess:
    """`plane_process.py` on a fixed port and store, started again after every kill."""

    db: Path
    key: Path
    port: int
    log: Path
    extra: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        argv = [sys.executable, str(PLANE_SCRIPT), str(self.db), str(self.key), str(self.port),
                *self.extra]  # fmt: skip
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        await eventually(self._answers, timeout_s=30, explain=self.tail)

    def _answers(self) -> bool:
        try:
            return httpx.get(f"{self.url}/v1/openapi.json", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(self.process.wait, 10)

    async def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.process.wait, 15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                await asyncio.to_thread(self.process.wait, 5)

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])


def serving(node: EdgeProcess) -> str:
    """The digest the node serves, from its admin `/config`."""
    try:
        config: dict[str, Any] = httpx.get(
            f"http://127.0.0.1:{node.admin_port}/config", timeout=2
        ).json()
    except (httpx.HTTPError, ValueError):
        return ""
    return str(config.get("serving", ""))


@contextlib.asynccontextmanager
async def plane_and_nodes(
    tmp_path: Path, count: int
) -> AsyncIterator[tuple[PlaneProcess, list[EdgeProcess], int]]:
    """A control plane process, `count` node processes following it and steady traffic."""
    public, _ = generate_keypair(tmp_path / "signing.key")
    origin, origin_port = await start_demo_origin()
    plane = PlaneProcess(
        tmp_path / "control.db", tmp_path / "signing.key", free_port(), tmp_path / "plane.log"
    )
    nodes: list[EdgeProcess] = []
    stop = asyncio.Event()
    traffic: asyncio.Task[None] | None = None
    try:
        await plane.start()
        admin = {"Authorization": f"Bearer {(tmp_path / 'admin.token').read_text().strip()}"}
        issued = httpx.post(
            f"{plane.url}/v1/tokens",
            headers=admin,
            timeout=10,
            json={"principal": "edge-*", "role": "node"},
        )
        env = {**os.environ, NODE_TOKEN_ENV: issued.json()["token"]}
        for i in range(count):
            node_id, port, admin_port = f"edge-{i + 1}", free_port(), free_port()
            argv = node_argv(node_id, tmp_path / node_id, public, port, admin_port, plane.url)
            log = tmp_path / f"{node_id}.log"
            with log.open("ab") as out:
                process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
            nodes.append(EdgeProcess(node_id, port, admin_port, log, process))
        traffic = asyncio.create_task(steady_traffic(nodes, {}, stop))
        yield plane, nodes, origin_port
    finally:
        stop.set()
        if traffic is not None:
            await traffic
        for node in nodes:
            node.process.send_signal(signal.SIGTERM)
        for node in nodes:
            try:
                await asyncio.to_thread(node.process.wait, 10)
            except subprocess.TimeoutExpired:
                node.process.kill()
        await plane.stop()
        await origin.cleanup()


def _bundle(origin_port: int, extra_bad_ip: str = "") -> Bundle:
    data = bundle_data(site_bundle())
    data["origins"] = [{"id": "web", "url": f"http://127.0.0.1:{origin_port}"}]
    if extra_bad_ip:
        data["ip_lists"]["known-bad"].append(extra_bad_ip)
    return Bundle.model_validate(data)


def _get(plane: PlaneProcess, token: str, path: str) -> Any:
    try:
        response = httpx.get(
            plane.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=5
        )
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_a_rollout_survives_sigkills_of_the_control_plane(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    async with plane_and_nodes(tmp_path, count=3) as (plane, nodes, origin_port):
        key = read_private_key(tmp_path / "signing.key")
        token = (tmp_path / "admin.token").read_text().strip()
        headers = {"Authorization": f"Bearer {token}"}

        def live() -> int:
            status = _get(plane, token, "/v1/status")
            return sum(1 for n in status["nodes"] if n["live"]) if status else 0

        await eventually(lambda: live() == len(nodes), timeout_s=60, explain=plane.tail)
        good = sign_bundle(_bundle(origin_port), key)
        seeded = await asyncio.to_thread(
            httpx.post,
            f"{plane.url}/v1/bundles",
            headers=headers,
            timeout=30,
            content=good.to_bytes(),
            params={"policy": "global"},
        )
        assert seeded.status_code == 202, seeded.text
        await eventually(lambda: all(serving(n) == good.digest for n in nodes), timeout_s=60)
        await eventually(
            lambda: (_get(plane, token, "/v1/status") or {}).get("last_good") == good.digest
        )

        new = sign_bundle(_bundle(origin_port, f"192.0.2.{seed}"), key)
        pushed = await asyncio.to_thread(
            httpx.post,
            f"{plane.url}/v1/bundles",
            headers=headers,
            timeout=30,
            content=new.to_bytes(),
        )
        assert pushed.status_code == 202, pushed.text
        rollout_id = pushed.json()["rollout_id"]
        kills = []
        for _ in range(3):
            delay = rng.uniform(0.0, 2.0)
            kills.append(round(delay, 3))
            await asyncio.sleep(delay)
            await plane.kill()
            await asyncio.sleep(rng.uniform(0.0, 1.0))
            await plane.start()

        def finished() -> bool:
            row = _get(plane, token, f"/v1/rollouts/{rollout_id}")
            return bool(row) and row["state"] in ("completed", "rolled_back", "aborted")

        await eventually(
            finished, timeout_s=120, explain=lambda: f"kills at {kills}\n{plane.tail()}"
        )
        row = _get(plane, token, f"/v1/rollouts/{rollout_id}")
        trail = [
            f"{e['actor']} {e['action']}: {e['reason']}"
            for e in _get(plane, token, "/v1/audit?limit=60")
        ]
        assert row["state"] == "completed", (kills, trail)
        await eventually(
            lambda: all(serving(n) == new.digest for n in nodes),
            timeout_s=60,
            explain=lambda: f"kills at {kills}: {[serving(n) for n in nodes]}",
        )
        await eventually(lambda: not _get(plane, token, "/v1/status")["deferred_assignments"])
        verdict = _get(plane, token, "/v1/audit/verify")
        assert verdict["intact"], verdict
    store = ControlStore(tmp_path / "control.db")
    try:
        assert store.desired() == {n.node_id: new.digest for n in nodes}
        assert {n: a.digest for n, a in store.assignments().items()} == store.desired()
    finally:
        store.close()


async def test_a_rollback_decided_during_a_bus_outage_survives_a_sigkill(tmp_path: Path) -> None:
    """The rollback's pointer moves cannot be made while the bus is down; the control plane is
    then killed. Restarted once the bus is back, it still makes them: they were stored."""
    generate_keypair(tmp_path / "signing.key")
    key = read_private_key(tmp_path / "signing.key")
    server = NatsServer(name="bus", workdir=tmp_path)
    server.start()
    plane = PlaneProcess(
        tmp_path / "control.db", tmp_path / "signing.key", free_port(), tmp_path / "plane.log",
        extra=("--nats", server.url, "--dead-after", "60"),
    )  # fmt: skip
    nodes: list[ScriptedNode] = []
    try:
        await plane.start()
        token = (tmp_path / "admin.token").read_text().strip()
        for i in range(4):
            channel = await NatsNodeChannel.connect([server.url])
            nodes.append(ScriptedNode(f"edge-{i}", "", "", channel=channel))
        for node in nodes:
            node.start()
        async with httpx.AsyncClient(
            base_url=plane.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as admin:

            async def live() -> bool:
                status = (await admin.get("/v1/status")).json()
                return sum(1 for n in status["nodes"] if n["live"]) == len(nodes)

            await wait_for_async(live, 30, plane.tail)
            good = sign_bundle(_bundle(8001), key)
            seeded = await admin.post(
                "/v1/bundles", content=good.to_bytes(), params={"policy": "global"}
            )
            assert seeded.status_code == 202, seeded.text
            await eventually(lambda: all(n.current == good.digest for n in nodes), 30)

            async def seeded_done() -> bool:
                return bool((await admin.get("/v1/status")).json()["last_good"] == good.digest)

            await wait_for_async(seeded_done, 30, plane.tail)
            new = sign_bundle(_bundle(8001, "192.0.2.77"), key)
            pushed = await admin.post("/v1/bundles", content=new.to_bytes())
            assert pushed.status_code == 202, pushed.text
            await eventually(lambda: any(n.current == new.digest for n in nodes), 30)
            await asyncio.to_thread(server.stop)
            rolled = await admin.post("/v1/rollout/rollback", json={"reason": "bus drill"})
            assert rolled.status_code == 200, rolled.text
        await plane.kill()
        await asyncio.to_thread(server.start)
        await plane.start()
        await eventually(
            lambda: all(n.current == good.digest for n in nodes),
            30,
            lambda: f"{[n.current == good.digest for n in nodes]}\n{plane.tail()}",
        )
    finally:
        for node in nodes:
            await node.stop()
        await plane.stop()
        server.stop()
