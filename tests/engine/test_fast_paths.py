"""Each fast path of the engine against the slow path it stands for: same outcomes, always."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, assert_never

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from failsmall.build import load_config_dir
from failsmall.engine import Engine, Request
from failsmall.engine import cache as cache_module
from failsmall.engine.bot import BotScorer, _in_order, user_agent_class
from failsmall.engine.cache import CacheBypass, CacheFill, NotStored
from failsmall.engine.expr.addresses import AddressSet
from failsmall.engine.native import cache_headers
from failsmall.engine.outcomes import (
    BotScore,
    Decision,
    NotComputed,
    Passed,
    Scored,
    Verdict,
    verdict_of,
)
from failsmall.engine.path_index import PathIndex
from failsmall.engine.pipeline import _Plan, _stopping
from failsmall.engine.ratelimit import RateLimitHit, compile_rate_limits
from failsmall.engine.request import RequestView, request_of
from failsmall.engine.routing import Routed, Router, Unrouted
from failsmall.engine.signatures.scanner import ScanResult, scan_result_of
from failsmall.engine.waf import CompiledRuleset, Waf
from failsmall.model import Bundle, Limits
from failsmall.model.bot import BotConfig, FeatureKind
from failsmall.model.traffic import (
    CacheConfig,
    Capacities,
    FaultConfig,
    ModuleName,
    ModuleSettings,
    Origin,
    RateLimit,
    Route,
)
from tests.engine.factory import request, waf_bundle
from tests.engine.test_properties import EXPRESSIONS, STATES, bundles, requests

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "site"


# ---- the WAF evaluation loop ---------------------------------------------------------------


def reference(waf: Waf) -> Waf:
    """The same WAF with every shortcut of the evaluation loop taken out: no quiet walk, each
    rule goes through `_evaluate_rule`, one by one, and each execute rule builds its `Executed`
    anew."""
    return replace(waf, phases=tuple((phase, _plain(rs)) for phase, rs in waf.phases), walk=None)


def _plain(compiled: CompiledRuleset) -> CompiledRuleset:
    rules = tuple(
        replace(
            rule,
            child=_plain(rule.child) if rule.child is not None else None,
            signature_gated=False,
            direct=False,
            always=False,
            quiet=None,
        )
        for rule in compiled.rules
    )
    none = (None,) * len(rules)
    return replace(compiled, rules=rules, gated_runs=none, direct_runs=none)


def same_waf_results(waf: Waf, req: Request, bot_score: int | None) -> None:
    fast_view = RequestView(req, bot_score=bot_score)
    slow_view = RequestView(req, bot_score=bot_score)
    fast = waf.evaluate(fast_view, req.now)
    slow = reference(waf).evaluate(slow_view, req.now)
    assert fast == slow
    assert fast_view.signature_hits == slow_view.signature_hits


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bundles(), st.lists(requests, min_size=1, max_size=3), st.none() | st.integers(1, 99))
def test_waf_shortcuts_yield_what_rule_by_rule_evaluation_yields(
    bundle: Bundle, reqs: list[Request], bot_score: int | None
) -> None:
    waf = Engine.build(bundle).waf
    for req in reqs:
        same_waf_results(waf, req, bot_score)


SIGNATURES = [
    {"targets": ["arg_values"], "patterns": ["union\\s+select"]},
    {"targets": ["uri"], "transforms": ["url_decode"], "patterns": ["etc/passwd"]},
    {"targets": ["arg_values", "header_values"], "patterns": ["<script"]},
]


@st.composite
def signature_bundles(draw: st.DrawFn) -> Bundle:
    """An entry ruleset that executes a ruleset of signature rules (the shape of a managed
    phase), in every state, with killswitches, behind rules of every kind of expression."""
    entry = [
        {"id": f"e{j}", "expression": draw(st.sampled_from(EXPRESSIONS)), "action": {"type": "log"}}
        for j in range(draw(st.integers(0, 2)))
    ]
    entry.append(
        {
            "id": "run",
            "expression": draw(st.sampled_from(["true", "false", 'http.request.method == "GET"'])),
            "action": {"type": "execute", "ruleset": "sigs"},
            "state": draw(st.sampled_from(STATES)),
        }
    )
    sigs = [
        {
            "id": f"s{j}",
            "match": draw(st.sampled_from(SIGNATURES)),
            "action": draw(st.sampled_from([{"type": "score", "points": 3}, {"type": "block"}])),
            "state": draw(st.sampled_from(["active", "active", *STATES])),
        }
        for j in range(draw(st.integers(1, 3)))
    ]
    killed = draw(st.lists(st.sampled_from([r["id"] for r in entry + sigs]), unique=True))
    return Bundle.model_validate(
        {
            "rulesets": [
                {"id": "entry", "rules": entry},
                {
                    "id": "sigs",
                    "kind": draw(st.sampled_from(["custom", "managed"])),
                    "rules": sigs,
                    "score_threshold": draw(st.integers(1, 6)),
                },
            ],
            "phases": {"http_request_firewall_managed": "entry"},
            "overrides": [
                {"rule": rid, "state": draw(st.sampled_from(STATES)), "reason": "r", "author": "a"}
                for rid in killed
            ],
        }
    )


signature_requests = st.builds(
    lambda path, query: request(path, query=query),
    st.sampled_from(["/", "/a", "/etc/passwd", "/x/%2e%2e/etc/passwd"]),
    st.sampled_from(["", "q=1", "q=1%20union%20select%202", "q=%3Cscript%3E", "a=1&a=2"]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(signature_bundles(), st.lists(signature_requests, min_size=1, max_size=4))
def test_execute_shortcuts_yield_what_rule_by_rule_evaluation_yields(
    bundle: Bundle, reqs: list[Request]
) -> None:
    """An execute rule that always matches, and a ruleset of signature rules that all miss,
    are settled without evaluating them: the outcomes are those of evaluating them."""
    waf = Engine.build(bundle).waf
    for req in reqs:
        same_waf_results(waf, req, None)


@pytest.fixture(scope="module")
def example() -> Engine:
    return Engine.build(load_config_dir(EXAMPLE))


@pytest.mark.parametrize(
    ("path", "query", "ip"),
    [
        ("/products/42", "ref=home", "192.0.2.44"),  # benign: all signatures miss
        ("/products/42", "id=1%27%20union%20select%20password%20from%20users--", "192.0.2.44"),
        ("/download", "file=../../../../etc/passwd", "192.0.2.44"),
        ("/admin/users", "", "192.0.2.44"),  # a custom block
        ("/login", "", "192.0.2.44"),
        ("/", "", "203.0.113.9"),  # the office skips the managed phase
        ("/", "", "198.51.100.7"),  # known bad
        ("/", "", "2001:db8:10::1"),
        ("/", "", "not an address"),
    ],
)
@pytest.mark.parametrize("bot_score", [None, 2, 20, 90])
def test_example_bundle_waf_shortcuts(
    example: Engine, path: str, query: str, ip: str, bot_score: int | None
) -> None:
    same_waf_results(example.waf, request(path, query=query, ip=ip), bot_score)


def test_the_example_bundle_reduces_to_a_quiet_walk(example: Engine) -> None:
    """Its custom rules and the managed ruleset it executes: a benign GET is settled by the
    walk, whose result is that of rule-by-rule evaluation."""
    walk = example.waf.walk
    assert walk is not None
    req = request("/products/42", query="ref=home", ip="192.0.2.44")
    view = RequestView(req, bot_score=90)
    assert example.waf.evaluate(view, req.now) is walk.result
    assert walk.result == reference(example.waf).evaluate(RequestView(req, bot_score=90), req.now)


@pytest.mark.parametrize("over_limit", ["inspect_partial", "block", "challenge"])
@pytest.mark.parametrize("expression", ["size(http.request.body.raw) > 100", "false"])
def test_a_quiet_walk_counts_the_limits_of_a_body_a_rule_read(
    over_limit: str, expression: str
) -> None:
    """A body that does not decode reaches a limit; it counts only when a rule read the body."""
    rules = [{"id": "r", "expression": expression, "action": {"type": "log"}}]
    engine = Engine.build(
        waf_bundle(rules, limits={"waf_over_limit": over_limit}),  # type: ignore[arg-type]
    )
    assert engine.waf.walk is not None
    req = request(
        method="POST",
        headers={"Host": "h", "Content-Encoding": "gzip"},
        body=b"not gzip at all",
    )
    same_waf_results(engine.waf, req, None)
    over = engine.waf.evaluate(RequestView(req), req.now).over_limits
    assert bool(over) is (expression != "false")


def test_a_passing_module_never_stops_the_request() -> None:
    for module in ModuleName:
        assert _stopping(Passed(module)) is None
        assert _stopping(Passed(module, "detail")) is None


# ---- the pipeline's plan ---------------------------------------------------------------------


def every_module_run(engine: Engine) -> Engine:
    """The same engine with nothing settled at load: every module the bundle switches on runs
    for each request, inside its bulkhead, and every client's request rate is measured."""
    steps = tuple(
        replace(step, static=None, bot=None, cache=None) if step.settings.enabled else step
        for step in engine.plan.steps
    )
    return replace(engine, plan=_Plan.of(steps, client_rates=True))


PLAN_FEATURES = [
    [],
    [{"name": "curl", "kind": "user_agent_class", "param": "curl", "weight": -40}],
    [{"name": "fast", "kind": "rate_over", "param": "1", "weight": -30}],
]


@st.composite
def module_bundles(draw: st.DrawFn) -> Bundle:
    """Bundles in which each module is switched on or off, and has work to do or none; one
    route, which some requests miss."""
    base = draw(bundles())
    limits = [
        RateLimit(id="rl", requests=draw(st.integers(1, 3)), period_s=60, action=action)
        for action in draw(st.lists(st.sampled_from(["block", "log"]), max_size=1))
    ]
    return base.model_copy(
        update={
            "origins": [Origin(id="o", url="http://127.0.0.1:9")],
            "routes": [Route(path_prefix=draw(st.sampled_from(["/", "/a"])), origin="o")],
            "phases": base.phases if draw(st.booleans()) else {},
            "rate_limits": limits,
            "bot": BotConfig.model_validate(
                {
                    "enabled": draw(st.booleans()),
                    "feature_file": {"features": draw(st.sampled_from(PLAN_FEATURES))},
                }
            ),
            "cache": CacheConfig(
                enabled=draw(st.booleans()), default_ttl_s=draw(st.sampled_from([0, 60]))
            ),
            "fault": FaultConfig(
                abort_percent=draw(st.sampled_from([0.0, 50.0, 100.0])),
                delay_percent=draw(st.sampled_from([0.0, 50.0])),
                delay_ms=5,
            ),
            "modules": {
                module: ModuleSettings(enabled=draw(st.booleans())) for module in ModuleName
            },
        }
    )


def run_pipeline(engine: Engine, reqs: list[Request]) -> list[str]:
    """What each request (each sent twice, so the cache may serve the second) gets: its verdict
    and what becomes of an origin response that may be cached."""
    state = engine.new_state(seed=7)
    state.clock = lambda: 0.0  # no module is ever past its watchdog budget
    seen = []
    for req in reqs:
        for _ in range(2):
            verdict = engine.evaluate(req, state)
            plan = engine.on_response(verdict, 200, [(b"Cache-Control", b"max-age=60")])
            if isinstance(plan, CacheFill):
                plan.add(b"body")
                plan.commit()
            seen.append(f"{verdict!r} -> {plan if isinstance(plan, NotStored) else 'fill'}")
    return seen


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(module_bundles(), st.lists(requests, min_size=1, max_size=3))
def test_the_plan_settled_at_load_yields_what_running_every_module_yields(
    bundle: Bundle, reqs: list[Request]
) -> None:
    engine = Engine.build(bundle)
    reference = every_module_run(engine)
    assert len(engine.plan.runs) <= len(reference.plan.runs)
    assert run_pipeline(engine, reqs) == run_pipeline(reference, reqs)


# ---- bot scoring -----------------------------------------------------------------------------

FEATURE_KINDS = {
    "header_present": st.sampled_from(["accept", "accept-language", "x-a"]),
    "header_absent": st.sampled_from(["accept", "accept-language", "x-a"]),
    "header_order": st.sampled_from(["host,user-agent,accept", "accept,host", "x-a,x-a"]),
    "user_agent_class": st.sampled_from(["browser", "curl", "python", "empty", "other"]),
    "rate_over": st.sampled_from(["0", "0.5", "20", "100"]),
    "accept_wildcard": st.just(""),
}

whole_weights = st.integers(-100, 100).map(float)
any_weights = st.floats(-100, 100, allow_nan=False)


@st.composite
def feature_files(draw: st.DrawFn, weights: st.SearchStrategy[float]) -> dict[str, Any]:
    features = []
    for index in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(sorted(FEATURE_KINDS)))
        features.append(
            {
                "name": f"f{index}",
                "kind": kind,
                "param": draw(FEATURE_KINDS[kind]),
                "weight": draw(weights),
            }
        )
    base = draw(st.integers(1, 99).map(float) | st.floats(1, 99))
    return {"base_score": base, "features": features}


bot_requests = st.builds(
    lambda headers, ua: Request("GET", "/", headers=(*headers, ("User-Agent", ua))),
    st.lists(
        st.tuples(
            st.sampled_from(["Host", "Accept", "accept-language", "X-A", "Cookie"]),
            st.sampled_from(["*/*", " */* ", "text/html", ""]),
        ),
        max_size=6,
    ),
    st.sampled_from(["curl/8", "Mozilla/5.0 (X11) Chrome/1 Safari/1", "", "python-requests/2"]),
)


def score_reference(scorer: BotScorer, view: RequestView, rate: float) -> BotScore:
    """The score, feature by feature, straight from each feature's definition."""
    total = scorer.base_score
    ua_class = user_agent_class(view.user_agent)
    for feature in scorer.features:
        match feature.kind:
            case FeatureKind.HEADER_PRESENT:
                hit = feature.param in view.headers
            case FeatureKind.HEADER_ABSENT:
                hit = feature.param not in view.headers
            case FeatureKind.HEADER_ORDER:
                hit = in_order_reference(feature.order, view.header_names)
            case FeatureKind.USER_AGENT_CLASS:
                hit = ua_class == feature.param
            case FeatureKind.RATE_OVER:
                hit = rate > feature.threshold
            case FeatureKind.ACCEPT_WILDCARD:
                hit = view.header("accept").strip() == "*/*"
            case _:
                assert_never(feature.kind)
        if hit:
            total += feature.weight
    return Scored(max(1, min(99, round(total))))


@settings(max_examples=300, deadline=None)
@given(
    feature_files(whole_weights) | feature_files(any_weights),
    st.lists(bot_requests, min_size=1, max_size=3),
    st.floats(0, 200),
)
def test_scores_with_tests_chosen_at_load_equal_feature_definitions(
    feature_file: dict[str, Any], reqs: list[Request], rate: float
) -> None:
    config = BotConfig.model_validate({"feature_file": feature_file})
    scorer = BotScorer.load(config, Capacities())
    for req in reqs:
        assert scorer.score(RequestView(req), rate) == score_reference(
            scorer, RequestView(req), rate
        )


def in_order_reference(wanted: tuple[str, ...], names: list[str]) -> bool:
    seen = tuple(n for n in names if n in wanted)
    return bool(wanted) and seen[: len(wanted)] == wanted


@given(
    st.lists(st.sampled_from("abcd"), max_size=4).map(tuple),
    st.lists(st.sampled_from("abcde"), max_size=8),
)
def test_header_order_matches_its_definition(wanted: tuple[str, ...], names: list[str]) -> None:
    assert _in_order(wanted, names) is in_order_reference(wanted, names)


# ---- rate limits -----------------------------------------------------------------------------


def key_reference(spec: RateLimit, view: RequestView) -> str:
    parts = [spec.id]
    for part in spec.key:
        match part:
            case "ip":
                parts.append(view.request.client_ip)
            case "path":
                parts.append(view.request.path)
            case "host":
                parts.append(view.host)
            case "method":
                parts.append(view.request.method)
            case _:
                parts.append(view.header(part.removeprefix("header:").lower()))
    return "\x1f".join(parts)


@given(
    st.lists(
        st.sampled_from(["ip", "path", "host", "method", "header:X-Api-Key", "header:accept"]),
        min_size=1,
        max_size=4,
    ),
    st.sampled_from(["block", "challenge", "log"]),
    st.sampled_from(["/", "/api/x"]),
    st.sampled_from([(), (("X-Api-Key", "k-1"),), (("Accept", "*/*"), ("x-api-key", "k-2"))]),
    st.none() | st.integers(1, 50),
)
def test_compiled_key_parts_and_hits(
    key: list[str],
    action: str,
    path: str,
    headers: tuple[tuple[str, str], ...],
    burst: int | None,
) -> None:
    fields = {"id": "l", "expression": "true", "key": key, "requests": 3, "period_s": 7}
    spec = RateLimit.model_validate({**fields, "burst": burst, "action": action})
    (limit,) = compile_rate_limits([spec], {})
    view = RequestView(Request("GET", path, headers=headers, client_ip="192.0.2.1", host="h"))
    assert limit.key(view) == key_reference(spec, view)
    assert limit.capacity == float(spec.burst or spec.requests)
    assert limit.refill_per_s == spec.requests / spec.period_s
    decision, status, enforced = {
        "block": (Decision.BLOCK, 429, True),
        "challenge": (Decision.CHALLENGE, 403, True),
        "log": (Decision.ALLOW, 200, False),
    }[action]
    expected = RateLimitHit("l", decision, status, enforced)
    assert limit.exceeded == expected


# ---- rules indexed by path ------------------------------------------------------------------


def unindexed(engine: Engine) -> Engine:
    """The same engine with nothing indexed by path: every rate limit, cache rule and WAF rule
    runs its expression on every request, one by one."""
    limits = compile_rate_limits(engine.bundle.rate_limits, engine.bundle.ip_lists)
    return replace(
        engine,
        waf=reference(engine.waf),
        rate_limits=PathIndex.build([(limit, None) for limit in limits]),
        cache=replace(
            engine.cache, by_path=PathIndex.build([(r, None) for r in engine.cache.rules])
        ),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "/",
                    "/login",
                    "/login/",
                    "/api/v1/x",
                    "/apix",
                    "/account/me",
                    "/accounts",
                    "/static/a.css",
                    "/static",
                    "/admin",
                    "/administrator",
                    "/a",
                    "/%61dmin",
                ]
            ),
            st.sampled_from(["GET", "POST", "HEAD"]),
            st.sampled_from(["192.0.2.44", "203.0.113.9", "198.51.100.7"]),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_rules_indexed_by_path_yield_the_verdicts_of_running_every_rule(
    example: Engine, sequence: list[tuple[str, str, str]]
) -> None:
    slow = unindexed(example)
    fast_state, slow_state = example.new_state(seed=1), slow.new_state(seed=1)
    for i, (path, method, ip) in enumerate(sequence):
        req = request(path, method=method, ip=ip)._replace(now=1000.0 + i / 100)
        fast = example.evaluate(req, fast_state)
        assert repr(fast) == repr(slow.evaluate(req, slow_state)), (path, method, ip)


path_starts = st.sampled_from(["/", "/a", "/ab", "/abc", "/b", "/api/", "/api/v1", "/static/"])


@given(
    st.lists(st.one_of(st.none(), st.lists(path_starts, min_size=1, max_size=3).map(tuple))),
    st.lists(st.one_of(path_starts, st.text(max_size=6)), min_size=1, max_size=10),
)
def test_what_an_index_makes_of_each_selection_is_selected_as_the_selection_is(
    needed: list[tuple[str, ...] | None], paths: list[str]
) -> None:
    """`PathIndex.map` (the WAF's runs of checks, made at load) selects, for any path, what the
    function makes of the items `select` gives for that path."""
    index = PathIndex.build(list(enumerate(needed)))

    def made(chosen: tuple[int, ...]) -> tuple[str, ...]:
        return (*(str(item) for item in chosen), "end")

    mapped = index.map(made)
    for path in paths:
        assert mapped.select(path) == made(index.select(path)), path


# ---- IP sets ---------------------------------------------------------------------------------

networks = st.one_of(
    st.builds(lambda a, p: f"{a}/{p}", st.ip_addresses(v=4), st.integers(0, 32)),
    st.builds(lambda a, p: f"{a}/{p}", st.ip_addresses(v=6), st.integers(0, 128)),
)
probes = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
    st.sampled_from(["", "1.2.3", "::ffff:1.2.3.4", "1.2.3.4 ", "01.2.3.4", "x"]),
)


@given(st.lists(networks, max_size=5), probes)
def test_membership_of_any_address_matches_ipaddress(entries: list[str], probe: str) -> None:
    try:
        address = ipaddress.ip_address(probe)
    except ValueError:
        expected = False
    else:
        expected = any(address in ipaddress.ip_network(e, strict=False) for e in entries)
    assert AddressSet(entries).contains(probe) is expected


# ---- routing -----------------------------------------------------------------------------------


def plain_route(bundle: Bundle, host: str, resolved: str) -> Origin | None:
    """The route of a request read off the bundle's routes as written: exact hosts before `*`,
    longer prefixes before shorter ones, the first whose host and prefix fit."""
    bare = host.lower() if host.startswith("[") else host.lower().rsplit(":", 1)[0]
    origins = {o.id: o for o in bundle.origins}
    for route in sorted(bundle.routes, key=lambda r: (r.host == "*", -len(r.path_prefix))):
        if route.host.lower() in ("*", bare) and resolved.startswith(route.path_prefix):
            return origins[route.origin]
    return None


route_hosts = st.sampled_from(["*", "shop.example", "API.example", "[::1]", "a"])
route_prefixes = st.sampled_from(["/", "/api/", "/api", "/a", "/static/", "/ä/"])


@settings(max_examples=400, deadline=None)
@given(
    routes=st.lists(st.tuples(route_hosts, route_prefixes), max_size=6),
    host=st.sampled_from(
        ["shop.example", "api.example:8080", "API.EXAMPLE", "[::1]", "[::1]:80", "a:1", "b", ""]
    ),
    resolved=st.sampled_from(["/", "/api", "/api/v1", "/a", "/static/x.css", "/ä/", "*", ""]),
)
def test_routing_yields_the_route_the_bundles_routes_give_as_written(
    routes: list[tuple[str, str]], host: str, resolved: str
) -> None:
    bundle = Bundle.model_validate(
        {  # an origin per route, so the route taken is told apart from any other
            "origins": [{"id": f"o{i}", "url": f"http://127.0.0.1:{i + 9}"} for i in range(6)],
            "routes": [
                {"host": h, "path_prefix": p, "origin": f"o{i}"} for i, (h, p) in enumerate(routes)
            ],
        }
    )
    found = Router.build(bundle).route(host, resolved, resolved)
    expected = plain_route(bundle, host, resolved)
    if expected is None:
        assert isinstance(found, Unrouted)
    else:
        assert found == Routed(expected)


# ---- the cache's response phase ----------------------------------------------------------------

cache_read_names = st.sampled_from([b"set-cookie", b"cache-control", b"vary", b"expires"]).flatmap(
    lambda name: st.lists(st.booleans(), min_size=len(name), max_size=len(name)).map(
        lambda upper: bytes(
            c - 32 if u and 97 <= c <= 122 else c for c, u in zip(name, upper, strict=True)
        )
    )
)
cache_response_names = st.one_of(
    st.sampled_from([b"Server", b"Date", b"Content-Type", b"Content-Length", b"ETag"]),
    st.sampled_from([b"Set-Cookie", b"Cache-Control", b"Vary", b"Expires", b"X-Vary", b"Age"]),
    cache_read_names,
    st.binary(min_size=1, max_size=14),
)
cache_response_values = st.one_of(
    st.sampled_from(
        [
            b"max-age=60",
            b"public, s-maxage=5",
            b"no-store",
            b"private",
            b"no-cache",
            b"max-age=x",
            b"Accept-Language",
            b"accept-language, Cookie",
            b"*",
            b"a=b",
            b"Thu, 01 Jan 2099 00:00:00 GMT",
            b"soon",
            b"",
        ]
    ),
    st.binary(max_size=12),
)


def cache_headers_in_python(
    headers: Sequence[tuple[bytes, bytes]],
) -> tuple[tuple[str, ...], tuple[str, ...], str | None, bool]:
    """What `cache_headers` reads, as the response phase read it header by header."""
    cache_control: list[str] = []
    vary: list[str] = []
    expires: str | None = None
    sets_cookie = False
    for name, value in headers:
        lower = name.lower()
        if lower == b"set-cookie":
            sets_cookie = True
        elif lower == b"cache-control":
            cache_control.append(value.decode("latin-1"))
        elif lower == b"vary":
            vary.append(value.decode("latin-1"))
        elif lower == b"expires" and expires is None:
            expires = value.decode("latin-1")
    return tuple(cache_control), tuple(vary), expires, sets_cookie


@settings(max_examples=400, deadline=None)
@given(headers=st.lists(st.tuples(cache_response_names, cache_response_values), max_size=8))
def test_the_response_headers_the_cache_reads_are_read_as_the_python_reads_them(
    headers: list[tuple[bytes, bytes]],
) -> None:
    assert cache_headers(headers) == cache_headers_in_python(headers)
    assert cache_headers(tuple(headers)) == cache_headers_in_python(headers)


def test_response_headers_that_are_not_pairs_of_bytes_are_refused_with_what_they_must_be() -> None:
    for headers in ([(b"Vary",)], [(b"Vary", "text")], [[b"Vary", b"a"]], [("Vary", b"a")]):
        with pytest.raises(TypeError, match=r"\(name, value\) of bytes"):
            cache_headers(headers)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="sequence"):
        cache_headers(5)  # type: ignore[arg-type]


def plan_fields(plan: CacheFill | NotStored) -> object:
    match plan:
        case NotStored(reason=reason):
            return reason
        case CacheFill(key=key, entry=entry, max_bytes=max_bytes):
            return key, entry, max_bytes
        case _:
            assert_never(plan)


@settings(max_examples=400, deadline=None)
@given(
    headers=st.lists(st.tuples(cache_response_names, cache_response_values), max_size=8),
    status=st.sampled_from([200, 404, 500]),
    default_ttl=st.sampled_from([0, 30]),
)
def test_the_response_phase_makes_the_plan_the_headers_read_in_python_make(
    headers: list[tuple[bytes, bytes]], status: int, default_ttl: int
) -> None:
    """`on_response` reads the headers in one C pass (`cache_headers`): its plan is the one
    made when they are read header by header in Python, whatever the names and their case."""
    engine = Engine.build(
        Bundle.model_validate(
            {
                "origins": [{"id": "o", "url": "http://127.0.0.1:9"}],
                "routes": [{"origin": "o"}],
                "cache": {"default_ttl_s": default_ttl},
            }
        )
    )
    miss = engine.evaluate(
        request("/r", headers={"Host": "a", "Accept-Language": "en"}), engine.new_state()
    )
    fast = engine.on_response(miss, status, headers)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cache_module, "cache_headers", cache_headers_in_python)
        read_in_python = engine.on_response(miss, status, headers)
    assert plan_fields(fast) == plan_fields(read_in_python)


@given(requests)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_request_made_of_its_fields_is_the_request_the_class_makes(req: Request) -> None:
    made = request_of(*req)
    assert type(made) is Request and made == req
    assert made._replace(path="/other") == req._replace(path="/other")


VERDICT_FIELDS = (
    Decision.BLOCK, 403, Unrouted("r"), ("m",), ("r", "r"), ("a", "b", "c"), NotComputed("b"), 7,
    CacheBypass("c"), ("l", "l", "l", "l"),
)  # fmt: skip


@pytest.mark.parametrize(
    ("made_of", "cls", "fields"),
    [
        (verdict_of, Verdict, VERDICT_FIELDS),
        (scan_result_of, ScanResult, (frozenset("k"), 3, 5, None)),
    ],
    ids=["verdict", "scan"],
)
def test_a_record_made_of_its_fields_is_the_record_the_class_makes(
    made_of: Callable[..., tuple[object, ...]], cls: type[Any], fields: tuple[object, ...]
) -> None:
    """The engine's one-call constructors take every field (each distinct here), in order."""
    made = made_of(*fields)
    assert type(made) is cls and made == cls(**dict(zip(cls._fields, fields, strict=True)))


def test_tuple_of_holds_its_items_and_makes_only_tuples() -> None:
    """The items outlive their other references and the collector walks them; a class that is
    not a tuple's is refused with a TypeError, before anything is made."""
    import gc
    import weakref

    from failsmall.engine.native import tuple_of

    class Item:
        pass

    item = Item()
    alive = weakref.ref(item)
    made = tuple_of(ScanResult, frozenset(), 1, 2, item)
    del item
    gc.collect()
    assert made == (frozenset(), 1, 2, alive()) and alive() is not None
    assert tuple_of(tuple) == () and type(tuple_of(tuple, 1)) is tuple
    for refused in (dict, list, 3):
        with pytest.raises(TypeError, match="subclass of tuple"):
            tuple_of(refused, 1)  # type: ignore[arg-type, type-var]
    del made
    gc.collect()
    assert alive() is None


def test_a_view_computes_each_derived_field_once_and_takes_the_path_given() -> None:
    req = request(headers={"Host": "Shop.example", "Cookie": "a=1; b=2"}, query="x=1&x=2")
    view = RequestView(req)
    assert view.headers is view.headers and view.header_names == ["host", "cookie"]
    assert view.cookies == {"a": ["1"], "b": ["2"]} and view.cookies is view.cookies
    assert view.args == {"x": ["1", "2"]} and not view.body_read and not view.has_parsed_body
    assert view.body_limits == () and view.body.fields == () and view.has_parsed_body
    taken = RequestView(req)
    taken.resolved_path("/given")
    assert taken.normalized_path == "/given" and taken.header_names == ["host", "cookie"]
    assert taken.header("host") == "Shop.example" and taken.headers is taken.headers


def test_a_view_reads_the_fields_it_was_made_with_and_the_defaults_of_the_others() -> None:
    """A view made with only its request leaves the others at their defaults."""
    req, limits, hits = request(), Limits(), frozenset({"sqli"})
    made = RequestView(req, 0, hits, limits)
    assert made.request is req and made.bot_score == 0
    assert made.signature_hits is hits and made.limits is limits
    plain = RequestView(req)
    assert (plain.bot_score, plain.signature_hits, plain.limits) == (None, frozenset(), Limits())
    assert RequestView(req, limits=limits).limits is limits
