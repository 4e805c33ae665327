"""The kernel state felixd wants: the planner's output and the kernel side's input.

Everything is a frozen value so that the reconciler can compare desired and actual state with `==`
and work per changed key. Addresses and prefixes are strings in `ipaddress` canonical form
(`192.168.1.0/26`, `10.30.0.206`) so that plans read like `ip route` output in tests and logs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

RTPROT_TORTIE = 80  # Calico's felix uses 80 too; configurable per daemon


class RouteKind(StrEnum):
    UNICAST = "unicast"
    BLACKHOLE = "blackhole"


class Mode(StrEnum):
    """Why a route has its shape; shown by `tortiectl routes` and used as a metric label."""

    IPIP = "ipip"
    VXLAN = "vxlan"
    DIRECT = "direct"
    LOCAL_BLOCK = "local-block"
    WORKLOAD = "workload"


@dataclass(frozen=True, slots=True)
class Route:
    dst: str  # prefix, e.g. "192.168.226.64/26"
    kind: RouteKind = RouteKind.UNICAST
    gateway: str | None = None
    dev: str | None = None
    onlink: bool = False
    scope_link: bool = False  # workload /32s: `scope link`, no gateway
    mode: Mode = Mode.DIRECT
    pool: str | None = None  # the IPPool that chose the mode (for tortiectl routes)
    table: int = 254
    metric: int = 0

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.dst, self.table, self.metric)

    def kernel_equal(self, other: Route) -> bool:
        """Same as far as the kernel is concerned (mode and pool are felixd's bookkeeping)."""
        return (self.dst, self.kind, self.gateway, self.dev, self.onlink, self.scope_link, self.table,
                self.metric) == (other.dst, other.kind, other.gateway, other.dev, other.onlink,
                                 other.scope_link, other.table, other.metric)


@dataclass(frozen=True, slots=True)
class IpipDevice:
    name: str = "tunl0"
    address: str | None = None  # tunnel address, /32
    mtu: int = 1480


@dataclass(frozen=True, slots=True)
class VxlanDevice:
    name: str = "vxlan.calico"
    vni: int = 4096
    port: int = 4789
    local: str = ""  # this node's address (underlay source)
    mac: str = ""  # this node's VTEP MAC
    address: str | None = None  # tunnel address, /32 (IPv4) or /128 (IPv6)
    mtu: int = 1450
    parent: str | None = None  # uplink device


@dataclass(frozen=True, slots=True)
class Neighbour:
    dev: str
    ip: str  # remote VTEP tunnel address
    mac: str  # remote VTEP MAC


@dataclass(frozen=True, slots=True)
class FdbEntry:
    dev: str
    mac: str  # remote VTEP MAC
    dst: str  # remote node (underlay) address


@dataclass(frozen=True, slots=True)
class NatOutgoing:
    """nftables table `tortie`: masquerade from `nat_pools` to destinations outside `all_pools`."""

    nat_pools_v4: frozenset[str] = frozenset()
    all_pools_v4: frozenset[str] = frozenset()
    nat_pools_v6: frozenset[str] = frozenset()
    all_pools_v6: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Sysctl:
    path: str  # e.g. "net/ipv4/conf/cali1234/proxy_arp"
    value: str


@dataclass(frozen=True)
class DesiredState:
    routes: dict[tuple[str, int, int], Route] = field(default_factory=dict)
    ipip: IpipDevice | None = None  # None: tunl0 is not wanted (removed if felixd made it)
    vxlan: VxlanDevice | None = None
    vxlan_v6: VxlanDevice | None = None
    neighbours: frozenset[Neighbour] = frozenset()
    fdb: frozenset[FdbEntry] = frozenset()
    nat: NatOutgoing = NatOutgoing()
    sysctls: frozenset[Sysctl] = frozenset()
    # problems the planner found but that do not stop it (e.g. an unresolvable next hop)
    warnings: tuple[str, ...] = ()
