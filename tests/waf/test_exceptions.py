"""Rule exceptions: authored in the bundle, applied by the engine in their scope only, and
classified as logic changes."""

from __future__ import annotations

import functools
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from failsmall.engine import Decision, Engine, Request
from failsmall.managed.corpora import make_request
from failsmall.managed.measure import managed_bundle
from failsmall.model import Bundle
from failsmall.rollout.classify import ChangeClass, classify

SQLI = "1' UNION SELECT password FROM users--"


def bundle_with(*exceptions: dict[str, Any]) -> Bundle:
    data = managed_bundle(1).model_dump(mode="json")
    data["exceptions"] = [{"reason": "false positive", "author": "ops", **e} for e in exceptions]
    return Bundle.model_validate(data)


def search(value: str, path: str = "/search", host: str = "shop.example") -> Request:
    return make_request("GET", f"{path}?q={quote(value)}", (("Host", host),), b"")


_BASE: list[Engine] = []


def build(bundle: Bundle) -> Engine:
    """The engine of `bundle`, sharing the compiled signatures of the first one built."""
    engine = Engine.build(bundle, reuse=_BASE[0] if _BASE else None)
    if not _BASE:
        _BASE.append(engine)
    return engine


def decide(bundle: Bundle, request: Request) -> Decision:
    engine = build(bundle)
    return engine.evaluate(request, engine.new_state(seed=0)).decision


def test_without_exceptions_the_request_is_blocked() -> None:
    assert decide(bundle_with(), search(SQLI)) is Decision.BLOCK


def test_an_exception_by_tag_path_and_field_lets_the_request_through() -> None:
    bundle = bundle_with(
        {"id": "search-sql", "tags": ["family:sqli"], "paths": ["/search"], "fields": ["args.q"]}
    )
    assert decide(bundle, search(SQLI)) is Decision.ALLOW


@pytest.mark.parametrize(
    ("scope", "request_"),
    [
        ({"paths": ["/search"]}, search(SQLI, path="/login")),
        ({"paths": ["/api/*"]}, search(SQLI, path="/search")),
        ({"hosts": ["docs.example"]}, search(SQLI)),
        ({"hosts": ["*.example"]}, search(SQLI, host="example")),
        ({"methods": ["POST"]}, search(SQLI)),
        ({"fields": ["args.other"]}, search(SQLI)),
    ],
)
def test_out_of_scope_requests_are_still_blocked(scope: dict[str, Any], request_: Request) -> None:
    bundle = bundle_with({"id": "x", "tags": ["family:sqli"], **scope})
    assert decide(bundle, request_) is Decision.BLOCK


@pytest.mark.parametrize(
    "scope",
    [
        {"paths": ["/sea*"]},
        {"hosts": ["*.example"]},
        {"hosts": ["SHOP.example"]},
        {"methods": ["get"]},
        {"fields": ["args.*"]},
    ],
)
def test_in_scope_requests_pass(scope: dict[str, Any]) -> None:
    bundle = bundle_with({"id": "x", "tags": ["family:sqli"], **scope})
    request = search(SQLI, host="shop.example:8443") if "hosts" in scope else search(SQLI)
    assert decide(bundle, request) is Decision.ALLOW


def test_a_field_scoped_exception_does_not_forgive_the_same_rule_elsewhere() -> None:
    bundle = bundle_with({"id": "x", "tags": ["family:sqli"], "fields": ["args.q"]})
    request = make_request("GET", "/search?q=x", (("Referer", f"https://a.example/?{SQLI}"),), b"")
    assert decide(bundle, request) is Decision.BLOCK


def test_an_exception_for_one_rule_leaves_the_others() -> None:
    engine = build(bundle_with())
    verdict = engine.evaluate(search(SQLI), engine.new_state(seed=0))
    fired = [r for r in verdict.matched_rules if r.startswith("fsm-")]
    assert len(fired) >= 2  # so excepting one rule leaves another that blocks
    assert decide(bundle_with({"id": "x", "rules": [fired[0]]}), search(SQLI)) is Decision.BLOCK
    assert decide(bundle_with({"id": "x", "rules": fired}), search(SQLI)) is Decision.ALLOW


@pytest.mark.parametrize(
    ("exception", "message"),
    [
        ({"id": "x", "paths": ["/search"]}, "selects no rule"),
        ({"id": "x", "rules": ["fsm-nope-001"]}, "not a signature rule"),
        ({"id": "x", "rules": ["execute-failsmall-managed"]}, "not a signature rule"),
        ({"id": "x", "tags": ["family:nope"]}, "no signature rule carries"),
        ({"id": "x", "tags": ["family:sqli"], "paths": [""]}, "empty value"),
    ],
)
def test_bad_exceptions_are_refused_with_the_reason(
    exception: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        bundle_with(exception)


def test_duplicate_exception_ids_are_refused() -> None:
    with pytest.raises(ValidationError, match="duplicate exception id"):
        bundle_with({"id": "x", "rules": ["fsm-sqli-001"]}, {"id": "x", "rules": ["fsm-sqli-002"]})


def test_adding_widening_or_removing_an_exception_is_a_logic_change() -> None:
    before = bundle_with()
    added = bundle_with({"id": "x", "rules": ["fsm-sqli-001"], "paths": ["/a"]})
    widened = bundle_with({"id": "x", "rules": ["fsm-sqli-001"], "paths": ["/*"]})
    for old, new in ((before, added), (added, widened), (added, before)):
        assert classify(old, new).change_class is ChangeClass.LOGIC


def test_matching_fields_names_the_fields_a_rule_hit_and_never_their_values() -> None:
    from failsmall.engine import RequestView
    from failsmall.engine.signatures.fields import matching_fields

    engine = build(bundle_with())
    body = b'{"items": [{"note": "fine"}, {"note": "' + SQLI.encode() + b'"}]}'
    request = make_request(
        "POST",
        f"/api?q={quote(SQLI)}&page=2",
        (("Content-Type", "application/json"), ("Cookie", "theme=dark")),
        body,
    )
    verdict = engine.evaluate(request, engine.new_state(seed=0))
    assert engine.waf.scanner is not None
    fields = matching_fields(engine.waf.scanner, RequestView(request), verdict.matched_rules)
    assert fields
    named = {name for names in fields.values() for name in names}
    assert named == {"args.q", "body.items.1.note"}


PAYLOADS = [SQLI, "red shoes", "<script>alert(1)</script>", "../../etc/passwd", "1;cat /etc/x"]
EXCEPTIONS = [
    {"id": "x", "tags": ["family:sqli"]},
    {"id": "x", "tags": ["family:xss"], "paths": ["/search"]},
    {"id": "x", "rules": ["fsm-lfi-001", "fsm-lfi-002"], "fields": ["args.q"]},
    {"id": "x", "tags": ["family:rce"], "methods": ["POST"], "hosts": ["*.example"]},
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    exception=st.sampled_from(EXCEPTIONS),
    path=st.sampled_from(["/search", "/login", "/api/x"]),
    host=st.sampled_from(["shop.example", "example", "other.test"]),
    values=st.lists(st.sampled_from(PAYLOADS), min_size=1, max_size=3),
    names=st.lists(st.sampled_from(["q", "id", "page"]), min_size=3, max_size=3),
)
def test_an_exception_only_ever_lets_requests_through(
    exception: dict[str, Any], path: str, host: str, values: list[str], names: list[str]
) -> None:
    """Exceptions remove signature hits and nothing else: a request the bundle with an exception
    blocks is blocked without it, and the verdict is the same on every evaluation."""
    query = "&".join(f"{n}={quote(v)}" for n, v in zip(names, values, strict=False))
    request = make_request("GET", f"{path}?{query}", (("Host", host),), b"")
    plain, with_exception = engines(EXCEPTIONS.index(exception))
    decision = with_exception.evaluate(request, with_exception.new_state(seed=0)).decision
    assert decision is with_exception.evaluate(request, with_exception.new_state(seed=1)).decision
    if decision is Decision.BLOCK:
        assert plain.evaluate(request, plain.new_state(seed=0)).decision is Decision.BLOCK


@functools.cache
def engines(index: int) -> tuple[Engine, Engine]:
    """The engines without and with `EXCEPTIONS[index]`."""
    return build(bundle_with()), build(bundle_with(EXCEPTIONS[index]))
