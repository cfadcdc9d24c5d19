"""Publishing a feature file: guards, then a bundle that carries it, signed and pushed through
the normal rollout as a `content` change (canary first). Every decision (published, refused by a
guard, accepted past the delta guard, rejected by the fleet) is recorded in the control plane's
audit log (`POST /v1/audit`, actor: the token's principal), so `failsmall audit` shows it beside
the rollout it caused. The state directory keeps only `last-published.yaml`, what the delta
guard compares with."""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from failsmall.control.api import MAX_REASON
from failsmall.features.generate import write_feature_file
from failsmall.features.guards import (
    DEFAULT_MAX_DELTA,
    Acceptance,
    GuardRefused,
    GuardReport,
    check,
)
from failsmall.model import Bundle, sign_bundle
from failsmall.model.bot import FeatureFile
from failsmall.model.envelope import bundle_data
from failsmall.model.text import printable

ACTOR = "features"
DETAIL_TEXT = 300
DETAIL_ITEMS = 10
"""A recorded decision's details keep each string to 300 characters and each list to 10 items
(then a line saying how many more), which keeps them under the control plane's limit on a
client's details (`control.api.MAX_DETAILS`, 16 KiB) whatever the feature file holds."""


class PublishRejected(Exception):
    """The fleet did not take the file (the push was refused or its rollout did not
    complete); the fleet stays on its last good bundle."""


class DecisionUnrecorded(Exception):
    """A decision was made but the control plane did not record it in its audit log.
    `problems` are the guard's findings when the decision was a refusal."""

    def __init__(self, message: str, problems: list[str]) -> None:
        super().__init__(message)
        self.problems = problems


class ControlPlane(Protocol):
    """The control plane, as publishing needs it."""

    def push(self, envelope: bytes) -> dict[str, Any]:
        """Push a signed bundle declared `content`; returns digest, rollout_id, change_class.
        Raises PublishRejected when the control plane refuses it."""
        ...

    def wait(self, rollout_id: str) -> dict[str, Any]:
        """The rollout's final row (state completed, rolled_back or aborted)."""
        ...

    def record(self, action: str, reason: str, details: dict[str, Any]) -> None:
        """Append a decision to the audit log. Raises DecisionUnrecorded (with no problems)."""
        ...


@dataclass
class PublishState:
    """The state directory of one feature pipeline."""

    directory: Path

    @property
    def last_published(self) -> Path:
        return self.directory / "last-published.yaml"

    def previous(self) -> FeatureFile | None:
        if not self.last_published.exists():
            return None
        return FeatureFile.model_validate(yaml.safe_load(self.last_published.read_text()))


@dataclass(frozen=True, slots=True)
class Published:
    version: str
    digest: str
    rollout_id: str
    guards: GuardReport


def publish(
    data: dict[str, Any],
    *,
    base: Bundle,
    key: Ed25519PrivateKey,
    control: ControlPlane,
    state: PublishState,
    capacity: int | None = None,
    max_delta: float = DEFAULT_MAX_DELTA,
    accepted: Acceptance | None = None,
) -> Published:
    """Guard, build, sign, push and wait. Raises GuardRefused (nothing was pushed) or
    PublishRejected (the fleet stays on its last good bundle), both recorded in the control
    plane's audit log; or DecisionUnrecorded, chained to the decision, when that record failed."""
    slots = capacity if capacity is not None else base.requires.bot_feature_slots
    version = str(data.get("version", ""))
    try:
        parsed, report = check(
            data, capacity=slots, previous=state.previous(), max_delta=max_delta, accepted=accepted
        )
    except GuardRefused as exc:
        why = f"feature file {version!r} refused before publishing: " + "; ".join(exc.problems)
        _record(
            control,
            "features_refused",
            why,
            {"version": version, "problems": exc.problems},
            exc.problems,
        )
        raise
    if report.accepted is not None:
        _record(
            control,
            "features_delta_accepted",
            report.accepted.reason,
            {"version": version, "accepted_by": report.accepted.by, "guards": report.to_dict()},
        )
    changed = bundle_data(base)
    changed.setdefault("bot", {})["feature_file"] = parsed.model_dump(mode="json")
    bundle = Bundle.model_validate(changed)
    signed = sign_bundle(bundle, key)
    try:
        pushed = control.push(signed.to_bytes())
        final = control.wait(str(pushed["rollout_id"]))
    except PublishRejected as exc:
        _record(control, "features_rejected", str(exc), {"version": version})
        raise
    if final.get("state") != "completed":
        why = (
            f"rollout {pushed['rollout_id']} of feature file {version!r} ended "
            f"{final.get('state')}; the fleet stays on its last good bundle"
        )
        _record(
            control,
            "features_rejected",
            why,
            {"version": version, "digest": signed.digest, "rollout_id": pushed["rollout_id"]},
        )
        raise PublishRejected(why)
    write_feature_file(parsed.model_dump(mode="json"), state.last_published)
    _record(
        control,
        "features_published",
        f"published feature file {version!r}",
        {
            "version": version,
            "digest": signed.digest,
            "rollout_id": pushed["rollout_id"],
            "guards": report.to_dict(),
        },
    )
    return Published(version, signed.digest, str(pushed["rollout_id"]), report)


def _record(
    control: ControlPlane,
    action: str,
    reason: str,
    details: dict[str, Any],
    problems: list[str] | None = None,
) -> None:
    """Record a decision; a failure to record carries the decision's problems with it."""
    try:
        control.record(action, _clip(printable(reason), MAX_REASON), _for_audit(details))
    except DecisionUnrecorded as exc:
        raise DecisionUnrecorded(f"{reason}; {exc}", problems or []) from exc


def _for_audit(value: Any) -> Any:
    """`value` (JSON) with every string made printable and clipped, and every list clipped."""
    match value:
        case str():
            return _clip(printable(value), DETAIL_TEXT)
        case dict():
            return {_for_audit(str(k)): _for_audit(v) for k, v in value.items()}
        case list() | tuple():
            kept = [_for_audit(v) for v in value[:DETAIL_ITEMS]]
            more = len(value) - DETAIL_ITEMS
            return [*kept, f"... and {more} more"] if more > 0 else kept
        case _:
            return value


def _clip(text: str, longest: int) -> str:
    return text if len(text) <= longest else text[: longest - 1] + "…"


def who() -> str:
    """Who accepts a delta: the user running the command."""
    try:
        return f"{ACTOR}:{getpass.getuser()}"
    except (KeyError, OSError):
        return ACTOR
