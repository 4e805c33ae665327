"""Change notifications for the file datastore: inotify on the file's directory, or polling.

A background thread notices the file changing, reads and validates it, and delivers a `WatchEvent`:
the new model, or, for an invalid file, the error together with the last good model (which stays in
force). Consumers either block on `get(timeout)`, register a callback (called on the watch thread), or,
in asyncio code, use `asyncio_queue(loop)`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import datastore.inotify as inotify
from datastore.events import WatchDelivery, WatchEvent
from proto.digest import sha256
from proto.resources import ClusterModel, ValidationError

if TYPE_CHECKING:
    from datastore.status import DatastoreStatus

log = logging.getLogger("tortie.datastore")

_DIR_MASK = (inotify.IN_CLOSE_WRITE | inotify.IN_MOVED_TO | inotify.IN_MOVED_FROM | inotify.IN_DELETE
             | inotify.IN_DELETE_SELF | inotify.IN_MOVE_SELF)


class WatchedFile(Protocol):
    """What the watch needs of the file datastore (a protocol, so this module does not import it)."""

    path: Path
    status: DatastoreStatus
    loaded_text: str | None  # the text the store's last `load` parsed

    def parse(self, text: str) -> ClusterModel: ...


class Watch(WatchDelivery):
    def __init__(self, store: WatchedFile, *, backend: Literal["auto", "inotify", "poll"] = "auto",
                 poll_interval: float = 1.0, initial: ClusterModel | None = None) -> None:
        super().__init__(str(store.path))
        self.store = store
        self.poll_interval = poll_interval
        self._reported: set[tuple[str | None, str | None, str, str]] = set()  # warnings already logged
        self._closed = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._inotify: inotify.Inotify | None = None
        if backend in ("auto", "inotify"):
            try:
                self._inotify = inotify.Inotify()
                self._inotify.add_watch(store.path.parent, _DIR_MASK)
            except OSError:
                if self._inotify is not None:
                    self._inotify.close()
                    self._inotify = None
                if backend == "inotify":
                    raise
                log.info("inotify unavailable, polling %s every %.1fs", store.path, poll_interval)
        self.backend = "inotify" if self._inotify is not None else "poll"
        self._stat = self._stat_key()
        # set by a new consumer: the thread then compares the file with what the consumer holds
        self._recheck = threading.Event()
        if initial is None:
            text = self._read()
            initial = store.parse(text or "")
            self._report_warnings(initial)
        else:
            # `initial` came from an earlier load: the file may have changed since (a daemon loads,
            # starts up, then watches; an apply meanwhile must still reach it), so the first check
            # compares with what that load read, not with the file as it is now
            text = store.loaded_text
        self._digest = _digest(text)
        self.current: ClusterModel = initial
        self._thread = threading.Thread(target=self._run, name=f"watch {store.path.name}", daemon=True)
        self._thread.start()

    # consumers (get, asyncio_queue: WatchDelivery)

    def _consumer_added(self) -> None:
        # the file may have changed since `current` was read: the thread compares before waiting
        self._recheck.set()
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"c")

    def check_now(self) -> WatchEvent | None:
        """Re-read the file at once (SIGHUP); returns the event delivered, None if nothing changed."""
        return self._check(force=True)

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        self._thread.join(timeout=5)
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        if self._inotify is not None:
            self._inotify.close()

    # the watch thread

    def _run(self) -> None:
        # poll(2), not select(2): a daemon with a thousand sessions (and two BFD sockets per listen
        # address) has descriptors past select's 1024, and select() then fails on every call
        waiter = select.poll()
        waiter.register(self._wake_r, select.POLLIN)
        if self._inotify is not None:
            waiter.register(self._inotify.fileno(), select.POLLIN)
        failures = 0
        while not self._closed.is_set():
            try:
                if self._inotify is not None:
                    ready = {fd for fd, _ in waiter.poll()}
                    if self._closed.is_set():
                        return
                    if self._wake_r in ready:
                        os.read(self._wake_r, 64)
                    changed = False
                    if self._inotify.fileno() in ready:
                        names = {ev.name for ev in self._inotify.read()}
                        changed = self.store.path.name in names or "" in names
                    if changed or self._recheck.is_set():
                        self._recheck.clear()
                        self._check()
                else:
                    ready = {fd for fd, _ in waiter.poll(self.poll_interval * 1000)}
                    if self._closed.is_set():
                        return
                    if ready:
                        os.read(self._wake_r, 64)
                    key = self._stat_key()
                    if key != self._stat or self._recheck.is_set():
                        self._recheck.clear()
                        self._stat = key
                        self._check()
                failures = 0
            except Exception:  # the watch must outlive any one bad read, without spinning on one
                failures += 1
                log.exception("watching %s", self.store.path)
                self._closed.wait(min(30.0, 0.1 * 2 ** min(failures, 9)))

    def _stat_key(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.store.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _read(self) -> str | None:
        try:
            return self.store.read_text()
        except FileNotFoundError:
            return None

    def _check(self, force: bool = False) -> WatchEvent | None:
        with self._lock:
            try:
                text = self._read()
            except OSError as exc:
                return self._deliver(WatchEvent(self.current, exc))
            except ValidationError as exc:  # not UTF-8: reported like any invalid file
                log.error("invalid configuration, keeping revision %d:\n%s", self.current.revision, exc)
                return self._deliver(WatchEvent(self.current, exc))
            digest = _digest(text)
            if digest == self._digest and not force:
                return None
            self._digest = digest
            if text is None:
                err = FileNotFoundError(f"{self.store.path} is missing; keeping revision "
                                        f"{self.current.revision}")
                log.error("%s", err)
                return self._deliver(WatchEvent(self.current, err))
            try:
                model = self.store.parse(text)
            except ValidationError as exc:
                log.error("invalid configuration, keeping revision %d:\n%s", self.current.revision, exc)
                return self._deliver(WatchEvent(self.current, exc))
            self._report_warnings(model)
            self.current = model
            self.store.status.synced(model.revision, 1)
            return self._deliver(WatchEvent(model))

    def _report_warnings(self, model: ClusterModel) -> None:
        # once per resource and field: a reload of an unchanged resource does not repeat its warning
        for warning in model.warnings:
            key = (warning.kind, warning.name, warning.path, warning.message)
            if key not in self._reported:
                log.warning("%s", warning)
                self._reported.add(key)


def _digest(text: str | None) -> bytes | None:
    return None if text is None else sha256(text.encode())
