"""tortie-bgpd: the speaker, wiring sessions (bgpd.transport) to the RIB (bgpd.rib) and the feed.

One asyncio loop; everything protocol-shaped is sans-I/O underneath: sessions, RIB, Adj-RIB-Outs,
graceful restart. This module only routes events between them, keeps one timer for the RIB-side
deadlines (Adj-RIB-Out windows, graceful-restart timers), and serves the route feed, the control
socket and the management endpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path as FsPath

from bgpd.feed_server import FeedServer
from bgpd.fsm import State
from bgpd.graceful import GracefulHelper, RestartDeferral
from bgpd.metrics import BgpMetrics
from bgpd.policy import ExportPolicy, ImportOptions, PoolSet, Speaker
from bgpd.rib.adj_rib_out import AdjRibOut
from bgpd.rib.loc_rib import Change
from bgpd.rib.path import Path, PeerInfo
from bgpd.rib.rib import Changes, Rib
from bgpd.session import (
    Established,
    GracefulRestartConfig,
    NotificationReceived,
    NotificationSent,
    RouteRefreshReceived,
    SessionConfig,
    SessionDown,
    StateChanged,
    UpdateReceived,
)
from bgpd.timers import LoopTimer
from bgpd.topology import MESH, PeerConfig, Topology, TopologyError, build, diff
from bgpd.transport import BgpListener, BgpPeer, PeerTransportConfig
from datastore import open_datastore
from datastore.metrics import register as register_datastore_metrics
from datastore.metrics import with_datastore
from proto import prefix as pf
from proto.bgp import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    AfiSafi,
    CeaseSubcode,
    EnhancedRouteRefreshCap,
    GracefulRestartCap,
    MsgType,
    MultiprotocolCap,
    Negotiated,
    RefreshSubtype,
    RouteRefreshCap,
)
from proto.bgp.constants import Origin
from proto.bgp.prefix import prefix_from_network
from proto.feed import route_frame_wire, route_tail, withdraw_frame_wire
from proto.resources import ClusterModel, NotFoundError, ValidationError
from runtime import logs
from runtime.control import ControlError, ControlServer
from runtime.http import ManagementServer
from runtime.sdnotify import Notifier
from startup.join import join_cluster

log = logging.getLogger("tortie.bgp")

FAMILIES: tuple[AfiSafi, ...] = (IPV4_UNICAST, IPV6_UNICAST)
FAMILY_NAMES = {IPV4_UNICAST: "ipv4_unicast", IPV6_UNICAST: "ipv6_unicast"}
STARTUP_READINESS = 30.0  # calico-node: strict readiness in the first 30 s
# RFC 4271 suggests 120 s, but a passive peer that closes our connection while it is still in its
# idle hold (GoBGP right after a session drops) would then keep us away for 90-120 s: as long as
# Calico's graceful-restart time, so a restarting tortie could lose its routes on that peer.
CONNECT_RETRY_TIME = 30.0
STATE_NAMES = {State.IDLE: "Idle", State.CONNECT: "Connect", State.ACTIVE: "Active", State.OPENSENT: "OpenSent",
               State.OPENCONFIRM: "OpenConfirm", State.ESTABLISHED: "Established"}


@dataclass
class PeerState:
    cfg: PeerConfig
    info: PeerInfo
    transport: BgpPeer
    out: AdjRibOut | None = None
    negotiated: Negotiated | None = None
    families: tuple[AfiSafi, ...] = ()
    remote_gr: GracefulRestartCap | None = None
    since: float = field(default_factory=time.time)
    admin_down: bool = False
    last_sent: str | None = None
    last_received: str | None = None
    established_once: bool = False


def _family_of(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> AfiSafi:
    return IPV4_UNICAST if addr.version == 4 else IPV6_UNICAST


class BgpDaemon:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.node: str = args.node
        self.run_dir = FsPath(args.run_dir)
        self.metrics = BgpMetrics()
        self.notifier = Notifier()
        self.model: ClusterModel | None = None
        self.topology: Topology | None = None
        self.peers: dict[str, PeerState] = {}
        self.by_transport: dict[int, PeerState] = {}
        self.rib: Rib | None = None
        self.export: ExportPolicy | None = None
        self.gr: GracefulHelper | None = None
        self.deferral: RestartDeferral | None = None
        self.listener: BgpListener | None = None
        self.feed: FeedServer | None = None
        self.restarting = False
        self.started = time.monotonic()
        self.started_wall = time.time()
        self._timer: LoopTimer | None = None
        self._stop = asyncio.Event()
        self._graceful = False
        self._feed_tails: dict[Path, tuple[int, bytes]] = {}

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    def now(self) -> float:
        return self.loop.time()

    # ---------------------------------------------------------------- building

    def _speaker(self, topo: Topology) -> Speaker:
        return Speaker(asn=topo.asn, router_id=str(topo.router_id),
                       cluster_id=str(topo.cluster_id) if topo.cluster_id is not None else None,
                       addresses=frozenset(str(a) for a in topo.addresses))

    def _pools(self, model: ClusterModel) -> dict[AfiSafi, PoolSet]:
        out = {}
        for family in FAMILIES:
            version = 4 if family == IPV4_UNICAST else 6
            out[family] = PoolSet([p.cidr for p in model.pools if p.cidr.version == version], family)
        return out

    def _build_rib(self, model: ClusterModel, topo: Topology) -> None:
        speaker = self._speaker(topo)
        pools = self._pools(model)
        self.rib = Rib(speaker, pools, node=topo.node)
        self.export = ExportPolicy(speaker, pools)
        self.gr = GracefulHelper(self.rib)
        self._originate(topo)

    def _originate(self, topo: Topology) -> Changes:
        assert self.rib is not None
        changes: Changes = {}
        for family in FAMILIES:
            version = 4 if family == IPV4_UNICAST else 6
            prefixes = [prefix_from_network(n) for n in topo.originate if n.version == version]
            c = self.rib.originate(family, prefixes)
            if c:
                changes[family] = c
        return changes

    def _next_hop_self(self, topo: Topology) -> dict[AfiSafi, tuple[str, ...]]:
        out: dict[AfiSafi, tuple[str, ...]] = {}
        for addr in topo.addresses:
            out.setdefault(_family_of(addr), (str(addr),))
        return out

    def _add_peer(self, cfg: PeerConfig) -> PeerState:
        assert self.rib is not None and self.topology is not None
        topo = self.topology
        info = PeerInfo(str(cfg.address), str(cfg.address), cfg.asn, topo.asn, mesh=cfg.peer_type == MESH,
                        rr_client=cfg.rr_client, node=cfg.node, keep_next_hop=cfg.keep_original_next_hop,
                        next_hop_self=self._next_hop_self(topo))
        self.rib.add_peer(info, ImportOptions(max_prefixes=cfg.max_prefixes))
        gr = GracefulRestartConfig(restart_time=int(cfg.restart_time), restarting=self.restarting,
                                   forwarding_preserved=frozenset(FAMILIES))
        session = SessionConfig(
            local_as=topo.asn, peer_as=cfg.asn, router_id=str(topo.router_id), hold_time=cfg.hold_time,
            passive=cfg.passive, families=FAMILIES, graceful_restart=gr,
            add_path_receive=frozenset(FAMILIES), name=str(cfg.address), connect_retry_time=CONNECT_RETRY_TIME,
        )
        transport = PeerTransportConfig(
            peer_address=str(cfg.address), peer_port=cfg.port,
            source_address=str(cfg.source_address) if cfg.source_address is not None else None,
            md5_password=cfg.password, ttl_security=cfg.ttl_security,
        )
        bp = BgpPeer(session, transport, listener=self.listener, handler=self._on_event)
        ps = PeerState(cfg, info, bp)
        self.peers[cfg.key] = ps
        self.by_transport[id(bp)] = ps
        self.metrics.set_state(cfg.key, "idle")
        self.metrics.established_transitions.labels(cfg.key)
        self.metrics.treat_as_withdraw.labels(cfg.key)
        bp.start()
        log.info("peer %s (%s, AS %d%s) configured", cfg.address, cfg.peer_type, cfg.asn,
                 ", passive" if cfg.passive else "")
        return ps

    async def _remove_peer(self, ps: PeerState, subcode: int, message: str) -> None:
        assert self.rib is not None
        key = ps.cfg.key
        self.peers.pop(key, None)
        self.by_transport.pop(id(ps.transport), None)
        if ps.out is not None:
            ps.out.stop()
        await ps.transport.close(message, subcode)
        if self.gr is not None:
            self.gr.peers.pop(ps.info, None)
        if self.deferral is not None:
            self._apply(self.deferral.peer_removed(ps.info, self.now()))
        self._apply(self.rib.remove_peer(ps.info))
        for s in ("idle", "connect", "active", "opensent", "openconfirm", "established"):
            with contextlib.suppress(KeyError):
                self.metrics.session_state.remove(key, s)

    # ---------------------------------------------------------------- session events

    def _on_event(self, bp: BgpPeer, ev: object) -> None:
        ps = self.by_transport.get(id(bp))
        if ps is None:
            return
        now = self.now()
        key = ps.cfg.key
        if isinstance(ev, StateChanged):
            ps.since = time.time()
            self.metrics.set_state(key, ev.new.name)
            if ev.new == State.ESTABLISHED or ev.old == State.ESTABLISHED or ev.new == State.IDLE:
                log.info("peer %s: %s -> %s", key, ev.old.name, ev.new.name)
            else:
                log.debug("peer %s: %s -> %s", key, ev.old.name, ev.new.name)
        elif isinstance(ev, Established):
            self._established(ps, ev, now)
        elif isinstance(ev, UpdateReceived):
            self._update(ps, ev, now)
        elif isinstance(ev, RouteRefreshReceived):
            r = ev.refresh
            family = (r.afi, r.safi)
            if r.subtype == RefreshSubtype.NORMAL and ps.out is not None and family in ps.families:
                ps.out.route_refresh(family, now)
            elif r.subtype == RefreshSubtype.BORR and self.rib is not None:
                self._apply({family: self.rib.begin_refresh(ps.info, family)})
            elif r.subtype == RefreshSubtype.EORR and self.rib is not None:
                self._apply({family: self.rib.end_refresh(ps.info, family)})
        elif isinstance(ev, NotificationReceived):
            n = ev.notification
            ps.last_received = ev.description
            self.metrics.notifications_received.labels(key, str(n.code), str(n.subcode)).inc()
            log.warning("peer %s sent NOTIFICATION: %s", key, ev.description)
        elif isinstance(ev, NotificationSent):
            n = ev.notification
            ps.last_sent = ev.description
            self.metrics.notifications_sent.labels(key, str(n.code), str(n.subcode)).inc()
            log.warning("NOTIFICATION to peer %s: %s", key, ev.description)
        elif isinstance(ev, SessionDown):
            self._down(ps, ev, now)
        self._arm()

    def _established(self, ps: PeerState, ev: Established, now: float) -> None:
        assert self.rib is not None and self.export is not None and self.gr is not None
        key = ps.cfg.key
        ps.negotiated = ev.negotiated
        ps.established_once = True
        self.metrics.established_transitions.labels(key).inc()
        remote_families = {(c.afi, c.safi) for c in ev.remote_open.capabilities if isinstance(c, MultiprotocolCap)}
        ps.families = tuple(f for f in FAMILIES if f in remote_families) if remote_families else (IPV4_UNICAST,)
        rid = ev.remote_open.router_id
        ps.info.set_router_id(rid)
        conn = ps.transport.connection
        sock = conn.sock if conn is not None else None
        if sock is not None:
            local = str(ipaddress.ip_address(sock.getsockname()[0].split("%")[0]))
            ps.info.next_hop_self[_family_of(ipaddress.ip_address(local))] = (local,)
        self.rib.set_add_path(ps.info, ev.negotiated.add_path_receive)
        cap = ev.remote_open.capability(GracefulRestartCap)
        ps.remote_gr = cap if isinstance(cap, GracefulRestartCap) else None
        changes = self.gr.peer_up(ps.info, now, ps.remote_gr)
        enhanced = ev.remote_open.capability(EnhancedRouteRefreshCap) is not None
        ps.out = AdjRibOut(ps.info, self.export, ev.negotiated)
        if self.deferral is not None and not self.deferral.done:
            changes = _merge(changes, self.deferral.peer_established(ps.info, now, ps.families, ps.remote_gr))
        if self.deferral is None or self.deferral.done:
            ps.out.start(now, self.rib.loc, ps.families, ev.negotiated, enhanced_refresh=enhanced)
        self._apply(changes)
        if self.deferral is not None and self.deferral.done:
            self._deferral_done()
        log.info("peer %s Established (router id %s, families %s, hold %ds)", key, rid,
                 ", ".join(FAMILY_NAMES[f] for f in ps.families), ev.hold_time)

    def _update(self, ps: PeerState, ev: UpdateReceived, now: float) -> None:
        assert self.rib is not None and self.gr is not None
        t0 = time.perf_counter()
        key = ps.cfg.key
        update = ev.update
        if update.treat_as_withdraw:
            self.metrics.treat_as_withdraw.labels(key).inc()
            for p in update.problems:
                log.warning("peer %s: UPDATE treated as withdraw (RFC 7606): %s", key, p.reason)
        result = self.rib.receive_update(ps.info, update)
        changes = result.changes
        if result.end_of_rib is not None:
            family = result.end_of_rib
            log.info("peer %s: End-of-RIB for %s", key, FAMILY_NAMES.get(family, family))
            changes = _merge(changes, self.gr.end_of_rib(ps.info, family, now))
            if self.deferral is not None and not self.deferral.done:
                changes = _merge(changes, self.deferral.end_of_rib(ps.info, family, now))
                if self.deferral.done:
                    self._deferral_done()
        self._apply(changes)
        if result.error is not None:
            err = result.error
            log.error("peer %s exceeded its prefix limit (%s): sending Cease/%d", key,
                      ps.cfg.max_prefixes, err.subcode)
            session = ps.transport.session
            session.automatic_stop(now, err.subcode, err.data, reason=str(err), hold_down=30.0)
            ps.transport._service(session)  # write the NOTIFICATION now
        self.metrics.update_processing_seconds.observe(time.perf_counter() - t0)

    def _down(self, ps: PeerState, ev: SessionDown, now: float) -> None:
        assert self.rib is not None and self.gr is not None
        key = ps.cfg.key
        if ps.out is not None:
            ps.out.stop()
            ps.out = None
        if ev.was_established:
            # RFC 4724: a NOTIFICATION ends graceful restart (RFC 8538's N bit is not negotiated)
            notified = ev.notification_sent is not None or ev.notification_received is not None
            cap = None if notified else ps.remote_gr
            changes = self.gr.peer_down(ps.info, now, cap)
            if cap is not None:
                log.warning("peer %s down (%s): keeping its routes as stale for %ds (graceful restart)",
                            key, ev.reason, cap.restart_time)
            else:
                log.warning("peer %s down: %s", key, ev.reason)
            self._apply(changes)
        ps.negotiated = None

    def _deferral_done(self) -> None:
        """The restarting speaker's wait is over: start every Adj-RIB-Out (initial table, End-of-RIB)."""
        assert self.rib is not None
        now = self.now()
        log.info("graceful restart: peers' End-of-RIB received (or deadline passed); advertising")
        for ps in self.peers.values():
            if ps.out is not None and not ps.out.started and ps.negotiated is not None:
                ps.out.start(now, self.rib.loc, ps.families, ps.negotiated)
        self.deferral = None
        self._publish_snapshot_refresh()
        self.feed_ready.set()

    # ---------------------------------------------------------------- changes to feed and peers

    def _apply(self, changes: Changes) -> None:
        if not changes:
            return
        now = self.now()
        for family, chs in changes.items():
            if not chs:
                continue
            for ps in self.peers.values():
                if ps.out is not None and ps.out.started and family in ps.families:
                    ps.out.changes(family, chs, now)
            # with no reader connected there is nobody to tell: a reader that connects later starts
            # from a snapshot of the Loc-RIB, so building the deltas would only cost time
            if self.feed is not None and self.feed.readers and (self.deferral is None or self.deferral.done):
                self.feed.publish(self._feed_changes(family, chs))
        self._arm()

    def _prefix(self, family: AfiSafi, key: bytes) -> str:
        """Prefix text for the control socket (never on the feed's hot path)."""
        return pf.text(key)

    @staticmethod
    def _routable(best: Path | None) -> bool:
        return best is not None and not best.source.local and bool(best.next_hop)

    def _feed_encode(self, seq: int, fkey: tuple[AfiSafi, bytes], best: Path | None) -> bytes:
        """One feed frame straight from the wire-form prefix and the best path: the part after the
        prefix is computed once per path and shared by every prefix it carries."""
        _family, pw = fkey  # the RIB's prefix value is the feed's prefix field
        if best is None or not self._routable(best):
            return withdraw_frame_wire(seq, pw)
        tail = self._feed_tails.get(best)
        if tail is None:
            if len(self._feed_tails) > 100_000:
                self._feed_tails.clear()
            tail = self._feed_tails[best] = route_tail(
                best.next_hop[0], best.source.node if best.source.ibgp else None, best.stale,
                best.local_pref or 100, min(best.as_path_len, 0xFFFF))
        return route_frame_wire(seq, tail[0], pw, tail[1])

    def _feed_changes(self, family: AfiSafi, chs: list[Change]) -> dict[tuple[AfiSafi, bytes], Path | None]:
        return {(family, key): best for key, best in chs}

    def _snapshot(self) -> list[tuple[tuple[AfiSafi, bytes], Path]]:
        assert self.rib is not None
        if self.deferral is not None and not self.deferral.done:
            return []
        return [((family, key), best) for family, loc in self.rib.loc.items()
                for key, best in loc.best.items() if self._routable(best)]

    def _publish_snapshot_refresh(self) -> None:
        if self.feed is not None:
            self.feed.publish(dict(self._snapshot()))

    # ---------------------------------------------------------------- the one RIB timer

    def _arm(self) -> None:
        deadlines = [d for ps in self.peers.values() if ps.out is not None
                     and (d := ps.out.next_deadline()) is not None]
        if self.gr is not None and (d := self.gr.next_deadline()) is not None:
            deadlines.append(d)
        if self.deferral is not None and (d := self.deferral.next_deadline()) is not None:
            deadlines.append(d)
        if self._timer is None:
            self._timer = LoopTimer(self.loop, self._on_timer)
        self._timer.arm(min(deadlines) if deadlines else None)

    def _on_timer(self) -> None:
        now = self.now()
        if self.gr is not None and (d := self.gr.next_deadline()) is not None and now >= d:
            changes = self.gr.expire(now)
            if changes:
                log.warning("graceful restart: a peer did not return or send End-of-RIB in time; "
                            "its stale routes are withdrawn")
            self._apply(changes)
        if self.deferral is not None and not self.deferral.done:
            d = self.deferral.next_deadline()
            if d is not None and now >= d:
                self._apply(self.deferral.poll(now))
                if self.deferral is not None and self.deferral.done:
                    self._deferral_done()
        for ps in list(self.peers.values()):
            out = ps.out
            if out is None or (d := out.next_deadline()) is None or now < d:
                continue
            messages = out.flush(now)
            if messages and ps.transport.state == State.ESTABLISHED:
                ps.transport.session.sent[MsgType.UPDATE] += len(messages)
                ps.transport.send_update_bytes(b"".join(messages))
        # no _update_gauges() here: it walks every Adj-RIB-In (stale counts), and this timer fires
        # every Adj-RIB-Out window during a table load; the periodic task and each scrape refresh them
        if self.feed is not None:
            self.metrics.feed_lag.set(self.feed.lag)
        self._arm()

    def _update_gauges(self) -> None:
        if self.rib is None:
            return
        for family, loc in self.rib.loc.items():
            self.metrics.loc_rib_routes.labels(FAMILY_NAMES[family]).set(len(loc))
        for key, ps in self.peers.items():
            pr = self.rib.peers.get(ps.info)
            if pr is None:
                continue
            for family, rib_in in pr.ins.items():
                self.metrics.prefixes_received.labels(key, FAMILY_NAMES[family]).set(len(rib_in))
                self.metrics.prefixes_accepted.labels(key, FAMILY_NAMES[family]).set(len(rib_in))
                if ps.out is not None:
                    self.metrics.prefixes_advertised.labels(key, FAMILY_NAMES[family]).set(
                        len(ps.out.advertised.get(family, {})))
            self.metrics.gr_stale_routes.labels(key).set(
                sum(rib_in.stale_count() for rib_in in pr.ins.values()))
            for direction, metric in (("sent", self.metrics.messages_sent),
                                      ("received", self.metrics.messages_received)):
                for name, n in self._messages(ps)[direction].items():
                    c = metric.labels(key, name.lower())
                    delta = n - c._value.get()
                    if delta > 0:
                        c.inc(delta)
            for reason, n in pr.policy.rejected.items():
                c = self.metrics.prefixes_rejected.labels(key, reason)
                delta = n - c._value.get()
                if delta > 0:
                    c.inc(delta)

    # ---------------------------------------------------------------- configuration

    async def apply_model(self, model: ClusterModel) -> None:
        assert self.topology is not None and self.rib is not None
        try:
            topo = build(model, self.node)
        except (TopologyError, NotFoundError) as exc:
            self.metrics.config_reloads.labels("invalid").inc()
            log.error("configuration not reloaded, keeping the running one: %s", exc)
            return
        d = diff(self.topology, topo)
        self.model = model
        if d.identity_changed:
            log.warning("AS, router id, cluster id or port changed: restarting every session")
            for ps in list(self.peers.values()):
                await self._remove_peer(ps, CeaseSubcode.OTHER_CONFIGURATION_CHANGE, "configuration change")
            await self._stop_listener()
            self.topology = topo
            self._build_rib(model, topo)
            await self._start_listener()
            for cfg in topo.peers.values():
                self._add_peer(cfg)
        else:
            self.topology = topo
            for cfg in d.removed:
                log.info("peer %s removed from the configuration", cfg.address)
                await self._remove_peer(self.peers[cfg.key], CeaseSubcode.PEER_DECONFIGURED, "peer deconfigured")
            for old, new in d.changed:
                log.info("peer %s changed: restarting its session", new.address)
                await self._remove_peer(self.peers[old.key], CeaseSubcode.OTHER_CONFIGURATION_CHANGE,
                                        "configuration change")
                self._add_peer(new)
            for cfg in d.added:
                self._add_peer(cfg)
            if d.originate_changed:
                self._apply(self._originate(topo))
        self.metrics.config_reloads.labels("ok").inc()
        self.metrics.last_reload.set(time.time())
        log.info("configuration applied (revision %s): %d peers, %d added, %d removed, %d changed",
                 getattr(model, "revision", "?"), len(topo.peers), len(d.added), len(d.removed), len(d.changed))

    async def _start_listener(self) -> None:
        assert self.topology is not None
        addresses = [(str(a), self.topology.listen_port) for a in self.topology.addresses]
        if self.args.listen_address:
            addresses = [(a, self.topology.listen_port) for a in self.args.listen_address]
        self.listener = BgpListener(addresses)
        await self.listener.start()
        log.info("listening on %s", ", ".join(f"{a}:{p}" for a, p in self.listener.bound))

    async def _stop_listener(self) -> None:
        if self.listener is not None:
            await self.listener.close()
            self.listener = None

    # ---------------------------------------------------------------- control

    def _summary(self, ps: PeerState) -> dict[str, object]:
        return {"address": ps.cfg.key, "family": f"ipv{ps.cfg.address.version}", "peer_type": ps.cfg.peer_type,
                "state": STATE_NAMES[ps.transport.state],
                "since": ps.since, "last_error": ps.transport.last_error, "asn": ps.cfg.asn, "node": ps.cfg.node,
                "admin_down": ps.admin_down}

    def ctl_status(self) -> dict[str, object]:
        topo = self.topology
        assert topo is not None
        return {"node": self.node, "asn": topo.asn, "router_id": str(topo.router_id),
                "uptime_seconds": round(time.monotonic() - self.started, 1),
                "graceful_restart": "restarting: waiting for peers' End-of-RIB"
                if self.deferral is not None and not self.deferral.done else "",
                "peers": [self._summary(ps) for ps in sorted(self.peers.values(),
                                                                 key=lambda p: p.info.address_key)]}

    def ctl_neighbors(self, peer: str | None = None) -> list[dict[str, object]]:
        assert self.rib is not None
        rows = []
        targets = [self._peer(peer)] if peer else sorted(self.peers.values(), key=lambda p: p.info.address_key)
        for ps in targets:
            st = ps.transport.status()
            neg = ps.negotiated
            pr = self.rib.peers.get(ps.info)
            received = sum(len(r) for r in pr.ins.values()) if pr else 0
            advertised = sum(len(v) for v in ps.out.advertised.values()) if ps.out else 0
            remote = ps.transport.session.remote_open
            caps = {
                "families": [FAMILY_NAMES[f] for f in ps.families],
                "four_octet_as": bool(neg and neg.four_octet_as),
                "route_refresh": bool(remote and remote.capability(RouteRefreshCap) is not None),
                "enhanced_route_refresh": bool(remote and remote.capability(EnhancedRouteRefreshCap) is not None),
                "extended_message": bool(neg and neg.extended_message),
                "add_path_receive": sorted(FAMILY_NAMES.get(f, str(f)) for f in (neg.add_path_receive if neg else ())),
                "graceful_restart": {"local": True, "remote": ps.remote_gr is not None,
                                     "remote_restart_time": ps.remote_gr.restart_time if ps.remote_gr else None},
            }
            gr_state = ""
            if self.gr is not None and self.gr.is_restarting(ps.info):
                stale = sum(r.stale_count() for r in pr.ins.values()) if pr else 0
                gr_state = f"peer restarting, {stale} stale routes kept"
            local = st.get("local")
            rows.append({
                **self._summary(ps),
                "hold_time": st.get("hold_time"), "keepalive_time": st.get("keepalive_time"),
                "local_address": local[0] if local else None, "remote_router_id": st.get("remote_router_id"),
                "uptime_seconds": st.get("since_established_seconds"), "capabilities": caps,
                "messages": self._messages(ps),
                "prefixes": {"received": received, "accepted": received,
                             "rejected": dict(pr.policy.rejected) if pr else {}, "advertised": advertised},
                "graceful_restart_state": gr_state,
                "last_notification_sent": ps.last_sent, "last_notification_received": ps.last_received,
                "source": ps.cfg.source,
            })
        return rows

    def _messages(self, ps: PeerState) -> dict[str, dict[str, int]]:
        session = ps.transport.session
        return {"sent": {MsgType(t).name: n for t, n in session.sent.items()},
                "received": {MsgType(t).name: n for t, n in session.received.items()}}

    def _peer(self, peer: str) -> PeerState:
        try:
            return self.peers[str(ipaddress.ip_address(peer))]
        except (KeyError, ValueError):
            raise ControlError(f"no peer {peer}; peers: {', '.join(sorted(self.peers)) or 'none'}") from None

    def ctl_rib(self, prefix: str | None = None, peer: str | None = None,
                direction: str = "in") -> list[dict[str, object]]:
        assert self.rib is not None
        rows: list[dict[str, object]] = []
        want = ipaddress.ip_network(prefix, strict=False) if prefix else None
        families = [f for f in FAMILIES if want is None or (want.version == 4) == (f == IPV4_UNICAST)]
        if peer is None:
            for family in families:
                loc = self.rib.loc[family]
                keys = [prefix_from_network(want)] if want is not None else sorted(
                    {k for src in loc.sources for k in _keys(src)} | set(loc.best), key=pf.sort_key)
                for key in keys:
                    best, reason, candidates = loc.explain(key)
                    for path in candidates:
                        rows.append(_entry(self._prefix(family, key), path, path is best,
                                           reason if path is best else ""))
            return rows
        ps = self._peer(peer)
        if direction == "out":
            if ps.out is None:
                return []
            for family in families:
                for key, adv in sorted(ps.out.advertised.get(family, {}).items(), key=lambda kv: pf.sort_key(kv[0])):
                    if want is not None and key != prefix_from_network(want):
                        continue
                    rows.append(_advert_entry(self._prefix(family, key), adv, ps.cfg.key))
            return rows
        pr = self.rib.peers.get(ps.info)
        if pr is None:
            return []
        for family in families:
            loc = self.rib.loc[family]
            for key, path in pr.ins[family].iter_paths():
                if want is not None and key != prefix_from_network(want):
                    continue
                rows.append(_entry(self._prefix(family, key), path, loc.best.get(key) is path, ""))
        return rows

    def ctl_refresh(self, peer: str) -> str:
        ps = self._peer(peer)
        if ps.transport.state != State.ESTABLISHED:
            raise ControlError(f"peer {peer} is not Established")
        for family in ps.families:
            ps.transport.session.send_route_refresh(family[0], family[1])
        ps.transport._service(ps.transport.session)
        return f"route refresh requested from {peer}"

    async def ctl_shutdown(self, peer: str, message: str = "") -> str:
        ps = self._peer(peer)
        ps.admin_down = True
        ps.transport.stop(message)
        return f"peer {peer} shut down"

    def ctl_graceful_stop(self) -> str:
        """Stop for an upgrade: no NOTIFICATION to the peers (they keep our routes, RFC 4724), the
        restart marker stays, so the next start is a restarting speaker; felixd keeps the kernel."""
        self._graceful = True
        self._stop.set()
        return "stopping gracefully: peers keep this node's routes until it is back"

    def ctl_enable(self, peer: str) -> str:
        ps = self._peer(peer)
        ps.admin_down = False
        ps.transport.start()
        return f"peer {peer} enabled"

    # ---------------------------------------------------------------- readiness

    def ready(self) -> tuple[bool, str]:
        if self.topology is None:
            return False, "not configured"
        peers = list(self.peers.values())
        up = [p for p in peers if p.transport.state == State.ESTABLISHED]
        if not peers:
            return True, "no peers configured"
        gr_pending = self.deferral is not None and not self.deferral.done
        if time.monotonic() - self.started < STARTUP_READINESS:
            if len(up) == len(peers) and not gr_pending:
                return True, f"{len(up)}/{len(peers)} peers established"
            return False, f"starting: {len(up)}/{len(peers)} peers established" + \
                (", graceful restart pending" if gr_pending else "")
        if up:
            return True, f"{len(up)}/{len(peers)} peers established"
        return False, f"no peer established (0/{len(peers)})"

    # ---------------------------------------------------------------- running

    async def run(self) -> int:
        args = self.args
        try:
            store = open_datastore(args.config)
            model = store.load()
            joined = await join_cluster(store, model, self.node, args)  # a host that joins by itself
            model = joined.model
            topo = build(model, self.node)
        except (ValidationError, NotFoundError, TopologyError, OSError) as exc:
            logs.setup(args.log_level or "info", args.log_format)
            for line in str(exc).splitlines():
                log.error("%s", line)
            return 1
        logs.setup(args.log_level or model.bgp_config.log_severity_screen, args.log_format)
        self.model, self.topology = model, topo
        self.run_dir.mkdir(parents=True, exist_ok=True)
        marker = self.run_dir / "bgpd.running"
        # A marker left by a bgpd that did not stop cleanly: we are a restarting speaker (RFC 4724).
        self.restarting = marker.exists()
        marker.write_text(str(os.getpid()))
        self._build_rib(model, topo)
        if self.restarting:
            log.warning("restarting after an unclean stop: graceful restart (waiting for peers' End-of-RIB)")
        self.feed_ready = asyncio.Event()
        if not self.restarting:
            self.feed_ready.set()
        self.feed = FeedServer(str(self.run_dir / "feed.sock"), self._snapshot, encode=self._feed_encode,
                               on_clients=lambda n: self.metrics.feed_clients.set(n), ready=self.feed_ready)
        await self.feed.start()
        await self._start_listener()
        peer_states = [self._add_peer(cfg) for cfg in topo.peers.values()]
        if self.restarting and peer_states:
            assert self.rib is not None
            self.deferral = RestartDeferral(self.rib, self.now(), [p.info for p in peer_states])
        else:
            self.feed_ready.set()
        mgmt = ManagementServer(self.metrics.registry, args.metrics_address or
                                model.bgp_config.prometheus_metrics_host or "127.0.0.1",
                                args.metrics_port if args.metrics_port is not None else
                                (model.bgp_config.prometheus_metrics_port or 9092),
                                with_datastore(self.ready, store.status), on_scrape=self._update_gauges)
        register_datastore_metrics(self.metrics.registry, store.status)
        await mgmt.start()
        control = ControlServer(str(self.run_dir / "bgpd.sock"))
        control.register("status", self.ctl_status)
        control.register("neighbors", self.ctl_neighbors)
        control.register("rib", self.ctl_rib)
        control.register("refresh", self.ctl_refresh)
        control.register("shutdown", self.ctl_shutdown)
        control.register("enable", self.ctl_enable)
        control.register("graceful_stop", self.ctl_graceful_stop)
        await control.start()
        watch = store.watch(initial=model)
        queue = watch.asyncio_queue()
        loop = self.loop
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        reload_task: set[asyncio.Task[None]] = set()

        def sighup() -> None:
            self.notifier.reloading()
            if watch.check_now() is None:
                log.info("SIGHUP: configuration unchanged")
            self.notifier.ready("reloaded")

        loop.add_signal_handler(signal.SIGHUP, sighup)

        async def watcher() -> None:
            while True:
                event = await queue.get()
                if event.error is not None:
                    self.metrics.config_reloads.labels("invalid").inc()
                    log.error("configuration not reloaded, keeping the running one: %s", event.error)
                    continue
                await self.apply_model(event.model)

        async def gauges() -> None:
            while True:
                await asyncio.sleep(5)
                self._update_gauges()

        reload_task.add(loop.create_task(watcher()))
        reload_task.add(loop.create_task(gauges()))
        self._arm()
        self.notifier.ready(f"{len(self.peers)} peers configured")
        wd = self.notifier.start_watchdog()
        log.info("tortie-bgpd ready: node %s, AS %d, router id %s, %d peers", self.node, topo.asn,
                 topo.router_id, len(self.peers))
        try:
            await self._stop.wait()
        finally:
            self.notifier.stopping()
            await Notifier.cancel(wd)
            for t in reload_task:
                t.cancel()
            if self._graceful:
                log.info("stopping gracefully: sessions dropped without NOTIFICATION (graceful restart)")
                await asyncio.gather(*(ps.transport.abort() for ps in self.peers.values()),
                                     return_exceptions=True)
            else:
                log.info("stopping: Cease (administrative shutdown) to every peer")
                await asyncio.gather(*(ps.transport.close("tortie-bgpd shutting down")
                                       for ps in self.peers.values()), return_exceptions=True)
            watch.close()
            joined.close()
            await self._stop_listener()
            await control.close()
            await mgmt.close()
            await self.feed.close()
            if self._timer is not None:
                self._timer.cancel()
            if not self._graceful:
                marker.unlink(missing_ok=True)
        return 0


def _merge(a: Changes, b: Changes) -> Changes:
    for family, chs in b.items():
        if chs:
            a.setdefault(family, []).extend(chs)
    return a


def _keys(rib_in: object) -> list[bytes]:
    return [k for k, _ in rib_in.iter_paths()]  # type: ignore[attr-defined]


def _attrs_entry(attrs: object) -> dict[str, object]:
    a = attrs
    as_path = " ".join(
        ("{" + ",".join(map(str, s.asns)) + "}") if s.type == 1 else " ".join(map(str, s.asns))
        for s in (getattr(a, "as_path", None) or ()))
    return {
        "origin": Origin(a.origin).name if getattr(a, "origin", None) is not None else "IGP",  # type: ignore[attr-defined]
        "as_path": as_path,
        "med": getattr(a, "med", None),
        "communities": [f"{c >> 16}:{c & 0xFFFF}" for c in (getattr(a, "communities", None) or ())],
        "large_communities": [":".join(map(str, c)) for c in (getattr(a, "large_communities", None) or ())],
        "originator_id": getattr(a, "originator_id", None),
        "cluster_list": list(getattr(a, "cluster_list", None) or ()),
    }


def _entry(prefix: str, path: Path, best: bool, reason: str) -> dict[str, object]:
    return {"prefix": prefix, "next_hop": path.next_hop[0] if path.next_hop else "self",
            "from": "local" if path.source.local else path.source.address, "best": best, "reason": reason,
            "stale": path.stale, "local_pref": path.local_pref, **_attrs_entry(path.attrs)}


def _advert_entry(prefix: str, adv: object, to: str) -> dict[str, object]:
    attrs = getattr(adv, "attrs", None)
    nh = getattr(adv, "next_hop", ())
    return {"prefix": prefix, "next_hop": nh[0] if nh else "self", "from": "local", "to": to, "best": True,
            "reason": "", "stale": False, "local_pref": getattr(attrs, "local_pref", None),
            **_attrs_entry(attrs)}
