"""Definitions shared by every report of a fault's figures (a drill's, the simulator's).

A time to detect or to roll back is `Measured` or, with the reason, `NotMeasured`; a bundle
under which a node fails at least `BAD_SHARE` of its requests is a bad bundle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import assert_never

BAD_SHARE = 0.05


@dataclass(frozen=True, slots=True)
class Measured:
    seconds: float


@dataclass(frozen=True, slots=True)
class NotMeasured:
    why: str


Timing = Measured | NotMeasured


def timing_value(timing: Timing) -> float | dict[str, str]:
    """A timing as JSON: seconds (to the hundredth), or `{"not_measured": why}`."""
    match timing:
        case Measured(seconds=seconds):
            return round(seconds, 2)
        case NotMeasured(why=why):
            return {"not_measured": why}
        case _:
            assert_never(timing)
