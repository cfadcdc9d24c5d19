"""The pipeline: module order, bulkheads, failure policies, breakers, faults, limits, cache."""

from __future__ import annotations

import itertools
from typing import assert_never

from failsmall.engine import (
    Acted,
    Bypassed,
    CacheFill,
    Decision,
    Engine,
    ModuleErrored,
    NotComputed,
    NotStored,
    Passed,
    Routed,
    Scored,
    Unrouted,
    Verdict,
)
from failsmall.engine.bulkhead import BreakerState
from failsmall.engine.cache import CacheBypass, CacheHit, CacheMiss
from failsmall.model import ModuleName
from tests.engine.factory import bundle, request, waf_bundle

FEATURES = {
    "features": [
        {"name": "ua-curl", "kind": "user_agent_class", "param": "curl", "weight": -50},
        {"name": "lang", "kind": "header_present", "param": "accept-language", "weight": 10},
    ]
}


def store(
    engine: Engine,
    verdict: Verdict,
    status: int,
    headers: list[tuple[bytes, bytes]],
    body: bytes = b"x",
) -> bool:
    """The response phase as the node runs it: head, body in two pieces, end."""
    plan = engine.on_response(verdict, status, headers)
    match plan:
        case CacheFill():
            plan.add(body[:1])
            plan.add(body[1:])
            return plan.commit()
        case NotStored():
            return False
        case _:
            assert_never(plan)


def test_modules_run_in_order_and_all_pass() -> None:
    engine = Engine.build(bundle(bot={"feature_file": FEATURES}))
    v = engine.evaluate(request(), engine.new_state())
    assert [m.module for m in v.modules] == list(ModuleName)
    assert all(isinstance(m, Passed) for m in v.modules)
    assert v.bot == Scored(80)


def test_bot_score_for_curl_and_not_computed_when_off() -> None:
    engine = Engine.build(bundle(bot={"feature_file": FEATURES}))
    v = engine.evaluate(request(headers={"User-Agent": "curl/8.5"}), engine.new_state())
    assert v.bot == Scored(20)
    engine = Engine.build(bundle(bot={"enabled": False, "feature_file": FEATURES}))
    assert isinstance(engine.evaluate(request(), engine.new_state()).bot, NotComputed)


def test_module_exception_is_contained_and_policy_applied() -> None:
    failing_limit = [
        {
            "id": "rl",
            "expression": 'http.request.headers["x"][0] == "1"',
            "requests": 1,
            "period_s": 1,
        }
    ]
    engine = Engine.build(bundle(rate_limits=failing_limit))
    v = engine.evaluate(request(), engine.new_state())
    errored = v.modules[1]
    assert isinstance(errored, ModuleErrored) and errored.module is ModuleName.RATELIMIT
    assert v.decision is Decision.ALLOW  # fail_open
    closed = bundle(
        rate_limits=failing_limit, modules={"ratelimit": {"failure_policy": "fail_closed"}}
    )
    engine = Engine.build(closed)
    v = engine.evaluate(request(), engine.new_state())
    assert (v.decision, v.status) == (Decision.ERROR, 503)


def test_a_module_past_the_watchdog_budget_keeps_its_verdict_and_never_trips_the_breaker() -> None:
    b = bundle(
        modules={"bot": {"breaker_failures": 3, "breaker_cooldown_s": 30}},
        bot={"feature_file": FEATURES},
    )
    engine = Engine.build(b)
    state = engine.new_state()
    ticks = itertools.count()
    state.clock = lambda: float(next(ticks))  # every module appears to take one second
    verdicts = [engine.evaluate(request(now=100.0 + i), state) for i in range(10)]
    assert all(v.modules[2] == Passed(ModuleName.BOT, "score 80") for v in verdicts)
    assert all(v.bot == Scored(80) and not v.errored for v in verdicts)
    assert ModuleName.BOT not in state.breakers or (
        state.breakers[ModuleName.BOT].state is BreakerState.CLOSED
    )
    assert state.module_overruns[ModuleName.BOT] == 10
    assert not state.module_errors
    reports = state.errors.drain()
    assert reports and "watchdog" in reports[0].error and "verdict is kept" in reports[0].error


FAILING_LIMIT = [
    {"id": "rl", "expression": 'http.request.headers["x"][0] == "1"', "requests": 1, "period_s": 1}
]


def test_failures_open_the_breaker_loudly_and_while_open_decides() -> None:
    b = bundle(
        rate_limits=FAILING_LIMIT,
        modules={
            "ratelimit": {
                "breaker_failures": 3,
                "breaker_cooldown_s": 30,
                "failure_policy": "fail_open",
                "while_open": "fail_closed",
            }
        },
    )
    engine = Engine.build(b)
    state = engine.new_state()
    verdicts = [engine.evaluate(request(now=100.0 + i), state) for i in range(5)]
    assert [v.decision for v in verdicts] == [Decision.ALLOW] * 3 + [Decision.ERROR] * 2
    assert verdicts[3].status == 503
    opened = verdicts[3].modules[1]
    assert isinstance(opened, ModuleErrored) and opened.error == "circuit breaker open"
    assert state.breakers[ModuleName.RATELIMIT].state is BreakerState.OPEN
    assert state.open_breakers() == [(ModuleName.RATELIMIT, state.breakers[ModuleName.RATELIMIT])]
    assert state.module_errors[ModuleName.RATELIMIT] == 3
    reports = [r.error for r in state.errors.drain()]
    assert any("circuit breaker opened after 3 failures" in r and "503" in r for r in reports)
    # After the cooldown a request goes through again (half open).
    later = engine.evaluate(request(now=200.0), state)
    assert isinstance(later.modules[1], ModuleErrored) and later.decision is Decision.ALLOW


def test_the_waf_breaker_fails_closed_unless_the_bundle_says_otherwise() -> None:
    assert bundle().modules[ModuleName.WAF].while_open.value == "fail_closed"
    assert bundle().modules[ModuleName.BOT].while_open.value == "fail_open"
    tuned = bundle(modules={"waf": {"failure_policy": "fail_closed"}})
    assert tuned.modules[ModuleName.WAF].while_open.value == "fail_closed"
    relaxed = bundle(modules={"waf": {"while_open": "fail_open"}})
    assert relaxed.modules[ModuleName.WAF].while_open.value == "fail_open"


def test_a_breaker_report_gets_through_an_exhausted_error_budget() -> None:
    b = bundle(
        rate_limits=FAILING_LIMIT,
        modules={"ratelimit": {"breaker_failures": 50, "breaker_window_s": 1}},
    )
    engine = Engine.build(b)
    state = engine.new_state()
    for i in range(50):
        engine.evaluate(request(now=100.0 + i / 1000), state)
    reports = [r.error for r in state.errors.drain()]
    assert state.errors.dropped > 0
    assert any("circuit breaker opened" in r for r in reports)


def test_error_reports_are_budgeted() -> None:
    b = bundle(rate_limits=FAILING_LIMIT, modules={"ratelimit": {"breaker_failures": 10**6}})
    engine = Engine.build(b)
    state = engine.new_state()
    for i in range(1000):
        engine.evaluate(request(now=100.0 + i / 1000), state)
    reports = state.errors.drain()
    assert len(reports) <= state.errors.burst + 10
    assert state.errors.dropped >= 1000 - len(reports)


def test_fault_abort_percentage_is_seeded() -> None:
    engine = Engine.build(bundle(fault={"abort_percent": 50, "abort_status": 503}))
    state = engine.new_state(seed=7)
    verdicts = [engine.evaluate(request(), state) for _ in range(1000)]
    aborted = [v for v in verdicts if v.decision is Decision.ERROR]
    assert 400 < len(aborted) < 600
    assert all(v.status == 503 and isinstance(v.modules[0], Acted) for v in aborted)


def test_rate_limit_blocks_after_burst_and_refills() -> None:
    limit = [{"id": "rl", "requests": 2, "period_s": 1, "action": "block"}]
    engine = Engine.build(bundle(rate_limits=limit))
    state = engine.new_state()
    statuses = [engine.evaluate(request(now=10.0), state).status for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert engine.evaluate(request(now=11.0), state).status == 200
    assert engine.evaluate(request(ip="192.0.2.99", now=10.0), state).status == 200


def test_cache_stores_honours_headers_and_bypasses_authorization() -> None:
    engine = Engine.build(
        bundle(
            cache={
                "rules": [
                    {
                        "id": "nocache",
                        "expression": 'http.request.uri.path.startsWith("/account")',
                        "action": "bypass",
                    }
                ]
            }
        )
    )
    state = engine.new_state()
    req = request("/page", now=50.0)
    miss = engine.evaluate(req, state)
    assert isinstance(miss.cache, CacheMiss)
    assert store(engine, miss, 200, [(b"Cache-Control", b"max-age=60")], b"hi")
    hit = engine.evaluate(request("/page", now=60.0), state)
    assert isinstance(hit.cache, CacheHit) and hit.cache.response.body == b"hi"
    assert isinstance(engine.evaluate(request("/page", now=200.0), state).cache, CacheMiss)
    assert not state.cache.entries and state.cache.used_bytes == 0  # the expired one forgotten
    # never stored: Set-Cookie, no-store
    req2 = request("/c", now=50.0)
    v2 = engine.evaluate(req2, state)
    assert not store(engine, v2, 200, [(b"Set-Cookie", b"a=b"), (b"Cache-Control", b"max-age=60")])
    assert not store(engine, v2, 200, [(b"Cache-Control", b"no-store")])
    auth = request("/page", headers={"Host": "shop.example", "Authorization": "Bearer x"}, now=55.0)
    assert isinstance(engine.evaluate(auth, state).cache, CacheBypass)
    assert isinstance(engine.evaluate(request("/account/me"), state).cache, CacheBypass)


def test_vary_is_honoured() -> None:
    engine = Engine.build(bundle())
    state = engine.new_state()
    en = request("/v", headers={"Host": "h", "Accept-Language": "en"}, now=1.0)
    v = engine.evaluate(en, state)
    assert store(engine, v, 200, [(b"Cache-Control", b"max-age=60"), (b"Vary", b"Accept-Language")])
    de = request("/v", headers={"Host": "h", "Accept-Language": "de"}, now=2.0)
    assert isinstance(engine.evaluate(de, state).cache, CacheMiss)
    assert isinstance(engine.evaluate(en, state).cache, CacheHit)


def test_module_switched_off_is_bypassed() -> None:
    engine = Engine.build(
        waf_bundle([{"id": "b", "action": {"type": "block"}}], modules={"waf": {"enabled": False}})
    )
    v = engine.evaluate(request(), engine.new_state())
    assert isinstance(v.modules[3], Bypassed)
    assert v.decision is Decision.ALLOW


def test_a_bot_module_that_scores_nothing_is_settled_in_the_plan_as_if_it_ran() -> None:
    """A bot module with nothing to score is not run per request; its outcome and the score
    the request carries are what running it would give."""
    from failsmall.engine.pipeline import _Pass
    from failsmall.engine.request import RequestView

    for bot in ({"feature_file": {"features": []}}, {"enabled": False, "feature_file": FEATURES}):
        engine = Engine.build(bundle(bot=bot))
        step = engine.plan.steps[2]
        assert step.module is ModuleName.BOT and step.static is not None
        p = _Pass(RequestView(request()), 1.0)
        ran = engine._bot(p, engine.new_state())
        v = engine.evaluate(request(), engine.new_state())
        assert v.modules[2] == ran == step.static
        assert v.bot == p.bot == step.bot and isinstance(v.bot, NotComputed)
    scored = Engine.build(bundle(bot={"feature_file": FEATURES}))
    assert scored.plan.steps[2].static is None


def test_a_bundle_that_gives_no_module_work_settles_every_outcome_at_load() -> None:
    """With the cache off and nothing else configured no module runs per request: the verdict
    is the one running every module gives, and no response is kept."""
    engine = Engine.build(bundle(cache={"enabled": False}))
    assert engine.plan.runs == ()
    v = engine.evaluate(request(), engine.new_state())
    assert v.decision is Decision.ALLOW and v.status == 200
    assert [m.module for m in v.modules] == list(ModuleName)
    assert v.modules[-1] == Passed(ModuleName.CACHE, "bypass: cache is switched off")
    assert v.cache == CacheBypass("cache is switched off")
    assert isinstance(v.bot, NotComputed)
    assert not store(engine, v, 200, [(b"Cache-Control", b"max-age=60")])


def test_client_rates_are_measured_only_for_a_bot_module_that_reads_them() -> None:
    rate = {"name": "fast", "kind": "rate_over", "param": "1", "weight": -30}
    features = {"features": [rate]}
    reads = Engine.build(bundle(bot={"feature_file": features}))
    assert reads.plan.client_rates and reads.plan.steps[1].static is None
    for unread in (
        bundle(bot={"enabled": False, "feature_file": features}),
        bundle(bot={"feature_file": features}, modules={"bot": {"enabled": False}}),
    ):
        engine = Engine.build(unread)
        assert not engine.plan.client_rates
        assert engine.plan.steps[1].static == Passed(ModuleName.RATELIMIT)
    state = reads.new_state()
    scores = [reads.evaluate(request(now=1.0 + i / 100), state).bot for i in range(5)]
    assert scores[0] != scores[-1]  # the rate the ratelimit module measured was read


def test_routing_comes_first_and_an_unrouted_request_runs_no_module() -> None:
    engine = Engine.build(
        waf_bundle(
            [{"id": "b", "action": {"type": "block"}}],
            origins=[{"id": "api", "url": "http://127.0.0.1:9"}],
            routes=[{"host": "api.example", "origin": "api"}],
        )
    )
    state = engine.new_state()
    unrouted = engine.evaluate(request(), state)  # Host: shop.example
    assert unrouted.decision is Decision.UNROUTED and unrouted.status == 404
    assert unrouted.modules == () and unrouted.rules == ()
    assert isinstance(unrouted.route, Unrouted) and "shop.example" in unrouted.route.reason
    routed = engine.evaluate(request(headers={"Host": "API.example:8080"}), state)
    assert routed.decision is Decision.BLOCK and routed.matched_rules == ("b",)
    assert isinstance(routed.route, Routed) and routed.route.origin.id == "api"
    # A block still says where the request would have gone; so does an unrouted one why not.
    assert not store(engine, unrouted, 200, [(b"Cache-Control", b"max-age=60")])


def test_the_response_phase_says_why_a_response_is_not_stored() -> None:
    engine = Engine.build(bundle())
    state = engine.new_state()
    miss = engine.evaluate(request("/r", now=10.0), state)

    def reason(status: int, headers: list[tuple[bytes, bytes]]) -> str:
        plan = engine.on_response(miss, status, headers)
        assert isinstance(plan, NotStored)
        return plan.reason

    assert reason(500, []) == "status 500 is not cacheable"
    assert "cookie" in reason(200, [(b"SET-COOKIE", b"a=b"), (b"Cache-Control", b"max-age=9")])
    assert reason(200, [(b"cache-control", b"public, no-cache")]) == "Cache-Control: no-cache"
    assert "lifetime" in reason(200, [])  # no TTL in the bundle, none in the response
    assert reason(200, [(b"Cache-Control", b"max-age=9"), (b"Vary", b"*")]) == "Vary: *"
    head = engine.evaluate(request("/r", method="HEAD", now=10.0), state)
    assert isinstance(head.cache, CacheMiss)
    plan = engine.on_response(head, 200, [(b"Cache-Control", b"max-age=60")])
    assert isinstance(plan, NotStored) and "HEAD" in plan.reason
    bypass = engine.evaluate(request("/r", method="POST", now=10.0), state)
    assert isinstance(engine.on_response(bypass, 200, []), NotStored)


def test_a_response_body_over_max_object_bytes_is_let_go_and_not_stored() -> None:
    engine = Engine.build(bundle(cache={"max_object_bytes": 4}))
    state = engine.new_state()
    miss = engine.evaluate(request("/big", now=10.0), state)
    assert not store(engine, miss, 200, [(b"Cache-Control", b"max-age=60")], b"12345")
    assert isinstance(engine.evaluate(request("/big", now=11.0), state).cache, CacheMiss)
    assert store(engine, miss, 200, [(b"Cache-Control", b"max-age=60")], b"1234")
    hit = engine.evaluate(request("/big", now=11.0), state).cache
    assert isinstance(hit, CacheHit) and hit.response.body == b"1234"
    assert hit.response.headers == ((b"Cache-Control", b"max-age=60"),)


def test_a_state_shared_by_two_engines_runs_each_with_the_breakers_of_its_own_settings() -> None:
    """The breakers a state keeps for a plan are looked up again for another engine's plan:
    a breaker opened under one engine's settings does not decide for an engine whose settings
    differ, and the first engine finds its modules' breakers anew when it runs again."""
    tripping = Engine.build(
        bundle(
            rate_limits=FAILING_LIMIT,
            modules={"ratelimit": {"breaker_failures": 1, "while_open": "fail_closed"}},
        )
    )
    patient = Engine.build(
        bundle(rate_limits=FAILING_LIMIT, modules={"ratelimit": {"breaker_failures": 10**6}})
    )
    state = tripping.new_state()
    tripping.evaluate(request(now=100.0), state)  # fails once: its breaker opens
    assert state.breakers[ModuleName.RATELIMIT].state is BreakerState.OPEN
    assert tripping.evaluate(request(now=101.0), state).decision is Decision.ERROR
    assert state.planned.plan is tripping.plan
    for now in (102.0, 103.0):
        verdict = patient.evaluate(request(now=now), state)
        assert verdict.decision is Decision.ALLOW  # failed, fail_open, its breaker closed
        assert isinstance(verdict.modules[1], ModuleErrored)
        assert verdict.modules[1].error != "circuit breaker open"
    assert state.planned.plan is patient.plan
    assert state.planned.breakers[0] is state.breakers[ModuleName.RATELIMIT]
    patient_settings = patient.bundle.modules[ModuleName.RATELIMIT]
    assert state.breakers[ModuleName.RATELIMIT].settings is patient_settings
    # back to the first engine: a breaker of its settings, new and closed, fails once more
    again = tripping.evaluate(request(now=104.0), state)
    assert again.decision is Decision.ALLOW and isinstance(again.modules[1], ModuleErrored)
    tripping_settings = tripping.bundle.modules[ModuleName.RATELIMIT]
    assert state.breakers[ModuleName.RATELIMIT].settings is tripping_settings
    assert tripping.evaluate(request(now=105.0), state).decision is Decision.ERROR
