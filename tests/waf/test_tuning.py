"""How `failsmall tune` replays a known attack in an exception's scope, and reads logged blocks."""

from __future__ import annotations

import json

import pytest

from failsmall.build.corpus import CorpusError
from failsmall.managed.corpora import make_request
from failsmall.managed.tuning import in_scope, propose, read_logged_blocks
from failsmall.model.rules import RuleException

EXCEPTION = RuleException(
    id="x",
    reason="r",
    author="a",
    rules=["fsm-sqli-001"],
    hosts=["*.shop.example"],
    paths=["/search"],
    methods=["POST"],
    fields=["args.q", "body.comment", "body.items.*"],
)


def test_an_attack_is_moved_into_the_scope_and_into_each_excepted_parameter() -> None:
    attack = make_request(
        "GET",
        "/get?a=1%27+or+1%3D1&b=x",
        (("Host", "test.example"), ("Content-Type", "application/x-www-form-urlencoded")),
        b"c=%3Cscript%3E",
    )
    variants = in_scope(attack, EXCEPTION)
    first = variants[0]
    assert (first.method, first.path, first.host, first.query) == (
        "POST",
        "/search",
        "shop.example",
        attack.query,
    )
    assert ("Host", "shop.example") in first.headers
    moved = {(v.query, v.body) for v in variants[1:]}
    assert moved == {
        ("q=1%27+or+1%3D1", b""),
        ("q=x", b""),
        ("q=%3Cscript%3E", b""),
        ("", b"comment=1%27+or+1%3D1"),
        ("", b"comment=x"),
        ("", b"comment=%3Cscript%3E"),
    }


def test_logged_blocks_are_grouped_into_the_narrowest_exceptions() -> None:
    def line(path: str, fields: dict[str, list[str]], decision: str = "block") -> str:
        entry = {"decision": decision, "method": "get", "host": "Shop.Example:443", "path": path}
        return json.dumps({**entry, "fields": fields})

    lines = [
        line("/search", {"fsm-sqli-001": ["args.q"]}),
        line("/search", {"fsm-sqli-001": ["args.filter"]}),
        line("/search", {"fsm-sqli-001": ["args.q"]}, decision="allow"),
        line("/other", {"fsm-xss-001": ["body.html"], "fsm-xss-002": ["body.html"]}),
        "",
    ]
    proposals = propose(read_logged_blocks(lines, "log"), "ops", "fp")
    assert [(p.requests, p.exception.paths, p.exception.fields) for p in proposals] == [
        (2, ["/search"], ["args.filter", "args.q"]),
        (1, ["/other"], ["body.html"]),
    ]
    first = proposals[0].exception
    assert (first.hosts, first.methods, first.rules) == (
        ["shop.example"],
        ["GET"],
        ["fsm-sqli-001"],
    )
    assert proposals[1].exception.rules == ["fsm-xss-001", "fsm-xss-002"]
    assert proposals[0].exception.id != proposals[1].exception.id


def test_a_log_line_that_is_not_json_is_named() -> None:
    with pytest.raises(CorpusError, match=r"access\.log:2: not JSON"):
        list(read_logged_blocks(['{"decision": "allow"}', "garbage"], "access.log"))
