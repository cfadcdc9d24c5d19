"""Counted work: what inspecting one request costs, against the bundle's WAF work limits.

Inspection is bounded by counting, never by the clock, so the same request and bundle give the
same verdict on every run and under any load. When a count would pass its limit, inspection of
that part stops and a `LimitReached` names the limit; the bundle's `waf_over_limit` decides the
verdict (see `failsmall.engine.waf`). Nothing stops silently.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LimitReached:
    """Inspection went past a work limit. `limit` is the name of the `Limits` field (or
    `multipart_framing` / `content_encoding` for a body the WAF cannot read as the origin
    would); `detail` says by how much or why."""

    limit: str
    detail: str


class WorkCount:
    """The scanner's counts for one request: values inspected and characters scanned.

    `charge` adds a value's work and says whether it still fits; the first value that does not
    fit is not inspected, and `reached` says which limit stopped the inspection.
    """

    __slots__ = ("chars", "max_chars", "max_values", "reached", "values")

    def __init__(self, max_values: int, max_chars: int) -> None:
        self.max_values = max_values
        self.max_chars = max_chars
        self.values = 0
        self.chars = 0
        self.reached: LimitReached | None = None

    def fits(self, values: int, chars: int) -> bool:
        """Whether `values` more values costing `chars` more characters fit the limits; when
        they do they are counted, else the limit reached is recorded."""
        if self.values + values > self.max_values:
            self.reached = LimitReached(
                "waf_max_values", f"more than {self.max_values} values to inspect"
            )
            return False
        if self.chars + chars > self.max_chars:
            self.reached = LimitReached(
                "waf_max_transformed_chars",
                f"more than {self.max_chars} characters to scan after transforms",
            )
            return False
        self.values += values
        self.chars += chars
        return True
