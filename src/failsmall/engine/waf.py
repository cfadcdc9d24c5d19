"""The WAF ruleset engine: phases, rulesets, rule states, actions and anomaly scoring.

Semantics follow Cloudflare's Ruleset Engine. Phases run in a fixed order, each from its entry
point ruleset; rules evaluate in order; `execute` runs another ruleset with overrides (rule >
tag > ruleset); `skip` skips the rest of a ruleset, later phases or named rulesets; `score` adds
to the executing ruleset's anomaly score, and a ruleset whose score reaches its threshold applies
its threshold action.

Inspection is bounded by the bundle's work limits (`failsmall.engine.work`): when decoding,
parsing or scanning the request reaches one, the result names it, and `limits.waf_over_limit`
decides: `inspect_partial` keeps the rules' verdict on what was inspected; `block` (403) and
`challenge` answer the request so unless a rule already blocked it.

Every evaluated rule yields exactly one outcome. A rule's effective state is decided first: a
bundle override (killswitch) that has not expired, else an execute override, else the authored
state. A `disabled` rule yields `Disabled` and carries no results, whatever its action.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, NamedTuple, assert_never

from failsmall.engine.exceptions import NO_EXCEPTIONS, Exceptions
from failsmall.engine.expr import (
    Expression,
    ExpressionError,
    ExpressionEvalError,
    compile_expression,
)
from failsmall.engine.expr.compiled import Run, Scope
from failsmall.engine.outcomes import (
    Decision,
    Disabled,
    Executed,
    Matched,
    NotApplicable,
    NotMatched,
    RuleErrored,
    RuleOutcome,
)
from failsmall.engine.path_index import PathIndex
from failsmall.engine.request import RequestView
from failsmall.engine.signatures import SignatureCompileError, SignatureScanner, memo_bytes
from failsmall.engine.work import LimitReached
from failsmall.model.bundle import Bundle
from failsmall.model.rules import (
    PHASE_ORDER,
    BlockAction,
    ChallengeAction,
    ExecuteAction,
    ExecuteOverrides,
    LogAction,
    Override,
    Phase,
    Rule,
    RuleOverride,
    Ruleset,
    RuleState,
    ScoreAction,
    SignatureMatch,
    SkipAction,
)
from failsmall.model.traffic import Limits, OverLimit

CHALLENGE_STATUS: Final = 403
OVER_LIMIT_STATUS: Final = 403
PARANOIA_TAG: Final = "paranoia:"
MAX_EXECUTE_DEPTH: Final = 16


class WafBuildError(Exception):
    """A ruleset graph that cannot be compiled; `problems` lists every reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Terminate:
    """A terminating action: the request ends with this decision and status, because of a rule
    (`rule_id`) or of a work limit (`limit`, with `rule_id` empty)."""

    decision: Decision
    status: int
    rule_id: str
    limit: str = ""

    @property
    def cause(self) -> str:
        return f"over limit {self.limit}" if self.limit else f"rule {self.rule_id}"


@dataclass(frozen=True)
class Killswitch:
    """A bundle override, with its expiry as a timestamp (or none)."""

    state: RuleState
    reason: str
    expires_at: float | None

    def active(self, now: float) -> bool:
        return self.expires_at is None or now < self.expires_at


@dataclass(frozen=True)
class CompiledRule:
    """A rule as it runs inside one ruleset execution: overrides folded in at build time."""

    rule: Rule
    state: RuleState
    action_override: str | None
    score: int
    expression: Expression
    needs_bot: bool
    has_signatures: bool
    killswitch: Killswitch | None
    child: CompiledRuleset | None
    not_matched: NotMatched
    # A signature rule that is plainly active: it is NotMatched whenever its signatures missed,
    # which is the common case, so the evaluation loop settles it without a call.
    signature_gated: bool
    # What `state` means, worked out once: the outcome when disabled, and whether log-only.
    configured: _StateEffect
    # Whether nothing but the expression decides if the rule matches (no killswitch, not
    # disabled, no signatures; a bot rule still needs a bot score): see `DirectRun`.
    direct: bool
    # A direct rule whose expression is the constant `true` (the entry rule of a managed phase
    # that executes a ruleset): it matches every request, so it is applied without evaluating.
    always: bool
    # For an execute rule whose ruleset is one run of signature-gated rules and ends quietly
    # when all of them miss (no threshold reached at score 0): that outcome, see `QuietRun`.
    quiet: QuietRun | None


@dataclass(frozen=True, slots=True)
class QuietRun:
    """An execute rule's outcome when none of `ids`, the signature-gated rules that make up its
    ruleset, is among the request's signature hits: all NotMatched, which is the common case,
    settled without running the ruleset."""

    ids: frozenset[str]
    outcome: Executed


@dataclass(frozen=True, slots=True)
class GatedRun:
    """Consecutive signature-gated rules of a ruleset. When none of their ids is among the
    request's signature hits, which is the common case, all of them are NotMatched at once."""

    ids: frozenset[str]
    misses: tuple[NotMatched, ...]


@dataclass(frozen=True, slots=True)
class DirectRun:
    """Consecutive direct rules of a ruleset, from one of them to the last. Their expressions are
    tried in a row: each that yields false is NotMatched, which is the common case, and only the
    first that does not goes through the full evaluation of a rule.

    `closures` holds them by the paths they can match: a rule whose expression is false on a
    request's path (`failsmall.engine.expr.prefilter`) is `_never` there, a closure that yields
    false at once."""

    closures: PathIndex[Run]
    misses: tuple[NotMatched, ...]
    needs_bot: bool


@dataclass(frozen=True)
class CompiledRuleset:
    """A ruleset compiled for one execution context (its overrides and paranoia level).

    `gated_runs` is aligned with `rules`: the run of signature-gated rules starting at each rule
    that starts one, else None. `direct_runs` too: the run of direct rules from each direct rule.
    """

    ruleset: Ruleset
    rules: tuple[CompiledRule, ...]
    threshold: int
    threshold_action: BlockAction | ChallengeAction | LogAction
    gated_runs: tuple[GatedRun | None, ...]
    direct_runs: tuple[DirectRun | None, ...]

    @classmethod
    def of(
        cls,
        ruleset: Ruleset,
        rules: tuple[CompiledRule, ...],
        threshold: int,
        threshold_action: BlockAction | ChallengeAction | LogAction,
    ) -> CompiledRuleset:
        return cls(
            ruleset, rules, threshold, threshold_action, _gated_runs(rules), _direct_runs(rules)
        )


def _gated_runs(rules: tuple[CompiledRule, ...]) -> tuple[GatedRun | None, ...]:
    runs: list[GatedRun | None] = [None] * len(rules)
    start = 0
    while start < len(rules):
        end = start
        while end < len(rules) and rules[end].signature_gated:
            end += 1
        if end > start:
            members = rules[start:end]
            runs[start] = GatedRun(
                frozenset(r.rule.id for r in members), tuple(r.not_matched for r in members)
            )
        start = end + 1
    return tuple(runs)


def _direct_runs(rules: tuple[CompiledRule, ...]) -> tuple[DirectRun | None, ...]:
    runs: list[DirectRun | None] = [None] * len(rules)
    end = len(rules)
    for start in range(len(rules) - 1, -1, -1):
        if not rules[start].direct:
            end = start
            continue
        members = rules[start:end]
        runs[start] = DirectRun(
            PathIndex.build([(r.expression.run, r.expression.path_prefixes) for r in members], _no),
            tuple(r.not_matched for r in members),
            any(r.needs_bot for r in members),
        )
    return tuple(runs)


def _never(view: RequestView, scope: Scope) -> bool:
    """The expression of a rule that cannot match the request's path: false."""
    return False


def _no(run: Run) -> Run:
    return _never


_NONE_SKIPPED: Final[frozenset[Any]] = frozenset()


_Check = Run | frozenset[str]
_Segment = tuple[tuple[Run, ...], frozenset[str]]


@dataclass(frozen=True, slots=True)
class QuietWalk:
    """The phases of a WAF reduced at load to what decides that a request matches none of their
    rules, the common case, and what they then yield.

    A bundle reduces to one when every rule its phases reach is a direct rule (see
    `CompiledRule.direct`: only its expression decides), a signature-gated one, or an `execute`
    rule that always matches and whose ruleset reduces likewise. A request matches none of them
    when each direct rule's expression yields false and none of the signature rules is among its
    signature hits: each rule is then NotMatched, each execute rule `Executed` with no score,
    and no threshold is reached; `result` holds that, made once.

    `segments` holds the checks in rule order, by the paths they can match (a rule whose
    expression is false on a path is left out there, as `DirectRun` does): runs of expressions,
    each followed by the ids of the signature rules that come after it (empty for none), so
    the signature scan happens where rule-by-rule evaluation would make it. A check that fails
    hands the request to that evaluation, which yields the same outcomes for it."""

    segments: PathIndex[_Segment]
    needs_bot: bool
    result: WafResult

    @classmethod
    def of(cls, phases: tuple[tuple[Phase, CompiledRuleset], ...]) -> QuietWalk | None:
        checks: list[tuple[_Check, tuple[str, ...] | None]] = []
        outcomes: list[RuleOutcome] = []
        matched: list[str] = []
        needs_bot = False
        for _phase, ruleset in phases:
            reduced = _quiet_outcomes(ruleset, checks, matched)
            if reduced is None:
                return None
            outcomes.extend(reduced)
            needs_bot = needs_bot or _needs_bot(ruleset)
        segments = PathIndex.build(checks).map(_segments)
        return cls(segments, needs_bot, WafResult(tuple(outcomes), None, tuple(matched)))


def _quiet_outcomes(
    compiled: CompiledRuleset,
    checks: list[tuple[_Check, tuple[str, ...] | None]],
    matched: list[str],
) -> tuple[RuleOutcome, ...] | None:
    """The outcomes of a ruleset on a request none of its rules match, adding to `checks` what
    decides that and to `matched` the execute rules that match it; None if it has a rule of
    another kind, or reaches its threshold with no score."""
    outcomes: list[RuleOutcome] = []
    for rule in compiled.rules:
        action = rule.rule.action
        if rule.signature_gated:
            checks.append((frozenset((rule.rule.id,)), None))
            outcomes.append(rule.not_matched)
        elif rule.always and isinstance(action, ExecuteAction) and rule.child is not None:
            matched.append(rule.rule.id)  # `_apply` adds it before the ruleset runs
            results = _quiet_outcomes(rule.child, checks, matched)
            if results is None:
                return None
            outcomes.append(Executed(rule.rule.id, action.ruleset, results, 0, False))
        elif rule.direct and not rule.always:
            checks.append((rule.expression.run, rule.expression.path_prefixes))
            outcomes.append(rule.not_matched)
        else:
            return None
    if _finish(compiled, tuple(outcomes), 0)[2] is not None:
        return None
    return tuple(outcomes)


def _needs_bot(compiled: CompiledRuleset) -> bool:
    return any(
        rule.needs_bot or (rule.child is not None and _needs_bot(rule.child))
        for rule in compiled.rules
    )


def _segments(checks: tuple[_Check, ...]) -> tuple[_Segment, ...]:
    """Checks in order as runs of expressions, each with the signature ids that follow it."""
    segments: list[_Segment] = []
    runs: list[Run] = []
    gate: set[str] = set()
    for check in checks:
        if isinstance(check, frozenset):
            gate |= check
            continue
        if gate:
            segments.append((tuple(runs), frozenset(gate)))
            runs, gate = [], set()
        runs.append(check)
    if runs or gate:
        segments.append((tuple(runs), frozenset(gate)))
    return tuple(segments)


class Evaluation:
    """Mutable bookkeeping for one request's pass through the WAF."""

    __slots__ = (
        "exceptions",
        "matched",
        "now",
        "reached",
        "scanned",
        "scanner",
        "skipped_phases",
        "skipped_rulesets",
        "view",
    )

    def __init__(
        self,
        view: RequestView,
        now: float,
        scanner: SignatureScanner | None,
        exceptions: Exceptions = NO_EXCEPTIONS,
    ) -> None:
        self.view = view
        self.now = now
        self.scanner = scanner
        self.exceptions = exceptions
        self.scanned = False
        self.reached: LimitReached | None = None
        # Skips are rare: both start as one shared empty set, replaced on the first skip.
        self.skipped_phases: frozenset[Phase] = _NONE_SKIPPED
        self.skipped_rulesets: frozenset[str] = _NONE_SKIPPED
        self.matched: list[str] = []

    def skip(self, phases: Iterable[Phase], rulesets: Iterable[str]) -> None:
        self.skipped_phases = self.skipped_phases.union(phases)
        self.skipped_rulesets = self.skipped_rulesets.union(rulesets)

    def signature_hits(self) -> frozenset[str]:
        if not self.scanned:
            self.scanned = True
            if self.scanner is not None:
                result = self.scanner.inspect(self.view)
                hits = result.hits
                if hits and self.exceptions:  # the one place rule exceptions apply
                    hits = self.exceptions.apply(self.view, hits, self.scanner)
                self.view.signature_hits = hits
                self.reached = result.reached
        return self.view.signature_hits


class WafResult(NamedTuple):
    """What the WAF decided: the outcomes of every evaluated rule and a termination, if any.

    A named tuple rather than a frozen dataclass: one is made per request, at a third the cost.
    """

    outcomes: tuple[RuleOutcome, ...]
    terminate: Terminate | None
    matched: tuple[str, ...]
    over_limits: tuple[LimitReached, ...] = ()


@dataclass(frozen=True)
class Waf:
    """The compiled WAF of one bundle."""

    phases: tuple[tuple[Phase, CompiledRuleset], ...]
    scanner: SignatureScanner | None
    expressions: dict[str, Expression]
    signatures: dict[str, SignatureMatch]
    ip_lists: dict[str, list[str]]
    exceptions: Exceptions = NO_EXCEPTIONS
    # The phases on a request none of their rules match, when they reduce to one (`QuietWalk`).
    walk: QuietWalk | None = None

    @classmethod
    def build(cls, bundle: Bundle, reuse: Waf | None = None) -> Waf:
        """Compile the bundle's WAF.

        `reuse`, a WAF built from an earlier bundle, lends its compiled expressions and, when the
        signature matches are identical, its signature databases: a killswitch or content change
        that leaves the patterns alone does not recompile them. The scanner's memo, built or
        reused, is sized by this bundle's body buffer (`signatures.memo_bytes`).
        """
        compiler = _Compiler(bundle)
        if reuse is not None and reuse.ip_lists == bundle.ip_lists:
            sources = {r.id: r.expression for rs in bundle.rulesets for r in rs.rules}
            compiler.expressions.update(
                (rule_id, expr)
                for rule_id, expr in reuse.expressions.items()
                if sources.get(rule_id) == expr.source
            )
        phases = tuple(
            (phase, compiler.ruleset(bundle.phases[phase], ExecuteOverrides(), 0))
            for phase in PHASE_ORDER
            if phase in bundle.phases
        )
        for ruleset in bundle.rulesets:  # unreachable rules must compile too
            for rule in ruleset.rules:
                compiler.expression(rule)
        scanner: SignatureScanner | None = None
        if reuse is not None and reuse.signatures == compiler.signatures:
            scanner = reuse.scanner
        elif compiler.signatures:
            try:
                scanner = SignatureScanner.compile(compiler.signatures)
            except SignatureCompileError as exc:
                compiler.problems.extend(exc.problems)
        if compiler.problems:
            raise WafBuildError(compiler.problems)
        exceptions = Exceptions.build(
            bundle.exceptions, (r for rs in bundle.rulesets for r in rs.rules)
        )
        # Last, once nothing can refuse the bundle: a scanner reused from the running WAF keeps
        # its memo's size until this bundle is built.
        if scanner is not None:
            scanner.memo.max_bytes = memo_bytes(bundle.limits)
        return cls(
            phases,
            scanner,
            compiler.expressions,
            compiler.signatures,
            bundle.ip_lists,
            exceptions,
            QuietWalk.of(phases),
        )

    def evaluate(self, view: RequestView, now: float) -> WafResult:
        """Run the phases on the request. A request none of the rules match (see `QuietWalk`) is
        settled by the walk's checks alone; any other runs the phases rule by rule, taking over
        the signature scan if the walk made it."""
        walk = self.walk
        if walk is None or (walk.needs_bot and view.bot_score is None):
            return self._evaluate(Evaluation(view, now, self.scanner, self.exceptions))
        scanned = False
        reached: LimitReached | None = None
        hits = view.signature_hits
        for closures, gate in walk.segments.select(view.normalized_path):
            for run in closures:  # each yields False on a request the rules do not match
                try:
                    if run(view, ()) is not False:
                        break
                except ExpressionEvalError:
                    break
            else:
                if not gate:
                    continue
                if not scanned:  # what `Evaluation.signature_hits` does, at the same point
                    scanned = True
                    scanner = self.scanner
                    if scanner is not None:
                        scan = scanner.inspect(view)
                        hits, reached = scan.hits, scan.reached
                        if hits and self.exceptions:
                            hits = self.exceptions.apply(view, hits, scanner)
                        view.signature_hits = hits
                if not hits or hits.isdisjoint(gate):  # most requests hit nothing: no call
                    continue
            ev = Evaluation(view, now, self.scanner, self.exceptions)
            ev.scanned, ev.reached = scanned, reached
            return self._evaluate(ev)
        body_read = view.body_read
        if reached is None and not body_read:
            return walk.result
        limits = view.body_limits if body_read else ()
        if reached is not None:
            limits = (*limits, reached)
        if not limits:
            return walk.result
        return WafResult(
            walk.result.outcomes,
            _over_limit(None, limits, view.limits),
            walk.result.matched,
            limits,
        )

    def _evaluate(self, ev: Evaluation) -> WafResult:
        """Run the phases rule by rule."""
        view = ev.view
        outcomes: tuple[RuleOutcome, ...] = ()
        terminate: Terminate | None = None
        for phase, ruleset in self.phases:
            if ev.skipped_phases and phase in ev.skipped_phases:
                continue
            results, _score, terminate = _run(ruleset, ev)
            outcomes += results
            if terminate is not None:
                break
        # The body's limits count when something read the body (the scanner, a rule, another
        # module): a request whose body no rule inspects was not inspected in part.
        reached = view.body_limits if view.body_read else ()
        if ev.reached is not None:
            reached = (*reached, ev.reached)
        if not reached:
            return WafResult(outcomes, terminate, tuple(ev.matched))
        return WafResult(
            outcomes, _over_limit(terminate, reached, view.limits), tuple(ev.matched), reached
        )


def _over_limit(
    terminate: Terminate | None, reached: tuple[LimitReached, ...], limits: Limits
) -> Terminate | None:
    """The termination of a request whose inspection reached a work limit."""
    action = limits.waf_over_limit
    limit = reached[0].limit
    match action:
        case OverLimit.INSPECT_PARTIAL:
            return terminate
        case OverLimit.BLOCK:
            if terminate is not None and terminate.decision is Decision.BLOCK:
                return terminate
            return Terminate(Decision.BLOCK, OVER_LIMIT_STATUS, "", limit)
        case OverLimit.CHALLENGE:
            if terminate is not None:
                return terminate
            return Terminate(Decision.CHALLENGE, CHALLENGE_STATUS, "", limit)
        case _:
            assert_never(action)


def _run(
    compiled: CompiledRuleset, ev: Evaluation
) -> tuple[tuple[RuleOutcome, ...], int, Terminate | None]:
    """Run one ruleset. Returns its outcomes, its anomaly score and a termination, if any."""
    outcomes: list[RuleOutcome] = []
    append = outcomes.append
    view = ev.view
    score = 0
    hits: frozenset[str] | None = None
    rules, runs, direct_runs = compiled.rules, compiled.gated_runs, compiled.direct_runs
    index, count = 0, len(rules)
    while index < count:
        rule = rules[index]
        if rule.signature_gated:
            if hits is None:
                hits = ev.signature_hits()
            run = runs[index]
            if run is not None and hits.isdisjoint(run.ids):
                if len(run.misses) == count:  # the whole ruleset: its misses, shared
                    return _finish(compiled, run.misses, 0)
                outcomes.extend(run.misses)
                index += len(run.misses)
                continue
            index += 1
            if rule.rule.id not in hits:
                append(rule.not_matched)
                continue
            outcome, effect = _evaluate_rule(rule, ev)
        elif rule.always:  # it matches: what `_evaluate_rule` would do next
            index += 1
            outcome, effect = _apply(rule, ev, rule.configured[1])
        elif (direct := direct_runs[index]) is not None and (
            view.bot_score is not None or not direct.needs_bot
        ):
            missed, hit = _leading_misses(direct.closures.select(view.normalized_path), view)
            if missed == count:  # the whole ruleset: its misses, shared
                return _finish(compiled, direct.misses, 0)
            if missed:
                outcomes.extend(direct.misses[:missed])
                index += missed
                if missed == len(direct.misses):
                    continue
                rule = rules[index]
            index += 1
            if hit:  # a direct rule that matched: what `_evaluate_rule` would do next
                outcome, effect = _apply(rule, ev, rule.configured[1])
            else:  # an error or a value that is not a bool: `_evaluate_rule` says which
                outcome, effect = _evaluate_rule(rule, ev)
        else:
            index += 1
            outcome, effect = _evaluate_rule(rule, ev)
        append(outcome)
        if effect is _CONTINUE:
            continue
        match effect:
            case _Continue():
                pass
            case _AddScore(points=points):
                score += points
            case _StopRuleset():
                break
            case Terminate():
                return tuple(outcomes), score, effect
            case _:
                assert_never(effect)
    return _finish(compiled, tuple(outcomes), score)


def _leading_misses(closures: tuple[Run, ...], view: RequestView) -> tuple[int, bool]:
    """How many of the expressions, from the first, yield false on the request; and whether the
    one after them yielded true (rather than an error or a value that is not a bool)."""
    missed = 0
    for run in closures:
        try:
            value = run(view, ())
        except ExpressionEvalError:
            return missed, False
        if value is not False:
            return missed, value is True
        missed += 1
    return missed, False


def _finish(
    compiled: CompiledRuleset, outcomes: tuple[RuleOutcome, ...], score: int
) -> tuple[tuple[RuleOutcome, ...], int, Terminate | None]:
    """A ruleset's results once its rules ran: the threshold action applies when reached."""
    if score >= compiled.threshold and compiled.ruleset.kind == "managed":
        terminate = _terminating(compiled.threshold_action, compiled.ruleset.id)
        if terminate is not None:
            return outcomes, score, terminate
    return outcomes, score, None


@dataclass(frozen=True, slots=True)
class _Continue:
    pass


@dataclass(frozen=True, slots=True)
class _AddScore:
    points: int


@dataclass(frozen=True, slots=True)
class _StopRuleset:
    pass


_Effect = _Continue | _AddScore | _StopRuleset | Terminate
_CONTINUE: Final = _Continue()


def _effective_state(rule: CompiledRule, now: float) -> tuple[RuleState, str]:
    if rule.killswitch is not None and rule.killswitch.active(now):
        return rule.killswitch.state, rule.killswitch.reason
    return rule.state, "disabled in configuration"


_StateEffect = tuple[Disabled | None, bool]


def _state_effect(rule_id: str, state: RuleState, reason: str) -> _StateEffect:
    """A rule state's effect: the outcome of a disabled rule, and whether matches only log."""
    match state:
        case RuleState.DISABLED:
            return Disabled(rule_id, reason), False
        case RuleState.ACTIVE:
            return None, False
        case RuleState.LOG_ONLY:
            return None, True
        case _:
            assert_never(state)


def _evaluate_rule(rule: CompiledRule, ev: Evaluation) -> tuple[RuleOutcome, _Effect]:
    rule_id = rule.rule.id
    if rule.killswitch is None:
        disabled, logged_only = rule.configured
    else:
        disabled, logged_only = _state_effect(rule_id, *_effective_state(rule, ev.now))
    if disabled is not None:
        return disabled, _CONTINUE
    if rule.needs_bot and ev.view.bot_score is None:
        return NotApplicable(rule_id, "bot score not computed for this request"), _CONTINUE
    if rule.has_signatures and rule_id not in ev.signature_hits():
        return rule.not_matched, _CONTINUE
    try:
        hit = rule.expression.evaluate(ev.view)
    except ExpressionEvalError as exc:
        return RuleErrored(rule_id, str(exc)), _CONTINUE
    if not hit:
        return rule.not_matched, _CONTINUE
    return _apply(rule, ev, logged_only)


def _apply(rule: CompiledRule, ev: Evaluation, logged_only: bool) -> tuple[RuleOutcome, _Effect]:
    """The outcome and effect of a rule whose expression matched."""
    rule_id = rule.rule.id
    action = rule.rule.action
    ev.matched.append(rule_id)
    match action:  # execute first: the entry rule of the managed phase matches every request
        case ExecuteAction():
            return _execute(rule, action, ev, logged_only)
        case BlockAction() | ChallengeAction() | LogAction():
            effective = _override_action(action, rule.action_override)
            outcome = Matched(rule_id, effective.type, logged_only)
            terminate = None if logged_only else _terminating(effective, rule_id)
            return outcome, terminate if terminate is not None else _CONTINUE
        case ScoreAction():
            outcome = Matched(rule_id, "score", logged_only)
            return outcome, _CONTINUE if logged_only else _AddScore(rule.score)
        case SkipAction():
            if logged_only:
                return Matched(rule_id, "skip", True), _CONTINUE
            ev.skip(action.phases, action.rulesets)
            effect: _Effect = _StopRuleset() if action.rest_of_ruleset else _CONTINUE
            return Matched(rule_id, "skip"), effect
        case _:
            assert_never(action)


def _execute(
    rule: CompiledRule, action: ExecuteAction, ev: Evaluation, logged_only: bool
) -> tuple[RuleOutcome, _Effect]:
    rule_id = rule.rule.id
    child = rule.child
    if child is None or action.ruleset in ev.skipped_rulesets:
        return NotApplicable(rule_id, f"ruleset {action.ruleset} skipped"), _CONTINUE
    quiet = rule.quiet
    if quiet is not None and ev.signature_hits().isdisjoint(quiet.ids):
        return quiet.outcome, _CONTINUE
    results, score, terminate = _run(child, ev)
    executed = Executed(rule_id, action.ruleset, results, score, terminate is not None)
    if terminate is None or logged_only:
        return executed, _CONTINUE
    return executed, terminate


def _override_action(
    action: BlockAction | ChallengeAction | LogAction, override: str | None
) -> BlockAction | ChallengeAction | LogAction:
    match override:
        case None:
            return action
        case "block":
            return action if isinstance(action, BlockAction) else BlockAction()
        case "challenge":
            return ChallengeAction()
        case "log":
            return LogAction()
        case _:
            raise WafBuildError([f"unknown action override {override!r}"])


def _terminating(
    action: BlockAction | ChallengeAction | LogAction, rule_id: str
) -> Terminate | None:
    match action:
        case BlockAction(status=status):
            return Terminate(Decision.BLOCK, status, rule_id)
        case ChallengeAction():
            return Terminate(Decision.CHALLENGE, CHALLENGE_STATUS, rule_id)
        case LogAction():
            return None
        case _:
            assert_never(action)


class _Compiler:
    """Compiles the execute graph, folding overrides into each execution context."""

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self.rulesets = {rs.id: rs for rs in bundle.rulesets}
        self.killswitches = {o.rule: _killswitch(o) for o in bundle.overrides}
        self.ip_lists = bundle.ip_lists
        self.expressions: dict[str, Expression] = {}
        self.signatures: dict[str, SignatureMatch] = {}
        self.problems: list[str] = []

    def ruleset(self, ruleset_id: str, overrides: ExecuteOverrides, depth: int) -> CompiledRuleset:
        ruleset = self.rulesets[ruleset_id]
        if depth > MAX_EXECUTE_DEPTH:
            self.problems.append(f"ruleset {ruleset_id} is executed more than 16 levels deep")
            return CompiledRuleset.of(
                ruleset, (), ruleset.score_threshold, ruleset.threshold_action
            )
        paranoia = overrides.paranoia_level or ruleset.paranoia_level
        rules = tuple(
            self.rule(rule, overrides, depth)
            for rule in ruleset.rules
            if _paranoia(rule) <= paranoia
        )
        threshold = overrides.score_threshold or ruleset.score_threshold
        threshold_action = ruleset.threshold_action
        if overrides.ruleset is not None and overrides.ruleset.action is not None:
            threshold_action = _override_action(threshold_action, overrides.ruleset.action)
        return CompiledRuleset.of(ruleset, rules, threshold, threshold_action)

    def rule(self, rule: Rule, overrides: ExecuteOverrides, depth: int) -> CompiledRule:
        chosen = _select_override(rule, overrides)
        state = chosen.state if chosen.state is not None else rule.state
        points = rule.action.points if isinstance(rule.action, ScoreAction) else 0
        score = chosen.score if chosen.score is not None else points
        expression = self.expression(rule)
        configured = _state_effect(rule.id, state, "disabled in configuration")
        direct = rule.match is None and configured[0] is None and rule.id not in self.killswitches
        if rule.match is not None:
            self.signatures[rule.id] = rule.match
        child = None
        quiet = None
        if isinstance(rule.action, ExecuteAction) and rule.action.ruleset in self.rulesets:
            child = self.ruleset(rule.action.ruleset, rule.action.overrides, depth + 1)
            first = child.gated_runs[0] if child.gated_runs else None
            if (
                first is not None
                and len(first.misses) == len(child.rules)
                and _finish(child, first.misses, 0)[2] is None
            ):
                quiet = QuietRun(
                    first.ids, Executed(rule.id, rule.action.ruleset, first.misses, 0, False)
                )
        return CompiledRule(
            not_matched=NotMatched(rule.id),
            signature_gated=rule.match is not None
            and state is not RuleState.DISABLED
            and rule.id not in self.killswitches,
            rule=rule,
            state=state,
            action_override=chosen.action,
            score=score,
            expression=expression,
            needs_bot=any(f.startswith("bot.") for f in expression.fields),
            has_signatures=rule.match is not None,
            killswitch=self.killswitches.get(rule.id),
            child=child,
            quiet=quiet,
            configured=configured,
            direct=direct,
            always=direct and expression.always_true,
        )

    def expression(self, rule: Rule) -> Expression:
        cached = self.expressions.get(rule.id)
        if cached is not None:
            return cached
        try:
            compiled = compile_expression(rule.expression, self.ip_lists)
        except ExpressionError as exc:
            self.problems.append(f"rule {rule.id}: expression does not compile: {exc}")
            compiled = compile_expression("false")
        self.expressions[rule.id] = compiled
        return compiled


def _select_override(rule: Rule, overrides: ExecuteOverrides) -> RuleOverride:
    """Merge overrides field by field with precedence rule > tag > ruleset."""
    layers: list[RuleOverride] = []
    if overrides.ruleset is not None:
        layers.append(overrides.ruleset)
    layers.extend(overrides.tags[tag] for tag in rule.tags if tag in overrides.tags)
    if rule.id in overrides.rules:
        layers.append(overrides.rules[rule.id])
    state: RuleState | None = None
    action: str | None = None
    score: int | None = None
    for layer in layers:
        state = layer.state if layer.state is not None else state
        action = layer.action if layer.action is not None else action
        score = layer.score if layer.score is not None else score
    return RuleOverride(state=state, action=action, score=score)


def _paranoia(rule: Rule) -> int:
    for tag in rule.tags:
        if tag.startswith(PARANOIA_TAG):
            level = tag.removeprefix(PARANOIA_TAG)
            if level.isdigit():
                return int(level)
    return 1


def _killswitch(override: Override) -> Killswitch:
    expires = override.expires_at
    return Killswitch(override.state, override.reason, _timestamp(expires) if expires else None)


def _timestamp(moment: datetime) -> float:
    return moment.timestamp()
