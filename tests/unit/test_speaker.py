"""The sans-I/O speaker core: pairs and meshes of speakers joined in memory (tests/unit/speaker_net.py):
mesh, reflection with update groups, graceful restart, max-prefix, collisions. No sockets."""

from __future__ import annotations

import dataclasses

import pytest

from bgpd.fsm import State
from bgpd.ownership import BlockOwners
from bgpd.speaker import Speaker
from bgpd.update_group import UpdateGroup
from proto import prefix as pf
from tests.unit.speaker_net import Net, established, learned, topology

HEAD = "apiVersion: projectcalico.org/v3\n"
POOL = f"{HEAD}kind: IPPool\nmetadata: {{name: pool}}\nspec: {{cidr: 10.200.0.0/16, blockSize: 26}}\n"


def node(name: str, addr: str, labels: str = "", extra: str = "") -> str:
    lab = f"\n  labels: {{{labels}}}" if labels else ""
    return f"{HEAD}kind: Node\nmetadata:\n  name: {name}{lab}\nspec:\n  bgp:\n    ipv4Address: {addr}/24\n{extra}"


def block(n: str, cidr: str) -> str:
    return f"{HEAD}kind: BlockAffinity\nmetadata: {{name: {n}-{cidr.replace('/', '-')}}}\nspec: {{node: {n}, cidr: {cidr}}}\n"


def mesh_yaml(n: int, per_node: int = 1) -> str:
    docs = [POOL]
    for i in range(1, n + 1):
        docs.append(node(f"n{i}", f"10.77.0.{i}"))
        for j in range(per_node):
            docs.append(block(f"n{i}", f"10.200.{i}.{j * 64}/26"))
    return "---\n".join(docs)


def reflector_yaml(clients: int) -> str:
    cluster = f"{HEAD}kind: BGPConfiguration\nmetadata: {{name: default}}\nspec: {{nodeToNodeMeshEnabled: false}}\n"
    peering = (f"{HEAD}kind: BGPPeer\nmetadata: {{name: to-rr}}\nspec: {{nodeSelector: '!has(rr)', "
               "peerSelector: \"rr == 'yes'\"}\n")
    docs = [POOL, cluster, peering,
            node("rr", "10.77.0.250", "rr: 'yes'", "    routeReflectorClusterID: 244.0.0.1\n")]
    for i in range(1, clients + 1):
        docs.append(node(f"c{i}", f"10.77.{i // 200}.{i % 200 + 1}"))
        docs.append(block(f"c{i}", f"10.200.{i // 4}.{(i % 4) * 64}/26"))
    return "---\n".join(docs)


def start(net: Net, yaml_text: str, names: list[str], restarting: frozenset[str] = frozenset()) -> dict[str, Speaker]:
    out = {}
    for name in names:
        topo, model = topology(yaml_text, name)
        out[name] = net.add(topo, model=model, restarting=name in restarting)
    return out


def blocks_of(yaml_text: str, name: str) -> set[str]:
    topo, _ = topology(yaml_text, name)
    return {str(n) for n in topo.originate}


def test_a_mesh_of_five_learns_every_block_over_one_connection_each() -> None:
    text = mesh_yaml(5)
    net = Net()
    sp = start(net, text, [f"n{i}" for i in range(1, 6)])
    assert net.run(60, lambda: all(established(s) for s in sp.values()))
    for name, s in sp.items():
        want = {b: f"10.77.0.{i}" for i in range(1, 6) if f"n{i}" != name for b in blocks_of(text, f"n{i}")}
        assert net.run(net.now + 5, lambda s=s, want=want: learned(s) == want), (name, learned(s))
    # the higher address is passive: one connection per pair, no collision happened
    assert len(net.links) == 10
    for s in sp.values():
        for peer in s.peers.values():
            assert peer.neighbor.second is None and not peer.notifications_sent
            assert peer.neighbor.collisions == 0
    # every node's mesh peers share one update group (same export target and encoding)
    for s in sp.values():
        assert len(s.groups) == 1
        (group,) = s.groups.values()
        assert len(group.members) == 4


def test_a_new_block_reaches_every_node_and_a_withdrawn_one_leaves() -> None:
    text = mesh_yaml(3)
    net = Net()
    sp = start(net, text, ["n1", "n2", "n3"])
    assert net.run(60, lambda: all(established(s) for s in sp.values()))
    grown = text + "---\n" + block("n1", "10.200.1.64/26")
    topo, model = topology(grown, "n1")
    sp["n1"].set_originated(topo, net.now)
    # n2 and n3 do not know the new affinity yet: block ownership holds the route back, as refused
    net.run(net.now + 1)
    for n in ("n2", "n3"):
        assert "10.200.1.64/26" not in learned(sp[n])
        refused = sp[n].rib.peers[sp[n].peers["10.77.0.1"].info].refused
        assert [r.reason for t in refused.values() for r in t.values()] == ["no-block-affinity"]
        # the affinity reaches them (a reload): the refused route is judged again, no refresh needed
        sp[n].set_owners(BlockOwners.from_model(model), net.now)
    assert net.run(net.now + 1, lambda: all("10.200.1.64/26" in learned(sp[n]) for n in ("n2", "n3")))
    topo, _ = topology(text, "n1")
    sp["n1"].set_originated(topo, net.now)
    assert net.run(net.now + 1, lambda: all("10.200.1.64/26" not in learned(sp[n]) for n in ("n2", "n3")))


def test_reflector_reflects_every_client_block_encoding_each_route_once(monkeypatch: pytest.MonkeyPatch) -> None:
    n = 40
    text = reflector_yaml(n)
    net = Net()
    names = ["rr", *(f"c{i}" for i in range(1, n + 1))]
    sp = start(net, text, names)
    from proto.bgp import packing

    calls = {"n": 0}
    real = packing.pack_announcements

    def counting(*args: object, **kw: object) -> list[bytes]:
        calls["n"] += 1
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(packing, "pack_announcements", counting)
    assert net.run(120, lambda: all(established(s) for s in sp.values()))
    every = {b for i in range(1, n + 1) for b in blocks_of(text, f"c{i}")}
    for i in range(1, n + 1):
        c = sp[f"c{i}"]
        want = every - blocks_of(text, f"c{i}")
        assert net.run(net.now + 5, lambda c=c, want=want: set(learned(c)) == want), f"c{i}"
    rr = sp["rr"]
    # the clients are one update group: each client's route was exported and encoded a bounded
    # number of times (once per flush it took part in), not once per receiving client
    assert len(rr.groups) == 1
    (group,) = rr.groups.values()
    assert len(group.members) == n
    # (every client packs its own block for the reflector too: n calls of the total)
    assert calls["n"] <= 3 * n, calls["n"]  # one encoding per receiver would be n * (n - 1) = 1560
    # a client never gets its own route back: its Adj-RIB-In holds exactly the others' blocks
    for i in range(1, n + 1):
        c = sp[f"c{i}"]
        (peer,) = c.peers.values()
        assert len(c.rib.peers[peer.info].ins[(1, 1)]) == n - 1
        assert not peer.notifications_received


def test_reflected_route_carries_originator_and_cluster_list() -> None:
    text = reflector_yaml(3)
    net = Net()
    sp = start(net, text, ["rr", "c1", "c2", "c3"])
    assert net.run(60, lambda: all(established(s) for s in sp.values()))
    c2 = sp["c2"]
    key = pf.parse(next(iter(blocks_of(text, "c1"))))
    assert net.run(net.now + 5, lambda: c2.rib.loc[(1, 1)].best.get(key) is not None)
    best = c2.rib.loc[(1, 1)].best[key]
    assert best.attrs.originator_id == "10.77.0.2" and best.attrs.cluster_list == ("244.0.0.1",)
    assert best.next_hop == ("10.77.0.2",)


def test_graceful_restart_keeps_routes_and_the_restarting_speaker_waits_for_end_of_rib() -> None:
    text = mesh_yaml(3)
    net = Net()
    sp = start(net, text, ["n1", "n2", "n3"])
    assert net.run(60, lambda: all(established(s) for s in sp.values()))
    n1_blocks = blocks_of(text, "n1")
    assert net.run(net.now + 5, lambda: n1_blocks <= set(learned(sp["n2"])))
    # n1 is killed: its peers keep its routes, stale
    net.remove(sp["n1"], abrupt=True)
    net.settle()
    n2 = sp["n2"]
    stale = [n2.rib.loc[(1, 1)].best[pf.parse(b)] for b in n1_blocks]
    assert all(p.stale for p in stale)
    # it comes back as a restarting speaker: no advertisement until its peers' End-of-RIB
    topo, model = topology(text, "n1")
    back = net.add(topo, model=model, restarting=True)
    assert back.deferring
    assert net.run(net.now + 60, lambda: not back.deferring)
    assert net.run(net.now + 5, lambda: all(not n2.rib.loc[(1, 1)].best[pf.parse(b)].stale for b in n1_blocks))
    # and it learned everyone else's block before it stopped deferring
    assert set(learned(back)) == blocks_of(text, "n2") | blocks_of(text, "n3")
    # never a withdrawal of n1's blocks at n2 in between: they stayed in the Loc-RIB throughout
    assert n1_blocks <= set(learned(n2))


def test_max_prefixes_sends_cease_1_and_holds_the_peer_down() -> None:
    # both speakers set RFC 8538's N bit, so the Cease/1 goes out inside a Hard Reset (Cease/9)
    text = mesh_yaml(2, per_node=3).replace(
        "kind: Node\nmetadata:\n  name: n1\n",
        "kind: Node\nmetadata:\n  name: n1\n")
    limit = (f"{HEAD}kind: BGPPeer\nmetadata: {{name: limit}}\nspec: {{node: n1, peerIP: 10.77.0.2, "
             "asNumber: 64512, maxPrefixes: 2}\n")
    cfg = f"{HEAD}kind: BGPConfiguration\nmetadata: {{name: default}}\nspec: {{nodeToNodeMeshEnabled: false}}\n"
    back = (f"{HEAD}kind: BGPPeer\nmetadata: {{name: back}}\nspec: {{node: n2, peerIP: 10.77.0.1, "
            "asNumber: 64512}\n")
    text = "---\n".join([text, limit, cfg, back])
    net = Net()
    sp = start(net, text, ["n1", "n2"])
    n1 = sp["n1"]
    assert net.run(30, lambda: bool(n1.peers["10.77.0.2"].notifications_sent.get((6, 9))))
    peer = n1.peers["10.77.0.2"]
    # node-specific peerings connect from both sides, as in Calico: a collision Cease (6/7) may come first
    assert peer.notifications_sent[(6, 9)] == 1 and set(peer.notifications_sent) <= {(6, 9), (6, 7)}
    assert "Hard Reset" in (peer.last_sent or "") and "Maximum Number of Prefixes" in (peer.last_sent or "")
    assert peer.prefix_limit_hits == 1
    down_at = net.now
    # held down for 30 s, then it tries again (and is stopped again)
    assert not net.run(down_at + 25, lambda: peer.state == State.ESTABLISHED)
    assert net.run(down_at + 60, lambda: peer.notifications_sent[(6, 9)] >= 2)
    assert not learned(n1)  # its routes over the limit were withdrawn with the session


@pytest.mark.parametrize("delay", [0.0, 2.0])
def test_collision_when_both_sides_connect_keeps_one_session(delay: float) -> None:
    # two speakers that are not Nodes of one mesh: both active
    cfg = f"{HEAD}kind: BGPConfiguration\nmetadata: {{name: default}}\nspec: {{nodeToNodeMeshEnabled: false}}\n"
    peers = [f"{HEAD}kind: BGPPeer\nmetadata: {{name: p{i}}}\nspec: {{node: n{i}, peerIP: 10.77.0.{3 - i}, "
             "asNumber: 64512}\n" for i in (1, 2)]
    text = "---\n".join([mesh_yaml(2), cfg, *peers])
    net = Net()
    sp = {}
    for name in ("n1", "n2"):
        topo, model = topology(text, name)
        # Calico makes the higher address passive between Nodes; peers that are not both tortie
        # Nodes may both connect: that is the collision to resolve
        active = {k: dataclasses.replace(p, passive=False) for k, p in topo.peers.items()}
        sp[name] = net.add(dataclasses.replace(topo, peers=active), model=model, connect_delay=delay)
    assert net.run(60, lambda: all(established(s) for s in sp.values()))
    net.run(net.now + 5)
    for s in sp.values():
        (peer,) = s.peers.values()
        assert peer.neighbor.second is None and peer.state == State.ESTABLISHED
    collisions = sum(p.neighbor.collisions for s in sp.values() for p in s.peers.values())
    if delay:
        # Calico's connect delay: the side that waits longer takes the other's connection, no race
        assert collisions == 0
    else:
        assert collisions >= 1
    assert len(net.links) == 1
    if not delay:
        # the surviving connection is the one the higher identifier (n2, 10.77.0.2) opened
        assert net.links[0].a is sp["n2"]


def test_join_storm_shares_one_encoding_of_the_table() -> None:
    """Members joining within one window get the table encoded once."""
    from bgpd.export_policy import ExportPolicy, ExportTarget
    from bgpd.group_key import EncodingKey, GroupKey
    from bgpd.identity import Identity
    from bgpd.pool_set import PoolSet
    from bgpd.rib.path import PeerInfo
    from bgpd.rib.rib import Rib
    from proto.bgp import Negotiated

    v4 = (1, 1)
    me = Identity(64512, "10.0.0.1", cluster_id="244.0.0.1", addresses=frozenset({"10.0.0.1"}))
    pools = {v4: PoolSet(["10.200.0.0/16"], v4)}
    rib = Rib(me, pools)
    rib.originate(v4, [pf.parse(f"10.200.{i}.0/26") for i in range(50)])
    members = [PeerInfo(f"c{i}", f"10.1.0.{i}", 64512, 64512, f"10.1.0.{i}", rr_client=True,
                        next_hop_self={v4: ("10.0.0.1",)}) for i in range(1, 101)]

    class Counting:
        from proto.bgp import packing as real

        calls = 0

        def pack_announcements(self, *a: object) -> list[bytes]:
            Counting.calls += 1
            return self.real.pack_announcements(*a)  # type: ignore[arg-type]

        def pack_withdrawals(self, *a: object) -> list[bytes]:
            return self.real.pack_withdrawals(*a)  # type: ignore[arg-type]

        def end_of_rib(self, f: tuple[int, int]) -> bytes:
            return self.real.end_of_rib(f)

    key = GroupKey(ExportTarget.of(members[0]), EncodingKey.of(Negotiated()), (v4,))
    group = UpdateGroup(key, ExportPolicy(me, pools), rib.loc, packer=Counting())  # type: ignore[arg-type]
    for m in members:
        group.join(m, 0.0)
    out = group.flush(1.0)
    assert Counting.calls == 1  # one attribute set, one encoding, for a hundred joiners
    assert len(out) == 100
    datas = {id(o.chunks[0]) for o in out.values()}
    assert len(datas) == 1  # the very same bytes object queued to every member
    assert all(o.updates >= 2 for o in out.values())  # the table and End-of-RIB


def test_two_octet_as_peer_rfc6793_both_ways() -> None:
    """A peer without the 4-octet AS capability: its AS4_PATH holds the real path, folded in on import;
    our own 4-octet AS goes to it as AS_TRANS with the real path in AS4_PATH."""
    from bgpd.session import Session
    from bgpd.session_config import SessionConfig
    from proto.bgp import AS_TRANS, AsPathSegment, PathAttributes, Update, decode_message

    cfg = f"{HEAD}kind: BGPConfiguration\nmetadata: {{name: default}}\nspec: {{nodeToNodeMeshEnabled: false}}\n"
    n1 = node("n1", "10.77.0.1", extra="    asNumber: 4200000002\n")
    old = (f"{HEAD}kind: BGPPeer\nmetadata: {{name: old}}\nspec: {{node: n1, peerIP: 10.77.0.9, "
           "asNumber: 65001}\n")
    text = "---\n".join([POOL, cfg, n1, block("n1", "10.200.1.0/26"), old])
    topo, model = topology(text, "n1")
    net = Net()
    sp = net.add(topo, model=model, connect_delay=0.0)
    connect = sp.next_event()
    assert connect is not None
    # an old speaker knows a 4-octet AS only as AS_TRANS
    peer_session = Session(SessionConfig(local_as=65001, peer_as=AS_TRANS, router_id="10.77.0.9",
                                         four_octet_as=False))
    peer_session.start(0, passive=True)
    mine = sp.connection_made(connect.session, 0, "10.77.0.1")  # type: ignore[union-attr]
    assert mine is not None
    peer_session.connection_made(0, outbound=False)

    def pump() -> bytes:
        got = b""
        for _ in range(20):
            a, b = mine.data_to_send(), peer_session.data_to_send()
            if a:
                got += a
                peer_session.receive_data(a, net.now)
            if b:
                sp.receive_data(mine, b, net.now)
            if not a and not b:
                return got
        return got

    pump()
    assert sp.peers["10.77.0.9"].state == State.ESTABLISHED
    assert not sp.peers["10.77.0.9"].negotiated.four_octet_as  # type: ignore[union-attr]
    # its route: AS_PATH 65001 AS_TRANS as a 2-octet speaker writes it, the real path in AS4_PATH
    attrs = PathAttributes(origin=0, as_path=(AsPathSegment(2, (65001, AS_TRANS)),), next_hop="10.77.0.9",
                           as4_path=(AsPathSegment(2, (65001, 4200000001)),))
    peer_session.send_update(Update(attributes=attrs, nlri=[pf.parse("10.200.9.0/26")]))
    pump()
    best = sp.rib.loc[(1, 1)].best[pf.parse("10.200.9.0/26")]
    assert best.attrs.as_path == (AsPathSegment(2, (65001, 4200000001)),)
    assert best.attrs.as4_path is None
    # our block, sent once the group flushes: AS_TRANS in AS_PATH, 4200000002 in AS4_PATH
    net.now = 1.0
    sp.handle_timer(net.now)
    sent = pump()
    updates = []
    pos = 0
    while pos < len(sent):
        length = int.from_bytes(sent[pos + 16 : pos + 18], "big")
        msg = decode_message(sent[pos : pos + length], peer_session.negotiated)
        if isinstance(msg, Update) and msg.nlri:
            updates.append(msg)
        pos += length
    (ours,) = [u for u in updates if pf.parse("10.200.1.0/26") in u.nlri]
    assert ours.attributes is not None
    assert ours.attributes.as_path == (AsPathSegment(2, (AS_TRANS,)),)
    assert ours.attributes.as4_path == (AsPathSegment(2, (4200000002,)),)
