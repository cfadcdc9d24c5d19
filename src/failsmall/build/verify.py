"""`verify`: a corpus through the production engine, as authored and with every rule in every
state, reporting errored outcomes and how verdicts change.

This is the test harness that cannot drift from production: it builds the same `Engine` with the
bundle's own limits, so a 1 MiB body buffer is tested as a 1 MiB body buffer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from failsmall.build.corpus import BodyRejected, Expectation, within_buffer
from failsmall.engine import (
    Engine,
    EngineState,
    ModuleErrored,
    RuleErrored,
    Unrouted,
    Verdict,
    walk_rules,
)
from failsmall.engine.request import Request
from failsmall.model.bundle import Bundle
from failsmall.model.rules import Override, RuleState

VERIFY_AUTHOR = "failsmall verify"


@dataclass(frozen=True, slots=True)
class ErroredOutcome:
    """An errored outcome seen while verifying: in which variant, for which request."""

    variant: str
    request_index: int
    where: str
    error: str


@dataclass(frozen=True, slots=True)
class VariantResult:
    """One rule forced into one state, and how many verdicts changed against the authored run."""

    rule: str
    state: RuleState
    changed: int
    errored: int


@dataclass(frozen=True, slots=True)
class Mismatch:
    """A request whose authored verdict is not the one its corpus line expects."""

    request_index: int
    request: str
    expected: str
    got: str


@dataclass
class VerifyReport:
    """Everything `verify` found."""

    requests: int
    variants: int = 0
    errored: list[ErroredOutcome] = field(default_factory=list)
    results: list[VariantResult] = field(default_factory=list)
    authored: list[str] = field(default_factory=list)
    expectations: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errored and not self.mismatches


def _run(engine: Engine, requests: Sequence[Request]) -> list[Verdict | BodyRejected]:
    state: EngineState = engine.new_state(seed=0)
    out: list[Verdict | BodyRejected] = []
    for request in requests:
        seen = within_buffer(request, engine.limits)
        out.append(seen if isinstance(seen, BodyRejected) else engine.evaluate(seen, state))
    return out


def _summary(result: Verdict | BodyRejected) -> str:
    match result:
        case BodyRejected():
            return "reject:413"
        case Verdict(decision=decision, status=status):
            return f"{decision.value}:{status}"


def _errors(variant: str, results: list[Verdict | BodyRejected]) -> list[ErroredOutcome]:
    found: list[ErroredOutcome] = []
    for index, result in enumerate(results):
        if isinstance(result, BodyRejected):
            continue
        for module in result.modules:
            if isinstance(module, ModuleErrored):
                found.append(ErroredOutcome(variant, index, module.module.value, module.error))
        for outcome in walk_rules(result.rules):
            if isinstance(outcome, RuleErrored):
                found.append(ErroredOutcome(variant, index, outcome.rule_id, outcome.error))
    return found


def _unrouted(results: list[Verdict | BodyRejected]) -> list[ErroredOutcome]:
    """Requests the bundle routes nowhere: a node answers them 404 without inspecting them, so
    they verify nothing (a corpus for this bundle needs hosts and paths it routes)."""
    return [
        ErroredOutcome("authored", index, "route", result.route.reason)
        for index, result in enumerate(results)
        if isinstance(result, Verdict) and isinstance(result.route, Unrouted)
    ]


def _mismatches(
    requests: Sequence[Request],
    authored: list[Verdict | BodyRejected],
    expected: Sequence[Expectation | None],
) -> list[Mismatch]:
    found: list[Mismatch] = []
    for index, (request, result, expectation) in enumerate(
        zip(requests, authored, expected, strict=True)
    ):
        if expectation is None:
            continue
        match result:
            case BodyRejected():
                decision, status = "block", 413
            case Verdict(decision=verdict_decision, status=status):
                decision = verdict_decision.value
        if not expectation.met_by(decision, status):
            got = f"{decision}:{status}"
            found.append(Mismatch(index, f"{request.method} {request.uri}", str(expectation), got))
    return found


def verify_bundle(
    bundle: Bundle,
    requests: Sequence[Request],
    on_variant: Callable[[], None] = lambda: None,
    expected: Sequence[Expectation | None] = (),
) -> VerifyReport:
    """Run `requests` through the bundle as authored and with every rule in every state.

    `expected`, aligned with `requests` when given, holds the verdict each request's corpus
    line expects (or None): a request whose authored verdict differs is a mismatch, and the
    report is not ok. `on_variant` is called after each rule/state variant, for progress display.
    """
    if expected and len(expected) != len(requests):
        raise ValueError("expected verdicts must be aligned with the requests")
    engine = Engine.build(bundle)
    report = VerifyReport(requests=len(requests))
    authored = _run(engine, requests)
    report.authored = [_summary(r) for r in authored]
    if expected:
        report.expectations = sum(1 for e in expected if e is not None)
        report.mismatches = _mismatches(requests, authored, expected)
    report.errored.extend(_unrouted(authored))
    report.errored.extend(_errors("authored", authored))
    base = [o for o in bundle.overrides]
    rule_ids = [rule.id for rs in bundle.rulesets for rule in rs.rules]
    for rule_id in rule_ids:
        for state in RuleState:
            override = Override(
                rule=rule_id, state=state, reason="every rule in every state", author=VERIFY_AUTHOR
            )
            variant = engine.with_overrides([*(o for o in base if o.rule != rule_id), override])
            results = _run(variant, requests)
            errors = _errors(f"{rule_id}={state.value}", results)
            report.errored.extend(errors)
            changed = sum(
                1 for a, b in zip(report.authored, results, strict=True) if a != _summary(b)
            )
            report.results.append(VariantResult(rule_id, state, changed, len(errors)))
            report.variants += 1
            on_variant()
    return report
