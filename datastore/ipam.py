"""Block allocation: give a node the lowest free block of a pool, as a confirmed BlockAffinity.

The choice and the write happen inside one datastore transaction, so concurrent callers (several
`tortiectl ipam assign-block` at once, on one host or many sharing the file or etcd) never get the same
block. With etcd the transaction creates the block and affinity keys only while neither exists
(datastore.etcdstore); a claimer that loses the race reads again and takes the next free block.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator

from datastore.base import Datastore
from proto.record import record
from proto.resources import BlockAffinity, ClusterModel, IPNetwork, IPPool, Node, block_affinity_name


class IpamError(Exception):
    """No block can be given (pool full, disabled, not for this node)."""


def used_blocks(model: ClusterModel, pool: IPPool) -> set[IPNetwork]:
    return {b.cidr for b in model.blocks if b.cidr.version == pool.cidr.version
            and b.cidr.subnet_of(pool.cidr)}  # type: ignore[arg-type]


def free_blocks(model: ClusterModel, pool: IPPool) -> Iterator[IPNetwork]:
    """The pool's unaffined blocks, lowest first (lazy: an IPv6 pool has astronomically many)."""
    used = used_blocks(model, pool)
    return (block for block in pool.blocks() if block not in used)


@record(frozen=True, slots=True)
class PoolUsage:
    pool: IPPool
    total: int
    used: int

    @property
    def free(self) -> int:
        return self.total - self.used


def pool_usage(model: ClusterModel) -> list[PoolUsage]:
    return [PoolUsage(p, 2 ** (p.block_size - p.cidr.prefixlen), len(used_blocks(model, p)))
            for p in model.pools]


def choose_pool(model: ClusterModel, node: Node, pool_name: str | None) -> IPPool:
    """The named pool, or the first enabled, automatically assigned pool whose nodeSelector picks the node
    (IPv4 pools first, then in file order)."""
    if pool_name is not None:
        pool = model.pool(pool_name)
        if pool.disabled:
            raise IpamError(f"IPPool {pool.name} is disabled")
        if "Workload" not in pool.allowed_uses:
            raise IpamError(f"IPPool {pool.name} does not allow Workload use")
        if not pool.node_selector.matches(node.labels):
            raise IpamError(f"IPPool {pool.name}'s nodeSelector ({pool.node_selector}) does not select "
                            f"node {node.name}")
        return pool
    candidates = sorted((p for p in model.pools if not p.disabled and p.assignment_mode == "Automatic"
                         and "Workload" in p.allowed_uses and p.node_selector.matches(node.labels)),
                        key=lambda p: p.cidr.version)
    if not candidates:
        raise IpamError(f"no enabled IPPool selects node {node.name}")
    return candidates[0]


def assign_block(store: Datastore, node_name: str, pool_name: str | None = None) -> BlockAffinity:
    """Affine the lowest free block of the pool to the node and return the new BlockAffinity."""
    chosen: list[BlockAffinity] = []

    def change(model: ClusterModel) -> ClusterModel:
        chosen.clear()
        node = model.node(node_name)
        pool = choose_pool(model, node, pool_name)
        cidr = next(free_blocks(model, pool), None)
        if cidr is None:
            raise IpamError(f"IPPool {pool.name} ({pool.cidr}) has no free /{pool.block_size} block")
        block = BlockAffinity(name=block_affinity_name(node.name, cidr), node=node.name, cidr=cidr)
        chosen.append(block)
        return model.apply([block])

    store.transact(change)
    return chosen[0]


def release_blocks(store: Datastore, *, blocks: Iterable[str] = (), node: str | None = None) -> list[BlockAffinity]:
    """Free the given blocks (CIDRs), or every block of `node`; returns what was freed."""
    wanted = set()
    for text in blocks:
        try:
            wanted.add(ipaddress.ip_network(text))
        except ValueError:
            raise IpamError(f"{text!r} is not a block CIDR") from None
    freed: list[BlockAffinity] = []

    def change(model: ClusterModel) -> ClusterModel:
        freed.clear()
        freed.extend(b for b in model.blocks if b.cidr in wanted or (node is not None and b.node == node))
        missing = wanted - {b.cidr for b in freed}
        if missing:
            raise IpamError(f"no block {', '.join(map(str, sorted(missing, key=str)))} is assigned")
        return model.delete([b.key for b in freed])

    store.transact(change)
    return freed
