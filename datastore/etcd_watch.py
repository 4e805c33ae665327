"""Following the etcd datastore: one watch stream from a revision, list + resync when that fails.

A thread keeps one watch on every key tortie models (datastore.calico_keys WATCH_START..WATCH_END),
starting just after the revision of the model in force. Each watch message updates the key index; a
model that differs from the one in force is delivered as a `WatchEvent` (callbacks, `get`,
`asyncio_queue`, as the file watch does).

- Compaction (the revision to resume from is gone) or a cancelled watch: list everything again at the
  current revision and deliver only if the model differs, so a resync changes no route.
- etcd unreachable (stream broken, connection refused, no leader, the periodic probe failing): nothing
  is delivered, the daemons keep the model in force, one log line says so, `status` says so (metrics,
  readiness), and the thread retries with exponential backoff and jitter across the endpoints. When
  etcd answers again the watch resumes from the last revision seen (or lists again if it was compacted)
  and one log line says how long it was away.
- A separate probe (a linearizable count every `probe_interval` seconds) catches a member that keeps a
  stream open but can no longer serve: it closes the stream so the watch moves on.
"""

from __future__ import annotations

import logging
import random
import threading
from typing import TYPE_CHECKING, Protocol

from datastore.calico_keys import RESOURCES, WATCH_END, WATCH_START
from datastore.etcd_client import ClientConfig, EtcdClient, EtcdCompacted, EtcdError
from datastore.etcd_index import KeyIndex
from datastore.events import WatchDelivery, WatchEvent
from proto.resources import ClusterModel

if TYPE_CHECKING:
    from datastore.status import DatastoreStatus


class WatchedEtcd(Protocol):
    """What the watch needs of the etcd datastore (a protocol, so this module does not import it)."""

    config: ClientConfig
    status: DatastoreStatus
    name: str
    last_read: tuple[KeyIndex, ClusterModel] | None

    def read(self, index: KeyIndex | None = None) -> KeyIndex: ...

log = logging.getLogger("tortie.datastore")


class EtcdWatch(WatchDelivery):
    def __init__(self, store: WatchedEtcd, *, initial: ClusterModel | None = None,
                 probe_interval: float = 5.0, backoff_min: float = 0.2, backoff_max: float = 10.0,
                 **_ignored: object) -> None:
        super().__init__(store.name)
        self.store = store
        self.status = store.status
        self.probe_interval = probe_interval
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self._closed = threading.Event()
        self._wake = threading.Event()  # cuts a back-off short (close, SIGHUP's check_now)
        self.following = threading.Event()  # set while a watch stream is established
        # its own client: the stream's connection must not be shared with tortiectl-style calls
        self._client = EtcdClient(store.config)
        self._probe_client = EtcdClient(store.config)
        last = getattr(store, "last_read", None)
        if initial is not None and last is not None and last[1] is initial:
            # started on the model load() just built: follow from its revision, no second list
            self._index, self.current = last[0], initial
        else:
            self._index = store.read()
            self.current = self._index.model()
            if initial is not None:
                self.current = initial
                self._deliver_if_changed()
        self.status.synced(self._index.revision, invalid=len(self._index.invalid))
        self._thread = threading.Thread(target=self._run, name="watch etcd", daemon=True)
        self._thread.start()
        self._probe = threading.Thread(target=self._run_probe, name="probe etcd", daemon=True)
        self._probe.start()

    # consumers (get, add_callback, asyncio_queue: WatchDelivery)

    def check_now(self) -> WatchEvent | None:
        """List again at once (SIGHUP); the event delivered, or None if nothing changed or etcd is away.
        A broken stream waiting out its back-off reconnects now too."""
        self._wake.set()
        try:
            with self._lock:
                self.store.read(self._index)
                self.status.resynced("requested")
                return self._deliver_if_changed()
        except EtcdError as exc:
            log.error("cannot re-read %s: %s; keeping revision %d", self.store.name, exc, self.current.revision)
            return None

    def reconnect_now(self) -> None:
        """End a broken stream's back-off: it reconnects from where it was (check_now lists first)."""
        self._wake.set()

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._wake.set()
        self._client.close()  # ends a blocked stream read
        self._probe_client.close()
        self._thread.join(timeout=5)
        self._probe.join(timeout=5)

    # the watch thread

    def _run(self) -> None:
        relist = False
        self._delay = self.backoff_min
        while not self._closed.is_set():
            try:
                if relist:
                    with self._lock:
                        self.store.read(self._index)
                        self._deliver_if_changed()
                    relist = False
                try:
                    self._follow()
                finally:
                    self.following.clear()
                if self._closed.is_set():
                    return
                raise EtcdError(f"{self._client.endpoint}: watch stream ended")
            except EtcdCompacted as exc:
                log.warning("%s; listing again", exc)
                self.status.resynced("compacted")
                relist = True
                continue
            except EtcdError as exc:
                if self._closed.is_set():
                    return
                if self.status.mark_down(str(exc)):
                    log.error("etcd unreachable (%s); keeping the running configuration (revision %d) "
                              "and retrying with backoff", exc, self.current.revision)
            except Exception:  # the watch must outlive any one bad message
                if self._closed.is_set():
                    return
                log.exception("watching %s", self.store.name)
            self._wake.wait(self._delay * random.uniform(0.5, 1.0))
            self._wake.clear()
            self._delay = min(self._delay * 2, self.backoff_max)

    def _follow(self) -> None:
        for msg in self._client.watch(WATCH_START, WATCH_END.encode(), self._index.revision + 1, self._closed):
            if msg.created:
                self.following.set()
                self._delay = self.backoff_min
                away = self.status.mark_up()
                if away is not None:
                    log.warning("etcd reachable again at %s after %.1fs; following from revision %d",
                                self._client.endpoint, away, self._index.revision)
                    self.status.resynced("reconnect")
                continue
            if msg.canceled:
                raise EtcdCompacted(f"watch cancelled by {self._client.endpoint}: "
                                    f"{msg.cancel_reason or 'no reason given'}", 0)
            with self._lock:
                changed = False
                for ev in msg.events:
                    if ev.type == "DELETE":
                        changed |= self._index.delete(ev.kv.key)
                    else:
                        changed |= self._index.put(ev.kv.key, ev.kv.value, ev.kv.mod_revision)
                # a message with no events is a progress notification: everything up to it was sent
                self._index.revision = max(self._index.revision, msg.revision)
                self.status.synced(msg.revision, len(msg.events))
                if changed:
                    self._deliver_if_changed()

    def _run_probe(self) -> None:
        while not self._closed.wait(self.probe_interval):
            try:
                self._probe_client.count(RESOURCES + "nodes/")
            except EtcdError as exc:
                if self._closed.is_set():
                    return
                if self.status.mark_down(str(exc)):
                    log.error("etcd unreachable (%s); keeping the running configuration (revision %d) "
                              "and retrying with backoff", exc, self.current.revision)
                self._client.abort_watches()

    # delivering

    def _deliver_if_changed(self) -> WatchEvent | None:
        model = self._index.model()
        self.status.synced(self._index.revision, invalid=len(self._index.invalid))
        if model == self.current:
            return None
        self.current = model
        return self._deliver(WatchEvent(model))
