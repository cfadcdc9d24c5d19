"""What a drill needs from a fleet, whichever profile assembled it: node processes it can
signal, each node's view of what it serves, pushes and killswitches, restoring the seed
bundle, the fleet's own events, and taking the control plane away and back."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from failsmall.drill.link import FaultyLink
from failsmall.model import Bundle


@dataclass(frozen=True, slots=True)
class Pushed:
    """The fleet took a bundle: it rolls out (`rollout_id`, empty when there is no rollout)."""

    digest: str
    rollout_id: str


@dataclass(frozen=True, slots=True)
class Refused:
    """The fleet refused a push; `reason` is its answer."""

    reason: str


PushOutcome = Pushed | Refused


@dataclass(frozen=True, slots=True)
class FleetEvent:
    """Something the fleet did, at wall-clock time `at`. `kind` is one of push, wave, gate,
    nack, quarantine, rollback, complete, refused, control, fault, restore, hypothesis."""

    at: float
    kind: str
    text: str
    digest: str = ""
    """The bundle the event is about, when it is about one."""


@dataclass(frozen=True, slots=True)
class Serving:
    """A node answered its admin endpoint: what it serves and what it quarantined."""

    digest: str
    poisoned: tuple[str, ...] = ()
    nack: str = ""
    """The digest of its last refused assignment, if it refused one."""


@dataclass(frozen=True, slots=True)
class Unreachable:
    """A node did not answer its admin endpoint (down, stopped or starting)."""

    why: str


NodeView = Serving | Unreachable


class FleetError(Exception):
    """The fleet could not be started or reached; the message says why and what to do."""


def python_argv(module: str) -> list[str]:
    return [sys.executable, "-m", module]


@dataclass(eq=False)
class NodeProcess:
    """One node (its process group: a supervisor and its workers, or a single process)."""

    node_id: str
    port: int
    admin_port: int
    argv: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal_group(self, signum: int) -> None:
        """Send `signum` to every process of the node."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)

    async def stop(self) -> None:
        """Stop the node for good: resumed if stopped, SIGTERM, then SIGKILL after 10 s."""
        process = self.process
        if process is None:
            return
        self.signal_group(signal.SIGCONT)
        if process.poll() is None:
            self.signal_group(signal.SIGTERM)
            try:
                await asyncio.to_thread(process.wait, 10)
            except subprocess.TimeoutExpired:
                self.signal_group(signal.SIGKILL)
                await asyncio.to_thread(process.wait, 5)
        else:
            # A supervisor killed alone may leave workers behind in its group.
            self.signal_group(signal.SIGKILL)

    def tail(self, lines: int = 12) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


async def node_view(session: aiohttp.ClientSession, node: NodeProcess) -> NodeView:
    """What the node says it serves, from its admin `/config`."""
    try:
        async with session.get(f"http://127.0.0.1:{node.admin_port}/config") as response:
            if response.status != 200:
                return Unreachable(f"admin answered {response.status}")
            data = await response.json()
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return Unreachable(type(exc).__name__)
    last = data.get("last_apply") or {}
    nack = str(last.get("digest", "")) if last.get("result") in ("nack", "poisoned") else ""
    return Serving(str(data.get("serving", "")), tuple(data.get("poisoned", ())), nack)


class Fleet(abc.ABC):
    """A running fleet the drill drives. `nodes` is empty when the drill did not start them."""

    profile: str
    nodes: list[NodeProcess]
    seed_bundle: Bundle
    seed_digest: str
    dead_port: int
    """A loopback port nothing listens on (for a route to a dead origin)."""
    links: dict[str, FaultyLink]
    """Each node's link to the control plane, by node id (empty when the drill did not start
    the nodes)."""
    origin_link: FaultyLink | None = None
    """The link between the nodes and the origin, when the drill put one there."""

    @abc.abstractmethod
    async def push(self, bundle: Bundle, why: str) -> PushOutcome:
        """Hand a bundle to the fleet the way it takes configuration."""

    @abc.abstractmethod
    async def killswitch(self, rule: str, state: str, why: str) -> PushOutcome:
        """Switch a rule off the way the fleet does it."""

    @abc.abstractmethod
    async def settle(self, timeout_s: float) -> None:
        """Wait until no rollout is under way (at most `timeout_s`)."""

    @abc.abstractmethod
    async def restore(self, why: str) -> None:
        """Bring the fleet back to the seed bundle (the last good one before the drill)."""

    @abc.abstractmethod
    async def events(self) -> list[FleetEvent]:
        """The fleet's own events since the last call."""

    @abc.abstractmethod
    async def views(self, session: aiohttp.ClientSession) -> dict[str, NodeView]:
        """Each node's view, by node id."""

    @abc.abstractmethod
    async def control_down(self) -> None:
        """Stop the control plane (raises FleetError when the drill does not own it)."""

    @abc.abstractmethod
    async def control_up(self) -> None:
        """Start the control plane again on the same store and port."""

    def node_events(self, node_id: str, view: NodeView, now: float) -> list[FleetEvent]:
        """Events a node's view shows for the first time (NACKs, quarantines)."""
        return []

    def load_targets(self) -> list[tuple[str, str, int]]:
        """Where load goes: (node id, host, port) for every node."""
        return [(n.node_id, "127.0.0.1", n.port) for n in self.nodes]

    def link(self, index: int) -> FaultyLink:
        """Node `index`'s (1-based) link to the control plane."""
        return self.links[self.node(index).node_id]

    def origin(self) -> FaultyLink:
        """The link between the nodes and their origin, or FleetError saying why there is none."""
        if self.origin_link is None:
            raise FleetError(
                "this fleet has no fault-injecting link in front of its origin: origin faults "
                "need a fleet the drill starts (drop --control)"
            )
        return self.origin_link

    def node(self, index: int) -> NodeProcess:
        """Node `index` (1-based), or FleetError naming how many there are."""
        if not self.nodes:
            raise FleetError(
                "this fleet's node processes were not started by the drill; process faults "
                "need a fleet the drill starts (drop --control)"
            )
        if not 1 <= index <= len(self.nodes):
            raise FleetError(f"node {index} does not exist; the fleet has {len(self.nodes)}")
        return self.nodes[index - 1]
