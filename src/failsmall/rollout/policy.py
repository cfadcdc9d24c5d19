"""Rollout policies: the waves, bakes and health-gate thresholds for each change class.

Every policy starts with a canary wave; no policy skips it. `expedited` (killswitches) has
short bakes but the same gates as `logic`. `global` is a single wave over the whole fleet, kept
only for measuring propagation: it is never chosen by change class and must be asked for by
name with `policy_named("global")`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from failsmall.rollout.classify import ChangeClass
from failsmall.rollout.errors import PolicyError, StateFormatError, UnknownPolicyError


@dataclass(frozen=True, slots=True)
class Wave:
    """One wave: the cumulative `fraction` of the fleet it covers (at least `min_nodes`) and
    how long it bakes before the health gate may promote it."""

    name: str
    fraction: float
    min_nodes: int
    bake_s: float

    def size(self, fleet_size: int) -> int:
        """How many nodes this wave covers in a fleet of `fleet_size` nodes (cumulative)."""
        if fleet_size <= 0:
            return 0
        wanted = max(self.min_nodes, math.ceil(self.fraction * fleet_size - 1e-9))
        return min(fleet_size, wanted)


@dataclass(frozen=True, slots=True)
class GateThresholds:
    """When the health gate fails, passes or cannot decide.

    A rate on the new bundle fails when it exceeds `max(factor x baseline, baseline + margin)`
    and at least `min_bad_events` bad events were seen (so one stray 5xx in a quiet window does
    not fail a canary). The gate is inconclusive below `min_requests` on the new bundle or when
    fewer than `min_coverage` of the nodes assigned the new bundle have reported on it.
    """

    min_requests: int = 30
    min_coverage: float = 0.5
    min_bad_events: int = 5
    error_factor: float = 2.0
    error_margin: float = 0.01
    block_factor: float = 2.0
    block_margin: float = 0.05
    module_error_factor: float = 2.0
    module_error_margin: float = 0.01
    breaker_trips_per_node_margin: float = 1.0
    latency_factor: float = 1.5
    latency_margin_ms: float = 50.0
    max_nacks: int = 0
    max_poisoned: int = 0


@dataclass(frozen=True, slots=True)
class Policy:
    """Waves, gate thresholds and timers for one kind of rollout.

    - `max_extensions`: how many times an inconclusive gate extends a bake (by that wave's
      `bake_s`) before the rollout pauses for a person.
    - `rollback_confirm_s`: how long a rollback waits for every returned node to confirm the
      last good bundle before it is recorded as done with the stragglers listed.
    """

    name: str
    waves: tuple[Wave, ...]
    gate: GateThresholds = field(default_factory=GateThresholds)
    max_extensions: int = 2
    rollback_confirm_s: float = 30.0

    def __post_init__(self) -> None:
        problems = policy_problems(self)
        if problems:
            raise PolicyError(f"policy {self.name!r} is invalid: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Policy:
        try:
            return cls(
                name=str(data["name"]),
                waves=tuple(Wave(**w) for w in data["waves"]),
                gate=GateThresholds(**data.get("gate", {})),
                max_extensions=int(data.get("max_extensions", 2)),
                rollback_confirm_s=float(data.get("rollback_confirm_s", 30.0)),
            )
        except (KeyError, TypeError) as exc:
            raise StateFormatError(f"not a rollout policy: {exc}") from exc


def policy_problems(policy: Policy) -> list[str]:
    """Everything wrong with a policy's waves (empty, shrinking, not ending at 100%...)."""
    problems: list[str] = []
    if not policy.waves:
        return ["it has no waves"]
    previous = 0.0
    for wave in policy.waves:
        if not 0 < wave.fraction <= 1:
            problems.append(f"wave {wave.name!r} fraction {wave.fraction} is not in (0, 1]")
        if wave.fraction < previous:
            problems.append(f"wave {wave.name!r} covers less than the wave before it")
        if wave.min_nodes < 1:
            problems.append(f"wave {wave.name!r} must cover at least one node")
        if wave.bake_s < 0:
            problems.append(f"wave {wave.name!r} has a negative bake time")
        previous = wave.fraction
    if policy.waves[-1].fraction != 1.0:
        problems.append("the last wave must cover the whole fleet (fraction 1.0)")
    if policy.max_extensions < 0:
        problems.append("max_extensions must not be negative")
    return problems


def _staged(name: str, canary_bake_s: float, bake_s: float) -> Policy:
    return Policy(
        name=name,
        waves=(
            Wave("canary", 0.01, 1, canary_bake_s),
            Wave("10%", 0.10, 1, bake_s),
            Wave("50%", 0.50, 1, bake_s),
            Wave("100%", 1.0, 1, bake_s),
        ),
    )


LOGIC = _staged("logic", canary_bake_s=5.0, bake_s=5.0)
CONTENT = _staged("content", canary_bake_s=4.0, bake_s=3.0)
EXPEDITED = _staged("expedited", canary_bake_s=2.0, bake_s=2.0)
# One wave for the whole fleet, for measuring propagation only. It still bakes: the gate must
# see health reports before it can pass, so a bake of zero would pause every rollout.
GLOBAL = Policy(name="global", waves=(Wave("global", 1.0, 1, 5.0),))

NAMED_POLICIES: dict[str, Policy] = {p.name: p for p in (LOGIC, CONTENT, EXPEDITED, GLOBAL)}


def policy_for(change_class: ChangeClass) -> Policy:
    """The policy a change of this class rolls out with. Never `global`."""
    match change_class:
        case ChangeClass.LOGIC:
            return LOGIC
        case ChangeClass.CONTENT:
            return CONTENT
        case ChangeClass.KILLSWITCH:
            return EXPEDITED


def policy_named(name: str) -> Policy:
    """A named policy (`logic`, `content`, `expedited` or `global`)."""
    try:
        return NAMED_POLICIES[name]
    except KeyError:
        known = ", ".join(sorted(NAMED_POLICIES))
        raise UnknownPolicyError(
            f"no rollout policy named {name!r}; choose one of {known}"
        ) from None
