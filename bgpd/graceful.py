"""Graceful restart (RFC 4724), the route-state part of both roles. Time is given, never read.

Helper (`GracefulHelper`): when a peer that advertised graceful restart drops, its routes stay, marked
stale, for the restart time it advertised. When it comes back, whatever it re-announces becomes fresh
again; its End-of-RIB for a family removes what is still stale there. If it does not come back in
time, or comes back without graceful restart or without the forwarding-state bit for a family, the
stale routes go. If it drops again before its End-of-RIB, the routes still stale stay stale (with the
new restart time) instead of being deleted: a second restart must not blackhole a node whose
forwarding survived (Calico's known pain with BIRD).

Restarting speaker (`RestartDeferral`): after bgpd starts with routes preserved in the kernel, it
defers the decision process (and so the feed snapshot's end and its own advertisements) until every
expected peer has sent End-of-RIB for every family it negotiated, or a deadline passes. A peer
that is not Established within `established_wait`, that does not do graceful restart, or that is
restarting itself is not waited for (RFC 4724 section 4.1). So the node is routable as soon as its
peers' End-of-RIBs are in, not after a fixed wait. The Adj-RIB-Outs start (initial table, then
End-of-RIB) only once the deferral is done; `AdjRibOut.start` refuses earlier.

NOTIFICATIONs (RFC 8538): when both sides set the N bit, a session that ends with any NOTIFICATION
but a Hard Reset (or on hold timer expiry) is a graceful restart too: `keeps_routes` decides. That
is how tortie-bgpd stops for a restart or an upgrade (Cease / Administrative Reset, the peers keep its
routes), while the stops that mean "gone for good" (Administrative Shutdown, Peer De-configured,
Maximum Number of Prefixes, section 5.1's table) go out as a Hard Reset (`hard_reset_for`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import field

from bgpd.rib.path import PeerInfo
from bgpd.rib.rib import Changes, Rib
from proto.bgp.constants import AfiSafi, CeaseSubcode, ErrorCode
from proto.bgp.model import GracefulRestartCap, Notification
from proto.bgp.notification import hard_reset, is_hard_reset
from proto.record import record

DEFAULT_STALE_TIME = 360.0  # after a peer returns, how long to wait for its End-of-RIB
DEFAULT_DEFERRAL_TIME = 120.0  # restarting speaker: longest wait for the peers' End-of-RIBs
# restarting speaker: how long a peer has to come up to be waited for. Waiting costs nothing in
# forwarding (felixd keeps the kernel, the peers keep our routes for their restart time), giving up
# too early does: the feed snapshot then lacks that peer's routes and felixd deletes them until it is
# back. 10 s was seen to be too short for a restart of the hosts tier's mesh on a loaded machine.
DEFAULT_ESTABLISHED_WAIT = 30.0


# RFC 8538 section 5.1: the Cease subcodes whose suggested behaviour is a Hard Reset. Administrative
# Reset is "provide user control": tortie uses it for its own graceful stop.
# BFD Down (RFC 9384) is added: the forwarding path failed, so the peer must not keep our routes either.
HARD_RESET_SUBCODES = frozenset({CeaseSubcode.MAX_PREFIXES_REACHED, CeaseSubcode.ADMINISTRATIVE_SHUTDOWN,
                                 CeaseSubcode.PEER_DECONFIGURED, CeaseSubcode.HARD_RESET,
                                 CeaseSubcode.BFD_DOWN})


def notification_negotiated(local: GracefulRestartCap | None, remote: GracefulRestartCap | None) -> bool:
    """RFC 8538 section 2: both OPENs carried graceful restart with the N bit."""
    return local is not None and remote is not None and local.notification and remote.notification


def hard_reset_for(notification: Notification, negotiated: bool) -> Notification:
    """What to send for `notification`: wrapped in a Hard Reset when the N bit is negotiated and it
    is a Cease that means the session is over for good."""
    if (negotiated and notification.code == ErrorCode.CEASE and notification.subcode in HARD_RESET_SUBCODES
            and notification.subcode != CeaseSubcode.HARD_RESET):
        return hard_reset(notification)
    return notification


def keeps_routes(remote: GracefulRestartCap | None, local_notification: bool,
                 sent: Notification | None, received: Notification | None) -> bool:
    """Whether the peer's routes stay, stale, after its session went down (helper side).

    RFC 4724: only when it advertised graceful restart and no NOTIFICATION was exchanged. RFC 8538:
    when both sides set the N bit, also after any NOTIFICATION (either way) except a Hard Reset."""
    if remote is None or not remote.families:
        return False
    if sent is None and received is None:
        return True
    if not (local_notification and remote.notification):
        return False
    # a peer whose BFD saw the path fail may send a plain Cease/BFD Down: the path is gone all the same
    return not (is_hard_reset(sent) or is_hard_reset(received) or _bfd_down(sent) or _bfd_down(received))


def _bfd_down(notification: Notification | None) -> bool:
    return (notification is not None and notification.code == ErrorCode.CEASE
            and notification.subcode == CeaseSubcode.BFD_DOWN)


def _merge(into: Changes, more: Changes) -> Changes:
    for family, changes in more.items():
        if changes:
            into.setdefault(family, []).extend(changes)
    return into


@record
class _StalePeer:
    families: set[AfiSafi]
    restart_deadline: float | None = None  # while the peer is down
    eor_deadline: float | None = None  # after it came back, waiting for End-of-RIB


class GracefulHelper:
    def __init__(self, rib: Rib, stale_time: float = DEFAULT_STALE_TIME) -> None:
        self.rib = rib
        self.stale_time = stale_time
        self.peers: dict[PeerInfo, _StalePeer] = {}

    def is_restarting(self, peer: PeerInfo) -> bool:
        return peer in self.peers

    def peer_down(self, peer: PeerInfo, now: float, capability: GracefulRestartCap | None) -> Changes:
        """The session dropped. `capability` is the graceful-restart capability the peer sent in the
        session that just ended (None: it does not do graceful restart, or the session ended by a
        NOTIFICATION that RFC 8538 says ends graceful restart)."""
        rib = self.rib
        if capability is None or not capability.families:
            self.peers.pop(peer, None)
            return rib.flush_peer(peer)
        kept = {(afi, safi) for afi, safi, _forwarding in capability.families} & set(rib.families)
        changes: Changes = {}
        _merge(changes, rib.flush_peer(peer, [f for f in rib.families if f not in kept]))
        # dropping again before End-of-RIB lands here too: what is still stale stays stale, and what
        # was re-announced since becomes stale with it
        state = self.peers.get(peer)
        if state is None:
            state = self.peers[peer] = _StalePeer(set(kept))
        else:
            state.families = set(kept)
        for family in sorted(kept):
            _merge(changes, {family: rib.mark_stale(peer, family)})
        state.restart_deadline = now + capability.restart_time
        state.eor_deadline = None
        return changes

    def peer_up(self, peer: PeerInfo, now: float, capability: GracefulRestartCap | None) -> Changes:
        """The peer is Established again with this capability (None: without graceful restart)."""
        state = self.peers.get(peer)
        if state is None:
            return {}
        changes: Changes = {}
        preserved = (
            {(afi, safi) for afi, safi, forwarding in capability.families if forwarding}
            if capability is not None
            else set()
        )
        for family in sorted(state.families - preserved):
            _merge(changes, {family: self.rib.sweep_stale(peer, family)})
        state.families &= preserved
        state.restart_deadline = None
        if not state.families:
            del self.peers[peer]
        else:
            state.eor_deadline = now + self.stale_time
        return changes

    def end_of_rib(self, peer: PeerInfo, family: AfiSafi, now: float) -> Changes:
        """End-of-RIB from the peer: what it did not re-announce in `family` is gone."""
        state = self.peers.get(peer)
        if state is None or family not in state.families or state.restart_deadline is not None:
            return {}
        state.families.discard(family)
        changes = _merge({}, {family: self.rib.sweep_stale(peer, family)})
        if not state.families:
            del self.peers[peer]
        return changes

    def next_deadline(self) -> float | None:
        times = [
            t for s in self.peers.values() for t in (s.restart_deadline, s.eor_deadline) if t is not None
        ]
        return min(times) if times else None

    def expire(self, now: float) -> Changes:
        """Withdraw the stale routes of peers whose restart time or End-of-RIB wait ran out."""
        changes: Changes = {}
        for peer, state in list(self.peers.items()):
            due = state.restart_deadline if state.restart_deadline is not None else state.eor_deadline
            if due is not None and now >= due:
                for family in sorted(state.families):
                    _merge(changes, {family: self.rib.sweep_stale(peer, family)})
                del self.peers[peer]
        return changes


@record
class RestartDeferral:
    """Restarting speaker: the Loc-RIB decides nothing until the expected peers are in."""

    rib: Rib
    now: float
    expected: Iterable[PeerInfo]
    deferral_time: float = DEFAULT_DEFERRAL_TIME
    established_wait: float = DEFAULT_ESTABLISHED_WAIT
    # peer -> families still without End-of-RIB (None: not Established yet)
    waiting: dict[PeerInfo, set[AfiSafi] | None] = field(init=False)
    done: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.waiting = dict.fromkeys(self.expected)
        self.deadline = self.now + self.deferral_time
        self.established_deadline = self.now + self.established_wait
        for loc in self.rib.loc.values():
            loc.defer()

    def peer_established(
        self, peer: PeerInfo, now: float, families: Iterable[AfiSafi], capability: GracefulRestartCap | None
    ) -> Changes:
        if self.done or peer not in self.waiting:
            return {}
        if capability is None or capability.restarting:
            del self.waiting[peer]  # RFC 4724 4.1: no End-of-RIB to wait for from this one
        else:
            self.waiting[peer] = set(families)
        return self.poll(now)

    def peer_removed(self, peer: PeerInfo, now: float) -> Changes:
        self.waiting.pop(peer, None)
        return self.poll(now)

    def end_of_rib(self, peer: PeerInfo, family: AfiSafi, now: float) -> Changes:
        families = self.waiting.get(peer)
        if families is not None:
            families.discard(family)
            if not families:
                del self.waiting[peer]
        return self.poll(now)

    def next_deadline(self) -> float | None:
        if self.done:
            return None
        if any(v is None for v in self.waiting.values()):
            return min(self.established_deadline, self.deadline)
        return self.deadline

    def ready(self, now: float) -> bool:
        if self.done or now >= self.deadline:
            return True
        if now >= self.established_deadline:
            return all(v is None for v in self.waiting.values())
        return not self.waiting

    def poll(self, now: float) -> Changes:
        """Run the deferred decision once the wait is over; returns the Loc-RIB changes then."""
        self.now = now
        if self.done:
            return {}
        if now >= self.established_deadline:
            for peer in [p for p, v in self.waiting.items() if v is None]:
                del self.waiting[peer]
        if not self.ready(now):
            return {}
        self.done = True
        changes: Changes = {}
        for family, loc in self.rib.loc.items():
            _merge(changes, {family: loc.resume()})
        return changes
