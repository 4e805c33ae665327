"""The route feed's server side: best routes from bgpd to felixd (and any other reader).

Each reader gets a full snapshot when it connects, then deltas. Deltas are coalesced per prefix while
a reader is busy: a slow reader receives the latest state of each changed prefix rather than every
intermediate step, so memory per reader is bounded by the number of prefixes, not by the change rate.
Frames are encoded and written in bounded slices, so a whole-table change never sits in memory as
one buffer.

Keys and values are the sender's business: by default a prefix text and a `FeedRoute` (None for a
withdrawal); bgpd passes its own `encode` and feeds wire-form prefixes and best paths straight in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from itertools import islice
from typing import Any

from proto.feed import (
    EndOfSnapshot,
    FeedRoute,
    Heartbeat,
    RouteUpdate,
    SnapshotBegin,
    Withdraw,
    encode_frame,
)

log = logging.getLogger("tortie.bgp.feed")

Encoder = Callable[[int, Any, Any], bytes]  # (seq, key, value) -> one frame
SLICE = 4096  # frames per write


def _encode_feed_route(seq: int, prefix: str, route: FeedRoute | None) -> bytes:
    return encode_frame(RouteUpdate(seq, route) if route is not None else Withdraw(seq, prefix))


class _Reader:
    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.pending: dict[Hashable, Any] = {}
        self.wake = asyncio.Event()
        self.seq = 1
        self.task: asyncio.Task[None] | None = None


class FeedServer:
    def __init__(self, path: str, snapshot: Callable[[], Iterable[Any]], *, encode: Encoder | None = None,
                 heartbeat: float = 10.0, epoch: int | None = None, mode: int = 0o660,
                 on_clients: Callable[[int], None] | None = None, ready: asyncio.Event | None = None) -> None:
        """`snapshot()` gives what a new reader starts from: FeedRoutes, or with `encode`, (key, value)
        pairs that `encode` turns into route frames."""
        self.path = path
        self.snapshot = snapshot
        self.encode: Encoder = encode or _encode_feed_route
        self.custom = encode is not None
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

    def publish(self, changes: Mapping[Hashable, Any]) -> None:
        """Queue changes (key -> new value; by default prefix -> FeedRoute, or None to withdraw)."""
        if not changes:
            return
        for reader in self.readers:
            reader.pending.update(changes)
            reader.wake.set()

    @property
    def lag(self) -> int:
        """Changes waiting for the slowest reader."""
        return max((len(r.pending) for r in self.readers), default=0)

    def _snapshot_pairs(self) -> Iterable[tuple[Any, Any]]:
        if self.custom:
            return self.snapshot()
        return ((r.prefix, r) for r in self.snapshot())

    async def _write_frames(self, reader: _Reader, pairs: Iterable[tuple[Any, Any]]) -> int:
        """Encode and write in slices; returns how many frames went out."""
        it = iter(pairs)
        encode, count = self.encode, 0
        while chunk := list(islice(it, SLICE)):
            seq = reader.seq
            data = b"".join([encode(seq + i, k, v) for i, (k, v) in enumerate(chunk)])
            reader.seq = seq + len(chunk)
            count += len(chunk)
            reader.writer.write(data)
            await reader.writer.drain()
        return count

    async def _accept(self, _r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reader = _Reader(writer)
        # Registered before the snapshot is taken: a change published from now on is queued for it, so
        # snapshot + queued deltas are never missing anything.
        self.readers.add(reader)
        self._clients_changed()
        reader.task = asyncio.current_task()
        try:
            if self.ready is not None:
                await self.ready.wait()
            writer.write(encode_frame(SnapshotBegin(reader.seq, self.epoch)))
            reader.seq += 1
            count = await self._write_frames(reader, self._snapshot_pairs())
            writer.write(encode_frame(EndOfSnapshot(reader.seq, count)))
            reader.seq += 1
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
                await self._write_frames(reader, batch.items())
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.readers.discard(reader)
            self._clients_changed()
            writer.close()

    def _clients_changed(self) -> None:
        if self.on_clients is not None:
            self.on_clients(len(self.readers))
