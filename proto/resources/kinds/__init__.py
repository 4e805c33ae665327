"""The resource kinds tortie reads, one module each, and their lookup by kind name or calicoctl alias."""

from __future__ import annotations

from proto.resources.kinds.base import Resource
from proto.resources.kinds.bgpconfig import BGPConfiguration, NamedCommunity, PrefixAdvertisement
from proto.resources.kinds.bgpfilter import BGPFilter, FilterOperation, FilterRule
from proto.resources.kinds.bgppeer import BGPPeer
from proto.resources.kinds.blockaffinity import BlockAffinity, block_affinity_name
from proto.resources.kinds.ippool import IPPool
from proto.resources.kinds.node import Node
from proto.resources.kinds.workload import IPNAT, WorkloadEndpoint

__all__ = [
    "IPNAT", "KINDS", "BGPConfiguration", "BGPFilter", "BGPPeer", "BlockAffinity", "FilterOperation",
    "FilterRule", "IPPool", "NamedCommunity", "Node", "PrefixAdvertisement", "Resource", "WorkloadEndpoint",
    "block_affinity_name", "kind_for",
]

KINDS: dict[str, type[Resource]] = {
    cls.kind: cls
    for cls in (BGPConfiguration, Node, BGPPeer, BGPFilter, IPPool, BlockAffinity, WorkloadEndpoint)
}


def kind_for(name: str) -> type[Resource]:
    """The resource class for a kind name or calicoctl alias (case-insensitive); KeyError if unknown."""
    lowered = name.lower()
    for cls in KINDS.values():
        if lowered == cls.kind.lower() or lowered in cls.aliases:
            return cls
    raise KeyError(name)
