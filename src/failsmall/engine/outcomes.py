"""Closed sets of outcomes: what a rule, a module and the whole pipeline can yield.

Consumers match these exhaustively (`match` + `assert_never`), so a state that carries no
results (a disabled `execute` rule) cannot be read as if it did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, NamedTuple, assert_never

from failsmall.engine.cache import CacheBypass, CacheDecision
from failsmall.engine.native import tuple_of
from failsmall.engine.routing import Route, Routed, Unrouted
from failsmall.engine.work import LimitReached
from failsmall.model.traffic import FailurePolicy, ModuleName


class Decision(StrEnum):
    """The verdict for a request. `error` is an edge-generated failure status (a fault
    injection abort or a fail-closed module); `unrouted`: the bundle routes the request to no
    origin, so no module ran for it."""

    ALLOW = "allow"
    BLOCK = "block"
    CHALLENGE = "challenge"
    ERROR = "error"
    UNROUTED = "unrouted"


# ---- rule outcomes -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Matched:
    """The rule matched and its action applies."""

    rule_id: str
    action: str
    logged_only: bool = False


@dataclass(frozen=True, slots=True)
class NotMatched:
    """The rule was evaluated and did not match."""

    rule_id: str


@dataclass(frozen=True, slots=True)
class Disabled:
    """The rule is disabled (killswitch); it was not evaluated and carries no results."""

    rule_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class NotApplicable:
    """The rule reads an input this request does not have (e.g. a bot score not computed)."""

    rule_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class RuleErrored:
    """Evaluating the rule failed; the WAF module's failure policy decides what follows."""

    rule_id: str
    error: str


@dataclass(frozen=True, slots=True)
class Executed:
    """An `execute` rule ran its target ruleset; `results` are that ruleset's outcomes."""

    rule_id: str
    ruleset: str
    results: tuple[RuleOutcome, ...]
    score: int
    threshold_hit: bool


RuleOutcome = Matched | NotMatched | Disabled | NotApplicable | RuleErrored | Executed


# ---- bot score -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scored:
    """A bot score from 1 (certainly a bot) to 99 (certainly a human), and the keys of the
    features that were present (what the node reports to analytics)."""

    score: int
    features: tuple[str, ...] = field(default=(), compare=False)


@dataclass(frozen=True, slots=True)
class NotComputed:
    """No score was computed; no rule may treat this request as a bot."""

    reason: str


BotScore = Scored | NotComputed


# ---- module outcomes -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Passed:
    """The module ran and lets the request continue."""

    module: ModuleName
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Acted:
    """The module ran and terminates the request (block, challenge, fault abort, cache hit)."""

    module: ModuleName
    decision: Decision
    status: int
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ModuleErrored:
    """The module failed (raised), or is skipped while its circuit breaker is open; `policy`
    (its `failure_policy`, or its `while_open`) was applied."""

    module: ModuleName
    error: str
    policy: FailurePolicy


@dataclass(frozen=True, slots=True)
class Bypassed:
    """The module did not run: switched off in the bundle, or its circuit breaker is open."""

    module: ModuleName
    reason: str


ModuleOutcome = Passed | Acted | ModuleErrored | Bypassed


# ---- the verdict ---------------------------------------------------------------------------


BOT_DID_NOT_RUN: Final = NotComputed("bot module did not run")
CACHE_DID_NOT_RUN: Final = CacheBypass("cache did not run")


class Verdict(NamedTuple):
    """What the engine decided for one request, and why: where it goes (`route`), what each
    module said, and (on a cache miss, in `cache`) the handle its response is stored with.

    A named tuple rather than a frozen dataclass: one is made per request, at a third the cost.
    """

    decision: Decision
    status: int
    route: Route
    modules: tuple[ModuleOutcome, ...]
    rules: tuple[RuleOutcome, ...] = ()
    matched_rules: tuple[str, ...] = ()
    bot: BotScore = BOT_DID_NOT_RUN
    delay_ms: int = 0
    cache: CacheDecision = CACHE_DID_NOT_RUN
    # The work limits the WAF's inspection of this request reached (see `failsmall.engine.work`).
    over_limits: tuple[LimitReached, ...] = ()

    @property
    def errored(self) -> bool:
        return any(isinstance(m, ModuleErrored) for m in self.modules) or any(
            isinstance(r, RuleErrored) for r in walk_rules(self.rules)
        )


#: Read from a C static where called for each request, not looked up in the module's globals
#: (what mypyc does for a name that is not `Final`).
_TUPLE_OF: Final = tuple_of
_VERDICT: Final = Verdict


def verdict_of(
    decision: Decision,
    status: int,
    route: Route,
    modules: tuple[ModuleOutcome, ...],
    rules: tuple[RuleOutcome, ...],
    matched_rules: tuple[str, ...],
    bot: BotScore,
    delay_ms: int,
    cache: CacheDecision,
    over_limits: tuple[LimitReached, ...],
) -> Verdict:
    """A `Verdict` of every field, in order, made by `tuple_of` (one C call) rather than by
    the NamedTuple's generated `__new__`, which runs interpreted: the engine makes one per
    request."""
    return _TUPLE_OF(
        _VERDICT, decision, status, route, modules, rules, matched_rules, bot, delay_ms, cache,
        over_limits,
    )  # fmt: skip


def walk_rules(outcomes: tuple[RuleOutcome, ...]) -> list[RuleOutcome]:
    """All rule outcomes, depth-first through executed rulesets."""
    out: list[RuleOutcome] = []
    for outcome in outcomes:
        out.append(outcome)
        if isinstance(outcome, Executed):
            out.extend(walk_rules(outcome.results))
    return out


def rule_to_dict(outcome: RuleOutcome) -> dict[str, object]:
    match outcome:
        case Matched(rule_id=rule_id, action=action, logged_only=logged_only):
            return {
                "rule": rule_id,
                "outcome": "matched",
                "action": action,
                "log_only": logged_only,
            }
        case NotMatched(rule_id=rule_id):
            return {"rule": rule_id, "outcome": "not_matched"}
        case Disabled(rule_id=rule_id, reason=reason):
            return {"rule": rule_id, "outcome": "disabled", "reason": reason}
        case NotApplicable(rule_id=rule_id, reason=reason):
            return {"rule": rule_id, "outcome": "not_applicable", "reason": reason}
        case RuleErrored(rule_id=rule_id, error=error):
            return {"rule": rule_id, "outcome": "errored", "error": error}
        case Executed(rule_id=rule_id, ruleset=ruleset, results=results, score=score):
            return {
                "rule": rule_id,
                "outcome": "executed",
                "ruleset": ruleset,
                "score": score,
                "threshold_hit": outcome.threshold_hit,
                "results": [rule_to_dict(r) for r in results],
            }
        case _:
            assert_never(outcome)


def module_to_dict(outcome: ModuleOutcome) -> dict[str, object]:
    match outcome:
        case Passed(module=module, detail=detail):
            return {"module": module.value, "outcome": "passed", "detail": detail}
        case Acted(module=module, decision=decision, status=status, detail=detail):
            return {
                "module": module.value,
                "outcome": "acted",
                "decision": decision.value,
                "status": status,
                "detail": detail,
            }
        case ModuleErrored(module=module, error=error, policy=policy):
            return {
                "module": module.value,
                "outcome": "errored",
                "error": error,
                "policy": policy.value,
            }
        case Bypassed(module=module, reason=reason):
            return {"module": module.value, "outcome": "bypassed", "reason": reason}
        case _:
            assert_never(outcome)


def bot_to_json(bot: BotScore) -> int | str:
    match bot:
        case Scored(score=score):
            return score
        case NotComputed():
            return "not_computed"
        case _:
            assert_never(bot)


def route_to_dict(route: Route) -> dict[str, str]:
    match route:
        case Routed(origin=origin):
            return {"origin": origin.id}
        case Unrouted(reason=reason):
            return {"unrouted": reason}
        case _:
            assert_never(route)


def verdict_to_dict(verdict: Verdict) -> dict[str, object]:
    return {
        "decision": verdict.decision.value,
        "status": verdict.status,
        "route": route_to_dict(verdict.route),
        "matched_rules": list(verdict.matched_rules),
        "bot_score": bot_to_json(verdict.bot),
        "modules": [module_to_dict(m) for m in verdict.modules],
        "rules": [rule_to_dict(r) for r in verdict.rules],
        "over_limits": [{"limit": r.limit, "detail": r.detail} for r in verdict.over_limits],
    }
