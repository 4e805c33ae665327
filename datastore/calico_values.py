"""Calico's JSON values in etcd <-> tortie's resources.

A v3 resource is stored as Calico's API object marshalled to JSON (`kind`, `apiVersion`, `metadata`,
`spec`; Calico's etcdv3 backend, libcalico-go/lib/backend/etcdv3/etcdv3.go, writes `json.Marshal` of the
object and keeps `resourceVersion` out of it: that is the key's mod revision). Values are validated by
`proto.resources` exactly as YAML is (JSON is YAML), with the etcd key as the source of every error.

IPAM is kept as Calico's IPAM keeps it, not as v3 resources (libcalico-go/lib/backend/model):
- a block affinity is `{"state": "confirmed", "deleted": false}` at the affinity key (block_affinity.go);
- the block itself is an AllocationBlock at the block key (block.go): `cidr`, `affinity` "host:<node>",
  one `allocations` slot per address (null: free), `unallocated` ordinals, `attributes`, sequence
  numbers, `deleted`.

Fields that Calico's own components write as observed state and that carry no routing configuration
(a Node's `addresses`, `interfaces`, `orchRefs`, `wireguard`; a WorkloadEndpoint's `profiles`, `ports`,
`serviceAccountName`, `containerID`, ...) are set aside when reading and written back unchanged when
tortie updates the resource, so tortie neither rejects what calico-node wrote nor erases it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
import uuid
from typing import Any

from datastore.calico_keys import DEFAULT_NAMESPACE, AffinityKey, ResourceKey
from proto.resources import (
    IGNORED_METADATA,
    BlockAffinity,
    IPNetwork,
    Problem,
    Resource,
    ValidationError,
    block_affinity_name,
    load_data,
)

# Spec fields Calico's components write for themselves that proto.resources does not model: carried
# over on writes, not read. (Node addresses, interfaces, orchRefs, WireGuard, the IPv6 VTEP and the
# WorkloadEndpoint's Kubernetes fields are resource fields now: they are read and written as they are.)
CALICO_OWNED_SPEC: dict[str, frozenset[str]] = {}
CALICO_OWNED_BGP = frozenset({"interfaceIPv4Address", "interfaceIPv6Address"})


def _problem(source: str, message: str, kind: str | None = None, name: str | None = None) -> ValidationError:
    return ValidationError([Problem(message, source, kind=kind, name=name)])


def _json_object(source: str, raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _problem(source, f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _problem(source, f"expected a JSON object, got {type(data).__name__}")
    return data


def decode_resource(key: ResourceKey, source: str, raw: bytes) -> Resource:
    """The resource stored at `source` (its etcd key); ValidationError naming the key if it is bad."""
    data = _json_object(source, raw)
    kind = data.setdefault("kind", key.kind)
    if kind != key.kind:
        raise _problem(source, f"kind {kind!r} stored under the {key.kind} key", key.kind, key.name)
    data.setdefault("apiVersion", "projectcalico.org/v3")
    meta = data.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise _problem(source, "metadata: expected a mapping", key.kind, key.name)
    name = meta.setdefault("name", key.name)
    if name != key.name:
        raise _problem(source, f"metadata.name {name!r} does not match the key's name {key.name!r}",
                       key.kind, key.name)
    if key.namespace is not None:
        meta.setdefault("namespace", key.namespace)
    spec = data.get("spec")
    if isinstance(spec, dict):
        for field in CALICO_OWNED_SPEC.get(kind, ()):
            spec.pop(field, None)
        if kind == "Node" and isinstance(spec.get("bgp"), dict):
            for field in CALICO_OWNED_BGP:
                spec["bgp"].pop(field, None)
    try:
        loaded = load_data(data, source)
    except ValidationError as exc:
        # one JSON document: "document 1, line 1" says nothing; the key and field path say it all
        raise ValidationError([dataclasses.replace(p, document=None, item=None, line=None)
                               for p in exc.problems]) from None
    if len(loaded.resources) != 1:
        raise _problem(source, "expected exactly one resource", key.kind, key.name)
    return loaded.resources[0]


def _timestamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def encode_resource(resource: Resource, existing: bytes | None = None) -> bytes:
    """Calico's JSON for `resource`; over an `existing` value, its bookkeeping metadata and the fields
    Calico's components own are carried over."""
    data = resource.to_dict()
    old: dict[str, Any] = {}
    if existing:
        try:
            parsed = json.loads(existing)
            old = parsed if isinstance(parsed, dict) else {}
        except (ValueError, UnicodeDecodeError):
            old = {}
    meta = data["metadata"]
    old_meta = old.get("metadata") if isinstance(old.get("metadata"), dict) else {}
    for field in sorted(IGNORED_METADATA - {"resourceVersion"}):
        if field in old_meta:
            meta[field] = old_meta[field]
    meta.setdefault("uid", str(uuid.uuid4()))
    meta.setdefault("creationTimestamp", _timestamp())
    if resource.kind == "WorkloadEndpoint":
        meta.setdefault("namespace", DEFAULT_NAMESPACE)
    old_spec = old.get("spec") if isinstance(old.get("spec"), dict) else {}
    spec = data["spec"]
    for field in CALICO_OWNED_SPEC.get(resource.kind, ()):
        if field in old_spec:
            spec[field] = old_spec[field]
    if resource.kind == "Node" and isinstance(old_spec.get("bgp"), dict):
        for field in CALICO_OWNED_BGP:
            if field in old_spec["bgp"]:
                spec.setdefault("bgp", {})[field] = old_spec["bgp"][field]
    if "status" in old:
        data["status"] = old["status"]
    return json.dumps(data, separators=(",", ":"), sort_keys=False).encode()


# --- IPAM ---------------------------------------------------------------------------------------

def decode_affinity(key: AffinityKey, source: str, raw: bytes) -> BlockAffinity:
    # Calico once stored affinities with no value; its reader takes that as `{}` (block_affinity.go)
    data = _json_object(source, raw) if raw.strip() else {}
    state = data.get("state") or "confirmed"
    deleted = data.get("deleted", False)
    if isinstance(deleted, str) and deleted in ("true", "false"):
        deleted = deleted == "true"
    if state not in ("confirmed", "pending", "pendingDeletion"):
        raise _problem(source, f"state: {state!r} is not one of confirmed, pending, pendingDeletion",
                       "BlockAffinity")
    if not isinstance(deleted, bool):
        raise _problem(source, f"deleted: expected true or false, got {deleted!r}", "BlockAffinity")
    return BlockAffinity(name=block_affinity_name(key.node, key.cidr), node=key.node, cidr=key.cidr,
                         state=state, deleted=deleted)


def encode_affinity(block: BlockAffinity) -> bytes:
    return json.dumps({"state": block.state, "deleted": block.deleted}, separators=(",", ":")).encode()


def encode_block(cidr: IPNetwork, node: str) -> bytes:
    """A new, empty AllocationBlock affine to `node`, as Calico's IPAM creates one (ipam_block.go)."""
    size = cidr.num_addresses
    block = {
        "cidr": str(cidr),
        "affinity": f"host:{node}",
        "allocations": [None] * size,
        "unallocated": list(range(size)),
        "attributes": [],
        # Calico seeds the sequence number with the time, so a re-created block never reuses one
        "sequenceNumber": time.time_ns(),
        "sequenceNumberForAllocation": {},
        "deleted": False,
    }
    return json.dumps(block, separators=(",", ":")).encode()


def block_host(raw: bytes) -> str | None:
    """The node a stored block is affine to ("host:<node>"), None when unaffined or unreadable."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    affinity = data.get("affinity") if isinstance(data, dict) else None
    if isinstance(affinity, str) and affinity.startswith("host:"):
        return affinity[len("host:"):]
    return None


def released_block(raw: bytes) -> bytes | None:
    """What releasing a block's affinity leaves: nothing (delete the key) when no address of it is in
    use, else the block kept with no affinity, as Calico's IPAM does for blocks with live allocations."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or not any(a is not None for a in data.get("allocations") or ()):
        return None
    data["affinity"] = None
    return json.dumps(data, separators=(",", ":")).encode()
