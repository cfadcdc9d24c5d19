"""A minimal driver for the rollout machine: executes its commands against a dict of node
assignments and produces health samples, so tests read as sequences of events."""

from __future__ import annotations

import json

from failsmall.rollout import (
    LOGIC,
    Applied,
    ApplyOutcome,
    Assign,
    AuditEntry,
    Event,
    HealthSample,
    Policy,
    RolloutMachine,
    Start,
    Step,
    Tick,
)

OLD = "sha256:old"
NEW = "sha256:new"


class Harness:
    """A fleet of `size` nodes on OLD, and a rollout of NEW over it."""

    def __init__(self, size: int = 100, policy: Policy = LOGIC, salt: str = "salt") -> None:
        self.nodes = [f"n{i:03d}" for i in range(size)]
        self.machine = RolloutMachine.create(
            rollout_id="r1",
            from_digest=OLD,
            to_digest=NEW,
            policy=policy,
            salt=salt,
            nodes=self.nodes,
        )
        self.assigned = dict.fromkeys(self.nodes, OLD)
        self.audit: list[AuditEntry] = []
        self.assigns: list[Assign] = []
        self.now = 0.0

    def feed(self, event: Event) -> Step:
        step = self.machine.handle(event)
        for command in step.commands:
            match command:
                case Assign(node_ids=node_ids, digest=digest):
                    self.assigns.append(command)
                    for node in node_ids:
                        self.assigned[node] = digest
                case AuditEntry():
                    self.audit.append(command)
        return step

    def start(self) -> Step:
        return self.feed(Start(self.now, "alice"))

    def on_new(self) -> set[str]:
        live = self.machine.live_nodes
        return {n for n, d in self.assigned.items() if d == NEW and n in live}

    def ack(self, outcome: ApplyOutcome = ApplyOutcome.ACK, nodes: set[str] | None = None) -> None:
        for node in sorted(nodes if nodes is not None else self.on_new()):
            self.feed(Applied(self.now, node, NEW, outcome, "capacity"))

    def tick(
        self,
        dt: float = 1.0,
        *,
        requests: int = 100,
        new_5xx: float = 0.002,
        new_blocked: float = 0.02,
        silent: frozenset[str] = frozenset(),
    ) -> Step:
        """Advance `dt` seconds; every live node reports on the bundle it is assigned."""
        self.now += dt
        samples = []
        for node in sorted(self.machine.live_nodes - silent):
            digest = self.assigned.get(node, OLD)
            bad = digest == NEW
            samples.append(
                HealthSample(
                    node_id=node,
                    digest=digest,
                    at=self.now,
                    requests=requests,
                    responses_5xx=round(requests * (new_5xx if bad else 0.002)),
                    blocked=round(requests * (new_blocked if bad else 0.02)),
                    p99_ms=40.0,
                )
            )
        return self.feed(Tick(self.now, tuple(samples)))

    def actions(self) -> list[str]:
        return [entry.action for entry in self.audit]

    def reload(self) -> None:
        """Persist the machine through JSON and resume from it, as after a restart."""
        data = json.loads(json.dumps(self.machine.to_dict()))
        self.machine = RolloutMachine.from_dict(data)
