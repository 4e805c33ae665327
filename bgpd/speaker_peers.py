"""Peer management in the speaker: peers added, reconfigured in place and removed as the
configuration changes, and the operator's actions on them (shutdown, enable, route refresh, stop).
Part of `bgpd.speaker.Speaker` (a mixin: the state is the speaker's, set up by its __init__).

A peer is configured once into every form the rest of the speaker needs: its `PeerInfo` for the
RIB and export policy, import options, its sessions' `SessionConfig` (under a `bgpd.neighbor.Neighbor`
that resolves collisions) and the adapter's `PeerTransportConfig`.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

from bgpd.filters import EXPORT, IMPORT, InterfaceOf, peer_chains
from bgpd.fsm import State
from bgpd.import_policy import ImportOptions
from bgpd.neighbor import Neighbor
from bgpd.peer import Peer, PeerTransportConfig
from bgpd.rib.path import PeerInfo
from bgpd.session_config import GracefulRestartConfig, SessionConfig
from bgpd.speaker_settings import FAMILIES, family_of
from bgpd.topology import MESH, PeerConfig
from bgpd.update_group import UpdateGroup
from proto.bgp import AfiSafi, CeaseSubcode, RouteRefreshCap

if TYPE_CHECKING:
    from bgpd.feed_hold import FeedHold
    from bgpd.graceful import GracefulHelper, RestartDeferral
    from bgpd.rib.rib import Changes, Rib
    from bgpd.schedule import Schedule
    from bgpd.timers import RandomSource
    from bgpd.topology import Topology
    from proto.tortie_annotations import BfdSettings

log = logging.getLogger("tortie.bgp")


class PeerManagement:
    if TYPE_CHECKING:  # what it works on, of bgpd.speaker.Speaker
        topology: Topology
        rng: RandomSource | None
        connect_retry_time: float
        connect_delay: float
        restarting: bool
        rib: Rib
        gr: GracefulHelper
        deferral: RestartDeferral | None
        feed_hold: FeedHold
        interface_of: InterfaceOf | None
        peers: dict[str, Peer]
        _by_info: dict[PeerInfo, Peer]
        _schedule: Schedule

        def _touch(self, peer: Peer, now: float) -> None: ...
        def set_bfd(self, key: str, settings: BfdSettings | None, now: float) -> None: ...
        def _bfd_close(self, key: str, now: float) -> None: ...
        def _apply(self, changes: Changes, now: float) -> None: ...
        def _join_group(self, peer: Peer, now: float,
                        previous: dict[AfiSafi, list[bytes]] | None = None) -> None: ...
        def _leave_group(self, peer: Peer) -> None: ...
        def _check_deferral(self, now: float) -> None: ...
        def _check_feed_hold(self, now: float) -> None: ...

    def add_peer(self, cfg: PeerConfig, now: float) -> Peer:
        topo = self.topology
        if cfg.key in self.peers:
            raise ValueError(f"peer {cfg.key} already configured")
        next_hop_self: dict[AfiSafi, tuple[str, ...]] = {}
        for addr in topo.addresses:
            next_hop_self.setdefault(family_of(str(addr)), (str(addr),))
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
