"""BGPFilter rules and prefix advertisements in bgpd's policy: each condition and operation, the order
rules and filters are tried in, import (with the reason a route was rejected) and export (with the
default policy a rule bypasses), against Calico's confd and BIRD 1.6 semantics (bgpd/filters.py)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bgpd.advertise import Advertisement, ClusterRoutes, taggers
from bgpd.export_policy import ExportPolicy, ExportTarget
from bgpd.filters import EXPORT, IMPORT, Rule, RuleChain, compile_chain, peer_chains
from bgpd.identity import Identity
from bgpd.import_policy import ImportOptions
from bgpd.pool_set import PoolSet
from bgpd.rib.path import PeerInfo, path
from bgpd.rib.rib import Rib
from bgpd.route_match import (
    BIRD_INT_MAX,
    CidrMatch,
    add_communities,
    as_path_starts_with,
    interface_matches,
    prepend_path,
)
from proto import prefix as pf
from proto.bgp.constants import IPV4_UNICAST, IPV6_UNICAST, Origin, SegmentType
from proto.bgp.model import AsPathSegment, MpReach, PathAttributes, Update
from proto.resources import BGPFilter, load_resources
from proto.resources.values import parse_community

AS = 64512
V4, V6 = IPV4_UNICAST, IPV6_UNICAST
SEQ, SET = SegmentType.AS_SEQUENCE, SegmentType.AS_SET
ME = Identity(AS, "10.0.0.1", addresses=frozenset({"10.0.0.1", "fd00::1"}))
POOLS = {V4: PoolSet(["192.168.0.0/16"], V4), V6: PoolSet(["fd00:10::/48"], V6)}
HOPS = {V4: ("10.0.0.1",), V6: ("fd00::1",)}


def pfx(text: str) -> bytes:
    return pf.parse(text)


def flt(spec: str, name: str = "f") -> BGPFilter:
    text = f"apiVersion: projectcalico.org/v3\nkind: BGPFilter\nmetadata: {{name: {name}}}\nspec:\n{spec}"
    (res,) = load_resources(text).resources
    assert isinstance(res, BGPFilter)
    return res


def peer(name: str, address: str, asn: int = AS, filters: tuple[BGPFilter, ...] = (), **kw: object) -> PeerInfo:
    return PeerInfo(name, address, asn, AS, address, next_hop_self=dict(HOPS),
                    export_filters=peer_chains(filters, EXPORT, asn != AS), **kw)  # type: ignore[arg-type]


def attrs(*asns: int, **kw: object) -> PathAttributes:
    base: dict[str, object] = {"origin": Origin.IGP, "as_path": (AsPathSegment(SEQ, asns),) if asns else (),
                               "next_hop": "10.0.0.254"}
    base.update(kw)
    return PathAttributes(**base)  # type: ignore[arg-type]


def community(text: str) -> int:
    a, b = text.split(":")
    return int(a) << 16 | int(b)


# ---------------------------------------------------------------- the pieces


@pytest.mark.parametrize(("operator", "length", "prefix", "hit"), [
    ("In", None, "10.1.2.0/24", True),
    ("In", None, "10.0.0.0/8", True),  # the CIDR itself is inside (BIRD `net ~ N`)
    ("In", None, "11.0.0.0/24", False),
    ("In", None, "0.0.0.0/0", False),  # shorter than the CIDR
    ("NotIn", None, "10.1.2.0/24", False),
    ("NotIn", None, "11.0.0.0/24", True),
    ("Equal", None, "10.0.0.0/8", True),
    ("Equal", None, "10.0.0.0/9", False),
    ("NotEqual", None, "10.0.0.0/8", False),
    ("NotEqual", None, "10.1.0.0/16", True),
    ("In", (16, 24), "10.1.2.0/24", True),
    ("In", (16, 24), "10.1.2.0/25", False),
    ("In", (16, 24), "10.0.0.0/8", False),
    ("In", (4, 12), "10.0.0.0/8", True),  # min is raised to the CIDR's own length (confd's clamping)
    ("In", (None, 20), "10.16.0.0/12", True),
    ("NotIn", (16, 24), "10.1.2.0/25", True),
    ("NotIn", (16, 24), "10.1.2.0/24", False),
    # BIRD 1.6 compares a prefix with a prefix set: never equal (checked with its `eval`)
    ("Equal", (16, 24), "10.1.2.0/24", False),
    ("NotEqual", (16, 24), "10.1.2.0/24", True),
    ("In", (28, 24), "10.1.2.0/26", False),  # an empty range matches nothing
])
def test_cidr_operators_as_bird_evaluates_them(operator: str, length: tuple[int | None, int | None] | None,
                                               prefix: str, hit: bool) -> None:
    assert CidrMatch.of(pfx("10.0.0.0/8"), operator, length)(pfx(prefix)) is hit


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 32), st.integers(0, 2**32 - 1), st.integers(0, 32),
       st.integers(0, 32), st.integers(0, 32))
def test_cidr_in_agrees_with_ipaddress(a: int, alen: int, b: int, blen: int, lo: int, hi: int) -> None:
    net = ipaddress.ip_network((a, alen), strict=False)
    route = ipaddress.ip_network((b, blen), strict=False)
    inside = route.prefixlen >= net.prefixlen and route.subnet_of(net)
    assert CidrMatch.of(pf.from_network(net), "In")(pf.from_network(route)) is inside
    lo2, hi2 = max(net.prefixlen, lo), hi
    want = inside and lo2 <= route.prefixlen <= hi2
    assert CidrMatch.of(pf.from_network(net), "In", (lo, hi))(pf.from_network(route)) is want


OPERATORS = ("Equal", "NotEqual", "In", "NotIn")
CIDR_RULE = st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32), st.sampled_from(OPERATORS),
                      st.none() | st.tuples(st.none() | st.integers(0, 32), st.none() | st.integers(0, 32)),
                      st.booleans())


@settings(max_examples=200, deadline=None)
@given(st.lists(CIDR_RULE, min_size=1, max_size=8), st.lists(st.tuples(st.integers(0, 2**32 - 1),
                                                                      st.integers(0, 32)), min_size=1, max_size=20))
def test_compiled_prefix_class_agrees_with_each_rule(rules: list[tuple[int, int, str, object, bool]],
                                                     prefixes: list[tuple[int, int]]) -> None:
    """The chain's compiled per-prefix test gives the bits the rules' CIDR conditions give one by one."""
    built = []
    for i, (a, alen, op, length, has_cidr) in enumerate(rules):
        net = pf.from_network(ipaddress.ip_network((a, alen), strict=False))
        cidr = CidrMatch.of(net, op, length) if has_cidr else None  # type: ignore[arg-type]
        built.append(Rule(where=f"rule {i + 1}", accept=True, cidr=cidr))
    chain = RuleChain.of(built)
    for b, blen in prefixes:
        p = pf.from_network(ipaddress.ip_network((b, blen), strict=False))
        want = sum(1 << i for i, r in enumerate(built) if r.cidr is None or r.cidr(p))
        assert chain.prefix_class(p) == want


def test_ipv6_cidr_and_family_mismatch() -> None:
    m = CidrMatch.of(pfx("fd00:10::/48"), "In", (48, 64))
    assert m(pfx("fd00:10:0:1::/64")) and not m(pfx("fd00:10:0:1::/122")) and not m(pfx("10.0.0.0/8"))


@pytest.mark.parametrize(("path_segments", "prefix", "hit"), [
    (((SEQ, (65000, 65001, 7)),), (65000,), True),
    (((SEQ, (65000, 65001, 7)),), (65000, 65001), True),
    (((SEQ, (65000, 65001, 7)),), (65001,), False),
    (((SEQ, (65000,)),), (65000, 65001), False),  # shorter than the prefix
    (((SEQ, (65000,)), (SEQ, (65001,))), (65000, 65001), True),  # across segments
    (((SET, (65001, 65000)),), (65000,), True),  # an AS_SET is one position
    (((SET, (65001, 65000)), (SEQ, (9,))), (65000, 65001), False),
    ((), (65000,), False),
])
def test_as_path_prefix(path_segments: tuple[tuple[int, tuple[int, ...]], ...], prefix: tuple[int, ...],
                        hit: bool) -> None:
    segs = tuple(AsPathSegment(t, a) for t, a in path_segments)
    assert as_path_starts_with(segs, prefix) is hit


def test_interface_patterns() -> None:
    assert interface_matches("eth0", "eth0") and not interface_matches("eth0", "eth1")
    assert interface_matches("eth*", "eth1") and interface_matches("*.calico", "vxlan.calico")
    assert interface_matches("*", None) and not interface_matches("eth*", None)  # no interface: ""


def test_operations_pieces() -> None:
    a = attrs(65001, communities=(community("65000:9"),))
    b = add_communities(a, [community("65000:1"), community("65000:9")], [(1, 2, 3)])
    assert b.communities == (community("65000:1"), community("65000:9")) and b.large_communities == ((1, 2, 3),)
    assert add_communities(b, [community("65000:1")]) is b  # nothing new: the same set
    assert prepend_path(a.as_path, (1, 2)) == (AsPathSegment(SEQ, (1, 2, 65001)),)
    assert prepend_path((AsPathSegment(SET, (5, 6)),), (1,)) == (AsPathSegment(SEQ, (1,)), AsPathSegment(SET, (5, 6)))


# ---------------------------------------------------------------- rules and chains

ALL_CONDITIONS = """\
  importV4:
    - {cidr: 192.168.0.0/16, matchOperator: In, prefixLength: {min: 24, max: 28}, peerType: iBGP,
       communities: {values: ['65000:100']}, asPathPrefix: [65000], priority: 512, interface: eth0,
       action: Accept,
       operations: [{setPriority: {value: 256}}, {addCommunity: {value: '65000:200'}},
                    {prependASPath: {prefix: [65001, 65002]}}]}
    - {cidr: 192.168.0.0/16, matchOperator: In, peerType: eBGP, communities: {values: ['65000:100:999']},
       asPathPrefix: [65000, 65001], action: Accept, operations: [{setPriority: {value: 1024}}]}
    - action: Reject
"""


def test_peer_type_rules_compile_per_peer() -> None:
    f = flt(ALL_CONDITIONS)
    ibgp = compile_chain([f], IMPORT, 4, ebgp=False)
    ebgp = compile_chain([f], IMPORT, 4, ebgp=True)
    assert ibgp is not None and ebgp is not None
    assert [r.where for r in ibgp.rules] == ["BGPFilter f importV4 rule 1", "BGPFilter f importV4 rule 3"]
    assert [r.where for r in ebgp.rules] == ["BGPFilter f importV4 rule 2", "BGPFilter f importV4 rule 3"]
    assert compile_chain([f], EXPORT, 4, ebgp=True) is None and compile_chain([f], IMPORT, 6, ebgp=True) is None
    assert ibgp.uses_interface and not ebgp.uses_interface


def test_every_condition_must_hold_and_operations_apply_in_order() -> None:
    chain = compile_chain([flt(ALL_CONDITIONS)], IMPORT, 4, ebgp=False)
    assert chain is not None
    route = attrs(65000, 7, communities=(community("65000:100"),), local_pref=BIRD_INT_MAX - 512)
    cls = chain.prefix_class(pfx("192.168.1.0/24"))
    v = chain.decide(cls, route, BIRD_INT_MAX - 512, True, "eth0")
    assert v is not None and v.accepted and v.rule.where.endswith("rule 1")
    assert v.attrs is not None
    assert v.attrs.local_pref == BIRD_INT_MAX - 256
    assert v.attrs.communities == (community("65000:100"), community("65000:200"))
    assert v.attrs.as_path == (AsPathSegment(SEQ, (65001, 65002, 65000, 7)),)
    assert v.reason == ("accepted by BGPFilter f importV4 rule 1 (priority 256, add community 65000:200, "
                        "prepend 65001 65002)")
    # each condition failing on its own falls through to the unconditional Reject
    misses = [
        (pfx("192.168.1.0/29"), route, BIRD_INT_MAX - 512, "eth0"),  # length out of range
        (pfx("192.168.1.0/24"), attrs(65000, local_pref=BIRD_INT_MAX - 512), BIRD_INT_MAX - 512, "eth0"),
        (pfx("192.168.1.0/24"), route, BIRD_INT_MAX - 513, "eth0"),  # priority
        (pfx("192.168.1.0/24"), route, BIRD_INT_MAX - 512, "eth1"),  # interface
        (pfx("192.168.1.0/24"), attrs(65001, communities=(community("65000:100"),)), BIRD_INT_MAX - 512, "eth0"),
    ]
    for prefix, a, lp, iface in misses:
        v = chain.decide(chain.prefix_class(prefix), a, lp, True, iface)
        assert v is not None and not v.accepted and v.rule.where.endswith("rule 3"), (prefix, a, lp, iface)
        assert v.reason == "rejected by BGPFilter f importV4 rule 3"


def test_large_community_match_and_source() -> None:
    chain = compile_chain([flt(ALL_CONDITIONS)], IMPORT, 4, ebgp=True)
    assert chain is not None
    ok = attrs(65000, 65001, large_communities=((65000, 100, 999),))
    v = chain.decide(chain.prefix_class(pfx("192.168.0.0/16")), ok, 100, True)
    assert v is not None and v.attrs is not None and v.attrs.local_pref == BIRD_INT_MAX - 1024
    src = compile_chain([flt("  exportV4: [{source: RemotePeers, action: Reject}]")], EXPORT, 4, ebgp=True)
    assert src is not None
    assert src.decide(1, attrs(), 100, remote=True) is not None
    assert src.decide(1, attrs(), 100, remote=False) is None  # our own route: not from a peer


def test_filters_are_tried_in_the_order_the_peer_names_them() -> None:
    first = flt("  importV4: [{cidr: 192.168.1.0/24, matchOperator: Equal, action: Reject}]", "first")
    second = flt("  importV4: [{cidr: 192.168.0.0/16, matchOperator: In, action: Accept}]", "second")
    for order, winner in (((first, second), "first"), ((second, first), "second")):
        chain = compile_chain(order, IMPORT, 4, ebgp=True)
        assert chain is not None
        v = chain.decide(chain.prefix_class(pfx("192.168.1.0/24")), attrs(), 100, True)
        assert v is not None and v.rule.where.startswith(f"BGPFilter {winner} ")
    chain = compile_chain((first, second), IMPORT, 4, ebgp=True)
    assert chain is not None and chain.decide(chain.prefix_class(pfx("10.0.0.0/8")), attrs(), 100, True) is None


# ---------------------------------------------------------------- import through the RIB

TOR = PeerInfo("tor", "10.0.0.254", 65001, AS, "10.0.0.254")
IMPORT_FILTER = flt("""\
  importV4:
    - {cidr: 192.168.9.0/24, matchOperator: Equal, action: Reject}
    - {cidr: 0.0.0.0/0, matchOperator: Equal, action: Accept, operations: [{addCommunity: {value: '65000:7'}}]}
    - {cidr: 192.168.0.0/16, matchOperator: In, prefixLength: {min: 26}, action: Accept,
       operations: [{setPriority: {value: 100}}, {prependASPath: {prefix: [65099]}}]}
""", "tor-in")


def make_rib() -> Rib:
    rib = Rib(ME, POOLS)
    rib.add_peer(TOR, ImportOptions(filters=peer_chains([IMPORT_FILTER], IMPORT, True)))
    return rib


def test_import_rejects_by_rule_and_keeps_the_reason() -> None:
    rib = make_rib()
    nlri = [pfx("192.168.9.0/24"), pfx("0.0.0.0/0"), pfx("192.168.1.0/26"), pfx("192.168.2.0/24"),
            pfx("172.16.0.0/24")]
    rib.receive_update(TOR, Update(attributes=attrs(65001), nlri=nlri))
    best = rib.loc[V4].best
    # rejected by rule 1; the default route accepted outside the pools by rule 2; /26 by rule 3; the
    # /24 inside the pool by the default (no rule); 172.16/24 by the default (outside the pools)
    assert set(best) == {pfx("0.0.0.0/0"), pfx("192.168.1.0/26"), pfx("192.168.2.0/24")}
    assert best[pfx("0.0.0.0/0")].attrs.communities == (community("65000:7"),)
    block = best[pfx("192.168.1.0/26")]
    assert block.local_pref == BIRD_INT_MAX - 100 and block.attrs.as_path == (AsPathSegment(SEQ, (65099, 65001)),)
    assert best[pfx("192.168.2.0/24")].attrs.as_path == (AsPathSegment(SEQ, (65001,)),)
    rib_in = rib.adj_rib_in(TOR, V4)
    filtered = {pf.text(k): reason for k, _p, reason in rib_in.iter_filtered()}
    assert filtered == {"192.168.9.0/24": "rejected by BGPFilter tor-in importV4 rule 1",
                        "172.16.0.0/24": "outside-pools"}
    assert rib.peers[TOR].policy.rejected == {"bgp-filter": 1, "outside-pools": 1}
    # the peer withdraws the rejected one: forgotten; it re-sends an accepted one: out of `filtered`
    rib.receive_update(TOR, Update(withdrawn=[pfx("192.168.9.0/24")]))
    assert {pf.text(k) for k, _p, _r in rib_in.iter_filtered()} == {"172.16.0.0/24"}


def test_a_route_a_rule_now_rejects_replaces_the_accepted_one() -> None:
    rib = make_rib()
    block = pfx("192.168.9.0/25")
    rib.receive_update(TOR, Update(attributes=attrs(65001), nlri=[block]))
    assert block in rib.loc[V4].best
    rib.receive_update(TOR, Update(attributes=attrs(65001), nlri=[pfx("192.168.9.0/24")]))
    result = rib.receive_update(TOR, Update(attributes=attrs(65001, med=5), nlri=[block]))
    assert block in rib.loc[V4].best and not result.error  # still accepted (rule 3, /25)


def test_import_decisions_are_made_once_per_attribute_set_and_class() -> None:
    rib = make_rib()
    policy = rib.peers[TOR].policy
    nlri = [pf.make(4, 26, bytes((192, 168, i, j * 64))) for i in range(10, 60) for j in range(4)]
    rib.receive_update(TOR, Update(attributes=attrs(65001), nlri=nlri))
    assert len(rib.loc[V4]) == 200
    assert len(policy._decided) == 1  # 200 prefixes, one class, one decision


def test_ipv6_import_rules() -> None:
    f6 = flt("  importV6: [{cidr: 'fd00:10:0:9::/64', matchOperator: In, action: Reject}]")
    rib = Rib(ME, POOLS)
    rib.add_peer(TOR, ImportOptions(filters=peer_chains([f6], IMPORT, True)))
    update = Update(attributes=attrs(65001, next_hop=None), mp_reach=MpReach(
        2, 1, ("fd00::254",), [pfx("fd00:10:0:9::/122"), pfx("fd00:10:0:1::/122")]))
    rib.receive_update(TOR, update)
    assert set(rib.loc[V6].best) == {pfx("fd00:10:0:1::/122")}


def test_interface_rule_asks_the_resolver_once_per_next_hop() -> None:
    f = flt("  importV4: [{interface: 'eth1', action: Reject}]")
    rib = Rib(ME, POOLS)
    state = rib.add_peer(TOR, ImportOptions(filters=peer_chains([f], IMPORT, True)))
    asked: list[str] = []

    def resolve(address: str) -> str | None:
        asked.append(address)
        return {"10.0.0.254": "eth0", "10.0.1.254": "eth1"}.get(address)

    state.policy.interface_of = resolve
    rib.receive_update(TOR, Update(attributes=attrs(65001), nlri=[pfx("192.168.1.0/26"), pfx("192.168.2.0/26")]))
    rib.receive_update(TOR, Update(attributes=attrs(65001, next_hop="10.0.1.254"), nlri=[pfx("192.168.3.0/26")]))
    assert set(rib.loc[V4].best) == {pfx("192.168.1.0/26"), pfx("192.168.2.0/26")}
    assert asked == ["10.0.0.254", "10.0.1.254"]


# ---------------------------------------------------------------- export

LOCAL = PeerInfo.local_source(AS, "10.0.0.1")
OWN = path(LOCAL, PathAttributes(origin=Origin.IGP, as_path=(), local_pref=100), ())
NODE_B = PeerInfo("b", "10.0.0.2", AS, AS, "10.0.0.2", node="b")
LEARNED = path(NODE_B, PathAttributes(origin=Origin.IGP, as_path=(), local_pref=100, next_hop="10.0.0.2"),
               ("10.0.0.2",))
FROM_TOR = path(TOR, attrs(65001), ("10.0.0.254",))
EXPORT_RULES = """\
  exportV4:
    - {cidr: 192.168.5.0/26, matchOperator: Equal, action: Reject}
    - {cidr: 192.168.6.0/26, matchOperator: Equal, action: Accept,
       operations: [{prependASPath: {prefix: [64512, 64512]}}, {addCommunity: {value: '65000:1:2'}}]}
    - {cidr: 0.0.0.0/0, matchOperator: Equal, source: RemotePeers, action: Accept}
    - {priority: 1024, cidr: 192.168.7.0/26, matchOperator: Equal, action: Accept,
       operations: [{setPriority: {value: 10}}]}
"""
EXPORT_FILTER = flt(EXPORT_RULES, "tor-out")


def test_export_rules_reject_accept_and_operate() -> None:
    policy = ExportPolicy(ME, POOLS)
    tor2 = peer("tor2", "10.0.0.253", asn=65002, filters=(EXPORT_FILTER,))
    export = policy.exporter(ExportTarget.of(tor2), V4)
    assert export(pfx("192.168.5.0/26"), OWN) is None  # rule 1
    a = export(pfx("192.168.6.0/26"), OWN)  # rule 2: prepended after our own AS, large community added
    assert a is not None and a.attrs.as_path == (AsPathSegment(SEQ, (AS, AS, AS)),)
    assert a.attrs.large_communities == ((65000, 1, 2),) and a.next_hop == ("10.0.0.1",)
    assert export(pfx("192.168.8.0/26"), OWN) is not None  # no rule: the default exports our blocks
    # a learned default route is outside every pool: only the rule lets it out
    assert export(pfx("0.0.0.0/0"), FROM_TOR) is not None
    plain = policy.exporter(ExportTarget.of(peer("tor3", "10.0.0.252", asn=65003)), V4)
    assert plain(pfx("0.0.0.0/0"), FROM_TOR) is None
    # priority of our own routes is the normal route priority (1024): rule 4 matches them
    ib = peer("rr", "10.0.0.9", filters=(EXPORT_FILTER,))
    got = policy.exporter(ExportTarget.of(ib), V4)(pfx("192.168.7.0/26"), OWN)
    assert got is not None and got.attrs.local_pref == BIRD_INT_MAX - 10  # sent to iBGP
    got = export(pfx("192.168.7.0/26"), OWN)
    assert got is not None and got.attrs.local_pref is None  # never to eBGP


def test_export_reasons_for_the_operator() -> None:
    policy = ExportPolicy(ME, POOLS)
    target = ExportTarget.of(peer("tor2", "10.0.0.253", asn=65002, filters=(EXPORT_FILTER,)))
    assert policy.decide(pfx("192.168.5.0/26"), OWN, target, V4) == (None, "rejected by BGPFilter tor-out exportV4 rule 1")
    a, why = policy.decide(pfx("192.168.6.0/26"), OWN, target, V4)
    assert a is not None and why == ("accepted by BGPFilter tor-out exportV4 rule 2 (prepend 64512 64512, add "
                                     "community 65000:1:2)")
    assert policy.decide(pfx("172.16.0.0/24"), FROM_TOR, target, V4)[0] is None
    assert policy.decide(pfx("192.168.8.0/26"), OWN, target, V4) == (policy.advert_for(OWN, target, V4), "")


def test_bgp_rules_come_before_the_filters() -> None:
    """An Accept rule cannot send a route back to its peer or break the mesh rule."""
    policy = ExportPolicy(ME, POOLS)
    accept_all = flt("  exportV4: [{action: Accept}]")
    mesh = peer("m", "10.0.0.3", filters=(accept_all,), mesh=True)
    assert policy.exporter(ExportTarget.of(mesh), V4)(pfx("192.168.3.0/26"), LEARNED) is None
    ibgp = peer("i", "10.0.0.4", filters=(accept_all,))
    assert policy.exporter(ExportTarget.of(ibgp), V4)(pfx("192.168.3.0/26"), LEARNED) is None  # no reflection


def test_prefix_advertisements_on_the_default_export_only() -> None:
    ads = (Advertisement(ipaddress.ip_network("192.168.0.0/16"), (parse_community("65000:100"),)),
           Advertisement(ipaddress.ip_network("192.168.6.0/24"), (parse_community("65000:100:7"),
                                                                   parse_community("65000:200"))))
    policy = ExportPolicy(ME, POOLS, ClusterRoutes(advertisements=ads), taggers(ads))
    mesh = ExportTarget.of(peer("m", "10.0.0.3", mesh=True))
    a = policy.exporter(mesh, V4)(pfx("192.168.6.0/26"), OWN)
    assert a is not None and a.attrs.communities == (community("65000:100"), community("65000:200"))
    assert a.attrs.large_communities == ((65000, 100, 7),)
    b = policy.exporter(mesh, V4)(pfx("192.168.1.0/26"), OWN)
    assert b is not None and b.attrs.communities == (community("65000:100"),) and not b.attrs.large_communities
    # a route an export rule accepts leaves before Calico's apply_communities(): no communities
    tor2 = ExportTarget.of(peer("tor2", "10.0.0.253", asn=65002, filters=(EXPORT_FILTER,)))
    c = policy.exporter(tor2, V4)(pfx("192.168.6.0/26"), OWN)
    assert c is not None and c.attrs.communities is None and c.attrs.large_communities == ((65000, 1, 2),)
    # learned routes passed on get them too (a reflector's clients, a ToR)
    d = policy.exporter(tor2, V4)(pfx("192.168.1.0/26"), FROM_TOR)
    assert d is not None and d.attrs.communities == (community("65000:100"),)


def test_learned_routes_leave_only_inside_pools_with_bgp_export() -> None:
    export_pools = {V4: PoolSet(["192.168.0.0/17"], V4), V6: PoolSet([], V6)}  # 192.168.128/17: disableBGPExport
    policy = ExportPolicy(ME, export_pools)
    rr_client = ExportTarget.of(peer("c", "10.0.0.5", rr_client=True))
    tor2 = ExportTarget.of(peer("tor2", "10.0.0.253", asn=65002))
    for target in (rr_client, tor2):
        assert policy.exporter(target, V4)(pfx("192.168.1.0/26"), FROM_TOR) is not None
        assert policy.exporter(target, V4)(pfx("192.168.200.0/26"), FROM_TOR) is None


@pytest.mark.parametrize(("mode", "keep"), [("", False), ("Self", False), ("Keep", False), ("", True)])
def test_next_hop_modes(mode: str, keep: bool) -> None:
    rr = Identity(AS, "10.0.0.1", cluster_id="1.1.1.1", addresses=ME.addresses)
    policy = ExportPolicy(rr, POOLS)
    client = ExportTarget.of(peer("c", "10.0.0.5", rr_client=True, next_hop_mode=mode))
    tor2 = ExportTarget.of(peer("tor2", "10.0.0.253", asn=65002, next_hop_mode=mode, keep_next_hop=keep))
    from_client = path(peer("c2", "10.0.0.6", rr_client=True), PathAttributes(
        origin=Origin.IGP, as_path=(), local_pref=100, next_hop="10.0.0.6"), ("10.0.0.6",))
    reflected = policy.advert_for(from_client, client, V4)
    ebgp_learned = policy.advert_for(FROM_TOR, client, V4)
    to_tor = policy.advert_for(from_client, tor2, V4)
    own = policy.advert_for(OWN, tor2, V4)
    assert reflected is not None and ebgp_learned is not None and to_tor is not None and own is not None
    self_hop, ours = ("10.0.0.1",), ("10.0.0.1",)
    assert reflected.next_hop == (self_hop if mode == "Self" else ("10.0.0.6",))
    assert ebgp_learned.next_hop == (self_hop if mode == "Self" else ("10.0.0.254",))
    assert to_tor.next_hop == (("10.0.0.6",) if mode == "Keep" or keep else self_hop)
    assert own.next_hop == ours  # our own routes have no other next hop: self, whatever the mode
    assert reflected.attrs.next_hop == reflected.next_hop[0]


def test_self_mode_ibgp_peers_do_not_share_a_group_with_others() -> None:
    a = ExportTarget.of(peer("a", "10.0.0.5", next_hop_mode="Self"))
    b = ExportTarget.of(peer("b", "10.0.0.6"))
    f1 = ExportTarget.of(peer("c", "10.0.0.7", filters=(EXPORT_FILTER,)))
    f2 = ExportTarget.of(peer("d", "10.0.0.8", filters=(flt(EXPORT_RULES, "tor-out"),)))
    assert a != b and b != f1
    assert f1.filters == f2.filters  # the same rules (a second copy of the filter): one group
