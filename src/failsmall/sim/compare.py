"""Every built-in rollout policy over the same change: how fast a good change reaches the whole
fleet against how far the same fault spreads before it is caught (the trade-off `failsmall sim
--compare` draws).

Each policy gets two fresh fleets with the same seed: one rolls out a harmless change (time to
reach every node), the other the fault (the drill's figures: requests failed, nodes that served
the bad bundle, time to detect and to roll back).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from failsmall.rollout import NAMED_POLICIES, Policy
from failsmall.sim import bundles
from failsmall.sim.behaviour import HEALTHY
from failsmall.sim.faults import FAULTS
from failsmall.sim.figures import Figures, Measured, NotMeasured, Timing, figures, timing_value
from failsmall.sim.world import SimSettings, World

SITES = 330
NODES_PER_SITE = 100
FLEET = SITES * NODES_PER_SITE
"""The fleet the trade-off is drawn for: 330 sites of 100 nodes."""
STRAGGLERS_S = 10.0
"""A rollout completes when its last wave's gate passes, which can be before the slowest nodes
of that wave have applied it: how long to keep watching for them."""


class UnknownFaultError(Exception):
    """A fault name that is not one of `FAULTS`."""


@dataclass(frozen=True, slots=True)
class PolicyPoint:
    """One policy's side of the trade-off."""

    policy: str
    reach: Timing
    """A good change: push -> every node serving it."""
    fault: Figures
    """The fault under this policy, as a drill reports it."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "time_to_reach_fleet_s": timing_value(self.reach),
            "fault": self.fault.to_dict(),
        }


def compare_policies(
    settings: SimSettings,
    fault: str,
    policies: tuple[Policy, ...] = tuple(NAMED_POLICIES.values()),
    progress: Callable[[str], None] | None = None,
) -> list[PolicyPoint]:
    """Run `fault` and a harmless change under each policy. Deterministic for a seed."""
    bad = FAULTS.get(fault)
    if bad is None:
        known = ", ".join(FAULTS)
        raise UnknownFaultError(f"no fault named {fault!r}; choose one of {known}")
    points: list[PolicyPoint] = []
    for policy in policies:
        if progress is not None:
            progress(f"{policy.name}: a good change")
        good = World(settings, bundles.site(1), "v1")
        record = good.roll_out(bundles.harmless_rule(bundles.site(1)), "v2", HEALTHY, policy=policy)
        good.idle_until(good.now + STRAGGLERS_S)
        everywhere = good.everywhere_at(record.digest)
        reach: Timing = (
            Measured(everywhere - record.started_at)
            if everywhere >= 0
            else NotMeasured(f"never reached every node ({record.final_state})")
        )
        if progress is not None:
            progress(f"{policy.name}: {fault}")
        world = World(settings, bundles.site(1), "v1")
        world.idle_until(3.0)
        change = bad.change(bundles.site(1))
        pushed = world.roll_out(change, bad.label, bad.behaviour, policy=policy)
        world.traffic.advance(world.now)
        measured = figures(
            [pushed], world.traffic, world.failed_share_of, world.nodes_that_served,
            world.widest_skew,
        )  # fmt: skip
        points.append(PolicyPoint(policy.name, reach, measured))
    return points
