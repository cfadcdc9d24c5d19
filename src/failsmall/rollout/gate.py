"""The health gate: nodes on the new bundle compared with nodes on the old one over a bake.

The control plane converts each node health report into a `HealthSample`; the rollout machine
adds the samples taken during a wave's bake window into one `SideStats` per side (new bundle,
old bundle) and asks `evaluate_gate` for a verdict:

- `GateFail(reasons)`: the new bundle is worse than the baseline beyond a threshold, a node
  NACKed it, or a node quarantined it (the evidence said it brought the node down). A fail
  always stops the rollout.
- `GateInconclusive(reason)`: too little traffic or too few nodes reporting to tell. The gate
  never passes on no data.
- `GatePass(summary)`: enough data and nothing worse than the thresholds allow.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from failsmall.rollout.errors import StateFormatError
from failsmall.rollout.policy import GateThresholds


@dataclass(frozen=True, slots=True)
class HealthSample:
    """One node's traffic health over one report window, on the bundle `digest` it served.

    `poisoned` lists digests the node quarantined after crashing with them. The fields are
    those of a node's health report of the same names; `at` is when the window ended.
    """

    node_id: str
    digest: str
    at: float
    requests: int = 0
    responses_5xx: int = 0
    blocked: int = 0
    challenged: int = 0
    module_errors: int = 0
    breaker_trips: int = 0
    p99_ms: float = 0.0
    poisoned: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["poisoned"] = list(self.poisoned)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HealthSample:
        try:
            return cls(
                node_id=str(data["node_id"]),
                digest=str(data["digest"]),
                at=float(data["at"]),
                requests=int(data.get("requests", 0)),
                responses_5xx=int(data.get("responses_5xx", 0)),
                blocked=int(data.get("blocked", 0)),
                challenged=int(data.get("challenged", 0)),
                module_errors=int(data.get("module_errors", 0)),
                breaker_trips=int(data.get("breaker_trips", 0)),
                p99_ms=float(data.get("p99_ms", 0.0)),
                poisoned=tuple(str(d) for d in data.get("poisoned", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StateFormatError(f"not a health sample: {exc}") from exc


@dataclass(frozen=True, slots=True)
class SideStats:
    """Traffic totals of the nodes on one side (new or old bundle) over a window.

    `latency_weight_ms` is the sum of each sample's p99 times its requests, so that
    `p99_ms` is the request-weighted mean of the nodes' p99s.
    """

    nodes: int = 0
    requests: int = 0
    responses_5xx: int = 0
    blocked_or_challenged: int = 0
    module_errors: int = 0
    breaker_trips: int = 0
    latency_weight_ms: float = 0.0

    @classmethod
    def of(cls, samples: list[HealthSample]) -> SideStats:
        return cls(
            nodes=len({s.node_id for s in samples}),
            requests=sum(s.requests for s in samples),
            responses_5xx=sum(s.responses_5xx for s in samples),
            blocked_or_challenged=sum(s.blocked + s.challenged for s in samples),
            module_errors=sum(s.module_errors for s in samples),
            breaker_trips=sum(s.breaker_trips for s in samples),
            latency_weight_ms=sum(s.p99_ms * s.requests for s in samples),
        )

    def plus(self, sample: HealthSample, *, new_node: bool) -> SideStats:
        """These totals with one more sample (`new_node` if its node was not counted yet)."""
        return SideStats(
            nodes=self.nodes + (1 if new_node else 0),
            requests=self.requests + sample.requests,
            responses_5xx=self.responses_5xx + sample.responses_5xx,
            blocked_or_challenged=self.blocked_or_challenged + sample.blocked + sample.challenged,
            module_errors=self.module_errors + sample.module_errors,
            breaker_trips=self.breaker_trips + sample.breaker_trips,
            latency_weight_ms=self.latency_weight_ms + sample.p99_ms * sample.requests,
        )

    def rate(self, count: int) -> float:
        return count / self.requests if self.requests else 0.0

    @property
    def error_rate(self) -> float:
        return self.rate(self.responses_5xx)

    @property
    def block_rate(self) -> float:
        return self.rate(self.blocked_or_challenged)

    @property
    def module_error_rate(self) -> float:
        return self.rate(self.module_errors)

    @property
    def p99_ms(self) -> float:
        return self.latency_weight_ms / self.requests if self.requests else 0.0

    @property
    def trips_per_node(self) -> float:
        return self.breaker_trips / self.nodes if self.nodes else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SideStats:
        try:
            return cls(**data)
        except TypeError as exc:
            raise StateFormatError(f"not side statistics: {exc}") from exc


@dataclass(frozen=True, slots=True)
class GateInput:
    """Everything the gate looks at for one decision.

    `baseline` is the old side of the same window, or the last one seen when no node is left on
    the old bundle (the final wave). `assigned` counts live nodes assigned the new bundle.
    """

    new: SideStats
    baseline: SideStats
    assigned: int
    nacks: tuple[str, ...] = ()
    poisoned: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class GatePass:
    """The new bundle is healthy enough to promote."""

    summary: str


@dataclass(frozen=True, slots=True)
class GateFail:
    """The new bundle is worse than allowed: the rollout must stop and roll back."""

    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class GateInconclusive:
    """Not enough data to decide: extend the bake, then pause for a person."""

    reason: str


GateVerdict = GatePass | GateFail | GateInconclusive


def evaluate_gate(thresholds: GateThresholds, data: GateInput) -> GateVerdict:
    """Decide on one window. Failures are checked first and need only their own evidence."""
    reasons = _failures(thresholds, data)
    if reasons:
        return GateFail(tuple(reasons))
    new = data.new
    if data.assigned == 0:
        return GateInconclusive("no live node is assigned the new bundle")
    if new.nodes < thresholds.min_coverage * data.assigned:
        return GateInconclusive(
            f"only {new.nodes} of {data.assigned} nodes reported on the new bundle "
            f"(need {thresholds.min_coverage:.0%})"
        )
    if new.requests < thresholds.min_requests:
        return GateInconclusive(
            f"only {new.requests} requests on the new bundle (need {thresholds.min_requests})"
        )
    return GatePass(
        f"{new.requests} requests on {new.nodes} nodes: 5xx {new.error_rate:.2%} "
        f"(baseline {data.baseline.error_rate:.2%}), blocked {new.block_rate:.2%} "
        f"(baseline {data.baseline.block_rate:.2%}), p99 {new.p99_ms:.0f} ms "
        f"(baseline {data.baseline.p99_ms:.0f} ms)"
    )


def _failures(t: GateThresholds, data: GateInput) -> list[str]:
    new, base = data.new, data.baseline
    reasons: list[str] = []
    if len(data.nacks) > t.max_nacks:
        reasons.append(f"{len(data.nacks)} node(s) refused the bundle: {_few(data.nacks)}")
    if len(data.poisoned) > t.max_poisoned:
        reasons.append(
            f"{len(data.poisoned)} node(s) quarantined it after it brought them down: "
            f"{_few(data.poisoned)}"
        )
    rate_checks = (
        ("5xx rate", new.responses_5xx, new.error_rate, base.error_rate, t.error_factor,
         t.error_margin),
        ("block+challenge rate", new.blocked_or_challenged, new.block_rate, base.block_rate,
         t.block_factor, t.block_margin),
        ("module error rate", new.module_errors, new.module_error_rate,
         base.module_error_rate, t.module_error_factor, t.module_error_margin),
    )  # fmt: skip
    for name, bad_events, rate, baseline, factor, margin in rate_checks:
        limit = max(factor * baseline, baseline + margin)
        if bad_events >= t.min_bad_events and rate > limit:
            reasons.append(
                f"{name} {rate:.2%} on the new bundle exceeds {limit:.2%} (baseline {baseline:.2%})"
            )
    trip_limit = 2 * base.trips_per_node + t.breaker_trips_per_node_margin
    if new.breaker_trips >= t.min_bad_events and new.trips_per_node > trip_limit:
        reasons.append(
            f"{new.trips_per_node:.1f} breaker trips per node exceeds {trip_limit:.1f} "
            f"(baseline {base.trips_per_node:.1f})"
        )
    if new.requests >= t.min_requests and base.requests >= t.min_requests:
        latency_limit = max(t.latency_factor * base.p99_ms, base.p99_ms + t.latency_margin_ms)
        if new.p99_ms > latency_limit:
            reasons.append(
                f"p99 {new.p99_ms:.0f} ms on the new bundle exceeds {latency_limit:.0f} ms "
                f"(baseline {base.p99_ms:.0f} ms)"
            )
    return reasons


def _few(nodes: tuple[str, ...]) -> str:
    shown = ", ".join(sorted(nodes)[:5])
    return shown + (f" and {len(nodes) - 5} more" if len(nodes) > 5 else "")
