"""Prometheus metrics of one node process, built at scrape time from its counters.

Each node process has its own registry and admin port (no multiprocess mode): with
`--workers N`, worker i serves its metrics on admin port + i.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)

from failsmall.engine.bulkhead import BreakerState
from failsmall.node.agent import ConfigAgent
from failsmall.node.serving import ServingSlot
from failsmall.node.stats import LATENCY_BUCKETS_S, TrafficStats
from failsmall.supervise import Healthy


class NodeCollector:
    """Turns a node's counters into Prometheus metric families."""

    def __init__(self, stats: TrafficStats, slot: ServingSlot, agent: ConfigAgent) -> None:
        self.stats = stats
        self.slot = slot
        self.agent = agent

    def collect(self) -> Iterator[Metric]:
        stats = self.stats
        requests = CounterMetricFamily(
            "failsmall_requests",
            "Requests answered, by status and decision",
            labels=["status", "decision"],
        )
        for (status, decision), value in sorted(stats.requests.items()):
            requests.add_metric([str(status), decision], value)
        yield requests

        rejected = CounterMetricFamily(
            "failsmall_requests_rejected",
            "Requests refused before evaluation (malformed, over a limit, too slow), by status",
            labels=["status"],
        )
        for status_text, value in sorted(stats.rejected.items()):
            rejected.add_metric([status_text], value)
        yield rejected

        modules = CounterMetricFamily(
            "failsmall_module_outcomes", "Module outcomes", labels=["module", "outcome"]
        )
        for (module, outcome), value in sorted(stats.module_outcomes().items()):
            modules.add_metric([module, outcome], value)
        yield modules

        errors = CounterMetricFamily(
            "failsmall_module_errors", "Module failures (errored outcomes)", labels=["module"]
        )
        for module, value in sorted(stats.module_errors().items()):
            errors.add_metric([module], value)
        yield errors

        upstream = CounterMetricFamily(
            "failsmall_upstream_errors", "Origin failures, by kind", labels=["kind"]
        )
        for kind, value in sorted(stats.upstream_errors.items()):
            upstream.add_metric([kind], value)
        yield upstream

        refused = CounterMetricFamily(
            "failsmall_connections_refused",
            "New connections refused at the door, by the limit they hit",
            labels=["limit"],
        )
        for limit, value in sorted(stats.connections_refused.items()):
            refused.add_metric([limit], value)
        yield refused
        yield CounterMetricFamily(
            "failsmall_requests_abandoned",
            "Requests whose client closed the connection before sending them whole",
            value=stats.abandoned,
        )
        yield CounterMetricFamily(
            "failsmall_slow_bodies",
            "Requests refused with 408 because their body arrived slower than the minimum rate",
            value=stats.slow_bodies,
        )
        rules = CounterMetricFamily(
            "failsmall_rule_matches",
            "Requests each WAF rule matched, and whether the request was blocked",
            labels=["rule", "blocked"],
        )
        for rule, value in sorted(stats.rule_matches.items()):
            blocked = stats.rule_blocks.get(rule, 0)
            rules.add_metric([rule, "true"], blocked)
            rules.add_metric([rule, "false"], value - blocked)
        yield rules

        yield CounterMetricFamily(
            "failsmall_access_log_write_errors",
            "Access log lines lost because the write failed (disk full, file gone)",
            value=stats.access_log_write_errors,
        )

        latency = HistogramMetricFamily(
            "failsmall_request_duration_seconds", "Time from request head to response end"
        )
        cumulative = 0
        buckets: list[tuple[str, float]] = []
        for bound, count in zip(LATENCY_BUCKETS_S, stats.latency.counts, strict=False):
            cumulative += count
            buckets.append((repr(bound), cumulative))
        buckets.append(("+Inf", stats.latency.n))
        latency.add_metric([], buckets, stats.latency.total)
        yield latency

        breakers = GaugeMetricFamily(
            "failsmall_breaker_state",
            "Circuit breaker state per module (1 for the current state)",
            labels=["module", "state"],
        )
        serving = self.slot.current
        if serving is not None:
            for module, breaker in sorted(serving.state.breakers.items()):
                for state in BreakerState:
                    breakers.add_metric(
                        [module.value, state.value], 1.0 if breaker.state is state else 0.0
                    )
        yield breakers

        trips = CounterMetricFamily(
            "failsmall_breaker_trips", "Times a module's circuit breaker opened", labels=["module"]
        )
        overruns = CounterMetricFamily(
            "failsmall_module_overruns",
            "Module runs that completed past the watchdog time budget (their verdicts were kept)",
            labels=["module"],
        )
        if serving is not None:
            for module, breaker in sorted(serving.state.breakers.items()):
                trips.add_metric([module.value], breaker.trips)
            for module, count in sorted(serving.state.module_overruns.items()):
                overruns.add_metric([module.value], count)
        yield trips
        yield overruns

        info = InfoMetricFamily("failsmall_bundle", "The bundle this node serves")
        lkg = self.agent.lkg.pointer()
        info.add_metric(
            [],
            {
                "digest": serving.digest if serving is not None else "",
                "name": serving.signed.bundle.name if serving is not None else "",
                "lkg": lkg.current,
            },
        )
        yield info

        loaded = GaugeMetricFamily("failsmall_bundle_loaded", "1 when a bundle is being served")
        loaded.add_metric([], 1.0 if serving is not None else 0.0)
        yield loaded

        applies = CounterMetricFamily(
            "failsmall_bundle_applies", "Bundle apply results", labels=["result"]
        )
        for result, value in sorted(self.agent.status.applies.items()):
            applies.add_metric([result], value)
        yield applies

        failures = CounterMetricFamily(
            "failsmall_loop_failures",
            "Failed steps of the node's supervised background loops",
            labels=["loop"],
        )
        failing = GaugeMetricFamily(
            "failsmall_loop_failing",
            "1 while a supervised background loop's last step failed (the node is degraded)",
            labels=["loop"],
        )
        for loop in self.agent.loops:
            failures.add_metric([loop.name], loop.total_failures)
            failing.add_metric([loop.name], 0.0 if isinstance(loop.health, Healthy) else 1.0)
        yield failures
        yield failing

        poisoned = GaugeMetricFamily("failsmall_poisoned_bundles", "Quarantined bundle digests")
        poisoned.add_metric([], float(len(self.agent.guard.poisoned)))
        yield poisoned


def node_registry(collector: NodeCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return bytes(generate_latest(registry))
