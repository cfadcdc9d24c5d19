"""A health report's window, taken as the difference of totals, counts exactly the requests
recorded since the previous report; module outcomes, counted in folds, are exact whenever read."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from failsmall.engine.outcomes import Decision, ModuleErrored, ModuleOutcome, Passed
from failsmall.model import FailurePolicy
from failsmall.model.traffic import ModuleName
from failsmall.node.stats import FOLD_EVERY, LATENCY_BUCKETS_S, OUTCOME_KINDS, TrafficStats, Window

Record = tuple[int, str, float, tuple[ModuleOutcome, ...]]

OUTCOMES = st.one_of(
    st.builds(Passed, st.sampled_from(list(ModuleName))),
    st.builds(
        ModuleErrored,
        st.sampled_from(list(ModuleName)),
        st.just("boom"),
        st.sampled_from(list(FailurePolicy)),
    ),
)
RECORDS = st.tuples(
    st.sampled_from([200, 204, 403, 404, 500, 502, 504]),
    st.sampled_from([*Decision, "rejected", "no_config"]),
    st.floats(0, 20, allow_nan=False),
    st.lists(OUTCOMES, max_size=5).map(tuple),
)


def expected(records: list[Record]) -> Window:
    """The window of `records`, counted one by one."""
    window = Window()
    for status, decision, seconds, modules in records:
        window.requests += 1
        window.latency.add(bisect_left(LATENCY_BUCKETS_S, seconds), seconds)
        window.responses_5xx += status >= 500
        window.blocked += decision == Decision.BLOCK
        window.challenged += decision == Decision.CHALLENGE
        window.module_errors += sum(type(m) is ModuleErrored for m in modules)
    return window


@given(st.lists(st.lists(RECORDS, max_size=8), max_size=5))
def test_each_window_counts_what_was_recorded_since_the_last(
    windows: list[list[Record]],
) -> None:
    stats = TrafficStats()
    for records in windows:
        for record in records:
            stats.record(*record)
        got, want = stats.take_window(), expected(records)
        assert (got.requests, got.responses_5xx, got.blocked, got.challenged) == (
            want.requests,
            want.responses_5xx,
            want.blocked,
            want.challenged,
        )
        assert got.module_errors == want.module_errors
        assert got.latency.counts == want.latency.counts and got.latency.n == want.latency.n
        assert abs(got.latency.total - want.latency.total) < 1e-6
    everything = [record for records in windows for record in records]
    assert stats.totals().requests == len(everything)


def outcome_counts(records: list[Record]) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
    """Module outcomes by (module, kind), and errored ones by module, counted one by one."""
    outcomes: Counter[tuple[str, str]] = Counter()
    errors: Counter[str] = Counter()
    for _, _, _, modules in records:
        for outcome in modules:
            outcomes[outcome.module.value, OUTCOME_KINDS[type(outcome)]] += 1
            if type(outcome) is ModuleErrored:
                errors[outcome.module.value] += 1
    return dict(outcomes), dict(errors)


SHARED = (Passed(ModuleName.WAF), Passed(ModuleName.BOT))


@given(st.lists(RECORDS, max_size=30), st.integers(0, 3 * FOLD_EVERY))
def test_module_outcomes_are_exact_whenever_read(records: list[Record], shared: int) -> None:
    """Outcomes shared between requests (as the engine's constants are, in tuples of their
    own or the same tuple) and fresh ones, past several folds, in any mix."""
    stats = TrafficStats()
    copies = [(200, "allow", 0.001, (*SHARED,)) for _ in range(shared % 5)]  # new tuples, same
    everything = [*records, *[(200, "allow", 0.001, SHARED)] * shared, *copies, *records]
    for record in everything:
        stats.record(*record)
    outcomes, errors = outcome_counts(everything)
    assert stats.module_outcomes() == outcomes
    assert stats.module_errors() == errors
    if everything:  # recorded after a read: counted at the next read
        stats.record(*everything[0])
        again = outcome_counts([*everything, everything[0]])
        assert (stats.module_outcomes(), stats.module_errors()) == again


RULED = st.tuples(
    st.sampled_from([200, 403, 502]),
    st.sampled_from([*Decision, "rejected"]),
    st.floats(0, 20, allow_nan=False),
    st.lists(OUTCOMES, max_size=3).map(tuple),
    st.lists(st.sampled_from(["r1", "r2", "r3"]), max_size=3).map(tuple),
)


@given(st.lists(st.tuples(RULED, st.booleans()), max_size=40), st.integers(0, 2 * FOLD_EVERY))
def test_request_counters_are_exact_whenever_read(
    steps: list[tuple[tuple[int, str, float, tuple[ModuleOutcome, ...], tuple[str, ...]], bool]],
    repeated: int,
) -> None:
    """Requests by status and decision, the latency histogram and the rules' matches and
    blocks, read after any request (past several folds), equal what was recorded so far."""
    stats = TrafficStats()
    always = ("r1", "r3")  # one tuple shared by many requests, as the engine's quiet verdicts
    plain = ((200, "allow", 0.0007, (), always if repeated % 2 else ()), False)
    requests: Counter[tuple[int, str]] = Counter()
    buckets = [0] * (len(LATENCY_BUCKETS_S) + 1)
    total = 0.0
    matches: Counter[str] = Counter()
    blocks: Counter[str] = Counter()
    for (status, decision, seconds, modules, rules), read in [*steps, *[plain] * repeated, *steps]:
        stats.record(status, decision, seconds, modules, rules)
        requests[status, decision] += 1
        buckets[bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        total += seconds
        matches.update(rules)
        if decision == Decision.BLOCK:
            blocks.update(rules)
        if read:
            assert stats.requests == requests
            assert stats.rule_matches == matches and stats.rule_blocks == blocks
    assert stats.requests == requests
    latency = stats.latency
    assert (latency.counts, latency.n, latency.total) == (buckets, requests.total(), total)
    assert stats.rule_matches == matches and stats.rule_blocks == blocks
    assert stats.totals().requests == requests.total()
