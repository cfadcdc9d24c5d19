"""Drill scenarios: YAML files (a library under `failsmall/drill/scenarios/`, or any file a user
copies and edits) parsed into typed steps. A scenario is load, a steady-state hypothesis and a
list of steps; each fault step says how it is rolled back."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import Field, ValidationError

from failsmall.model.base import Strict
from failsmall.model.traffic import MIB


class ScenarioError(Exception):
    """A scenario that cannot be found or read; the message says which and why."""


# -- bundle changes a push step makes ---------------------------------------------------------


class BodyBuffer(Strict):
    """Raise (or lower) the WAF body inspection buffer."""

    type: Literal["body_buffer"]
    bytes: int = Field(default=1 * MIB, ge=1024, le=16 * MIB)


class BlockEveryone(Strict):
    """Insert a valid rule that blocks every request at the top of the site's custom rules."""

    type: Literal["block_everyone"]
    ruleset: str = "site-custom"


class DeadOrigin(Strict):
    """Point an origin at a loopback port nothing listens on."""

    type: Literal["dead_origin"]
    origin: str = "web"


class Aborts(Strict):
    """Abort a share of requests at the edge (the fault module), an error storm in one module."""

    type: Literal["aborts"]
    percent: float = Field(default=50, gt=0, le=100)
    status: int = Field(default=503, ge=500, le=599)


class FeatureFileSize(Strict):
    """Replace the bot feature file with the one the feature pipeline learns from a table of
    `features` columns: a content update with as many inputs as that."""

    type: Literal["feature_file"]
    features: int = Field(default=201, ge=22, le=1_000)


class Pattern(Strict):
    """Insert `rules` log rules that test `pattern` against the user agent and the URI at the
    top of the site's custom rules: a pattern the build may refuse, or an expensive one."""

    type: Literal["pattern"]
    pattern: str = Field(min_length=1, max_length=4096)
    rules: int = Field(default=1, ge=1, le=200)
    ruleset: str = "site-custom"


Change = Annotated[
    BodyBuffer | BlockEveryone | DeadOrigin | Aborts | FeatureFileSize | Pattern,
    Field(discriminator="type"),
]

# -- steps ------------------------------------------------------------------------------------

Wait = Literal["rollout", "none"]


class PushStep(Strict):
    """Push the seed bundle with `change` applied; rolled back by restoring the seed bundle."""

    type: Literal["push"]
    change: Change
    wait: Wait = "rollout"
    hold_s: float = Field(default=0, ge=0, le=600)


class KillswitchStep(Strict):
    """Switch a rule off through the fleet's killswitch path; rolled back with the seed."""

    type: Literal["killswitch"]
    rule: str
    state: Literal["disabled", "log_only"] = "disabled"
    wait: Wait = "rollout"
    hold_s: float = Field(default=0, ge=0, le=600)


class FlapFeaturesStep(Strict):
    """Push the bot feature file once per cycle, good or doubled as `sequence` says (the
    doubled one past node capacity); rolled back with the seed."""

    type: Literal["flap_features"]
    capacity: int = Field(default=200, ge=1)
    sequence: list[Literal["good", "doubled"]] = Field(min_length=1, max_length=100)
    cycle_s: float = Field(default=6, gt=0, le=600)


class KillNodeStep(Strict):
    """kill -9 a node's processes; rolled back by starting it again (it boots its LKG)."""

    type: Literal["kill_node"]
    node: int = Field(default=1, ge=1)
    down_s: float = Field(default=5, ge=0, le=600)


class StopNodeStep(Strict):
    """SIGSTOP a node's processes; rolled back with SIGCONT."""

    type: Literal["stop_node"]
    node: int = Field(default=1, ge=1)
    for_s: float = Field(default=5, ge=0, le=600)


class ControlDownStep(Strict):
    """Stop the control plane; rolled back by starting it again on the same store and port."""

    type: Literal["control_down"]
    for_s: float = Field(default=10, ge=0, le=600)


class PartitionStep(Strict):
    """Cut the transport between some nodes and the control plane (a fault-injecting TCP proxy
    sits on each node's link); rolled back by mending it."""

    type: Literal["partition"]
    nodes: list[int] = Field(default_factory=lambda: [2], min_length=1)
    mode: Literal["cut", "blackhole"] = "cut"
    """`cut`: connections closed and refused; `blackhole`: nothing passes, nothing closes."""
    for_s: float = Field(default=20, ge=0, le=600)


class SlowOriginStep(Strict):
    """Hold back every reply of the origin `delay_s` (a fault-injecting TCP proxy sits between
    the nodes and the origin); rolled back by mending the link."""

    type: Literal["slow_origin"]
    delay_s: float = Field(default=1.5, gt=0, le=60)
    for_s: float = Field(default=10, ge=0, le=600)


class WaitStep(Strict):
    type: Literal["wait"]
    seconds: float = Field(ge=0, le=600)


Step = Annotated[
    PushStep
    | KillswitchStep
    | FlapFeaturesStep
    | KillNodeStep
    | StopNodeStep
    | ControlDownStep
    | PartitionStep
    | SlowOriginStep
    | WaitStep,
    Field(discriminator="type"),
]

# -- the scenario -----------------------------------------------------------------------------


class LoadSpec(Strict):
    """Open-loop load over every node in turn, bounded in rate, count and time."""

    rate: float = Field(default=200, gt=0, le=5_000)
    timeout_s: float = Field(default=2.0, gt=0, le=60)
    max_in_flight: int = Field(default=400, ge=1, le=10_000)


class Hypothesis(Strict):
    """The steady state: over the last `window_s`, at most `max_failed_share` of requests
    failed (blocked, 5xx or lost) and p99 latency stayed under `max_p99_ms`."""

    window_s: float = Field(default=2.0, gt=0, le=60)
    max_failed_share: float = Field(default=0.01, ge=0, le=1)
    max_p99_ms: float = Field(default=1000, gt=0)


class Scenario(Strict):
    name: str = Field(min_length=1, max_length=100)
    title: str = ""
    incident: str = ""
    nodes: int = Field(default=3, ge=1, le=10)
    seed_features: int = Field(default=0, ge=0, le=1_000)
    """0: the seed carries the example's bot feature file; above 0: the file the feature
    pipeline learns from a table of this many feature columns (at least its 22 candidates)."""
    load: LoadSpec = Field(default_factory=LoadSpec)
    hypothesis: Hypothesis = Field(default_factory=Hypothesis)
    warmup_s: float = Field(default=4, ge=0, le=120)
    observe_s: float = Field(default=3, ge=0, le=600)
    recover_s: float = Field(default=45, gt=0, le=600)
    steps: list[Step] = Field(min_length=1)

    def needs_local_fleet(self) -> bool:
        """Whether a step signals processes or cuts links, which only a fleet the drill
        started allows."""
        local = KillNodeStep | StopNodeStep | ControlDownStep | PartitionStep | SlowOriginStep
        return any(isinstance(s, local) for s in self.steps)

    def needs_origin_link(self) -> bool:
        """Whether a step slows the origin, which needs a proxy in front of it."""
        return any(isinstance(s, SlowOriginStep) for s in self.steps)


def library() -> list[str]:
    """The names of the scenarios that ship with failsmall."""
    folder = resources.files("failsmall.drill").joinpath("scenarios")
    return sorted(
        p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
    )


def library_text(name: str) -> str:
    folder = resources.files("failsmall.drill").joinpath("scenarios")
    entry = folder.joinpath(f"{name}.yaml")
    if not entry.is_file():
        raise ScenarioError(
            f"no scenario {name!r}; built in: {', '.join(library())} (or pass a YAML file path)"
        )
    return entry.read_text()


def parse(text: str, where: str) -> Scenario:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{where}: not YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ScenarioError(f"{where}: a scenario is a YAML mapping")
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:8]
        )
        raise ScenarioError(f"{where}: {problems}") from exc


def text(name_or_path: str) -> str:
    """The YAML of a built-in scenario by name, or of a file by path."""
    path = Path(name_or_path)
    if name_or_path.endswith((".yaml", ".yml")) or path.is_file():
        try:
            return path.read_text()
        except OSError as exc:
            raise ScenarioError(f"cannot read {path}: {exc.strerror}") from exc
    return library_text(name_or_path)


def load(name_or_path: str) -> Scenario:
    """A built-in scenario by name, or a YAML file by path."""
    return parse(text(name_or_path), name_or_path)
