"""What a drill records while it runs: every answer (as per-second, per-node counts and HDR
latency histograms, and as runs of each node's answers under one bundle), each node's bundle
over time as sampled, the fleet's events, and the steady-state hypothesis checked continuously
over a sliding window."""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field

from hdrh.histogram import HdrHistogram

from failsmall.drill.fleet import FleetEvent, NodeView, Serving
from failsmall.drill.load import FAILED, Answer, Outcome
from failsmall.drill.scenario import Hypothesis

MAX_LATENCY_US = 120_000_000


def histogram() -> HdrHistogram:
    return HdrHistogram(1, MAX_LATENCY_US, 3)


@dataclass(frozen=True, slots=True)
class Event:
    """An event on the drill's clock (`t` seconds since the drill started)."""

    t: float
    kind: str
    text: str
    digest: str = ""


@dataclass(frozen=True, slots=True)
class VersionSample:
    t: float
    node_id: str
    digest: str
    """Empty when the node did not answer."""


@dataclass(slots=True)
class Answered:
    """A run of one node's answers under one bundle (its short digest): when the first and the
    last were done, on the drill's clock, and what became of them. Sampling the nodes' views
    every few hundred milliseconds can miss a bundle a canary served for less; its answers
    cannot."""

    bundle: str
    first: float
    last: float
    outcomes: Counter[Outcome] = field(default_factory=Counter)


@dataclass(frozen=True, slots=True)
class Verdict:
    """One check of the steady-state hypothesis over the window ending at `t`."""

    t: float
    requests: int
    failed_share: float
    p99_ms: float
    holds: bool


@dataclass
class Recorder:
    hypothesis: Hypothesis
    mono0: float = field(default_factory=time.monotonic)
    wall0: float = field(default_factory=time.time)
    counts: dict[int, dict[str, Counter[Outcome]]] = field(default_factory=dict)
    latency: HdrHistogram = field(default_factory=histogram)
    versions: list[VersionSample] = field(default_factory=list)
    answered: dict[str, list[Answered]] = field(default_factory=dict)
    """Node id -> its answers as runs under one bundle, in the order they were done."""
    events: list[Event] = field(default_factory=list)
    checks: list[Verdict] = field(default_factory=list)
    window: deque[Answer] = field(default_factory=deque)
    load_clock0: float = 0.0
    """The load generator's clock at the drill's t = 0."""

    def now(self) -> float:
        return time.monotonic() - self.mono0

    def t_of_wall(self, wall: float) -> float:
        return wall - self.wall0

    def answer(self, answer: Answer) -> None:
        t = answer.due - self.load_clock0
        second = int(t)
        per_node = self.counts.setdefault(second, {})
        per_node.setdefault(answer.node_id, Counter())[answer.outcome] += 1
        if answer.outcome is not Outcome.LOST:
            self.latency.record_value(max(1, int(answer.latency_s * 1e6)))
        self.window.append(answer)
        if answer.bundle:
            done = answer.done - self.load_clock0
            runs = self.answered.setdefault(answer.node_id, [])
            if not runs or runs[-1].bundle != answer.bundle:
                runs.append(Answered(answer.bundle, done, done))
            run = runs[-1]
            run.first, run.last = min(run.first, done), max(run.last, done)
            run.outcomes[answer.outcome] += 1

    def event(self, kind: str, text: str, t: float | None = None, digest: str = "") -> Event:
        event = Event(self.now() if t is None else t, kind, text, digest)
        self.events.append(event)
        return event

    def fleet_event(self, event: FleetEvent) -> None:
        self.event(event.kind, event.text, self.t_of_wall(event.at), event.digest)

    def view(self, node_id: str, view: NodeView, t: float) -> None:
        digest = view.digest if isinstance(view, Serving) else ""
        self.versions.append(VersionSample(t, node_id, digest))

    def check(self, load_now: float) -> Verdict:
        """Judge the hypothesis over the answers due in the last window."""
        horizon = load_now - self.hypothesis.window_s
        while self.window and self.window[0].due < horizon:
            self.window.popleft()
        answers = list(self.window)
        failed = sum(1 for a in answers if a.outcome in FAILED)
        share = failed / len(answers) if answers else 0.0
        window = histogram()
        for a in answers:
            if a.outcome is not Outcome.LOST:
                window.record_value(max(1, int(a.latency_s * 1e6)))
        p99_ms = window.get_value_at_percentile(99) / 1000 if window.get_total_count() else 0.0
        holds = share <= self.hypothesis.max_failed_share and p99_ms <= self.hypothesis.max_p99_ms
        verdict = Verdict(self.now(), len(answers), share, p99_ms, holds)
        previous = self.checks[-1].holds if self.checks else True
        self.checks.append(verdict)
        if previous and not holds:
            self.event(
                "hypothesis",
                f"steady state broken: {share:.1%} failed, p99 {p99_ms:.0f} ms",
            )
        elif holds and not previous:
            self.event("hypothesis", "steady state holds again")
        return verdict
