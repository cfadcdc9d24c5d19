"""The OpenAPI 3.1 document of the control plane's API, served at `/v1/openapi.json`."""

from __future__ import annotations

from typing import Any

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string", "description": "what went wrong and what to do"}},
}
_REASON = {
    "type": "object",
    "required": ["reason"],
    "properties": {"reason": {"type": "string", "minLength": 1}},
}

# (method, path, role, summary, request body schema or None)
ENDPOINTS: tuple[tuple[str, str, str, str, dict[str, Any] | None], ...] = (
    ("get", "/v1/status", "viewer", "Fleet: nodes, versions, health, current rollout", None),
    ("get", "/v1/bundles", "viewer", "Bundles the control plane holds", None),
    (
        "post",
        "/v1/bundles",
        "operator",
        "Push a signed bundle envelope (body) and start its rollout; query: policy, class",
        {"type": "string", "contentMediaType": "application/json"},
    ),
    ("get", "/v1/rollouts", "viewer", "Recent rollouts", None),
    ("get", "/v1/rollouts/{rollout_id}", "viewer", "One rollout with its events", None),
    ("post", "/v1/rollout/pause", "operator", "Pause the running rollout", _REASON),
    ("post", "/v1/rollout/resume", "operator", "Resume the paused rollout", None),
    ("post", "/v1/rollout/abort", "operator", "Abort the running rollout", _REASON),
    ("post", "/v1/rollout/rollback", "operator", "Roll the running rollout back", _REASON),
    ("get", "/v1/killswitches", "viewer", "Rule state overrides in the current bundle", None),
    (
        "post",
        "/v1/killswitches",
        "killswitch",
        "Set a killswitch (new bundle, expedited rollout)",
        {
            "type": "object",
            "required": ["rule", "state", "reason"],
            "properties": {
                "rule": {"type": "string"},
                "state": {"enum": ["disabled", "log_only"]},
                "reason": {"type": "string", "minLength": 1},
                "ttl_s": {"type": "number", "exclusiveMinimum": 0},
            },
        },
    ),
    ("post", "/v1/killswitches/{rule}/clear", "killswitch", "Lift a killswitch", _REASON),
    ("get", "/v1/audit", "viewer", "Audit log entries (query: limit, after)", None),
    (
        "post",
        "/v1/audit",
        "operator",
        "Record a client's decision (actor: the token's principal); actions features_* only",
        {
            "type": "object",
            "required": ["action", "reason"],
            "properties": {
                "action": {"type": "string", "pattern": "^features_[a-z][a-z_]{0,39}$"},
                "reason": {"type": "string", "minLength": 1, "maxLength": 1000},
                "details": {"type": "object", "description": "at most 16 KiB of JSON"},
            },
        },
    ),
    ("get", "/v1/audit/verify", "viewer", "Check the audit hash chain", None),
    ("get", "/v1/tokens", "admin", "Tokens (ids and roles; never the secrets)", None),
    (
        "post",
        "/v1/tokens",
        "admin",
        "Create a token; the secret is returned once",
        {
            "type": "object",
            "required": ["principal", "role"],
            "properties": {
                "principal": {
                    "type": "string",
                    "minLength": 1,
                    "description": "who the token is for; for a node token, the node ids it "
                    "may act as (an id, or a glob such as edge-*)",
                },
                "role": {"enum": ["viewer", "operator", "killswitch", "admin", "node"]},
            },
        },
    ),
    ("delete", "/v1/tokens/{token_id}", "admin", "Revoke a token", None),
    ("get", "/v1/keys", "admin", "Trusted bundle signing keys", None),
    (
        "post",
        "/v1/keys",
        "admin",
        "Trust another signing key (PEM public key)",
        {"type": "object", "required": ["pem"], "properties": {"pem": {"type": "string"}}},
    ),
    ("get", "/v1/nodes/{node_id}/assignment", "node", "Long-poll: after, timeout", None),
    ("get", "/v1/bundles/{digest}", "node", "A signed envelope by digest", None),
    ("post", "/v1/nodes/{node_id}/apply", "node", "An apply report (ACK/NACK)", None),
    ("post", "/v1/nodes/{node_id}/health", "node", "A health report", None),
)


def openapi_document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for method, path, role, summary, body in ENDPOINTS:
        operation: dict[str, Any] = {
            "summary": summary,
            "description": f"Requires a bearer token with role `{role}`.",
            "security": [{"bearer": []}],
            "responses": {
                "200": {"description": "OK"},
                "400": {"description": "Bad input", "content": _json(_ERROR)},
                "401": {"description": "No or unknown token", "content": _json(_ERROR)},
                "403": {"description": "Role not allowed", "content": _json(_ERROR)},
                "409": {"description": "Conflict with the fleet's state", "content": _json(_ERROR)},
            },
        }
        if body is not None:
            operation["requestBody"] = {"required": True, "content": _json(body)}
        paths.setdefault(path, {})[method] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "failsmall control plane", "version": "1"},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": paths,
    }


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}
