"""The kernel state felixd wants: the planner's output and the kernel side's input.

Routes are held in the prefix form (`proto.prefix`): a route's key is its `Prefix` bytes (for a
route of the main table at the default metric, which is every route felixd plans) or
`(Prefix, table, metric)` otherwise, and its value a `RouteShape`: everything else about it (kind,
gateway `Address`, device, flags, mode, pool). Shapes are shared: the 50,000 routes learned from one
node all point at one shape object, so a route costs a dict slot and its prefix, and the cyclic
garbage collector never sees per-route objects.

Devices, neighbours, FDB entries, NAT sets and sysctls are few and stay text (they cross pyroute2
and nft), as do the helpers at the bottom that build routes from text for tests and tortiectl.
"""

from __future__ import annotations

import os
from dataclasses import field
from enum import Enum, StrEnum
from typing import NamedTuple

from proto import prefix as pf
from proto.prefix import Address, Prefix
from proto.record import record

RTPROT_TORTIE = 80  # Calico's felix uses 80 too; configurable per daemon
MAIN_TABLE = 254
IPV6_DEFAULT_METRIC = 1024  # the kernel turns an IPv6 route's metric 0 into 1024


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
    REACHABLE_BY = "reachable-by"  # a BGP peer's /32 (/128) through its BGPPeer's reachableBy gateway


# A Prefix, or (Prefix, table, metric as the kernel stores it) off the main table or default metric.
RouteKey = Prefix | tuple[Prefix, int, int]


def route_key(prefix: Prefix, table: int = MAIN_TABLE, metric: int = 0) -> RouteKey:
    """The key of a route: the same for a desired route and for the kernel's copy of it."""
    default = IPV6_DEFAULT_METRIC if prefix[0] == 6 else 0
    kernel_metric = metric or default
    if table == MAIN_TABLE and kernel_metric == default:
        return prefix
    return (prefix, table, kernel_metric)


def key_parts(key: RouteKey) -> tuple[Prefix, int, int]:
    """(prefix, table, metric as the kernel stores it)."""
    if type(key) is bytes:
        return key, MAIN_TABLE, IPV6_DEFAULT_METRIC if key[0] == 6 else 0
    return key  # type: ignore[return-value]


def key_prefix(key: RouteKey) -> Prefix:
    return key if type(key) is bytes else key[0]  # type: ignore[return-value,index]


def key_text(key: RouteKey) -> str:
    """`10.0.0.0/26`, with ` table T metric M` when they are not the defaults (logs, errors)."""
    prefix, table, metric = key_parts(key)
    if type(key) is bytes:
        return pf.text(prefix)
    return f"{pf.text(prefix)} table {table} metric {metric}"


@record(frozen=True, slots=True)
class RouteShape:
    """A route without its destination. `signature(version)` is what the kernel keeps of it."""

    kind: RouteKind = RouteKind.UNICAST
    gateway: Address | None = None
    dev: str | None = None
    onlink: bool = False
    scope_link: bool = False  # workload /32s: `scope link`, no gateway
    mode: Mode = Mode.DIRECT
    pool: str | None = None  # the IPPool that chose the mode (for tortiectl routes)
    _sigs: tuple[tuple[object, ...], ...] = field(default=(), init=False, repr=False, compare=False,
                                                  hash=False)

    def __post_init__(self) -> None:
        blackhole = self.kind == RouteKind.BLACKHOLE
        gw, dev = (None, None) if blackhole else (self.gateway, self.dev)
        # IPv6 routes have no scope: the kernel takes `scope link` and reports `scope global`
        object.__setattr__(self, "_sigs", ((self.kind, gw, dev, self.onlink, self.scope_link),
                                           (self.kind, gw, dev, self.onlink, False)))

    def signature(self, version: int) -> tuple[object, ...]:
        """(kind, gateway, dev, onlink, scope_link) as a dump of the kernel reports this route."""
        return self._sigs[version == 6]

    def kernel_equal(self, other: RouteShape) -> bool:
        """Same as far as the kernel is concerned (mode and pool are felixd's bookkeeping)."""
        return self._sigs == other._sigs


BLACKHOLE = RouteShape(kind=RouteKind.BLACKHOLE, mode=Mode.LOCAL_BLOCK)


class RouteEntry(NamedTuple):
    """One route as an API value (tests, tortiectl, a reconciler call): its key and its shape."""

    key: RouteKey
    shape: RouteShape

    @property
    def prefix(self) -> Prefix:
        return key_prefix(self.key)

    @property
    def dst(self) -> str:
        return pf.text(key_prefix(self.key))


def route(dst: str, *, kind: RouteKind = RouteKind.UNICAST, gateway: str | None = None, dev: str | None = None,
          onlink: bool = False, scope_link: bool = False, mode: Mode = Mode.DIRECT, pool: str | None = None,
          table: int = MAIN_TABLE, metric: int = 0) -> RouteEntry:
    """A route from text (tests and tools; felixd itself never goes through text)."""
    shape = RouteShape(kind=kind, gateway=pf.parse_address(gateway) if gateway is not None else None, dev=dev,
                       onlink=onlink, scope_link=scope_link, mode=mode, pool=pool)
    return RouteEntry(route_key(pf.parse(dst), table, metric), shape)


def route_map(*routes: RouteEntry) -> dict[RouteKey, RouteShape]:
    return {r.key: r.shape for r in routes}


class Op(Enum):
    REPLACE = "replace"
    DELETE = "delete"


# (op, key, shape (None for a delete), protocol: ours for writes; a delete on one of our devices may name
# another). Plain tuples: a resync builds one per changed route.
RouteOp = tuple[Op, RouteKey, RouteShape | None, int]


@record(frozen=True, slots=True)
class RouteError:
    op: Op
    key: RouteKey
    errno: int
    message: str = ""

    @property
    def dst(self) -> str:
        return key_text(self.key)

    def __str__(self) -> str:
        detail = f" ({self.message})" if self.message else ""
        return f"{self.op.value} {key_text(self.key)}: {os.strerror(self.errno)}{detail}"


@record(frozen=True, slots=True)
class IpipDevice:
    name: str = "tunl0"
    address: str | None = None  # tunnel address, /32
    mtu: int = 1480


@record(frozen=True, slots=True)
class VxlanDevice:
    name: str = "vxlan.calico"
    vni: int = 4096
    port: int = 4789
    local: str = ""  # this node's address (underlay source)
    mac: str = ""  # this node's VTEP MAC
    address: str | None = None  # tunnel address, /32 (IPv4) or /128 (IPv6)
    mtu: int = 1450
    parent: str | None = None  # uplink device


@record(frozen=True, slots=True)
class Neighbour:
    dev: str
    ip: str  # remote VTEP tunnel address
    mac: str  # remote VTEP MAC


@record(frozen=True, slots=True)
class FdbEntry:
    dev: str
    mac: str  # remote VTEP MAC
    dst: str  # remote node (underlay) address


@record(frozen=True, slots=True)
class NatOutgoing:
    """nftables table `tortie`: masquerade from `nat_pools` to destinations outside `all_pools`."""

    nat_pools_v4: frozenset[str] = frozenset()
    all_pools_v4: frozenset[str] = frozenset()
    nat_pools_v6: frozenset[str] = frozenset()
    all_pools_v6: frozenset[str] = frozenset()


@record(frozen=True, slots=True)
class Sysctl:
    path: str  # e.g. "net/ipv4/conf/cali1234/proxy_arp"
    value: str


IP_FORWARD = Sysctl("net/ipv4/ip_forward", "1")


@record(frozen=True)
class DesiredState:
    # the daemon updates `routes` in place as feed deltas arrive; everything else changes only by a full plan
    routes: dict[RouteKey, RouteShape] = field(default_factory=dict)
    ipip: IpipDevice | None = None  # None: tunl0 is not wanted (removed if felixd made it)
    vxlan: VxlanDevice | None = None
    vxlan_v6: VxlanDevice | None = None
    neighbours: frozenset[Neighbour] = frozenset()
    fdb: frozenset[FdbEntry] = frozenset()
    nat: NatOutgoing = NatOutgoing()
    sysctls: frozenset[Sysctl] = frozenset()
    # problems the planner found but that do not stop it (e.g. an unresolvable next hop), one per cause
    warnings: tuple[str, ...] = ()
    unplanned: int = 0  # learned routes the planner could not program

    def devices(self) -> frozenset[str]:
        """Names of the tunnel devices this state wants."""
        return frozenset(d.name for d in (self.ipip, self.vxlan, self.vxlan_v6) if d is not None)
