"""The states of a rollout. `Completed`, `RolledBack` and `Aborted` are terminal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from failsmall.rollout.errors import StateFormatError


@dataclass(frozen=True, slots=True)
class Pending:
    """Created, nothing assigned yet."""


@dataclass(frozen=True, slots=True)
class Baking:
    """Wave `wave` is assigned; its bake ends `bake_s` after `since`, or after the latest
    extension (`extended_at`): an extension is a whole new bake period from the moment it is
    granted, so ticks that arrive late (a control plane that was down) cannot use them up."""

    wave: int
    since: float
    extensions: int = 0
    extended_at: float | None = None

    def bake_ends(self, bake_s: float) -> float:
        start = self.since if self.extended_at is None else self.extended_at
        return start + bake_s


@dataclass(frozen=True, slots=True)
class Paused:
    """Held at wave `wave` by `by` (a person, or `gate` after an inconclusive bake)."""

    wave: int
    since: float
    by: str
    reason: str


@dataclass(frozen=True, slots=True)
class RollingBack:
    """Nodes were sent back to the last good bundle; waiting for them to confirm."""

    since: float
    by: str
    reason: str


@dataclass(frozen=True, slots=True)
class Completed:
    """Every node is on the new bundle and the last wave passed its gate."""

    at: float


@dataclass(frozen=True, slots=True)
class RolledBack:
    """Every node that had the new bundle was sent back to the last good one."""

    at: float
    reason: str


@dataclass(frozen=True, slots=True)
class Aborted:
    """Cancelled; the new bundle was withdrawn from the nodes that had it."""

    at: float
    by: str
    reason: str


RolloutState = Pending | Baking | Paused | RollingBack | Completed | RolledBack | Aborted
TERMINAL_STATES = (Completed, RolledBack, Aborted)

_STATE_TYPES: dict[str, type[RolloutState]] = {
    "pending": Pending,
    "baking": Baking,
    "paused": Paused,
    "rolling_back": RollingBack,
    "completed": Completed,
    "rolled_back": RolledBack,
    "aborted": Aborted,
}
_STATE_NAMES: dict[type[RolloutState], str] = {kind: name for name, kind in _STATE_TYPES.items()}


def state_name(state: RolloutState) -> str:
    """`pending`, `baking`, `paused`, `rolling_back`, `completed`, `rolled_back` or `aborted`."""
    return _STATE_NAMES[type(state)]


def is_terminal(state: RolloutState) -> bool:
    return isinstance(state, TERMINAL_STATES)


def state_to_dict(state: RolloutState) -> dict[str, Any]:
    data: dict[str, Any] = {"name": state_name(state)}
    for name in state.__dataclass_fields__:
        data[name] = getattr(state, name)
    return data


def state_from_dict(data: dict[str, Any]) -> RolloutState:
    fields = dict(data)
    kind = _STATE_TYPES.get(str(fields.pop("name", "")))
    if kind is None:
        raise StateFormatError(f"unknown rollout state {data.get('name')!r}")
    try:
        return kind(**fields)
    except TypeError as exc:
        raise StateFormatError(f"malformed {kind.__name__} state: {exc}") from exc
