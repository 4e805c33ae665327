"""Peers and originated blocks derived from the cluster model, as Calico's confd would."""

from __future__ import annotations

import textwrap
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
    # Calico's BIRD template: `passive on` when the other node's address is greater as text
    assert topo.peers["10.30.0.206"].passive is True  # "10.30.0.206" > "10.30.0.10"
    assert topo.peers["10.30.0.56"].passive is True
    w1 = build(load_model(seed()), "worker-1")
    assert w1.peers["10.30.0.10"].passive is False
    assert w1.peers["10.30.1.66"].passive is True
    w2 = build(load_model(seed()), "worker-2")  # 10.30.0.56: greater than "10.30.0.206" as text, not as a number
    assert w2.peers["10.30.0.206"].passive is False and w1.peers["10.30.0.56"].passive is True
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
    assert (p.peer_type, p.port, p.password, p.keep_original_next_hop, p.hold_time, p.keepalive_time,
            p.ttl_security, p.max_prefixes, p.restart_time) == (NODE_SPECIFIC, 1179, "s3cret", True, 90, 10.0, 1, 1000,
                                                                30.0)
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
    assert not any(p.passive for p in w1.peers.values())  # peerSelector peerings connect from both sides


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


# --- per-peer options and Calico's peering rules (confd client.go / bgp_processor.go) ---------------

def peer_doc(name: str, spec: str) -> str:
    body = "".join(f"  {line}\n" for line in textwrap.dedent(spec).strip().splitlines())
    return f"{HEAD}kind: BGPPeer\nmetadata: {{name: {name}}}\nspec:\n{body}"


def cfg_doc(spec: str, name: str = "default") -> str:
    body = "".join(f"  {line}\n" for line in spec.strip().splitlines())
    return f"{HEAD}kind: BGPConfiguration\nmetadata: {{name: {name}}}\nspec:\n{body}"


def test_per_peer_local_as_and_session_options() -> None:
    tor = peer_doc("tor", """
        peerIP: 10.30.0.1
        asNumber: 65001
        localASNumber: 65100
        keepaliveTime: 10400ms
        maxRestartTime: 59.6s
        ttlSecurity: 2
        numAllowedLocalASNumbers: 3
        sourceAddress: None
    """)
    p = build(load_model(seed(tor)), "worker-1").peers["10.30.0.1"]
    assert (p.asn, p.local_asn, p.ebgp) == (65001, 65100, True)
    assert (p.keepalive_time, p.restart_time, p.hold_time) == (10.0, 60.0, 90)  # whole seconds, as confd
    assert (p.ttl_security, p.allow_local_as, p.source_address) == (2, 3, None)


def test_ttl_security_zero_is_off_and_negative_allowance_is_none() -> None:
    tor = peer_doc("tor", "peerIP: 10.30.0.1\nasNumber: 65001\nttlSecurity: 0\nnumAllowedLocalASNumbers: -2")
    p = build(load_model(seed(tor)), "worker-1").peers["10.30.0.1"]
    assert p.ttl_security is None and p.allow_local_as == 0


def test_local_as_to_a_peer_in_our_own_as_makes_it_ebgp() -> None:
    tor = peer_doc("tor", "peerIP: 10.30.0.1\nasNumber: 64512\nlocalASNumber: 65100")
    assert build(load_model(seed(tor)), "worker-1").peers["10.30.0.1"].ebgp


def test_node_as_numbers_in_the_mesh() -> None:
    text = seed().replace("ipv4Address: 10.30.0.206/24\n", "ipv4Address: 10.30.0.206/24\n    asNumber: 65206\n")
    master = build(load_model(text), "master")
    assert master.peers["10.30.0.206"].asn == 65206 and master.peers["10.30.0.206"].ebgp
    w1 = build(load_model(text), "worker-1")
    assert w1.asn == 65206 and all(p.local_asn == 65206 and p.ebgp for p in w1.peers.values())


def test_local_as_does_not_apply_to_peer_selector_peerings() -> None:
    """Calico's nodeAsBGPPeers passes neither localASNumber nor numAllowedLocalASNumbers."""
    rr = "    routeReflectorClusterID: 224.0.0.1\n"
    docs = seed(node("rr-1", "10.30.0.2/24", rr, "rr: 'true'"),
                peer_doc("to-rr", "nodeSelector: all()\npeerSelector: rr == 'true'\nlocalASNumber: 65100\n"
                                  "numAllowedLocalASNumbers: 2\nkeepaliveTime: 5s\nttlSecurity: 1"))
    p = build(load_model(docs), "worker-1").peers["10.30.0.2"]
    assert (p.local_asn, p.allow_local_as, p.keepalive_time, p.ttl_security) == (64512, 0, 5.0, 1)


def test_listen_ports() -> None:
    docs = seed(cfg_doc("listenPort: 1179"), cfg_doc("listenPort: 2179", "node.worker-3"),
                peer_doc("to-w3", "node: worker-1\npeerIP: 10.30.1.66\nasNumber: 64512"),
                peer_doc("tor", "node: worker-1\npeerIP: 10.30.0.1\nasNumber: 65001"))
    model = load_model(docs)
    w1 = build(model, "worker-1")
    assert w1.listen_port == 1179
    assert w1.peers["10.30.0.10"].port == 1179  # mesh: the other node's port
    assert w1.peers["10.30.1.66"].port == 2179  # a peerIP that is a Node's address: that Node's port
    assert w1.peers["10.30.0.1"].port == 179  # not a Node: BGP's port
    assert build(model, "worker-3").listen_port == 2179


def test_secret_key_ref_passwords_come_from_the_secrets_directory(tmp_path: Path) -> None:
    (tmp_path / "bgp-secrets").mkdir()
    (tmp_path / "bgp-secrets" / "tor").write_text("hunter2\n")
    tor = peer_doc("tor", "peerIP: 10.30.0.1\nasNumber: 65001\n"
                          "password: {secretKeyRef: {name: bgp-secrets, key: tor}}")
    model = load_model(seed(tor))
    assert build(model, "worker-1", tmp_path).peers["10.30.0.1"].password == "hunter2"
    from bgpd.topology import TopologyError
    with pytest.raises(TopologyError, match=f"cannot read BGP password from {tmp_path}/elsewhere/bgp-secrets/tor: No such file"):
        build(model, "worker-1", tmp_path / "elsewhere")
    optional = load_model(seed(tor.replace("key: tor}", "key: tor, optional: true}")))
    assert build(optional, "worker-1", tmp_path / "elsewhere").peers["10.30.0.1"].password is None
    mesh = load_model(seed(cfg_doc("nodeMeshPassword: {secretKeyRef: {name: bgp-secrets, key: tor}}")))
    assert all(p.password == "hunter2" for p in build(mesh, "worker-1", tmp_path).peers.values())


def test_bind_mode() -> None:
    plain = build(load_model(seed()), "worker-1")
    assert plain.listen_addresses == ("10.30.0.206",)
    node_ip = build(load_model(seed(cfg_doc("bindMode: NodeIP"))), "worker-1")
    assert node_ip.listen_addresses == ("10.30.0.206",) and not diff(plain, node_ip).identity_changed
    anywhere = build(load_model(seed(cfg_doc("bindMode: None"))), "worker-1")
    assert anywhere.listen_addresses == ("0.0.0.0",) and diff(plain, anywhere).identity_changed


def test_peer_options_are_carried_in_peer_config() -> None:
    """filters, reachableBy and nextHopMode reach PeerConfig."""
    import dataclasses

    from proto.resources import BGPFilter, BGPPeer, ClusterModel

    base = load_model(seed())
    flt = BGPFilter(name="no-default")
    bp = BGPPeer(name="tor", peer_ip=ip_address("10.30.0.1"), as_number=65001, filters=("no-default",),
                 reachable_by=ip_address("10.30.0.254"), next_hop_mode="Self")
    model = ClusterModel([*base.resources, flt, bp])
    p = build(model, "worker-1").peers["10.30.0.1"]
    assert p.filters == (flt,) and p.reachable_by == ip_address("10.30.0.254") and p.next_hop_mode == "Self"
    assert dataclasses.replace(p, filters=()) != p  # a filter change restarts the session


def test_a_reachable_by_change_alone_leaves_the_peering_as_it_is() -> None:
    """reachableBy is felixd's static route to the peer; bgpd does nothing with it, so changing or
    removing it is no change of the session (as BIRD keeps its BGP protocol when the static one changes)."""
    tor = "peerIP: 10.30.0.1\nasNumber: 65001"
    before = build(load_model(seed(peer_doc("tor", tor + "\nreachableBy: 10.30.0.254"))), "worker-1")
    for spec in (tor + "\nreachableBy: 10.30.0.253", tor):
        after = build(load_model(seed(peer_doc("tor", spec))), "worker-1")
        d = diff(before, after)
        assert not (d.added or d.removed or d.changed), d
    assert before.peers["10.30.0.1"].reachable_by == ip_address("10.30.0.254")
    keepalive = build(load_model(seed(peer_doc("tor", tor + "\nreachableBy: 10.30.0.254\nkeepaliveTime: 5s"))),
                      "worker-1")
    assert diff(before, keepalive).changed  # anything else still is


def test_global_peer_to_a_node_is_one_way_node_specific_is_not() -> None:
    glob = peer_doc("g", "peerIP: 10.30.0.56\nasNumber: 64512")
    cfg = cfg_doc("nodeToNodeMeshEnabled: false")
    w1 = build(load_model(seed(cfg, glob)), "worker-1")
    assert w1.peers["10.30.0.56"].peer_type == GLOBAL and w1.peers["10.30.0.56"].passive  # "10.30.0.56" > ".206"
    specific = peer_doc("s", "node: worker-1\npeerIP: 10.30.0.56\nasNumber: 64512")
    w1 = build(load_model(seed(cfg, specific)), "worker-1")
    assert w1.peers["10.30.0.56"].peer_type == NODE_SPECIFIC and not w1.peers["10.30.0.56"].passive


def test_reverse_peering_of_a_peer_ip_and_manual() -> None:
    cfg = cfg_doc("nodeToNodeMeshEnabled: false")
    fwd = peer_doc("w1-to-w2", "node: worker-1\npeerIP: 10.30.0.56\nasNumber: 64512")
    w2 = build(load_model(seed(cfg, fwd)), "worker-2")
    assert list(w2.peers) == ["10.30.0.206"] and w2.peers["10.30.0.206"].peer_type == NODE_SPECIFIC
    manual = fwd.replace("asNumber: 64512", "asNumber: 64512\n  reversePeering: Manual")
    assert build(load_model(seed(cfg, manual)), "worker-2").peers == {}
    other_as = fwd.replace("asNumber: 64512", "asNumber: 65000")  # not worker-2's AS: not its peering
    assert build(load_model(seed(cfg, other_as)), "worker-2").peers == {}


def test_global_peers_win_over_node_specific_ones() -> None:
    specific = peer_doc("a-specific", "node: worker-1\npeerIP: 10.30.0.1\nasNumber: 65001\nkeepaliveTime: 5s")
    glob = peer_doc("z-global", "peerIP: 10.30.0.1\nasNumber: 65001\nkeepaliveTime: 7s")
    p = build(load_model(seed(specific, glob)), "worker-1").peers["10.30.0.1"]
    assert p.peer_type == GLOBAL and p.keepalive_time == 7.0 and p.source == "BGPPeer z-global"


def test_reflector_clients_as_calico() -> None:
    rr = "    routeReflectorClusterID: 224.0.0.1\n"
    other_cluster = "    routeReflectorClusterID: 224.0.0.2\n"
    docs = seed(cfg_doc("nodeToNodeMeshEnabled: false"),
                node("rr-1", "10.30.0.2/24", rr, "rr: 'a'"), node("rr-2", "10.30.0.3/24", rr, "rr: 'a'"),
                node("rr-3", "10.30.0.4/24", other_cluster, "rr: 'b'"),
                peer_doc("rrs", "nodeSelector: has(rr)\npeerSelector: has(rr)"),
                peer_doc("tor", "node: rr-1\npeerIP: 10.30.0.1\nasNumber: 64512"))
    rr1 = build(load_model(docs), "rr-1")
    assert not rr1.peers["10.30.0.3"].rr_client  # same cluster ID
    assert rr1.peers["10.30.0.4"].rr_client  # a reflector of another cluster is a client
    assert rr1.peers["10.30.0.1"].rr_client  # an iBGP peerIP peer of a reflector is a client
