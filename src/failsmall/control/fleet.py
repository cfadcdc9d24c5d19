"""The node registry: who is in the fleet, alive, on which bundle, and what they last reported.

A node joins by reporting (health or apply); it is declared gone when nothing was heard from it
for `dead_after_s`, and joins again with its next report. Silence while the control plane itself
was down says nothing about a node: a restarted registry gives every node that was live
`dead_after_s` from its start to be heard again.
"""

from __future__ import annotations

from failsmall.control.store import ControlStore
from failsmall.rollout import HealthSample
from failsmall.transport.base import ApplyReport, HealthReport


def health_sample(report: HealthReport) -> HealthSample:
    """What the health gate reads, from what a node reported."""
    return HealthSample(
        node_id=report.node_id,
        digest=report.digest,
        at=report.at,
        requests=report.requests,
        responses_5xx=report.responses_5xx,
        blocked=report.blocked,
        challenged=report.challenged,
        module_errors=report.module_errors,
        breaker_trips=report.breaker_trips,
        p99_ms=report.p99_ms,
        poisoned=report.poisoned,
    )


class FleetRegistry:
    """Tracks node liveness in the control store."""

    def __init__(self, store: ControlStore, dead_after_s: float, started_at: float) -> None:
        self._store = store
        self.dead_after_s = dead_after_s
        self._live: dict[str, float] = {
            n["node_id"]: max(float(n["last_seen"]), started_at) for n in store.nodes() if n["live"]
        }

    def live_nodes(self) -> frozenset[str]:
        return frozenset(self._live)

    def heard_health(self, report: HealthReport, now: float) -> bool:
        """Record a health report; True when the node was not live before (it joined)."""
        joined = report.node_id not in self._live
        self._live[report.node_id] = now
        self._store.upsert_node(
            report.node_id,
            now,
            address=report.address,
            digest=report.digest,
            lkg_digest=report.lkg_digest,
            health=report.to_dict(),
        )
        return joined

    def heard_apply(self, report: ApplyReport, now: float) -> bool:
        """Record an apply report; True when the node was not live before (it joined)."""
        joined = report.node_id not in self._live
        self._live[report.node_id] = now
        self._store.upsert_node(report.node_id, now, apply=report.to_dict())
        return joined

    def sweep(self, now: float) -> list[str]:
        """Declare gone every node silent for longer than `dead_after_s`; returns them."""
        gone = sorted(n for n, seen in self._live.items() if now - seen > self.dead_after_s)
        for node_id in gone:
            del self._live[node_id]
            self._store.mark_dead(node_id)
        return gone
