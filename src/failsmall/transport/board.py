"""The control plane's channel pointers held in memory, with waiting for changes.

A `PointerBoard` maps node ids to assignments. Every `assign` takes the next fleet-wide
revision, so revisions grow across the whole board exactly as NATS KV revisions do, and a node
that reconnects can compare the revision it last saw with the current one.

`record` (if given) is called with every new assignment before any waiting node can see it: a
board rebuilt from what was recorded never hands out a revision a node has already seen.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from failsmall.transport.base import Assignment, NoChange


class PointerBoard:
    """Assignments per node, with long-poll waiting for an assignment newer than a revision."""

    def __init__(
        self,
        assignments: Mapping[str, Assignment] | None = None,
        record: Callable[[str, Assignment], None] | None = None,
    ) -> None:
        self._record = record
        self._assignments: dict[str, Assignment] = dict(assignments or {})
        self._revision = max((a.revision for a in self._assignments.values()), default=0)
        self._changed = asyncio.Condition()
        self._released = False

    @property
    def revision(self) -> int:
        """The highest revision handed out so far."""
        return self._revision

    def snapshot(self) -> dict[str, Assignment]:
        return dict(self._assignments)

    def current(self, node_id: str) -> Assignment | NoChange:
        """The node's assignment, or `NoChange(0)` when it has never been assigned anything."""
        return self._assignments.get(node_id, NoChange(revision=0))

    async def assign(self, node_id: str, digest: str) -> Assignment:
        assignment = Assignment(digest=digest, revision=self._revision + 1)
        if self._record is not None:
            self._record(node_id, assignment)
        self._revision = assignment.revision
        self._assignments[node_id] = assignment
        async with self._changed:
            self._changed.notify_all()
        return assignment

    async def release(self) -> None:
        """End every wait now (with NoChange), so that a shutdown does not wait on long-polls."""
        self._released = True
        async with self._changed:
            self._changed.notify_all()

    async def wait(
        self, node_id: str, after_revision: int, timeout_s: float
    ) -> Assignment | NoChange:
        """The node's assignment once it is newer than `after_revision`, else NoChange."""

        def newer() -> bool:
            current = self._assignments.get(node_id)
            return self._released or (current is not None and current.revision > after_revision)

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(newer), timeout=max(timeout_s, 0))
            except TimeoutError:
                return NoChange(revision=after_revision)
        current = self._assignments.get(node_id)
        if current is None or current.revision <= after_revision:
            return NoChange(revision=after_revision)
        return current
