"""One rollout at a time per fleet."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from failsmall.rollout.errors import RolloutConflictError


@dataclass(frozen=True, slots=True)
class RolloutBook:
    """Which rollout, if any, is active on a fleet. Immutable: each method returns a new book.

    The control plane keeps one book per fleet (persisted with `to_dict`), calls `begin`
    before creating a `RolloutMachine` and `finish` when the machine is finished.
    """

    fleet: str
    active: str = ""

    def begin(self, rollout_id: str) -> RolloutBook:
        """Raises `RolloutConflictError` if another rollout is active on this fleet."""
        if self.active:
            raise RolloutConflictError(
                f"rollout {self.active} is still active on fleet {self.fleet!r}; wait for it, "
                "or pause, abort or roll it back before starting another"
            )
        return RolloutBook(self.fleet, rollout_id)

    def finish(self, rollout_id: str) -> RolloutBook:
        """Mark `rollout_id` finished. Finishing a rollout that is not active is an error."""
        if self.active != rollout_id:
            raise RolloutConflictError(
                f"rollout {rollout_id} is not the active rollout of fleet {self.fleet!r} "
                f"(active: {self.active or 'none'})"
            )
        return RolloutBook(self.fleet)

    def to_dict(self) -> dict[str, Any]:
        return {"fleet": self.fleet, "active": self.active}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RolloutBook:
        return cls(str(data["fleet"]), str(data.get("active", "")))
