"""The config agent: follows assignments from a `NodeChannel` and applies bundles safely.

Applying a bundle:

    fetch -> verify signature and digest -> check this node's capacities -> [crash marker]
          -> build the engine -> swap -> persist as last-known-good -> ACK
    any failure before the swap -> NACK with the reason; the current bundle keeps serving.

The agent only ever serves a digest it was assigned or one from its LKG store, never a
poisoned one. Channel failures are retried with backoff and jitter while traffic continues.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, assert_never

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from failsmall.backoff import Backoff
from failsmall.engine import Engine, EngineBuildError
from failsmall.model import BundleError, Capacities, SignedBundle, capacity_problems
from failsmall.model import verify_envelope as verify
from failsmall.node.guard import Clean, CrashGuard, Poisoned, Survived
from failsmall.node.lkg import LastKnownGood, LkgPointer
from failsmall.node.serving import Serving, ServingSlot
from failsmall.node.statefiles import StateDirError
from failsmall.node.stats import TrafficStats
from failsmall.supervise import SupervisedLoop, degraded
from failsmall.transport.base import (
    ApplyReport,
    ApplyResult,
    Assignment,
    BundleNotFoundError,
    HealthReport,
    NoChange,
    NodeChannel,
    TransportError,
)
from failsmall.transport.stopping import cancel_and_wait

log = logging.getLogger("failsmall.node.agent")


class ApplyRejectedError(Exception):
    """A bundle this node must not serve; the message says why (sent back as the NACK)."""


class QuarantinedError(Exception):
    """Applying a bundle brought out a fault in the node: it is quarantined; the message says
    what happened (sent back with the POISONED report)."""


def _quarantine_note(cause: str) -> str:
    return (
        f"quarantined on this node: {cause}; it is not applied, and the previous "
        "last-known-good is served"
    )


def prepare(
    raw: bytes, digest: str, trusted: dict[str, Ed25519PublicKey], capacities: Capacities
) -> SignedBundle:
    """Verify an envelope for `digest` and check it fits this node. Raises ApplyRejectedError."""
    try:
        signed = verify(raw, trusted)
    except BundleError as exc:
        raise ApplyRejectedError(f"{type(exc).__name__}: {exc}") from exc
    if signed.digest != digest:
        raise ApplyRejectedError(
            f"the envelope holds bundle {signed.digest}, but {digest} was assigned"
        )
    problems = capacity_problems(signed.bundle, capacities)
    if problems:
        raise ApplyRejectedError("over this node's capacity: " + "; ".join(problems))
    return signed


def build(signed: SignedBundle, capacities: Capacities, current: Serving | None) -> Serving:
    """Build the engine of `signed`, sharing what did not change with the engine serving now
    (compiled signatures and expressions), and its rate-limit buckets and cache."""
    reuse = current.engine if current is not None else None
    try:
        engine = Engine.build(signed.bundle, capacities, reuse=reuse)
    except EngineBuildError as exc:
        raise ApplyRejectedError("engine build failed: " + "; ".join(exc.problems)) from exc
    return Serving.start(engine, signed, current)


@dataclass
class AgentStatus:
    """What the agent has done, for /config, metrics and logs."""

    revision: int = 0
    booted_from: str = ""
    applies: Counter[str] = field(default_factory=Counter)
    last_report: ApplyReport | None = None
    channel_errors: int = 0


class ConfigAgent:
    """Keeps a node's `ServingSlot` on its assigned bundle."""

    def __init__(
        self,
        *,
        node_id: str,
        channel: NodeChannel,
        slot: ServingSlot,
        lkg: LastKnownGood,
        guard: CrashGuard,
        trusted: dict[str, Ed25519PublicKey],
        capacities: Capacities,
        stats: TrafficStats,
        report_interval_s: float = 1.0,
        watch_timeout_s: float = 5.0,
        address: str = "",
        backoff: Backoff | None = None,
    ) -> None:
        self.node_id = node_id
        self.channel = channel
        self.slot = slot
        self.lkg = lkg
        self.guard = guard
        self.trusted = trusted
        self.capacities = capacities
        self.stats = stats
        self.report_interval_s = report_interval_s
        self.watch_timeout_s = watch_timeout_s
        self.address = address
        self.backoff = backoff or Backoff()
        self.status = AgentStatus()
        self._unsent: list[ApplyReport] = []
        self._settle: asyncio.TimerHandle | None = None
        self._breaker_trips_seen = 0
        # Health windows closed by a swap, still to be sent under the digest they were served by.
        self._closed_windows: list[HealthReport] = []
        self._window_started = time.monotonic()
        self.loops: list[SupervisedLoop] = [
            SupervisedLoop("follow_assignments", self._follow_once, log=log, backoff=self.backoff),
            SupervisedLoop("report_health", self._report_health_once, log=log),
        ]
        """The node's background loops; the node adds its own, so that all show in health."""

    # -- boot ------------------------------------------------------------------------------

    async def boot(self) -> None:
        """Serve the newest usable LKG bundle; quarantine one the evidence blames for the
        previous process's death (see `guard`)."""
        check = self.guard.check_on_boot(time.time())
        match check:
            case Clean(previous_fault=fault):
                if fault:
                    log.error(
                        "the previous process died of %r, not within %gs of an apply: "
                        "no bundle is blamed",
                        fault,
                        self.guard.window_s,
                    )
            case Survived(digest=digest, deaths=deaths):
                log.warning(
                    "the node died %d time(s) within %gs of applying %s, with no recorded "
                    "cause (a signal from outside?): serving it again, not quarantined",
                    deaths,
                    self.guard.window_s,
                    digest,
                )
            case Poisoned(digest=digest, cause=cause):
                log.error("bundle %s quarantined: %s", digest, cause)
                self.lkg.demote(digest)
                self._report(digest, ApplyResult.POISONED, _quarantine_note(cause))
            case _:
                assert_never(check)
        pointer = self.lkg.pointer()
        for digest in (pointer.current, pointer.previous):
            if not digest or self.guard.is_poisoned(digest):
                continue
            try:
                raw = self.lkg.load(digest)
                signed = prepare(raw, digest, self.trusted, self.capacities)
                self._begin(digest)
                serving = await self._build(digest, signed)
            except FileNotFoundError:
                log.error("last-known-good bundle %s is missing from the state directory", digest)
                continue
            except ApplyRejectedError as exc:
                log.error("last-known-good bundle %s is unusable: %s", digest, exc)
                self.guard.settle()
                continue
            except QuarantinedError as exc:
                self._settle_now()
                self.lkg.demote(digest)
                self._report(digest, ApplyResult.POISONED, _quarantine_note(str(exc)))
                continue
            self._swap(serving)
            self.status.booted_from = digest
            if digest != pointer.current:
                self.lkg.demote(pointer.current)
            self._schedule_settle()
            log.info("serving last-known-good bundle %s", digest)
            return
        log.warning("no last-known-good bundle: refusing traffic with 503 until one is assigned")

    # -- the loops -------------------------------------------------------------------------

    def start(self) -> None:
        for loop in self.loops:
            loop.start()

    async def stop(self) -> None:
        await cancel_and_wait(*(loop.task for loop in self.loops if loop.task is not None))
        if self._settle is not None:
            # A clean stop is not a crash: the bundle being applied is not to blame.
            self._settle.cancel()
            self._settle_now()
        await self.channel.close()

    async def _follow_once(self) -> None:
        """One turn of following assignments: send what is unsent, wait for a change, act."""
        try:
            await self._flush_reports()
            change = await self.channel.watch(
                self.node_id, self.status.revision, self.watch_timeout_s
            )
        except TransportError:
            self.status.channel_errors += 1
            raise
        match change:
            case NoChange():
                return
            case Assignment():
                await self.follow(change)
            case _:
                assert_never(change)

    async def follow(self, assignment: Assignment) -> ApplyReport:
        """Act on one assignment: ACK what is served, refuse the poisoned, apply the rest."""
        digest = assignment.digest
        quarantine = self.guard.quarantined.get(digest)
        if quarantine is not None:
            report = self._report(digest, ApplyResult.POISONED, _quarantine_note(quarantine.cause))
        elif digest == self.slot.digest:
            report = self._report(digest, ApplyResult.ACK)
        else:
            try:
                raw = await self.channel.fetch(digest)
            except BundleNotFoundError as exc:
                report = self._report(digest, ApplyResult.NACK, f"bundle not found: {exc}")
            else:
                report = await self.apply(raw, digest)
        self.status.revision = assignment.revision
        await self._flush_reports()
        return report

    async def apply(self, raw: bytes, digest: str) -> ApplyReport:
        """Verify, validate, build and swap to bundle `digest`; ACK or NACK it."""
        try:
            signed = prepare(raw, digest, self.trusted, self.capacities)
            self._begin(digest)
            serving = await self._build(digest, signed)
        except ApplyRejectedError as exc:
            self._settle_now()
            log.error("bundle %s rejected: %s", digest, exc)
            return self._report(digest, ApplyResult.NACK, str(exc))
        except QuarantinedError as exc:
            self._settle_now()
            return self._report(digest, ApplyResult.POISONED, _quarantine_note(str(exc)))
        self._swap(serving)
        note = ""
        try:
            self.lkg.save(digest, raw)
        except StateDirError as exc:
            note = f"serving, but not persisted as last-known-good: {exc}"
            log.error("%s", note)
        self._schedule_settle()
        log.info("now serving bundle %s", digest)
        return self._report(digest, ApplyResult.ACK, note)

    async def _build(self, digest: str, signed: SignedBundle) -> Serving:
        """Build the engine of `signed` off the event loop. A refusal is an ApplyRejectedError;
        any other exception is a fault the bundle brings out in this node's code: the bundle is
        quarantined (QuarantinedError), as if the process had died of it."""
        try:
            return await asyncio.to_thread(build, signed, self.capacities, self.slot.current)
        except ApplyRejectedError:
            raise
        except Exception as exc:
            cause = f"building its engine raised {type(exc).__name__}: {exc}"
            log.exception("bundle %s quarantined: %s", digest, cause)
            self.guard.quarantine(digest, cause, time.time())
            raise QuarantinedError(cause) from exc

    # -- crash marker ----------------------------------------------------------------------

    def _begin(self, digest: str) -> None:
        if self._settle is not None:
            self._settle.cancel()
            self._settle = None
        self.guard.begin(digest, time.time())

    def _schedule_settle(self) -> None:
        loop = asyncio.get_running_loop()
        self._settle = loop.call_later(self.guard.window_s, self._settle_now)

    def _settle_now(self) -> None:
        self._settle = None
        try:
            self.guard.settle()
        except (OSError, StateDirError) as exc:
            log.error("cannot clear the apply marker: %s", exc)

    # -- reports ---------------------------------------------------------------------------

    def _report(self, digest: str, result: ApplyResult, error: str = "") -> ApplyReport:
        report = ApplyReport(self.node_id, digest, result, error, time.time())
        self._record(report)
        return report

    def _record(self, report: ApplyReport) -> None:
        self.status.applies[report.result.value] += 1
        self.status.last_report = report
        self._unsent.append(report)

    async def _flush_reports(self) -> None:
        while self._unsent:
            await self.channel.send_apply(self._unsent[0])
            self._unsent.pop(0)

    async def _report_health_once(self) -> None:
        """Wait a report interval, then send the windows it closed (a window whose report
        cannot be sent is dropped: the next one carries on from it)."""
        await asyncio.sleep(self.report_interval_s)
        reports, self._closed_windows = [*self._closed_windows, self.health_report()], []
        unsent = 0
        for report in reports:
            try:
                await self.channel.send_health(report)
            except TransportError:
                unsent += 1
                if unsent == len(reports):
                    raise

    def _swap(self, serving: Serving) -> None:
        """Serve `serving` from now on; traffic counted so far stays with the old digest."""
        if self.slot.current is not None:
            self._closed_windows.append(self.health_report())
        self.slot.swap(serving)
        # The compiled engine lives until the next swap: keep the collector from walking it on
        # every full collection, whose pause would add to request latency.
        gc.freeze()

    def health_report(self) -> HealthReport:
        """Close the current window: its counts, under the digest serving now."""
        now = time.monotonic()
        window_s, self._window_started = now - self._window_started, now
        window = self.stats.take_window()
        self._log_module_errors()
        trips = self._breaker_trips()
        new_trips = max(0, trips - self._breaker_trips_seen)
        self._breaker_trips_seen = trips
        return HealthReport(
            node_id=self.node_id,
            digest=self.slot.digest,
            lkg_digest=self.lkg.pointer().current,
            at=time.time(),
            window_s=window_s,
            requests=window.requests,
            responses_5xx=window.responses_5xx,
            blocked=window.blocked,
            challenged=window.challenged,
            module_errors=window.module_errors,
            breaker_trips=new_trips,
            p99_ms=window.latency.quantile(0.99) * 1000,
            poisoned=tuple(sorted(self.guard.quarantined)),
            address=self.address,
            degraded=self.degraded(),
            quarantined=tuple(q for _, q in sorted(self.guard.quarantined.items())),
        )

    def degraded(self) -> tuple[str, ...]:
        """What is failing on this node, one line each: modules whose circuit breaker is open
        (with what the module does while it is), then background loops; empty when none. The
        same lines go to `/readyz`, the health reports and so `failsmall status`."""
        loops = tuple(failing.describe() for failing in degraded(self.loops))
        serving = self.slot.current
        if serving is None:
            return loops
        settings = serving.engine.bundle.modules
        breakers = tuple(
            f"{module.value} circuit breaker {breaker.state.value} "
            f"({settings[module].while_open.value}, {breaker.trips} trips)"
            for module, breaker in serving.state.open_breakers()
        )
        return breakers + loops

    def _log_module_errors(self) -> None:
        """Log the engine's module error reports (already within their budget: see
        `failsmall.engine.bulkhead.ErrorBudget`) and how many were dropped past it."""
        serving = self.slot.current
        if serving is None:
            return
        errors = serving.state.errors
        for report in errors.drain():
            log.warning("module %s: %s", report.module, report.error)
        if errors.dropped:
            log.warning("%d module error reports dropped past the error budget", errors.dropped)
            errors.dropped = 0

    def _breaker_trips(self) -> int:
        serving = self.slot.current
        if serving is None:
            return 0
        return sum(b.trips for b in serving.state.breakers.values())

    def describe(self) -> dict[str, Any]:
        """The agent's view for the admin `/config` endpoint."""
        pointer: LkgPointer = self.lkg.pointer()
        current = self.slot.current
        last = self.status.last_report
        return {
            "node_id": self.node_id,
            "pid": os.getpid(),
            "serving": self.slot.digest,
            "bundle_name": current.signed.bundle.name if current is not None else "",
            "lkg": {"current": pointer.current, "previous": pointer.previous},
            "poisoned": sorted(self.guard.quarantined),
            "quarantined": [q.to_dict() for _, q in sorted(self.guard.quarantined.items())],
            "revision": self.status.revision,
            "booted_from": self.status.booted_from,
            "applies": dict(self.status.applies),
            "last_apply": last.to_dict() if last is not None else None,
            "channel_errors": self.status.channel_errors,
            "degraded": list(self.degraded()),
        }
