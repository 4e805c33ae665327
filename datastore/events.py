"""What a datastore watch delivers, and how: the model in force, or an error beside the last good model,
handed to a blocking `get`, to callbacks (called on the watch thread) and to asyncio queues."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Self

from proto.resources import ClusterModel

if TYPE_CHECKING:
    import asyncio

log = logging.getLogger("tortie.datastore")


@dataclass(frozen=True, slots=True)
class WatchEvent:
    model: ClusterModel  # the model in force: the new one, or the last good one when `error` is set
    error: Exception | None = None  # ValidationError, or OSError (file missing or unreadable)

    @property
    def ok(self) -> bool:
        return self.error is None


class WatchDelivery:
    """The consumer side the file and etcd watches share. `_lock` guards the callbacks and is the
    subclass's lock for its own state too: an event is delivered while it is held, so callbacks see
    events one at a time and in order."""

    def __init__(self, watched: str) -> None:
        self._watched = watched  # how `get`'s timeout names what is watched
        self._events: queue.Queue[WatchEvent] = queue.Queue()
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

    def asyncio_queue(self, loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Queue[WatchEvent]:
        """An asyncio queue fed from the watch thread, for daemons running an event loop."""
        import asyncio  # only daemons with an event loop pay for importing it

        loop = loop or asyncio.get_running_loop()
        q: asyncio.Queue[WatchEvent] = asyncio.Queue()
        self.add_callback(lambda ev: loop.call_soon_threadsafe(q.put_nowait, ev))
        return q

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _deliver(self, event: WatchEvent) -> WatchEvent:
        self._events.put(event)
        for callback in list(self._callbacks):
            try:
                callback(event)
            except Exception:
                log.exception("watch callback failed")
        return event
