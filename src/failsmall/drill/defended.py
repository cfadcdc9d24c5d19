"""The default profile: the fleet as failsmall ships it. A `failsmall control` process (the
shipped rollout policies), `failsmall node` processes over the HTTP transport, and the origin
process, each on free loopback ports.

Everything the drill does to it goes through public interfaces: the CLI entry points, the
control plane's HTTP API and each node's admin endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from failsmall.build import KeyFileError, generate_keypair, read_private_key
from failsmall.cli.up_cmd import NODE_TOKEN_ENV, PROBE_HEADERS, failsmall_argv, node_argv
from failsmall.drill.fleet import (
    Fleet,
    FleetError,
    FleetEvent,
    NodeProcess,
    NodeView,
    Pushed,
    PushOutcome,
    Refused,
    Serving,
    Unreachable,
    node_view,
)
from failsmall.drill.launch import all_serving, origin_process, seed_bundle, wait_listening
from failsmall.drill.link import FaultyLink, LinkControl
from failsmall.model import Bundle, sign_bundle
from failsmall.model.envelope import read_envelope_unverified_signature
from failsmall.transport.natsd import free_port

AUDIT_KINDS = {
    "push": "push",
    "enter_wave": "wave",
    "skip_wave": "wave",
    "gate_pass": "gate",
    "gate_fail": "gate",
    "pause": "gate",
    "rollback": "rollback",
    "rolled_back": "rollback",
    "complete": "complete",
    "abort": "rollback",
}
"""Audit actions shown on a drill's timeline, and under which kind."""


class DefendedFleet(Fleet):
    profile = "default"

    def __init__(
        self,
        api: httpx.AsyncClient,
        key: Ed25519PrivateKey,
        seed: Bundle,
        nodes: list[NodeProcess],
        plane: NodeProcess | None,
        targets: list[tuple[str, str, int]] | None = None,
    ) -> None:
        self.api = api
        self.key = key
        self.seed_bundle = seed
        self.seed_digest = sign_bundle(seed, key).digest
        self.nodes = nodes
        self.plane = plane
        self.dead_port = free_port()
        self.links: dict[str, FaultyLink] = {}
        self.links_url = ""
        """Where `LinkControl` serves the links (empty when the drill did not start the nodes)."""
        self._audit_seq = 0
        self._nacks_seen: set[tuple[str, str]] = set()
        self._poisoned_seen: set[tuple[str, str]] = set()
        self._remote_targets = targets or []
        """Where load goes when the drill did not start the nodes."""

    # -- configuration ------------------------------------------------------------------------

    async def push(self, bundle: Bundle, why: str, policy: str = "") -> PushOutcome:
        signed = sign_bundle(bundle, self.key)
        params = {"policy": policy} if policy else {}
        try:
            response = await self.api.post("/v1/bundles", content=signed.to_bytes(), params=params)
        except httpx.HTTPError as exc:
            return Refused(f"control plane unreachable: {exc}")
        if response.status_code != 202:
            return Refused(f"{response.status_code}: {_error(response)}")
        body = response.json()
        return Pushed(str(body["digest"]), str(body["rollout_id"]))

    async def killswitch(self, rule: str, state: str, why: str) -> PushOutcome:
        try:
            response = await self.api.post(
                "/v1/killswitches", json={"rule": rule, "state": state, "reason": why}
            )
        except httpx.HTTPError as exc:
            return Refused(f"control plane unreachable: {exc}")
        if response.status_code != 202:
            return Refused(f"{response.status_code}: {_error(response)}")
        body = response.json()
        return Pushed(str(body["digest"]), str(body["rollout_id"]))

    async def status(self) -> dict[str, Any]:
        response = await self.api.get("/v1/status")
        if response.status_code != 200:
            raise FleetError(f"control plane status: {response.status_code} {_error(response)}")
        data: dict[str, Any] = response.json()
        return data

    async def settle(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (await self.status())["rollout"] is None:
                    return
            await asyncio.sleep(0.25)
        raise FleetError(f"a rollout is still under way after {timeout_s:g} s")

    async def restore(self, why: str) -> None:
        status = await self.status()
        if status["rollout"] is not None:
            with contextlib.suppress(httpx.HTTPError):
                await self.api.post("/v1/rollout/rollback", json={"reason": why})
            await self.settle(90)
            status = await self.status()
        if status["last_good"] != self.seed_digest:
            match await self.push(self.seed_bundle, why):
                case Pushed():
                    await self.settle(120)
                case Refused(reason=reason):
                    raise FleetError(f"restoring the seed bundle was refused: {reason}")

    # -- observing ----------------------------------------------------------------------------

    async def events(self) -> list[FleetEvent]:
        out: list[FleetEvent] = []
        with contextlib.suppress(httpx.HTTPError):
            response = await self.api.get(
                "/v1/audit", params={"after": self._audit_seq, "limit": 1000}
            )
            if response.status_code == 200:
                for entry in response.json():
                    self._audit_seq = max(self._audit_seq, int(entry["seq"]))
                    kind = AUDIT_KINDS.get(str(entry["action"]))
                    if kind is not None:
                        text = f"{entry['actor']} {entry['action']}: {entry['reason']}"
                        digest = str(entry.get("details", {}).get("to_digest", ""))
                        out.append(FleetEvent(float(entry["at"]), kind, text, digest))
        return out

    def node_events(self, node_id: str, view: NodeView, now: float) -> list[FleetEvent]:
        """NACKs and quarantines a node's view shows for the first time."""
        out: list[FleetEvent] = []
        if isinstance(view, Serving):
            if view.nack and (node_id, view.nack) not in self._nacks_seen:
                self._nacks_seen.add((node_id, view.nack))
                out.append(
                    FleetEvent(now, "nack", f"{node_id} refused {view.nack[:19]}", view.nack)
                )
            for digest in view.poisoned:
                if (node_id, digest) not in self._poisoned_seen:
                    self._poisoned_seen.add((node_id, digest))
                    text = f"{node_id} quarantined {digest[:19]}"
                    out.append(FleetEvent(now, "quarantine", text, digest))
        return out

    async def views(self, session: aiohttp.ClientSession) -> dict[str, NodeView]:
        if self.nodes:
            views = await asyncio.gather(*(node_view(session, n) for n in self.nodes))
            return {n.node_id: v for n, v in zip(self.nodes, views, strict=True)}
        try:
            status = await self.status()
        except (httpx.HTTPError, FleetError) as exc:
            return {t[0]: Unreachable(f"control plane: {exc}") for t in self._remote_targets}
        return {
            n["node_id"]: Serving(n["digest"]) if n["live"] else Unreachable("not live")
            for n in status["nodes"]
        }

    def load_targets(self) -> list[tuple[str, str, int]]:
        return super().load_targets() if self.nodes else self._remote_targets

    # -- the control plane --------------------------------------------------------------------

    async def control_down(self) -> None:
        await self._plane().stop()

    async def control_up(self) -> None:
        plane = self._plane()
        plane.start()
        await wait_listening(plane, plane.port)

    def _plane(self) -> NodeProcess:
        if self.plane is None:
            raise FleetError("the control plane was not started by the drill; drop --control")
        return self.plane


def _error(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    problems = "; ".join(str(p) for p in body.get("problems", [])[:3])
    return str(body.get("error", "")) + (f" ({problems})" if problems else "")


@contextlib.asynccontextmanager
async def local_fleet(
    nodes: int, seed_features: int = 0, keep: Path | None = None, origin_link: bool = False
) -> AsyncIterator[DefendedFleet]:
    """Start origin, control plane and `nodes` nodes on free loopback ports, seed them with the
    example site, and stop everything on the way out, whatever happened. Each node reaches the
    control plane through a `FaultyLink`; `fleet.links_url` serves them to other processes."""
    state_dir = keep or Path(tempfile.mkdtemp(prefix="failsmall-drill-"))
    state_dir.mkdir(parents=True, exist_ok=True)
    origin = origin_process(state_dir)
    key_path = state_dir / "signing.key"
    public, _ = generate_keypair(key_path)
    control_port = free_port()
    plane = NodeProcess(
        "control",
        control_port,
        0,
        [
            *failsmall_argv(),
            "control",
            *("--db", str(state_dir / "control.db"), "--key", str(key_path)),
            *("--listen", f"127.0.0.1:{control_port}"),
            *("--admin-token-file", str(state_dir / "admin.token")),
        ],
        state_dir / "control.log",
    )
    processes: list[NodeProcess] = []
    links: dict[str, FaultyLink] = {}
    between: FaultyLink | None = None
    link_control = LinkControl(links)
    stop_probing = asyncio.Event()
    try:
        origin.start()
        plane.start()
        await wait_listening(origin, origin.port)
        origin_port = origin.port
        if origin_link:
            between = FaultyLink(origin.port)
            await between.start()
            origin_port = between.port
        await wait_listening(plane, plane.port)
        admin_token = (state_dir / "admin.token").read_text().strip()
        url = f"http://127.0.0.1:{control_port}"
        async with httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=60
        ) as api:
            issued = await api.post("/v1/tokens", json={"principal": "edge-*", "role": "node"})
            if issued.status_code != 201:
                raise FleetError(f"cannot issue the node token: {_error(issued)}")
            node_token = str(issued.json()["token"])
            for i in range(nodes):
                node_id = f"edge-{i + 1}"
                port, admin_port = free_port(), free_port()
                links[node_id] = link = FaultyLink(control_port)
                await link.start()
                argv = node_argv(node_id, state_dir / node_id, public, port, admin_port, link.url)
                process = NodeProcess(node_id, port, admin_port, argv, state_dir / f"{node_id}.log")
                process.env[NODE_TOKEN_ENV] = node_token
                process.start()
                processes.append(process)
            fleet = DefendedFleet(
                api,
                read_private_key(key_path),
                seed_bundle(origin_port, seed_features),
                processes,
                plane,
            )
            fleet.links = links
            fleet.origin_link = between
            await link_control.start()
            fleet.links_url = link_control.url
            await _wait_reporting(fleet, nodes)
            prober = asyncio.create_task(_seed_traffic(processes, stop_probing))
            try:
                await _seed(fleet)
            finally:
                stop_probing.set()
                await prober
            yield fleet
    finally:
        stop_probing.set()
        await link_control.stop()
        for process in processes:
            await process.stop()
        for link in [*links.values(), *([between] if between else [])]:
            await link.stop()
        await plane.stop()
        await origin.stop()
        if keep is None:
            shutil.rmtree(state_dir, ignore_errors=True)


async def _wait_reporting(fleet: DefendedFleet, nodes: int) -> None:
    deadline = time.monotonic() + 60
    while True:
        live = [n for n in (await fleet.status())["nodes"] if n["live"]]
        if len(live) >= nodes:
            return
        dead = [p for p in fleet.nodes if not p.running()]
        if dead or time.monotonic() > deadline:
            tails = "\n".join(f"--- {p.node_id}:\n{p.tail()}" for p in fleet.nodes)
            raise FleetError(
                f"only {len(live)} of {nodes} nodes report to the control plane\n{tails}"
            )
        await asyncio.sleep(0.25)


async def _seed(fleet: DefendedFleet) -> None:
    """Roll the seed bundle out everywhere and wait until every node serves it."""
    match await fleet.push(fleet.seed_bundle, "drill seed", policy="global"):
        case Pushed():
            pass
        case Refused(reason=reason):
            raise FleetError(f"the control plane refused the seed bundle: {reason}")
    await fleet.settle(120)
    if (await fleet.status())["last_good"] != fleet.seed_digest:
        trail = "\n".join(e.text for e in await fleet.events())
        raise FleetError(f"the seed bundle did not complete its rollout:\n{trail}")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        deadline = time.monotonic() + 30
        while not await all_serving(session, fleet.nodes, fleet.seed_digest):
            if time.monotonic() > deadline:
                raise FleetError("not every node serves the seed bundle after 30 s")
            await asyncio.sleep(0.2)
    await fleet.events()  # the seed's own audit entries are not the drill's


async def _seed_traffic(nodes: list[NodeProcess], stop: asyncio.Event) -> None:
    """About 20 requests/s to each node that serves a bundle, so that the seed's gate has data
    to judge (a node still building its first engine answers 503 and is left alone)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while not stop.is_set():
            for node in nodes:
                view = await node_view(session, node)
                if not isinstance(view, Serving) or not view.digest:
                    continue
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    url = f"http://127.0.0.1:{node.port}/"
                    async with session.get(url, headers=PROBE_HEADERS) as response:
                        await response.read()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.05)


@contextlib.asynccontextmanager
async def remote_fleet(control: str, token: str, key_path: Path) -> AsyncIterator[DefendedFleet]:
    """A fleet already running, reached through its control plane's API with an admin token.
    The seed is the bundle it serves now; faults are signed with `key_path` (a key the control
    plane trusts); load goes to the proxy addresses its nodes report (loopback only)."""
    try:
        key = read_private_key(key_path)
    except (OSError, ValueError, KeyFileError) as exc:
        raise FleetError(f"cannot read the signing key {key_path}: {exc}") from exc
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=control, headers=headers, timeout=60) as api:
        try:
            response = await api.get("/v1/status")
        except httpx.HTTPError as exc:
            raise FleetError(f"cannot reach the control plane at {control}: {exc}") from exc
        if response.status_code != 200:
            raise FleetError(
                f"the control plane answered {response.status_code}: {_error(response)}"
            )
        status = response.json()
        last_good = str(status["last_good"])
        if not last_good:
            raise FleetError("the fleet has no good bundle yet; push one before a drill")
        envelope = await api.get(f"/v1/bundles/{last_good}")
        if envelope.status_code != 200:
            raise FleetError(
                f"cannot fetch the fleet's bundle {last_good} ({envelope.status_code}): a drill "
                "against a running fleet needs an admin token"
            )
        seed = read_envelope_unverified_signature(envelope.content).bundle
        targets: list[tuple[str, str, int]] = []
        for node in status["nodes"]:
            host, _, port = str(node["address"]).rpartition(":")
            if not node["live"]:
                continue
            if not port.isdigit() or not ipaddress.ip_address(host.strip("[]")).is_loopback:
                raise FleetError(
                    f"node {node['node_id']} listens on {node['address']}, not loopback: drills "
                    "send load only to this machine"
                )
            targets.append((str(node["node_id"]), host.strip("[]"), int(port)))
        if not targets:
            raise FleetError("no node of the fleet is live")
        fleet = DefendedFleet(api, key, seed, [], None, targets)
        await fleet.events()
        yield fleet
