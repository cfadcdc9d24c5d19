"""The inputs of the rollout machine. Every event carries `now`, in the driver's clock
(wall seconds in the control plane, virtual seconds in the simulator)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from failsmall.rollout.errors import StateFormatError
from failsmall.rollout.gate import HealthSample


class ApplyOutcome(StrEnum):
    """How a node answered an assignment."""

    ACK = "ack"
    NACK = "nack"
    POISONED = "poisoned"


@dataclass(frozen=True, slots=True)
class Start:
    """Begin the rollout: assign the canary wave."""

    now: float
    by: str


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed; `samples` are the health reports received since the last tick."""

    now: float
    samples: tuple[HealthSample, ...] = ()


@dataclass(frozen=True, slots=True)
class Applied:
    """A node reported the outcome of applying `digest`."""

    now: float
    node_id: str
    digest: str
    outcome: ApplyOutcome
    error: str = ""


@dataclass(frozen=True, slots=True)
class NodeJoined:
    """A node registered with the fleet."""

    now: float
    node_id: str


@dataclass(frozen=True, slots=True)
class NodeLeft:
    """A node left the fleet (deregistered or declared dead by the control plane)."""

    now: float
    node_id: str


@dataclass(frozen=True, slots=True)
class Pause:
    """A person (or automation) holds the rollout where it is."""

    now: float
    by: str
    why: str


@dataclass(frozen=True, slots=True)
class Resume:
    """Continue a paused rollout; the current wave bakes again from now."""

    now: float
    by: str


@dataclass(frozen=True, slots=True)
class Abort:
    """Cancel the rollout: the new bundle is withdrawn from every node that had it."""

    now: float
    by: str
    why: str


@dataclass(frozen=True, slots=True)
class Rollback:
    """Send every node that left the last good bundle back to it, at once."""

    now: float
    by: str
    why: str


Event = Start | Tick | Applied | NodeJoined | NodeLeft | Pause | Resume | Abort | Rollback

_EVENT_TYPES: dict[str, type[Event]] = {
    "start": Start,
    "tick": Tick,
    "applied": Applied,
    "node_joined": NodeJoined,
    "node_left": NodeLeft,
    "pause": Pause,
    "resume": Resume,
    "abort": Abort,
    "rollback": Rollback,
}
_EVENT_NAMES: dict[type[Event], str] = {kind: name for name, kind in _EVENT_TYPES.items()}


def event_to_dict(event: Event) -> dict[str, Any]:
    """A JSON-ready dict with a `type` field."""
    data: dict[str, Any] = {"type": _EVENT_NAMES[type(event)]}
    for name in event.__dataclass_fields__:
        value = getattr(event, name)
        if name == "samples":
            value = [s.to_dict() for s in value]
        elif isinstance(value, StrEnum):
            value = value.value
        data[name] = value
    return data


def event_from_dict(data: dict[str, Any]) -> Event:
    """The event `event_to_dict` encoded. Raises `StateFormatError` on anything else."""
    fields = dict(data)
    kind = _EVENT_TYPES.get(str(fields.pop("type", "")))
    if kind is None:
        raise StateFormatError(f"unknown rollout event type {data.get('type')!r}")
    try:
        if kind is Tick:
            samples = tuple(HealthSample.from_dict(s) for s in fields.get("samples", ()))
            return Tick(now=float(fields["now"]), samples=samples)
        if kind is Applied:
            fields["outcome"] = ApplyOutcome(fields["outcome"])
        return kind(**fields)
    except (KeyError, TypeError, ValueError) as exc:
        raise StateFormatError(f"malformed {kind.__name__} event: {exc}") from exc
