"""BGPFilters, prefix advertisements and service ranges through whole speakers joined in memory: what
the other speaker decodes off the wire, what the RIBs and the feed hold, what `tortiectl bgp rib`
is told, and how update groups split (tests/unit/speaker_net.py; no sockets)."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess

import pytest

from bgpd.advertise import EXCLUDE_LABEL, cluster_routes
from bgpd.control import Control
from bgpd.feed_out import RibFeed
from bgpd.interfaces import RouteTable, parse_v4, parse_v6, read_table
from bgpd.route_match import BIRD_INT_MAX
from bgpd.speaker import Speaker
from proto import prefix as pf
from proto.bgp.constants import IPV4_UNICAST, SegmentType
from proto.bgp.model import AsPathSegment
from proto.resources import load_model
from tests.unit.speaker_net import Net, established, topology

HEAD = "apiVersion: projectcalico.org/v3\n"
V4 = IPV4_UNICAST
SEQ = SegmentType.AS_SEQUENCE


def doc(kind: str, name: str, spec: str, meta: str = "") -> str:
    return f"{HEAD}kind: {kind}\nmetadata:\n  name: {name}\n{meta}spec:\n{spec}"


def node(name: str, addr: str, asn: int, labels: str = "") -> str:
    meta = f"  labels: {{{labels}}}\n" if labels else ""
    return doc("Node", name, f"  bgp: {{ipv4Address: {addr}/24, asNumber: {asn}}}\n", meta)


def block(n: str, cidr: str) -> str:
    return doc("BlockAffinity", f"{n}-{cidr.replace('/', '-').replace('.', '-')}", f"  node: {n}\n  cidr: {cidr}\n")


BASE = [
    doc("IPPool", "pool", "  cidr: 10.200.0.0/16\n  blockSize: 26\n"),
    doc("IPPool", "quiet", "  cidr: 10.201.0.0/16\n  blockSize: 26\n  disableBGPExport: true\n"),
    node("n1", "10.77.0.1", 64512), node("n2", "10.77.0.2", 65001),
    *(block("n1", c) for c in ("10.200.1.0/26", "10.200.1.64/26", "10.200.1.128/26")),
    *(block("n2", c) for c in ("10.200.2.0/26", "10.200.2.64/26", "10.200.2.128/26")),
    doc("BGPFilter", "n1-out", """\
  exportV4:
    - {cidr: 10.200.1.0/26, matchOperator: Equal, action: Reject}
    - {cidr: 10.200.1.64/26, matchOperator: Equal, action: Accept,
       operations: [{prependASPath: {prefix: [64512, 64512]}}, {addCommunity: {value: '64512:1:2'}}]}
"""),
    doc("BGPFilter", "n1-in", """\
  importV4:
    - {cidr: 10.200.2.0/26, matchOperator: Equal, action: Reject}
    - {cidr: 10.200.2.64/26, matchOperator: Equal, peerType: eBGP, action: Accept,
       operations: [{setPriority: {value: 50}}, {addCommunity: {value: '64512:7'}}]}
"""),
    doc("BGPPeer", "n1-to-n2", "  node: n1\n  peerIP: 10.77.0.2\n  asNumber: 65001\n  reversePeering: Manual\n"
        "  filters: [n1-in, n1-out]\n"),
    doc("BGPPeer", "n2-to-n1", "  node: n2\n  peerIP: 10.77.0.1\n  asNumber: 64512\n  reversePeering: Manual\n"),
]
CONFIG = doc("BGPConfiguration", "default", """\
  nodeToNodeMeshEnabled: false
  communities: [{name: blocks, value: '64512:100'}]
  prefixAdvertisements:
    - {cidr: 10.200.0.0/16, communities: [blocks, '64512:3:4']}
  serviceClusterIPs: [{cidr: 10.96.0.0/12}]
  serviceExternalIPs: [{cidr: 192.0.2.0/24}, {cidr: 198.51.100.7/32}]
""")


def text(*extra: str, config: str = CONFIG) -> str:
    return "---\n".join([config, *BASE, *extra])


def pair(yaml_text: str) -> tuple[Net, Speaker, Speaker]:
    net = Net()
    sp = {}
    for name in ("n1", "n2"):
        topo, model = topology(yaml_text, name)
        sp[name] = net.add(topo, model=model, connect_delay=0.0)
    assert net.run(60, lambda: all(established(s) for s in sp.values()))
    net.run(net.now + 2)
    return net, sp["n1"], sp["n2"]


def routes(sp: Speaker) -> dict[str, object]:
    return {pf.text(k): b for k, b in sp.rib.loc[V4].best.items() if not b.source.local}


def received(sp: Speaker, address: str) -> dict[str, object]:
    """The peer's Adj-RIB-In (what it sent, after import policy)."""
    rib_in = sp.rib.adj_rib_in(sp.peers[address].info, V4)
    return {pf.text(k): p for k, p in rib_in.iter_paths()}


def community(a: int, b: int) -> int:
    return a << 16 | b


def test_export_rules_and_prefix_advertisements_on_the_wire() -> None:
    _net, _n1, n2 = pair(text())
    got = routes(n2)  # what n2 decoded from n1's UPDATEs
    assert "10.200.1.0/26" not in got  # rejected by n1-out rule 1
    accepted = got["10.200.1.64/26"]
    assert accepted.attrs.as_path == (AsPathSegment(SEQ, (64512, 64512, 64512)),)  # type: ignore[attr-defined]
    assert accepted.attrs.large_communities == ((64512, 1, 2),)  # type: ignore[attr-defined]
    assert accepted.attrs.communities is None  # type: ignore[attr-defined]  # a rule's Accept skips them
    default = got["10.200.1.128/26"]
    assert default.attrs.as_path == (AsPathSegment(SEQ, (64512,)),)  # type: ignore[attr-defined]
    assert default.attrs.communities == (community(64512, 100),)  # type: ignore[attr-defined]
    assert default.attrs.large_communities == ((64512, 3, 4),)  # type: ignore[attr-defined]
    # service ranges: the cluster IPs and the external /24 from every node, not the single /32 (n2
    # originates them too, and prefers its own)
    sent = received(n2, "10.77.0.1")
    assert {"10.96.0.0/12", "192.0.2.0/24"} <= set(sent) and "198.51.100.7/32" not in sent
    assert sent["10.96.0.0/12"].attrs.communities is None  # type: ignore[attr-defined]  # outside the advertisement
    assert pf.parse("10.96.0.0/12") in n2.rib.local_in[V4].routes


def test_import_rules_and_the_rejected_route_shown_with_its_reason() -> None:
    _net, n1, _n2 = pair(text())
    got = routes(n1)
    assert "10.200.2.0/26" not in got
    chosen = got["10.200.2.64/26"]
    assert chosen.local_pref == BIRD_INT_MAX - 50  # type: ignore[attr-defined]
    assert community(64512, 7) in chosen.attrs.communities  # type: ignore[attr-defined]
    assert "10.200.2.128/26" in got  # no rule: the pools decide
    control = Control("n1", lambda: n1, lambda: None, 0.0)  # type: ignore[arg-type,return-value]
    rows = {r["prefix"]: r for r in control.rib(peer="10.77.0.2")}
    assert rows["10.200.2.0/26"]["filtered"] is True
    assert rows["10.200.2.0/26"]["reason"] == "rejected by BGPFilter n1-in importV4 rule 1"
    assert rows["10.200.2.64/26"]["best"] is True and "filtered" not in rows["10.200.2.64/26"]
    out = {r["prefix"]: r for r in control.rib(peer="10.77.0.2", direction="out")}
    assert out["10.200.1.0/26"]["filtered"] is True
    assert out["10.200.1.0/26"]["reason"] == "rejected by BGPFilter n1-out exportV4 rule 1"
    assert out["10.200.1.64/26"]["reason"].startswith("accepted by BGPFilter n1-out exportV4 rule 2")
    assert out["10.200.1.128/26"]["reason"] == "prefix advertisement"
    assert out["10.200.1.128/26"]["communities"] == ["64512:100"]


def test_service_routes_are_learned_but_never_fed_to_felixd() -> None:
    excluded = node("n1", "10.77.0.1", 64512, labels=f"'{EXCLUDE_LABEL}': 'true'")
    base = text().replace(node("n1", "10.77.0.1", 64512), excluded)
    _net, n1, _n2 = pair(base)
    assert pf.parse("10.96.0.0/12") not in {k for k, b in n1.rib.local_in[V4].routes.items()}  # not originated
    got = routes(n1)
    assert "10.96.0.0/12" in got and "192.0.2.0/24" in got  # learned from n2 (inside the service ranges)
    feed: RibFeed = n1.feed
    snapshot = {pf.text(k) for k, _b in feed._snapshot_items()}
    assert "10.96.0.0/12" not in snapshot and "192.0.2.0/24" not in snapshot
    assert "10.200.2.128/26" in snapshot
    reader = feed.add_reader()
    feed.changes([(pf.parse("10.96.0.0/12"), n1.rib.loc[V4].best[pf.parse("10.96.0.0/12")])])
    assert reader.pending == {pf.parse("10.96.0.0/12"): None}  # a withdrawal, never the route


def test_peers_with_different_export_rules_get_different_groups() -> None:
    _net, n1, n2 = pair(text())
    assert len(n1.groups) == 1 and len(n2.groups) == 1
    (key,) = n1.groups
    assert key.target.filters is not None and key.target.filters.v4 is not None
    (key2,) = n2.groups
    assert key2.target.filters is None


def test_cluster_routes_from_the_model() -> None:
    lb = doc("BGPConfiguration", "default", """\
  serviceClusterIPs: [{cidr: 10.96.0.0/12}, {cidr: 'fd00:96::/108'}]
  serviceLoadBalancerIPs: [{cidr: 203.0.113.0/24}, {cidr: 203.0.113.9/32}]
  ipv4NormalRoutePriority: 512
""")
    rr = doc("Node", "rr", "  bgp: {ipv4Address: 10.77.0.9/24, routeReflectorClusterID: 1.1.1.1}\n")
    per_node = doc("BGPConfiguration", "node.n2", "  prefixAdvertisements: [{cidr: 10.200.2.0/24, "
                   "communities: ['1:1']}]\n")
    model = load_model("---\n".join([lb, *BASE, rr, per_node]))
    n1 = cluster_routes(model, model.node("n1"))
    net = ipaddress.ip_network
    assert n1.services == (net("10.96.0.0/12"), net("fd00:96::/108"), net("203.0.113.0/24"))
    assert n1.service_ranges == (net("10.96.0.0/12"), net("fd00:96::/108"), net("203.0.113.0/24"),
                                 net("203.0.113.9/32"))
    assert n1.export_ranges == (net("10.200.0.0/16"),)  # the disableBGPExport pool is not there
    assert n1.normal_priority == (512, 1024) and n1.advertisements == ()
    assert cluster_routes(model, model.node("rr")).export_ranges == (
        net("10.200.0.0/16"), net("203.0.113.0/24"), net("203.0.113.9/32"))
    n2 = cluster_routes(model, model.node("n2"))  # its own prefixAdvertisements replace the cluster's
    assert [str(a.cidr) for a in n2.advertisements] == ["10.200.2.0/24"]
    off = load_model("---\n".join([lb.replace("ipv4NormalRoutePriority: 512",
                                              "serviceLoadBalancerAggregation: Disabled"), *BASE]))
    assert net("203.0.113.0/24") not in cluster_routes(off, off.node("n1")).services


def test_a_reload_changes_advertisements_without_touching_sessions() -> None:
    net, n1, n2 = pair(text())
    quieter = CONFIG.replace("communities: [blocks, '64512:3:4']", "communities: ['64512:5']").replace(
        "  communities: [{name: blocks, value: '64512:100'}]\n", "")
    topo, _model = topology(text(config=quieter), "n1")
    sessions = [p.established for p in n1.peers.values()]
    n1.set_routes(topo, net.now)
    assert net.run(net.now + 2, lambda: routes(n2)["10.200.1.128/26"].attrs.communities  # type: ignore[attr-defined]
                   == (community(64512, 5),))
    assert routes(n2)["10.200.1.128/26"].attrs.large_communities is None  # type: ignore[attr-defined]
    assert [p.established for p in n1.peers.values()] == sessions


def test_kernel_route_table_parsing_and_longest_match() -> None:
    v4 = parse_v4("Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n"
                  "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\n"
                  "eth1\t0000000A\t00000000\t0001\t0\t0\t0\t000000FF\n"
                  "eth2\t0000000A\t00000000\t0001\t0\t0\t0\t000000FF\n"  # same /8, its metric decides
                  "eth9\t0002000A\t00000000\t0000\t0\t0\t0\t00FFFFFF\n")  # not up: ignored
    v4[2] = (*v4[2][:2], 5, v4[2][3])
    v6 = parse_v6("fd000000000000000000000000000000 40 00000000000000000000000000000000 00 "
                  "00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth3\n")
    table = RouteTable(tuple(v4), tuple(v6))
    assert table.interface("10.0.2.1") == "eth1" and table.interface("192.0.2.7") == "eth0"
    assert table.interface("fd00::1") == "eth3" and table.interface("fe80::1") is None
    assert table.interface("not an address") is None


def test_the_kernel_table_read_agrees_with_ip_route_get() -> None:
    """This namespace's own routes, read from /proc, against the kernel's own answer."""
    ip = shutil.which("ip")
    if ip is None:
        pytest.skip("no `ip` command (iproute2) to compare with")
    table = read_table()
    for address in ("8.8.8.8", "192.0.2.1", "10.1.2.3"):
        shown = subprocess.run([ip, "-o", "route", "get", address], capture_output=True, text=True, check=False)
        words = shown.stdout.split()
        if shown.returncode != 0 or "dev" not in words:
            continue
        if "local" in words[:1]:
            continue  # our own address: the local table, which /proc/net/route does not show
        assert table.interface(address) == words[words.index("dev") + 1], shown.stdout


def test_changed_filters_apply_without_restarting_the_session() -> None:
    net, n1, n2 = pair(text())
    session = n1.peers["10.77.0.2"].established
    count = n1.peers["10.77.0.2"].established_count
    notes = sum(n1.peers["10.77.0.2"].notifications_sent.values())  # a collision at start is one
    # swap the rules: export now rejects the third block and lets the first out; import takes the
    # block it rejected and rejects the one it took
    swapped = text().replace("cidr: 10.200.1.0/26, matchOperator: Equal, action: Reject",
                             "cidr: 10.200.1.128/26, matchOperator: Equal, action: Reject").replace(
        "cidr: 10.200.2.0/26, matchOperator: Equal, action: Reject",
        "cidr: 10.200.2.128/26, matchOperator: Equal, action: Reject")
    topo, _model = topology(swapped, "n1")
    assert n1.reconfigure_peer(topo.peers["10.77.0.2"], net.now)
    assert net.run(net.now + 5, lambda: "10.200.1.0/26" in routes(n2) and "10.200.1.128/26" not in routes(n2))
    assert net.run(net.now + 5, lambda: "10.200.2.0/26" in routes(n1) and "10.200.2.128/26" not in routes(n1))
    peer = n1.peers["10.77.0.2"]
    assert peer.established is session and peer.established_count == count
    assert sum(peer.notifications_sent.values()) == notes
    assert peer.session.sent.get(5, 0) >= 1  # ROUTE-REFRESH asked for n2's routes again
    # anything else changing still restarts: the speaker says so
    other = topology(swapped.replace("asNumber: 65001\n  reversePeering", "asNumber: 65001\n  keepaliveTime: 5s\n"
                                     "  reversePeering"), "n1")[0]
    assert not n1.reconfigure_peer(other.peers["10.77.0.2"], net.now)
