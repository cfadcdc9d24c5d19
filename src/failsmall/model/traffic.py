"""Origins, routes, limits, rate limits, cache rules and fault injection."""

from __future__ import annotations

import ssl
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from failsmall.model.base import Strict
from failsmall.model.rules import RuleId

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB


ORIGIN_URL = r"^https?://[A-Za-z0-9.\-\[\]:]+(:[0-9]{1,5})?/?$"


class Origin(Strict):
    """An upstream service: a server addressed as http://host:port or https://host:port, and
    maybe `replicas`, more servers of the same service (same scheme and TLS settings). Requests
    are spread over the servers in turn; one that cannot be reached is left out for a while.

    Over https the origin's certificate is verified: against `tls_ca_pem` (PEM CA
    certificates, public data that may travel in a bundle) or, when that is empty, the node's
    system trust store; for `tls_server_name`, also sent as SNI, or the URL's host.
    """

    id: RuleId
    url: str = Field(pattern=ORIGIN_URL)
    replicas: list[Annotated[str, Field(pattern=ORIGIN_URL)]] = Field(
        default_factory=list, max_length=63
    )
    tls_ca_pem: str = ""
    tls_server_name: str = Field(default="", pattern=r"^[A-Za-z0-9.\-]*$", max_length=253)

    @property
    def tls(self) -> bool:
        return self.url.startswith("https://")

    @property
    def servers(self) -> tuple[str, ...]:
        """Every server of the origin: `url` first, then the replicas."""
        return (self.url, *self.replicas)

    @model_validator(mode="after")
    def _consistent(self) -> Origin:
        servers = self.servers
        if len(set(servers)) != len(servers):
            raise ValueError(f"origin {self.id}: a server is listed twice in url and replicas")
        if any(server.startswith("https://") != self.tls for server in servers):
            raise ValueError(f"origin {self.id}: url and replicas must share one scheme")
        if (self.tls_ca_pem or self.tls_server_name) and not self.tls:
            raise ValueError(
                f"origin {self.id}: tls_ca_pem and tls_server_name need an https:// url"
            )
        if self.tls_ca_pem:
            try:
                ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(
                    cadata=self.tls_ca_pem
                )
            except (ssl.SSLError, ValueError) as exc:
                raise ValueError(
                    f"origin {self.id}: tls_ca_pem holds no usable PEM certificate ({exc})"
                ) from exc
        return self


class Route(Strict):
    """Sends requests for `host` (or `*`) under `path_prefix` to an origin."""

    host: str = "*"
    path_prefix: str = Field(default="/", pattern=r"^/")
    origin: RuleId


class BodyOverBuffer(StrEnum):
    """What the WAF does with a body larger than its inspection buffer."""

    INSPECT_PARTIAL = "inspect_partial"
    REJECT = "reject"


class OverLimit(StrEnum):
    """What the WAF does with a request whose inspection goes past one of its work limits.

    `inspect_partial`: the verdict comes from what was inspected within the limits; `block`
    (403) and `challenge`: the request is answered so whatever rules said of the part inspected.
    Either way the verdict names the limit that was reached.
    """

    INSPECT_PARTIAL = "inspect_partial"
    BLOCK = "block"
    CHALLENGE = "challenge"


class Limits(Strict):
    """Request limits and timeouts, enforced by the node and used by `verify`.

    The `waf_*` work limits bound what one request can make the WAF do, in counted work rather
    than time, so a verdict is a function of the request and the bundle: values inspected,
    characters produced by transforms, nesting depth of a body, content-coding layers and their
    expansion. The defaults cover real traffic (see docs/waf.md); a request that goes past one
    gets `waf_over_limit`.
    """

    waf_body_buffer: int = Field(default=128 * KIB, ge=1 * KIB, le=16 * MIB)
    body_over_buffer: BodyOverBuffer = BodyOverBuffer.INSPECT_PARTIAL
    max_body_bytes: int = Field(default=64 * MIB, ge=0)
    max_header_bytes: int = Field(default=32 * KIB, ge=1 * KIB, le=1 * MIB)
    max_headers: int = Field(default=100, ge=1, le=1000)
    max_uri_bytes: int = Field(default=8 * KIB, ge=256, le=1 * MIB)
    header_timeout_s: float = Field(default=10.0, gt=0, le=300)
    body_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    idle_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    upstream_connect_timeout_s: float = Field(default=5.0, gt=0, le=300)
    upstream_read_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    module_time_budget_us: int = Field(default=50_000, ge=100, le=10_000_000)
    """A watchdog against defects: a module that completes past it keeps its verdict, and the
    overrun is counted and reported; it never trips a breaker."""
    max_connections: int = Field(default=10_000, ge=1, le=1_000_000)
    """Open client connections per node process; past it, new ones get a 503 and close."""
    max_connections_per_client: int = Field(default=256, ge=1, le=1_000_000)
    """Open connections one client address may hold per node process; past it, its new ones
    get a 429 and close. Peers listed in the bundle's `trusted_proxies` are not capped."""
    min_body_rate_bytes_s: int = Field(default=500, ge=1, le=1 * GIB)
    """The slowest a request body may arrive: `body_rate_grace_s` after its head, plus one
    second per this many bytes received, is when it must have ended, or the request gets a
    408 (Apache's mod_reqtimeout MinRate)."""
    body_rate_grace_s: float = Field(default=20.0, gt=0, le=3600)
    """How long a request body may take before `min_body_rate_bytes_s` starts to count."""
    # ---- WAF work limits (counted work, never time) ----
    waf_max_values: int = Field(default=16_384, ge=16, le=1_000_000)
    """Values inspected per request: query and body fields and names, headers, cookies."""
    waf_max_transformed_chars: int = Field(default=16 * MIB, ge=64 * KIB, le=1024 * MIB)
    """Characters scanned per request, summed over every value and each of its transforms."""
    waf_max_body_depth: int = Field(default=64, ge=1, le=256)
    """Nesting depth of a JSON body (objects and arrays) or of multipart bodies in parts."""
    waf_max_decode_depth: int = Field(default=2, ge=0, le=8)
    """Content-coding layers decoded for inspection (`Content-Encoding: gzip, gzip` is 2)."""
    waf_max_expansion: int = Field(default=100, ge=1, le=10_000)
    """Largest ratio of decoded to encoded body size; past it a body is a decompression bomb."""
    waf_over_limit: OverLimit = OverLimit.BLOCK
    """What happens to a request past a WAF work limit (see `OverLimit`)."""


class Capacities(Strict):
    """Capacities a node has (or a bundle needs). A bundle is valid on a node only if it
    needs no more than the node has."""

    bot_feature_slots: int = Field(default=200, ge=0, le=100_000)
    max_rules: int = Field(default=10_000, ge=0)
    max_body_buffer: int = Field(default=16 * MIB, ge=1 * KIB)
    max_rate_limit_keys: int = Field(default=100_000, ge=1)


class RateLimitKey(StrEnum):
    """Parts of a request that make a rate limit key."""

    IP = "ip"
    PATH = "path"
    HOST = "host"
    METHOD = "method"


class RateLimit(Strict):
    """A token bucket per key: `requests` per `period_s`, with a burst."""

    id: RuleId
    expression: str = "true"
    key: list[str] = Field(default_factory=lambda: ["ip"], min_length=1)
    requests: int = Field(ge=1)
    period_s: float = Field(gt=0, le=86_400)
    burst: int | None = Field(default=None, ge=1)
    action: Literal["block", "challenge", "log"] = "block"
    status: int = Field(default=429, ge=400, le=599)

    @field_validator("key")
    @classmethod
    def _header_keys(cls, parts: list[str]) -> list[str]:
        for part in parts:
            if part in {k.value for k in RateLimitKey}:
                continue
            if not part.startswith("header:") or len(part) <= len("header:"):
                raise ValueError(
                    f"rate limit key part {part!r} is not one of ip, path, host, method "
                    "or header:<name>"
                )
        return parts


class CacheRule(Strict):
    """Decides caching for requests matching `expression`."""

    id: RuleId
    expression: str = "true"
    action: Literal["cache", "bypass"] = "cache"
    ttl_s: int | None = Field(default=None, ge=0, le=31_536_000)


class CacheConfig(Strict):
    """The in-memory response cache."""

    enabled: bool = True
    max_bytes: int = Field(default=64 * MIB, ge=0)
    max_object_bytes: int = Field(default=8 * MIB, ge=0)
    default_ttl_s: int = Field(default=0, ge=0)
    rules: list[CacheRule] = Field(default_factory=list)


class FaultConfig(Strict):
    """Envoy-style fault injection; off unless a percentage is set."""

    abort_percent: float = Field(default=0.0, ge=0, le=100)
    abort_status: int = Field(default=503, ge=400, le=599)
    delay_percent: float = Field(default=0.0, ge=0, le=100)
    delay_ms: int = Field(default=0, ge=0, le=60_000)


class FailurePolicy(StrEnum):
    """What a module's failure means for the request."""

    FAIL_OPEN = "fail_open"
    FAIL_CLOSED = "fail_closed"


class ModuleName(StrEnum):
    """The engine's modules, in pipeline order."""

    FAULT = "fault"
    RATELIMIT = "ratelimit"
    BOT = "bot"
    WAF = "waf"
    CACHE = "cache"


PIPELINE_ORDER: tuple[ModuleName, ...] = tuple(ModuleName)


class ModuleSettings(Strict):
    """Per-module switch, failure policy and circuit breaker.

    `failure_policy` applies to a request on which the module failed (raised); `while_open`
    to every request while the module's breaker is open, that is while the module is skipped.
    Work caused by the input never counts as a failure (see `Limits`).
    """

    enabled: bool = True
    failure_policy: FailurePolicy = FailurePolicy.FAIL_OPEN
    while_open: FailurePolicy = FailurePolicy.FAIL_OPEN
    breaker_failures: int = Field(default=20, ge=1, le=1_000_000)
    breaker_window_s: float = Field(default=10.0, gt=0, le=3600)
    breaker_cooldown_s: float = Field(default=30.0, gt=0, le=3600)


def default_modules() -> dict[ModuleName, ModuleSettings]:
    """Every module's default settings. The WAF's breaker fails closed: a node whose security
    module is out answers 503 and reports itself unready, so traffic drains to nodes that still
    inspect, rather than passing uninspected (see docs/waf.md)."""
    return {
        ModuleName.FAULT: ModuleSettings(),
        ModuleName.RATELIMIT: ModuleSettings(),
        ModuleName.BOT: ModuleSettings(),
        ModuleName.WAF: ModuleSettings(while_open=FailurePolicy.FAIL_CLOSED),
        ModuleName.CACHE: ModuleSettings(),
    }
