"""The configuration a running speaker applies beyond its peers: this node's blocks, the IPPools,
route advertisements and service and export ranges, block owners, and how a next hop's interface is
found. Part of `bgpd.speaker.Speaker` (a mixin: the state is the speaker's, set up by its __init__).

Each setting changes what import accepts, what the feed passes to felixd, or what the update groups
export; the speaker applies it in place, without restarting sessions. Also the pure helpers that
turn the cluster model's networks into the policies' pool sets, which the daemon calls too.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING

from bgpd.advertise import taggers
from bgpd.filters import InterfaceOf
from bgpd.fsm import State
from bgpd.identity import Identity
from bgpd.ownership import BlockOwners
from bgpd.pool_set import PoolSet
from bgpd.rib.rib import Changes
from bgpd.topology import Topology
from proto import prefix as pf
from proto.bgp import IPV4_UNICAST, IPV6_UNICAST, AfiSafi

if TYPE_CHECKING:
    from bgpd.export_policy import ExportPolicy
    from bgpd.feed_out import RibFeed
    from bgpd.group_key import GroupKey
    from bgpd.peer import Peer
    from bgpd.rib.rib import Rib
    from bgpd.schedule import Schedule
    from bgpd.update_group import UpdateGroup

FAMILIES: tuple[AfiSafi, ...] = (IPV4_UNICAST, IPV6_UNICAST)
FAMILY_NAMES = {IPV4_UNICAST: "ipv4_unicast", IPV6_UNICAST: "ipv6_unicast"}


def family_of(address: str) -> AfiSafi:
    return IPV6_UNICAST if ":" in address else IPV4_UNICAST


def identity_of(topo: Topology) -> Identity:
    return Identity(asn=topo.asn, router_id=str(topo.router_id),
                    cluster_id=str(topo.cluster_id) if topo.cluster_id is not None else None,
                    addresses=frozenset(str(a) for a in topo.addresses))


def pools_from_networks(networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> dict[AfiSafi, PoolSet]:
    nets = list(networks)
    return {f: PoolSet([n for n in nets if n.version == (4 if f == IPV4_UNICAST else 6)], f) for f in FAMILIES}


def import_pools(pools: dict[AfiSafi, PoolSet], topo: Topology) -> dict[AfiSafi, PoolSet]:
    """What import accepts by default: the IPPools, and the service ranges other nodes advertise."""
    services = topo.routes.service_ranges
    if not services:
        return pools
    return pools_from_networks([*(n for ps in pools.values() for n in ps.networks), *services])


def export_pools(pools: dict[AfiSafi, PoolSet], topo: Topology) -> dict[AfiSafi, PoolSet]:
    """Where the default export policy passes learned routes on (`bgpd.advertise.ClusterRoutes`)."""
    ranges = topo.routes.export_ranges
    return pools if ranges is None else pools_from_networks(ranges)


class ClusterSettings:
    if TYPE_CHECKING:  # what it works on, of bgpd.speaker.Speaker
        topology: Topology
        pools: dict[AfiSafi, PoolSet]
        rib: Rib
        export: ExportPolicy
        feed: RibFeed
        interface_of: InterfaceOf | None
        peers: dict[str, Peer]
        groups: dict[GroupKey, UpdateGroup]
        _schedule: Schedule

        def _apply(self, changes: Changes, now: float) -> None: ...
        def _touch(self, peer: Peer, now: float) -> None: ...

    def _originate(self, topo: Topology) -> Changes:
        changes: Changes = {}
        for family in FAMILIES:
            version = 4 if family == IPV4_UNICAST else 6
            prefixes = [pf.from_network(n) for n in topo.originate if n.version == version]
            c = self.rib.originate(family, prefixes)
            if c:
                changes[family] = c
        return changes

    def set_originated(self, topo: Topology, now: float) -> None:
        """This node's blocks changed (a reload)."""
        self.topology = topo
        self._apply(self._originate(topo), now)

    def set_interface_resolver(self, interface_of: InterfaceOf | None) -> None:
        """How BGPFilter `interface` rules learn a next hop's interface (the daemon reads the kernel's
        routes; tests give a table). Decisions already made stay until the routes come again."""
        self.interface_of = interface_of
        self.export.interface_of = interface_of
        for state in self.rib.peers.values():
            state.policy.interface_of = interface_of

    def _kernel_excluded(self, topo: Topology) -> None:
        ranges = topo.routes.service_ranges
        if not ranges:
            self.feed.excluded = None
            return
        sets = pools_from_networks(ranges)
        by_version = {4: sets[IPV4_UNICAST].covers, 6: sets[IPV6_UNICAST].covers}
        self.feed.excluded = lambda prefix: by_version[prefix[0]](prefix)

    def set_routes(self, topo: Topology, now: float, pools: dict[AfiSafi, PoolSet] | None = None) -> None:
        """Prefix advertisements, service ranges or export ranges changed (a reload): import and the
        feed follow, every group exports afresh (what differs is sent), and peers are asked for their
        routes again so routes newly inside a service range are learned."""
        self.topology = topo
        self.export.routes = topo.routes
        self.export.taggers = taggers(topo.routes.advertisements)
        self._kernel_excluded(topo)
        self.set_pools(pools if pools is not None else self.pools, now)

    def set_pools(self, pools: dict[AfiSafi, PoolSet], now: float) -> None:
        """The IPPools changed: import filters from now on, and every group exports afresh. Peers
        that can are asked for their routes again, so routes newly inside a pool are learned."""
        self.pools = pools
        inbound = import_pools(pools, self.topology)
        self.rib.pools = inbound
        for state in self.rib.peers.values():
            state.policy.pools = inbound
        self.export.pools = export_pools(pools, self.topology)
        for group in self.groups.values():
            group.reload(now)
            self._schedule.update(group, group.next_deadline())
        for peer in self.peers.values():
            if peer.state == State.ESTABLISHED and peer.remote_open is not None:
                for family in peer.families:
                    peer.session.send_route_refresh(family[0], family[1])
                self._touch(peer, now)

    def set_owners(self, owners: BlockOwners | None, now: float) -> None:
        """New block affinities, or block ownership switched on or off (bgpd.ownership)."""
        self._apply(self.rib.set_owners(owners), now)
