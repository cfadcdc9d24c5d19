"""What travels between the control plane and nodes, and the node side of every transport.

A node follows one *assignment* at a time: the digest of the bundle the control plane wants it
to serve, with a revision that only grows. It fetches bundles by digest, and sends back apply
reports (ACK/NACK) and health reports. Every transport (a watched directory, HTTP, NATS)
implements `NodeChannel`, so the node's config agent does not know which one it talks to.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Protocol


class TransportError(Exception):
    """The control plane (or the bus) could not be reached or answered wrongly.

    A node that sees this keeps serving its current bundle and retries with backoff.
    """


class BundleNotFoundError(TransportError):
    """No bundle with that digest is published."""


@dataclass(frozen=True, slots=True)
class Assignment:
    """The bundle a node should serve. `revision` grows with every new assignment."""

    digest: str
    revision: int


@dataclass(frozen=True, slots=True)
class NoChange:
    """A watch ended (timeout) without a newer assignment."""

    revision: int


class ApplyResult(StrEnum):
    """How applying an assigned bundle ended on a node."""

    ACK = "ack"
    NACK = "nack"
    POISONED = "poisoned"


@dataclass(frozen=True, slots=True)
class ApplyReport:
    """A node's answer to an assignment. `error` says why on NACK or POISONED."""

    node_id: str
    digest: str
    result: ApplyResult
    error: str = ""
    at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ApplyReport:
        return cls(
            node_id=str(data["node_id"]),
            digest=str(data["digest"]),
            result=ApplyResult(data["result"]),
            error=str(data.get("error", "")),
            at=float(data.get("at", 0.0)),
        )


@dataclass(frozen=True, slots=True)
class Quarantine:
    """A bundle a node will not serve: the evidence (`cause`) says it brought the node down.
    The node serves its previous last-known-good instead and answers the assignment POISONED."""

    digest: str
    cause: str
    at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Quarantine:
        return cls(str(data["digest"]), str(data.get("cause", "")), float(data.get("at", 0.0)))


@dataclass(frozen=True, slots=True)
class HealthReport:
    """A node's traffic health over the last window, per bundle digest it served."""

    node_id: str
    digest: str
    lkg_digest: str
    at: float
    window_s: float
    requests: int = 0
    responses_5xx: int = 0
    blocked: int = 0
    challenged: int = 0
    module_errors: int = 0
    breaker_trips: int = 0
    p99_ms: float = 0.0
    poisoned: tuple[str, ...] = field(default_factory=tuple)
    address: str = ""
    degraded: tuple[str, ...] = ()
    """What is failing on the node (a background loop and its last error), one line each; the
    node serves on, but something it should do (follow assignments, persist state) is not done."""
    quarantined: tuple[Quarantine, ...] = ()
    """The bundles in `poisoned`, each with the evidence that quarantined it."""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["poisoned"] = list(self.poisoned)
        data["degraded"] = list(self.degraded)
        data["quarantined"] = [q.to_dict() for q in self.quarantined]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HealthReport:
        return cls(
            node_id=str(data["node_id"]),
            digest=str(data["digest"]),
            lkg_digest=str(data.get("lkg_digest", "")),
            at=float(data["at"]),
            window_s=float(data["window_s"]),
            requests=int(data.get("requests", 0)),
            responses_5xx=int(data.get("responses_5xx", 0)),
            blocked=int(data.get("blocked", 0)),
            challenged=int(data.get("challenged", 0)),
            module_errors=int(data.get("module_errors", 0)),
            breaker_trips=int(data.get("breaker_trips", 0)),
            p99_ms=float(data.get("p99_ms", 0.0)),
            poisoned=tuple(str(d) for d in data.get("poisoned", ())),
            address=str(data.get("address", "")),
            degraded=tuple(str(line) for line in data.get("degraded", ())),
            quarantined=tuple(Quarantine.from_dict(q) for q in data.get("quarantined", ())),
        )


class NodeChannel(Protocol):
    """The node side of a transport."""

    async def watch(
        self, node_id: str, after_revision: int, timeout_s: float
    ) -> Assignment | NoChange:
        """Wait up to `timeout_s` for an assignment newer than `after_revision`."""
        ...

    async def fetch(self, digest: str) -> bytes:
        """The signed envelope of bundle `digest`. Raises BundleNotFoundError."""
        ...

    async def send_apply(self, report: ApplyReport) -> None: ...

    async def send_health(self, report: HealthReport) -> None: ...

    async def close(self) -> None: ...
