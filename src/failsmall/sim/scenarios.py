"""Named scenarios, each with the properties it must hold.

| scenario       | what happens                                                        |
|----------------|---------------------------------------------------------------------|
| good           | a harmless logic change rolls out wave by wave and completes        |
| bad-canary     | a WAF rule that blocks everyone is caught at the canary, rolled back |
| fault-abort    | a bundle that aborts half the requests with 5xx, same fate          |
| capacity-nack  | a bundle needing more feature slots than nodes have is refused      |
| crash-loop     | a bundle the canary crash-loops on is quarantined and rolled back   |
| killswitch     | a rule disabled by an override goes out with the expedited policy   |
| flapping       | a feature file generator alternates good and doubled files          |
| inconclusive   | no traffic: the gate extends the bake, then pauses for a person     |
| partition      | 5% of the fleet is cut off during a good rollout, then heals        |
| churn          | 5% of the nodes leave and as many new ones join during a rollout    |
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from failsmall.rollout import EXPEDITED, policy_named
from failsmall.sim import bundles
from failsmall.sim.behaviour import HEALTHY
from failsmall.sim.faults import FAULTS, Fault
from failsmall.sim.figures import figures
from failsmall.sim.report import Check, RolloutRecord, ScenarioResult
from failsmall.sim.world import SimSettings, World

RESTORE_TARGET_S = 15.0


class UnknownScenarioError(Exception):
    """A scenario name that is not one of `SCENARIOS`."""


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named scenario: what it shows and how to run it."""

    name: str
    description: str
    run: Callable[[World], tuple[list[RolloutRecord], list[Check]]]


def run_scenario(
    name: str,
    settings: SimSettings,
    progress: Callable[[float], None] | None = None,
) -> ScenarioResult:
    """Run scenario `name` on a fresh fleet. Deterministic for a given seed.

    `progress`, if given, is called with the virtual time after every health report round.
    """
    scenario = SCENARIOS.get(name)
    if scenario is None:
        known = ", ".join(SCENARIOS)
        raise UnknownScenarioError(f"no scenario named {name!r}; choose one of {known}")
    world = World(settings, bundles.site(1), "v1")
    if progress is not None:
        world.on_report = progress
    records, checks = scenario.run(world)
    world.close_timeline()
    world.traffic.advance(world.now)
    checks += [
        Check(
            f"{r.label}: never more nodes assigned than the wave allowed",
            r.limit_breaches == 0 and r.max_assigned_seen == r.max_assigned,
            f"peak {r.max_assigned_seen} assigned, {r.limit_breaches} breaches",
        )
        for r in records
    ]
    return ScenarioResult(
        scenario=name,
        description=scenario.description,
        nodes=settings.nodes,
        seed=settings.seed,
        rollouts=tuple(records),
        timeline=tuple(world.timeline),
        checks=tuple(checks),
        audit_entries=len(world.audit),
        events=world.events,
        figures=figures(
            records,
            world.traffic,
            world.failed_share_of,
            world.nodes_that_served,
            world.widest_skew,
        ),
        labels=tuple(world.labels.values()),
    )


def _completes(record: RolloutRecord, world: World) -> list[Check]:
    on_new = world.serving().get(record.label, 0)
    reachable = sum(1 for node in world.nodes.values() if not node.partitioned)
    return [
        Check("completed", record.final_state == "completed", record.final_state),
        Check(
            "every reachable node serves it",
            on_new >= reachable,
            f"{on_new} of {len(world.nodes)} nodes ({reachable} reachable)",
        ),
        Check(
            "canary went first, alone",
            0 < record.canary_size <= policy_named(record.policy).waves[0].size(len(world.nodes)),
            f"canary of {record.canary_size} node(s)",
        ),
    ]


def _stopped_at_canary(record: RolloutRecord, world: World, *, may_run: bool) -> list[Check]:
    checks = [
        Check("rolled back", record.final_state == "rolled_back", record.final_state),
        Check(
            "only the canary wave was ever assigned it",
            record.ever_assigned == record.canary_size,
            f"{record.ever_assigned} assigned, canary {record.canary_size}",
        ),
        Check(
            "no node serves it at the end",
            world.serving().get(record.label, 0) == 0,
            f"{world.serving().get(record.label, 0)} nodes",
        ),
        Check(
            f"fleet back on the last good bundle within {RESTORE_TARGET_S:g} s",
            0 <= record.time_to_restore_s <= RESTORE_TARGET_S,
            f"{record.time_to_restore_s:.2f} s",
        ),
    ]
    if not may_run:
        checks.append(Check("no node ever served it", record.ever_ran == 0, f"{record.ever_ran}"))
    return checks


def _good(world: World) -> tuple[list[RolloutRecord], list[Check]]:
    record = world.roll_out(bundles.harmless_rule(bundles.site(1)), "v2", HEALTHY)
    return [record], [
        Check("classified logic", record.change_class == "logic", record.change_class),
        *_completes(record, world),
    ]


def _bad(fault: Fault) -> Callable[[World], tuple[list[RolloutRecord], list[Check]]]:
    def run(world: World) -> tuple[list[RolloutRecord], list[Check]]:
        world.idle_until(3.0)
        record = world.roll_out(fault.change(bundles.site(1)), fault.label, fault.behaviour)
        return [record], _stopped_at_canary(record, world, may_run=True)

    return run


def _capacity_nack(world: World) -> tuple[list[RolloutRecord], list[Check]]:
    world.idle_until(3.0)
    bad = bundles.new_feature_file(bundles.site(1), 2, doubled=True)
    record = world.roll_out(bad, "v2-doubled", HEALTHY)
    return [record], _stopped_at_canary(record, world, may_run=False)


def _killswitch(world: World) -> tuple[list[RolloutRecord], list[Check]]:
    base = bundles.site(1)
    change = bundles.killswitch(base, "run-managed", "managed ruleset misfires on large bodies")
    record = world.roll_out(change, "v1+ks", HEALTHY)
    return [record], [
        Check("classified killswitch", record.change_class == "killswitch", record.change_class),
        Check("expedited policy", record.policy == EXPEDITED.name, record.policy),
        *_completes(record, world),
    ]


def _flapping(world: World) -> tuple[list[RolloutRecord], list[Check]]:
    records: list[RolloutRecord] = []
    cycle_s = 30.0
    for cycle in range(6):
        world.idle_until(5.0 + cycle * cycle_s)
        doubled = cycle % 2 == 1
        change = bundles.new_feature_file(bundles.site(1), cycle + 2, doubled=doubled)
        label = f"ff{cycle + 2}" + ("-doubled" if doubled else "")
        records.append(world.roll_out(change, label, HEALTHY))
    bad = [r for r in records if r.label.endswith("-doubled")]
    good = [r for r in records if not r.label.endswith("-doubled")]
    return records, [
        Check(
            "every good file completed",
            all(r.final_state == "completed" for r in good),
            ", ".join(f"{r.label}: {r.final_state}" for r in good),
        ),
        Check(
            "every doubled file rolled back",
            all(r.final_state == "rolled_back" for r in bad),
            ", ".join(f"{r.label}: {r.final_state}" for r in bad),
        ),
        Check(
            "no engine ever ran a doubled file",
            all(r.ever_ran == 0 for r in bad),
            ", ".join(f"{r.label}: {r.ever_ran}" for r in bad),
        ),
        Check(
            "doubled files never went past the canary",
            all(r.ever_assigned == r.canary_size for r in bad),
            ", ".join(f"{r.label}: {r.ever_assigned}" for r in bad),
        ),
        Check(
            "the fleet ends on the last good file",
            world.serving().get(good[-1].label, 0) == len(world.nodes),
            str(world.serving()),
        ),
    ]


def _inconclusive(world: World) -> tuple[list[RolloutRecord], list[Check]]:
    world.traffic_scale = 0.0
    record = world.roll_out(bundles.harmless_rule(bundles.site(1)), "v2", HEALTHY)
    machine_paused = record.final_state == "paused"
    return [record], [
        Check("paused for a person", machine_paused, f"{record.final_state}: {record.reason}"),
        Check(
            "never promoted past the canary",
            record.ever_assigned == record.canary_size,
            f"{record.ever_assigned} assigned, canary {record.canary_size}",
        ),
    ]


def _partition(world: World) -> tuple[list[RolloutRecord], list[Check]]:
    cut = world.partition(0.05, at=2.0, heal_at=60.0)
    record = world.roll_out(bundles.harmless_rule(bundles.site(1)), "v2", HEALTHY)
    cut_on_new = sum(1 for node_id in cut if world.nodes[node_id].running == record.digest)
    world.idle_until(65.0)
    after = world.serving().get(record.label, 0)
    return [record], [
        Check("completed despite the partition", record.final_state == "completed",
              f"{record.final_state}; {len(cut)} nodes cut off"),
        Check("cut-off nodes got nothing new while cut off", cut_on_new <= record.canary_size,
              f"{cut_on_new} of {len(cut)} on the new bundle (canary {record.canary_size})"),
        Check("partitioned nodes caught up after healing", after == len(world.nodes),
              f"{after} of {len(world.nodes)}"),
    ]  # fmt: skip


def _churn(world: World) -> tuple[list[RolloutRecord], list[Check]]:
    share = max(1, len(world.nodes) // 20)
    world.churn(joins=share, leaves=share, start=0.5, end=25.0)
    record = world.roll_out(bundles.harmless_rule(bundles.site(1)), "v2", HEALTHY)
    world.idle_until(30.0)
    on_new = world.serving().get(record.label, 0)
    joined = sum(1 for node_id in world.nodes if node_id.startswith("edge-j"))
    return [record], [
        Check("completed despite churn", record.final_state == "completed", record.final_state),
        Check(
            "every node present serves it, joiners included",
            on_new == len(world.nodes),
            f"{on_new} of {len(world.nodes)} ({joined} joined, {share} left)",
        ),
    ]


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("good", "a harmless logic change completes wave by wave", _good),
        Scenario(
            "bad-canary",
            "a WAF rule that blocks every request is stopped at the canary",
            _bad(FAULTS["bad-canary"]),
        ),
        Scenario(
            "fault-abort",
            "a bundle that aborts half the requests with 5xx is stopped at the canary",
            _bad(FAULTS["fault-abort"]),
        ),
        Scenario(
            "capacity-nack",
            "a feature file larger than the nodes' capacity is refused by the canary",
            _capacity_nack,
        ),
        Scenario(
            "crash-loop",
            "a bundle the canary crash-loops on is quarantined and rolled back",
            _bad(FAULTS["crash-loop"]),
        ),
        Scenario("killswitch", "a killswitch goes out canary-first, expedited", _killswitch),
        Scenario(
            "flapping",
            "a feature file generator alternates good and doubled files (2025-11-18)",
            _flapping,
        ),
        Scenario(
            "inconclusive",
            "no traffic: the bake is extended, then the rollout pauses",
            _inconclusive,
        ),
        Scenario("partition", "5% of the fleet is cut off during a rollout", _partition),
        Scenario("churn", "5% of the nodes leave and as many join during a rollout", _churn),
    )
}
