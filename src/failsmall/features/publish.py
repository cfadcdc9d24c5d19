"""Publishing a feature file: guards, then a bundle that carries it, signed and pushed through
the normal rollout as a `content` change (canary first). What was published last, and every
refusal, acceptance and rejection, is kept in a state directory: `last-published.yaml` (what
the delta guard compares with) and `audit.db` (the hash-chained audit log of the control plane's
format)."""

from __future__ import annotations

import getpass
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from failsmall.control.audit import AuditLog, CheckpointFile, read_entries
from failsmall.control.store import ControlStore
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

ACTOR = "features"


class PublishRejected(Exception):
    """The fleet did not take the file (the push was refused or its rollout did not
    complete); the fleet stays on its last good bundle."""


class Pusher(Protocol):
    """The control plane, as publishing needs it."""

    def push(self, envelope: bytes) -> dict[str, Any]:
        """Push a signed bundle declared `content`; returns digest, rollout_id, change_class.
        Raises PublishRejected when the control plane refuses it."""
        ...

    def wait(self, rollout_id: str) -> dict[str, Any]:
        """The rollout's final row (state completed, rolled_back or aborted)."""
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

    def audit(
        self, key: Ed25519PrivateKey, action: str, reason: str, details: dict[str, Any]
    ) -> None:
        """Append to the pipeline's audit log, anchored by checkpoints signed with `key`."""
        store = ControlStore(self.directory / "audit.db")
        checkpoints = CheckpointFile(self.directory / "audit.db.audit-checkpoints")
        try:
            AuditLog(store, key, checkpoints).append(time.time(), who(), action, reason, details)
        finally:
            store.close()

    def entries(self) -> list[dict[str, Any]]:
        store = ControlStore(self.directory / "audit.db")
        try:
            return [e.to_dict() for e in read_entries(store, limit=1000)]
        finally:
            store.close()


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
    pusher: Pusher,
    state: PublishState,
    capacity: int | None = None,
    max_delta: float = DEFAULT_MAX_DELTA,
    accepted: Acceptance | None = None,
) -> Published:
    """Guard, build, sign, push and wait. Raises GuardRefused (nothing was pushed) or
    PublishRejected (the fleet stays on its last good bundle); both are audited."""
    slots = capacity if capacity is not None else base.requires.bot_feature_slots
    version = str(data.get("version", ""))
    try:
        parsed, report = check(
            data, capacity=slots, previous=state.previous(), max_delta=max_delta, accepted=accepted
        )
    except GuardRefused as exc:
        state.audit(
            key,
            "features_refused",
            f"feature file {version!r} refused before publishing",
            {"version": version, "problems": exc.problems},
        )
        raise
    if report.accepted is not None:
        state.audit(
            key,
            "features_delta_accepted",
            report.accepted.reason,
            {"version": version, "guards": report.to_dict()},
        )
    changed = bundle_data(base)
    changed.setdefault("bot", {})["feature_file"] = parsed.model_dump(mode="json")
    bundle = Bundle.model_validate(changed)
    signed = sign_bundle(bundle, key)
    try:
        pushed = pusher.push(signed.to_bytes())
        final = pusher.wait(str(pushed["rollout_id"]))
    except PublishRejected as exc:
        state.audit(key, "features_rejected", str(exc), {"version": version})
        raise
    if final.get("state") != "completed":
        why = (
            f"rollout {pushed['rollout_id']} of feature file {version!r} ended "
            f"{final.get('state')}; the fleet stays on its last good bundle"
        )
        state.audit(
            key,
            "features_rejected",
            why,
            {"version": version, "digest": signed.digest, "final": final},
        )
        raise PublishRejected(why)
    write_feature_file(parsed.model_dump(mode="json"), state.last_published)
    state.audit(
        key,
        "features_published",
        f"published feature file {version!r}",
        {"version": version, "digest": signed.digest, "guards": report.to_dict()},
    )
    return Published(version, signed.digest, str(pushed["rollout_id"]), report)


def who() -> str:
    """Who publishes: the user running the command."""
    try:
        return f"{ACTOR}:{getpass.getuser()}"
    except (KeyError, OSError):
        return ACTOR
