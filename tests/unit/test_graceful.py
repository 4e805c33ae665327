"""Graceful restart (RFC 4724): helper and restarting speaker, with time stepped by hand."""

from __future__ import annotations

import pytest

from bgpd.graceful import GracefulHelper, RestartDeferral
from bgpd.identity import Identity
from bgpd.pool_set import PoolSet
from bgpd.rib.path import PeerInfo
from bgpd.rib.rib import Rib
from proto.bgp.constants import IPV4_UNICAST, IPV6_UNICAST
from proto.bgp.model import GracefulRestartCap, MpReach, PathAttributes, Update
from proto.bgp.prefix import prefix_from_network

AS = 64512
V4, V6 = IPV4_UNICAST, IPV6_UNICAST
ME = Identity(AS, "10.0.0.1", addresses=frozenset({"10.0.0.1"}))
POOLS = {V4: PoolSet(["192.168.0.0/16"], V4), V6: PoolSet(["fd00:10::/48"], V6)}
ATTRS = PathAttributes(origin=0, as_path=(), next_hop="10.0.0.2", local_pref=100)
BLOCKS = [prefix_from_network(f"192.168.{i}.0/26") for i in range(4)]
V6_BLOCK = prefix_from_network("fd00:10:0:1::/122")
GR_BOTH = GracefulRestartCap(120, families=((1, 1, True), (2, 1, True)))


def make() -> tuple[Rib, PeerInfo, GracefulHelper]:
    rib = Rib(ME, POOLS)
    peer = PeerInfo("node-a", "10.0.0.2", AS, AS, "10.0.0.2", mesh=True)
    rib.add_peer(peer)
    rib.receive_update(peer, Update(attributes=ATTRS, nlri=BLOCKS))
    rib.receive_update(peer, Update(attributes=ATTRS, mp_reach=MpReach(2, 1, ("fd00::2",), [V6_BLOCK])))
    return rib, peer, GracefulHelper(rib, stale_time=300)


def stale(rib: Rib, family: tuple[int, int] = V4) -> set[bytes]:
    return {p for p, best in rib.loc[family].best.items() if best.stale}


def test_routes_kept_stale_while_peer_is_down_then_withdrawn_at_restart_time() -> None:
    rib, peer, helper = make()
    changes = helper.peer_down(peer, 100.0, GR_BOTH)
    # the routes stay, re-fed as stale (felixd keeps them installed)
    assert sorted(p for p, _ in changes[V4]) == sorted(BLOCKS)
    assert stale(rib) == set(BLOCKS) and stale(rib, V6) == {V6_BLOCK}
    assert helper.next_deadline() == 220.0
    assert helper.expire(219.9) == {}
    assert len(rib.loc[V4]) == 4
    changes = helper.expire(220.0)
    assert sorted(changes[V4]) == sorted((p, None) for p in BLOCKS)
    assert changes[V6] == [(V6_BLOCK, None)]
    assert len(rib.loc[V4]) == 0 and helper.next_deadline() is None


def test_not_reannounced_before_end_of_rib_is_withdrawn() -> None:
    rib, peer, helper = make()
    helper.peer_down(peer, 0.0, GR_BOTH)
    assert helper.peer_up(peer, 30.0, GR_BOTH) == {}  # nothing withdrawn yet
    assert helper.next_deadline() == 330.0  # now waiting for End-of-RIB
    # the peer re-announces two of its four blocks: they become fresh
    result = rib.receive_update(peer, Update(attributes=ATTRS, nlri=BLOCKS[:2]))
    assert [p for p, _ in result.changes[V4]] == BLOCKS[:2]
    assert stale(rib) == set(BLOCKS[2:])
    eor = rib.receive_update(peer, Update()).end_of_rib
    assert eor == V4
    changes = helper.end_of_rib(peer, V4, 31.0)
    assert changes == {V4: [(BLOCKS[2], None), (BLOCKS[3], None)]}
    assert set(rib.loc[V4].best) == set(BLOCKS[:2]) and not stale(rib)
    # IPv6 still waits for its own End-of-RIB, then goes (nothing re-announced)
    assert stale(rib, V6) == {V6_BLOCK}
    assert helper.end_of_rib(peer, V6, 32.0) == {V6: [(V6_BLOCK, None)]}
    assert not helper.is_restarting(peer) and helper.next_deadline() is None


def test_no_end_of_rib_in_time_sweeps_the_stale() -> None:
    rib, peer, helper = make()
    helper.peer_down(peer, 0.0, GR_BOTH)
    helper.peer_up(peer, 10.0, GR_BOTH)
    rib.receive_update(peer, Update(attributes=ATTRS, nlri=BLOCKS[:1]))
    assert helper.expire(309.0) == {}
    changes = helper.expire(310.0)
    assert sorted(p for p, _ in changes[V4]) == sorted(BLOCKS[1:])
    assert set(rib.loc[V4].best) == {BLOCKS[0]}


def test_returning_without_forwarding_state_drops_that_family() -> None:
    rib, peer, helper = make()
    helper.peer_down(peer, 0.0, GR_BOTH)
    only_v4 = GracefulRestartCap(120, families=((1, 1, True), (2, 1, False)))
    changes = helper.peer_up(peer, 5.0, only_v4)
    assert changes == {V6: [(V6_BLOCK, None)]}
    assert stale(rib) == set(BLOCKS)


def test_returning_without_graceful_restart_drops_everything() -> None:
    rib, peer, helper = make()
    helper.peer_down(peer, 0.0, GR_BOTH)
    changes = helper.peer_up(peer, 5.0, None)
    assert len(changes[V4]) == 4 and len(changes[V6]) == 1
    assert len(rib.loc[V4]) == 0 and not helper.is_restarting(peer)


def test_peer_without_graceful_restart_is_flushed_at_once() -> None:
    rib, peer, helper = make()
    changes = helper.peer_down(peer, 0.0, None)
    assert len(changes[V4]) == 4 and len(rib.loc[V4]) == 0
    assert helper.next_deadline() is None


def test_family_not_in_capability_flushed_at_once() -> None:
    rib, peer, helper = make()
    changes = helper.peer_down(peer, 0.0, GracefulRestartCap(60, families=((1, 1, True),)))
    assert changes[V6] == [(V6_BLOCK, None)]
    assert stale(rib) == set(BLOCKS)


def test_second_restart_before_end_of_rib_keeps_the_stale_routes() -> None:
    rib, peer, helper = make()
    helper.peer_down(peer, 0.0, GR_BOTH)
    helper.peer_up(peer, 10.0, GR_BOTH)
    rib.receive_update(peer, Update(attributes=ATTRS, nlri=BLOCKS[:1]))
    # drops again before its End-of-RIB: nothing is withdrawn, everything is stale again
    changes = helper.peer_down(peer, 20.0, GracefulRestartCap(90, families=((1, 1, True), (2, 1, True))))
    assert all(best is not None and best.stale for _, best in changes[V4])
    assert stale(rib) == set(BLOCKS)
    assert helper.next_deadline() == 110.0
    helper.peer_up(peer, 50.0, GR_BOTH)
    rib.receive_update(peer, Update(attributes=ATTRS, nlri=BLOCKS))
    assert helper.end_of_rib(peer, V4, 51.0) == {}  # everything came back
    assert set(rib.loc[V4].best) == set(BLOCKS) and not stale(rib)


def test_stale_path_loses_nothing_to_a_fresh_one_from_another_peer() -> None:
    """Stale routes stay usable; a fresh path from elsewhere still competes normally."""
    rib, peer, helper = make()
    other = PeerInfo("node-b", "10.0.0.3", AS, AS, "10.0.0.3", mesh=True)
    rib.add_peer(other)
    helper.peer_down(peer, 0.0, GR_BOTH)
    rib.receive_update(
        other, Update(attributes=PathAttributes(origin=0, as_path=(), next_hop="10.0.0.3"), nlri=BLOCKS[:1])
    )
    best = rib.loc[V4].best[BLOCKS[0]]
    assert best.source is peer and best.stale  # lower router id still wins
    helper.expire(1000.0)
    assert rib.loc[V4].best[BLOCKS[0]].source is other


# ---------------------------------------------------------------- restarting speaker


def restart_setup(now: float = 0.0, **kw: float) -> tuple[Rib, list[PeerInfo], RestartDeferral]:
    rib = Rib(ME, POOLS)
    peers = [PeerInfo(f"n{i}", f"10.0.0.{i + 2}", AS, AS, f"10.0.0.{i + 2}", mesh=True) for i in range(3)]
    for p in peers:
        rib.add_peer(p)
    return rib, peers, RestartDeferral(rib, now, peers, **kw)


def test_restarter_ready_as_soon_as_every_end_of_rib_is_in() -> None:
    rib, peers, deferral = restart_setup()
    rib.originate(V4, [prefix_from_network("192.168.200.0/26")])
    for i, p in enumerate(peers):
        assert (
            deferral.peer_established(p, 1.0, [V4], GracefulRestartCap(120, families=((1, 1, True),))) == {}
        )
        attrs = PathAttributes(origin=0, as_path=(), next_hop=p.address)
        assert (
            rib.receive_update(p, Update(attributes=attrs, nlri=[BLOCKS[i]])).changes == {}
        )  # decision deferred
    assert len(rib.loc[V4]) == 0 and not deferral.ready(2.0)
    assert deferral.end_of_rib(peers[0], V4, 2.0) == {}
    assert deferral.end_of_rib(peers[1], V4, 2.5) == {}
    changes = deferral.end_of_rib(peers[2], V4, 3.0)
    # all at once, at 3 s, not after a fixed wait
    assert len(changes[V4]) == 4 and len(rib.loc[V4]) == 4
    assert deferral.ready(3.0) and deferral.next_deadline() is None
    # afterwards the decision runs per update again
    gone = rib.receive_update(peers[0], Update(withdrawn=[BLOCKS[0]]))
    assert gone.changes == {V4: [(BLOCKS[0], None)]}


def test_restarter_does_not_wait_for_peers_without_gr_or_restarting() -> None:
    _rib, peers, deferral = restart_setup()
    deferral.peer_established(peers[0], 1.0, [V4], None)
    deferral.peer_established(
        peers[1], 1.0, [V4], GracefulRestartCap(120, restarting=True, families=((1, 1, True),))
    )
    assert not deferral.ready(1.0)
    deferral.peer_established(peers[2], 1.5, [V4, V6], GR_BOTH)
    deferral.end_of_rib(peers[2], V4, 2.0)
    assert not deferral.ready(2.0)  # its IPv6 End-of-RIB is still missing
    deferral.end_of_rib(peers[2], V6, 2.1)
    assert deferral.ready(2.1) and deferral.done


def test_restarter_stops_waiting_for_peers_that_never_come_up() -> None:
    _rib, peers, deferral = restart_setup(established_wait=10.0, deferral_time=120.0)
    deferral.peer_established(peers[0], 1.0, [V4], GR_BOTH)
    deferral.end_of_rib(peers[0], V4, 2.0)
    assert not deferral.done
    assert deferral.next_deadline() == 10.0
    assert deferral.poll(9.9) == {} and not deferral.done
    deferral.poll(10.0)
    assert deferral.done


def test_restarter_deadline_ends_the_wait() -> None:
    rib, peers, deferral = restart_setup(deferral_time=60.0)
    for p in peers:
        deferral.peer_established(p, 1.0, [V4], GR_BOTH)
    rib.receive_update(peers[0], Update(attributes=ATTRS, nlri=BLOCKS[:2]))
    assert deferral.next_deadline() == 60.0
    assert deferral.poll(59.0) == {}
    changes = deferral.poll(60.0)
    assert len(changes[V4]) == 2 and deferral.done


@pytest.mark.parametrize("removed_first", [True, False])
def test_restarter_peer_removed_from_config(removed_first: bool) -> None:
    _rib, peers, deferral = restart_setup()
    for p in peers[:2]:
        deferral.peer_established(p, 1.0, [V4], GR_BOTH)
        deferral.end_of_rib(p, V4, 1.5)
    if removed_first:
        deferral.peer_removed(peers[2], 2.0)
        assert deferral.done
    else:
        assert not deferral.ready(2.0)


