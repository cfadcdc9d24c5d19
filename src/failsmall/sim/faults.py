"""Bad changes the simulator can push: how each changes the bundle and how nodes behave on it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from failsmall.model import Bundle
from failsmall.sim import bundles
from failsmall.sim.behaviour import BLOCKS_EVERYONE, CRASH_LOOP, HALF_ABORTED, Behaviour


@dataclass(frozen=True, slots=True)
class Fault:
    """A bad change: `change` applied to the last good bundle, served with `behaviour`."""

    change: Callable[[Bundle], Bundle]
    behaviour: Behaviour
    label: str


FAULTS: dict[str, Fault] = {
    "bad-canary": Fault(bundles.block_everyone, BLOCKS_EVERYONE, "v2-blocks-all"),
    "fault-abort": Fault(bundles.half_aborted, HALF_ABORTED, "v2-aborts"),
    "crash-loop": Fault(bundles.bigger_body_buffer, CRASH_LOOP, "v2-crashes"),
}
"""By the name of the scenario that pushes it."""
