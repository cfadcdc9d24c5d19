"""Killswitches as audited bundles: a rule state override added or lifted, verified with the
real engine, signed by the control plane and rolled out canary-first with the `expedited`
policy. A killswitch never bypasses staging.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from failsmall.build.corpus import BodyRejected, within_buffer
from failsmall.control.audit import AuditLog
from failsmall.control.auth import Principal
from failsmall.control.errors import BadInputError, BundleRejectedError, NotFoundError
from failsmall.control.pushes import PushResult, PushService
from failsmall.engine import Engine, EngineBuildError, ModuleErrored, RuleErrored, walk_rules
from failsmall.engine.request import Request
from failsmall.model import Bundle, Override, RuleState, sign_bundle
from failsmall.model.envelope import bundle_data
from failsmall.rollout import Classification, classify

MAX_TTL_S = 30 * 24 * 3600.0

SAMPLE_REQUESTS: tuple[Request, ...] = (
    Request("GET", "/", headers=(("host", "example.test"), ("user-agent", "Mozilla/5.0"))),
    Request(
        "GET",
        "/search",
        query="q=1%27%20OR%20%271%27=%271",
        headers=(("host", "example.test"), ("user-agent", "curl/8.5")),
        client_ip="203.0.113.9",
    ),
    Request(
        "POST",
        "/api/login",
        headers=(("host", "example.test"), ("content-type", "application/json")),
        body=b'{"user": "alice", "password": "<script>alert(1)</script>"}',
    ),
    Request(
        "POST",
        "/upload",
        headers=(("host", "example.test"), ("content-type", "application/octet-stream")),
        body=b"A" * 200_000,
        client_ip="198.51.100.7",
    ),
    Request("GET", "/static/app.js", headers=(("host", "example.test"),), client_ip="::1"),
)
"""A small built-in request sample every killswitch bundle is run against, in every rule state."""


def _rule_ids(bundle: Bundle) -> set[str]:
    return {rule.id for ruleset in bundle.rulesets for rule in ruleset.rules}


def _live(overrides: list[Override], now: datetime) -> list[Override]:
    return [o for o in overrides if o.expires_at is None or o.expires_at > now]


class KillswitchService:
    """Sets, clears and lists rule state overrides on the fleet's current bundle."""

    def __init__(
        self,
        *,
        pushes: PushService,
        audit: AuditLog,
        key: Ed25519PrivateKey,
        clock: Callable[[], float],
    ) -> None:
        self._pushes = pushes
        self._audit = audit
        self._key = key
        self._clock = clock

    def _base(self) -> Bundle:
        bundle = self._pushes.current_bundle()
        if bundle is None:
            raise NotFoundError("the fleet has no good bundle yet; push one before a killswitch")
        return bundle

    def listing(self) -> list[dict[str, object]]:
        bundle = self._pushes.current_bundle()
        if bundle is None:
            return []
        now = datetime.fromtimestamp(self._clock(), UTC)
        return [
            {
                **o.model_dump(mode="json"),
                "expired": o.expires_at is not None and o.expires_at <= now,
            }
            for o in bundle.overrides
        ]

    async def set(
        self, rule: str, state: str, reason: str, ttl_s: float | None, by: Principal
    ) -> PushResult:
        try:
            rule_state = RuleState(state)
        except ValueError as exc:
            raise BadInputError("state must be 'disabled' or 'log_only'") from exc
        if rule_state is RuleState.ACTIVE:
            raise BadInputError("state must be 'disabled' or 'log_only'; use clear to lift one")
        if not reason.strip():
            raise BadInputError("a reason is required: say why this rule is being switched off")
        if ttl_s is not None and not 0 < ttl_s <= MAX_TTL_S:
            raise BadInputError(f"ttl must be between 1 s and {MAX_TTL_S:g} s")
        base = self._base()
        if rule not in _rule_ids(base):
            raise NotFoundError(f"no rule {rule!r} in the current bundle")
        now = datetime.fromtimestamp(self._clock(), UTC)
        override = Override(
            rule=rule,
            state=rule_state,
            reason=reason.strip(),
            author=by.name,
            expires_at=now + timedelta(seconds=ttl_s) if ttl_s else None,
        )
        kept = [o for o in _live(list(base.overrides), now) if o.rule != rule]
        result = await self._roll_out(base, [*kept, override], by)
        details = {"rule": rule, "state": rule_state.value, "ttl_s": ttl_s}
        self._audited(by, "killswitch_set", override.reason, result, details)
        return result

    async def clear(self, rule: str, reason: str, by: Principal) -> PushResult:
        if not reason.strip():
            raise BadInputError("a reason is required: say why this killswitch is lifted")
        base = self._base()
        if rule not in {o.rule for o in base.overrides}:
            raise NotFoundError(f"rule {rule!r} has no killswitch in the current bundle")
        now = datetime.fromtimestamp(self._clock(), UTC)
        kept = [o for o in _live(list(base.overrides), now) if o.rule != rule]
        result = await self._roll_out(base, kept, by)
        self._audited(by, "killswitch_clear", reason.strip(), result, {"rule": rule})
        return result

    def _audited(
        self, by: Principal, action: str, reason: str, result: PushResult, details: dict[str, Any]
    ) -> None:
        """Record the flip with the operator's own reason, beside the push it started."""
        ids = {"digest": result.digest, "rollout_id": result.rollout_id}
        self._audit.append(self._clock(), by.name, action, reason, {**details, **ids})

    async def _roll_out(self, base: Bundle, overrides: list[Override], by: Principal) -> PushResult:
        data = bundle_data(base)
        data["overrides"] = [o.model_dump(mode="json") for o in overrides]
        bundle = Bundle.model_validate(data)
        classification = await asyncio.to_thread(_verify, bundle, base)
        signed = sign_bundle(bundle, self._key)
        return await self._pushes.start_rollout(signed, signed.to_bytes(), by, classification)


def _on_every_route(bundle: Bundle) -> list[Request]:
    """The sample requests sent along each route of the bundle (its host, under its path
    prefix): the engine inspects routed requests only."""
    out: list[Request] = []
    for route in bundle.routes:
        prefix = route.path_prefix.rstrip("/")
        for sample in SAMPLE_REQUESTS:
            headers = sample.headers
            if route.host != "*":
                headers = tuple((n, route.host if n == "host" else v) for n, v in headers)
            out.append(sample._replace(path=prefix + sample.path, headers=headers))
    return out


def _verify(bundle: Bundle, base: Bundle) -> Classification:
    """Build the production engine from the killswitch bundle and run the built-in sample
    through it as it will be served; any errored outcome refuses the bundle. CPU-bound."""
    try:
        engine = Engine.build(bundle, bundle.requires)
    except EngineBuildError as exc:
        raise BundleRejectedError(
            "the engine cannot build the killswitch bundle", exc.problems
        ) from exc
    state = engine.new_state(seed=0)
    problems: list[str] = []
    for index, request in enumerate(_on_every_route(bundle)):
        seen = within_buffer(request, engine.limits)
        if isinstance(seen, BodyRejected):
            continue
        verdict = engine.evaluate(seen, state)
        problems += [
            f"request {index}: module {m.module.value}: {m.error}"
            for m in verdict.modules
            if isinstance(m, ModuleErrored)
        ]
        problems += [
            f"request {index}: rule {o.rule_id}: {o.error}"
            for o in walk_rules(verdict.rules)
            if isinstance(o, RuleErrored)
        ]
    if problems:
        raise BundleRejectedError("the killswitch bundle yields errored outcomes", problems[:20])
    return classify(base, bundle)
