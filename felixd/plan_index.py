"""The planner's indexes, built once per change of the cluster model or of the host.

Everything a route's kernel shape depends on besides its own prefix is fixed between such changes:
the pools (which one holds the prefix, and its encapsulation), the nodes by address (is the next hop
a Node, and what is its VTEP), this host's addresses, subnets and routes (CrossSubnet, and how a
next hop resolves, like BIRD's `gateway recursive`) and which tunnel devices exist. So a route's
shape is a function of (pool, IP version, next hop), computed once and cached (`decide`); planning
a prefix is a pool lookup and a dict hit, whether for a full plan of 100k routes or a feed delta of
one. Shapes are interned: every route with the same shape holds the same object.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

from felixd.plan_input import (
    CROSS_SUBNET,
    HostAddress,
    HostRoute,
    IPNetwork,
    PlanInput,
    PlanNode,
    PlanPool,
    Workload,
)
from felixd.state import (
    IP_FORWARD,
    DesiredState,
    FdbEntry,
    IpipDevice,
    Mode,
    NatOutgoing,
    Neighbour,
    RouteKey,
    RouteKind,
    RouteShape,
    Sysctl,
    VxlanDevice,
)
from proto import prefix as pf
from proto.prefix import Address, Prefix

VXLAN_V4_DEVICE = "vxlan.calico"
VXLAN_V6_DEVICE = "vxlan-v6.calico"
IPIP_DEVICE = "tunl0"
IPIP_OVERHEAD, VXLAN_V4_OVERHEAD, VXLAN_V6_OVERHEAD = 20, 50, 70
_BITS = {4: 32, 6: 128}
_DECISIONS_MAX = 1 << 16


class Decision(NamedTuple):
    """What to do with a learned route: a shape (and the VXLAN entries it needs), or why not."""

    shape: RouteShape | None
    neighbour: Neighbour | None = None
    fdb: FdbEntry | None = None
    reason: str | None = None  # not installed, and why (None with no shape: not felixd's to install)


_SKIP = Decision(None)


class Lpm:
    """Longest-prefix match over a few (or a full table of) prefixes: one dict per prefix length."""

    def __init__(self, items: Iterable[tuple[Prefix, object]]) -> None:
        by_len: dict[tuple[int, int], dict[bytes, object]] = {}
        for prefix, value in items:
            by_len.setdefault((prefix[0], prefix[1]), {}).setdefault(prefix[2:], value)
        self.tables: dict[int, list[tuple[int, int, dict[bytes, object]]]] = {4: [], 6: []}
        for (version, plen), table in sorted(by_len.items(), key=lambda kv: -kv[0][1]):
            bits = _BITS[version]
            mask = ((1 << plen) - 1) << (bits - plen)
            self.tables[version].append((mask, bits // 8, table))

    def lookup(self, address: Address) -> object | None:
        tables = self.tables.get(address[0])
        if not tables:
            return None
        value = int.from_bytes(address[1:], "big")
        for mask, size, table in tables:
            hit = table.get((value & mask).to_bytes(size, "big"))
            if hit is not None:
                return hit
        return None


class PlanIndex:
    def __init__(self, data: PlanInput) -> None:
        self.data = data
        self.me = data.nodes[data.node]
        self.by_address: dict[Address, PlanNode] = {}
        for node in data.nodes.values():
            for iface in (node.ipv4, node.ipv6):
                if iface is not None:
                    self.by_address[pf.from_ip(iface.ip)] = node
        self.own_addresses: set[Address] = {pf.from_ip(i.address.ip) for i in data.interfaces} | {
            pf.from_ip(a) for a in (self.me.address(4), self.me.address(6)) if a is not None}
        self.local_blocks: set[Prefix] = {pf.from_network(b) for b in self.me.blocks}
        # the keys of this host's own routes (blocks and workloads): never a learned route's
        self.local_keys: frozenset[Prefix] = self.local_blocks | frozenset(
            pf.from_network(w.ip) for w in self.workloads())
        # pools by IP version, most specific first: (prefix length, network as int, mask, pool index)
        self.pools: dict[int, list[tuple[int, int, int, int]]] = {4: [], 6: []}
        for i, pool in sorted(enumerate(data.pools), key=lambda ip: -ip[1].cidr.prefixlen):
            bits = _BITS[pool.cidr.version]
            mask = ((1 << pool.cidr.prefixlen) - 1) << (bits - pool.cidr.prefixlen)
            self.pools[pool.cidr.version].append((pool.cidr.prefixlen, int(pool.cidr.network_address), mask, i))
        self.connected = Lpm((pf.from_network(i.address.network), i) for i in data.interfaces)
        self.host_routes = Lpm((r.dst, r) for r in data.host_routes)
        self.device_warnings: list[str] = []
        self.ipip = self._ipip_device()
        self.vxlan = self._vxlan_device(4)
        self.vxlan_v6 = self._vxlan_device(6)
        self.devices = frozenset(d.name for d in (self.ipip, self.vxlan, self.vxlan_v6) if d is not None)
        # (pool index, version, next hop) -> decision; and the fast cache in front of it (see decide)
        self._decided: dict[tuple[int, int, Address], Decision] = {}
        self._decisions: dict[bytes, Decision] = {}
        self._pool_octets = {v: 2 + (max((p.cidr.prefixlen for p in data.pools if p.cidr.version == v), default=0)
                                         + 7) // 8 for v in (4, 6)}
        self._shapes: dict[RouteShape, RouteShape] = {}
        # static routes to reachableBy peers: this host's own, like its blocks and workloads
        self.route_warnings: list[str] = []
        self.peer_routes = self._peer_routes()
        if self.peer_routes:
            self.local_keys |= frozenset(self.peer_routes)
            # a learned route whose next hop is such a peer (a ToR's loopback) resolves through its
            # route, as BIRD's `gateway recursive` resolves through Calico's static one
            self.host_routes = Lpm([(r.dst, r) for r in data.host_routes] + [
                (key, HostRoute(dst=key, gateway=shape.gateway, dev=shape.dev))
                for key, shape in self.peer_routes.items()])

    def shape(self, shape: RouteShape) -> RouteShape:
        """The one shared object equal to `shape`."""
        return self._shapes.setdefault(shape, shape)

    # --- the host's own network

    def workloads(self) -> list[Workload]:
        """Workloads whose interface exists: a route to a missing device is refused by the kernel."""
        links = self.data.links
        return [w for w in self.data.workloads if links is None or w.interface in links]

    def uplink(self, version: int) -> HostAddress | None:
        mine = self.me.address(version)
        for iface in self.data.interfaces:
            if iface.address.ip == mine:
                return iface
        for iface in self.data.interfaces:
            if iface.address.version == version and not iface.address.ip.is_loopback:
                return iface
        return None

    def resolve(self, next_hop: Address) -> tuple[Address, str] | None:
        """(gateway, device) towards a next hop, like BIRD's `gateway recursive`."""
        iface = self.connected.lookup(next_hop)
        if isinstance(iface, HostAddress):
            return next_hop, iface.dev
        hit = self.host_routes.lookup(next_hop)
        if isinstance(hit, HostRoute) and hit.dev is not None:
            return (hit.gateway or next_hop), hit.dev
        return None

    def _peer_routes(self) -> dict[Prefix, RouteShape]:
        """`peer/32 via gateway` for each reachableBy peer, the gateway on a connected subnet (BIRD's
        static `via` wants a neighbour on a directly connected network; so does the kernel)."""
        out: dict[Prefix, RouteShape] = {}
        for pr in self.data.peer_routes:
            gateway = pf.from_ip(pr.gateway)
            iface = self.connected.lookup(gateway)
            if gateway in self.own_addresses or not isinstance(iface, HostAddress):
                why = "is this host's own address" if gateway in self.own_addresses else \
                    "is not on a subnet connected to this host"
                self.route_warnings.append(f"{pr.source}: reachableBy {pr.gateway} {why}; the static route "
                                           f"to peer {pr.peer} is not installed")
                continue
            out[pf.host(pf.from_ip(pr.peer))] = self.shape(RouteShape(gateway=gateway, dev=iface.dev,
                                                                      mode=Mode.REACHABLE_BY))
        return out

    def same_subnet(self, remote: Address) -> bool:
        iface = self.me.ipv4 if remote[0] == 4 else self.me.ipv6
        return iface is not None and pf.ip(remote) in iface.network

    # --- pools

    def pool_index(self, prefix: Prefix) -> int:
        """Index in `data.pools` of the most specific pool holding the whole prefix, or -1."""
        pools = self.pools.get(prefix[0])
        if pools:
            value = int.from_bytes(prefix[2:], "big")
            plen = prefix[1]
            for pool_len, net, mask, i in pools:
                if plen >= pool_len and value & mask == net:
                    return i
        return -1

    def pool_for(self, network: IPNetwork) -> PlanPool | None:
        i = self.pool_index(pf.from_network(network))
        return self.data.pools[i] if i >= 0 else None

    # --- learned routes

    def decide(self, prefix: Prefix, next_hop: Address) -> Decision:
        """The shape of a learned route (not one of this host's blocks, nor via this host).

        Cached by next hop and the part of the prefix that decides its pool (version, length and
        the address octets the longest pool covers): a table of 100k prefixes in a handful of pools
        is a few hundred cache entries, and a cache hit is one dict lookup.
        """
        key = prefix[:self._pool_octets[prefix[0]]] + next_hop
        hit = self._decisions.get(key)
        if hit is None:
            if len(self._decisions) >= _DECISIONS_MAX:
                self._decisions.clear()
            i = self.pool_index(prefix)
            hit = self._decisions[key] = self._decided.get((i, prefix[0], next_hop)) or \
                self._decided.setdefault((i, prefix[0], next_hop),
                                         self._decide(self.data.pools[i] if i >= 0 else None, prefix[0], next_hop))
        return hit

    def _decide(self, pool: PlanPool | None, version: int, nh: Address) -> Decision:
        if pool is None and not self.data.install_poolless:
            return _SKIP
        node = self.by_address.get(nh)
        encap = pool.encapsulation if pool is not None and node is not None else None
        if encap is not None and pool is not None and pool.encapsulation_setting == CROSS_SUBNET \
                and self.same_subnet(nh):
            encap = None
        pool_name = pool.name if pool else None
        if encap == "ipip":
            if version != 4:
                return Decision(None, reason="IP-in-IP needs IPv4; not installed")
            if IPIP_DEVICE not in self.devices:
                return Decision(None, reason=f"{IPIP_DEVICE} is not available (IP-in-IP); not installed")
            return Decision(self.shape(RouteShape(gateway=nh, dev=IPIP_DEVICE, onlink=True, mode=Mode.IPIP,
                                                  pool=pool_name)))
        if encap == "vxlan" and node is not None:
            vtep_ip = node.vtep_ip(version)
            if vtep_ip is None:
                return Decision(None, reason=f"node {node.name} has no VXLAN tunnel address; not installed")
            dev = VXLAN_V4_DEVICE if version == 4 else VXLAN_V6_DEVICE
            if dev not in self.devices:
                return Decision(None, reason=f"{dev} is not available; not installed")
            mac = node.vtep_mac(version)
            shape = self.shape(RouteShape(gateway=pf.from_ip(vtep_ip), dev=dev, onlink=True, mode=Mode.VXLAN,
                                          pool=pool_name))
            return Decision(shape, Neighbour(dev=dev, ip=str(vtep_ip), mac=mac),
                            FdbEntry(dev=dev, mac=mac, dst=pf.address_text(nh)))
        hop = self.resolve(nh)
        if hop is None:
            return Decision(None, reason=f"next hop {pf.address_text(nh)} is not reachable from this host; "
                                         "not installed")
        gateway, dev = hop
        return Decision(self.shape(RouteShape(gateway=gateway, dev=dev, mode=Mode.DIRECT, pool=pool_name)))

    # --- a full plan

    def local_routes(self) -> dict[RouteKey, RouteShape]:
        """Blackholes for this node's blocks, /32s (/128s) to its workloads and to its reachableBy peers
        (a peer's static route wins over the same prefix learned by BGP, as Calico's BIRD prefers its
        static protocol)."""
        out: dict[RouteKey, RouteShape] = dict(self.peer_routes)
        for block in sorted(self.me.blocks, key=lambda b: (b.version, int(b.network_address))):
            pool = self.pool_for(block)
            out[pf.from_network(block)] = self.shape(RouteShape(kind=RouteKind.BLACKHOLE, mode=Mode.LOCAL_BLOCK,
                                                                pool=pool.name if pool else None))
        for wl in self.workloads():
            pool = self.pool_for(wl.ip)
            out[pf.from_network(wl.ip)] = self.shape(RouteShape(dev=wl.interface, scope_link=True, mode=Mode.WORKLOAD,
                                                                pool=pool.name if pool else None))
        return out

    def plan(self, learned: Mapping[Prefix, Address], routes: bool = True) -> DesiredState:
        """Everything for these learned routes. With `routes=False` the route table itself is left
        out (`DesiredState.routes` empty): the daemon uses a view over the feed table instead
        (`felixd.planned`), and only needs what the routes imply (VXLAN entries, warnings)."""
        out = self.local_routes() if routes else None
        local = self.local_keys
        own, decide = self.own_addresses, self.decide
        neighbours: set[Neighbour] = set()
        fdb: set[FdbEntry] = set()
        reasons: dict[str, tuple[Prefix, int]] = {}  # why not installed -> (first prefix, count)
        unplanned = 0
        for prefix, nh in learned.items():
            if prefix in local or nh in own:
                continue
            d = decide(prefix, nh)
            if d.shape is None:
                if d.reason is not None:
                    first, n = reasons.get(d.reason, (prefix, 0))
                    reasons[d.reason] = (first, n + 1)
                    unplanned += 1
                continue
            if out is not None:
                out[prefix] = d.shape
            if d.neighbour is not None:
                neighbours.add(d.neighbour)
                fdb.add(d.fdb)  # type: ignore[arg-type]
        warnings = self.device_warnings + self.route_warnings
        for reason, (first, n) in reasons.items():
            where = pf.text(first) if n == 1 else f"{pf.text(first)} and {n - 1} more"
            warnings.append(f"{where}: {reason}")
        return DesiredState(routes=out if out is not None else {}, ipip=self.ipip, vxlan=self.vxlan,
                            vxlan_v6=self.vxlan_v6, neighbours=frozenset(neighbours), fdb=frozenset(fdb),
                            nat=self.nat(), sysctls=self.sysctls(bool(learned)), warnings=tuple(warnings),
                            unplanned=unplanned)

    # --- devices and host settings

    def _pools_with(self, encap: str, version: int) -> list[PlanPool]:
        return [p for p in self.data.pools if p.encapsulation == encap and p.cidr.version == version]

    def _ipip_device(self) -> IpipDevice | None:
        pools = self._pools_with("ipip", 4)
        if not pools:
            return None
        if not self.data.ipip_supported:
            self.device_warnings.append(
                "this kernel cannot do IP-in-IP (no ipip support): IPIP routes not installed")
            return None
        uplink = self.uplink(4)
        address = self.me.ipip_tunnel_addr or self.me.first_block_address(4, [p.cidr for p in pools]) \
            or self.me.first_block_address(4)
        return IpipDevice(name=IPIP_DEVICE, address=f"{address}/32" if address else None,
                          mtu=(uplink.mtu if uplink else 1500) - IPIP_OVERHEAD)

    def _vxlan_device(self, version: int) -> VxlanDevice | None:
        if not self._pools_with("vxlan", version):
            return None
        local = self.me.address(version)
        if local is None:
            self.device_warnings.append(f"VXLAN IPv{version} pool but this node has no IPv{version} address")
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

    def sysctls(self, any_learned: bool) -> frozenset[Sysctl]:
        wanted: set[Sysctl] = set()
        for wl in self.workloads():
            if wl.ip.version == 4:
                wanted.add(Sysctl(f"net/ipv4/conf/{wl.interface}/proxy_arp", "1"))
                wanted.add(Sysctl(f"net/ipv4/conf/{wl.interface}/forwarding", "1"))
                wanted.add(IP_FORWARD)
            else:
                wanted.add(Sysctl(f"net/ipv6/conf/{wl.interface}/proxy_ndp", "1"))
                wanted.add(Sysctl(f"net/ipv6/conf/{wl.interface}/forwarding", "1"))
        if any_learned:
            wanted.add(IP_FORWARD)
        return frozenset(wanted)

