"""The control side of every transport: publish bundles, move channel pointers, hear reports.

The control plane owns one `ControlChannel`. It publishes each bundle once (by digest), moves a
node's pointer with `assign` (the rollout driver's only way to change what a node serves), and
receives every apply and health report through the `ReportSink` it passes to `start`.
"""

from __future__ import annotations

from typing import Protocol

from failsmall.supervise import LoopHealth
from failsmall.transport.base import ApplyReport, Assignment, HealthReport


class ReportSink(Protocol):
    """Where a transport delivers the reports nodes send."""

    async def on_apply(self, report: ApplyReport) -> None: ...

    async def on_health(self, report: HealthReport) -> None: ...


class ControlChannel(Protocol):
    """The control-plane side of a transport."""

    async def start(self, sink: ReportSink) -> None:
        """Begin delivering node reports to `sink`."""
        ...

    async def publish_bundle(self, digest: str, envelope: bytes) -> None:
        """Make the signed envelope fetchable by digest. Publishing twice is harmless."""
        ...

    async def assign(self, node_id: str, digest: str) -> Assignment:
        """Point `node_id` at bundle `digest`; returns the assignment with its new revision."""
        ...

    async def assignments(self) -> dict[str, Assignment]:
        """The current pointer of every node that has one."""
        ...

    def health(self) -> list[LoopHealth]:
        """The health of the transport's own background loops (none for some transports)."""
        ...

    async def close(self) -> None: ...
