"""The learned routes as the route feed delivers them, kept across bgpd restarts (sans-I/O).

`routes` maps each `Prefix` to its next hop `Address` (the decoder shares one next-hop object among
all the prefixes of a path): that is all felixd plans from. When the feed drops, every route is kept
(still programmed) and marked stale; a fresh snapshot's end marker removes what the new snapshot did
not refresh; if no snapshot completes within the graceful-restart time, the stale routes are
removed then. So a bgpd restart never removes a kernel route that is still valid, and a bgpd that
never comes back does not leave routes forever. Time comes in as `now`.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping

from proto.feed import EndOfSnapshot, FeedError, Heartbeat, SnapshotBegin
from proto.feed_wire import WireFrame, WireRoute, WireWithdraw
from proto.prefix import Address, Prefix


class FeedTable:
    def __init__(self, stale_time: float = 120.0) -> None:
        self.routes: dict[Prefix, Address] = {}  # replaced by a smaller copy after a large drop (below)
        self._high = 0  # the most routes held since the dict was last made
        self.stale: set[Prefix] = set()
        self.stale_time = stale_time
        self.stale_deadline: float | None = None
        self.in_snapshot = False
        self.synced = False  # a complete snapshot has been received at least once

    def disconnected(self, now: float) -> None:
        self.stale = set(self.routes)
        self.in_snapshot = False
        if self.stale and self.stale_deadline is None:
            self.stale_deadline = now + self.stale_time

    def receive(self, frames: Iterable[WireFrame], changed: MutableMapping[Prefix, Address | None]) -> bool:
        """Apply frames. Every prefix whose next hop (or staleness) changed is added to `changed` (an
        ordered dict) with the next hop it had before, unless it is there already: `changed` then
        maps each prefix to what felixd last planned for it. True when a snapshot ended: the moment
        for a full resync."""
        routes, stale = self.routes, self.stale
        ended = False
        for frame in frames:
            kind = type(frame)
            if kind is WireRoute:
                prefix, nh = frame[1], frame[2]  # type: ignore[misc]
                old = routes.get(prefix)
                if old != nh:
                    routes[prefix] = nh
                    if prefix not in changed:
                        changed[prefix] = old
                if stale and prefix in stale:
                    stale.discard(prefix)
                    if prefix not in changed:
                        changed[prefix] = old
            elif kind is WireWithdraw:
                prefix = frame[1]  # type: ignore[misc]
                stale.discard(prefix)
                old = routes.pop(prefix, None)
                if old is not None and prefix not in changed:
                    changed[prefix] = old
            elif kind is SnapshotBegin:
                # everything held now waits to be confirmed by this snapshot
                self.stale = stale = set(routes)
                self.in_snapshot = True
            elif kind is EndOfSnapshot:
                for prefix in stale:
                    old = routes.pop(prefix, None)
                    if prefix not in changed:
                        changed[prefix] = old
                self.stale = stale = set()
                self.stale_deadline = None
                self.in_snapshot = False
                self.synced = True
                ended = True
            elif kind is not Heartbeat:
                raise FeedError(f"unexpected frame {frame!r}")
        self._compact()
        return ended

    def _compact(self) -> None:
        """A dict never shrinks: after most of a big table went (a peer lost), copy what is left into a
        new one. Otherwise the next full table would fill the old one's deleted slots and make it
        resize to the same size, briefly holding two tables of 100k routes."""
        n = len(self.routes)
        if n > self._high:
            self._high = n
        elif self._high > 4096 and n < self._high // 8:
            self.routes = dict(self.routes)
            self._high = n

    def expire(self, now: float) -> set[Prefix]:
        """Drop stale routes whose graceful-restart time ran out."""
        if self.stale_deadline is None or now < self.stale_deadline:
            return set()
        gone = self.stale
        for prefix in gone:
            self.routes.pop(prefix, None)
        self.stale = set()
        self.stale_deadline = None
        self._compact()
        return gone

    def is_stale(self, prefix: Prefix) -> bool:
        return prefix in self.stale
