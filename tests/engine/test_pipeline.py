"""The pipeline: module order, bulkheads, failure policies, breakers, faults, limits, cache."""

from __future__ import annotations

import itertools

from failsmall.engine import (
    Acted,
    Bypassed,
    Decision,
    Engine,
    ModuleErrored,
    NotComputed,
    Passed,
    Scored,
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
    assert engine.cache_store(state, miss, 200, (("Cache-Control", "max-age=60"),), b"hi", req)
    hit = engine.evaluate(request("/page", now=60.0), state)
    assert isinstance(hit.cache, CacheHit) and hit.cache.response.body == b"hi"
    assert isinstance(engine.evaluate(request("/page", now=200.0), state).cache, CacheMiss)
    # never stored: Set-Cookie, no-store
    req2 = request("/c", now=50.0)
    v2 = engine.evaluate(req2, state)
    assert not engine.cache_store(
        state, v2, 200, (("Set-Cookie", "a=b"), ("Cache-Control", "max-age=60")), b"x", req2
    )
    assert not engine.cache_store(state, v2, 200, (("Cache-Control", "no-store"),), b"x", req2)
    auth = request("/page", headers={"Host": "shop.example", "Authorization": "Bearer x"}, now=55.0)
    assert isinstance(engine.evaluate(auth, state).cache, CacheBypass)
    assert isinstance(engine.evaluate(request("/account/me"), state).cache, CacheBypass)


def test_vary_is_honoured() -> None:
    engine = Engine.build(bundle())
    state = engine.new_state()
    en = request("/v", headers={"Host": "h", "Accept-Language": "en"}, now=1.0)
    v = engine.evaluate(en, state)
    engine.cache_store(
        state, v, 200, (("Cache-Control", "max-age=60"), ("Vary", "Accept-Language")), b"en", en
    )
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
        step = engine.plan[2]
        assert step.module is ModuleName.BOT and step.static is not None
        p = _Pass(RequestView(request()), 1.0)
        ran = engine._bot(p, engine.new_state())
        v = engine.evaluate(request(), engine.new_state())
        assert v.modules[2] == ran == step.static
        assert v.bot == p.bot == step.bot and isinstance(v.bot, NotComputed)
    scored = Engine.build(bundle(bot={"feature_file": FEATURES}))
    assert scored.plan[2].static is None
