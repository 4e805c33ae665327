"""Block ownership in import policy (bgpd/ownership.py, bgpd/rib/rib.py): a pod block is accepted only
from the node holding its affinity, directly or reflected with its ORIGINATOR_ID; more specifics of
another node's block, blocks nobody holds and next hops elsewhere are refused, counted, logged once,
kept to be shown and judged again when the affinities change; peers that are not Nodes are not
judged; `policy.tortie.io/block-ownership: off` turns it off."""

from __future__ import annotations

import ipaddress
import logging

import pytest

from bgpd.identity import Identity
from bgpd.ownership import BAD_ORIGINATOR, NEXT_HOP, NO_AFFINITY, NOT_OWNER, BlockOwners, NodeIds
from bgpd.rib.path import PeerInfo
from bgpd.rib.rib import Rib
from bgpd.speaker_settings import pools_from_networks
from proto import prefix as pf
from proto.bgp import IPV4_UNICAST
from proto.bgp.model import PathAttributes, Update
from proto.resources import load_model
from tests.unit.speaker_net import Net, established, learned, topology
from tests.unit.test_speaker import HEAD, block, mesh_yaml, reflector_yaml

P = pf.parse


def owners() -> BlockOwners:
    return BlockOwners({P("10.200.1.0/26"): "n1", P("10.200.2.0/26"): "n2"},
                       [NodeIds("n1", "10.77.0.1", frozenset({"10.77.0.1"})),
                        NodeIds("n2", "10.77.0.2", frozenset({"10.77.0.2"})),
                        NodeIds("n3", "10.77.0.3", frozenset({"10.77.0.3"}))], [P("10.200.0.0/16")])


def test_outside_every_pool_is_left_to_import_policy() -> None:
    """A node's service addresses (serviceClusterIPs, ...) are no pod block: every node may announce
    them, even reflected with an ORIGINATOR_ID nobody has; a pool prefix in the same UPDATE is judged."""
    o = owners()
    attrs = PathAttributes(origin=0)
    ok, refused = o.check("n2", [P("10.96.0.0/12"), P("10.200.1.0/26")], attrs, ("10.77.0.2",))
    assert [pf.text(p) for p in ok] == ["10.96.0.0/12"]
    assert reasons(refused) == {"10.200.1.0/26": "not-block-owner"}
    stranger = PathAttributes(origin=0, originator_id=ipaddress.IPv4Address("10.99.0.9"))
    ok, refused = o.check("n2", [P("192.0.2.0/24"), P("10.200.2.0/26")], stranger, ("10.77.0.2",))
    assert [pf.text(p) for p in ok] == ["192.0.2.0/24"]
    assert reasons(refused) == {"10.200.2.0/26": "originator-not-a-node"}


def reasons(refused: list[tuple[bytes, str, str]]) -> dict[str, str]:
    return {pf.text(p): r for p, r, _d in refused}


def test_the_owner_directly_or_reflected_and_nobody_else() -> None:
    o = owners()
    attrs = PathAttributes(origin=0, as_path=())
    ok, refused = o.check("n1", [P("10.200.1.0/26"), P("10.200.2.0/26"), P("10.200.2.16/28"),
                                 P("10.200.1.32/27"), P("10.200.9.0/26")], attrs, ("10.77.0.1",))
    assert [pf.text(p) for p in ok] == ["10.200.1.0/26", "10.200.1.32/27"]  # its block, and inside its own
    assert reasons(refused) == {"10.200.2.0/26": NOT_OWNER, "10.200.2.16/28": NOT_OWNER,
                                "10.200.9.0/26": NO_AFFINITY}
    assert "inside block 10.200.2.0/26 of node n2" in next(d for p, _r, d in refused if pf.text(p) == "10.200.2.16/28")
    # reflected (from n3, a reflector): the ORIGINATOR_ID names the claimant
    reflected = PathAttributes(origin=0, as_path=(), originator_id="10.77.0.2")
    ok, refused = o.check("n3", [P("10.200.2.0/26"), P("10.200.1.0/26")], reflected, ("10.77.0.2",))
    assert [pf.text(p) for p in ok] == ["10.200.2.0/26"] and reasons(refused) == {"10.200.1.0/26": NOT_OWNER}
    # the right claimant with the traffic sent elsewhere
    ok, refused = o.check("n3", [P("10.200.2.0/26")], reflected, ("10.77.0.3",))
    assert not ok and reasons(refused) == {"10.200.2.0/26": NEXT_HOP}
    # an originator that is no node
    ok, refused = o.check("n3", [P("10.200.2.0/26")], PathAttributes(origin=0, as_path=(), originator_id="1.2.3.4"),
                          ("10.77.0.2",))
    assert not ok and reasons(refused) == {"10.200.2.0/26": BAD_ORIGINATOR}
    # ADD-PATH: the identifier in front is skipped, and kept in what comes back
    pid = b"\0\0\0\7"
    ok, refused = o.check("n1", [pid + P("10.200.1.0/26"), pid + P("10.200.2.0/26")], attrs, ("10.77.0.1",), 4)
    assert ok == [pid + P("10.200.1.0/26")] and refused[0][0] == pid + P("10.200.2.0/26")


def test_off_and_strict_from_the_bgpconfiguration() -> None:
    text = mesh_yaml(2)
    assert BlockOwners.from_model(load_model(text)) is not None
    off = (f"{HEAD}kind: BGPConfiguration\nmetadata:\n  name: default\n  annotations:\n"
           "    policy.tortie.io/block-ownership: 'off'\nspec: {}\n---\n" + text)
    assert BlockOwners.from_model(load_model(off)) is None
    strict = off.replace("'off'", "strict")
    o = BlockOwners.from_model(load_model(strict))
    assert o is not None and o.blocks == {P("10.200.1.0/26"): "n1", P("10.200.2.0/26"): "n2"}


def test_a_peer_that_is_no_node_is_judged_by_the_pools_only() -> None:
    rib = Rib(Identity(64512, "10.77.0.1", addresses=frozenset({"10.77.0.1"})),
              pools_from_networks([ipaddress.ip_network("10.200.0.0/16")]))
    rib.owners = owners()
    tor = PeerInfo("10.77.0.254", "10.77.0.254", 65001, 64512)  # no node
    n3 = PeerInfo("10.77.0.3", "10.77.0.3", 64512, 64512, node="n3")
    rib.add_peer(tor)
    rib.add_peer(n3)
    upd = Update(attributes=PathAttributes(origin=0, as_path=(), next_hop="10.77.0.254"),
                 nlri=[P("10.200.2.0/26")])
    rib.receive_update(tor, upd)
    assert P("10.200.2.0/26") in rib.loc[IPV4_UNICAST].best
    upd3 = Update(attributes=PathAttributes(origin=0, as_path=(), next_hop="10.77.0.3"), nlri=[P("10.200.2.0/26")])
    rib.receive_update(n3, upd3)
    assert rib.loc[IPV4_UNICAST].best[P("10.200.2.0/26")].source is tor
    assert rib.peers[n3].policy.rejected[NOT_OWNER] == 1


def wrong_affinity_cluster() -> tuple[str, str]:
    """The cluster as everyone has it, and as n3 has it: n3 given n1's block too."""
    right = mesh_yaml(3)
    return right, right.replace(block("n1", "10.200.1.0/26"), block("n3", "10.200.1.0/26"))


def test_a_host_given_a_wrong_affinity_changes_no_other_host(caplog: pytest.LogCaptureFixture) -> None:
    right, wrong = wrong_affinity_cluster()
    net = Net()
    sp = {}
    for name in ("n1", "n2", "n3"):
        topo, model = topology(wrong if name == "n3" else right, name)
        sp[name] = net.add(topo, model=model)
    with caplog.at_level(logging.WARNING, logger="tortie.bgp"):
        assert net.run(60, lambda: all(established(s) for s in sp.values()))
        net.run(net.now + 5)
    assert "10.200.1.0/26" in {str(n) for n in sp["n3"].topology.originate}  # n3 does announce it
    for name, want in (("n1", {"10.200.2.0/26": "10.77.0.2", "10.200.3.0/26": "10.77.0.3"}),
                       ("n2", {"10.200.1.0/26": "10.77.0.1", "10.200.3.0/26": "10.77.0.3"})):
        assert learned(sp[name]) == want, name
        peer = sp[name].peers["10.77.0.3"]
        state = sp[name].rib.peers[peer.info]
        assert state.policy.rejected[NOT_OWNER] >= 1
        (refusal,) = state.refused[IPV4_UNICAST].values()
        assert refusal.reason == NOT_OWNER and "node n1" in refusal.detail
    # logged once per peer and prefix, however often it comes (n1 and n2 about n3; n3, misled, also
    # refuses n1's announcement of the block)
    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records
                if "refused by block ownership" in r.getMessage() and "peer 10.77.0.3 " in r.getMessage()]

    assert len(lines()) == 2 and all("10.200.1.0/26" in m for m in lines())
    n2 = sp["n2"]
    n3_info = n2.peers["10.77.0.3"].info
    n2.request_refresh("10.77.0.3", net.now)  # n3 sends it all again: counted again, not logged again
    net.run(net.now + 5)
    assert n2.rib.peers[n3_info].policy.rejected[NOT_OWNER] >= 2
    assert len(lines()) == 2


def test_affinities_that_move_take_held_routes_out_and_refused_ones_in() -> None:
    right, wrong = wrong_affinity_cluster()
    net = Net()
    sp = {}
    for name in ("n1", "n2", "n3"):
        topo, model = topology(wrong if name == "n3" else right, name)
        sp[name] = net.add(topo, model=model)
    assert net.run(60, lambda: all(established(s) for s in sp.values()))
    net.run(net.now + 5)
    # the cluster now says n3 holds 10.200.1.0/26 and n1 does not (the block moved): n2 takes n3's
    # route out of its refused table and n1's out of its Loc-RIB, without asking anyone again
    _t, model = topology(wrong, "n2")
    sent = sp["n2"].peers["10.77.0.1"].session.sent.copy()
    sp["n2"].set_owners(BlockOwners.from_model(model), net.now)
    net.run(net.now + 1)
    assert learned(sp["n2"])["10.200.1.0/26"] == "10.77.0.3"
    assert not sp["n2"].rib.peers[sp["n2"].peers["10.77.0.3"].info].refused.get(IPV4_UNICAST)
    n1_refused = sp["n2"].rib.peers[sp["n2"].peers["10.77.0.1"].info].refused[IPV4_UNICAST]
    assert [r.reason for r in n1_refused.values()] == [NOT_OWNER]
    assert sp["n2"].peers["10.77.0.1"].session.sent[5] == sent[5]  # no ROUTE-REFRESH was needed


def test_reflected_routes_carry_their_owner_through_the_reflector() -> None:
    text = reflector_yaml(4)
    net = Net()
    names = ["rr", "c1", "c2", "c3", "c4"]
    sp = {}
    for name in names:
        topo, model = topology(text, name)
        sp[name] = net.add(topo, model=model)
    assert net.run(60, lambda: all(established(s) for s in sp.values()))
    net.run(net.now + 5)
    for name in names[1:]:
        assert len(learned(sp[name])) == 3, (name, learned(sp[name]))
        for peer in sp[name].peers.values():
            assert not sp[name].rib.peers[peer.info].policy.rejected, name
