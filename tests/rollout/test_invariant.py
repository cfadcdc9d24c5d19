"""Invariant 4 over random event sequences: at no moment are more live nodes assigned the
unproven bundle than the current wave allows, and a failed gate always stops the rollout."""

from __future__ import annotations

import json

import hypothesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from failsmall.rollout import (
    CONTENT,
    EXPEDITED,
    LOGIC,
    Abort,
    Aborted,
    Applied,
    ApplyOutcome,
    Assign,
    Baking,
    Completed,
    Event,
    InvalidTransitionError,
    NodeJoined,
    NodeLeft,
    Pause,
    Paused,
    Pending,
    Policy,
    Resume,
    Rollback,
    RolledBack,
    RollingBack,
    RolloutMachine,
    RolloutState,
    state_name,
)
from tests.rollout.harness import NEW, Harness

calm = st.one_of(
    st.tuples(st.just("bake"), st.integers(1, 8)),
    st.tuples(
        st.just("tick"),
        st.floats(0.2, 6.0),
        st.sampled_from(["good", "good", "good", "good", "5xx", "block", "quiet"]),
        st.floats(0, 1),
    ),
    st.tuples(st.just("ack"), st.floats(0, 1)),
    st.tuples(st.just("join"), st.integers(0, 10_000)),
    st.tuples(st.just("leave"), st.integers(0, 10_000)),
    st.tuples(st.just("reload")),
    st.tuples(st.just("pause")),
    st.tuples(st.just("resume")),
)
disruptive = st.one_of(
    st.tuples(st.just("nack"), st.integers(0, 10_000)),
    st.tuples(st.just("poisoned"), st.integers(0, 10_000)),
    st.tuples(st.just("rollback")),
    st.tuples(st.just("abort")),
)
# Mostly calm steps, so that sequences reach later waves before something stops them.
actions = st.integers(0, 15).flatmap(lambda pick: disruptive if pick == 0 else calm)


def _bound(state: RolloutState, policy: Policy, peak: int, live: int) -> int:
    match state:
        case Baking(wave=wave) | Paused(wave=wave):
            return policy.waves[wave].size(peak)
        case Completed():
            return live
        case Pending() | RollingBack() | RolledBack() | Aborted():
            return 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    size=st.integers(1, 150),
    policy=st.sampled_from([LOGIC, CONTENT, EXPEDITED]),
    script=st.lists(actions, min_size=1, max_size=60),
)
def test_exposure_never_exceeds_the_current_wave(
    size: int, policy: Policy, script: list[tuple[object, ...]]
) -> None:
    h = Harness(size, policy=policy)
    live = set(h.nodes)
    peak = len(live)
    h.start()
    rolled_back = False
    waves_seen: set[int] = set()
    for action in script:
        before = h.machine.to_dict()
        assigns_before = len(h.assigns)
        audit_before = len(h.audit)
        was_finished = h.machine.finished
        state_before = h.machine.state
        match action:
            case ("tick", dt, health, silent_share):
                on_new = sorted(h.on_new())
                silent = frozenset(on_new[: int(len(on_new) * float(silent_share))])  # type: ignore[arg-type]
                h.tick(
                    float(dt),  # type: ignore[arg-type]
                    requests=0 if health == "quiet" else 60,
                    new_5xx=0.4 if health == "5xx" else 0.002,
                    new_blocked=0.9 if health == "block" else 0.02,
                    silent=silent,
                )
            case ("ack", share):
                on_new = sorted(h.on_new())
                h.ack(nodes=set(on_new[: int(len(on_new) * float(share))]))  # type: ignore[arg-type]
            case ("nack" | "poisoned" as kind, index):
                nodes = sorted(h.machine.live_nodes)
                if nodes:
                    node = nodes[int(index) % len(nodes)]  # type: ignore[call-overload]
                    outcome = ApplyOutcome.NACK if kind == "nack" else ApplyOutcome.POISONED
                    h.feed(Applied(h.now, node, NEW, outcome, "capacity"))
            case ("join", index):
                gone = sorted(set(h.nodes) - live)
                node = gone[int(index) % len(gone)] if gone and int(index) % 2 else f"j{index}"  # type: ignore[call-overload]
                h.feed(NodeJoined(h.now, node))
                h.assigned.setdefault(node, h.machine.from_digest)
                live.add(node)
                peak = max(peak, len(live))
            case ("leave", index):
                nodes = sorted(live)
                if nodes:
                    node = nodes[int(index) % len(nodes)]  # type: ignore[call-overload]
                    h.feed(NodeLeft(h.now, node))
                    live.discard(node)
            case ("bake", seconds):
                for _ in range(int(seconds)):  # type: ignore[call-overload]
                    h.ack(nodes=h.on_new())
                    h.tick()
            case ("reload",):
                h.reload()
            case (kind,):
                operator_events: dict[str, Event] = {
                    "pause": Pause(h.now, "op", "look"),
                    "resume": Resume(h.now, "op"),
                    "rollback": Rollback(h.now, "op", "undo"),
                    "abort": Abort(h.now, "op", "stop"),
                }
                event = operator_events[str(kind)]
                try:
                    h.feed(event)
                except InvalidTransitionError:
                    assert h.machine.to_dict() == before, "a refused event changed nothing"

        assert h.machine.live_nodes == live
        if isinstance(h.machine.state, Baking | Paused):
            waves_seen.add(h.machine.state.wave)
        exposed = h.on_new()
        bound = _bound(h.machine.state, policy, peak, len(live))
        assert len(exposed) <= bound, (h.machine.state, len(exposed), bound)
        assert len(exposed) == len(h.machine.exposed())
        new_assigns = h.assigns[assigns_before:]
        assert all(a.node_ids for a in new_assigns)
        if any(entry.action == "gate_fail" for entry in h.audit[audit_before:]):
            assert isinstance(h.machine.state, RollingBack | RolledBack)
            assert not any(a.digest == NEW for a in new_assigns)
        if isinstance(h.machine.state, RollingBack | RolledBack | Aborted):
            rolled_back = True
        if rolled_back:
            assert not any(a.digest == NEW for a in new_assigns), "nothing moves forward again"
        if was_finished:
            assert h.machine.state == state_before, "terminal states are final"
        assert isinstance(_reassign(new_assigns), dict)
    hypothesis.event(f"ended {state_name(h.machine.state)}")
    hypothesis.event(f"furthest wave {max((w for w in waves_seen), default=-1)}")
    restored = RolloutMachine.from_dict(json.loads(json.dumps(h.machine.to_dict())))
    assert restored.to_dict() == h.machine.to_dict()


def _reassign(assigns: list[Assign]) -> dict[str, str]:
    """The last digest each node was told to serve in one step: a node is never told two
    different digests by the same event."""
    told: dict[str, str] = {}
    for assign in assigns:
        for node in assign.node_ids:
            assert told.get(node, assign.digest) == assign.digest
            told[node] = assign.digest
    return told
