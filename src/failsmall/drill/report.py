"""A drill's figures, computed from what it recorded (pure: no I/O, no clock).

- failed share: blocked, 5xx and lost requests over all requests the load generator was due
  to send during the drill;
- bad bundles: bundles a fault pushed that the fleet rolled back, that a node refused or
  quarantined, or under which at least `BAD_SHARE` of a node's requests failed;
- a node served a bundle when a sample of its view showed it or an answer of its named it
  (its X-Failsmall-Bundle header: a canary can serve a bundle for less than a sampling
  interval, yet every answer says which bundle made it);
- time to detect: first fault accepted -> the first alarm (a gate failure or rollback, a
  NACK, a quarantine, or the drill's own steady-state check breaking);
- time to roll back: alarm -> the last node back off every bad bundle for good;
- widest version skew: the most distinct bundles in service at one instant (a sample, or the
  first or last answer of a run under one bundle), a node being in service of the bundles
  whose answer runs span that instant, or else of the bundle its last sample showed.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from failsmall.drill.load import FAILED, Outcome
from failsmall.drill.record import Event, VersionSample
from failsmall.drill.runner import DrillRun
from failsmall.node.serving import short_digest
from failsmall.rollout.figures import BAD_SHARE, timing_value
from failsmall.rollout.figures import Measured as Measured
from failsmall.rollout.figures import NotMeasured as NotMeasured
from failsmall.rollout.figures import Timing as Timing

ALARM_KINDS = ("gate", "rollback", "nack", "quarantine", "hypothesis")


@dataclass(frozen=True)
class Lane:
    """One node's bundles over time: (from, to, digest) spans; digest '' = not answering."""

    node_id: str
    spans: list[tuple[float, float, str]]


@dataclass(frozen=True)
class AnsweredSpan:
    """A run of one node's answers under one bundle, its digest resolved."""

    node_id: str
    first: float
    last: float
    digest: str
    outcomes: Counter[Outcome]


@dataclass
class Figures:
    scenario: str
    profile: str
    duration_s: float
    requests: int
    outcomes: dict[str, int]
    failed_share: float
    lost: int
    p50_ms: float
    p99_ms: float
    fault_window: tuple[float, float]
    failed_share_by_node: dict[str, float]
    """Failed share per node while faults were in place (first fault -> rollbacks done)."""
    bad_bundles: dict[str, str]
    nodes_served_bad: list[str]
    nodes_served_faulty_push: list[str]
    time_to_detect: Timing
    time_to_roll_back: Timing
    widest_skew: int
    steady_before: bool
    steady_after: bool
    interrupted: str
    per_second: list[dict[str, int]] = field(default_factory=list)
    lanes: list[Lane] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "profile": self.profile,
            "duration_s": round(self.duration_s, 2),
            "requests": self.requests,
            "outcomes": self.outcomes,
            "failed_share": self.failed_share,
            "requests_lost": self.lost,
            "latency_ms": {"p50": self.p50_ms, "p99": self.p99_ms},
            "fault_window_s": [round(t, 2) for t in self.fault_window],
            "failed_share_by_node_during_faults": self.failed_share_by_node,
            "bad_bundles": self.bad_bundles,
            "nodes_served_bad_bundle": self.nodes_served_bad,
            "nodes_served_a_faulty_push": self.nodes_served_faulty_push,
            "time_to_detect_s": timing_value(self.time_to_detect),
            "time_to_roll_back_s": timing_value(self.time_to_roll_back),
            "widest_version_skew": self.widest_skew,
            "steady_state_before": self.steady_before,
            "steady_state_after": self.steady_after,
            "interrupted": self.interrupted,
            "timeline": {
                "per_second": self.per_second,
                "nodes": [
                    {
                        "node_id": lane.node_id,
                        "spans": [
                            {"from": round(a, 2), "to": round(b, 2), "bundle": d}
                            for a, b, d in lane.spans
                        ],
                    }
                    for lane in self.lanes
                ],
                "events": [
                    {"t": round(e.t, 2), "kind": e.kind, "text": e.text, "bundle": e.digest}
                    for e in self.events
                ],
                "labels": self.labels,
            },
        }


def figures(run: DrillRun) -> Figures:
    rec = run.recorder
    last_second = max(rec.counts, default=-1)
    per_second: list[dict[str, int]] = []
    totals: Counter[Outcome] = Counter()
    for second in range(last_second + 1):
        row: Counter[Outcome] = Counter()
        for counts in rec.counts.get(second, {}).values():
            row.update(counts)
        totals.update(row)
        per_second.append({o.value: row[o] for o in Outcome} | {"t": second})
    requests = sum(totals.values())
    failed = sum(totals[o] for o in FAILED)
    lanes = _lanes(rec.versions, run.node_ids)
    window = (run.faults_from, run.rollbacks_done or run.ended)
    by_node = _failed_by_node(run, window)
    answered = _answered(run)
    bad = _bad_bundles(run, lanes, answered)
    served_bad = _served(lanes, answered, bad)
    served_faulty = _served(lanes, answered, set(run.suspects))
    alarm = _alarm(rec.events, run.faults_from)
    detect: Timing
    roll_back: Timing
    fault_start = _fault_start(rec.events, run.faults_from)
    if alarm is None:
        detect = NotMeasured("no alarm: nothing broke the steady state or tripped a gate")
        roll_back = NotMeasured("no alarm")
    else:
        detect = Measured(max(0.0, alarm - fault_start))
        roll_back = (
            Measured(max(_episode(run, lanes, answered, digest) for digest in bad))
            if bad
            else NotMeasured("no bad bundle: the fault was not a configuration change")
        )
    latency = rec.latency
    count = latency.get_total_count()
    return Figures(
        scenario=run.scenario.name,
        profile=run.profile,
        duration_s=run.ended,
        requests=requests,
        outcomes={o.value: totals[o] for o in Outcome},
        failed_share=failed / requests if requests else 0.0,
        lost=totals[Outcome.LOST],
        p50_ms=latency.get_value_at_percentile(50) / 1000 if count else 0.0,
        p99_ms=latency.get_value_at_percentile(99) / 1000 if count else 0.0,
        fault_window=window,
        failed_share_by_node=by_node,
        bad_bundles={d: run.suspects.get(d, run.labels.get(d, d[:19])) for d in sorted(bad)},
        nodes_served_bad=served_bad,
        nodes_served_faulty_push=served_faulty,
        time_to_detect=detect,
        time_to_roll_back=roll_back,
        widest_skew=_widest_skew(rec.versions, answered),
        steady_before=run.steady_before,
        steady_after=run.recovered_at is not None,
        interrupted=run.interrupted,
        per_second=per_second,
        lanes=lanes,
        events=sorted(rec.events, key=lambda e: e.t),
        labels=dict(run.labels),
    )


def _lanes(samples: list[VersionSample], node_ids: list[str]) -> list[Lane]:
    by_node: dict[str, list[VersionSample]] = defaultdict(list)
    for sample in samples:
        by_node[sample.node_id].append(sample)
    lanes: list[Lane] = []
    for node_id in sorted(set(node_ids) | set(by_node)):
        spans: list[tuple[float, float, str]] = []
        for sample in sorted(by_node.get(node_id, []), key=lambda s: s.t):
            if spans and spans[-1][2] == sample.digest:
                spans[-1] = (spans[-1][0], sample.t, sample.digest)
            else:
                if spans:
                    spans[-1] = (spans[-1][0], sample.t, spans[-1][2])
                spans.append((sample.t, sample.t, sample.digest))
        lanes.append(Lane(node_id, spans))
    return lanes


def _answered(run: DrillRun) -> list[AnsweredSpan]:
    """Every node's answer runs, each short digest resolved to a bundle the drill knows (a
    digest it does not know stays as the short form)."""
    known = {run.seed_digest, *run.labels, *run.suspects}
    by_tag = {short_digest(digest): digest for digest in known}
    return [
        AnsweredSpan(node_id, a.first, a.last, by_tag.get(a.bundle, a.bundle), a.outcomes)
        for node_id, runs in sorted(run.recorder.answered.items())
        for a in runs
    ]


def _served(lanes: list[Lane], answered: list[AnsweredSpan], digests: set[str]) -> list[str]:
    """The nodes that served any of `digests`, as sampled or as their answers say."""
    sampled = {lane.node_id for lane in lanes for _, _, d in lane.spans if d in digests}
    return sorted(sampled | {a.node_id for a in answered if a.digest in digests})


def _serving_at(lane: Lane, t: float) -> str:
    for start, end, digest in lane.spans:
        if start <= t <= end:
            return digest
    return ""


def _failed_by_node(run: DrillRun, window: tuple[float, float]) -> dict[str, float]:
    totals: dict[str, Counter[Outcome]] = defaultdict(Counter)
    for second, per_node in run.recorder.counts.items():
        if window[0] <= second + 0.5 <= window[1]:
            for node_id, counts in per_node.items():
                totals[node_id].update(counts)
    return {
        node_id: sum(c[o] for o in FAILED) / sum(c.values())
        for node_id, c in sorted(totals.items())
        if sum(c.values())
    }


def _bad_bundles(run: DrillRun, lanes: list[Lane], answered: list[AnsweredSpan]) -> set[str]:
    bad = {
        e.digest
        for e in run.recorder.events
        if e.digest in run.suspects
        and (e.kind in ("nack", "quarantine") or (e.kind == "rollback" and "rollback:" in e.text))
    }
    lane_of = {lane.node_id: lane for lane in lanes}
    tallies: dict[tuple[str, str], Counter[Outcome]] = defaultdict(Counter)
    for second, per_node in run.recorder.counts.items():
        for node_id, counts in per_node.items():
            lane = lane_of.get(node_id)
            digest = _serving_at(lane, second + 0.5) if lane else ""
            if digest in run.suspects:
                tallies[(node_id, digest)].update(counts)
    by_answer: dict[tuple[str, str], Counter[Outcome]] = defaultdict(Counter)
    for a in answered:
        if a.digest in run.suspects:
            by_answer[(a.node_id, a.digest)].update(a.outcomes)
    for (_, digest), counts in [*tallies.items(), *by_answer.items()]:
        total = sum(counts.values())
        if total and sum(counts[o] for o in FAILED) / total >= BAD_SHARE:
            bad.add(digest)
    return bad


def _fault_start(events: list[Event], faults_from: float) -> float:
    pushed = [e.t for e in events if e.kind in ("fault", "push") and e.t >= faults_from]
    return min(pushed, default=faults_from)


def _alarm(events: list[Event], faults_from: float, digest: str = "") -> float | None:
    """The first alarm at or after `faults_from` (about `digest`, or about no bundle)."""
    alarms = [
        e.t
        for e in events
        if e.t >= faults_from
        and (not digest or e.digest in ("", digest))
        and e.kind in ALARM_KINDS
        and (e.kind != "gate" or "gate_fail" in e.text)
        and (e.kind != "rollback" or "rollback:" in e.text)
        and (e.kind != "hypothesis" or e.text.startswith("steady state broken"))
    ]
    return min(alarms, default=None)


def _episode(run: DrillRun, lanes: list[Lane], answered: list[AnsweredSpan], digest: str) -> float:
    """How long one bad bundle took to roll back: from the alarm about it (the first alarm
    after it was pushed, or its push when the steady state was already broken) to the later of
    the fleet recording its rollback done and the last node leaving it (its last sample or its
    last answer under the bundle)."""
    events = run.recorder.events
    pushed = min((e.t for e in events if e.digest == digest), default=run.faults_from)
    broken_at_push = _broken_at(run, pushed)
    alarm = pushed if broken_at_push else _alarm(events, pushed, digest)
    start = pushed if alarm is None else alarm
    done = [e.t for e in events if e.kind == "rollback" and e.digest == digest]
    left = [end for lane in lanes for _, end, d in lane.spans if d == digest]
    left += [a.last for a in answered if a.digest == digest]
    return max(0.0, max([start, *done, *left]) - start)


def _broken_at(run: DrillRun, t: float) -> bool:
    checks = [c for c in run.recorder.checks if c.t <= t]
    return bool(checks) and not checks[-1].holds


def _widest_skew(samples: list[VersionSample], answered: list[AnsweredSpan]) -> int:
    sampled: dict[str, tuple[list[float], list[str]]] = defaultdict(lambda: ([], []))
    for sample in sorted(samples, key=lambda s: s.t):
        times, digests = sampled[sample.node_id]
        times.append(sample.t)
        digests.append(sample.digest)
    heard: dict[str, list[AnsweredSpan]] = defaultdict(list)
    for a in answered:
        heard[a.node_id].append(a)
    nodes = set(sampled) | set(heard)
    instants = {s.t for s in samples} | {a.first for a in answered} | {a.last for a in answered}
    widest = 0
    for t in sorted(instants):
        in_service: set[str] = set()
        for node_id in nodes:
            spanning = {a.digest for a in heard[node_id] if a.first <= t <= a.last}
            if spanning:
                in_service |= spanning
                continue
            times, digests = sampled.get(node_id, ([], []))
            last = bisect_right(times, t) - 1
            if last >= 0 and digests[last]:
                in_service.add(digests[last])
        widest = max(widest, len(in_service))
    return widest
