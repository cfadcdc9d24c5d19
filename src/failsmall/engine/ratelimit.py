"""Rate limiting: token buckets per key, with a bounded number of keys."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from failsmall.engine.expr import Expression, compile_expression
from failsmall.engine.outcomes import Decision
from failsmall.engine.request import RequestView
from failsmall.model.traffic import RateLimit


@dataclass(slots=True)
class Bucket:
    """Tokens left and when they were last refilled."""

    tokens: float
    updated: float


@dataclass
class RateLimitState:
    """All buckets of one process, least recently used first; at most `max_keys`."""

    max_keys: int = 100_000
    buckets: OrderedDict[str, Bucket] = field(default_factory=OrderedDict)
    client_rates: OrderedDict[str, Bucket] = field(default_factory=OrderedDict)

    def take(self, key: str, capacity: float, refill_per_s: float, now: float) -> bool:
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = Bucket(capacity, now)
            self.buckets[key] = bucket
            if len(self.buckets) > self.max_keys:
                self.buckets.popitem(last=False)
        else:
            self.buckets.move_to_end(key)
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(capacity, bucket.tokens + elapsed * refill_per_s)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return True
        return False

    def client_rate(self, client: str, now: float, half_life_s: float = 1.0) -> float:
        """An exponentially decayed requests-per-second estimate for one client."""
        entry = self.client_rates.get(client)
        if entry is None:
            entry = Bucket(0.0, now)
            self.client_rates[client] = entry
            if len(self.client_rates) > self.max_keys:
                self.client_rates.popitem(last=False)
        else:
            self.client_rates.move_to_end(client)
        elapsed = max(0.0, now - entry.updated)
        entry.tokens = entry.tokens * 0.5 ** (elapsed / half_life_s) + 1.0
        entry.updated = now
        return entry.tokens / (half_life_s / 0.6931471805599453)


@dataclass(frozen=True, slots=True)
class RateLimitHit:
    """A rate limit whose bucket was empty for this request."""

    rule_id: str
    decision: Decision
    status: int
    enforced: bool


@dataclass(frozen=True)
class CompiledRateLimit:
    """A rate limit with its filter compiled and its key parts resolved."""

    spec: RateLimit
    filter: Expression

    @property
    def capacity(self) -> float:
        return float(self.spec.burst or self.spec.requests)

    @property
    def refill_per_s(self) -> float:
        return self.spec.requests / self.spec.period_s

    def key(self, view: RequestView) -> str:
        parts = [self.spec.id]
        for part in self.spec.key:
            match part:
                case "ip":
                    parts.append(view.request.client_ip)
                case "path":
                    parts.append(view.request.path)
                case "host":
                    parts.append(view.host)
                case "method":
                    parts.append(view.request.method)
                case _:
                    parts.append(view.header(part.removeprefix("header:").lower()))
        return "\x1f".join(parts)


def compile_rate_limits(
    specs: list[RateLimit], ip_lists: dict[str, list[str]]
) -> tuple[CompiledRateLimit, ...]:
    return tuple(CompiledRateLimit(s, compile_expression(s.expression, ip_lists)) for s in specs)


def check_rate_limits(
    limits: tuple[CompiledRateLimit, ...], view: RequestView, state: RateLimitState, now: float
) -> RateLimitHit | None:
    """The first limit this request exceeds; every matching bucket is charged."""
    first: RateLimitHit | None = None
    for limit in limits:
        if not limit.filter.evaluate(view):
            continue
        allowed = state.take(limit.key(view), limit.capacity, limit.refill_per_s, now)
        if allowed or first is not None:
            continue
        match limit.spec.action:
            case "block":
                first = RateLimitHit(limit.spec.id, Decision.BLOCK, limit.spec.status, True)
            case "challenge":
                first = RateLimitHit(limit.spec.id, Decision.CHALLENGE, 403, True)
            case "log":
                first = RateLimitHit(limit.spec.id, Decision.ALLOW, 200, False)
    return first
