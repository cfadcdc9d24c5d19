"""The fleets a drill can run on, by profile name."""

from __future__ import annotations

import contextlib
from enum import StrEnum
from pathlib import Path
from typing import assert_never

from failsmall.drill.defended import local_fleet
from failsmall.drill.fleet import Fleet
from failsmall.drill.hotwired.fleet import hotwired_fleet
from failsmall.drill.runner import FleetFactory
from failsmall.drill.scenario import Scenario


class Profile(StrEnum):
    DEFAULT = "default"
    """The fleet as failsmall ships it."""
    HOTWIRED = "hotwired"
    """The same scenario on a fleet with the defences switched off."""


def factory(profile: Profile, keep: Path | None = None) -> FleetFactory:
    def start(scenario: Scenario) -> contextlib.AbstractAsyncContextManager[Fleet]:
        where = keep / profile.value if keep is not None else None
        match profile:
            case Profile.DEFAULT:
                return local_fleet(scenario.nodes, scenario.seed_features, where)
            case Profile.HOTWIRED:
                return hotwired_fleet(scenario.nodes, scenario.seed_features, where)
            case _:
                assert_never(profile)

    return start
