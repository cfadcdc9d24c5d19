"""The chaosfailsmall extension: the example Chaos Toolkit experiment (a node partitioned from its
control plane through the fleet's link control, then a killswitch) runs against a real local
fleet and writes Chaos Toolkit's journal."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from chaoslib.experiment import run_experiment

from failsmall.cli.up_cmd import PROBE_HEADERS
from failsmall.drill.chaosfailsmall.actions import stop_node_worker
from failsmall.drill.defended import local_fleet

pytestmark = [pytest.mark.slow, pytest.mark.timeout(260)]


class FleetThread(threading.Thread):
    """A local fleet served from its own event loop, so that Chaos Toolkit (which installs
    signal handlers) runs on the main thread."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.ready = threading.Event()
        self.info: dict[str, Any] = {}
        self.error: BaseException | None = None
        self._done: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread, which raises it
            self.error = exc
            self.ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._done = asyncio.Event()
        async with local_fleet(3) as fleet:
            self.info = {
                "control": str(fleet.api.base_url).rstrip("/"),
                "token": fleet.api.headers["Authorization"].removeprefix("Bearer "),
                "nodes": ",".join(f"http://127.0.0.1:{n.port}" for n in fleet.nodes),
                "admins": ",".join(f"http://127.0.0.1:{n.admin_port}" for n in fleet.nodes),
                "seed": fleet.seed_digest,
                "links": fleet.links_url,
            }
            users = asyncio.create_task(_users([n.port for n in fleet.nodes], self._done))
            self.ready.set()
            await self._done.wait()
            await users
            self.info["status"] = await fleet.status()

    def finish(self) -> None:
        if self._loop is not None and self._done is not None:
            self._loop.call_soon_threadsafe(self._done.set)
        self.join(60)


async def _users(ports: list[int], done: asyncio.Event) -> None:
    """The fleet's users: about 20 page requests per second per node, so that each rollout's
    health gate has traffic to judge."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while not done.is_set():
            for port in ports:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    url = f"http://127.0.0.1:{port}/"
                    async with session.get(url, headers=PROBE_HEADERS) as response:
                        await response.read()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 0.05)


def test_the_killswitch_experiment_completes_without_deviation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = resources.files("failsmall.drill.chaosfailsmall").joinpath("experiments")
    experiment = json.loads(folder.joinpath("killswitch-on-an-execute-rule.json").read_text())
    fleet = FleetThread()
    fleet.start()
    try:
        assert fleet.ready.wait(120), "the fleet did not start in 120 s"
        if fleet.error is not None:
            raise fleet.error
        monkeypatch.setenv("FAILSMALL_CONTROL", fleet.info["control"])
        monkeypatch.setenv("FAILSMALL_TOKEN", fleet.info["token"])
        monkeypatch.setenv("FAILSMALL_NODES", fleet.info["nodes"])
        monkeypatch.setenv("FAILSMALL_LINKS", fleet.info["links"])
        journal = run_experiment(experiment)
        stopped_node_answered = _stop_a_node(fleet.info)
    finally:
        fleet.finish()
    path = tmp_path / "journal.json"
    path.write_text(json.dumps(journal, indent=2, default=str))
    assert journal["status"] == "completed", json.dumps(journal["run"], default=str)[:3000]
    assert journal["deviated"] is False
    runs = {r["activity"]["name"]: r for r in journal["run"]}
    assert runs["killswitch-the-execute-rule"]["status"] == "succeeded"
    partition = runs["partition-edge-2"]
    assert partition["status"] == "succeeded"
    assert partition["output"] == {"node_id": "edge-2", "state": "mended"}
    assert runs["live-nodes-while-edge-2-is-cut"]["output"] == 2, "the cut node fell silent"
    assert runs["error-rate-while-edge-2-is-cut"]["output"] <= 0.01, "and kept serving"
    assert runs["wait-for-edge-2-to-report-again"]["output"] == 3, "mended, it reports again"
    assert [r["status"] for r in journal["rollbacks"]] == ["succeeded"] * 3
    status = fleet.info["status"]
    assert status["rollout"] is None
    assert status["last_good"] == fleet.info["seed"], "lifting the killswitch restores the seed"
    assert json.loads(path.read_text())["experiment"]["title"].startswith("A killswitch")
    assert stopped_node_answered == (False, True), "stopped: no answer; resumed: answers"


def _stop_a_node(info: dict[str, Any]) -> tuple[bool, bool]:
    """The `stop_node_worker` action on node 2 for 3 s: whether the node answered a page
    request while stopped, and once resumed."""
    admin, page = info["admins"].split(",")[1], info["nodes"].split(",")[1] + "/"
    stopper = threading.Thread(target=stop_node_worker, args=(admin, 3.0))
    stopper.start()
    time.sleep(1.0)
    try:
        httpx.get(page, headers=PROBE_HEADERS, timeout=1.0)
        while_stopped = True
    except httpx.TimeoutException:
        while_stopped = False
    stopper.join(30)
    after = httpx.get(page, headers=PROBE_HEADERS, timeout=10.0).status_code == 200
    return while_stopped, after
