"""The rollout state machine: one bundle moving through a fleet, wave by wave.

`RolloutMachine.handle(event)` is the only way the rollout changes. It never reads a clock or
does I/O: time comes in on each event, and what must happen comes out as commands. A driver
(the control plane, or the simulator) runs this loop::

    machine = RolloutMachine.create(rollout_id=..., from_digest=last_good, to_digest=new,
                                    policy=policy_for(change_class), salt=fleet_salt,
                                    nodes=registered_node_ids)
    step = machine.handle(Start(now, by="alice"))
    while True:
        for command in step.commands:      # execute in order
            Assign  -> move the channel pointer of each node to command.digest
            AuditEntry -> append to the audit log
        persist machine.to_dict()          # resume with RolloutMachine.from_dict after a restart
        if machine.finished: break
        step = machine.handle(next event)  # Tick every ~1 s with the health samples received,
                                           # Applied per node report, NodeJoined/NodeLeft,
                                           # and operator events Pause/Resume/Abort/Rollback

States and transitions (events not listed leave the state unchanged; an operator event not
listed raises `InvalidTransitionError` and changes nothing):

| state          | event                                 | next        | commands                 |
|----------------|---------------------------------------|-------------|--------------------------|
| pending        | Start                                 | baking(0)   | Assign canary->new       |
| pending        | Start, no live node                   | paused(0)   |                          |
| pending        | Abort                                 | aborted     |                          |
| baking(k)      | Tick, gate fail (at any time)         | rolling_back| Assign exposed->old      |
| baking(k)      | Applied nack/poisoned of new bundle   | rolling_back| Assign exposed->old      |
| baking(k)      | Tick, bake over, pass, k < last       | baking(k+1) | Assign wave k+1->new     |
| baking(last)   | Tick, bake over, pass                 | completed   | Assign late joiners->new |
| baking(k)      | pass, and wave k+1 adds no node       | baking(k+2) | (wave k+1 skipped)       |
| baking(k)      | Tick, bake over, inconclusive, e < max| baking(k)   | (bake extended)(3)       |
| baking(k)      | Tick, bake over, inconclusive, e = max| paused(k)   |                          |
| baking(k)      | NodeJoined                            | baking(k)   | Assign joiner (1)        |
| baking(k)      | Pause                                 | paused(k)   |                          |
| paused(k)      | Resume                                | baking(k)   | Assign missing members(2)|
| paused(k)      | Tick/Applied with failing evidence    | rolling_back| Assign exposed->old      |
| paused(k)      | NodeJoined                            | paused(k)   | Assign joiner (1)        |
| baking, paused | Rollback                              | rolling_back| Assign exposed->old      |
| baking, paused | Abort                                 | aborted     | Assign exposed->old      |
| rolling_back   | every returned node confirmed or left | rolled_back |                          |
| rolling_back   | Tick after policy.rollback_confirm_s  | rolled_back | (unconfirmed listed)     |
| rolling_back   | NodeJoined                            | rolling_back| Assign joiner->old       |

Every transition also emits an `AuditEntry` saying who decided and why.
(1) the joiner gets the new bundle only if the current wave has room and either its hash puts
it in a wave already promoted (k-1), or it had the new bundle before and is still in wave k (a
node that restarts keeps its place); otherwise it gets the last good bundle.
(2) members of wave k that joined while paused; the bake restarts from the resume.
(3) a new bake period of the wave's `bake_s`, counted from the tick that grants it.

"exposed" is every node assigned the new bundle, including nodes that have since left, so a
node that comes back finds its pointer on the last good bundle. Node confirmations: an ACK of
the old digest, or a health sample on it taken after the rollback began.

Invariant: at every moment the number of live nodes assigned the new bundle is at most
`policy.waves[k].size(peak_fleet)` for the current wave k, where `peak_fleet` is the largest
number of live nodes seen during this rollout (so nodes leaving never make a wave over-full
after the fact, and nodes joining widen it only in proportion to its fraction). `exposure_limit()`
returns that bound.

One rollout at a time per fleet is enforced by `RolloutBook` (see `book.py`), which the driver
consults before creating a machine.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, assert_never

from failsmall.rollout.commands import Assign, AuditEntry, Command
from failsmall.rollout.errors import EmptySelectionError, InvalidTransitionError, StateFormatError
from failsmall.rollout.events import (
    Abort,
    Applied,
    ApplyOutcome,
    Event,
    NodeJoined,
    NodeLeft,
    Pause,
    Resume,
    Rollback,
    Start,
    Tick,
)
from failsmall.rollout.gate import (
    GateFail,
    GateInconclusive,
    GateInput,
    GatePass,
    HealthSample,
    SideStats,
    evaluate_gate,
)
from failsmall.rollout.policy import Policy
from failsmall.rollout.states import (
    Aborted,
    Baking,
    Completed,
    Paused,
    Pending,
    RolledBack,
    RollingBack,
    RolloutState,
    is_terminal,
    state_from_dict,
    state_name,
    state_to_dict,
)
from failsmall.rollout.waves import fleet_order
from failsmall.rollout.window import BakeWindow

GATE = "gate"
SCHEDULER = "rollout"


@dataclass(frozen=True, slots=True)
class Step:
    """What one event did: the state after it and the commands to execute, in order."""

    state: RolloutState
    commands: tuple[Command, ...]


class RolloutMachine:
    """A staged, health-gated rollout of bundle `to_digest` over a fleet on `from_digest`.

    Build one with `create` (a new rollout) or `from_dict` (resume a persisted one), then
    feed it events with `handle`. See the module docstring for the transition table.
    """

    def __init__(
        self,
        *,
        rollout_id: str,
        from_digest: str,
        to_digest: str,
        policy: Policy,
        salt: str,
        live: set[str],
        state: RolloutState,
        peak_fleet: int,
        on_new: set[str],
        ever_new: set[str],
        acked: set[str],
        nacks: dict[str, str],
        poisoned: set[str],
        returning: set[str],
        baseline: SideStats,
        window: BakeWindow,
        max_exposed: int,
    ) -> None:
        self.rollout_id = rollout_id
        self.from_digest = from_digest
        self.to_digest = to_digest
        self.policy = policy
        self.salt = salt
        self.state: RolloutState = state
        self._live = live
        self._peak_fleet = peak_fleet
        self._on_new = on_new
        self._exposed_live = on_new & live
        self._ever_new = ever_new
        self._acked = acked
        self._nacks = nacks
        self._poisoned = poisoned
        self._returning = returning
        self._baseline = baseline
        self._window = window
        self._max_exposed = max_exposed
        self._out: list[Command] = []
        self._now = 0.0

    @classmethod
    def create(
        cls,
        *,
        rollout_id: str,
        from_digest: str,
        to_digest: str,
        policy: Policy,
        salt: str,
        nodes: set[str] | frozenset[str] | list[str] | tuple[str, ...],
    ) -> RolloutMachine:
        """A pending rollout over the fleet `nodes` (the live nodes at creation)."""
        if from_digest == to_digest:
            raise InvalidTransitionError(
                f"the fleet is already on {to_digest}; there is nothing to roll out"
            )
        live = set(nodes)
        if not live:
            raise EmptySelectionError(
                "a rollout needs at least one registered node to be its canary"
            )
        return cls(
            rollout_id=rollout_id,
            from_digest=from_digest,
            to_digest=to_digest,
            policy=policy,
            salt=salt,
            live=live,
            state=Pending(),
            peak_fleet=len(live),
            on_new=set(),
            ever_new=set(),
            acked=set(),
            nacks={},
            poisoned=set(),
            returning=set(),
            baseline=SideStats(),
            window=BakeWindow(),
            max_exposed=0,
        )

    # -- queries -------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """True in `completed`, `rolled_back` and `aborted`."""
        return is_terminal(self.state)

    @property
    def live_nodes(self) -> frozenset[str]:
        return frozenset(self._live)

    def exposed(self) -> frozenset[str]:
        """Live nodes currently assigned the new bundle."""
        return frozenset(self._exposed_live)

    def ever_exposed(self) -> frozenset[str]:
        """Every node that was ever assigned the new bundle during this rollout."""
        return frozenset(self._ever_new)

    @property
    def max_exposed(self) -> int:
        """The most live nodes that were on the new bundle at once."""
        return self._max_exposed

    def exposure_limit(self) -> int:
        """The most live nodes the current state allows on the new bundle (invariant 4)."""
        match self.state:
            case Baking(wave=wave) | Paused(wave=wave):
                return self.policy.waves[wave].size(self._peak_fleet)
            case Completed():
                return len(self._live)
            case Pending() | RollingBack() | RolledBack() | Aborted():
                return 0
            case _:
                assert_never(self.state)

    def summary(self) -> dict[str, Any]:
        """A JSON-ready view for status displays."""
        wave_name = ""
        match self.state:
            case Baking(wave=wave) | Paused(wave=wave):
                wave_name = self.policy.waves[wave].name
            case Pending() | RollingBack() | Completed() | RolledBack() | Aborted():
                pass
            case _:
                assert_never(self.state)
        return {
            "rollout_id": self.rollout_id,
            "state": state_name(self.state),
            "wave": wave_name,
            "policy": self.policy.name,
            "from_digest": self.from_digest,
            "to_digest": self.to_digest,
            "live_nodes": len(self._live),
            "exposed": len(self.exposed()),
            "exposure_limit": self.exposure_limit(),
            "acked": len(self._acked & self._on_new),
            "nacks": len(self._nacks),
            "poisoned": len(self._poisoned),
            "ever_exposed": len(self._ever_new),
        }

    # -- the transition function ----------------------------------------------------------

    def handle(self, event: Event) -> Step:
        """Apply one event. Raises `InvalidTransitionError` (changing nothing) for an
        operator event the current state does not accept."""
        previous_now, self._out, self._now = self._now, [], event.now
        try:
            self._dispatch(event)
        except InvalidTransitionError:
            self._now, self._out = previous_now, []
            raise
        self._max_exposed = max(self._max_exposed, len(self._exposed_live))
        commands, self._out = tuple(self._out), []
        return Step(self.state, commands)

    def _dispatch(self, event: Event) -> None:
        match event:
            case Start():
                self._on_start(event)
            case Tick():
                self._on_tick(event)
            case Applied():
                self._on_applied(event)
            case NodeJoined():
                self._on_joined(event)
            case NodeLeft():
                self._on_left(event)
            case Pause():
                self._on_pause(event)
            case Resume():
                self._on_resume(event)
            case Abort():
                self._on_abort(event)
            case Rollback():
                self._on_rollback(event)
            case _:
                assert_never(event)

    def _on_start(self, event: Start) -> None:
        if not isinstance(self.state, Pending):
            raise InvalidTransitionError(
                f"rollout {self.rollout_id} already started (it is {state_name(self.state)})"
            )
        self._audit(
            event.by,
            "start",
            f"roll out {self.to_digest} over {self.from_digest} with policy {self.policy.name}",
            waves=[w.name for w in self.policy.waves],
            nodes=len(self._live),
        )
        self._enter_wave(0, actor=event.by, resumed=False)

    def _on_tick(self, event: Tick) -> None:
        match self.state:
            case Baking() | Paused():
                self._ingest(event.samples)
                self._judge()
            case RollingBack(since=since):
                for sample in event.samples:
                    if sample.digest == self.from_digest and sample.at > since:
                        self._returning.discard(sample.node_id)
                self._maybe_rolled_back()
            case Pending() | Completed() | RolledBack() | Aborted():
                pass
            case _:
                assert_never(self.state)

    def _on_applied(self, event: Applied) -> None:
        match self.state:
            case Baking() | Paused():
                if event.digest != self.to_digest or event.node_id not in self._on_new:
                    return
                match event.outcome:
                    case ApplyOutcome.ACK:
                        self._acked.add(event.node_id)
                    case ApplyOutcome.NACK:
                        self._nacks[event.node_id] = event.error or "refused"
                    case ApplyOutcome.POISONED:
                        self._poisoned.add(event.node_id)
                    case _:
                        assert_never(event.outcome)
                self._judge()
            case RollingBack():
                if event.digest == self.from_digest and event.outcome is ApplyOutcome.ACK:
                    self._returning.discard(event.node_id)
                    self._maybe_rolled_back()
            case Pending() | Completed() | RolledBack() | Aborted():
                pass
            case _:
                assert_never(self.state)

    def _on_joined(self, event: NodeJoined) -> None:
        node = event.node_id
        self._live.add(node)
        if node in self._on_new:
            self._exposed_live.add(node)
        self._peak_fleet = max(self._peak_fleet, len(self._live))
        match self.state:
            case Baking(wave=wave) | Paused(wave=wave):
                room = self.exposure_limit() - len(self._exposed_live - {node})
                promoted = wave > 0 and node in self._members(wave - 1)
                kept = node in self._on_new and node in self._members(wave)
                if room > 0 and (promoted or kept):
                    self._assign_new([node])
                    target = self.to_digest
                else:
                    self._on_new.discard(node)
                    self._exposed_live.discard(node)
                    self._out.append(Assign((node,), self.from_digest))
                    target = self.from_digest
                self._audit(SCHEDULER, "node_joined", f"{node} joined; assigned {target}")
            case RollingBack():
                self._out.append(Assign((node,), self.from_digest))
            case Pending() | Completed() | RolledBack() | Aborted():
                pass
            case _:
                assert_never(self.state)

    def _on_left(self, event: NodeLeft) -> None:
        self._live.discard(event.node_id)
        self._exposed_live.discard(event.node_id)
        match self.state:
            case RollingBack():
                self._returning.discard(event.node_id)
                self._maybe_rolled_back()
            case Pending() | Baking() | Paused() | Completed() | RolledBack() | Aborted():
                pass
            case _:
                assert_never(self.state)

    def _on_pause(self, event: Pause) -> None:
        match self.state:
            case Baking(wave=wave):
                self.state = Paused(wave, event.now, event.by, event.why)
                self._audit(event.by, "pause", event.why, wave=self.policy.waves[wave].name)
            case Pending() | Paused() | RollingBack() | Completed() | RolledBack() | Aborted():
                raise InvalidTransitionError(
                    f"cannot pause rollout {self.rollout_id}: it is {state_name(self.state)}, "
                    "and only a baking rollout can be paused"
                )
            case _:
                assert_never(self.state)

    def _on_resume(self, event: Resume) -> None:
        match self.state:
            case Paused(wave=wave):
                self._audit(
                    event.by, "resume", "resumed by hand", wave=self.policy.waves[wave].name
                )
                self._enter_wave(wave, actor=event.by, resumed=True)
            case Pending() | Baking() | RollingBack() | Completed() | RolledBack() | Aborted():
                raise InvalidTransitionError(
                    f"cannot resume rollout {self.rollout_id}: it is {state_name(self.state)}, "
                    "not paused"
                )
            case _:
                assert_never(self.state)

    def _on_abort(self, event: Abort) -> None:
        match self.state:
            case Pending() | Baking() | Paused():
                self._withdraw()
                self.state = Aborted(event.now, event.by, event.why)
                self._audit(event.by, "abort", event.why)
            case RollingBack() | Completed() | RolledBack() | Aborted():
                raise InvalidTransitionError(
                    f"cannot abort rollout {self.rollout_id}: it is {state_name(self.state)}"
                )
            case _:
                assert_never(self.state)

    def _on_rollback(self, event: Rollback) -> None:
        match self.state:
            case Baking() | Paused():
                self._roll_back(event.by, event.why)
            case Pending():
                raise InvalidTransitionError(
                    f"rollout {self.rollout_id} has not assigned anything yet; abort it instead"
                )
            case RollingBack() | Completed() | RolledBack() | Aborted():
                raise InvalidTransitionError(
                    f"cannot roll back rollout {self.rollout_id}: it is {state_name(self.state)}"
                )
            case _:
                assert_never(self.state)

    # -- steps ------------------------------------------------------------------------

    def _members(self, wave: int) -> set[str]:
        size = self.policy.waves[wave].size(len(self._live))
        return set(fleet_order(self._live, self.salt)[:size])

    def _enter_wave(self, wave: int, *, actor: str, resumed: bool) -> None:
        """Assign wave `wave`'s missing members (within the wave's room) and start its bake.

        A wave that adds no node is promoted at once, except on resume, which always bakes.
        """
        spec = self.policy.waves[wave]
        order = fleet_order(self._live, self.salt)[: spec.size(len(self._live))]
        room = spec.size(self._peak_fleet) - len(self._exposed_live)
        targets = [node for node in order if node not in self._on_new][: max(room, 0)]
        if targets:
            self._assign_new(targets)
        if not self._exposed_live:
            self.state = Paused(wave, self._now, SCHEDULER, "no live node to assign the wave to")
            self._audit(SCHEDULER, "pause", "no live node to assign the wave to", wave=spec.name)
            return
        if not targets and not resumed:
            self._audit(SCHEDULER, "skip_wave", "the wave adds no node", wave=spec.name)
            self._promote(wave)
            return
        self._window = BakeWindow()
        self.state = Baking(wave, self._now)
        self._audit(
            actor,
            "enter_wave",
            f"wave {spec.name}: {len(targets)} node(s) assigned, baking {spec.bake_s:g} s",
            wave=spec.name,
            exposed=len(self._exposed_live),
            limit=spec.size(self._peak_fleet),
        )

    def _promote(self, wave: int) -> None:
        if wave + 1 < len(self.policy.waves):
            self._enter_wave(wave + 1, actor=SCHEDULER, resumed=False)
            return
        stragglers = sorted(self._live - self._on_new)
        if stragglers:
            self._assign_new(stragglers)
        self.state = Completed(self._now)
        self._audit(SCHEDULER, "complete", f"every node is on {self.to_digest}")

    def _assign_new(self, nodes: list[str]) -> None:
        self._on_new.update(nodes)
        self._exposed_live.update(node for node in nodes if node in self._live)
        self._ever_new.update(nodes)
        self._out.append(Assign(tuple(nodes), self.to_digest))

    def _withdraw(self) -> set[str]:
        """Point every node that has the new bundle back at the old one."""
        returned = set(self._on_new)
        if returned:
            self._out.append(Assign(tuple(sorted(returned)), self.from_digest))
        self._on_new.clear()
        self._exposed_live.clear()
        return returned

    def _roll_back(self, actor: str, why: str) -> None:
        returned = self._withdraw()
        self._returning = returned & self._live
        self.state = RollingBack(self._now, actor, why)
        self._audit(actor, "rollback", why, nodes=len(returned))
        self._maybe_rolled_back()

    def _maybe_rolled_back(self) -> None:
        match self.state:
            case RollingBack(since=since, reason=reason):
                timed_out = self._now - since >= self.policy.rollback_confirm_s
                if self._returning and not timed_out:
                    return
                unconfirmed = sorted(self._returning)
                self.state = RolledBack(self._now, reason)
                self._audit(
                    SCHEDULER,
                    "rolled_back",
                    "every returned node confirmed the last good bundle"
                    if not unconfirmed
                    else f"{len(unconfirmed)} node(s) did not confirm in time",
                    unconfirmed=unconfirmed[:20],
                )
            case Pending() | Baking() | Paused() | Completed() | RolledBack() | Aborted():
                pass
            case _:
                assert_never(self.state)

    def _ingest(self, samples: tuple[HealthSample, ...]) -> None:
        since = self._window_start()
        for sample in samples:
            node = sample.node_id
            if node not in self._live:
                continue
            if self.to_digest in sample.poisoned and node in self._ever_new:
                self._poisoned.add(node)
            if sample.at <= since:
                continue
            if sample.digest == self.to_digest and node in self._on_new:
                self._acked.add(node)
                self._window.add_new(sample)
            elif sample.digest == self.from_digest and node not in self._on_new:
                self._window.add_old(sample)

    def _window_start(self) -> float:
        match self.state:
            case Baking(since=since) | Paused(since=since):
                return since
            case Pending() | RollingBack() | Completed() | RolledBack() | Aborted():
                return self._now
            case _:
                assert_never(self.state)

    def _judge(self) -> None:
        """Consult the gate; act on a fail at once, on pass/inconclusive at the bake's end."""
        new, old = self._window.new, self._window.old
        baseline = old if old.requests else self._baseline
        verdict = evaluate_gate(
            self.policy.gate,
            GateInput(
                new=new,
                baseline=baseline,
                assigned=len(self._exposed_live),
                nacks=tuple(sorted(self._nacks)),
                poisoned=tuple(sorted(self._poisoned)),
            ),
        )
        match verdict:
            case GateFail(reasons=reasons):
                self._audit(GATE, "gate_fail", "; ".join(reasons))
                self._roll_back(GATE, "health gate failed: " + "; ".join(reasons))
                return
            case GatePass() | GateInconclusive():
                pass
            case _:
                assert_never(verdict)
        match self.state:
            case Baking(wave=wave, extensions=extensions) as baking:
                spec = self.policy.waves[wave]
                if self._now < baking.bake_ends(spec.bake_s):
                    return
                if old.requests >= self.policy.gate.min_requests:
                    self._baseline = old
                match verdict:
                    case GatePass(summary=summary):
                        self._audit(GATE, "gate_pass", summary, wave=spec.name)
                        self._promote(wave)
                    case GateInconclusive(reason=reason):
                        if extensions < self.policy.max_extensions:
                            self.state = replace(
                                baking, extensions=extensions + 1, extended_at=self._now
                            )
                            self._audit(
                                GATE, "bake_extended", reason, wave=spec.name,
                                extension=extensions + 1,
                            )  # fmt: skip
                        else:
                            self.state = Paused(wave, self._now, GATE, f"inconclusive: {reason}")
                            self._audit(GATE, "pause", f"inconclusive: {reason}", wave=spec.name)
                    case GateFail():
                        pass
                    case _:
                        assert_never(verdict)
            case Pending() | Paused() | RollingBack() | Completed() | RolledBack() | Aborted():
                pass
            case _:
                assert_never(self.state)

    def _audit(self, actor: str, action: str, reason: str, **details: Any) -> None:
        self._out.append(
            AuditEntry(
                at=self._now,
                rollout_id=self.rollout_id,
                actor=actor,
                action=action,
                reason=reason,
                details={"to_digest": self.to_digest, **details},
            )
        )

    # -- persistence ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Everything needed to resume this rollout, JSON-ready."""
        return {
            "format": "failsmall-rollout/1",
            "rollout_id": self.rollout_id,
            "from_digest": self.from_digest,
            "to_digest": self.to_digest,
            "policy": self.policy.to_dict(),
            "salt": self.salt,
            "state": state_to_dict(self.state),
            "live": sorted(self._live),
            "peak_fleet": self._peak_fleet,
            "on_new": sorted(self._on_new),
            "ever_new": sorted(self._ever_new),
            "acked": sorted(self._acked),
            "nacks": dict(sorted(self._nacks.items())),
            "poisoned": sorted(self._poisoned),
            "returning": sorted(self._returning),
            "baseline": self._baseline.to_dict(),
            "window": self._window.to_dict(),
            "max_exposed": self._max_exposed,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RolloutMachine:
        """Resume a rollout persisted with `to_dict`. Raises `StateFormatError`."""
        if data.get("format") != "failsmall-rollout/1":
            raise StateFormatError("not a persisted failsmall rollout (format mismatch)")
        try:
            return cls(
                rollout_id=str(data["rollout_id"]),
                from_digest=str(data["from_digest"]),
                to_digest=str(data["to_digest"]),
                policy=Policy.from_dict(data["policy"]),
                salt=str(data["salt"]),
                live=set(data["live"]),
                state=state_from_dict(data["state"]),
                peak_fleet=int(data["peak_fleet"]),
                on_new=set(data["on_new"]),
                ever_new=set(data["ever_new"]),
                acked=set(data["acked"]),
                nacks={str(k): str(v) for k, v in data["nacks"].items()},
                poisoned=set(data["poisoned"]),
                returning=set(data["returning"]),
                baseline=SideStats.from_dict(data["baseline"]),
                window=BakeWindow.from_dict(data["window"]),
                max_exposed=int(data["max_exposed"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StateFormatError(f"malformed persisted rollout: {exc}") from exc
