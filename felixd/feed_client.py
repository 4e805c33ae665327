"""The route feed's client side in felixd: connects to bgpd's feed socket and keeps a FeedTable.

Frames are decoded in the prefix form (`proto.feed_wire`) as they arrive, one socket read at a
time, and the changed prefixes are handed to the daemon after each read: a big batch of deltas
reaches the kernel in pieces while bgpd is still sending it. The daemon pauses reading while it is
behind (`resume`). Inside a snapshot changes are held back until its end (one full resync instead
of many small writes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from felixd.feed_table import FeedTable
from proto.feed import FeedError
from proto.feed_wire import SequenceChecker, WireDecoder
from proto.prefix import Address, Prefix

log = logging.getLogger("tortie.felix.feed")

READ_SIZE = 1 << 16

# (changed prefixes, whether the change ends a snapshot or a stale expiry: a good moment for a full resync)
ChangeCallback = Callable[[dict[Prefix, Address | None], bool], None]


class FeedClient:
    """Connects to bgpd's feed socket, reconnecting with back-off, and keeps a FeedTable."""

    def __init__(self, path: str, on_change: ChangeCallback, *, stale_time: float = 120.0,
                 retry_min: float = 0.1, retry_max: float = 5.0,
                 on_connected: Callable[[bool], None] | None = None) -> None:
        self.path = path
        self.table = FeedTable(stale_time)
        self.on_change = on_change
        self.on_connected = on_connected
        self.retry_min = retry_min
        self.retry_max = retry_max
        self.connected = False
        self.frames = 0  # frames received since start (for tests and status)
        # Cleared by the daemon while it has more changes waiting than it writes in one go: the socket
        # is then not read, and bgpd coalesces what it has not sent per prefix (felixd's memory stays
        # bounded however fast bgpd sends).
        self.resume = asyncio.Event()
        self.resume.set()
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
        if not self.resume.is_set():  # the table must not change now (a full sync is comparing it)
            self._expiry = asyncio.get_running_loop().call_later(0.1, self._expire)
            return
        gone = self.table.expire(asyncio.get_running_loop().time())
        if gone:
            log.warning("route feed: graceful-restart time ran out, removing %d stale routes", len(gone))
            self.on_change(dict.fromkeys(gone), True)  # a full resync follows: old next hops not needed

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        delay = self.retry_min
        while True:
            try:
                reader, writer = await asyncio.open_unix_connection(self.path, limit=READ_SIZE)
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
                self.on_change({}, False)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        decoder, checker, table = WireDecoder(), SequenceChecker(), self.table
        changed: dict[Prefix, Address | None] = {}
        resume = self.resume
        while True:
            if not resume.is_set():
                await resume.wait()
            data = await reader.read(READ_SIZE)
            if not data:
                break
            if not resume.is_set():
                await resume.wait()  # paused while this read was under way: the table must not change yet
            decoder.receive_data(data)
            frames = decoder.frames()
            if not frames:
                continue
            checker.check_run(frames)
            self.frames += len(frames)
            ended = table.receive(frames, changed)
            if ended:
                self._arm_expiry()
            elif table.in_snapshot:
                changed.clear()  # the snapshot's end asks for a full sync anyway: keep no per-route record
            # Inside a snapshot, hold changes back until its end: one big apply instead of many small.
            if (changed or ended) and (not table.in_snapshot or ended):
                self.on_change(changed, ended)
                changed = {}
