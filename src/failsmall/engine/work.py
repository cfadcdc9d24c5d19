"""Counted work: what inspecting one request costs, against the bundle's WAF work limits.

Inspection is bounded by counting, never by the clock, so the same request and bundle give the
same verdict on every run and under any load. When a count would pass its limit, inspection of
that part stops and a `LimitReached` names the limit; the bundle's `waf_over_limit` decides the
verdict (see `failsmall.engine.waf`). Nothing stops silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import assert_never


@dataclass(frozen=True, slots=True)
class LimitReached:
    """Inspection went past a work limit. `limit` is the name of the `Limits` field (or
    `multipart_framing` / `content_encoding` for a body the WAF cannot read as the origin
    would); `detail` says by how much or why."""

    limit: str
    detail: str


class Stop(IntEnum):
    """Where a walk over values ended: after the last value, or before the first value whose
    work would pass the values limit, or the characters limit (checked in that order). The
    compiled walks return it as its number."""

    NONE = 0
    MAX_VALUES = 1
    MAX_CHARS = 2


#: Each `Stop` at its number (`Stop(n)` costs as much as a whole memo lookup).
STOPS: tuple[Stop, ...] = tuple(sorted(Stop))


class WorkCount:
    """The scanner's counts for one request: values inspected and characters scanned.

    `fits` adds a value's work and says whether it still fits; the first value that does not
    fit is not inspected, and `reached` says which limit stopped the inspection. `add` counts
    the work of a walk done in one call (which stopped there on its own).
    """

    __slots__ = ("chars", "max_chars", "max_values", "reached", "values")

    def __init__(self, max_values: int, max_chars: int) -> None:
        self.max_values = max_values
        self.max_chars = max_chars
        self.values = 0
        self.chars = 0
        self.reached: LimitReached | None = None

    @property
    def room(self) -> tuple[int, int]:
        """The values and characters left before a limit."""
        return self.max_values - self.values, self.max_chars - self.chars

    def stop_at(self, values: int, chars: int) -> Stop:
        """Which limit `values` more values costing `chars` more characters would pass."""
        if self.values + values > self.max_values:
            return Stop.MAX_VALUES
        if self.chars + chars > self.max_chars:
            return Stop.MAX_CHARS
        return Stop.NONE

    def fits(self, values: int, chars: int) -> bool:
        """Whether `values` more values costing `chars` more characters fit the limits; when
        they do they are counted, else the limit reached is recorded."""
        stop = self.stop_at(values, chars)
        if stop is Stop.NONE:
            return self.add(values, chars, stop)
        return self.add(0, 0, stop)

    def add(self, values: int, chars: int, stop: Stop) -> bool:
        """Count `values` values and `chars` characters inspected by a walk that ended at
        `stop`; False, with the limit recorded in `reached`, when a limit stopped it."""
        self.values += values
        self.chars += chars
        match stop:
            case Stop.NONE:
                return True
            case Stop.MAX_VALUES:
                self.reached = LimitReached(
                    "waf_max_values", f"more than {self.max_values} values to inspect"
                )
            case Stop.MAX_CHARS:
                self.reached = LimitReached(
                    "waf_max_transformed_chars",
                    f"more than {self.max_chars} characters to scan after transforms",
                )
            case _:
                assert_never(stop)
        return False
