"""Signature matches inside custom rules: combined with expressions, readable as `waf.hits`."""

from __future__ import annotations

from typing import Any

import pytest

from failsmall.engine import Decision, Engine, EngineBuildError, Request
from failsmall.managed.corpora import make_request
from failsmall.model import Bundle
from tests.engine.factory import ROUTED


def engine(rules: list[dict[str, Any]]) -> Engine:
    bundle = Bundle.model_validate(
        {
            **ROUTED,
            "rulesets": [{"id": "entry", "rules": rules}],
            "phases": {"http_request_firewall_custom": "entry"},
        }
    )
    return Engine.build(bundle)


def decide(built: Engine, request: Request) -> Decision:
    return built.evaluate(request, built.new_state(seed=0)).decision


SLEEP = {
    "targets": ["arg_values", "body_arg_values"],
    "transforms": ["url_decode_uni", "remove_comments"],
    "patterns": [r"\bsleep\s*\("],
}


def test_a_rule_with_a_match_and_an_expression_needs_both() -> None:
    built = engine(
        [
            {
                "id": "post-sleep",
                "expression": 'http.request.method == "POST"',
                "match": SLEEP,
                "action": {"type": "block"},
            }
        ]
    )
    form = (("Content-Type", "application/x-www-form-urlencoded"),)
    assert decide(built, make_request("POST", "/", form, b"q=sleep/**/(5)")) is Decision.BLOCK
    assert decide(built, make_request("GET", "/?q=sleep(5)", (), b"")) is Decision.ALLOW
    assert decide(built, make_request("POST", "/", form, b"q=asleep")) is Decision.ALLOW


def test_later_rules_read_signature_hits_from_cel() -> None:
    built = engine(
        [
            {"id": "sig-sleep", "match": SLEEP, "action": {"type": "log"}},
            {
                "id": "two-signals",
                "expression": '"sig-sleep" in waf.hits && http.request.uri.path == "/search"',
                "action": {"type": "block"},
            },
        ]
    )
    assert decide(built, make_request("GET", "/search?q=sleep(1)", (), b"")) is Decision.BLOCK
    assert decide(built, make_request("GET", "/other?q=sleep(1)", (), b"")) is Decision.ALLOW


def test_a_backtracking_pattern_fails_the_build_and_names_the_rule() -> None:
    with pytest.raises(EngineBuildError) as refused:
        engine(
            [
                {
                    "id": "catastrophic",
                    "match": {"targets": ["arg_values"], "patterns": [r"^(a+)+\1$"]},
                    "action": {"type": "block"},
                }
            ]
        )
    assert any("rule catastrophic pattern 1" in p for p in refused.value.problems)
