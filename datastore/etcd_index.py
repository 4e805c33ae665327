"""The etcd keys tortie models, decoded once each and kept current by watch events.

Each key's value is decoded when it changes, not on every rebuild. A bad value (not JSON, failing
validation) is reported once with its key and left out; so is a resource that breaks a cluster-wide
rule (two Nodes with one address, overlapping blocks): the rest of the configuration still applies.
"""

from __future__ import annotations

import logging

from datastore.calico_keys import AffinityKey, BlockKey, ResourceKey, affinity_key, parse_key
from datastore.calico_values import block_host, decode_affinity, decode_resource
from proto.record import record
from proto.resources import BlockAffinity, ClusterModel, Resource, ValidationError, block_affinity_name

log = logging.getLogger("tortie.datastore")


@record(frozen=True, slots=True)
class Entry:
    value: bytes
    mod_revision: int
    resource: Resource | None  # None for a block key, or a value that did not decode
    error: str | None = None


class KeyIndex:
    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.revision = 0
        self._reported: set[tuple[str, str]] = set()
        self.invalid: dict[str, str] = {}  # key -> why it is left out (for metrics and `status`)

    def put(self, key: str, value: bytes, mod_revision: int) -> bool:
        """Record a key's new value; False when the key is not one tortie models or nothing changed."""
        parsed = parse_key(key)
        if parsed is None:
            return False
        old = self.entries.get(key)
        if old is not None and old.value == value:
            self.entries[key] = Entry(value, mod_revision, old.resource, old.error)
            return False
        resource: Resource | None = None
        error: str | None = None
        try:
            if isinstance(parsed, ResourceKey):
                resource = decode_resource(parsed, key, value)
            elif isinstance(parsed, AffinityKey):
                resource = decode_affinity(parsed, key, value)
        except ValidationError as exc:
            error = str(exc)
        self.entries[key] = Entry(value, mod_revision, resource, error)
        return True

    def delete(self, key: str) -> bool:
        return self.entries.pop(key, None) is not None

    def replace_all(self, kvs: list[tuple[str, bytes, int]], revision: int) -> None:
        """A fresh list (start, resync): entries whose value is unchanged keep their decoded resource."""
        seen = set()
        for key, value, mod in kvs:
            if self.put(key, value, mod) or key in self.entries:
                seen.add(key)
        for key in [k for k in self.entries if k not in seen]:
            del self.entries[key]
        self.revision = revision

    def path_of(self) -> dict[tuple[str, str], str]:
        """(kind, name) -> etcd key, for the resources read from etcd."""
        return {e.resource.key: k for k, e in self.entries.items() if e.resource is not None}

    def model(self) -> ClusterModel:
        invalid: dict[str, str] = {}
        resources: list[Resource] = []
        key_of: dict[tuple[str, str], str] = {}
        affined: set[str] = set()
        blocks: list[tuple[str, Entry]] = []
        for key in sorted(self.entries):
            entry = self.entries[key]
            if entry.error is not None:
                invalid[key] = entry.error
                continue
            if entry.resource is not None:
                resources.append(entry.resource)
                key_of[entry.resource.key] = key
                if isinstance(entry.resource, BlockAffinity):
                    affined.add(str(entry.resource.cidr))
            else:
                blocks.append((key, entry))
        # A block whose affinity key is missing (a claim Calico has not finished, or an affinity
        # released while addresses are in use) is still taken: shown as a pending affinity so no claim
        # hands it out and nothing advertises it.
        for key, entry in blocks:
            parsed = parse_key(key)
            host = block_host(entry.value)
            if isinstance(parsed, BlockKey) and host and str(parsed.cidr) not in affined:
                pending = BlockAffinity(name=block_affinity_name(host, parsed.cidr), node=host,
                                        cidr=parsed.cidr, state="pending")
                if pending.key not in key_of:
                    resources.append(pending)
                    key_of[pending.key] = affinity_key(host, parsed.cidr)
        model = None
        for _ in range(len(resources) + 1):
            try:
                model = ClusterModel(resources, self.revision)
                break
            except ValidationError as exc:
                doomed = {(p.kind, p.name) for p in exc.problems if p.kind and p.name}
                if not doomed:
                    raise
                for p in exc.problems:
                    path = key_of.get((p.kind or "", p.name or ""), f"{p.kind} {p.name}")
                    invalid[path] = str(p)
                resources = [r for r in resources if r.key not in doomed]
        if model is None:  # pragma: no cover - each round removes at least one resource
            model = ClusterModel((), self.revision)
        for key, why in invalid.items():
            if (key, why) not in self._reported:
                self._reported.add((key, why))
                log.error("etcd value skipped, the rest of the configuration applies: %s: %s", key, why)
        self.invalid = invalid
        return model
