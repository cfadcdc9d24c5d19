"""Measuring the managed ruleset with the production engine: detection per family, false positives.

A request counts as blocked when the engine's verdict is `block`. The engine is the one nodes
run, built from a bundle whose managed phase executes `failsmall-managed` at a paranoia level,
with the module time budget raised out of the way (`MEASURE_LIMITS`): on a loaded machine a
budget overrun would decide verdicts, and the figures are about the rules.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from failsmall.engine import Decision, Engine, EngineState, Request
from failsmall.managed import MANAGED_RULESET_ID, managed_ruleset
from failsmall.managed.corpora import FAMILIES, CorpusCase, LabelledRequest
from failsmall.model.bundle import Bundle
from failsmall.model.rules import ExecuteAction, ExecuteOverrides, Phase, Rule, Ruleset
from failsmall.model.traffic import Limits, Origin, Route

ENTRY_RULESET_ID = "measure-managed-entry"
#: Limits of the measured bundle: the production defaults, with the time budget out of the way.
MEASURE_LIMITS = Limits(module_time_budget_us=10_000_000)
#: Where the measured bundle routes every request (the engine inspects routed requests only;
#: nothing here connects to it).
MEASURE_ORIGIN = Origin(id="measured-origin", url="http://127.0.0.1:9")


def managed_bundle(paranoia_level: int = 1, include_managed: bool = True) -> Bundle:
    """A bundle whose managed phase executes `failsmall-managed` at `paranoia_level`.

    With `include_managed=False` the entry ruleset is empty: the same pipeline with no
    signatures, the baseline inspection cost is measured against.
    """
    rules = []
    if include_managed:
        rules.append(
            Rule(
                id="execute-failsmall-managed",
                action=ExecuteAction(
                    ruleset=MANAGED_RULESET_ID,
                    overrides=ExecuteOverrides(paranoia_level=paranoia_level),
                ),
            )
        )
    entry = Ruleset(id=ENTRY_RULESET_ID, kind="custom", rules=rules)
    rulesets = [managed_ruleset(), entry] if include_managed else [entry]
    return Bundle(
        name=f"failsmall-managed-pl{paranoia_level}",
        rulesets=rulesets,
        phases={Phase.MANAGED: ENTRY_RULESET_ID},
        limits=MEASURE_LIMITS,
        origins=[MEASURE_ORIGIN],
        routes=[Route(origin=MEASURE_ORIGIN.id)],
    )


@dataclass(frozen=True, slots=True)
class Inspection:
    """One request through the engine: blocked or not, the rules that matched, and how long.

    `errored` says a module failed (raised) and its failure policy decided the verdict.
    """

    blocked: bool
    errored: bool
    matched_rules: tuple[str, ...]
    duration_ns: int


class Inspector:
    """Runs requests through one engine and its state, timing each evaluation."""

    def __init__(self, engine: Engine, clock: Callable[[], int] = time.perf_counter_ns) -> None:
        self.engine = engine
        self.state: EngineState = engine.new_state(seed=0)
        self._clock = clock

    def inspect(self, request: Request) -> Inspection:
        started = self._clock()
        verdict = self.engine.evaluate(request, self.state)
        elapsed = self._clock() - started
        return Inspection(
            verdict.decision is Decision.BLOCK, verdict.errored, verdict.matched_rules, elapsed
        )


@dataclass
class FamilyResult:
    """Detection of one attack family: CRS paranoia-1 tests that expect a detection."""

    family: str
    name: str
    tests: int = 0
    blocked: int = 0
    errored: int = 0
    missed: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.blocked / self.tests if self.tests else 0.0


@dataclass
class BenignResult:
    """False positives on the benign corpus."""

    requests: int = 0
    blocked: int = 0
    errored: int = 0
    blocked_by_rule: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.blocked / self.requests if self.requests else 0.0


def attack_cases(cases: Iterable[CorpusCase], paranoia_level: int = 1) -> list[CorpusCase]:
    """The cases of CRS rules at `paranoia_level` whose tests expect the rule to fire."""
    return [c for c in cases if c.paranoia_level == paranoia_level and c.expects_detection]


def measure_attacks(
    inspector: Inspector,
    cases: Iterable[CorpusCase],
    durations: list[int] | None = None,
    progress: Callable[[], None] | None = None,
) -> dict[str, FamilyResult]:
    """Per family, how many of `cases` the engine blocks."""
    results = {family: FamilyResult(family, name) for family, name in FAMILIES.items()}
    for case in cases:
        inspection = inspector.inspect(case.request)
        result = results[case.family]
        result.tests += 1
        if inspection.blocked:
            result.blocked += 1
        else:
            result.missed.append(case.name)
        if inspection.errored:
            result.errored += 1
        if durations is not None:
            durations.append(inspection.duration_ns)
        if progress is not None:
            progress()
    return results


def measure_benign(
    inspector: Inspector,
    requests: Iterable[Request],
    durations: list[int] | None = None,
    progress: Callable[[], None] | None = None,
) -> BenignResult:
    """How many benign requests the engine blocks, and which rules matched them."""
    result = BenignResult()
    for request in requests:
        inspection = inspector.inspect(request)
        result.requests += 1
        if inspection.errored:
            result.errored += 1
        if inspection.blocked:
            result.blocked += 1
            for rule_id in inspection.matched_rules:
                result.blocked_by_rule[rule_id] = result.blocked_by_rule.get(rule_id, 0) + 1
        if durations is not None:
            durations.append(inspection.duration_ns)
        if progress is not None:
            progress()
    return result


def rule_families(ruleset: Ruleset | None = None) -> dict[str, tuple[str, ...]]:
    """Rule id -> the families it is tagged with (`family:<name>`), for the managed ruleset."""
    rules = (ruleset or managed_ruleset()).rules
    return {
        rule.id: tuple(t.removeprefix("family:") for t in rule.tags if t.startswith("family:"))
        for rule in rules
    }


@dataclass
class LabelledResult:
    """Detection and false positives on a labelled corpus (attacks and legitimate requests).

    `*_by_rule` count the requests each managed rule matched among those blocked; `*_by_family`
    the requests some rule of the family matched (a request may count in several families).
    """

    attacks: int = 0
    detected: int = 0
    legitimate: int = 0
    blocked: int = 0
    errored: int = 0
    detected_by_rule: dict[str, int] = field(default_factory=dict)
    blocked_by_rule: dict[str, int] = field(default_factory=dict)
    detected_by_family: dict[str, int] = field(default_factory=dict)
    blocked_by_family: dict[str, int] = field(default_factory=dict)
    missed: list[str] = field(default_factory=list)
    false_positives: list[str] = field(default_factory=list)

    @property
    def detection_rate(self) -> float:
        return self.detected / self.attacks if self.attacks else 0.0

    @property
    def false_positive_rate(self) -> float:
        return self.blocked / self.legitimate if self.legitimate else 0.0


def measure_labelled(
    inspector: Inspector,
    cases: Iterable[LabelledRequest],
    progress: Callable[[], None] | None = None,
) -> LabelledResult:
    """How many attacks the engine blocks and how many legitimate requests, by rule and family."""
    families = rule_families()
    result = LabelledResult()
    for case in cases:
        inspection = inspector.inspect(case.request)
        if inspection.errored:
            result.errored += 1
        if case.attack:
            result.attacks += 1
            by_rule, by_family = result.detected_by_rule, result.detected_by_family
            if inspection.blocked:
                result.detected += 1
            else:
                result.missed.append(case.name)
        else:
            result.legitimate += 1
            by_rule, by_family = result.blocked_by_rule, result.blocked_by_family
            if inspection.blocked:
                result.blocked += 1
                result.false_positives.append(case.name)
        if inspection.blocked:
            rules = [r for r in inspection.matched_rules if r in families]
            for rule_id in rules:
                by_rule[rule_id] = by_rule.get(rule_id, 0) + 1
            for family in {f for r in rules for f in families[r]}:
                by_family[family] = by_family.get(family, 0) + 1
        if progress is not None:
            progress()
    return result


def percentile(values: list[int], fraction: float) -> float:
    """The `fraction` quantile of `values` (nearest rank); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return float(ordered[index])
