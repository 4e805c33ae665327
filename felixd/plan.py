"""The pure planner: learned routes + pools + nodes + this host's interfaces -> desired kernel state.

No I/O here. The inputs are plain values (built from the cluster model and from a read of the
host's interfaces and routes by the daemon), so every routing decision of Calico's article can be
tested by constructing a few values: which next hop and device a remote block gets under IP-in-IP,
VXLAN, direct and CrossSubnet, and what the host needs besides (tunnel devices, VXLAN neighbour and
FDB entries, blackholes for its own blocks, /32s to its workloads, NAT-outgoing sets).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from felixd.state import (
    DesiredState,
    FdbEntry,
    IpipDevice,
    Mode,
    NatOutgoing,
    Neighbour,
    Route,
    RouteKind,
    Sysctl,
    VxlanDevice,
)
from proto.resources import vtep_mac_for

__all__ = ["vtep_mac_for"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

NEVER, ALWAYS, CROSS_SUBNET = "Never", "Always", "CrossSubnet"
VXLAN_V4_DEVICE = "vxlan.calico"
VXLAN_V6_DEVICE = "vxlan-v6.calico"
IPIP_DEVICE = "tunl0"
IPIP_OVERHEAD, VXLAN_V4_OVERHEAD, VXLAN_V6_OVERHEAD = 20, 50, 70


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class LearnedRoute:
    prefix: IPNetwork
    next_hop: IPAddress
    stale: bool = False  # kept through a bgpd restart; still programmed


@dataclass(frozen=True)
class Workload:
    ip: IPNetwork  # /32 or /128
    interface: str


@dataclass(frozen=True)
class HostInterface:
    """An address on this host, with its connected subnet (e.g. eth0 10.30.0.206/24)."""

    dev: str
    address: IPInterface
    mtu: int = 1500


@dataclass(frozen=True)
class HostRoute:
    """A route of the host's own (not felixd's), used to resolve next hops recursively."""

    dst: IPNetwork
    gateway: IPAddress | None
    dev: str | None


@dataclass(frozen=True)
class PlanInput:
    node: str
    nodes: dict[str, PlanNode]
    pools: tuple[PlanPool, ...]
    routes: tuple[LearnedRoute, ...] = ()
    workloads: tuple[Workload, ...] = ()
    interfaces: tuple[HostInterface, ...] = ()
    host_routes: tuple[HostRoute, ...] = ()
    install_poolless: bool = False  # routes for prefixes outside every pool (e.g. from a ToR)
    ipip_supported: bool = True
    links: frozenset[str] | None = None  # interfaces present on the host (None: do not check)


@dataclass
class PartialPlan:
    routes: dict[tuple[str, int, int], Route] = field(default_factory=dict)
    neighbours: set[Neighbour] = field(default_factory=set)
    fdb: set[FdbEntry] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)

    def add(self, route: Route) -> None:
        self.routes[route.key] = route


def _longest_match(prefixes: Iterable[tuple[IPNetwork, object]], addr: IPAddress) -> object | None:
    best: tuple[int, object] | None = None
    for net, value in prefixes:
        if net.version == addr.version and addr in net and (best is None or net.prefixlen > best[0]):
            best = (net.prefixlen, value)
    return best[1] if best else None


def pool_for(pools: Sequence[PlanPool], prefix: IPNetwork) -> PlanPool | None:
    """The most specific pool that contains the whole prefix."""
    candidates = [p for p in pools if p.cidr.version == prefix.version and prefix.subnet_of(p.cidr)]  # type: ignore[arg-type]
    return max(candidates, key=lambda p: p.cidr.prefixlen) if candidates else None


class Planner:
    def __init__(self, data: PlanInput) -> None:
        self.data = data
        self.me = data.nodes[data.node]
        self.by_address: dict[IPAddress, PlanNode] = {}
        for node in data.nodes.values():
            for iface in (node.ipv4, node.ipv6):
                if iface is not None:
                    self.by_address[iface.ip] = node
        self.own_addresses = {i.address.ip for i in data.interfaces} | {
            a for a in (self.me.address(4), self.me.address(6)) if a is not None}

    # --- the host's own network

    def workloads(self) -> list[Workload]:
        """Workloads whose interface exists: a route to a missing device is refused by the kernel."""
        links = self.data.links
        return [w for w in self.data.workloads if links is None or w.interface in links]

    def uplink(self, version: int) -> HostInterface | None:
        mine = self.me.address(version)
        for iface in self.data.interfaces:
            if iface.address.ip == mine:
                return iface
        for iface in self.data.interfaces:
            if iface.address.version == version and not iface.address.ip.is_loopback:
                return iface
        return None

    def connected(self, addr: IPAddress) -> HostInterface | None:
        hit = _longest_match(((i.address.network, i) for i in self.data.interfaces), addr)
        return hit if isinstance(hit, HostInterface) else None

    def resolve(self, next_hop: IPAddress) -> tuple[IPAddress, str] | None:
        """(gateway, device) towards a next hop, like BIRD's `gateway recursive`."""
        iface = self.connected(next_hop)
        if iface is not None:
            return next_hop, iface.dev
        hit = _longest_match(((r.dst, r) for r in self.data.host_routes), next_hop)
        if isinstance(hit, HostRoute) and hit.dev is not None:
            if hit.gateway is None:
                return next_hop, hit.dev
            return hit.gateway, hit.dev
        return None

    def same_subnet(self, remote: IPAddress) -> bool:
        iface = self.me.ipv4 if remote.version == 4 else self.me.ipv6
        return iface is not None and remote in iface.network

    # --- routes

    def plan(self) -> DesiredState:
        out = PartialPlan()
        local_blocks = set(self.me.blocks)
        for block in sorted(local_blocks, key=str):
            pool = pool_for(self.data.pools, block)
            out.add(Route(dst=str(block), kind=RouteKind.BLACKHOLE, mode=Mode.LOCAL_BLOCK,
                          pool=pool.name if pool else None))
        for wl in self.workloads():
            pool = pool_for(self.data.pools, wl.ip)
            out.add(Route(dst=str(wl.ip), dev=wl.interface, scope_link=True, mode=Mode.WORKLOAD,
                          pool=pool.name if pool else None))
        for learned in self.data.routes:
            if learned.prefix in local_blocks or learned.next_hop in self.own_addresses:
                continue
            self.plan_remote(learned, out)
        ipip = self.ipip_device(out)
        vxlan = self.vxlan_device(4, out)
        vxlan_v6 = self.vxlan_device(6, out)
        wanted_devices = {d.name for d in (ipip, vxlan, vxlan_v6) if d is not None}
        # A route through a device that will not exist cannot be installed: say why instead.
        for key, route in list(out.routes.items()):
            if route.mode in (Mode.IPIP, Mode.VXLAN) and route.dev not in wanted_devices:
                del out.routes[key]
        return DesiredState(
            routes=out.routes,
            ipip=ipip,
            vxlan=vxlan,
            vxlan_v6=vxlan_v6,
            neighbours=frozenset(n for n in out.neighbours if n.dev in wanted_devices),
            fdb=frozenset(f for f in out.fdb if f.dev in wanted_devices),
            nat=self.nat(),
            sysctls=self.sysctls(),
            warnings=tuple(out.warnings),
        )

    def plan_remote(self, learned: LearnedRoute, out: PartialPlan) -> None:
        prefix, nh = learned.prefix, learned.next_hop
        pool = pool_for(self.data.pools, prefix)
        if pool is None and not self.data.install_poolless:
            return
        node = self.by_address.get(nh)
        encap = pool.encapsulation if pool is not None and node is not None else None
        if encap is not None and pool is not None and pool.encapsulation_setting == CROSS_SUBNET \
                and self.same_subnet(nh):
            encap = None
        pool_name = pool.name if pool else None
        if encap == "ipip":
            if prefix.version != 4:
                out.warnings.append(f"{prefix}: IP-in-IP needs IPv4; not installed")
                return
            out.add(Route(dst=str(prefix), gateway=str(nh), dev=IPIP_DEVICE, onlink=True,
                          mode=Mode.IPIP, pool=pool_name))
            return
        if encap == "vxlan" and node is not None:
            version = prefix.version
            vtep_ip = node.vtep_ip(version)
            if vtep_ip is None:
                out.warnings.append(f"{prefix}: node {node.name} has no VXLAN tunnel address; not installed")
                return
            dev = VXLAN_V4_DEVICE if version == 4 else VXLAN_V6_DEVICE
            mac = node.vtep_mac(version)
            out.add(Route(dst=str(prefix), gateway=str(vtep_ip), dev=dev, onlink=True,
                          mode=Mode.VXLAN, pool=pool_name))
            out.neighbours.add(Neighbour(dev=dev, ip=str(vtep_ip), mac=mac))
            out.fdb.add(FdbEntry(dev=dev, mac=mac, dst=str(nh)))
            return
        hop = self.resolve(nh)
        if hop is None:
            out.warnings.append(f"{prefix}: next hop {nh} is not reachable from this host; not installed")
            return
        gateway, dev = hop
        out.add(Route(dst=str(prefix), gateway=str(gateway), dev=dev, mode=Mode.DIRECT, pool=pool_name))

    # --- devices and host settings

    def _pools_with(self, encap: str, version: int) -> list[PlanPool]:
        return [p for p in self.data.pools if p.encapsulation == encap and p.cidr.version == version]

    def ipip_device(self, out: PartialPlan) -> IpipDevice | None:
        pools = self._pools_with("ipip", 4)
        if not pools:
            return None
        if not self.data.ipip_supported:
            out.warnings.append("this kernel cannot do IP-in-IP (no ipip support): IPIP routes not installed")
            return None
        uplink = self.uplink(4)
        address = self.me.ipip_tunnel_addr or self.me.first_block_address(4, [p.cidr for p in pools]) \
            or self.me.first_block_address(4)
        return IpipDevice(name=IPIP_DEVICE, address=f"{address}/32" if address else None,
                          mtu=(uplink.mtu if uplink else 1500) - IPIP_OVERHEAD)

    def vxlan_device(self, version: int, out: PartialPlan) -> VxlanDevice | None:
        if not self._pools_with("vxlan", version):
            return None
        local = self.me.address(version)
        if local is None:
            out.warnings.append(f"VXLAN IPv{version} pool but this node has no IPv{version} address")
            return None
        uplink = self.uplink(version)
        vtep_ip = self.me.vtep_ip(version)
        overhead = VXLAN_V4_OVERHEAD if version == 4 else VXLAN_V6_OVERHEAD
        plen = 32 if version == 4 else 128
        return VxlanDevice(
            name=VXLAN_V4_DEVICE if version == 4 else VXLAN_V6_DEVICE,
            local=str(local),
            mac=self.me.vtep_mac(version),
            address=f"{vtep_ip}/{plen}" if vtep_ip else None,
            mtu=(uplink.mtu if uplink else 1500) - overhead,
            parent=uplink.dev if uplink else None,
        )

    def nat(self) -> NatOutgoing:
        def cidrs(version: int, nat_only: bool) -> frozenset[str]:
            return frozenset(str(p.cidr) for p in self.data.pools
                             if p.cidr.version == version and (p.nat_outgoing or not nat_only))

        return NatOutgoing(nat_pools_v4=cidrs(4, True), all_pools_v4=cidrs(4, False),
                           nat_pools_v6=cidrs(6, True), all_pools_v6=cidrs(6, False))

    def sysctls(self) -> frozenset[Sysctl]:
        wanted: set[Sysctl] = set()
        for wl in self.workloads():
            if wl.ip.version == 4:
                wanted.add(Sysctl(f"net/ipv4/conf/{wl.interface}/proxy_arp", "1"))
                wanted.add(Sysctl(f"net/ipv4/conf/{wl.interface}/forwarding", "1"))
                wanted.add(Sysctl("net/ipv4/ip_forward", "1"))
            else:
                wanted.add(Sysctl(f"net/ipv6/conf/{wl.interface}/proxy_ndp", "1"))
                wanted.add(Sysctl(f"net/ipv6/conf/{wl.interface}/forwarding", "1"))
        if self.data.routes:
            wanted.add(Sysctl("net/ipv4/ip_forward", "1"))
        return frozenset(wanted)


def plan(data: PlanInput) -> DesiredState:
    return Planner(data).plan()
