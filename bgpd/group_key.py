"""Which peers share an update group: the key of `bgpd.update_group.UpdateGroup`.

Established peers share one Adj-RIB-Out and one encoded stream when export policy treats them alike
(`bgpd.export_policy.ExportTarget`), their UPDATEs are encoded alike (`EncodingKey`: what their sessions
negotiated) and they run the same families. iBGP members differ in next hop self only for the routes
this node originates, so our address is left out of an iBGP group's key (unless nextHopMode Self puts
it on every route); the group keeps those routes per address instead.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

from bgpd.export_policy import ExportTarget
from bgpd.rib.path import PeerInfo
from proto.bgp.constants import AfiSafi
from proto.bgp.model import Negotiated


class EncodingKey(NamedTuple):
    """What changes the bytes of an UPDATE between two peers that get the same routes."""

    four_octet_as: bool
    extended_message: bool
    add_path_send: frozenset[AfiSafi]
    extended_next_hop: frozenset[AfiSafi]

    @classmethod
    def of(cls, negotiated: Negotiated) -> EncodingKey:
        return cls(negotiated.four_octet_as, negotiated.extended_message,
                   frozenset(negotiated.add_path_send), frozenset(negotiated.extended_next_hop))

    def negotiated(self) -> Negotiated:
        return Negotiated(four_octet_as=self.four_octet_as, extended_message=self.extended_message,
                          add_path_send=self.add_path_send, extended_next_hop=self.extended_next_hop)


class GroupKey(NamedTuple):
    target: ExportTarget
    encoding: EncodingKey
    families: tuple[AfiSafi, ...]

    @classmethod
    def of(cls, info: PeerInfo, negotiated: Negotiated, families: tuple[AfiSafi, ...]) -> GroupKey:
        """The group of an Established peer."""
        target = ExportTarget.of(info)
        if target.ibgp and target.next_hop_mode != "Self":
            # iBGP members differ in next hop self only for our own routes: one group for all
            # (bgpd.update_group keeps those routes per address)
            target = dataclasses.replace(target, next_hop_self=())
        return cls(target, EncodingKey.of(negotiated), families)
