"""Supervised background loops: a failure is logged within a budget, retried with backoff, and
visible as degraded health instead of ending the loop silently.

    loop = SupervisedLoop("rollout ticker", one_tick, log)
    task = asyncio.create_task(loop.run())
    loop.health()  # LoopHealth(state=LoopState.HEALTHY, ...)

`run` awaits `step()` again and again, forever. A step that returns marks the loop HEALTHY and
resets the backoff; a step that raises an `Exception` marks it DEGRADED with that error, logs it
(at most `burst` logs at once, refilled at `per_s` a second; the others are counted and the
count appears in the next log line) and waits `backoff_s`, doubled after each failure in a row
up to `max_backoff_s`, before the next step. Cancellation and other `BaseException`s end the
loop as usual. This module imports nothing of the project's, so any loop can use it.

States and transitions:

    HEALTHY --step raised--> DEGRADED --step returned--> HEALTHY
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NoReturn


class LoopState(StrEnum):
    """How a supervised loop is doing: its last step returned, or raised."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"


@dataclass(frozen=True, slots=True)
class LoopHealth:
    """A loop's state, its last error (empty while healthy) and its failures in a row."""

    name: str
    state: LoopState
    last_error: str
    failures_in_a_row: int
    failures_total: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state.value,
            "last_error": self.last_error,
            "failures_in_a_row": self.failures_in_a_row,
            "failures_total": self.failures_total,
        }


class LogBudget:
    """A token bucket for log lines: `burst` at once, refilled at `per_s` a second."""

    def __init__(
        self, burst: int = 5, per_s: float = 0.1, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._burst = float(burst)
        self._per_s = per_s
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._per_s)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class SupervisedLoop:
    """Runs `step` forever under supervision (see the module docstring)."""

    def __init__(
        self,
        name: str,
        step: Callable[[], Awaitable[None]],
        log: logging.Logger,
        *,
        backoff_s: float = 0.25,
        max_backoff_s: float = 30.0,
        budget: LogBudget | None = None,
    ) -> None:
        self.name = name
        self._step = step
        self._log = log
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._budget = budget or LogBudget()
        self._state = LoopState.HEALTHY
        self._last_error = ""
        self._in_a_row = 0
        self._total = 0
        self._unlogged = 0

    def health(self) -> LoopHealth:
        return LoopHealth(self.name, self._state, self._last_error, self._in_a_row, self._total)

    async def run(self) -> NoReturn:
        while True:
            try:
                await self._step()
            except Exception as exc:  # noqa: BLE001 - supervision: any failure is retried
                await asyncio.sleep(self._failed(exc))
            else:
                self._state = LoopState.HEALTHY
                self._last_error = ""
                self._in_a_row = 0
                await asyncio.sleep(0)  # a step that never waits must not starve the loop

    def _failed(self, exc: Exception) -> float:
        """Record one failure and return how long to wait before the next step."""
        self._state = LoopState.DEGRADED
        self._last_error = f"{type(exc).__name__}: {exc}"[:500]
        self._in_a_row += 1
        self._total += 1
        delay: float = min(
            self._max_backoff_s, self._backoff_s * 2.0 ** min(self._in_a_row - 1, 30)
        )
        if self._budget.take():
            more = f" ({self._unlogged} more failures not logged)" if self._unlogged else ""
            self._log.error(
                "%s failed (%d in a row), retrying in %.2f s%s",
                self.name,
                self._in_a_row,
                delay,
                more,
                exc_info=exc,
            )
            self._unlogged = 0
        else:
            self._unlogged += 1
        return delay
