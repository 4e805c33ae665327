"""Adj-RIB-In: shared paths, change reporting, ADD-PATH entries, stale marking."""

from __future__ import annotations

from bgpd.rib.adj_rib_in import AdjRibIn, entry_paths
from bgpd.rib.path import PeerInfo, path
from proto.bgp.constants import IPV4_UNICAST
from proto.bgp.model import PathAttributes
from proto.bgp.prefix import prefix_from_network

AS = 64512
PEER = PeerInfo("node-a", "10.0.0.2", AS, AS, "10.0.0.2")
A1 = PathAttributes(origin=0, as_path=(), next_hop="10.0.0.2")
A2 = PathAttributes(origin=0, as_path=(), next_hop="10.0.0.2", med=5)
HOP = ("10.0.0.2",)
P = [prefix_from_network(f"192.168.{i}.0/26") for i in range(5)]


def pid(n: int) -> bytes:
    return n.to_bytes(4, "big")


def test_prefixes_share_one_path() -> None:
    rib = AdjRibIn(PEER, IPV4_UNICAST)
    assert rib.announce(P, A1, HOP) == P
    paths = {id(rib.get(p)) for p in P}
    assert len(paths) == 1
    assert rib.get(P[0]) is path(PEER, A1, HOP)
    # equal attribute values from another UPDATE object still share the path
    assert rib.announce(P, PathAttributes(origin=0, as_path=(), next_hop="10.0.0.2"), HOP) == []
    assert len(rib) == 5


def test_changes_reported_only_when_something_changed() -> None:
    rib = AdjRibIn(PEER, IPV4_UNICAST)
    rib.announce(P[:3], A1, HOP)
    assert rib.announce(P[1:4], A2, HOP) == P[1:4]
    assert rib.withdraw([P[0], P[4]]) == [P[0]]
    assert len(rib) == 3 and rib.get(P[1]) is path(PEER, A2, HOP)


def test_add_path_entries() -> None:
    rib = AdjRibIn(PEER, IPV4_UNICAST, add_path=True)
    assert rib.announce([pid(1) + P[0], pid(2) + P[0], pid(1) + P[1]], A1, HOP) == [P[0], P[0], P[1]]
    entry = rib.get(P[0])
    assert isinstance(entry, tuple) and [p.path_id for p in entry] == [pid(1), pid(2)]
    assert len(rib) == 3
    # replacing one path keeps the other
    assert rib.announce([pid(2) + P[0]], A2, HOP) == [P[0]]
    assert {(p.path_id, p.attrs) for p in entry_paths(rib.get(P[0]))} == {(pid(1), A1), (pid(2), A2)}  # type: ignore[arg-type]
    assert len(rib) == 3
    assert rib.withdraw([pid(1) + P[0], pid(9) + P[1]]) == [P[0]]
    single = rib.get(P[0])
    assert not isinstance(single, tuple) and single is not None and single.path_id == pid(2)
    assert rib.withdraw([pid(2) + P[0]]) == [P[0]]
    assert rib.get(P[0]) is None and len(rib) == 1


def test_stale_marking_and_sweep() -> None:
    rib = AdjRibIn(PEER, IPV4_UNICAST)
    rib.announce(P, A1, HOP)
    assert rib.mark_stale() == P
    assert rib.mark_stale() == []  # already stale
    assert rib.stale_count() == 5
    stale_path = rib.get(P[0])
    assert stale_path is not None and stale_path.stale and stale_path is path(PEER, A1, HOP, stale=True)
    # re-announcing makes it fresh again
    assert rib.announce(P[:2], A1, HOP) == P[:2]
    assert rib.sweep_stale() == P[2:]
    assert len(rib) == 2 and rib.stale_count() == 0


def test_stale_sweep_with_add_path() -> None:
    rib = AdjRibIn(PEER, IPV4_UNICAST, add_path=True)
    rib.announce([pid(1) + P[0], pid(2) + P[0]], A1, HOP)
    rib.mark_stale()
    rib.announce([pid(2) + P[0]], A1, HOP)
    assert rib.sweep_stale() == [P[0]]
    entry = rib.get(P[0])
    assert not isinstance(entry, tuple) and entry is not None and entry.path_id == pid(2) and not entry.stale
    assert len(rib) == 1


def test_sync_makes_the_table_exact() -> None:
    local = PeerInfo.local_source(AS, "10.0.0.1")
    rib = AdjRibIn(local, IPV4_UNICAST)
    assert sorted(rib.sync(P[:3], A1, ())) == sorted(P[:3])
    assert sorted(rib.sync(P[2:4], A1, ())) == sorted([P[0], P[1], P[3]])
    assert set(rib.routes) == set(P[2:4])


def test_switching_add_path_off_keeps_counts_right() -> None:
    rib = AdjRibIn(PEER, IPV4_UNICAST, add_path=True)
    rib.announce([pid(1) + P[0], pid(2) + P[0]], A1, HOP)
    rib.add_path = False  # the peer came back without ADD-PATH
    rib.announce([P[0]], A1, HOP)
    assert len(rib) == 1
    rib.withdraw([P[0]])
    assert len(rib) == 0
