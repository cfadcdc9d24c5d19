"""Pushing a bundle: verify, compile, classify, store, publish, and start its rollout.

Nothing is stored or published unless every check passed, so a refused push changes nothing
but the audit log: a bundle refused for its signature, digest or content, or because the
engine cannot build it, and a policy its pusher may not ask for, are audited as refusals.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from failsmall.control.audit import AuditLog
from failsmall.control.auth import ForbiddenError, Principal, Role
from failsmall.control.driver import RolloutDriver
from failsmall.control.errors import BadInputError, BundleRejectedError
from failsmall.control.refusals import RefusalAudit
from failsmall.control.store import ControlStore, StoredBundle
from failsmall.engine import Engine, EngineBuildError
from failsmall.model import Bundle, BundleError, SignedBundle, verify_envelope
from failsmall.rollout import (
    GLOBAL,
    NAMED_POLICIES,
    ChangeClass,
    Classification,
    Policy,
    UnknownPolicyError,
    check_declared,
    classify,
    policy_for,
)
from failsmall.transport.control import ControlChannel


@dataclass(frozen=True, slots=True)
class PushResult:
    """What a push started."""

    digest: str
    rollout_id: str
    change_class: ChangeClass
    policy: str
    differences: list[str]

    def to_dict(self) -> dict[str, object]:
        return {
            "digest": self.digest,
            "rollout_id": self.rollout_id,
            "change_class": self.change_class.value,
            "policy": self.policy,
            "differences": self.differences,
        }


class PushService:
    """Turns a signed envelope into a running rollout."""

    def __init__(
        self,
        *,
        store: ControlStore,
        audit: AuditLog,
        channel: ControlChannel,
        driver: RolloutDriver,
        trusted: dict[str, Ed25519PublicKey],
        refusals: RefusalAudit,
        clock: Callable[[], float],
        policies: dict[str, Policy] | None = None,
    ) -> None:
        self._store = store
        self._audit = audit
        self._channel = channel
        self._driver = driver
        self.trusted = trusted
        self._refusals = refusals
        self._clock = clock
        self.policies = dict(policies or NAMED_POLICIES)
        self._parsed: dict[str, Bundle] = {}

    def current_bundle(self) -> Bundle | None:
        """The last good bundle (what the fleet serves when no rollout runs)."""
        digest = self._driver.last_good
        if digest in self._parsed:
            return self._parsed[digest]
        stored = self._store.bundle(digest)
        if stored is None:
            return None
        bundle = verify_envelope(stored.envelope, self.trusted).bundle
        self._parsed = {digest: bundle}
        return bundle

    async def push(
        self,
        raw: bytes,
        by: Principal,
        *,
        policy_name: str = "",
        declared_class: str = "",
    ) -> PushResult:
        """Verify `raw`, build its engine and roll it out. Raises BundleError,
        BundleRejectedError, BadInputError, ClassDowngradeError, ForbiddenError or a rollout
        conflict; a refused push stores and publishes nothing."""
        try:
            signed = await asyncio.to_thread(verify_envelope, raw, self.trusted)
        except BundleError as exc:
            self._refusals.push(by.name, str(exc), {"refused_by": type(exc).__name__})
            raise
        current = self.current_bundle()
        try:
            classification = await asyncio.to_thread(_check, signed.bundle, current)
        except BundleRejectedError as exc:
            details = {"refused_by": "engine", "digest": signed.digest}
            self._refusals.push(by.name, str(exc), details | {"problems": exc.problems[:20]})
            raise
        return await self.start_rollout(
            signed,
            raw,
            by,
            classification,
            policy_name=policy_name,
            declared_class=declared_class,
        )

    async def start_rollout(
        self,
        signed: SignedBundle,
        raw: bytes,
        by: Principal,
        classification: Classification,
        *,
        policy_name: str = "",
        declared_class: str = "",
    ) -> PushResult:
        """Store, publish and start rolling out a bundle whose engine has been built."""
        change_class = classification.change_class
        if declared_class:
            try:
                declared = ChangeClass(declared_class)
            except ValueError as exc:
                known = ", ".join(c.value for c in ChangeClass)
                raise BadInputError(
                    f"unknown change class {declared_class!r}; use {known}"
                ) from exc
            change_class = check_declared(declared, classification)
        policy = self._policy(change_class, policy_name, by)
        self._driver.preflight(signed.digest)
        stored = StoredBundle(
            signed.digest, signed.bundle.name, raw, change_class.value, by.name, self._clock()
        )
        self._store.put_bundle(stored)
        await self._channel.publish_bundle(signed.digest, raw)
        machine = await self._driver.begin(
            to_digest=signed.digest, change_class=change_class.value, policy=policy, by=by.name
        )
        self._audit.append(
            self._clock(),
            by.name,
            "push",
            f"pushed {signed.bundle.name} ({change_class.value}), policy {policy.name}",
            {
                "digest": signed.digest,
                "rollout_id": machine.rollout_id,
                "differences": classification.describe()[:50],
            },
        )
        return PushResult(
            signed.digest,
            machine.rollout_id,
            change_class,
            policy.name,
            classification.describe(),
        )

    def _named(self, name: str) -> Policy:
        try:
            return self.policies[name]
        except KeyError:
            known = ", ".join(sorted(self.policies))
            raise UnknownPolicyError(
                f"no rollout policy named {name!r}; use one of {known}"
            ) from None

    def _policy(self, change_class: ChangeClass, policy_name: str, by: Principal) -> Policy:
        default = self._named(policy_for(change_class).name)
        if not policy_name or policy_name == default.name:
            return default
        chosen = self._named(policy_name)
        if chosen.name == GLOBAL.name:
            try:
                by.require(Role.ADMIN)
            except ForbiddenError as exc:
                route = "POST /v1/bundles?policy=global"
                self._refusals.forbidden(by.name, by.role.value, route, str(exc))
                raise
            return chosen
        raise BadInputError(
            f"a {change_class.value} change rolls out with policy {default.name!r}; only "
            f"'global' (admin, for measuring propagation) may be asked for instead"
        )


def _check(bundle: Bundle, current: Bundle | None) -> Classification:
    """Build the production engine from the bundle, then classify it against the current one.
    CPU-bound (pattern compilation), so it runs off the event loop."""
    try:
        Engine.build(bundle, bundle.requires)
    except EngineBuildError as exc:
        raise BundleRejectedError("the engine cannot build this bundle", exc.problems) from exc
    return classify(current, bundle)
