"""The datastore interface the daemons and tortiectl use; the file datastore is one implementation.

A distributed backend (etcd, a replicated log) implements the same five operations: `load`, `transact`
(atomic read-modify-write, the only write primitive), `apply` and `delete` on top of it, and `watch`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol

from proto.resources import ClusterModel, Resource

if TYPE_CHECKING:
    import asyncio

    from datastore.watch import WatchEvent


class Watcher(Protocol):
    """What `Datastore.watch()` returns, whatever the backend (datastore.watch.Watch for files)."""

    current: ClusterModel  # the model in force: the last valid one seen

    def get(self, timeout: float | None = None) -> WatchEvent: ...
    def add_callback(self, callback: Callable[[WatchEvent], None]) -> None: ...
    def asyncio_queue(self, loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Queue[WatchEvent]: ...
    def check_now(self) -> WatchEvent | None: ...
    def close(self) -> None: ...


class Datastore(abc.ABC):
    """Where the cluster's resources live. Every write is validated and bumps the revision."""

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """How errors refer to the store (for the file datastore: its path)."""

    @abc.abstractmethod
    def load(self, *, missing_ok: bool = False) -> ClusterModel:
        """The current validated model; raises ValidationError (or OSError) when the store is unusable."""

    @abc.abstractmethod
    def transact(self, change: Callable[[ClusterModel], ClusterModel]) -> ClusterModel:
        """Run `change` on the current model while holding the store's write lock and store its result.

        `change` may raise (ValidationError, NotFoundError, ...) to abort; nothing is written then. If the
        result equals the current model nothing is written either. Returns the model now in force.
        """

    @abc.abstractmethod
    def watch(self, **options: object) -> Watcher:
        """Start delivering change notifications, each with the new validated model."""

    def apply(self, resources: Iterable[Resource]) -> ClusterModel:
        """Create or replace resources (Calico's `apply`)."""
        incoming = list(resources)
        return self.transact(lambda model: model.apply(incoming))

    def delete(self, keys: Iterable[tuple[str, str]], *, missing_ok: bool = False) -> ClusterModel:
        """Delete resources by (kind, name); NotFoundError for a missing one unless `missing_ok`."""
        doomed = list(keys)
        return self.transact(lambda model: model.delete(doomed, missing_ok=missing_ok))
