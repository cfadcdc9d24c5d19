"""The rollout state machine, event by event."""

from __future__ import annotations

import json

import pytest

from failsmall.rollout import (
    EXPEDITED,
    LOGIC,
    Abort,
    Aborted,
    Applied,
    ApplyOutcome,
    Assign,
    Baking,
    Command,
    Completed,
    EmptySelectionError,
    Event,
    InvalidTransitionError,
    NodeJoined,
    NodeLeft,
    Pause,
    Paused,
    Resume,
    Rollback,
    RolledBack,
    RollingBack,
    RolloutBook,
    RolloutConflictError,
    RolloutMachine,
    Start,
    StateFormatError,
    Tick,
    command_from_dict,
    event_from_dict,
    event_to_dict,
    fleet_order,
    state_name,
)
from tests.rollout.harness import NEW, OLD, Harness


def bake(
    h: Harness,
    seconds: float,
    *,
    requests: int = 100,
    new_5xx: float = 0.002,
    silent: frozenset[str] = frozenset(),
) -> None:
    for _ in range(round(seconds)):
        h.tick(requests=requests, new_5xx=new_5xx, silent=silent)


def test_start_assigns_the_canary_only() -> None:
    h = Harness(200)
    step = h.start()
    canary = fleet_order(h.nodes, "salt")[:2]
    assert step.state == Baking(0, 0.0)
    assert [c for c in step.commands if isinstance(c, Assign)] == [Assign(tuple(canary), NEW)]
    assert h.actions() == ["start", "enter_wave"]
    assert h.machine.exposure_limit() == 2


def test_healthy_rollout_goes_wave_by_wave_to_completion() -> None:
    h = Harness(100)
    h.start()
    sizes = []
    while not h.machine.finished:
        h.ack()
        h.tick()
        sizes.append(len(h.on_new()))
        assert h.now < 60
    assert isinstance(h.machine.state, Completed)
    assert sorted(set(sizes)) == [1, 10, 50, 100]
    assert h.now == 20.0
    assert h.actions().count("gate_pass") == 4
    assert h.on_new() == set(h.nodes)


def test_bad_canary_is_rolled_back_at_once_and_nobody_else_gets_it() -> None:
    h = Harness(100)
    h.start()
    canary = h.on_new()
    h.ack()
    step = h.tick(new_blocked=1.0)
    assert isinstance(step.state, RollingBack)
    assert step.state.by == "gate"
    assert "block+challenge rate 100.00%" in step.state.reason
    assert Assign(tuple(sorted(canary)), OLD) in step.commands
    assert h.on_new() == set()
    assert h.machine.ever_exposed() == canary
    for node in canary:
        h.feed(Applied(h.now, node, OLD, ApplyOutcome.ACK))
    assert isinstance(h.machine.state, RolledBack)
    assert h.actions()[-3:] == ["gate_fail", "rollback", "rolled_back"]
    assert all(a.digest == OLD or set(a.node_ids) <= canary for a in h.assigns)


@pytest.mark.parametrize("outcome", [ApplyOutcome.NACK, ApplyOutcome.POISONED])
def test_a_refusal_or_crash_loop_stops_the_rollout_without_waiting(outcome: ApplyOutcome) -> None:
    h = Harness(100)
    h.start()
    h.ack(outcome)
    assert isinstance(h.machine.state, RollingBack)
    assert "refused" in h.machine.state.reason or "quarantined it" in h.machine.state.reason


def test_a_poisoned_digest_in_a_health_sample_fails_the_gate() -> None:
    h = Harness(10)
    h.start()
    (canary,) = h.on_new()
    from failsmall.rollout import HealthSample

    h.feed(Tick(1.0, (HealthSample(canary, OLD, 1.0, requests=5, poisoned=(NEW,)),)))
    assert isinstance(h.machine.state, RollingBack)


def test_gate_fail_stops_a_later_wave_too() -> None:
    h = Harness(100)
    h.start()
    while len(h.on_new()) < 50:
        h.ack()
        h.tick()
    exposed = h.on_new()
    h.tick(new_5xx=0.3)
    assert isinstance(h.machine.state, RollingBack)
    assert h.assigns[-1] == Assign(tuple(sorted(exposed)), OLD)
    h.tick(new_5xx=0.3)
    assert len(h.on_new()) == 0


def test_inconclusive_extends_then_pauses_for_a_person() -> None:
    h = Harness(100)
    h.start()
    bake(h, 5, requests=0)
    assert h.machine.state == Baking(0, 0.0, extensions=1, extended_at=5.0)
    bake(h, 5, requests=0)
    assert h.machine.state == Baking(0, 0.0, extensions=2, extended_at=10.0)
    bake(h, 5, requests=0)
    assert isinstance(h.machine.state, Paused)
    assert h.machine.state.by == "gate"
    assert "only 0 requests" in h.machine.state.reason
    assert h.actions().count("bake_extended") == 2
    bake(h, 30)
    assert isinstance(h.machine.state, Paused), "a paused rollout never promotes by itself"
    assert len(h.on_new()) == 1
    h.feed(Resume(h.now, "bob"))
    assert h.machine.state == Baking(0, h.now)
    bake(h, 5)
    assert len(h.on_new()) == 10


def test_late_ticks_after_an_outage_extend_once_per_bake_period() -> None:
    """A control plane that was down for minutes wakes up past the bake's end: the gate is
    inconclusive (no samples came in), and that grants one extension, a whole bake period
    from now, instead of burning every extension on consecutive ticks and pausing."""
    h = Harness(100)
    h.start()
    h.tick(dt=300.0, requests=0)
    assert h.machine.state == Baking(0, 0.0, extensions=1, extended_at=300.0)
    for _ in range(3):
        h.tick(requests=0)
    assert isinstance(h.machine.state, Baking), "one late tick must not exhaust the extensions"
    assert h.actions().count("bake_extended") == 1
    bake(h, 5)
    assert len(h.on_new()) == 10, "traffic after the outage lets the canary pass"


def test_a_silent_canary_never_passes() -> None:
    h = Harness(100)
    h.start()
    canary = frozenset(h.on_new())
    bake(h, 15, silent=canary)
    assert isinstance(h.machine.state, Paused)
    assert "reported on the new bundle" in h.machine.state.reason


def test_pause_resume_abort_and_rollback_by_hand() -> None:
    h = Harness(100)
    h.start()
    h.ack()
    h.feed(Pause(h.now, "carol", "investigating latency"))
    assert h.machine.state == Paused(0, 0.0, "carol", "investigating latency")
    bake(h, 10)
    assert len(h.on_new()) == 1
    h.feed(Resume(h.now, "carol"))
    bake(h, 5)
    assert len(h.on_new()) == 10
    h.feed(Rollback(h.now, "carol", "customer report"))
    assert isinstance(h.machine.state, RollingBack)
    assert h.audit[-1].actor == "carol"
    assert h.audit[-1].reason == "customer report"
    assert h.on_new() == set()

    g = Harness(100)
    g.start()
    g.feed(Abort(g.now, "dave", "wrong bundle"))
    assert g.machine.state == Aborted(0.0, "dave", "wrong bundle")
    assert g.on_new() == set()
    assert g.machine.finished


def test_invalid_operator_events_raise_and_change_nothing() -> None:
    h = Harness(20)
    with pytest.raises(InvalidTransitionError, match="only a baking rollout can be paused"):
        h.feed(Pause(0, "x", "y"))
    with pytest.raises(InvalidTransitionError, match="abort it instead"):
        h.feed(Rollback(0, "x", "y"))
    h.start()
    before = h.machine.to_dict()
    refused: list[Event] = [Start(1, "x"), Resume(1, "x")]
    for event in refused:
        with pytest.raises(InvalidTransitionError):
            h.feed(event)
    assert h.machine.to_dict() == before
    h.feed(Rollback(1, "x", "y"))
    refused = [Pause(2, "x", "y"), Abort(2, "x", "y"), Rollback(2, "x", "y")]
    for event in refused:
        with pytest.raises(InvalidTransitionError):
            h.feed(event)


def test_rollback_waits_for_confirmation_then_times_out() -> None:
    h = Harness(100)
    h.start()
    h.ack()
    bake(h, 5)
    returned = h.on_new()
    h.feed(Rollback(h.now, "erin", "drill"))
    some = sorted(returned)[:4]
    for node in some:
        h.feed(Applied(h.now, node, OLD, ApplyOutcome.ACK))
    assert isinstance(h.machine.state, RollingBack)
    h.feed(NodeLeft(h.now, sorted(returned)[4]))
    h.feed(Tick(h.now + 29, ()))
    assert isinstance(h.machine.state, RollingBack)
    h.feed(Tick(h.now + 30, ()))
    assert isinstance(h.machine.state, RolledBack)
    assert len(h.audit[-1].details["unconfirmed"]) == len(returned) - 5


def test_health_on_the_old_bundle_confirms_a_rollback() -> None:
    h = Harness(100)
    h.start()
    h.ack()
    h.feed(Rollback(h.now, "erin", "drill"))
    h.tick()
    assert isinstance(h.machine.state, RolledBack)
    assert h.audit[-1].reason == "every returned node confirmed the last good bundle"


def test_joining_nodes_get_the_last_good_bundle_unless_in_a_promoted_wave() -> None:
    h = Harness(100)
    h.start()
    h.ack()
    order = fleet_order([*h.nodes, *(f"j{i:03d}" for i in range(200))], "salt")
    joiners = [n for n in order if n.startswith("j")]
    first = joiners[0]
    h.feed(NodeJoined(h.now, first))
    assert h.assigned[first] == OLD, "no wave is promoted during the canary"
    bake(h, 5)
    assert isinstance(h.machine.state, Baking) and h.machine.state.wave == 1
    for node in joiners[1:40]:
        live = [*h.machine.live_nodes, node]
        canary = fleet_order(live, "salt")[: LOGIC.waves[0].size(len(live))]
        room = LOGIC.waves[1].size(max(len(live), 100)) - len(h.on_new())
        h.feed(NodeJoined(h.now, node))
        expected = NEW if node in canary and room > 0 else OLD
        assert h.assigned[node] == expected
        assert len(h.on_new()) <= h.machine.exposure_limit()


def test_joiner_in_a_promoted_wave_gets_the_new_bundle() -> None:
    h = Harness(300)
    h.start()
    h.ack()
    bake(h, 5)
    bake(h, 5)
    assert h.machine.state == Baking(2, 10.0)
    candidates = [f"j{i}" for i in range(2000)]
    order = fleet_order([*h.nodes, *candidates], "salt")
    early = next(n for n in order[:10] if n.startswith("j"))
    h.feed(NodeLeft(h.now, sorted(h.on_new())[0]))
    h.feed(NodeJoined(h.now, early))
    assert h.assigned[early] == NEW
    late = next(n for n in reversed(order) if n.startswith("j"))
    h.feed(NodeJoined(h.now, late))
    assert h.assigned[late] == OLD


def test_final_wave_passes_on_the_last_baseline_and_sweeps_late_joiners() -> None:
    h = Harness(100)
    h.start()
    for _ in range(3):
        h.ack()
        bake(h, 5)
    assert isinstance(h.machine.state, Baking) and h.machine.state.wave == 3
    h.feed(NodeJoined(h.now, "late"))
    late_in_promoted = "late" in fleet_order(h.machine.live_nodes, "salt")[:51]
    assert h.assigned["late"] == (NEW if late_in_promoted else OLD)
    h.ack()
    bake(h, 5)
    assert isinstance(h.machine.state, Completed)
    assert h.assigned["late"] == NEW


def test_a_wave_that_adds_no_node_is_skipped() -> None:
    h = Harness(5)
    h.start()
    h.ack()
    bake(h, 5)
    assert h.actions().count("skip_wave") == 1
    assert isinstance(h.machine.state, Baking) and h.machine.state.wave == 2


def test_single_node_fleet_completes_with_absolute_thresholds() -> None:
    h = Harness(1, policy=EXPEDITED)
    h.start()
    h.ack()
    while not h.machine.finished:
        h.tick()
    assert isinstance(h.machine.state, Completed)
    bad = Harness(1, policy=EXPEDITED)
    bad.start()
    bad.ack()
    bad.tick(new_5xx=0.5)
    assert isinstance(bad.machine.state, RollingBack)


def test_everyone_leaving_pauses_instead_of_promoting() -> None:
    h = Harness(10)
    h.start()
    for node in h.nodes:
        h.feed(NodeLeft(h.now, node))
    bake(h, 15)
    assert isinstance(h.machine.state, Paused)
    h.feed(Resume(h.now, "x"))
    assert isinstance(h.machine.state, Paused)
    assert "no live node" in h.machine.state.reason


def test_empty_selections_never_mean_everyone() -> None:
    with pytest.raises(EmptySelectionError):
        Assign((), NEW)
    with pytest.raises(EmptySelectionError, match="at least one registered node"):
        RolloutMachine.create(
            rollout_id="r", from_digest=OLD, to_digest=NEW, policy=LOGIC, salt="s", nodes=[]
        )
    with pytest.raises(InvalidTransitionError, match="already on"):
        RolloutMachine.create(
            rollout_id="r", from_digest=OLD, to_digest=OLD, policy=LOGIC, salt="s", nodes=["a"]
        )


def test_restart_mid_rollout_resumes_identically() -> None:
    a, b = Harness(100), Harness(100)
    for h in (a, b):
        h.start()
        h.ack()
        bake(h, 7)
    b.reload()
    assert b.machine.to_dict() == a.machine.to_dict()
    for h in (a, b):
        h.ack()
        bake(h, 3)
        h.tick(new_5xx=0.2)
    assert a.audit == b.audit
    assert a.assigns == b.assigns
    assert state_name(b.machine.state) == "rolling_back"


def test_events_commands_and_states_round_trip_through_json() -> None:
    h = Harness(30)
    events: list[Event] = [
        Start(0, "a"),
        Applied(0.5, "n001", NEW, ApplyOutcome.NACK, "too big"),
        Pause(1, "a", "why"),
        Resume(2, "a"),
        NodeJoined(3, "x"),
        NodeLeft(4, "x"),
        Abort(5, "a", "why"),
        Rollback(6, "a", "why"),
    ]
    h.start()
    h.tick()
    events.append(Tick(h.now, ()))
    for event in events:
        assert event_from_dict(json.loads(json.dumps(event_to_dict(event)))) == event
    commands: list[Command] = [*h.assigns, *h.audit]
    for command in commands:
        assert command_from_dict(json.loads(json.dumps(command.to_dict()))) == command
    with pytest.raises(StateFormatError, match="unknown rollout event type 'explode'"):
        event_from_dict({"type": "explode"})
    with pytest.raises(StateFormatError, match="malformed Pause"):
        event_from_dict({"type": "pause", "now": 1})
    with pytest.raises(StateFormatError, match="format mismatch"):
        RolloutMachine.from_dict({"state": {}})


def test_one_rollout_at_a_time() -> None:
    book = RolloutBook("edge").begin("r1")
    with pytest.raises(RolloutConflictError, match="r1 is still active"):
        book.begin("r2")
    with pytest.raises(RolloutConflictError, match="not the active rollout"):
        book.finish("r2")
    done = book.finish("r1")
    assert done.begin("r2").active == "r2"
    assert RolloutBook.from_dict(book.to_dict()) == book
