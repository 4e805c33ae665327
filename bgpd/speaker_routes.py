"""Route distribution in the speaker: UPDATEs into the RIB, Loc-RIB changes out to the update
groups and the route feed, and the gates on both. Part of `bgpd.speaker.Speaker` (a mixin: the state
is the speaker's, set up by its __init__).

A received UPDATE goes into the RIB; what changes in the Loc-RIB goes to every update group once
(`_apply`), which exports and encodes it at the end of its window (`_flush`: each member's session
gets its slices of one encoded stream), and to the feed's readers. An Established peer joins the
group of its key (`bgpd.group_key`) and leaves it when its session goes. Two gates hold routes back
at start: a restarting speaker advertises nothing until its peers' End-of-RIB (RFC 4724 4.1, the
restart deferral), and the feed's first snapshot ends only when every peer's table is in (the feed
hold).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from bgpd.fsm import State
from bgpd.group_key import GroupKey
from bgpd.peer import Peer
from bgpd.rib.rib import Changes
from bgpd.session import Session
from bgpd.session_events import RouteRefreshReceived, UpdateReceived
from bgpd.speaker_settings import FAMILY_NAMES
from bgpd.update_group import UpdateGroup
from proto.bgp import AfiSafi, RefreshSubtype

if TYPE_CHECKING:
    from bgpd.export_policy import ExportPolicy
    from bgpd.feed_hold import FeedHold
    from bgpd.feed_out import RibFeed
    from bgpd.graceful import GracefulHelper, RestartDeferral
    from bgpd.rib.path import PeerInfo
    from bgpd.rib.rib import Rib
    from bgpd.schedule import Schedule

log = logging.getLogger("tortie.bgp")

MAX_PREFIX_HOLD_DOWN = 30.0
# the speaker's own deadlines in its schedule, beside its sessions, groups and BFD sessions
GR_TIMER, DEFERRAL_TIMER, FEED_HOLD_TIMER = "graceful-restart", "restart-deferral", "feed-hold"


def merge_changes(a: Changes, b: Changes) -> Changes:
    for family, chs in b.items():
        if chs:
            a.setdefault(family, []).extend(chs)
    return a


class RouteDistribution:
    if TYPE_CHECKING:  # what it works on, of bgpd.speaker.Speaker
        rib: Rib
        export: ExportPolicy
        feed: RibFeed
        feed_hold: FeedHold
        gr: GracefulHelper
        deferral: RestartDeferral | None
        restarting: bool
        window: float
        peers: dict[str, Peer]
        groups: dict[GroupKey, UpdateGroup]
        clock: Callable[[], float] | None
        observe_update: Callable[[float], None] | None
        _by_info: dict[PeerInfo, Peer]
        _output: dict[Session, None]
        _schedule: Schedule

    # ------------------------------------------------------------ routes in

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
            changes = merge_changes(changes, self.gr.end_of_rib(peer.info, family, now))
            self._schedule.update(GR_TIMER, self.gr.next_deadline())
            if self.deferral is not None:
                changes = merge_changes(changes, self.deferral.end_of_rib(peer.info, family, now))
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

    # ------------------------------------------------------------ routes out: update groups and the feed

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

    # ------------------------------------------------------------ the gates: restart deferral, feed hold

    def _check_deferral(self, now: float) -> None:
        deferral = self.deferral
        if deferral is None:
            return
        if deferral.done:
            self._deferral_done(now)
        else:
            self._schedule.update(DEFERRAL_TIMER, deferral.next_deadline())

    def _deferral_done(self, now: float) -> None:
        """The restarting speaker's wait is over: every Established peer joins its group (initial
        table, End-of-RIB) and the feed serves its snapshot."""
        log.info("graceful restart: peers' End-of-RIB received (or deadline passed); advertising")
        self.deferral = None
        self.restarting = False
        self._schedule.remove(DEFERRAL_TIMER)
        for peer in self.peers.values():
            peer.neighbor.restart_done()  # OPENs from now on carry no Restart State bit
            if peer.established is not None and peer.group is None:
                self._join_group(peer, now)
        self.feed.resend_all()

    def _check_feed_hold(self, now: float) -> None:
        hold = self.feed_hold
        if hold.done:
            if self.feed.holding or FEED_HOLD_TIMER in self._schedule:
                log.info("route feed whole %.1f s after start: every peer's End-of-RIB is in (or no longer "
                         "awaited)", now - hold.started)
            self.feed.holding = False
            self._schedule.remove(FEED_HOLD_TIMER)
        else:
            self.feed.holding = True
            self._schedule.update(FEED_HOLD_TIMER, hold.next_deadline())
