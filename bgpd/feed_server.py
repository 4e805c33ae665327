"""The route feed's server: the asyncio adapter around a `bgpd.feed_out` source.

Each reader that connects is registered with the source (so every change from then on is in its
backlog), waits until the source may be served (`ready`: a restarting bgpd must not hand out a snapshot
before its RIB is whole, since the snapshot's end tells felixd to drop every route it did not
contain), gets the snapshot in slices, then its backlog whenever `wake()` says there is one, and a
heartbeat when idle. Frames are produced by the source and written in bounded slices with `drain()`
between them, so a whole-table change never sits in memory as one buffer.

`FeedServer(path, snapshot)` with a callable of `FeedRoute`s is a scripted bgpd (a `RouteFeed`
source) for felixd's tests and benchmarks; `publish()` queues changes to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping

from bgpd.feed_out import FeedReader, FeedSource, RouteFeed
from proto.feed import FeedRoute

log = logging.getLogger("tortie.bgp.feed")


class FeedServer:
    def __init__(self, path: str, snapshot: Callable[[], Iterable[FeedRoute]] | None = None, *,
                 source: FeedSource | None = None, heartbeat: float = 10.0, epoch: int | None = None,
                 mode: int = 0o660, on_clients: Callable[[int], None] | None = None,
                 ready: asyncio.Event | None = None) -> None:
        if source is None:
            source = RouteFeed(snapshot or (lambda: ()))
        self.path = path
        self.source = source
        self.heartbeat = heartbeat
        self.epoch = epoch if epoch is not None else time.time_ns()
        self.mode = mode
        self.on_clients = on_clients
        self.ready = ready
        self._wakes: dict[FeedReader, asyncio.Event] = {}
        self._streaming: dict[FeedReader, asyncio.StreamWriter] = {}  # readers past their snapshot
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.AbstractServer | None = None

    @property
    def readers(self) -> set[FeedReader]:
        return self.source.readers

    @property
    def lag(self) -> int:
        """Changes waiting for the slowest reader."""
        return max((len(r.pending) for r in self.source.readers), default=0)

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        self._server = await asyncio.start_unix_server(self._accept, self.path)
        os.chmod(self.path, self.mode)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def replace_source(self, source: FeedSource) -> None:
        """Serve another source (a new speaker): current readers are disconnected and start again
        from the new source's snapshot when they reconnect."""
        self.source = source
        for task in list(self._tasks):
            task.cancel()

    def wake(self) -> None:
        """Write what readers past their snapshot have pending now, as far as their sockets take it;
        tell their tasks about the rest (after the source got changes, or let go of a held snapshot end).

        Written here, not by the reader's task: waking a task takes a few turns of the event loop,
        and in each turn bgpd hands the speaker another slice of input (128 KiB of UPDATEs, tens of
        thousands of prefixes), so a table load reached felixd only once bgpd held most of it. Now
        the feed follows the ingest UPDATE by UPDATE, and felixd programs while bgpd still reads."""
        source = self.source
        for reader, event in self._wakes.items():
            if source.has_output(reader):
                writer = self._streaming.get(reader)
                if writer is not None and reader in source.readers:  # not one of a replaced source
                    self._write_now(reader, writer)
                if source.has_output(reader):
                    event.set()

    def _write_now(self, reader: FeedReader, writer: asyncio.StreamWriter) -> None:
        """Frames while the socket and the transport's buffer (up to its high-water mark) take them."""
        transport = writer.transport
        high = transport.get_write_buffer_limits()[1]
        while self.source.has_output(reader) and not transport.is_closing() and transport.get_write_buffer_size() < high:
            writer.write(self.source.drain(reader))

    def publish(self, changes: Mapping[str, FeedRoute | None]) -> None:
        """Queue changes to a scripted `RouteFeed` source (tests, benchmarks)."""
        if not isinstance(self.source, RouteFeed):
            raise TypeError("publish() is for a FeedServer serving FeedRoutes")
        if changes:
            self.source.publish(changes)
            self.wake()

    async def _accept(self, _r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        source = self.source
        # registered before the snapshot is taken: a change from now on is in its backlog
        reader = source.add_reader()
        wake = self._wakes[reader] = asyncio.Event()
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._clients_changed()
        try:
            if self.ready is not None:
                await self.ready.wait()
            for chunk in source.snapshot(reader, self.epoch):
                writer.write(chunk)
                await writer.drain()
            self._streaming[reader] = writer
            while True:
                if not source.has_output(reader):
                    try:
                        # not asyncio.wait_for: on Python 3.11 it swallows a cancel that arrives as the
                        # event is set (a SIGTERM stop does both), and close() then waited forever
                        async with asyncio.timeout(self.heartbeat):
                            await wake.wait()
                    except TimeoutError:
                        writer.write(source.heartbeat(reader))
                        await writer.drain()
                        continue
                wake.clear()
                while source.has_output(reader):
                    writer.write(source.drain(reader))
                    await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            source.remove_reader(reader)
            self._wakes.pop(reader, None)
            self._streaming.pop(reader, None)
            if task is not None:
                self._tasks.discard(task)
            self._clients_changed()
            writer.close()

    def _clients_changed(self) -> None:
        if self.on_clients is not None:
            self.on_clients(len(self._wakes))
