"""The functional core of the data plane: no sockets, no files, no clocks except those passed in."""

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
from failsmall.engine.routing import NoRouteError

__all__ = [
    "Acted",
    "BotScore",
    "Bypassed",
    "Decision",
    "Disabled",
    "Engine",
    "EngineBuildError",
    "EngineState",
    "Executed",
    "Matched",
    "ModuleErrored",
    "ModuleOutcome",
    "NoRouteError",
    "NotApplicable",
    "NotComputed",
    "NotMatched",
    "Passed",
    "Request",
    "RequestView",
    "RuleErrored",
    "RuleOutcome",
    "Scored",
    "Verdict",
    "walk_rules",
]
