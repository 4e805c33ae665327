"""The planner's input values: nodes, pools, workloads, the host's network and the learned routes.

Built from the cluster model (`felixd.inputs`) and from a read of the host (`felixd.host`); cold
values (a few per node, pool or interface) keep `ipaddress` types, the per-route ones (learned
routes, the host's routes) are in the prefix form.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import field
from types import MappingProxyType

from proto.prefix import Address, Prefix
from proto.record import record
from proto.resources import vtep_mac_for

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

NEVER, ALWAYS, CROSS_SUBNET = "Never", "Always", "CrossSubnet"


@record(frozen=True)
class PlanPool:
    name: str
    cidr: IPNetwork
    ipip_mode: str = NEVER
    vxlan_mode: str = NEVER
    nat_outgoing: bool = False
    disabled: bool = False

    @property
    def encapsulation(self) -> str | None:
        """Calico's rule: VXLAN if vxlanMode != Never, else IPIP if ipipMode != Never, else none."""
        if self.vxlan_mode != NEVER:
            return "vxlan"
        if self.ipip_mode != NEVER:
            return "ipip"
        return None

    @property
    def encapsulation_setting(self) -> str:
        return self.vxlan_mode if self.vxlan_mode != NEVER else self.ipip_mode


@record(frozen=True)
class PlanNode:
    name: str
    ipv4: ipaddress.IPv4Interface | None = None  # bgp.ipv4Address, with its subnet
    ipv6: ipaddress.IPv6Interface | None = None
    blocks: tuple[IPNetwork, ...] = ()
    ipip_tunnel_addr: ipaddress.IPv4Address | None = None
    vxlan_tunnel_addr: ipaddress.IPv4Address | None = None
    vxlan_tunnel_addr_v6: ipaddress.IPv6Address | None = None
    vxlan_mac: str | None = None
    vxlan_mac_v6: str | None = None

    def address(self, version: int) -> IPAddress | None:
        iface = self.ipv4 if version == 4 else self.ipv6
        return iface.ip if iface is not None else None

    def first_block_address(self, version: int, within: Sequence[IPNetwork] = ()) -> IPAddress | None:
        """First address of the node's lowest block of that IP version (inside `within` if given)."""
        blocks = sorted(
            (b for b in self.blocks
             if b.version == version and (not within or any(b.subnet_of(p) for p in within  # type: ignore[arg-type]
                                                              if p.version == version))),
            key=lambda b: int(b.network_address),
        )
        return blocks[0].network_address if blocks else None

    def vtep_ip(self, version: int) -> IPAddress | None:
        configured = self.vxlan_tunnel_addr if version == 4 else self.vxlan_tunnel_addr_v6
        return configured or self.first_block_address(version)

    def vtep_mac(self, version: int) -> str:
        configured = self.vxlan_mac if version == 4 else self.vxlan_mac_v6
        return configured or vtep_mac_for(self.name)


@record(frozen=True)
class Workload:
    ip: IPNetwork  # /32 or /128
    interface: str


@record(frozen=True)
class PeerRoute:
    """A BGP peer of this node whose BGPPeer has `reachableBy`: Calico's static route `peer/32 via
    gateway` (its BIRD `protocol static`), which felixd writes because bgpd never touches the kernel."""

    peer: IPAddress
    gateway: IPAddress
    source: str = ""  # the BGPPeer that asks for it (for warnings)


@record(frozen=True)
class HostAddress:
    """An address on this host, with its connected subnet (e.g. eth0 10.30.0.206/24)."""

    dev: str
    address: IPInterface
    mtu: int = 1500


@record(frozen=True)
class HostRoute:
    """A route of the host's own (not felixd's), used to resolve next hops recursively."""

    dst: Prefix
    gateway: Address | None
    dev: str | None


@record(frozen=True)
class PlanInput:
    node: str
    nodes: dict[str, PlanNode]
    pools: tuple[PlanPool, ...]
    # learned routes: prefix -> next hop, as the feed table holds them (not copied)
    routes: Mapping[Prefix, Address] = field(default_factory=lambda: MappingProxyType({}))
    workloads: tuple[Workload, ...] = ()
    interfaces: tuple[HostAddress, ...] = ()
    host_routes: tuple[HostRoute, ...] = ()
    install_poolless: bool = False  # routes for prefixes outside every pool (e.g. from a ToR)
    ipip_supported: bool = True
    links: frozenset[str] | None = None  # interfaces present on the host (None: do not check)
    peer_routes: tuple[PeerRoute, ...] = ()  # static routes to this node's reachableBy peers
