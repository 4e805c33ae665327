"""The cluster model: every resource, validated together, with the lookups the daemons need.

The resource objects are frozen: the daemons share one `ClusterModel` and swap it whole on a change.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from proto.resources.dump import dump_yaml
from proto.resources.errors import NotFoundError, Problem, ValidationError
from proto.resources.kinds import (
    BGPConfiguration,
    BGPFilter,
    BGPPeer,
    BlockAffinity,
    IPPool,
    Node,
    Resource,
    WorkloadEndpoint,
)
from proto.resources.kinds.bgpconfig import NODE_CONFIG_PREFIX
from proto.resources.load import load_resources
from proto.resources.values import IPAddress, IPNetwork

R = TypeVar("R", bound=Resource)

IMMUTABLE_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "IPPool": (("cidr", "spec.cidr"), ("block_size", "spec.blockSize")),
}


class ClusterModel:
    """Every resource of the cluster, validated together, with the lookups the daemons need.

    Immutable: `apply` and `delete` return a new model. `revision` counts the datastore's writes.
    """

    __slots__ = ("_blocks", "_by_key", "_nodes", "_pools", "_workloads", "resources", "revision", "warnings")

    def __init__(self, resources: Iterable[Resource] = (), revision: int = 0,
                 warnings: Iterable[Problem] = ()) -> None:
        self.resources: tuple[Resource, ...] = tuple(resources)
        self.revision = revision
        self.warnings: tuple[Problem, ...] = tuple(warnings)
        self._by_key: dict[tuple[str, str], Resource] = {}
        problems: list[Problem] = []
        for r in self.resources:
            if r.key in self._by_key:
                problems.append(r.problem("metadata.name", f"a {r.kind} named {r.name!r} is already defined"))
            self._by_key[r.key] = r
        self._nodes = {r.name: r for r in self.resources if isinstance(r, Node)}
        self._pools = tuple(r for r in self.resources if isinstance(r, IPPool))
        self._blocks = tuple(r for r in self.resources if isinstance(r, BlockAffinity))
        self._workloads = tuple(r for r in self.resources if isinstance(r, WorkloadEndpoint))
        problems += self._cross_check()
        if problems:
            raise ValidationError(problems)

    def _cross_check(self) -> list[Problem]:
        problems: list[Problem] = []
        for pool, other in _overlapping(self._pools, lambda p: p.cidr):
            problems.append(pool.problem("spec.cidr", f"{pool.cidr} overlaps IPPool {other.name} ({other.cidr})"))
        seen_addr: dict[IPAddress, str] = {}
        for node in self._nodes.values():
            for iface, path in ((node.ipv4_address, "spec.bgp.ipv4Address"), (node.ipv6_address, "spec.bgp.ipv6Address")):
                if iface is None:
                    continue
                if iface.ip in seen_addr:
                    problems.append(node.problem(path, f"{iface.ip} is already the address of Node "
                                                 f"{seen_addr[iface.ip]}"))
                seen_addr.setdefault(iface.ip, node.name)
        for block in self._blocks:
            pool = self.pool_for(block.cidr.network_address)
            if pool is None:
                problems.append(block.problem("spec.cidr", f"{block.cidr} is not inside any IPPool"))
            elif block.cidr.prefixlen != pool.block_size or not block.cidr.subnet_of(pool.cidr):  # type: ignore[arg-type]
                problems.append(block.problem("spec.cidr", f"{block.cidr} is not a /{pool.block_size} block "
                                              f"of IPPool {pool.name} ({pool.cidr})"))
        for block, other in _overlapping(self._blocks, lambda b: b.cidr):
            problems.append(block.problem("spec.cidr", f"{block.cidr} is already affine to node {other.node} "
                                          f"(BlockAffinity {other.name})"))
        filters = {r.name for r in self.resources if isinstance(r, BGPFilter)}
        for peer in self.resources:
            if isinstance(peer, BGPPeer):
                missing = [n for n in peer.filters if n not in filters]
                if missing:
                    problems.append(peer.problem("spec.filters", f"BGPFilter(s) not found: {', '.join(missing)}"))
        seen_if: dict[tuple[str, str], str] = {}
        for wep in self._workloads:
            key = (wep.node, wep.interface_name)
            if key in seen_if:
                problems.append(wep.problem("spec.interfaceName", f"{wep.interface_name} on {wep.node} is "
                                            f"already used by WorkloadEndpoint {seen_if[key]}"))
            seen_if.setdefault(key, wep.name)
        return problems

    # lookups

    def get(self, kind: str, name: str) -> Resource:
        try:
            return self._by_key[(kind, name)]
        except KeyError:
            raise NotFoundError(kind, name) from None

    def of_kind(self, kind: str) -> tuple[Resource, ...]:
        return tuple(r for r in self.resources if r.kind == kind)

    def node(self, name: str) -> Node:
        try:
            return self._nodes[name]
        except KeyError:
            raise NotFoundError("Node", name) from None

    @property
    def nodes(self) -> tuple[Node, ...]:
        return tuple(self._nodes.values())

    @property
    def pools(self) -> tuple[IPPool, ...]:
        return self._pools

    def pool(self, name: str) -> IPPool:
        return self.get("IPPool", name)  # type: ignore[return-value]

    def pool_for(self, address: IPAddress | IPNetwork | str) -> IPPool | None:
        """The pool containing an address (or a whole prefix), if any; pools never overlap."""
        if isinstance(address, str):
            address = ipaddress.ip_network(address) if "/" in address else ipaddress.ip_address(address)
        for pool in self._pools:
            if isinstance(address, ipaddress.IPv4Network | ipaddress.IPv6Network):
                if address.version == pool.cidr.version and address.subnet_of(pool.cidr):  # type: ignore[arg-type]
                    return pool
            elif address in pool.cidr:
                return pool
        return None

    @property
    def blocks(self) -> tuple[BlockAffinity, ...]:
        return self._blocks

    def blocks_for(self, node: str | Node) -> tuple[BlockAffinity, ...]:
        name = node.name if isinstance(node, Node) else node
        return tuple(b for b in self._blocks if b.node == name and b.confirmed)

    def node_for_block(self, cidr: IPNetwork) -> str | None:
        for b in self._blocks:
            if b.cidr == cidr and b.confirmed:
                return b.node
        return None

    @property
    def workloads(self) -> tuple[WorkloadEndpoint, ...]:
        return self._workloads

    def workloads_for(self, node: str | Node) -> tuple[WorkloadEndpoint, ...]:
        name = node.name if isinstance(node, Node) else node
        return tuple(w for w in self._workloads if w.node == name)

    @property
    def bgp_config(self) -> BGPConfiguration:
        """The cluster's BGPConfiguration, or Calico's defaults when there is none."""
        found = self._by_key.get(("BGPConfiguration", "default"))
        return found if isinstance(found, BGPConfiguration) else BGPConfiguration()

    def bgp_config_for(self, node: str | Node) -> BGPConfiguration:
        """The settings that apply on one node: the cluster's, with `listenPort` and `logSeverityScreen`
        from a `node.<name>` BGPConfiguration when it sets them (what Calico's confd reads per node)."""
        name = node.name if isinstance(node, Node) else node
        cfg = self.bgp_config
        per_node = self._by_key.get(("BGPConfiguration", NODE_CONFIG_PREFIX + name))
        if not isinstance(per_node, BGPConfiguration):
            return cfg
        changes: dict[str, object] = {}
        if "listenPort" in per_node.explicit:
            changes["listen_port"] = per_node.listen_port
        if "logSeverityScreen" in per_node.explicit:
            changes["log_severity_screen"] = per_node.log_severity_screen
        return dataclasses.replace(cfg, **changes) if changes else cfg

    def listen_port_of(self, node: str | Node) -> int:
        """The port a node listens on, and the one its peers connect to."""
        return self.bgp_config_for(node).listen_port

    @property
    def filters(self) -> tuple[BGPFilter, ...]:
        return tuple(r for r in self.resources if isinstance(r, BGPFilter))

    def as_number_of(self, node: Node) -> int:
        return node.as_number if node.as_number is not None else self.bgp_config.as_number

    @property
    def peers(self) -> tuple[BGPPeer, ...]:
        return tuple(r for r in self.resources if isinstance(r, BGPPeer))

    def peers_for(self, node: str | Node) -> tuple[BGPPeer, ...]:
        me = node if isinstance(node, Node) else self.node(node)
        return tuple(p for p in self.peers if p.applies_to(me))

    # changes

    def apply(self, incoming: Iterable[Resource]) -> ClusterModel:
        """Create or replace each resource; immutable fields of existing resources must not change."""
        resources = list(self.resources)
        index = {r.key: i for i, r in enumerate(resources)}
        problems: list[Problem] = []
        seen: set[tuple[str, str]] = set()
        for new in incoming:
            if new.key in seen:
                problems.append(new.problem("metadata.name", f"{new.kind} {new.name!r} is given twice"))
            seen.add(new.key)
            at = index.get(new.key)
            if at is None:
                index[new.key] = len(resources)
                resources.append(new)
                continue
            old = resources[at]
            for attr, path in IMMUTABLE_FIELDS.get(new.kind, ()):
                if getattr(old, attr) != getattr(new, attr):
                    problems.append(new.problem(path, f"cannot change from {getattr(old, attr)} to "
                                                f"{getattr(new, attr)}: {path.split('.')[-1]} is immutable "
                                                "once applied (create a new pool instead)"))
            resources[at] = new
        if problems:
            raise ValidationError(problems)
        return ClusterModel(resources, self.revision, self.warnings)

    def delete(self, keys: Iterable[tuple[str, str]], *, missing_ok: bool = False) -> ClusterModel:
        doomed = set(keys)
        if not missing_ok:
            for kind, name in sorted(doomed):
                if (kind, name) not in self._by_key:
                    raise NotFoundError(kind, name)
        return ClusterModel([r for r in self.resources if r.key not in doomed], self.revision, self.warnings)

    def with_revision(self, revision: int) -> ClusterModel:
        return ClusterModel(self.resources, revision, self.warnings)

    def to_yaml(self) -> str:
        return dump_yaml(self.resources)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ClusterModel) and self.resources == other.resources

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ClusterModel(revision={self.revision}, resources={len(self.resources)})"


def _overlapping(items: Sequence[R], cidr_of: Callable[[R], IPNetwork]) -> list[tuple[R, R]]:
    """(later, earlier) pairs of items whose networks overlap, the later one in the items' order.

    A sweep over the networks sorted by first address: CIDRs overlap only by one containing the other,
    so a network overlaps an earlier-starting one exactly when it starts before the furthest end seen so
    far. O(n log n), where comparing every pair took seconds for a thousand blocks."""
    order = {id(item): i for i, item in enumerate(items)}
    keyed = sorted(items, key=lambda it: (cidr_of(it).version, int(cidr_of(it).network_address),
                                          cidr_of(it).prefixlen))
    out: list[tuple[R, R]] = []
    holder: R | None = None  # the item reaching furthest so far, in this IP version
    for item in keyed:
        net = cidr_of(item)
        if holder is not None:
            held = cidr_of(holder)
            if held.version == net.version and int(net.network_address) <= int(held.broadcast_address):
                later, earlier = (item, holder) if order[id(item)] > order[id(holder)] else (holder, item)
                out.append((later, earlier))
                continue  # CIDRs nest: the holder still reaches furthest
        holder = item
    out.sort(key=lambda pair: order[id(pair[0])])
    return out


def load_model(text: str, source: str = "<string>", revision: int = 0) -> ClusterModel:
    """Load, validate each resource and the whole cluster; raises ValidationError with every problem."""
    loaded = load_resources(text, source)
    return ClusterModel(loaded.resources, revision, loaded.warnings)
