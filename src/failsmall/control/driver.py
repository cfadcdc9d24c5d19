"""The rollout driver: the asyncio shell around the pure `RolloutMachine`.

It feeds the machine a `Tick` every `tick_s` with the health samples received since the last
one, an `Applied` per apply report, `NodeJoined`/`NodeLeft` from the registry and the operator's
`Pause`/`Resume`/`Abort`/`Rollback`; it executes the returned commands in order (`Assign` moves
channel pointers through the transport, `AuditEntry` appends to the audit log) and persists the
machine after every step, so a restarted control plane resumes the rollout where it was.

An assignment the transport cannot make right now is kept and retried on every tick, so a bus
outage delays a wave (or a rollback) but never loses it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, assert_never

from failsmall.control.audit import AuditLog
from failsmall.control.fleet import FleetRegistry, health_sample
from failsmall.control.store import ControlStore, StoredRollout
from failsmall.rollout import (
    Abort,
    Applied,
    ApplyOutcome,
    Assign,
    AuditEntry,
    Completed,
    EmptySelectionError,
    Event,
    HealthSample,
    NoChangeError,
    NodeJoined,
    NodeLeft,
    Pause,
    Policy,
    Resume,
    Rollback,
    RolloutBook,
    RolloutMachine,
    Start,
    Tick,
    event_to_dict,
    fleet_order,
    state_name,
)
from failsmall.transport.base import ApplyReport, Assignment, HealthReport, TransportError
from failsmall.transport.control import ControlChannel
from failsmall.transport.stopping import cancel_and_wait

LAST_GOOD = "last_good_digest"
BOOK = "rollout_book"
SALT = "fleet_salt"
FLEET = "default"

log = logging.getLogger(__name__)

OperatorEvent = Pause | Resume | Abort | Rollback


@dataclass(frozen=True, slots=True)
class Deferred:
    """A pointer move the transport could not make now; it is retried on every tick."""

    node_id: str
    digest: str
    error: str


class NoActiveRolloutError(Exception):
    """An operator command was sent while no rollout is running."""


class RolloutDriver:
    """Runs the fleet's (single) active rollout and keeps nodes on the last good bundle."""

    def __init__(
        self,
        *,
        store: ControlStore,
        audit: AuditLog,
        channel: ControlChannel,
        fleet: FleetRegistry,
        clock: Callable[[], float] = time.time,
        tick_s: float = 1.0,
    ) -> None:
        self._store = store
        self._audit = audit
        self._channel = channel
        self._fleet = fleet
        self._clock = clock
        self.tick_s = tick_s
        self._lock = asyncio.Lock()
        self._samples: list[HealthSample] = []
        self._unsent: dict[str, str] = {}
        self._active: RolloutMachine | None = None
        self._ticker: asyncio.Task[None] | None = None
        raw_book = store.get_value(BOOK)
        self._book = RolloutBook.from_dict(json.loads(raw_book)) if raw_book else RolloutBook(FLEET)
        self.salt = store.get_value(SALT)
        if not self.salt:
            self.salt = secrets.token_hex(8)
            store.set_value(SALT, self.salt)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Resume the active rollout (if the store has one) and start ticking."""
        if self._book.active:
            row = self._store.rollout(self._book.active)
            if row is not None:
                self._active = RolloutMachine.from_dict(row.machine)
                self._audit.append(
                    self._clock(), "control", "resume_after_restart",
                    f"control plane restarted; rollout {row.id} resumes in {row.state}",
                    {"rollout_id": row.id},
                )  # fmt: skip
        self._ticker = asyncio.create_task(self._tick_forever())

    async def stop(self) -> None:
        if self._ticker is not None:
            await cancel_and_wait(self._ticker)
            self._ticker = None

    # -- queries ----------------------------------------------------------------------------

    @property
    def last_good(self) -> str:
        return self._store.get_value(LAST_GOOD)

    @property
    def deferred(self) -> dict[str, str]:
        """Pointer moves (node -> digest) waiting for the transport to come back."""
        return dict(self._unsent)

    @property
    def active(self) -> RolloutMachine | None:
        """The running rollout, if there is one."""
        return self._active

    def waves(self, machine: RolloutMachine) -> list[dict[str, Any]]:
        """Each wave of a rollout with its members, for status displays."""
        live = machine.live_nodes
        order = fleet_order(live, machine.salt)
        exposed = machine.exposed()
        return [
            {
                "name": wave.name,
                "bake_s": wave.bake_s,
                "size": wave.size(len(live)),
                "members": order[: wave.size(len(live))],
                "on_new": sorted(set(order[: wave.size(len(live))]) & exposed),
            }
            for wave in machine.policy.waves
        ]

    # -- commands ---------------------------------------------------------------------------

    def preflight(self, to_digest: str) -> None:
        """Raise what `begin` would raise, without changing anything: a rollout still active
        (RolloutConflictError), the fleet already on `to_digest` (NoChangeError) or no live node
        to be the canary (EmptySelectionError)."""
        self._book.begin("preflight")
        if to_digest == self.last_good:
            raise NoChangeError(
                f"the fleet is already on {to_digest}; there is nothing to roll out"
            )
        if not self._fleet.live_nodes():
            raise EmptySelectionError(
                "no live node has reported yet; start the nodes before pushing"
            )

    async def begin(
        self, *, to_digest: str, change_class: str, policy: Policy, by: str
    ) -> RolloutMachine:
        """Start rolling out `to_digest`. Raises RolloutConflictError, InvalidTransitionError
        (already on it) or EmptySelectionError (no live node)."""
        async with self._lock:
            now = self._clock()
            rollout_id = time.strftime("r%Y%m%d-%H%M%S-", time.gmtime(now)) + secrets.token_hex(3)
            book = self._book.begin(rollout_id)
            machine = RolloutMachine.create(
                rollout_id=rollout_id,
                from_digest=self.last_good,
                to_digest=to_digest,
                policy=policy,
                salt=self.salt,
                nodes=self._fleet.live_nodes(),
            )
            with self._store.transaction():
                self._store.save_rollout(self._row(machine, change_class, by, now))
                self._store.set_value(BOOK, json.dumps(book.to_dict()))
            self._book = book
            self._active = machine
            await self._handle(machine, Start(now, by))
            return machine

    async def operate(self, event: OperatorEvent) -> RolloutMachine:
        """Pause, resume, abort or roll back the active rollout. Raises NoActiveRolloutError or
        InvalidTransitionError (which changes nothing)."""
        async with self._lock:
            machine = self._active
            if machine is None:
                raise NoActiveRolloutError(
                    "no rollout is running; `failsmall status` shows the fleet"
                )
            await self._handle(machine, event)
            return machine

    async def on_apply(self, report: ApplyReport) -> None:
        now = self._clock()
        joined = self._fleet.heard_apply(report, now)
        async with self._lock:
            if joined:
                await self._joined(report.node_id, now)
            if self._active is not None:
                outcome = ApplyOutcome(report.result.value)
                event = Applied(now, report.node_id, report.digest, outcome, report.error)
                await self._handle(self._active, event)

    async def on_health(self, report: HealthReport) -> None:
        now = self._clock()
        joined = self._fleet.heard_health(report, now)
        self._samples.append(health_sample(report))
        if joined:
            async with self._lock:
                await self._joined(report.node_id, now)

    async def tick(self) -> None:
        """One tick: declare silent nodes gone, feed the health samples, retry assignments."""
        async with self._lock:
            now = self._clock()
            await self._flush_unsent()
            for node_id in self._fleet.sweep(now):
                if self._active is not None:
                    await self._handle(self._active, NodeLeft(now, node_id))
            samples, self._samples = tuple(self._samples), []
            if self._active is not None:
                await self._handle(self._active, Tick(now, samples))

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            try:
                await self.tick()
            except TransportError as exc:
                log.warning("rollout tick could not reach the transport: %s", exc)

    # -- the loop body --------------------------------------------------------------------

    async def _joined(self, node_id: str, now: float) -> None:
        if self._active is not None:
            await self._handle(self._active, NodeJoined(now, node_id))
            return
        good = self.last_good
        current = self._store.assignments().get(node_id)
        if good and (current is None or current.digest != good):
            await self._assign(node_id, good)

    async def _handle(self, machine: RolloutMachine, event: Event) -> None:
        """Feed one event, execute its commands, and record everything in one transaction."""
        step = machine.handle(event)
        moved: dict[str, Assignment] = {}
        audits: list[AuditEntry] = []
        for command in step.commands:
            match command:
                case Assign(node_ids=node_ids, digest=digest):
                    if not digest:
                        audits.append(_no_last_good(machine, node_ids, event.now))
                        continue
                    for node_id in node_ids:
                        match await self._move(node_id, digest):
                            case Assignment() as assignment:
                                moved[node_id] = assignment
                            case Deferred():
                                pass
                case AuditEntry():
                    audits.append(command)
                case _:
                    assert_never(command)
        with self._store.transaction():
            if not (isinstance(event, Tick) and not event.samples):
                self._store.add_rollout_event(machine.rollout_id, event.now, _brief(event))
            for node_id, assignment in moved.items():
                self._store.save_assignment(node_id, assignment)
            for entry in audits:
                details = {"rollout_id": entry.rollout_id, **entry.details}
                self._audit.append_in_transaction(
                    entry.at, entry.actor, entry.action, entry.reason, details
                )
            row = self._store.rollout(machine.rollout_id)
            change_class = row.change_class if row else ""
            created_by = row.created_by if row else ""
            self._store.save_rollout(self._row(machine, change_class, created_by, event.now))
            if machine.finished:
                self._book = self._book.finish(machine.rollout_id)
                self._store.set_value(BOOK, json.dumps(self._book.to_dict()))
                if isinstance(machine.state, Completed):
                    self._store.set_value(LAST_GOOD, machine.to_digest)
        if machine.finished:
            self._active = None

    async def _move(self, node_id: str, digest: str) -> Assignment | Deferred:
        """Move one pointer; on a transport failure keep it for the next tick."""
        try:
            assignment = await self._channel.assign(node_id, digest)
        except TransportError as exc:
            log.warning("assigning %s to %s failed, will retry: %s", digest, node_id, exc)
            self._unsent[node_id] = digest
            return Deferred(node_id, digest, str(exc))
        self._unsent.pop(node_id, None)
        return assignment

    async def _assign(self, node_id: str, digest: str) -> None:
        match await self._move(node_id, digest):
            case Assignment() as assignment:
                self._store.save_assignment(node_id, assignment)
            case Deferred():
                pass

    async def _flush_unsent(self) -> None:
        for node_id, digest in list(self._unsent.items()):
            await self._assign(node_id, digest)

    def _row(
        self, machine: RolloutMachine, change_class: str, by: str, now: float
    ) -> StoredRollout:
        existing = self._store.rollout(machine.rollout_id)
        return StoredRollout(
            id=machine.rollout_id,
            from_digest=machine.from_digest,
            to_digest=machine.to_digest,
            policy=machine.policy.name,
            change_class=change_class,
            state=state_name(machine.state),
            machine=machine.to_dict(),
            created_by=by,
            created_at=existing.created_at if existing else now,
            updated_at=now,
        )


def _no_last_good(machine: RolloutMachine, node_ids: tuple[str, ...], now: float) -> AuditEntry:
    return AuditEntry(
        at=now,
        rollout_id=machine.rollout_id,
        actor="rollout",
        action="no_last_good",
        reason="there is no earlier bundle to send these nodes back to; they keep what they "
        "serve until a good bundle is pushed",
        details={"nodes": list(node_ids)},
    )


def _brief(event: Event) -> dict[str, Any]:
    data = event_to_dict(event)
    if isinstance(event, Tick):
        data["samples"] = len(event.samples)
    return data
