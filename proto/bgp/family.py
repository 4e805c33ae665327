"""The address family table, BIRD's `bgp_af_table` way: one row per AFI/SAFI tortie speaks, with
what the UPDATE codec and the packer need to know about it.

A row (`Family`) holds the prefix version and address size (from the NLRI codec's shape of the AFI),
the MP_REACH_NLRI next-hop lengths the family accepts (RFC 4760, RFC 2545 for IPv6 global +
link-local, RFC 8950 for IPv6 next hops of IPv4 NLRI when that capability was exchanged), whether
its routes travel in the UPDATE's own Withdrawn Routes / NLRI fields with a NEXT_HOP attribute
(IPv4 unicast with an IPv4 next hop) rather than in the MP attributes, and its NLRI splitters (the
hand-written one and the construct specification, `proto.bgp.nlri`).

An AFI/SAFI without a row is not decoded: its MP attributes are dropped with an attribute-discard
problem (update.py), and the packer refuses it.
"""

from __future__ import annotations

from collections.abc import Callable

import proto.bgp.nlri as nlri
from proto.bgp.constants import AFI, SAFI, AfiSafi
from proto.bgp.model import Negotiated
from proto.record import record

Splitter = Callable[[bytes, int, bool], list[bytes]]  # (NLRI octets, AFI, ADD-PATH) -> prefixes


@record(frozen=True, slots=True)
class Family:
    """One row of the family table."""

    afi: int
    safi: int
    name: str
    nlri: nlri.NlriShape  # prefix version, address size, the NLRI fast path's tables
    next_hop_lengths: tuple[int, ...]  # MP_REACH_NLRI next-hop lengths always accepted
    extended_next_hop_lengths: tuple[int, ...]  # more when RFC 8950 was negotiated for the family
    in_update_fields: bool  # Withdrawn Routes / NLRI fields and NEXT_HOP (else MP attributes only)
    split: Splitter = nlri.split  # hand-written NLRI splitter
    split_spec: Splitter = nlri.split_spec  # the construct specification of the same

    @property
    def key(self) -> AfiSafi:
        return (self.afi, self.safi)

    @property
    def version(self) -> int:
        return self.nlri.version

    @property
    def address_octets(self) -> int:
        return self.nlri.address_octets

    @property
    def max_length(self) -> int:
        return self.nlri.max_length

    def next_hop_lengths_for(self, negotiated: Negotiated) -> tuple[int, ...]:
        """The MP_REACH_NLRI next-hop lengths accepted on a session (RFC 8950 only if negotiated)."""
        if self.extended_next_hop_lengths and self.key in negotiated.extended_next_hop:
            return self.extended_next_hop_lengths
        return self.next_hop_lengths


IPV4 = Family(
    AFI.IPV4,
    SAFI.UNICAST,
    "ipv4-unicast",
    nlri.SHAPES[AFI.IPV4],
    next_hop_lengths=(4,),
    extended_next_hop_lengths=(4, 16, 32),
    in_update_fields=True,
)
IPV6 = Family(
    AFI.IPV6,
    SAFI.UNICAST,
    "ipv6-unicast",
    nlri.SHAPES[AFI.IPV6],
    next_hop_lengths=(16, 32),  # global, or global + link-local (RFC 2545 section 3)
    extended_next_hop_lengths=(),
    in_update_fields=False,
)

# keyed by plain (int, int) tuples: they hash and compare like the IntEnum pairs callers may pass
FAMILIES: dict[AfiSafi, Family] = {(int(f.afi), int(f.safi)): f for f in (IPV4, IPV6)}


def family(afi: int, safi: int) -> Family | None:
    """The row of an AFI/SAFI, or None when tortie does not speak it."""
    return FAMILIES.get((afi, safi))
