"""The route feed's server side: best routes from bgpd to felixd (and any other reader).

Each reader gets a full snapshot when it connects, then deltas. Deltas are coalesced per prefix while
a reader is busy: a slow reader receives the latest state of each changed prefix rather than every
intermediate step, so memory per reader is bounded by the number of prefixes, not by the change rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable

from proto.feed import FeedRoute, Heartbeat, RouteUpdate, Withdraw, encode_frame, encode_snapshot

log = logging.getLogger("tortie.bgp.feed")

SnapshotSource = Callable[[], Iterable[FeedRoute]]


class _Reader:
    def __init__(self, writer: asyncio.StreamWriter, peer: str) -> None:
        self.writer = writer
        self.peer = peer
        self.pending: dict[str, FeedRoute | None] = {}
        self.wake = asyncio.Event()
        self.seq = 1
        self.task: asyncio.Task[None] | None = None


class FeedServer:
    def __init__(self, path: str, snapshot: SnapshotSource, *, heartbeat: float = 10.0,
                 epoch: int | None = None, mode: int = 0o660,
                 on_clients: Callable[[int], None] | None = None, ready: asyncio.Event | None = None) -> None:
        self.path = path
        self.snapshot = snapshot
        self.heartbeat = heartbeat
        self.epoch = epoch if epoch is not None else time.time_ns()
        self.mode = mode
        self.on_clients = on_clients
        # A restarting bgpd must not hand out a snapshot before its RIB is whole again: the snapshot's
        # end tells felixd to drop every route it did not contain. Readers wait here until then.
        self.ready = ready
        self.readers: set[_Reader] = set()
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        self._server = await asyncio.start_unix_server(self._accept, self.path)
        os.chmod(self.path, self.mode)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for reader in list(self.readers):
            if reader.task is not None:
                reader.task.cancel()
            reader.writer.close()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def publish(self, changes: dict[str, FeedRoute | None]) -> None:
        """Queue changes (prefix -> new best route, or None for a withdrawal) for every reader."""
        if not changes:
            return
        for reader in self.readers:
            reader.pending.update(changes)
            reader.wake.set()

    @property
    def lag(self) -> int:
        """Changes waiting for the slowest reader."""
        return max((len(r.pending) for r in self.readers), default=0)

    async def _accept(self, _r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reader = _Reader(writer, "feed-reader")
        # Registered before the snapshot is taken: a change published from now on is queued for it, so
        # snapshot + queued deltas are never missing anything.
        self.readers.add(reader)
        self._clients_changed()
        reader.task = asyncio.current_task()
        try:
            if self.ready is not None:
                await self.ready.wait()
            data, reader.seq = encode_snapshot(self.snapshot(), reader.seq, self.epoch)
            writer.write(data)
            await writer.drain()
            while True:
                try:
                    await asyncio.wait_for(reader.wake.wait(), self.heartbeat)
                except TimeoutError:
                    writer.write(encode_frame(Heartbeat(reader.seq)))
                    reader.seq += 1
                    await writer.drain()
                    continue
                reader.wake.clear()
                batch, reader.pending = reader.pending, {}
                parts = []
                seq = reader.seq
                for prefix, route in batch.items():
                    frame = RouteUpdate(seq, route) if route is not None else Withdraw(seq, prefix)
                    parts.append(encode_frame(frame))
                    seq += 1
                reader.seq = seq
                writer.write(b"".join(parts))
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.readers.discard(reader)
            self._clients_changed()
            writer.close()

    def _clients_changed(self) -> None:
        if self.on_clients is not None:
            self.on_clients(len(self.readers))
