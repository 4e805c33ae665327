"""Where Calico's etcdv3 datastore keeps each resource: the key layout, both ways.

Facts from Calico's backend model (libcalico-go/lib/backend/model): `resource.go` (v3 resources at
`/calico/resources/v3/projectcalico.org/<plural>/<name>`, namespaced ones at `.../<plural>/<ns>/<name>`),
`block_affinity.go` (`/calico/ipam/v2/host/<node>/ipv<4|6>/block/<cidr with '/' as '-'>`) and
`block.go` (`/calico/ipam/v2/assignment/ipv<4|6>/block/<cidr with '/' as '-'>`).
"""

from __future__ import annotations

import ipaddress
import re

from proto.record import record
from proto.resources import IPNetwork

ROOT = "/calico/"
RESOURCES = "/calico/resources/v3/projectcalico.org/"
IPAM = "/calico/ipam/v2/"
AFFINITIES = "/calico/ipam/v2/host/"
BLOCKS = "/calico/ipam/v2/assignment/"

# The kinds tortie models and Calico's plural for each (resource.go's registerResourceInfo).
PLURALS: dict[str, str] = {
    "BGPConfiguration": "bgpconfigurations",
    "Node": "nodes",
    "BGPPeer": "bgppeers",
    "IPPool": "ippools",
    "WorkloadEndpoint": "workloadendpoints",
}
KIND_OF_PLURAL = {plural: kind for kind, plural in PLURALS.items()}
NAMESPACED = frozenset({"WorkloadEndpoint"})
DEFAULT_NAMESPACE = "default"  # a WorkloadEndpoint written without one (Calico requires a namespace)

# Everything tortie reads lies in [WATCH_START, WATCH_END): the IPAM tree and the v3 resources, so one
# watch stream follows all of it (keys of other kinds in that range are filtered out).
WATCH_START = IPAM
WATCH_END = RESOURCES[:-1] + "0"  # the key just past every ".../projectcalico.org/..."

_AFFINITY_RE = re.compile(r"^/calico/ipam/v2/host/([^/]+)/ipv([46])/block/([^/]+)$")
_BLOCK_RE = re.compile(r"^/calico/ipam/v2/assignment/ipv([46])/block/([^/]+)$")


@record(frozen=True, slots=True)
class ResourceKey:
    kind: str
    name: str
    namespace: str | None = None


@record(frozen=True, slots=True)
class AffinityKey:
    node: str
    cidr: IPNetwork


@record(frozen=True, slots=True)
class BlockKey:
    cidr: IPNetwork


ParsedKey = ResourceKey | AffinityKey | BlockKey


def resource_key(kind: str, name: str, namespace: str | None = None) -> str:
    plural = PLURALS[kind]
    if kind in NAMESPACED:
        return f"{RESOURCES}{plural}/{namespace or DEFAULT_NAMESPACE}/{name}"
    return f"{RESOURCES}{plural}/{name}"


def _cidr_segment(cidr: IPNetwork) -> str:
    return str(cidr).replace("/", "-", 1)


def affinity_key(node: str, cidr: IPNetwork) -> str:
    return f"{AFFINITIES}{node}/ipv{cidr.version}/block/{_cidr_segment(cidr)}"


def block_key(cidr: IPNetwork) -> str:
    return f"{BLOCKS}ipv{cidr.version}/block/{_cidr_segment(cidr)}"


def _parse_cidr(segment: str) -> IPNetwork | None:
    # IPv6 addresses have no '-', so the first '-' is the one that stands for '/'
    try:
        return ipaddress.ip_network(segment.replace("-", "/", 1), strict=False)
    except ValueError:
        return None


def parse_key(key: str) -> ParsedKey | None:
    """The resource a key holds, or None for keys tortie does not model (other kinds, handles, ...)."""
    if key.startswith(RESOURCES):
        parts = key[len(RESOURCES):].split("/")
        kind = KIND_OF_PLURAL.get(parts[0])
        if kind is None:
            return None
        if kind in NAMESPACED:
            return ResourceKey(kind, parts[2], parts[1]) if len(parts) == 3 and all(parts) else None
        return ResourceKey(kind, parts[1]) if len(parts) == 2 and parts[1] else None
    if key.startswith(AFFINITIES):
        m = _AFFINITY_RE.match(key)
        cidr = _parse_cidr(m.group(3)) if m else None
        if m is None or cidr is None or cidr.version != int(m.group(2)):
            return None
        return AffinityKey(m.group(1), cidr)
    if key.startswith(BLOCKS):
        m = _BLOCK_RE.match(key)
        cidr = _parse_cidr(m.group(2)) if m else None
        if m is None or cidr is None or cidr.version != int(m.group(1)):
            return None
        return BlockKey(cidr)
    return None
