"""How a datastore connection is doing, for metrics (`tortie_datastore_*`) and readiness.

Written by the watch thread, read by the daemon's loop at scrape or readiness time; a lock keeps each
update whole.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import field

from proto.record import record


@record
class DatastoreStatus:
    type: str  # "file" or "etcdv3"
    where: str  # the file, or the etcd endpoints
    up: bool = True
    revision: int = 0
    down_since: float | None = None  # time.time() when it became unreachable
    last_error: str = ""
    last_sync: float = 0.0  # time.time() of the last list or watch event applied
    resyncs: Counter[str] = field(default_factory=Counter)  # reason -> count
    watch_events: int = 0
    retries: int = 0
    invalid_values: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def mark_down(self, error: str) -> bool:
        """Record an outage; True the first time (so the caller logs it once)."""
        with self._lock:
            self.retries += 1
            self.last_error = error
            if not self.up:
                return False
            self.up = False
            self.down_since = time.time()
            return True

    def mark_up(self) -> float | None:
        """Record that it answers again; returns how long it was down (None if it was not)."""
        with self._lock:
            self.last_sync = time.time()
            if self.up:
                return None
            self.up = True
            since, self.down_since = self.down_since, None
            return time.time() - since if since is not None else 0.0

    def synced(self, revision: int, events: int = 0, invalid: int | None = None) -> None:
        with self._lock:
            self.revision = max(self.revision, revision)
            self.watch_events += events
            self.last_sync = time.time()
            if invalid is not None:
                self.invalid_values = invalid

    def resynced(self, reason: str) -> None:
        with self._lock:
            self.resyncs[reason] += 1

    def describe(self) -> str:
        """One line for readiness and `status`."""
        with self._lock:
            if self.up:
                return f"datastore {self.type} ok (revision {self.revision})"
            down = time.time() - (self.down_since or time.time())
            return (f"datastore {self.type} unreachable for {down:.0f}s ({self.last_error}); running on "
                    f"revision {self.revision}")
