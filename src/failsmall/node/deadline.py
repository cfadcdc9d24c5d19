"""One deadline per client connection, all checked by a single sweeper.

A connection arms its deadline for what it is waiting for (the next request, the rest of the
headers, more body, the origin's answer); the sweeper calls `expire()` on connections whose
deadline passed. Re-arming is a float assignment, cheaper than a timer per request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from enum import Enum, auto
from typing import Protocol

from failsmall.supervise import SupervisedLoop
from failsmall.transport.stopping import cancel_and_wait

log = logging.getLogger("failsmall.node")


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
    """Checks every connection's deadline a few times a second (one timer for all), as a
    supervised loop: a failing sweep is logged, retried and shown as degraded health."""

    def __init__(self, connections: Iterable[HasDeadline], interval_s: float = 0.1) -> None:
        self.connections = connections
        self.interval_s = interval_s
        self.loop = SupervisedLoop("deadline_sweeper", self._sweep_once, log=log)

    def start(self) -> None:
        self.loop.start()

    async def _sweep_once(self) -> None:
        await asyncio.sleep(self.interval_s)
        now = asyncio.get_running_loop().time()
        expired = [
            conn
            for conn in self.connections
            if conn.deadline_kind is not Deadline.NONE and conn.deadline <= now
        ]
        for conn in expired:
            conn.expire()

    async def stop(self) -> None:
        if self.loop.task is not None:
            await cancel_and_wait(self.loop.task)
