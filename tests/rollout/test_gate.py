"""The health gate fails bad bundles, passes good ones and never passes on no data."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from failsmall.rollout import (
    GateFail,
    GateInconclusive,
    GateInput,
    GatePass,
    GateThresholds,
    GateVerdict,
    HealthSample,
    SideStats,
    evaluate_gate,
)

T = GateThresholds()


def side(nodes: int = 10, requests: int = 1000, **counts: float) -> SideStats:
    p99 = float(counts.pop("p99_ms", 40.0))
    return SideStats(
        nodes=nodes,
        requests=requests,
        latency_weight_ms=p99 * requests,
        **{k: int(v) for k, v in counts.items()},
    )


BASELINE = side(nodes=90, requests=9000, responses_5xx=18, blocked_or_challenged=180)


def verdict(
    new: SideStats,
    baseline: SideStats = BASELINE,
    assigned: int = 10,
    nacks: tuple[str, ...] = (),
    poisoned: tuple[str, ...] = (),
) -> GateVerdict:
    return evaluate_gate(T, GateInput(new, baseline, assigned, nacks, poisoned))


def test_healthy_canary_passes() -> None:
    result = verdict(side(responses_5xx=3, blocked_or_challenged=21))
    assert isinstance(result, GatePass)
    assert "1000 requests on 10 nodes" in result.summary


@pytest.mark.parametrize(
    ("new", "reason"),
    [
        (side(responses_5xx=20), "5xx rate 2.00% on the new bundle exceeds 1.20%"),
        (side(blocked_or_challenged=1000), "block\\+challenge rate 100.00%"),
        (side(module_errors=50), "module error rate 5.00%"),
        (side(breaker_trips=30), "3.0 breaker trips per node exceeds 1.0"),
        (side(p99_ms=200), "p99 200 ms on the new bundle exceeds 90 ms"),
    ],
)
def test_worse_than_baseline_fails(new: SideStats, reason: str) -> None:
    result = verdict(new)
    assert isinstance(result, GateFail)
    assert any(re.search(reason, r) for r in result.reasons), result.reasons


def test_relative_threshold_on_a_noisy_baseline() -> None:
    noisy = side(nodes=90, requests=9000, responses_5xx=900)
    assert isinstance(verdict(side(responses_5xx=150), baseline=noisy), GatePass)
    assert isinstance(verdict(side(responses_5xx=250), baseline=noisy), GateFail)


def test_a_few_stray_errors_are_not_a_failure() -> None:
    quiet = side(nodes=1, requests=40, responses_5xx=4)
    result = verdict(quiet, assigned=1)
    assert isinstance(result, GatePass)


def test_nacks_and_crash_loops_fail_without_any_traffic() -> None:
    empty = SideStats()
    nacked = verdict(empty, nacks=("edge-1",))
    assert isinstance(nacked, GateFail)
    assert nacked.reasons == ("1 node(s) refused the bundle: edge-1",)
    poisoned = verdict(empty, poisoned=tuple(f"edge-{i}" for i in range(7)))
    assert isinstance(poisoned, GateFail)
    assert (
        "7 node(s) quarantined it after it brought them down: "
        "edge-0, edge-1, edge-2, edge-3, edge-4 and 2 more" in (poisoned.reasons[0])
    )


@pytest.mark.parametrize(
    ("new", "assigned", "reason"),
    [
        (SideStats(), 10, "only 0 of 10 nodes reported"),
        (side(nodes=4), 10, "only 4 of 10 nodes reported"),
        (side(requests=29), 10, "only 29 requests"),
        (SideStats(), 0, "no live node is assigned"),
    ],
)
def test_never_passes_on_too_little_data(new: SideStats, assigned: int, reason: str) -> None:
    result = verdict(new, assigned=assigned)
    assert isinstance(result, GateInconclusive)
    assert reason in result.reason


def test_without_any_baseline_absolute_margins_apply() -> None:
    assert isinstance(verdict(side(responses_5xx=5), baseline=SideStats()), GatePass)
    assert isinstance(verdict(side(responses_5xx=11), baseline=SideStats()), GateFail)
    assert isinstance(verdict(side(p99_ms=5000), baseline=SideStats()), GatePass)


def test_side_stats_add_up_samples() -> None:
    samples = [
        HealthSample(
            "a", "d", 1.0, requests=100, responses_5xx=1, blocked=2, challenged=3, p99_ms=10
        ),
        HealthSample("b", "d", 1.0, requests=300, responses_5xx=3, p99_ms=50),
        HealthSample("a", "d", 2.0, requests=100, module_errors=4, breaker_trips=1, p99_ms=10),
    ]
    totals = SideStats.of(samples)
    stepwise = SideStats()
    seen: set[str] = set()
    for s in samples:
        stepwise = stepwise.plus(s, new_node=s.node_id not in seen)
        seen.add(s.node_id)
    assert totals == stepwise
    assert (totals.nodes, totals.requests, totals.blocked_or_challenged) == (2, 500, 5)
    assert totals.p99_ms == pytest.approx(34.0)
    assert totals.trips_per_node == 0.5
    assert HealthSample.from_dict(samples[0].to_dict()) == samples[0]


counts = st.integers(0, 2000)


@given(
    requests=st.integers(0, 2000),
    errors=counts,
    blocked=counts,
    extra=st.integers(1, 500),
    assigned=st.integers(0, 20),
    reporting=st.integers(0, 20),
)
def test_more_errors_never_turn_a_fail_into_anything_else(
    requests: int, errors: int, blocked: int, extra: int, assigned: int, reporting: int
) -> None:
    errors, blocked = min(errors, requests), min(blocked, requests)
    base = side(
        nodes=reporting, requests=requests, responses_5xx=errors, blocked_or_challenged=blocked
    )
    worse = side(
        nodes=reporting,
        requests=requests + extra,
        responses_5xx=errors + extra,
        blocked_or_challenged=blocked + extra,
    )
    before, after = verdict(base, assigned=assigned), verdict(worse, assigned=assigned)
    if isinstance(before, GateFail):
        assert isinstance(after, GateFail)
    if reporting == 0 or requests + extra < T.min_requests:
        assert not isinstance(after, GatePass), "never pass on no data"
