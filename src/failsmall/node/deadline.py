"""One deadline per client connection, all checked by a single sweeper.

A connection arms its deadline for what it is waiting for (the next request, the rest of the
headers, more body, the origin's answer); the sweeper calls `expire()` on connections whose
deadline passed. Re-arming is a float assignment, cheaper than a timer per request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from enum import Enum, auto
from typing import Protocol


class Deadline(Enum):
    """What the connection's single deadline currently guards."""

    NONE = auto()
    IDLE = auto()
    HEADERS = auto()
    BODY = auto()
    UPSTREAM = auto()


class HasDeadline(Protocol):
    """What the sweeper needs from a connection."""

    deadline: float
    deadline_kind: Deadline

    def expire(self) -> None: ...


class Sweeper:
    """Checks every connection's deadline a few times a second (one timer for all)."""

    def __init__(self, connections: Iterable[HasDeadline], interval_s: float = 0.1) -> None:
        self.connections = connections
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.interval_s)
            now = loop.time()
            expired = [
                c
                for c in self.connections
                if c.deadline_kind is not Deadline.NONE and c.deadline <= now
            ]
            for conn in expired:
                conn.expire()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
