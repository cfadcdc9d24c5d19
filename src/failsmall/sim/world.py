"""The simulated fleet: virtual nodes, a virtual clock, and the real rollout machine.

Every node applies assignments after a random (log-normal) delay, validates the bundle against
its own capacities (refusing with a NACK, as a real node does), crash-loops on a bundle whose
behaviour says so until its guard quarantines it and boots its last-known-good (reporting
nothing while it crashes), and reports health every second for the bundle it serves. Some
nodes can be cut off by a network partition: they keep serving, receive nothing and report
nothing until it heals. Nodes can leave and new ones join. The control plane's side is the
real `RolloutMachine`, ticked every second with the reports received. Users' requests are
counted by the traffic model (`sim.traffic`): each node serves `requests_per_node_s` and fails
the share its bundle's behaviour says.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import assert_never

from failsmall.model import Bundle, Capacities, bundle_digest, capacity_problems
from failsmall.rollout import (
    Aborted,
    Applied,
    ApplyOutcome,
    Assign,
    AuditEntry,
    Baking,
    ChangeClass,
    Command,
    Completed,
    Event,
    HealthSample,
    NodeJoined,
    NodeLeft,
    Paused,
    Pending,
    Policy,
    RolledBack,
    RollingBack,
    RolloutBook,
    RolloutMachine,
    Start,
    Step,
    Tick,
    classify,
    policy_for,
    state_name,
)
from failsmall.sim.behaviour import HEALTHY, Behaviour
from failsmall.sim.clock import EventQueue
from failsmall.sim.report import RolloutRecord, TimelineRow
from failsmall.sim.traffic import Failing, Traffic


@dataclass(frozen=True, slots=True)
class SimSettings:
    """Fleet-wide knobs. Times are virtual seconds."""

    nodes: int = 1000
    seed: int = 1
    requests_per_node_s: float = 50.0
    apply_median_s: float = 0.2
    apply_sigma: float = 0.6
    crash_quarantine_s: float = 3.0
    report_interval_s: float = 1.0
    fleet_salt: str = "fleet-1"
    capacities: Capacities = field(default_factory=Capacities)


@dataclass
class SimNode:
    """One virtual edge node."""

    node_id: str
    running: str
    lkg: str
    assigned: str
    partitioned: bool = False
    crashing: bool = False


@dataclass(frozen=True, slots=True)
class _ApplyArrives:
    node_id: str
    digest: str


@dataclass(frozen=True, slots=True)
class _CrashQuarantined:
    node_id: str
    digest: str


@dataclass(frozen=True, slots=True)
class _ReportRound:
    pass


@dataclass(frozen=True, slots=True)
class _Partition:
    node_ids: tuple[str, ...]
    healed: bool


@dataclass(frozen=True, slots=True)
class _Churn:
    joins: bool


_Happening = _ApplyArrives | _CrashQuarantined | _ReportRound | _Partition | _Churn


class SimulationError(Exception):
    """A scenario asked the simulator for something it cannot do."""


class World:
    """A fleet of `settings.nodes` virtual nodes, all serving `initial` at time 0."""

    def __init__(self, settings: SimSettings, initial: Bundle, label: str) -> None:
        if settings.nodes < 1:
            raise SimulationError("a simulated fleet needs at least one node")
        self.settings = settings
        self.rng = random.Random(settings.seed)
        self.queue: EventQueue[_Happening] = EventQueue()
        digest = bundle_digest(initial)
        self.bundles: dict[str, Bundle] = {digest: initial}
        self.behaviours: dict[str, Behaviour] = {digest: HEALTHY}
        self.labels: dict[str, str] = {digest: label}
        width = len(str(settings.nodes - 1))
        self.nodes: dict[str, SimNode] = {
            f"edge-{i:0{width}d}": SimNode(f"edge-{i:0{width}d}", digest, digest, digest)
            for i in range(settings.nodes)
        }
        self.last_good = digest
        self.book = RolloutBook("sim")
        self.audit: list[AuditEntry] = []
        self.timeline: list[TimelineRow] = []
        self.events = 0
        self.traffic = Traffic(settings.requests_per_node_s, len(self.nodes))
        self._traffic_scale = 1.0
        self._widest_skew = 1
        self._everywhere_at: dict[str, float] = {}
        self.on_report: Callable[[float], None] = _ignore
        self._machine: RolloutMachine | None = None
        self._assigned: Counter[str] = Counter({digest: len(self.nodes)})
        self._peak_nodes = len(self.nodes)
        self._max_assigned = 0
        self._limit_breaches = 0
        self._joined = 0
        self._ever_ran: dict[str, set[str]] = {digest: set(self.nodes)}
        self._running_now: Counter[str] = Counter({digest: len(self.nodes)})
        self._max_running: Counter[str] = Counter({digest: len(self.nodes)})
        self._cleared_at: dict[str, float] = {}
        self._rollouts = 0
        self.queue.schedule(settings.report_interval_s, _ReportRound())

    @property
    def now(self) -> float:
        return self.queue.now

    @property
    def traffic_scale(self) -> float:
        """Users' traffic as a multiple of `requests_per_node_s` (0: no traffic at all)."""
        return self._traffic_scale

    @traffic_scale.setter
    def traffic_scale(self, scale: float) -> None:
        self._traffic_scale = scale
        self.traffic.set_rate(self.now, self.settings.requests_per_node_s * scale)

    @property
    def widest_skew(self) -> int:
        """The most distinct bundles served at one instant so far."""
        return self._widest_skew

    def everywhere_at(self, digest: str) -> float:
        """When every node first served `digest`; -1 if that never happened."""
        return self._everywhere_at.get(digest, -1.0)

    def nodes_that_served(self, digests: set[str]) -> int:
        """How many nodes ever served any of `digests`."""
        return len(set().union(*(self._ever_ran.get(d, set()) for d in digests)))

    def failed_share_of(self, digest: str) -> float:
        """The share of requests a node serving `digest` fails (crash-looping included)."""
        return self.behaviours[digest].failed_share

    def failing_of(self, digest: str) -> Failing:
        """What a node serving `digest` fails and loses, for the traffic model."""
        behaviour = self.behaviours[digest]
        return Failing(behaviour.failed_share, behaviour.lost_share)

    # -- scenario controls ---------------------------------------------------------------

    def partition(self, fraction: float, at: float, heal_at: float) -> tuple[str, ...]:
        """Cut `fraction` of the nodes off from `at` until `heal_at`; returns them."""
        count = max(1, round(fraction * len(self.nodes)))
        chosen = tuple(sorted(self.rng.sample(sorted(self.nodes), count)))
        self.queue.schedule(at, _Partition(chosen, healed=False))
        self.queue.schedule(heal_at, _Partition(chosen, healed=True))
        return chosen

    def churn(self, joins: int, leaves: int, start: float, end: float) -> None:
        """Between `start` and `end`, `joins` new nodes join and `leaves` nodes leave, at
        uniformly random times."""
        for joining, count in ((True, joins), (False, leaves)):
            for _ in range(count):
                self.queue.schedule(self.rng.uniform(start, end), _Churn(joining))

    def idle_until(self, at: float) -> None:
        """Let time pass with no rollout started."""
        self._run_until(lambda: False, at)

    def roll_out(
        self,
        bundle: Bundle,
        label: str,
        behaviour: Behaviour,
        *,
        policy: Policy | None = None,
        max_duration_s: float = 600.0,
    ) -> RolloutRecord:
        """Push `bundle` over the last good one and run until the rollout settles.

        Settled means completed, or rolled back/aborted with no node serving the new bundle, or
        paused (a person is needed), or `max_duration_s` passed.
        """
        old = self.bundles[self.last_good]
        classification = classify(old, bundle)
        chosen = policy if policy is not None else policy_for(classification.change_class)
        digest = bundle_digest(bundle)
        self.bundles[digest] = bundle
        self.behaviours[digest] = behaviour
        self.labels[digest] = label
        self._rollouts += 1
        rollout_id = f"r{self._rollouts}"
        self.book = self.book.begin(rollout_id)
        machine = RolloutMachine.create(
            rollout_id=rollout_id,
            from_digest=self.last_good,
            to_digest=digest,
            policy=chosen,
            salt=self.settings.fleet_salt,
            nodes=list(self.nodes),
        )
        self._machine = machine
        self._peak_nodes = len(self.nodes)
        self._max_assigned = 0
        self._limit_breaches = 0
        started = self.now
        audit_start = len(self.audit)
        self.traffic.advance(started)
        failed_before = self.traffic.failed
        self._handle(Start(started, by="sim"))
        canary = len(machine.ever_exposed())

        def settled() -> bool:
            if machine.finished:
                return state_name(machine.state) == "completed" or self._running_now[digest] == 0
            return state_name(machine.state) == "paused"

        self._run_until(settled, started + max_duration_s)
        self._machine = None
        if machine.finished:
            self.book = self.book.finish(rollout_id)
            if state_name(machine.state) == "completed":
                self.last_good = digest
        entries = self.audit[audit_start:]
        detected = [e.at for e in entries if e.action in {"gate_fail", "rollback", "abort"}]
        self.traffic.advance(self.now)
        ended = [e.at for e in entries if e.action in {"complete", "rolled_back", "abort"}]
        reason = ""
        if isinstance(machine.state, RolledBack):
            reason = machine.state.reason
        elif entries:
            reason = entries[-1].reason
        restored = -1.0
        if detected or state_name(machine.state) in {"rolled_back", "aborted"}:
            restored = self._cleared_at.get(digest, detected[0] if detected else self.now)
        return RolloutRecord(
            label=label,
            digest=digest,
            change_class=classification.change_class.value,
            policy=chosen.name,
            final_state=state_name(machine.state),
            reason=reason,
            started_at=started,
            finished_at=ended[-1] if ended else self.now,
            canary_size=canary,
            max_assigned=machine.max_exposed,
            ever_assigned=len(machine.ever_exposed()),
            max_running=self._max_running[digest],
            ever_ran=len(self._ever_ran.get(digest, ())),
            max_assigned_seen=self._max_assigned,
            limit_breaches=self._limit_breaches,
            detected_at=detected[0] if detected else -1.0,
            restored_at=restored,
            differences=_first(classification.describe(), 20),
            requests_failed=self.traffic.failed - failed_before,
        )

    def close_timeline(self) -> None:
        """Record the final mix of bundles, if it changed since the last report round."""
        serving = self.serving()
        if not self.timeline or self.timeline[-1].serving != serving:
            self.timeline.append(TimelineRow(round(self.now, 3), serving))

    def change_class_of(self, bundle: Bundle) -> ChangeClass:
        return classify(self.bundles[self.last_good], bundle).change_class

    def serving(self) -> dict[str, int]:
        """How many nodes serve each bundle, by label."""
        return {self.labels[d]: n for d, n in sorted(self._running_now.items()) if n}

    @property
    def machine(self) -> RolloutMachine | None:
        """The rollout in progress, if one is."""
        return self._machine

    # -- the event loop ------------------------------------------------------------------

    def _run_until(self, done: Callable[[], bool], deadline: float) -> None:
        """Process happenings in time order until `done()` or the clock would pass `deadline`.

        The queue is never empty: every report round schedules the next one.
        """
        while not done():
            if self.queue.next_at() > deadline:
                self.queue.now = deadline
                return
            happening = self.queue.pop()
            self.events += 1
            match happening:
                case _ApplyArrives():
                    self._apply(happening)
                case _CrashQuarantined():
                    self._quarantine(happening)
                case _ReportRound():
                    self._report_round()
                case _Partition():
                    self._set_partition(happening)
                case _Churn(joins=True):
                    self._join()
                case _Churn(joins=False):
                    self._leave()

    def _handle(self, event: Event) -> None:
        if self._machine is None:
            return
        step: Step = self._machine.handle(event)
        self._execute(step.commands)
        self._watch_exposure(self._machine)

    def _watch_exposure(self, machine: RolloutMachine) -> None:
        """Count, independently of the machine, the nodes assigned the new bundle against
        what the current wave allows (invariant 4)."""
        assigned = self._assigned[machine.to_digest]
        self._max_assigned = max(self._max_assigned, assigned)
        match machine.state:
            case Baking(wave=wave) | Paused(wave=wave):
                limit = machine.policy.waves[wave].size(self._peak_nodes)
            case Completed():
                limit = len(self.nodes)
            case Pending() | RollingBack() | RolledBack() | Aborted():
                limit = 0
            case _:
                assert_never(machine.state)
        if assigned > limit:
            self._limit_breaches += 1

    def _execute(self, commands: tuple[Command, ...]) -> None:
        for command in commands:
            match command:
                case Assign(node_ids=node_ids, digest=digest):
                    for node_id in node_ids:
                        node = self.nodes.get(node_id)
                        if node is None:
                            continue
                        self._assigned[node.assigned] -= 1
                        self._assigned[digest] += 1
                        node.assigned = digest
                        if not node.partitioned:
                            self._schedule_apply(node)
                case AuditEntry():
                    self.audit.append(command)

    def _schedule_apply(self, node: SimNode) -> None:
        delay = self.rng.lognormvariate(
            math.log(self.settings.apply_median_s), self.settings.apply_sigma
        )
        self.queue.schedule(self.now + delay, _ApplyArrives(node.node_id, node.assigned))

    def _apply(self, arrival: _ApplyArrives) -> None:
        node = self.nodes.get(arrival.node_id)
        digest = arrival.digest
        if node is None or node.partitioned or node.assigned != digest:
            return
        if node.running == digest and not node.crashing:
            self._handle(Applied(self.now, node.node_id, digest, ApplyOutcome.ACK))
            return
        problems = capacity_problems(self.bundles[digest], self.settings.capacities)
        if problems:
            self._handle(
                Applied(self.now, node.node_id, digest, ApplyOutcome.NACK, "; ".join(problems))
            )
            return
        self._serve(node, digest)
        if self.behaviours[digest].crashes:
            node.crashing = True
            self.queue.schedule(
                self.now + self.settings.crash_quarantine_s,
                _CrashQuarantined(node.node_id, digest),
            )
            return
        node.crashing = False
        node.lkg = digest
        self._handle(Applied(self.now, node.node_id, digest, ApplyOutcome.ACK))

    def _quarantine(self, crash: _CrashQuarantined) -> None:
        node = self.nodes.get(crash.node_id)
        if node is None or not (node.crashing and node.running == crash.digest):
            return
        node.crashing = False
        self._serve(node, node.lkg)
        if not node.partitioned:
            self._handle(Applied(self.now, node.node_id, crash.digest, ApplyOutcome.POISONED))

    def _serve(self, node: SimNode, digest: str) -> None:
        previous = node.running
        if previous == digest:
            return
        self._running_now[previous] -= 1
        if self._running_now[previous] == 0:
            self._cleared_at[previous] = self.now
        node.running = digest
        self.traffic.swap(self.now, self.failing_of(previous), self.failing_of(digest))
        self._running_now[digest] += 1
        if self._running_now[digest] == len(self.nodes):
            self._everywhere_at.setdefault(digest, self.now)
        self._widest_skew = max(self._widest_skew, sum(1 for n in self._running_now.values() if n))
        self._max_running[digest] = max(self._max_running[digest], self._running_now[digest])
        self._ever_ran.setdefault(digest, set()).add(node.node_id)

    def _set_partition(self, partition: _Partition) -> None:
        for node_id in partition.node_ids:
            node = self.nodes.get(node_id)
            if node is None:
                continue
            node.partitioned = not partition.healed
            if partition.healed and (node.assigned != node.running or node.crashing):
                self._schedule_apply(node)

    def _join(self) -> None:
        self._joined += 1
        node = SimNode(f"edge-j{self._joined:04d}", self.last_good, self.last_good, self.last_good)
        self.nodes[node.node_id] = node
        self._peak_nodes = max(self._peak_nodes, len(self.nodes))
        self._assigned[node.assigned] += 1
        self._running_now[node.running] += 1
        self.traffic.join(self.now, self.failing_of(node.running))
        self._ever_ran.setdefault(node.running, set()).add(node.node_id)
        self._handle(NodeJoined(self.now, node.node_id))

    def _leave(self) -> None:
        if len(self.nodes) <= 1:
            return
        node = self.nodes.pop(self.rng.choice(sorted(self.nodes)))
        self._assigned[node.assigned] -= 1
        self._running_now[node.running] -= 1
        self.traffic.leave(self.now, self.failing_of(node.running))
        if self._running_now[node.running] == 0:
            self._cleared_at[node.running] = self.now
        self._handle(NodeLeft(self.now, node.node_id))

    def _report_round(self) -> None:
        self.timeline.append(TimelineRow(round(self.now, 3), self.serving()))
        self.on_report(self.now)
        if self._machine is not None:
            samples = tuple(
                self._sample(node)
                for node in self.nodes.values()
                if not (node.partitioned or node.crashing)
            )
            self._handle(Tick(self.now, samples))
        self.queue.schedule(self.now + self.settings.report_interval_s, _ReportRound())

    def _sample(self, node: SimNode) -> HealthSample:
        behaviour = self.behaviours[node.running]
        rate = self.settings.requests_per_node_s * self.traffic_scale
        requests = _count(self.rng, rate * self.settings.report_interval_s)
        return HealthSample(
            node_id=node.node_id,
            digest=node.running,
            at=self.now,
            requests=requests,
            responses_5xx=_binomial(self.rng, requests, behaviour.error_rate),
            blocked=_binomial(self.rng, requests, behaviour.block_rate),
            module_errors=_binomial(self.rng, requests, behaviour.module_error_rate),
            p99_ms=max(1.0, self.rng.gauss(behaviour.p99_ms, behaviour.p99_ms * 0.1)),
        )


def _first(lines: list[str], count: int) -> tuple[str, ...]:
    if len(lines) <= count:
        return tuple(lines)
    return (*lines[:count], f"... and {len(lines) - count} more")


def _ignore(now: float) -> None:
    """The default progress hook: nothing to report to."""


def _count(rng: random.Random, mean: float) -> int:
    """A Poisson-like count with this mean (normal approximation, never negative)."""
    if mean <= 0:
        return 0
    return max(0, round(rng.gauss(mean, math.sqrt(mean))))


def _binomial(rng: random.Random, trials: int, p: float) -> int:
    if trials == 0 or p <= 0:
        return 0
    if p >= 1:
        return trials
    mean = trials * p
    spread = math.sqrt(trials * p * (1 - p))
    return min(trials, max(0, round(rng.gauss(mean, spread))))
