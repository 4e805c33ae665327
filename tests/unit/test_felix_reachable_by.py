"""BGPPeer `reachableBy`: felixd plans Calico's static route `peerIP/32 via reachableBy` for the peers
bgpd's topology gives this node, in the full plan and in feed deltas alike."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from ipaddress import ip_address, ip_interface

from hypothesis import given, settings
from hypothesis import strategies as st

from felixd.delta import mode_counts, plan_delta
from felixd.feed_table import FeedTable
from felixd.inputs import plan_input, plan_peer_routes
from felixd.plan import HostAddress, HostRoute, plan
from felixd.plan_index import PlanIndex
from felixd.plan_input import PeerRoute
from felixd.planned import PlannedRoutes
from felixd.state import Mode, Op, RouteShape
from proto import prefix as pf
from proto.feed_wire import WireRoute, WireWithdraw
from proto.resources import load_model

HEAD = "apiVersion: projectcalico.org/v3\n"
NODES = "---\n".join([
    f"{HEAD}kind: Node\nmetadata: {{name: me, labels: {{rack: a}}}}\n"
    "spec: {bgp: {ipv4Address: 10.30.0.206/24, ipv6Address: 'fd00:30::206/64'}}\n",
    f"{HEAD}kind: Node\nmetadata: {{name: other, labels: {{rack: b}}}}\n"
    "spec: {bgp: {ipv4Address: 10.30.0.56/24, ipv6Address: 'fd00:30::56/64'}}\n",
    f"{HEAD}kind: IPPool\nmetadata: {{name: pods}}\nspec: {{cidr: 10.244.0.0/16, blockSize: 26}}\n",
    f"{HEAD}kind: BlockAffinity\nmetadata: {{name: me}}\nspec: {{node: me, cidr: 10.244.0.0/26}}\n",
])
IFACES = (HostAddress("eth0", ip_interface("10.30.0.206/24")), HostAddress("eth0", ip_interface("fd00:30::206/64")))
DEFAULT = (HostRoute(pf.parse("0.0.0.0/0"), pf.parse_address("10.30.0.1"), "eth0"),)


def peer(name: str, spec: str) -> str:
    return f"---\n{HEAD}kind: BGPPeer\nmetadata: {{name: {name}}}\nspec: {{{spec}}}\n"


TOR = peer("tor", "peerIP: 10.99.0.1, asNumber: 65001, reachableBy: 10.30.0.1")
TOR6 = peer("tor6", "peerIP: 'fd00:99::1', asNumber: 65001, reachableBy: 'fd00:30::1'")


def planned(cluster: str, learned: dict[bytes, bytes] | None = None, node: str = "me") -> dict[str, RouteShape]:
    state = plan(plan_input(load_model(cluster), node, learned or {}, IFACES, DEFAULT))
    return {pf.text(k): s for k, s in state.routes.items()}  # type: ignore[arg-type]


def test_a_global_peer_with_reachable_by_gets_a_host_route_through_the_gateway() -> None:
    routes = planned(NODES + TOR + TOR6)
    r, r6 = routes["10.99.0.1/32"], routes["fd00:99::1/128"]
    assert (pf.address_text(r.gateway), r.dev, r.onlink, r.mode) == ("10.30.0.1", "eth0", False, Mode.REACHABLE_BY)
    assert (pf.address_text(r6.gateway), r6.dev, r6.mode) == ("fd00:30::1", "eth0", Mode.REACHABLE_BY)
    assert "10.244.0.0/26" in routes  # beside the node's own routes
    assert "10.99.0.1/32" not in planned(NODES)  # no BGPPeer, no route


def test_only_peers_that_apply_to_this_node() -> None:
    """The topology decides: nodeSelector and node pick the nodes, and a peering to this node's own
    address is none (the other node makes it and gets the route)."""
    here = peer("rack-a", "peerIP: 10.99.0.1, asNumber: 65001, reachableBy: 10.30.0.1, nodeSelector: rack == 'a'")
    there = peer("rack-b", "peerIP: 10.99.0.2, asNumber: 65001, reachableBy: 10.30.0.1, nodeSelector: rack == 'b'")
    named = peer("named", "peerIP: 10.99.0.3, asNumber: 65001, reachableBy: 10.30.0.1, node: other")
    routes = planned(NODES + here + there + named)
    assert "10.99.0.1/32" in routes and "10.99.0.2/32" not in routes and "10.99.0.3/32" not in routes
    assert {p.peer for p in plan_peer_routes(load_model(NODES + here + there + named), "other")} == {
        ip_address("10.99.0.2"), ip_address("10.99.0.3")}


def test_the_first_peering_to_an_address_wins_as_in_the_topology() -> None:
    """A global BGPPeer and a node-specific one to the same address: the global one makes the peering
    (Calico's globalPass), so its gateway is the route's."""
    specific = peer("a-specific", "peerIP: 10.99.0.1, asNumber: 65001, reachableBy: 10.30.0.2, node: me")
    routes = planned(NODES + specific + TOR)
    assert pf.address_text(routes["10.99.0.1/32"].gateway) == "10.30.0.1"


def test_a_gateway_off_every_connected_subnet_is_a_warning_not_a_route() -> None:
    far = peer("far", "peerIP: 10.99.0.1, asNumber: 65001, reachableBy: 10.77.0.1")
    own = peer("own", "peerIP: 10.99.0.2, asNumber: 65001, reachableBy: 10.30.0.206")
    state = plan(plan_input(load_model(NODES + far + own), "me", {}, IFACES, DEFAULT))
    keys = {pf.text(k) for k in state.routes}  # type: ignore[arg-type]
    assert "10.99.0.1/32" not in keys and "10.99.0.2/32" not in keys
    assert ("BGPPeer far: reachableBy 10.77.0.1 is not on a subnet connected to this host; the static route to "
            "peer 10.99.0.1 is not installed") in state.warnings
    assert any(w.startswith("BGPPeer own: reachableBy 10.30.0.206 is this host's own address") for w in state.warnings)


def test_the_static_route_wins_over_the_same_prefix_learned_by_bgp() -> None:
    """Calico's BIRD prefers its static protocol to BGP: a ToR that advertises its own loopback does
    not move the route to the loopback off the gateway (that would be the flap reachableBy prevents)."""
    learned = {pf.parse("10.99.0.1/32"): pf.parse_address("10.30.0.56")}
    r = planned(NODES + TOR, learned)["10.99.0.1/32"]
    assert (pf.address_text(r.gateway), r.mode) == ("10.30.0.1", Mode.REACHABLE_BY)


def test_routes_learned_from_the_peer_resolve_through_its_route() -> None:
    """A multihop peer's routes have its loopback as next hop: they go through the gateway, as BIRD's
    `gateway recursive` resolves them through Calico's static route. Without the route: not installed."""
    learned = {pf.parse("198.51.100.0/24"): pf.parse_address("10.99.0.1")}
    data = plan_input(load_model(NODES + TOR), "me", learned, IFACES, ())
    state = plan(dataclasses.replace(data, install_poolless=True))
    r = state.routes[pf.parse("198.51.100.0/24")]
    assert (pf.address_text(r.gateway), r.dev, r.mode) == ("10.30.0.1", "eth0", Mode.DIRECT)
    without = plan(dataclasses.replace(plan_input(load_model(NODES), "me", learned, IFACES, ()), install_poolless=True))
    assert pf.parse("198.51.100.0/24") not in without.routes and without.unplanned == 1


def test_reverse_peerings_carry_it_as_calico_does() -> None:
    """A BGPPeer whose peerIP is a Node's address: that Node peers back with the nodes the BGPPeer
    applies to, and confd's nodeAsBGPPeers gives those peerings the BGPPeer's reachableBy too."""
    to_other = peer("to-other", "peerIP: 10.30.0.56, asNumber: 64512, reachableBy: 10.30.0.1, node: me")
    assert [(str(p.peer), str(p.gateway)) for p in plan_peer_routes(load_model(NODES + to_other), "me")] == [
        ("10.30.0.56", "10.30.0.1")]
    assert [(str(p.peer), str(p.gateway)) for p in plan_peer_routes(load_model(NODES + to_other), "other")] == [
        ("10.30.0.206", "10.30.0.1")]


def test_a_secret_password_is_never_read_by_felixd(tmp_path: object) -> None:
    """felixd asks the topology for the peerings only: a BGPPeer password in a secret felixd cannot
    read (or that is missing) changes nothing about its routes."""
    secret = peer("tor", "peerIP: 10.99.0.1, asNumber: 65001, reachableBy: 10.30.0.1, "
                  "password: {secretKeyRef: {name: missing, key: nope}}")
    assert [str(p.peer) for p in plan_peer_routes(load_model(NODES + secret), "me")] == ["10.99.0.1"]


def test_felixd_imports_no_bgp_code_without_reachable_by() -> None:
    """The topology brings the BGP codec (and construct) with it: felixd loads it only for a cluster
    that uses reachableBy."""
    code = ("import sys; from felixd.inputs import plan_input; from proto.resources import load_model; "
            f"plan_input(load_model({NODES!r}), 'me', {{}}, (), ()); "
            "print(sorted(m for m in sys.modules if m.startswith('bgpd') or m == 'construct'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- full plan and deltas keep it alike

PEER, LOOPBACK = pf.parse("10.99.0.1/32"), pf.parse_address("10.99.0.1")
HOPS = [pf.parse_address(a) for a in ("10.30.0.56", "10.30.0.1", "203.0.113.9")] + [LOOPBACK]
PREFIXES = [PEER] + [pf.parse(f"198.51.{i}.0/24") for i in range(6)] + [pf.parse(f"10.244.{i}.0/26") for i in range(1, 5)]


def index() -> PlanIndex:
    data = plan_input(load_model(NODES), "me", {}, IFACES, DEFAULT, install_poolless=True)
    return PlanIndex(dataclasses.replace(data, peer_routes=(
        PeerRoute(ip_address("10.99.0.1"), ip_address("10.30.0.1"), "BGPPeer tor"),)))


def frame(prefix: bytes, hop: bytes | None, seq: int) -> WireRoute | WireWithdraw:
    return WireRoute(seq, prefix, hop, 0, 100, 0, None) if hop is not None else WireWithdraw(seq, prefix)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(PREFIXES), st.sampled_from(HOPS), min_size=1),
       st.lists(st.lists(st.tuples(st.sampled_from(PREFIXES), st.one_of(st.none(), st.sampled_from(HOPS))),
                         min_size=1, max_size=6), min_size=1, max_size=6))
def test_deltas_never_touch_the_peer_route_and_equal_a_full_plan(
        start: dict[bytes, bytes], batches: list[list[tuple[bytes, bytes | None]]]) -> None:
    idx = index()
    table = FeedTable()
    table.receive([frame(p, h, 0) for p, h in start.items()], {})
    full = idx.plan(table.routes)
    view = PlannedRoutes(idx, table, idx.local_routes(), {})
    assert dict(view.items()) == full.routes and full.routes[PEER].mode == Mode.REACHABLE_BY
    desired = dataclasses.replace(full, routes=view)
    kernel = dict(full.routes)
    modes = mode_counts(full.routes.values())
    for batch in batches:
        changed: dict[bytes, bytes | None] = {}
        table.receive([frame(p, h, i) for i, (p, h) in enumerate(batch)], changed)
        delta = plan_delta(changed, view, desired, 80, modes)
        assert PEER not in {key for _op, key, _shape, _proto in delta.ops}
        for op, key, shape, _proto in delta.ops:
            if op is Op.REPLACE:
                kernel[key] = shape  # type: ignore[assignment]
            else:
                del kernel[key]
        full = idx.plan(table.routes)
        assert kernel == full.routes and dict(view.items()) == full.routes
        assert pf.address_text(full.routes[PEER].gateway) == "10.30.0.1"  # type: ignore[arg-type]
