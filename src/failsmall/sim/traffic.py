"""The traffic model: every live node serves a fixed request rate, and a node fails the share of
its requests that the bundle it serves fails (its `Behaviour.failed_share`), some of them by
never answering (`Behaviour.lost_share`: lost, in a drill's words).

Counted exactly, not sampled: between two changes of what the fleet serves, the fleet serves
`rate x nodes x seconds` requests and fails `rate x (sum of failed shares) x seconds` of them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Failing:
    """The share of a node's requests that fail, and the part of them that is lost."""

    failed: float = 0.0
    lost: float = 0.0


@dataclass
class Traffic:
    """Requests served and failed so far, integrated over virtual time."""

    rate_per_node_s: float
    nodes: int
    failing: float = 0.0
    """Sum over live nodes of the share of requests each fails (nodes' worth of failure)."""
    losing: float = 0.0
    """The same for the share each never answers."""
    requests: float = 0.0
    failed: float = 0.0
    lost: float = 0.0
    since: float = 0.0

    def advance(self, now: float) -> None:
        """Count the traffic from the last change up to `now`."""
        elapsed = now - self.since
        if elapsed > 0:
            self.requests += self.rate_per_node_s * self.nodes * elapsed
            self.failed += self.rate_per_node_s * self.failing * elapsed
            self.lost += self.rate_per_node_s * self.losing * elapsed
        self.since = max(self.since, now)

    def swap(self, now: float, before: Failing, after: Failing) -> None:
        """A node moved from failing `before` to `after` at `now`."""
        self.advance(now)
        self.failing += after.failed - before.failed
        self.losing += after.lost - before.lost

    def join(self, now: float, share: Failing) -> None:
        self.advance(now)
        self.nodes += 1
        self.failing += share.failed
        self.losing += share.lost

    def leave(self, now: float, share: Failing) -> None:
        self.advance(now)
        self.nodes -= 1
        self.failing -= share.failed
        self.losing -= share.lost

    def set_rate(self, now: float, rate_per_node_s: float) -> None:
        self.advance(now)
        self.rate_per_node_s = rate_per_node_s
