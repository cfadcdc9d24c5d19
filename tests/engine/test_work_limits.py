"""Inspection bounded by counted work: the same verdict on every run, and a declared outcome,
never a silent stop, for a request past a limit (DESIGN.md invariant 8)."""

from __future__ import annotations

import gzip
import json
import random
from functools import cache
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from failsmall.engine import Acted, Decision, Engine, Passed, Request, RequestView, Verdict
from failsmall.engine.outcomes import verdict_to_dict
from failsmall.managed.measure import managed_bundle
from failsmall.model import Bundle, ModuleName
from failsmall.model.traffic import Limits

SQLI = "1' UNION SELECT username, password FROM users--"


@cache
def managed(**limits: Any) -> Engine:
    """The managed ruleset's engine with `limits`, sharing the compiled signatures of the one
    with default limits, as a node reuses them when only the limits change."""
    bundle = managed_bundle()
    if limits:
        bundle = bundle.model_copy(update={"limits": Limits(**limits)})
    return Engine.build(
        Bundle.model_validate(bundle.model_dump()), reuse=managed() if limits else None
    )


def post(body: bytes, content_type: str, headers: tuple[tuple[str, str], ...] = ()) -> Request:
    return Request(
        "POST",
        "/submit",
        headers=(("Host", "shop.example"), ("Content-Type", content_type), *headers),
        body=body,
        host="shop.example",
    )


def form(fields: int, payload_at: int) -> bytes:
    parts = [f"field{i}=value{i}" for i in range(fields)]
    parts.insert(payload_at, "q=" + SQLI.replace(" ", "+").replace("'", "%27"))
    return "&".join(parts).encode()


def beacon(size: int, payload: str | None) -> bytes:
    """A telemetry beacon about `size` bytes, JSON in string values, `payload` in its middle."""
    rng = random.Random(size)
    events: list[dict[str, object]] = []
    while len(json.dumps(events)) < size:
        inner = {"url": f"/app/{rng.randrange(10**6)}", "perf": {"lcp": rng.randrange(4000)}}
        events.append({"id": len(events), "type": "timing", "data": json.dumps(inner)})
    if payload is not None:
        events[len(events) // 2]["data"] = json.dumps({"search": payload})
    return json.dumps(events).encode()


def waf(verdict: Verdict) -> object:
    return verdict.modules[list(ModuleName).index(ModuleName.WAF)]


def test_sqli_behind_3000_distinct_form_fields_is_blocked() -> None:
    engine = managed()
    for position in (0, 1500, 3000):
        body = form(3000, position)
        verdict = engine.evaluate(
            post(body, "application/x-www-form-urlencoded"), engine.new_state()
        )
        assert verdict.decision is Decision.BLOCK, position
        assert not verdict.errored


def test_sqli_in_a_100_kb_json_beacon_is_blocked_as_json_and_as_text() -> None:
    engine = managed()
    body = beacon(100_000, SQLI)
    assert 100_000 <= len(body) <= engine.limits.waf_body_buffer
    for content_type in ("application/json", "text/plain;charset=UTF-8"):
        verdict = engine.evaluate(post(body, content_type), engine.new_state())
        assert verdict.decision is Decision.BLOCK, content_type
    clean = engine.evaluate(post(beacon(100_000, None), "application/json"), engine.new_state())
    assert clean.decision is Decision.ALLOW and not clean.over_limits


def test_past_a_limit_the_declared_action_applies_and_names_the_limit() -> None:
    body = form(600, 550)  # the payload sits after the first 500 fields
    request = post(body, "application/x-www-form-urlencoded")
    for action, decision in (
        ("block", Decision.BLOCK),
        ("challenge", Decision.CHALLENGE),
        ("inspect_partial", Decision.ALLOW),
    ):
        engine = managed(waf_max_values=500, waf_over_limit=action)
        verdict = engine.evaluate(request, engine.new_state())
        assert verdict.decision is decision, action
        assert [r.limit for r in verdict.over_limits] == ["waf_max_values"] * len(
            verdict.over_limits
        )
        assert verdict.over_limits, action
        outcome = waf(verdict)
        if action == "inspect_partial":
            assert outcome == Passed(ModuleName.WAF, "over limit waf_max_values: inspected in part")
        else:
            assert isinstance(outcome, Acted) and outcome.detail == "over limit waf_max_values"
        assert verdict_to_dict(verdict)["over_limits"][0]["limit"] == "waf_max_values"  # type: ignore[index]


def test_a_rule_block_wins_over_an_over_limit_challenge() -> None:
    engine = managed(waf_max_values=500, waf_over_limit="challenge")
    verdict = engine.evaluate(
        post(form(600, 10), "application/x-www-form-urlencoded"), engine.new_state()
    )
    assert verdict.decision is Decision.BLOCK and verdict.over_limits


def test_the_transformed_characters_limit_is_counted_and_named() -> None:
    engine = managed(waf_max_transformed_chars=64 * 1024)
    body = beacon(100_000, None)
    verdict = engine.evaluate(post(body, "text/plain"), engine.new_state())
    assert verdict.decision is Decision.BLOCK
    assert verdict.over_limits[0].limit == "waf_max_transformed_chars"


def test_100_oversized_requests_leave_the_waf_inspecting_the_next_attack() -> None:
    engine = managed(waf_max_values=500)
    state = engine.new_state()
    for i in range(100):
        body = form(700 + i, 0).replace(b"UNION", b"union-free")
        verdict = engine.evaluate(post(body, "application/x-www-form-urlencoded"), state)
        assert verdict.over_limits and verdict.decision is Decision.BLOCK
        assert not verdict.errored
    assert state.open_breakers() == []
    assert not state.module_errors
    attack = Request("GET", "/search", query="q=" + SQLI.replace(" ", "+"), host="shop.example")
    verdict = engine.evaluate(attack, state)
    assert verdict.decision is Decision.BLOCK and not verdict.over_limits
    assert isinstance(waf(verdict), Acted)
    ordinary = Request("GET", "/search", query="q=shoes", host="shop.example")
    assert engine.evaluate(ordinary, state).decision is Decision.ALLOW


BOMB = gzip.compress(b'{"q": "' + b"x" * 200_000 + b'"}')
"""A JSON body whose gzip decoding passes `waf_max_expansion` (100 times the body's size)."""


GZIP = (("Content-Encoding", "gzip"),)
GZIP_FORM = gzip.compress(form(5, 2), mtime=0)
"""A form body with an SQL injection, gzipped: harmless bytes read as they are, an attack read
through its Content-Encoding."""


def test_a_request_over_a_limit_sent_again_and_again_is_blocked_every_time() -> None:
    """An attacker repeats a request whose body decodes past a limit, with the WAF set to
    block over a limit: each time it is blocked for that limit, however many times it came
    before (the memo never answers for a request inspected in part)."""
    engine = managed(waf_over_limit="block")
    state = engine.new_state()
    request = post(BOMB, "application/json", (("Content-Encoding", "gzip"),))
    for sent in range(10):
        verdict = engine.evaluate(request, state)
        assert verdict.decision is Decision.BLOCK, sent
        assert [r.limit for r in verdict.over_limits] == ["waf_max_expansion"], sent


def test_a_request_remembered_under_one_bundles_limits_meets_the_next_bundles() -> None:
    """A bundle that changes only its limits keeps the scanner and its memo: a body
    remembered whole under the looser limits is inspected anew under the tighter ones, and
    meets them."""
    loose, tight = managed(), managed(waf_max_expansion=10, waf_over_limit="block")
    assert tight.waf.scanner is loose.waf.scanner
    text = json.dumps({"q": " ".join(f"w{i % 97}" for i in range(3000))}).encode()
    request = post(gzip.compress(text), "application/json", (("Content-Encoding", "gzip"),))
    assert 10 < len(text) / len(request.body) < 100  # within the default expansion, not 10
    state = loose.new_state()
    for _ in range(6):  # past the memo's second offer of the request, and its finding it
        verdict = loose.evaluate(request, state)
        assert verdict.decision is Decision.ALLOW and not verdict.over_limits
    verdict = tight.evaluate(request, tight.new_state())
    assert verdict.decision is Decision.BLOCK
    assert [r.limit for r in verdict.over_limits] == ["waf_max_expansion"]


def test_verdicts_do_not_depend_on_request_order_or_the_memo() -> None:
    engine = managed()
    requests = [
        post(form(50, 25), "application/x-www-form-urlencoded"),
        post(beacon(30_000, None), "application/json"),
        post(beacon(30_000, SQLI), "text/plain"),
        Request("GET", "/a", query="x=1&y=%3Cscript%3E", host="shop.example"),
        Request("GET", "/", headers=(("User-Agent", "sqlmap/1.7"),), host="shop.example"),
        post(form(3000, 3000), "application/x-www-form-urlencoded"),
        post(BOMB, "application/json", (("Content-Encoding", "gzip"),)),
        # bodies sent before with another head: what reading a body takes from the head (its
        # type, its codings) is read anew, the rest of the head changes nothing of its scan
        post(beacon(30_000, SQLI), "application/json"),
        post(GZIP_FORM, "application/x-www-form-urlencoded"),
        post(GZIP_FORM, "application/x-www-form-urlencoded", GZIP),
        post(GZIP_FORM, "application/x-www-form-urlencoded", (("Content-Encoding", "identity"),)),
        post(form(50, 25), "application/x-www-form-urlencoded", (("Cookie", "session=9f8e7d"),)),
        post(form(50, 25), "text/plain"),
        # the first bytes of a gzip stream: undecodable sent whole, an attack cut at the buffer
        post(GZIP_FORM[:-12], "application/x-www-form-urlencoded", GZIP),
        post(GZIP_FORM[:-12], "application/x-www-form-urlencoded", GZIP)._replace(
            body_truncated=True
        ),
    ]
    first = [verdict_to_dict(engine.evaluate(r, engine.new_state())) for r in requests]
    state = engine.new_state()
    for _ in range(6):  # past the memo's second offer of each request, and its finding them
        order = list(range(len(requests)))
        random.Random(len(first)).shuffle(order)
        again = {i: verdict_to_dict(engine.evaluate(requests[i], state)) for i in order}
        assert [again[i] for i in range(len(requests))] == first


# ---- counted work never exceeds the declared limits --------------------------------------

json_leaf = st.one_of(
    st.integers(-5, 5), st.booleans(), st.none(), st.text(max_size=12), st.just(SQLI)
)
json_documents = st.recursive(
    json_leaf,
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.dictionaries(st.text(min_size=1, max_size=6), children, max_size=6),
    ),
    max_leaves=60,
)


@st.composite
def bodies(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["json", "urlencoded", "multipart"]))
    if kind == "json":
        return "application/json", json.dumps(draw(json_documents)).encode()
    values = draw(st.lists(st.sampled_from(["a", "1", SQLI, "x y", "%41", ""]), max_size=80))
    if kind == "urlencoded":
        body = "&".join(f"f{i}={v}" for i, v in enumerate(values))
        return "application/x-www-form-urlencoded", body.encode()
    parts = b"".join(
        b'--b0undary\r\nContent-Disposition: form-data; name="f%d"\r\n\r\n%s\r\n' % (i, v.encode())
        for i, v in enumerate(values)
    )
    return "multipart/form-data; boundary=b0undary", parts + b"--b0undary--\r\n"


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=bodies(),
    max_values=st.integers(16, 120),
    max_chars=st.integers(64 * 1024, 70 * 1024),
    depth=st.integers(1, 6),
)
def test_counted_work_never_exceeds_the_declared_limits(
    body: tuple[str, bytes], max_values: int, max_chars: int, depth: int
) -> None:
    content_type, data = body
    engine = managed()
    limits = engine.limits.model_copy(
        update={
            "waf_max_values": max_values,
            "waf_max_transformed_chars": max_chars,
            "waf_max_body_depth": depth,
        }
    )
    view = RequestView(post(data, content_type), limits=limits)
    scanner = engine.waf.scanner
    assert scanner is not None
    result = scanner.inspect(view)
    assert result.values <= max_values
    assert result.chars <= max_chars
    assert len(view.body.fields) + len(view.body.filenames) <= max_values
    # A limit either was not needed, or is named: nothing stops silently.
    if result.reached is None and view.body.reached is None:
        full = scanner.inspect(RequestView(post(data, content_type), limits=engine.limits))
        assert full.hits == result.hits


def test_a_body_no_rule_reads_is_not_over_a_limit() -> None:
    bundle = managed_bundle()
    skip = {
        "id": "office",
        "rules": [
            {
                "id": "office-skips-managed",
                "expression": 'ip.src == "192.0.2.10"',
                "action": {"type": "skip", "phases": ["http_request_firewall_managed"]},
            }
        ],
    }
    data = bundle.model_dump()
    data["rulesets"].append(skip)
    data["phases"]["http_request_firewall_custom"] = "office"
    engine = Engine.build(Bundle.model_validate(data), reuse=managed())
    framing = post(b"--a\r\n\r\nx", "multipart/form-data; boundary=a; boundary=b")
    office = Request(
        framing.method,
        framing.path,
        headers=framing.headers,
        body=framing.body,
        client_ip="192.0.2.10",
        host=framing.host,
    )
    assert engine.evaluate(office, engine.new_state()).decision is Decision.ALLOW
    other = engine.evaluate(framing, engine.new_state())
    assert other.decision is Decision.BLOCK
    assert [r.limit for r in other.over_limits] == ["multipart_framing"]
