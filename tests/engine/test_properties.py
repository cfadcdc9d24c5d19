"""Invariants 1 and 2 as properties: for random bundles (execute graphs, overrides, killswitches
on every action type, expiries) and random requests, the pipeline never raises and every
evaluated rule yields exactly one outcome."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from failsmall.engine import (
    Disabled,
    Engine,
    Executed,
    Matched,
    NotApplicable,
    NotMatched,
    RuleErrored,
    RuleOutcome,
)
from failsmall.engine.outcomes import verdict_to_dict
from failsmall.model import Bundle
from tests.engine.factory import request

EXPRESSIONS = [
    "true",
    "false",
    'http.request.uri.path.startsWith("/a")',
    # Conditions on the path, which rules are indexed by (`failsmall.engine.path_index`).
    'http.request.uri.path == "/a/b" && http.request.method == "GET"',
    'bot.score < 50 && http.request.uri.path in ["/", "/ab"]',
    'http.request.uri.path.startsWith("/ab") || http.request.uri.path == "/"',
    '"q" in http.request.uri.args && http.request.uri.path.startsWith("/a/")',
    '"q" in http.request.uri.args',
    'http.request.headers["x-missing"][0] == "1"',  # errors at run time
    "bot.score < 30",
    "http.request.body.truncated",
    'http.request.method == "POST" && size(http.request.body.raw) > 10',
    'ip_in_cidr(ip.src, "10.0.0.0/8")',
    'http.request.uri.args["q"][0]',  # a string when q is present: not a bool, an error
]
STATES = ["active", "log_only", "disabled"]


@st.composite
def actions(draw: st.DrawFn, index: int, n_rulesets: int) -> dict[str, Any]:
    kinds = ["block", "challenge", "log", "skip", "score"]
    if index + 1 < n_rulesets:
        kinds.append("execute")
    kind = draw(st.sampled_from(kinds))
    match kind:
        case "block":
            return {"type": "block", "status": draw(st.sampled_from([403, 429, 451]))}
        case "skip":
            return {"type": "skip", "rest_of_ruleset": True}
        case "score":
            return {"type": "score", "points": draw(st.integers(0, 6))}
        case "execute":
            target = draw(st.integers(index + 1, n_rulesets - 1))
            overrides: dict[str, Any] = {}
            if draw(st.booleans()):
                overrides["ruleset"] = {"state": draw(st.sampled_from(STATES))}
            if draw(st.booleans()):
                overrides["tags"] = {"t": {"state": draw(st.sampled_from(STATES))}}
            return {"type": "execute", "ruleset": f"rs{target}", "overrides": overrides}
        case _:
            return {"type": kind}


@st.composite
def bundles(draw: st.DrawFn) -> Bundle:
    n = draw(st.integers(1, 4))
    rulesets = []
    rule_ids = []
    for i in range(n):
        rules = []
        for j in range(draw(st.integers(0, 5))):
            rid = f"r{i}_{j}"
            rule_ids.append(rid)
            rules.append(
                {
                    "id": rid,
                    "expression": draw(st.sampled_from(EXPRESSIONS)),
                    "action": draw(actions(i, n)),
                    "state": draw(st.sampled_from(STATES)),
                    "tags": draw(st.sampled_from([[], ["t"], ["t", "paranoia:2"]])),
                }
            )
        rulesets.append(
            {
                "id": f"rs{i}",
                "kind": draw(st.sampled_from(["custom", "managed"])),
                "rules": rules,
                "score_threshold": draw(st.integers(1, 10)),
            }
        )
    overrides = []
    for rid in draw(st.lists(st.sampled_from(rule_ids), unique=True)) if rule_ids else []:
        override = {
            "rule": rid,
            "state": draw(st.sampled_from(STATES)),
            "reason": "drill",
            "author": "prop",
        }
        if draw(st.booleans()):
            override["expires_at"] = draw(
                st.sampled_from(["2020-01-01T00:00:00Z", "2099-01-01T00:00:00Z"])
            )
        overrides.append(override)
    return Bundle.model_validate(
        {
            "rulesets": rulesets,
            "phases": {"http_request_firewall_custom": "rs0"},
            "overrides": overrides,
            "bot": {
                "enabled": draw(st.booleans()),
                "feature_file": {
                    "features": [
                        {"name": "curl", "kind": "user_agent_class", "param": "curl", "weight": -40}
                    ]
                },
            },
            "limits": {"waf_body_buffer": 1024 * 1024},
        }
    )


requests = st.builds(
    lambda path, query, body, ua, method: request(
        path, query=query, body=body, method=method, headers={"Host": "h", "User-Agent": ua}
    ),
    st.sampled_from(["/", "/a", "/a/b", "/ab", "/abc/d", "/x%00y", "/..%2f"]),
    st.sampled_from(["", "q=1", "q=%27or%201=1", "a=1&a=2"]),
    st.sampled_from([b"", b"x" * 20, b"\xff\xfe", b"y" * (1024 * 1024)]),
    st.sampled_from(["curl/8", "Mozilla/5.0 (X11) Chrome/1 Safari/1", ""]),
    st.sampled_from(["GET", "POST"]),
)


def check_one_outcome_each(
    outcomes: tuple[RuleOutcome, ...], ruleset_rules: dict[str, list[str]], ruleset: str
) -> None:
    ids = [o.rule_id for o in outcomes]
    assert len(ids) == len(set(ids)), f"a rule yielded more than one outcome: {ids}"
    order = ruleset_rules[ruleset]
    assert ids == [r for r in order if r in ids], "outcomes out of rule order"
    for o in outcomes:
        match o:
            case Executed(ruleset=child, results=results):
                check_one_outcome_each(results, ruleset_rules, child)
            case Matched() | NotMatched() | Disabled() | NotApplicable() | RuleErrored():
                pass


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bundles(), st.lists(requests, min_size=1, max_size=4))
def test_pipeline_never_raises_and_each_rule_yields_one_outcome(
    bundle: Bundle, reqs: list[Any]
) -> None:
    engine = Engine.build(bundle)
    state = engine.new_state(seed=0)
    ruleset_rules = {rs.id: [r.id for r in rs.rules] for rs in bundle.rulesets}
    for req in reqs:
        verdict = engine.evaluate(req, state)
        check_one_outcome_each(verdict.rules, ruleset_rules, "rs0")
        verdict_to_dict(verdict)  # every outcome renders: matched exhaustively
        for o in verdict.rules:
            if isinstance(o, Disabled):
                assert not hasattr(o, "results")
