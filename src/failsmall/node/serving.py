"""What a node serves with right now: an engine, its mutable state and the bundle behind it.

A request takes the current `Serving` when its headers arrive and keeps it to the end, so a swap
never changes the engine under a request in flight; new requests get the new one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from failsmall.engine import Engine, EngineState
from failsmall.model import Limits, SignedBundle

NO_BUNDLE_LIMITS = Limits()


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
    limits: Limits = field(init=False)

    def __post_init__(self) -> None:
        self.tag = short_digest(self.signed.digest).encode()
        self.limits = self.signed.bundle.limits

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
