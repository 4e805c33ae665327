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

This module holds the speaker's state, the adapter's entry points and what session events do to a
peer. The rest of `Speaker` is mixed in from one module per concern, each working on that state:
`bgpd.speaker_peers` (peers configured, reconfigured, removed; the operator's actions),
`bgpd.speaker_settings` (this node's blocks, pools, routes and owners), `bgpd.speaker_bfd` (BFD
beside the sessions) and `bgpd.speaker_routes` (UPDATEs into the RIB, Loc-RIB changes out to the
update groups and the feed, restart deferral and the feed hold).
"""

from __future__ import annotations

import ipaddress
import logging
import random
import time
from collections import deque
from collections.abc import Callable

from bgpd.advertise import taggers
from bgpd.bfd_session import BfdSession
from bgpd.bfd_table import BfdTable
from bgpd.export_policy import ExportPolicy
from bgpd.feed_hold import FeedHold
from bgpd.feed_out import RibFeed
from bgpd.filters import InterfaceOf
from bgpd.fsm import State
from bgpd.graceful import GracefulHelper, RestartDeferral, keeps_routes
from bgpd.group_key import GroupKey
from bgpd.ownership import BlockOwners
from bgpd.peer import Peer, PeerTransportConfig
from bgpd.pool_set import PoolSet
from bgpd.rib.path import PeerInfo
from bgpd.rib.rib import Rib
from bgpd.schedule import Schedule
from bgpd.session import Session
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
from bgpd.speaker_bfd import SpeakerBfd
from bgpd.speaker_peers import PeerManagement
from bgpd.speaker_routes import (
    DEFERRAL_TIMER,
    FEED_HOLD_TIMER,
    GR_TIMER,
    RouteDistribution,
    merge_changes,
)
from bgpd.speaker_settings import (
    FAMILIES,
    FAMILY_NAMES,
    ClusterSettings,
    export_pools,
    family_of,
    identity_of,
    import_pools,
)
from bgpd.timers import RandomSource
from bgpd.topology import Topology
from bgpd.update_group import DEFAULT_WINDOW, UpdateGroup
from proto.bgp import (
    IPV4_UNICAST,
    AfiSafi,
    EnhancedRouteRefreshCap,
    GracefulRestartCap,
    MultiprotocolCap,
)
from proto.record import record

log = logging.getLogger("tortie.bgp")

# RFC 4271 suggests 120 s, but a passive peer that closes our connection while it is still in its
# idle hold (GoBGP right after a session drops) would then keep us away for 90-120 s: as long as
# Calico's graceful-restart time, so a restarting tortie could lose its routes on that peer.
CONNECT_RETRY_TIME = 30.0
CONNECT_DELAY = 2.0  # Calico's BIRD: `connect delay time 2`


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


class Speaker(PeerManagement, ClusterSettings, SpeakerBfd, RouteDistribution):
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
            self._schedule.update(DEFERRAL_TIMER, self.deferral.next_deadline())
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

    @property
    def deferring(self) -> bool:
        """A restarting speaker waiting for its peers' End-of-RIB (RFC 4724 4.1): no advertising, and
        no feed snapshot (its end would make felixd drop every route not yet relearned)."""
        return self.deferral is not None

    def peer_of(self, session: Session) -> Peer | None:
        return self._owner.get(session)

    def local_address(self, session: Session) -> str | None:
        return self._local.get(session)

    # ------------------------------------------------------------ connections (from the adapter)

    def accept(self, address: str, now: float, local_address: str | None = None,
               made_at: float | None = None) -> Session | None:
        """A peer connected to us from `address`: the session that takes the connection, or None
        (nobody configured there, or not wanted: close it). `made_at`: the latest moment the peer
        can have made the connection (it may have waited in the accept queue)."""
        peer = self.peers.get(address)
        if peer is None:
            return None
        session = peer.neighbor.connection_made(now, outbound=False, made_at=made_at)
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
            elif obj == GR_TIMER:
                changes = self.gr.expire(now)
                if changes:
                    log.warning("graceful restart: a peer did not return or send End-of-RIB in time; "
                                "its stale routes are withdrawn")
                self._apply(changes, now)
                self._schedule.update(GR_TIMER, self.gr.next_deadline())
            elif obj == DEFERRAL_TIMER and self.deferral is not None:
                self._apply(self.deferral.poll(now), now)
                self._check_deferral(now)
            elif obj == FEED_HOLD_TIMER:
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
            info.next_hop_self[family_of(local)] = (str(ipaddress.ip_address(local)),)
        self.rib.set_add_path(info, ev.negotiated.add_path_receive)
        self.rib.set_four_octet_as(info, ev.negotiated.four_octet_as)
        cap = remote.capability(GracefulRestartCap)
        peer.remote_gr = cap if isinstance(cap, GracefulRestartCap) else None
        peer.enhanced_refresh = remote.capability(EnhancedRouteRefreshCap) is not None
        changes = self.gr.peer_up(info, now, peer.remote_gr)
        self._schedule.update(GR_TIMER, self.gr.next_deadline())
        if self.deferral is not None:
            changes = merge_changes(changes, self.deferral.peer_established(info, now, peer.families, peer.remote_gr))
        else:
            self._join_group(peer, now)
        self._apply(changes, now)
        self._check_deferral(now)
        self.feed_hold.peer_established(info, peer.families, peer.remote_gr, now)
        self._check_feed_hold(now)
        log.info("peer %s Established (router id %s, families %s, hold %ds)", peer.key, remote.router_id,
                 ", ".join(FAMILY_NAMES[f] for f in peer.families), ev.hold_time)

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
            self._schedule.update(GR_TIMER, self.gr.next_deadline())
            if cap is not None:
                log.warning("peer %s down (%s): keeping its routes as stale for %ds (graceful restart)",
                            peer.key, ev.reason, cap.restart_time, extra={"peer": peer.key})
            else:
                log.warning("peer %s down: %s", peer.key, ev.reason, extra={"peer": peer.key})
            self._apply(changes, now)
        peer.negotiated = None
