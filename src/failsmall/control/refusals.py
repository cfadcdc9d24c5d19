"""Auditing what the control plane refused: unknown or missing tokens (401), tokens whose role
may not do something (403), node transport routes asked with a token that may not act as that
node, and pushes whose bundle failed verification (an untrusted or bad signature, a digest
that does not match, content that is not a bundle).

Refusals are what an attacker can produce at will, so they are recorded within a budget (a
token bucket: `burst` at once, refilled at `per_s` a second); the next recorded refusal says
how many were not. A token is never recorded, only who it belongs to when it is known.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from failsmall.control.audit import AuditLog
from failsmall.supervise import LogBudget

MAX_TEXT = 200


def _short(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "..."


class RefusalAudit:
    """Appends `refused_*` entries to the audit log, within a budget."""

    def __init__(
        self,
        audit: AuditLog,
        clock: Callable[[], float],
        *,
        burst: int = 20,
        per_s: float = 1.0,
        budget_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._audit = audit
        self._clock = clock
        self._budget = LogBudget(burst=burst, per_minute=per_s * 60, clock=budget_clock)
        self.not_recorded = 0

    def record(self, actor: str, action: str, reason: str, details: dict[str, Any]) -> None:
        """Record one refusal, or count it if the budget is spent."""
        if not self._budget.allow():
            self.not_recorded += 1
            return
        extra = {"not_recorded_before": self.not_recorded} if self.not_recorded else {}
        self.not_recorded = 0
        self._audit.append(
            self._clock(), _short(actor), action, _short(reason), {**details, **extra}
        )

    def unauthorised(self, route: str, remote: str, reason: str) -> None:
        """A request without a valid token (answered 401)."""
        self.record("unknown", "refused_unauthorised", reason, {"route": route, "remote": remote})

    def forbidden(self, principal: str, role: str, route: str, reason: str) -> None:
        """A valid token whose role may not use the route (answered 403)."""
        details = {"route": route, "role": role}
        self.record(principal, "refused_forbidden", reason, details)

    def node_route(self, principal: str, node_id: str) -> None:
        """A node transport route asked with a token that may not act as that node."""
        what = f"node {node_id}" if node_id else "bundle fetch"
        self.record(
            principal,
            "refused_node_route",
            f"token may not act as {_short(what)}",
            {"node_id": _short(node_id)},
        )

    def push(self, principal: str, reason: str, details: dict[str, Any]) -> None:
        """A pushed bundle that failed verification."""
        self.record(principal, "refused_push", reason, details)
