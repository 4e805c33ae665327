"""When bgpd's route feed may end its first snapshot: once every peer's table is in.

felixd keeps the routes it had when bgpd went away (restart, crash, upgrade) and drops what the next
snapshot's End-of-Snapshot did not confirm. If bgpd ended that snapshot as soon as it had one table,
every route of a peer whose table is merely late would leave felixd's kernel and come back a moment
later: pods on this host would lose those peers. It happens whenever several hosts restart at once:
RFC 4724 4.1 has a restarting speaker not wait for End-of-RIB from peers that are restarting too (they
would wait for each other), so its Loc-RIB is decided before their tables arrive.

`FeedHold` is separate from that route selection deferral (`bgpd.graceful.RestartDeferral`): routes
are decided and streamed to felixd as they come (felixd programs them at once), only the snapshot's
end waits, until every peer that is Established and does graceful restart has sent End-of-RIB for
every family it negotiated, restarting peers included. Peers that are not Established within
`established_wait`, go down, or do not do graceful restart (no End-of-RIB to count on) are not waited
for; nothing is held past `hold_time`. So no deadlock: holding the feed holds back no advertisement.
It runs at every start, restarting or not: felixd cannot tell a clean restart from a crash.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import field

from bgpd import graceful
from bgpd.rib.path import PeerInfo
from proto.bgp.constants import AfiSafi
from proto.bgp.model import GracefulRestartCap
from proto.record import record

DEFAULT_HOLD_TIME = 120.0  # at most, as felixd's own stale time (its graceful-restart time)
# a peer not up by then is not waited for: the same wait as the restarting speaker's deferral (giving up
# early costs felixd that peer's routes until it is back; 10 s was too short on a loaded machine)
DEFAULT_ESTABLISHED_WAIT = graceful.DEFAULT_ESTABLISHED_WAIT


@record
class FeedHold:
    now: float
    expected: Iterable[PeerInfo]
    hold_time: float = DEFAULT_HOLD_TIME
    established_wait: float = DEFAULT_ESTABLISHED_WAIT
    # peer -> families still without End-of-RIB (None: not Established yet)
    waiting: dict[PeerInfo, set[AfiSafi] | None] = field(init=False)
    done: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.started = self.now
        self.waiting = dict.fromkeys(self.expected)
        self.deadline = self.now + self.hold_time
        self.established_deadline = self.now + self.established_wait

    def peer_established(self, peer: PeerInfo, families: Iterable[AfiSafi], capability: GracefulRestartCap | None,
                         now: float) -> None:
        if self.done or peer not in self.waiting:
            return
        if capability is None:
            del self.waiting[peer]
        else:
            self.waiting[peer] = set(families)
        self.poll(now)

    def end_of_rib(self, peer: PeerInfo, family: AfiSafi, now: float) -> None:
        families = self.waiting.get(peer)
        if families is not None:
            families.discard(family)
            if not families:
                del self.waiting[peer]
        self.poll(now)

    def peer_gone(self, peer: PeerInfo, now: float) -> None:
        """Removed, or down before its End-of-RIB: not waited for any more."""
        self.waiting.pop(peer, None)
        self.poll(now)

    def next_deadline(self) -> float | None:
        if self.done:
            return None
        if any(v is None for v in self.waiting.values()):
            return min(self.established_deadline, self.deadline)
        return self.deadline

    def poll(self, now: float) -> bool:
        """True once the hold is over (it stays over)."""
        if self.done:
            return True
        if now >= self.established_deadline:
            for peer in [p for p, v in self.waiting.items() if v is None]:
                del self.waiting[peer]
        if not self.waiting or now >= self.deadline:
            self.done = True
        return self.done
