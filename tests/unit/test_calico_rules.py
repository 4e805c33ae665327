"""Calico's own rules for every resource tortie reads, one test (or parameter) per rule, good and bad.

Sources (Calico v3.32): api pkg/apis/projectcalico/v3 (types and CRD rules), libcalico-go lib/validator/v3,
lib/clientv3 (ippool, bgpconfig), lib/selector, and k8s.io/apimachinery's name and label rules.
"""

from __future__ import annotations

import ipaddress
import textwrap

import pytest

from proto.resources import (
    NOT_YET,
    BGPConfiguration,
    BGPFilter,
    BGPPeer,
    ClusterModel,
    Community,
    FilterOperation,
    IPPool,
    Password,
    ValidationError,
    dump_yaml,
    load_model,
    load_resources,
    parse_as_number,
    parse_community,
)

HEAD = "apiVersion: projectcalico.org/v3\n"


def doc(kind: str, spec: str = "", name: str = "x", meta: str = "") -> str:
    body = textwrap.indent(textwrap.dedent(spec), "  ") if spec else ""
    extra = textwrap.indent(textwrap.dedent(meta).rstrip("\n") + "\n", "  ") if meta else ""
    return f"{HEAD}kind: {kind}\nmetadata:\n  name: {name}\n{extra}spec:\n{body or '  {}'}\n".replace(
        "spec:\n  {}\n", "spec: {}\n")


def errors(text: str) -> str:
    with pytest.raises(ValidationError) as info:
        load_model(text, "f.yaml")
    return str(info.value)


def ok(text: str) -> ClusterModel:
    return load_model(text, "f.yaml")


def round_trips(model: ClusterModel) -> None:
    again = load_model(dump_yaml(model.resources))
    assert again.resources == model.resources


# --- metadata: Kubernetes names, labels and annotations -------------------------------------------

@pytest.mark.parametrize("name", ["a", "web-1", "a.b-c.d", "0abc", "x" * 253])
def test_good_names(name: str) -> None:
    assert ok(doc("IPPool", "cidr: 10.0.0.0/16", name=name)).pool(name)


@pytest.mark.parametrize(("name", "message"), [
    ("Web", "name must consist of lower case alphanumeric characters, '-' or '.'"),
    ("a_b", "name must consist of lower case"),
    ("-a", "name must consist of lower case"),
    ("a.", "name must consist of lower case"),
    ("x" * 254, "name is too long by 1 bytes"),
])
def test_bad_names(name: str, message: str) -> None:
    assert f"metadata.name: '{name}': {message}" in errors(doc("IPPool", "cidr: 10.0.0.0/16", name=name))


@pytest.mark.parametrize("labels", [
    "{rack: a}", "{example.com/rack: a}", "{a: ''}", "{My_Key.x-1: Value_1.x-y}", "{k: " + "v" * 63 + "}",
    "{" + "k" * 63 + ": v}", "{" + "a" * 253 + "/k: v}",
])
def test_good_labels(labels: str) -> None:
    ok(doc("Node", meta=f"labels: {labels}"))


@pytest.mark.parametrize(("labels", "message"), [
    ("{Example.com/rack: a}", "prefix part a lowercase RFC 1123 subdomain must consist of lower case"),
    ("{/rack: a}", "prefix part must be non-empty"),
    ("{'a/b/c': x}", "a valid label key must consist of alphanumeric characters"),
    ("{'': x}", "name part must be non-empty"),
    ("{" + "k" * 64 + ": v}", "name part must be no more than 63 bytes"),
    ("{-k: v}", "name part must consist of alphanumeric characters, '-', '_' or '.'"),
    ("{k: " + "v" * 64 + "}", "invalid label value"),
    ("{k: 'a b'}", "a valid label must be an empty string or consist of alphanumeric characters"),
    ("{k: -v}", "a valid label must be an empty string"),
    ("{k: 1}", "label values are strings; quote 1"),
    ("{" + "a" * 254 + "/k: v}", "prefix part must be no more than 253 bytes"),
])
def test_bad_labels(labels: str, message: str) -> None:
    assert message in errors(doc("Node", meta=f"labels: {labels}"))


def test_annotations_are_checked_and_kept() -> None:
    model = ok(doc("IPPool", "cidr: 10.0.0.0/16", meta="annotations: {Example.com/Owner: team-a, note: 'any text: ok'}"))
    pool = model.pool("x")
    assert dict(pool.annotations) == {"Example.com/Owner": "team-a", "note": "any text: ok"}
    assert "Example.com/Owner: team-a" in dump_yaml([pool])
    round_trips(model)
    assert "invalid annotation key 'a b'" in errors(doc("IPPool", "cidr: 10.0.0.0/16", meta="annotations: {'a b': x}"))
    big = "v" * (256 * 1024)
    assert "total size of annotations is too large by 1 bytes" in errors(
        doc("IPPool", "cidr: 10.0.0.0/16", meta=f"annotations: {{k: {big}}}"))
    assert "annotation values are strings" in errors(doc("IPPool", "cidr: 10.0.0.0/16", meta="annotations: {k: 2}"))


def test_datastore_bookkeeping_is_accepted_and_dropped() -> None:
    meta = ("uid: 1f0e7b1c-9a7e-4c3e-b5f4-0c1d2e3f4a5b\nresourceVersion: '1042'\ncreationTimestamp: "
            "'2024-05-01T10:00:00Z'\ngeneration: 3\nmanagedFields: [{manager: calicoctl}]\nfinalizers: [x]\n")
    pool = ok(doc("IPPool", "cidr: 10.0.0.0/16", meta=meta)).pool("x")
    assert "uid" not in dump_yaml([pool]) and "resourceVersion" not in dump_yaml([pool])


def test_namespace_only_on_workload_endpoints() -> None:
    assert "metadata.namespace: a IPPool is not namespaced" in errors(
        doc("IPPool", "cidr: 10.0.0.0/16", meta="namespace: default"))
    wep = doc("WorkloadEndpoint", "node: n1\ninterfaceName: cali1\nipNetworks: [10.0.0.1/32]", meta="namespace: Dev")
    assert "metadata.namespace: 'Dev': a lowercase RFC 1123 label" in errors(wep)


# --- AS numbers -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "asn"), [
    (64512, 64512), ("64512", 64512), ("1.10", 65546), ("0.1", 1), ("65535.65535", 4294967295),
    (4294967295, 4294967295), ("00064512", 64512),
])
def test_as_number_notations(value: object, asn: int) -> None:
    assert parse_as_number(value) == asn


@pytest.mark.parametrize(("value", "message"), [
    (0, "AS 0 is reserved (RFC 7607)"), ("0.0", "AS 0 is reserved"), (4294967296, "is not an AS number"),
    (-1, "is not an AS number"), ("65536.0", "each half of asdot notation is 0 to 65535"),
    ("1.2.3", "invalid AS Number format (1.2.3)"), ("+5", "invalid AS Number format"),
    (1.1, "write asdot notation quoted"), (True, "is not an AS number"), ("AS65000", "invalid AS Number format"),
])
def test_bad_as_numbers(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_as_number(value)


def test_as_numbers_in_resources() -> None:
    model = ok(doc("BGPConfiguration", "asNumber: '1.10'", name="default") + "---\n"
               + doc("Node", "bgp: {ipv4Address: 10.0.0.1/24, asNumber: '65000'}", name="n1"))
    assert model.bgp_config.as_number == 65546 and model.node("n1").as_number == 65000
    assert "spec.asNumber: 1.1 is not an AS number (write asdot notation quoted" in errors(
        doc("BGPConfiguration", "asNumber: 1.10", name="default"))


# --- selectors in resources -----------------------------------------------------------------------

def test_selector_words_in_resources() -> None:
    pool = ok(doc("IPPool", "cidr: 10.0.0.0/16\nnodeSelector: zone startswith 'eu' && rack notin {'x'}")).pool("x")
    assert pool.node_selector.matches({"zone": "eu-1"}) and not pool.node_selector.matches({"zone": "us-1"})


def test_global_selector_where_calico_allows_it() -> None:
    assert "global() selector is not valid for IPPool nodeSelector - use all() instead" in errors(
        doc("IPPool", "cidr: 10.0.0.0/16\nnodeSelector: global()"))
    peer = ok(doc("BGPPeer", "peerSelector: global()\nnodeSelector: global()")).get("BGPPeer", "x")
    assert isinstance(peer, BGPPeer) and peer.peer_selector is not None


def test_peer_selectors_are_at_most_4096_characters() -> None:
    long = "a in {" + ", ".join(f"'{i:05d}'" for i in range(600)) + "}"
    assert len(long) > 4096
    assert "spec.nodeSelector: may not be longer than 4096 characters" in errors(
        doc("BGPPeer", f"nodeSelector: \"{long}\"\npeerIP: 10.0.0.1\nasNumber: 1"))


# --- BGPConfiguration -----------------------------------------------------------------------------

def bgpconfig(spec: str, name: str = "default") -> str:
    return doc("BGPConfiguration", spec, name=name)


@pytest.mark.parametrize(("value", "level"), [("info", "Info"), ("INFO", "Info"), ("Trace", "Trace"),
                                              ("warning", "Warning"), ("''", "Info"), ("fatal", "Fatal")])
def test_log_severity_any_case(value: str, level: str) -> None:
    assert ok(bgpconfig(f"logSeverityScreen: {value}")).bgp_config.log_severity_screen == level


@pytest.mark.parametrize(("spec", "message"), [
    ("logSeverityScreen: Verbose", "'Verbose' is not one of Trace, Debug, Info, Warning, Error, Fatal"),
    ("listenPort: 0", "0 is not in the range 1 to 65535"),
    ("listenPort: 65536", "65536 is not in the range 1 to 65535"),
    ("nodeToNodeMeshEnabled: false\nnodeMeshPassword: {file: /etc/pw}",
     "spec.nodeMeshPassword: nodeMeshPassword cannot be set when nodeToNodeMeshEnabled is false"),
    ("nodeToNodeMeshEnabled: false\nnodeMeshMaxRestartTime: 30s",
     "spec.nodeMeshMaxRestartTime: nodeMeshMaxRestartTime cannot be set when nodeToNodeMeshEnabled is false"),
    ("nodeMeshMaxRestartTime: 2h", "is more than 4095s"),
    ("bindMode: All", "'All' is not one of None, NodeIP"),
    ("communities: [{name: a, value: '65000:100'}]", "communities are defined but not used in prefixAdvertisements"),
    ("communities: [{name: a, value: '65536:1'}]\nprefixAdvertisements: [{cidr: 10.0.0.0/8, communities: [a]}]",
     "spec.communities[0].value: invalid community value or format used: invalid community value '65536:1', "
     "expected 16 bit values"),
    ("communities: [{name: a, value: '1:2:4294967296'}]\nprefixAdvertisements: [{cidr: 10.0.0.0/8, communities: [a]}]",
     "expected 32 bit values"),
    ("communities: [{name: A, value: '1:2'}]\nprefixAdvertisements: [{cidr: 10.0.0.0/8, communities: [A]}]",
     "spec.communities[0].name: 'A': name must consist of lower case"),
    ("communities: [{value: '1:2'}]", "spec.communities[0].name: is required"),
    ("prefixAdvertisements: [{cidr: 10.0.0.0/8, communities: [nope]}]",
     "spec.prefixAdvertisements[0].communities[0]: community used is invalid or not defined"),
    ("prefixAdvertisements: [{cidr: 10.0.0.1/8, communities: ['1:2']}]", "is not strictly masked"),
    ("prefixAdvertisements: [{cidr: 10.0.0.0/8}]", "spec.prefixAdvertisements[0].communities: is required"),
    ("serviceClusterIPs: [{cidr: 10.96.0.1/12}]", "spec.serviceClusterIPs[0].cidr: '10.96.0.1/12' is not strictly"),
    ("ignoredInterfaces: ['*']", "spec.ignoredInterfaces[0]: '*' is not an interface name or pattern"),
    ("ignoredInterfaces: [averyveryverylongname]", "spec.ignoredInterfaces[0]"),
    ("serviceLoadBalancerAggregation: Maybe", "'Maybe' is not one of Enabled, Disabled"),
    ("programClusterRoutes: Sometimes", "'Sometimes' is not one of Enabled, Disabled"),
    ("ipv4NormalRoutePriority: 0", "0 is not in the range 1 to 2147483646"),
    ("localWorkloadPeeringIPV4: fd00::1", "is not an IPv4 address"),
])
def test_bgp_configuration_rules(spec: str, message: str) -> None:
    assert message in errors(bgpconfig(spec))


def test_bgp_configuration_good_and_kept_fields() -> None:
    model = ok(bgpconfig("""\
        asNumber: 65000
        nodeMeshPassword: {secretKeyRef: {name: bgp-secrets, key: mesh}}
        nodeMeshMaxRestartTime: 2m0s
        bindMode: NodeIP
        listenPort: 1179
        ignoredInterfaces: [eth9, 'docker*']
        serviceLoadBalancerAggregation: Disabled
        programClusterRoutes: Enabled
        ipv4NormalRoutePriority: 1024
        ipv6NormalRoutePriority: 1024
        """))
    cfg = model.bgp_config
    assert cfg.bind_mode == "NodeIP" and cfg.listen_port == 1179 and cfg.node_mesh_max_restart_time == 120
    assert cfg.node_mesh_password == Password(secret_name="bgp-secrets", secret_key="mesh")
    assert cfg.kept["ignoredInterfaces"] == ("eth9", "docker*") and cfg.kept["programClusterRoutes"] == "Enabled"
    text = dump_yaml([cfg])
    assert "ignoredInterfaces:\n  - eth9\n  - docker*" in text and "nodeMeshMaxRestartTime: 2m0s" in text
    round_trips(model)


def test_node_specific_bgp_configuration() -> None:
    model = ok(bgpconfig("listenPort: 1179", name="default") + "---\n"
               + bgpconfig("listenPort: 2179\nlogSeverityScreen: debug", name="node.worker-1") + "---\n"
               + doc("Node", "bgp: {ipv4Address: 10.0.0.1/24}", name="worker-1"))
    assert model.bgp_config.listen_port == 1179
    assert model.bgp_config_for("worker-1").listen_port == 2179
    assert model.bgp_config_for("worker-1").log_severity_screen == "Debug"
    assert model.bgp_config_for("worker-2").listen_port == 1179
    assert model.listen_port_of("worker-1") == 2179
    round_trips(model)


@pytest.mark.parametrize("field", ["nodeToNodeMeshEnabled: true", "asNumber: 65000",
                                   "serviceClusterIPs: [{cidr: 10.96.0.0/12}]", "nodeMeshPassword: {file: /x}",
                                   "nodeMeshMaxRestartTime: 1s", "serviceExternalIPs: [{cidr: 1.0.0.0/8}]",
                                   "serviceLoadBalancerIPs: [{cidr: 2.0.0.0/8}]"])
def test_fields_only_the_default_configuration_may_set(field: str) -> None:
    key = field.split(":")[0]
    assert f"spec.{key}: Cannot set {key} on a non default BGP Configuration." in errors(
        bgpconfig(field, name="node.worker-1"))


def test_configuration_names_calico_ignores_are_accepted_with_a_warning() -> None:
    model = ok(bgpconfig("logSeverityScreen: Debug", name="blue"))
    assert "neither 'default' nor 'node.<node name>': Calico and tortie ignore it" in str(model.warnings[0])
    assert model.bgp_config.log_severity_screen == "Info"
    warned = ok(bgpconfig("bindMode: None", name="node.a")).warnings
    assert "spec.bindMode: Calico reads only listenPort, logSeverityScreen" in str(warned[0])


def test_communities() -> None:
    assert parse_community("65000:100") == Community((65000, 100)) and not parse_community("1:2").large
    assert parse_community("4294967295:1:0").large and str(parse_community("1:2:3")) == "1:2:3"
    for bad in ("1", "1:2:3:4", "a:b", "65536:0", " 1:2", 12):
        with pytest.raises(ValueError):
            parse_community(bad)


# --- Node -----------------------------------------------------------------------------------------

CALICOCTL_NODE = """\
apiVersion: projectcalico.org/v3
kind: Node
metadata:
  annotations:
    projectcalico.org/kube-labels: '{"kubernetes.io/hostname":"worker-1"}'
  creationTimestamp: "2024-05-01T10:00:00Z"
  labels:
    kubernetes.io/arch: amd64
    kubernetes.io/hostname: worker-1
    kubernetes.io/os: linux
  name: worker-1
  resourceVersion: "28513"
  uid: 8c3a1a4e-1a2b-4c3d-9e8f-0a1b2c3d4e5f
spec:
  addresses:
  - address: 10.30.0.206/24
    type: CalicoNodeIP
  - address: 10.30.0.206
    type: InternalIP
  bgp:
    ipv4Address: 10.30.0.206/24
    ipv4IPIPTunnelAddr: 192.168.226.64
  ipv4VXLANTunnelAddr: 192.168.226.65
  vxlanTunnelMACAddr: 66:1f:3b:09:4d:aa
  ipv6VXLANTunnelAddr: "fd00:10:244:1::"
  vxlanTunnelMACAddrV6: 66-1f-3b-09-4d-ab
  interfaces:
  - addresses: [10.30.0.206, 'fe80::1']
    name: eth0
  orchRefs:
  - nodeName: worker-1
    orchestrator: k8s
  wireguard:
    interfaceIPv4Address: 192.168.226.66
status:
  podCIDRs:
  - 192.168.226.64/26
  wireguardPublicKey: jlkVyQYooZYzI2wFfNhSZez5eWh44yfq1wKVjLvSXgY=
"""


def test_calicoctl_node_applies_unchanged() -> None:
    model = ok(CALICOCTL_NODE)
    node = model.node("worker-1")
    assert node.ipv4_address == ipaddress.ip_interface("10.30.0.206/24") and model.warnings == ()
    assert str(node.ipv6_vxlan_tunnel_addr) == "fd00:10:244:1::" and node.vxlan_tunnel_mac_addr_v6 == "66:1f:3b:09:4d:ab"
    assert node.kept["orchRefs"][0]["orchestrator"] == "k8s"
    assert "projectcalico.org/kube-labels" in node.annotations
    out = dump_yaml([node])
    assert "orchRefs:" in out and "addresses:" in out and "wireguard:" in out and "status" not in out
    round_trips(model)


@pytest.mark.parametrize(("spec", "message"), [
    ("bgp: {}", "spec.bgp: Spec.BGP should not be empty"),
    ("addresses: [{address: 10.0.0.1, type: Public}]", "spec.addresses[0].type: 'Public' is not one of CalicoNodeIP"),
    ("addresses: [{address: nowhere}]", "spec.addresses[0].address: 'nowhere' is not an IP address or CIDR"),
    ("addresses: [{type: InternalIP}]", "spec.addresses[0].address: is required"),
    ("orchRefs: [{orchestrator: 5}]", "spec.orchRefs[0].orchestrator: expected a string"),
    ("wireguard: {interfaceIPv4Address: fd00::1}", "spec.wireguard.interfaceIPv4Address: 'fd00::1' is not an IPv4"),
    ("ipv6VXLANTunnelAddr: 10.0.0.1", "'10.0.0.1' is not an IPv6 address"),
    ("vxlanTunnelMACAddrV6: 66:1f", "is not a MAC address"),
    ("bgp: {ipv4Address: 10.0.0.300/24}", "Invalid IPv4 CIDR"),
])
def test_node_rules(spec: str, message: str) -> None:
    assert message in errors(doc("Node", spec))


@pytest.mark.parametrize(("address", "warned"), [("10.0.0.1/24", False), ("10.0.0.1", True), ("10.0.0.1/32", True),
                                                 ("10.0.0.5/24", False)])
def test_node_address_with_or_without_prefix(address: str, warned: bool) -> None:
    model = ok(doc("Node", f"bgp: {{ipv4Address: {address}}}"))
    assert model.node("x").ipv4_address.ip == ipaddress.ip_address(address.split("/")[0])  # type: ignore[union-attr]
    assert len(model.warnings) == (1 if warned else 0)
    ipv6 = ok(doc("Node", "bgp: {ipv6Address: 'fd00::10'}"))
    assert "spec.bgp.ipv6Address: fd00::10 has no prefix length" in str(ipv6.warnings[0])


# --- BGPPeer --------------------------------------------------------------------------------------

def peer(spec: str) -> str:
    return doc("BGPPeer", spec)


def test_peer_options_parse() -> None:
    bp = ok(peer("""\
        peerIP: '[fd00::1]:1179'
        asNumber: '1.1'
        localASNumber: 65010
        keepaliveTime: 10s
        maxRestartTime: 1m
        numAllowedLocalASNumbers: 2
        ttlSecurity: 1
        nextHopMode: Auto
        reversePeering: Manual
        sourceAddress: None
        password: {secretKeyRef: {name: bgp-secrets, key: tor, optional: true}}
        """)).get("BGPPeer", "x")
    assert isinstance(bp, BGPPeer)
    assert (bp.as_number, bp.local_as_number, bp.keepalive_time, bp.max_restart_time) == (65537, 65010, 10, 60)
    assert (bp.num_allowed_local_as_numbers, bp.ttl_security, bp.next_hop_mode, bp.reverse_peering) == (2, 1, "Auto",
                                                                                                      "Manual")
    assert bp.password == Password(secret_name="bgp-secrets", secret_key="tor", optional=True)
    assert bp.peer_port == 1179 and str(bp.peer_ip) == "fd00::1"
    round_trips(ok(dump_yaml([bp])))


@pytest.mark.parametrize(("spec", "message"), [
    ("peerIP: 10.0.0.1\nasNumber: 1\nkeepaliveTime: 0s", "0s is less than 1s"),
    ("peerIP: 10.0.0.1\nasNumber: 1\nkeepaliveTime: 30", "needs a unit"),
    ("peerIP: 10.0.0.1\nasNumber: 1\nmaxRestartTime: 2h", "is more than 4095s"),
    ("peerIP: 10.0.0.1\nasNumber: 1\nttlSecurity: 256", "256 is not in the range 0 to 255"),
    ("peerIP: 10.0.0.1\nasNumber: 1\nlocalASNumber: 0", "AS 0 is reserved"),
    ("peerIP: 10.0.0.1\nasNumber: 1\nnextHopMode: Maybe", "'Maybe' is not one of Auto, Self, Keep"),
    ("peerIP: 10.0.0.1\nasNumber: 1\nnextHopMode: Auto\nkeepOriginalNextHop: true",
     "spec.keepOriginalNextHop: keepOriginalNextHop and nextHopMode cannot both be set"),
    ("peerIP: 10.0.0.1\nasNumber: 1\nreversePeering: Sometimes", "'Sometimes' is not one of Auto, Manual"),
    ("peerIP: 10.0.0.1\nasNumber: 1\nfilters: [Bad_Name]", "spec.filters[0]: 'Bad_Name': name must consist"),
    ("peerSelector: all()\nreachableBy: 10.0.0.254", "reachableBy must be empty when peerIP is empty"),
    ("peerIP: 10.0.0.1\nasNumber: 1\nreachableBy: fd00::1", "ReachableBy and PeerIP address family mismatched"),
    ("peerIP: 10.0.0.1\nasNumber: 1\nreachableBy: gateway", "'gateway' is not an IP address"),
    ("peerIP: fe80::1\nasNumber: 1\nreachableBy: fe80::2%eth0", "'fe80::2%eth0' is not an IP address"),
    ("peerIP: 10.0.0.1:1790\nasNumber: 1\nreachableBy: 10.0.0.254", None),  # the family of the address, not the port
    ("peerIP: fd00::1\nasNumber: 1\nreachableBy: fd00::254", None),
    ("peerIP: 10.0.0.1\nasNumber: 1\nreachableBy: 10.0.0.254\nnodeSelector: rack == 'a'", None),
    ("localWorkloadSelector: has(bgp)\npeerIP: 10.0.0.1", "peerIP must be empty when localWorkloadSelector is set"),
    ("localWorkloadSelector: has(bgp)\npeerSelector: all()", "peerSelector must be empty when localWorkloadSelector"),
    ("localWorkloadSelector: has(bgp)", "asNumber is required when localWorkloadSelector is set"),
    ("peerIP: 10.0.0.1:0\nasNumber: 1", "port 0 is not in the range 1 to 65535"),
    ("peerIP: '[fd00::1]:70000'\nasNumber: 1", "port 70000 is not in the range"),
    ("peerIP: 10.0.0.1:x\nasNumber: 1", "is not an IP address, <IPv4>:<port> or [<IPv6>]:<port>"),
    ("peerIP: fd00::1:179\nasNumber: 1", None),  # an IPv6 address, no port: valid
    ("peerIP: 10.0.0.1\nasNumber: 1\npassword: {file: /a, secretKeyRef: {name: s, key: k}}",
     "give either secretKeyRef or file, not both"),
    ("peerIP: 10.0.0.1\nasNumber: 1\npassword: {secretKeyRef: {name: S, key: k}}",
     "spec.password.secretKeyRef.name: a lowercase RFC 1123 subdomain"),
    ("peerIP: 10.0.0.1\nasNumber: 1\npassword: {secretKeyRef: {name: s, key: 'a/b'}}",
     "spec.password.secretKeyRef.key: a valid config key must consist of alphanumeric characters"),
])
def test_peer_rules(spec: str, message: str | None) -> None:
    if message is None:
        ok(peer(spec))
    else:
        assert message in errors(peer(spec))


def test_peer_selector_ignores_local_as_with_a_warning() -> None:
    model = ok(peer("peerSelector: has(rr)\nlocalASNumber: 65100"))
    assert "spec.localASNumber: has no effect on peerSelector peerings" in str(model.warnings[0])


# --- BGPFilter ------------------------------------------------------------------------------------

FULL_FILTER = """\
apiVersion: projectcalico.org/v3
kind: BGPFilter
metadata:
  name: tor-policy
spec:
  exportV4:
  - action: Accept
    cidr: 192.168.0.0/16
    matchOperator: In
    prefixLength: {min: 24, max: 26}
    source: RemotePeers
    peerType: eBGP
    operations:
    - addCommunity: {value: '65000:100'}
    - prependASPath: {prefix: [65000, '1.1']}
    - setPriority: {value: 512}
  - action: Reject
    interface: 'eth*'
    communities: {values: ['65000:1:2']}
    asPathPrefix: [65001]
    priority: 1024
  importV4:
  - action: Reject
    cidr: 10.0.0.0/8
    matchOperator: NotIn
  exportV6:
  - action: Accept
    cidr: fd00::/48
    matchOperator: Equal
    prefixLength: {max: 64}
  importV6:
  - action: Reject
"""


def test_full_bgp_filter() -> None:
    model = ok(FULL_FILTER)
    flt = model.get("BGPFilter", "tor-policy")
    assert isinstance(flt, BGPFilter) and model.filters == (flt,)
    first = flt.export_v4[0]
    assert first.cidr == ipaddress.ip_network("192.168.0.0/16") and first.prefix_length == (24, 26)
    assert first.operations == (FilterOperation(add_community=Community((65000, 100))),
                                FilterOperation(prepend_as_path=(65000, 65537)), FilterOperation(set_priority=512))
    second = flt.export_v4[1]
    assert second.communities == (Community((65000, 1, 2)),) and second.as_path_prefix == (65001,)
    assert second.interface == "eth*" and second.priority == 1024
    assert flt.import_v6[0].action == "Reject" and flt.export_v6[0].prefix_length == (None, 64)
    round_trips(model)


def rule(body: str, family: str = "exportV4") -> str:
    return doc("BGPFilter", f"{family}:\n- " + textwrap.indent(textwrap.dedent(body), "  ").lstrip())


@pytest.mark.parametrize(("text", "message"), [
    (rule("action: Accept\ncidr: 10.0.0.0/8"), "spec.exportV4[0].matchOperator: cidr and matchOperator must both be "
                                               "set or both be empty"),
    (rule("action: Accept\nmatchOperator: In"), "spec.exportV4[0].cidr: cidr and matchOperator must both be set"),
    (rule("action: Accept\nprefixLength: {min: 8}"), "spec.exportV4[0].prefixLength: cidr is required when "
                                                     "prefixLength is set"),
    (rule("action: Accept\ncidr: 10.0.0.0/8\nmatchOperator: In\nprefixLength: {max: 33}"),
     "spec.exportV4[0].prefixLength.max: 33 is not in the range 0 to 32"),
    (rule("action: Accept\ncidr: fd00::/8\nmatchOperator: In\nprefixLength: {min: 129}", "importV6"),
     "spec.importV6[0].prefixLength.min: 129 is not in the range 0 to 128"),
    (rule("action: Accept\ncidr: fd00::/8\nmatchOperator: In"), "'fd00::/8' is not an IPv4 CIDR"),
    (rule("action: Accept\ncidr: 10.0.0.1/8\nmatchOperator: In"), "is not strictly masked"),
    (rule("action: Accept\ncidr: 10.0.0.1\nmatchOperator: In"), "the prefix length is required"),
    (rule("action: Accept\ncidr: 10.0.0.0/8\nmatchOperator: Within"), "'Within' is not one of Equal, NotEqual, In"),
    (rule("action: Drop"), "spec.exportV4[0].action: 'Drop' is not one of Accept, Reject"),
    (rule("cidr: 10.0.0.0/8\nmatchOperator: In"), "spec.exportV4[0].action: is required"),
    (rule("action: Accept\nsource: LocalPeers"), "'LocalPeers' is not one of RemotePeers"),
    (rule("action: Accept\npeerType: ebgp"), "'ebgp' is not one of eBGP, iBGP"),
    (rule("action: Accept\ninterface: averyveryverylongname"), "is not an interface name or pattern"),
    (rule("action: Accept\ncommunities: {values: ['1:2', '3:4']}"), "must hold exactly one community value, got 2"),
    (rule("action: Accept\ncommunities: {values: ['1:70000']}"), "spec.exportV4[0].communities.values[0]: invalid"),
    (rule("action: Accept\nasPathPrefix: [0]"), "spec.exportV4[0].asPathPrefix[0]: AS 0 is reserved"),
    (rule("action: Accept\npriority: 0"), "0 is not in the range 1 to 2147483646"),
    (rule("action: Accept\npriority: 2147483647"), "2147483647 is not in the range 1 to 2147483646"),
    (rule("action: Reject\noperations: [{setPriority: {value: 5}}]"),
     "spec.exportV4[0].operations: operations may only be used with action Accept"),
    (rule("action: Accept\noperations: [{setPriority: {value: 5}, addCommunity: {value: '1:1'}}]"),
     "spec.exportV4[0].operations[0]: exactly one operation must be set"),
    (rule("action: Accept\noperations: [{}]"), "spec.exportV4[0].operations[0]: exactly one operation must be set"),
    (rule("action: Accept\noperations: []"), "spec.exportV4[0].operations: should have at least 1 items"),
    (rule("action: Accept\noperations: " + str([{"setPriority": {"value": 5}}] * 11).replace("'", "")),
     "spec.exportV4[0].operations: must have at most 10 items"),
    (rule("action: Accept\noperations: [{prependASPath: {prefix: []}}]"),
     "spec.exportV4[0].operations[0].prependASPath.prefix: should have at least 1 item"),
    (rule("action: Accept\noperations: [{prependASPath: {prefix: " + str(list(range(1, 12))) + "}}]"),
     "prependASPath.prefix: must have at most 10 items"),
    (rule("action: Accept\noperations: [{setPriority: {value: 0}}]"), "setPriority.value: 0 is not in the range"),
    (rule("action: Accept\noperations: [{addCommunity: {}}]"), "addCommunity.value: is required"),
    (rule("action: Accept\noperations: [{removeCommunity: {value: '1:1'}}]"),
     "spec.exportV4[0].operations[0].removeCommunity: tortie does not implement this field"),
    (rule("action: Accept\nmed: 5"), "spec.exportV4[0].med: tortie does not implement this field"),
])
def test_bgp_filter_rules(text: str, message: str) -> None:
    assert message in errors(text)


def test_filter_prefix_length_range_that_matches_nothing_warns() -> None:
    model = ok(rule("action: Accept\ncidr: 10.0.0.0/8\nmatchOperator: In\nprefixLength: {min: 28, max: 24}"))
    assert "min 28 is greater than max 24: the rule matches no route" in str(model.warnings[0])


# --- IPPool ---------------------------------------------------------------------------------------

def pool(spec: str) -> str:
    return doc("IPPool", spec)


@pytest.mark.parametrize(("spec", "check"), [
    ("cidr: 10.0.0.0/28\nblockSize: 26\ndisabled: true", lambda p: p.disabled and list(p.blocks()) == []),
    ("cidr: 10.0.0.0/16\nipipMode: ''\nvxlanMode: ''", lambda p: p.mode is None),
    ("cidr: 10.0.0.0/16\nblockSize: 0", lambda p: p.block_size == 26),
    ("cidr: 10.0.0.0/16\nallowedUses: []", lambda p: p.allowed_uses == ("Workload", "Tunnel")),
    ("cidr: 10.0.0.0/16\nallowedUses: [Tunnel]", lambda p: p.allowed_uses == ("Tunnel",)),
    ("cidr: 10.0.0.0/16\nallowedUses: [Workload]\nnamespaceSelector: team == 'a'",
     lambda p: p.kept["namespaceSelector"] == "team == 'a'"),
    ("cidr: 10.0.0.0/16\ndisableBGPExport: true", lambda p: p.disable_bgp_export),
])
def test_good_pools(spec: str, check) -> None:  # type: ignore[no-untyped-def]
    model = ok(pool(spec))
    assert check(model.pool("x"))
    round_trips(model)


@pytest.mark.parametrize(("spec", "message"), [
    ("cidr: 10.0.0.0/16\nallowedUses: [Workload, Workload]", "spec.allowedUses[1]: Duplicate value: 'Workload'"),
    ("cidr: 10.0.0.0/16\nallowedUses: [LoadBalancer, Workload]",
     "spec.allowedUses: LoadBalancer cannot be combined with Workload or Tunnel allowed uses"),
    ("cidr: 10.0.0.0/16\nallowedUses: [LoadBalancer]\nipipMode: Always",
     "spec.allowedUses: LoadBalancer IP pool cannot have IPIP or VXLAN enabled"),
    ("cidr: 10.0.0.0/16\nallowedUses: [LoadBalancer]\nnodeSelector: has(x)",
     "IP Pool with AllowedUse LoadBalancer must have node selector set to all()"),
    ("cidr: 10.0.0.0/16\nallowedUses: [LoadBalancer]\ndisableBGPExport: true",
     "spec.disableBGPExport: an IP Pool with AllowedUse LoadBalancer cannot set disableBGPExport: true"),
    ("cidr: 10.0.0.0/16\nnamespaceSelector: all()", "IP Pool with AllowedUse Tunnel cannot have namespaceSelector"),
    ("cidr: 10.0.0.0/16\nallowedUses: [Workload]\nnamespaceSelector: global()",
     "global() selector is not valid for IPPool namespaceSelector"),
    ("cidr: 10.0.0.0/28\nblockSize: 26", "IP pool size is too small for use with Calico IPAM"),
    ("cidr: 10.0.0.0/16\nipipMode: always", "'always' is not one of Never, Always, CrossSubnet"),
    ("cidr: 10.0.0.0/16\nallowedUses: Workload", "expected a list of Workload, Tunnel, LoadBalancer"),
])
def test_bad_pools(spec: str, message: str) -> None:
    assert message in errors(pool(spec))


# --- BlockAffinity --------------------------------------------------------------------------------

CALICOCTL_BLOCKS = """\
apiVersion: projectcalico.org/v3
items:
- apiVersion: projectcalico.org/v3
  kind: BlockAffinity
  metadata:
    creationTimestamp: "2024-05-01T10:00:00Z"
    name: worker-1-192-168-226-64-26
    resourceVersion: "1163"
    uid: 2d5b7a56-0f0e-4e51-bb1c-3b1e7e1b9c11
  spec:
    cidr: 192.168.226.64/26
    deleted: false
    node: worker-1
    state: confirmed
    type: host
- apiVersion: projectcalico.org/v3
  kind: BlockAffinity
  metadata:
    name: worker-2-192-168-133-192-26
  spec:
    cidr: 192.168.133.192/26
    deleted: "false"
    node: worker-2
    state: ""
kind: BlockAffinityList
metadata:
  resourceVersion: "30010"
"""


def test_calicoctl_block_affinities_apply_unchanged() -> None:
    model = ok(pool("cidr: 192.168.0.0/16") + "---\n" + CALICOCTL_BLOCKS)
    first, second = model.blocks
    assert first.type == "host" and first.confirmed and second.confirmed and second.state == "confirmed"
    assert "deleted: false" in dump_yaml([first]) and "type: host" in dump_yaml([first])
    round_trips(model)


@pytest.mark.parametrize("deleted", ["true", "'true'"])
def test_deleted_block_affinity_is_refused_as_calico_does(deleted: str) -> None:
    text = pool("cidr: 10.0.0.0/16") + "---\n" + doc("BlockAffinity", f"node: n1\ncidr: 10.0.1.0/26\ndeleted: {deleted}")
    assert 'spec.deleted: spec.Deleted cannot be set to "true"' in errors(text)


# --- WorkloadEndpoint -----------------------------------------------------------------------------

K8S_WEP = """\
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  creationTimestamp: "2024-05-01T10:00:00Z"
  labels:
    app: web
    projectcalico.org/namespace: default
    projectcalico.org/orchestrator: k8s
    projectcalico.org/serviceaccount: default
  name: worker--1-k8s-pod--1-eth0
  namespace: default
  resourceVersion: "5531"
  uid: 0b0f6c8a-1111-4a6b-9a7c-3f0f0f0f0f0f
spec:
  containerID: 9a3e2c0b8d7f
  endpoint: eth0
  interfaceName: cali0ef24b1d6a8
  ipNetworks:
  - 192.168.226.70/32
  node: worker-1
  orchestrator: k8s
  pod: pod-1
  ports:
  - name: http
    port: 80
    protocol: TCP
    hostPort: 0
    hostIP: ""
  profiles:
  - kns.default
  - ksa.default.default
  serviceAccountName: default
  ipv4Gateway: 169.254.1.1
"""


def test_kubernetes_workload_endpoint_applies_unchanged() -> None:
    model = ok(K8S_WEP)
    wep = model.workloads[0]
    assert wep.ip_networks == (ipaddress.ip_network("192.168.226.70/32"),)
    assert wep.kept["profiles"] == ("kns.default", "ksa.default.default") and wep.kept["containerID"] == "9a3e2c0b8d7f"
    round_trips(model)


@pytest.mark.parametrize(("nets", "message"), [
    ("[192.168.226.64/26]", "spec.ipNetworks[0]: IP network contains multiple addresses: 192.168.226.64/26"),
    ("[fd00::/64]", "IP network contains multiple addresses"),
    ("[192.168.226.70/24]", "is not strictly masked"),
])
def test_workload_addresses_are_single_addresses(nets: str, message: str) -> None:
    text = doc("WorkloadEndpoint", f"node: n1\ninterfaceName: cali1\nipNetworks: {nets}")
    assert message in errors(text)


def test_workload_nat_outside_its_networks() -> None:
    text = doc("WorkloadEndpoint", "node: n1\ninterfaceName: cali1\nipNetworks: [10.0.0.1]\n"
                                   "ipNATs: [{internalIP: 10.0.0.2, externalIP: 1.2.3.4}]")
    assert "spec.ipNATs: NAT is not in the endpoint networks: 10.0.0.2" in errors(text)


# --- fields tortie parses but refuses until it implements them -----------------------------------

NOT_YET_DOCS = {
    "spec.localWorkloadSelector": peer("localWorkloadSelector: has(bgp)\nasNumber: 65000"),
    "spec.localWorkloadPeeringIPV4": bgpconfig("localWorkloadPeeringIPV4: 169.254.0.179"),
    "spec.localWorkloadPeeringIPV6": bgpconfig("localWorkloadPeeringIPV6: 'fe80::179'"),
    "spec.allowedUses": pool("cidr: 10.0.0.0/16\nallowedUses: [LoadBalancer]"),
    "spec.ipNATs": doc("WorkloadEndpoint", "node: n1\ninterfaceName: cali1\nipNetworks: [10.0.0.1]\n"
                                           "ipNATs: [{internalIP: 10.0.0.1, externalIP: 1.2.3.4}]"),
}


def test_every_pending_field_has_a_test() -> None:
    assert {n.path for n in NOT_YET} == set(NOT_YET_DOCS)


@pytest.mark.parametrize("path", sorted(NOT_YET_DOCS))
def test_pending_fields_are_refused_by_name(path: str) -> None:
    message = errors(NOT_YET_DOCS[path])
    assert f": {path}: not implemented yet: " in message
    assert "since it would change routing" in message and message.startswith("f.yaml: document ")


def test_pending_values_are_carried_in_the_model() -> None:
    """The parsed values exist on the resources, ready for the code that will use them."""
    loaded = load_resources(FULL_FILTER)
    assert loaded.resources
    cfg = BGPConfiguration(name="default", service_cluster_ips=(ipaddress.ip_network("10.96.0.0/12"),))
    assert cfg.spec_dict()["serviceClusterIPs"] == [{"cidr": "10.96.0.0/12"}]
    bp = BGPPeer(name="p", peer_ip=ipaddress.ip_address("10.0.0.1"), as_number=1, filters=("f",),
                 reachable_by=ipaddress.ip_address("10.0.0.254"))
    assert bp.spec_dict()["filters"] == ["f"] and bp.spec_dict()["reachableBy"] == "10.0.0.254"


def test_filters_must_exist() -> None:
    """Calico's clientv3 refuses a BGPPeer naming a BGPFilter that does not exist (checked by the model)."""
    bp = BGPPeer(name="p", peer_ip=ipaddress.ip_address("10.0.0.1"), as_number=1, filters=("nope",))
    with pytest.raises(ValidationError, match=r"spec\.filters: BGPFilter\(s\) not found: nope"):
        ClusterModel([bp])
    assert ClusterModel([bp, BGPFilter(name="nope")]).peers == (bp,)


def test_unknown_pool_kind_name_in_list() -> None:
    assert isinstance(ok(pool("cidr: 10.0.0.0/16")).pool("x"), IPPool)
