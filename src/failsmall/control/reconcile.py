"""The reconciler: moves channel pointers until every node's pointer names its desired bundle.

The rollout driver only writes desired state (`ControlStore.set_desired`, in the transaction of
the rollout step that decided it). The reconciler compares it with the pointers the transport
holds (`ControlStore.assignments`) and makes the missing moves concurrently, at most
`concurrency` at once, each node with its own exponential backoff after a failure. A control
plane restarted at any moment finds the moves still to make in the store, so none is lost; a
bus outage delays them and never drops them.

Each pass is one step of a supervised loop (`failsmall.supervise`): it runs when woken (the
driver decided something) or every `interval_s`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from failsmall.control.store import ControlStore
from failsmall.transport.base import Assignment, TransportError
from failsmall.transport.control import ControlChannel

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PendingMove:
    """A desired pointer move not made yet, and why (empty before its first try)."""

    node_id: str
    digest: str
    attempts: int
    last_error: str


@dataclass
class _Retry:
    attempts: int
    not_before: float
    error: str


class Reconciler:
    """Makes the transport's pointers match the store's desired state."""

    def __init__(
        self,
        store: ControlStore,
        channel: ControlChannel,
        clock: Callable[[], float],
        *,
        concurrency: int = 32,
        interval_s: float = 1.0,
        backoff_s: float = 0.2,
        max_backoff_s: float = 10.0,
    ) -> None:
        self._store = store
        self._channel = channel
        self._clock = clock
        self._limit = asyncio.Semaphore(concurrency)
        self.interval_s = interval_s
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._retries: dict[str, _Retry] = {}
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Ask for a pass now (desired state changed)."""
        self._wake.set()

    def pending(self) -> list[PendingMove]:
        """Every node whose pointer does not name its desired bundle yet."""
        pointers = self._store.assignments()
        moves = []
        for node_id, digest in sorted(self._store.desired().items()):
            pointer = pointers.get(node_id)
            if pointer is None or pointer.digest != digest:
                retry = self._retries.get(node_id)
                attempts, error = (retry.attempts, retry.error) if retry else (0, "")
                moves.append(PendingMove(node_id, digest, attempts, error))
        return moves

    async def step(self) -> None:
        """Wait to be woken (or `interval_s`), then make one pass."""
        try:
            async with asyncio.timeout(self.interval_s):
                await self._wake.wait()
        except TimeoutError:
            pass
        self._wake.clear()
        await self.reconcile()

    async def reconcile(self) -> int:
        """Make every pending move that is not backing off, concurrently; returns how many
        moves were made. A move that fails is retried on a later pass."""
        now = self._clock()
        due = [
            move
            for move in self.pending()
            if move.node_id not in self._retries or self._retries[move.node_id].not_before <= now
        ]
        results = await asyncio.gather(*(self._move(m.node_id, m.digest) for m in due))
        return sum(results)

    async def _move(self, node_id: str, digest: str) -> bool:
        async with self._limit:
            try:
                assignment = await self._channel.assign(node_id, digest)
            except TransportError as exc:
                self._failed(node_id, digest, exc)
                return False
        self._store.save_assignment(node_id, assignment)
        self._retries.pop(node_id, None)
        return True

    def _failed(self, node_id: str, digest: str, exc: TransportError) -> None:
        attempts = self._retries[node_id].attempts + 1 if node_id in self._retries else 1
        delay = min(self._max_backoff_s, self._backoff_s * 2 ** min(attempts - 1, 30))
        self._retries[node_id] = _Retry(attempts, self._clock() + delay, str(exc))
        if attempts == 1 or attempts % 10 == 0:
            log.warning(
                "moving %s to %s failed (%d tries), retrying in %.1f s: %s",
                node_id,
                digest,
                attempts,
                delay,
                exc,
            )

    def record(self, node_id: str, assignment: Assignment) -> None:
        """Note a pointer the transport holds (read back from it after a restart)."""
        self._store.save_assignment(node_id, assignment)
