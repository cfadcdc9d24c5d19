"""Traffic counters kept on the request path as plain integers, read by metrics and reports.

The request path appends what a finished request counts (its status, decision, latency, module
outcomes and matched rules) to a list; every `FOLD_EVERY` requests, and before any counter is
read, the list is folded into the totals in a few passes over the whole batch, most in C.
Prometheus metric objects (with their locks and label lookups) are built at scrape time from
these numbers, and a health report's window is the difference between the totals now and at
the previous report.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import Counter
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Final, get_args

from failsmall.engine.outcomes import (
    Acted,
    Bypassed,
    Decision,
    ModuleErrored,
    ModuleOutcome,
    Passed,
)
from failsmall.model.traffic import ModuleName

LATENCY_BUCKETS_S: Final[tuple[float, ...]] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


OUTCOME_KINDS: Final[dict[type[ModuleOutcome], str]] = {
    Passed: "passed",
    Acted: "acted",
    ModuleErrored: "errored",
    Bypassed: "bypassed",
}
if set(OUTCOME_KINDS) != set(get_args(ModuleOutcome)):
    raise ImportError("OUTCOME_KINDS must name every kind of ModuleOutcome")
FOLD_EVERY: Final = 1024
"""Requests whose counts are folded into the totals together (sooner when they are read)."""
# Read on every request, bound to Final names once: compiled code reads them from C statics,
# where reading a member from its enum class takes about 0.1 µs (Python 3.11).
_BLOCK: Final = Decision.BLOCK
_CHALLENGE: Final = Decision.CHALLENGE


@dataclass
class LatencyHistogram:
    """Cumulative-on-read latency histogram with fixed buckets (seconds)."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_S) + 1))
    total: float = 0.0
    n: int = 0

    def observe(self, seconds: float) -> None:
        self.add(bisect_left(LATENCY_BUCKETS_S, seconds), seconds)

    def add(self, bucket: int, seconds: float) -> None:
        """Count an observation whose bucket index is already known."""
        self.counts[bucket] += 1
        self.total += seconds
        self.n += 1

    def copy(self) -> LatencyHistogram:
        return LatencyHistogram(list(self.counts), self.total, self.n)

    def since(self, earlier: LatencyHistogram) -> LatencyHistogram:
        """The observations made after `earlier`, a copy of this histogram taken before."""
        counts = [now - then for now, then in zip(self.counts, earlier.counts, strict=True)]
        return LatencyHistogram(counts, self.total - earlier.total, self.n - earlier.n)

    def quantile(self, q: float) -> float:
        """Upper bound of the bucket holding quantile `q` (seconds); 0 when empty."""
        if self.n == 0:
            return 0.0
        rank = q * self.n
        seen = 0
        for index, bucket_count in enumerate(self.counts):
            seen += bucket_count
            if seen >= rank:
                return LATENCY_BUCKETS_S[min(index, len(LATENCY_BUCKETS_S) - 1)]
        return LATENCY_BUCKETS_S[-1]


@dataclass
class Window:
    """Counts since the last health report (or, as taken by `TrafficStats.totals`, since the
    process started)."""

    requests: int = 0
    responses_5xx: int = 0
    blocked: int = 0
    challenged: int = 0
    module_errors: int = 0
    breaker_trips: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)


Recorded = tuple[int, str, float, tuple[ModuleOutcome, ...], tuple[str, ...]]
"""What `TrafficStats.record` keeps of one request until it is folded in: status, decision,
seconds, module outcomes and matched rules."""
_SECONDS: Final = itemgetter(2)
_MODULES: Final = itemgetter(3)
NO_OUTCOMES: Final[tuple[()]] = ()


def _same_outcomes(one: tuple[ModuleOutcome, ...], other: tuple[ModuleOutcome, ...]) -> bool:
    """Whether two requests' outcomes are the same objects, in the same order."""
    count = len(one)
    if count != len(other):
        return False
    for i in range(count):  # noqa: SIM110 - a loop, not `all(...)`: no generator for each request
        if one[i] is not other[i]:
            return False
    return True


def _tally(
    outcomes: tuple[ModuleOutcome, ...],
    times: int,
    times_of: dict[int, int],
    outcome_of: dict[int, ModuleOutcome],
) -> None:
    """Count `outcomes`, the outcomes of `times` requests, by identity."""
    for outcome in outcomes:
        key = id(outcome)
        times_of[key] = times_of.get(key, 0) + times
        outcome_of[key] = outcome


@dataclass
class TrafficStats:
    """Everything counted about traffic since the process started, plus the current window.

    The counters `record` feeds (`requests`, `latency`, `rule_matches`, `rule_blocks`, the
    module outcomes) are properties and methods that fold the requests not yet counted first,
    so every read is exact.
    """

    folded_requests: Counter[tuple[int, str]] = field(default_factory=Counter)
    # Per module, per outcome kind; every pair exists from the start.
    module_counts: dict[ModuleName, dict[type[ModuleOutcome], int]] = field(
        default_factory=lambda: {module: dict.fromkeys(OUTCOME_KINDS, 0) for module in ModuleName}
    )
    unfolded: list[Recorded] = field(default_factory=list)
    """The requests recorded since the last `fold` (fewer than FOLD_EVERY)."""
    rejected: Counter[str] = field(default_factory=Counter)
    upstream_errors: Counter[str] = field(default_factory=Counter)
    connections_refused: Counter[str] = field(default_factory=Counter)
    """New connections refused at the door, by limit: `node_limit` or `client_limit`."""
    abandoned: int = 0
    """Requests whose client closed before sending them whole."""
    slow_bodies: int = 0
    """Requests refused because their body arrived slower than the minimum rate."""
    # Per WAF rule: requests it matched (whatever the decision), and those it blocked.
    folded_rule_matches: Counter[str] = field(default_factory=Counter)
    folded_rule_blocks: Counter[str] = field(default_factory=Counter)
    access_log_write_errors: int = 0
    folded_latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    window_base: Window = field(default_factory=Window)
    """The totals when the current window began (`take_window`)."""

    def record(
        self,
        status: int,
        decision: str,
        seconds: float,
        modules: tuple[ModuleOutcome, ...] = NO_OUTCOMES,
        matched_rules: tuple[str, ...] = (),
    ) -> None:
        """Count one finished request: its status, decision and latency, the outcomes of
        its modules and the WAF rules it matched."""
        unfolded = self.unfolded
        unfolded.append((status, decision, seconds, modules, matched_rules))
        if len(unfolded) >= FOLD_EVERY:
            self.fold()

    def fold(self) -> None:
        """Count the requests recorded since the last fold, each counter in one pass over the
        batch. Latencies are sorted once and each bucket's share found by bisection. Module
        outcomes are mostly constants the engine shares between requests, and requests in a row
        most often have the same ones: they are counted by identity, a run of requests with the
        same outcomes at once, and each distinct outcome then added to its module's counts."""
        pending = self.unfolded
        if not pending:
            return
        self.unfolded = []
        requests = self.folded_requests
        status, decision, length = 0, "", 0
        for record in pending:  # requests in a row with the same status and decision: counted
            if record[0] == status and record[1] == decision:  # together
                length += 1
                continue
            if length:
                requests[status, decision] += length
            status, decision, length = record[0], record[1], 1
        requests[status, decision] += length
        latency = self.folded_latency
        buckets = latency.counts
        ordered = sorted(map(_SECONDS, pending))
        below = 0
        for bucket, bound in enumerate(LATENCY_BUCKETS_S):  # bisect_left(bounds, s) == bucket
            at_most = bisect_right(ordered, bound)
            buckets[bucket] += at_most - below
            below = at_most
        buckets[-1] += len(ordered) - below
        total = latency.total
        for record in pending:  # one at a time, in order: the same total as counted per request
            total += record[2]
        latency.total = total
        latency.n += len(pending)
        times_of: dict[int, int] = {}  # by the outcome's identity
        outcome_of: dict[int, ModuleOutcome] = {}
        run: tuple[ModuleOutcome, ...] = ()
        length = 0
        for modules in map(_MODULES, pending):  # requests in a row with the same outcomes: one
            if _same_outcomes(modules, run):  # tally for all of them
                length += 1
                continue
            _tally(run, length, times_of, outcome_of)
            run, length = modules, 1
        _tally(run, length, times_of, outcome_of)
        counts = self.module_counts
        for key, times in times_of.items():  # each distinct outcome added once
            outcome = outcome_of[key]
            counts[outcome.module][type(outcome)] += times
        # Matched rules: most often the engine's one tuple for the requests no rule stops (the
        # rules that always match), so requests in a row with the same tuple are counted at once.
        matches = self.folded_rule_matches
        blocked: list[str] = []
        matched: tuple[str, ...] = ()
        length = 0
        for record in pending:
            rules = record[4]
            if rules and record[1] == _BLOCK:
                blocked += rules
            if rules is matched:
                length += 1
                continue
            for rule in matched:
                matches[rule] += length
            matched, length = rules, 1
        for rule in matched:
            matches[rule] += length
        if blocked:
            self.folded_rule_blocks.update(blocked)

    @property
    def requests(self) -> Counter[tuple[int, str]]:
        """Requests answered, by (status, decision)."""
        self.fold()
        return self.folded_requests

    @property
    def latency(self) -> LatencyHistogram:
        """Every request's time from its head to its response's end."""
        self.fold()
        return self.folded_latency

    @property
    def rule_matches(self) -> Counter[str]:
        """Requests each WAF rule matched, whatever the decision."""
        self.fold()
        return self.folded_rule_matches

    @property
    def rule_blocks(self) -> Counter[str]:
        """Requests each WAF rule matched that were blocked."""
        self.fold()
        return self.folded_rule_blocks

    def module_errors(self) -> dict[str, int]:
        """Errored outcomes by module, for the modules that had any."""
        self.fold()
        return {
            module.value: kinds[ModuleErrored]
            for module, kinds in self.module_counts.items()
            if kinds[ModuleErrored]
        }

    def module_outcomes(self) -> dict[tuple[str, str], int]:
        """Module outcome counts by (module, outcome kind)."""
        self.fold()
        return {
            (module.value, OUTCOME_KINDS[kind]): value
            for module, kinds in self.module_counts.items()
            for kind, value in kinds.items()
            if value
        }

    def reject(self, reason: str) -> None:
        """A request refused before the engine saw it (malformed, too large, too slow)."""
        self.rejected[reason] += 1

    def totals(self) -> Window:
        """Everything `record` counted since the process started, as a window."""
        totals = Window(
            module_errors=sum(self.module_errors().values()), latency=self.latency.copy()
        )
        for (status, decision), count in self.requests.items():
            totals.requests += count
            if status >= 500:
                totals.responses_5xx += count
            if decision == _BLOCK:
                totals.blocked += count
            elif decision == _CHALLENGE:
                totals.challenged += count
        return totals

    def take_window(self) -> Window:
        """The counts since the previous call (or the start); a new window begins."""
        now, base = self.totals(), self.window_base
        self.window_base = now
        return Window(
            requests=now.requests - base.requests,
            responses_5xx=now.responses_5xx - base.responses_5xx,
            blocked=now.blocked - base.blocked,
            challenged=now.challenged - base.challenged,
            module_errors=now.module_errors - base.module_errors,
            latency=now.latency.since(base.latency),
        )
