"""The datastore interface the daemons and tortiectl use; the file and etcd datastores implement it.

Every backend implements the same operations: `load`, `transact` (atomic read-modify-write, the only
write primitive), `apply` and `delete` on top of it, and `watch`. `status` says how the backend is doing
(for metrics and readiness).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol

from datastore.events import WatchEvent
from datastore.status import DatastoreStatus
from proto.resources import BlockAffinity, ClusterModel, Resource

if TYPE_CHECKING:
    import asyncio  # for the daemons' watch queue; tortiectl has no event loop and does not pay for it


class Watcher(Protocol):
    """What `Datastore.watch()` returns, whatever the backend."""

    current: ClusterModel  # the model in force: the last valid one seen

    def get(self, timeout: float | None = None) -> WatchEvent: ...
    def add_callback(self, callback: Callable[[WatchEvent], None]) -> None: ...
    def asyncio_queue(self, loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Queue[WatchEvent]: ...
    def check_now(self) -> WatchEvent | None: ...
    def close(self) -> None: ...


class Datastore(abc.ABC):
    """Where the cluster's resources live. Every write is validated and bumps the revision."""

    status: DatastoreStatus

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """How errors refer to the store (the file's path, or the etcd endpoints)."""

    @abc.abstractmethod
    def load(self, *, missing_ok: bool = False) -> ClusterModel:
        """The current validated model; raises ValidationError (or OSError) when the store is unusable."""

    @abc.abstractmethod
    def transact(self, change: Callable[[ClusterModel], ClusterModel]) -> ClusterModel:
        """Run `change` on the current model and store its result atomically.

        `change` may raise (ValidationError, NotFoundError, ...) to abort; nothing is written then. If the
        result equals the current model nothing is written either. `change` may be called more than once
        (a backend with optimistic concurrency re-runs it on a conflict), so it must not keep state from
        one call to the next. Returns the model now in force.
        """

    @abc.abstractmethod
    def watch(self, **options: object) -> Watcher:
        """Start delivering change notifications, each with the new validated model."""

    def close(self) -> None:  # noqa: B027 - a hook: only backends with connections override it
        """Release connections (nothing to do for a file)."""

    def apply(self, resources: Iterable[Resource]) -> ClusterModel:
        """Create or replace resources (Calico's `apply`)."""
        incoming = list(resources)
        return self.transact(lambda model: model.apply(incoming))

    def delete(self, keys: Iterable[tuple[str, str]], *, missing_ok: bool = False) -> ClusterModel:
        """Delete resources by (kind, name); NotFoundError for a missing one unless `missing_ok`.

        Deleting a Node frees its blocks too, as deleting a Calico node releases its IPAM affinities.
        """
        doomed = list(keys)

        def change(model: ClusterModel) -> ClusterModel:
            nodes = {name for kind, name in doomed if kind == "Node"}
            freed = [b.key for b in model.blocks if b.node in nodes and b.key not in doomed]
            return model.delete(doomed, missing_ok=missing_ok).delete(freed, missing_ok=True)

        return self.transact(change)


def blocks_of(model: ClusterModel, node: str) -> list[BlockAffinity]:
    """Every block affinity of a node, confirmed or not."""
    return [b for b in model.blocks if b.node == node]
