"""An open-loop load generator: request i is due at `start + i / rate`, sent then whatever
the answers to earlier ones, and its latency runs from that intended time (so a stalled node
shows as latency, not as fewer requests: no coordinated omission). A request that cannot be
sent because `max_in_flight` are outstanding, that times out or whose connection fails is
lost. Bounded in count and time; loopback targets only."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import aiohttp

from failsmall.cli.up_cmd import PROBE_HEADERS
from failsmall.node.framing import BUNDLE_HEADER


class Outcome(StrEnum):
    """What became of one request."""

    OK = "ok"
    BLOCKED = "blocked"
    """4xx: the edge refused a benign request (blocked, challenged, rate limited)."""
    ERROR = "error"
    """5xx."""
    LOST = "lost"
    """Never answered: not sent (too many in flight), timed out or the connection failed."""


FAILED = frozenset({Outcome.BLOCKED, Outcome.ERROR, Outcome.LOST})


@dataclass(frozen=True, slots=True)
class Answer:
    """One request's fate: `due` and `done` on the generator's clock (seconds)."""

    node_id: str
    due: float
    done: float
    outcome: Outcome
    status: int = 0
    bundle: str = ""
    """The node's X-Failsmall-Bundle header: the short digest of the bundle that answered
    (empty when the answer carried none or never came)."""

    @property
    def latency_s(self) -> float:
        return self.done - self.due


PATHS = ("/", "/products?page=2", "/static/app.js", "/account/orders", "/search?q=red+shoes")
"""What the drill's visitors ask for: pages, a cached asset, a query."""


class NotLoopbackError(Exception):
    """Load generators send only to loopback addresses."""


def outcome_of(status: int) -> Outcome:
    if status >= 500:
        return Outcome.ERROR
    if status >= 400:
        return Outcome.BLOCKED
    return Outcome.OK


class OpenLoop:
    def __init__(
        self,
        targets: Callable[[], list[tuple[str, str, int]]],
        rate: float,
        timeout_s: float,
        max_in_flight: int,
        max_requests: int,
        max_duration_s: float,
        sink: Callable[[Answer], None],
    ) -> None:
        self.targets = targets
        self.rate = rate
        self.timeout_s = timeout_s
        self.max_in_flight = max_in_flight
        self.max_requests = max_requests
        self.max_duration_s = max_duration_s
        self.sink = sink
        self.in_flight = 0
        self.sent = 0

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        connector = aiohttp.TCPConnector(limit=self.max_in_flight, force_close=False)
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        tasks: set[asyncio.Task[None]] = set()
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            start = loop.time()
            i = 0
            while not stop.is_set() and i < self.max_requests:
                due = start + i / self.rate
                if due - start > self.max_duration_s:
                    break
                wait = due - loop.time()
                if wait > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), wait)
                    if stop.is_set():
                        break
                targets = self.targets()
                node_id, host, port = targets[i % len(targets)]
                i += 1
                if self.in_flight >= self.max_in_flight:
                    self.sink(Answer(node_id, due, loop.time(), Outcome.LOST))
                    continue
                self.in_flight += 1
                task = asyncio.create_task(self._send(session, node_id, host, port, due, i))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.gather(*tasks)

    async def _send(
        self,
        session: aiohttp.ClientSession,
        node_id: str,
        host: str,
        port: int,
        due: float,
        i: int,
    ) -> None:
        loop = asyncio.get_running_loop()
        if not ipaddress.ip_address(host).is_loopback:
            raise NotLoopbackError(f"{host} is not a loopback address")
        path = PATHS[i % len(PATHS)]
        try:
            async with session.get(
                f"http://{host}:{port}{path}", headers=PROBE_HEADERS, allow_redirects=False
            ) as response:
                await response.read()
                answer = Answer(
                    node_id,
                    due,
                    loop.time(),
                    outcome_of(response.status),
                    response.status,
                    response.headers.get(BUNDLE_HEADER.decode(), ""),
                )
        except (aiohttp.ClientError, TimeoutError):
            answer = Answer(node_id, due, loop.time(), Outcome.LOST)
        finally:
            self.in_flight -= 1
        self.sent += 1
        self.sink(answer)
