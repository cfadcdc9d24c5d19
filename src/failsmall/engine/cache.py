"""The response cache: an in-memory LRU with a byte budget that honours HTTP caching rules.

Requests with Authorization and responses with Set-Cookie are never cached; Cache-Control
(no-store, private, no-cache, max-age, s-maxage), Expires and Vary are honoured; cache rules in
the bundle can force a bypass or set a TTL.

A request is looked up when it is evaluated: a hit is served, a miss carries the handle its
response is stored with. When the origin's response head arrives, `CachePolicy.on_response`
decides from it alone whether the response can be stored: `NotStored`, or a `CacheFill` that
keeps the body as it streams and puts the entry in the store when it has ended.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from email.utils import parsedate_to_datetime
from typing import Final

from failsmall.engine.expr import Expression, compile_expression
from failsmall.engine.native import cache_headers
from failsmall.engine.path_index import PathIndex
from failsmall.engine.request import RequestView
from failsmall.model.traffic import CacheConfig

CACHEABLE_METHODS: Final = frozenset({"GET", "HEAD"})
CACHEABLE_STATUSES: Final = frozenset({200, 203, 204, 300, 301, 404, 410})


@dataclass(frozen=True, slots=True)
class CachedResponse:
    """A stored response."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...]  # as the origin sent them
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
class CacheBypass:
    """The cache is not used for this request."""

    reason: str


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


@dataclass(slots=True, init=False)
class CacheMiss:
    """Not stored; the origin's response may be stored under `key`. This is the handle the
    response is stored with: the request (for `Vary`), when it was seen, and the store.

    Nothing changes a miss once made; it is not a frozen dataclass only because one is made
    for most GETs, and a frozen one takes four times as long to make. Its `__init__` is
    written out so that it is compiled (a dataclass's generated one runs interpreted).
    """

    key: str
    ttl_override: int | None
    now: float
    view: RequestView = field(compare=False, repr=False)
    store: CacheStore = field(compare=False, repr=False)

    def __init__(
        self, key: str, ttl_override: int | None, now: float, view: RequestView, store: CacheStore
    ) -> None:
        self.key = key
        self.ttl_override = ttl_override
        self.now = now
        self.view = view
        self.store = store


CacheDecision = CacheHit | CacheMiss | CacheBypass


@dataclass(frozen=True, slots=True)
class NotStored:
    """The origin's response is not stored, for `reason`."""

    reason: str


@dataclass(eq=False, slots=True)
class CacheFill:
    """An origin response being kept for the cache: `add` its body as it arrives, `commit`
    once it has ended. A body that outgrows `max_bytes` is let go (and `commit` stores
    nothing), so a large download is never held in memory for the cache."""

    store: CacheStore
    key: str
    entry: CachedResponse  # the body is filled in by `commit`
    max_bytes: int
    body: bytearray = field(default_factory=bytearray)
    too_big: bool = False

    def add(self, data: bytes) -> None:
        if self.too_big:
            return
        if len(self.body) + len(data) > self.max_bytes:
            self.too_big = True
            self.body = bytearray()
            return
        self.body += data

    def commit(self) -> bool:
        """Store the response whose body has ended; False when it was too large."""
        if self.too_big:
            return False
        self.store.put(self.key, replace(self.entry, body=bytes(self.body)))
        return True


SWITCHED_OFF: Final = CacheBypass("cache is switched off")
CARRIES_AUTHORIZATION: Final = CacheBypass("request carries Authorization")
#: The bypass of each common method that is never cached, made once (every form is a POST).
NOT_CACHEABLE: Final = {
    method: CacheBypass(f"method {method} is not cacheable")
    for method in ("POST", "PUT", "PATCH", "DELETE", "OPTIONS")
}
#: Every bypass made once, above: the pipeline makes its module outcome once for each too.
CONSTANT_BYPASSES: Final = (SWITCHED_OFF, CARRIES_AUTHORIZATION, *NOT_CACHEABLE.values())

ResponsePlan = CacheFill | NotStored
"""What happens to an origin response: see `Engine.on_response`."""


_CacheRule = tuple[str, str, int | None, Expression]  # id, action, TTL, expression


@dataclass(frozen=True)
class CachePolicy:
    """The bundle's cache configuration with its rule expressions compiled."""

    config: CacheConfig
    rules: tuple[_CacheRule, ...]
    # The rules a request's path leaves possible, in order (see `failsmall.engine.path_index`).
    by_path: PathIndex[_CacheRule]

    @classmethod
    def compile(cls, config: CacheConfig, ip_lists: dict[str, list[str]]) -> CachePolicy:
        rules = tuple(
            (r.id, r.action, r.ttl_s, compile_expression(r.expression, ip_lists))
            for r in config.rules
        )
        return cls(config, rules, PathIndex.build([(r, r[3].path_prefixes) for r in rules]))

    def lookup(self, view: RequestView, store: CacheStore, now: float) -> CacheDecision:
        request = view.request
        if not self.config.enabled:
            return SWITCHED_OFF
        if request.method not in CACHEABLE_METHODS:
            known = NOT_CACHEABLE.get(request.method)
            if known is not None:
                return known
            return CacheBypass(f"method {request.method} is not cacheable")
        if view.has_header("authorization"):
            return CARRIES_AUTHORIZATION
        ttl_override: int | None = None
        if self.rules:
            for rule_id, action, ttl, expression in self.by_path.select(view.normalized_path):
                if expression.evaluate(view):
                    if action == "bypass":
                        return CacheBypass(f"cache rule {rule_id}")
                    ttl_override = ttl
                    break
        query = request.query
        host = request.host or view.host  # what `view.host` is, a call less when it is given
        key = (
            f"{request.method}|{host}|{request.path}?{query}"
            if query
            else f"{request.method}|{host}|{request.path}"
        )
        entry = store.get(key, now)
        if (
            entry is not None
            and "no-cache" not in _directives(view.header("cache-control"))
            and _vary_matches(entry, view)
        ):
            return CacheHit(key, entry)
        return CacheMiss(key, ttl_override, now, view, store)

    def on_response(
        self, miss: CacheMiss, status: int, headers: Sequence[tuple[bytes, bytes]]
    ) -> ResponsePlan:
        """Whether the origin's response to a cache miss can be stored, decided from its status
        and headers (as sent); when it can, the `CacheFill` that keeps its body."""
        if miss.view.request.method == "HEAD":
            return _HEAD_NOT_STORED
        if status not in CACHEABLE_STATUSES:
            return NotStored(f"status {status} is not cacheable")
        cache_control, vary_values, expires, sets_cookie = cache_headers(headers)  # one C pass
        if sets_cookie:
            return _SETS_COOKIE
        if not cache_control:
            if expires is None and miss.ttl_override is None and not self.config.default_ttl_s:
                return _NO_LIFETIME  # the common case of a response the origin did not mark
            cc: dict[str, str] = {}
        else:
            cc = _directives(", ".join(cache_control))
        for directive in ("no-store", "private", "no-cache"):
            if directive in cc:
                return NotStored(f"Cache-Control: {directive}")
        now = miss.now
        ttl = _ttl(cc, expires, now, miss.ttl_override, self.config.default_ttl_s)
        if ttl <= 0:
            return _NO_LIFETIME
        vary = [v.strip().lower() for value in vary_values for v in value.split(",")]
        if "*" in vary:
            return NotStored("Vary: *")
        varies = tuple((name, miss.view.header(name)) for name in vary if name)
        entry = CachedResponse(status, tuple(headers), b"", now, now + ttl, varies)
        return CacheFill(miss.store, miss.key, entry, self.config.max_object_bytes)


_HEAD_NOT_STORED: Final = NotStored("the response to a HEAD request has no body to store")
_SETS_COOKIE: Final = NotStored("the response sets a cookie")
_NO_LIFETIME: Final = NotStored("the response has no freshness lifetime")


def _directives(value: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in value.split(","):
        name, _, arg = part.strip().partition("=")
        if name:
            out[name.lower()] = arg.strip().strip('"')
    return out


def _ttl(
    cc: dict[str, str],
    expires: str | None,
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
    if expires is not None:
        try:
            return parsedate_to_datetime(expires).timestamp() - now
        except (TypeError, ValueError):
            return 0.0
    return float(default)


def _vary_matches(entry: CachedResponse, view: RequestView) -> bool:
    return all(view.header(name) == value for name, value in entry.vary)
