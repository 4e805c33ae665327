"""Peers and originated blocks derived from the cluster model, as Calico's confd would."""

from __future__ import annotations

from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest

from bgpd.topology import GLOBAL, MESH, NODE_SPECIFIC, RR_CLIENT, build, diff
from proto.resources import load_model

HEAD = "apiVersion: projectcalico.org/v3\n"


def node(name: str, addr: str, extra: str = "", labels: str = "") -> str:
    lab = f"\n  labels: {{{labels}}}" if labels else ""
    return f"{HEAD}kind: Node\nmetadata:\n  name: {name}{lab}\nspec:\n  bgp:\n    ipv4Address: {addr}\n{extra}"


POOL = f"""{HEAD}kind: IPPool
metadata: {{name: default-ipv4-ippool}}
spec: {{cidr: 192.168.0.0/16, blockSize: 26, ipipMode: Always, natOutgoing: true}}
"""


def block(node_name: str, cidr: str) -> str:
    return f"{HEAD}kind: BlockAffinity\nmetadata: {{name: {node_name}-b}}\nspec: {{node: {node_name}, cidr: {cidr}}}\n"


def seed(*extra: str) -> str:
    docs = [node("master", "10.30.0.10/24"), node("worker-1", "10.30.0.206/24"),
            node("worker-2", "10.30.0.56/24"), node("worker-3", "10.30.1.66/24"), POOL,
            block("worker-1", "192.168.226.64/26"), *extra]
    return "---\n".join(docs)


def test_full_mesh_of_the_article() -> None:
    topo = build(load_model(seed()), "master")
    assert topo.asn == 64512 and topo.router_id == ip_address("10.30.0.10")
    assert sorted(topo.peers) == ["10.30.0.206", "10.30.0.56", "10.30.1.66"]
    assert {p.peer_type for p in topo.peers.values()} == {MESH}
    assert all(not p.ebgp for p in topo.peers.values())
    # the higher address waits for the lower one to connect
    assert topo.peers["10.30.0.206"].passive is False  # 10.30.0.10 < 10.30.0.206
    w1 = build(load_model(seed()), "worker-1")
    assert w1.peers["10.30.0.10"].passive is True
    assert w1.peers["10.30.1.66"].passive is False
    assert w1.originate == (ip_network("192.168.226.64/26"),)
    assert topo.originate == ()


def test_mesh_disabled_and_global_peer() -> None:
    cfg = f"{HEAD}kind: BGPConfiguration\nmetadata: {{name: default}}\nspec: {{nodeToNodeMeshEnabled: false, asNumber: 64512}}\n"
    tor = f"{HEAD}kind: BGPPeer\nmetadata: {{name: tor}}\nspec: {{peerIP: 10.30.0.1, asNumber: 4200000001}}\n"
    topo = build(load_model(seed(cfg, tor)), "worker-1")
    assert list(topo.peers) == ["10.30.0.1"]
    p = topo.peers["10.30.0.1"]
    assert (p.peer_type, p.asn, p.ebgp, p.node, p.source_address) == (
        GLOBAL, 4200000001, True, None, ip_address("10.30.0.206"))


def test_node_specific_peer_with_options(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    peer = (f"{HEAD}kind: BGPPeer\nmetadata: {{name: w1-tor}}\nspec:\n  node: worker-1\n  peerIP: 10.30.0.1:1179\n"
            f"  asNumber: 65001\n  password: {{file: {secret}}}\n  keepOriginalNextHop: true\n"
            f"  keepaliveTime: 10s\n  ttlSecurity: 1\n  maxPrefixes: 1000\n  maxRestartTime: 30s\n")
    w1 = build(load_model(seed(peer)), "worker-1")
    p = w1.peers["10.30.0.1"]
    assert (p.peer_type, p.port, p.password, p.keep_original_next_hop, p.hold_time, p.ttl_security,
            p.max_prefixes, p.restart_time) == (NODE_SPECIFIC, 1179, "s3cret", True, 30, 1, 1000, 30.0)
    assert "10.30.0.1" not in build(load_model(seed(peer)), "worker-2").peers


def rr_cluster() -> str:
    cfg = f"{HEAD}kind: BGPConfiguration\nmetadata: {{name: default}}\nspec: {{nodeToNodeMeshEnabled: false}}\n"
    rr = "    routeReflectorClusterID: 224.0.0.1\n"
    docs = [node("rr-1", "10.30.0.2/24", rr, "route-reflector: 'true'"),
            node("rr-2", "10.30.0.3/24", rr, "route-reflector: 'true'"),
            node("worker-1", "10.30.0.206/24"), node("worker-2", "10.30.0.56/24"), POOL, cfg,
            f"{HEAD}kind: BGPPeer\nmetadata: {{name: peer-with-rrs}}\nspec:\n  nodeSelector: all()\n"
            "  peerSelector: route-reflector == 'true'\n",
            f"{HEAD}kind: BGPPeer\nmetadata: {{name: rr-mesh}}\nspec:\n  nodeSelector: route-reflector == 'true'\n"
            "  peerSelector: route-reflector == 'true'\n"]
    return "---\n".join(docs)


def test_route_reflectors_and_clients() -> None:
    model = load_model(rr_cluster())
    rr1 = build(model, "rr-1")
    assert rr1.is_route_reflector and str(rr1.cluster_id) == "224.0.0.1"
    assert sorted(rr1.peers) == ["10.30.0.206", "10.30.0.3", "10.30.0.56"]
    assert rr1.peers["10.30.0.206"].rr_client and rr1.peers["10.30.0.206"].peer_type == RR_CLIENT
    assert not rr1.peers["10.30.0.3"].rr_client  # reflector to reflector: non-client
    w1 = build(model, "worker-1")
    assert sorted(w1.peers) == ["10.30.0.2", "10.30.0.3"]  # only the reflectors, no mesh
    assert not any(p.rr_client for p in w1.peers.values())
    assert w1.peers["10.30.0.2"].passive  # 10.30.0.206 > 10.30.0.2


def test_reflectors_stay_out_of_the_mesh() -> None:
    rr = "    routeReflectorClusterID: 224.0.0.1\n"
    topo = build(load_model(seed(node("rr-1", "10.30.0.2/24", rr))), "worker-1")
    assert "10.30.0.2" not in topo.peers
    assert sorted(build(load_model(seed(node("rr-1", "10.30.0.2/24", rr))), "rr-1").peers) == []


def test_disable_bgp_export_and_disabled_pools() -> None:
    pool2 = f"{HEAD}kind: IPPool\nmetadata: {{name: quiet}}\nspec: {{cidr: 172.16.0.0/16, disableBGPExport: true}}\n"
    pool3 = f"{HEAD}kind: IPPool\nmetadata: {{name: old}}\nspec: {{cidr: 172.17.0.0/16, disabled: true}}\n"
    model = load_model(seed(pool2, pool3, block("worker-1", "172.16.0.0/26").replace("worker-1-b", "q"),
                            block("worker-1", "172.17.0.0/26").replace("worker-1-b", "o")))
    w1 = build(model, "worker-1")
    assert ip_network("172.16.0.0/26") not in w1.originate
    assert ip_network("172.17.0.0/26") in w1.originate
    assert ip_network("192.168.226.64/26") in w1.originate


def test_reload_difference() -> None:
    old = build(load_model(seed()), "worker-1")
    tor = f"{HEAD}kind: BGPPeer\nmetadata: {{name: tor}}\nspec: {{peerIP: 10.30.0.1, asNumber: 65001}}\n"
    new = build(load_model(seed(tor).replace(node("worker-3", "10.30.1.66/24") + "---\n", "")), "worker-1")
    d = diff(old, new)
    assert [str(p.address) for p in d.added] == ["10.30.0.1"]
    assert [str(p.address) for p in d.removed] == ["10.30.1.66"]
    assert d.changed == () and not d.originate_changed and not d.identity_changed
    assert diff(old, old) == diff(new, new)


def test_node_without_address_is_an_error() -> None:
    from bgpd.topology import TopologyError

    text = seed(f"{HEAD}kind: Node\nmetadata: {{name: bare}}\nspec: {{}}\n")
    with pytest.raises(TopologyError, match="ipv4Address"):
        build(load_model(text), "bare")
