"""felixd's kernel side without a kernel: the diff, and the bulk encoder checked by pyroute2's decoder."""

from __future__ import annotations

import ipaddress
import socket
import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from felixd.kernel.events import RTM_DELROUTE as EV_DELROUTE
from felixd.kernel.events import interesting
from felixd.kernel.netlink_bulk import (
    NLM_F_CREATE,
    NLM_F_REPLACE,
    NLM_F_REQUEST,
    RT_SCOPE_LINK,
    RT_SCOPE_NOWHERE,
    RTM_DELROUTE,
    RTM_NEWROUTE,
    RTN_BLACKHOLE,
    RTN_UNICAST,
    RTNH_F_ONLINK,
    KernelRoute,
    Op,
    encode_route,
    signature,
)
from felixd.kernel.nft import _element_networks, _normalise
from felixd.kernel.routes import kernel_key
from felixd.reconcile import diff_routes
from felixd.state import Route, RouteKind


def kr(route: Route, protocol: int = 80) -> KernelRoute:
    return (*signature(route), protocol)  # type: ignore[return-value]


def actual_of(*pairs: tuple[Route, int]) -> dict[tuple[str, int, int], KernelRoute]:
    return {kernel_key(r): kr(r, p) for r, p in pairs}


DIRECT = Route("10.244.1.0/26", gateway="172.31.0.2", dev="eth0")
HOLE = Route("10.244.0.0/26", kind=RouteKind.BLACKHOLE)
V6 = Route("fd00::/122", kind=RouteKind.BLACKHOLE)


def test_unchanged_kernel_needs_no_operation() -> None:
    assert diff_routes([DIRECT, HOLE, V6], actual_of((DIRECT, 80), (HOLE, 80), (V6, 80)), 80) == []


def test_ipv6_metric_zero_matches_the_kernels_1024() -> None:
    actual = actual_of((V6, 80))
    assert next(iter(actual)) == ("fd00::/122", 254, 1024)
    assert diff_routes([V6], actual, 80) == []


def test_missing_changed_foreign_protocol_and_extra() -> None:
    moved = Route(DIRECT.dst, gateway="172.31.0.3", dev="eth0")
    extra = Route("10.99.0.0/26", kind=RouteKind.BLACKHOLE)
    on_our_device = Route("10.98.0.0/26", dev="vxlan.calico", scope_link=True)
    actual = actual_of((moved, 80), (extra, 80), (on_our_device, 4))
    ops = diff_routes([DIRECT, HOLE], actual, 80)
    assert [(o.op, o.route.dst, o.protocol) for o in ops] == [
        (Op.REPLACE, DIRECT.dst, 80),  # changed next hop
        (Op.REPLACE, HOLE.dst, 80),  # missing
        (Op.DELETE, extra.dst, 80),  # ours, not desired
        (Op.DELETE, on_our_device.dst, 4),  # on our device: deleted under its own protocol
    ]


def test_a_desired_route_held_under_another_protocol_is_rewritten_as_ours() -> None:
    ops = diff_routes([DIRECT], actual_of((DIRECT, 4)), 80)
    assert [(o.op, o.protocol) for o in ops] == [(Op.REPLACE, 80)]


@st.composite
def routes(draw: st.DrawFn) -> Route:
    v6 = draw(st.booleans())
    bits = 128 if v6 else 32
    plen = draw(st.integers(0, bits))
    addr = draw(st.integers(0, 2**bits - 1)) >> (bits - plen) << (bits - plen) if plen else 0
    dst = str((ipaddress.IPv6Network if v6 else ipaddress.IPv4Network)((addr, plen)))
    table = draw(st.sampled_from([254, 100, 1000]))
    metric = draw(st.sampled_from([0, 5, 1024]))
    if draw(st.booleans()):
        return Route(dst, kind=RouteKind.BLACKHOLE, table=table, metric=metric)
    cls = ipaddress.IPv6Address if v6 else ipaddress.IPv4Address
    gw = str(cls(draw(st.integers(1, 2**bits - 1)))) if draw(st.booleans()) else None
    return Route(dst, gateway=gw, dev="eth0", onlink=draw(st.booleans()), scope_link=gw is None and
                 draw(st.booleans()), table=table, metric=metric)


@settings(max_examples=100, deadline=None)
@given(routes(), st.integers(1, 2**32 - 1), st.integers(1, 255))
def test_bulk_encoding_read_back_by_pyroute2(route: Route, seq: int, proto: int) -> None:
    flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE
    msg = rtmsg(encode_route(RTM_NEWROUTE, flags, seq, route, 7, proto))
    msg.decode()
    v6 = ":" in route.dst
    assert msg["header"]["type"] == RTM_NEWROUTE and msg["header"]["sequence_number"] == seq
    assert msg["header"]["flags"] == flags and msg["header"]["length"] == len(msg.data)
    assert msg["family"] == (socket.AF_INET6 if v6 else socket.AF_INET)
    net = ipaddress.ip_network(route.dst)
    assert msg["dst_len"] == net.prefixlen
    assert ipaddress.ip_address(msg.get_attr("RTA_DST") or net.network_address) == net.network_address
    assert msg.get_attr("RTA_TABLE") == route.table and msg["proto"] == proto
    assert (msg.get_attr("RTA_PRIORITY") or 0) == (route.metric or (1024 if v6 else 0))
    if route.kind == RouteKind.BLACKHOLE:
        assert msg["type"] == RTN_BLACKHOLE and msg.get_attr("RTA_OIF") is None
    else:
        assert msg["type"] == RTN_UNICAST and msg.get_attr("RTA_OIF") == 7
        gw = msg.get_attr("RTA_GATEWAY")
        assert (gw and ipaddress.ip_address(gw)) == (route.gateway and ipaddress.ip_address(route.gateway))
        assert bool(msg["flags"] & RTNH_F_ONLINK) == route.onlink
        assert (msg["scope"] == RT_SCOPE_LINK) == route.scope_link


@settings(max_examples=100, deadline=None)
@given(routes(), st.integers(1, 255))
def test_bulk_delete_matches_only_prefix_table_protocol_metric(route: Route, proto: int) -> None:
    msg = rtmsg(encode_route(RTM_DELROUTE, NLM_F_REQUEST, 1, route, 7, proto))
    msg.decode()
    assert msg["type"] == 0 and msg["scope"] == RT_SCOPE_NOWHERE and msg["proto"] == proto
    assert msg.get_attr("RTA_GATEWAY") is None and msg.get_attr("RTA_OIF") is None
    assert msg.get_attr("RTA_TABLE") == route.table


def test_ipv6_scope_link_is_not_compared() -> None:
    """The kernel takes `scope link` on an IPv6 route and reports `scope global`: no churn over it."""
    wl6 = Route("fd00::5/128", dev="cali1", scope_link=True)
    dumped = ("fd00::5/128", RouteKind.UNICAST, None, "cali1", False, False, 254, 1024, 80)
    assert diff_routes([wl6], {kernel_key(wl6): dumped}, 80) == []  # type: ignore[dict-item]
    wl4 = Route("10.0.0.5/32", dev="cali1", scope_link=True)
    dumped4 = ("10.0.0.5/32", RouteKind.UNICAST, None, "cali1", False, False, 254, 0, 80)
    assert len(diff_routes([wl4], {kernel_key(wl4): dumped4}, 80)) == 1  # type: ignore[dict-item]


def test_desired_route_under_a_foreign_key_is_left_alone() -> None:
    conflicts: list[str] = []
    foreign = {kernel_key(DIRECT)}
    ops = diff_routes([DIRECT, HOLE], {}, 80, foreign, conflicts)
    assert [o.route.dst for o in ops] == [HOLE.dst] and conflicts == [DIRECT.dst]


def _nlmsg(mtype: int, payload: bytes) -> bytes:
    return struct.pack("=IHHII", 16 + len(payload), mtype, 0, 0, 0) + payload


def test_kernel_events_that_trigger_a_resync() -> None:
    ours = _nlmsg(EV_DELROUTE, struct.pack("=BBBBBBBBI", 2, 24, 0, 0, 254, 80, 0, 1, 0))
    foreign = _nlmsg(RTM_NEWROUTE, struct.pack("=BBBBBBBBI", 2, 24, 0, 0, 254, 4, 0, 1, 0))
    link = _nlmsg(16, bytes(16))  # RTM_NEWLINK
    new_neigh = _nlmsg(28, bytes(12))  # RTM_NEWNEIGH: not interesting, only deletions are
    del_arp = _nlmsg(29, struct.pack("=BxHiHBB", 2, 0, 3, 0x02, 0, 1))  # an expiring ARP entry (REACHABLE)
    del_permanent = _nlmsg(29, struct.pack("=BxHiHBB", 2, 0, 3, 0x80, 0, 1))
    addr_v4 = _nlmsg(20, struct.pack("=BBBBI", 2, 24, 0, 0, 3))  # RTM_NEWADDR, scope global
    addr_ll = _nlmsg(20, struct.pack("=BBBBI", 10, 64, 0, 253, 3))  # IPv6 link-local
    assert interesting(ours + foreign + link + new_neigh, 80) == 2
    assert interesting(del_arp + addr_ll, 80) == 0
    assert interesting(del_permanent + addr_v4, 80) == 2
    assert interesting(foreign, 80) == 0
    assert interesting(foreign, 4) == 1


def test_nft_sets_compare_as_nft_stores_them() -> None:
    # auto-merge joins adjacent prefixes; nft -j prints a range or a prefix
    assert _normalise(["10.0.0.0/25", "10.0.0.128/25", "fd00::/64"]) == _normalise(["10.0.0.0/24", "fd00::/64"])
    merged = _element_networks({"range": ["10.0.0.0", "10.0.1.255"]})
    assert [str(n) for n in merged] == ["10.0.0.0/23"]
    assert [str(n) for n in _element_networks({"prefix": {"addr": "fd00::", "len": 48}})] == ["fd00::/48"]
    assert [str(n) for n in _element_networks("10.1.1.1")] == ["10.1.1.1/32"]
