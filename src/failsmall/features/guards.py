"""The checks a generated feature file passes before it is published: capacity (the slots the
fleet declares), delta (feature count and total weight against the last published file) and
schema (names, kinds, finite weights). They read the raw list of features, before any model
validation, so a doubled file is stopped here with a reason rather than by a crash later."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from failsmall.model.bot import FeatureFile

DEFAULT_MAX_DELTA = 0.3


@dataclass(frozen=True, slots=True)
class Acceptance:
    """A person's decision to publish a file past the delta guard, and why."""

    by: str
    reason: str


class GuardRefused(Exception):
    """The file must not be published; `problems` names each guard that refused and why."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Delta:
    """How much a file changes against the last published one, as shares of the old."""

    count_share: float
    weight_share: float

    def largest(self) -> float:
        return max(self.count_share, self.weight_share)


@dataclass(frozen=True, slots=True)
class GuardReport:
    """The guards passed; `delta` is None for the first file, `accepted` when a person let a
    large delta through."""

    features: int
    capacity: int
    delta: Delta | None
    accepted: Acceptance | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": self.features,
            "capacity": self.capacity,
            "delta": None
            if self.delta is None
            else {
                "count": round(self.delta.count_share, 4),
                "weight": round(self.delta.weight_share, 4),
            },
            "accepted": None
            if self.accepted is None
            else {"by": self.accepted.by, "reason": self.accepted.reason},
        }


def delta(new: dict[str, Any], old: FeatureFile) -> Delta:
    features = list(new.get("features", []))
    old_count = max(1, len(old.features))
    old_weight = sum(abs(f.weight) for f in old.features) or 1.0
    new_weight = sum(abs(float(f.get("weight", 0.0))) for f in features)
    return Delta(
        abs(len(features) - len(old.features)) / old_count,
        abs(new_weight - sum(abs(f.weight) for f in old.features)) / old_weight,
    )


def check(
    data: dict[str, Any],
    *,
    capacity: int,
    previous: FeatureFile | None,
    max_delta: float = DEFAULT_MAX_DELTA,
    accepted: Acceptance | None = None,
) -> tuple[FeatureFile, GuardReport]:
    """Run the guards on a feature file's data; GuardRefused lists every refusal."""
    problems: list[str] = []
    features = data.get("features", [])
    count = len(features) if isinstance(features, list) else 0
    if count > capacity:
        problems.append(
            f"capacity: {count} features, the fleet declares {capacity} slots; look for "
            "duplicated columns in the metadata query (is its database filter missing?)"
        )
    change: Delta | None = None
    if previous is not None:
        change = delta(data, previous)
        if change.largest() > max_delta and accepted is None:
            problems.append(
                f"delta: feature count changes by {change.count_share:.0%} and total weight "
                f"by {change.weight_share:.0%} against the last published file "
                f"{previous.version!r} (more than {max_delta:.0%}); if intended, accept it "
                "with --accept-delta --reason '...'"
            )
    problems += _schema(features)
    if problems:
        raise GuardRefused(problems)
    try:
        parsed = FeatureFile.model_validate(data)
    except ValidationError as exc:
        raise GuardRefused([f"schema: {e['msg']}" for e in exc.errors()]) from exc
    kept = accepted if change is not None and change.largest() > max_delta else None
    return parsed, GuardReport(count, capacity, change, kept)


def _schema(features: object) -> list[str]:
    if not isinstance(features, list):
        return ["schema: 'features' must be a list"]
    problems = []
    for i, feature in enumerate(features):
        if not isinstance(feature, dict):
            problems.append(f"schema: feature {i} is not a mapping")
            continue
        weight = feature.get("weight")
        if not isinstance(weight, int | float) or not math.isfinite(weight):
            problems.append(f"schema: feature {feature.get('name', i)!r} has weight {weight!r}")
    return problems
