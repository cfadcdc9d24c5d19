"""A deterministic discrete-event fleet simulator driving the real rollout machine.

`run_scenario(name, SimSettings(nodes=..., seed=...))` runs one of `SCENARIOS` over thousands
of virtual nodes on a virtual clock and returns a `ScenarioResult` with per-rollout figures, a
timeline of which bundle each node served, and the properties the scenario must hold.
"""

from failsmall.sim.behaviour import Behaviour
from failsmall.sim.report import Check, RolloutRecord, ScenarioResult, TimelineRow
from failsmall.sim.scenarios import SCENARIOS, Scenario, UnknownScenarioError, run_scenario
from failsmall.sim.world import SimSettings, SimulationError, World

__all__ = [
    "SCENARIOS",
    "Behaviour",
    "Check",
    "RolloutRecord",
    "Scenario",
    "ScenarioResult",
    "SimSettings",
    "SimulationError",
    "TimelineRow",
    "UnknownScenarioError",
    "World",
    "run_scenario",
]
