"""What a simulated scenario produced: per-rollout figures, a timeline and checked properties."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from failsmall.sim.figures import Figures


@dataclass(frozen=True, slots=True)
class RolloutRecord:
    """One rollout as the simulator saw it. Times are virtual seconds since the scenario began.

    - `detected_at`: the first alarm: the health gate failing, or a rollback or abort (a node
      refusing or quarantining the bundle), if there was one.
    - `restored_at`: when the last node stopped serving the new bundle after a rollback or
      abort (equal to `detected_at` when no node ever served it).
    - `max_assigned`: the most live nodes assigned the new bundle at once.
    - `max_running` / `ever_ran`: nodes actually serving it at once / ever.
    - `max_assigned_seen` / `limit_breaches`: the simulator's own count of nodes assigned the
      new bundle, and how many times it exceeded what the current wave allowed (must be 0).
    - `requests_failed`: users' requests failed from its start until it settled (traffic model).
    """

    label: str
    digest: str
    change_class: str
    policy: str
    final_state: str
    reason: str
    started_at: float
    finished_at: float
    canary_size: int
    max_assigned: int
    ever_assigned: int
    max_running: int
    ever_ran: int
    max_assigned_seen: int = 0
    limit_breaches: int = 0
    detected_at: float = -1.0
    restored_at: float = -1.0
    differences: tuple[str, ...] = ()
    requests_failed: float = 0.0

    @property
    def duration_s(self) -> float:
        return self.finished_at - self.started_at

    @property
    def time_to_restore_s(self) -> float:
        """From the rollout's start to the fleet being back on the last good bundle."""
        return self.restored_at - self.started_at if self.restored_at >= 0 else -1.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["differences"] = list(self.differences)
        data["duration_s"] = round(self.duration_s, 3)
        data["time_to_restore_s"] = round(self.time_to_restore_s, 3)
        data["requests_failed"] = round(self.requests_failed)
        return data


@dataclass(frozen=True, slots=True)
class TimelineRow:
    """How many nodes served each bundle (by label) at virtual time `at`."""

    at: float
    serving: dict[str, int]


@dataclass(frozen=True, slots=True)
class Check:
    """A property the scenario must hold, whether it held, and the figure behind it."""

    name: str
    holds: bool
    detail: str


@dataclass(frozen=True, slots=True)
class ScenarioResult:
    """Everything one scenario run produced."""

    scenario: str
    description: str
    nodes: int
    seed: int
    rollouts: tuple[RolloutRecord, ...]
    timeline: tuple[TimelineRow, ...]
    checks: tuple[Check, ...]
    audit_entries: int
    events: int
    figures: Figures
    labels: tuple[str, ...] = field(default_factory=tuple)

    @property
    def held(self) -> bool:
        return all(check.holds for check in self.checks)

    def short_timeline(self, rows: int = 12) -> list[TimelineRow]:
        """At most `rows` rows: every change of the mix, thinned evenly if there are more."""
        changes = [
            row
            for i, row in enumerate(self.timeline)
            if i == 0 or row.serving != self.timeline[i - 1].serving
        ]
        if self.timeline and changes[-1] is not self.timeline[-1]:
            changes.append(self.timeline[-1])
        if len(changes) <= rows:
            return changes
        step = (len(changes) - 1) / (rows - 1)
        return [changes[round(i * step)] for i in range(rows)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "description": self.description,
            "nodes": self.nodes,
            "seed": self.seed,
            "held": self.held,
            **self.figures.to_dict(),
            "rollouts": [r.to_dict() for r in self.rollouts],
            "timeline": [
                {"at": row.at, "serving": dict(row.serving)} for row in self.short_timeline(50)
            ],
            "checks": [asdict(c) for c in self.checks],
            "audit_entries": self.audit_entries,
            "events": self.events,
        }
