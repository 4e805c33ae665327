"""The planner against the Calico routing article's cluster: every mode, both sides of CrossSubnet."""

from __future__ import annotations

import hashlib
from ipaddress import ip_address, ip_interface, ip_network

import pytest

from felixd.plan import (
    HostAddress,
    HostRoute,
    PlanInput,
    PlanNode,
    PlanPool,
    Workload,
    plan,
    vtep_mac_for,
)
from felixd.state import FdbEntry, Mode, Neighbour, RouteKind, RouteShape
from proto import prefix as pf

BLOCKS = {
    "master": "192.168.219.64/26",
    "worker-1": "192.168.226.64/26",
    "worker-2": "192.168.133.192/26",
    "worker-3": "192.168.97.192/26",
}
ADDRS = {
    "master": "10.30.0.10/24",
    "worker-1": "10.30.0.206/24",
    "worker-2": "10.30.0.56/24",
    "worker-3": "10.30.1.66/24",
}


def nodes() -> dict[str, PlanNode]:
    return {n: PlanNode(name=n, ipv4=ip_interface(ADDRS[n]), blocks=(ip_network(BLOCKS[n]),))  # type: ignore[arg-type]
            for n in BLOCKS}


def learned(me: str) -> dict[bytes, bytes]:
    return {pf.parse(BLOCKS[n]): pf.parse_address(ADDRS[n].split("/")[0]) for n in BLOCKS if n != me}


def lr(prefix: str, next_hop: str) -> dict[bytes, bytes]:
    """One learned route, in the prefix form the feed table holds."""
    return {pf.parse(prefix): pf.parse_address(next_hop)}


def host_route(dst: str, gateway: str | None, dev: str | None) -> HostRoute:
    return HostRoute(pf.parse(dst), pf.parse_address(gateway) if gateway else None, dev)


def worker1(pool: PlanPool, **kw: object) -> PlanInput:
    args: dict[str, object] = dict(
        node="worker-1",
        nodes=nodes(),
        pools=(pool,),
        routes=learned("worker-1"),
        workloads=(Workload(ip_network("192.168.226.65/32"), "cali8d4c1a2e"),),
        interfaces=(HostAddress("eth0", ip_interface("10.30.0.206/24"), mtu=1500),),
        host_routes=(host_route("0.0.0.0/0", "10.30.0.1", "eth0"),),
    )
    args.update(kw)
    return PlanInput(**args)  # type: ignore[arg-type]


def pool(ipip: str = "Never", vxlan: str = "Never", nat: bool = True) -> PlanPool:
    return PlanPool("default-ipv4-ippool", ip_network("192.168.0.0/16"), ipip_mode=ipip, vxlan_mode=vxlan,
                    nat_outgoing=nat)


class Shown:
    """A planned route with its gateway as text, for readable assertions."""

    def __init__(self, shape: RouteShape) -> None:
        self.kind, self.dev, self.onlink, self.mode = shape.kind, shape.dev, shape.onlink, shape.mode
        self.scope_link, self.pool = shape.scope_link, shape.pool
        self.gateway = pf.address_text(shape.gateway) if shape.gateway is not None else None


def route_for(state, dst: str) -> Shown:  # type: ignore[no-untyped-def]
    got = state.routes.get(pf.parse(dst))
    assert got is not None, f"{dst}: not planned"
    return Shown(got)


def planned(state, dst: str) -> bool:  # type: ignore[no-untyped-def]
    return pf.parse(dst) in state.routes


def shape(r: Shown) -> tuple[object, ...]:
    return (r.kind, r.gateway, r.dev, r.onlink, r.mode)


def test_ipip_always_routes_every_block_through_tunl0() -> None:
    state = plan(worker1(pool(ipip="Always")))
    assert shape(route_for(state, "192.168.133.192/26")) == (RouteKind.UNICAST, "10.30.0.56", "tunl0", True, Mode.IPIP)
    assert shape(route_for(state, "192.168.97.192/26")) == (RouteKind.UNICAST, "10.30.1.66", "tunl0", True, Mode.IPIP)
    assert shape(route_for(state, "192.168.219.64/26")) == (RouteKind.UNICAST, "10.30.0.10", "tunl0", True, Mode.IPIP)
    assert route_for(state, "192.168.226.64/26").kind == RouteKind.BLACKHOLE
    wl = route_for(state, "192.168.226.65/32")
    assert (wl.dev, wl.scope_link, wl.gateway) == ("cali8d4c1a2e", True, None)
    assert state.ipip is not None
    assert (state.ipip.address, state.ipip.mtu) == ("192.168.226.64/32", 1480)
    assert state.vxlan is None and not state.neighbours and not state.fdb
    assert route_for(state, "192.168.133.192/26").pool == "default-ipv4-ippool"


def test_direct_mode_resolves_the_other_subnet_through_the_gateway() -> None:
    state = plan(worker1(pool()))
    assert shape(route_for(state, "192.168.133.192/26")) == (RouteKind.UNICAST, "10.30.0.56", "eth0", False, Mode.DIRECT)
    # The article's worker-3 route: the next hop is off-link, resolved like BIRD's `gateway recursive`.
    assert shape(route_for(state, "192.168.97.192/26")) == (RouteKind.UNICAST, "10.30.0.1", "eth0", False, Mode.DIRECT)
    assert state.ipip is None and state.vxlan is None


@pytest.mark.parametrize("encap", ["ipip", "vxlan"])
def test_cross_subnet_is_direct_inside_and_encapsulated_across(encap: str) -> None:
    p = pool(ipip="CrossSubnet") if encap == "ipip" else pool(vxlan="CrossSubnet")
    state = plan(worker1(p))
    same = route_for(state, "192.168.133.192/26")
    across = route_for(state, "192.168.97.192/26")
    assert shape(same) == (RouteKind.UNICAST, "10.30.0.56", "eth0", False, Mode.DIRECT)
    if encap == "ipip":
        assert shape(across) == (RouteKind.UNICAST, "10.30.1.66", "tunl0", True, Mode.IPIP)
    else:
        assert shape(across) == (RouteKind.UNICAST, "192.168.97.192", "vxlan.calico", True, Mode.VXLAN)
        # only the node across the boundary needs VXLAN neighbour/FDB entries
        assert {n.ip for n in state.neighbours} == {"192.168.97.192"}


def test_cross_subnet_seen_from_the_other_subnet() -> None:
    data = worker1(pool(ipip="CrossSubnet"), node="worker-3", routes=learned("worker-3"), workloads=(),
                   interfaces=(HostAddress("eth0", ip_interface("10.30.1.66/24")),),
                   host_routes=(host_route("0.0.0.0/0", "10.30.1.1", "eth0"),))
    state = plan(data)
    for n in ("master", "worker-1", "worker-2"):
        assert route_for(state, BLOCKS[n]).dev == "tunl0"


def test_vxlan_always_programs_vteps() -> None:
    state = plan(worker1(pool(vxlan="Always")))
    r = route_for(state, "192.168.133.192/26")
    assert shape(r) == (RouteKind.UNICAST, "192.168.133.192", "vxlan.calico", True, Mode.VXLAN)
    mac2 = vtep_mac_for("worker-2")
    assert Neighbour("vxlan.calico", "192.168.133.192", mac2) in state.neighbours
    assert FdbEntry("vxlan.calico", mac2, "10.30.0.56") in state.fdb
    assert len(state.neighbours) == 3 and len(state.fdb) == 3
    dev = state.vxlan
    assert dev is not None
    assert (dev.vni, dev.port, dev.local, dev.mtu, dev.address, dev.parent) == (
        4096, 4789, "10.30.0.206", 1450, "192.168.226.64/32", "eth0")
    assert dev.mac == vtep_mac_for("worker-1")
    assert state.ipip is None


def test_vtep_mac_derivation_and_override() -> None:
    mac = vtep_mac_for("worker-2")
    digest = hashlib.sha1(b"worker-2").digest()
    assert mac == "66:" + ":".join(f"{b:02x}" for b in digest[:5])
    assert vtep_mac_for("worker-3") != mac
    ns = nodes()
    ns["worker-2"] = PlanNode("worker-2", ipv4=ip_interface(ADDRS["worker-2"]),  # type: ignore[arg-type]
                              blocks=(ip_network(BLOCKS["worker-2"]),),
                              vxlan_tunnel_addr=ip_address("192.168.133.200"),  # type: ignore[arg-type]
                              vxlan_mac="66:00:00:00:00:02")
    state = plan(worker1(pool(vxlan="Always"), nodes=ns))
    assert route_for(state, "192.168.133.192/26").gateway == "192.168.133.200"
    assert FdbEntry("vxlan.calico", "66:00:00:00:00:02", "10.30.0.56") in state.fdb


def test_kernel_without_ipip_programs_what_it_can() -> None:
    pools = (pool(ipip="Always"), PlanPool("vx", ip_network("172.16.0.0/16"), vxlan_mode="Always"))
    ns = nodes()
    ns["worker-2"] = PlanNode("worker-2", ipv4=ip_interface(ADDRS["worker-2"]),  # type: ignore[arg-type]
                              blocks=(ip_network(BLOCKS["worker-2"]), ip_network("172.16.5.0/26")))
    routes = {**learned("worker-1"), **lr("172.16.5.0/26", "10.30.0.56")}
    state = plan(worker1(pools[0], pools=pools, nodes=ns, routes=routes, ipip_supported=False))
    assert state.ipip is None
    assert not [s for s in state.routes.values() if s.dev == "tunl0"]
    assert route_for(state, "172.16.5.0/26").dev == "vxlan.calico"
    assert any("IP-in-IP" in w for w in state.warnings)


def test_multiple_pools_each_choose_their_mode() -> None:
    pools = (pool(ipip="Always"), PlanPool("vx", ip_network("172.16.0.0/16"), vxlan_mode="Always"),
             PlanPool("plain", ip_network("172.17.0.0/16")))
    routes = {**learned("worker-1"), **lr("172.16.5.0/26", "10.30.0.56"), **lr("172.17.5.0/26", "10.30.0.56")}
    state = plan(worker1(pools[0], pools=pools, routes=routes))
    assert route_for(state, "192.168.133.192/26").dev == "tunl0"
    assert route_for(state, "172.16.5.0/26").dev == "vxlan.calico"
    assert route_for(state, "172.17.5.0/26").dev == "eth0"
    assert route_for(state, "172.16.5.0/26").pool == "vx"
    assert state.ipip is not None and state.vxlan is not None


def test_routes_from_non_nodes_are_direct_and_poolless_needs_policy() -> None:
    routes = {**lr("192.168.50.0/26", "10.30.0.1"), **lr("203.0.113.0/24", "10.30.0.1")}
    state = plan(worker1(pool(ipip="Always"), routes=routes))
    assert shape(route_for(state, "192.168.50.0/26")) == (RouteKind.UNICAST, "10.30.0.1", "eth0", False, Mode.DIRECT)
    assert not planned(state, "203.0.113.0/24")
    state = plan(worker1(pool(ipip="Always"), routes=routes, install_poolless=True))
    r = route_for(state, "203.0.113.0/24")
    assert (r.gateway, r.dev, r.pool) == ("10.30.0.1", "eth0", None)


def test_unreachable_next_hop_is_a_warning_not_a_route() -> None:
    state = plan(worker1(pool(), host_routes=()))
    assert not planned(state, "192.168.97.192/26")
    assert any("10.30.1.66" in w for w in state.warnings)


def test_own_blocks_and_own_next_hops_are_never_routed_remotely() -> None:
    routes = {**lr(BLOCKS["worker-1"], "10.30.0.10"), **lr("192.168.1.0/26", "10.30.0.206")}
    state = plan(worker1(pool(ipip="Always"), routes=routes))
    assert route_for(state, BLOCKS["worker-1"]).kind == RouteKind.BLACKHOLE
    assert not planned(state, "192.168.1.0/26")


def test_ipv6_vxlan_pool_uses_the_v6_device() -> None:
    ns = {n: PlanNode(n, ipv4=ip_interface(ADDRS[n]),  # type: ignore[arg-type]
                      ipv6=ip_interface(f"fd00:30::{i + 1}/64"),  # type: ignore[arg-type]
                      blocks=(ip_network(BLOCKS[n]), ip_network(f"fd00:10:0:{i}::/122")))
          for i, n in enumerate(BLOCKS)}
    v6pool = PlanPool("v6", ip_network("fd00:10::/48"), vxlan_mode="Always")
    routes = lr("fd00:10:0:2::/122", "fd00:30::3")
    state = plan(worker1(v6pool, pools=(pool(), v6pool), nodes=ns, routes=routes,
                         interfaces=(HostAddress("eth0", ip_interface("10.30.0.206/24")),
                                     HostAddress("eth0", ip_interface("fd00:30::2/64")))))
    r = route_for(state, "fd00:10:0:2::/122")
    assert (r.gateway, r.dev, r.onlink) == ("fd00:10:0:2::", "vxlan-v6.calico", True)
    assert state.vxlan_v6 is not None and state.vxlan_v6.mtu == 1430
    assert state.vxlan_v6.local == "fd00:30::2"
    assert FdbEntry("vxlan-v6.calico", vtep_mac_for("worker-2"), "fd00:30::3") in state.fdb
    assert state.vxlan is None


def test_nat_outgoing_sets() -> None:
    pools = (pool(ipip="Always", nat=True), PlanPool("other", ip_network("172.16.0.0/16"), nat_outgoing=False),
             PlanPool("v6", ip_network("fd00:10::/48"), nat_outgoing=True))
    state = plan(worker1(pools[0], pools=pools))
    assert state.nat.nat_pools_v4 == {"192.168.0.0/16"}
    assert state.nat.all_pools_v4 == {"192.168.0.0/16", "172.16.0.0/16"}
    assert state.nat.nat_pools_v6 == {"fd00:10::/48"}


def test_workload_host_side_settings() -> None:
    state = plan(worker1(pool()))
    paths = {s.path: s.value for s in state.sysctls}
    assert paths["net/ipv4/conf/cali8d4c1a2e/proxy_arp"] == "1"
    assert paths["net/ipv4/ip_forward"] == "1"


def test_disabled_pool_still_routes() -> None:
    p = PlanPool("default-ipv4-ippool", ip_network("192.168.0.0/16"), ipip_mode="Always", disabled=True)
    state = plan(worker1(p))
    assert route_for(state, "192.168.133.192/26").dev == "tunl0"


def test_workload_routes_wait_for_their_interface() -> None:
    state = plan(worker1(pool(), links=frozenset({"eth0", "lo"})))
    assert not [s for s in state.routes.values() if s.mode == Mode.WORKLOAD]
    assert not [s for s in state.sysctls if "cali" in s.path]
    state = plan(worker1(pool(), links=frozenset({"eth0", "cali8d4c1a2e"})))
    assert route_for(state, "192.168.226.65/32").dev == "cali8d4c1a2e"
