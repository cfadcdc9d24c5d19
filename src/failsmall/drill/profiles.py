"""The fleets a drill can run on, by profile name."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import assert_never

from failsmall.drill.defended import local_fleet, remote_fleet
from failsmall.drill.fleet import Fleet, FleetError
from failsmall.drill.hotwired.fleet import hotwired_fleet
from failsmall.drill.runner import FleetFactory
from failsmall.drill.scenario import Scenario


class Profile(StrEnum):
    DEFAULT = "default"
    """The fleet as failsmall ships it."""
    HOTWIRED = "hotwired"
    """The same scenario on a fleet with the defences switched off."""


@dataclass(frozen=True)
class RunningFleet:
    """A fleet the drill reaches through its control plane instead of starting one."""

    control: str
    token: str
    key: Path


def factory(
    profile: Profile, keep: Path | None = None, running: RunningFleet | None = None
) -> FleetFactory:
    def start(scenario: Scenario) -> contextlib.AbstractAsyncContextManager[Fleet]:
        where = keep / profile.value if keep is not None else None
        match profile:
            case Profile.DEFAULT if running is not None:
                if scenario.needs_local_fleet():
                    raise FleetError(
                        f"scenario {scenario.name} signals processes or cuts links, which only "
                        "a fleet the drill starts allows: drop --control"
                    )
                return remote_fleet(running.control, running.token, running.key)
            case Profile.DEFAULT:
                return local_fleet(
                    scenario.nodes, scenario.seed_features, where, scenario.needs_origin_link()
                )
            case Profile.HOTWIRED:
                return hotwired_fleet(
                    scenario.nodes, scenario.seed_features, where, scenario.needs_origin_link()
                )
            case _:
                assert_never(profile)

    return start
