"""The outputs of the rollout machine: what the driver must do, and what it must record."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from failsmall.rollout.errors import EmptySelectionError, StateFormatError


@dataclass(frozen=True, slots=True)
class Assign:
    """Point the channel of each listed node at bundle `digest`.

    `node_ids` is never empty: an empty selection never means "every node".
    """

    node_ids: tuple[str, ...]
    digest: str

    def __post_init__(self) -> None:
        if not self.node_ids:
            raise EmptySelectionError(f"an assignment of {self.digest} must name at least one node")

    def to_dict(self) -> dict[str, Any]:
        return {"type": "assign", "node_ids": list(self.node_ids), "digest": self.digest}


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """A decision for the append-only audit log: who decided what, when and why.

    `actor` is the person for operator events, `gate` for health-gate decisions and
    `rollout` for scheduled steps (promotions, joins).
    """

    at: float
    rollout_id: str
    actor: str
    action: str
    reason: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "audit",
            "at": self.at,
            "rollout_id": self.rollout_id,
            "actor": self.actor,
            "action": self.action,
            "reason": self.reason,
            "details": dict(self.details),
        }


Command = Assign | AuditEntry


def command_from_dict(data: dict[str, Any]) -> Command:
    """The command `to_dict` encoded. Raises `StateFormatError` on anything else."""
    try:
        match data.get("type"):
            case "assign":
                return Assign(tuple(str(n) for n in data["node_ids"]), str(data["digest"]))
            case "audit":
                return AuditEntry(
                    at=float(data["at"]),
                    rollout_id=str(data["rollout_id"]),
                    actor=str(data["actor"]),
                    action=str(data["action"]),
                    reason=str(data["reason"]),
                    details=dict(data.get("details", {})),
                )
            case other:
                raise StateFormatError(f"unknown rollout command type {other!r}")
    except (KeyError, TypeError, ValueError) as exc:
        raise StateFormatError(f"malformed rollout command: {exc}") from exc
