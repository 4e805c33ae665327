"""The route feed's client side in felixd: the learned routes, kept across bgpd restarts.

When the feed drops, every route is kept (still programmed) and marked stale. A fresh snapshot's
end marker removes what the new snapshot did not refresh; if no snapshot completes within the
graceful-restart time, the stale routes are removed then. So a bgpd restart never removes a kernel
route that is still valid, and a bgpd that never comes back does not leave routes forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from proto.feed import (
    EndOfSnapshot,
    FeedDecoder,
    FeedError,
    FeedRoute,
    Heartbeat,
    RouteUpdate,
    SequenceChecker,
    SnapshotBegin,
    Withdraw,
)

log = logging.getLogger("tortie.felix.feed")

# (changed prefixes, whether the change ends a snapshot or a stale expiry: a good moment for a full resync)
ChangeCallback = Callable[[set[str], bool], None]


class RouteTable:
    """Sans-I/O state of the feed: routes, staleness, and what changed. Time comes in as `now`."""

    def __init__(self, stale_time: float = 120.0) -> None:
        self.routes: dict[str, FeedRoute] = {}
        self.stale: set[str] = set()
        self.stale_time = stale_time
        self.stale_deadline: float | None = None
        self.in_snapshot = False
        self.synced = False  # a complete snapshot has been received at least once

    def disconnected(self, now: float) -> set[str]:
        self.stale = set(self.routes)
        self.in_snapshot = False
        if self.stale and self.stale_deadline is None:
            self.stale_deadline = now + self.stale_time
        return set()

    def handle(self, frame: object, now: float) -> tuple[set[str], bool]:
        if isinstance(frame, RouteUpdate):
            prefix = frame.route.prefix
            old = self.routes.get(prefix)
            self.routes[prefix] = frame.route
            was_stale = prefix in self.stale
            self.stale.discard(prefix)
            changed = old != frame.route or was_stale
            return ({prefix} if changed else set()), False
        if isinstance(frame, Withdraw):
            self.stale.discard(frame.prefix)
            if self.routes.pop(frame.prefix, None) is not None:
                return {frame.prefix}, False
            return set(), False
        if isinstance(frame, SnapshotBegin):
            # Everything held is now waiting to be confirmed by this snapshot.
            self.stale = set(self.routes)
            self.in_snapshot = True
            return set(), False
        if isinstance(frame, EndOfSnapshot):
            gone = self.stale
            for prefix in gone:
                self.routes.pop(prefix, None)
            self.stale = set()
            self.stale_deadline = None
            self.in_snapshot = False
            self.synced = True
            return gone, True
        if isinstance(frame, Heartbeat):
            return set(), False
        raise FeedError(f"unexpected frame {frame!r}")

    def expire(self, now: float) -> set[str]:
        """Drop stale routes whose graceful-restart time ran out."""
        if self.stale_deadline is None or now < self.stale_deadline:
            return set()
        gone = self.stale
        for prefix in gone:
            self.routes.pop(prefix, None)
        self.stale = set()
        self.stale_deadline = None
        return gone

    def is_stale(self, prefix: str) -> bool:
        return prefix in self.stale


class FeedClient:
    """Connects to bgpd's feed socket, reconnecting with back-off, and keeps a RouteTable."""

    def __init__(self, path: str, on_change: ChangeCallback, *, stale_time: float = 120.0,
                 retry_min: float = 0.1, retry_max: float = 5.0,
                 on_connected: Callable[[bool], None] | None = None) -> None:
        self.path = path
        self.table = RouteTable(stale_time)
        self.on_change = on_change
        self.on_connected = on_connected
        self.retry_min = retry_min
        self.retry_max = retry_max
        self.connected = False
        self._task: asyncio.Task[None] | None = None
        self._expiry: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _set_connected(self, value: bool) -> None:
        self.connected = value
        if self.on_connected is not None:
            self.on_connected(value)

    def _arm_expiry(self) -> None:
        loop = asyncio.get_running_loop()
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if self.table.stale_deadline is not None:
            self._expiry = loop.call_at(self.table.stale_deadline, self._expire)

    def _expire(self) -> None:
        gone = self.table.expire(asyncio.get_running_loop().time())
        if gone:
            log.warning("route feed: graceful-restart time ran out, removing %d stale routes", len(gone))
            self.on_change(gone, True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        delay = self.retry_min
        while True:
            try:
                reader, writer = await asyncio.open_unix_connection(self.path)
            except OSError:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max)
                continue
            delay = self.retry_min
            self._set_connected(True)
            log.info("route feed connected: %s", self.path)
            try:
                await self._read(reader)
            except FeedError as exc:
                log.error("route feed: %s; reconnecting", exc)
            except ConnectionError:
                pass
            finally:
                writer.close()
                self._set_connected(False)
                self.table.disconnected(loop.time())
                if self.table.stale:
                    log.warning("route feed lost: keeping %d routes as stale for up to %.0f s",
                                len(self.table.stale), self.table.stale_time)
                self._arm_expiry()
                self.on_change(set(), False)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        loop = asyncio.get_running_loop()
        decoder, checker = FeedDecoder(), SequenceChecker()
        while data := await reader.read(1 << 16):
            decoder.receive_data(data)
            changed: set[str] = set()
            resync = False
            for frame in decoder.frames():
                checker.check(frame)
                c, r = self.table.handle(frame, loop.time())
                changed |= c
                resync = resync or r
            if resync:
                self._arm_expiry()
            # Inside a snapshot, hold changes back until its end: one big apply instead of many small.
            if (changed or resync) and (not self.table.in_snapshot or resync):
                self.on_change(changed, resync)
