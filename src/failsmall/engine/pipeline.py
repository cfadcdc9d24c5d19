"""The per-request pipeline: modules in a fixed order, each inside a bulkhead.

The engine has two phases, as a proxy filter has a decode and an encode side:

- `Engine.evaluate(request, state) -> Verdict`: route the request, then run the modules
  fault -> ratelimit -> bot -> waf -> cache. A request the bundle does not route is answered
  `Decision.UNROUTED` at the cost of the route lookup; no module runs for it. The verdict
  carries the route and, on a cache miss, the handle its response is stored with.
- `Engine.on_response(verdict, status, headers) -> ResponsePlan`: what becomes of the origin's
  response (for now: whether the cache keeps it, see `failsmall.engine.cache`).

A module that raises yields `ModuleErrored`, and its failure policy decides: `fail_open` lets
the request continue, `fail_closed` answers 503. Nothing raises out of `Engine.evaluate`.

A verdict is a function of the request and the bundle. The clock only feeds a watchdog: a
module that completes past `limits.module_time_budget_us` keeps its verdict, and the overrun is
counted and reported (a defect to look at, not a failure of the request). Work caused by the
input is bounded by counted work limits instead (see `failsmall.engine.work`), so it never
trips a breaker. Failures (exceptions) do: `breaker_failures` of them within the window open a
module's breaker, which is reported at once, and while it is open the module is skipped and
its `while_open` policy applies to every request.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Final, NamedTuple, TypeVar, assert_never

from failsmall.engine.bot import BotScorer, FeatureFileError
from failsmall.engine.bulkhead import Breaker, BreakerState, ErrorBudget
from failsmall.engine.cache import (
    CONSTANT_BYPASSES,
    CacheBypass,
    CacheDecision,
    CacheHit,
    CacheMiss,
    CachePolicy,
    CacheStore,
    NotStored,
    ResponsePlan,
)
from failsmall.engine.cache import SWITCHED_OFF as CACHE_SWITCHED_OFF
from failsmall.engine.client_address import ClientAddresses
from failsmall.engine.expr import ExpressionError
from failsmall.engine.outcomes import (
    BOT_DID_NOT_RUN,
    CACHE_DID_NOT_RUN,
    Acted,
    BotScore,
    Bypassed,
    Decision,
    ModuleErrored,
    ModuleOutcome,
    NotComputed,
    Passed,
    RuleOutcome,
    Scored,
    Verdict,
    verdict_of,
)
from failsmall.engine.path_index import PathIndex
from failsmall.engine.paths import normalize_path
from failsmall.engine.ratelimit import (
    CompiledRateLimit,
    RateLimitState,
    check_rate_limits,
    compile_rate_limits,
    index_rate_limits,
)
from failsmall.engine.request import Request, RequestView
from failsmall.engine.routing import Routed, Router
from failsmall.engine.waf import Waf, WafBuildError
from failsmall.engine.work import LimitReached
from failsmall.model.bot import FeatureKind
from failsmall.model.bundle import Bundle, capacity_problems
from failsmall.model.rules import Override
from failsmall.model.traffic import (
    PIPELINE_ORDER,
    Capacities,
    FailurePolicy,
    Limits,
    ModuleName,
    ModuleSettings,
)

FAIL_CLOSED_STATUS: Final = 503
UNROUTED_STATUS: Final = 404
T = TypeVar("T")


class EngineBuildError(Exception):
    """A bundle the engine cannot be built from; `problems` lists every reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class PlannedBreakers:
    """The breaker of each module `plan` runs, in its order, for one `EngineState`: looked up
    once per plan, not once per module and request (a plan's settings are those its breakers
    were made for). `plan` is None in a state no request was evaluated with yet."""

    plan: _Plan | None
    breakers: tuple[Breaker, ...]


NOTHING_PLANNED: Final = PlannedBreakers(None, ())


@dataclass
class EngineState:
    """Everything mutable the engine uses, owned by the caller: one per process.

    `clock` measures module time budgets (a monotonic clock in the node; a fake one in tests);
    `rng` decides fault injection (seeded where determinism matters).
    """

    clock: Callable[[], float] = time.perf_counter
    rng: random.Random = field(default_factory=random.Random)
    ratelimit: RateLimitState = field(default_factory=RateLimitState)
    cache: CacheStore = field(default_factory=CacheStore)
    breakers: dict[ModuleName, Breaker] = field(default_factory=dict)
    errors: ErrorBudget = field(default_factory=ErrorBudget)
    module_errors: dict[ModuleName, int] = field(default_factory=dict)
    # Modules that completed past the watchdog budget (their verdicts were kept).
    module_overruns: dict[ModuleName, int] = field(default_factory=dict)
    # The breakers of the modules the engine's plan runs (see `PlannedBreakers`).
    planned: PlannedBreakers = NOTHING_PLANNED

    def open_breakers(self) -> list[tuple[ModuleName, Breaker]]:
        """The modules whose circuit breaker is not closed, in pipeline order."""
        return [
            (module, breaker)
            for module, breaker in sorted(self.breakers.items())
            if breaker.state is not BreakerState.CLOSED
        ]

    def replan(self, plan: _Plan) -> PlannedBreakers:
        """Look up the breaker of each module `plan` runs and keep them as `planned`: done when
        `planned` is for another plan (the first request, or a request of another engine)."""
        breakers = tuple(self.breaker(run.step.module, run.step.settings) for run in plan.runs)
        self.planned = PlannedBreakers(plan, breakers)
        return self.planned

    def breaker(self, module: ModuleName, settings: ModuleSettings) -> Breaker:
        breaker = self.breakers.get(module)
        if breaker is None or breaker.settings is not settings:
            breaker = Breaker(settings)
            self.breakers[module] = breaker
        return breaker


class _Pass:
    """Per-request values handed from module to module. What a module has not set reads as
    the class's default (none of them is mutable), so a pass is made with two fields set."""

    client_rate = 0.0
    bot: BotScore = BOT_DID_NOT_RUN
    rules: tuple[RuleOutcome, ...] = ()
    matched: tuple[str, ...] = ()
    delay_ms = 0
    cache: CacheDecision = CACHE_DID_NOT_RUN
    over_limits: tuple[LimitReached, ...] = ()

    def __init__(self, view: RequestView, now: float) -> None:
        self.view = view
        self.now = now


@dataclass(frozen=True)
class Engine:
    """The data plane of one bundle: build once, evaluate every request, never raise."""

    bundle: Bundle
    limits: Limits
    waf: Waf
    bot: BotScorer
    # Indexed by the paths they can apply to.
    rate_limits: PathIndex[CompiledRateLimit]
    cache: CachePolicy
    router: Router
    clients: ClientAddresses
    # The modules that run for each request, and the outcomes settled at load for the others.
    plan: _Plan

    @classmethod
    def build(
        cls, bundle: Bundle, capacities: Capacities | None = None, reuse: Engine | None = None
    ) -> Engine:
        """Compile a bundle. Raises EngineBuildError listing every problem found.

        `reuse` is the engine being replaced: compiled parts that did not change are shared.
        """
        problems = capacity_problems(bundle, capacities) if capacities is not None else []
        node_capacities = capacities or bundle.requires
        waf = _attempt(
            problems, "waf", lambda: Waf.build(bundle, reuse.waf if reuse is not None else None)
        )
        bot = _attempt(problems, "bot", lambda: BotScorer.load(bundle.bot, node_capacities))
        rate_limits = _attempt(
            problems, "rate limit", lambda: compile_rate_limits(bundle.rate_limits, bundle.ip_lists)
        )
        cache = _attempt(
            problems, "cache rule", lambda: CachePolicy.compile(bundle.cache, bundle.ip_lists)
        )
        if (
            problems
            or isinstance(waf, _Failed)
            or isinstance(bot, _Failed)
            or isinstance(rate_limits, _Failed)
            or isinstance(cache, _Failed)
        ):
            raise EngineBuildError(problems)
        return cls(
            bundle=bundle,
            limits=bundle.limits,
            waf=waf,
            bot=bot,
            rate_limits=index_rate_limits(rate_limits),
            cache=cache,
            router=Router.build(bundle),
            clients=ClientAddresses.build(bundle.trusted_proxies),
            plan=_plan(bundle, bot),
        )

    def with_overrides(self, overrides: list[Override]) -> Engine:
        """The same engine with other rule state overrides, reusing compiled signatures."""
        bundle = self.bundle.model_copy(update={"overrides": overrides})
        try:
            waf = Waf.build(bundle, reuse=self.waf)
        except WafBuildError as exc:
            raise EngineBuildError(exc.problems) from exc
        return replace(self, bundle=bundle, waf=waf)

    def client_address(self, peer: str, forwarded_for: str) -> str:
        """The address a request comes from (see `client_address`)."""
        return self.clients.resolve(peer, forwarded_for)

    def new_state(self, seed: int | None = None, carry: EngineState | None = None) -> EngineState:
        """Fresh state for this engine. `carry`, the state of the engine being replaced, hands
        over its rate-limit buckets and cached responses (resized to this bundle's budgets), so
        a config push neither refills every bucket nor empties the cache onto the origins;
        breakers and error budgets start anew with the new configuration."""
        if carry is None:
            return EngineState(
                rng=random.Random(seed),
                ratelimit=RateLimitState(max_keys=self.bundle.requires.max_rate_limit_keys),
                cache=CacheStore(max_bytes=self.bundle.cache.max_bytes),
            )
        carry.ratelimit.max_keys = self.bundle.requires.max_rate_limit_keys
        carry.cache.max_bytes = self.bundle.cache.max_bytes
        return EngineState(
            clock=carry.clock, rng=carry.rng, ratelimit=carry.ratelimit, cache=carry.cache
        )

    def evaluate(self, request: Request, state: EngineState) -> Verdict:
        """Route the request, then run the pipeline for it. Never raises.

        Each module that runs does so inside its bulkhead: its breaker, its failure policy and
        the watchdog, whose clock is read once after each module (a module's time runs from the
        end of the one before).
        """
        view = RequestView(request, limits=self.limits)
        # Every request reads its resolved path (routing does): given to the view.
        resolved = normalize_path(request.path)
        view.resolved_path(resolved)
        route = self.router.route(request.host or view.host, request.path, resolved)
        if type(route) is not Routed:  # one of two final classes: no `isinstance` call
            return verdict_of(
                Decision.UNROUTED, UNROUTED_STATUS, route, (), (), (), BOT_DID_NOT_RUN, 0,
                CACHE_DID_NOT_RUN, (),
            )  # fmt: skip
        plan = self.plan
        end = plan.end
        if not plan.runs:  # every module's outcome was settled when the bundle was loaded
            return verdict_of(
                Decision.ALLOW, 200, route, end.before, (), (), plan.bot, 0, plan.cache, ()
            )
        p = _Pass(view, request.now)
        outcomes: list[ModuleOutcome] = []  # one list, not a tuple made anew at each module
        clock, budget_us = state.clock, self.limits.module_time_budget_us
        started = clock()
        planned = state.planned
        if planned.plan is not plan:
            planned = state.replan(plan)
        breakers = planned.breakers  # one for each run: `replan` made them so
        for i, (before, settled_bot, settled_cache, step) in enumerate(plan.runs):
            breaker = breakers[i]  # by index: a `zip` is an object and a call made each time
            if before:
                outcomes.extend(before)
                if settled_bot is not None:
                    p.bot = settled_bot
                if settled_cache is not None:
                    p.cache = settled_cache
            outcome: ModuleOutcome
            if breaker.state is not _CLOSED and not breaker.allows(p.now):
                outcome = self._policy(
                    step.module, step.settings.while_open, "circuit breaker open", p
                )
            else:
                try:
                    outcome = step.run(self, p, state)
                except Exception as exc:  # noqa: BLE001 - the bulkhead: any failure is contained
                    outcome = self._contain(step, breaker, exc, p, state)
                    started = clock()
                else:
                    ended = clock()
                    if (ended - started) * 1e6 > budget_us:  # a defect, not a failure
                        self._overran(step.module, (ended - started) * 1e6, p, state)
                    started = ended
                    if breaker.state is not _CLOSED:
                        breaker.record_success()
            outcomes.append(outcome)
            if type(outcome) is Passed:  # the common case, which never stops the request
                continue
            stop = _stopping(outcome)
            if stop is not None:
                decision, status = stop
                return self._verdict(p, route, tuple(outcomes), decision, status)
        if end.before:
            outcomes.extend(end.before)
            if end.bot is not None:
                p.bot = end.bot
            if end.cache is not None:
                p.cache = end.cache
        return self._verdict(p, route, tuple(outcomes), Decision.ALLOW, 200)

    def on_response(
        self, verdict: Verdict, status: int, headers: Sequence[tuple[bytes, bytes]]
    ) -> ResponsePlan:
        """The response phase: given the origin's status and headers (as sent) for a request
        evaluated to `verdict`, what becomes of the response. A `CacheFill` keeps the body for
        the cache (`add` each piece, `commit` at its end); `NotStored` says why not."""
        cache = verdict.cache
        match cache:
            case CacheMiss():
                return self.cache.on_response(cache, status, headers)
            case CacheHit():
                return _SERVED_FROM_CACHE
            case CacheBypass():
                return _NOT_A_MISS
            case _:
                assert_never(cache)

    def _verdict(
        self,
        p: _Pass,
        route: Routed,
        outcomes: tuple[ModuleOutcome, ...],
        decision: Decision,
        status: int,
    ) -> Verdict:
        return verdict_of(
            decision,
            status,
            route,
            outcomes,
            p.rules,
            p.matched,
            p.bot,
            p.delay_ms,
            p.cache,
            p.over_limits,
        )

    def _contain(
        self, step: _Step, breaker: Breaker, exc: Exception, p: _Pass, state: EngineState
    ) -> ModuleOutcome:
        """The outcome of a module that raised `exc`: counted, reported, its breaker told."""
        module = step.module
        error = f"{type(exc).__name__}: {exc}"
        state.module_errors[module] = state.module_errors.get(module, 0) + 1
        state.errors.report(p.now, module.value, error)
        if breaker.record_failure(p.now):
            state.errors.report(
                p.now,
                module.value,
                f"circuit breaker opened after {step.settings.breaker_failures} failures "
                f"within {step.settings.breaker_window_s:g} s; for "
                f"{step.settings.breaker_cooldown_s:g} s the module is skipped and "
                f"requests {_WHILE_OPEN[step.settings.while_open]}",
                urgent=True,
            )
        return self._policy(module, step.settings.failure_policy, error, p)

    def _overran(self, module: ModuleName, elapsed_us: float, p: _Pass, state: EngineState) -> None:
        """Count and report a module that completed past the watchdog budget."""
        state.module_overruns[module] = state.module_overruns.get(module, 0) + 1
        state.errors.report(
            p.now,
            module.value,
            f"completed in {elapsed_us:.0f} µs, past the {self.limits.module_time_budget_us} "
            "µs watchdog budget (its verdict is kept)",
        )

    def _policy(
        self, module: ModuleName, policy: FailurePolicy, error: str, p: _Pass
    ) -> ModuleOutcome:
        """The outcome of a module that failed, or is skipped while its breaker is open."""
        match policy:
            case FailurePolicy.FAIL_OPEN:
                if module is ModuleName.BOT:
                    p.bot = NotComputed(f"bot module failed: {error}")
                return ModuleErrored(module, error, policy)
            case FailurePolicy.FAIL_CLOSED:
                return ModuleErrored(module, error, policy)
            case _:
                assert_never(policy)

    def _bot(self, p: _Pass, state: EngineState) -> ModuleOutcome:
        bot = self.bot.score(p.view, p.client_rate)
        p.bot = bot
        match bot:
            case Scored(score=score):
                p.view.bot_score = score
                return _BOT_SCORED[score]
            case NotComputed(reason=reason):
                return _bot_not_computed(reason)
            case _:
                assert_never(bot)

    def _waf(self, p: _Pass, state: EngineState) -> ModuleOutcome:
        result = self.waf.evaluate(p.view, p.now)
        p.rules = result.outcomes
        p.matched = result.matched
        p.over_limits = result.over_limits
        if result.terminate is not None:
            t = result.terminate
            return Acted(ModuleName.WAF, t.decision, t.status, t.cause)
        if result.over_limits:
            return Passed(
                ModuleName.WAF, f"over limit {result.over_limits[0].limit}: inspected in part"
            )
        return _WAF_PASSED

    def _cache(self, p: _Pass, state: EngineState) -> ModuleOutcome:
        cache = self.cache.lookup(p.view, state.cache, p.now)
        p.cache = cache
        match cache:
            case CacheMiss():
                return _CACHE_MISS
            case CacheHit():
                return _CACHE_HIT
            case CacheBypass(reason=reason):
                known = _CACHE_BYPASSED.get(reason)
                if known is not None:
                    return known
                return Passed(ModuleName.CACHE, f"bypass: {reason}")
            case _:
                assert_never(cache)

    def _fault(self, p: _Pass, state: EngineState) -> ModuleOutcome:
        fault = self.bundle.fault
        if fault.delay_percent and state.rng.random() * 100 < fault.delay_percent:
            p.delay_ms = fault.delay_ms
        if fault.abort_percent and state.rng.random() * 100 < fault.abort_percent:
            return Acted(ModuleName.FAULT, Decision.ERROR, fault.abort_status, "fault abort")
        return _FAULT_PASSED

    def _ratelimit(self, p: _Pass, state: EngineState) -> ModuleOutcome:
        if self.plan.client_rates:
            p.client_rate = state.ratelimit.client_rate(p.view.request.client_ip, p.now)
        selected = self.rate_limits.select(p.view.normalized_path)
        if not selected:
            return _RATELIMIT_PASSED
        hit = check_rate_limits(selected, p.view, state.ratelimit, p.now)
        if hit is None:
            return _RATELIMIT_PASSED
        if not hit.enforced:
            return Passed(ModuleName.RATELIMIT, f"limit {hit.rule_id} exceeded (log)")
        return Acted(ModuleName.RATELIMIT, hit.decision, hit.status, f"limit {hit.rule_id}")


PASSED: Final[dict[ModuleName, Passed]] = {module: Passed(module) for module in ModuleName}
_WAF_PASSED: Final = PASSED[ModuleName.WAF]
_FAULT_PASSED: Final = PASSED[ModuleName.FAULT]
_RATELIMIT_PASSED: Final = PASSED[ModuleName.RATELIMIT]
SWITCHED_OFF: Final[dict[ModuleName, Bypassed]] = {
    module: Bypassed(module, "switched off in the bundle") for module in ModuleName
}
_CLOSED: Final = BreakerState.CLOSED
_WHILE_OPEN: Final = {
    FailurePolicy.FAIL_OPEN: "pass uninspected (fail_open)",
    FailurePolicy.FAIL_CLOSED: "are answered 503 (fail_closed)",
}
_SERVED_FROM_CACHE: Final = NotStored("the response was served from the cache")
_NOT_A_MISS: Final = NotStored("the cache was bypassed for the request")
_CACHE_HIT: Final = Passed(ModuleName.CACHE, "hit")
_CACHE_MISS: Final = Passed(ModuleName.CACHE, "miss")
_CACHE_BYPASSED: Final = {
    b.reason: Passed(ModuleName.CACHE, f"bypass: {b.reason}") for b in CONSTANT_BYPASSES
}
# The outcome of the bot module for each score (scores run from 1 to 99).
_BOT_SCORED: Final = tuple(Passed(ModuleName.BOT, f"score {score}") for score in range(100))


def _bot_not_computed(reason: str) -> Passed:
    return Passed(ModuleName.BOT, f"not computed: {reason}")


_ModuleRun = Callable[[Engine, _Pass, EngineState], ModuleOutcome]


@dataclass(frozen=True, slots=True)
class _Step:
    """One module of the plan: its settings, and how it runs for this bundle.

    `static` is its outcome when the bundle gives it nothing to do (switched off, no faults, no
    limits, no phases, a bot feature file that scores nothing, the cache turned off): it then
    needs no bulkhead, and `bot` and `cache` are the score and cache decision such a module
    settles. Else `run` runs it.
    """

    module: ModuleName
    settings: ModuleSettings
    static: ModuleOutcome | None
    bot: BotScore | None
    cache: CacheDecision | None
    run: _ModuleRun


class _Run(NamedTuple):
    """A module that runs for each request, after the modules settled at load that come
    before it: their outcomes (none of which stops a request) and the score and cache decision
    they settle, if any."""

    before: tuple[ModuleOutcome, ...]
    bot: BotScore | None
    cache: CacheDecision | None
    step: _Step


class _End(NamedTuple):
    """The modules settled at load after the last module that runs (see `_Run`)."""

    before: tuple[ModuleOutcome, ...]
    bot: BotScore | None
    cache: CacheDecision | None


@dataclass(frozen=True, slots=True)
class _Plan:
    """What the pipeline does for each request of one bundle: `runs` in pipeline order, then
    `end`. When nothing runs, `bot` and `cache` are the verdict's score and cache decision.
    `client_rates`: whether the ratelimit module measures each client's request rate, which
    only a bot module scoring a `rate_over` feature reads."""

    steps: tuple[_Step, ...]
    runs: tuple[_Run, ...]
    end: _End
    bot: BotScore
    cache: CacheDecision
    client_rates: bool

    @classmethod
    def of(cls, steps: tuple[_Step, ...], client_rates: bool) -> _Plan:
        runs: list[_Run] = []
        before: list[ModuleOutcome] = []
        bot: BotScore | None = None
        cache: CacheDecision | None = None
        settled_bot: BotScore = BOT_DID_NOT_RUN
        settled_cache: CacheDecision = CACHE_DID_NOT_RUN
        for step in steps:
            if step.static is None:
                runs.append(_Run(tuple(before), bot, cache, step))
                before, bot, cache = [], None, None
                continue
            assert _stopping(step.static) is None, "a module settled at load never stops"
            before.append(step.static)
            if step.bot is not None:
                bot = settled_bot = step.bot
            if step.cache is not None:
                cache = settled_cache = step.cache
        end = _End(tuple(before), bot, cache)
        return cls(steps, tuple(runs), end, settled_bot, settled_cache, client_rates)


def _module_run(module: ModuleName) -> _ModuleRun:
    match module:
        case ModuleName.FAULT:
            return Engine._fault
        case ModuleName.RATELIMIT:
            return Engine._ratelimit
        case ModuleName.BOT:
            return Engine._bot
        case ModuleName.WAF:
            return Engine._waf
        case ModuleName.CACHE:
            return Engine._cache
        case _:
            assert_never(module)


def _plan(bundle: Bundle, bot: BotScorer) -> _Plan:
    rate_features = any(f.kind is FeatureKind.RATE_OVER for f in bundle.bot.feature_file.features)
    unscored = bot.unscored
    client_rates = rate_features and bundle.modules[ModuleName.BOT].enabled and unscored is None
    idle = {
        ModuleName.FAULT: not (bundle.fault.abort_percent or bundle.fault.delay_percent),
        ModuleName.RATELIMIT: not bundle.rate_limits and not client_rates,
        ModuleName.BOT: False,
        ModuleName.WAF: not bundle.phases,
        ModuleName.CACHE: False,
    }
    steps: list[_Step] = []
    for module in PIPELINE_ORDER:
        settings = bundle.modules[module]
        static: ModuleOutcome | None = None
        settled: BotScore | None = None
        cache: CacheDecision | None = None
        if not settings.enabled:
            static = SWITCHED_OFF[module]
        elif idle[module]:
            static = PASSED[module]
        elif module is ModuleName.BOT and unscored is not None:
            static, settled = _bot_not_computed(unscored.reason), unscored
        elif module is ModuleName.CACHE and not bundle.cache.enabled:
            static, cache = _CACHE_BYPASSED[CACHE_SWITCHED_OFF.reason], CACHE_SWITCHED_OFF
        steps.append(_Step(module, settings, static, settled, cache, _module_run(module)))
    return _Plan.of(tuple(steps), client_rates)


@dataclass(frozen=True, slots=True)
class _Failed:
    """A part of the engine that could not be built; its problems are already recorded."""


def _attempt(problems: list[str], label: str, make: Callable[[], T]) -> T | _Failed:
    try:
        return make()
    except WafBuildError as waf_error:
        problems.extend(f"{label}: {p}" for p in waf_error.problems)
    except (FeatureFileError, ExpressionError) as exc:
        problems.append(f"{label}: {exc}")
    return _Failed()


def _stopping(outcome: ModuleOutcome) -> tuple[Decision, int] | None:
    match outcome:
        case Passed() | Bypassed():
            return None
        case Acted(decision=decision, status=status):
            return decision, status
        case ModuleErrored(policy=policy):
            if policy is FailurePolicy.FAIL_CLOSED:
                return Decision.ERROR, FAIL_CLOSED_STATUS
            return None
        case _:
            assert_never(outcome)
