"""Staged, health-gated rollouts as pure code, shared by the control plane and the simulator.

- `classify(old, new)` computes a change's class by semantic diff (`check_declared` refuses a
  downgrade); `policy_for(change_class)` picks its policy (`policy_named("global")` only by name).
- `RolloutMachine` moves one bundle through the fleet wave by wave. Drive it by feeding events
  (`Start`, `Tick`, `Applied`, `NodeJoined`, `NodeLeft`, `Pause`, `Resume`, `Abort`,
  `Rollback`) to `handle`, executing the returned commands (`Assign`, `AuditEntry`) in order,
  and persisting `to_dict()`; `RolloutMachine.from_dict` resumes after a restart. The
  transition table is in `failsmall.rollout.machine`.
- `RolloutBook` allows one active rollout per fleet.
- `HealthSample` is what the gate reads; convert node health reports into it.

Nothing here does I/O or reads a clock: time comes in on events.
"""

from failsmall.rollout.book import RolloutBook
from failsmall.rollout.classify import (
    ChangeClass,
    Classification,
    Difference,
    DifferenceKind,
    check_declared,
    classify,
)
from failsmall.rollout.commands import Assign, AuditEntry, Command, command_from_dict
from failsmall.rollout.errors import (
    ClassDowngradeError,
    EmptySelectionError,
    InvalidTransitionError,
    NoChangeError,
    PolicyError,
    RolloutConflictError,
    RolloutError,
    StateFormatError,
    UnknownPolicyError,
)
from failsmall.rollout.events import (
    Abort,
    Applied,
    ApplyOutcome,
    Event,
    NodeJoined,
    NodeLeft,
    Pause,
    Resume,
    Rollback,
    Start,
    Tick,
    event_from_dict,
    event_to_dict,
)
from failsmall.rollout.gate import (
    GateFail,
    GateInconclusive,
    GateInput,
    GatePass,
    GateVerdict,
    HealthSample,
    SideStats,
    evaluate_gate,
)
from failsmall.rollout.machine import RolloutMachine, Step
from failsmall.rollout.policy import (
    CONTENT,
    EXPEDITED,
    GLOBAL,
    LOGIC,
    NAMED_POLICIES,
    GateThresholds,
    Policy,
    Wave,
    policy_for,
    policy_named,
)
from failsmall.rollout.states import (
    Aborted,
    Baking,
    Completed,
    Paused,
    Pending,
    RolledBack,
    RollingBack,
    RolloutState,
    is_terminal,
    state_from_dict,
    state_name,
    state_to_dict,
)
from failsmall.rollout.waves import fleet_order, node_rank, wave_members

__all__ = [
    "CONTENT",
    "EXPEDITED",
    "GLOBAL",
    "LOGIC",
    "NAMED_POLICIES",
    "Abort",
    "Aborted",
    "Applied",
    "ApplyOutcome",
    "Assign",
    "AuditEntry",
    "Baking",
    "ChangeClass",
    "ClassDowngradeError",
    "Classification",
    "Command",
    "Completed",
    "Difference",
    "DifferenceKind",
    "EmptySelectionError",
    "Event",
    "GateFail",
    "GateInconclusive",
    "GateInput",
    "GatePass",
    "GateThresholds",
    "GateVerdict",
    "HealthSample",
    "InvalidTransitionError",
    "NoChangeError",
    "NodeJoined",
    "NodeLeft",
    "Pause",
    "Paused",
    "Pending",
    "Policy",
    "PolicyError",
    "Resume",
    "Rollback",
    "RolledBack",
    "RollingBack",
    "RolloutBook",
    "RolloutConflictError",
    "RolloutError",
    "RolloutMachine",
    "RolloutState",
    "SideStats",
    "Start",
    "StateFormatError",
    "Step",
    "Tick",
    "UnknownPolicyError",
    "Wave",
    "check_declared",
    "classify",
    "command_from_dict",
    "evaluate_gate",
    "event_from_dict",
    "event_to_dict",
    "fleet_order",
    "is_terminal",
    "node_rank",
    "policy_for",
    "policy_named",
    "state_from_dict",
    "state_name",
    "state_to_dict",
    "wave_members",
]
