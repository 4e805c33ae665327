"""A tortie-bgpd route reflector with four tortie-bgpd clients (no mesh), real TCP in namespaces. Root only."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.conftest import require_root, require_tools
from tests.kernel.bgpd_support import (
    Bgpd,
    NodeSpec,
    bgp_config_doc,
    bridged_cluster,
    cluster_docs,
    diag,
    peer_doc,
    pool_doc,
    wait_for,
)

CLUSTER_ID = "244.0.0.1"
REFLECTOR = NodeSpec("rr", "10.78.0.10", [], {"route-reflector": "true"}, rr_cluster_id=CLUSTER_ID)
CLIENTS = [NodeSpec(f"cl{i}", f"10.78.0.{10 + i}", [f"10.201.{i}.0/26"], {"rack": "a"}) for i in range(1, 5)]


@dataclass
class Reflection:
    rr: Bgpd
    clients: dict[str, Bgpd]


@pytest.fixture(scope="module")
def reflection(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reflection]:
    require_root()
    require_tools("ip")
    nodes = [REFLECTOR, *CLIENTS]
    docs = cluster_docs(nodes, [pool_doc("10.201.0.0/16")], bgp_config_doc(nodeToNodeMeshEnabled=False),
                        [peer_doc("peer-with-reflectors", nodeSelector="!has(route-reflector)",
                                  peerSelector="route-reflector == 'true'")])
    with bridged_cluster(tmp_path_factory.mktemp("rr"), nodes, docs) as c:
        clients = {n.name: c.bgpd[n.name] for n in CLIENTS}
        r = Reflection(c.bgpd[REFLECTOR.name], clients)
        wait_for(lambda: r.rr.established(*(n.address for n in CLIENTS)), 60,
                 "the reflector's client sessions Established", diag=c.everyone())
        yield r


def test_reflector_sees_four_clients_and_clients_only_the_reflector(reflection: Reflection) -> None:
    peers = {p["address"]: p for p in reflection.rr.status()["peers"]}
    assert set(peers) == {c.address for c in CLIENTS}
    assert all(p["peer_type"] == "route reflector client" and p["state"] == "Established" for p in peers.values())
    for c in CLIENTS:
        st = reflection.clients[c.name].status()
        # no mesh: a client's only peer is the reflector
        assert [p["address"] for p in st["peers"]] == [REFLECTOR.address], st


def test_every_client_learns_every_other_clients_block_through_the_reflector(reflection: Reflection) -> None:
    for c in CLIENTS:
        d = reflection.clients[c.name]
        want = {b: o for o in CLIENTS if o is not c for b in o.blocks}
        wait_for(lambda d=d, want=want: set(d.learned()) == set(want), 30,
                 f"{c.name} to learn {sorted(want)}", diag=diag(d, reflection.rr))
        rows = d.learned()
        for prefix, origin in want.items():
            row = rows[prefix]
            assert row["from"] == REFLECTOR.address, row
            assert row["next_hop"] == origin.address, row  # RFC 4456: the reflector leaves NEXT_HOP alone
            assert row["originator_id"] == origin.address, row  # the originating client's router id
            assert row["cluster_list"] == [CLUSTER_ID], row
            assert row["as_path"] == "", row  # iBGP all the way
            assert not row["stale"]


def test_reflector_holds_every_block_without_adding_its_own_attributes(reflection: Reflection) -> None:
    rows = reflection.rr.learned()
    assert set(rows) == {b for c in CLIENTS for b in c.blocks}
    for c in CLIENTS:
        row = rows[c.blocks[0]]
        assert row["from"] == c.address and row["next_hop"] == c.address
        assert row["originator_id"] is None and row["cluster_list"] == []
    # and it advertises every other client's block to each client, with the reflection attributes
    for c in CLIENTS:
        out = {r["prefix"]: r for r in reflection.rr.rib(peer=c.address, direction="out")}
        others = {b: o for o in CLIENTS if o is not c for b in o.blocks}
        assert set(out) >= set(others), out
        for prefix, origin in others.items():
            assert out[prefix]["next_hop"] == origin.address and out[prefix]["cluster_list"] == [CLUSTER_ID]
