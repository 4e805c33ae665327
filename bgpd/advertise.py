"""What a node advertises beyond its blocks, and what its default export policy lets through: Calico's
prefix advertisements (communities per CIDR), Kubernetes service ranges, and the ranges learned
routes may be passed on in.

Calico's semantics (confd v3.32 `pkg/backends/calico/client.go`, `bgp_processor.go` and the BIRD
templates `bird.cfg.template`, `bird_ipam.cfg.template`):

- `prefixAdvertisements`: every route the default export policy sends (this node's blocks, its
  service routes, learned routes it passes on) gets the communities of each entry whose CIDR contains
  it (BIRD's `apply_communities()`). A `node.<name>` BGPConfiguration that sets prefixAdvertisements
  replaces the cluster's for that node. A route a BGPFilter export rule accepts leaves the filter
  before `apply_communities()` runs, so it does not get them (as in Calico).
- Service ranges are originated by every node (a static route, advertised to every peer) unless the
  node's label `node.kubernetes.io/exclude-from-external-load-balancers` is `"true"`:
  `serviceClusterIPs` whole; `serviceExternalIPs` except single addresses (/32, /128, which Calico
  advertises per Service, and tortie has no Services); `serviceLoadBalancerIPs` likewise, and only
  while `serviceLoadBalancerAggregation` is Enabled (the default). Routes learned inside any
  service range are accepted on import and never programmed into the kernel (Calico's
  `/rejectcidrs`): they are not sent to felixd.
- Learned routes leave by the default export policy only inside IPPools whose BGP export is on
  (`disableBGPExport` pools are rejected first); a route reflector also passes on routes inside the
  external and LoadBalancer service ranges.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import field

from bgpd.route_match import NORMAL_ROUTE_PRIORITY, Within, add_communities, standard_community, within
from proto import prefix as pf
from proto.bgp.constants import IPV4_UNICAST, IPV6_UNICAST, AfiSafi
from proto.bgp.model import PathAttributes
from proto.record import record
from proto.resources import BGPConfiguration, ClusterModel, Community, Node

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
EXCLUDE_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"


@record(frozen=True, slots=True)
class Advertisement:
    cidr: IPNetwork
    communities: tuple[Community, ...]


@record(frozen=True)
class ClusterRoutes:
    """A node's routing settings that come from the cluster rather than from one peer."""

    advertisements: tuple[Advertisement, ...] = ()
    services: tuple[IPNetwork, ...] = ()  # service ranges this node originates
    service_ranges: tuple[IPNetwork, ...] = ()  # every configured service range (import yes, kernel no)
    # learned routes the default export policy passes on; None: inside any pool (no model to say more)
    export_ranges: tuple[IPNetwork, ...] | None = None
    normal_priority: tuple[int, int] = (NORMAL_ROUTE_PRIORITY, NORMAL_ROUTE_PRIORITY)  # IPv4, IPv6

    def priority(self, family: AfiSafi) -> int:
        return self.normal_priority[0 if family == IPV4_UNICAST else 1]


def _single(net: IPNetwork) -> bool:
    return net.prefixlen == net.max_prefixlen


def cluster_routes(model: ClusterModel, me: Node) -> ClusterRoutes:
    cfg = model.bgp_config
    ads = cfg.prefix_advertisements
    per_node = next((c for c in model.of_kind("BGPConfiguration") if c.name == f"node.{me.name}"), None)
    if isinstance(per_node, BGPConfiguration) and "prefixAdvertisements" in per_node.explicit:
        ads = per_node.prefix_advertisements
    aggregate = (cfg.service_load_balancer_aggregation or "Enabled") == "Enabled"
    external = tuple(n for n in cfg.service_external_ips if not _single(n))
    load_balancer = tuple(n for n in cfg.service_load_balancer_ips if not _single(n)) if aggregate else ()
    services: tuple[IPNetwork, ...] = ()
    if me.labels.get(EXCLUDE_LABEL) != "true":
        services = tuple(dict.fromkeys((*cfg.service_cluster_ips, *external, *load_balancer)))
    ranges = tuple(dict.fromkeys((*cfg.service_cluster_ips, *cfg.service_external_ips,
                                  *cfg.service_load_balancer_ips)))
    export = [p.cidr for p in model.pools if not p.disable_bgp_export]
    if me.is_route_reflector:
        export += [*cfg.service_external_ips, *cfg.service_load_balancer_ips]
    return ClusterRoutes(
        advertisements=tuple(Advertisement(a.cidr, tuple(dict.fromkeys(a.communities))) for a in ads),
        services=services,
        service_ranges=ranges,
        export_ranges=tuple(dict.fromkeys(export)),
        normal_priority=(cfg.ipv4_normal_route_priority or NORMAL_ROUTE_PRIORITY,
                         cfg.ipv6_normal_route_priority or NORMAL_ROUTE_PRIORITY),
    )


@record(frozen=True)
class Tagger:
    """prefixAdvertisements for one family: which entries contain a prefix (`prefix_class`, per prefix)
    and the communities they add (`apply`, per attribute set and class)."""

    entries: tuple[tuple[Within, tuple[int, ...], tuple[tuple[int, int, int], ...]], ...]
    _applied: dict[tuple[PathAttributes, int], PathAttributes] = field(default_factory=dict, compare=False,
                                                                      repr=False)

    def prefix_class(self, prefix: bytes) -> int:
        cls = 0
        for i, (inside, _s, _l) in enumerate(self.entries):
            if inside(prefix):
                cls |= 1 << i
        return cls

    def apply(self, attrs: PathAttributes, cls: int) -> PathAttributes:
        if not cls:
            return attrs
        key = (attrs, cls)
        out = self._applied.get(key)
        if out is None:
            standard: list[int] = []
            large: list[tuple[int, int, int]] = []
            for i, (_inside, s, lg) in enumerate(self.entries):
                if cls >> i & 1:
                    standard += s
                    large += lg
            out = add_communities(attrs, standard, large)
            if len(self._applied) > 4096:
                self._applied.clear()
            self._applied[key] = out
        return out


def taggers(advertisements: Sequence[Advertisement]) -> dict[AfiSafi, Tagger]:
    out: dict[AfiSafi, list[tuple[Within, tuple[int, ...], tuple[tuple[int, int, int], ...]]]] = {}
    for ad in advertisements:
        family = IPV4_UNICAST if ad.cidr.version == 4 else IPV6_UNICAST
        standard = tuple(standard_community(c.parts) for c in ad.communities if not c.large)
        large = tuple((c.parts[0], c.parts[1], c.parts[2]) for c in ad.communities if c.large)
        out.setdefault(family, []).append((within(pf.from_network(ad.cidr)), standard, large))
    return {f: Tagger(tuple(entries)) for f, entries in out.items()}


def networks_by_family(nets: Iterable[IPNetwork]) -> dict[int, list[IPNetwork]]:
    out: dict[int, list[IPNetwork]] = {4: [], 6: []}
    for n in nets:
        out[n.version].append(n)
    return out
