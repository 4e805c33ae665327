"""Three tortie-bgpd nodes in a node-to-node full mesh over real TCP in namespaces. Root only."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.netns import NetnsSet
from tests.conftest import require_root, require_tools
from tests.kernel.bgpd_support import (
    PREFIX,
    Bgpd,
    Host,
    NodeSpec,
    bridged_hosts,
    cluster_docs,
    diag,
    pool_doc,
    ss_established,
    wait_for,
    write_cluster,
)

POOL = "10.200.0.0/16"
NODES = [
    NodeSpec("a", "10.77.0.1", ["10.200.0.0/26"]),
    # .9 and .10: the text order ("10.77.0.10" < "10.77.0.9") differs from the numeric one, and Calico
    # decides the mesh's direction by the text order
    NodeSpec("b", "10.77.0.9", ["10.200.0.64/26"]),
    NodeSpec("c", "10.77.0.10", ["10.200.0.128/26"]),
]


@dataclass
class Mesh:
    nss: NetnsSet
    hosts: dict[str, Host]
    bgpd: dict[str, Bgpd]
    config: Path
    nodes: list[NodeSpec]

    def write(self) -> None:
        write_cluster(self.config, cluster_docs(self.nodes, [pool_doc(POOL)]))


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    require_root()
    require_tools("ip", "ss", "curl")
    tmp = tmp_path_factory.mktemp("mesh")
    nss = NetnsSet(prefix=PREFIX)
    try:
        hosts = bridged_hosts(nss, [(n.name, n.address) for n in NODES])
        m = Mesh(nss, hosts, {}, tmp / "cluster.yaml", [NodeSpec(n.name, n.address, list(n.blocks)) for n in NODES])
        m.write()
        for n in NODES:
            m.bgpd[n.name] = Bgpd(nss, hosts[n.name], m.config, tmp / "run" / n.name)
            m.bgpd[n.name].start()
        everyone = diag(*m.bgpd.values())
        for n in NODES:
            others = [o.address for o in NODES if o is not n]
            wait_for(lambda d=m.bgpd[n.name], o=others: d.established(*o), 60,
                     f"{n.name}'s mesh sessions Established", diag=everyone)
        yield m
    finally:
        nss.close()


def _blocks_of(nodes: list[NodeSpec], but: str) -> dict[str, str]:
    """block -> next hop (the originating node's address) for every node except `but`."""
    return {b: n.address for n in nodes if n.name != but for b in n.blocks}


def test_every_node_learns_the_others_blocks_with_their_next_hops(mesh: Mesh) -> None:
    for node in mesh.nodes:
        d = mesh.bgpd[node.name]
        want = _blocks_of(mesh.nodes, node.name)

        def learned(d: Bgpd = d, want: dict[str, str] = want) -> bool:
            got = {p: r["next_hop"] for p, r in d.learned().items()}
            return got == want

        wait_for(learned, 30, f"{node.name}'s Loc-RIB to hold {want}", diag=diag(d))
        rows = d.learned()
        for prefix, nh in want.items():
            row = rows[prefix]
            assert row["from"] == nh, row  # learned straight from the owner: no reflection in a mesh
            assert not row["stale"]
            assert row["originator_id"] is None and row["cluster_list"] == []
        # its own block is in the Loc-RIB as a local route
        own = {p for p, r in d.best().items() if r["from"] == "local"}
        assert own == set(node.blocks)


def test_status_shows_every_mesh_peer_established(mesh: Mesh) -> None:
    for node in mesh.nodes:
        st = mesh.bgpd[node.name].status()
        assert st["node"] == node.name and st["router_id"] == node.address and st["asn"] == 64512
        peers = {p["address"]: p for p in st["peers"]}
        assert set(peers) == {n.address for n in mesh.nodes if n is not node}
        for p in peers.values():
            assert p["state"] == "Established", p
            assert p["peer_type"] == "node-to-node mesh"


def test_one_tcp_connection_per_pair_the_lower_address_as_text_passive(mesh: Mesh) -> None:
    """Calico's BIRD template: `passive on` when the other node's address is greater as a string."""
    for node in mesh.nodes:
        conns = ss_established(mesh.hosts[node.name].ns)
        by_peer: dict[str, list[tuple[str, str]]] = {}
        for local, peer in conns:
            by_peer.setdefault(peer.rpartition(":")[0], []).append((local, peer))
        assert set(by_peer) == {n.address for n in mesh.nodes if n is not node}, conns
        for peer_addr, pairs in by_peer.items():
            assert len(pairs) == 1, f"{node.name} has {len(pairs)} connections with {peer_addr}: {pairs}"
            local, peer = pairs[0]
            i_am_passive = peer_addr > node.address  # text order, as Go compares the strings
            # the passive side accepted: its local port is 179, the active side's is ephemeral
            if i_am_passive:
                assert local.endswith(":179") and not peer.endswith(":179"), pairs
            else:
                assert peer.endswith(":179") and not local.endswith(":179"), pairs
        # the daemon's own view agrees with the kernel's
        for n in mesh.bgpd[node.name].call("neighbors"):
            assert n["local_address"] == node.address


def test_added_block_is_advertised_and_removed_block_is_withdrawn(mesh: Mesh) -> None:
    new_block = "10.200.1.0/26"
    b = next(n for n in mesh.nodes if n.name == "b")
    others = [mesh.bgpd["a"], mesh.bgpd["c"]]
    b.blocks.append(new_block)
    try:
        mesh.write()
        for d in others:
            wait_for(lambda d=d: (r := d.learned().get(new_block)) and r["next_hop"] == b.address, 30,
                     f"{d.host.name} to learn {new_block} via {b.address}", diag=diag(d, mesh.bgpd["b"]))
        assert new_block in {p for p, r in mesh.bgpd["b"].best().items() if r["from"] == "local"}
    finally:
        b.blocks.remove(new_block)
        mesh.write()
    for d in others:
        wait_for(lambda d=d: new_block not in d.learned(), 30, f"{d.host.name} to withdraw {new_block}",
                 diag=diag(d, mesh.bgpd["b"]))
        # the node's original block is untouched by the withdrawal
        assert mesh.bgpd[d.host.name].learned()["10.200.0.64/26"]["next_hop"] == b.address
    for node in mesh.nodes:
        assert mesh.bgpd[node.name].established(*(n.address for n in mesh.nodes if n is not node))
