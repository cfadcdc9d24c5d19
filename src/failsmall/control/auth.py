"""Bearer tokens and roles for the control plane's API.

Roles: `viewer` reads; `operator` pushes and pauses, resumes, aborts and rolls back rollouts;
`killswitch` flips rule states; `admin` manages tokens and keys (and may do everything);
`node` is what edge nodes use on the transport routes, each token only for the node ids its
principal name matches (`edge-7`, or a glob such as `edge-*`), so a leaked node token cannot
report for, or watch the assignments of, other nodes. Tokens are random 256-bit strings shown
once at creation; only their sha256 is stored, and they are never logged.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum
from fnmatch import fnmatchcase
from typing import assert_never

from failsmall.control.store import ControlStore

TOKEN_PREFIX = "fs_"

_SECRETS = re.compile(
    r"(?P<header>(?:proxy-)?authorization\s*:\s*)[^'\"\r\n]*"  # a header line, to its end
    r"|(?P<bearer>bearer\s+)[^\s'\"]+"
    rf"|\b(?P<token>{TOKEN_PREFIX})[\w-]+",
    re.IGNORECASE,
)


def redact_secrets(text: str) -> str:
    """`text` with Authorization header values, bearer credentials and tokens cut out."""
    return _SECRETS.sub(
        lambda m: (m.group("header") or m.group("bearer") or m.group("token")) + "[redacted]", text
    )


class SecretRedactor(logging.Filter):
    """Cuts secrets out of a log record's message, traceback and stack before any handler
    sees it. aiohttp logs a request it cannot parse with the offending header line, so a token
    followed by a stray control character would otherwise reach the log whole."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact_secrets(record.getMessage()), None
        if record.exc_info is not None:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact_secrets(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_secrets(record.stack_info)
        return True


server_log = logging.getLogger("failsmall.control.http")
"""The logger the control plane's HTTP server writes to (parse errors, handler failures)."""
server_log.addFilter(SecretRedactor())


class Role(StrEnum):
    """What a token may do."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    KILLSWITCH = "killswitch"
    ADMIN = "admin"
    NODE = "node"


_GRANTS: dict[Role, frozenset[Role]] = {
    Role.VIEWER: frozenset({Role.VIEWER}),
    Role.OPERATOR: frozenset({Role.VIEWER, Role.OPERATOR}),
    Role.KILLSWITCH: frozenset({Role.VIEWER, Role.KILLSWITCH}),
    Role.ADMIN: frozenset({Role.VIEWER, Role.OPERATOR, Role.KILLSWITCH, Role.ADMIN}),
    Role.NODE: frozenset({Role.NODE}),
}


class UnauthorisedError(Exception):
    """No token, or a token that is unknown or revoked."""


class ForbiddenError(Exception):
    """The token is valid but its role does not allow the operation."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a token belongs to, and its role."""

    name: str
    role: Role
    token_id: str

    def require(self, role: Role) -> None:
        if role not in _GRANTS[self.role]:
            raise ForbiddenError(
                f"{self.name} has role {self.role.value}, which may not do this "
                f"(needs {role.value}); ask an admin for a {role.value} token"
            )

    def may_act_as_node(self, node_id: str) -> bool:
        """Whether this principal may use the node transport routes as node `node_id`, or, when
        `node_id` is empty, the routes no single node owns (fetching a bundle by digest).

        An admin may act as any node. A node token acts as the node ids its principal name
        matches: one id (`edge-7`) or a glob (`edge-*`; `*` for every node).
        """
        match self.role:
            case Role.ADMIN:
                return True
            case Role.NODE:
                return not node_id or fnmatchcase(node_id, self.name)
            case Role.VIEWER | Role.OPERATOR | Role.KILLSWITCH:
                return False
            case _:
                assert_never(self.role)


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A newly created token: the secret is only ever available here."""

    token: str
    token_id: str
    principal: str
    role: Role


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenBook:
    """Issues, checks and revokes tokens, stored hashed in the control store."""

    def __init__(self, store: ControlStore) -> None:
        self._store = store

    def issue(self, principal: str, role: Role, at: float) -> IssuedToken:
        if not principal.strip():
            raise ValueError("a token needs a principal name (who it belongs to)")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token_id = secrets.token_hex(6)
        self._store.db.execute(
            "INSERT INTO tokens VALUES(?, ?, ?, ?, ?, 0)",
            (token_hash(token), token_id, principal, role.value, at),
        )
        return IssuedToken(token, token_id, principal, role)

    def authenticate(self, token: str) -> Principal:
        if not token:
            raise UnauthorisedError(
                "no bearer token: pass --token or set FAILSMALL_TOKEN (Authorization: Bearer ...)"
            )
        row = self._store.db.execute(
            "SELECT principal, role, token_id FROM tokens WHERE token_hash = ? AND revoked = 0",
            (token_hash(token),),
        ).fetchone()
        if row is None:
            raise UnauthorisedError("the token is unknown or revoked; ask an admin for a new one")
        return Principal(str(row[0]), Role(row[1]), str(row[2]))

    def revoke(self, token_id: str) -> bool:
        cursor = self._store.db.execute(
            "UPDATE tokens SET revoked = 1 WHERE token_id = ? AND revoked = 0", (token_id,)
        )
        return cursor.rowcount == 1

    def listing(self) -> list[dict[str, object]]:
        rows = self._store.db.execute(
            "SELECT token_id, principal, role, created_at, revoked FROM tokens ORDER BY created_at"
        ).fetchall()
        return [
            {
                "token_id": r[0],
                "principal": r[1],
                "role": r[2],
                "created_at": r[3],
                "revoked": bool(r[4]),
            }
            for r in rows
        ]
