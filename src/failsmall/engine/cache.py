"""The response cache: an in-memory LRU with a byte budget that honours HTTP caching rules.

Requests with Authorization and responses with Set-Cookie are never cached; Cache-Control
(no-store, private, no-cache, max-age, s-maxage), Expires and Vary are honoured; cache rules in
the bundle can force a bypass or set a TTL.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

from failsmall.engine.expr import Expression, compile_expression
from failsmall.engine.request import RequestView
from failsmall.model.traffic import CacheConfig

CACHEABLE_METHODS = frozenset({"GET", "HEAD"})
CACHEABLE_STATUSES = frozenset({200, 203, 204, 300, 301, 404, 410})


@dataclass(frozen=True, slots=True)
class CachedResponse:
    """A stored response."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    stored_at: float
    expires_at: float
    vary: tuple[tuple[str, str], ...] = ()

    @property
    def size(self) -> int:
        return len(self.body) + sum(len(k) + len(v) for k, v in self.headers) + 64


@dataclass(frozen=True, slots=True)
class CacheHit:
    """Serve this stored response."""

    key: str
    response: CachedResponse


@dataclass(frozen=True, slots=True)
class CacheMiss:
    """Not stored; the origin's response may be stored under `key`."""

    key: str
    ttl_override: int | None = None


@dataclass(frozen=True, slots=True)
class CacheBypass:
    """The cache is not used for this request."""

    reason: str


CacheDecision = CacheHit | CacheMiss | CacheBypass


@dataclass
class CacheStore:
    """The LRU store of one process, bounded by a byte budget."""

    max_bytes: int = 64 * 1024 * 1024
    entries: OrderedDict[str, CachedResponse] = field(default_factory=OrderedDict)
    used_bytes: int = 0

    def get(self, key: str, now: float) -> CachedResponse | None:
        entry = self.entries.get(key)
        if entry is None:
            return None
        if entry.expires_at <= now:
            self._remove(key)
            return None
        self.entries.move_to_end(key)
        return entry

    def put(self, key: str, entry: CachedResponse) -> None:
        if key in self.entries:
            self._remove(key)
        if entry.size > self.max_bytes:
            return
        self.entries[key] = entry
        self.used_bytes += entry.size
        while self.used_bytes > self.max_bytes and self.entries:
            self._remove(next(iter(self.entries)))

    def _remove(self, key: str) -> None:
        entry = self.entries.pop(key)
        self.used_bytes -= entry.size


@dataclass(frozen=True)
class CachePolicy:
    """The bundle's cache configuration with its rule expressions compiled."""

    config: CacheConfig
    rules: tuple[tuple[str, str, int | None, Expression], ...]

    @classmethod
    def compile(cls, config: CacheConfig, ip_lists: dict[str, list[str]]) -> CachePolicy:
        rules = tuple(
            (r.id, r.action, r.ttl_s, compile_expression(r.expression, ip_lists))
            for r in config.rules
        )
        return cls(config, rules)

    def lookup(self, view: RequestView, store: CacheStore, now: float) -> CacheDecision:
        request = view.request
        if not self.config.enabled:
            return CacheBypass("cache is switched off")
        if request.method not in CACHEABLE_METHODS:
            return CacheBypass(f"method {request.method} is not cacheable")
        if "authorization" in view.headers:
            return CacheBypass("request carries Authorization")
        ttl_override: int | None = None
        for rule_id, action, ttl, expression in self.rules:
            if expression.evaluate(view):
                if action == "bypass":
                    return CacheBypass(f"cache rule {rule_id}")
                ttl_override = ttl
                break
        query = request.query
        key = (
            f"{request.method}|{view.host}|{request.path}?{query}"
            if query
            else f"{request.method}|{view.host}|{request.path}"
        )
        entry = store.get(key, now)
        if (
            entry is not None
            and "no-cache" not in _directives(view.header("cache-control"))
            and _vary_matches(entry, view)
        ):
            return CacheHit(key, entry)
        return CacheMiss(key, ttl_override)

    def may_store(self, miss: CacheMiss, status: int, header_names: Collection[str]) -> bool:
        """A first look at an origin response head (lowercase header names): False when the
        response certainly cannot be stored, so the node need not keep a copy of its body."""
        if status not in CACHEABLE_STATUSES or "set-cookie" in header_names:
            return False
        return (
            miss.ttl_override is not None
            or self.config.default_ttl_s > 0
            or "cache-control" in header_names
            or "expires" in header_names
        )

    def storable(
        self,
        miss: CacheMiss,
        view: RequestView,
        status: int,
        headers: tuple[tuple[str, str], ...],
        body: bytes,
        now: float,
    ) -> CachedResponse | None:
        """The entry to store for this origin response, or None when it must not be cached."""
        if status not in CACHEABLE_STATUSES or len(body) > self.config.max_object_bytes:
            return None
        lower = [(k.lower(), v) for k, v in headers]
        names = {k for k, _ in lower}
        if "set-cookie" in names:
            return None
        cc = _directives(", ".join(v for k, v in lower if k == "cache-control"))
        if "no-store" in cc or "private" in cc or "no-cache" in cc:
            return None
        ttl = _ttl(cc, lower, now, miss.ttl_override, self.config.default_ttl_s)
        if ttl <= 0:
            return None
        vary_names = [
            v.strip().lower() for k, value in lower if k == "vary" for v in value.split(",")
        ]
        if "*" in vary_names:
            return None
        vary = tuple((name, view.header(name)) for name in vary_names if name)
        return CachedResponse(status, headers, body, now, now + ttl, vary)


def _directives(value: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in value.split(","):
        name, _, arg = part.strip().partition("=")
        if name:
            out[name.lower()] = arg.strip().strip('"')
    return out


def _ttl(
    cc: dict[str, str],
    headers: list[tuple[str, str]],
    now: float,
    override: int | None,
    default: int,
) -> float:
    if override is not None:
        return float(override)
    for directive in ("s-maxage", "max-age"):
        if directive in cc:
            try:
                return float(int(cc[directive]))
            except ValueError:
                return 0.0
    for name, value in headers:
        if name == "expires":
            try:
                return parsedate_to_datetime(value).timestamp() - now
            except (TypeError, ValueError):
                return 0.0
    return float(default)


def _vary_matches(entry: CachedResponse, view: RequestView) -> bool:
    return all(view.header(name) == value for name, value in entry.vary)
