"""Which address a request comes from, when the edge sits behind load balancers.

A request's client address is its TCP peer, unless that peer is one of the bundle's
`trusted_proxies`. Then it is the right-most address in X-Forwarded-For that is not a trusted
proxy: each proxy appends the address it received the request from, so everything left of the
first untrusted hop was written by the client and may be forged. Rate limits, IP lists and the
access log all use this address.
"""

from __future__ import annotations

from dataclasses import dataclass
from socket import AF_INET, AF_INET6, inet_pton

from failsmall.engine.expr.addresses import AddressSet


def _is_address(text: str) -> bool:
    for family in (AF_INET, AF_INET6):
        try:
            inet_pton(family, text)
        except (OSError, ValueError):
            continue
        return True
    return False


@dataclass(frozen=True)
class ClientAddresses:
    """Resolves client addresses for one bundle (see the module docstring)."""

    trusted: AddressSet | None

    @classmethod
    def build(cls, trusted_proxies: list[str]) -> ClientAddresses:
        return cls(AddressSet(trusted_proxies) if trusted_proxies else None)

    def resolve(self, peer: str, forwarded_for: str) -> str:
        """The client address of a request from `peer` carrying `forwarded_for` (the
        X-Forwarded-For values joined with commas; empty when there are none)."""
        trusted = self.trusted
        if trusted is None or not forwarded_for or not trusted.contains(peer):
            return peer
        address = peer
        for hop in reversed(forwarded_for.split(",")):
            hop = hop.strip()
            if not _is_address(hop):
                # Not an address: nothing left of it can be trusted; the last proxy is the client.
                return address
            address = hop
            if not trusted.contains(hop):
                return hop
        return address
