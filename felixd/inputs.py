"""Builds the planner's input from the cluster model (once per model change) and the host's network."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from felixd.plan_input import HostAddress, HostRoute, PeerRoute, PlanInput, PlanNode, PlanPool, Workload
from proto.prefix import Address, Prefix
from proto.resources import ClusterModel


def plan_nodes(model: ClusterModel) -> dict[str, PlanNode]:
    nodes = {}
    for n in model.nodes:
        nodes[n.name] = PlanNode(
            name=n.name, ipv4=n.ipv4_address, ipv6=n.ipv6_address,
            blocks=tuple(b.cidr for b in model.blocks_for(n)),
            ipip_tunnel_addr=n.ipv4_ipip_tunnel_addr, vxlan_tunnel_addr=n.ipv4_vxlan_tunnel_addr,
            vxlan_mac=n.vxlan_tunnel_mac_addr, vxlan_tunnel_addr_v6=n.ipv6_vxlan_tunnel_addr,
            vxlan_mac_v6=n.vxlan_tunnel_mac_addr_v6,
        )
    return nodes


def plan_pools(model: ClusterModel) -> tuple[PlanPool, ...]:
    return tuple(PlanPool(name=p.name, cidr=p.cidr, ipip_mode=p.ipip_mode, vxlan_mode=p.vxlan_mode,
                          nat_outgoing=p.nat_outgoing, disabled=p.disabled) for p in model.pools)


def plan_workloads(model: ClusterModel, node: str) -> tuple[Workload, ...]:
    out = []
    for wep in model.workloads_for(node):
        for net in wep.ip_networks:
            host = ipaddress.ip_network(f"{net.network_address}/{net.max_prefixlen}")
            out.append(Workload(ip=host, interface=wep.interface_name))
    return tuple(out)


def plan_peer_routes(model: ClusterModel, node: str) -> tuple[PeerRoute, ...]:
    """The static routes this node's BGP peers ask for with `reachableBy`.

    Which peerings a node makes is bgpd's topology (global BGPPeers before node-specific ones, the
    first peering to an address wins, reverse peerings, never to itself), so the same code decides
    here; it is imported only when some BGPPeer has `reachableBy` (it brings the BGP codec with it).
    """
    if not any(p.reachable_by is not None for p in model.peers):
        return ()
    from bgpd.topology import TopologyError, build

    try:
        peers = build(model, node, passwords=False).peers.values()
    except TopologyError:
        return ()  # no BGP on this node (bgpd says why), so no peers to reach
    return tuple(PeerRoute(peer=p.address, gateway=p.reachable_by, source=p.source) for p in peers
                 if p.reachable_by is not None and p.reachable_by.version == p.address.version)


def plan_input(model: ClusterModel, node: str, routes: Mapping[Prefix, Address],
               interfaces: tuple[HostAddress, ...], host_routes: tuple[HostRoute, ...], *,
               install_poolless: bool = False, ipip_supported: bool = True,
               links: frozenset[str] | None = None) -> PlanInput:
    return PlanInput(node=node, nodes=plan_nodes(model), pools=plan_pools(model), routes=routes,
                     workloads=plan_workloads(model, node), interfaces=interfaces, host_routes=host_routes,
                     install_poolless=install_poolless, ipip_supported=ipip_supported, links=links,
                     peer_routes=plan_peer_routes(model, node))
