"""The control plane's HTTP API (aiohttp, JSON). Every route needs a bearer token; each
handler names the role it requires. Errors come back as `{"error": "..."}` with a 4xx/5xx
status and change nothing. The OpenAPI document is at `/v1/openapi.json`.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, assert_never

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from failsmall.control.audit import AnchorMissing, AuditLog, ChainBroken, ChainIntact
from failsmall.control.auth import (
    ForbiddenError,
    Principal,
    Role,
    TokenBook,
    UnauthorisedError,
)
from failsmall.control.driver import NoActiveRolloutError, RolloutDriver
from failsmall.control.errors import BadInputError, BundleRejectedError, NotFoundError
from failsmall.control.killswitch import KillswitchService
from failsmall.control.openapi import openapi_document
from failsmall.control.pushes import PushService
from failsmall.control.refusals import RefusalAudit
from failsmall.control.store import ControlStore, StoredRollout
from failsmall.model import BundleError
from failsmall.model.envelope import key_id, load_public_key
from failsmall.model.text import unsafe_characters
from failsmall.rollout import (
    Abort,
    ClassDowngradeError,
    EmptySelectionError,
    InvalidTransitionError,
    NoChangeError,
    Pause,
    Resume,
    Rollback,
    RolloutConflictError,
    UnknownPolicyError,
)
from failsmall.transport.base import TransportError
from failsmall.transport.http import BodyTooLargeError, NotJsonError, bearer_token, read_json

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_BODY = 64 * 1024 * 1024
"""The largest request: a signed bundle envelope."""
MAX_JSON_BODY = 64 * 1024
"""The largest JSON body of the other routes (a reason, a token request, a public key)."""
MAX_REASON = 1000
MAX_NAME = 200
"""Longest reason, and longest principal name or rule id, in characters."""
MAX_AUDIT_SEQ = 2**63 - 1
CLIENT_ACTION = re.compile(r"features_[a-z][a-z_]{0,39}")
MAX_ACTION = 49
"""The actions a client may record in the audit log (`POST /v1/audit`): decisions of the bot
feature pipeline. Every other action is the control plane's own and cannot be forged."""
MAX_DETAILS = 16 * 1024
"""The largest `details` of a client-recorded audit entry, in bytes of compact UTF-8 JSON."""

_STATUS_BY_ERROR: tuple[tuple[type[Exception], int], ...] = (
    (UnauthorisedError, 401),
    (ForbiddenError, 403),
    (NotFoundError, 404),
    (BadInputError, 400),
    (UnknownPolicyError, 400),
    (BundleError, 400),
    (BundleRejectedError, 422),
    (ClassDowngradeError, 422),
    (RolloutConflictError, 409),
    (InvalidTransitionError, 409),
    (NoChangeError, 409),
    (NoActiveRolloutError, 409),
    (EmptySelectionError, 409),
    (TransportError, 503),
    (BodyTooLargeError, 413),
    (NotJsonError, 400),
)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Named errors become JSON answers with a status that says whose fault it is."""
    try:
        return await handler(request)
    except tuple(kind for kind, _ in _STATUS_BY_ERROR) as exc:
        status = next(code for kind, code in _STATUS_BY_ERROR if isinstance(exc, kind))
        body: dict[str, Any] = {"error": str(exc)}
        if isinstance(exc, BundleRejectedError):
            body["problems"] = exc.problems
        return web.json_response(body, status=status)


async def _json_body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    data = await read_json(request, MAX_JSON_BODY)
    if not isinstance(data, dict):
        raise BadInputError("the request body must be a JSON object")
    return data


def _text(data: dict[str, Any], field: str, longest: int, what: str) -> str:
    """A required one-line field, stripped: a string of 1 to `longest` characters with no
    control character (it is stored, audited and shown on operators' terminals)."""
    value = data.get(field)
    if not isinstance(value, str) or not value.strip():
        raise BadInputError(f"a non-empty '{field}' is required: {what}")
    value = value.strip()
    if len(value) > longest:
        raise BadInputError(f"'{field}' is {len(value)} characters; at most {longest} are kept")
    if unsafe := unsafe_characters(value):
        raise BadInputError(
            f"'{field}' holds control characters ({', '.join(unsafe)}); send one line of "
            "printable text"
        )
    return value


def _reason(data: dict[str, Any]) -> str:
    return _text(data, "reason", MAX_REASON, "say why")


def _details(value: object) -> dict[str, Any]:
    """A client's `details`: a JSON object of at most MAX_DETAILS bytes whose keys and strings
    hold no control character."""
    if not isinstance(value, dict):
        raise BadInputError("'details' must be a JSON object")
    try:
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    except RecursionError as exc:
        raise BadInputError("'details' is nested too deeply") from exc
    if size > MAX_DETAILS:
        raise BadInputError(f"'details' is {size} bytes of JSON; at most {MAX_DETAILS} are kept")
    pending: list[object] = [value]
    while pending:
        match pending.pop():
            case str() as text if unsafe := unsafe_characters(text):
                raise BadInputError(
                    f"'details' holds control characters ({', '.join(unsafe)}) in {text[:40]!r}"
                )
            case dict() as mapping:
                pending.extend(mapping.keys())
                pending.extend(mapping.values())
            case list() as items:
                pending.extend(items)
            case _:
                pass
    return value


class ControlApi:
    """The operator-facing routes of the control plane."""

    def __init__(
        self,
        *,
        store: ControlStore,
        tokens: TokenBook,
        audit: AuditLog,
        driver: RolloutDriver,
        pushes: PushService,
        killswitches: KillswitchService,
        refusals: RefusalAudit,
        control_health: Callable[[], dict[str, Any]],
        pending_moves: Callable[[], dict[str, str]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.tokens = tokens
        self.audit = audit
        self.driver = driver
        self.pushes = pushes
        self.killswitches = killswitches
        self.refusals = refusals
        self.control_health = control_health
        self.pending_moves = pending_moves
        self.clock = clock

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/v1/openapi.json", self.openapi),
            web.get("/v1/status", self.status),
            web.get("/v1/bundles", self.list_bundles),
            web.post("/v1/bundles", self.push),
            web.get("/v1/rollouts", self.list_rollouts),
            web.get("/v1/rollouts/{rollout_id}", self.rollout),
            web.post("/v1/rollout/{command}", self.operate),
            web.get("/v1/killswitches", self.list_killswitches),
            web.post("/v1/killswitches", self.set_killswitch),
            web.post("/v1/killswitches/{rule}/clear", self.clear_killswitch),
            web.get("/v1/audit", self.audit_entries),
            web.post("/v1/audit", self.record_decision),
            web.get("/v1/audit/verify", self.audit_verify),
            web.get("/v1/tokens", self.list_tokens),
            web.post("/v1/tokens", self.create_token),
            web.delete("/v1/tokens/{token_id}", self.revoke_token),
            web.get("/v1/keys", self.list_keys),
            web.post("/v1/keys", self.add_key),
        ]

    def _principal(self, request: web.Request, role: Role) -> Principal:
        """Who is asking, if their role allows `role`; every refusal is audited."""
        try:
            principal = self.tokens.authenticate(bearer_token(request))
        except UnauthorisedError as exc:
            self.refusals.unauthorised(_route(request), request.remote or "", str(exc))
            raise
        self._require(request, principal, role)
        return principal

    def _require(self, request: web.Request, principal: Principal, role: Role) -> None:
        try:
            principal.require(role)
        except ForbiddenError as exc:
            self.refusals.forbidden(principal.name, principal.role.value, _route(request), str(exc))
            raise

    # -- reading ----------------------------------------------------------------------------

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(openapi_document())

    async def status(self, request: web.Request) -> web.Response:
        self._principal(request, Role.VIEWER)
        return web.json_response(self.fleet_status())

    def fleet_status(self) -> dict[str, Any]:
        last_good = self.driver.last_good
        stored = self.store.bundle(last_good) if last_good else None
        assignments = self.store.assignments()
        nodes = []
        for node in self.store.nodes():
            assigned = assignments.get(node["node_id"])
            health = node.pop("last_health")
            node["assigned"] = assigned.digest if assigned else ""
            node["health"] = {
                k: health.get(k, 0)
                for k in ("requests", "responses_5xx", "blocked", "challenged", "module_errors")
            } | {
                "p99_ms": health.get("p99_ms", 0.0),
                "window_s": health.get("window_s", 0.0),
                "quarantined": health.get("quarantined", []),
                "degraded": health.get("degraded", []),
            }
            nodes.append(node)
        rollout: dict[str, Any] | None = None
        machine = self.driver.active
        if machine is not None:
            rollout = machine.summary() | {"waves": self.driver.waves(machine)}
        return {
            "last_good": last_good,
            "last_good_name": stored.name if stored else "",
            "nodes": nodes,
            "rollout": rollout,
            "recent_rollouts": [_rollout_row(r) for r in self.store.rollouts(limit=5)],
            "deferred_assignments": self.pending_moves(),
            "control": self.control_health(),
        }

    async def list_bundles(self, request: web.Request) -> web.Response:
        self._principal(request, Role.VIEWER)
        return web.json_response(
            [
                {
                    "digest": b.digest,
                    "name": b.name,
                    "change_class": b.change_class,
                    "pushed_by": b.pushed_by,
                    "pushed_at": b.pushed_at,
                }
                for b in self.store.bundles()
            ]
        )

    async def list_rollouts(self, request: web.Request) -> web.Response:
        self._principal(request, Role.VIEWER)
        return web.json_response([_rollout_row(r) for r in self.store.rollouts()])

    async def rollout(self, request: web.Request) -> web.Response:
        self._principal(request, Role.VIEWER)
        rollout_id = request.match_info["rollout_id"]
        row = self.store.rollout(rollout_id)
        if row is None:
            raise NotFoundError(f"no rollout {rollout_id!r}; `failsmall status` lists recent ones")
        return web.json_response(
            _rollout_row(row) | {"events": self.store.rollout_events(rollout_id)}
        )

    # -- pushing and operating rollouts -----------------------------------------------------

    async def push(self, request: web.Request) -> web.Response:
        principal = self._principal(request, Role.OPERATOR)
        raw = await request.read()
        if not raw:
            raise BadInputError("the request body must be a signed bundle envelope")
        result = await self.pushes.push(
            raw,
            principal,
            policy_name=request.query.get("policy", ""),
            declared_class=request.query.get("class", ""),
        )
        return web.json_response(result.to_dict(), status=202)

    async def operate(self, request: web.Request) -> web.Response:
        principal = self._principal(request, Role.OPERATOR)
        command = request.match_info["command"]
        data = await _json_body(request)
        now = self.clock()
        event: Pause | Resume | Abort | Rollback
        match command:
            case "pause":
                event = Pause(now, principal.name, _reason(data))
            case "resume":
                event = Resume(now, principal.name)
            case "abort":
                event = Abort(now, principal.name, _reason(data))
            case "rollback":
                event = Rollback(now, principal.name, _reason(data))
            case _:
                raise NotFoundError(
                    f"unknown rollout command {command!r}; use pause, resume, abort or rollback"
                )
        machine = await self.driver.operate(event)
        return web.json_response(machine.summary())

    # -- killswitches -----------------------------------------------------------------------

    async def list_killswitches(self, request: web.Request) -> web.Response:
        self._principal(request, Role.VIEWER)
        return web.json_response(self.killswitches.listing())

    async def set_killswitch(self, request: web.Request) -> web.Response:
        principal = self._principal(request, Role.KILLSWITCH)
        data = await _json_body(request)
        rule = _text(data, "rule", MAX_NAME, "the id of the rule to switch")
        state = data.get("state")
        ttl = data.get("ttl_s")
        if not isinstance(state, str):
            raise BadInputError("'state' is required: disabled or log_only")
        if ttl is not None and not isinstance(ttl, int | float):
            raise BadInputError("'ttl_s' must be a number of seconds")
        result = await self.killswitches.set(
            rule, state, _reason(data), float(ttl) if ttl is not None else None, principal
        )
        return web.json_response(result.to_dict(), status=202)

    async def clear_killswitch(self, request: web.Request) -> web.Response:
        principal = self._principal(request, Role.KILLSWITCH)
        data = await _json_body(request)
        result = await self.killswitches.clear(request.match_info["rule"], _reason(data), principal)
        return web.json_response(result.to_dict(), status=202)

    # -- audit ------------------------------------------------------------------------------

    async def audit_entries(self, request: web.Request) -> web.Response:
        self._principal(request, Role.VIEWER)
        try:
            limit = int(request.query.get("limit", "100"))
            after = int(request.query.get("after", "0"))
        except ValueError as exc:
            raise BadInputError("'limit' and 'after' must be integers") from exc
        if not 1 <= limit <= 10_000:
            raise BadInputError("'limit' must be between 1 and 10000")
        if not 0 <= after <= MAX_AUDIT_SEQ:
            raise BadInputError(f"'after' must be an entry number between 0 and {MAX_AUDIT_SEQ}")
        return web.json_response([e.to_dict() for e in self.audit.entries(limit, after)])

    async def record_decision(self, request: web.Request) -> web.Response:
        """A client's record of a decision it made (a feature file refused by a guard, a delta
        accepted, a rollout rejected); the actor is the token's principal."""
        principal = self._principal(request, Role.OPERATOR)
        data = await _json_body(request)
        action = _text(data, "action", MAX_ACTION, "what was decided, e.g. features_refused")
        if not CLIENT_ACTION.fullmatch(action):
            raise BadInputError(
                f"'action' {action!r} is not one a client may record: use features_ and "
                "lower-case letters or underscores (at most 40 after features_)"
            )
        details = _details(data.get("details", {}))
        record = self.audit.append(self.clock(), principal.name, action, _reason(data), details)
        return web.json_response(record.to_dict(), status=201)

    async def audit_verify(self, request: web.Request) -> web.Response:
        self._principal(request, Role.VIEWER)
        match self.audit.verify():
            case ChainIntact(entries=entries, head=head, anchored=anchored, unanchored=unanchored):
                return web.json_response(
                    {
                        "intact": True,
                        "entries": entries,
                        "head": head,
                        "anchored_through": anchored,
                        "unanchored": unanchored,
                    }
                )
            case ChainBroken(seq=seq, problem=problem, entries=entries):
                return web.json_response(
                    {"intact": False, "entries": entries, "broken_at": seq, "problem": problem}
                )
            case AnchorMissing(entries=entries, problem=problem):
                return web.json_response(
                    {"intact": False, "entries": entries, "broken_at": None, "problem": problem}
                )
            case verdict:
                assert_never(verdict)

    # -- tokens and keys --------------------------------------------------------------------

    async def list_tokens(self, request: web.Request) -> web.Response:
        self._principal(request, Role.ADMIN)
        return web.json_response(self.tokens.listing())

    async def create_token(self, request: web.Request) -> web.Response:
        principal = self._principal(request, Role.ADMIN)
        data = await _json_body(request)
        name = _text(data, "principal", MAX_NAME, "who the token is for")
        try:
            role = Role(str(data.get("role", "")))
        except ValueError as exc:
            known = ", ".join(r.value for r in Role)
            raise BadInputError(f"'role' must be one of {known}") from exc
        issued = self.tokens.issue(name, role, self.clock())
        self.audit.append(
            self.clock(),
            principal.name,
            "token_create",
            f"token {issued.token_id} for {issued.principal} ({role.value})",
            {"token_id": issued.token_id},
        )
        return web.json_response(
            {
                "token": issued.token,
                "token_id": issued.token_id,
                "principal": issued.principal,
                "role": role.value,
            },
            status=201,
        )

    async def revoke_token(self, request: web.Request) -> web.Response:
        principal = self._principal(request, Role.ADMIN)
        token_id = request.match_info["token_id"]
        if not self.tokens.revoke(token_id):
            raise NotFoundError(f"no active token with id {token_id!r}")
        self.audit.append(
            self.clock(), principal.name, "token_revoke", f"token {token_id} revoked", {}
        )
        return web.json_response({"revoked": token_id})

    async def list_keys(self, request: web.Request) -> web.Response:
        self._principal(request, Role.ADMIN)
        return web.json_response(sorted(self.pushes.trusted))

    async def add_key(self, request: web.Request) -> web.Response:
        principal = self._principal(request, Role.ADMIN)
        data = await _json_body(request)
        pem = data.get("pem")
        if not isinstance(pem, str):
            raise BadInputError("'pem' must hold an Ed25519 public key in PEM form")
        try:
            public: Ed25519PublicKey = load_public_key(pem.encode())
        except ValueError as exc:
            raise BadInputError(f"'pem' is not a PEM public key: {exc}") from exc
        kid = key_id(public)
        trusted = json.loads(self.store.get_value("trusted_keys", "{}"))
        trusted[kid] = pem
        self.store.set_value("trusted_keys", json.dumps(trusted))
        self.pushes.trusted[kid] = public
        self.audit.append(self.clock(), principal.name, "key_trust", f"trusted key {kid}", {})
        return web.json_response({"key_id": kid}, status=201)


def _route(request: web.Request) -> str:
    """The method and route template (`POST /v1/rollout/{command}`), never the query."""
    resource = request.match_info.route.resource
    return f"{request.method} {resource.canonical if resource is not None else request.path}"


def _rollout_row(row: StoredRollout) -> dict[str, Any]:
    return {
        "id": row.id,
        "state": row.state,
        "policy": row.policy,
        "change_class": row.change_class,
        "from_digest": row.from_digest,
        "to_digest": row.to_digest,
        "created_by": row.created_by,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }
