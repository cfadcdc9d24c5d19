"""Ruleset engine semantics: phases, actions, overrides, states and anomaly scoring."""

from __future__ import annotations

from typing import Any

from failsmall.engine import (
    Decision,
    Disabled,
    Engine,
    Executed,
    Matched,
    NotApplicable,
    NotMatched,
    RuleErrored,
    Verdict,
    walk_rules,
)
from tests.engine.factory import bundle, request, waf_bundle

BLOCK = {"type": "block", "status": 403}


def run(b: Any, req: Any = None) -> Verdict:
    engine = Engine.build(b)
    return engine.evaluate(req or request(), engine.new_state(seed=1))


def outcome(verdict: Verdict, rule_id: str) -> Any:
    found = [o for o in walk_rules(verdict.rules) if o.rule_id == rule_id]
    assert len(found) == 1, f"expected exactly one outcome for {rule_id}, got {found}"
    return found[0]


def test_block_terminates_and_later_rules_do_not_run() -> None:
    v = run(
        waf_bundle(
            [
                {"id": "b", "expression": 'http.request.uri.path == "/x"', "action": BLOCK},
                {"id": "after", "action": {"type": "log"}},
            ]
        ),
        request("/x"),
    )
    assert (v.decision, v.status) == (Decision.BLOCK, 403)
    assert v.matched_rules == ("b",)
    assert [o.rule_id for o in walk_rules(v.rules)] == ["b"]


def test_challenge_and_log_only() -> None:
    v = run(waf_bundle([{"id": "c", "action": {"type": "challenge"}}]))
    assert v.decision is Decision.CHALLENGE
    v = run(waf_bundle([{"id": "c", "action": {"type": "challenge"}, "state": "log_only"}]))
    assert v.decision is Decision.ALLOW
    assert outcome(v, "c") == Matched("c", "challenge", logged_only=True)


def test_disabled_execute_rule_carries_no_results() -> None:
    v = run(
        waf_bundle(
            [
                {
                    "id": "exec",
                    "action": {"type": "execute", "ruleset": "inner"},
                    "state": "disabled",
                }
            ],
            {"id": "inner", "rules": [{"id": "t1", "action": BLOCK}]},
        )
    )
    assert v.decision is Decision.ALLOW
    assert isinstance(outcome(v, "exec"), Disabled)
    assert [o.rule_id for o in walk_rules(v.rules)] == ["exec"]


def test_execute_overrides_precedence_rule_over_tag_over_ruleset() -> None:
    inner = {
        "id": "inner",
        "rules": [
            {"id": "a", "action": BLOCK, "tags": ["t"]},
            {"id": "b", "action": BLOCK, "tags": ["t"]},
        ],
    }
    execute = {
        "type": "execute",
        "ruleset": "inner",
        "overrides": {
            "ruleset": {"state": "disabled"},
            "tags": {"t": {"state": "log_only"}},
            "rules": {"b": {"state": "active"}},
        },
    }
    v = run(waf_bundle([{"id": "exec", "action": execute}], inner))
    assert outcome(v, "a") == Matched("a", "block", logged_only=True)
    assert outcome(v, "b") == Matched("b", "block", logged_only=False)
    assert v.decision is Decision.BLOCK


def test_killswitch_override_beats_execute_overrides_and_expires() -> None:
    inner = {"id": "inner", "rules": [{"id": "a", "action": BLOCK}]}
    execute = {
        "type": "execute",
        "ruleset": "inner",
        "overrides": {"rules": {"a": {"state": "active"}}},
    }
    ks = {
        "rule": "a",
        "state": "disabled",
        "reason": "false positives",
        "author": "sre",
        "expires_at": "2027-01-15T00:00:00Z",
    }
    b = waf_bundle([{"id": "exec", "action": execute}], inner, overrides=[ks])
    before = run(b, request(now=1_780_000_000.0))
    assert isinstance(outcome(before, "a"), Disabled)
    assert before.decision is Decision.ALLOW
    after = run(b, request(now=1_800_000_000.0))
    assert after.decision is Decision.BLOCK


def test_skip_rest_of_ruleset_phases_and_rulesets() -> None:
    managed = {"id": "m", "kind": "managed", "rules": [{"id": "m1", "action": BLOCK}]}
    b = bundle(
        rulesets=[
            {
                "id": "entry",
                "rules": [
                    {
                        "id": "skip",
                        "expression": 'http.request.uri.path == "/ok"',
                        "action": {
                            "type": "skip",
                            "phases": ["http_request_firewall_managed"],
                            "rest_of_ruleset": True,
                        },
                    },
                    {"id": "blk", "action": BLOCK},
                ],
            },
            managed,
        ],
        phases={"http_request_firewall_custom": "entry", "http_request_firewall_managed": "m"},
    )
    assert run(b, request("/ok")).decision is Decision.ALLOW
    assert run(b, request("/other")).decision is Decision.BLOCK


def test_anomaly_score_threshold_blocks_only_when_reached() -> None:
    managed = {
        "id": "m",
        "kind": "managed",
        "score_threshold": 5,
        "rules": [
            {
                "id": "s1",
                "expression": '"a" in http.request.uri.args',
                "action": {"type": "score", "points": 3},
            },
            {
                "id": "s2",
                "expression": '"b" in http.request.uri.args',
                "action": {"type": "score", "points": 3},
            },
            {"id": "pl2", "tags": ["paranoia:2"], "action": {"type": "score", "points": 10}},
        ],
    }
    b = waf_bundle([{"id": "exec", "action": {"type": "execute", "ruleset": "m"}}], managed)
    assert run(b, request(query="a=1")).decision is Decision.ALLOW
    v = run(b, request(query="a=1&b=2"))
    assert v.decision is Decision.BLOCK
    executed = outcome(v, "exec")
    assert isinstance(executed, Executed) and executed.score == 6 and executed.threshold_hit
    # paranoia level 2 rules only run when asked for
    assert all(o.rule_id != "pl2" for o in walk_rules(v.rules))


def test_bot_rule_not_applicable_without_score() -> None:
    b = waf_bundle(
        [{"id": "bots", "expression": "bot.score < 30", "action": BLOCK}], bot={"enabled": False}
    )
    v = run(b)
    assert v.decision is Decision.ALLOW
    assert isinstance(outcome(v, "bots"), NotApplicable)


def test_expression_runtime_error_is_an_errored_outcome() -> None:
    b = waf_bundle(
        [
            {
                "id": "bad",
                "expression": 'http.request.headers["x-missing"][0] == "1"',
                "action": BLOCK,
            },
            {"id": "next", "action": {"type": "log"}},
        ]
    )
    v = run(b)
    assert isinstance(outcome(v, "bad"), RuleErrored)
    assert isinstance(outcome(v, "next"), Matched)
    assert v.decision is Decision.ALLOW


def test_signatures_and_expression_both_required() -> None:
    rule = {
        "id": "sig",
        "match": {"targets": ["arg_values"], "patterns": ["union\\s+select"]},
        "expression": 'http.request.method == "GET"',
        "action": BLOCK,
    }
    b = waf_bundle([rule])
    assert run(b, request(query="q=1 UNION SELECT 2")).decision is Decision.BLOCK
    assert run(b, request(query="q=1 UNION SELECT 2", method="POST")).decision is Decision.ALLOW
    assert isinstance(outcome(run(b, request(query="q=hello")), "sig"), NotMatched)
