"""IP address parsing and sets: the fast path must read addresses exactly as `ipaddress` does."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from failsmall.engine.expr.addresses import AddressSet, AddressSetError, address_number

_OCTET = st.one_of(st.integers(0, 300).map(str), st.sampled_from(["00", "01", "007", "", "a"]))
_IPV4_LIKE = st.builds(".".join, st.lists(_OCTET, min_size=3, max_size=5))
_IPV6 = st.ip_addresses(v=6).map(str)


@given(text=st.one_of(_IPV4_LIKE, _IPV6, st.text(max_size=12)))
@settings(max_examples=500)
def test_address_number_reads_addresses_like_ipaddress(text: str) -> None:
    try:
        expected = ipaddress.ip_address(text)
    except ValueError:
        with pytest.raises(ValueError):
            address_number(text)
        return
    assert address_number(text) == (expected.version, int(expected))


@given(
    networks=st.lists(st.ip_addresses(v=4).map(str), max_size=5),
    prefix=st.integers(0, 32),
    probe=st.ip_addresses(v=4),
)
def test_membership_matches_ipaddress_networks(
    networks: list[str], prefix: int, probe: ipaddress.IPv4Address
) -> None:
    entries = [f"{network}/{prefix}" for network in networks]
    expected = any(probe in ipaddress.ip_network(entry, strict=False) for entry in entries)
    assert AddressSet(entries).contains(str(probe)) is expected


def test_v4_and_v6_do_not_mix() -> None:
    both = AddressSet(["0.0.0.0/0"])
    assert both.contains("8.8.8.8")
    assert not both.contains("::1")
    assert AddressSet(["::/0"]).contains("::ffff:8.8.8.8")


def test_a_bad_entry_names_itself() -> None:
    with pytest.raises(AddressSetError, match=r"'10\.0\.0\.256'"):
        AddressSet(["10.0.0.0/8", "10.0.0.256"])
