"""The client address behind trusted proxies: the right-most X-Forwarded-For hop that is not one."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from failsmall.engine.client_address import ClientAddresses

LB = ClientAddresses.build(["10.0.0.0/8", "2001:db8::/32"])


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "client"),
    [
        ("198.51.100.7", "203.0.113.9", "198.51.100.7"),  # peer not trusted: XFF ignored
        ("10.0.0.5", "", "10.0.0.5"),  # a trusted peer without XFF is the client
        ("10.0.0.5", "203.0.113.9", "203.0.113.9"),
        ("10.0.0.5", "6.6.6.6, 203.0.113.9", "203.0.113.9"),  # the forged hop stays ignored
        ("10.0.0.5", "203.0.113.9, 10.1.1.1", "203.0.113.9"),  # two proxies deep
        ("10.0.0.5", "10.2.2.2, 10.1.1.1", "10.2.2.2"),  # every hop trusted: the left-most
        ("10.0.0.5", "203.0.113.9, garbage", "10.0.0.5"),  # nothing past garbage is trusted
        ("2001:db8::1", " 2001:db8::2 ,2600::1", "2600::1"),
    ],
)
def test_the_right_most_untrusted_hop_is_the_client(
    peer: str, forwarded_for: str, client: str
) -> None:
    assert LB.resolve(peer, forwarded_for) == client


def test_without_trusted_proxies_the_peer_is_always_the_client() -> None:
    assert ClientAddresses.build([]).resolve("10.0.0.5", "203.0.113.9") == "10.0.0.5"


ADDRESSES = st.ip_addresses(v=4).map(str) | st.sampled_from(["10.0.0.1", "10.9.9.9", "junk"])


@given(peer=ADDRESSES, hops=st.lists(ADDRESSES, max_size=6))
def test_the_client_is_the_peer_or_a_hop_no_forger_can_choose(peer: str, hops: list[str]) -> None:
    client = LB.resolve(peer, ", ".join(hops))
    assert client == peer or client in hops
    if client != peer:
        # Every hop right of the client, and the peer, are trusted proxies: only they wrote
        # what lies right of it.
        index = len(hops) - 1 - hops[::-1].index(client)
        for hop in [*hops[index + 1 :], peer]:
            assert ipaddress.ip_address(hop) in ipaddress.ip_network("10.0.0.0/8")
