"""Block ownership: a pod block is accepted only from the node that holds its affinity (import policy).

Any peer can announce any block of a pool, so one misconfigured or hostile host could pull another
host's pod traffic. With ownership on (`policy.tortie.io/block-ownership: strict` on the default
BGPConfiguration, the default), a route learned from a peer that is a cluster Node is accepted only
when the node it claims to come from holds the confirmed BlockAffinity of the block the prefix is
(or lies in):

- the claimant is the node named by ORIGINATOR_ID (a reflected route: the originator's router ID is
  its Node's `bgp.ipv4Address`), else the peer's own node (learned from it directly);
- the claimant must hold the block's affinity (`not-block-owner` otherwise, which also covers a more
  specific route inside another node's block); a prefix in a pool with no affinity covering it is
  refused too (`no-block-affinity`; a prefix outside every pool, such as a service address, is left to
  the rest of import policy), as is a reflected route whose ORIGINATOR_ID is no Node's
  (`originator-not-a-node`);
- the next hop must be one of the claimant's addresses (`next-hop-not-owner`): the traffic goes to
  the owner, whatever the attributes say.

Routes from peers that are not cluster Nodes (top-of-rack routers) are checked against the pools only,
as before: the fabric may legitimately carry the cluster's blocks back. `off` switches the check off.

The table is built from the cluster model (`from_model`) and swapped whole when affinities change;
`bgpd.rib.rib.Rib` applies it per UPDATE (one dictionary lookup per prefix in the common case of a
prefix that is exactly a block) and again over what it holds and refused when the table changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from proto import prefix as pf
from proto import tortie_annotations
from proto.bgp.model import PathAttributes
from proto.record import record
from proto.resources import ClusterModel

NOT_OWNER = "not-block-owner"
NO_AFFINITY = "no-block-affinity"
NEXT_HOP = "next-hop-not-owner"
BAD_ORIGINATOR = "originator-not-a-node"
REASONS = (NOT_OWNER, NO_AFFINITY, NEXT_HOP, BAD_ORIGINATOR)


@record(frozen=True, slots=True)
class NodeIds:
    """What identifies a Node on the wire."""

    name: str
    router_id: str | None  # its bgp.ipv4Address (the router ID tortie uses)
    addresses: frozenset[str]  # its BGP addresses (next hops)


@record(frozen=True, slots=True)
class Refusal:
    """A route ownership refused, kept so it can be shown (`bgp rib --peer`) and checked again when
    affinities change."""

    reason: str
    detail: str
    attrs: PathAttributes
    next_hop: tuple[str, ...]
    accepted: bool = False  # taken out of the Adj-RIB-In: `attrs` are import policy's result already


class BlockOwners:
    def __init__(self, blocks: Mapping[bytes, str], nodes: Iterable[NodeIds], pools: Iterable[bytes] = ()) -> None:
        self.blocks = dict(blocks)  # block (proto.prefix form) -> node name
        # the IP pools (proto.prefix form): pod blocks come from them; what lies outside every pool (service
        # addresses a node advertises, say) is not judged here but by the rest of import policy
        self.pools = tuple(sorted(set(pools)))
        self.lengths = {v: sorted({p[1] for p in self.blocks if p[0] == v}) for v in (pf.V4, pf.V6)}
        self.nodes = {n.name: n for n in nodes}
        self.by_router_id = {n.router_id: n for n in self.nodes.values() if n.router_id}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BlockOwners) and (self.blocks, self.nodes, self.pools) == (
            other.blocks, other.nodes, other.pools)

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def from_model(cls, model: ClusterModel) -> BlockOwners | None:
        """The table of the model's confirmed affinities; None when ownership is off."""
        if tortie_annotations.block_ownership(model.bgp_config.annotations) == "off":
            return None
        blocks = {pf.from_network(b.cidr): b.node for b in model.blocks if b.confirmed}
        nodes = []
        for n in model.nodes:
            addrs = frozenset(str(i.ip) for i in (n.ipv4_address, n.ipv6_address) if i is not None)
            nodes.append(NodeIds(n.name, str(n.ipv4_address.ip) if n.ipv4_address else None, addrs))
        return cls(blocks, nodes, (pf.from_network(p.cidr) for p in model.pools))

    # ------------------------------------------------------------ lookups

    def owner(self, prefix: bytes) -> tuple[str | None, bytes | None]:
        """(owner node, block) of the block that is or holds `prefix`; (None, None) when none does."""
        node = self.blocks.get(prefix)
        if node is not None:
            return node, prefix
        version, length = prefix[0], prefix[1]
        for blen in self.lengths.get(version, ()):
            if blen > length:
                break
            block = _truncate(prefix, blen)
            node = self.blocks.get(block)
            if node is not None:
                return node, block
        return None, None

    def in_pool(self, prefix: bytes) -> bool:
        return any(pool[0] == prefix[0] and pool[1] <= prefix[1] and _truncate(prefix, pool[1]) == pool
                   for pool in self.pools)

    def claimant(self, peer_node: str, attrs: PathAttributes) -> NodeIds | str:
        """The node a route says it comes from, or the refusal reason when it names none."""
        originator = attrs.originator_id
        if originator:
            node = self.by_router_id.get(str(originator))
            return node if node is not None else BAD_ORIGINATOR
        node = self.nodes.get(peer_node)
        return node if node is not None else BAD_ORIGINATOR

    def check(self, peer_node: str, prefixes: Sequence[bytes], attrs: PathAttributes, next_hop: tuple[str, ...],
              offset: int = 0) -> tuple[list[bytes], list[tuple[bytes, str, str]]]:
        """(accepted, [(prefix, reason, detail)]) for prefixes of one UPDATE from a Node peer; `offset`
        skips an ADD-PATH identifier."""
        claimant = self.claimant(peer_node, attrs)
        if isinstance(claimant, str):
            detail = f"ORIGINATOR_ID {attrs.originator_id} is no cluster node's router ID"
            outside = [p for p in prefixes if not self.in_pool(p[offset:] if offset else p)]
            if not outside:
                return [], [(p, claimant, detail) for p in prefixes]
            kept = set(outside)
            return outside, [(p, claimant, detail) for p in prefixes if p not in kept]
        hop_ok = bool(next_hop) and next_hop[0] in claimant.addresses
        blocks = self.blocks
        name = claimant.name
        accepted: list[bytes] = []
        refused: list[tuple[bytes, str, str]] = []
        for p in prefixes:
            key = p[offset:] if offset else p
            owner = blocks.get(key)
            block: bytes | None = key
            if owner is None:
                owner, block = self.owner(key)
            if owner == name:
                if hop_ok:
                    accepted.append(p)
                else:
                    refused.append((p, NEXT_HOP, f"next hop {next_hop[0] if next_hop else '-'} is not node "
                                                 f"{name}'s address"))
            elif owner is None:
                if self.in_pool(key):
                    refused.append((p, NO_AFFINITY, "no block affinity covers it"))
                else:
                    accepted.append(p)  # no pod block: the pool check and the filters decide
            else:
                assert block is not None
                what = "block" if block == key else f"inside block {pf.text(block)}"
                refused.append((p, NOT_OWNER, f"{what} of node {owner}, announced for node {name}"))
        return accepted, refused


def _truncate(prefix: bytes, length: int) -> bytes:
    """`prefix` cut to `length` bits (host bits zeroed), in the same form."""
    version = prefix[0]
    size = pf.ADDRESS_OCTETS[version]
    value = int.from_bytes(prefix[2:2 + size], "big")
    bits = size * 8
    value &= ((1 << length) - 1) << (bits - length) if length else 0
    return bytes((version, length)) + value.to_bytes(size, "big")


def describe(owners: BlockOwners | None) -> str:
    if owners is None:
        return "block ownership off"
    return f"block ownership strict: {len(owners.blocks)} blocks of {len(owners.nodes)} nodes"


__all__ = ["REASONS", "BlockOwners", "NodeIds", "Refusal", "describe"]
