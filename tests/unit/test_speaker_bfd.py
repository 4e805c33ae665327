"""BFD inside the speaker (bgpd/speaker_bfd.py), speakers joined in memory (tests/unit/speaker_net.py):
a cut path takes the BGP session and its routes down within the detection time, not the hold time; the
path back brings both back by themselves; a killed bgpd (TCP closes first) keeps graceful restart; a
graceful stop tells peers AdminDown; garbage on the wire is counted and flaps nothing."""

from __future__ import annotations

import pytest

from bgpd.fsm import State
from bgpd.speaker import Speaker
from proto.bfd import BfdState
from proto.bgp import CeaseSubcode
from tests.unit.speaker_net import Net, established, learned, topology
from tests.unit.test_speaker import HEAD, POOL, block, node

BFD_MESH = (f"{HEAD}kind: BGPConfiguration\nmetadata:\n  name: default\n  annotations:\n"
            "    bfd.tortie.io/enabled: 'true'\nspec: {}\n")


def mesh(n: int, bfd: bool = True) -> str:
    docs = [POOL] + ([BFD_MESH] if bfd else [])
    for i in range(1, n + 1):
        docs.append(node(f"n{i}", f"10.77.0.{i}"))
        docs.append(block(f"n{i}", f"10.200.{i}.0/26"))
    return "---\n".join(docs)


def start(net: Net, text: str, names: list[str]) -> dict[str, Speaker]:
    out = {}
    for name in names:
        topo, model = topology(text, name)
        out[name] = net.add(topo, model=model)
    return out


def addr(i: int) -> str:
    return f"10.77.0.{i}"


def bfd_state(sp: Speaker, peer: str) -> BfdState:
    s = sp.peers[peer].bfd
    assert s is not None
    return s.state


@pytest.fixture
def three() -> tuple[Net, dict[str, Speaker]]:
    net = Net()
    sp = start(net, mesh(3), ["n1", "n2", "n3"])
    assert net.run(60, lambda: all(established(s) for s in sp.values())
                   and all(bfd_state(s, p) == BfdState.UP for s in sp.values() for p in s.peers))
    assert net.run(net.now + 5, lambda: all(len(learned(s)) == 2 for s in sp.values()))
    return net, sp


def test_mesh_peers_run_bfd_from_the_bgpconfiguration_annotation(three: tuple[Net, dict[str, Speaker]]) -> None:
    net, sp = three
    for s in sp.values():
        assert len(s.bfd) == 2
        for peer in s.peers.values():
            assert peer.bfd is not None and peer.bfd.local in {addr(i) for i in (1, 2, 3)}
    assert net.datagrams > 0


def test_a_cut_path_withdraws_routes_within_the_detection_time_and_comes_back(
        three: tuple[Net, dict[str, Speaker]]) -> None:
    net, sp = three
    cut = {frozenset((addr(1), addr(2)))}
    net.reachable = lambda a, b: frozenset((a, b)) not in cut
    t0 = net.now
    gone = net.run(t0 + 5, lambda: "10.200.2.0/26" not in learned(sp["n1"])
                   and "10.200.1.0/26" not in learned(sp["n2"]))
    assert gone, learned(sp["n1"])
    took = net.now - t0
    assert took <= 0.9 + 1e-6, took  # 3 x 300 ms after the last packet, which came before the cut
    n1_peer = sp["n1"].peers[addr(2)]
    # Cease/BFD Down, inside a Hard Reset (RFC 8538's N bit is negotiated between tortie speakers): the
    # path failed, so the peer must not keep the routes as stale either
    assert n1_peer.bfd_failures == 1 and n1_peer.notifications_sent[(6, CeaseSubcode.HARD_RESET)] == 1
    assert n1_peer.state != State.ESTABLISHED
    # no graceful restart for a failed path: nothing stale kept
    assert not sp["n1"].gr.is_restarting(n1_peer.info)
    # n3 is untouched, and still has both
    assert set(learned(sp["n3"])) == {"10.200.1.0/26", "10.200.2.0/26"}
    assert sp["n3"].peers[addr(1)].established_count == 1
    # the path comes back: BFD first, then BGP without waiting out its back-off
    cut.clear()
    t1 = net.now + 2.0
    net.run(t1)  # (time passes: the back-off grows while the path stays cut)
    t1 = net.now
    cut.add(frozenset((addr(1), addr(2))))
    net.run(t1 + 40)
    cut.clear()
    t2 = net.now
    assert net.run(t2 + 10, lambda: "10.200.2.0/26" in learned(sp["n1"]) and "10.200.1.0/26" in learned(sp["n2"]))
    assert net.now - t2 < 3.0, net.now - t2  # BFD Up (about 1 s) kicks the connection at once
    assert bfd_state(sp["n1"], addr(2)) == BfdState.UP


def test_without_bfd_a_cut_path_waits_for_the_hold_time() -> None:
    net = Net()
    sp = start(net, mesh(2, bfd=False), ["n1", "n2"])
    assert net.run(60, lambda: all(len(learned(s)) == 1 for s in sp.values()))
    net.reachable = lambda a, b: False
    t0 = net.now
    # hold timer expiry is a graceful restart with RFC 8538: the 90 s hold time, then 120 s of stale routes
    assert net.run(t0 + 300, lambda: not learned(sp["n1"]))
    assert net.now - t0 > 60 + 120  # the hold time (less what had run of it) and the restart time


def test_a_killed_bgpd_keeps_graceful_restart_despite_bfd(three: tuple[Net, dict[str, Speaker]]) -> None:
    """kill -9: the kernel closes TCP at once, graceful restart keeps the routes stale; BFD times out
    afterwards on a session that is already down, and takes nothing more."""
    net, sp = three
    net.remove(sp["n3"], abrupt=True)
    net.run(net.now + 3)
    for name in ("n1", "n2"):
        s = sp[name]
        assert bfd_state(s, addr(3)) == BfdState.DOWN
        assert "10.200.3.0/26" in learned(s), name  # stale, kept
        assert s.gr.is_restarting(s.peers[addr(3)].info)
        # BFD saw the failure, but BGP was down already: nothing more is taken
        assert s.peers[addr(3)].bfd_failures == 1
        assert not s.peers[addr(3)].notifications_sent


def test_a_graceful_stop_sends_admin_down_which_is_no_failure(three: tuple[Net, dict[str, Speaker]]) -> None:
    net, sp = three
    sp["n3"].stop_bfd(net.now)
    net.settle()
    net.remove(sp["n3"], abrupt=True)  # then the connections drop without NOTIFICATION
    net.run(net.now + 3)
    for name in ("n1", "n2"):
        s = sp[name]
        peer = s.peers[addr(3)]
        assert bfd_state(s, addr(3)) == BfdState.DOWN and peer.bfd is not None
        assert peer.bfd.remote_state == BfdState.ADMIN_DOWN
        assert peer.bfd_failures == 0 and "10.200.3.0/26" in learned(s)


def test_garbage_on_the_wire_is_counted_and_flaps_nothing(three: tuple[Net, dict[str, Speaker]]) -> None:
    net, sp = three
    bad = [b"", b"\x00" * 24, bytes([0x40]) + b"\x00" * 23]
    count = {"n": 0, "bad": 0}

    def tamper(src: str, dst: str, data: bytes) -> bytes | None:
        count["n"] += 1
        if src == addr(2) and dst == addr(1) and count["n"] % 3 == 0:
            count["bad"] += 1
            garbage = bad[count["bad"] % len(bad)]
            sp["n1"].bfd_receive(garbage, src, dst, 255, net.now)
            sp["n1"].bfd_receive(data, src, dst, 64, net.now)  # the right packet with a TTL of 64
        return data

    net.tamper = tamper
    before = sp["n1"].peers[addr(2)].bfd
    assert before is not None
    changes = before.transitions[BfdState.DOWN]
    net.run(net.now + 10)
    dropped = sp["n1"].bfd.dropped
    assert dropped["ttl"] > 0 and dropped["length"] > 0 and dropped["version"] > 0
    assert before.state == BfdState.UP and before.transitions[BfdState.DOWN] == changes
    assert sp["n1"].peers[addr(2)].established_count == 1


def test_bfd_settings_change_without_restarting_bgp() -> None:
    net = Net()
    sp = start(net, mesh(2), ["n1", "n2"])
    assert net.run(60, lambda: established(sp["n1"]) and bfd_state(sp["n1"], addr(2)) == BfdState.UP)
    from proto.tortie_annotations import BfdSettings

    s = sp["n1"].peers[addr(2)]
    sp["n1"].set_bfd(addr(2), BfdSettings(min_rx_ms=500, min_tx_ms=500, multiplier=5), net.now)
    net.run(net.now + 5)
    assert s.bfd is not None and s.bfd.state == BfdState.UP and s.bfd.tx_interval == pytest.approx(0.5)
    peer_side = sp["n2"].peers[addr(1)].bfd
    assert peer_side is not None and peer_side.detection_time == pytest.approx(2.5)
    assert s.established_count == 1
    sp["n1"].set_bfd(addr(2), None, net.now)
    net.run(net.now + 5)
    assert s.bfd is None and len(sp["n1"].bfd) == 0
    assert peer_side.remote_state == BfdState.ADMIN_DOWN and peer_side.state == BfdState.DOWN
    assert sp["n2"].peers[addr(1)].bfd_failures == 0 and established(sp["n2"])
