"""felixd's kernel side without a kernel: the diff, the event sorter, and the bulk encoder checked by
pyroute2's decoder and by felixd's own dump parser."""

from __future__ import annotations

import ipaddress
import socket
import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from felixd.kernel.events import EventSorter, drop_filter, interesting
from felixd.kernel.nft import _element_networks, _normalise
from felixd.kernel.route_codec import KernelRoute, RouteParser, encode_route
from felixd.kernel.routes import RouteDiff, classify, diff_routes
from felixd.kernel.rtnl import (
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
)
from felixd.state import Op, RouteEntry, RouteKind, key_parts, route, route_map
from proto import prefix as pf


def kr(r: RouteEntry, protocol: int = 80, oif: int = 2) -> KernelRoute:
    """The kernel's copy of a route, as a dump reports it."""
    version = r.prefix[0]
    return (r.key, *r.shape.signature(version), protocol, oif)  # type: ignore[return-value]


def diff(desired: list[RouteEntry], actual: list[tuple[RouteEntry, int]], protocol: int = 80,
         foreign: set[object] | None = None) -> RouteDiff:
    out = RouteDiff(foreign=set(foreign or ()))  # type: ignore[arg-type]
    return diff_routes(route_map(*desired), [kr(r, p) for r, p in actual], protocol, out)


def summary(d: RouteDiff) -> list[tuple[Op, str, int]]:
    return [(op, pf.text(key_parts(key)[0]), proto) for op, key, _shape, proto in d.ops]


DIRECT = route("10.244.1.0/26", gateway="172.31.0.2", dev="eth0")
HOLE = route("10.244.0.0/26", kind=RouteKind.BLACKHOLE)
V6 = route("fd00::/122", kind=RouteKind.BLACKHOLE)


def test_unchanged_kernel_needs_no_operation() -> None:
    assert diff([DIRECT, HOLE, V6], [(DIRECT, 80), (HOLE, 80), (V6, 80)]).ops == []


def test_ipv6_metric_zero_matches_the_kernels_1024() -> None:
    assert key_parts(V6.key)[1:] == (254, 1024)
    assert route("fd00::/122", kind=RouteKind.BLACKHOLE, metric=1024).key == V6.key  # one key for both
    assert diff([V6], [(V6, 80)]).ops == []


def test_missing_changed_foreign_protocol_and_extra() -> None:
    moved = route(DIRECT.dst, gateway="172.31.0.3", dev="eth0")
    extra = route("10.99.0.0/26", kind=RouteKind.BLACKHOLE)
    on_our_device = route("10.98.0.0/26", dev="vxlan.calico", scope_link=True)
    d = diff([DIRECT, HOLE], [(moved, 80), (extra, 80), (on_our_device, 4)])
    assert sorted(summary(d), key=str) == sorted([
        (Op.REPLACE, DIRECT.dst, 80),  # changed next hop
        (Op.REPLACE, HOLE.dst, 80),  # missing
        (Op.DELETE, extra.dst, 80),  # ours, not desired
        (Op.DELETE, on_our_device.dst, 4),  # on our device: deleted under its own protocol
    ], key=str)


def test_a_desired_route_held_under_another_protocol_is_rewritten_as_ours() -> None:
    assert [(o[0], o[3]) for o in diff([DIRECT], [(DIRECT, 4)]).ops] == [(Op.REPLACE, 80)]


def test_ipv6_scope_link_is_not_compared() -> None:
    """The kernel takes `scope link` on an IPv6 route and reports `scope global`: no churn over it."""
    wl6 = route("fd00::5/128", dev="cali1", scope_link=True)
    dumped = (wl6.key, RouteKind.UNICAST, None, "cali1", False, False, 80, 3)
    assert diff_routes(route_map(wl6), [dumped], 80, RouteDiff()).ops == []  # type: ignore[list-item]
    wl4 = route("10.0.0.5/32", dev="cali1", scope_link=True)
    dumped4 = (wl4.key, RouteKind.UNICAST, None, "cali1", False, False, 80, 3)
    assert len(diff_routes(route_map(wl4), [dumped4], 80, RouteDiff()).ops) == 1  # type: ignore[list-item]


def test_desired_route_under_a_foreign_key_is_left_alone() -> None:
    d = diff([DIRECT, HOLE], [], foreign={DIRECT.key})
    assert summary(d) == [(Op.REPLACE, HOLE.dst, 80)] and d.conflicts == [DIRECT.dst]


def test_classify_owned_and_foreign() -> None:
    foreign: set[object] = set()
    kernel_route = (pf.parse("10.30.0.0/24"), RouteKind.UNICAST, None, "eth0", False, True, 2, 2)
    static_on_vxlan = (pf.parse("10.66.0.0/26"), RouteKind.UNICAST, None, "vxlan.calico", False, True, 4, 9)
    static_on_eth0 = (pf.parse("10.65.0.0/26"), RouteKind.UNICAST, None, "eth0", False, True, 4, 2)
    local = ((pf.parse("10.30.0.1/32"), 255, 0), RouteKind.UNICAST, None, "eth0", False, False, 2, 2)
    ours = kr(DIRECT)
    owned = list(classify([kernel_route, static_on_vxlan, static_on_eth0, local, ours], 80, {9},
                          foreign))  # type: ignore[list-item,arg-type]
    assert owned == [static_on_vxlan, ours]
    assert foreign == {kernel_route[0], static_on_eth0[0], local[0]}


@st.composite
def routes(draw: st.DrawFn) -> RouteEntry:
    v6 = draw(st.booleans())
    bits = 128 if v6 else 32
    plen = draw(st.integers(0, bits))
    addr = draw(st.integers(0, 2**bits - 1)) >> (bits - plen) << (bits - plen) if plen else 0
    dst = str((ipaddress.IPv6Network if v6 else ipaddress.IPv4Network)((addr, plen)))
    table = draw(st.sampled_from([254, 100, 1000]))
    metric = draw(st.sampled_from([0, 5, 1024]))
    if draw(st.booleans()):
        return route(dst, kind=RouteKind.BLACKHOLE, table=table, metric=metric)
    cls = ipaddress.IPv6Address if v6 else ipaddress.IPv4Address
    gw = str(cls(draw(st.integers(1, 2**bits - 1)))) if draw(st.booleans()) else None
    return route(dst, gateway=gw, dev="eth0", onlink=draw(st.booleans()), scope_link=gw is None and
                 draw(st.booleans()), table=table, metric=metric)


@settings(max_examples=150, deadline=None)
@given(routes(), st.integers(1, 2**32 - 2), st.integers(1, 255))
def test_bulk_encoding_read_back_by_pyroute2(r: RouteEntry, seq: int, proto: int) -> None:
    flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE
    wire = encode_route(RTM_NEWROUTE, flags, seq, r.key, r.shape, 7, proto)
    msg = rtmsg(wire)
    msg.decode()
    prefix, table, metric = key_parts(r.key)
    v6 = prefix[0] == 6
    assert msg["header"]["type"] == RTM_NEWROUTE and msg["header"]["sequence_number"] == seq
    assert msg["header"]["flags"] == flags and msg["header"]["length"] == len(msg.data)
    assert msg["family"] == (socket.AF_INET6 if v6 else socket.AF_INET)
    net = pf.network(prefix)
    assert msg["dst_len"] == net.prefixlen
    assert ipaddress.ip_address(msg.get_attr("RTA_DST") or net.network_address) == net.network_address
    assert msg.get_attr("RTA_TABLE") == table and msg["proto"] == proto
    assert (msg.get_attr("RTA_PRIORITY") or 0) == metric
    shape = r.shape
    if shape.kind == RouteKind.BLACKHOLE:
        assert msg["type"] == RTN_BLACKHOLE and msg.get_attr("RTA_OIF") is None
    else:
        assert msg["type"] == RTN_UNICAST and msg.get_attr("RTA_OIF") == 7
        gw = msg.get_attr("RTA_GATEWAY")
        assert (gw and ipaddress.ip_address(gw)) == (shape.gateway and pf.ip(shape.gateway))
        assert bool(msg["flags"] & RTNH_F_ONLINK) == shape.onlink
        assert (msg["scope"] == RT_SCOPE_LINK) == shape.scope_link
    # felixd's own parser (both paths) reads back what was encoded: the kernel echoes this form
    for parse in (RouteParser({7: "eth0"}).parse, RouteParser({7: "eth0"}).parse_slow):
        got = parse(wire, 0, len(wire))
        assert got is not None and got[0] == r.key and got[6] == proto
        assert got[1:6] == shape.signature(4)  # as encoded (the kernel drops an IPv6 scope itself)


@settings(max_examples=100, deadline=None)
@given(routes(), st.integers(1, 255))
def test_bulk_delete_matches_only_prefix_table_protocol_metric(r: RouteEntry, proto: int) -> None:
    msg = rtmsg(encode_route(RTM_DELROUTE, NLM_F_REQUEST, 1, r.key, r.shape, 7, proto))
    msg.decode()
    assert msg["type"] == 0 and msg["scope"] == RT_SCOPE_NOWHERE and msg["proto"] == proto
    assert msg.get_attr("RTA_GATEWAY") is None and msg.get_attr("RTA_OIF") is None
    assert msg.get_attr("RTA_TABLE") == key_parts(r.key)[1]


def _nlmsg(mtype: int, payload: bytes, pid: int = 0) -> bytes:
    return struct.pack("=IHHII", 16 + len(payload), mtype, 0, 0, pid) + payload


def _route_msg(mtype: int, proto: int, table: int = 254, dst: bytes = bytes((10, 1, 2, 0))) -> bytes:
    rt = struct.pack("=BBBBBBBBI", 2, 24, 0, 0, table, proto, 0, 1, 0)
    return _nlmsg(mtype, rt + struct.pack("=HH", 8, 1) + dst)


def test_kernel_events_sorted_into_what_felixd_does() -> None:
    ours = _route_msg(RTM_DELROUTE, 80)
    foreign_main = _route_msg(RTM_NEWROUTE, 4)
    foreign_other_table = _route_msg(RTM_NEWROUTE, 4, table=100)
    link = _nlmsg(16, bytes(16))  # RTM_NEWLINK
    new_neigh = _nlmsg(28, bytes(12))  # RTM_NEWNEIGH: not interesting, only deletions are
    del_arp = _nlmsg(29, struct.pack("=BxHiHBB", 2, 0, 3, 0x02, 0, 1))  # an expiring ARP entry (REACHABLE)
    del_permanent = _nlmsg(29, struct.pack("=BxHiHBB", 2, 0, 3, 0x80, 0, 1))
    addr_v4 = _nlmsg(20, struct.pack("=BBBBI", 2, 24, 0, 0, 3))  # RTM_NEWADDR, scope global
    addr_ll = _nlmsg(20, struct.pack("=BBBBI", 10, 64, 0, 253, 3))  # IPv6 link-local
    assert interesting(ours + foreign_main + link + new_neigh, 80) == 3
    assert interesting(del_arp + addr_ll + foreign_other_table, 80) == 0
    assert interesting(del_permanent + addr_v4, 80) == 2
    sorter = EventSorter(80)
    sorter.feed(ours)
    assert sorter.take() == ({pf.parse("10.1.2.0/24"): (80, False)}, False, False, False)
    sorter.feed(foreign_main + _route_msg(RTM_NEWROUTE, 80, dst=bytes((10, 9, 9, 0))))
    assert sorter.take() == ({pf.parse("10.9.9.0/24"): (80, True)}, True, False, False)
    sorter.feed(del_permanent)
    assert sorter.take()[2] is True and not sorter.pending()


def test_socket_filter_drops_own_port_ids_and_new_neighbours() -> None:
    """The classic BPF program, run here by a tiny interpreter of the four instructions it uses."""
    def run(prog: list[tuple[int, int, int, int]], pkt: bytes) -> int:
        pc, acc = 0, 0
        while True:
            code, jt, jf, k = prog[pc]
            if code == 0x28:
                acc = int.from_bytes(pkt[k:k + 2], "big")
            elif code == 0x20:
                acc = int.from_bytes(pkt[k:k + 4], "big")
            elif code == 0x15:
                pc += jt if acc == k else jf
            elif code == 0x06:
                return k
            pc += 1

    prog = drop_filter((4242, 0x7FFF1234))
    assert run(prog, _route_msg(RTM_NEWROUTE, 80)[:12] + struct.pack("=I", 4242)) == 0
    assert run(prog, _route_msg(RTM_NEWROUTE, 80)[:12] + struct.pack("=I", 0x7FFF1234)) == 0
    assert run(prog, _nlmsg(RTM_NEWROUTE, bytes(12), pid=999)) == 0xFFFFFFFF
    assert run(prog, _nlmsg(RTM_DELROUTE, bytes(12), pid=0)) == 0xFFFFFFFF
    assert run(prog, _nlmsg(28, bytes(12), pid=999)) == 0  # RTM_NEWNEIGH
    assert run(prog, _nlmsg(29, bytes(12), pid=999)) == 0xFFFFFFFF  # RTM_DELNEIGH


def test_nft_sets_compare_as_nft_stores_them() -> None:
    # auto-merge joins adjacent prefixes; nft -j prints a range or a prefix
    assert _normalise(["10.0.0.0/25", "10.0.0.128/25", "fd00::/64"]) == _normalise(["10.0.0.0/24", "fd00::/64"])
    merged = _element_networks({"range": ["10.0.0.0", "10.0.1.255"]})
    assert [str(n) for n in merged] == ["10.0.0.0/23"]
    assert [str(n) for n in _element_networks({"prefix": {"addr": "fd00::", "len": 48}})] == ["fd00::/48"]
    assert [str(n) for n in _element_networks("10.1.1.1")] == ["10.1.1.1/32"]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(routes(), st.booleans(), st.sampled_from([80, 81])), min_size=1, max_size=30),
       st.integers(1, 2**31))
def test_batch_encoder_equals_one_message_at_a_time(items: list[tuple[RouteEntry, bool, int]], first: int) -> None:
    """The batch encoder reuses a template while consecutive routes share it; every message must still be
    the one `encode_route` builds for that route alone (and the last one asks for the ACK)."""
    from felixd.kernel.netlink_bulk import BulkNetlink
    from felixd.kernel.rtnl import NLM_F_ACK

    shared = {}  # routes of one shape share one object, as the planner's interned shapes do
    ops = []
    for r, delete, proto in items:
        shape = shared.setdefault(r.shape, r.shape)
        ops.append((Op.DELETE if delete else Op.REPLACE, r.key, None if delete else shape, proto))
    enc = object.__new__(BulkNetlink)  # the encoder only: no socket
    enc._seq = first
    batch = enc.encode(ops, {"eth0": 7})
    assert batch.errors == [] and batch.ops == ops and batch.first_seq == first
    expected = [encode_route(RTM_DELROUTE if op is Op.DELETE else RTM_NEWROUTE,
                             NLM_F_REQUEST if op is Op.DELETE else NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE,
                             first + i, key, shape, 7, proto) for i, (op, key, shape, proto) in enumerate(ops)]
    last = bytearray(expected[-1])
    last[6:8] = (int.from_bytes(last[6:8], "little") | NLM_F_ACK).to_bytes(2, "little")
    expected[-1] = bytes(last)
    assert batch.data == b"".join(expected)


def test_batch_encoder_refuses_unknown_devices_and_mixed_families() -> None:
    from felixd.kernel.netlink_bulk import BulkNetlink

    enc = object.__new__(BulkNetlink)
    enc._seq = 1
    good = route("10.0.0.0/24", gateway="10.1.1.1", dev="eth0")
    nodev = route("10.0.1.0/24", gateway="10.1.1.1", dev="nope")
    mixed = route("fd00::/64", gateway="10.1.1.1", dev="eth0")
    batch = enc.encode([(Op.REPLACE, r.key, r.shape, 80) for r in (nodev, good, mixed)], {"eth0": 7})
    assert [(e.dst, e.errno) for e in batch.errors] == [("10.0.1.0/24", 19), ("fd00::/64", 22)]
    assert [op[1] for op in batch.ops] == [good.key]


def test_a_resync_reads_the_kernel_again_only_when_routes_are_missing() -> None:
    """No per-route set is kept while comparing: the missing routes are found by a second dump, and
    only when the first one found fewer desired routes than there are."""
    dumps: list[int] = []

    def again() -> list[KernelRoute]:
        dumps.append(1)
        return [kr(DIRECT)]

    unchanged = diff_routes(route_map(DIRECT), [kr(DIRECT)], 80, RouteDiff(), again=again)
    assert unchanged.ops == [] and dumps == []
    missing = diff_routes(route_map(DIRECT, HOLE), [kr(DIRECT)], 80, RouteDiff(), again=again)
    assert summary(missing) == [(Op.REPLACE, HOLE.dst, 80)] and dumps == [1]
