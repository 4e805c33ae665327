"""Import and export policy: the export set, the mesh rule, eBGP rewriting, import rejects, limits."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bgpd.export_policy import ExportPolicy, ExportTarget, prepend_as
from bgpd.identity import Identity
from bgpd.import_policy import ImportOptions, martian_next_hop
from bgpd.pool_set import PoolSet
from bgpd.rib.path import PeerInfo, path
from bgpd.rib.rib import Rib
from proto.bgp.constants import IPV4_UNICAST, IPV6_UNICAST, CeaseSubcode, ErrorCode, Origin, SegmentType
from proto.bgp.model import AsPathSegment, MpReach, PathAttributes, Update
from proto.bgp.prefix import network_from_prefix, prefix_from_network

AS = 64512
V4, V6 = IPV4_UNICAST, IPV6_UNICAST
ME = Identity(AS, "10.0.0.1", addresses=frozenset({"10.0.0.1", "fd00::1"}))
POOLS = {
    V4: PoolSet(["192.168.0.0/16", "10.244.128.0/18"], V4),
    V6: PoolSet(["fd00:10::/48"], V6),
}
SEQ = SegmentType.AS_SEQUENCE


def pfx(text: str) -> bytes:
    return prefix_from_network(text)


def peer(name: str, address: str, asn: int = AS, **kw: object) -> PeerInfo:
    hops = {V4: ("10.0.0.1",), V6: ("fd00::1",)}
    return PeerInfo(
        name, address, asn, AS, address if "." in address else "10.9.9.9", next_hop_self=hops, **kw
    )  # type: ignore[arg-type]


MESH_A = peer("node-a", "10.0.0.2", mesh=True)
MESH_B = peer("node-b", "10.0.0.3", mesh=True)
TOR = peer("tor", "10.0.0.254", asn=65001)
TOR2 = peer("tor2", "10.0.0.253", asn=65002)


def ebgp_attrs(**kw: object) -> PathAttributes:
    base: dict[str, object] = {
        "origin": Origin.IGP,
        "as_path": (AsPathSegment(SEQ, (65001,)),),
        "next_hop": "10.0.0.254",
    }
    base.update(kw)
    return PathAttributes(**base)  # type: ignore[arg-type]


# ---------------------------------------------------------------- pools


@pytest.mark.parametrize(
    ("prefix", "inside"),
    [
        ("192.168.1.0/26", True),
        ("192.168.0.0/16", True),
        ("192.168.1.7/32", True),
        ("192.0.0.0/8", False),  # shorter than the pool
        ("10.244.128.0/26", True),
        ("10.244.191.192/26", True),  # last block of the /18
        ("10.244.192.0/26", False),  # just past it
        ("10.244.64.0/26", False),
        ("172.16.0.0/26", False),
    ],
)
def test_pool_cover(prefix: str, inside: bool) -> None:
    assert POOLS[V4].covers(pfx(prefix)) is inside


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 32))
def test_pool_cover_agrees_with_ipaddress(address: int, length: int) -> None:
    import ipaddress

    net = ipaddress.ip_network((address, length), strict=False)
    expected = any(net.subnet_of(p) for p in POOLS[V4].networks)  # type: ignore[arg-type]
    assert POOLS[V4].covers(prefix_from_network(net)) is expected


# ---------------------------------------------------------------- export


def test_export_set_is_the_originated_blocks() -> None:
    rib = Rib(ME, POOLS)
    blocks = [pfx("192.168.10.0/26"), pfx("192.168.10.64/26")]
    changes = rib.originate(V4, blocks)
    assert sorted(p for p, _ in changes) == sorted(blocks)
    export = ExportPolicy(ME, POOLS).exporter(ExportTarget.of(MESH_A), V4)
    for block in blocks:
        best = rib.loc[V4].get(block)
        assert best is not None and best.source.local
        out = export(block, best)
        assert out is not None
        assert out.next_hop == ("10.0.0.1",) and out.attrs.next_hop == "10.0.0.1"
        assert out.attrs.as_path == () and out.attrs.local_pref == 100 and out.attrs.origin == Origin.IGP
    # a block no longer exported is withdrawn, a new one announced
    changes = rib.originate(V4, [blocks[1], pfx("192.168.10.128/26")])
    assert dict(changes) == {
        blocks[0]: None,
        pfx("192.168.10.128/26"): rib.loc[V4].get(pfx("192.168.10.128/26")),
    }


def test_nothing_learned_goes_to_mesh_peers() -> None:
    rib = Rib(ME, POOLS)
    for p in (MESH_A, MESH_B, TOR):
        rib.add_peer(p)
    from_mesh, from_tor = pfx("192.168.1.0/26"), pfx("192.168.2.0/26")
    rib.receive_update(
        MESH_A, Update(attributes=PathAttributes(origin=0, as_path=(), next_hop="10.0.0.2"), nlri=[from_mesh])
    )
    rib.receive_update(TOR, Update(attributes=ebgp_attrs(), nlri=[from_tor]))
    export = ExportPolicy(ME, POOLS)
    to_b = export.exporter(ExportTarget.of(MESH_B), V4)
    assert to_b(from_mesh, rib.loc[V4].best[from_mesh]) is None
    assert to_b(from_tor, rib.loc[V4].best[from_tor]) is None
    # the eBGP peer gets the mesh-learned block, with us as next hop; never its own route back
    to_tor = export.exporter(ExportTarget.of(TOR), V4)
    out = to_tor(from_mesh, rib.loc[V4].best[from_mesh])
    assert out is not None and out.next_hop == ("10.0.0.1",)
    # the peer it came from is excluded per peer (update groups do it per member)
    assert export.advert(rib.loc[V4].best[from_tor], TOR, V4) is None


def test_ebgp_learned_goes_to_non_mesh_ibgp_unchanged_next_hop() -> None:
    rr = peer("rr", "10.0.0.100")  # we are a client of this reflector: a non-mesh iBGP peer
    best = path(TOR, ebgp_attrs(local_pref=100, med=7), ("10.0.0.254",))
    out = ExportPolicy(ME, POOLS).advert(best, rr, V4)
    assert out is not None
    assert out.next_hop == ("10.0.0.254",)
    assert out.attrs.local_pref == 100 and out.attrs.med == 7  # MED may travel inside the AS
    assert out.attrs.as_path == (AsPathSegment(SEQ, (65001,)),)


def test_ebgp_rewriting() -> None:
    learned = path(
        MESH_A,
        PathAttributes(
            origin=Origin.IGP,
            as_path=(),
            next_hop="10.0.0.2",
            local_pref=300,
            med=20,
            originator_id="10.0.0.2",
            cluster_list=("1.1.1.1",),
        ),
        ("10.0.0.2",),
    )
    out = ExportPolicy(ME, POOLS).advert(learned, TOR, V4)
    assert out is not None
    assert out.attrs.as_path == (AsPathSegment(SEQ, (AS,)),)
    assert out.next_hop == ("10.0.0.1",) and out.attrs.next_hop == "10.0.0.1"
    assert out.attrs.local_pref is None
    assert out.attrs.med is None  # learned MED never leaves the AS
    assert out.attrs.originator_id is None and out.attrs.cluster_list is None


def test_ebgp_keep_original_next_hop_and_own_med() -> None:
    keep = peer("tor-keep", "10.0.0.250", asn=65001, keep_next_hop=True)
    learned = path(MESH_A, PathAttributes(origin=0, as_path=(), next_hop="10.0.0.2"), ("10.0.0.2",))
    out = ExportPolicy(ME, POOLS).advert(learned, keep, V4)
    assert out is not None and out.next_hop == ("10.0.0.2",)
    local = PeerInfo.local_source(AS, "10.0.0.1")
    own = path(local, PathAttributes(origin=0, as_path=(), local_pref=100, med=5), ())
    out = ExportPolicy(ME, POOLS).advert(own, keep, V4)
    assert out is not None
    assert out.next_hop == ("10.0.0.1",)  # our own routes have no other next hop
    assert out.attrs.med == 5  # our own MED may be sent


def test_ebgp_prepend_joins_the_first_sequence() -> None:
    assert prepend_as((AsPathSegment(SEQ, (65001, 65002)),), AS) == (AsPathSegment(SEQ, (AS, 65001, 65002)),)
    assert prepend_as((AsPathSegment(SegmentType.AS_SET, (1, 2)),), AS) == (
        AsPathSegment(SEQ, (AS,)),
        AsPathSegment(SegmentType.AS_SET, (1, 2)),
    )
    full = (AsPathSegment(SEQ, tuple(range(1, 256))),)
    assert prepend_as(full, AS)[0] == AsPathSegment(SEQ, (AS,))


def test_ebgp_export_only_inside_pools() -> None:
    outside = pfx("172.16.0.0/24")
    best = path(TOR, ebgp_attrs(local_pref=100), ("10.0.0.254",))
    export = ExportPolicy(ME, POOLS).exporter(ExportTarget.of(TOR2), V4)
    assert export(outside, best) is None
    assert export(pfx("192.168.3.0/26"), best) is not None


def test_ipv6_next_hop_self() -> None:
    local = PeerInfo.local_source(AS, "10.0.0.1")
    own = path(local, PathAttributes(origin=0, as_path=(), local_pref=100), ())
    out = ExportPolicy(ME, POOLS).advert(own, MESH_A, V6)
    assert out is not None and out.next_hop == ("fd00::1",) and out.attrs.next_hop is None


# ---------------------------------------------------------------- import


def make_rib(options: ImportOptions | None = None) -> Rib:
    rib = Rib(ME, POOLS)
    rib.add_peer(TOR, options)
    rib.add_peer(MESH_A, options)
    return rib


@pytest.mark.parametrize(
    ("source", "attrs", "reason"),
    [
        (TOR, ebgp_attrs(as_path=(AsPathSegment(SEQ, (65001, AS, 65003)),)), "as-path-loop"),
        (TOR, ebgp_attrs(next_hop="10.0.0.1"), "next-hop-is-ours"),
        (TOR, ebgp_attrs(next_hop="0.1.2.3"), "martian-next-hop"),
        (TOR, ebgp_attrs(next_hop="127.0.0.1"), "martian-next-hop"),
        (TOR, ebgp_attrs(next_hop="224.0.0.5"), "martian-next-hop"),
        (TOR, ebgp_attrs(next_hop="240.0.0.1"), "martian-next-hop"),
        (TOR, ebgp_attrs(next_hop="255.255.255.255"), "martian-next-hop"),
        (TOR, ebgp_attrs(next_hop=None), "missing-next-hop"),
        (
            MESH_A,
            PathAttributes(origin=0, as_path=(), next_hop="10.0.0.2", originator_id="10.0.0.1"),
            "originator-id-is-ours",
        ),
    ],
)
def test_import_rejects_with_reason(source: PeerInfo, attrs: PathAttributes, reason: str) -> None:
    rib = make_rib()
    blocks = [pfx("192.168.1.0/26"), pfx("192.168.1.64/26")]
    result = rib.receive_update(source, Update(attributes=attrs, nlri=blocks))
    assert result.changes == {} and len(rib.loc[V4]) == 0
    assert rib.peers[source].policy.rejected == {reason: 2}


def test_own_as_allowed_in_ibgp_as_path() -> None:
    rib = make_rib()
    attrs = PathAttributes(origin=0, as_path=(AsPathSegment(SEQ, (65001, AS)),), next_hop="10.0.0.2")
    rib.receive_update(MESH_A, Update(attributes=attrs, nlri=[pfx("192.168.1.0/26")]))
    assert len(rib.loc[V4]) == 1


@pytest.mark.parametrize(
    ("next_hops", "reason"),
    [
        (("fe80::1",), "martian-next-hop"),
        (("::1",), "martian-next-hop"),
        (("ff02::5",), "martian-next-hop"),
        (("fd00::1",), "next-hop-is-ours"),
        (("fd00::2", "fe80::2"), None),  # link-local as the second next hop is fine
    ],
)
def test_ipv6_next_hops(next_hops: tuple[str, ...], reason: str | None) -> None:
    assert martian_next_hop(next_hops) == (None if reason == "next-hop-is-ours" else reason)
    rib = make_rib()
    update = Update(
        attributes=ebgp_attrs(next_hop=None),
        mp_reach=MpReach(2, 1, next_hops, [pfx("fd00:10:0:1::/122")]),
    )
    rib.receive_update(TOR, update)
    if reason is None:
        best = rib.loc[V6].get(pfx("fd00:10:0:1::/122"))
        assert best is not None and best.next_hop == next_hops
    else:
        assert rib.peers[TOR].policy.rejected == {reason: 1}


def test_outside_pools_counted_and_opt_in() -> None:
    rib = make_rib()
    nlri = [pfx("192.168.1.0/26"), pfx("0.0.0.0/0"), pfx("172.16.0.0/24"), pfx("192.0.0.0/8")]
    rib.receive_update(TOR, Update(attributes=ebgp_attrs(), nlri=nlri))
    assert set(rib.loc[V4].best) == {pfx("192.168.1.0/26")}
    assert rib.peers[TOR].policy.rejected == {"outside-pools": 3}
    opted = make_rib(ImportOptions(accept_outside_pools=True))
    opted.receive_update(TOR, Update(attributes=ebgp_attrs(), nlri=nlri))
    assert len(opted.loc[V4]) == 4 and not opted.peers[TOR].policy.rejected


def test_rejected_reannouncement_withdraws_the_earlier_route() -> None:
    rib = make_rib()
    block = pfx("192.168.1.0/26")
    rib.receive_update(TOR, Update(attributes=ebgp_attrs(), nlri=[block]))
    assert block in rib.loc[V4].best
    result = rib.receive_update(TOR, Update(attributes=ebgp_attrs(next_hop="127.0.0.1"), nlri=[block]))
    assert result.changes == {V4: [(block, None)]}
    assert block not in rib.loc[V4].best


def test_ebgp_local_pref_ignored() -> None:
    rib = make_rib()
    rib.receive_update(
        TOR,
        Update(attributes=ebgp_attrs(local_pref=900, originator_id="1.1.1.1"), nlri=[pfx("192.168.1.0/26")]),
    )
    best = rib.loc[V4].best[pfx("192.168.1.0/26")]
    assert best.attrs.local_pref == 100 and best.attrs.originator_id is None


def test_max_prefixes_gives_cease_1() -> None:
    rib = make_rib(ImportOptions(max_prefixes=3))
    blocks = [pfx(f"192.168.{i}.0/26") for i in range(3)]
    result = rib.receive_update(TOR, Update(attributes=ebgp_attrs(), nlri=blocks))
    assert result.error is None
    # re-sending the same prefixes does not count twice
    assert rib.receive_update(TOR, Update(attributes=ebgp_attrs(med=1), nlri=blocks)).error is None
    result = rib.receive_update(TOR, Update(attributes=ebgp_attrs(), nlri=[pfx("192.168.9.0/26")]))
    error = result.error
    assert error is not None
    assert (error.code, error.subcode) == (ErrorCode.CEASE, CeaseSubcode.MAX_PREFIXES_REACHED)
    assert struct.unpack("!HBI", error.data) == (1, 1, 3)
    assert error.notification().code == ErrorCode.CEASE


def test_treat_as_withdraw() -> None:
    from proto.bgp.model import AttributeProblem

    rib = make_rib()
    block = pfx("192.168.1.0/26")
    rib.receive_update(TOR, Update(attributes=ebgp_attrs(), nlri=[block]))
    bad = Update(
        attributes=ebgp_attrs(), nlri=[block], problems=(AttributeProblem("treat-as-withdraw", 2, 11, "x"),)
    )
    assert rib.receive_update(TOR, bad).changes == {V4: [(block, None)]}


def test_end_of_rib_reported() -> None:
    rib = make_rib()
    assert rib.receive_update(TOR, Update()).end_of_rib == V4
    assert network_from_prefix(1, pfx("192.168.1.0/26")).prefixlen == 26


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32)), max_size=20),
    st.sampled_from(["192.168.0.0/16", "0.0.0.0/0", "10.244.128.0/18", "10.0.0.0/8,172.16.0.0/12"]),
    st.booleans(),
)
def test_pool_select_agrees_with_covers(nets: list[tuple[int, int]], pools: str, add_path: bool) -> None:
    import ipaddress

    pool = PoolSet(pools.split(","), V4)
    wire = [prefix_from_network(ipaddress.ip_network(n, strict=False)) for n in nets]
    if add_path:
        wire = [b"\0\0\0\1" + w for w in wire]
    assert pool.select(wire, 4 if add_path else 0) == [
        w for w in wire if pool.covers(w[4:] if add_path else w)
    ]


def test_unknown_attributes_passed_on_with_partial_bit() -> None:
    from proto.bgp.model import UnknownAttribute

    rr = peer("rr", "10.0.0.100")
    unknown = (UnknownAttribute(0xC0, 99, b"\x01\x02"), UnknownAttribute(0x80, 98, b"\x03"))
    best = path(TOR, ebgp_attrs(local_pref=100, unknown=unknown), ("10.0.0.254",))
    for target in (rr, TOR2):
        out = ExportPolicy(ME, POOLS).advert(best, target, V4)
        assert out is not None
        # optional transitive: kept, now Partial; optional non-transitive: not passed on
        assert out.attrs.unknown == (UnknownAttribute(0xE0, 99, b"\x01\x02"),)


# ---------------------------------------------------------------- per-peer local AS (BGPPeer localASNumber)


def test_export_prepends_the_sessions_local_as() -> None:
    """BIRD `local as`: towards a peer with its own local AS, that AS is the one prepended."""
    hops = {V4: ("10.0.0.1",), V6: ("fd00::1",)}
    tor = PeerInfo("tor-local", "10.0.0.240", 65001, 65100, "10.0.0.240", next_hop_self=hops)
    assert tor.ebgp
    local = PeerInfo.local_source(AS, "10.0.0.1")
    own = path(local, PathAttributes(origin=0, as_path=(), local_pref=100), ())
    out = ExportPolicy(ME, POOLS).advert(own, tor, V4)
    assert out is not None and out.attrs.as_path == (AsPathSegment(SEQ, (65100,)),)


def test_peer_in_our_own_as_through_a_local_as_is_ebgp() -> None:
    """A peer in the node's AS reached with a different localASNumber is an eBGP session."""
    info = PeerInfo("x", "10.0.0.241", AS, 65100, "10.0.0.241")
    assert info.ebgp


@pytest.mark.parametrize(("allowed", "path_asns", "loop"), [
    (0, (65001, 65100), True),
    (1, (65001, 65100), False),
    (1, (65001, 65100, 65100), True),
    (2, (65100, 65001, 65100), False),
    (0, (65001, AS), False),  # the node's AS is not this session's AS
])
def test_num_allowed_local_as_numbers(allowed: int, path_asns: tuple[int, ...], loop: bool) -> None:
    """BIRD `allow local as N`: this session's local AS may appear N times; N+1 is a loop."""
    tor = PeerInfo("tor-local", "10.0.0.240", 65001, 65100, "10.0.0.240",
                   next_hop_self={V4: ("10.0.0.1",)})
    rib = Rib(ME, POOLS)
    rib.add_peer(tor, ImportOptions(allow_local_as=allowed))
    attrs = ebgp_attrs(as_path=(AsPathSegment(SEQ, path_asns),))
    rib.receive_update(tor, Update(attributes=attrs, nlri=[pfx("192.168.1.0/26")]))
    assert (len(rib.loc[V4]) == 0) is loop
    assert rib.peers[tor].policy.rejected == ({"as-path-loop": 1} if loop else {})
