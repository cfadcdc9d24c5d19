"""A simulated run's figures, under the same names and definitions as a drill's
(`failsmall.drill.report`), computed from what the simulator counted instead of what a live
fleet recorded. The timing types and the bad-share threshold are shared
(`failsmall.rollout.figures`); the computations are not, since a drill computes its figures
from its recordings and `sim/` may import only `model` and `rollout`.

- failed share: users' requests failed over all requests served during the run (traffic
  model: every node serves a fixed rate and fails its bundle's `failed_share`);
- requests lost: the failed requests never answered (a crash-looping node's);
- bad bundles: bundles a rollout pushed that were rolled back or aborted (the gate failed, or a
  node refused or quarantined it), or under which a node fails at least `BAD_SHARE` of requests;
- nodes that served a bad bundle: how many nodes ever served one;
- time to detect: the first bad bundle's push -> its first alarm (gate failure, rollback, abort);
- time to roll back: per bad bundle, its alarm -> the last node off it; the worst is reported;
- widest version skew: the most distinct bundles served at one instant.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, assert_never

from failsmall.rollout.figures import BAD_SHARE, Measured, NotMeasured, Timing, timing_value
from failsmall.sim.report import RolloutRecord
from failsmall.sim.traffic import Traffic

__all__ = [
    "Figures",
    "Measured",
    "NotMeasured",
    "Timing",
    "figures",
    "is_bad",
    "timing_text",
    "timing_value",
]


@dataclass(frozen=True, slots=True)
class Figures:
    """A run's figures, as a drill reports them."""

    requests: int
    requests_failed: int
    requests_lost: int
    bad_bundles: tuple[str, ...]
    nodes_served_bad: int
    time_to_detect: Timing
    time_to_roll_back: Timing
    widest_skew: int

    @property
    def failed_share(self) -> float:
        return self.requests_failed / self.requests if self.requests else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "requests_failed": self.requests_failed,
            "failed_share": self.failed_share,
            "requests_lost": self.requests_lost,
            "bad_bundles": list(self.bad_bundles),
            "nodes_served_bad_bundle": self.nodes_served_bad,
            "time_to_detect_s": timing_value(self.time_to_detect),
            "time_to_roll_back_s": timing_value(self.time_to_roll_back),
            "widest_version_skew": self.widest_skew,
        }


def timing_text(timing: Timing) -> str:
    match timing:
        case Measured(seconds=seconds):
            return f"{seconds:.1f} s"
        case NotMeasured():
            return "-"
        case _:
            assert_never(timing)


def is_bad(record: RolloutRecord, failed_share: float) -> bool:
    """Whether a rollout's bundle counts as bad (see the module's definitions)."""
    return record.final_state in {"rolled_back", "aborted"} or failed_share >= BAD_SHARE


def figures(
    records: list[RolloutRecord],
    traffic: Traffic,
    failed_share_of: Callable[[str], float],
    nodes_that_served: Callable[[set[str]], int],
    widest_skew: int,
) -> Figures:
    """The figures of a run whose rollouts were `records` and whose traffic was `traffic`."""
    bad = [r for r in records if is_bad(r, failed_share_of(r.digest))]
    detect: Timing
    roll_back: Timing
    if not bad:
        detect = NotMeasured("no bad bundle was pushed")
        roll_back = NotMeasured("no bad bundle was pushed")
    else:
        first = bad[0]
        detect = (
            Measured(first.detected_at - first.started_at)
            if first.detected_at >= 0
            else NotMeasured("no alarm: the gate never failed and nothing was rolled back")
        )
        unrestored = [r.label for r in bad if r.detected_at < 0 or r.restored_at < 0]
        roll_back = (
            NotMeasured(f"not rolled back: {', '.join(unrestored)}")
            if unrestored
            else Measured(max(r.restored_at - r.detected_at for r in bad))
        )
    return Figures(
        requests=round(traffic.requests),
        requests_failed=round(traffic.failed),
        requests_lost=round(traffic.lost),
        bad_bundles=tuple(r.label for r in bad),
        nodes_served_bad=nodes_that_served({r.digest for r in bad}),
        time_to_detect=detect,
        time_to_roll_back=roll_back,
        widest_skew=widest_skew,
    )
