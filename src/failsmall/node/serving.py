"""What a node serves with right now: an engine, its mutable state and the bundle behind it.

A request takes the current `Serving` when its headers arrive and keeps it to the end, so a swap
never changes the engine under a request in flight; new requests get the new one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from failsmall.engine import Engine, EngineState
from failsmall.model import Limits, SignedBundle


class RequestLimits:
    """The bundle's limits that the node's request path reads, copied from its `Limits` once
    per bundle into a compiled class: a read is then a field of a C struct, where a pydantic
    model's attribute is a Python-level lookup (about 40 ns, several times per request)."""

    def __init__(self, limits: Limits) -> None:
        self.max_connections = limits.max_connections
        self.max_connections_per_client = limits.max_connections_per_client
        self.max_uri_bytes = limits.max_uri_bytes
        self.max_header_bytes = limits.max_header_bytes
        self.max_headers = limits.max_headers
        self.max_body_bytes = limits.max_body_bytes
        self.waf_body_buffer = limits.waf_body_buffer
        self.body_over_buffer = limits.body_over_buffer
        self.header_timeout_s = limits.header_timeout_s
        self.body_timeout_s = limits.body_timeout_s
        self.idle_timeout_s = limits.idle_timeout_s
        self.upstream_connect_timeout_s = limits.upstream_connect_timeout_s
        self.upstream_read_timeout_s = limits.upstream_read_timeout_s
        self.min_body_rate_bytes_s = limits.min_body_rate_bytes_s
        self.body_rate_grace_s = limits.body_rate_grace_s


NO_BUNDLE_LIMITS = RequestLimits(Limits())


def short_digest(digest: str) -> str:
    """The first 12 hex digits of a digest, for headers and logs."""
    return digest.removeprefix("sha256:")[:12]


@dataclass(eq=False)
class Serving:
    """One built bundle in service."""

    engine: Engine
    state: EngineState
    signed: SignedBundle
    tag: bytes = field(init=False)
    limits: RequestLimits = field(init=False)

    def __post_init__(self) -> None:
        self.tag = short_digest(self.signed.digest).encode()
        self.limits = RequestLimits(self.signed.bundle.limits)

    @classmethod
    def start(cls, engine: Engine, signed: SignedBundle, previous: Serving | None) -> Serving:
        """Serve `engine`, taking over the rate-limit buckets and cache of `previous`."""
        carry = previous.state if previous is not None else None
        return cls(engine, engine.new_state(carry=carry), signed)

    @property
    def digest(self) -> str:
        return self.signed.digest


class ServingSlot:
    """Holds the current `Serving` and its limits; `swap` replaces both in one step."""

    def __init__(self) -> None:
        self.current: Serving | None = None
        self.limits = NO_BUNDLE_LIMITS

    def swap(self, serving: Serving) -> Serving | None:
        previous, self.current, self.limits = self.current, serving, serving.limits
        return previous

    @property
    def digest(self) -> str:
        current = self.current
        return current.digest if current is not None else ""
