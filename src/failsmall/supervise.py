"""Background loops that cannot die silently.

A background loop is written as one *step* (watch once, tick once, read one batch) that a
`SupervisedLoop` runs again and again; a step waits for something (a timer, a watch, a
message), since the next one starts at once:

    step returns      -> Healthy; the backoff resets
    step raises       -> Failing(failures, since, error): logged within the loop's log budget,
                         retried after exponential backoff with jitter
    a step after that -> Healthy again (logged once: "recovered after N failures")
    cancelled         -> the loop ends (that is how its owner stops it)

A loop's `health` is what its process shows as degraded health (readiness text, health
reports, status). `LogBudget` is a token bucket, so a loop failing every 200 ms writes a few
lines a minute, each saying how many were left out, instead of filling the disk it may be
failing on. Nothing here knows the node or the control plane; both run their loops with it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, assert_never

from failsmall.backoff import Backoff


class LoopState(StrEnum):
    """How a supervised loop is doing: its last step returned, or raised."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"


@dataclass(frozen=True, slots=True)
class Healthy:
    """The loop's last step succeeded (or it has not failed yet)."""

    name: str

    @property
    def state(self) -> LoopState:
        return LoopState.HEALTHY

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "state": self.state.value}


@dataclass(frozen=True, slots=True)
class Failing:
    """The loop's last `failures` steps failed, the first at `since` (seconds since the epoch);
    `error` is the latest failure, as the exception's type and message."""

    name: str
    failures: int
    since: float
    error: str

    @property
    def state(self) -> LoopState:
        return LoopState.DEGRADED

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state.value,
            "failures_in_a_row": self.failures,
            "since": self.since,
            "last_error": self.error,
        }

    def describe(self) -> str:
        when = time.strftime("%H:%M:%S", time.gmtime(self.since))
        return f"{self.name}: {self.failures} failure(s) since {when} UTC, last: {self.error}"


LoopHealth = Healthy | Failing


@dataclass
class LogBudget:
    """At most `burst` log lines at once, refilled at `per_minute`; what is over it is counted."""

    burst: float = 5.0
    per_minute: float = 6.0
    clock: Callable[[], float] = time.monotonic
    tokens: float = field(init=False)
    refilled_at: float = field(init=False)
    left_out: int = 0

    def __post_init__(self) -> None:
        self.tokens = self.burst
        self.refilled_at = self.clock()

    def allow(self) -> bool:
        """Whether a line may be written now; False counts it as left out."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.refilled_at) * self.per_minute / 60)
        self.refilled_at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        self.left_out += 1
        return False

    def take_left_out(self) -> int:
        count, self.left_out = self.left_out, 0
        return count


class SupervisedLoop:
    """Runs `step` forever under supervision (see the module docstring)."""

    def __init__(
        self,
        name: str,
        step: Callable[[], Awaitable[None]],
        log: logging.Logger,
        *,
        backoff: Backoff | None = None,
        budget: LogBudget | None = None,
    ) -> None:
        self.name = name
        self.step = step
        self.log = log
        self.backoff = backoff or Backoff(base_s=0.2, cap_s=10.0)
        self.budget = budget or LogBudget()
        self.health: LoopHealth = Healthy(name)
        self.total_failures = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> asyncio.Task[None]:
        """Run the loop as a task of the running event loop; cancel the task to stop it."""
        self._task = asyncio.ensure_future(self.run())
        return self._task

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self._task

    async def run(self) -> None:
        while True:
            try:
                await self.step()
            except Exception as exc:  # noqa: BLE001 - every failure is counted, logged, retried
                delay = self.backoff.next_delay()
                self._failed(exc, delay)
                await asyncio.sleep(delay)
            else:
                self._succeeded()
                await asyncio.sleep(0)  # a step that never waits must not starve the event loop

    def _failed(self, exc: Exception, delay: float) -> None:
        self.total_failures += 1
        error = f"{type(exc).__name__}: {exc}"
        health = self.health
        match health:
            case Healthy():
                failing = Failing(self.name, 1, time.time(), error)
            case Failing(failures=failures, since=since):
                failing = Failing(self.name, failures + 1, since, error)
            case _:
                assert_never(health)
        self.health = failing
        if self.budget.allow():
            left_out = self.budget.take_left_out()
            more = f" ({left_out} more failure(s) not logged)" if left_out else ""
            self.log.error(
                "%s failed: %s; retrying in %.2fs%s",
                self.name,
                error,
                delay,
                more,
                exc_info=exc if failing.failures == 1 else None,  # the first with its traceback
            )

    def _succeeded(self) -> None:
        health = self.health
        match health:
            case Healthy():
                return
            case Failing(failures=failures):
                self.backoff.reset()
                self.health = Healthy(self.name)
                left_out = self.budget.take_left_out()
                self.log.warning(
                    "%s recovered after %d failure(s)%s",
                    self.name,
                    failures,
                    f" ({left_out} not logged)" if left_out else "",
                )
            case _:
                assert_never(health)


def degraded(loops: Iterable[SupervisedLoop]) -> tuple[Failing, ...]:
    """The loops that are failing now, in the order given."""
    return tuple(loop.health for loop in loops if isinstance(loop.health, Failing))
