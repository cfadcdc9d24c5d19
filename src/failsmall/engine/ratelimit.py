"""Rate limiting: token buckets per key, with a bounded number of keys."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import attrgetter
from typing import assert_never

from failsmall.engine.expr import Expression, compile_expression
from failsmall.engine.outcomes import Decision
from failsmall.engine.path_index import PathIndex
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
        elapsed = now - entry.updated
        if elapsed < 0.0:  # max(0.0, ...), a call less
            elapsed = 0.0
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


KeyPart = Callable[[RequestView], str]
"""Reads one part of a bucket key off a request."""


@dataclass(frozen=True)
class CompiledRateLimit:
    """A rate limit with its filter compiled and its key parts resolved.

    `exceeded` is what the limit yields when its bucket is empty; `capacity` and `refill_per_s`
    are the bucket's, worked out once.
    """

    spec: RateLimit
    filter: Expression
    key_parts: tuple[KeyPart, ...]
    capacity: float
    refill_per_s: float
    exceeded: RateLimitHit

    @classmethod
    def compile(cls, spec: RateLimit, ip_lists: dict[str, list[str]]) -> CompiledRateLimit:
        return cls(
            spec,
            compile_expression(spec.expression, ip_lists),
            tuple(_key_part(part) for part in spec.key),
            float(spec.burst or spec.requests),
            spec.requests / spec.period_s,
            _exceeded(spec),
        )

    def key(self, view: RequestView) -> str:
        parts = [self.spec.id]
        for read in self.key_parts:  # a loop: a comprehension costs a call more per request
            parts.append(read(view))
        return "\x1f".join(parts)


def _key_part(part: str) -> KeyPart:
    match part:
        case "ip":
            return attrgetter("request.client_ip")
        case "path":
            return attrgetter("normalized_path")
        case "host":
            return attrgetter("host")
        case "method":
            return attrgetter("request.method")
        case _:
            name = part.removeprefix("header:").lower()
            return lambda view: view.header(name)


def _exceeded(spec: RateLimit) -> RateLimitHit:
    match spec.action:
        case "block":
            return RateLimitHit(spec.id, Decision.BLOCK, spec.status, True)
        case "challenge":
            return RateLimitHit(spec.id, Decision.CHALLENGE, 403, True)
        case "log":
            return RateLimitHit(spec.id, Decision.ALLOW, 200, False)
        case _:
            assert_never(spec.action)


def compile_rate_limits(
    specs: list[RateLimit], ip_lists: dict[str, list[str]]
) -> tuple[CompiledRateLimit, ...]:
    return tuple(CompiledRateLimit.compile(s, ip_lists) for s in specs)


def index_rate_limits(limits: tuple[CompiledRateLimit, ...]) -> PathIndex[CompiledRateLimit]:
    """The limits by the paths they can apply to (see `failsmall.engine.path_index`)."""
    return PathIndex.build([(limit, limit.filter.path_prefixes) for limit in limits])


def check_rate_limits(
    selected: tuple[CompiledRateLimit, ...], view: RequestView, state: RateLimitState, now: float
) -> RateLimitHit | None:
    """The first limit this request exceeds; every matching bucket is charged. `selected`: the
    limits the request's path leaves possible (`PathIndex.select`)."""
    first: RateLimitHit | None = None
    for limit in selected:
        if not limit.filter.evaluate(view):
            continue
        allowed = state.take(limit.key(view), limit.capacity, limit.refill_per_s, now)
        if not allowed and first is None:
            first = limit.exceeded
    return first
