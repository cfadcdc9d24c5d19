"""The rollout driver: the asyncio shell around the pure `RolloutMachine`.

It feeds the machine a `Tick` every `tick_s` with the health samples received since the last
one, an `Applied` per apply report, `NodeJoined`/`NodeLeft` from the registry and the operator's
`Pause`/`Resume`/`Abort`/`Rollback`. It records the returned commands with the machine in one
store transaction: an `Assign` becomes desired state for its nodes (`ControlStore.set_desired`),
an `AuditEntry` an audit row. It never talks to the transport: the reconciler
(`control/reconcile.py`) moves the pointers, woken through `wake` after every step. A restarted
control plane therefore resumes the rollout where it was and still makes every move decided
before the restart; a rollback of N nodes is one stored step.

The ticker runs under supervision (`failsmall.supervise`): a tick that fails is logged within
budget, retried with backoff and shown as degraded health.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Callable
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
from failsmall.supervise import LoopHealth, SupervisedLoop
from failsmall.transport.base import ApplyReport, HealthReport
from failsmall.transport.stopping import cancel_and_wait

LAST_GOOD = "last_good_digest"
BOOK = "rollout_book"
SALT = "fleet_salt"
FLEET = "default"

log = logging.getLogger(__name__)

OperatorEvent = Pause | Resume | Abort | Rollback


class NoActiveRolloutError(Exception):
    """An operator command was sent while no rollout is running."""


class RolloutDriver:
    """Runs the fleet's (single) active rollout and keeps nodes on the last good bundle."""

    def __init__(
        self,
        *,
        store: ControlStore,
        audit: AuditLog,
        wake: Callable[[], None],
        fleet: FleetRegistry,
        clock: Callable[[], float] = time.time,
        tick_s: float = 1.0,
    ) -> None:
        self._store = store
        self._audit = audit
        self._wake = wake
        self._fleet = fleet
        self._clock = clock
        self.tick_s = tick_s
        self._lock = asyncio.Lock()
        self._samples: list[HealthSample] = []
        self._active: RolloutMachine | None = None
        self._loop = SupervisedLoop("rollout ticker", self._tick_after_sleep, log)
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
        self._ticker = asyncio.create_task(self._loop.run())

    async def stop(self) -> None:
        if self._ticker is not None:
            await cancel_and_wait(self._ticker)
            self._ticker = None

    # -- queries ----------------------------------------------------------------------------

    @property
    def last_good(self) -> str:
        return self._store.get_value(LAST_GOOD)

    def health(self) -> LoopHealth:
        """The ticker's health: degraded while its ticks fail."""
        return self._loop.health

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
        """One tick: declare silent nodes gone and feed the health samples."""
        async with self._lock:
            now = self._clock()
            for node_id in self._fleet.sweep(now):
                if self._active is not None:
                    await self._handle(self._active, NodeLeft(now, node_id))
            samples, self._samples = tuple(self._samples), []
            if self._active is not None:
                await self._handle(self._active, Tick(now, samples))

    async def _tick_after_sleep(self) -> None:
        await asyncio.sleep(self.tick_s)
        await self.tick()

    # -- the loop body --------------------------------------------------------------------

    async def _joined(self, node_id: str, now: float) -> None:
        if self._active is not None:
            await self._handle(self._active, NodeJoined(now, node_id))
            return
        good = self.last_good
        if good and self._store.desired().get(node_id) != good:
            self._store.set_desired([node_id], good)
            self._wake()

    async def _handle(self, machine: RolloutMachine, event: Event) -> None:
        """Feed one event and record the machine, its desired moves and its audit entries in
        one transaction; then wake the reconciler to make the moves."""
        step = machine.handle(event)
        moves: list[Assign] = []
        audits: list[AuditEntry] = []
        for command in step.commands:
            match command:
                case Assign(node_ids=node_ids, digest=digest):
                    if digest:
                        moves.append(command)
                    else:
                        audits.append(_no_last_good(machine, node_ids, event.now))
                case AuditEntry():
                    audits.append(command)
                case _:
                    assert_never(command)
        try:
            self._record(machine, event, moves, audits)
        except BaseException:
            # Not stored, so not decided: the machine goes back to its stored state.
            self._active = self._stored_machine(machine.rollout_id)
            raise
        if machine.finished:
            self._active = None
        if moves:
            self._wake()

    def _record(
        self,
        machine: RolloutMachine,
        event: Event,
        moves: list[Assign],
        audits: list[AuditEntry],
    ) -> None:
        """Store one step: the event, desired moves, audit entries and the machine itself."""
        book = self._book.finish(machine.rollout_id) if machine.finished else self._book
        with self._store.transaction():
            if not (isinstance(event, Tick) and not event.samples):
                self._store.add_rollout_event(machine.rollout_id, event.now, _brief(event))
            for move in moves:
                self._store.set_desired(move.node_ids, move.digest)
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
                self._store.set_value(BOOK, json.dumps(book.to_dict()))
                if isinstance(machine.state, Completed):
                    self._store.set_value(LAST_GOOD, machine.to_digest)
        self._book = book

    def _stored_machine(self, rollout_id: str) -> RolloutMachine | None:
        row = self._store.rollout(rollout_id)
        return RolloutMachine.from_dict(row.machine) if row is not None else None

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
