"""The Calico v3 resources: every validation rule with a good and a bad document, defaults, the model."""

from __future__ import annotations

import dataclasses
import gc
import ipaddress
import textwrap
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proto.resources import (
    BGPConfiguration,
    BGPPeer,
    BlockAffinity,
    ClusterModel,
    IPPool,
    Node,
    NotFoundError,
    Password,
    ValidationError,
    WorkloadEndpoint,
    dump_list_yaml,
    dump_yaml,
    kind_for,
    load_model,
    load_resources,
    parse_duration,
    vtep_mac_for,
    workload_interface_name,
)

HEAD = "apiVersion: projectcalico.org/v3\n"

# The IPPool of the Calico routing article, as `calicoctl get ippool -o yaml` prints it, metadata included.
ARTICLE_POOL = textwrap.dedent("""\
    apiVersion: projectcalico.org/v3
    kind: IPPool
    metadata:
      creationTimestamp: "2021-06-01T10:00:00Z"
      name: default-ipv4-ippool
      resourceVersion: "1042"
      uid: 1f0e7b1c-9a7e-4c3e-b5f4-0c1d2e3f4a5b
    spec:
      blockSize: 26
      cidr: 192.168.0.0/16
      ipipMode: Never
      natOutgoing: true
      nodeSelector: all()
      vxlanMode: Never
    """)


def pool_doc(**spec: object) -> str:
    spec = {"cidr": "192.168.0.0/16", **spec}
    body = "".join(f"  {k}: {v}\n" for k, v in spec.items())
    return f"{HEAD}kind: IPPool\nmetadata:\n  name: p\nspec:\n{body}"


def node_doc(name: str = "n1", address: str = "10.30.0.10/24", extra: str = "") -> str:
    return f"{HEAD}kind: Node\nmetadata:\n  name: {name}\nspec:\n  bgp:\n    ipv4Address: {address}\n{extra}"


def peer_doc(spec: str) -> str:
    return f"{HEAD}kind: BGPPeer\nmetadata:\n  name: peer\nspec:\n" + textwrap.indent(textwrap.dedent(spec), "  ")


def error_of(text: str, source: str = "f.yaml") -> str:
    with pytest.raises(ValidationError) as info:
        load_model(text, source)
    return str(info.value)


# --- the article's pool and the error format -----------------------------------------------------

def test_article_pool_applies_verbatim() -> None:
    model = load_model(ARTICLE_POOL, "ippool.yaml")
    pool = model.pool("default-ipv4-ippool")
    assert pool.cidr == ipaddress.ip_network("192.168.0.0/16")
    assert pool.block_size == 26 and pool.nat_outgoing and pool.mode is None
    assert pool.node_selector.selects_all


def test_error_names_file_document_line_and_field() -> None:
    text = (f"{HEAD}kind: BGPConfiguration\n---\n"
            f"{HEAD}kind: Node\nmetadata: {{name: master}}\n---\n"
            f"{HEAD}kind: IPPool\nmetadata: {{name: default-ipv4-ippool}}\nspec:\n"
            "  ipipMode: Sometimes\n  cidr: 192.168.0.0/16\n")
    assert text.splitlines()[11] == "  ipipMode: Sometimes"
    assert error_of(text, "cluster.yaml") == (
        "cluster.yaml: document 3 (IPPool default-ipv4-ippool), line 12: spec.ipipMode: 'Sometimes' is "
        "not one of Never, Always, CrossSubnet")


def test_every_error_of_a_file_is_reported_in_order() -> None:
    text = pool_doc(ipipMode="Sometimes", natOutgoing="maybe") + "---\n" + node_doc(address="10.0.0.300/24")
    problems = error_of(text).splitlines()
    assert len(problems) == 3
    assert "document 1 (IPPool p), line 7: spec.ipipMode" in problems[0]
    assert "line 8: spec.natOutgoing: expected true or false, got 'maybe'" in problems[1]
    assert "document 2 (Node n1), line 16: spec.bgp.ipv4Address" in problems[2]  # lines count in the file


@pytest.mark.parametrize(("text", "path"), [
    (pool_doc(ipip="{enabled: true}"), "spec.ipip"),
    (pool_doc(**{"nat-outgoing": "true"}), "spec.nat-outgoing"),
    (pool_doc().replace("name: p", "name: p\n  owner: me"), "metadata.owner"),
    (pool_doc() + "extra: 1\n", "extra"),
    (node_doc(extra="    communities: []\n"), "spec.bgp.communities"),
    (node_doc(extra="  orchRefs: [{orchestrator: k8s, nodeName: n1, zone: a}]\n"), "spec.orchRefs[0].zone"),
    (peer_doc("peerIP: 10.0.0.1\nasNumber: 65000\nholdTime: 90s\n"), "spec.holdTime"),
    (f"{HEAD}kind: BGPConfiguration\nmetadata: {{name: default}}\nspec:\n  serviceClusterIPs: [{{cidr: 10.96.0.0/12, x: 1}}]\n",
     "spec.serviceClusterIPs[0].x"),
])
def test_unimplemented_field_is_rejected_by_name(text: str, path: str) -> None:
    assert f"{path}: tortie does not implement this field" in error_of(text)


def test_datastore_metadata_and_status_are_accepted_and_dropped() -> None:
    text = ARTICLE_POOL.replace("uid:", "generation: 3\n  annotations: {a: b}\n  uid:") + "status: {}\n"
    pool = load_model(text).pool("default-ipv4-ippool")
    assert "resourceVersion" not in dump_yaml([pool]) and "status" not in dump_yaml([pool])


@pytest.mark.parametrize(("text", "message"), [
    ("kind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.0.0.0/16}\n", "apiVersion: is required"),
    ("apiVersion: v1\nkind: ipPool\nmetadata: {cidr: 10.0.0.0/16}\n", "'v1' is not supported"),
    (f"{HEAD}kind: GlobalNetworkPolicy\nmetadata: {{name: x}}\n", "'GlobalNetworkPolicy' is not a kind"),
    (f"{HEAD}kind: IPPool\nspec: {{cidr: 10.0.0.0/16}}\n", "metadata.name: is required"),
    (f"{HEAD}kind: IPPool\nmetadata: {{name: 'bad name'}}\nspec: {{cidr: 10.0.0.0/16}}\n",
     "name must consist of lower case alphanumeric characters, '-' or '.'"),
    ("a: [1, 2\n", "not valid YAML"),
    ("- 1\n- 2\n", "expected a resource mapping"),
    (pool_doc() + "kind: IPPool\n", "duplicate key"),
])
def test_document_shape_errors(text: str, message: str) -> None:
    assert message in error_of(text)


def test_yaml_syntax_error_names_the_line() -> None:
    assert error_of(pool_doc() + "  natOutgoing: [true\n").startswith("f.yaml: line ")


# --- IPPool ------------------------------------------------------------------------------------

def load_pool(text: str) -> IPPool:
    return load_model(text).pool("p")


def test_pool_defaults_as_calico() -> None:
    pool = load_pool(pool_doc())
    assert (pool.block_size, pool.ipip_mode, pool.vxlan_mode, pool.nat_outgoing, pool.disabled) == (
        26, "Never", "Never", False, False)
    assert pool.allowed_uses == ("Workload", "Tunnel") and pool.node_selector.selects_all
    assert load_pool(pool_doc(cidr="fd00:10::/64")).block_size == 122


@pytest.mark.parametrize(("cidr", "size", "ok"), [
    ("10.0.0.0/16", 20, True), ("10.0.0.0/16", 32, True), ("10.0.0.0/16", 19, False),
    ("10.0.0.0/16", 33, False), ("fd00::/64", 116, True), ("fd00::/64", 128, True),
    ("fd00::/64", 115, False), ("fd00::/64", 129, False),
    ("10.0.0.0/28", 26, False),  # an enabled pool must hold at least one block
    ("10.0.0.0/26", 26, True),
])
def test_block_size_range(cidr: str, size: int, ok: bool) -> None:
    text = pool_doc(cidr=cidr, blockSize=size)
    if ok:
        assert load_pool(text).block_size == size
    elif cidr.endswith("/28"):
        assert "spec.cidr: IP pool size is too small for use with Calico IPAM" in error_of(text)
    else:
        assert f"spec.blockSize: IPv{4 if '.' in cidr else 6} block size must be between" in error_of(text)


@pytest.mark.parametrize("field", ["ipipMode", "vxlanMode"])
@pytest.mark.parametrize("value", ["Never", "Always", "CrossSubnet"])
def test_modes_accept_calicos_values(field: str, value: str) -> None:
    assert getattr(load_pool(pool_doc(**{field: value})), "ipip_mode" if field == "ipipMode" else "vxlan_mode") == value


@pytest.mark.parametrize("value", ["always", "Sometimes", "true", "1"])
def test_modes_reject_others(value: str) -> None:
    assert "is not one of Never, Always, CrossSubnet" in error_of(pool_doc(vxlanMode=value))


@pytest.mark.parametrize(("ipip", "vxlan", "mode", "encap"), [
    ("Never", "Never", None, "Never"), ("Always", "Never", "ipip", "Always"),
    ("CrossSubnet", "Never", "ipip", "CrossSubnet"), ("Never", "Always", "vxlan", "Always"),
    ("Never", "CrossSubnet", "vxlan", "CrossSubnet"),
])
def test_mode_follows_calicos_rule(ipip: str, vxlan: str, mode: str | None, encap: str) -> None:
    pool = load_pool(pool_doc(ipipMode=ipip, vxlanMode=vxlan))
    assert pool.mode == mode and pool.encapsulation == encap


def test_ipip_and_vxlan_not_both() -> None:
    assert "spec.vxlanMode: ipipMode and vxlanMode cannot both be enabled" in error_of(
        pool_doc(ipipMode="Always", vxlanMode="CrossSubnet"))


def test_no_ipip_on_ipv6() -> None:
    assert "spec.ipipMode: IPIP is not supported on IPv6" in error_of(pool_doc(cidr="fd00::/64", ipipMode="Always"))
    assert load_pool(pool_doc(cidr="fd00::/64", vxlanMode="Always")).mode == "vxlan"


@pytest.mark.parametrize("cidr", ["169.254.0.0/16", "169.254.10.0/24", "169.0.0.0/8", "fe80::/64"])
def test_no_link_local_pool(cidr: str) -> None:
    assert "Link Local range" in error_of(pool_doc(cidr=cidr, blockSize=26 if "." in cidr else 122))


@pytest.mark.parametrize(("cidr", "message"), [
    ("192.168.0.1/16", "IPPool CIDR is not strictly masked: '192.168.0.1/16' has host bits set; did you mean "
                       "192.168.0.0/16"),
    ("192.168.0.0", "IPPool CIDR must be a valid subnet: '192.168.0.0' has no prefix length"),
    ("bogus/8", "IPPool CIDR must be a valid subnet"),
])
def test_pool_cidr_must_be_a_network(cidr: str, message: str) -> None:
    assert message in error_of(pool_doc(cidr=cidr))


def test_pool_selector_and_uses() -> None:
    pool = load_pool(pool_doc(nodeSelector="\"rack == 'a'\"", allowedUses="[Workload]"))
    assert pool.node_selector.matches({"rack": "a"}) and not pool.node_selector.matches({})
    assert "spec.nodeSelector: no closing ')' after has(" in error_of(pool_doc(nodeSelector="has(rack"))
    assert "spec.allowedUses[1]: unknown use: 'Loadbalancer'" in error_of(pool_doc(allowedUses="[Workload, Loadbalancer]"))


def test_overlapping_pools_rejected() -> None:
    text = pool_doc(cidr="10.0.0.0/16") + "---\n" + pool_doc(cidr="10.0.128.0/20").replace("name: p", "name: q")
    assert "document 2 (IPPool q), line 13: spec.cidr: 10.0.128.0/20 overlaps IPPool p (10.0.0.0/16)" in error_of(text)
    ok = pool_doc(cidr="10.0.0.0/16") + "---\n" + pool_doc(cidr="10.1.0.0/16").replace("name: p", "name: q")
    assert len(load_model(ok).pools) == 2


def test_cidr_and_block_size_are_immutable() -> None:
    model = load_model(pool_doc(cidr="10.0.0.0/16", ipipMode="Always"), "cluster.yaml")
    changed = load_resources(pool_doc(cidr="10.0.0.0/16", ipipMode="Never", natOutgoing="true"), "ippool.yaml")
    after = model.apply(changed.resources)
    assert after.pool("p").ipip_mode == "Never" and after.pool("p").nat_outgoing
    for spec, path in (({"cidr": "10.1.0.0/16"}, "spec.cidr"), ({"cidr": "10.0.0.0/16", "blockSize": 24},
                                                                   "spec.blockSize")):
        new = load_resources(pool_doc(**spec), "ippool.yaml").resources
        with pytest.raises(ValidationError) as info:
            model.apply(new)
        assert "ippool.yaml: document 1 (IPPool p), line " in str(info.value)
        assert f"{path}: cannot change" in str(info.value) and "immutable" in str(info.value)


# --- Node --------------------------------------------------------------------------------------

def test_node_fields() -> None:
    node = load_model(node_doc(extra="    asNumber: 65001\n    routeReflectorClusterID: 244.0.0.1\n"
                                     "    ipv6Address: fd00::10/64\n    ipv4IPIPTunnelAddr: 192.168.0.1\n"
                                     "  ipv4VXLANTunnelAddr: 192.168.0.2\n  vxlanTunnelMACAddr: 66:AA:bb:cc:dd:ee\n"
                                )).node("n1")
    assert node.ipv4_address == ipaddress.ip_interface("10.30.0.10/24")
    assert node.ipv4_address.network == ipaddress.ip_network("10.30.0.0/24")
    assert node.as_number == 65001 and node.is_route_reflector
    assert node.ipv6_address == ipaddress.ip_interface("fd00::10/64")
    assert str(node.ipv4_vxlan_tunnel_addr) == "192.168.0.2" and node.vtep_mac == "66:aa:bb:cc:dd:ee"


def test_ipv4_address_without_prefix_length_is_accepted_with_a_warning() -> None:
    model = load_model(node_doc(address="10.30.0.10"), "cluster.yaml")
    assert model.node("n1").ipv4_address == ipaddress.ip_interface("10.30.0.10/32")
    assert len(model.warnings) == 1
    assert str(model.warnings[0]).startswith("cluster.yaml: document 1 (Node n1), line 7: spec.bgp.ipv4Address: "
                                             "10.30.0.10 has no prefix length: ")
    assert "CrossSubnet" in str(model.warnings[0])
    assert "Invalid IPv4 CIDR" in error_of(node_doc(address="fd00::1/64"))


def test_slash_32_address_warns_loudly() -> None:
    model = load_model(node_doc(address="10.30.0.10/32"), "cluster.yaml")
    assert len(model.warnings) == 1
    warning = str(model.warnings[0])
    assert warning.startswith("cluster.yaml: document 1 (Node n1), line 7: spec.bgp.ipv4Address: 10.30.0.10/32 is a /32")
    assert "CrossSubnet" in warning
    assert load_model(node_doc()).warnings == ()


def test_vtep_mac_derived_as_calico() -> None:
    import hashlib
    assert vtep_mac_for("worker-1") == "66:" + ":".join(f"{b:02x}" for b in hashlib.sha1(b"worker-1").digest()[:5])
    assert load_model(node_doc()).node("n1").vtep_mac == vtep_mac_for("n1")


def test_as_numbers() -> None:
    assert load_model(node_doc(extra="    asNumber: '1.10'\n")).node("n1").as_number == 65546
    assert "AS 0 is reserved (RFC 7607)" in error_of(node_doc(extra="    asNumber: 0\n"))
    assert "invalid AS Number format (abc)" in error_of(node_doc(extra="    asNumber: abc\n"))


def test_duplicate_node_address_rejected() -> None:
    text = node_doc("a", "10.0.0.1/24") + "---\n" + node_doc("b", "10.0.0.1/24")
    assert "already the address of Node a" in error_of(text)


# --- BGPPeer -----------------------------------------------------------------------------------

def load_peer(spec: str) -> BGPPeer:
    return load_model(peer_doc(spec)).get("BGPPeer", "peer")  # type: ignore[return-value]


def test_peer_ip_with_port() -> None:
    peer = load_peer("peerIP: 10.0.0.1:1179\nasNumber: 65000\n")
    assert str(peer.peer_ip) == "10.0.0.1" and peer.peer_port == 1179
    peer = load_peer("peerIP: '[fd00::1]:1179'\nasNumber: 65000\n")
    assert str(peer.peer_ip) == "fd00::1" and peer.peer_port == 1179
    assert load_peer("peerIP: fd00::1\nasNumber: 65000\n").peer_port is None
    assert "is not an IP address" in error_of(peer_doc("peerIP: 10.0.0.300\nasNumber: 1\n"))


@pytest.mark.parametrize(("spec", "message"), [
    ("node: a\nnodeSelector: all()\npeerIP: 10.0.0.1\nasNumber: 1\n", "spec.nodeSelector: node and nodeSelector cannot both be set"),
    ("peerSelector: has(rr)\npeerIP: 10.0.0.1\n", "spec.peerIP: peerIP and peerSelector cannot both be set"),
    ("peerSelector: has(rr)\nasNumber: 65000\n", "spec.asNumber: asNumber must be empty when peerSelector is set"),
    ("asNumber: 65000\n", "spec.peerIP: is required"),
    ("peerIP: 10.0.0.1\n", "spec.asNumber: is required with peerIP"),
    ("peerIP: 10.0.0.1\nasNumber: 1\nsourceAddress: Any\n", "'Any' is not one of UseNodeIP, None"),
    ("peerIP: 10.0.0.1\nasNumber: 1\nttlSecurity: 300\n", "300 is not in the range 0 to 255"),
    ("peerIP: 10.0.0.1\nasNumber: 1\nmaxRestartTime: 120\n", "needs a unit"),
    ("peerIP: 10.0.0.1\nasNumber: 1\nkeepaliveTime: soon\n", "is not a duration"),
    ("peerIP: 10.0.0.1\nasNumber: 1\nmaxPrefixes: 0\n", "spec.maxPrefixes: 0 is not in the range"),
    ("peerIP: 10.0.0.1\nasNumber: 1\npassword: {secretKeyRef: {name: s}}\n",
     "spec.password.secretKeyRef.key: is required"),
    ("peerIP: 10.0.0.1\nasNumber: 1\npassword: {file: relative}\n", "spec.password.file: expected an absolute path"),
    ("peerIP: 10.0.0.1\nasNumber: 1\npassword: hunter2\n", "spec.password: expected a mapping"),
])
def test_peer_rules(spec: str, message: str) -> None:
    assert message in error_of(peer_doc(spec))


def test_peer_options_and_selection(tmp_path) -> None:  # type: ignore[no-untyped-def]
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    peer = load_peer(f"nodeSelector: rack == 'a'\npeerIP: 10.0.0.1\nasNumber: 65000\npassword: {{file: {secret}}}\n"
                     "keepOriginalNextHop: true\nmaxRestartTime: 2m\nkeepaliveTime: 1m30s\nttlSecurity: 1\n"
                     "sourceAddress: None\nmaxPrefixes: 1000\n")
    assert peer.password == Password(secret) and peer.password.read() == "s3cret"
    assert (peer.max_restart_time, peer.keepalive_time, peer.ttl_security, peer.max_prefixes) == (120, 90, 1, 1000)
    assert peer.keep_original_next_hop and peer.source_address == "None"
    a = Node(name="a", labels={"rack": "a"})  # type: ignore[arg-type]
    b = Node(name="b")
    assert peer.applies_to(a) and not peer.applies_to(b)
    rr = load_peer("nodeSelector: all()\npeerSelector: route-reflector == 'true'\n")
    assert rr.applies_to(b) and rr.selects_peer(Node(name="r", labels={"route-reflector": "true"}))  # type: ignore[arg-type]
    assert not rr.selects_peer(b)
    assert load_peer("node: a\npeerIP: 10.0.0.1\nasNumber: 1\n").applies_to(a)
    assert load_peer("peerIP: 10.0.0.1\nasNumber: 1\n").applies_to(b)  # global peer


def test_durations() -> None:
    assert parse_duration("120s") == 120 and parse_duration("2m") == 120 and parse_duration("500ms") == 0.5
    assert parse_duration("1h30m") == 5400
    with pytest.raises(ValueError):
        parse_duration("2 minutes")


# --- BGPConfiguration ----------------------------------------------------------------------------

def test_bgp_configuration_defaults() -> None:
    assert ClusterModel().bgp_config == BGPConfiguration()
    cfg = ClusterModel().bgp_config
    assert (cfg.as_number, cfg.node_to_node_mesh_enabled, cfg.listen_port) == (64512, True, 179)
    cfg = load_model(f"{HEAD}kind: BGPConfiguration\nmetadata: {{name: default}}\nspec:\n  asNumber: 65000\n"
                     "  nodeToNodeMeshEnabled: true\n  listenPort: 1179\n  nodeMeshPassword: {file: /etc/pw}\n"
                     "  nodeMeshMaxRestartTime: 90s\n  logSeverityScreen: Debug\n  prometheusMetricsPort: 9999\n"
                     ).bgp_config
    assert (cfg.as_number, cfg.node_to_node_mesh_enabled, cfg.listen_port, cfg.node_mesh_max_restart_time) == (
        65000, True, 1179, 90)
    assert cfg.node_mesh_password == Password(file=__import__("pathlib").Path("/etc/pw"))
    assert cfg.log_severity_screen == "Debug" and cfg.prometheus_metrics_port == 9999


@pytest.mark.parametrize(("spec", "message"), [
    ("listenPort: 70000", "70000 is not in the range 1 to 65535"),
    ("logSeverityScreen: Loud", "'Loud' is not one of Trace, Debug, Info"),
    ("nodeToNodeMeshEnabled: 'yes'", "expected true or false"),
])
def test_bgp_configuration_rules(spec: str, message: str) -> None:
    assert message in error_of(f"{HEAD}kind: BGPConfiguration\nmetadata: {{name: default}}\nspec:\n  {spec}\n")


def test_node_specific_bgp_configuration_cannot_set_cluster_fields() -> None:
    assert "spec.asNumber: Cannot set asNumber on a non default BGP Configuration." in error_of(
        f"{HEAD}kind: BGPConfiguration\nmetadata: {{name: node.worker-1}}\nspec: {{asNumber: 65000}}\n")


# --- BlockAffinity and WorkloadEndpoint ----------------------------------------------------------

def block_doc(node: str, cidr: str, name: str | None = None, extra: str = "") -> str:
    meta = f"metadata: {{name: {name}}}\n" if name else ""
    return f"{HEAD}kind: BlockAffinity\n{meta}spec:\n  node: {node}\n  cidr: {cidr}\n{extra}"


def test_block_affinity() -> None:
    model = load_model(pool_doc(cidr="10.0.0.0/16") + "---\n" + block_doc("n1", "10.0.1.0/26", extra="  deleted: 'false'\n"))
    block = model.blocks[0]
    assert block.name == "n1-10-0-1-0-26" and block.state == "confirmed" and block.confirmed
    assert model.blocks_for("n1") == (block,) and model.node_for_block(block.cidr) == "n1"


@pytest.mark.parametrize(("cidr", "message"), [
    ("10.1.0.0/26", "10.1.0.0/26 is not inside any IPPool"),
    ("10.0.1.0/24", "is not a /26 block of IPPool p"),
    ("10.0.1.1/26", "has host bits set"),
])
def test_block_must_be_a_block_of_a_pool(cidr: str, message: str) -> None:
    assert message in error_of(pool_doc(cidr="10.0.0.0/16") + "---\n" + block_doc("n1", cidr))


def test_block_given_twice_rejected() -> None:
    text = pool_doc(cidr="10.0.0.0/16") + "---\n" + block_doc("n1", "10.0.1.0/26") + "---\n" + block_doc("n2", "10.0.1.0/26")
    assert "10.0.1.0/26 is already affine to node n1" in error_of(text)


def test_pending_blocks_are_not_the_nodes() -> None:
    model = load_model(pool_doc(cidr="10.0.0.0/16") + "---\n" + block_doc("n1", "10.0.1.0/26", extra="  state: pending\n"))
    assert model.blocks_for("n1") == ()
    assert "'gone' is not one of confirmed, pending, pendingDeletion" in error_of(
        pool_doc(cidr="10.0.0.0/16") + "---\n" + block_doc("n1", "10.0.1.0/26", extra="  state: gone\n"))


def wep_doc(name: str, iface: str, nets: str, node: str = "n1") -> str:
    return (f"{HEAD}kind: WorkloadEndpoint\nmetadata: {{name: {name}, namespace: default}}\nspec:\n"
            f"  node: {node}\n  interfaceName: {iface}\n  ipNetworks: {nets}\n  mac: 'EE:EE:EE:EE:EE:EE'\n")


def test_workload_endpoint() -> None:
    wep = load_model(wep_doc("pod-1", "cali0123456789a", "[192.168.0.5, fd00::5]")).workloads[0]
    assert wep.ip_networks == (ipaddress.ip_network("192.168.0.5/32"), ipaddress.ip_network("fd00::5/128"))
    assert wep.mac == "ee:ee:ee:ee:ee:ee" and wep.namespace == "default"
    assert "spec.interfaceName: 'cali0123456789ab' is not a Linux interface name" in error_of(
        wep_doc("p", "cali0123456789ab", "[192.168.0.5/32]"))
    assert "spec.ipNetworks[1]: 'x' is not an IP address" in error_of(wep_doc("p", "cali1", "[192.168.0.5/32, x]"))
    assert load_model(wep_doc("p", "cali1", "[]")).workloads[0].ip_networks == ()  # Calico allows none
    assert "already used by WorkloadEndpoint a" in error_of(
        wep_doc("a", "cali1", "[10.0.0.1]") + "---\n" + wep_doc("b", "cali1", "[10.0.0.2]"))


def test_interface_name_like_calico() -> None:
    name = workload_interface_name("default.pod-1")
    assert len(name) == 15 and name.startswith("cali")


# --- the model and its YAML ---------------------------------------------------------------------

def test_duplicate_names_rejected_but_kinds_are_separate() -> None:
    assert "a Node named 'n1' is already defined" in error_of(node_doc() + "---\n" + node_doc(address="10.0.0.2/24"))
    assert load_model(node_doc("p") + "---\n" + pool_doc()).node("p")


def test_list_wrapper_accepted() -> None:
    text = (f"{HEAD}kind: IPPoolList\nmetadata: {{resourceVersion: '7'}}\nitems:\n"
            "- apiVersion: projectcalico.org/v3\n  kind: IPPool\n  metadata: {name: a}\n  spec: {cidr: 10.0.0.0/16}\n"
            "- metadata: {name: b}\n  spec: {cidr: 10.1.0.0/16, ipipMode: Often}\n")
    assert "document 1 item 2 (IPPool b), line 10: spec.ipipMode: 'Often'" in error_of(text)
    model = load_model(text.replace("Often", "Always"))
    assert [p.name for p in model.pools] == ["a", "b"]
    assert "a IPPoolList holds only IPPool" in error_of(text.replace("  kind: IPPool\n", "  kind: Node\n"))


def seed_model() -> ClusterModel:
    from pathlib import Path
    path = Path(__file__).resolve().parents[2] / "configs" / "seed-cluster.yaml"
    return load_model(path.read_text(), str(path))


def test_dump_load_round_trip() -> None:
    model = seed_model()
    again = load_model(dump_yaml(model.resources))
    assert again == model and again.resources == model.resources
    listed = load_model(dump_list_yaml("Node", model.nodes, 3))
    assert listed.nodes == model.nodes


def test_model_lookups() -> None:
    model = seed_model()
    assert model.node("worker-1").ipv4_address == ipaddress.ip_interface("10.30.0.206/24")
    with pytest.raises(NotFoundError):
        model.node("nope")
    assert [str(b.cidr) for b in model.blocks_for("worker-2")] == ["192.168.133.192/26", "fd00:192:168:133::/122"]
    assert [w.name for w in model.workloads_for(model.node("worker-3"))] == ["pod-3"]
    assert model.pool_for("192.168.97.193").name == "default-ipv4-ippool"  # type: ignore[union-attr]
    assert model.pool_for(ipaddress.ip_network("192.168.97.192/26")) is not None
    assert model.pool_for("10.0.0.1") is None
    assert model.bgp_config.as_number == 64512 and model.as_number_of(model.node("master")) == 64512
    assert model.peers_for("master") == ()


def test_cross_subnet_rule() -> None:
    model = seed_model()
    pool = dataclasses.replace(model.pool("default-ipv4-ippool"), ipip_mode="CrossSubnet")
    master, w1, w3 = model.node("master"), model.node("worker-1"), model.node("worker-3")
    assert not pool.encapsulate_between(master, w1)  # same 10.30.0.0/24
    assert pool.encapsulate_between(master, w3)  # 10.30.1.66 is another subnet


def test_resources_are_immutable() -> None:
    pool = seed_model().pools[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        pool.cidr = ipaddress.ip_network("10.0.0.0/8")  # type: ignore[misc]
    assert hash(pool) == hash(dataclasses.replace(pool))


def test_apply_rejects_a_resource_given_twice() -> None:
    twice = load_resources(node_doc() + "---\n" + node_doc(address="10.0.0.9/24"), "in.yaml").resources
    with pytest.raises(ValidationError) as info:
        ClusterModel().apply(twice)
    assert str(info.value) == "in.yaml: document 2 (Node n1), line 12: metadata.name: Node 'n1' is given twice"


def test_delete() -> None:
    model = seed_model()
    smaller = model.delete([("WorkloadEndpoint", "pod-1")])
    assert len(smaller.workloads) == 2 and len(model.workloads) == 3
    with pytest.raises(NotFoundError):
        model.delete([("Node", "nope")])
    assert model.delete([("Node", "nope")], missing_ok=True) == model
    with pytest.raises(ValidationError, match="is not inside any IPPool"):
        model.delete([("IPPool", "default-ipv4-ippool")])  # its blocks would be orphaned


@pytest.mark.parametrize(("alias", "cls"), [
    ("ippool", IPPool), ("IPPools", IPPool), ("ipp", IPPool), ("pool", IPPool), ("bgppeer", BGPPeer),
    ("bp", BGPPeer), ("node", Node), ("nodes", Node), ("bgpconfig", BGPConfiguration),
    ("BGPConfiguration", BGPConfiguration), ("blockaffinities", BlockAffinity), ("wep", WorkloadEndpoint),
])
def test_kind_aliases(alias: str, cls: type) -> None:
    assert kind_for(alias) is cls


@pytest.mark.parametrize(("text", "message"), [
    (node_doc(extra="    routeReflectorClusterID: not-an-ip\n"), "spec.bgp.routeReflectorClusterID: 'not-an-ip' is not an IP"),
    (node_doc(extra="    routeReflectorClusterID: fd00::1\n"), "'fd00::1' is not an IPv4 address"),
    (node_doc(extra="    ipv6Address: 10.0.0.1/64\n"), "spec.bgp.ipv6Address: Invalid IPv6 CIDR"),
    (node_doc(extra="  vxlanTunnelMACAddr: 66:aa\n"), "spec.vxlanTunnelMACAddr: '66:aa' is not a MAC address"),
    (node_doc().replace("name: n1", "name: n1\n  labels: {rack: 1}"), "metadata.labels.rack: label values are strings"),
    (node_doc().replace("name: n1", "name: n1\n  labels: {'bad key!': x}"), "invalid label key 'bad key!'"),
    (wep_doc("p", "cali1", "[10.0.0.1]").replace("EE:EE:EE:EE:EE:EE", "nope"), "spec.mac: 'nope' is not a MAC"),
    (pool_doc(assignmentMode="Sometimes"), "spec.assignmentMode: 'Sometimes' is not one of Automatic, Manual"),
    (peer_doc("peerIP: 10.0.0.1:0\nasNumber: 1\n"), "port 0 is not in the range 1 to 65535"),
    (f"{HEAD}kind: BGPConfiguration\nspec:\n  prometheusMetricsHost: localhost\n",
     "spec.prometheusMetricsHost: 'localhost' is not an IP address"),
    (block_doc("n1", "10.0.1.0/26", extra="  deleted: maybe\n"), "spec.deleted: expected true or false"),
])
def test_more_field_rules(text: str, message: str) -> None:
    assert message in error_of(text)


def test_more_fields_good() -> None:
    node = load_model(node_doc(extra="    routeReflectorClusterID: 244.0.0.1\n").replace(
        "name: n1", "name: n1\n  labels: {kubernetes.io/hostname: n1, rack: 'a'}")).node("n1")
    assert dict(node.labels) == {"kubernetes.io/hostname": "n1", "rack": "a"}
    assert load_pool(pool_doc(assignmentMode="Manual")).assignment_mode == "Manual"
    cfg = load_model(f"{HEAD}kind: BGPConfiguration\nspec:\n  prometheusMetricsHost: 127.0.0.1\n").bgp_config
    assert cfg.name == "default" and cfg.prometheus_metrics_host == "127.0.0.1"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 255), st.integers(24, 30)), min_size=1, max_size=12))
def test_overlap_sweep_agrees_with_every_pair(nets: list[tuple[int, int]]) -> None:
    """The model's O(n log n) overlap check finds an overlap exactly when some pair overlaps, and every
    pair it reports overlaps, later resource first."""
    from proto.resources.model import _overlapping

    blocks = [BlockAffinity(name=f"b{i}", node="n", cidr=ipaddress.ip_network((0x0A000000 + (o << 8), length),
                                                                                 strict=False))
              for i, (o, length) in enumerate(nets)]
    pairs = _overlapping(blocks, lambda b: b.cidr)
    truth = any(a.cidr.overlaps(b.cidr) for i, a in enumerate(blocks) for b in blocks[:i])
    assert bool(pairs) == truth
    for later, earlier in pairs:
        assert later.cidr.overlaps(earlier.cidr) and blocks.index(later) > blocks.index(earlier)


def test_plain_data_loads_like_its_text() -> None:
    """A datastore's JSON value validated as data gives what the same document as text gives."""
    import json

    from proto.resources import ValidationError, load_data, load_resources

    good = {"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "p"},
            "spec": {"cidr": "10.0.0.0/16", "blockSize": 26, "ipipMode": "Always", "natOutgoing": True}}
    assert load_data(good, "/calico/resources/v3/projectcalico.org/ippools/p").resources == \
        load_resources(json.dumps(good)).resources
    bad = {**good, "spec": {**good["spec"], "blockSize": 19}}
    for call in (lambda: load_data(bad, "key"), lambda: load_resources(json.dumps(bad))):
        try:
            call()
        except ValidationError as exc:
            assert "blockSize" in str(exc)
        else:
            raise AssertionError("a block size of 19 was accepted")


def _cluster_text(n: int) -> str:
    docs = ["apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: pods}\nspec: {cidr: 172.16.0.0/16}\n"]
    for i in range(n):
        docs.append(f"apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {{name: node-{i}}}\n"
                    f"spec: {{bgp: {{ipv4Address: 10.80.0.{i + 1}/16}}}}\n")
        docs.append(f"apiVersion: projectcalico.org/v3\nkind: BlockAffinity\nmetadata: {{name: node-{i}-b}}\n"
                    f"spec: {{node: node-{i}, cidr: 172.16.{i}.0/26, state: confirmed, deleted: 'false'}}\n")
    return "---\n".join(docs)


def test_loading_keeps_nothing_once_the_model_is_gone() -> None:
    # a daemon reloads its cluster file on every change: a loader that kept the YAML nodes of earlier
    # loads (PyYAML's constructor caches every node it constructed) grew by the file's node tree each time
    text = _cluster_text(50)
    load_model(text)  # the first load imports and caches what every later load shares
    tracemalloc.start()
    try:
        load_model(text)  # proto.resources.reuse keeps the last load's documents: those of a traced load
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(5):
            load_model(text)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 20_000, f"five loads of a 100-resource file left {grown} bytes behind"
