"""What a datastore watch delivers, and how: the model in force, or an error beside the last good model,
handed to a blocking `get`, to callbacks (called on the watch thread) and to asyncio queues."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Self

from proto.record import record
from proto.resources import ClusterModel

if TYPE_CHECKING:
    import asyncio

log = logging.getLogger("tortie.datastore")


@record(frozen=True, slots=True)
class WatchEvent:
    model: ClusterModel  # the model in force: the new one, or the last good one when `error` is set
    error: Exception | None = None  # ValidationError, or OSError (file missing or unreadable)

    @property
    def ok(self) -> bool:
        return self.error is None


class WatchDelivery:
    """The consumer side the file and etcd watches share. `_lock` guards the callbacks and is the
    subclass's lock for its own state too: an event is delivered while it is held, so callbacks see
    events one at a time and in order.

    Events wait for `get` until an asyncio queue is made: that queue is then how the watch is read
    (what `get` had not read yet moves to it), and nothing is kept for a `get` nobody makes; a daemon
    that reads its watch through the queue would otherwise keep every model it has ever run."""

    def __init__(self, watched: str) -> None:
        self._watched = watched  # how `get`'s timeout names what is watched
        self._events: queue.Queue[WatchEvent] = queue.Queue()
        self._for_get = True  # events are kept for `get` (until an asyncio queue takes over)
        self._callbacks: list[Callable[[WatchEvent], None]] = []
        self._lock = threading.Lock()

    def get(self, timeout: float | None = None) -> WatchEvent:
        """The next event; TimeoutError if none arrives within `timeout` seconds."""
        try:
            return self._events.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no change in {self._watched} within {timeout}s") from None

    def add_callback(self, callback: Callable[[WatchEvent], None]) -> None:
        with self._lock:
            self._callbacks.append(callback)
        self._consumer_added()

    def _consumer_added(self) -> None:
        """A new consumer: a watch that may have missed a change since its model was read checks now."""

    def asyncio_queue(self, loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Queue[WatchEvent]:
        """An asyncio queue fed from the watch thread, for daemons running an event loop."""
        import asyncio  # only daemons with an event loop pay for importing it

        loop = loop or asyncio.get_running_loop()
        q: asyncio.Queue[WatchEvent] = asyncio.Queue()
        with self._lock:  # no event is delivered meanwhile: the queue gets them all, in order
            self._for_get = False
            while True:
                try:
                    q.put_nowait(self._events.get_nowait())
                except queue.Empty:
                    break
            self._callbacks.append(lambda ev: loop.call_soon_threadsafe(q.put_nowait, ev))
        self._consumer_added()
        return q

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _deliver(self, event: WatchEvent) -> WatchEvent:
        if self._for_get:
            self._events.put(event)
        for callback in list(self._callbacks):
            try:
                callback(event)
            except Exception:
                log.exception("watch callback failed")
        return event
