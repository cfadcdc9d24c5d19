"""The shapes of the incidents failsmall is built against, as engine regressions."""

from __future__ import annotations

import pytest

from failsmall.engine import Decision, Disabled, Engine, EngineBuildError, walk_rules
from failsmall.model import Bundle, Capacities
from tests.engine.factory import ROUTED, request

MIB = 1024 * 1024


def test_2025_12_05_killswitch_on_execute_rule_with_1mib_bodies() -> None:
    """Killswitch an `execute` rule that runs a ruleset of test rules, with a 1 MiB buffer and
    large bodies: no errored outcome, no 500, the disabled rule carries no results."""
    bundle = Bundle.model_validate(
        {
            **ROUTED,
            "limits": {"waf_body_buffer": MIB},
            "rulesets": [
                {
                    "id": "entry",
                    "rules": [
                        {
                            "id": "run-test-rules",
                            "action": {"type": "execute", "ruleset": "test-rules"},
                        },
                        {
                            "id": "post",
                            "expression": "size(http.request.body.raw) > 0",
                            "action": {"type": "log"},
                        },
                    ],
                },
                {
                    "id": "test-rules",
                    "kind": "managed",
                    "rules": [
                        {
                            "id": "t1",
                            "expression": 'http.request.body.raw.contains("$$")',
                            "action": {"type": "score", "points": 5},
                        },
                    ],
                },
            ],
            "phases": {"http_request_firewall_custom": "entry"},
            "overrides": [
                {
                    "rule": "run-test-rules",
                    "state": "disabled",
                    "reason": "test tool cannot handle 1 MiB",
                    "author": "waf-team",
                }
            ],
        }
    )
    engine = Engine.build(bundle)
    state = engine.new_state()
    for size in (0, 1024, MIB):
        verdict = engine.evaluate(request(method="POST", body=b"a" * size), state)
        assert verdict.decision is Decision.ALLOW
        assert not verdict.errored
        disabled = [o for o in walk_rules(verdict.rules) if o.rule_id == "run-test-rules"]
        assert disabled == [Disabled("run-test-rules", "test tool cannot handle 1 MiB")]


def test_2025_11_18_feature_file_past_node_capacity_is_refused_not_a_crash() -> None:
    features = [
        {"name": f"feature_{i}", "kind": "header_present", "param": "x", "weight": 0.1}
        for i in range(120)
    ]
    bundle = Bundle.model_validate(
        {"bot": {"feature_file": {"features": features}}, "requires": {"bot_feature_slots": 400}}
    )
    with pytest.raises(EngineBuildError, match="120 features but the capacity is 60"):
        Engine.build(bundle, Capacities(bot_feature_slots=60))
    Engine.build(bundle, Capacities(bot_feature_slots=200))


def test_rebuild_reuses_signature_databases_only_when_patterns_are_unchanged() -> None:
    rule = {
        "id": "sig",
        "match": {"targets": ["arg_values"], "patterns": ["evil"]},
        "action": {"type": "block"},
    }
    first = Engine.build(
        Bundle.model_validate(
            {
                **ROUTED,
                "rulesets": [{"id": "e", "rules": [rule]}],
                "phases": {"http_request_firewall_custom": "e"},
            }
        )
    )
    killswitched = first.bundle.model_dump()
    killswitched["overrides"] = [
        {"rule": "sig", "state": "disabled", "reason": "fp", "author": "sre"}
    ]
    second = Engine.build(Bundle.model_validate(killswitched), reuse=first)
    assert second.waf.scanner is first.waf.scanner
    assert second.evaluate(request(query="q=evil"), second.new_state()).decision is Decision.ALLOW
    changed = first.bundle.model_dump()
    changed["rulesets"][0]["rules"][0]["match"]["patterns"] = ["other"]
    third = Engine.build(Bundle.model_validate(changed), reuse=first)
    assert third.waf.scanner is not first.waf.scanner
    assert third.evaluate(request(query="q=other"), third.new_state()).decision is Decision.BLOCK
