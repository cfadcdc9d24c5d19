"""The per-request pipeline: modules in a fixed order, each inside a bulkhead.

fault -> ratelimit -> bot -> waf -> cache. A module that raises, overruns its time budget or
cannot be built yields `ModuleErrored`, and its failure policy decides: `fail_open` lets the
request continue, `fail_closed` answers 503. Nothing raises out of `Engine.evaluate`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from typing import TypeVar, assert_never

from failsmall.engine.bot import BotScorer, FeatureFileError
from failsmall.engine.bulkhead import Breaker, ErrorBudget
from failsmall.engine.cache import (
    CacheBypass,
    CacheDecision,
    CacheHit,
    CacheMiss,
    CachePolicy,
    CacheStore,
)
from failsmall.engine.expr import ExpressionError
from failsmall.engine.outcomes import (
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
)
from failsmall.engine.ratelimit import (
    CompiledRateLimit,
    RateLimitState,
    check_rate_limits,
    compile_rate_limits,
)
from failsmall.engine.request import Request, RequestView
from failsmall.engine.routing import Router
from failsmall.engine.waf import Waf, WafBuildError
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
    Origin,
)

FAIL_CLOSED_STATUS = 503
T = TypeVar("T")


class EngineBuildError(Exception):
    """A bundle the engine cannot be built from; `problems` lists every reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


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

    def breaker(self, module: ModuleName, settings: ModuleSettings) -> Breaker:
        breaker = self.breakers.get(module)
        if breaker is None or breaker.settings is not settings:
            breaker = Breaker(settings)
            self.breakers[module] = breaker
        return breaker


@dataclass
class _Pass:
    """Per-request values handed from module to module."""

    view: RequestView
    now: float
    client_rate: float = 0.0
    bot: BotScore = field(default_factory=lambda: NotComputed("bot module did not run"))
    rules: tuple[RuleOutcome, ...] = ()
    matched: tuple[str, ...] = ()
    delay_ms: int = 0
    cache: CacheDecision = field(default_factory=lambda: CacheBypass("cache did not run"))


class ModuleTimeBudgetExceeded(Exception):
    """A module took longer than its time budget."""


@dataclass(frozen=True)
class Engine:
    """The data plane of one bundle: build once, evaluate every request, never raise."""

    bundle: Bundle
    limits: Limits
    waf: Waf
    bot: BotScorer
    rate_limits: tuple[CompiledRateLimit, ...]
    cache: CachePolicy
    router: Router
    # Per module, in pipeline order: its settings, and its outcome when this bundle gives it
    # nothing to do (switched off, no faults, no limits, no phases), which needs no bulkhead.
    plan: tuple[tuple[ModuleName, ModuleSettings, ModuleOutcome | None], ...]

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
            rate_limits=rate_limits,
            cache=cache,
            router=Router.build(bundle),
            plan=_plan(bundle),
        )

    def with_overrides(self, overrides: list[Override]) -> Engine:
        """The same engine with other rule state overrides, reusing compiled signatures."""
        bundle = self.bundle.model_copy(update={"overrides": overrides})
        try:
            waf = Waf.build(bundle, reuse=self.waf)
        except WafBuildError as exc:
            raise EngineBuildError(exc.problems) from exc
        return replace(self, bundle=bundle, waf=waf)

    def route(self, host: str, path: str) -> Origin:
        """The origin for a request. Raises NoRouteError."""
        return self.router.route(host, path)

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
        """Run the pipeline for one request. Never raises."""
        p = _Pass(RequestView(request), request.now)
        outcomes: list[ModuleOutcome] = []
        for module, settings, static in self.plan:
            if static is not None:
                outcomes.append(static)
                continue
            outcome = self._run_module(module, settings, p, state)
            outcomes.append(outcome)
            stop = _stopping(outcome)
            if stop is not None:
                decision, status = stop
                return self._verdict(p, outcomes, decision, status)
        return self._verdict(p, outcomes, Decision.ALLOW, 200)

    def may_store(self, verdict: Verdict, status: int, header_names: Collection[str]) -> bool:
        """Whether an origin response with this status and these (lowercase) header names can
        possibly be stored for `verdict`; when not, there is no need to keep its body."""
        miss = verdict.cache
        return isinstance(miss, CacheMiss) and self.cache.may_store(miss, status, header_names)

    def cache_store(
        self,
        state: EngineState,
        verdict: Verdict,
        status: int,
        headers: tuple[tuple[str, str], ...],
        body: bytes,
        request: Request,
    ) -> bool:
        """Store an origin response for a cache miss when HTTP caching rules allow it."""
        miss = verdict.cache
        if not isinstance(miss, CacheMiss):
            return False
        entry = self.cache.storable(miss, RequestView(request), status, headers, body, request.now)
        if entry is None:
            return False
        state.cache.put(miss.key, entry)
        return True

    def _verdict(
        self, p: _Pass, outcomes: list[ModuleOutcome], decision: Decision, status: int
    ) -> Verdict:
        return Verdict(
            decision=decision,
            status=status,
            modules=tuple(outcomes),
            rules=p.rules,
            matched_rules=p.matched,
            bot=p.bot,
            delay_ms=p.delay_ms,
            cache=p.cache,
        )

    def _run_module(
        self, module: ModuleName, settings: ModuleSettings, p: _Pass, state: EngineState
    ) -> ModuleOutcome:
        breaker = state.breaker(module, settings)
        if not breaker.allows(p.now):
            return self._failed(module, settings, "circuit breaker open", state, p, count=False)
        started = state.clock()
        try:
            outcome = self._module(module, p, state)
            elapsed_us = (state.clock() - started) * 1e6
            if elapsed_us > self.limits.module_time_budget_us:
                raise ModuleTimeBudgetExceeded(
                    f"took {elapsed_us:.0f} µs, budget {self.limits.module_time_budget_us} µs"
                )
        except Exception as exc:  # noqa: BLE001 - the bulkhead: any module failure is contained
            breaker.record_failure(p.now)
            return self._failed(module, settings, f"{type(exc).__name__}: {exc}", state, p)
        breaker.record_success()
        return outcome

    def _failed(
        self,
        module: ModuleName,
        settings: ModuleSettings,
        error: str,
        state: EngineState,
        p: _Pass,
        count: bool = True,
    ) -> ModuleOutcome:
        if count:
            state.module_errors[module] = state.module_errors.get(module, 0) + 1
            state.errors.report(p.now, module.value, error)
        policy = settings.failure_policy
        match policy:
            case FailurePolicy.FAIL_OPEN:
                if module is ModuleName.BOT:
                    p.bot = NotComputed(f"bot module failed: {error}")
                return ModuleErrored(module, error, policy)
            case FailurePolicy.FAIL_CLOSED:
                return ModuleErrored(module, error, policy)
            case _:
                assert_never(policy)

    def _module(self, module: ModuleName, p: _Pass, state: EngineState) -> ModuleOutcome:
        match module:
            case ModuleName.FAULT:
                return self._fault(p, state)
            case ModuleName.RATELIMIT:
                return self._ratelimit(p, state)
            case ModuleName.BOT:
                p.bot = self.bot.score(p.view, p.client_rate)
                if isinstance(p.bot, Scored):
                    p.view.bot_score = p.bot.score
                    return Passed(module, f"score {p.bot.score}")
                return Passed(module, f"not computed: {p.bot.reason}")
            case ModuleName.WAF:
                result = self.waf.evaluate(p.view, p.now)
                p.rules = result.outcomes
                p.matched = result.matched
                if result.terminate is not None:
                    t = result.terminate
                    return Acted(module, t.decision, t.status, f"rule {t.rule_id}")
                return PASSED[module]
            case ModuleName.CACHE:
                p.cache = self.cache.lookup(p.view, state.cache, p.now)
                match p.cache:
                    case CacheHit():
                        return Passed(module, "hit")
                    case CacheMiss():
                        return Passed(module, "miss")
                    case CacheBypass(reason=reason):
                        return Passed(module, f"bypass: {reason}")
                    case _:
                        assert_never(p.cache)
            case _:
                assert_never(module)

    def _fault(self, p: _Pass, state: EngineState) -> ModuleOutcome:
        fault = self.bundle.fault
        if fault.delay_percent and state.rng.random() * 100 < fault.delay_percent:
            p.delay_ms = fault.delay_ms
        if fault.abort_percent and state.rng.random() * 100 < fault.abort_percent:
            return Acted(ModuleName.FAULT, Decision.ERROR, fault.abort_status, "fault abort")
        return PASSED[ModuleName.FAULT]

    def _ratelimit(self, p: _Pass, state: EngineState) -> ModuleOutcome:
        p.client_rate = state.ratelimit.client_rate(p.view.request.client_ip, p.now)
        hit = check_rate_limits(self.rate_limits, p.view, state.ratelimit, p.now)
        if hit is None:
            return PASSED[ModuleName.RATELIMIT]
        if not hit.enforced:
            return Passed(ModuleName.RATELIMIT, f"limit {hit.rule_id} exceeded (log)")
        return Acted(ModuleName.RATELIMIT, hit.decision, hit.status, f"limit {hit.rule_id}")


PASSED: dict[ModuleName, Passed] = {module: Passed(module) for module in ModuleName}
SWITCHED_OFF: dict[ModuleName, Bypassed] = {
    module: Bypassed(module, "switched off in the bundle") for module in ModuleName
}


def _plan(bundle: Bundle) -> tuple[tuple[ModuleName, ModuleSettings, ModuleOutcome | None], ...]:
    rate_features = any(f.kind is FeatureKind.RATE_OVER for f in bundle.bot.feature_file.features)
    idle = {
        ModuleName.FAULT: not (bundle.fault.abort_percent or bundle.fault.delay_percent),
        ModuleName.RATELIMIT: not bundle.rate_limits and not rate_features,
        ModuleName.BOT: False,
        ModuleName.WAF: not bundle.phases,
        ModuleName.CACHE: False,
    }
    plan: list[tuple[ModuleName, ModuleSettings, ModuleOutcome | None]] = []
    for module in PIPELINE_ORDER:
        settings = bundle.modules[module]
        static: ModuleOutcome | None = None
        if not settings.enabled:
            static = SWITCHED_OFF[module]
        elif idle[module]:
            static = PASSED[module]
        plan.append((module, settings, static))
    return tuple(plan)


@dataclass(frozen=True, slots=True)
class _Failed:
    """A part of the engine that could not be built; its problems are already recorded."""


def _attempt(problems: list[str], label: str, make: Callable[[], T]) -> T | _Failed:
    try:
        return make()
    except WafBuildError as exc:
        problems.extend(f"{label}: {p}" for p in exc.problems)
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
