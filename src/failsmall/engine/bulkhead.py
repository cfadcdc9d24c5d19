"""Bulkheads around modules: circuit breakers and a fixed budget for error reports.

A module that keeps failing is tripped by its breaker, and error reports go through a token
bucket with counted drops, so an error storm can neither take the pipeline down nor eat the CPU.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum

from failsmall.model.traffic import ModuleSettings


class BreakerState(StrEnum):
    """Circuit breaker states.

    closed --(failures >= threshold within window)--> open
    open --(cooldown elapsed, next call)--> half_open
    half_open --(success)--> closed;  half_open --(failure)--> open
    """

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass
class Breaker:
    """A per-module circuit breaker; time comes in as arguments."""

    settings: ModuleSettings
    state: BreakerState = BreakerState.CLOSED
    failures: deque[float] = field(default_factory=deque)
    opened_at: float = 0.0
    trips: int = 0

    def allows(self, now: float) -> bool:
        match self.state:
            case BreakerState.CLOSED | BreakerState.HALF_OPEN:
                return True
            case BreakerState.OPEN:
                if now - self.opened_at >= self.settings.breaker_cooldown_s:
                    self.state = BreakerState.HALF_OPEN
                    return True
                return False

    def record_success(self) -> None:
        if self.state is BreakerState.HALF_OPEN:
            self.state = BreakerState.CLOSED
            self.failures.clear()

    def record_failure(self, now: float) -> bool:
        """Count a failure; True when it opened the breaker."""
        if self.state is BreakerState.HALF_OPEN:
            self._open(now)
            return True
        self.failures.append(now)
        horizon = now - self.settings.breaker_window_s
        while self.failures and self.failures[0] < horizon:
            self.failures.popleft()
        if len(self.failures) >= self.settings.breaker_failures:
            self._open(now)
            return True
        return False

    def _open(self, now: float) -> None:
        self.state = BreakerState.OPEN
        self.opened_at = now
        self.trips += 1
        self.failures.clear()


@dataclass(frozen=True, slots=True)
class ErrorReport:
    """One module error, as handed to the node's logger."""

    at: float
    module: str
    error: str


@dataclass
class ErrorBudget:
    """A token bucket for error reports: at most `rate` per second, `burst` at once.

    Reports past the budget are dropped and counted, never queued: the request path does not
    wait for error reporting.
    """

    rate: float = 10.0
    burst: int = 20
    capacity: int = 1000
    tokens: float = 20.0
    updated: float = 0.0
    dropped: int = 0
    pending: deque[ErrorReport] = field(default_factory=deque)

    def report(self, now: float, module: str, error: str, urgent: bool = False) -> None:
        """Queue a report within budget, else count it dropped. An `urgent` one (a breaker that
        opened: rare by construction, one per trip) is kept even when the tokens ran out, as
        long as the queue has room."""
        self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if len(self.pending) >= self.capacity or (self.tokens < 1.0 and not urgent):
            self.dropped += 1
            return
        self.tokens = max(0.0, self.tokens - 1.0)
        self.pending.append(ErrorReport(now, module, error[:500]))

    def drain(self) -> list[ErrorReport]:
        out = list(self.pending)
        self.pending.clear()
        return out
