"""Loc-RIB: per-prefix re-decision, change notifications, and agreement with a brute-force model."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bgpd.identity import Identity
from bgpd.pool_set import PoolSet
from bgpd.rib.adj_rib_in import AdjRibIn
from bgpd.rib.decision import decide
from bgpd.rib.loc_rib import LocRib
from bgpd.rib.path import PeerInfo
from bgpd.rib.rib import Rib
from proto.bgp.constants import IPV4_UNICAST, IPV6_UNICAST
from proto.bgp.model import AsPathSegment, PathAttributes, Update
from proto.bgp.prefix import prefix_from_network

AS = 64512
V4 = IPV4_UNICAST
PEERS = [PeerInfo(f"n{i}", f"10.0.0.{i + 2}", AS, AS, f"10.0.0.{i + 2}") for i in range(3)]
P = [prefix_from_network(f"192.168.{i}.0/26") for i in range(4)]


def attrs(lp: int = 100, med: int | None = None, hops: int = 0, nas: int = 65001) -> PathAttributes:
    as_path = (AsPathSegment(2, (nas, *range(65100, 65100 + hops))),) if hops else ()
    return PathAttributes(origin=0, as_path=as_path, next_hop="10.9.9.9", local_pref=lp, med=med)


def setup() -> tuple[LocRib, list[AdjRibIn]]:
    loc = LocRib(V4)
    ins = [AdjRibIn(p, V4) for p in PEERS]
    for i in ins:
        loc.add_source(i)
    return loc, ins


def test_best_changes_and_falls_back() -> None:
    loc, (a, b, _c) = setup()
    seen: list[list] = []
    loc.listeners.append(lambda family, changes: seen.append(changes))
    assert loc.update(a.announce(P[:2], attrs(), ("10.9.9.9",))) == [(P[0], a.get(P[0])), (P[1], a.get(P[1]))]
    # b is better for P[0] only: only P[0] changes
    changes = loc.update(b.announce([P[0]], attrs(lp=200), ("10.9.9.9",)))
    assert changes == [(P[0], b.get(P[0]))]
    # a worse path from b for P[1] changes nothing
    assert loc.update(b.announce([P[1]], attrs(lp=50), ("10.9.9.9",))) == []
    # withdrawing the loser changes nothing, withdrawing the winner falls back
    assert loc.update(a.withdraw([P[0]])) == []
    assert loc.update(a.withdraw([P[1]])) == [(P[1], b.get(P[1]))]
    assert loc.update(b.withdraw([P[0]])) == [(P[0], None)]
    assert len(seen) == 4 and P[0] not in loc.best


def test_explain_gives_reason_and_candidates() -> None:
    loc, (a, b, _c) = setup()
    loc.update(a.announce([P[0]], attrs(hops=2), ("10.9.9.9",)))
    best, reason, cands = loc.explain(P[0])
    assert best is a.get(P[0]) and reason == "only path" and len(cands) == 1
    loc.update(b.announce([P[0]], attrs(hops=1), ("10.9.9.9",)))
    best, reason, cands = loc.explain(P[0])
    assert best is b.get(P[0]) and reason.startswith("shortest AS_PATH") and len(cands) == 2
    assert loc.explain(P[3]) == (None, "no path", [])


def test_remove_source() -> None:
    loc, (a, b, _c) = setup()
    loc.update(a.announce(P, attrs(lp=300), ("10.9.9.9",)))
    loc.update(b.announce(P[:2], attrs(), ("10.9.9.9",)))
    changes = loc.remove_source(a)
    assert dict(changes) == {P[0]: b.get(P[0]), P[1]: b.get(P[1]), P[2]: None, P[3]: None}


def test_defer_and_resume() -> None:
    loc, (a, _b, _c) = setup()
    loc.defer()
    assert loc.update(a.announce(P, attrs(), ("10.9.9.9",))) == []
    assert len(loc) == 0
    assert len(loc.resume()) == 4 and len(loc) == 4


def test_families_kept_apart() -> None:
    """Each family has its own table (a prefix value also carries its IP version)."""
    rib = Rib(
        Identity(AS, "10.0.0.1"),
        {V4: PoolSet(["10.0.0.0/8"], V4), IPV6_UNICAST: PoolSet(["::/0"], IPV6_UNICAST)},
    )
    assert prefix_from_network("10.1.2.0/24")[:3] == b"\x04\x18\x0a"
    rib.originate(V4, [prefix_from_network("10.1.2.0/24")])
    assert len(rib.loc[V4]) == 1 and len(rib.loc[IPV6_UNICAST]) == 0


def test_rib_update_through_many_sources_shares_paths() -> None:
    rib = Rib(Identity(AS, "10.0.0.1"), {V4: PoolSet(["192.168.0.0/16"], V4)})
    for p in PEERS:
        rib.add_peer(p)
    prefixes = [prefix_from_network(f"192.168.{i >> 2}.{(i & 3) * 64}/26") for i in range(400)]
    for i, p in enumerate(PEERS):
        sent = PathAttributes(origin=0, as_path=(), next_hop=p.address, local_pref=100 + i)
        rib.receive_update(p, Update(attributes=sent, nlri=prefixes))
    # the highest LOCAL_PREF wins every prefix, and all of them point at one shared path
    assert len(rib.loc[V4]) == 400
    assert {id(b) for b in rib.loc[V4].best.values()} == {id(rib.adj_rib_in(PEERS[2], V4).get(prefixes[0]))}


ops = st.lists(
    st.tuples(
        st.integers(0, 2),  # peer
        st.booleans(),  # announce / withdraw
        st.lists(st.integers(0, 3), min_size=1, max_size=4, unique=True),  # prefixes
        st.integers(0, 3),  # local pref choice
        st.sampled_from([None, 0, 10]),  # MED
        st.integers(0, 2),  # AS path length
        st.sampled_from([65001, 65002]),  # neighbour AS
    ),
    max_size=30,
)


@settings(max_examples=120, deadline=None)
@given(ops, st.booleans())
def test_incremental_equals_full_decision(operations: list, hint: bool) -> None:  # type: ignore[type-arg]
    """After any sequence of changes, every best path is what a full decision over all paths gives."""
    loc, ins = setup()
    for peer_i, announce, idx, lp, med, hops, nas in operations:
        prefixes = [P[i] for i in idx]
        rib_in = ins[peer_i]
        if announce:
            changed = rib_in.announce(prefixes, attrs(100 + 50 * lp, med, hops, nas), ("10.9.9.9",))
        else:
            changed = rib_in.withdraw(prefixes)
        loc.update(changed, rib_in if hint else None)
        for prefix in P:
            cands = [e for i in ins if (e := i.get(prefix)) is not None]
            if cands:
                assert loc.best[prefix] is decide(cands)[0]  # type: ignore[arg-type]
            else:
                assert prefix not in loc.best


def test_enhanced_route_refresh_received() -> None:
    """BoRR marks the peer's routes stale; EoRR withdraws those not re-sent in between (RFC 7313)."""
    rib = Rib(Identity(AS, "10.0.0.1"), {V4: PoolSet(["192.168.0.0/16"], V4)})
    rib.add_peer(PEERS[0])
    sent = PathAttributes(origin=0, as_path=(), next_hop="10.0.0.2")
    rib.receive_update(PEERS[0], Update(attributes=sent, nlri=P))
    rib.begin_refresh(PEERS[0], V4)
    assert all(b.stale for b in rib.loc[V4].best.values())
    rib.receive_update(PEERS[0], Update(attributes=sent, nlri=P[:3]))
    assert rib.end_refresh(PEERS[0], V4) == [(P[3], None)]
    assert set(rib.loc[V4].best) == set(P[:3])
    assert not any(b.stale for b in rib.loc[V4].best.values())


def test_add_path_through_the_rib() -> None:
    """Several paths for one prefix from one peer (Calico's BIRD sends ADD-PATH): best of them wins."""
    rib = Rib(Identity(AS, "10.0.0.1"), {V4: PoolSet(["192.168.0.0/16"], V4)})
    peer = PEERS[0]
    rib.add_peer(peer)
    rib.set_add_path(peer, [V4])
    one, two = (1).to_bytes(4, "big"), (2).to_bytes(4, "big")
    far = PathAttributes(origin=0, as_path=(AsPathSegment(2, (65001, 65002)),), next_hop="10.0.0.7")
    near = PathAttributes(origin=0, as_path=(AsPathSegment(2, (65001,)),), next_hop="10.0.0.8")
    rib.receive_update(
        peer, Update(attributes=far, nlri=[one + P[0], one + prefix_from_network("10.0.0.0/8")])
    )
    assert rib.peers[peer].policy.rejected == {"outside-pools": 1}
    result = rib.receive_update(peer, Update(attributes=near, nlri=[two + P[0]]))
    best = rib.loc[V4].best[P[0]]
    assert result.changes == {V4: [(P[0], best)]}
    assert best.path_id == two and best.next_hop == ("10.0.0.8",)
    assert len(rib.adj_rib_in(peer, V4)) == 2
    result = rib.receive_update(peer, Update(withdrawn=[two + P[0]]))
    assert rib.loc[V4].best[P[0]].path_id == one
    result = rib.receive_update(peer, Update(withdrawn=[one + P[0]]))
    assert result.changes == {V4: [(P[0], None)]}
