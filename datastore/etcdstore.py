"""The etcd v3 datastore: Calico's key layout and values, writes by compare-and-swap transaction.

- `load()` reads every key tortie models in one transaction of range requests, so they come from one
  revision.
- `transact(change)` reads, runs `change`, and writes the difference in one etcd transaction guarded by
  the mod revision of every key it touches (version 0 for keys it creates). A concurrent writer of any
  of those keys makes the transaction fail; it is then read and run again. Claiming a block is such a
  transaction: it creates the block's affinity and block keys only while neither exists, so concurrent
  claimers (tortiectl on several hosts, daemons at start) never get one block twice, and every claim
  that returns is stored.
- Keys the change does not touch are not compared: like Calico, consistency is per resource, and the
  readers skip a resource that breaks a cluster-wide rule (see etcd_index).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

from datastore.base import Datastore
from datastore.calico_keys import (
    AFFINITIES,
    BLOCKS,
    PLURALS,
    RESOURCES,
    affinity_key,
    block_key,
    resource_key,
)
from datastore.calico_values import encode_affinity, encode_block, encode_resource, released_block
from datastore.etcd_client import ClientConfig, Compare, Delete, EtcdClient, EtcdError, Put, Range
from datastore.etcd_index import KeyIndex
from datastore.status import DatastoreStatus
from proto.resources import BlockAffinity, ClusterModel, Resource

log = logging.getLogger("tortie.datastore")

READ_PREFIXES = (*(f"{RESOURCES}{plural}/" for plural in PLURALS.values()), AFFINITIES, BLOCKS)
MAX_ATTEMPTS = 100


class ConflictError(EtcdError):
    """Other writers kept changing the same keys; the change was not stored."""


class EtcdDatastore(Datastore):
    def __init__(self, config: ClientConfig, *, source: str = "") -> None:
        self.config = config
        self.source = source
        self.client = EtcdClient(config)
        self.status = DatastoreStatus("etcdv3", ",".join(config.endpoints))
        self.last_read: tuple[KeyIndex, ClusterModel] | None = None  # load()'s, for a watch started on it

    @property
    def name(self) -> str:
        return f"etcdv3 {','.join(self.config.endpoints)}"

    def close(self) -> None:
        self.client.close()

    # ------------------------------------------------------------------ reading

    def read(self, index: KeyIndex | None = None) -> KeyIndex:
        """Every modelled key at one revision, into `index` (a fresh one by default)."""
        result = self.client.txn([], [Range(prefix) for prefix in READ_PREFIXES])
        index = index or KeyIndex()
        index.replace_all([(kv.key, kv.value, kv.mod_revision) for kvs in result.ranges for kv in kvs],
                          result.revision)
        return index

    def load(self, *, missing_ok: bool = False) -> ClusterModel:
        index = self.read()
        model = index.model()
        self.status.synced(index.revision, invalid=len(index.invalid))
        self.last_read = (index, model)
        return model

    # ------------------------------------------------------------------ writing

    def transact(self, change: Callable[[ClusterModel], ClusterModel]) -> ClusterModel:
        for attempt in range(MAX_ATTEMPTS):
            index = self.read()
            current = index.model()
            new = change(current)
            if new == current:
                return current
            compares, ops = _plan(index, current, new)
            if not ops:
                return current
            result = self.client.txn(compares, ops)
            if result.succeeded:
                return new.with_revision(result.revision)
            # someone else wrote one of our keys first: read again, after a short random wait so that
            # a crowd of claimers spreads out
            time.sleep(random.uniform(0, 0.002 * min(attempt + 1, 25)))
        raise ConflictError(f"{self.name}: gave up after {MAX_ATTEMPTS} conflicting attempts")

    def watch(self, **options: Any) -> Any:
        from datastore.etcd_watch import EtcdWatch

        return EtcdWatch(self, **options)


def _guard(index: KeyIndex, key: str) -> Compare:
    entry = index.entries.get(key)
    if entry is None:
        return Compare(key, "VERSION", 0)
    return Compare(key, "MOD", entry.mod_revision)


def _plan(index: KeyIndex, old: ClusterModel, new: ClusterModel) -> tuple[list[Compare], list[Put | Delete]]:
    """The guarded writes that turn `old` (read from `index`) into `new`."""
    path_of = index.path_of()
    before = {r.key: r for r in old.resources}
    after = {r.key: r for r in new.resources}
    compares: dict[str, Compare] = {}
    ops: dict[str, Put | Delete] = {}

    def put(key: str, value: bytes) -> None:
        compares.setdefault(key, _guard(index, key))
        ops[key] = Put(key, value)

    def delete(key: str) -> None:
        if key in index.entries:
            compares.setdefault(key, _guard(index, key))
            ops[key] = Delete(key)

    for rkey, res in before.items():
        if rkey not in after or _path(after[rkey]) != path_of.get(rkey, _path(res)):
            _remove(index, res, path_of.get(rkey, _path(res)), delete, put)
    for rkey, res in after.items():
        if before.get(rkey) == res and path_of.get(rkey) == _path(res):
            continue
        if isinstance(res, BlockAffinity):
            put(affinity_key(res.node, res.cidr), encode_affinity(res))
            bkey = block_key(res.cidr)
            if bkey in index.entries:
                compares.setdefault(bkey, _guard(index, bkey))  # still the block we read, or retry
            else:
                put(bkey, encode_block(res.cidr, res.node))
        else:
            path = _path(res)
            entry = index.entries.get(path)
            put(path, encode_resource(res, entry.value if entry else None))
    return list(compares.values()), list(ops.values())


def _path(res: Resource) -> str:
    if isinstance(res, BlockAffinity):
        return affinity_key(res.node, res.cidr)
    return resource_key(res.kind, res.name, getattr(res, "namespace", None))


def _remove(index: KeyIndex, res: Resource, path: str, delete: Callable[[str], None],
            put: Callable[[str, bytes], None]) -> None:
    delete(path)
    if isinstance(res, BlockAffinity):
        bkey = block_key(res.cidr)
        entry = index.entries.get(bkey)
        if entry is not None:
            kept = released_block(entry.value)
            if kept is None:
                delete(bkey)
            else:
                put(bkey, kept)
