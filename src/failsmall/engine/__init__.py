"""The functional core of the data plane: no sockets, no files, no clocks except those passed in."""

from failsmall.engine.cache import CacheFill, NotStored, ResponsePlan
from failsmall.engine.outcomes import (
    Acted,
    BotScore,
    Bypassed,
    Decision,
    Disabled,
    Executed,
    Matched,
    ModuleErrored,
    ModuleOutcome,
    NotApplicable,
    NotComputed,
    NotMatched,
    Passed,
    RuleErrored,
    RuleOutcome,
    Scored,
    Verdict,
    walk_rules,
)
from failsmall.engine.pipeline import Engine, EngineBuildError, EngineState
from failsmall.engine.request import Request, RequestView
from failsmall.engine.routing import Route, Routed, Unrouted

__all__ = [
    "Acted",
    "BotScore",
    "Bypassed",
    "CacheFill",
    "Decision",
    "Disabled",
    "Engine",
    "EngineBuildError",
    "EngineState",
    "Executed",
    "Matched",
    "ModuleErrored",
    "ModuleOutcome",
    "NotApplicable",
    "NotComputed",
    "NotMatched",
    "NotStored",
    "Passed",
    "Request",
    "RequestView",
    "ResponsePlan",
    "Route",
    "Routed",
    "RuleErrored",
    "RuleOutcome",
    "Scored",
    "Unrouted",
    "Verdict",
    "walk_rules",
]
