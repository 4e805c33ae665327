"""The route feed's sending side, sans-I/O: what each reader still has to get, and its frames.

Every reader (felixd, or anything else on the feed socket) has a `FeedReader`: its sequence numbers
and the changes it has not been sent yet, coalesced per prefix (a slow reader gets the latest state of
each changed prefix, so its backlog is bounded by the number of prefixes, not by the change rate).
A source turns that into frame bytes, in bounded slices, for the asyncio server
(`bgpd.feed_server`) to write:

- `RibFeed` is bgpd's: the Loc-RIBs' best paths. The prefix is the `proto.prefix` value the RIB keys
  with, which is the feed's prefix field as it is; the rest of a route frame is computed once per
  best path and shared by every prefix it carries. This is the one place where the speaker's changes
  become feed frames.
- `RouteFeed` serves `proto.feed.FeedRoute` values by prefix text: a scripted bgpd for tests and
  benchmarks of felixd.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from itertools import islice
from typing import Any, Protocol

from bgpd.rib.loc_rib import Change, LocRib
from bgpd.rib.path import Path
from proto.bgp.constants import AfiSafi
from proto.feed import (
    EndOfSnapshot,
    FeedRoute,
    FrameType,
    Heartbeat,
    RouteUpdate,
    SnapshotBegin,
    Withdraw,
    encode_frame,
    route_tail,
    withdraw_frame_wire,
)

SLICE = 4096  # frames per slice handed to the writer

_ROUTE_HEAD = struct.Struct(">IBQB")  # length, type, seq, flags
_ROUTE = int(FrameType.ROUTE)


class FeedReader:
    """One reader's state: the next sequence number and what it has yet to be sent."""

    __slots__ = ("end_due", "pending", "seq", "started")

    def __init__(self) -> None:
        self.seq = 1
        self.pending: dict[Hashable, Any] = {}
        self.started = False  # its snapshot has begun
        self.end_due: int | None = None  # its snapshot's end is held back (the route count to report)

    def take(self, n: int) -> list[tuple[Hashable, Any]]:
        """Up to `n` pending changes, oldest first, removed from the backlog."""
        pending = self.pending
        if len(pending) <= n:
            out = list(pending.items())
            pending.clear()
            return out
        out = list(islice(pending.items(), n))
        for key, _ in out:
            del pending[key]
        return out


class FeedSource(Protocol):
    readers: set[FeedReader]

    def add_reader(self) -> FeedReader: ...

    def remove_reader(self, reader: FeedReader) -> None: ...

    def snapshot(self, reader: FeedReader, epoch: int) -> Iterator[bytes]: ...

    def drain(self, reader: FeedReader, limit: int = SLICE) -> bytes: ...

    def has_output(self, reader: FeedReader) -> bool: ...

    def heartbeat(self, reader: FeedReader) -> bytes: ...


class _Source:
    """What both sources share: readers, begin/end/heartbeat frames, per-prefix coalescing."""

    def __init__(self) -> None:
        self.readers: set[FeedReader] = set()
        # While set, a snapshot's End-of-Snapshot is held back: the routes go out (felixd programs them
        # at once) but what the reader kept from before stays, stale, until the end comes. bgpd holds
        # it until its peers' tables are in (bgpd.feed_hold), so a restart never takes out a route that
        # is only late.
        self.holding = False

    def add_reader(self) -> FeedReader:
        reader = FeedReader()
        self.readers.add(reader)
        return reader

    def remove_reader(self, reader: FeedReader) -> None:
        self.readers.discard(reader)

    @property
    def lag(self) -> int:
        """Changes waiting for the slowest reader."""
        return max((len(r.pending) for r in self.readers), default=0)

    @property
    def dirty(self) -> bool:
        return any(r.pending for r in self.readers)

    def heartbeat(self, reader: FeedReader) -> bytes:
        data = encode_frame(Heartbeat(reader.seq))
        reader.seq += 1
        return data

    def _frame(self, reader: FeedReader, key: Hashable, value: Any) -> bytes:
        raise NotImplementedError

    def _frames(self, reader: FeedReader, items: Iterable[tuple[Hashable, Any]]) -> bytes:
        frame = self._frame
        return b"".join([frame(reader, k, v) for k, v in items])

    def _snapshot_items(self) -> Iterable[tuple[Hashable, Any]]:
        raise NotImplementedError

    def drain(self, reader: FeedReader, limit: int = SLICE) -> bytes:
        """Frames for up to `limit` pending changes, then the snapshot's end once it is no longer held
        and nothing is pending."""
        data = self._frames(reader, reader.take(limit))
        if reader.end_due is not None and not self.holding and not reader.pending:
            data += encode_frame(EndOfSnapshot(reader.seq, reader.end_due))
            reader.seq += 1
            reader.end_due = None
        return data

    def has_output(self, reader: FeedReader) -> bool:
        return bool(reader.pending) or (reader.end_due is not None and not self.holding)

    def snapshot(self, reader: FeedReader, epoch: int) -> Iterator[bytes]:
        """Begin, the routes in slices, End (or, while `holding`, End later from `drain`). The reader
        must be registered before this is called: what changes meanwhile is in its backlog, so
        snapshot + backlog miss nothing."""
        reader.started = True
        yield encode_frame(SnapshotBegin(reader.seq, epoch))
        reader.seq += 1
        count = 0
        it = iter(self._snapshot_items())
        while chunk := [kv for kv in islice(it, SLICE) if kv[1] is not None]:
            count += len(chunk)
            yield self._frames(reader, chunk)
        if self.holding:
            reader.end_due = count
            return
        yield encode_frame(EndOfSnapshot(reader.seq, count))
        reader.seq += 1


class RibFeed(_Source):
    """bgpd's feed: best paths from the Loc-RIBs, keyed by `proto.prefix` values."""

    def __init__(self, loc_ribs: Mapping[AfiSafi, LocRib]) -> None:
        super().__init__()
        self.loc_ribs = loc_ribs
        self._tails: dict[Path, tuple[int, bytes, int]] = {}
        # prefixes never programmed into the kernel (service ranges, Calico's /rejectcidrs): felixd
        # gets a withdrawal instead of such a route
        self.excluded: Callable[[bytes], bool] | None = None

    @staticmethod
    def routable(best: Path | None) -> bool:
        """Only learned routes go to felixd (our own blocks are its blackholes, from the config)."""
        return best is not None and not best.source.local and bool(best.next_hop)

    def changes(self, changes: list[Change]) -> None:
        """Loc-RIB changes, queued for every reader (there are none: nothing to do)."""
        if not self.readers:
            return
        excluded = self.excluded
        if excluded is not None:
            changes = [(p, None) if b is not None and excluded(p) else (p, b) for p, b in changes]
        for reader in self.readers:
            reader.pending.update(changes)

    def resend_all(self) -> None:
        """Every reader that already had a snapshot gets every best route again (a restarting
        speaker's table is whole now). Readers still waiting get theirs in the snapshot."""
        for reader in self.readers:
            if reader.started:
                reader.pending.update(self._snapshot_items())

    def _snapshot_items(self) -> Iterator[tuple[bytes, Path | None]]:
        excluded = self.excluded
        for loc in self.loc_ribs.values():
            best = loc.best
            # the keys now; each route as it is when its slice is written (newer is fine: the
            # reader's backlog has every change since it registered)
            for key in list(best):
                path = best.get(key)
                if path is not None and not path.source.local and path.next_hop and (
                        excluded is None or not excluded(key)):
                    yield key, path

    def _tail(self, best: Path, prefix: bytes) -> tuple[int, bytes, int]:
        """Flags, the octets after the prefix, and the frame length: once per best path (a path
        belongs to one family, so its prefixes all have the same size)."""
        if len(self._tails) > 100_000:
            self._tails.clear()
        flags, rest = route_tail(best.next_hop[0], best.source.node if best.source.ibgp else None,
                                 best.stale, best.local_pref or 100, min(best.as_path_len, 0xFFFF))
        tail = self._tails[best] = (flags, rest, 1 + 8 + 1 + len(prefix) + len(rest))
        return tail

    def _frame(self, reader: FeedReader, key: Hashable, best: Any) -> bytes:
        return self._frames(reader, [(key, best)])

    def _frames(self, reader: FeedReader, items: Iterable[tuple[Hashable, Any]]) -> bytes:
        """Route and withdraw frames for `items` in one buffer: the hot loop of a table load."""
        seq = reader.seq
        parts: list[bytes] = []
        append = parts.append
        tails = self._tails
        pack = _ROUTE_HEAD.pack
        for prefix, best in items:
            if best is None or best.source.local or not best.next_hop:
                append(withdraw_frame_wire(seq, prefix))  # type: ignore[arg-type]
            else:
                tail = tails.get(best)
                if tail is None:
                    tail = self._tail(best, prefix)  # type: ignore[arg-type]
                append(pack(tail[2], _ROUTE, seq, tail[0]))
                append(prefix)  # type: ignore[arg-type]
                append(tail[1])
            seq += 1
        reader.seq = seq
        return b"".join(parts)


class RouteFeed(_Source):
    """A scripted feed of `FeedRoute` values keyed by prefix text (tests and benchmarks of felixd)."""

    def __init__(self, snapshot: Callable[[], Iterable[FeedRoute]]) -> None:
        super().__init__()
        self.snapshot_routes = snapshot

    def publish(self, changes: Mapping[str, FeedRoute | None]) -> None:
        for reader in self.readers:
            reader.pending.update(changes)

    def _snapshot_items(self) -> Iterator[tuple[str, FeedRoute]]:
        return ((r.prefix, r) for r in self.snapshot_routes())

    def _frame(self, reader: FeedReader, key: Hashable, route: Any) -> bytes:
        seq = reader.seq
        reader.seq = seq + 1
        if route is None:
            return encode_frame(Withdraw(seq, key))  # type: ignore[arg-type]
        return encode_frame(RouteUpdate(seq, route))


__all__ = ["SLICE", "FeedReader", "FeedSource", "RibFeed", "RouteFeed"]
