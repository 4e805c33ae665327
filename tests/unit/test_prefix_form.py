"""proto.prefix: the one prefix and address form, checked against `ipaddress`."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proto import prefix as pf

v4_nets = st.builds(lambda a, n: ipaddress.IPv4Network((a, n), strict=False),
                    st.integers(0, 2**32 - 1), st.integers(0, 32))
v6_nets = st.builds(lambda a, n: ipaddress.IPv6Network((a, n), strict=False),
                    st.integers(0, 2**128 - 1), st.integers(0, 128))
nets = st.one_of(v4_nets, v6_nets)
addrs = st.one_of(st.builds(ipaddress.IPv4Address, st.integers(0, 2**32 - 1)),
                  st.builds(ipaddress.IPv6Address, st.integers(0, 2**128 - 1)))


@given(nets)
def test_prefix_round_trips_through_text_network_and_bgp(net):
    p = pf.from_network(net)
    assert len(p) == 2 + (4 if net.version == 4 else 16)
    assert pf.valid(p)
    assert pf.text(p) == str(net)
    assert pf.parse(str(net)) == p
    assert pf.network(p) == net
    assert pf.from_bgp(net.version, pf.to_bgp(p)) == p
    assert pf.make(net.version, net.prefixlen, pf.to_bgp(p)[1:]) == p


@given(addrs)
def test_address_round_trips(addr):
    a = pf.from_ip(addr)
    assert pf.valid_address(a)
    assert pf.address_text(a) == str(addr)
    assert pf.parse_address(str(addr)) == a
    assert pf.ip(a) == addr
    assert pf.network(pf.host(a)) == ipaddress.ip_network(addr)


@given(nets, nets)
def test_contains_matches_ipaddress(outer, inner):
    expected = outer.version == inner.version and inner.subnet_of(outer)
    assert pf.contains(pf.from_network(outer), pf.from_network(inner)) == expected


@given(nets, addrs)
def test_contains_address_matches_ipaddress(outer, addr):
    expected = outer.version == addr.version and addr in outer
    assert pf.contains(pf.from_network(outer), pf.from_ip(addr)) == expected


@given(st.lists(nets, max_size=20))
def test_sort_key_orders_like_ipaddress(networks):
    ordered = sorted(networks, key=lambda n: (n.version, int(n.network_address), n.prefixlen))
    assert sorted((pf.from_network(n) for n in networks), key=pf.sort_key) == [pf.from_network(n) for n in ordered]


def test_make_clears_host_bits_as_the_bgp_wire_allows():
    assert pf.make(4, 26, b"\x0a\x00\x00\x7f") == pf.parse("10.0.0.64/26")
    assert pf.make(4, 20, b"\x0a\x01\xff") == pf.parse("10.1.240.0/20")


@pytest.mark.parametrize("text", ["10.0.0.1/24", "10.0.0.0/33", "10.1/8", "fd00::1/64", "x/1", "10.0.0.0/-1",
                                  "10.0.0.0/ 8", "010.0.0.0/8"])
def test_parse_refuses_what_is_not_a_strict_prefix(text):
    with pytest.raises(pf.PrefixError):
        pf.parse(text)


@pytest.mark.parametrize("raw", [b"", b"\x05\x00", b"\x04\x21\0\0\0\0", b"\x04\x18\x0a\x00\x00\x01",
                                 b"\x04\x18\x0a\x00\x00", b"\x06\x40" + b"\0" * 15])
def test_valid_refuses_malformed_values(raw):
    assert not pf.valid(raw)
