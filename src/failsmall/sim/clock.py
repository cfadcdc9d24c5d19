"""A virtual clock with an ordered queue of future happenings."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(order=True, slots=True)
class _Entry(Generic[T]):
    at: float
    seq: int
    item: T = field(compare=False)


class EventQueue(Generic[T]):
    """Happenings ordered by virtual time, then by the order they were scheduled."""

    def __init__(self) -> None:
        self._heap: list[_Entry[T]] = []
        self._seq = 0
        self.now = 0.0

    def schedule(self, at: float, item: T) -> None:
        self._seq += 1
        heapq.heappush(self._heap, _Entry(max(at, self.now), self._seq, item))

    def __bool__(self) -> bool:
        return bool(self._heap)

    def next_at(self) -> float:
        return self._heap[0].at

    def pop(self) -> T:
        entry = heapq.heappop(self._heap)
        self.now = entry.at
        return entry.item
