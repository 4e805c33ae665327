"""Route reflection (RFC 4456): who gets what, the attributes added, and loop rejection."""

from __future__ import annotations

import pytest

from bgpd.export_policy import ExportPolicy, ExportTarget
from bgpd.identity import Identity
from bgpd.pool_set import PoolSet
from bgpd.reflection import reflected_attributes, reflection_loop, reflects
from bgpd.rib.path import PeerInfo, path
from bgpd.rib.rib import Rib
from proto.bgp.constants import IPV4_UNICAST, Origin
from proto.bgp.model import PathAttributes, Update
from proto.bgp.prefix import prefix_from_network

AS = 64512
CLUSTER = "244.0.0.1"
RR = Identity(AS, "10.0.0.1", cluster_id=CLUSTER, addresses=frozenset({"10.0.0.1"}))
POOLS = {IPV4_UNICAST: PoolSet(["192.168.0.0/16"], IPV4_UNICAST)}
V4 = IPV4_UNICAST


def peer(name: str, address: str, *, client: bool = False, mesh: bool = False, asn: int = AS) -> PeerInfo:
    return PeerInfo(
        name, address, asn, AS, address, rr_client=client, mesh=mesh, next_hop_self={V4: ("10.0.0.1",)}
    )


CLIENT1 = peer("client1", "10.0.1.1", client=True)
CLIENT2 = peer("client2", "10.0.1.2", client=True)
NONCLIENT1 = peer("rr2", "10.0.2.1")
NONCLIENT2 = peer("rr3", "10.0.2.2")
MESH = peer("mesh", "10.0.3.1", mesh=True)
EXTERNAL = peer("tor", "10.0.4.1", asn=65001)

LEARNED = PathAttributes(origin=Origin.IGP, as_path=(), next_hop="10.0.1.1", local_pref=100)

# (source, target) -> reflected?  RFC 4456 section 6
MATRIX = [
    (CLIENT1, CLIENT2, True),
    (CLIENT1, NONCLIENT1, True),
    (CLIENT1, CLIENT1, False),  # never back to where it came from
    (CLIENT1, MESH, False),  # the mesh never gets learned routes
    (NONCLIENT1, CLIENT1, True),
    (NONCLIENT1, NONCLIENT2, False),
    (NONCLIENT1, NONCLIENT1, False),
    (NONCLIENT1, MESH, False),
]


@pytest.mark.parametrize(("source", "target", "expected"), MATRIX, ids=lambda v: getattr(v, "name", str(v)))
def test_reflection_matrix(source: PeerInfo, target: PeerInfo, expected: bool) -> None:
    if source is not target:  # never back to the source: decided per peer or per group member
        assert reflects(source, target, CLUSTER) is expected
    exported = ExportPolicy(RR, POOLS).advert(path(source, LEARNED, ("10.0.1.1",)), target, V4)
    assert (exported is not None) is expected


def test_not_a_reflector_never_reflects() -> None:
    plain = Identity(AS, "10.0.0.1")
    assert not reflects(CLIENT1, CLIENT2, None)
    assert ExportPolicy(plain, POOLS).advert(path(CLIENT1, LEARNED, ("10.0.1.1",)), CLIENT2, V4) is None


def test_ibgp_learned_goes_to_ebgp() -> None:
    exported = ExportPolicy(RR, POOLS).advert(path(NONCLIENT1, LEARNED, ("10.0.1.1",)), EXTERNAL, V4)
    assert exported is not None
    assert exported.attrs.originator_id is None and exported.attrs.cluster_list is None


def test_never_reflected_to_the_originator() -> None:
    originated_by_client2 = PathAttributes(
        origin=Origin.IGP, as_path=(), next_hop="10.0.1.2", originator_id=CLIENT2.router_id
    )
    policy = ExportPolicy(RR, POOLS)
    assert policy.advert(path(NONCLIENT1, originated_by_client2, ("10.0.1.2",)), CLIENT2, V4) is None
    assert policy.advert(path(NONCLIENT1, originated_by_client2, ("10.0.1.2",)), CLIENT1, V4) is not None


def test_originator_id_added_and_cluster_prepended_next_hop_kept() -> None:
    out = ExportPolicy(RR, POOLS).advert(path(CLIENT1, LEARNED, ("10.0.1.1",)), CLIENT2, V4)
    assert out is not None
    assert out.attrs.originator_id == CLIENT1.router_id
    assert out.attrs.cluster_list == (CLUSTER,)
    assert out.attrs.next_hop == "10.0.1.1" and out.next_hop == ("10.0.1.1",)
    assert out.attrs.local_pref == 100


def test_existing_originator_kept_cluster_list_grows() -> None:
    seen = PathAttributes(
        origin=Origin.IGP,
        next_hop="10.0.1.9",
        originator_id="10.0.1.9",
        cluster_list=("244.0.0.2",),
    )
    out = reflected_attributes(seen, NONCLIENT1, CLUSTER)
    assert out.originator_id == "10.0.1.9"
    assert out.cluster_list == (CLUSTER, "244.0.0.2")
    assert out.next_hop == "10.0.1.9"


def test_loop_checks() -> None:
    assert (
        reflection_loop(PathAttributes(originator_id="10.0.0.1"), "10.0.0.1", CLUSTER)
        == "originator-id-is-ours"
    )
    assert (
        reflection_loop(PathAttributes(cluster_list=("1.2.3.4", CLUSTER)), "10.0.0.1", CLUSTER)
        == "cluster-list-loop"
    )
    assert reflection_loop(PathAttributes(cluster_list=("1.2.3.4",)), "10.0.0.1", CLUSTER) is None
    assert reflection_loop(PathAttributes(cluster_list=(CLUSTER,)), "10.0.0.1", None) is None


@pytest.mark.parametrize(
    ("attrs", "reason"),
    [
        (
            PathAttributes(origin=0, as_path=(), next_hop="10.0.1.1", originator_id="10.0.0.1"),
            "originator-id-is-ours",
        ),
        (
            PathAttributes(origin=0, as_path=(), next_hop="10.0.1.1", cluster_list=(CLUSTER,)),
            "cluster-list-loop",
        ),
    ],
)
def test_looped_routes_rejected_on_import(attrs: PathAttributes, reason: str) -> None:
    rib = Rib(RR, POOLS)
    client = peer("c", "10.0.1.1", client=True)
    rib.add_peer(client)
    result = rib.receive_update(
        client, Update(attributes=attrs, nlri=[prefix_from_network("192.168.5.0/26")])
    )
    assert result.changes == {}
    assert len(rib.loc[V4]) == 0
    assert rib.peers[client].policy.rejected[reason] == 1


def test_reflection_through_the_rib() -> None:
    """A client's route ends up, reflected, in what another client is sent."""
    rib = Rib(RR, POOLS)
    for p in (CLIENT1, CLIENT2, NONCLIENT1):
        rib.add_peer(p)
    prefix = prefix_from_network("192.168.7.0/26")
    rib.receive_update(CLIENT1, Update(attributes=LEARNED, nlri=[prefix]))
    best = rib.loc[V4].get(prefix)
    assert best is not None and best.source is CLIENT1
    export = ExportPolicy(RR, POOLS)
    to_c2 = export.exporter(ExportTarget.of(CLIENT2), V4)(prefix, best)
    to_rr2 = export.exporter(ExportTarget.of(NONCLIENT1), V4)(prefix, best)
    assert to_c2 is not None and to_rr2 is not None
    assert to_c2.attrs.cluster_list == (CLUSTER,)
    assert export.advert(best, CLIENT1, V4) is None
