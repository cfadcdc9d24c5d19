"""The hotwired fleet: an instant global push (one pointer every node polls) in this process,
hotwired node processes and the origin process."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiohttp import web

from failsmall.drill.fleet import (
    Fleet,
    FleetError,
    FleetEvent,
    NodeProcess,
    NodeView,
    Pushed,
    PushOutcome,
    Refused,
    node_view,
    python_argv,
)
from failsmall.drill.launch import all_serving, origin_process, seed_bundle, wait_listening
from failsmall.drill.link import FaultyLink
from failsmall.model import Bundle, Override, RuleState
from failsmall.model.envelope import bundle_data, canonical_json
from failsmall.transport.natsd import free_port


def digest_of(bundle: Bundle) -> str:
    return "sha256:" + hashlib.sha256(canonical_json(bundle_data(bundle))).hexdigest()


SETTLE_S = 20.0


class InstantPush:
    """One pointer for the whole fleet: a push is seen by every node on its next poll."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.digest = ""
        self.bundle: Bundle | None = None
        self._payload: dict[str, object] = {}
        self._runner: web.AppRunner | None = None

    def publish(self, bundle: Bundle) -> str:
        self.bundle = bundle
        self.digest = digest_of(bundle)
        self._payload = {"digest": self.digest, "bundle": bundle_data(bundle)}
        return self.digest

    async def pointer(self, request: web.Request) -> web.Response:
        if not self.digest or request.query.get("have") == self.digest:
            return web.Response(status=304)
        return web.json_response(self._payload)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/v1/bundle", self.pointer)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class HotwiredFleet(Fleet):
    profile = "hotwired"

    def __init__(self, control: InstantPush, seed: Bundle, nodes: list[NodeProcess]) -> None:
        self.control = control
        self.seed_bundle = seed
        self.seed_digest = digest_of(seed)
        self.nodes = nodes
        self.dead_port = free_port()
        self.links: dict[str, FaultyLink] = {}
        self._events: list[FleetEvent] = []

    async def push(self, bundle: Bundle, why: str) -> PushOutcome:
        if self.control._runner is None:
            return Refused("the push service is down")
        digest = self.control.publish(bundle)
        self._events.append(
            FleetEvent(time.time(), "push", f"{bundle.name}: every node at once ({why})", digest)
        )
        return Pushed(digest, "")

    async def killswitch(self, rule: str, state: str, why: str) -> PushOutcome:
        current = self.control.bundle or self.seed_bundle
        data = bundle_data(current)
        override = Override(
            rule=rule, state=RuleState(state), reason=why, author="drill", expires_at=None
        )
        data["overrides"] = [
            *[o for o in data["overrides"] if o["rule"] != rule],
            override.model_dump(mode="json"),
        ]
        data["name"] = f"{current.name}+killswitch-{rule}"
        return await self.push(Bundle.model_validate(data), f"killswitch {rule}: {why}")

    async def settle(self, timeout_s: float) -> None:
        """Nothing rolls out: a push is everywhere as soon as each node polls and has built
        it. This waits until every running node serves the pointer's bundle, at most
        `timeout_s` or SETTLE_S: a bundle the nodes cannot build, or nodes too busy to say
        what they serve, would otherwise hold the drill for the whole timeout."""
        deadline = time.monotonic() + min(timeout_s, SETTLE_S)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            running = [n for n in self.nodes if n.running()]
            while not await all_serving(session, running, self.control.digest):
                if time.monotonic() > deadline:
                    return
                await asyncio.sleep(0.1)

    async def restore(self, why: str) -> None:
        if self.control.digest != self.seed_digest:
            await self.push(self.seed_bundle, why)
            await self.settle(30)

    async def events(self) -> list[FleetEvent]:
        out, self._events = self._events, []
        return out

    async def views(self, session: aiohttp.ClientSession) -> dict[str, NodeView]:
        views = await asyncio.gather(*(node_view(session, n) for n in self.nodes))
        return {n.node_id: v for n, v in zip(self.nodes, views, strict=True)}

    async def control_down(self) -> None:
        await self.control.stop()

    async def control_up(self) -> None:
        await self.control.start()


@contextlib.asynccontextmanager
async def hotwired_fleet(
    nodes: int, seed_features: int = 0, keep: Path | None = None, origin_link: bool = False
) -> AsyncIterator[HotwiredFleet]:
    state_dir = keep or Path(tempfile.mkdtemp(prefix="failsmall-drill-hotwired-"))
    state_dir.mkdir(parents=True, exist_ok=True)
    origin = origin_process(state_dir)
    control = InstantPush(free_port())
    processes: list[NodeProcess] = []
    links: dict[str, FaultyLink] = {}
    between: FaultyLink | None = None
    try:
        origin.start()
        await wait_listening(origin, origin.port)
        origin_port = origin.port
        if origin_link:
            between = FaultyLink(origin.port)
            await between.start()
            origin_port = between.port
        await control.start()
        fleet = HotwiredFleet(control, seed_bundle(origin_port, seed_features), processes)
        fleet.links = links
        fleet.origin_link = between
        await fleet.push(fleet.seed_bundle, "drill seed")
        for i in range(nodes):
            node_id = f"edge-{i + 1}"
            port, admin_port = free_port(), free_port()
            links[node_id] = link = FaultyLink(control.port)
            await link.start()
            argv = [
                *python_argv("failsmall.drill.hotwired"),
                *("--node-id", node_id, "--listen", f"127.0.0.1:{port}"),
                *("--admin", f"127.0.0.1:{admin_port}", "--control", link.url),
            ]
            process = NodeProcess(node_id, port, admin_port, argv, state_dir / f"{node_id}.log")
            process.start()
            processes.append(process)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            deadline = time.monotonic() + 60
            while not await all_serving(session, processes, fleet.seed_digest):
                dead = [p for p in processes if not p.running()]
                if dead:
                    raise FleetError(f"{dead[0].node_id} exited:\n{dead[0].tail()}")
                if time.monotonic() > deadline:
                    raise FleetError("hotwired nodes do not serve the seed after 60 s")
                await asyncio.sleep(0.2)
        await fleet.events()
        yield fleet
    finally:
        for process in processes:
            await process.stop()
        for link in [*links.values(), *([between] if between else [])]:
            await link.stop()
        await control.stop()
        await origin.stop()
        if keep is None:
            shutil.rmtree(state_dir, ignore_errors=True)
