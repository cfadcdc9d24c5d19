"""The health a rollout has seen during the current bake window."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from failsmall.rollout.gate import HealthSample, SideStats


@dataclass
class BakeWindow:
    """Health totals over the current bake window, per side (new bundle, old bundle).

    Totals are kept as running sums, so each sample costs O(1) however long the bake.
    """

    new_nodes: set[str] = field(default_factory=set)
    new: SideStats = field(default_factory=SideStats)
    old_nodes: set[str] = field(default_factory=set)
    old: SideStats = field(default_factory=SideStats)

    def add_new(self, sample: HealthSample) -> None:
        self.new = self.new.plus(sample, new_node=sample.node_id not in self.new_nodes)
        self.new_nodes.add(sample.node_id)

    def add_old(self, sample: HealthSample) -> None:
        self.old = self.old.plus(sample, new_node=sample.node_id not in self.old_nodes)
        self.old_nodes.add(sample.node_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "new_nodes": sorted(self.new_nodes),
            "new": self.new.to_dict(),
            "old_nodes": sorted(self.old_nodes),
            "old": self.old.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BakeWindow:
        return cls(
            new_nodes={str(n) for n in data["new_nodes"]},
            new=SideStats.from_dict(data["new"]),
            old_nodes={str(n) for n in data["old_nodes"]},
            old=SideStats.from_dict(data["old"]),
        )
