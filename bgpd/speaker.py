"""The BGP speaker as a sans-I/O core: session events and time in; bytes per connection, feed changes
and one next deadline out.

Layered the way aioquic puts HTTP/3 over QUIC: a `Speaker` owns the sessions of every peer (through
`bgpd.neighbor.Neighbor`, which resolves connection collisions), the RIBs and the decision process,
graceful restart in both roles, the update groups that turn Loc-RIB changes into UPDATEs, and the
route feed's backlog. It has no sockets, no asyncio and no clock; every entry point takes `now`.

    speaker.connection_made(session, now, outbound, local_address)  # or accept(address, now)
    speaker.receive_data(session, data, now)
    speaker.handle_timer(now)                    # at or after next_deadline()
    while (ev := speaker.next_event()):          # ConnectTo, Disconnect: the adapter's work
    for session in speaker.sessions_with_output(): write session.data_to_send(...)

The adapter (`bgpd.transport`) only moves bytes and runs one timer; `bgpd.daemon` wires processes,
configuration, the control socket and metrics around both. Tests join speakers in memory.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterable

from bgpd.advertise import taggers
from bgpd.bfd_session import BfdSession, StateChange
from bgpd.bfd_table import BfdTable
from bgpd.feed_hold import FeedHold
from bgpd.feed_out import RibFeed
from bgpd.filters import EXPORT, IMPORT, InterfaceOf, peer_chains
from bgpd.fsm import State
from bgpd.graceful import GracefulHelper, RestartDeferral, keeps_routes
from bgpd.group_key import GroupKey
from bgpd.neighbor import Neighbor
from bgpd.ownership import BlockOwners
from bgpd.peer import Peer, PeerTransportConfig
from bgpd.policy import ExportPolicy, Identity, ImportOptions, PoolSet
from bgpd.rib.path import PeerInfo
from bgpd.rib.rib import Changes, Rib
from bgpd.schedule import Schedule
from bgpd.session import Session
from bgpd.session_config import GracefulRestartConfig, SessionConfig
from bgpd.session_events import (
    CloseConnection,
    ConnectRequested,
    Established,
    NotificationReceived,
    NotificationSent,
    RouteRefreshReceived,
    SessionDown,
    StateChanged,
    UpdateReceived,
)
from bgpd.timers import RandomSource
from bgpd.topology import MESH, PeerConfig, Topology
from bgpd.update_group import DEFAULT_WINDOW, UpdateGroup
from proto import prefix as pf
from proto.bfd import STATE_NAMES as BFD_STATE_NAMES
from proto.bfd import BfdState, diag_text
from proto.bgp import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    AfiSafi,
    CeaseSubcode,
    EnhancedRouteRefreshCap,
    GracefulRestartCap,
    MultiprotocolCap,
    RefreshSubtype,
    RouteRefreshCap,
)
from proto.record import record
from proto.tortie_annotations import BfdSettings

log = logging.getLogger("tortie.bgp")

FAMILIES: tuple[AfiSafi, ...] = (IPV4_UNICAST, IPV6_UNICAST)
FAMILY_NAMES = {IPV4_UNICAST: "ipv4_unicast", IPV6_UNICAST: "ipv6_unicast"}
# RFC 4271 suggests 120 s, but a passive peer that closes our connection while it is still in its
# idle hold (GoBGP right after a session drops) would then keep us away for 90-120 s: as long as
# Calico's graceful-restart time, so a restarting tortie could lose its routes on that peer.
CONNECT_RETRY_TIME = 30.0
MAX_PREFIX_HOLD_DOWN = 30.0
# after a BFD failure the BGP session stays down (refusing the peer's connections too) until BFD is Up
# again, which restarts it at once; this only bounds the wait for a peer whose BFD never returns. Without
# it the session came straight back over a path BFD still calls down (BFD packets lost, TCP fine) and
# stayed up unprotected, since a BFD session that is already Down cannot fail again.
BFD_FAILURE_HOLD_DOWN = 30.0
BFD_CONNECT_DELAY = 1.0  # after BFD Up: the peer's BFD is Up within a packet or two (1 s apart at most)
CONNECT_DELAY = 2.0  # Calico's BIRD: `connect delay time 2`
_GR, _DEFERRAL, _FEED_HOLD = "graceful-restart", "restart-deferral", "feed-hold"  # schedule tokens


@record(frozen=True, slots=True)
class ConnectTo:
    """For the adapter: open a TCP connection for `session` and report it with `connection_made`
    or `connection_failed`."""

    session: Session
    peer: PeerTransportConfig


@record(frozen=True, slots=True)
class Disconnect:
    """For the adapter: write what `session.data_to_send()` still returns (a final NOTIFICATION),
    then close its connection, or abandon its connection attempt."""

    session: Session
    reason: str


AdapterEvent = ConnectTo | Disconnect


def _family_of(address: str) -> AfiSafi:
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


class Speaker:
    def __init__(self, topology: Topology, pools: dict[AfiSafi, PoolSet], now: float, *,
                 restarting: bool = False, rng: RandomSource | None = None,
                 connect_retry_time: float = CONNECT_RETRY_TIME, window: float = DEFAULT_WINDOW,
                 connect_delay: float = CONNECT_DELAY, owners: BlockOwners | None = None) -> None:
        self.topology = topology
        self.identity = identity_of(topology)
        self.rng = rng
        self.connect_retry_time = connect_retry_time
        self.connect_delay = connect_delay
        self.window = window
        self.restarting = restarting
        self.pools = pools
        self.rib = Rib(self.identity, import_pools(pools, topology), node=topology.node)
        self.rib.owners = owners
        self.export = ExportPolicy(self.identity, export_pools(pools, topology), topology.routes,
                                   taggers(topology.routes.advertisements))
        self.gr = GracefulHelper(self.rib)
        self.deferral: RestartDeferral | None = None
        self.feed = RibFeed(self.rib.loc)
        self._kernel_excluded(topology)
        self.interface_of: InterfaceOf | None = None  # set by the daemon: next hop -> interface
        self.peers: dict[str, Peer] = {}
        self.groups: dict[GroupKey, UpdateGroup] = {}
        self._by_info: dict[PeerInfo, Peer] = {}
        self._owner: dict[Session, Peer] = {}
        self._local: dict[Session, str] = {}  # our address on each connected session
        self._events: deque[AdapterEvent] = deque()
        self._output: dict[Session, None] = {}  # sessions with bytes to write, in order
        self._schedule = Schedule()
        self.bfd = BfdTable(rng if isinstance(rng, random.Random) else None)
        self._bfd_output: dict[BfdSession, None] = {}  # sessions with datagrams to send, in order
        # instrumentation, set by the daemon: a clock and where to report UPDATE processing times
        self.clock: Callable[[], float] | None = None
        self.observe_update: Callable[[float], None] | None = None
        self._originate(topology)
        for cfg in topology.peers.values():
            self.add_peer(cfg, now)
        if restarting and self.peers:
            self.deferral = RestartDeferral(self.rib, now, [p.info for p in self.peers.values()])
            self._schedule.update(_DEFERRAL, self.deferral.next_deadline())
        else:
            self.restarting = False
        # the feed's first snapshot ends only when the peers' tables are in (bgpd.feed_hold)
        self.feed_hold = FeedHold(now, [p.info for p in self.peers.values()])
        self._check_feed_hold(now)

    # ------------------------------------------------------------ outputs

    def next_event(self) -> AdapterEvent | None:
        return self._events.popleft() if self._events else None

    def sessions_with_output(self) -> list[Session]:
        out = list(self._output)
        self._output.clear()
        return out

    def next_deadline(self) -> float | None:
        return self._schedule.next_deadline()

    def bfd_with_output(self) -> list[BfdSession]:
        """BFD sessions with datagrams to send (`session.data_to_send()`), from `session.local` to
        `session.remote`, UDP port 3784 (4784 when `session.multihop`), TTL 255. A `closed` one is gone
        once they are sent."""
        out = list(self._bfd_output)
        self._bfd_output.clear()
        return out

    @property
    def deferring(self) -> bool:
        """A restarting speaker waiting for its peers' End-of-RIB (RFC 4724 4.1): no advertising, and
        no feed snapshot (its end would make felixd drop every route not yet relearned)."""
        return self.deferral is not None

    def peer_of(self, session: Session) -> Peer | None:
        return self._owner.get(session)

    def local_address(self, session: Session) -> str | None:
        return self._local.get(session)

    # ------------------------------------------------------------ configuration

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

    def add_peer(self, cfg: PeerConfig, now: float) -> Peer:
        topo = self.topology
        if cfg.key in self.peers:
            raise ValueError(f"peer {cfg.key} already configured")
        next_hop_self: dict[AfiSafi, tuple[str, ...]] = {}
        for addr in topo.addresses:
            next_hop_self.setdefault(_family_of(str(addr)), (str(addr),))
        mode = cfg.next_hop_mode if cfg.next_hop_mode in ("Self", "Keep") else ""
        info = PeerInfo(str(cfg.address), str(cfg.address), cfg.asn, cfg.local_asn, mesh=cfg.peer_type == MESH,
                        rr_client=cfg.rr_client, node=cfg.node, keep_next_hop=cfg.keep_original_next_hop,
                        next_hop_self=next_hop_self, next_hop_mode=mode,
                        export_filters=peer_chains(cfg.filters, EXPORT, cfg.ebgp))
        state = self.rib.add_peer(info, ImportOptions(max_prefixes=cfg.max_prefixes, allow_local_as=cfg.allow_local_as,
                                                      filters=peer_chains(cfg.filters, IMPORT, cfg.ebgp)))
        state.policy.interface_of = self.interface_of
        gr = GracefulRestartConfig(restart_time=int(cfg.restart_time), restarting=self.restarting,
                                   forwarding_preserved=frozenset(FAMILIES), notification=True)
        session_cfg = SessionConfig(
            local_as=cfg.local_asn, peer_as=cfg.asn, router_id=str(topo.router_id), hold_time=cfg.hold_time,
            keepalive_time=cfg.keepalive_time,
            passive=cfg.passive, families=FAMILIES, graceful_restart=gr, add_path_receive=frozenset(FAMILIES),
            name=str(cfg.address), connect_retry_time=self.connect_retry_time,
            # the mesh is one-way (Calico's rule), other peerings may connect from both sides
            connect_delay=0.0 if cfg.peer_type == MESH or cfg.passive else self.connect_delay,
        )
        transport = PeerTransportConfig(
            peer_address=str(cfg.address), peer_port=cfg.port,
            source_address=str(cfg.source_address) if cfg.source_address is not None else None,
            md5_password=cfg.password, ttl_security=cfg.ttl_security,
        )
        peer = Peer(cfg, info, Neighbor(session_cfg, self.rng), transport)
        self.peers[cfg.key] = peer
        self._by_info[info] = peer
        if cfg.bfd is not None:
            self.set_bfd(cfg.key, cfg.bfd, now)
        log.info("peer %s (%s, AS %d%s) configured", cfg.address, cfg.peer_type, cfg.asn,
                 ", passive" if cfg.passive else "")
        peer.session.start(now)
        self._touch(peer, now)
        return peer

    def reconfigure_peer(self, cfg: PeerConfig, now: float) -> bool:
        """Apply a peer's new configuration without restarting its session when only its BGPFilters
        changed (BIRD reconfigures filters in place): new import rules ask the peer for its routes
        again (ROUTE-REFRESH), new export rules move it to its new update group, which sends what
        differs. False: something else changed, or the peer cannot refresh; restart the session."""
        peer = self.peers[cfg.key]
        old = peer.cfg
        if dataclasses.replace(old, filters=cfg.filters) != cfg:
            return False
        import_rules = peer_chains(cfg.filters, IMPORT, cfg.ebgp)
        export_rules = peer_chains(cfg.filters, EXPORT, cfg.ebgp)
        state = self.rib.peers[peer.info]
        import_changed = state.policy.options.filters != import_rules
        remote = peer.remote_open
        if import_changed and peer.state == State.ESTABLISHED and (
                remote is None or remote.capability(RouteRefreshCap) is None):
            return False  # BIRD restarts a peer that cannot send its routes again
        peer.cfg = cfg
        if import_changed:
            state.policy.options.filters = import_rules
            state.policy._decided.clear()
            if peer.state == State.ESTABLISHED:
                for family in peer.families:
                    peer.session.send_route_refresh(family[0], family[1])
                self._touch(peer, now)
        if peer.info.export_filters != export_rules:
            peer.info.export_filters = export_rules
            group = peer.group
            if isinstance(group, UpdateGroup):
                previous = {f: list(group.advertised_to(peer.info, f)) for f in peer.families}
                self._leave_group(peer)
                self._join_group(peer, now, previous)
        log.info("peer %s: BGPFilters changed, applied without restarting the session", cfg.key)
        return True

    def remove_peer(self, key: str, now: float, subcode: int = CeaseSubcode.PEER_DECONFIGURED,
                    message: str = "") -> Peer:
        """Cease to the peer (Peer De-configured by default) and forget it and its routes."""
        peer = self.peers.pop(key)
        self._bfd_close(key, now)
        for session in peer.neighbor.sessions():
            session.stop(now, message, subcode)
        self._touch(peer, now)
        self._leave_group(peer)
        for session in peer.neighbor.sessions():
            self._schedule.remove(session)
        if self.deferral is not None:
            self._apply(self.deferral.peer_removed(peer.info, now), now)
            self._check_deferral(now)
        self.feed_hold.peer_gone(peer.info, now)
        self._check_feed_hold(now)
        self.gr.peers.pop(peer.info, None)
        self._apply(self.rib.remove_peer(peer.info), now)
        del self._by_info[peer.info]
        return peer

    # ------------------------------------------------------------ operator actions

    def shutdown_peer(self, key: str, now: float, message: str = "") -> None:
        peer = self.peers[key]
        peer.admin_down = True
        for session in peer.neighbor.sessions():
            session.stop(now, message)
        self._touch(peer, now)

    def enable_peer(self, key: str, now: float) -> None:
        peer = self.peers[key]
        peer.admin_down = False
        peer.session.start(now)
        self._touch(peer, now)

    def request_refresh(self, key: str, now: float) -> None:
        peer = self.peers[key]
        for family in peer.families:
            peer.session.send_route_refresh(family[0], family[1])
        self._touch(peer, now)

    def stop_for_restart(self, now: float) -> None:
        """A stop for a restart (SIGTERM): Cease / Administrative Reset to the peers that negotiated
        RFC 8538's N bit (they keep our routes as for any graceful restart); the adapter then closes
        the other connections without a NOTIFICATION (RFC 4724 peers keep them too)."""
        for peer in self.peers.values():
            gr = peer.remote_gr
            if peer.state == State.ESTABLISHED and gr is not None and gr.notification:
                for session in peer.neighbor.sessions():
                    session.stop(now, "tortie-bgpd restarting", CeaseSubcode.ADMINISTRATIVE_RESET)
                self._touch(peer, now)

    def stop(self, now: float, message: str = "", subcode: int = CeaseSubcode.ADMINISTRATIVE_SHUTDOWN) -> None:
        """Cease to every peer (the adapter writes the NOTIFICATIONs and closes)."""
        for peer in self.peers.values():
            for session in peer.neighbor.sessions():
                session.stop(now, message, subcode)
            self._touch(peer, now)

    # ------------------------------------------------------------ connections (from the adapter)

    def accept(self, address: str, now: float, local_address: str | None = None) -> Session | None:
        """A peer connected to us from `address`: the session that takes the connection, or None
        (nobody configured there, or not wanted: close it)."""
        peer = self.peers.get(address)
        if peer is None:
            return None
        session = peer.neighbor.connection_made(now, outbound=False)
        self._connected(peer, session, local_address, now)
        return session

    def connection_made(self, session: Session, now: float, local_address: str | None = None) -> Session | None:
        """The connection `ConnectTo(session)` asked for is up. Returns the session that carries it:
        `session`, or a second session when `session` got connected otherwise meanwhile (collision
        detection), or None: nobody wants it, close it."""
        peer = self._owner.get(session)
        if peer is None:
            return None
        taken = peer.neighbor.connection_made(now, outbound=True)
        self._connected(peer, taken, local_address, now)
        return taken

    def _connected(self, peer: Peer, session: Session | None, local_address: str | None, now: float) -> None:
        if session is not None:
            self._owner[session] = peer
            if local_address is not None:
                self._local[session] = local_address
        self._touch(peer, now)

    def connection_failed(self, session: Session, now: float, reason: str) -> None:
        peer = self._owner.get(session)
        session.connection_failed(now, reason)
        if peer is not None:
            self._touch(peer, now)

    def receive_data(self, session: Session, data: bytes, now: float) -> None:
        session.receive_data(data, now)
        peer = self._owner.get(session)
        if peer is not None:
            self._touch(peer, now)

    def connection_lost(self, session: Session, now: float, reason: str) -> None:
        session.connection_lost(now, reason)
        peer = self._owner.get(session)
        if peer is not None:
            self._touch(peer, now)

    def handle_timer(self, now: float, input_pending: Callable[[Session], bool] | None = None) -> None:
        for obj in self._schedule.due(now):
            if type(obj) is BfdSession:  # the most frequent by far with BFD: first
                obj.handle_timer(now)
                self._bfd_touch(obj, now)
            elif isinstance(obj, Session):
                peer = self._owner.get(obj)
                obj.handle_timer(now, input_pending=bool(input_pending and input_pending(obj)))
                if peer is not None:
                    self._touch(peer, now)
                else:
                    self._schedule.update(obj, obj.next_deadline())
            elif isinstance(obj, UpdateGroup):
                self._flush(obj, now)
            elif obj == _GR:
                changes = self.gr.expire(now)
                if changes:
                    log.warning("graceful restart: a peer did not return or send End-of-RIB in time; "
                                "its stale routes are withdrawn")
                self._apply(changes, now)
                self._schedule.update(_GR, self.gr.next_deadline())
            elif obj == _DEFERRAL and self.deferral is not None:
                self._apply(self.deferral.poll(now), now)
                self._check_deferral(now)
            elif obj == _FEED_HOLD:
                self.feed_hold.poll(now)
                self._check_feed_hold(now)

    # ------------------------------------------------------------ session events

    def _touch(self, peer: Peer, now: float) -> None:
        """Act on what `peer`'s sessions said, note their output, and register their deadlines."""
        for _ in range(4):  # a session's events may make its sibling speak (collisions): settle both
            quiet = True
            # The session that holds the peer's routes goes first: a sibling's Established may sit
            # behind its SessionDown in the same call (a graceful-restart peer's new connection
            # replaces it, RFC 4724), and the peer must leave its update group before it joins
            # again, or the new session never gets the table and End-of-RIB.
            established = peer.established
            sessions = dict.fromkeys(() if established is None else (established,))
            sessions.update(dict.fromkeys(peer.neighbor.sessions()))
            for session in sessions:
                while (ev := session.next_event()) is not None:
                    quiet = False
                    self._on_event(peer, session, ev, now)
            if quiet:
                break
        old = peer.neighbor.adopt_second(now)
        if old is not None:  # else it would stay the peer's session, shown Active, while the second is up
            while (ev := old.next_event()) is not None:
                self._on_event(peer, old, ev, now)
        for session in peer.neighbor.sessions():
            self._owner.setdefault(session, peer)
            if session.has_output:
                self._output[session] = None
            self._schedule.update(session, session.next_deadline())

    def _on_event(self, peer: Peer, session: Session, ev: object, now: float) -> None:
        if type(ev) is UpdateReceived:  # the hot one: a table transfer is a stream of these
            if session is peer.established:
                self._update(peer, session, ev, now)
            return
        key = peer.key
        if isinstance(ev, ConnectRequested):
            self._owner[session] = peer
            self._events.append(ConnectTo(session, peer.transport))
        elif isinstance(ev, CloseConnection):
            if session.has_output:
                self._output[session] = None
            self._events.append(Disconnect(session, ev.reason))
        elif isinstance(ev, StateChanged):
            if session is peer.session or ev.new == State.ESTABLISHED:
                peer.since = time.time()
            if ev.new == State.ESTABLISHED or ev.old == State.ESTABLISHED or ev.new == State.IDLE:
                log.info("peer %s: %s -> %s", key, ev.old.name, ev.new.name, extra={"peer": key})
            else:
                log.debug("peer %s: %s -> %s", key, ev.old.name, ev.new.name)
        elif isinstance(ev, Established):
            self._established(peer, session, ev, now)
        elif isinstance(ev, RouteRefreshReceived):
            self._refresh_received(peer, ev, now)
        elif isinstance(ev, NotificationReceived):
            n = ev.notification
            peer.last_received = ev.description
            peer.notifications_received[(n.code, n.subcode)] += 1
            log.warning("peer %s sent NOTIFICATION: %s", key, ev.description, extra={"peer": key})
        elif isinstance(ev, NotificationSent):
            n = ev.notification
            peer.last_sent = ev.description
            peer.notifications_sent[(n.code, n.subcode)] += 1
            log.warning("NOTIFICATION to peer %s: %s", key, ev.description, extra={"peer": key})
        elif isinstance(ev, SessionDown):
            self._session_down(peer, session, ev, now)

    def _established(self, peer: Peer, session: Session, ev: Established, now: float) -> None:
        info = peer.info
        peer.negotiated = ev.negotiated
        peer.established = session
        peer.established_count += 1
        remote = ev.remote_open
        remote_families = {(c.afi, c.safi) for c in remote.capabilities if isinstance(c, MultiprotocolCap)}
        peer.families = tuple(f for f in FAMILIES if f in remote_families) if remote_families else (IPV4_UNICAST,)
        info.set_router_id(remote.router_id)
        local = self._local.get(session)
        if local is not None:
            info.next_hop_self[_family_of(local)] = (str(ipaddress.ip_address(local)),)
        self.rib.set_add_path(info, ev.negotiated.add_path_receive)
        self.rib.set_four_octet_as(info, ev.negotiated.four_octet_as)
        cap = remote.capability(GracefulRestartCap)
        peer.remote_gr = cap if isinstance(cap, GracefulRestartCap) else None
        peer.enhanced_refresh = remote.capability(EnhancedRouteRefreshCap) is not None
        changes = self.gr.peer_up(info, now, peer.remote_gr)
        self._schedule.update(_GR, self.gr.next_deadline())
        if self.deferral is not None:
            changes = _merge(changes, self.deferral.peer_established(info, now, peer.families, peer.remote_gr))
        else:
            self._join_group(peer, now)
        self._apply(changes, now)
        self._check_deferral(now)
        self.feed_hold.peer_established(info, peer.families, peer.remote_gr, now)
        self._check_feed_hold(now)
        log.info("peer %s Established (router id %s, families %s, hold %ds)", peer.key, remote.router_id,
                 ", ".join(FAMILY_NAMES[f] for f in peer.families), ev.hold_time)

    def _update(self, peer: Peer, session: Session, ev: UpdateReceived, now: float) -> None:
        clock = self.clock
        t0 = clock() if clock is not None else 0.0
        update = ev.update
        if update.treat_as_withdraw:
            peer.treat_as_withdraw += 1
            for p in update.problems:
                log.warning("peer %s: UPDATE treated as withdraw (RFC 7606): %s", peer.key, p.reason)
        result = self.rib.receive_update(peer.info, update)
        changes = result.changes
        if result.end_of_rib is not None:
            family = result.end_of_rib
            log.info("peer %s: End-of-RIB for %s", peer.key, FAMILY_NAMES.get(family, family))
            changes = _merge(changes, self.gr.end_of_rib(peer.info, family, now))
            self._schedule.update(_GR, self.gr.next_deadline())
            if self.deferral is not None:
                changes = _merge(changes, self.deferral.end_of_rib(peer.info, family, now))
            self.feed_hold.end_of_rib(peer.info, family, now)
        self._apply(changes, now)
        self._check_deferral(now)
        if result.end_of_rib is not None:
            self._check_feed_hold(now)
        if result.error is not None:
            err = result.error
            peer.prefix_limit_hits += 1
            log.error("peer %s exceeded its prefix limit (%s): sending Cease/%d", peer.key,
                      peer.cfg.max_prefixes, err.subcode)
            session.automatic_stop(now, err.subcode, err.data, reason=str(err), hold_down=MAX_PREFIX_HOLD_DOWN)
        if clock is not None and self.observe_update is not None:
            self.observe_update(clock() - t0)

    def _refresh_received(self, peer: Peer, ev: RouteRefreshReceived, now: float) -> None:
        r = ev.refresh
        family = (r.afi, r.safi)
        if r.subtype == RefreshSubtype.NORMAL and family in peer.families:
            group = peer.group
            if isinstance(group, UpdateGroup):
                group.refresh(peer.info, family, now)
                self._schedule.update(group, group.next_deadline())
        elif r.subtype == RefreshSubtype.BORR:
            self._apply({family: self.rib.begin_refresh(peer.info, family)}, now)
        elif r.subtype == RefreshSubtype.EORR:
            self._apply({family: self.rib.end_refresh(peer.info, family)}, now)

    def _session_down(self, peer: Peer, session: Session, ev: SessionDown, now: float) -> None:
        peer.neighbor.session_down(session)
        self._local.pop(session, None)
        if session not in peer.neighbor.sessions():
            self._schedule.remove(session)  # a lost collision, a replaced session: gone for good
            self._owner.pop(session, None)
        bfd_failed, peer.bfd_failed = peer.bfd_failed, False
        if session is not peer.established:
            return  # a connection that never carried the peer's routes (a lost collision, a failed start)
        peer.established = None
        self._leave_group(peer)
        self.feed_hold.peer_gone(peer.info, now)
        self._check_feed_hold(now)
        if ev.was_established:
            # RFC 4724: a NOTIFICATION ends graceful restart; RFC 8538 (N bit): only a Hard Reset does. A
            # path BFD saw fail is no restart either: the routes go now, not after the restart time
            keep = keeps_routes(peer.remote_gr, True, ev.notification_sent, ev.notification_received)
            cap = peer.remote_gr if keep and not bfd_failed else None
            changes = self.gr.peer_down(peer.info, now, cap)
            self._schedule.update(_GR, self.gr.next_deadline())
            if cap is not None:
                log.warning("peer %s down (%s): keeping its routes as stale for %ds (graceful restart)",
                            peer.key, ev.reason, cap.restart_time, extra={"peer": peer.key})
            else:
                log.warning("peer %s down: %s", peer.key, ev.reason, extra={"peer": peer.key})
            self._apply(changes, now)
        peer.negotiated = None

    def _check_deferral(self, now: float) -> None:
        deferral = self.deferral
        if deferral is None:
            return
        if deferral.done:
            self._deferral_done(now)
        else:
            self._schedule.update(_DEFERRAL, deferral.next_deadline())

    def _deferral_done(self, now: float) -> None:
        """The restarting speaker's wait is over: every Established peer joins its group (initial
        table, End-of-RIB) and the feed serves its snapshot."""
        log.info("graceful restart: peers' End-of-RIB received (or deadline passed); advertising")
        self.deferral = None
        self.restarting = False
        self._schedule.remove(_DEFERRAL)
        for peer in self.peers.values():
            peer.neighbor.restart_done()  # OPENs from now on carry no Restart State bit
            if peer.established is not None and peer.group is None:
                self._join_group(peer, now)
        self.feed.resend_all()

    def _check_feed_hold(self, now: float) -> None:
        hold = self.feed_hold
        if hold.done:
            if self.feed.holding or _FEED_HOLD in self._schedule:
                log.info("route feed whole %.1f s after start: every peer's End-of-RIB is in (or no longer "
                         "awaited)", now - hold.started)
            self.feed.holding = False
            self._schedule.remove(_FEED_HOLD)
        else:
            self.feed.holding = True
            self._schedule.update(_FEED_HOLD, hold.next_deadline())

    # ------------------------------------------------------------ BFD

    def set_bfd(self, key: str, settings: BfdSettings | None, now: float) -> None:
        """BFD for the peer `key` on (new settings applied without a restart) or off (None)."""
        peer = self.peers[key]
        if settings is None:
            self._bfd_close(key, now)
            return
        s = self.bfd.sessions.get(key)
        if s is not None and s.multihop != settings.multihop:
            self._bfd_close(key, now)  # the other port and rules: a new session
            s = None
        if s is not None:
            s.reconfigure(settings, now)
        else:
            local = peer.transport.source_address or next(
                (str(a) for a in self.topology.addresses if _family_of(str(a)) == _family_of(key)), None)
            if local is None:
                log.warning("peer %s: no local address of its family for BFD", key)
                return
            s = self.bfd.add(key, settings, local, key, now)
            log.info("peer %s: BFD on (%s -> %s%s, rx %d ms, tx %d ms, multiplier %d)", key, local, key,
                     ", multihop" if settings.multihop else "", settings.min_rx_ms, settings.min_tx_ms,
                     settings.multiplier)
        peer.bfd = s
        self._bfd_touch(s, now)

    def _bfd_close(self, key: str, now: float) -> None:
        s = self.bfd.remove(key, now)
        peer = self.peers.get(key)
        if peer is not None:
            peer.bfd = None
        if s is not None:
            self._bfd_touch(s, now)  # its AdminDown goes out; the schedule forgets it

    def stop_bfd(self, now: float) -> None:
        """Every BFD session AdminDown (bgpd stopping): peers are told, and do not count it as a
        failure of the path (RFC 5882 3.2), so a graceful restart keeps its routes."""
        for s in self.bfd.sessions.values():
            s.admin_down(now)
            self._bfd_touch(s, now)

    def bfd_receive(self, data: bytes, source: str, destination: str | None, ttl: int | None,
                    now: float, multihop: bool = False) -> None:
        """A datagram on UDP 3784 (4784 when `multihop`) from `source` to `destination` with this TTL
        (None: unknown)."""
        s = self.bfd.receive(data, source, destination, ttl, now, multihop)
        if s is not None:
            self._bfd_touch(s, now)

    def _bfd_touch(self, s: BfdSession, now: float) -> None:
        while (ev := s.next_event()) is not None:
            self._bfd_event(s, ev, now)
        if s.has_output:
            self._bfd_output[s] = None
        self._schedule.update(s, None if s.closed else s.next_deadline())

    def _bfd_event(self, s: BfdSession, ev: StateChange, now: float) -> None:
        peer = self.peers.get(s.name)
        if peer is None or peer.bfd is not s:
            return
        old, new = BFD_STATE_NAMES[ev.old], BFD_STATE_NAMES[ev.new]
        if ev.failure:
            log.warning("peer %s: BFD %s -> %s (%s)", peer.key, old, new, diag_text(ev.diag))
        else:
            log.info("peer %s: BFD %s -> %s (%s)", peer.key, old, new, diag_text(ev.diag))
        if ev.failure:
            peer.bfd_failures += 1
            # the path is gone: the BGP session goes down at once, and its routes with it (no graceful
            # restart: `_session_down`). A session that is not up is left alone: when bgpd itself died,
            # TCP told us first and graceful restart keeps its routes.
            for session in peer.neighbor.sessions():
                if session.state in (State.OPENSENT, State.OPENCONFIRM, State.ESTABLISHED):
                    peer.bfd_failed = True
                    session.automatic_stop(now, CeaseSubcode.BFD_DOWN,
                                           reason=f"BFD session down ({diag_text(ev.diag)})",
                                           hold_down=BFD_FAILURE_HOLD_DOWN)
            self._touch(peer, now)
        elif ev.new == BfdState.UP and not peer.admin_down:
            # the path is back: no need to wait out a back-off. Not at Init: a peer that cannot hear us
            # (our BFD packets lost) still makes ours Init. We accept its connection at once but connect
            # ourselves a moment later: its BFD may reach Up a packet after ours, and until then it
            # refuses us, which would cost a whole ConnectRetryTimer
            peer.session.retry_now(now, delay=BFD_CONNECT_DELAY)
            self._touch(peer, now)

    # ------------------------------------------------------------ update groups

    def _join_group(self, peer: Peer, now: float, previous: dict[AfiSafi, list[bytes]] | None = None) -> None:
        assert peer.negotiated is not None
        key = GroupKey.of(peer.info, peer.negotiated, peer.families)
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = UpdateGroup(key, self.export, self.rib.loc, window=self.window)
        group.join(peer.info, now, peer.enhanced_refresh, previous)
        peer.group = group
        self._schedule.update(group, group.next_deadline())

    def _leave_group(self, peer: Peer) -> None:
        group = peer.group
        peer.group = None
        if isinstance(group, UpdateGroup):
            group.leave(peer.info)
            if not group.members:
                self.groups.pop(group.key, None)
                self._schedule.remove(group)

    def _flush(self, group: UpdateGroup, now: float) -> None:
        for info, out in group.flush(now).items():
            peer = self._by_info.get(info)
            session = peer.established if peer is not None else None
            if session is None or session.state != State.ESTABLISHED:
                continue
            session.send_updates(out.chunks, out.updates, out.refreshes)
            self._output[session] = None
        self._schedule.update(group, group.next_deadline())

    def _apply(self, changes: Changes, now: float) -> None:
        """Loc-RIB changes go to every update group once and to the feed's readers."""
        if not changes:
            return
        feed = self.feed if self.feed.readers and self.deferral is None else None
        for family, chs in changes.items():
            if not chs:
                continue
            for group in self.groups.values():
                if family in group.families:
                    group.changes(family, chs, now)
                    self._schedule.update(group, group.next_deadline())
            if feed is not None:
                feed.changes(chs)

    # ------------------------------------------------------------ views

    def advertised(self, peer: Peer, family: AfiSafi) -> dict[bytes, object]:
        """What the peer's group advertises to it for `family` (without the routes it owns)."""
        group = peer.group
        if not isinstance(group, UpdateGroup):
            return {}
        return group.advertised_to(peer.info, family)  # type: ignore[return-value]

    def advertised_count(self, peer: Peer, family: AfiSafi, cache: dict[object, object] | None = None) -> int:
        """len(advertised(peer, family)) without building it: O(1) per member once `cache` (kept by the
        caller across the peers of one pass) holds its group's ownership counts."""
        group = peer.group
        if not isinstance(group, UpdateGroup):
            return 0
        cache = {} if cache is None else cache
        key = (id(group), family)
        owned = cache.get(key)
        if owned is None:
            owned = cache[key] = group.owned_counts(family)
        return group.advertised_count(peer.info, family, owned)  # type: ignore[arg-type]


def _merge(a: Changes, b: Changes) -> Changes:
    for family, chs in b.items():
        if chs:
            a.setdefault(family, []).extend(chs)
    return a
